//! What step 06 says to Redis, where the rooms live now that more than one
//! server serves them: its keys, posting, loading a room, presence. Reading
//! the rooms' streams is in `streams.rs`; telling whether Redis answers, in
//! `health.rs` (both add methods to [`Store`]).
//!
//! | Key (`--redis-prefix`, `workshop` by default) | Type | Holds |
//! | --- | --- | --- |
//! | `workshop:room:NAME` | stream | the room's history, `MAXLEN` = `--history` |
//! | `workshop:files:NAME` | hash | the room's attachments: item id → bytes |
//! | `workshop:files` | string | the bytes of every attachment together |
//! | `workshop:rooms` | set | every room that has news |
//! | `workshop:presence:NAME` | hash | server → its members in the room, and until when that holds |
//! | `workshop:posted:NAME:KEY` | string | the id and time of the post sent with this key, for 5 minutes |
//!
//! A stream entry is one item: its id is `ID-0`, where `ID` is the item's
//! id, and its fields are `title`, `body`, `at` (microseconds since 1970)
//! and, for an attachment, `mime` and `size`. So a cursor is a stream id:
//! "what came after 41" is `XRANGE room:rust (41-0 +`, or, to wait for it,
//! `XREAD BLOCK 1000 STREAMS room:rust 41-0`.
//!
//! A post may carry a key of its client's choosing (a random one per post):
//! `post.lua` remembers what it stored under each key for five minutes,
//! and a post sent again with the same key gets the same answer instead of
//! being stored again. That is what makes sending a post again safe when
//! its answer was lost, or said that nobody knows whether it was stored.
//!
//! Each server holds two connections: one for commands (posts, loading a
//! room, presence) that reconnects by itself, and one for the reader,
//! whose `XREAD` waits up to a second for news and would hold up every
//! command queued behind it on a shared connection.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use redis::Client;
use redis::ConnectionAddr;
use redis::RedisError;
use redis::RedisResult;
use redis::Script;
use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use redis::streams::StreamRangeReply;
use shared::news::NewPost;
use shared::news::NewsItem;
use tokio::sync::watch;

use crate::attachments::Attachment;
use crate::refusal::Refusal;
use crate::refusal::failed;
use crate::streams::Entry;
use crate::streams::micros;

/// Redis, as this server sees it. Shared by every task (`Arc`). Its
/// methods are here, in `streams.rs` and in `health.rs`.
pub struct Store {
    /// Opens the reader's connection.
    pub client: Client,
    /// Posts, loading a room, presence. A multiplexed connection: every task
    /// sends on it at once, and the answers come back in order.
    pub commands: ConnectionManager,
    /// `redis://127.0.0.1:6379`, for messages.
    pub url: String,
    /// Every key starts with this and a colon.
    pub prefix: String,
    /// This server in the presence hashes: random, new at every start.
    pub server: String,
    /// What Redis may hold for this server's rooms.
    pub limits: Limits,
    /// Does Redis answer? Every socket watches it: any change closes it.
    pub up: watch::Sender<bool>,
    /// The reader's connection id, for `CLIENT UNBLOCK`; 0 while it has none.
    pub reader: AtomicI64,
    pub post: Script,
    pub presence: Script,
}

/// What Redis may hold, as the step sets it: `post.lua` keeps to it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How many entries each stream keeps (`--history`).
    pub history: usize,
    /// How many rooms may have news (`--max-rooms`).
    pub max_rooms: usize,
    /// The bytes of attachments one room keeps, and all rooms together.
    pub room_attachments: usize,
    pub all_attachments: usize,
}

impl Store {
    /// Connects, or says in one line why not (see also [`how_to_start`]).
    pub async fn connect(url: &str, prefix: &str, limits: Limits) -> Result<Arc<Store>, String> {
        let client =
            Client::open(url).map_err(|error| format!("{url} is not a Redis URL ({error})"))?;
        let cannot = |error: RedisError| {
            let reason = if error.is_connection_refusal() {
                "connection refused".to_owned()
            } else {
                error.to_string()
            };
            format!("cannot reach Redis at {url} ({reason})")
        };
        // Fail fast: a request made while Redis is away waits for one quick
        // reconnection attempt, not a long series of them, so that a post
        // is refused in well under a second.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let mut commands = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(cannot)?;
        redis::cmd("PING")
            .query_async::<()>(&mut commands)
            .await
            .map_err(cannot)?;
        Ok(Arc::new(Store {
            client,
            commands,
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            server: shared::token::random()[..12].to_owned(),
            limits: Limits {
                history: limits.history.max(1),
                ..limits
            },
            up: watch::Sender::new(true),
            reader: AtomicI64::new(0),
            post: Script::new(include_str!("post.lua")),
            presence: Script::new(include_str!("presence.lua")),
        }))
    }

    /// `workshop:room:rust`, `workshop:rooms`, ...
    pub fn key(&self, kind: &str, room: Option<&str>) -> String {
        match room {
            Some(room) => format!("{}:{kind}:{room}", self.prefix),
            None => format!("{}:{kind}", self.prefix),
        }
    }

    /// `PING`: does Redis answer now?
    pub async fn ping(&self) -> RedisResult<()> {
        let mut commands = self.commands.clone();
        self.check(redis::cmd("PING").query_async(&mut commands).await)
    }

    /// Stores a post (with its attachment) at the end of a room's stream.
    /// Once this answers, the post is in Redis: that is when it may be
    /// acknowledged, and not a moment before.
    ///
    /// With a `key` (one that `protocol::is_post_key` passed), a post already stored with
    /// that key in the last five minutes is not stored again: the answer
    /// has the id and time of the one stored the first time.
    pub async fn post(
        &self,
        room: &str,
        post: &NewPost,
        key: Option<&str>,
        attachment: Option<&Attachment>,
    ) -> Result<NewsItem, Refusal> {
        // Known to be away: the post is not even sent, so "nothing was
        // stored" is certain.
        if !self.is_up() {
            return Err(Refusal::Unavailable);
        }
        let mut call = self.post.prepare_invoke();
        call.key(self.key("room", Some(room)))
            .key(self.key("files", Some(room)))
            .key(self.key("rooms", None))
            .key(self.key("files", None));
        if let Some(key) = key {
            call.key(self.key("posted", Some(&format!("{room}:{key}"))));
        }
        call.arg(room)
            .arg(self.limits.history)
            .arg(self.limits.max_rooms)
            .arg(&post.title)
            .arg(&post.body);
        if let Some(attachment) = attachment {
            call.arg(attachment.mime)
                .arg(attachment.bytes.as_ref())
                .arg(self.limits.room_attachments)
                .arg(self.limits.all_attachments);
        }
        let mut commands = self.commands.clone();
        let answer: Vec<String> = self
            .check(call.invoke_async(&mut commands).await)
            .map_err(|error| failed(&error, key))?;
        answered(&answer, room, post, key)
    }

    /// The end of a room's history, oldest first, and the id this server's
    /// copy of the room starts after: the one just before its first entry
    /// (what `MAXLEN` dropped, or the room's start), or for a room without
    /// news the clock, as for step 05's new rooms. The room's first id will
    /// be above it (`post.lua`), and a cursor from before, below: a reset.
    pub async fn load(&self, room: &str) -> RedisResult<(u64, Vec<Entry>)> {
        let mut commands = self.commands.clone();
        // MULTI ... EXEC: the clock and the entries at the same instant, with
        // no post in between.
        let ((seconds, micros), newest): ((u64, u64), StreamRangeReply) = self.check(
            redis::pipe()
                .atomic()
                .cmd("TIME")
                .cmd("XREVRANGE")
                .arg(self.key("room", Some(room)))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(self.limits.history)
                .query_async(&mut commands)
                .await,
        )?;
        let mut entries = self.entries(&mut commands, room, newest.ids).await?;
        entries.reverse();
        let floor = entries
            .first()
            .map_or(seconds * 1_000_000 + micros, |entry| entry.item.id - 1);
        Ok((floor, entries))
    }

    /// Every room that has news, for the admin namespace.
    pub async fn rooms(&self) -> RedisResult<Vec<String>> {
        let mut commands = self.commands.clone();
        self.check(
            redis::cmd("SMEMBERS")
                .arg(self.key("rooms", None))
                .query_async(&mut commands)
                .await,
        )
    }

    /// Says how many of this server's sockets are in each room (they count
    /// for `lasts`, unless said again), and answers the totals over every
    /// server.
    pub async fn count(&self, here: &[(&str, usize)], lasts: Duration) -> RedisResult<Vec<usize>> {
        if here.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.presence.prepare_invoke();
        for (room, _) in here {
            call.key(self.key("presence", Some(room)));
        }
        call.arg(&self.server).arg(lasts.as_millis() as u64);
        for (_, members) in here {
            call.arg(*members);
        }
        let mut commands = self.commands.clone();
        self.check(call.invoke_async(&mut commands).await)
    }
}

/// How to start a Redis where `url` points: `redis-server --port 6379`.
pub fn how_to_start(url: &str) -> String {
    let port = match Client::open(url).map(|client| client.get_connection_info().addr().clone()) {
        Ok(ConnectionAddr::Tcp(_, port)) => port,
        _ => 6379,
    };
    format!("start one with `redis-server --port {port}`")
}

/// What `post.lua` answered: the item stored (now, or the first time with
/// this key), or why it was not.
fn answered(
    answer: &[String],
    room: &str,
    post: &NewPost,
    key: Option<&str>,
) -> Result<NewsItem, Refusal> {
    match answer {
        [posted, id, at] if posted == "posted" || posted == "again" => {
            if posted == "again" {
                tracing::info!(
                    "{room}: a post sent again with its key is item {id}, stored before"
                );
            }
            Ok(NewsItem {
                id: id.parse().map_err(|_| Refusal::Unknown {
                    keyed: key.is_some(),
                })?,
                title: post.title.clone(),
                body: post.body.clone(),
                posted_at: micros(at),
            })
        }
        [refused, why] if refused == "refused" && why == "rooms" => Err(Refusal::Rooms),
        // An answer this server does not know (a newer post.lua?): say
        // what it is, and that nobody can tell what became of the post.
        other => {
            tracing::error!(?other, "post.lua gave an answer this server does not know");
            Err(Refusal::Unknown {
                keyed: key.is_some(),
            })
        }
    }
}
