//! This server's copies of the rooms, kept in step with Redis: one task
//! reads every room its sockets follow with a single blocking `XREAD`, from
//! where each copy ends, and appends what comes. From there on it is step
//! 05 again: subscriptions, resets, `joined` and `news` frames.

use std::sync::Arc;
use std::time::Duration;

use shared::Shutdown;

use crate::rooms::Room;
use crate::rooms::Rooms;
use crate::rooms::lock;
use crate::streams::Entry;

/// Copies what arrives in Redis into this server's rooms, in order. One
/// `XREAD` waits for news in every room followed here, each from where its
/// copy ends, then the next read starts from the new ends.
pub async fn read_rooms(rooms: Arc<Rooms>, shutdown: Shutdown) {
    let mut reader = rooms.store.reader();
    loop {
        tokio::select! {
            () = rooms.store.back() => {}
            () = shutdown.wait() => return,
        }
        let followed: Vec<Arc<Room>> = lock(&rooms.by_name).values().cloned().collect();
        let from: Vec<(&str, u64)> = followed
            .iter()
            .map(|room| (&*room.name, room.feed.cursor()))
            .collect();
        let read = tokio::select! {
            read = reader.read(&from) => read,
            () = shutdown.wait() => return,
        };
        match read {
            Ok(news) => {
                for (name, entries) in news {
                    let room = lock(&rooms.by_name).get(name.as_str()).cloned();
                    for entry in entries {
                        if let Some(room) = &room {
                            room.copy(entry);
                        }
                    }
                }
            }
            // Redis went away (the store says so to everyone, and
            // `health::watch_redis` waits for it); or it refused the read, which
            // would be a bug: either way, not in a tight loop.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

impl Room {
    /// Adds an entry read from Redis to this server's copy of the room.
    pub fn copy(&self, entry: Entry) {
        // Members look attachments up as soon as the feed announces the
        // item: hold the lock across both, so that the lookup waits for the
        // attachment instead of missing it.
        let mut attachments = lock(&self.attachments);
        let Some(item) = self.feed.append(entry.item) else {
            return;
        };
        if let Some(attachment) = entry.attachment {
            attachment.keep(item.id, &mut attachments);
        }
    }
}
