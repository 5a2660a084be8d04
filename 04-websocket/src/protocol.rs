//! The messages of `/ws`, as JSON in text frames: what the server sends,
//! what a client may send, and reading one.
//!
//! The server sends `{"type":"snapshot","items":[...],"cursor":N}` first
//! (what came after `?since=`, or `"reset":true` and the latest items), then
//! `{"type":"news","item":{...}}` for every new item. A client posts with
//! `{"type":"post","ref":R,"title":...,"body":...}` and gets
//! `{"type":"posted","ref":R,"id":N}` back, or `{"type":"error","ref":R,...}`.
//! The `ref` is the client's own: it is how the answer finds its question.

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

/// What the server sends on `/ws`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ToClient<'a> {
    /// What the client missed (or a reset), right after connecting.
    Snapshot {
        #[serde(flatten)]
        batch: &'a Batch,
    },
    /// One new item.
    News { item: &'a NewsItem },
    /// The post with this `ref` was stored with this id.
    Posted {
        #[serde(rename = "ref")]
        reference: &'a Value,
        id: u64,
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

/// What a client may send on `/ws`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FromClient {
    Post {
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
