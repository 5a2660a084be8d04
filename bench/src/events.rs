//! A simulated page's EventSource (step 03b): one `GET` whose answer never
//! ends, read as it comes, and nothing else.
//!
//! The answer's head is read as [`wire`] reads any other; it must be a `200`
//! of `text/event-stream` in chunked transfer encoding, as a browser
//! requires (anything else makes EventSource give up, and here fails the
//! page). Then the body is taken out of its chunks (a hex size line, that
//! many bytes, CRLF) and cut into blocks at each blank line: an event, a
//! `retry:`, a comment. Like [`crate::socket`], it reads into the unused end
//! of one buffer per page and lends each block out instead of copying it.

use std::sync::Arc;

use bytes::Buf;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::wire;
use crate::wire::Counted;
use crate::wire::Tally;
use crate::wire::Target;

/// The most an answer's head may take.
const HEAD_LIMIT: usize = 16 * 1024;

/// The largest block a page accepts: a reset with a full history fits.
const BLOCK_LIMIT: usize = 16 * 1024 * 1024;

/// A read asks for at least this much room.
const READ_SIZE: usize = 8 * 1024;

/// One page's event stream.
pub struct Events {
    stream: Counted<TcpStream>,
    /// What came off the socket and is not yet part of `body`.
    raw: BytesMut,
    /// The body, out of its chunks, from the start of the next block.
    body: BytesMut,
    /// Where in `body` to look for the next blank line: what is before was
    /// searched already.
    searched: usize,
    /// The block handed out last, still at the front of `body`.
    lent: usize,
    /// Bytes of the current chunk still to move into `body`, or `None`
    /// while a size line is expected.
    chunk_left: Option<usize>,
}

/// One block's event: its name (`event:`, `message` without one) and its
/// data. `None` for a block without `data:` (`retry:`, a comment).
pub struct Event<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
}

impl Events {
    /// `GET path` as EventSource sends it, and the head of the answer.
    pub async fn open(target: &Target, path: &str, tally: &Arc<Tally>) -> Result<Events, String> {
        let mut stream = wire::connect(target, tally).await?;
        tally.count_request();
        let host = target.host.to_str().expect("the host is ASCII");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| format!("{path}: cannot send the request: {error}"))?;
        let mut raw = BytesMut::with_capacity(READ_SIZE);
        let head = loop {
            if let Some(head) = parse_head(&raw).map_err(|error| format!("{path}: {error}"))? {
                break head;
            }
            if raw.len() > HEAD_LIMIT {
                return Err(format!("{path}: an answer whose head never ends"));
            }
            read(&mut stream, &mut raw).await?;
        };
        raw.advance(head);
        Ok(Events {
            stream,
            raw,
            body: BytesMut::with_capacity(READ_SIZE),
            searched: 0,
            lent: 0,
            chunk_left: None,
        })
    }

    /// The next block, without its blank line.
    pub async fn next_block(&mut self) -> Result<&[u8], String> {
        self.body.advance(self.lent);
        self.lent = 0;
        loop {
            if let Some(end) = find_blank_line(&self.body, self.searched) {
                self.lent = end + 2;
                self.searched = 0;
                return Ok(&self.body[..end]);
            }
            self.searched = self.body.len().saturating_sub(1);
            if self.body.len() > BLOCK_LIMIT {
                return Err("an event larger than 16 MiB".into());
            }
            if !self.unchunk()? {
                read(&mut self.stream, &mut self.raw).await?;
            }
        }
    }

    /// Moves what it can from `raw` into `body`; `false` when it needs
    /// more bytes from the socket.
    fn unchunk(&mut self) -> Result<bool, String> {
        let mut moved = false;
        loop {
            match self.chunk_left {
                Some(0) => {
                    // A chunk's data ends with CRLF.
                    if self.raw.len() < 2 {
                        return Ok(moved);
                    }
                    if &self.raw[..2] != b"\r\n" {
                        return Err("a chunk that does not end with CRLF".into());
                    }
                    self.raw.advance(2);
                    self.chunk_left = None;
                }
                Some(left) => {
                    if self.raw.is_empty() {
                        return Ok(moved);
                    }
                    let take = left.min(self.raw.len());
                    self.body.extend_from_slice(&self.raw[..take]);
                    self.raw.advance(take);
                    self.chunk_left = Some(left - take);
                    moved = true;
                }
                None => {
                    let Some(line) = self.raw.windows(2).position(|pair| pair == b"\r\n") else {
                        return Ok(moved);
                    };
                    let size = std::str::from_utf8(&self.raw[..line])
                        .ok()
                        .map(|size| size.split(';').next().unwrap_or("").trim())
                        .and_then(|size| usize::from_str_radix(size, 16).ok())
                        .ok_or("a broken chunk size")?;
                    if size == 0 {
                        return Err("the event stream ended".into());
                    }
                    self.raw.advance(line + 2);
                    self.chunk_left = Some(size);
                }
            }
        }
    }
}

/// Reads what has come into the buffer's spare room.
async fn read(stream: &mut Counted<TcpStream>, buffer: &mut BytesMut) -> Result<(), String> {
    if buffer.capacity() - buffer.len() < READ_SIZE / 2 {
        buffer.reserve(READ_SIZE);
    }
    match stream.read_buf(buffer).await {
        Ok(0) => Err("the server closed the event stream".into()),
        Ok(_) => Ok(()),
        Err(error) => Err(format!("the event stream broke: {error}")),
    }
}

/// Where the first `\n\n` at or after `from` starts.
fn find_blank_line(body: &[u8], from: usize) -> Option<usize> {
    let from = from.min(body.len());
    body[from..]
        .windows(2)
        .position(|pair| pair == b"\n\n")
        .map(|at| from + at)
}

/// The length of the head of a `200 text/event-stream` chunked answer,
/// once all of it has come.
fn parse_head(buffer: &[u8]) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let size = match answer.parse(buffer) {
        Ok(httparse::Status::Complete(size)) => size,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(format!("an answer that is not HTTP/1.1: {error}")),
    };
    if answer.code != Some(200) {
        return Err(format!("answered {:?} instead of a stream", answer.code));
    }
    let has = |name: &str, value: &str| {
        answer.headers.iter().any(|header| {
            header.name.eq_ignore_ascii_case(name)
                && header.value.eq_ignore_ascii_case(value.as_bytes())
        })
    };
    if !has("content-type", "text/event-stream") {
        return Err("an answer that is not text/event-stream".into());
    }
    if !has("transfer-encoding", "chunked") {
        return Err("an event stream that is not chunked".into());
    }
    Ok(Some(size))
}

/// The event in a block: `field: value` lines, one space after the colon
/// dropped, comments (a line starting with `:`) skipped. Our server sends
/// one `data:` line per event, so the data is lent as it is.
pub fn event(block: &[u8]) -> Result<Option<Event<'_>>, String> {
    let mut name = "message";
    let mut data = None;
    for line in block.split(|&byte| byte == b'\n') {
        let (field, value) = match line.iter().position(|&byte| byte == b':') {
            Some(0) => continue,
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &line[line.len()..]),
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match field {
            b"event" => {
                name = std::str::from_utf8(value).map_err(|_| "an event name that is not UTF-8")?
            }
            b"data" if data.is_some() => return Err("an event of more than one data line".into()),
            b"data" => data = Some(value),
            _ => {}
        }
    }
    Ok(data.map(|data| Event { name, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_events_or_not() {
        let news = event(b"id: 4\nevent: news\ndata: {\"id\":4}")
            .unwrap()
            .unwrap();
        assert_eq!((news.name, news.data), ("news", &b"{\"id\":4}"[..]));
        assert!(event(b"retry: 2000").unwrap().is_none());
        assert!(event(b": keep-alive").unwrap().is_none());
        let plain = event(b"data:x").unwrap().unwrap();
        assert_eq!((plain.name, plain.data), ("message", &b"x"[..]));
    }

    #[test]
    fn a_blank_line_is_found_across_reads() {
        assert_eq!(find_blank_line(b"retry: 2000\n\nid", 0), Some(11));
        assert_eq!(find_blank_line(b"abc\n", 0), None);
        assert_eq!(find_blank_line(b"abc\n\n", 3), Some(3));
    }

    #[test]
    fn only_a_chunked_200_event_stream_is_a_stream() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                   transfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(ok), Ok(Some(ok.len())));
        assert_eq!(parse_head(&ok[..20]), Ok(None));
        let refused = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_head(refused).is_err());
        let json =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        assert!(parse_head(json).is_err());
    }
}
