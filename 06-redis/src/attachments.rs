//! Attachments, as in step 05, kept in Redis: `post.lua` stores the bytes
//! next to the room's stream (`workshop:files:NAME`) and keeps each room to
//! 2 MiB and all rooms to 64 MiB, the oldest going first, and every server
//! keeps the attachments of its copy of a room, within the same 2 MiB.
//! One client address may upload 16 MiB per 10 minutes to each server.

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
/// never locks new ones out). Redis holds them, and counts them in
/// `post.lua`.
pub const ROOM_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;
pub const SERVER_ATTACHMENT_BYTES: usize = 64 * 1024 * 1024;
/// What one client address may upload per [`UPLOAD_WINDOW`] to this
/// server: a quarter of what Redis keeps, so that one client cannot push
/// everyone's images out on its own.
const CLIENT_UPLOAD_BYTES: usize = SERVER_ATTACHMENT_BYTES / 4;
const UPLOAD_WINDOW: Duration = Duration::from_secs(10 * 60);

/// An image that came with a post.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub mime: &'static str,
    /// Reference-counted: every member is sent the same bytes.
    pub bytes: Bytes,
}

/// A post that announced an attachment, waiting for its binary frame.
pub struct Awaiting {
    pub reference: Value,
    room: Arc<Room>,
    post: NewPost,
    key: Option<String>,
    mime: &'static str,
    size: usize,
}

impl Awaiting {
    /// A post to `room` that announced `attachment`; or the `error` that
    /// refuses the announcement (a type or size we do not take).
    pub fn new(
        reference: Value,
        room: Arc<Room>,
        (post, key): (NewPost, Option<String>),
        attachment: &AttachmentInfo,
    ) -> Result<Awaiting, Message> {
        match news::check_attachment(&attachment.mime, attachment.size) {
            Ok(mime) => Ok(Awaiting {
                reference,
                room,
                post,
                key,
                mime,
                size: attachment.size,
            }),
            Err(message) => Err(protocol::refusal(&reference, message)),
        }
    }

    /// The binary frame that followed: stores the post with it, or says why
    /// not (then nothing is stored).
    pub async fn complete(self, app: &App, client: Option<IpAddr>, bytes: Bytes) -> Message {
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
        let attachment = Attachment {
            mime: self.mime,
            bytes,
        };
        let key = self.key.as_deref();
        match self
            .room
            .post(&app.rooms, self.post, key, Some(attachment))
            .await
        {
            Ok(item) => ToClient::Posted {
                reference,
                id: item.id,
            }
            .frame(),
            Err(refusal) => protocol::refused(reference, refusal),
        }
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

    /// Keeps this attachment of item `id` in this server's copy of a room,
    /// and lets the copy's oldest go while they are over a room's share.
    pub fn keep(self, id: u64, attachments: &mut VecDeque<(u64, Attachment)>) {
        attachments.push_back((id, self));
        let mut kept: usize = attachments.iter().map(|(_, a)| a.bytes.len()).sum();
        while kept > ROOM_ATTACHMENT_BYTES {
            let (_, oldest) = attachments
                .pop_front()
                .expect("kept > 0 means one is there");
            kept -= oldest.bytes.len();
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
