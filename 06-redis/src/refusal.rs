//! Why a post was not stored, or may not have been, and what its client
//! is told: the truth about what Redis has, even when nobody knows it.
//!
//! A post that never left this server was not stored. A post that went to
//! Redis and whose answer never came may have been: its answer says the
//! outcome is unknown (`"outcome": "unknown"`), never "nothing was stored".

use hyper::StatusCode;
use redis::ErrorKind;
use redis::RedisError;
use redis::ServerErrorKind;

/// What a post gets while Redis cannot be reached.
pub const UNAVAILABLE: &str = "The news service is unavailable; nothing was stored.";
/// What a join or a new socket gets meanwhile.
pub const AWAY: &str = "The news service cannot reach Redis right now; try again in a moment.";

/// Why a post was not stored, or may not have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Redis could not be reached: the post never left this server.
    Unavailable,
    /// The post went to Redis, and no answer came back (Redis stalled past
    /// the timeout, or the connection broke on the way): Redis may have
    /// stored it, and nobody here knows. `keyed`: the post has a key, so
    /// sending it again with that key cannot store it twice.
    Unknown { keyed: bool },
    /// Redis holds as many rooms with news as `--max-rooms` allows.
    Rooms,
}

impl Refusal {
    /// For `POST /news`: 503 while Redis is away or did not answer, 507
    /// when it is full.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Unavailable | Refusal::Unknown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Rooms => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unavailable => UNAVAILABLE,
            Refusal::Unknown { keyed: true } => {
                "Redis did not answer in time: the post may have been stored, or not. \
                 Sending it again with the same key is safe: it will not be stored twice."
            }
            Refusal::Unknown { keyed: false } => {
                "Redis did not answer in time: the post may have been stored, or not. \
                 Look at the news before you post it again."
            }
            Refusal::Rooms => {
                "The news service holds as many rooms as it may, and someone is in each. \
                 Nothing was stored."
            }
        }
    }

    /// `"unknown"` when nobody knows whether the post was stored: what a
    /// client looks at before it sends the post again.
    pub fn outcome(self) -> Option<&'static str> {
        match self {
            Refusal::Unknown { .. } => Some("unknown"),
            _ => None,
        }
    }
}

/// What a post that failed with this error says. Nothing was stored when
/// Redis refused the connection (the post never left this server) or
/// answered that it is still loading its data (it ran nothing). A timeout
/// or a connection that broke says nothing either way: Redis may have run
/// the script, and its answer be lost, or still on its way.
pub fn failed(error: &RedisError, key: Option<&str>) -> Refusal {
    if error.is_connection_refusal()
        || error.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading)
    {
        Refusal::Unavailable
    } else {
        Refusal::Unknown {
            keyed: key.is_some(),
        }
    }
}
