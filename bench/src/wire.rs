//! The client end of the wire: a TCP stream that counts its bytes, and an
//! HTTP/1.1 connection on top of it that is kept alive between requests,
//! the way a browser keeps one connection per page open.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::Request;
use hyper::StatusCode;
use hyper::client::conn::http1;
use hyper::header;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

/// Where the step under test listens, and the headers a page of it sends.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host: 127.0.0.1:PORT`. HTTP/1.1 requires it, and the server compares
    /// it with `Origin` to tell its own pages from other sites.
    pub host: HeaderValue,
    /// `Origin: http://127.0.0.1:PORT`: what a browser sends with a POST or
    /// a WebSocket handshake from a page of this server.
    pub origin: HeaderValue,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Target {
        let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header");
        let origin =
            HeaderValue::from_str(&format!("http://{addr}")).expect("a URL is a valid header");
        Target { addr, host, origin }
    }
}

/// What one simulated page put on the wire and took off it.
#[derive(Debug, Default)]
pub struct Tally {
    /// Bytes read from the socket: status lines, headers, bodies, frames.
    pub received: AtomicU64,
    /// Bytes written to the socket.
    pub sent: AtomicU64,
    /// HTTP requests sent, the WebSocket handshake included.
    pub requests: AtomicU64,
}

impl Tally {
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.received.load(Ordering::Relaxed) + self.sent.load(Ordering::Relaxed)
    }
}

/// A stream that adds every byte it moves to a [`Tally`]. These are the
/// bytes TCP carries for the page (what the browser's Network tab shows,
/// headers included); TCP/IP's own headers and acknowledgements are not
/// counted.
pub struct Counted<S> {
    inner: S,
    tally: Arc<Tally>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, tally: Arc<Tally>) -> Counted<S> {
        Counted { inner, tally }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let read = (buf.filled().len() - before) as u64;
            self.tally.received.fetch_add(read, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = poll {
            self.tally.sent.fetch_add(written as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = poll {
            self.tally.sent.fetch_add(written as u64, Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Opens a TCP connection to the step, counted.
pub async fn connect(target: &Target, tally: &Arc<Tally>) -> Result<Counted<TcpStream>, String> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(|error| format!("cannot connect to {}: {error}", target.addr))?;
    // Browsers send small requests at once; so do we.
    stream
        .set_nodelay(true)
        .map_err(|error| format!("cannot set TCP_NODELAY: {error}"))?;
    Ok(Counted::new(stream, tally.clone()))
}

/// One HTTP/1.1 connection, kept alive: every request of a page goes over
/// it, one at a time, as a browser does for a page's script.
pub struct Http {
    sender: http1::SendRequest<Full<Bytes>>,
    target: Target,
    tally: Arc<Tally>,
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub etag: Option<HeaderValue>,
    pub body: Bytes,
}

impl Http {
    /// Connects and speaks HTTP/1.1 on the connection. The connection
    /// itself (reading answers, writing requests) runs as its own task and
    /// ends when this `Http` is dropped.
    pub async fn connect(target: &Target, tally: &Arc<Tally>) -> Result<Http, String> {
        let stream = connect(target, tally).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("HTTP handshake failed: {error}"))?;
        tokio::spawn(async move {
            let _ended = connection.await;
        });
        Ok(Http {
            sender,
            target: target.clone(),
            tally: tally.clone(),
        })
    }

    /// `GET path`, with `If-None-Match` when the page has an ETag.
    pub async fn get(&mut self, path: &str, etag: Option<&HeaderValue>) -> Result<Answer, String> {
        let mut request = Request::get(path).header(header::HOST, &self.target.host);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let request = request
            .body(Full::default())
            .expect("a GET with fixed headers is valid");
        self.send(request).await
    }

    /// `POST path` with a JSON body, from a page of this server.
    pub async fn post_json(&mut self, path: &str, json: String) -> Result<Answer, String> {
        let request = Request::post(path)
            .header(header::HOST, &self.target.host)
            .header(header::ORIGIN, &self.target.origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .expect("a POST with fixed headers is valid");
        self.send(request).await
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, String> {
        let target = request.uri().to_string();
        self.sender
            .ready()
            .await
            .map_err(|error| format!("the connection closed before {target}: {error}"))?;
        self.tally.count_request();
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| format!("{target}: {error}"))?;
        let status = response.status();
        let etag = response.headers().get(header::ETAG).cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("{target}: the body broke off: {error}"))?
            .to_bytes();
        Ok(Answer { status, etag, body })
    }
}
