//! A simulated page's WebSocket: the opening handshake and the frames of
//! RFC 6455, client side, and nothing else.
//!
//! Why not tungstenite, which the steps use? Its reader zero-fills its
//! whole read buffer before every read, including the read that finds
//! nothing (`WouldBlock`), and copies each message out into a buffer of its
//! own. For one browser tab that is nothing; for 5,000 simulated pages on
//! the server's own two cores it was 2 × 8 KiB of `memset` and an
//! allocation per page per item (about 80 MB written per post), a fifth of
//! the pages' CPU time, which the server then measured as latency. This
//! reader reads into the unused end of one buffer per page, without
//! clearing it, and hands out each text message as a slice of that buffer.
//!
//! What it checks is what a browser checks: a `101` with the right
//! `Sec-WebSocket-Accept`, then frames from the server unmasked, with no
//! reserved bits, control frames short and whole, text in UTF-8. Pings are
//! answered with pongs, as browsers do; a close, a binary frame (no page of
//! the bench asks for attachments) or a fragmented message (our servers
//! never fragment) ends the page with an error.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Buf;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::wire;
use crate::wire::Counted;
use crate::wire::Tally;
use crate::wire::Target;

/// The largest message a page accepts: a snapshot of a full history fits
/// many times over.
const MESSAGE_LIMIT: usize = 16 * 1024 * 1024;

/// A read asks for at least this much room. Items are ~200 bytes; the
/// server flushes a burst in writes of 8 KiB or so.
const READ_SIZE: usize = 8 * 1024;

/// One page's WebSocket.
pub struct Socket {
    stream: Counted<TcpStream>,
    /// What came in and was not handed out yet.
    buffer: BytesMut,
    /// The frame handed out last, still at the front of `buffer`: dropped
    /// on the next read, so that the text could be lent instead of copied.
    lent: usize,
}

/// A frame's first two bytes and its length, decoded.
#[derive(Debug, PartialEq)]
struct Header {
    fin: bool,
    opcode: u8,
    /// The header's own length: 2, 4 or 10 bytes.
    size: usize,
    payload: usize,
}

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

impl Socket {
    /// `GET path` with `Upgrade: websocket` and the page's `Origin`, as
    /// `new WebSocket(url)` sends it; the handshake counts as a request.
    pub async fn open(target: &Target, path: &str, tally: &Arc<Tally>) -> Result<Socket, String> {
        let mut stream = wire::connect(target, tally).await?;
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            host = target.host.to_str().expect("the host is ASCII"),
            origin = target.origin.to_str().expect("the origin is ASCII"),
        );
        tally.count_request();
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| format!("cannot send the WebSocket handshake: {error}"))?;
        let mut socket = Socket {
            stream,
            buffer: BytesMut::with_capacity(READ_SIZE),
            lent: 0,
        };
        let head = loop {
            if let Some(end) = find(&socket.buffer, b"\r\n\r\n") {
                break socket.buffer.split_to(end + 4);
            }
            if socket.buffer.len() > 16 * 1024 {
                return Err("the answer to the handshake has no end of headers".into());
            }
            socket.fill().await?;
        };
        check_answer(&head, &derive_accept_key(key.as_bytes()))?;
        Ok(socket)
    }

    /// The next text message, lent until the next call. Pings are answered
    /// and pongs skipped on the way.
    pub async fn next_text(&mut self) -> Result<&str, String> {
        self.buffer.advance(self.lent);
        self.lent = 0;
        loop {
            let Some(header) = parse_header(&self.buffer)? else {
                self.fill().await?;
                continue;
            };
            let end = header.size + header.payload;
            if self.buffer.len() < end {
                self.buffer.reserve(end - self.buffer.len());
                self.fill().await?;
                continue;
            }
            match header.opcode {
                TEXT if header.fin => {
                    self.lent = end;
                    return std::str::from_utf8(&self.buffer[header.size..end])
                        .map_err(|_| "a text message that is not UTF-8".to_string());
                }
                TEXT | CONTINUATION => {
                    return Err("a fragmented message: the steps send each whole".into());
                }
                BINARY => return Err("a binary message: this page asked for none".into()),
                CLOSE => {
                    let payload = &self.buffer[header.size..end];
                    let code = payload
                        .get(..2)
                        .map(|code| u16::from_be_bytes([code[0], code[1]]));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                    return Err(format!("the server closed the socket: {code:?} {reason:?}"));
                }
                PING => {
                    let payload = self.buffer[header.size..end].to_vec();
                    self.buffer.advance(end);
                    self.send(PONG, &payload).await?;
                }
                PONG => self.buffer.advance(end),
                other => return Err(format!("a frame with the unknown opcode {other:#x}")),
            }
        }
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send(TEXT, text.as_bytes()).await
    }

    /// A client masks every frame it sends (RFC 6455, 5.3), with a key
    /// the page's script cannot predict.
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mask = (RandomState::new().hash_one(payload) as u32).to_be_bytes();
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            short @ 0..=125 => frame.push(0x80 | short as u8),
            medium @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(medium as u16).to_be_bytes());
            }
            long => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(long as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(
            payload
                .iter()
                .zip(mask.iter().cycle())
                .map(|(byte, key)| byte ^ key),
        );
        self.stream
            .write_all(&frame)
            .await
            .map_err(|error| format!("cannot send on the socket: {error}"))
    }

    /// Reads what has come, into the buffer's spare room (not cleared
    /// first: `read_buf` writes before anyone reads).
    async fn fill(&mut self) -> Result<(), String> {
        if self.buffer.capacity() - self.buffer.len() < READ_SIZE / 2 {
            self.buffer.reserve(READ_SIZE);
        }
        match self.stream.read_buf(&mut self.buffer).await {
            Ok(0) => Err("the socket ended".into()),
            Ok(_) => Ok(()),
            Err(error) => Err(format!("the socket broke: {error}")),
        }
    }
}

/// The header at the front of `buffer`, once all of it has come.
fn parse_header(buffer: &[u8]) -> Result<Option<Header>, String> {
    let [first, second, ..] = *buffer else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err("a frame with reserved bits set: no extension was agreed".into());
    }
    if second & 0x80 != 0 {
        return Err("a masked frame from the server (RFC 6455, 5.1)".into());
    }
    let (size, payload) = match second & 0x7F {
        126 => match buffer.get(2..4) {
            Some(length) => (4, u16::from_be_bytes([length[0], length[1]]) as u64),
            None => return Ok(None),
        },
        127 => match buffer.get(2..10) {
            Some(length) => (10, u64::from_be_bytes(length.try_into().expect("8 bytes"))),
            None => return Ok(None),
        },
        short => (2, u64::from(short)),
    };
    if payload > MESSAGE_LIMIT as u64 {
        return Err(format!("a frame of {payload} bytes"));
    }
    let header = Header {
        fin: first & 0x80 != 0,
        opcode: first & 0x0F,
        size,
        payload: payload as usize,
    };
    if header.opcode >= CLOSE && (!header.fin || header.payload > 125) {
        return Err("a control frame that is fragmented or longer than 125 bytes".into());
    }
    Ok(Some(header))
}

/// The server's answer must switch protocols and prove it read our key.
fn check_answer(head: &[u8], accept: &str) -> Result<(), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let text = || String::from_utf8_lossy(head).into_owned();
    match answer.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(format!("the handshake's answer is not HTTP: {}", text())),
    }
    if answer.code != Some(101) {
        return Err(format!("the handshake was refused: {}", text()));
    }
    let value = |name: &str| {
        (answer.headers.iter())
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| String::from_utf8_lossy(header.value).into_owned())
            .unwrap_or_default()
    };
    let upgrade = value("upgrade").eq_ignore_ascii_case("websocket");
    let connection =
        (value("connection").split(',')).any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !upgrade || !connection || value("sec-websocket-accept") != accept {
        return Err(format!(
            "the handshake's answer is not a WebSocket's: {}",
            text()
        ));
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_all_three_lengths_are_read_once_whole() {
        assert_eq!(parse_header(&[0x81]), Ok(None));
        assert_eq!(
            parse_header(&[0x81, 5, b'h']),
            Ok(Some(Header {
                fin: true,
                opcode: TEXT,
                size: 2,
                payload: 5
            }))
        );
        assert_eq!(parse_header(&[0x81, 126, 1]), Ok(None));
        assert_eq!(
            parse_header(&[0x81, 126, 1, 0]),
            Ok(Some(Header {
                fin: true,
                opcode: TEXT,
                size: 4,
                payload: 256
            }))
        );
        assert_eq!(parse_header(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0]), Ok(None));
        assert_eq!(
            parse_header(&[0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            Ok(Some(Header {
                fin: false,
                opcode: BINARY,
                size: 10,
                payload: 65536
            }))
        );
    }

    #[test]
    fn what_a_server_must_not_send_is_refused() {
        let error = |bytes: &[u8]| parse_header(bytes).unwrap_err();
        assert!(error(&[0x81, 0x85]).contains("masked"));
        assert!(error(&[0xC1, 5]).contains("reserved bits"));
        assert!(error(&[0x09, 0]).contains("control frame"));
        assert!(error(&[0x89, 126, 0, 126]).contains("control frame"));
        assert!(error(&[0x81, 127, 0, 0, 0, 1, 0, 0, 0, 0]).contains("bytes"));
    }

    #[test]
    fn the_answer_must_switch_protocols_with_the_right_key() {
        // RFC 6455, 1.3: the example key and its accept value.
        let accept = derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let good = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        assert_eq!(check_answer(good.as_bytes(), &accept), Ok(()));
        let wrong_key = good.replace(&accept, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(check_answer(wrong_key.as_bytes(), &accept).is_err());
        let refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        let error = check_answer(refused.as_bytes(), &accept).unwrap_err();
        assert!(
            error.contains("refused") && error.contains("403"),
            "{error}"
        );
    }
}
