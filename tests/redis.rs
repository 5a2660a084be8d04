//! Step 06: two servers of the same rooms against one real Redis, driven
//! over WebSockets as `rooms.js` drives them. Each test has a key prefix of
//! its own, so tests never see each other's rooms, and the Redis-down test
//! has a Redis server of its own, which it stops and starts again.
//!
//! They need `redis-server` (or `REDIS_URL`): see `support/redis_server.rs`.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use futures_util::StreamExt;
use redis_rooms::Options;
use reqwest::StatusCode;
use serde_json::Value;
use serde_json::json;
use shared::Feed;
use shared::Shutdown;
use shared::news::MAX_POST_BYTES;
use support::Running;
use support::api;
use support::redis_server::RedisServer;
use support::rooms::announced_in;
use support::rooms::ask;
use support::rooms::join;
use support::rooms::member;
use support::rooms::member_since;
use support::rooms::next_frame;
use support::rooms::next_of;
use support::rooms::png;
use support::ws;
use support::ws::Socket;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const TOKEN: &str = "test-admin-token";

/// A key prefix no other test uses.
fn prefix() -> String {
    format!("test-{}", &shared::token::random()[..12])
}

/// One server of step 06, keeping `history` items per room.
async fn server(redis: &str, prefix: &str, history: usize) -> Running {
    let options = Options {
        admin_token: Some(TOKEN.into()),
        redis: redis.into(),
        redis_prefix: prefix.into(),
        ..Options::default()
    };
    support::start_with_feed(
        Feed::starting_at(history, 0, support::fixed_clock),
        |listener, feed, shutdown| redis_rooms::run(listener, feed, options, shutdown),
    )
    .await
}

/// Two servers of the same rooms, as behind a load balancer.
async fn two_servers(redis: &RedisServer) -> (Running, Running) {
    let prefix = prefix();
    (
        server(&redis.url, &prefix, 1_000).await,
        server(&redis.url, &prefix, 1_000).await,
    )
}

/// The next `presence` of a room, skipping others.
async fn presence_in(socket: &mut Socket, room: &str) -> u64 {
    loop {
        let presence = next_of(socket, "presence").await;
        if presence["room"] == room {
            return presence["members"].as_u64().unwrap();
        }
    }
}

async fn post(socket: &mut Socket, room: &str, title: &str, reference: u64) -> u64 {
    let posted = ask(
        socket,
        json!({ "type": "post", "ref": reference, "room": room, "title": title }),
    )
    .await;
    assert_eq!(posted["type"], "posted", "{posted}");
    posted["id"].as_u64().unwrap()
}

/// The ids of a `joined`'s items.
fn ids(joined: &Value) -> Vec<u64> {
    joined["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

/// Ids and cursors come from the Redis server's clock, and times too. In a
/// snapshot, each item id becomes `#1`, `#2`... in order of appearance (one
/// id, one name, so that a `posted`, its `news` and a cursor still match),
/// a cursor that is no item's id (a room without news starts from the
/// clock) `[clock]`, and each time `[time]`.
fn redact(value: &mut Value) {
    fn collect(value: &Value, ids: &mut Vec<u64>) {
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    match (key.as_str(), value.as_u64()) {
                        ("id", Some(id)) if !ids.contains(&id) => ids.push(id),
                        _ => collect(value, ids),
                    }
                }
            }
            Value::Array(values) => values.iter().for_each(|value| collect(value, ids)),
            _ => {}
        }
    }
    fn replace(value: &mut Value, ids: &[u64]) {
        match value {
            Value::Object(object) => {
                for (key, value) in object.iter_mut() {
                    match (key.as_str(), value.as_u64()) {
                        ("id" | "cursor", Some(number)) => {
                            *value = match ids.iter().position(|&id| id == number) {
                                Some(index) => format!("#{}", index + 1).into(),
                                None => "[clock]".into(),
                            };
                        }
                        ("posted_at", _) => *value = "[time]".into(),
                        _ => replace(value, ids),
                    }
                }
            }
            Value::Array(values) => values.iter_mut().for_each(|value| replace(value, ids)),
            _ => {}
        }
    }
    let mut ids = Vec::new();
    collect(value, &mut ids);
    replace(value, &ids);
}

#[tokio::test]
async fn the_page_renders_and_serves_its_client() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let _snapshots = support::snapshots();
    let server = server(&redis.url, &prefix(), 1_000).await;
    let page = support::page(server.url("/")).await;
    assert!(page.contains(r#"<script src="/rooms.js"></script>"#));
    // The feed's cursor comes from the Redis server's clock.
    insta::with_settings!({ filters => vec![(r#"data-cursor="\d+""#, r#"data-cursor="[clock]""#)] }, {
        insta::assert_snapshot!("06_page", support::markup(&page));
    });

    let library = support::page(server.url("/rooms.js")).await;
    assert_eq!(library, include_str!("../06-redis/static/rooms.js"));
    server.stop().await;
}

#[tokio::test]
async fn a_transcript_across_two_servers() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let _snapshots = support::snapshots();
    let (a, b) = two_servers(&redis).await;
    let mut transcript = Vec::new();
    // Presence counts arrive when each server next counts: not in a
    // transcript that must come out the same every time.
    async fn receive(socket: &mut Socket, who: &str, transcript: &mut Vec<Value>) {
        let message = loop {
            let message = ws::next_json(socket).await;
            if message["type"] != "presence" {
                break message;
            }
        };
        transcript.push(json!({ format!("{who} receives"): message }));
    }
    async fn send(socket: &mut Socket, who: &str, message: Value, transcript: &mut Vec<Value>) {
        transcript.push(json!({ format!("{who} sends"): message.clone() }));
        ws::send_json(socket, message).await;
    }

    let mut alice = ws::connect(&a, "/ws").await;
    receive(&mut alice, "alice (server A)", &mut transcript).await;
    let mut bob = ws::connect(&b, "/ws").await;
    receive(&mut bob, "bob (server B)", &mut transcript).await;

    let join = json!({ "type": "join", "ref": 1, "room": "rust" });
    send(
        &mut alice,
        "alice (server A)",
        join.clone(),
        &mut transcript,
    )
    .await;
    receive(&mut alice, "alice (server A)", &mut transcript).await;
    send(&mut bob, "bob (server B)", join, &mut transcript).await;
    receive(&mut bob, "bob (server B)", &mut transcript).await;

    let hello = json!({ "type": "post", "ref": 2, "room": "rust", "title": "Hello from server A" });
    send(&mut alice, "alice (server A)", hello, &mut transcript).await;
    // `posted` once Redis has it, then the `news` it came back as.
    receive(&mut alice, "alice (server A)", &mut transcript).await;
    receive(&mut alice, "alice (server A)", &mut transcript).await;
    receive(&mut bob, "bob (server B)", &mut transcript).await;

    let reply =
        json!({ "type": "post", "ref": 2, "room": "rust", "title": "Hello back from server B" });
    send(&mut bob, "bob (server B)", reply, &mut transcript).await;
    receive(&mut bob, "bob (server B)", &mut transcript).await;
    receive(&mut bob, "bob (server B)", &mut transcript).await;
    receive(&mut alice, "alice (server A)", &mut transcript).await;

    let mut transcript = Value::Array(transcript);
    redact(&mut transcript);
    insta::assert_json_snapshot!("06_cross_server_transcript", transcript);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn posts_reach_members_on_the_other_server_in_order() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut alice, _) = member(&a).await;
    let (mut bob, _) = member(&b).await;
    join(&mut alice, "rust", 1).await;
    join(&mut bob, "rust", 1).await;

    // Ten posts sent at once, each acknowledged once Redis has it.
    for i in 0..10 {
        let post =
            json!({ "type": "post", "ref": 100 + i, "room": "rust", "title": format!("post {i}") });
        ws::send_json(&mut alice, post).await;
    }
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 10 {
        let posted = next_of(&mut alice, "posted").await;
        acknowledged.push(posted["id"].as_u64().unwrap());
    }
    assert!(
        acknowledged.windows(2).all(|w| w[0] < w[1]),
        "{acknowledged:?}"
    );

    // Bob, on the other server, gets all ten, in the same order.
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let news = next_of(&mut bob, "news").await;
        assert_eq!(news["room"], "rust");
        assert_eq!(news["item"]["title"], format!("post {}", seen.len()));
        seen.push(news["item"]["id"].as_u64().unwrap());
    }
    assert_eq!(seen, acknowledged);

    // The other way round, and over plain HTTP into `general`.
    let from_b = post(&mut bob, "rust", "from B", 200).await;
    while next_of(&mut alice, "news").await["item"]["id"] != from_b {}
    let id = api::post(&b, "over HTTP on B").await;
    let news = next_of(&mut alice, "news").await;
    assert_eq!(
        (&news["room"], &news["item"]["id"]),
        (&json!("general"), &json!(id))
    );
    a.stop().await;
    b.stop().await;
}

/// 120 emoji and 2,000 more are a valid post: sent to one server, its
/// characters escaped in the JSON or not, it reaches a member on the
/// other whole. One byte past the limit closes the socket with 1009.
#[tokio::test]
async fn the_largest_valid_post_reaches_the_other_server_whole() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut alice, _) = member(&a).await;
    let (mut bob, _) = member(&b).await;
    let mut reference = 0;
    for (title, body) in support::largest_valid_posts() {
        for escaped in [true, false] {
            reference += 1;
            let fields = json!({ "type": "post", "ref": reference, "room": "general" });
            let message = ws::post_message(fields, &title, &body, escaped);
            let answer = ws::answer_to(&mut alice, message, &json!(reference)).await;
            assert_eq!(answer["type"], "posted", "{answer}");
            let news = next_of(&mut bob, "news").await;
            assert_eq!(
                (&news["item"]["title"], &news["item"]["body"]),
                (&json!(title), &json!(body))
            );
        }
    }
    let past_the_limit = "x".repeat(MAX_POST_BYTES + 1);
    alice
        .send(Message::Text(past_the_limit.into()))
        .await
        .unwrap();
    assert_eq!(
        ws::close_code(&mut alice).await,
        (
            CloseCode::Size,
            "text messages are limited to 26 KiB".into()
        )
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_page_that_reconnects_to_the_other_server_misses_nothing() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut alice, _) = member(&a).await;
    join(&mut alice, "rust", 1).await;
    // Someone on B posts; alice, on A, sees it: her cursors.
    let (mut bob, _) = member(&b).await;
    join(&mut bob, "rust", 1).await;
    let rust_cursor = post(&mut bob, "rust", "first", 2).await;
    let general_cursor = post(&mut bob, "general", "first", 3).await;
    // (Each room keeps its order; two rooms may arrive either way round.)
    let mut rooms = Vec::new();
    while rooms.len() < 2 {
        let news = next_of(&mut alice, "news").await;
        assert_eq!(news["item"]["title"], "first");
        rooms.push(news["room"].as_str().unwrap().to_owned());
    }
    rooms.sort();
    assert_eq!(rooms, ["general", "rust"]);
    alice.close(None).await.unwrap();

    // While she is away: two items in rust, one in general over HTTP.
    let missed = vec![
        post(&mut bob, "rust", "one", 4).await,
        post(&mut bob, "rust", "two", 5).await,
    ];
    let general_missed = api::post(&a, "in general").await;
    // B has it too by now (Bob, there, sees it): a page reconnects after a
    // backoff of half a second or more, and B's copy lags by milliseconds.
    while next_of(&mut bob, "news").await["item"]["id"] != general_missed {}

    // Her page reconnects, and the load balancer sends it to B this time.
    let (mut alice, general) = member_since(&b, &format!("/ws?since={general_cursor}")).await;
    assert_eq!(ids(&general), [general_missed]);
    assert!(general.get("reset").is_none());
    let rust = ask(
        &mut alice,
        json!({ "type": "join", "ref": 1, "room": "rust", "since": rust_cursor }),
    )
    .await;
    assert_eq!(ids(&rust), missed, "exactly the missed items, once each");
    assert!(rust.get("reset").is_none());

    // A cursor that no history vouches for (from before Redis lost
    // everything, say) resets.
    let reset = ask(
        &mut alice,
        json!({ "type": "join", "ref": 2, "room": "rust", "since": 5 }),
    )
    .await;
    assert_eq!(reset["reset"], true);
    assert_eq!(reset["items"].as_array().unwrap().len(), 3);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn every_server_keeps_the_same_history_edge() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    // Streams capped at three entries (`--history 3`).
    let prefix = prefix();
    let a = server(&redis.url, &prefix, 3).await;
    let (mut alice, _) = member(&a).await;
    join(&mut alice, "rust", 1).await;
    let mut posted = Vec::new();
    for i in 0..5 {
        posted.push(post(&mut alice, "rust", &format!("post {i}"), 10 + i).await);
    }
    // B starts after the posts, and reads the room from Redis.
    let b = server(&redis.url, &prefix, 3).await;
    let (mut bob, _) = member(&b).await;
    for socket in [&mut alice, &mut bob] {
        // The first two are gone: after the second, all is still there...
        let exact = ask(
            socket,
            json!({ "type": "join", "ref": 20, "room": "rust", "since": posted[1] }),
        )
        .await;
        assert_eq!(ids(&exact), posted[2..]);
        assert!(exact.get("reset").is_none());
        // ...but not after the first: a reset, never a silent gap.
        let reset = ask(
            socket,
            json!({ "type": "join", "ref": 21, "room": "rust", "since": posted[0] }),
        )
        .await;
        assert_eq!(reset["reset"], true);
        assert_eq!(ids(&reset), posted[2..]);
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn rooms_stay_apart_across_servers() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut alice, _) = member(&a).await; // general + rust, on A
    let (mut bob, _) = member(&b).await; // general only, on B
    let (mut carol, _) = member(&b).await; // general + go, on B
    join(&mut alice, "rust", 1).await;
    join(&mut carol, "go", 1).await;

    post(&mut alice, "rust", "for rust", 2).await;
    // Bob and Carol are not in `rust`: the next news they get is the one
    // posted to `general` afterwards.
    post(&mut carol, "general", "for all", 3).await;
    for socket in [&mut bob, &mut carol] {
        let news = next_of(socket, "news").await;
        assert_eq!(
            (news["room"].as_str(), news["item"]["title"].as_str()),
            (Some("general"), Some("for all"))
        );
    }
    let refused = ask(
        &mut bob,
        json!({ "type": "post", "ref": 4, "room": "rust", "title": "sneaky" }),
    )
    .await;
    assert_eq!(refused["message"], "Join the room before posting to it.");

    // Servers with another key prefix share the Redis, not the rooms.
    let elsewhere = server(&redis.url, &prefix(), 1_000).await;
    let (mut dave, general) = member(&elsewhere).await;
    assert_eq!(general["items"], json!([]));
    let rust = join(&mut dave, "rust", 1).await;
    assert_eq!(rust["items"], json!([]));
    a.stop().await;
    b.stop().await;
    elsewhere.stop().await;
}

#[tokio::test]
async fn presence_counts_members_on_every_server() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut alice, _) = member(&a).await;
    assert_eq!(join(&mut alice, "rust", 1).await["members"], 1);

    let (mut bob, _) = member(&b).await;
    assert_eq!(
        join(&mut bob, "rust", 1).await["members"],
        2,
        "alice counts"
    );
    assert_eq!(presence_in(&mut alice, "rust").await, 2, "bob counts");

    let left = ask(
        &mut bob,
        json!({ "type": "leave", "ref": 2, "room": "rust" }),
    )
    .await;
    assert_eq!(left, json!({ "type": "left", "ref": 2, "room": "rust" }));
    assert_eq!(presence_in(&mut alice, "rust").await, 1);

    join(&mut bob, "rust", 3).await;
    assert_eq!(presence_in(&mut alice, "rust").await, 2);
    drop(bob);
    assert_eq!(
        presence_in(&mut alice, "rust").await,
        1,
        "a vanished socket"
    );

    // A server that stops takes its members with it.
    let (mut carol, _) = member(&b).await;
    join(&mut carol, "rust", 1).await;
    assert_eq!(presence_in(&mut alice, "rust").await, 2);
    b.stop().await;
    assert_eq!(presence_in(&mut alice, "rust").await, 1, "server B stopped");
    a.stop().await;
}

#[tokio::test]
async fn attachments_travel_across_servers() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut alice, _) = member(&a).await;
    let (mut bob, _) = member(&b).await;
    join(&mut alice, "pics", 1).await;
    join(&mut bob, "pics", 1).await;
    let cursor = post(&mut bob, "pics", "before the picture", 2).await;

    let image = png(200 * 1024);
    let announce = json!({ "type": "post", "ref": 3, "room": "pics", "title": "A picture",
                           "attachment": { "mime": "image/png", "size": image.len() } });
    ws::send_json(&mut alice, announce).await;
    alice
        .send(Message::Binary(image.clone().into()))
        .await
        .unwrap();
    let posted = next_of(&mut alice, "posted").await;
    assert_eq!(posted["ref"], 3);
    // Alice is in the room too: her news, and her bytes.
    assert_eq!(
        next_of(&mut alice, "news").await["item"]["id"],
        posted["id"]
    );
    assert!(matches!(next_frame(&mut alice).await, Message::Binary(_)));

    // Bob, on the other server: the news, then the same bytes.
    let news = loop {
        let news = next_of(&mut bob, "news").await;
        if news["item"]["title"] == "A picture" {
            break news;
        }
    };
    assert_eq!(
        news["attachment"],
        json!({ "mime": "image/png", "size": image.len() })
    );
    match next_frame(&mut bob).await {
        Message::Binary(bytes) => assert_eq!(bytes.as_ref(), image.as_slice(), "the same bytes"),
        other => panic!("expected the image, got {other:?}"),
    }

    // A page that resumes later, on B, gets the item and its bytes again.
    let (mut carol, _) = member(&b).await;
    let joined = ask(
        &mut carol,
        json!({ "type": "join", "ref": 1, "room": "pics", "since": cursor }),
    )
    .await;
    assert_eq!(joined["items"][0]["title"], "A picture");
    assert_eq!(
        joined["attachments"],
        json!([{ "id": posted["id"], "mime": "image/png", "size": image.len() }])
    );
    match next_frame(&mut carol).await {
        Message::Binary(bytes) => assert_eq!(bytes.as_ref(), image.as_slice()),
        other => panic!("expected the image, got {other:?}"),
    }

    // Step 05's checks still come first: wrong bytes store nothing.
    let announce = json!({ "type": "post", "ref": 4, "room": "pics", "title": "x",
                           "attachment": { "mime": "image/png", "size": 100 } });
    ws::send_json(&mut alice, announce).await;
    alice
        .send(Message::Binary(vec![0; 100].into()))
        .await
        .unwrap();
    let refused = next_of(&mut alice, "error").await;
    assert_eq!(
        refused["message"],
        "Those bytes are not a image/png image. Nothing was stored."
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_room_keeps_its_newest_two_mib_of_images() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let prefix = prefix();
    let a = server(&redis.url, &prefix, 1_000).await;
    let (mut alice, _) = member(&a).await;
    let joined = join(&mut alice, "pics", 1).await;
    let cursor = joined["cursor"].as_u64().unwrap();
    // Nine images of 256 KiB: 2.25 MiB, a quarter more than a room keeps.
    let image = png(256 * 1024);
    let mut posted = Vec::new();
    for i in 0..9 {
        let announce = json!({ "type": "post", "ref": 10 + i, "room": "pics", "title": format!("image {i}"),
                               "attachment": { "mime": "image/png", "size": image.len() } });
        ws::send_json(&mut alice, announce).await;
        alice
            .send(Message::Binary(image.clone().into()))
            .await
            .unwrap();
        // Her `posted`, her own `news` and its bytes, in some order.
        let id = loop {
            if let Message::Text(text) = next_frame(&mut alice).await {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "posted" {
                    break message["id"].as_u64().unwrap();
                }
            }
        };
        posted.push(id);
    }
    // A server that reads the room from Redis now: nine items, and the
    // images of the newest eight; the oldest image went to make room.
    let b = server(&redis.url, &prefix, 1_000).await;
    let (mut bob, _) = member(&b).await;
    let joined = ask(
        &mut bob,
        json!({ "type": "join", "ref": 1, "room": "pics", "since": cursor }),
    )
    .await;
    assert_eq!(ids(&joined), posted);
    let attached: Vec<u64> = joined["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attachment| attachment["id"].as_u64().unwrap())
        .collect();
    assert_eq!(attached, posted[1..]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_admin_sees_the_rooms_of_every_server() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut bob, _) = member(&b).await;
    join(&mut bob, "go", 1).await;
    post(&mut bob, "go", "posted on B", 2).await;

    // An admin on A, which no socket of `go` ever reached.
    let mut admin = ws::connect(&a, &format!("/admin/ws?token={TOKEN}")).await;
    let rooms = ws::next_json(&mut admin).await;
    assert_eq!(rooms["type"], "rooms");
    let listed: Vec<(&str, u64)> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| {
            (
                room["name"].as_str().unwrap(),
                room["members"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("general", 1), ("go", 1)]);

    post(&mut bob, "go", "more from B", 3).await;
    let news = next_of(&mut admin, "news").await;
    assert_eq!(
        (news["room"].as_str(), news["item"]["title"].as_str()),
        (Some("go"), Some("more from B"))
    );

    let announced = ask(
        &mut admin,
        json!({ "type": "announce", "ref": "a1", "title": "Break in 5 minutes" }),
    )
    .await;
    assert_eq!(
        announced,
        json!({ "type": "announced", "ref": "a1", "rooms": 2 })
    );
    assert_eq!(
        announced_in(&mut bob, "Break in 5 minutes", 2).await,
        ["general", "go"]
    );
    a.stop().await;
    b.stop().await;
}

/// Reads until the server closes: the JSON messages before, and the code.
async fn until_closed(socket: &mut Socket) -> (Vec<Value>, CloseCode) {
    let mut messages = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server closes within 10 s");
        match message {
            Some(Ok(Message::Text(text))) => messages.push(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(Some(frame)))) => return (messages, frame.code),
            Some(Ok(_)) => continue,
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

/// Opens `/ws` once the server takes sockets again (it answers 503 while
/// Redis is away), as `rooms.js` does with its backoff.
async fn reconnect(server: &Running) -> (Socket, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut request = format!("ws://{}/ws", server.addr)
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", server.origin().parse().unwrap());
        let stream = TcpStream::connect(server.addr).await.unwrap();
        if let Ok((mut socket, _)) = tokio_tungstenite::client_async(request, stream).await {
            let joined = ws::next_json(&mut socket).await;
            return (socket, joined);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server takes sockets again within 10 s of Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_going_away_closes_sockets_refuses_posts_and_recovers() {
    let Some(mut redis) = RedisServer::own() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let (mut alice, _) = member(&a).await;
    let (mut bob, _) = member(&b).await;
    join(&mut alice, "rust", 1).await;
    join(&mut bob, "rust", 1).await;
    let before = post(&mut alice, "rust", "before the outage", 2).await;
    assert_eq!(next_of(&mut bob, "news").await["item"]["id"], before);

    // Redis crashes. Both servers stay up, and close their sockets with
    // 1013, "try again later"; a post sent just then is refused, or the
    // close comes first. Never acknowledged. (A server that has not yet
    // noticed sends it, and its connection breaks: it cannot tell whether
    // Redis ran it first, and says so.)
    redis.stop();
    let during = json!({ "type": "post", "ref": 3, "room": "rust", "title": "during the outage" });
    let _closing_already_is_fine = alice.send(Message::Text(during.to_string().into())).await;
    for socket in [&mut alice, &mut bob] {
        let (messages, code) = until_closed(socket).await;
        assert_eq!(code, CloseCode::Again);
        for message in messages {
            assert_ne!(message["type"], "posted", "{message}");
            if message["ref"] == 3 && message["outcome"] != "unknown" {
                assert_eq!(
                    message["message"],
                    "The news service is unavailable; nothing was stored."
                );
            }
        }
    }

    // Meanwhile new sockets are turned away, and so are posts over HTTP.
    let client = support::client();
    let upgrade = client
        .get(a.url("/ws"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("origin", a.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(upgrade.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(upgrade.headers()["retry-after"], "2");
    let refused = api::post_json(&b, r#"{"title":"during the outage"}"#).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(
        refused["error"],
        "The news service is unavailable; nothing was stored."
    );

    // Redis comes back (with its append-only file): each server notices by
    // itself, and takes sockets and posts again.
    redis.start();
    let (mut alice, general) = reconnect(&a).await;
    assert_eq!(general["items"], json!([]), "nothing reached general");
    let (mut bob, _) = reconnect(&b).await;
    let rust = ask(
        &mut bob,
        json!({ "type": "join", "ref": 1, "room": "rust", "since": before - 1 }),
    )
    .await;
    let titles: Vec<&str> = rust["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["before the outage"], "acknowledged, so kept");
    join(&mut alice, "rust", 1).await;
    let after = post(&mut alice, "rust", "after the outage", 2).await;
    assert!(after > before);
    assert_eq!(next_of(&mut bob, "news").await["item"]["id"], after);
    a.stop().await;
    b.stop().await;
}

/// `POST /news` as a script that gives its post a key, in the
/// `Idempotency-Key` header.
async fn post_with_key(server: &Running, title: &str, key: &str) -> reqwest::Response {
    support::client()
        .post(server.url("/news"))
        .header("content-type", "application/json")
        .header("origin", server.origin())
        .header("idempotency-key", key)
        .body(json!({ "title": title }).to_string())
        .send()
        .await
        .expect("the step answers")
}

/// `message` with some fields added or changed.
fn with(message: &Value, fields: Value) -> Value {
    let mut message = message.clone();
    for (name, value) in fields.as_object().expect("fields") {
        message[name] = value.clone();
    }
    message
}

/// The ids of a `joined`'s items titled `title`.
fn ids_titled(joined: &Value, title: &str) -> Vec<u64> {
    joined["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["title"] == title)
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

/// Redis stalls: it stops answering and its connections stay open (a
/// SIGSTOP here; a long fork, a swapping machine, a stalled network in
/// life). A post on its way then waits for an answer that comes too late
/// for the server (2 s), and Redis runs it when it wakes up. So the server
/// cannot say "nothing was stored": it says it does not know. The client
/// sends the same post with the same key once the server takes posts
/// again, and gets the id of the item Redis stored, which the room holds
/// once.
#[tokio::test]
async fn a_post_over_http_while_redis_stalls_is_unknown_and_its_retry_stored_once() {
    let Some(mut redis) = RedisServer::own() else {
        return;
    };
    let server = server(&redis.url, &prefix(), 1_000).await;
    // A first post loads `post.lua` into Redis, which then knows it by its
    // SHA-1 (`EVALSHA`), as it does after the first post in life.
    api::post(&server, "before the stall").await;
    let title = "posted while Redis stalls";
    redis.pause();
    let stalled = post_with_key(&server, title, "stall-over-http").await;
    redis.resume();
    assert_eq!(stalled.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after = stalled.headers().get("retry-after").cloned();
    let stalled: Value = stalled.json().await.unwrap();
    assert_eq!(stalled["outcome"], "unknown", "{stalled}");
    let error = stalled["error"].as_str().expect("an error");
    assert!(!error.contains("nothing was stored"), "{error}");
    assert!(retry_after.is_some(), "a 503 says when to try again");

    // Once the server takes sockets again (it has read its rooms from
    // Redis), the room holds the post: Redis ran it when it woke up. Sent
    // again with its key, it answers that item's id and stores nothing.
    let (_, general) = reconnect(&server).await;
    let stored = ids_titled(&general, title);
    assert_eq!(stored.len(), 1, "Redis ran the post when it woke up");
    let retried = post_with_key(&server, title, "stall-over-http").await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["id"], stored[0]);
    let (_, general) = member(&server).await;
    assert_eq!(ids_titled(&general, title), stored, "and nothing more");
    server.stop().await;
}

/// The same over a socket: the answer to the post says the outcome is
/// unknown; the socket then closes with 1013 (the server lost Redis for a
/// moment), and the page reconnects and sends the post again with its key.
#[tokio::test]
async fn a_post_over_a_socket_while_redis_stalls_is_unknown_and_its_retry_stored_once() {
    let Some(mut redis) = RedisServer::own() else {
        return;
    };
    let server = server(&redis.url, &prefix(), 1_000).await;
    let (mut socket, _) = member(&server).await;
    post(&mut socket, "general", "before the stall", 0).await;
    let title = "posted while Redis stalls";
    let post = json!({ "type": "post", "ref": 1, "room": "general", "title": title, "key": "stall-over-ws" });
    redis.pause();
    let stalled = ask(&mut socket, post.clone()).await;
    redis.resume();
    assert_eq!(stalled["type"], "error", "{stalled}");
    assert_eq!(stalled["outcome"], "unknown", "{stalled}");
    let message = stalled["message"].as_str().expect("a message");
    assert!(!message.contains("nothing was stored"), "{message}");
    let (_, code) = until_closed(&mut socket).await;
    assert_eq!(code, CloseCode::Again);

    let (mut socket, general) = reconnect(&server).await;
    let stored = ids_titled(&general, title);
    assert_eq!(stored.len(), 1, "Redis ran the post when it woke up");
    let retried = ask(&mut socket, with(&post, json!({ "ref": 2 }))).await;
    assert_eq!(retried["type"], "posted", "{retried}");
    assert_eq!(retried["id"], stored[0]);
    let (_, general) = member(&server).await;
    assert_eq!(ids_titled(&general, title), stored, "and nothing more");
    server.stop().await;
}

/// A `posted` can be lost on its way too (the connection drops): the page
/// sends the post again with its key, maybe to another server behind the
/// load balancer. The keys are in Redis, so any server answers the id of
/// the first post and stores nothing new. A new key is a new post, even
/// with the same words.
#[tokio::test]
async fn a_post_sent_again_with_its_key_is_stored_once() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let (a, b) = two_servers(&redis).await;
    let first = post_with_key(&a, "over HTTP", "key-over-http").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = post_with_key(&b, "over HTTP", "key-over-http").await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let (mut alice, _) = member(&a).await;
    let (mut bob, _) = member(&b).await;
    let post = json!({ "type": "post", "room": "general", "title": "over a socket", "key": "key-over-ws" });
    let posted = ask(&mut alice, with(&post, json!({ "ref": 1 }))).await;
    assert_eq!(posted["type"], "posted", "{posted}");
    let again = ask(&mut bob, with(&post, json!({ "ref": 1 }))).await;
    assert_eq!(again, posted);
    let other = ask(
        &mut alice,
        with(&post, json!({ "ref": 2, "key": "another-key" })),
    )
    .await;
    assert_eq!(other["type"], "posted", "{other}");
    assert_ne!(other["id"], posted["id"]);

    // A post with an image, sent again with its key and its image: stored
    // once too.
    let image = png(1024);
    let post = json!({ "type": "post", "ref": 4, "room": "pics", "title": "with an image",
                       "key": "key-with-image", "attachment": { "mime": "image/png", "size": image.len() } });
    join(&mut alice, "pics", 3).await;
    ws::send_json(&mut alice, post.clone()).await;
    alice
        .send(Message::Binary(image.clone().into()))
        .await
        .unwrap();
    let with_image = next_of(&mut alice, "posted").await;
    let pics = join(&mut bob, "pics", 3).await;
    assert_eq!(
        ids_titled(&pics, "with an image"),
        [with_image["id"].clone()]
    );
    assert!(matches!(next_frame(&mut bob).await, Message::Binary(_)));
    ws::send_json(&mut bob, post).await;
    bob.send(Message::Binary(image.into())).await.unwrap();
    assert_eq!(next_of(&mut bob, "posted").await, with_image);
    let (mut carol, _) = member(&a).await;
    let pics = join(&mut carol, "pics", 1).await;
    assert_eq!(
        ids_titled(&pics, "with an image"),
        [with_image["id"].clone()]
    );

    let (_, general) = member(&a).await;
    assert_eq!(ids_titled(&general, "over HTTP"), [first["id"].clone()]);
    assert_eq!(
        ids_titled(&general, "over a socket"),
        [posted["id"].clone(), other["id"].clone()]
    );
    a.stop().await;
    b.stop().await;
}

/// A key is 1 to 64 letters, digits, dashes and underscores (a UUID fits):
/// anything else is refused, over HTTP and over a socket, before anything
/// is stored.
#[tokio::test]
async fn a_key_that_is_not_a_key_is_refused() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let server = server(&redis.url, &prefix(), 1_000).await;
    for key in ["with spaces", &"k".repeat(65)] {
        let refused = post_with_key(&server, "a post", key).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{key}");
    }
    let (mut socket, _) = member(&server).await;
    for (reference, key) in [(1, json!("with spaces")), (2, json!("")), (3, json!(42))] {
        let refused = ask(
            &mut socket,
            json!({ "type": "post", "ref": reference, "room": "general", "title": "a post", "key": key }),
        )
        .await;
        assert_eq!(refused["type"], "error", "{refused}");
    }
    let (_, general) = member(&server).await;
    assert_eq!(general["items"], json!([]), "nothing was stored");
    server.stop().await;
}

#[tokio::test]
async fn without_redis_the_server_says_how_to_start_one() {
    // A port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = Options {
        redis: format!("redis://127.0.0.1:{port}"),
        ..Options::default()
    };
    let error = redis_rooms::run(listener, Feed::default(), options, Shutdown::new())
        .await
        .expect_err("no Redis, no server");
    assert_eq!(
        error.to_string(),
        format!(
            "06-redis: cannot reach Redis at redis://127.0.0.1:{port} (connection refused); \
             start one with `redis-server --port {port}` or pass --redis URL"
        )
    );
}

/// As in 05: `/echo` takes text up to 26 KiB, binary up to an attachment's
/// 256 KiB.
#[tokio::test]
async fn echo_has_the_limits_of_ws() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let server = server(&redis.url, &prefix(), 1_000).await;
    let mut echo = ws::echo(&server).await;
    let image = png(200 * 1024);
    echo.send(Message::Binary(image.clone().into()))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut echo).await, Message::Binary(image.into()));
    echo.send(Message::Text("x".repeat(MAX_POST_BYTES + 1).into()))
        .await
        .unwrap();
    assert_eq!(ws::close_code(&mut echo).await.0, CloseCode::Size);
    server.stop().await;
}

#[tokio::test]
async fn echo_sockets_count_and_hear_going_away() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let server = server(&redis.url, &prefix(), 1_000).await;
    let (member, _) = member(&server).await;
    let mut admin = ws::connect(&server, &format!("/admin/ws?token={TOKEN}")).await;
    ws::next_json(&mut admin).await;
    let echo = ws::echo(&server).await;
    assert_eq!(ws::sockets_open(&server).await, 3);
    ws::stopping_says_going_away(server, vec![member, admin, echo]).await;
}

/// As in 05: the client closes, and the server answers, on every kind of
/// socket.
#[tokio::test]
async fn the_server_answers_a_clients_close() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let server = server(&redis.url, &prefix(), 1_000).await;
    for path in ["/ws", "/echo", &format!("/admin/ws?token={TOKEN}")] {
        ws::client_closes_are_answered(&server, path).await;
    }
    server.stop().await;
}

/// As in 05: one limit per client address, whichever way it posts.
#[tokio::test]
async fn http_posts_count_against_the_socket_too() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let server = server(&redis.url, &prefix(), 1_000).await;
    for i in 0..20 {
        let post = json!({ "title": format!("over HTTP {i}") }).to_string();
        let response = api::post_json(&server, &post).await;
        assert_eq!(response.status(), StatusCode::CREATED, "post {i}");
    }
    let (mut socket, _) = member(&server).await;
    let refused = ask(
        &mut socket,
        json!({ "type": "post", "ref": 21, "room": "general", "title": "one too many" }),
    )
    .await;
    assert_eq!(refused["type"], "error", "{refused}");
    let message = refused["message"].as_str().expect("a message");
    assert!(message.starts_with("Too many posts"), "{message}");
    server.stop().await;
}

/// `post.lua` as step 06 calls it: KEYS are the room's stream and files,
/// the set of rooms and the attachments' total; ARGV the room, history,
/// max rooms, title, text, and for an attachment its type, bytes, the
/// room's limit and the overall limit.
async fn post_script(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    room: &str,
    max_rooms: usize,
    attachment: Option<(&[u8], usize)>,
) -> Vec<String> {
    let script = redis::Script::new(include_str!("../06-redis/src/post.lua"));
    let mut call = script.prepare_invoke();
    call.key(format!("{prefix}:room:{room}"))
        .key(format!("{prefix}:files:{room}"))
        .key(format!("{prefix}:rooms"))
        .key(format!("{prefix}:files"))
        .arg(room)
        .arg(100)
        .arg(max_rooms)
        .arg("a title")
        .arg("");
    if let Some((bytes, overall)) = attachment {
        call.arg("image/png").arg(bytes).arg(1_000_000).arg(overall);
    }
    call.invoke_async(redis).await.expect("the script runs")
}

#[tokio::test]
async fn a_full_redis_makes_way_for_new_rooms_and_new_images() {
    let Some(redis) = RedisServer::any() else {
        return;
    };
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = prefix();
    let count = async |connection: &mut redis::aio::MultiplexedConnection,
                       command: &str,
                       key: String|
           -> usize {
        redis::cmd(command)
            .arg(key)
            .query_async(connection)
            .await
            .unwrap()
    };

    // Two rooms at most: a third takes the place of the quietest room
    // nobody is in, history, images and all.
    let image = png(400);
    assert_eq!(
        post_script(&mut connection, &prefix, "a", 2, Some((&image, 1_000))).await[0],
        "posted"
    );
    assert_eq!(
        post_script(&mut connection, &prefix, "b", 2, None).await[0],
        "posted"
    );
    assert_eq!(
        post_script(&mut connection, &prefix, "c", 2, None).await[0],
        "posted"
    );
    let rooms: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{prefix}:rooms"))
        .query_async(&mut connection)
        .await
        .unwrap();
    let mut rooms = rooms;
    rooms.sort();
    assert_eq!(rooms, ["b", "c"]);
    assert_eq!(
        count(&mut connection, "XLEN", format!("{prefix}:room:a")).await,
        0
    );
    assert_eq!(
        count(&mut connection, "HLEN", format!("{prefix}:files:a")).await,
        0
    );
    let total: Option<usize> = redis::cmd("GET")
        .arg(format!("{prefix}:files"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(total.unwrap_or(0), 0, "#a's image no longer counts");

    // With someone in every room (their presence hashes exist), a new room
    // is refused and nothing changes.
    for room in ["b", "c"] {
        let _: () = redis::cmd("HSET")
            .arg(format!("{prefix}:presence:{room}"))
            .arg("server")
            .arg("1 99999999999999")
            .query_async(&mut connection)
            .await
            .unwrap();
    }
    assert_eq!(
        post_script(&mut connection, &prefix, "d", 2, None).await,
        ["refused", "rooms"]
    );
    assert_eq!(
        count(&mut connection, "XLEN", format!("{prefix}:room:d")).await,
        0
    );

    // Images past the overall limit (1,000 bytes here): the oldest of any
    // room go, and the new one is stored.
    for room in ["b", "c", "b"] {
        let answer = post_script(&mut connection, &prefix, room, 2, Some((&image, 1_000))).await;
        assert_eq!(answer[0], "posted", "{answer:?}");
    }
    let total: usize = redis::cmd("GET")
        .arg(format!("{prefix}:files"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(total, 800, "two images of 400 bytes are kept");
    assert_eq!(
        count(&mut connection, "HLEN", format!("{prefix}:files:b")).await,
        1,
        "b's first went"
    );
    assert_eq!(
        count(&mut connection, "HLEN", format!("{prefix}:files:c")).await,
        1
    );
    assert_eq!(
        count(&mut connection, "ZCARD", format!("{prefix}:files-order")).await,
        2
    );
}
