//! Attachments: an image that comes with a post, as a binary frame next to
//! the JSON.
//!
//! A post announces `"attachment":{"mime":"image/png","size":N}`, and the
//! very next frame must be a binary frame of exactly `N` bytes: nothing is
//! stored until it has come, whole and right. Members get the `news`, then
//! the same bytes as one binary frame. Images take memory, so a room keeps
//! at most 2 MiB of them and the server 64 MiB (the oldest go first, the
//! posts stay), and one client address may upload 16 MiB per 10 minutes.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use shared::news;
use shared::news::NewPost;
use tokio_tungstenite::tungstenite::Message;

use crate::App;
use crate::protocol;
use crate::protocol::AttachmentInfo;
use crate::protocol::ToClient;
use crate::rooms::Room;
use crate::rooms::Rooms;
use crate::rooms::lock;

/// Attachments a room keeps for its history, and all rooms together: past
/// either, the oldest go first (a flood of images pushes out old ones, it
/// never locks new ones out).
const ROOM_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;
const SERVER_ATTACHMENT_BYTES: usize = 64 * 1024 * 1024;
/// What one client address may upload per [`UPLOAD_WINDOW`]: a quarter of
/// what the server keeps, so that one client cannot push everyone's images
/// out on its own.
const CLIENT_UPLOAD_BYTES: usize = SERVER_ATTACHMENT_BYTES / 4;
const UPLOAD_WINDOW: Duration = Duration::from_secs(10 * 60);

/// An image that came with a post.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub mime: &'static str,
    /// Reference-counted: every member is sent the same bytes.
    pub bytes: Bytes,
    /// When it came: the oldest go first when the server is full.
    at: Instant,
}

/// A post that announced an attachment, waiting for its binary frame.
pub struct Awaiting {
    pub reference: Value,
    room: Arc<Room>,
    post: NewPost,
    mime: &'static str,
    size: usize,
}

impl Awaiting {
    /// A post to `room` that announced `attachment`; or the `error` that
    /// refuses the announcement (a type or size we do not take).
    pub fn new(
        reference: Value,
        room: Arc<Room>,
        post: NewPost,
        attachment: &AttachmentInfo,
    ) -> Result<Awaiting, Message> {
        match news::check_attachment(&attachment.mime, attachment.size) {
            Ok(mime) => Ok(Awaiting {
                reference,
                room,
                post,
                mime,
                size: attachment.size,
            }),
            Err(message) => Err(protocol::refusal(&reference, message)),
        }
    }

    /// The binary frame that followed: stores the post with it, or says why
    /// not (then nothing is stored).
    pub fn complete(self, app: &App, client: Option<IpAddr>, bytes: Bytes) -> Message {
        let reference = &self.reference;
        if bytes.len() != self.size {
            let message = format!(
                "The attachment was announced as {} bytes but {} arrived. Nothing was stored.",
                self.size,
                bytes.len()
            );
            return protocol::refusal(reference, &message);
        }
        if !news::looks_like(self.mime, &bytes) {
            let message = format!(
                "Those bytes are not a {} image. Nothing was stored.",
                self.mime
            );
            return protocol::refusal(reference, &message);
        }
        if let Err(message) = app.rooms.count_upload(client, bytes.len()) {
            return protocol::refusal(reference, &message);
        }
        app.rooms.make_room_for(bytes.len());
        let attachment = Attachment {
            mime: self.mime,
            bytes,
            at: Instant::now(),
        };
        let item = self.room.post(&app.rooms, self.post, Some(attachment));
        ToClient::Posted {
            reference,
            id: item.id,
        }
        .frame()
    }
}

impl Attachment {
    /// How it is announced in JSON.
    pub fn info(&self, id: Option<u64>) -> AttachmentInfo {
        AttachmentInfo {
            id,
            mime: self.mime.into(),
            size: self.bytes.len(),
        }
    }

    /// Keeps this attachment of item `id` with a room's others, and lets
    /// the room's oldest go while they are over the room's share.
    pub fn keep(self, id: u64, attachments: &mut VecDeque<(u64, Attachment)>, rooms: &Rooms) {
        let mut total = lock(&rooms.attachment_bytes);
        *total += self.bytes.len();
        attachments.push_back((id, self));
        let mut kept: usize = attachments.iter().map(|(_, a)| a.bytes.len()).sum();
        while kept > ROOM_ATTACHMENT_BYTES {
            let (_, oldest) = attachments
                .pop_front()
                .expect("kept > 0 means one is there");
            kept -= oldest.bytes.len();
            *total -= oldest.bytes.len();
        }
    }
}

impl Rooms {
    /// Counts an upload of `size` bytes from `client`, or says why not:
    /// each client may upload [`CLIENT_UPLOAD_BYTES`] per [`UPLOAD_WINDOW`].
    pub fn count_upload(&self, client: Option<IpAddr>, size: usize) -> Result<(), String> {
        let Some(client) = client else {
            return Ok(());
        };
        let now = Instant::now();
        let mut uploads = lock(&self.uploads);
        uploads.retain(|_, (since, _)| now.duration_since(*since) < UPLOAD_WINDOW);
        let (_, sent) = uploads.entry(client).or_insert((now, 0));
        if *sent + size > CLIENT_UPLOAD_BYTES {
            return Err(format!(
                "You sent {} MiB of images in the last {} minutes, the most one address may. \
                 Nothing was stored.",
                CLIENT_UPLOAD_BYTES / (1024 * 1024),
                UPLOAD_WINDOW.as_secs() / 60
            ));
        }
        *sent += size;
        Ok(())
    }

    /// Makes room for `size` more bytes of attachments: while the server
    /// would hold more than [`SERVER_ATTACHMENT_BYTES`], the oldest
    /// attachment of any room goes (its item stays, without its image).
    pub fn make_room_for(&self, size: usize) {
        let by_name = lock(&self.by_name);
        while *lock(&self.attachment_bytes) + size > SERVER_ATTACHMENT_BYTES {
            let oldest = by_name
                .values()
                .filter_map(|room| Some((lock(&room.attachments).front()?.1.at, room)))
                .min_by_key(|(at, _)| *at)
                .map(|(_, room)| room);
            let Some(room) = oldest else { break };
            if let Some((_, attachment)) = lock(&room.attachments).pop_front() {
                *lock(&self.attachment_bytes) -= attachment.bytes.len();
            }
        }
    }
}

impl Room {
    /// The attachment of item `id`, if it has one and it is still kept.
    pub fn attachment(&self, id: u64) -> Option<Attachment> {
        let attachments = lock(&self.attachments);
        attachments
            .iter()
            .find(|(item, _)| *item == id)
            .map(|(_, attachment)| attachment.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Instant;

    use bytes::Bytes;
    use shared::Feed;
    use shared::news::NewPost;

    use super::Attachment;
    use super::CLIENT_UPLOAD_BYTES;
    use super::SERVER_ATTACHMENT_BYTES;
    use crate::rooms::Rooms;
    use crate::rooms::lock;

    fn png(size: usize) -> Attachment {
        Attachment {
            mime: "image/png",
            bytes: Bytes::from(vec![0; size]),
            at: Instant::now(),
        }
    }

    fn post(title: &str) -> NewPost {
        NewPost {
            title: title.into(),
            body: String::new(),
        }
    }

    #[tokio::test]
    async fn a_full_server_lets_the_oldest_attachments_go() {
        let rooms = Rooms::new(Feed::new(100), 1_000);
        let size = 256 * 1024;
        // Every room keeps 2 MiB; 40 rooms of 8 images are 80 MiB, more
        // than the server keeps: the oldest go, and new ones still come.
        for room in 0..40 {
            let membership = rooms.join(&format!("room-{room}")).expect("a room");
            for _ in 0..8 {
                rooms.make_room_for(size);
                membership.room.post(&rooms, post("image"), Some(png(size)));
            }
        }
        let total = *lock(&rooms.attachment_bytes);
        assert!(total <= SERVER_ATTACHMENT_BYTES, "{total}");
        assert!(total > SERVER_ATTACHMENT_BYTES - size, "{total}");
        let kept = |name: &str| {
            let by_name = lock(&rooms.by_name);
            by_name
                .get(name)
                .map_or(0, |room| lock(&room.attachments).len())
        };
        assert_eq!(kept("room-0"), 0, "the oldest went first");
        assert_eq!(kept("room-39"), 8, "the newest are kept");
    }

    #[tokio::test]
    async fn forgetting_a_room_frees_its_attachments() {
        let rooms = Rooms::new(Feed::new(100), 2);
        let membership = rooms.join("photos").expect("a room");
        membership.room.post(&rooms, post("image"), Some(png(1024)));
        drop(membership);
        assert_eq!(*lock(&rooms.attachment_bytes), 1024);
        // The table is full (general, photos): a new room makes way.
        let _other = rooms.join("other").expect("photos makes way");
        assert_eq!(*lock(&rooms.attachment_bytes), 0);
        assert!(!lock(&rooms.by_name).contains_key("photos"));
        // With someone in every room, a new one is refused.
        assert!(rooms.join("third").is_err());
    }

    #[tokio::test]
    async fn one_client_may_upload_a_quarter_of_the_budget_per_window() {
        let rooms = Rooms::new(Feed::new(100), 10);
        let alice = Some(IpAddr::from([192, 0, 2, 1]));
        let bob = Some(IpAddr::from([192, 0, 2, 2]));
        let size = 256 * 1024;
        for _ in 0..CLIENT_UPLOAD_BYTES / size {
            assert_eq!(rooms.count_upload(alice, size), Ok(()));
        }
        let refusal = rooms.count_upload(alice, size).unwrap_err();
        assert!(
            refusal.contains("16 MiB of images in the last 10 minutes"),
            "{refusal}"
        );
        assert_eq!(rooms.count_upload(bob, size), Ok(()));
        assert_eq!(rooms.count_upload(None, size), Ok(()));
    }
}
