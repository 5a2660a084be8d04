//! The checks of step 06's exercises: sockets on a server whose rooms live
//! in a Redis of the check's own (`redis-server` on a free port, removed
//! at the end).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use serde_json::json;

use super::Checked;
use super::Failure;
use super::Running;
use super::wrong;
use super::ws::Socket;
use super::ws::connect;
use super::ws::next_of_type;
use super::ws::next_of_types;
use super::ws::send;

/// A `redis-server` of the check's own; stopped when dropped.
struct Redis {
    url: String,
    process: Child,
    dir: PathBuf,
}

impl Redis {
    async fn start() -> Result<Redis, Failure> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| Failure::CannotRun(format!("no free port: {error}")))?
            .port();
        let dir = std::env::temp_dir().join(format!("workshop-check-redis-{port}"));
        let _ = std::fs::create_dir_all(&dir);
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| {
                Failure::CannotRun(format!(
                    "redis-server cannot start ({error}); step 06 keeps its rooms in Redis \
                     (on Debian: sudo apt-get install redis-server)"
                ))
            })?;
        let redis = Redis {
            url: format!("redis://127.0.0.1:{port}"),
            process,
            dir,
        };
        let answers = super::within(Duration::from_secs(10), async || {
            redis_rooms::redis_answers(&redis.url).await.is_ok()
        })
        .await;
        if !answers {
            return Err(Failure::CannotRun(
                "redis-server did not answer in 10 s".into(),
            ));
        }
        Ok(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(redis: &Redis) -> Result<Running, Failure> {
    let options = redis_rooms::Options {
        redis: redis.url.clone(),
        ..Default::default()
    };
    super::start(|listener, feed, shutdown| redis_rooms::run(listener, feed, options, shutdown))
        .await
}

/// Posts in `general` with a key; the answer to it (`posted` or `error`).
async fn post(
    socket: &mut Socket,
    reference: u64,
    key: &str,
    title: &str,
) -> Result<Value, Failure> {
    let message = json!({
        "type": "post", "ref": reference, "room": "general",
        "title": title, "body": "Posted by the check.", "key": key,
    });
    send(socket, message).await?;
    let limit = Duration::from_secs(5);
    loop {
        match next_of_types(socket, &["posted", "error"], limit).await? {
            Some(answer) if answer["ref"] == reference => return Ok(answer),
            Some(_) => continue,
            None => return wrong(format!("a post got no answer within {} s", limit.as_secs())),
        }
    }
}

/// `06-key-reuse`: a post sent again with its key is stored once, but a
/// key sent with other words is refused, not taken for the first post.
pub async fn key_reuse() -> Checked {
    let redis = Redis::start().await?;
    let step = start(&redis).await?;
    let mut socket = connect(&step, "/ws").await?;
    next_of_type(&mut socket, "joined", Duration::from_secs(5)).await?;

    let first = post(&mut socket, 1, "check-key-1", "The first post").await?;
    let Some(id) = first["id"].as_u64().filter(|_| first["type"] == "posted") else {
        return wrong(format!("a post with a key was answered {first}"));
    };
    let again = post(&mut socket, 2, "check-key-1", "The first post").await?;
    if again["type"] != "posted" || again["id"] != id {
        return wrong(format!(
            "the same post sent again with its key was answered {again}; it should be the \
             first answer again, posted with id {id}"
        ));
    }
    let other = post(&mut socket, 3, "check-key-1", "Another post").await?;
    if other["type"] == "posted" {
        return wrong(format!(
            "another post sent with the first post's key was answered {other}: the page \
             believes its words were stored as item {id}, and they were not"
        ));
    }
    step.stop().await;
    Ok(format!(
        "the same post sent again with its key: posted, id {id} again; other words with that \
         key: {other}"
    ))
}

/// `06-rooms-list`: `GET /rooms` lists every room with news, wherever it
/// was posted: asked on one server, it names a room posted on another.
pub async fn rooms_list() -> Checked {
    let redis = Redis::start().await?;
    let first = start(&redis).await?;
    let second = start(&redis).await?;
    let mut socket = connect(&first, "/ws").await?;
    let limit = Duration::from_secs(5);
    next_of_type(&mut socket, "joined", limit).await?;
    send(
        &mut socket,
        json!({ "type": "join", "ref": 1, "room": "rust" }),
    )
    .await?;
    next_of_type(&mut socket, "joined", limit).await?;
    for (reference, room) in [(2, "general"), (3, "rust")] {
        let message = json!({
            "type": "post", "ref": reference, "room": room,
            "title": "Listed", "body": "Posted by the check.",
        });
        send(&mut socket, message).await?;
        if next_of_type(&mut socket, "posted", limit).await?.is_none() {
            return wrong(format!("a post in {room} was not answered posted"));
        }
    }
    let response = super::client()
        .get(second.url("/rooms"))
        .send()
        .await
        .map_err(super::unanswered("GET /rooms"))?;
    let status = response.status();
    let answer: Option<Value> = response.json().await.ok();
    let rooms = answer
        .as_ref()
        .and_then(|answer| answer["rooms"].as_array());
    let Some(rooms) = rooms else {
        return wrong(format!(
            "GET /rooms on the second server answered {status} without a JSON \
             {{\"rooms\":[...]}}"
        ));
    };
    let mut rooms: Vec<&str> = rooms.iter().filter_map(Value::as_str).collect();
    rooms.sort();
    if rooms != ["general", "rust"] {
        return wrong(format!(
            "news was posted in general and rust on the first server, and GET /rooms on the \
             second says {rooms:?}"
        ));
    }
    first.stop().await;
    second.stop().await;
    Ok("posts in general and rust on one server; GET /rooms on the other: [general, rust]".into())
}
