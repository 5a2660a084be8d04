//! Every step answers only the names it knows are its own (loopback, the
//! address it listens on): a page on another name that resolves to us
//! (DNS rebinding) gets `421` for every request, posts and upgrades
//! included, and nothing is stored.

mod support;

use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use support::Running;

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
