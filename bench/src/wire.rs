//! The client end of the wire: a TCP stream that counts its bytes, and an
//! HTTP/1.1 connection on top of it that is kept alive between requests,
//! the way a browser keeps one connection per page open.

use std::io;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::task::Context;
use std::task::Poll;

use bytes::Buf;
use bytes::Bytes;
use bytes::BytesMut;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use tokio::io::AsyncRead;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;
use tokio::io::ReadBuf;
use tokio::net::TcpSocket;
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
    /// The address a page connects *from*, when not the system's choice
    /// (see [`page_source`]).
    pub source: Option<IpAddr>,
    /// A page on a slow link (the `reset` scenario): see [`SLOW_LINK`].
    pub slow: bool,
}

impl Target {
    pub fn new(addr: SocketAddr) -> Target {
        let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header");
        let origin =
            HeaderValue::from_str(&format!("http://{addr}")).expect("a URL is a valid header");
        Target {
            addr,
            host,
            origin,
            source: None,
            slow: false,
        }
    }

    /// The same server, reached by page number `index` (see
    /// [`page_source`]).
    pub fn for_page(&self, index: usize) -> Target {
        Target {
            source: page_source(index, self.addr),
            ..self.clone()
        }
    }
}

/// How many pages connect from each source address.
///
/// A TCP connection is known by four things: source address and port,
/// destination address and port. Connecting to one server (one address,
/// one port), a source address has one port per connection to give, from
/// the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 to
/// 60999 by default: 28,232 ports). And a port stays taken for 60 s after
/// its connection closed (`TIME_WAIT`, on the side that closed first: the
/// pages). So all pages connect from 127.0.0.2 onwards, this many from
/// each (pages 0 to 4,999 from 127.0.0.2, 5,000 to 9,999 from 127.0.0.3,
/// ...): each address gives a server at most a fifth of its ports, however
/// many runs came before (each server listens on a port of its own, so
/// the ports its pages held are free again for the next one's). All of
/// 127.0.0.0/8 is this machine; a server on 127.0.0.1 answers them all.
pub const PAGES_PER_SOURCE: usize = 5_000;

/// Where page `index` connects from, for a server on `server`: a
/// loopback address of its own block (see [`PAGES_PER_SOURCE`]), or the
/// system's choice for a server elsewhere.
pub fn page_source(index: usize, server: SocketAddr) -> Option<IpAddr> {
    let IpAddr::V4(ip) = server.ip() else {
        return None;
    };
    if !ip.is_loopback() {
        return None;
    }
    let block = u32::try_from(2 + index / PAGES_PER_SOURCE).ok()?;
    // 127.0.0.2 up to 127.255.255.254: room for 80 billion pages.
    Some(IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(127, 0, 0, 0)) + block,
    )))
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
    let stream = dial(target).await.map_err(|error| match target.source {
        Some(source) => format!("cannot connect to {} from {source}: {error}", target.addr),
        None => format!("cannot connect to {}: {error}", target.addr),
    })?;
    // Browsers send small requests at once; so do we.
    stream
        .set_nodelay(true)
        .map_err(|error| format!("cannot set TCP_NODELAY: {error}"))?;
    Ok(Counted::new(stream, tally.clone()))
}

/// A slow link's receive buffer and segment size, in bytes. On loopback a
/// TCP segment may be 64 KiB and both ends' buffers grow to megabytes, so
/// a page that stops reading would let its server hand the kernel
/// thousands of items before it ever has to wait. Over a real network a
/// segment is at most 1,460 bytes (Ethernet's 1,500 less the IP and TCP
/// headers), and the server's send buffer grows with it; a 4 KiB receive
/// buffer (the kernel doubles it for its bookkeeping) is a phone on a bad
/// line. Set before connecting: both are agreed in the handshake.
pub const SLOW_LINK: (u32, libc::c_int) = (4 * 1024, 1_460);

/// `connect()`, from the target's source address if it has one.
async fn dial(target: &Target) -> io::Result<TcpStream> {
    if target.source.is_none() && !target.slow {
        return TcpStream::connect(target.addr).await;
    }
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if target.slow {
        let (buffer, segment) = SLOW_LINK;
        socket.set_recv_buffer_size(buffer)?;
        set_int(&socket, libc::IPPROTO_TCP, libc::TCP_MAXSEG, segment)?;
    }
    if let Some(source) = target.source {
        // A `bind` to port 0 would pick the port now, and would have to
        // pick one that no other socket of that address holds, connected
        // to anyone or in TIME_WAIT. IP_BIND_ADDRESS_NO_PORT leaves the
        // port to `connect`, which only needs the four-tuple to be new.
        set_int(&socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(target.addr).await
}

/// `setsockopt` of an int option, which tokio has no method for.
fn set_int(
    socket: &TcpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the descriptor is the socket's own, alive for the call; the
    // option is an int, passed by pointer with its size.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One HTTP/1.1 connection, kept alive: every request of a page goes over
/// it, one at a time, as a browser does for a page's script.
///
/// Written out here rather than with hyper's client, which runs each
/// connection as a task of its own and hands requests and answers between
/// the two through channels: for 5,000 long-polling pages that doubled the
/// tasks woken per item and made the pages, not the server, the slower
/// half of the measurement. This one writes the request, then reads the
/// answer's head (parsed by `httparse`, as hyper does) and a body of
/// `Content-Length` bytes, which is how our servers always answer.
pub struct Http {
    stream: Counted<TcpStream>,
    /// What came in and was not handed out yet.
    buffer: BytesMut,
    target: Target,
    tally: Arc<Tally>,
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub etag: Option<HeaderValue>,
    pub body: Bytes,
}

/// The most an answer's head may take.
const HEAD_LIMIT: usize = 16 * 1024;

impl Http {
    pub async fn connect(target: &Target, tally: &Arc<Tally>) -> Result<Http, String> {
        Ok(Http {
            stream: connect(target, tally).await?,
            buffer: BytesMut::with_capacity(4 * 1024),
            target: target.clone(),
            tally: tally.clone(),
        })
    }

    /// `GET path`, with `If-None-Match` when the page has an ETag.
    pub async fn get(&mut self, path: &str, etag: Option<&HeaderValue>) -> Result<Answer, String> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.host());
        if let Some(etag) = etag {
            let etag = etag.to_str().map_err(|_| "an ETag that is not ASCII")?;
            request.push_str(&format!("If-None-Match: {etag}\r\n"));
        }
        request.push_str("\r\n");
        self.send(path, request.into_bytes()).await
    }

    /// `POST path` with a JSON body, from a page of this server.
    pub async fn post_json(&mut self, path: &str, json: String) -> Result<Answer, String> {
        let origin = self.target.origin.to_str().expect("the origin is ASCII");
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host(),
            json.len()
        )
        .into_bytes();
        request.extend_from_slice(json.as_bytes());
        self.send(path, request).await
    }

    fn host(&self) -> &str {
        self.target.host.to_str().expect("the host is ASCII")
    }

    async fn send(&mut self, path: &str, request: Vec<u8>) -> Result<Answer, String> {
        self.tally.count_request();
        self.stream
            .write_all(&request)
            .await
            .map_err(|error| format!("{path}: cannot send the request: {error}"))?;
        let (status, etag, length, head) = loop {
            if let Some(head) =
                parse_head(&self.buffer).map_err(|error| format!("{path}: {error}"))?
            {
                break head;
            }
            if self.buffer.len() > HEAD_LIMIT {
                return Err(format!("{path}: an answer whose head never ends"));
            }
            self.fill(path).await?;
        };
        self.buffer.advance(head);
        while self.buffer.len() < length {
            self.buffer.reserve(length - self.buffer.len());
            self.fill(path).await?;
        }
        let body = self.buffer.split_to(length).freeze();
        Ok(Answer { status, etag, body })
    }

    /// Reads what has come into the buffer's spare room.
    async fn fill(&mut self, path: &str) -> Result<(), String> {
        if self.buffer.capacity() - self.buffer.len() < 1024 {
            self.buffer.reserve(4 * 1024);
        }
        match self.stream.read_buf(&mut self.buffer).await {
            Ok(0) => Err(format!("{path}: the server closed the connection")),
            Ok(_) => Ok(()),
            Err(error) => Err(format!("{path}: the connection broke: {error}")),
        }
    }
}

/// An answer's head, once all of it has come: its status, `ETag`, body
/// length and the head's own length.
type Head = (StatusCode, Option<HeaderValue>, usize, usize);

fn parse_head(buffer: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let size = match answer.parse(buffer) {
        Ok(httparse::Status::Complete(size)) => size,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(format!("an answer that is not HTTP/1.1: {error}")),
    };
    let status = (answer.code)
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("an answer without a status")?;
    let mut etag = None;
    let mut length = None;
    for header in answer.headers.iter() {
        if header.name.eq_ignore_ascii_case("etag") {
            etag = Some(HeaderValue::from_bytes(header.value).map_err(|_| "a broken ETag")?);
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.parse().ok());
            length = Some(value.ok_or("a broken Content-Length")?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("a chunked answer: our servers send a Content-Length".into());
        }
    }
    let length = match (status.as_u16(), length) {
        (100..=199 | 204 | 304, _) => 0,
        (_, Some(length)) => length,
        (_, None) => return Err(format!("a {status} without a Content-Length")),
    };
    Ok(Some((status, etag, length, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_connect_from_loopback_addresses_a_block_each() {
        let server: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let source = |index| page_source(index, server).map(|ip| ip.to_string());
        assert_eq!(source(0).as_deref(), Some("127.0.0.2"));
        assert_eq!(source(PAGES_PER_SOURCE - 1).as_deref(), Some("127.0.0.2"));
        assert_eq!(source(PAGES_PER_SOURCE).as_deref(), Some("127.0.0.3"));
        assert_eq!(source(18_999).as_deref(), Some("127.0.0.5"));
        // The 254th block goes on into the next octet.
        assert_eq!(source(PAGES_PER_SOURCE * 254).as_deref(), Some("127.0.1.0"));
        let elsewhere: SocketAddr = "192.0.2.7:80".parse().unwrap();
        assert_eq!(page_source(0, elsewhere), None);
    }

    #[tokio::test]
    async fn a_page_connects_from_its_own_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::new(listener.local_addr().unwrap()).for_page(PAGES_PER_SOURCE);
        let (_stream, (_, from)) = tokio::join!(
            async { connect(&target, &Arc::default()).await.unwrap() },
            async { listener.accept().await.unwrap() },
        );
        assert_eq!(from.ip().to_string(), "127.0.0.3");
    }

    #[test]
    fn a_head_is_read_once_whole_with_its_etag_and_length() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                       etag: \"41\"\r\ncontent-length: 12\r\n\r\n{\"items\":[]}";
        let head = answer.len() - 12;
        assert_eq!(parse_head(&answer[..head - 1]), Ok(None));
        let (status, etag, length, size) = parse_head(answer).unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(etag.unwrap(), "\"41\"");
        assert_eq!((length, size), (12, head));
    }

    #[test]
    fn a_304_has_no_body_whatever_it_says() {
        let answer = b"HTTP/1.1 304 Not Modified\r\netag: \"41\"\r\ncontent-length: 0\r\n\r\n";
        let (status, _, length, _) = parse_head(answer).unwrap().unwrap();
        assert_eq!((status, length), (StatusCode::NOT_MODIFIED, 0));
    }

    #[test]
    fn answers_the_pages_cannot_read_are_errors() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).unwrap_err().contains("chunked"));
        let lengthless = b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\r\n";
        assert!(
            parse_head(lengthless)
                .unwrap_err()
                .contains("Content-Length")
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }
}
