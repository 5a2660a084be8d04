//! Step 03b: one answer per page that never ends, `text/event-stream`, with
//! an event in it for every item; posting as in step 03.

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use server_sent_events::Options;
use shared::Feed;
use shared::news::NewPost;
use support::Running;
use support::api;
use support::sse;
use support::sse::EventStream;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

async fn start() -> Running {
    start_with(Options::default()).await
}

async fn start_with(options: Options) -> Running {
    support::start(|listener, feed, shutdown| {
        server_sent_events::run(listener, feed, options, shutdown)
    })
    .await
}

/// What the step says about its streams (`/stats`).
async fn stats(server: &Running) -> Value {
    api::get_json(server, "/stats").await.1
}

/// A post straight into the feed, as another step of the launcher would.
fn post(server: &Running, title: &str) -> u64 {
    let post = NewPost {
        title: title.into(),
        body: String::new(),
    };
    server.feed.post(post).id
}

/// The ids of the `news` events of a stream, until `last` arrives.
async fn news_ids_until(stream: &mut EventStream, last: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        let event = stream.next_event().await;
        assert_eq!(event.event, "news", "{event:?}");
        let id = event.data["id"].as_u64().expect("an item id");
        assert_eq!(
            event.id,
            Some(id.to_string()),
            "the event's id is the item's"
        );
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn the_page_follows_one_event_stream() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let page = support::page(server.url("/")).await;
    assert!(page.contains("EventSource"));
    assert!(page.contains("When this page\nwas made, 0 streams were open"));
    // Its meter counts events, not WebSocket frames.
    assert!(page.contains(r#"<dd data-meter="events">0</dd>"#));
    insta::assert_snapshot!("03b_page", support::markup(&page));
    server.stop().await;
}

/// What a participant sees with `curl -N`: the head of the answer, then
/// each block as it arrives, for a first connection, a post, a reconnection
/// and a cursor from another run.
#[tokio::test]
async fn a_stream_reads_like_the_contract() {
    let _snapshots = support::snapshots();
    let server = start().await;
    api::post(&server, "Already here").await;
    let mut transcript = String::new();

    let mut stream = sse::open(&server, "/events?since=0", None).await;
    record_head(&mut transcript, "GET /events?since=0", &stream);
    let first = [stream.next_block().await, stream.next_block().await];
    let response = api::post_json(
        &server,
        r#"{"title":"Hello, <world> & \"friends\"","body":"Line one\nLine two"}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let pushed = stream.next_block().await;
    for block in first.into_iter().chain([pushed]) {
        writeln!(transcript, "{}\n", block.expect("the stream goes on")).unwrap();
    }
    drop(stream);

    // The browser reconnecting: the same address, and the last id it got.
    let mut stream = sse::open(&server, "/events?since=0", Some("1")).await;
    record_head(
        &mut transcript,
        "GET /events?since=0, Last-Event-ID: 1",
        &stream,
    );
    for _ in 0..2 {
        let block = stream.next_block().await.expect("the stream goes on");
        writeln!(transcript, "{block}\n").unwrap();
    }
    drop(stream);

    // A cursor this feed never issued: a reset, not a silent gap.
    let mut stream = sse::open(&server, "/events?since=999", None).await;
    record_head(&mut transcript, "GET /events?since=999", &stream);
    for _ in 0..2 {
        let block = stream.next_block().await.expect("the stream goes on");
        writeln!(transcript, "{block}\n").unwrap();
    }
    insta::assert_snapshot!("03b_stream_transcript", transcript);
    server.stop().await;
}

/// The request, the status and the headers a client relies on.
fn record_head(transcript: &mut String, request: &str, stream: &EventStream) {
    writeln!(transcript, "> {request}\n< {}", stream.status).unwrap();
    for name in ["content-type", "cache-control", "x-accel-buffering"] {
        let value = stream
            .headers
            .get(name)
            .map(|value| value.to_str().unwrap());
        writeln!(transcript, "< {name}: {}", value.unwrap_or("(none)")).unwrap();
    }
    assert!(
        stream.headers.get(header::CONTENT_ENCODING).is_none(),
        "an event stream is never compressed"
    );
    assert!(
        stream.headers.get(header::CONTENT_LENGTH).is_none(),
        "an answer that never ends has no length"
    );
    writeln!(transcript).unwrap();
}

#[tokio::test]
async fn a_stream_starts_with_retry_and_carries_every_item_once_in_order() {
    let server = start().await;
    let before: Vec<u64> = (0..3)
        .map(|i| post(&server, &format!("before {i}")))
        .collect();
    let mut stream = sse::open(&server, "/events?since=0", None).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(
        stream.headers[header::CONTENT_TYPE],
        "text/event-stream",
        "EventSource reads only text/event-stream"
    );
    assert_eq!(stream.next_block().await.as_deref(), Some("retry: 2000"));
    assert_eq!(news_ids_until(&mut stream, before[2]).await, before);

    // Items posted from now on arrive as they are posted, each once.
    let after: Vec<u64> = (0..30)
        .map(|i| post(&server, &format!("after {i}")))
        .collect();
    assert_eq!(news_ids_until(&mut stream, after[29]).await, after);
    let stats = stats(&server).await;
    assert_eq!(stats["streams"], 1, "{stats}");
    assert_eq!(stats["events"], 33, "{stats}");
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_browser_resumes_after_its_last_event_id() {
    let server = start().await;
    let ids: Vec<u64> = (0..4)
        .map(|i| post(&server, &format!("item {i}")))
        .collect();

    // The first connection says where the page starts...
    let mut stream = sse::open(&server, &format!("/events?since={}", ids[1]), None).await;
    assert_eq!(news_ids_until(&mut stream, ids[3]).await, ids[2..]);
    drop(stream);
    // ...a reconnection repeats that address and adds the last id it got:
    // the header is newer, and wins.
    let since = format!("/events?since={}", ids[0]);
    let mut stream = sse::open(&server, &since, Some(&ids[2].to_string())).await;
    assert_eq!(news_ids_until(&mut stream, ids[3]).await, ids[3..]);
    drop(stream);
    // The header alone works too.
    let mut stream = sse::open(&server, "/events", Some(&ids[0].to_string())).await;
    assert_eq!(news_ids_until(&mut stream, ids[3]).await, ids[1..]);
    drop(stream);
    // Without a cursor at all: the latest items, then what comes.
    let mut stream = sse::open(&server, "/events", None).await;
    assert_eq!(news_ids_until(&mut stream, ids[3]).await, ids);
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_the_feed_cannot_vouch_for_gets_a_reset() {
    let feed = Feed::starting_at(5, 0, support::fixed_clock);
    let server = support::start_with_feed(feed, |listener, feed, shutdown| {
        server_sent_events::run(listener, feed, Options::default(), shutdown)
    })
    .await;
    for i in 1..=8 {
        post(&server, &format!("item {i}"));
    }
    // Items 1 to 3 are forgotten (and more with each round): after 1 or 2,
    // the feed cannot say what came; 999 it never issued.
    for (since, last_event_id) in [("1", None), ("0", Some("2")), ("999", None)] {
        let path = format!("/events?since={since}");
        let mut stream = sse::open(&server, &path, last_event_id).await;
        let event = stream.next_event().await;
        assert_eq!(event.event, "reset", "{path} {last_event_id:?}");
        assert_eq!(event.data["reset"], true);
        let cursor = server.feed.cursor();
        let latest: Vec<u64> = (cursor - 4..=cursor).collect();
        assert_eq!(api::ids(&event.data), latest, "the latest items");
        assert_eq!(event.data["cursor"], cursor);
        let resume = cursor.to_string();
        assert_eq!(event.id, Some(resume), "a reconnection resumes after it");
        // After the reset, the stream goes on from there.
        let next = post(&server, "after the reset");
        assert_eq!(news_ids_until(&mut stream, next).await, [next]);
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_cursors_are_refused() {
    let server = start().await;
    for (query, header) in [
        ("since=abc", None),
        ("since=-1", None),
        ("since=99999999999999999999", None),
        ("since=0", Some("soon")),
        ("since=0", Some("-3")),
    ] {
        let stream = sse::open(&server, &format!("/events?{query}"), header).await;
        assert_eq!(stream.status, StatusCode::BAD_REQUEST, "{query} {header:?}");
        assert_eq!(stream.headers[header::CONTENT_TYPE], "application/json");
    }
    assert_eq!(stats(&server).await["streams"], 0);
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
    api::bad_posts_store_nothing(&server, "POST").await;
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
async fn the_long_poll_is_gone_and_posting_stays() {
    let server = start().await;
    let response = support::client()
        .get(server.url("/news?since=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    let response = support::client()
        .post(server.url("/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "GET");
    server.stop().await;
}

#[tokio::test]
async fn past_the_cap_the_answer_is_503_with_retry_after() {
    let server = start_with(Options { max_streams: 2 }).await;
    let first = sse::open(&server, "/events?since=0", None).await;
    let second = sse::open(&server, "/events?since=0", None).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::OK, StatusCode::OK)
    );

    let refused = sse::open(&server, "/events?since=0", None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers[header::RETRY_AFTER], "5");
    let stats = stats(&server).await;
    assert_eq!(
        (stats["streams"].as_u64(), stats["refused"].as_u64()),
        (Some(2), Some(1))
    );

    // A client that leaves gives its place back, to the next one.
    drop(first);
    support::wait_until("the place is given back", async || {
        self::stats(&server).await["streams"] == 1
    })
    .await;
    let mut third = sse::open(&server, "/events?since=0", None).await;
    assert_eq!(third.status, StatusCode::OK);
    let id = post(&server, "for the third");
    assert_eq!(news_ids_until(&mut third, id).await, [id]);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_hangs_up_frees_its_place() {
    let server = start().await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /events?since=0 HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    support::wait_until("the stream is open", async || {
        stats(&server).await["streams"] == 1
    })
    .await;
    // Nothing is posted: the server learns that the client left from the
    // connection itself, not from a failed write.
    drop(socket);
    support::wait_until("the place is freed", async || {
        stats(&server).await["streams"] == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_stream_says_it_is_alive() {
    let server = start().await;
    let mut stream = sse::open(&server, "/events?since=0", None).await;
    assert_eq!(stream.next_block().await.as_deref(), Some("retry: 2000"));
    let within = server_sent_events::KEEP_ALIVE + Duration::from_secs(5);
    let block = stream.next_block_within(within).await;
    assert_eq!(block.as_deref(), Some(": keep-alive"));
    assert!(
        sse::parse(": keep-alive").is_none(),
        "a comment is no event"
    );
    assert_eq!(stats(&server).await["keep_alives"], 1);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off() {
    let server = start().await;
    // A connection with a small receive window that asks for the stream
    // and then never reads a byte.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut never_read = socket.connect(server.addr).await.unwrap();
    let request = format!(
        "GET /events?since=0 HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    never_read.write_all(request.as_bytes()).await.unwrap();
    support::wait_until("the stream is open", async || {
        stats(&server).await["streams"] == 1
    })
    .await;

    // Large items, until the buffers on the way are full and the server
    // has waited 10 s for the client to take the next event.
    let poster = tokio::spawn({
        let feed = server.feed.clone();
        async move {
            for i in 0.. {
                let post = NewPost {
                    title: format!("large item {i}"),
                    body: "📰".repeat(2000),
                };
                feed.post(post);
                tokio::time::sleep(Duration::from_millis(if i < 2_000 { 1 } else { 200 })).await;
            }
        }
    });
    let cut_off = async || stats(&server).await["cut_off"] == 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !cut_off().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not cut off within 40 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    poster.abort();
    assert_eq!(
        stats(&server).await["streams"],
        0,
        "its place is given back"
    );

    // The connection is closed: what was on the way drains, then it ends.
    let mut buffer = vec![0; 64 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while never_read
            .read(&mut buffer)
            .await
            .is_ok_and(|read| read > 0)
        {}
    })
    .await;
    assert!(ended.is_ok(), "the server hung up");

    // Everyone else is served as usual.
    let cursor = server.feed.cursor();
    let mut stream = sse::open(&server, &format!("/events?since={cursor}"), None).await;
    let id = post(&server, "after the cut");
    assert_eq!(news_ids_until(&mut stream, id).await, [id]);
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_ends_every_stream() {
    let server = start().await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = sse::open(&server, "/events?since=0", None).await;
        stream.next_block().await;
        streams.push(stream);
    }
    // `stop` waits for the server to end; an open stream would hold it if
    // shutdown did not end it.
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("the server stops within 5 s with streams open");
    for mut stream in streams {
        // The answer ends properly (the last chunk), so the browser
        // reconnects after `retry:` rather than seeing a broken answer.
        stream.ends().await;
    }
}
