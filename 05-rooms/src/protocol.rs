//! The messages of `/ws` and `/admin/ws`, as JSON in text frames, and the
//! binary frames that carry attachments.
//!
//! Step 04's messages grow a `room`, and a few arrive: `join` and `joined`,
//! `leave` and `left`, `presence`, and for the admin namespace `rooms`,
//! `announce` and `announced`. Every message a client sends may carry a
//! `ref`, and every answer to it carries the same `ref` back: that is all
//! an acknowledgement is.

use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;
use serde_json::Map;
use serde_json::Value;
use shared::feed::Batch;
use shared::news::FieldErrors;
use shared::news::NewsItem;
use shared::news::PostRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// What the server sends, on `/ws` and `/admin/ws`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToClient<'a> {
    /// The socket is in the room: what it missed (or a reset), the cursor,
    /// the members. The binary frames of `attachments` follow, in order.
    Joined {
        #[serde(rename = "ref", skip_serializing_if = "Value::is_null")]
        reference: &'a Value,
        room: &'a str,
        #[serde(flatten)]
        batch: &'a Batch,
        members: usize,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentInfo>,
    },
    /// The socket left the room.
    Left {
        #[serde(rename = "ref", skip_serializing_if = "Value::is_null")]
        reference: &'a Value,
        room: &'a str,
    },
    /// One new item in a room. If it has an attachment, a binary frame
    /// with its bytes follows.
    News {
        room: &'a str,
        item: &'a NewsItem,
        #[serde(skip_serializing_if = "Option::is_none")]
        attachment: Option<AttachmentInfo>,
    },
    /// How many sockets are in a room now.
    Presence { room: &'a str, members: usize },
    /// The post with this `ref` was stored with this id.
    Posted {
        #[serde(rename = "ref")]
        reference: &'a Value,
        id: u64,
    },
    /// Every room, for the admin namespace.
    Rooms { rooms: Vec<RoomInfo> },
    /// The announcement with this `ref` was posted to this many rooms.
    Announced {
        #[serde(rename = "ref")]
        reference: &'a Value,
        rooms: usize,
    },
    /// Something the client sent was refused.
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Value::is_null")]
        reference: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors: Option<&'a FieldErrors>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
    },
}

/// An attachment as announced in JSON; its bytes travel in a binary frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct AttachmentInfo {
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub id: Option<u64>,
    pub mime: String,
    pub size: usize,
}

/// A room as the admin namespace lists it.
#[derive(Serialize)]
pub struct RoomInfo {
    pub name: Arc<str>,
    pub members: usize,
    pub cursor: u64,
}

/// What a client may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromClient {
    Join {
        room: String,
        #[serde(default)]
        since: Option<u64>,
    },
    Leave {
        room: String,
    },
    Post {
        room: String,
        #[serde(flatten)]
        post: PostRequest,
        #[serde(default)]
        attachment: Option<AttachmentInfo>,
    },
    /// Admin namespace only: post to every room.
    Announce {
        #[serde(flatten)]
        post: PostRequest,
    },
}

impl ToClient<'_> {
    /// The JSON text of this message.
    pub fn text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .expect("messages always serialize")
            .into()
    }

    /// This message as a text frame.
    pub fn frame(&self) -> Message {
        Message::Text(self.text())
    }
}

/// `error`: the message with this `ref` was refused, and why.
pub fn refusal(reference: &Value, message: &str) -> Message {
    ToClient::Error {
        reference,
        errors: None,
        message: Some(message),
    }
    .frame()
}

/// `error` for a post that breaks the rules: a message per field.
pub fn invalid(reference: &Value, errors: &FieldErrors) -> Message {
    ToClient::Error {
        reference,
        errors: Some(errors),
        message: None,
    }
    .frame()
}

/// Reads a text frame: the message and its `ref` (`null` without one), or
/// the `error` that answers it. (`ref` is read apart: any message may
/// carry one, and the answer carries it back, even when the rest of the
/// message is not understood.)
pub fn parse(text: &str) -> Result<(Value, FromClient), Message> {
    let (reference, json) = object(text)?;
    match serde_json::from_value::<FromClient>(Value::Object(json)) {
        Ok(message) => Ok((reference, message)),
        Err(error) => {
            let message = format!("That message is not one this server understands: {error}.");
            Err(refusal(&reference, &message))
        }
    }
}

/// A text frame as a JSON object, and its `ref`; or the `error` for text
/// that is not one.
pub fn object(text: &str) -> Result<(Value, Map<String, Value>), Message> {
    let Ok(json) = serde_json::from_str::<Map<String, Value>>(text) else {
        return Err(refusal(&Value::Null, "That message is not a JSON object."));
    };
    let reference = json.get("ref").cloned().unwrap_or(Value::Null);
    Ok((reference, json))
}
