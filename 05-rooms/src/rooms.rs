//! Rooms: named groups of sockets, each with its own feed (history, cursor,
//! subscriptions), made on first use and forgotten when nobody needs them.
//!
//! This is what Socket.IO calls rooms, and it is little more than a map
//! from a name to a [`Feed`]: a post to a room goes into its feed, and only
//! the sockets that joined it follow that feed. A server keeps at most
//! `--max-rooms`; when it is full, the quietest room nobody is in makes way.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use shared::Feed;
use shared::news::NewPost;
use shared::news::NewsItem;
use shared::push::EncodeOnce;
use tokio::sync::broadcast;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::admin;
use crate::admin::Activity;
use crate::attachments::Attachment;
use crate::presence::Membership;
use crate::protocol::RoomInfo;

/// The room every socket starts in; its feed is the one the step was given.
pub const GENERAL: &str = "general";

/// Every room, by name. (Its attachment fields are explained in
/// `attachments.rs`, which adds the methods that use them; `activity` in
/// `admin.rs`.)
pub struct Rooms {
    pub by_name: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    /// How many rooms may exist at once.
    max: usize,
    /// Everything that happens in any room, for the admin namespace.
    pub activity: broadcast::Sender<Activity>,
    /// The bytes of every room's attachments together.
    pub attachment_bytes: Mutex<usize>,
    /// What each client uploaded lately: since when, and how many bytes.
    pub uploads: Mutex<HashMap<IpAddr, (Instant, usize)>>,
}

/// One room: its own feed (history, cursor, subscriptions), its members
/// count and the attachments of its history.
pub struct Room {
    pub name: Arc<str>,
    pub feed: Feed,
    /// How many sockets are in the room. Members watch it for `presence`.
    pub members: watch::Sender<usize>,
    /// Attachments by item id, oldest first.
    pub attachments: Mutex<VecDeque<(u64, Attachment)>>,
    /// Every `news` frame of this room, encoded once for all members, and
    /// whether an attachment follows it.
    pub frames: EncodeOnce<u64, (Utf8Bytes, bool)>,
    /// When something last happened here (a post, a join): when the server
    /// is full, the room nobody is in that has been quiet longest makes way
    /// for a new one.
    active: Mutex<Instant>,
    /// Dropped with the room, which ends its task forwarding to the admins.
    _forwarding: oneshot::Sender<()>,
}

impl Rooms {
    /// The rooms of a server whose `general` room serves `feed`.
    pub fn new(feed: Feed, max: usize) -> Arc<Rooms> {
        let rooms = Arc::new(Rooms {
            by_name: Mutex::default(),
            max: max.max(1),
            activity: broadcast::channel(1024).0,
            attachment_bytes: Mutex::new(0),
            uploads: Mutex::default(),
        });
        let general = rooms.create(GENERAL.into(), feed);
        lock(&rooms.by_name).insert(general.name.clone(), general);
        rooms
    }

    /// A place in the room called `name`, made on first use while the
    /// server has room for it. Taken under the same lock that forgets empty
    /// rooms, so a room cannot be forgotten between finding it and joining.
    pub fn join(self: &Arc<Rooms>, name: &str) -> Result<Membership, String> {
        let mut by_name = lock(&self.by_name);
        let room = match by_name.get(name).cloned() {
            Some(room) => room,
            None if by_name.len() >= self.max && !self.reclaim(&mut by_name) => {
                let message = format!(
                    "This server already has {} rooms, its limit, and someone is in each.",
                    self.max
                );
                return Err(message);
            }
            None => {
                let general = &by_name[GENERAL].feed;
                let room = self.create(name.into(), general.sibling());
                by_name.insert(room.name.clone(), room.clone());
                room
            }
        };
        *lock(&room.active) = Instant::now();
        Ok(Membership::new(room, self.clone()))
    }

    /// Makes way for a new room: forgets the room nobody is in that has
    /// been quiet longest, its history and attachments with it. False when
    /// someone is in every room. (A flood of rooms thus pushes out old,
    /// empty ones instead of locking new ones out until a restart.)
    fn reclaim(&self, by_name: &mut HashMap<Arc<str>, Arc<Room>>) -> bool {
        let quietest = by_name
            .values()
            .filter(|room| &*room.name != GENERAL && *room.members.borrow() == 0)
            .min_by_key(|room| *lock(&room.active))
            .map(|room| room.name.clone());
        let Some(name) = quietest else {
            return false;
        };
        let room = by_name.remove(&name).expect("it was just found");
        let freed: usize = lock(&room.attachments)
            .drain(..)
            .map(|(_, attachment)| attachment.bytes.len())
            .sum();
        *lock(&self.attachment_bytes) -= freed;
        tracing::info!("WS room #{name} forgotten to make way for a new one");
        true
    }

    fn create(&self, name: Arc<str>, feed: Feed) -> Arc<Room> {
        let (forwarding, stop) = oneshot::channel();
        let room = Arc::new(Room {
            name,
            feed,
            members: watch::Sender::new(0),
            attachments: Mutex::default(),
            // As many frames as a socket may be behind the newest item: in
            // a burst, the slowest member still finds every frame encoded.
            frames: EncodeOnce::new(shared::feed::PUSH_BUFFER),
            active: Mutex::new(Instant::now()),
            _forwarding: forwarding,
        });
        let forward = admin::forward(Arc::downgrade(&room), self.activity.clone(), stop);
        tokio::spawn(forward);
        room
    }

    /// Every room, for the admin namespace.
    pub fn list(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<_> = lock(&self.by_name)
            .values()
            .map(|room| RoomInfo {
                name: room.name.clone(),
                members: *room.members.borrow(),
                cursor: room.feed.cursor(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Forgets a room nobody is in and nothing was posted to: it costs
    /// nothing to make again. `general` stays.
    pub fn forget_if_unused(&self, name: &str) {
        let mut by_name = lock(&self.by_name);
        let unused = by_name
            .get(name)
            .is_some_and(|room| *room.members.borrow() == 0 && room.feed.latest(1).is_empty());
        if unused && name != GENERAL {
            by_name.remove(name);
        }
    }
}

impl Room {
    /// Stores a post, with its attachment if it has one.
    pub fn post(
        &self,
        rooms: &Rooms,
        post: NewPost,
        attachment: Option<Attachment>,
    ) -> Arc<NewsItem> {
        // Members look attachments up as soon as the feed announces the
        // item: hold the lock across both, so that the lookup waits for the
        // attachment instead of missing it.
        let mut attachments = lock(&self.attachments);
        *lock(&self.active) = Instant::now();
        let item = self.feed.post(post);
        if let Some(attachment) = attachment {
            attachment.keep(item.id, &mut attachments, rooms);
        }
        item
    }
}

/// `^[a-z0-9][a-z0-9-]{0,31}$`: short, lowercase, safe in a URL and a log.
pub fn is_room_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.len() <= 32
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// A lock that a panic elsewhere does not poison for everyone after.
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
