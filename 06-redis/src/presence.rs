//! Presence: who is in a room, counted as sockets join and leave, and
//! told to the members as `{"type":"presence","room":R,"members":N}`.
//!
//! A socket's place in a room is a value ([`Membership`]): made when it
//! joins, dropped when it leaves or its socket closes, so the count cannot
//! drift, whatever way a socket ends. With many servers, each counts its
//! own sockets and says so to Redis every two seconds
//! (`workshop:presence:NAME`, see `presence.lua`); the members count is the
//! sum, and a server that stops saying its counts is counted out.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::Stream;
use shared::Shutdown;
use shared::feed::Pushed;
use shared::feed::Subscription;
use tokio::sync::watch;

use crate::admin::Activity;
use crate::rooms::Room;
use crate::rooms::Rooms;
use crate::rooms::lock;

/// The least time between two `presence` frames for one room on one socket.
const PRESENCE_QUIET: Duration = Duration::from_millis(250);

/// How often a server tells Redis how many of its sockets are in each room,
/// and reads the totals. Counts it stops saying stand three times as long.
const PRESENCE_EVERY: Duration = Duration::from_secs(2);

/// A socket's place in a room. Counted while it lives; dropping it (on
/// `leave`, or when the socket closes) counts the socket out, and Redis
/// hears of it at once.
pub struct Membership {
    pub room: Arc<Room>,
    rooms: Arc<Rooms>,
}

impl Membership {
    pub fn new(room: Arc<Room>, rooms: Arc<Rooms>) -> Membership {
        room.here.fetch_add(1, Ordering::Relaxed);
        Membership { room, rooms }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.here.fetch_sub(1, Ordering::Relaxed);
        self.rooms.left.notify_one();
    }
}

/// What happens in a room a socket is in.
pub enum RoomEvent {
    Pushed(Pushed),
    Presence(usize),
}

/// A room's news and members count as one stream, for the socket's
/// `StreamMap` of joined rooms.
pub type RoomEvents = Pin<Box<dyn Stream<Item = RoomEvent> + Send>>;

/// A room's events for one socket: its news, and its members count.
///
/// Members counts go out at most every [`PRESENCE_QUIET`] per socket: when a
/// thousand pages join at once, each member gets a few counts, the last one
/// right, instead of a thousand frames.
///
/// News comes first (`biased`): when an item wakes a room's 5,000 sockets,
/// each takes it without signing up for the members count (a lock shared
/// by the whole room) or starting a timer (another) on the way.
pub fn room_events(news: Subscription, members: watch::Receiver<usize>) -> RoomEvents {
    let quiet_until = tokio::time::Instant::now();
    Box::pin(futures_util::stream::unfold(
        (news, members, quiet_until),
        |(mut news, mut members, mut quiet_until)| async move {
            // Sleep first, then wait for a change: both can be dropped
            // half-way (when news wins the race) without losing the change.
            let presence = async {
                if quiet_until > tokio::time::Instant::now() {
                    tokio::time::sleep_until(quiet_until).await;
                }
                members.changed().await
            };
            let event = tokio::select! {
                biased;
                pushed = news.next() => RoomEvent::Pushed(pushed),
                Ok(()) = presence => {
                    quiet_until = tokio::time::Instant::now() + PRESENCE_QUIET;
                    RoomEvent::Presence(*members.borrow_and_update())
                }
            };
            Some((event, (news, members, quiet_until)))
        },
    ))
}

impl Rooms {
    /// Tells Redis how many of this server's sockets are in one room (or
    /// in every room it follows), and takes the totals over every server.
    /// Members of a room whose total changed get `presence`.
    pub async fn count(&self, only: Option<&Arc<Room>>) {
        let rooms: Vec<Arc<Room>> = match only {
            Some(room) => vec![room.clone()],
            None => lock(&self.by_name).values().cloned().collect(),
        };
        let here: Vec<(&str, usize)> = rooms
            .iter()
            .map(|room| (&*room.name, room.here.load(Ordering::Relaxed)))
            .collect();
        let Ok(totals) = self.store.count(&here, 3 * PRESENCE_EVERY).await else {
            return;
        };
        for (room, total) in rooms.iter().zip(totals) {
            if room
                .members
                .send_if_modified(|members| std::mem::replace(members, total) != total)
            {
                let _ = self.activity.send(Activity::Presence {
                    room: room.name.clone(),
                    members: total,
                });
            }
        }
    }
}

/// Presence over every server: every two seconds, and whenever a socket
/// leaves a room, this server says how many of its sockets are in each
/// room and reads the totals. Then it forgets the rooms nobody here is in.
pub async fn count_members(rooms: Arc<Rooms>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(PRESENCE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = rooms.left.notified() => {}
            () = shutdown.wait() => return,
        }
        if !rooms.store.is_up() {
            continue;
        }
        if rooms.admins.count() > 0 {
            rooms.follow_all().await;
        }
        rooms.count(None).await;
        // Say 0 for each room just forgotten: a socket may have joined and
        // left it while the count above was on its way to Redis, which
        // would then go on counting that member on every server.
        for room in rooms.forget_unused() {
            rooms.count(Some(&room)).await;
        }
    }
}
