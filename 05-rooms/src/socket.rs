//! A socket's life after the handshake: reading what the client sends,
//! writing with a deadline, the heartbeat, and the two ways a session ends
//! (a close code that says why, and the closing handshake).
//!
//! Every socket goes through these functions, whatever it carries: only the
//! loops that use them (`session.rs`, `echo.rs`, and from step 05 on
//! `admin.rs`) know what the messages mean.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use shared::news;
use shared::outbox::Outbox;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::MESSAGE_LIMIT;

/// A WebSocket on a connection that hyper handed over after the 101. What
/// the server writes waits in an [`Outbox`] until the flush, and leaves in
/// one write.
pub type Socket = WebSocketStream<Outbox<TokioIo<Upgraded>>>;

/// The largest text message a client may send: the same as a POST body.
/// (In 04 every message stops at `MESSAGE_LIMIT`, the same, already; from
/// 05 on, binary frames may be larger.)
pub const TEXT_LIMIT: usize = news::MAX_POST_BYTES;

/// How often the server pings each socket unless `--ping-interval` says
/// otherwise.
pub const PING_INTERVAL_S: u64 = 20;

/// How long one write may wait for a client that does not read before the
/// server gives up on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a socket's session ends.
pub enum Ending {
    /// The connection broke, or the client hung up without a close frame:
    /// nothing more to say.
    Gone,
    /// The client sent a close frame: it gets one back, then we hang up.
    ClientClosed,
    /// We close, with a code and a reason the client can read.
    Close(CloseCode, Cow<'static, str>),
}

impl Ending {
    /// We close with `code`, and `reason` for the client to read.
    pub fn close(code: CloseCode, reason: &'static str) -> Ending {
        Ending::Close(code, Cow::Borrowed(reason))
    }
}

/// Memory and time per socket are set here. tungstenite reads into a
/// buffer it allocates for every socket, 128 KiB by default: 1.25 GiB for
/// 10,000 idle sockets. And before every read it zero-fills the part it
/// reads into, even when nothing has come, which is each time the socket's
/// loop turns: with 5,000 sockets, every item would clear 5,000 of those.
/// Clients send short messages, so 256 bytes will do (a long message takes
/// a few reads; an attachment of 256 KiB, from 05 on, a thousand).
///
/// Writes go on at once (a write buffer of 0) to the socket's [`Outbox`],
/// which gathers them until the flush: tungstenite's own buffer never
/// shrinks, the outbox's is let go once it is sent (see
/// `shared::outbox`). There is no cap on what waits: a frame larger than
/// the cap could not be sent at all, and the largest we send, a snapshot of
/// the whole history, can be megabytes; what stops a client that does not
/// read is the write deadline ([`in_time`]). Incoming messages are capped
/// at [`MESSAGE_LIMIT`].
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(0)
        .max_message_size(Some(MESSAGE_LIMIT))
        .max_frame_size(Some(MESSAGE_LIMIT))
}

/// What `socket.next()` brought: a message, or how the session ends. A
/// close frame from the client, a broken frame, text that is not UTF-8 or
/// over [`TEXT_LIMIT`] all end it; pings and pongs come through (tungstenite
/// answers pings itself; a pong only says the client is alive).
pub fn read(incoming: Option<Result<Message, WsError>>) -> Result<Message, Ending> {
    match incoming {
        None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => Err(Ending::Gone),
        Some(Err(error)) => Err(read_error(error)),
        Some(Ok(Message::Close(_))) => Err(Ending::ClientClosed),
        Some(Ok(Message::Text(text))) if text.len() > TEXT_LIMIT => Err(Ending::close(
            CloseCode::Size,
            "text messages are limited to 26 KiB",
        )),
        Some(Ok(message)) => Ok(message),
    }
}

/// tungstenite reports a broken message as an error and drops the
/// connection; the close code that tells the client why is ours to send.
fn read_error(error: WsError) -> Ending {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { max_size, .. }) => {
            let reason = format!("messages are limited to {} KiB", max_size / 1024);
            Ending::Close(CloseCode::Size, Cow::Owned(reason))
        }
        WsError::Utf8(_) => Ending::close(CloseCode::Invalid, "text frames must be UTF-8"),
        WsError::Protocol(_) | WsError::Capacity(_) => Ending::close(
            CloseCode::Protocol,
            "that frame breaks the WebSocket protocol",
        ),
        _ => Ending::Gone,
    }
}

/// Sends one message now.
pub async fn send(socket: &mut Socket, message: Message) -> Result<(), Ending> {
    in_time(std::pin::pin!(socket.send(message))).await
}

/// Sends `first`, then whatever `more` has ready at once, with one flush
/// and one deadline for them all. This is tuning, not protocol (see the
/// root README's bench section): when 200 items arrive together, they leave as
/// a few large writes instead of 200 small ones.
pub async fn send_burst<I>(
    socket: &mut Socket,
    first: I,
    mut more: impl FnMut() -> Option<I>,
) -> Result<(), Ending>
where
    I: IntoIterator<Item = Message>,
{
    let writes = std::pin::pin!(async {
        let mut next = Some(first);
        while let Some(messages) = next {
            for message in messages {
                socket.feed(message).await?;
            }
            next = more();
        }
        socket.flush().await
    });
    in_time(writes).await
}

/// Gives a write to the client [`SEND_TIMEOUT`]. A client that stops
/// reading fills its TCP window, then our buffer; past the limit it is cut
/// off, so it holds a bounded amount of memory and never slows the others.
///
/// Most writes are done the moment they start (the kernel takes them at
/// once), and those need no deadline: the clock starts only for a write
/// that has to wait. A timer set and taken down again for each of 5,000
/// sockets, for every item, was work for nothing (a few percent of the
/// server's time, in a profile).
///
/// The write comes pinned where its caller made it (`pin!`): a future
/// moved in by value would be kept twice, in the caller's state and in
/// this one's, and that state is in every open socket's task for as long
/// as the socket lives.
pub async fn in_time<F>(mut write: Pin<&mut F>) -> Result<(), Ending>
where
    F: Future<Output = Result<(), WsError>>,
{
    let first_try = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx)));
    if let Poll::Ready(done) = first_try.await {
        return done.map_err(|_| Ending::Gone);
    }
    // Boxed: the clock's state is then in the socket's task only while it
    // runs, not in every idle socket's memory.
    match Box::pin(tokio::time::timeout(SEND_TIMEOUT, write)).await {
        Ok(done) => done.map_err(|_| Ending::Gone),
        Err(_) => Err(Ending::close(CloseCode::Policy, "the client does not read")),
    }
}

/// A ping every interval; a socket that has not been heard from for two
/// intervals is dead (a laptop closed, a network gone), however open its
/// TCP connection still looks.
pub struct Heartbeat {
    every: Duration,
    ticks: tokio::time::Interval,
    heard: Instant,
}

impl Heartbeat {
    /// A ping every `interval_s` seconds (at least one), the first one
    /// interval from now.
    pub fn new(interval_s: u64) -> Heartbeat {
        let every = Duration::from_secs(interval_s.max(1));
        let first = tokio::time::Instant::now() + every;
        Heartbeat {
            every,
            ticks: tokio::time::interval_at(first, every),
            heard: Instant::now(),
        }
    }

    /// The client said something: it is alive.
    pub fn heard(&mut self) {
        self.heard = Instant::now();
    }

    /// Waits for the next beat.
    pub async fn tick(&mut self) {
        self.ticks.tick().await;
    }

    /// The beat: a ping, or the end of a socket that stopped answering.
    pub async fn beat(&self, socket: &mut Socket) -> Result<(), Ending> {
        if self.heard.elapsed() > 2 * self.every {
            tracing::info!("WS: no answer to two pings, dropping the socket");
            return Err(Ending::Gone);
        }
        send(socket, Message::Ping(Bytes::new())).await
    }
}

/// Ends a session the way it ended: the answer to the client's close frame,
/// or our own close frame and the closing handshake, or nothing at all for a
/// connection that broke.
///
/// Boxed: an async function's state takes room in its caller's, and so in
/// every open socket's task for as long as it lives, even for a path that
/// runs once at the end. On the heap, it takes room only while it runs.
pub async fn end(socket: &mut Socket, ending: Ending) {
    Box::pin(end_as(socket, ending)).await;
}

async fn end_as(socket: &mut Socket, ending: Ending) {
    match ending {
        Ending::Gone => {}
        // tungstenite queued the answer as the client's close frame came
        // in: the same code back (RFC 6455, 5.5.1), or 1002 for a code
        // that nobody may send, such as 999 or 1005 (7.4). tungstenite's
        // flush hands it to the outbox and, its part of the closing
        // handshake done, reports the connection closed without flushing
        // what is under it: the outbox's own flush sends it. The server,
        // which should be the first to close the TCP connection (7.1.1),
        // then drops it.
        Ending::ClientClosed => {
            let answer = async {
                let _ = socket.flush().await;
                tokio::io::AsyncWriteExt::flush(socket.get_mut()).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
        }
        Ending::Close(code, reason) => close(socket, code, reason).await,
    }
}

/// Sends a close frame with a code and a reason, then reads (and ignores)
/// what the client still sends until its own close frame comes back: the
/// closing handshake of RFC 6455, 7.1. Hanging up on unread data would make
/// the kernel answer with a reset, which can destroy our close frame before
/// the client reads it. Gives up after a second.
async fn close(socket: &mut Socket, code: CloseCode, reason: Cow<'static, str>) {
    let frame = CloseFrame {
        code,
        reason: reason.as_ref().into(),
    };
    let handshake = async {
        socket.close(Some(frame)).await?;
        while socket.next().await.transpose()?.is_some() {}
        Ok::<(), WsError>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), handshake).await;
}
