//! Speaking the rooms protocol of steps 05 and 06 as `rooms.js` does:
//! connect and read `general`'s `joined`, ask with a `ref` and wait for
//! its answer, pick messages by type, make a small real PNG.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::Running;
use super::ws;
use super::ws::Socket;

/// Connects to `/ws` and reads the `joined` for `general`.
pub async fn member(server: &Running) -> (Socket, Value) {
    member_since(server, "/ws").await
}

/// Connects to `path` (`/ws?since=N`) and reads the `joined` for `general`.
pub async fn member_since(server: &Running, path: &str) -> (Socket, Value) {
    let mut socket = ws::connect(server, path).await;
    let joined = ws::next_json(&mut socket).await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["room"], "general");
    (socket, joined)
}

/// Sends a message and returns the answer carrying its `ref`, skipping
/// anything else that arrives meanwhile (news, presence).
pub async fn ask(socket: &mut Socket, message: Value) -> Value {
    let reference = message["ref"].clone();
    ws::send_json(socket, message).await;
    loop {
        let answer = ws::next_json(socket).await;
        if answer["ref"] == reference {
            return answer;
        }
    }
}

/// The next message of a type, skipping others.
pub async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = ws::next_json(socket).await;
        if message["type"] == kind {
            return message;
        }
    }
}

/// The next frame, whatever it is (pings aside).
pub async fn next_frame(socket: &mut Socket) -> Message {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// Joins a room and returns its `joined`.
pub async fn join(socket: &mut Socket, room: &str, reference: u64) -> Value {
    let joined = ask(
        socket,
        json!({ "type": "join", "ref": reference, "room": room }),
    )
    .await;
    assert_eq!(joined["type"], "joined", "{joined}");
    joined
}

/// A tiny but real PNG: the signature, then bytes.
pub fn png(size: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..size - 8).map(|i| (i % 251) as u8));
    bytes
}

/// The rooms an announcement reached this socket in, sorted: its next
/// `count` news items titled `title`, skipping any other news.
pub async fn announced_in(socket: &mut Socket, title: &str, count: usize) -> Vec<String> {
    let mut rooms = Vec::new();
    while rooms.len() < count {
        let news = next_of(socket, "news").await;
        if news["item"]["title"] == title {
            rooms.push(news["room"].as_str().unwrap().to_owned());
        }
    }
    rooms.sort();
    rooms
}
