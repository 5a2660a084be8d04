//! Step 03: the same API as step 02, but a request with nothing new to
//! answer waits for news (or its timeout) before answering.

mod support;

use std::time::Duration;

use long_polling::Options;
use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use shared::Feed;
use support::Running;
use support::api;
use tokio::io::AsyncWriteExt;

async fn start() -> Running {
    start_with(Options::default()).await
}

async fn start_with(options: Options) -> Running {
    support::start(|listener, feed, shutdown| long_polling::run(listener, feed, options, shutdown))
        .await
}

/// How many requests the step says are parked.
async fn parked(server: &Running) -> u64 {
    let (_, stats) = api::get_json(server, "/stats").await;
    stats["parked"].as_u64().expect("a parked count")
}

/// A page's text as a person reads it: its markup without the tags.
fn without_tags(page: &str) -> String {
    let mut text = String::with_capacity(page.len());
    let mut in_tag = false;
    for c in page.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

/// Long polls wait up to 25 s; anything here that takes 10 s has waited for
/// a timeout it should not have.
async fn promptly<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("answered without waiting for the long-poll timeout")
}

#[tokio::test]
async fn the_page_asks_again_at_once() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let page = support::page(server.url("/")).await;
    assert!(page.contains("XMLHttpRequest"));
    // The footer says how many questions wait; the README's exercise makes
    // the figure live, so it may sit in an element of its own.
    let text = without_tags(&page);
    assert!(
        text.contains("0 requests") && text.contains("waiting"),
        "{text}"
    );
    insta::assert_snapshot!("03_page", support::markup(&page));
    server.stop().await;
}

#[tokio::test]
async fn answers_look_like_the_contract() {
    let server = start().await;
    api::answers_look_like_the_contract(&server, "03").await;
    server.stop().await;
}

#[tokio::test]
async fn cursors_give_exactly_the_missed_items() {
    let server = start().await;
    promptly(api::cursors_give_exactly_the_missed_items_then_wait(
        &server,
        "&timeout=1",
    ))
    .await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_cursors_and_timeouts_are_refused() {
    let server = start().await;
    api::malformed_cursors_are_refused(&server).await;
    for query in ["timeout=0", "timeout=56", "timeout=soon"] {
        let (status, answer) = api::get_json(&server, &format!("/news?since=0&{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(answer["error"].is_string());
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unchanged_feed_answers_304_after_its_timeout() {
    let server = start().await;
    promptly(api::an_unchanged_feed_answers_304(&server, "&timeout=1")).await;
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_older_than_the_history_resets_at_once() {
    let feed = Feed::starting_at(5, 0, support::fixed_clock);
    let server = support::start_with_feed(feed, |listener, feed, shutdown| {
        long_polling::run(listener, feed, Options::default(), shutdown)
    })
    .await;
    promptly(api::a_cursor_older_than_the_history_resets(&server, 5)).await;
    // A cursor from the future (a restarted server) resets at once too.
    let (_, answer) = promptly(api::get_json(&server, "/news?since=999")).await;
    assert_eq!(answer["reset"], true);
    server.stop().await;
}

#[tokio::test]
async fn json_and_form_posts_both_work() {
    let server = start().await;
    api::json_and_form_posts_both_work(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_posts_store_nothing() {
    let server = start().await;
    api::bad_posts_store_nothing(&server, "GET, POST").await;
    server.stop().await;
}

#[tokio::test]
async fn the_largest_valid_post_is_stored_by_form_and_by_script() {
    let server = start().await;
    api::the_largest_form_post_is_stored(&server).await;
    api::the_largest_json_post_is_stored(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn posting_too_fast_is_refused_with_429() {
    let server = start().await;
    api::posting_too_fast_is_refused_with_429(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn newer_items_are_answered_at_once() {
    let server = start().await;
    api::post(&server, "already here").await;
    let (status, answer) = promptly(api::get_json(&server, "/news?since=0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api::ids(&answer), [1]);
    server.stop().await;
}

#[tokio::test]
async fn a_parked_request_answers_with_the_next_post() {
    let server = start().await;
    api::post(&server, "first").await;
    let waiting = tokio::spawn({
        let url = server.url("/news?since=1");
        async move {
            support::client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    });
    support::wait_until("the request is parked", async || parked(&server).await == 1).await;
    assert!(!waiting.is_finished());

    api::post(&server, "second").await;
    let answer = promptly(waiting).await.unwrap();
    assert_eq!(api::ids(&answer), [2]);
    assert_eq!(answer["items"][0]["title"], "second");
    assert_eq!(answer["cursor"], 2);
    assert_eq!(parked(&server).await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_timeout_answers_nothing_with_the_same_cursor() {
    let server = start().await;
    api::post(&server, "first").await;
    let (status, answer) = promptly(api::get_json(&server, "/news?since=1&timeout=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api::ids(&answer), Vec::<u64>::new());
    assert_eq!(answer["cursor"], 1);
    let (_, stats) = api::get_json(&server, "/stats").await;
    assert_eq!(stats["answered_empty"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_waiters_each_get_the_next_post_once() {
    support::raise_fd_limit();
    let server = start().await;
    let cursor = api::post(&server, "before").await;
    // One connection per waiter, as a thousand browser tabs would have.
    let waiters: Vec<_> = (0..1_000)
        .map(|_| {
            let url = server.url(&format!("/news?since={cursor}"));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                client
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    support::wait_until("1,000 requests are parked", async || {
        parked(&server).await == 1_000
    })
    .await;

    let id = api::post(&server, "for everyone").await;
    for waiter in waiters {
        let answer = promptly(waiter).await.unwrap();
        assert_eq!(api::ids(&answer), [id]);
    }
    assert_eq!(parked(&server).await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_hangs_up_frees_its_place() {
    let server = start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /news?since=0 HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    support::wait_until("the request is parked", async || parked(&server).await == 1).await;

    drop(socket);
    support::wait_until("the place is freed", async || parked(&server).await == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn past_the_cap_the_answer_is_503_with_retry_after() {
    let server = start_with(Options { max_parked: 2 }).await;
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/news?since=0");
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    support::wait_until("2 requests are parked", async || parked(&server).await == 2).await;

    let response = support::client()
        .get(server.url("/news?since=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    let (_, stats) = api::get_json(&server, "/stats").await;
    assert_eq!(stats["refused"], 1);
    // A refusal takes no place, so it gives none back either.
    assert_eq!(stats["parked"], 2);

    api::post(&server, "wake up").await;
    for waiter in waiters {
        assert_eq!(promptly(waiter).await.unwrap(), StatusCode::OK);
    }
    support::wait_until("every place is given back", async || {
        parked(&server).await == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn long_polls_keep_working_after_refusals() {
    // The README's own exercise: `--max-parked 1` and two tabs.
    let server = start_with(Options { max_parked: 1 }).await;
    for round in 0..3 {
        let cursor = server.feed.answer(None).cursor;
        let waiting = tokio::spawn({
            let url = server.url(&format!("/news?since={cursor}"));
            async move {
                let response = support::client().get(url).send().await.unwrap();
                (response.status(), response.json::<Value>().await.unwrap())
            }
        });
        support::wait_until("one request is parked", async || parked(&server).await == 1).await;
        for _ in 0..2 {
            let refused = support::client()
                .get(server.url(&format!("/news?since={cursor}")))
                .send()
                .await
                .unwrap();
            assert_eq!(
                refused.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "round {round}"
            );
        }
        let (_, stats) = api::get_json(&server, "/stats").await;
        assert_eq!(stats["parked"], 1, "round {round}: {stats}");
        assert_eq!(stats["refused"], 2 * (round + 1), "round {round}");

        let item = api::post(&server, &format!("news {round}")).await;
        let (status, answer) = promptly(waiting).await.unwrap();
        assert_eq!(status, StatusCode::OK, "round {round}");
        assert_eq!(api::ids(&answer), [item], "round {round}");
        support::wait_until("the place is given back", async || {
            parked(&server).await == 0
        })
        .await;
    }
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_answers_parked_requests() {
    let server = start().await;
    let waiting = tokio::spawn({
        let url = server.url("/news?since=0");
        async move { support::client().get(url).send().await.unwrap().status() }
    });
    support::wait_until("the request is parked", async || parked(&server).await == 1).await;
    // `stop` waits for the server to end; a parked request would hold it
    // for 25 s if shutdown did not answer it.
    promptly(server.stop()).await;
    assert_eq!(promptly(waiting).await.unwrap(), StatusCode::OK);
}
