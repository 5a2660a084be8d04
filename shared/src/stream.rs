//! Plumbing for an answer that never ends (step 03b's event stream): a
//! response body that the server writes while it is being sent, and a way
//! to hang up on a client that stopped reading it. The step keeps what
//! teaches server-sent events (the event format, `retry:`, resets,
//! keep-alive comments, where a stream resumes); what is here is the same
//! for any stream, or there for the bench.
//!
//! Every other answer in the workshop is one buffer, ready before the first
//! byte goes out. A stream is the opposite: the status and headers go out
//! at once ([`streaming`]), then the body trickles, a chunk whenever the
//! server has something to say. HTTP/1.1 sends such a body in *chunked*
//! transfer encoding (each chunk preceded by its size), since its length
//! is not known in advance. When it breaks off, an `EventSource`
//! reconnects and says where it stopped ([`last_event_id`]).
//!
//! A task of the step writes chunks with [`Stream::send`]; hyper takes them
//! from a small queue as fast as the connection lets it. A client that
//! stops reading fills its TCP window, then our buffers, then the queue:
//! `send` then waits, up to the deadline the step gave the stream, and
//! then says [`Stopped::Stalled`]. [`Stream::serve`], which runs the
//! step's loop, then calls [`Stream::hang_up`], which closes the
//! connection at once: hyper alone would wait forever to write what it has
//! buffered, holding the connection's memory and file descriptor.
//!
//! And what thousands of streams need to stay cheap, none of which is
//! about the event format:
//!
//! - [`Places`]: how many streams are open, with a cap the step checks
//!   before it opens one more.
//! - [`OncePerItem`]: each item's chunk, encoded by the first stream that
//!   sends it and shared by all the others.
//! - [`gather`]: a burst of items as one chunk per stream instead of one
//!   chunk per item.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Either;
use hyper::HeaderMap;
use hyper::StatusCode;
use hyper::body::Frame;
use hyper::header;
use hyper::header::HeaderValue;
use hyper::http::Extensions;
use serde::Serialize;
use serde::Serializer;
use tokio::sync::Notify;
use tokio::sync::mpsc;

use crate::Shutdown;
use crate::feed::PUSH_BUFFER;
use crate::http::Response;
use crate::push::EncodeOnce;

/// How many chunks may wait between the step's task and hyper. Chunks are
/// usually shared bytes (one encoding of an item for every stream), so the
/// queue costs a few pointers; it only smooths a burst.
const QUEUED_CHUNKS: usize = 8;

/// A response body made of the chunks a [`Stream`] sends; it ends when the
/// `Stream` is dropped.
#[derive(Debug)]
pub struct Streaming {
    chunks: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for Streaming {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// The server's end of a streaming answer.
#[derive(Debug)]
pub struct Stream {
    chunks: mpsc::Sender<Bytes>,
    /// How long one chunk may wait for room before the client counts as
    /// stalled.
    deadline: Duration,
    connection: Hangup,
}

/// Why a chunk could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The client is gone: the connection closed, nobody will read more.
    Gone,
    /// The client is there but stopped reading: the chunk waited for room
    /// longer than the stream's deadline.
    Stalled,
}

impl Stream {
    /// Sends a chunk, waiting while the client's buffers and ours are full,
    /// but no longer than the stream's deadline.
    ///
    /// Nearly always there is room at once, and then no clock is set: a
    /// timer set and taken down again per stream for every item was work
    /// for nothing. The clock starts when the chunk has to wait.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Stopped> {
        let chunk = match self.chunks.try_send(chunk) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stopped::Gone),
            Err(mpsc::error::TrySendError::Full(chunk)) => chunk,
        };
        match tokio::time::timeout(self.deadline, self.chunks.send(chunk)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stopped::Gone),
            Err(_) => Err(Stopped::Stalled),
        }
    }

    /// Resolves once the client is gone (hyper noticed the connection
    /// close, and dropped the answer): a stream with nothing to send learns
    /// it here rather than at its next write.
    pub async fn closed(&self) {
        self.chunks.closed().await;
    }

    /// Closes the connection now, without finishing the answer: for a
    /// client that does not read what it is sent.
    pub fn hang_up(&self) {
        self.connection.now();
    }

    /// Runs the future `writing` makes (the step's loop, which writes this
    /// stream and returns only when a write fails) until the client leaves,
    /// stops reading, or `shutdown` fires; hangs up on a client that stopped
    /// reading, and logs how long the stream lasted and how it ended.
    ///
    /// `writing` is a function rather than a future so that the future is
    /// made in place, inside the `select!`: moved in as an argument, it would
    /// take its room in the task twice, about half a KiB more per idle
    /// stream (the bench's memory per idle page).
    pub async fn serve<F>(&self, writing: impl FnOnce() -> F, shutdown: &Shutdown) -> Ended
    where
        F: Future<Output = Stopped>,
    {
        let started = Instant::now();
        let ended = tokio::select! {
            stopped = writing() => match stopped {
                Stopped::Gone => Ended::Left,
                Stopped::Stalled => {
                    self.hang_up();
                    Ended::CutOff
                }
            },
            () = self.closed() => Ended::Left,
            () = shutdown.wait() => Ended::Shutdown,
        };
        let why = match ended {
            Ended::Left => "the client left",
            Ended::CutOff => "the client stopped reading; cut off",
            Ended::Shutdown => "the server is stopping",
        };
        let held = started.elapsed().as_secs_f64();
        tracing::info!("an event stream ended after {held:.1} s: {why}");
        ended
    }
}

/// How a stream ended (see [`Stream::serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client closed the connection (the tab went away).
    Left,
    /// The client stopped reading; the server hung up.
    CutOff,
    /// The server is stopping: the answer ends properly (the last chunk),
    /// and the client may come back.
    Shutdown,
}

/// A `200 OK` answer of `content_type` whose body is written while it is
/// sent, for `request` (whose extensions say which connection to hang up),
/// and the [`Stream`] to write it with, each write within `deadline`.
pub fn streaming<B>(
    request: &hyper::Request<B>,
    content_type: &'static str,
    deadline: Duration,
) -> (Response, Stream) {
    let (sender, receiver) = mpsc::channel(QUEUED_CHUNKS);
    let mut response = hyper::Response::new(Either::Right(Streaming { chunks: receiver }));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // `no-store`: a stream is not a document to keep, and nothing on the
    // way (the browser, a proxy) should hold on to it. The answer is never
    // compressed either: a compressor holds bytes back until it has enough
    // to squeeze, and a chunk would wait for the next ones.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx, the most common reverse proxy, collects an answer before
    // passing it on; this header asks it to pass each chunk on at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let stream = Stream {
        chunks: sender,
        deadline,
        connection: Hangup::of(request.extensions()),
    };
    (response, stream)
}

/// The `Last-Event-ID` a reconnecting browser sends: the `id:` of the last
/// event it got, as a number (for a stream whose `id:`s are item ids or
/// cursors); `None` without one.
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(id) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(id.as_bytes());
    if id.is_empty() {
        return Ok(None);
    }
    id.parse().map(Some).map_err(|_| {
        format!("\u{201c}Last-Event-ID\u{201d} must be an id this server sent, not \u{201c}{id}\u{201d}.")
    })
}

/// A way to close one connection from inside a request handler. The
/// accept loop (`http::serve`) gives each connection one, in the
/// extensions of every request it carries, and drops the connection when
/// it fires.
#[derive(Debug, Clone, Default)]
pub struct Hangup(Arc<Notify>);

impl Hangup {
    /// The connection's, or one that closes nothing for a request that
    /// did not come through `http::serve`.
    pub fn of(extensions: &Extensions) -> Hangup {
        extensions.get::<Hangup>().cloned().unwrap_or_default()
    }

    /// Closes the connection.
    pub fn now(&self) {
        // A permit, if the accept loop is not waiting yet: it then finds
        // it the next time it looks.
        self.0.notify_one();
    }

    /// Resolves once someone called [`Hangup::now`].
    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

/// How many streams are open. Each open stream holds a [`Place`] and gives
/// it back when the place is dropped, however the stream ended (the client
/// left, it was cut off, the server stopped). In `/stats` it reads as the
/// number.
#[derive(Debug, Clone, Default)]
pub struct Places(Arc<AtomicUsize>);

/// One open stream's place among the [`Places`].
#[derive(Debug)]
pub struct Place(Arc<AtomicUsize>);

impl Places {
    /// Takes a place, if fewer than `max` are taken.
    pub fn take(&self, max: usize) -> Option<Place> {
        let taken = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < max).then_some(taken + 1)
            });
        // `map`, not `then_some`: a `Place` made for a refused place would
        // be dropped at once, and give back a place it never took.
        taken.ok().map(|_| Place(self.0.clone()))
    }

    /// How many places are taken now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Serialize for Places {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.count().serialize(serializer)
    }
}

/// Each item's chunk, encoded once however many streams send it.
///
/// When an item is posted, every stream wants the same bytes at about the
/// same moment. The first one encodes them; the others get the same
/// [`Bytes`], which costs a reference count, not a copy (nor a
/// `serde_json` run per stream). It keeps as many items as a subscriber may
/// be behind the newest one ([`PUSH_BUFFER`]): in a burst, the slowest
/// stream still finds every item encoded.
#[derive(Clone)]
pub struct OncePerItem(Arc<EncodeOnce<u64, Bytes>>);

impl Default for OncePerItem {
    fn default() -> Self {
        OncePerItem(Arc::new(EncodeOnce::new(PUSH_BUFFER)))
    }
}

impl OncePerItem {
    /// The chunk for item `id`, made by `encode` if no stream made it yet.
    pub fn get(&self, id: u64, encode: impl FnOnce() -> Bytes) -> Bytes {
        self.0.get(id, encode)
    }
}

/// One chunk made of `first` and of every chunk `more` has ready now, and
/// how many chunks went into it.
///
/// Each chunk costs the stream a trip through its queue, a write and a
/// chunk header on the wire. When 200 items are posted at once, a stream
/// woken for the first finds the others already waiting: gathered, the
/// burst is a few writes instead of 200 (the bench's burst, see the
/// README), as a WebSocket gathers frames into one write. A lone chunk
/// goes out as it is, the bytes every stream shares.
pub fn gather(first: Bytes, mut more: impl FnMut() -> Option<Bytes>) -> (Bytes, u64) {
    let Some(second) = more() else {
        return (first, 1);
    };
    let mut chunk = first.to_vec();
    let mut count = 1;
    let mut next = Some(second);
    while let Some(ready) = next {
        chunk.extend_from_slice(&ready);
        count += 1;
        next = more();
    }
    (chunk.into(), count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_and_given_back() {
        let places = Places::default();
        let first = places.take(2).expect("a free place");
        let second = places.take(2).expect("a free place");
        assert!(places.take(2).is_none(), "both are taken");
        assert_eq!(places.count(), 2, "a refusal takes nothing");
        drop(first);
        assert_eq!(places.count(), 1);
        assert!(places.take(2).is_some(), "the place came back");
        drop(second);
        assert_eq!(serde_json::to_string(&places).unwrap(), "0");
    }

    #[test]
    fn a_burst_is_gathered_into_one_chunk() {
        let mut waiting = vec![Bytes::from("c"), Bytes::from("b")];
        let (chunk, count) = gather(Bytes::from("a"), || waiting.pop());
        assert_eq!((chunk, count), (Bytes::from("abc"), 3));
        let alone = Bytes::from("alone");
        let (chunk, count) = gather(alone.clone(), || None);
        assert_eq!(count, 1);
        assert_eq!(chunk.as_ptr(), alone.as_ptr(), "a lone chunk is not copied");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_stalls_the_stream() {
        let deadline = Duration::from_millis(50);
        let request = hyper::Request::new(());
        let (response, stream) = streaming(&request, "text/plain", deadline);
        for _ in 0..QUEUED_CHUNKS {
            assert_eq!(stream.send(Bytes::from("x")).await, Ok(()));
        }
        // Nobody reads: the queue is full, and the next chunk waits for
        // room until the deadline.
        assert_eq!(stream.send(Bytes::from("x")).await, Err(Stopped::Stalled));
        drop(response);
        assert_eq!(stream.send(Bytes::from("x")).await, Err(Stopped::Gone));
    }
}
