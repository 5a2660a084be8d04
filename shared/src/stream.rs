//! Plumbing for an answer that never ends (step 03b's event stream): a
//! response body that the server writes while it is being sent, and a way
//! to hang up on a client that stopped reading it.
//!
//! Every other answer in the workshop is one buffer, ready before the first
//! byte goes out. A stream is the opposite: the status and headers go out
//! at once, then the body trickles, a chunk whenever the server has
//! something to say. HTTP/1.1 sends such a body in *chunked* transfer
//! encoding (each chunk preceded by its size), since its length is not
//! known in advance.
//!
//! A task of the step writes chunks with [`Stream::send`]; hyper takes them
//! from a small queue as fast as the connection lets it. A client that
//! stops reading fills its TCP window, then our buffers, then the queue:
//! `send` then waits. The step gives it a deadline, and past it calls
//! [`Stream::hang_up`], which closes the connection at once: hyper alone
//! would wait forever to write what it has buffered, holding the
//! connection's memory and file descriptor.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::task::Poll;

use bytes::Bytes;
use http_body_util::Either;
use hyper::StatusCode;
use hyper::body::Frame;
use hyper::header;
use hyper::header::HeaderValue;
use hyper::http::Extensions;
use tokio::sync::Notify;
use tokio::sync::mpsc;

use crate::http::Response;

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
    connection: Hangup,
}

/// The client is gone: the connection closed, nobody will read more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl Stream {
    /// Sends a chunk, waiting while the client's buffers and ours are full.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Gone> {
        self.chunks.send(chunk).await.map_err(|_| Gone)
    }

    /// Resolves once the client is gone (hyper noticed the connection
    /// close, and dropped the answer): a stream with nothing to send learns
    /// it here rather than at its next write.
    pub async fn closed(&self) {
        self.chunks.closed().await;
    }

    /// Closes the connection now, without finishing the answer: for a
    /// client that does not read what it is sent.
    pub fn hang_up(self) {
        self.connection.now();
    }
}

/// A `200 OK` answer of `content_type` whose body is written while it is
/// sent, for `request` (whose extensions say which connection to hang up),
/// and the [`Stream`] to write it with.
pub fn streaming(request: &Extensions, content_type: &'static str) -> (Response, Stream) {
    let (sender, receiver) = mpsc::channel(QUEUED_CHUNKS);
    let mut response = hyper::Response::new(Either::Right(Streaming { chunks: receiver }));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let stream = Stream {
        chunks: sender,
        connection: Hangup::of(request),
    };
    (response, stream)
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
