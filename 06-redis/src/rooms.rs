//! Rooms, as step 05 has them, with their histories in Redis: this server
//! keeps a copy of each room its sockets are in (the same `Feed` as 05's,
//! filled from the room's stream, see `replica`), and a post goes to Redis
//! first: it reaches this server's copy, and every other server's, from
//! there. A room nobody here is in is forgotten, and read again on demand.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use shared::Feed;
use shared::news::NewPost;
use shared::news::NewsItem;
use shared::push::EncodeOnce;
use shared::push::Sockets;
use tokio::sync::Notify;
use tokio::sync::broadcast;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::admin;
use crate::admin::Activity;
use crate::attachments::Attachment;
use crate::presence::Membership;
use crate::protocol::RoomInfo;
use crate::refusal::AWAY;
use crate::refusal::Refusal;
use crate::store::Store;

/// The room every socket starts in.
pub const GENERAL: &str = "general";

/// How long a post waits for this server's copy of its room to show it
/// (the reader brings it back from Redis in a few milliseconds), and a join
/// for a cursor that another server handed out a moment ago.
pub const CATCH_UP: Duration = Duration::from_secs(2);

/// Every room this server follows, by name. (More of its methods are in
/// `attachments.rs`, `presence.rs`; `activity` is explained in `admin.rs`.)
pub struct Rooms {
    pub by_name: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    /// How many rooms this server may follow at once.
    max: usize,
    /// Everything that happens in any room, for the admin namespace.
    pub activity: broadcast::Sender<Activity>,
    /// Redis, where the rooms really are.
    pub store: Arc<Store>,
    /// What each room's copy is made like (`Feed::replica`): its size.
    pub template: Feed,
    /// The admin sockets open here. While there is one, this server follows
    /// every room that has news, so that the admins see them all.
    pub admins: Sockets,
    /// Wakes [`crate::presence::count_members`] when a socket leaves a room.
    pub left: Notify,
    /// What each client uploaded lately: since when, and how many bytes.
    pub uploads: Mutex<HashMap<IpAddr, (Instant, usize)>>,
}

/// One room: this server's copy of its stream (history, cursor,
/// subscriptions), its members count and the attachments of its history.
pub struct Room {
    pub name: Arc<str>,
    /// Filled from Redis, never posted to directly: see [`Room::post`].
    pub feed: Feed,
    /// How many sockets are in the room on every server together. Members
    /// watch it for `presence`.
    pub members: watch::Sender<usize>,
    /// How many of them are on this server: what this server tells Redis.
    pub here: AtomicUsize,
    /// Attachments by item id, oldest first.
    pub attachments: Mutex<VecDeque<(u64, Attachment)>>,
    /// Every `news` frame of this room, encoded once for all members, and
    /// whether an attachment follows it.
    pub frames: EncodeOnce<u64, (Utf8Bytes, bool)>,
    /// Dropped with the room, which ends its task forwarding to the admins.
    _forwarding: oneshot::Sender<()>,
}

impl Rooms {
    /// The rooms of a server, starting with `general` read from Redis.
    pub async fn new(
        template: Feed,
        store: Arc<Store>,
        max: usize,
    ) -> redis::RedisResult<Arc<Rooms>> {
        let rooms = Arc::new(Rooms {
            by_name: Mutex::default(),
            max: max.max(1),
            activity: broadcast::channel(1024).0,
            store,
            template,
            admins: Sockets::default(),
            left: Notify::new(),
            uploads: Mutex::default(),
        });
        let general = rooms.load(GENERAL).await?;
        lock(&rooms.by_name).insert(general.name.clone(), general);
        Ok(rooms)
    }

    /// `general`, which this server always follows.
    pub fn general(&self) -> Arc<Room> {
        lock(&self.by_name)[GENERAL].clone()
    }

    /// A place in the room called `name`. A room this server does not
    /// follow yet is read from Redis first, while the server has room for
    /// it. The place is taken under the same lock that forgets unused
    /// rooms, so a room cannot be forgotten between finding it and joining.
    pub async fn join(self: &Arc<Rooms>, name: &str) -> Result<Membership, String> {
        let limit = || format!("This server already has {} rooms, its limit.", self.max);
        let found = lock(&self.by_name)
            .get(name)
            .map(|room| Membership::new(room.clone(), self.clone()));
        let membership = match found {
            Some(membership) => membership,
            None => {
                if lock(&self.by_name).len() >= self.max {
                    return Err(limit());
                }
                let loaded = self.load(name).await.map_err(|_| AWAY.to_owned())?;
                let membership = {
                    let mut by_name = lock(&self.by_name);
                    let room = match by_name.get(name) {
                        // Another socket read it meanwhile: one copy is enough.
                        Some(room) => room.clone(),
                        None if by_name.len() >= self.max => return Err(limit()),
                        None => {
                            by_name.insert(loaded.name.clone(), loaded.clone());
                            loaded
                        }
                    };
                    Membership::new(room, self.clone())
                };
                // The reader reads this room too from now on.
                self.store.wake_reader().await;
                membership
            }
        };
        // Counted in at once, everywhere: `joined` says how many are here.
        self.count(Some(&membership.room)).await;
        Ok(membership)
    }

    /// A copy of the room called `name`: the end of its history, read from
    /// Redis. The reader follows it once it is in `by_name`.
    pub async fn load(&self, name: &str) -> redis::RedisResult<Arc<Room>> {
        let (floor, entries) = self.store.load(name).await?;
        let feed = self.template.replica(floor);
        let mut attachments = VecDeque::new();
        for entry in entries {
            if let (Some(item), Some(attachment)) = (feed.append(entry.item), entry.attachment) {
                attachments.push_back((item.id, attachment));
            }
        }
        let room = self.create(name.into(), feed);
        *lock(&room.attachments) = attachments;
        Ok(room)
    }

    fn create(&self, name: Arc<str>, feed: Feed) -> Arc<Room> {
        let (forwarding, stop) = oneshot::channel();
        let room = Arc::new(Room {
            name,
            feed,
            members: watch::Sender::new(0),
            here: AtomicUsize::new(0),
            attachments: Mutex::default(),
            // As many frames as a socket may be behind the newest item: in
            // a burst, the slowest member still finds every frame encoded.
            frames: EncodeOnce::new(shared::feed::PUSH_BUFFER),
            _forwarding: forwarding,
        });
        let forward = admin::forward(Arc::downgrade(&room), self.activity.clone(), stop);
        tokio::spawn(forward);
        room
    }

    /// Reads every room again after Redis was away: it may have restarted
    /// empty, and the copies here may hold what it lost. The sockets were
    /// closed meanwhile, so this server starts over with `general`.
    pub async fn reload(&self) -> redis::RedisResult<()> {
        let general = self.load(GENERAL).await?;
        let mut by_name = lock(&self.by_name);
        by_name.clear();
        by_name.insert(general.name.clone(), general);
        Ok(())
    }

    /// Follows every room that has news, for the admin namespace.
    pub async fn follow_all(&self) {
        let Ok(names) = self.store.rooms().await else {
            return;
        };
        for name in names {
            let followed = lock(&self.by_name).contains_key(name.as_str());
            if followed || !is_room_name(&name) || lock(&self.by_name).len() >= self.max {
                continue;
            }
            let Ok(room) = self.load(&name).await else {
                return;
            };
            lock(&self.by_name).entry(room.name.clone()).or_insert(room);
        }
        self.store.wake_reader().await;
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

    /// Forgets the rooms no socket here is in: their history is in Redis,
    /// and costs one read to copy again. `general` stays, and every room
    /// while an admin watches. Answers the rooms it forgot.
    pub fn forget_unused(&self) -> Vec<Arc<Room>> {
        if self.admins.count() > 0 {
            return Vec::new();
        }
        let mut forgotten = Vec::new();
        lock(&self.by_name).retain(|name, room| {
            let keep = &**name == GENERAL || room.here.load(Ordering::Relaxed) > 0;
            if !keep {
                forgotten.push(room.clone());
            }
            keep
        });
        forgotten
    }
}

impl Room {
    /// Stores a post in Redis, with its attachment if it has one, and
    /// answers once this server's copy of the room has it too. A post sent
    /// again with its `key` answers the id of the one stored the first time.
    pub async fn post(
        &self,
        rooms: &Rooms,
        post: NewPost,
        key: Option<&str>,
        attachment: Option<Attachment>,
    ) -> Result<Arc<NewsItem>, Refusal> {
        let item = rooms
            .store
            .post(&self.name, &post, key, attachment.as_ref())
            .await?;
        // The post is in Redis; the reader brings it back here in a few
        // milliseconds. Waiting for it means that whoever posted sees it
        // in its place among the others, and that the page a form post
        // redirects to shows it.
        let _ = tokio::time::timeout(CATCH_UP, self.feed.wait_after(item.id - 1)).await;
        Ok(Arc::new(item))
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
