//! What every step of the realtime workshop shares, so that the step crates
//! can be about their transport and nothing else.
//!
//! - [`news`]: a news item, and the rules a new post must follow.
//! - [`feed`]: the feed itself: bounded history, cursors, resets, waiting
//!   for the next item (long polling) and push subscriptions (WebSocket).
//! - [`http`]: the accept loop, the Origin check, response helpers and the
//!   one log line per request.
//! - [`shutdown`]: the signal that stops a server gracefully.
//! - [`give_back`]: memory freed after a burst goes back to the system.
//! - [`posting`]: reading a post, sent as a form or as JSON: body limits
//!   and deadlines, and the answers that refuse one.
//! - [`flood`]: how many posts one client may send (20 in 10 s), and the
//!   `429` past that.
//! - [`form`]: decoding `application/x-www-form-urlencoded`.
//! - [`hosts`]: the names a server answers to (DNS rebinding), and
//!   `--allowed-host` for tunnels and proxies.
//! - [`steps`]: the steps, in order, and where each one listens.
//! - [`page`]: the layout, the listing and the post form that the shared
//!   templates (`shared/templates`) render.
//! - [`push`]: encoding each pushed item once, and counting open sockets.
//! - [`outbox`]: where a WebSocket's writes wait for their flush, in a
//!   buffer that is let go once it is sent (memory that comes back after a
//!   burst).
//! - [`stream`]: an answer that never ends (server-sent events): a write
//!   deadline and hanging up on a client that stops reading it, the cap on
//!   open streams, and what keeps thousands of them cheap (each item
//!   encoded once, a burst gathered into one chunk).
//! - [`token`]: a random token, and comparing one in constant time.
//! - [`assets`]: the stylesheet and scripts every step serves.
//! - [`cli`]: the flags every step's binary takes, and logging.

pub mod assets;
pub mod cli;
pub mod feed;
pub mod flood;
pub mod form;
pub mod give_back;
pub mod hosts;
pub mod http;
pub mod news;
pub mod outbox;
pub mod page;
pub mod posting;
pub mod push;
pub mod shutdown;
pub mod steps;
pub mod stream;
pub mod token;

pub use feed::Feed;
pub use shutdown::Shutdown;
