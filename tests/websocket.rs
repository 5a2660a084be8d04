//! Step 04, driven the way its page drives it: upgrade `/ws`, read the
//! snapshot and the pushed news, post over the socket; plus the handshake
//! and the close codes, seen byte for byte.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header;
use serde_json::Value;
use serde_json::json;
use shared::Feed;
use shared::news::MAX_POST_BYTES;
use shared::news::NewPost;
use support::Running;
use support::api;
use support::ws;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use websocket::Options;

async fn start() -> Running {
    start_with(
        Feed::starting_at(1_000, 0, support::fixed_clock),
        Options::default(),
    )
    .await
}

async fn start_with(feed: Feed, options: Options) -> Running {
    support::start_with_feed(feed, |listener, feed, shutdown| {
        websocket::run(listener, feed, options, shutdown)
    })
    .await
}

fn post(title: &str) -> NewPost {
    NewPost {
        title: title.into(),
        body: String::new(),
    }
}

fn ids(items: &Value) -> Vec<u64> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

/// The upgrade request of RFC 6455's own example, with our Origin.
fn handshake(server: &Running, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Origin: http://{addr}\r\n{extra}\r\n",
        addr = server.addr
    )
}

#[tokio::test]
async fn the_page_opens_one_websocket() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let page = support::page(server.url("/")).await;
    assert!(page.contains("new WebSocket("));
    assert!(!page.contains("XMLHttpRequest"), "no polling left");
    insta::assert_snapshot!("04_page", support::markup(&page));
    server.stop().await;
}

#[tokio::test]
async fn the_handshake_proves_the_server_speaks_websocket() {
    let server = start().await;
    let (head, _stream) = ws::raw_request(&server, &handshake(&server, "/ws", "")).await;
    assert!(
        head.starts_with("http/1.1 101 switching protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(head.contains("\r\nconnection: upgrade\r\n"), "{head}");
    // The value RFC 6455 §1.3 gives for this key.
    assert!(
        head.contains("\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_handshakes_are_refused_before_any_101() {
    let server = start().await;
    let client = support::client();
    let upgrade = |origin: &str, version: &str, key: &str| {
        let mut request = client
            .get(server.url("/ws"))
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::ORIGIN, origin);
        if !version.is_empty() {
            request = request.header(header::SEC_WEBSOCKET_VERSION, version);
        }
        if !key.is_empty() {
            request = request.header(header::SEC_WEBSOCKET_KEY, key);
        }
        request.send()
    };
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let ours = server.origin();

    let response = upgrade("http://evil.example", "13", key).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = upgrade(&ours, "8", key).await.unwrap();
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()[header::SEC_WEBSOCKET_VERSION], "13");

    let response = upgrade(&ours, "13", "").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = upgrade(&ours, "13", "not-a-key").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A browser opening /ws as a page.
    let response = client.get(server.url("/ws")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(response.headers()[header::UPGRADE], "websocket");

    let response = client
        .get(server.url("/ws?since=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn a_session_transcript() {
    let _snapshots = support::snapshots();
    let server = start().await;
    server.feed.post(post("Already there"));
    let mut transcript = Vec::new();

    let mut alice = ws::connect(&server, "/ws?since=0").await;
    let mut bob = ws::connect(&server, "/ws").await;
    transcript.push(json!({ "alice receives": ws::next_json(&mut alice).await }));
    transcript.push(json!({ "bob receives": ws::next_json(&mut bob).await }));

    let sent =
        json!({ "type": "post", "ref": 1, "title": "Hello <b>Bob</b>", "body": "From Alice" });
    ws::send_json(&mut alice, sent.clone()).await;
    transcript.push(json!({ "alice sends": sent }));
    // Alice's ack and the pushed item may come in either order.
    let mut to_alice = [
        ws::next_json(&mut alice).await,
        ws::next_json(&mut alice).await,
    ];
    to_alice.sort_by_key(|message| message["type"].as_str().unwrap().to_owned());
    transcript.push(json!({ "alice receives": to_alice[0] }));
    transcript.push(json!({ "alice receives": to_alice[1] }));
    transcript.push(json!({ "bob receives": ws::next_json(&mut bob).await }));

    let invalid = json!({ "type": "post", "ref": "r2", "title": "", "body": "no title" });
    ws::send_json(&mut bob, invalid.clone()).await;
    transcript.push(json!({ "bob sends": invalid }));
    transcript.push(json!({ "bob receives": ws::next_json(&mut bob).await }));

    insta::assert_json_snapshot!("04_session_transcript", transcript);
    server.stop().await;
}

#[tokio::test]
async fn a_reconnect_resumes_with_exactly_the_missed_items() {
    let server = start().await;
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    let snapshot = ws::next_json(&mut socket).await;
    let cursor = snapshot["cursor"].as_u64().unwrap();
    socket.close(None).await.unwrap();

    let missed: Vec<u64> = (0..3)
        .map(|i| server.feed.post(post(&format!("missed {i}"))).id)
        .collect();
    let mut socket = ws::connect(&server, &format!("/ws?since={cursor}")).await;
    let snapshot = ws::next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(ids(&snapshot["items"]), missed);
    assert!(snapshot.get("reset").is_none());

    let next = server.feed.post(post("live"));
    let news = ws::next_json(&mut socket).await;
    assert_eq!(news["type"], "news");
    assert_eq!(news["item"]["id"], next.id);
    server.stop().await;
}

#[tokio::test]
async fn a_snapshot_of_the_whole_history_of_the_largest_posts_arrives() {
    // 200 posts as long as posts may be, in letters that take two bytes
    // each: a page that was away for all of them gets them in one
    // snapshot of about a megabyte, far more than a socket buffers for
    // news. (Anyone may post them: it must not lock every page out.)
    let server = start().await;
    let body = "é".repeat(shared::news::BODY_MAX);
    let posted: Vec<u64> = (0..200)
        .map(|i| {
            let post = NewPost {
                title: format!("long {i}"),
                body: body.clone(),
            };
            server.feed.post(post).id
        })
        .collect();
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    let snapshot = ws::next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(ids(&snapshot["items"]), posted);
    // Without a cursor, the latest items, the same way.
    let mut socket = ws::connect(&server, "/ws").await;
    let snapshot = ws::next_json(&mut socket).await;
    assert_eq!(snapshot["items"].as_array().unwrap().len(), 50);
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_the_feed_cannot_vouch_for_resets() {
    let server = start_with(
        Feed::starting_at(5, 100, support::fixed_clock),
        Options::default(),
    )
    .await;
    for i in 0..8 {
        server.feed.post(post(&format!("item {i}")));
    }
    for since in ["101", "50", "999"] {
        let mut socket = ws::connect(&server, &format!("/ws?since={since}")).await;
        let snapshot = ws::next_json(&mut socket).await;
        assert_eq!(snapshot["reset"], true, "since={since}");
        assert_eq!(ids(&snapshot["items"]), [104, 105, 106, 107, 108]);
    }
    server.stop().await;
}

#[tokio::test]
async fn an_http_post_reaches_every_socket() {
    let server = start().await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut socket = ws::connect(&server, "/ws?since=0").await;
        ws::next_json(&mut socket).await;
        sockets.push(socket);
    }
    let id = api::post(&server, "over HTTP").await;
    for socket in &mut sockets {
        let news = ws::next_json(socket).await;
        assert_eq!(news["item"]["id"], id);
        assert_eq!(news["item"]["title"], "over HTTP");
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_socket_stays_open() {
    let server = start().await;
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;

    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    let error = ws::next_json(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["message"], "That message is not a JSON object.");

    ws::send_json(&mut socket, json!({ "type": "shout", "ref": 7 })).await;
    let error = ws::next_json(&mut socket).await;
    assert_eq!(error["ref"], 7);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("unknown variant `shout`")
    );

    // A post is an object with named fields, not an array of values.
    for array in [
        json!(["post", "an array", "of title and text"]),
        json!(["post", { "title": "an object in an array" }]),
    ] {
        ws::send_json(&mut socket, array).await;
        let error = ws::next_json(&mut socket).await;
        assert_eq!(error["type"], "error", "{error}");
        assert!(error["message"].is_string(), "{error}");
    }

    ws::send_json(
        &mut socket,
        json!({ "type": "post", "ref": 8, "title": "still here" }),
    )
    .await;
    let mut answers = [
        ws::next_json(&mut socket).await,
        ws::next_json(&mut socket).await,
    ];
    answers.sort_by_key(|message| message["type"].as_str().unwrap().to_owned());
    assert_eq!(answers[0]["type"], "news");
    assert_eq!(answers[1], json!({ "type": "posted", "ref": 8, "id": 1 }));
    assert_eq!(server.feed.cursor(), 1, "only the valid post was stored");
    server.stop().await;
}

/// 120 emoji and 2,000 more are a valid post: it is stored whichever way
/// it comes, by form, by script or on the socket, with its characters
/// escaped in the JSON or not. A message at the limit is still read; one
/// byte past it closes the socket with 1009.
#[tokio::test]
async fn the_largest_valid_post_is_stored_every_way() {
    let server = start().await;
    api::the_largest_form_post_is_stored(&server).await;
    api::the_largest_json_post_is_stored(&server).await;

    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    let mut reference = 0;
    for (title, body) in support::largest_valid_posts() {
        for escaped in [true, false] {
            reference += 1;
            let fields = json!({ "type": "post", "ref": reference });
            let message = ws::post_message(fields, &title, &body, escaped);
            let answer = ws::answer_to(&mut socket, message, &json!(reference)).await;
            assert_eq!(answer["type"], "posted", "{answer}");
            let stored = &server.feed.latest(1)[0];
            assert_eq!((&stored.title, &stored.body), (&title, &body));
        }
    }

    let cursor = server.feed.cursor();
    let at_the_limit = "x".repeat(MAX_POST_BYTES);
    socket
        .send(Message::Text(at_the_limit.into()))
        .await
        .unwrap();
    let error = loop {
        let message = ws::next_json(&mut socket).await;
        if message["type"] == "error" {
            break message;
        }
    };
    assert_eq!(error["message"], "That message is not a JSON object.");
    let past_the_limit = "x".repeat(MAX_POST_BYTES + 1);
    socket
        .send(Message::Text(past_the_limit.into()))
        .await
        .unwrap();
    assert_eq!(ws::close_code(&mut socket).await.0, CloseCode::Size);
    assert_eq!(server.feed.cursor(), cursor, "nothing else was stored");
    server.stop().await;
}

#[tokio::test]
async fn close_codes_say_what_was_wrong() {
    let server = start().await;

    // 1009: a message larger than any valid post can be.
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    socket
        .send(Message::Text("x".repeat(MAX_POST_BYTES + 1).into()))
        .await
        .unwrap();
    assert_eq!(
        ws::close_code(&mut socket).await,
        (CloseCode::Size, "messages are limited to 26 KiB".into())
    );

    // 1007: a text frame that is not UTF-8.
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    let frame = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    socket.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(ws::close_code(&mut socket).await.0, CloseCode::Invalid);

    // 1003: a binary frame on /ws.
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    socket
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(ws::close_code(&mut socket).await.0, CloseCode::Unsupported);

    // 1002: an unmasked frame, which a client must never send. Written by
    // hand on a raw connection: tungstenite's client always masks.
    let (head, mut stream) = ws::raw_request(&server, &handshake(&server, "/ws?since=0", "")).await;
    assert!(head.starts_with("http/1.1 101"));
    use tokio::io::AsyncWriteExt;
    stream.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    assert_eq!(ws::close_code(&mut socket).await.0, CloseCode::Protocol);

    assert_eq!(server.feed.cursor(), 0, "nothing was stored");
    server.stop().await;
}

/// RFC 6455, 7.1: after its close frame the server reads on until the
/// client's own close frame, then ends the TCP connection. Hanging up with
/// the client's messages still unread would make the kernel send a reset
/// instead, and the client's close reply would fail on it.
#[tokio::test]
async fn the_server_finishes_the_closing_handshake() {
    let server = start().await;
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    // A binary frame ends the session; the 20 KiB behind it are never read.
    socket
        .feed(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    for _ in 0..20 {
        let post = json!({ "type": "post", "title": "x".repeat(1000) });
        socket
            .feed(Message::Text(post.to_string().into()))
            .await
            .unwrap();
    }
    socket.flush().await.unwrap();
    assert_eq!(ws::close_code(&mut socket).await.0, CloseCode::Unsupported);
    ws::ends_cleanly(&mut socket).await;
    assert_eq!(
        server.feed.cursor(),
        0,
        "nothing after the binary frame was stored"
    );
    server.stop().await;
}

/// The other way round: the client closes (a page's `ws.close()`, a tab
/// going away) and the server answers, on both kinds of socket.
#[tokio::test]
async fn the_server_answers_a_clients_close() {
    let server = start().await;
    for path in ["/ws?since=0", "/echo"] {
        ws::client_closes_are_answered(&server, path).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn flooding_gets_errors_then_a_1008() {
    let server = start().await;
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    let mut posted = 0;
    let mut refused = 0;
    for i in 0..60 {
        let message = json!({ "type": "post", "ref": i, "title": format!("post {i}") });
        if socket
            .send(Message::Text(message.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                match message["type"].as_str().unwrap() {
                    "posted" => posted += 1,
                    "error" => {
                        assert!(
                            message["message"]
                                .as_str()
                                .unwrap()
                                .starts_with("Too many posts")
                        );
                        refused += 1;
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Policy);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(posted, 20, "20 posts in 10 s are fine");
    assert_eq!(refused, 20, "then 20 refusals, then the socket is closed");
    assert_eq!(server.feed.cursor(), 20);
    server.stop().await;
}

/// The limit is per client address, not per socket: posts over HTTP and
/// over every socket of the same client count together.
#[tokio::test]
async fn http_posts_count_against_the_socket_too() {
    let server = start().await;
    for i in 0..20 {
        let post = json!({ "title": format!("over HTTP {i}") }).to_string();
        let response = api::post_json(&server, &post).await;
        assert_eq!(response.status(), StatusCode::CREATED, "post {i}");
    }
    let mut socket = ws::connect(&server, "/ws").await;
    ws::next_json(&mut socket).await;
    ws::send_json(
        &mut socket,
        json!({ "type": "post", "ref": 21, "title": "one too many" }),
    )
    .await;
    let refused = ws::next_json(&mut socket).await;
    assert_eq!(
        (&refused["type"], &refused["ref"]),
        (&json!("error"), &json!(21))
    );
    let message = refused["message"].as_str().expect("a message");
    assert!(message.starts_with("Too many posts"), "{message}");
    assert_eq!(server.feed.cursor(), 20, "nothing more was stored");
    server.stop().await;
}

#[tokio::test]
async fn another_socket_does_not_mean_more_posts() {
    let server = start().await;
    let mut first = ws::connect(&server, "/ws").await;
    ws::next_json(&mut first).await;
    for i in 0..20 {
        ws::send_json(
            &mut first,
            json!({ "type": "post", "ref": i, "title": format!("post {i}") }),
        )
        .await;
        // Its `posted` and its `news`, in either order.
        let answers = [
            ws::next_json(&mut first).await,
            ws::next_json(&mut first).await,
        ];
        assert!(
            answers.iter().any(|answer| answer["type"] == "posted"),
            "{answers:?}"
        );
    }
    let mut second = ws::connect(&server, "/ws").await;
    ws::next_json(&mut second).await;
    ws::send_json(
        &mut second,
        json!({ "type": "post", "ref": "more", "title": "from a second socket" }),
    )
    .await;
    let refused = ws::next_json(&mut second).await;
    assert_eq!(
        (&refused["type"], &refused["ref"]),
        (&json!("error"), &json!("more"))
    );
    let response = api::post_json(&server, r#"{"title":"and over HTTP"}"#).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(server.feed.cursor(), 20, "nothing more was stored");
    server.stop().await;
}

#[tokio::test]
async fn echo_sends_everything_back() {
    let server = start().await;
    let mut socket = ws::connect(&server, "/echo").await;
    socket.send(Message::Text("héllo".into())).await.unwrap();
    socket
        .send(Message::Binary(vec![0, 159, 146, 150].into()))
        .await
        .unwrap();
    let first = socket.next().await.unwrap().unwrap();
    let second = socket.next().await.unwrap().unwrap();
    assert_eq!(first, Message::Text("héllo".into()));
    assert_eq!(second, Message::Binary(vec![0, 159, 146, 150].into()));

    socket
        .send(Message::Text("x".repeat(MAX_POST_BYTES + 1).into()))
        .await
        .unwrap();
    assert_eq!(ws::close_code(&mut socket).await.0, CloseCode::Size);
    server.stop().await;
}

#[tokio::test]
async fn a_socket_that_never_reads_does_not_hold_up_the_others() {
    let server = start().await;
    // Completes the handshake, then never reads a byte.
    let (head, _never_read) =
        ws::raw_request(&server, &handshake(&server, "/ws?since=0", "")).await;
    assert!(head.starts_with("http/1.1 101"));

    let mut reader = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut reader).await;
    let poster = tokio::spawn({
        let feed = server.feed.clone();
        async move {
            for i in 0..1_000 {
                feed.post(post(&format!("item {i}")));
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut expected = 1;
    while expected <= 1_000 {
        let message = ws::next_json(&mut reader).await;
        match message["type"].as_str().unwrap() {
            "news" => {
                assert_eq!(message["item"]["id"], expected, "in order, none skipped");
                expected += 1;
            }
            other => panic!("unexpected {other}: {message}"),
        }
    }
    poster.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let server = start_with(
        Feed::starting_at(1_000, 0, support::fixed_clock),
        Options { ping_interval: 1 },
    )
    .await;
    for path in ["/ws?since=0", "/echo"] {
        let (head, mut silent) = ws::raw_request(&server, &handshake(&server, path, "")).await;
        assert!(head.starts_with("http/1.1 101"));
        // Read what the server sends (the snapshot, then pings) and never
        // answer: the server gives up after two intervals and closes the
        // connection.
        use tokio::io::AsyncReadExt;
        let mut buffer = [0; 1024];
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while silent.read(&mut buffer).await.is_ok_and(|read| read > 0) {}
        })
        .await;
        assert!(ended.is_ok(), "the silent peer on {path} was dropped");
    }
    server.stop().await;
}

#[tokio::test]
async fn echo_sockets_count_among_the_open_sockets() {
    let server = start().await;
    assert_eq!(ws::sockets_open(&server).await, 0);
    let mut echo = ws::echo(&server).await;
    assert_eq!(ws::sockets_open(&server).await, 1);
    echo.close(None).await.unwrap();
    support::wait_until("the closed echo socket is no longer counted", async || {
        ws::sockets_open(&server).await == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn stopping_the_server_says_going_away() {
    let server = start().await;
    let mut socket = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    let stopping = tokio::spawn(server.stop());
    let (code, reason) = ws::close_code(&mut socket).await;
    assert_eq!(code, CloseCode::Away);
    assert_eq!(reason, "the server is stopping");
    stopping.await.unwrap();
}

#[tokio::test]
async fn stopping_the_server_says_going_away_on_every_socket() {
    let server = start().await;
    let mut news = ws::connect(&server, "/ws?since=0").await;
    ws::next_json(&mut news).await;
    let echo = ws::echo(&server).await;
    ws::stopping_says_going_away(server, vec![news, echo]).await;
}
