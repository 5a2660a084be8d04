//! Everything step 06 says to Redis, in one place: where the rooms live now
//! that more than one server serves them.
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
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use hyper::StatusCode;
use redis::AsyncConnectionConfig;
use redis::Client;
use redis::ConnectionAddr;
use redis::ErrorKind;
use redis::RedisError;
use redis::RedisResult;
use redis::Script;
use redis::ServerErrorKind;
use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamId;
use redis::streams::StreamRangeReply;
use redis::streams::StreamReadReply;
use shared::news;
use shared::news::NewPost;
use shared::news::NewsItem;
use tokio::sync::watch;

use crate::Attachment;
use crate::ROOM_ATTACHMENT_BYTES;
use crate::SERVER_ATTACHMENT_BYTES;

/// What a post gets while Redis cannot be reached.
pub const UNAVAILABLE: &str = "The news service is unavailable; nothing was stored.";
/// What a join or a new socket gets meanwhile.
pub const AWAY: &str = "The news service cannot reach Redis right now; try again in a moment.";

/// How long one `XREAD` waits for news before it asks again.
const READ_WAIT: Duration = Duration::from_secs(1);
/// At most this many entries per room and read; the next read continues.
const READ_COUNT: usize = 100;

/// Redis, as this server sees it. Shared by every task (`Arc`).
pub struct Store {
    /// Opens the reader's connection.
    client: Client,
    /// Posts, loading a room, presence. A multiplexed connection: every task
    /// sends on it at once, and the answers come back in order.
    commands: ConnectionManager,
    /// `redis://127.0.0.1:6379`, for messages.
    url: String,
    /// Every key starts with this and a colon.
    prefix: String,
    /// This server in the presence hashes: random, new at every start.
    server: String,
    /// How many entries each stream keeps (`--history`).
    history: usize,
    /// How many rooms may have news (`--max-rooms`).
    max_rooms: usize,
    /// Does Redis answer? Every socket watches it: any change closes it.
    up: watch::Sender<bool>,
    /// The reader's connection id, for `CLIENT UNBLOCK`; 0 while it has none.
    reader: AtomicI64,
    post: Script,
    presence: Script,
}

/// One entry of a room's stream: an item, and its attachment if it still
/// has one.
pub struct Entry {
    pub item: NewsItem,
    pub attachment: Option<Attachment>,
}

/// Why a post was not stored, or may not have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Redis could not be reached: the post never left this server.
    Unavailable,
    /// The post went to Redis, and no answer came back (Redis stalled past
    /// the timeout, or the connection broke on the way): Redis may have
    /// stored it, and nobody here knows. `keyed`: the post has a key, so
    /// sending it again with that key cannot store it twice.
    Unknown { keyed: bool },
    /// Redis holds as many rooms with news as `--max-rooms` allows.
    Rooms,
}

impl Refusal {
    /// For `POST /news`: 503 while Redis is away or did not answer, 507
    /// when it is full.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Unavailable | Refusal::Unknown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Rooms => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unavailable => UNAVAILABLE,
            Refusal::Unknown { keyed: true } => {
                "Redis did not answer in time: the post may have been stored, or not. \
                 Sending it again with the same key is safe: it will not be stored twice."
            }
            Refusal::Unknown { keyed: false } => {
                "Redis did not answer in time: the post may have been stored, or not. \
                 Look at the news before you post it again."
            }
            Refusal::Rooms => {
                "The news service holds as many rooms as it may, and someone is in each. \
                 Nothing was stored."
            }
        }
    }

    /// `"unknown"` when nobody knows whether the post was stored: what a
    /// client looks at before it sends the post again.
    pub fn outcome(self) -> Option<&'static str> {
        match self {
            Refusal::Unknown { .. } => Some("unknown"),
            _ => None,
        }
    }
}

impl Store {
    /// Connects, or says in one line why not (see also [`how_to_start`]).
    pub async fn connect(
        url: &str,
        prefix: &str,
        history: usize,
        max_rooms: usize,
    ) -> Result<Arc<Store>, String> {
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
            history: history.max(1),
            max_rooms,
            up: watch::Sender::new(true),
            reader: AtomicI64::new(0),
            post: Script::new(include_str!("post.lua")),
            presence: Script::new(include_str!("presence.lua")),
        }))
    }

    /// `workshop:room:rust`, `workshop:rooms`, ...
    fn key(&self, kind: &str, room: Option<&str>) -> String {
        match room {
            Some(room) => format!("{}:{kind}:{room}", self.prefix),
            None => format!("{}:{kind}", self.prefix),
        }
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// What a socket watches from its first moment: see [`lost`].
    pub fn health(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Resolves when Redis cannot be reached (at once if it cannot now).
    pub async fn down(&self) {
        let _ = self.up.subscribe().wait_for(|&up| !up).await;
    }

    /// Resolves when Redis answers again (at once if it does now).
    pub async fn back(&self) {
        let _ = self.up.subscribe().wait_for(|&up| up).await;
    }

    /// Says that Redis answers again: sockets and posts are welcome.
    pub fn mark_up(&self) {
        self.up.send_replace(true);
    }

    /// Passes a result through, noting when its error means that Redis
    /// cannot be reached (as opposed to, say, a bug in a script).
    fn check<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result {
            if unreachable(error) {
                // Said once per outage: a change is what closes the sockets.
                if self.up.send_if_modified(|up| std::mem::replace(up, false)) {
                    tracing::warn!("Redis at {} cannot be reached: {error}", self.url);
                }
            } else {
                tracing::error!(%error, "Redis refused a command");
            }
        }
        result
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
    /// With a `key` (one that `lib.rs` checked), a post already stored with
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
            .arg(self.history)
            .arg(self.max_rooms)
            .arg(&post.title)
            .arg(&post.body);
        if let Some(attachment) = attachment {
            call.arg(attachment.mime)
                .arg(attachment.bytes.as_ref())
                .arg(ROOM_ATTACHMENT_BYTES)
                .arg(SERVER_ATTACHMENT_BYTES);
        }
        let mut commands = self.commands.clone();
        let answer: Vec<String> = self
            .check(call.invoke_async(&mut commands).await)
            .map_err(|error| failed(&error, key))?;
        match answer.as_slice() {
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
                .arg(self.history)
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

    /// A reader of streams, with a connection of its own (see the module
    /// comment). One per server.
    pub fn reader(self: &Arc<Store>) -> Reader {
        Reader {
            store: self.clone(),
            connection: None,
        }
    }

    /// Wakes the reader in the middle of its wait, so that it starts again
    /// with the rooms it follows now (a socket just joined a new one).
    /// `CLIENT UNBLOCK` makes its `XREAD` answer at once, empty. If the
    /// reader is between two reads, there is nothing to wake: its next read
    /// includes the new room anyway.
    pub async fn wake_reader(&self) {
        let reader = self.reader.load(Ordering::Relaxed);
        if reader != 0 {
            let mut commands = self.commands.clone();
            let _ = self.check(
                redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(reader)
                    .query_async::<i64>(&mut commands)
                    .await,
            );
        }
    }

    /// Stream entries → items, each with its attachment's bytes, fetched in
    /// one `HMGET`.
    async fn entries(
        &self,
        connection: &mut impl redis::aio::ConnectionLike,
        room: &str,
        ids: Vec<StreamId>,
    ) -> RedisResult<Vec<Entry>> {
        let mut entries: Vec<(Entry, Option<&'static str>)> = ids
            .iter()
            .filter_map(|entry| {
                let (id, _) = entry.id.split_once('-')?;
                let item = NewsItem {
                    id: id.parse().ok()?,
                    title: entry.get("title")?,
                    body: entry.get("body")?,
                    posted_at: micros(&entry.get::<String>("at")?),
                };
                let mime = entry
                    .get::<String>("mime")
                    .and_then(|mime| news::check_attachment(&mime, 1).ok());
                let entry = Entry {
                    item,
                    attachment: None,
                };
                Some((entry, mime))
            })
            .collect();
        let attached: Vec<String> = entries
            .iter()
            .filter(|(_, mime)| mime.is_some())
            .map(|(entry, _)| entry.item.id.to_string())
            .collect();
        if !attached.is_empty() {
            let bytes: Vec<Option<Vec<u8>>> = self.check(
                redis::cmd("HMGET")
                    .arg(self.key("files", Some(room)))
                    .arg(&attached)
                    .query_async(connection)
                    .await,
            )?;
            let mut bytes = bytes.into_iter();
            for (entry, mime) in &mut entries {
                if let Some(mime) = *mime {
                    // Gone when the room's attachments grew past their
                    // limit: the item stays, without its image.
                    if let Some(Some(bytes)) = bytes.next() {
                        entry.attachment = Some(Attachment {
                            mime,
                            bytes: Bytes::from(bytes),
                        });
                    }
                }
            }
        }
        Ok(entries.into_iter().map(|(entry, _)| entry).collect())
    }
}

/// Reads what arrives in the streams of the rooms a server follows.
pub struct Reader {
    store: Arc<Store>,
    /// Made on first use, and again after Redis went away.
    connection: Option<MultiplexedConnection>,
}

impl Reader {
    /// Waits (up to a second) for entries after `from` in any of these
    /// rooms, and answers what came, room by room. An empty answer is
    /// normal: nothing happened, or [`Store::wake_reader`].
    pub async fn read(&mut self, from: &[(&str, u64)]) -> RedisResult<Vec<(String, Vec<Entry>)>> {
        let result = self.read_once(from).await;
        if result.is_err() {
            // Start over with a new connection next time.
            self.connection = None;
            self.store.reader.store(0, Ordering::Relaxed);
        }
        self.store.check(result)
    }

    async fn read_once(&mut self, from: &[(&str, u64)]) -> RedisResult<Vec<(String, Vec<Entry>)>> {
        let store = &self.store;
        if self.connection.is_none() {
            // Longer than the wait, or every quiet read would time out.
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(READ_WAIT + Duration::from_secs(2)));
            let mut connection = store
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let id: i64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut connection)
                .await?;
            store.reader.store(id, Ordering::Relaxed);
            self.connection = Some(connection);
        }
        let connection = self.connection.as_mut().expect("made just above");
        let mut read = redis::cmd("XREAD");
        read.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_WAIT.as_millis() as u64)
            .arg("STREAMS");
        for (room, _) in from {
            read.arg(store.key("room", Some(room)));
        }
        for (_, cursor) in from {
            read.arg(format!("{cursor}-0"));
        }
        let reply: Option<StreamReadReply> = read.query_async(connection).await?;
        let mut news = Vec::new();
        let rooms = store.key("room", Some(""));
        for stream in reply.map(|reply| reply.keys).unwrap_or_default() {
            let Some(room) = stream.key.strip_prefix(&rooms) else {
                continue;
            };
            let entries = store.entries(connection, room, stream.ids).await?;
            news.push((room.to_owned(), entries));
        }
        Ok(news)
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

/// Resolves once Redis could not be reached at some moment since `health`
/// was taken from [`Store::health`], even if it is back by now: a socket
/// opened before an outage closes, and its page reconnects to a server
/// whose rooms were read again from Redis.
pub async fn lost(health: &mut watch::Receiver<bool>) {
    if !*health.borrow() {
        return;
    }
    // The only changes are "down" and "back up": any change is an outage.
    let _ = health.changed().await;
}

/// Errors that mean "Redis is not there", rather than "Redis said no".
fn unreachable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_unrecoverable_error()
        || error.is_timeout()
        || error.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading)
}

/// What a post that failed with this error says. Nothing was stored when
/// Redis refused the connection (the post never left this server) or
/// answered that it is still loading its data (it ran nothing). A timeout
/// or a connection that broke says nothing either way: Redis may have run
/// the script, and its answer be lost, or still on its way.
fn failed(error: &RedisError, key: Option<&str>) -> Refusal {
    if error.is_connection_refusal()
        || error.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading)
    {
        Refusal::Unavailable
    } else {
        Refusal::Unknown {
            keyed: key.is_some(),
        }
    }
}

/// `1795000000123456` (microseconds since 1970, as `at` holds it) → a time.
fn micros(at: &str) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(at.parse().unwrap_or(0))
}
