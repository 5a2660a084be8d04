//! Step 05: rooms, presence, acks, attachments and the admin namespace,
//! driven over WebSockets as `rooms.js` drives them.

mod support;

use futures_util::SinkExt;
use reqwest::StatusCode;
use rooms::Options;
use serde_json::json;
use shared::Feed;
use shared::news::MAX_POST_BYTES;
use support::Running;
use support::rooms::announced_in;
use support::rooms::ask;
use support::rooms::join;
use support::rooms::member;
use support::rooms::next_frame;
use support::rooms::next_of;
use support::rooms::png;
use support::ws;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const TOKEN: &str = "test-admin-token";

async fn start() -> Running {
    start_with(Options::default()).await
}

async fn start_with(options: Options) -> Running {
    let options = Options {
        admin_token: Some(TOKEN.into()),
        ..options
    };
    support::start_with_feed(
        Feed::starting_at(1_000, 0, support::fixed_clock),
        |listener, feed, shutdown| rooms::run(listener, feed, options, shutdown),
    )
    .await
}

#[tokio::test]
async fn the_page_uses_the_served_client_library() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let client = support::client();
    let page = support::page(server.url("/")).await;
    assert!(page.contains(r#"<script src="/rooms.js"></script>"#));
    assert!(page.contains(r#"type="file""#), "the form offers an image");
    insta::assert_snapshot!("05_page", support::markup(&page));

    let library = client.get(server.url("/rooms.js")).send().await.unwrap();
    assert_eq!(
        library.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(library.text().await.unwrap().contains("new WebSocket("));

    let admin = client.get(server.url("/admin")).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    assert!(
        admin
            .text()
            .await
            .unwrap()
            .contains("Announce to every room")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_protocol_transcript() {
    let _snapshots = support::snapshots();
    let server = start().await;
    let mut transcript = Vec::new();
    let (mut alice, joined) = member(&server).await;
    transcript.push(json!({ "alice receives": joined }));

    // Each message, and how many frames answer it (a post: its `posted`
    // and the `news` it becomes, in either order, so they are sorted).
    let messages = [
        (json!({ "type": "join", "ref": 1, "room": "rust" }), 1),
        (
            json!({ "type": "post", "ref": 2, "room": "rust", "title": "Rust 1.95", "body": "" }),
            2,
        ),
        (
            json!({ "type": "post", "ref": 3, "room": "rust", "title": "" }),
            1,
        ),
        (json!({ "type": "join", "ref": 4, "room": "Not A Room" }), 1),
        (json!({ "type": "leave", "ref": 5, "room": "rust" }), 1),
    ];
    for (message, answers) in messages {
        transcript.push(json!({ "alice sends": message.clone() }));
        ws::send_json(&mut alice, message).await;
        let mut received = Vec::new();
        for _ in 0..answers {
            received.push(ws::next_json(&mut alice).await);
        }
        received.sort_by_key(|answer| answer["type"].as_str().unwrap().to_owned());
        for answer in received {
            transcript.push(json!({ "alice receives": answer }));
        }
    }
    insta::assert_json_snapshot!("05_protocol_transcript", transcript);
    server.stop().await;
}

#[tokio::test]
async fn items_reach_their_room_and_nobody_else() {
    let server = start().await;
    let (mut alice, _) = member(&server).await; // general + rust
    let (mut bob, _) = member(&server).await; // general only
    let (mut carol, _) = member(&server).await; // general + go
    join(&mut alice, "rust", 1).await;
    join(&mut carol, "go", 1).await;

    let posted = ask(
        &mut alice,
        json!({ "type": "post", "ref": 2, "room": "rust", "title": "for rust" }),
    )
    .await;
    assert_eq!(posted["type"], "posted");
    let news = next_of(&mut alice, "news").await;
    assert_eq!(
        (news["room"].as_str(), news["item"]["title"].as_str()),
        (Some("rust"), Some("for rust"))
    );

    // Bob and Carol are not in `rust`: the next news they get is the one
    // posted to `general` afterwards.
    let general = ask(
        &mut carol,
        json!({ "type": "post", "ref": 3, "room": "general", "title": "for all" }),
    )
    .await;
    assert_eq!(general["type"], "posted");
    for socket in [&mut bob, &mut carol] {
        let news = next_of(socket, "news").await;
        assert_eq!(news["room"], "general");
        assert_eq!(news["item"]["title"], "for all");
    }
    let news = next_of(&mut alice, "news").await;
    assert_eq!(news["room"], "general", "alice is in general too");

    let refused = ask(
        &mut bob,
        json!({ "type": "post", "ref": 4, "room": "rust", "title": "sneaky" }),
    )
    .await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["message"], "Join the room before posting to it.");
    server.stop().await;
}

#[tokio::test]
async fn presence_follows_joins_leaves_and_disconnects() {
    let server = start().await;
    let (mut alice, _) = member(&server).await;
    let joined = join(&mut alice, "rust", 1).await;
    assert_eq!(joined["members"], 1);

    let (mut bob, _) = member(&server).await;
    let joined = join(&mut bob, "rust", 1).await;
    assert_eq!(joined["members"], 2);
    let presence = loop {
        let presence = next_of(&mut alice, "presence").await;
        if presence["room"] == "rust" {
            break presence;
        }
    };
    assert_eq!(presence["members"], 2);

    let left = ask(
        &mut bob,
        json!({ "type": "leave", "ref": 2, "room": "rust" }),
    )
    .await;
    assert_eq!(left, json!({ "type": "left", "ref": 2, "room": "rust" }));
    let presence = next_of(&mut alice, "presence").await;
    assert_eq!(
        (presence["room"].as_str(), presence["members"].as_u64()),
        (Some("rust"), Some(1))
    );

    join(&mut bob, "rust", 3).await;
    assert_eq!(next_of(&mut alice, "presence").await["members"], 2);
    drop(bob);
    let presence = loop {
        let presence = next_of(&mut alice, "presence").await;
        if presence["room"] == "rust" {
            break presence;
        }
    };
    assert_eq!(presence["members"], 1, "a vanished socket is counted out");
    server.stop().await;
}

#[tokio::test]
async fn a_reconnect_resumes_every_room_exactly() {
    let server = start().await;
    let (mut socket, general) = member(&server).await;
    let general_cursor = general["cursor"].as_u64().unwrap();
    let rust = join(&mut socket, "rust", 1).await;
    let rust_cursor = rust["cursor"].as_u64().unwrap();
    // Someone else stays in the room. (An empty room without history is
    // forgotten, and a new one by the same name is a new feed: an old
    // cursor would get a reset, as the end of this test shows.)
    let (mut other, _) = member(&server).await;
    join(&mut other, "rust", 1).await;
    socket.close(None).await.unwrap();

    // While away: two items in rust, one in general (over HTTP).
    let mut missed = Vec::new();
    for (i, title) in ["one", "two"].into_iter().enumerate() {
        let posted = ask(
            &mut other,
            json!({ "type": "post", "ref": 10 + i, "room": "rust", "title": title }),
        )
        .await;
        missed.push(posted["id"].as_u64().unwrap());
    }
    let general_missed = support::api::post(&server, "in general").await;

    let mut socket = ws::connect(&server, &format!("/ws?since={general_cursor}")).await;
    let general = ws::next_json(&mut socket).await;
    assert_eq!(general["room"], "general");
    let ids: Vec<u64> = general["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [general_missed]);

    let rust = ask(
        &mut socket,
        json!({ "type": "join", "ref": 1, "room": "rust", "since": rust_cursor }),
    )
    .await;
    let ids: Vec<u64> = rust["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, missed, "exactly the missed items, once each");
    assert!(rust.get("reset").is_none());

    // A cursor from another feed (a restarted server) resets.
    let reset = ask(
        &mut socket,
        json!({ "type": "join", "ref": 2, "room": "rust", "since": 5 }),
    )
    .await;
    assert_eq!(reset["reset"], true);
    server.stop().await;
}

#[tokio::test]
async fn room_limits_are_enforced_and_change_nothing() {
    let server = start_with(Options {
        max_rooms_per_socket: 3,
        max_rooms: 4,
        ..Options::default()
    })
    .await;
    let (mut socket, _) = member(&server).await;
    for (reference, name) in [
        "",
        "-dash",
        "UPPER",
        "way-too-long-a-name-for-any-room-at-all",
        "spa ce",
    ]
    .iter()
    .enumerate()
    {
        let answer = ask(
            &mut socket,
            json!({ "type": "join", "ref": reference, "room": name }),
        )
        .await;
        assert_eq!(answer["type"], "error", "{name:?}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap()
                .starts_with("Room names are")
        );
    }
    join(&mut socket, "a", 10).await;
    join(&mut socket, "b", 11).await;
    // general + a + b = 3 rooms: the limit per socket.
    let answer = ask(
        &mut socket,
        json!({ "type": "join", "ref": 12, "room": "c" }),
    )
    .await;
    assert_eq!(answer["message"], "A socket may be in at most 3 rooms.");

    // The server holds general, a, b; a second socket makes the fourth...
    let (mut other, _) = member(&server).await;
    join(&mut other, "c", 1).await;
    // ...and a fifth is refused, since someone is in each of them.
    let answer = ask(&mut other, json!({ "type": "join", "ref": 2, "room": "d" })).await;
    assert_eq!(
        answer["message"],
        "This server already has 4 rooms, its limit, and someone is in each."
    );
    server.stop().await;
}

#[tokio::test]
async fn a_message_is_a_json_object_and_nothing_else() {
    let server = start().await;
    let (mut socket, _) = member(&server).await;
    for text in [r#"["join","lobby"]"#, r#""join""#, "42", "null"] {
        ws::send_json(&mut socket, serde_json::from_str(text).unwrap()).await;
        let error = next_of(&mut socket, "error").await;
        assert_eq!(
            error["message"], "That message is not a JSON object.",
            "{text}"
        );
    }
    // The socket is still open, and in no room but general.
    let joined = join(&mut socket, "rust", 1).await;
    assert_eq!(joined["room"], "rust");
    server.stop().await;
}

#[tokio::test]
async fn a_flood_of_rooms_makes_way_instead_of_locking_new_ones_out() {
    // Three rooms at most: general and two more.
    let server = start_with(Options {
        max_rooms: 3,
        ..Options::default()
    })
    .await;
    let (mut flooder, _) = member(&server).await;
    // One client posts once in each of many rooms, and leaves each: every
    // new room pushes out the quietest room nobody is in.
    for (n, room) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
        let reference = 10 * n as u64;
        join(&mut flooder, room, reference).await;
        let posted = ask(
            &mut flooder,
            json!({ "type": "post", "ref": reference + 1, "room": room, "title": room }),
        )
        .await;
        assert_eq!(posted["type"], "posted", "{posted}");
        let left = ask(
            &mut flooder,
            json!({ "type": "leave", "ref": reference + 2, "room": room }),
        )
        .await;
        assert_eq!(left["type"], "left");
    }
    // Someone else still gets a room of their own, and it works.
    let (mut alice, _) = member(&server).await;
    join(&mut alice, "rust", 1).await;
    let posted = ask(
        &mut alice,
        json!({ "type": "post", "ref": 2, "room": "rust", "title": "still here" }),
    )
    .await;
    assert_eq!(posted["type"], "posted", "{posted}");
    // The rooms that were made way for are gone, history and all.
    let (mut bob, _) = member(&server).await;
    let answer = ask(&mut bob, json!({ "type": "join", "ref": 1, "room": "a" })).await;
    assert_eq!(answer["type"], "joined", "{answer}");
    assert_eq!(answer["items"], json!([]), "#a was forgotten");
    server.stop().await;
}

#[tokio::test]
async fn an_attachment_travels_byte_for_byte_and_resumes() {
    let server = start().await;
    let (mut alice, _) = member(&server).await;
    let (mut bob, _) = member(&server).await;
    join(&mut alice, "pics", 1).await;
    let joined = join(&mut bob, "pics", 1).await;
    let cursor = joined["cursor"].as_u64().unwrap();

    let image = png(200 * 1024);
    let post = json!({ "type": "post", "ref": 2, "room": "pics", "title": "A picture",
                       "attachment": { "mime": "image/png", "size": image.len() } });
    ws::send_json(&mut alice, post).await;
    alice
        .send(Message::Binary(image.clone().into()))
        .await
        .unwrap();
    let posted = next_of(&mut alice, "posted").await;
    assert_eq!(posted["ref"], 2);

    let news = next_of(&mut bob, "news").await;
    assert_eq!(
        news["attachment"],
        json!({ "mime": "image/png", "size": image.len() })
    );
    match next_frame(&mut bob).await {
        Message::Binary(bytes) => assert_eq!(bytes.as_ref(), image.as_slice(), "the same bytes"),
        other => panic!("expected the image, got {other:?}"),
    }

    // A member that comes back later gets the item and its bytes again.
    let mut carol = ws::connect(&server, "/ws").await;
    ws::next_json(&mut carol).await;
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
    server.stop().await;
}

/// The page gives every post a random `key` (step 06 stores a post sent
/// again with its key once). Step 05 answers every post the moment it is
/// stored in memory, never "outcome unknown", so it takes the key and
/// does without it.
#[tokio::test]
async fn a_post_with_a_key_is_stored() {
    let server = start().await;
    let (mut alice, _) = member(&server).await;
    let posted = ask(
        &mut alice,
        json!({ "type": "post", "ref": 1, "room": "general", "title": "with a key", "key": "0f6e3c2a9b" }),
    )
    .await;
    assert_eq!(posted["type"], "posted", "{posted}");
    let image = png(1024);
    let post = json!({ "type": "post", "ref": 2, "room": "general", "title": "an image with a key",
                       "key": "1a2b3c4d5e", "attachment": { "mime": "image/png", "size": image.len() } });
    ws::send_json(&mut alice, post).await;
    alice.send(Message::Binary(image.into())).await.unwrap();
    let posted = next_of(&mut alice, "posted").await;
    assert_eq!(posted["ref"], 2);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_attachment_is_refused_and_nothing_is_stored() {
    let server = start().await;
    let (mut socket, _) = member(&server).await;
    join(&mut socket, "pics", 1).await;
    let announce = |reference: u64, mime: &str, size: usize| {
        json!({ "type": "post", "ref": reference, "room": "pics", "title": "x",
                "attachment": { "mime": mime, "size": size } })
    };

    let answer = ask(&mut socket, announce(2, "image/svg+xml", 100)).await;
    assert_eq!(
        answer["message"],
        "Attachments must be PNG, JPEG, GIF or WebP images."
    );
    let answer = ask(&mut socket, announce(3, "image/png", 300 * 1024)).await;
    assert_eq!(
        answer["message"],
        "Attachments must be between 1 byte and 256 KiB."
    );

    // Announced 100 bytes, sent 99.
    ws::send_json(&mut socket, announce(4, "image/png", 100)).await;
    socket.send(Message::Binary(png(99).into())).await.unwrap();
    let answer = next_of(&mut socket, "error").await;
    assert_eq!(
        (answer["ref"].as_u64(), answer["message"].as_str()),
        (
            Some(4),
            Some("The attachment was announced as 100 bytes but 99 arrived. Nothing was stored.")
        )
    );

    // Said PNG, sent something else.
    ws::send_json(&mut socket, announce(5, "image/png", 100)).await;
    socket
        .send(Message::Binary(vec![0; 100].into()))
        .await
        .unwrap();
    let answer = next_of(&mut socket, "error").await;
    assert_eq!(
        answer["message"],
        "Those bytes are not a image/png image. Nothing was stored."
    );

    // Announced, but the next frame is text: the post is dropped.
    ws::send_json(&mut socket, announce(6, "image/png", 100)).await;
    ws::send_json(
        &mut socket,
        json!({ "type": "join", "ref": 7, "room": "other" }),
    )
    .await;
    let answer = next_of(&mut socket, "error").await;
    assert_eq!(answer["ref"], 6);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("The attachment must come right after its post")
    );

    // A binary frame nobody announced.
    socket.send(Message::Binary(png(100).into())).await.unwrap();
    let answer = next_of(&mut socket, "error").await;
    assert_eq!(
        answer["message"],
        "A binary frame must follow a post that announces it as an attachment."
    );

    // Nothing reached the room.
    let (mut other, _) = member(&server).await;
    let joined = join(&mut other, "pics", 1).await;
    assert_eq!(joined["items"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn the_admin_namespace_needs_its_token() {
    let server = start().await;
    let client = support::client();
    for path in [
        "/admin/ws",
        "/admin/ws?token=wrong",
        "/admin/ws?token=test-admin-token-but-longer",
    ] {
        let response = client
            .get(server.url(path))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("origin", server.origin())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_admin_sees_every_room_and_announces_to_all() {
    let server = start().await;
    let (mut alice, _) = member(&server).await;
    join(&mut alice, "rust", 1).await;
    let (mut bob, _) = member(&server).await;
    join(&mut bob, "go", 1).await;

    let mut admin = ws::connect(&server, &format!("/admin/ws?token={TOKEN}")).await;
    let rooms = ws::next_json(&mut admin).await;
    assert_eq!(
        rooms,
        json!({ "type": "rooms", "rooms": [
            { "name": "general", "members": 2, "cursor": 0 },
            { "name": "go", "members": 1, "cursor": rooms["rooms"][1]["cursor"] },
            { "name": "rust", "members": 1, "cursor": rooms["rooms"][2]["cursor"] },
        ]})
    );

    ask(
        &mut alice,
        json!({ "type": "post", "ref": 2, "room": "rust", "title": "rusty" }),
    )
    .await;
    let news = next_of(&mut admin, "news").await;
    assert_eq!(
        (news["room"].as_str(), news["item"]["title"].as_str()),
        (Some("rust"), Some("rusty"))
    );
    support::api::post(&server, "over HTTP").await;
    let news = next_of(&mut admin, "news").await;
    assert_eq!(
        (news["room"].as_str(), news["item"]["title"].as_str()),
        (Some("general"), Some("over HTTP"))
    );

    let announced = ask(
        &mut admin,
        json!({ "type": "announce", "ref": "a1", "title": "Break in 5 minutes" }),
    )
    .await;
    assert_eq!(
        announced,
        json!({ "type": "announced", "ref": "a1", "rooms": 3 })
    );
    for (socket, rooms) in [
        (&mut alice, ["general", "rust"]),
        (&mut bob, ["general", "go"]),
    ] {
        assert_eq!(announced_in(socket, "Break in 5 minutes", 2).await, rooms);
    }

    // Ordinary sockets cannot announce.
    let refused = ask(
        &mut alice,
        json!({ "type": "announce", "ref": 9, "title": "me too" }),
    )
    .await;
    assert_eq!(
        refused["message"],
        "Announcements belong to the admin namespace."
    );
    server.stop().await;
}

#[tokio::test]
async fn the_admin_connects_with_its_token() {
    // (The request line is logged with the token hidden: `hide_tokens` in
    // shared/src/http.rs, unit-tested there.)
    let server = start().await;
    let mut request = format!("ws://{}/admin/ws?token={TOKEN}", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", server.origin().parse().unwrap());
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut admin, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(ws::next_json(&mut admin).await["type"], "rooms");
    server.stop().await;
}

/// 120 emoji and 2,000 more are a valid post: it is stored whichever way
/// it comes, by form, by script or on the socket, with its characters
/// escaped in the JSON or not. A text message at the limit is still read;
/// one byte past it closes the socket with 1009. (Attachments come in
/// binary frames, and may be larger: up to 256 KiB.)
#[tokio::test]
async fn the_largest_valid_post_is_stored_every_way() {
    let server = start().await;
    support::api::the_largest_form_post_is_stored(&server).await;
    support::api::the_largest_json_post_is_stored(&server).await;

    let (mut socket, _) = member(&server).await;
    let mut reference = 0;
    for (title, body) in support::largest_valid_posts() {
        for escaped in [true, false] {
            reference += 1;
            let fields = json!({ "type": "post", "ref": reference, "room": "general" });
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
    assert_eq!(
        next_of(&mut socket, "error").await["message"],
        "That message is not a JSON object."
    );
    let past_the_limit = "x".repeat(MAX_POST_BYTES + 1);
    socket
        .send(Message::Text(past_the_limit.into()))
        .await
        .unwrap();
    assert_eq!(
        ws::close_code(&mut socket).await,
        (
            tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Size,
            "text messages are limited to 26 KiB".into()
        )
    );
    assert_eq!(server.feed.cursor(), cursor, "nothing else was stored");
    server.stop().await;
}

/// As in 04 (RFC 6455, 7.1): the server reads on after its close frame
/// until the client's own, so that the connection ends cleanly even with
/// the client's messages still unread.
#[tokio::test]
async fn the_server_finishes_the_closing_handshake() {
    let server = start().await;
    let (mut socket, _) = member(&server).await;
    socket
        .feed(Message::Text("x".repeat(MAX_POST_BYTES + 1).into()))
        .await
        .unwrap();
    for _ in 0..20 {
        let post = json!({ "type": "post", "room": "general", "title": "x".repeat(1000) });
        socket
            .feed(Message::Text(post.to_string().into()))
            .await
            .unwrap();
    }
    socket.flush().await.unwrap();
    assert_eq!(
        ws::close_code(&mut socket).await.0,
        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Size
    );
    ws::ends_cleanly(&mut socket).await;
    assert_eq!(
        server.feed.cursor(),
        0,
        "nothing after the long text was stored"
    );
    server.stop().await;
}

/// `/echo` takes what `/ws` takes: text up to 26 KiB, binary up to an
/// attachment's 256 KiB.
#[tokio::test]
async fn echo_has_the_limits_of_ws() {
    let server = start().await;
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

    let mut echo = ws::echo(&server).await;
    echo.send(Message::Binary(png(257 * 1024).into()))
        .await
        .unwrap();
    assert_eq!(ws::close_code(&mut echo).await.0, CloseCode::Size);
    server.stop().await;
}

#[tokio::test]
async fn echo_sockets_count_and_hear_going_away() {
    let server = start().await;
    let (member, _) = member(&server).await;
    let mut admin = ws::connect(&server, &format!("/admin/ws?token={TOKEN}")).await;
    ws::next_json(&mut admin).await;
    let echo = ws::echo(&server).await;
    assert_eq!(ws::sockets_open(&server).await, 3);
    ws::stopping_says_going_away(server, vec![member, admin, echo]).await;
}

/// The other way round: the client closes, and the server answers, on
/// every kind of socket.
#[tokio::test]
async fn the_server_answers_a_clients_close() {
    let server = start().await;
    for path in ["/ws", "/echo", &format!("/admin/ws?token={TOKEN}")] {
        ws::client_closes_are_answered(&server, path).await;
    }
    server.stop().await;
}

/// One limit per client address: posts over HTTP count against its
/// sockets too.
#[tokio::test]
async fn http_posts_count_against_the_socket_too() {
    let server = start().await;
    for i in 0..20 {
        let post = json!({ "title": format!("over HTTP {i}") }).to_string();
        let response = support::api::post_json(&server, &post).await;
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
    assert_eq!(server.feed.cursor(), 20, "nothing more was stored");
    server.stop().await;
}
