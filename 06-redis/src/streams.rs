//! Reading the rooms' streams: what a stream entry holds, and the reader
//! that waits for news in every room a server follows with one `XREAD`.
//!
//! Why read streams rather than subscribe to Pub/Sub: a Pub/Sub message
//! reaches whoever listens at that instant and is gone, so a server that
//! reconnects to Redis misses what was said meanwhile, and would need the
//! history anyway. A stream is the history: reading it from the last id
//! misses nothing and repeats nothing, in the order Redis stored it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use redis::AsyncConnectionConfig;
use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamId;
use redis::streams::StreamReadReply;
use shared::news;
use shared::news::NewsItem;

use crate::attachments::Attachment;
use crate::store::Store;

/// How long one `XREAD` waits for news before it asks again.
const READ_WAIT: Duration = Duration::from_secs(1);
/// At most this many entries per room and read; the next read continues.
const READ_COUNT: usize = 100;

/// One entry of a room's stream: an item, and its attachment if it still
/// has one.
pub struct Entry {
    pub item: NewsItem,
    pub attachment: Option<Attachment>,
}

impl Store {
    /// A reader of streams, with a connection of its own (see the header
    /// of `store.rs`). One per server.
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
    pub async fn entries(
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

/// `1795000000123456` (microseconds since 1970, as `at` holds it) → a time.
pub fn micros(at: &str) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(at.parse().unwrap_or(0))
}
