//! Clients that stall in the middle of a request: a body announced with
//! `Content-Length: 100` whose bytes never come. Each gets `408 Request
//! Timeout` after 10 s and its connection closed, and while 1,100
//! of them are open, everyone else is served as usual.

mod support;

use std::time::Duration;
use std::time::Instant;

use reqwest::StatusCode;
use support::Running;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
