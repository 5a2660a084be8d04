//! One socket in many rooms: the rooms it joined, and their events merged
//! into one stream for its loop.
//!
//! Joining subscribes to the room's feed and members count; `joined`
//! carries what the socket missed there (after `since`), so a page that
//! reconnects rejoins every room and misses nothing in any of them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use shared::feed::Batch;
use shared::feed::Pushed;
use shared::flood::Poster;
use tokio_stream::StreamMap;
use tokio_tungstenite::tungstenite::Message;

use crate::App;
use crate::attachments::Attachment;
use crate::attachments::Awaiting;
use crate::presence::Membership;
use crate::presence::RoomEvent;
use crate::presence::RoomEvents;
use crate::presence::room_events;
use crate::protocol;
use crate::protocol::ToClient;
use crate::rooms::GENERAL;
use crate::rooms::Room;
use crate::rooms::is_room_name;

/// A socket on `/ws` and the rooms it is in.
pub struct Member {
    /// The rooms joined, each with the place that counts this socket in it.
    pub joined: HashMap<Arc<str>, Membership>,
    /// The events of every joined room, merged into one stream.
    pub events: StreamMap<Arc<str>, RoomEvents>,
    /// A post that announced an attachment, waiting for its binary frame.
    pub awaiting: Option<Awaiting>,
    /// Whose posts these are, for the limit on posts per client.
    pub poster: Poster,
    /// How many posts in a row were refused for coming too fast.
    pub refused: usize,
}

impl Member {
    /// A socket in no room yet.
    pub fn new(poster: Poster) -> Member {
        Member {
            joined: HashMap::new(),
            events: StreamMap::new(),
            awaiting: None,
            poster,
            refused: 0,
        }
    }

    /// Joins a room (or joins it again, to resync): `joined` with what came
    /// after `since`, then the attachments of those items as binary frames.
    pub fn join(
        &mut self,
        app: &App,
        reference: &Value,
        name: &str,
        since: Option<u64>,
    ) -> Vec<Message> {
        let max = app.options.max_rooms_per_socket;
        // `general` is every socket's first room, whatever the limit.
        if name != GENERAL && self.joined.len() >= max && !self.joined.contains_key(name) {
            let message = format!("A socket may be in at most {max} rooms.");
            return vec![protocol::refusal(reference, &message)];
        }
        if !is_room_name(name) {
            let message = "Room names are 1 to 32 lowercase letters, digits and dashes, starting with a letter or digit.";
            return vec![protocol::refusal(reference, message)];
        }
        // Joining a room again resyncs it from `since`; the place is kept.
        let room = match self.joined.get(name) {
            Some(membership) => membership.room.clone(),
            None => match app.rooms.join(name) {
                Ok(membership) => {
                    let room = membership.room.clone();
                    self.joined.insert(room.name.clone(), membership);
                    room
                }
                Err(message) => return vec![protocol::refusal(reference, &message)],
            },
        };
        let (batch, news) = room.feed.subscribe(since);
        let mut members = room.members.subscribe();
        members.mark_unchanged();
        self.events
            .insert(room.name.clone(), room_events(news, members));
        joined_frames(&room, reference, &batch)
    }

    /// Leaves a room: `left`, and the other members are told.
    pub fn leave(&mut self, reference: &Value, name: &str) -> Message {
        match self.joined.remove(name) {
            Some(_membership) => {
                self.events.remove(name);
                ToClient::Left {
                    reference,
                    room: name,
                }
                .frame()
            }
            None => protocol::refusal(reference, "This socket is not in that room."),
        }
    }

    /// The frames for one event in one of this socket's rooms (none for a
    /// room it has just left).
    pub fn frames(&self, room: &str, event: RoomEvent) -> Vec<Message> {
        match self.joined.get(room) {
            Some(membership) => event_frames(&membership.room, event),
            None => Vec::new(),
        }
    }
}

/// `joined` for a batch of a room's items, then their attachments.
fn joined_frames(room: &Room, reference: &Value, batch: &Batch) -> Vec<Message> {
    let attached: Vec<(u64, Attachment)> = batch
        .items
        .iter()
        .filter_map(|item| Some((item.id, room.attachment(item.id)?)))
        .collect();
    let joined = ToClient::Joined {
        reference,
        room: &room.name,
        batch,
        members: *room.members.borrow(),
        attachments: attached.iter().map(|(id, a)| a.info(Some(*id))).collect(),
    };
    let bytes = attached
        .into_iter()
        .map(|(_, attachment)| Message::Binary(attachment.bytes));
    std::iter::once(joined.frame()).chain(bytes).collect()
}

/// The frames for one event in a room: `news` (encoded once for all
/// members) and its attachment; `joined` again for a member that fell
/// behind the whole history; or `presence`.
fn event_frames(room: &Room, event: RoomEvent) -> Vec<Message> {
    match event {
        RoomEvent::Pushed(Pushed::Item(item)) => {
            // Only the first member looks for an attachment; the others
            // learn from it whether there is one, and if not (most items)
            // never touch the lock of the room's attachments.
            let (news, attached) = room.frames.get(item.id, || {
                let attachment = room.attachment(item.id).map(|a| a.info(None));
                let attached = attachment.is_some();
                let news = ToClient::News {
                    room: &room.name,
                    item: &item,
                    attachment,
                };
                (news.text(), attached)
            });
            let bytes = attached
                .then(|| room.attachment(item.id))
                .flatten()
                .map(|attachment| Message::Binary(attachment.bytes));
            std::iter::once(Message::Text(news)).chain(bytes).collect()
        }
        RoomEvent::Pushed(Pushed::Reset(batch)) => joined_frames(room, &Value::Null, &batch),
        RoomEvent::Presence(members) => {
            let room = &room.name;
            vec![ToClient::Presence { room, members }.frame()]
        }
    }
}
