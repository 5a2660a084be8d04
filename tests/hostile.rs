//! What one hostile client tries, and what it gets.
//!
//! - Names: every step answers only the names it knows are its own
//!   (loopback, the address it listens on). A page on another name that
//!   resolves to us (DNS rebinding) gets `421` for every request, posts
//!   and upgrades included, and nothing is stored.
//! - Stalled bodies: a body announced with `Content-Length: 100` whose
//!   bytes never come gets `408 Request Timeout` after 10 s and its
//!   connection closed; while 1,100 of them are open, everyone else is
//!   served as usual.
//! - The admin namespace: an empty or short token is refused at start-up.

mod support;

use std::time::Duration;
use std::time::Instant;

use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use support::Running;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A request to `server` that says it is for `host` (with the server's
/// port), from a page of that host.
fn for_host(
    server: &Running,
    method: reqwest::Method,
    path: &str,
    host: &str,
) -> reqwest::RequestBuilder {
    let host = format!("{host}:{}", server.addr.port());
    support::client()
        .request(method, server.url(path))
        .header(header::HOST, &host)
        .header(header::ORIGIN, format!("http://{host}"))
}

async fn a_rebound_name_gets_421(server: &Running, json: bool) {
    let stored = server.feed.answer(None).cursor;
    let page = for_host(server, reqwest::Method::GET, "/", "rebind.example")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::MISDIRECTED_REQUEST);
    let message = page.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("“rebind.example”"), "{message}");
    assert!(
        message.contains("--allowed-host rebind.example"),
        "{message}"
    );

    let post = for_host(server, reqwest::Method::POST, "/news", "rebind.example");
    let post = if json {
        post.header(header::CONTENT_TYPE, "application/json")
            .body(r#"{"title":"rebound"}"#)
    } else {
        post.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("title=rebound&body=")
    };
    assert_eq!(
        post.send().await.unwrap().status(),
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(
        server.feed.answer(None).cursor,
        stored,
        "nothing was stored"
    );

    // Our own names still work, with their port or without.
    for host in ["localhost", "127.0.0.1", "LocalHost"] {
        let page = for_host(server, reqwest::Method::GET, "/", host)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{host}");
    }
}

/// The handshake of a WebSocket from a page on `host`.
async fn upgrade_for(server: &Running, path: &str, host: &str) -> StatusCode {
    for_host(server, reqwest::Method::GET, path, host)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn step_01_answers_only_its_own_names() {
    let server = support::start(form_post::run).await;
    a_rebound_name_gets_421(&server, false).await;
    server.stop().await;
}

#[tokio::test]
async fn step_02_answers_only_its_own_names() {
    let server = support::start(|listener, feed, shutdown| {
        xhr_polling::run(listener, feed, Default::default(), shutdown)
    })
    .await;
    a_rebound_name_gets_421(&server, true).await;
    server.stop().await;
}

#[tokio::test]
async fn step_03_answers_only_its_own_names() {
    let server = support::start(|listener, feed, shutdown| {
        long_polling::run(listener, feed, Default::default(), shutdown)
    })
    .await;
    a_rebound_name_gets_421(&server, true).await;
    server.stop().await;
}

#[tokio::test]
async fn step_04_upgrades_only_for_its_own_names() {
    let server = support::start(|listener, feed, shutdown| {
        websocket::run(listener, feed, Default::default(), shutdown)
    })
    .await;
    a_rebound_name_gets_421(&server, true).await;
    assert_eq!(
        upgrade_for(&server, "/ws", "rebind.example").await,
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(
        upgrade_for(&server, "/ws", "localhost").await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    server.stop().await;
}

#[tokio::test]
async fn step_05_upgrades_only_for_its_own_names() {
    let options = rooms::Options {
        admin_token: Some("a-long-enough-admin-token".into()),
        ..Default::default()
    };
    let server =
        support::start(|listener, feed, shutdown| rooms::run(listener, feed, options, shutdown))
            .await;
    a_rebound_name_gets_421(&server, true).await;
    for path in ["/ws", "/admin/ws?token=a-long-enough-admin-token"] {
        assert_eq!(
            upgrade_for(&server, path, "rebind.example").await,
            StatusCode::MISDIRECTED_REQUEST,
            "{path}"
        );
        assert_eq!(
            upgrade_for(&server, path, "localhost").await,
            StatusCode::SWITCHING_PROTOCOLS,
            "{path}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_page_of_another_site_is_told_which_origin_was_refused() {
    let server = support::start(|listener, feed, shutdown| {
        xhr_polling::run(listener, feed, Default::default(), shutdown)
    })
    .await;
    let refused = support::client()
        .post(server.url("/news"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "https://tunnel.example")
        .body(r#"{"title":"through a tunnel"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let message = refused.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("(https://tunnel.example)"), "{message}");
    assert!(message.contains("--allowed-host"), "{message}");
    server.stop().await;
}

/// Sends the headers of a post and the first 10 of its 100 bytes, then
/// nothing more.
async fn stall(server: &Running, content_type: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr)
        .await
        .expect("the step listens");
    let request = format!(
        "POST /news HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\n\
         Content-Type: {content_type}\r\nContent-Length: 100\r\n\r\ntitle=slow",
        addr = server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Reads the answer until the server closes the connection.
async fn answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes within 20 s")
        .expect("a clean close");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_never_ends_gets_408_and_others_are_served_meanwhile() {
    support::raise_fd_limit();
    let server = support::start(|listener, feed, shutdown| {
        xhr_polling::run(listener, feed, Default::default(), shutdown)
    })
    .await;
    let started = Instant::now();
    let mut form = stall(&server, "application/x-www-form-urlencoded").await;
    let mut json = stall(&server, "application/json").await;
    let mut stalled = Vec::new();
    for _ in 0..1_100 {
        stalled.push(stall(&server, "application/json").await);
    }

    // Meanwhile, a page and a post go through as usual.
    let page = support::client().get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    support::api::post(&server, "not held up").await;

    let form = answer(&mut form).await;
    assert!(
        form.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{form}"
    );
    assert!(
        form.to_lowercase().contains("\r\nconnection: close\r\n"),
        "{form}"
    );
    assert!(form.contains("took more than 10 seconds"), "{form}");
    let json = answer(&mut json).await;
    assert!(
        json.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{json}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "not before its time"
    );
    for stream in &mut stalled {
        assert!(answer(stream).await.starts_with("HTTP/1.1 408"));
    }
    let titles: Vec<_> = server
        .feed
        .latest(10)
        .iter()
        .map(|item| item.title.clone())
        .collect();
    assert_eq!(titles, ["not held up"], "no stalled post was stored");
    server.stop().await;
}

#[tokio::test]
async fn an_empty_or_short_admin_token_is_refused_at_start_up() {
    for token in ["", "s3cret"] {
        let options = rooms::Options {
            admin_token: Some(token.into()),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let started = rooms::run(listener, shared::Feed::new(10), options, Default::default());
        let refusal = tokio::time::timeout(Duration::from_secs(5), started)
            .await
            .expect("05 refuses at once instead of serving")
            .expect_err("05 does not start with a weak token");
        assert!(
            refusal.to_string().contains("at least 16 characters"),
            "{refusal}"
        );
    }
}
