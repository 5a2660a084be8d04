//! Presence: who is in a room, counted as sockets join and leave, and
//! told to the members as `{"type":"presence","room":R,"members":N}`.
//!
//! A socket's place in a room is a value ([`Membership`]): made when it
//! joins, dropped when it leaves or its socket closes, so the count cannot
//! drift, whatever way a socket ends.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use shared::feed::Pushed;
use shared::feed::Subscription;
use tokio::sync::watch;

use crate::admin::Activity;
use crate::rooms::Room;
use crate::rooms::Rooms;

/// The least time between two `presence` frames for one room on one socket.
const PRESENCE_QUIET: Duration = Duration::from_millis(250);

/// A socket's place in a room. Counted while it lives; dropping it (on
/// `leave`, or when the socket closes) counts the socket out and tells the
/// other members.
pub struct Membership {
    pub room: Arc<Room>,
    rooms: Arc<Rooms>,
}

impl Membership {
    pub fn new(room: Arc<Room>, rooms: Arc<Rooms>) -> Membership {
        room.members.send_modify(|members| *members += 1);
        let members = *room.members.borrow();
        let _ = rooms.activity.send(Activity::Presence {
            room: room.name.clone(),
            members,
        });
        Membership { room, rooms }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.members.send_modify(|members| *members -= 1);
        let members = *self.room.members.borrow();
        let room = self.room.name.clone();
        let _ = self.rooms.activity.send(Activity::Presence {
            room: room.clone(),
            members,
        });
        self.rooms.forget_if_unused(&room);
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
