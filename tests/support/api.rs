//! The JSON API that steps 02 and 03 share (`GET /news?since=`, `POST
//! /news` with JSON or a form), checked the same way for both: a test file
//! starts its step and calls these.

use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use serde_json::json;
use shared::news::MAX_POST_BYTES;

use super::Running;

/// `POST /news` with JSON, from a page of this server.
pub async fn post_json(server: &Running, body: &str) -> reqwest::Response {
    super::client()
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, server.origin())
        .body(body.to_owned())
        .send()
        .await
        .expect("the step answers")
}

/// Posts a valid item and returns its id.
pub async fn post(server: &Running, title: &str) -> u64 {
    let body = json!({ "title": title, "body": "" }).to_string();
    let response = post_json(server, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let item: Value = response.json().await.unwrap();
    item["id"].as_u64().unwrap()
}

/// `GET` a path and parse the JSON answer.
pub async fn get_json(server: &Running, path: &str) -> (StatusCode, Value) {
    let response = super::client()
        .get(server.url(path))
        .send()
        .await
        .expect("the step answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON answer"))
}

/// The ids in an answer's `items`, in order.
pub fn ids(answer: &Value) -> Vec<u64> {
    answer["items"]
        .as_array()
        .expect("an items list")
        .iter()
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

/// The answers a participant sees in the Network tab, as snapshots named
/// `tests/snapshots/{step}_*.snap`.
pub async fn answers_look_like_the_contract(server: &Running, step: &str) {
    let _snapshots = super::snapshots();
    let (status, first) = get_json(server, "/news").await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!(format!("{step}_first_poll_empty_feed"), first);

    let response = post_json(
        server,
        r#"{"title":"Hello, <world> & \"friends\"","body":"Line one\nLine two"}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    insta::assert_json_snapshot!(
        format!("{step}_created_item"),
        response.json::<Value>().await.unwrap()
    );

    let (_, after) = get_json(server, "/news?since=0").await;
    insta::assert_json_snapshot!(format!("{step}_poll_after_a_post"), after);

    let (status, reset) = get_json(server, "/news?since=999").await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!(format!("{step}_reset_from_the_future"), reset);

    let response = post_json(server, r#"{"title":"   ","body":"x"}"#).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    insta::assert_json_snapshot!(
        format!("{step}_validation_error"),
        response.json::<Value>().await.unwrap()
    );

    let (status, bad) = get_json(server, "/news?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    insta::assert_json_snapshot!(format!("{step}_malformed_cursor"), bad);
}

/// Every cursor gets exactly the items after it, in order, once.
pub async fn cursors_give_exactly_the_missed_items(server: &Running) {
    cursors_give_exactly_the_missed_items_then_wait(server, "").await
}

/// The same, with `suffix` added to the last request (which finds nothing
/// new: a long poll waits there, so step 03 passes `&timeout=1`).
pub async fn cursors_give_exactly_the_missed_items_then_wait(server: &Running, suffix: &str) {
    // Thirty items: ten through the API, the rest straight into the feed
    // (one client may post only 20 in 10 s over HTTP).
    let mut posted = Vec::new();
    for i in 0..30 {
        let id = if i < 10 {
            post(server, &format!("item {i}")).await
        } else {
            let post = shared::news::NewPost {
                title: format!("item {i}"),
                body: String::new(),
            };
            server.feed.post(post).id
        };
        posted.push(id);
    }
    for seen in 0..posted.len() - 1 {
        let cursor = posted[seen];
        let (_, answer) = get_json(server, &format!("/news?since={cursor}")).await;
        assert_eq!(ids(&answer), posted[seen + 1..], "after {cursor}");
        assert_eq!(answer["cursor"], json!(posted.last().unwrap()));
        assert!(answer.get("reset").is_none());
    }
    // A client that follows the cursor from the start sees every item once.
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let (_, answer) = get_json(server, &format!("/news?since={cursor}{suffix}")).await;
        if ids(&answer).is_empty() {
            break;
        }
        seen.extend(ids(&answer));
        cursor = answer["cursor"].as_u64().unwrap();
    }
    assert_eq!(seen, posted);
}

/// Malformed cursors are a 400 with a JSON message, never a guess.
pub async fn malformed_cursors_are_refused(server: &Running) {
    for query in ["since=abc", "since=-1", "since=1.5", "since=%FF"] {
        let (status, answer) = get_json(server, &format!("/news?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(answer["error"].is_string(), "{query}: {answer}");
    }
    let (status, answer) = get_json(server, "/news?since=99999999999999999999").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["error"],
        "“since” is too large: at most 18446744073709551615."
    );
}

/// A client sending back the ETag of an unchanged feed gets a bodiless 304.
pub async fn an_unchanged_feed_answers_304(server: &Running, path_suffix: &str) {
    post(server, "first").await;
    let client = super::client();
    let url = server.url(&format!("/news?since=1{path_suffix}"));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()[header::ETAG].clone();
    assert_eq!(etag, "\"1\"");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");

    let response = client
        .get(&url)
        .header(header::IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.bytes().await.unwrap().len(), 0);

    post(server, "second").await;
    let response = client
        .get(&url)
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the feed changed");
    assert_eq!(response.headers()[header::ETAG], "\"2\"");
}

/// A cursor older than the history gets a reset with the latest items.
pub async fn a_cursor_older_than_the_history_resets(server: &Running, capacity: usize) {
    for i in 0..capacity + 2 {
        post(server, &format!("item {i}")).await;
    }
    let (_, answer) = get_json(server, "/news?since=1").await;
    assert_eq!(answer["reset"], json!(true));
    assert_eq!(ids(&answer).len(), capacity);
    assert_eq!(ids(&answer).last(), Some(&(capacity as u64 + 2)));
    // At the history's edge, no reset: everything after it is still held.
    let (_, answer) = get_json(server, "/news?since=2").await;
    assert!(answer.get("reset").is_none());
}

/// Both ways of posting work: JSON from the script, the form without it.
pub async fn json_and_form_posts_both_work(server: &Running) {
    let response = post_json(server, r#"{"title":"by script"}"#).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = super::client()
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, server.origin())
        .body("title=by+form&body=")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let titles: Vec<_> = server
        .feed
        .latest(5)
        .iter()
        .map(|item| item.title.clone())
        .collect();
    assert_eq!(titles, ["by form", "by script"]);
}

/// One client posting in a loop: 20 posts in 10 s are stored, whichever
/// way they come; the next is refused with `429` and `Retry-After`, by
/// script and by form alike, and is not stored.
pub async fn posting_too_fast_is_refused_with_429(server: &Running) {
    for i in 0..20 {
        let body = if i % 2 == 0 {
            post_json(server, &json!({ "title": format!("post {i}") }).to_string()).await
        } else {
            post_form(server, &format!("title=post+{i}&body=")).await
        };
        assert!(
            body.status().is_success() || body.status() == StatusCode::SEE_OTHER,
            "post {i}"
        );
    }
    let stored = server.feed.answer(None).cursor;

    let refused = post_json(server, r#"{"title":"one too many"}"#).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=10).contains(&wait), "Retry-After: {wait}");
    let message = refused.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("at most 20 in 10 seconds"), "{message}");
    assert!(message.contains("Nothing was stored"), "{message}");

    let refused = post_form(server, "title=one+too+many&body=").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    let page = refused.text().await.unwrap();
    assert!(page.contains("Too many posts"), "{page}");

    assert_eq!(
        server.feed.answer(None).cursor,
        stored,
        "nothing more was stored"
    );
}

/// `POST /news` with a form, from a page of this server.
pub async fn post_form(server: &Running, body: &str) -> reqwest::Response {
    super::client()
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, server.origin())
        .body(body.to_owned())
        .send()
        .await
        .expect("the step answers")
}

/// Every refusal is clear and stores nothing. `allow` is what a 405 for
/// `/news` says the address answers (`"GET, POST"` where it is also polled).
pub async fn bad_posts_store_nothing(server: &Running, allow: &str) {
    let client = super::client();
    let huge = json!({ "title": "big", "body": "x".repeat(MAX_POST_BYTES) }).to_string();
    let response = post_json(server, &huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    let response = post_json(server, r#"{"title": "unclosed"#).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let message = response.json::<Value>().await.unwrap()["error"].to_string();
    assert!(
        message.contains("not the JSON this server expects"),
        "{message}"
    );

    let response = post_json(server, r#"{"title": 42}"#).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A post is an object with named fields; an array of the same values
    // is not one, even in the right order.
    let response = post_json(server, r#"["an array", "of title and text"]"#).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let message = response.json::<Value>().await.unwrap()["error"].to_string();
    assert!(
        message.contains("a JSON object") && message.contains("not an array"),
        "{message}"
    );

    let response = client
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, server.origin())
        .body(b"{\"title\":\"\xff\xfe\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "invalid UTF-8");

    let response = client
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "http://evil.example")
        .body(r#"{"title":"forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    let response = client
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("title=plain")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let response = post_json(
        server,
        r#"{"title":"<script>alert(1)</script>","body":"\u0007"}"#,
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let errors = response.json::<Value>().await.unwrap();
    assert!(errors["errors"]["body"].is_string());
    assert!(
        errors["errors"].get("title").is_none(),
        "markup in a title is fine: it is shown as text"
    );

    assert_eq!(server.feed.cursor(), 0, "nothing was stored");

    let response = client.delete(server.url("/news")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], allow);
}

/// The largest valid posts, sent by the form with every byte
/// percent-encoded, are stored (303). A form body at the limit is still
/// read (and refused as too long a text, 422); one byte past it is refused
/// unread with 413. A refusal stores nothing.
pub async fn the_largest_form_post_is_stored(server: &Running) {
    for (title, body) in super::largest_valid_posts() {
        let form = format!(
            "title={}&body={}",
            super::form_encoded(&title),
            super::form_encoded(&body)
        );
        let response = post_form(server, &form).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "a form of {} bytes: {}",
            form.len(),
            response.text().await.unwrap()
        );
        let stored = &server.feed.latest(1)[0];
        assert_eq!((&stored.title, &stored.body), (&title, &body));
    }

    let cursor = server.feed.cursor();
    let at_the_limit = padded_form(MAX_POST_BYTES);
    let response = post_form(server, &at_the_limit).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let past_the_limit = padded_form(MAX_POST_BYTES + 1);
    let response = post_form(server, &past_the_limit).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let page = response.text().await.unwrap();
    assert!(page.contains("larger than 26 KiB"), "{page}");
    assert_eq!(server.feed.cursor(), cursor, "nothing else was stored");
}

/// A form body of exactly `size` bytes.
fn padded_form(size: usize) -> String {
    let start = "title=big&body=";
    format!("{start}{}", "x".repeat(size - start.len()))
}

/// The largest valid posts, sent by a script as JSON with every character
/// escaped (`\uD83E\uDD80`: 12 bytes an emoji) or as plain UTF-8, are
/// stored (201). JSON at the limit is still read (422); one byte past it is
/// refused unread with 413. A refusal stores nothing.
pub async fn the_largest_json_post_is_stored(server: &Running) {
    for (title, body) in super::largest_valid_posts() {
        let escaped = format!(
            r#"{{"title":"{}","body":"{}"}}"#,
            super::json_escaped(&title),
            super::json_escaped(&body)
        );
        let plain = json!({ "title": title, "body": body }).to_string();
        for json in [escaped, plain] {
            let response = post_json(server, &json).await;
            assert_eq!(
                response.status(),
                StatusCode::CREATED,
                "JSON of {} bytes: {}",
                json.len(),
                response.text().await.unwrap()
            );
            let item: Value = response.json().await.unwrap();
            assert_eq!(
                (&item["title"], &item["body"]),
                (&json!(title), &json!(body))
            );
        }
    }

    let cursor = server.feed.cursor();
    let response = post_json(server, &padded_json(MAX_POST_BYTES)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = post_json(server, &padded_json(MAX_POST_BYTES + 1)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let message = response.json::<Value>().await.unwrap()["error"].to_string();
    assert!(message.contains("larger than 26 KiB"), "{message}");
    assert_eq!(server.feed.cursor(), cursor, "nothing else was stored");
}

/// A JSON post of exactly `size` bytes.
fn padded_json(size: usize) -> String {
    let (start, end) = (r#"{"title":"big","body":""#, r#""}"#);
    let padding = "x".repeat(size - start.len() - end.len());
    format!("{start}{padding}{end}")
}
