//! A WebSocket client for tests of steps 04 and 05: connect as a page of
//! the step would (with its `Origin`), read JSON messages, and see close
//! codes.

use std::time::Duration;

use futures_util::SinkExt;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::Control;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;

use super::Running;

pub type Socket = WebSocketStream<TcpStream>;

/// Opens a WebSocket on `path` (`/ws?since=0`) from a page of this server.
pub async fn connect(server: &Running, path: &str) -> Socket {
    let mut request = format!("ws://{}{path}", server.addr)
        .into_client_request()
        .expect("a valid WebSocket URL");
    request
        .headers_mut()
        .insert("origin", server.origin().parse().unwrap());
    let stream = TcpStream::connect(server.addr)
        .await
        .expect("the step listens");
    let (socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the handshake succeeds");
    assert_eq!(response.status(), 101);
    socket
}

/// The message types of the protocols of steps 04 to 06, server to client:
/// what the pages' scripts rely on.
const PROTOCOL: [&str; 9] = [
    "snapshot",
    "news",
    "posted",
    "error",
    "joined",
    "left",
    "presence",
    "rooms",
    "announced",
];

/// The next message of the protocol, as JSON. Pings and pongs are skipped,
/// and so are messages of a type the protocol does not define, as the
/// pages' scripts ignore them: an exercise that adds one (`online`, say)
/// must not change what these tests see.
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = next_any_json(socket).await;
        if message["type"]
            .as_str()
            .is_some_and(|kind| PROTOCOL.contains(&kind))
        {
            return message;
        }
    }
}

/// The next text message, as JSON, whatever its type; pings and pongs are
/// skipped.
pub async fn next_any_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends a JSON message.
pub async fn send_json(socket: &mut Socket, value: Value) {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .expect("the socket takes the message");
}

/// Reads until the server closes, and returns its close code and reason.
pub async fn close_code(socket: &mut Socket) -> (CloseCode, String) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server closes within 10 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => panic!("the connection broke before a close frame: {error}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}

/// After the server's close frame: our close reply goes out with the next
/// read, and the connection must then end cleanly (the server closed TCP
/// after the closing handshake), not with a reset.
pub async fn ends_cleanly(socket: &mut Socket) {
    let end = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("the connection ends within 5 s");
    assert!(
        matches!(
            end,
            None | Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed))
        ),
        "the connection should end cleanly, not {end:?}"
    );
}

/// Sends a raw HTTP request on a new connection and returns the answer's
/// head (status line and headers), lowercased, and the open stream.
pub async fn raw_request(server: &Running, request: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert_eq!(read, 1, "the server closed before answering");
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap().to_lowercase(), stream)
}

/// A post as a page sends it on a socket: `fields` (`type`, `ref`, and a
/// `room` from step 05 on), then the title and the text. With `escaped`,
/// every character of those is a `\uXXXX` escape (two for an emoji: 12
/// bytes), the most bytes JSON can spend on them; without, plain UTF-8.
pub fn post_message(fields: Value, title: &str, body: &str, escaped: bool) -> String {
    let fields = fields.to_string();
    let open = fields
        .strip_suffix('}')
        .expect("the fields are a JSON object");
    let (title, body) = if escaped {
        let quoted = |text: &str| format!("\"{}\"", super::json_escaped(text));
        (quoted(title), quoted(body))
    } else {
        (
            Value::from(title).to_string(),
            Value::from(body).to_string(),
        )
    };
    format!(r#"{open},"title":{title},"body":{body}}}"#)
}

/// Sends a text message and returns the answer that carries `reference`,
/// skipping whatever else arrives meanwhile (news, presence).
pub async fn answer_to(socket: &mut Socket, text: String, reference: &Value) -> Value {
    socket
        .send(Message::Text(text.into()))
        .await
        .expect("the socket takes the message");
    loop {
        let answer = next_json(socket).await;
        if answer["ref"] == *reference {
            return answer;
        }
    }
}

/// Stops `server` with `sockets` open: every one of them hears 1001,
/// "going away", and its connection then ends cleanly.
pub async fn stopping_says_going_away(server: Running, mut sockets: Vec<Socket>) {
    let stopping = tokio::spawn(server.stop());
    for socket in &mut sockets {
        assert_eq!(close_code(socket).await.0, CloseCode::Away);
        ends_cleanly(socket).await;
    }
    stopping.await.expect("the server stopped");
}

/// How many sockets the page's footer says were open when it was made.
pub async fn sockets_open(server: &Running) -> usize {
    let page = super::page(server.url("/")).await;
    let (_, footer) = page
        .split_once("When this page was made, ")
        .expect("the footer counts the open sockets");
    footer
        .split_whitespace()
        .next()
        .and_then(|count| count.parse().ok())
        .expect("a number of sockets")
}

/// Opens `/echo` and waits for its first echo: the socket is being served.
pub async fn echo(server: &Running) -> Socket {
    let mut echo = connect(server, "/echo").await;
    echo.send(Message::Text("hi".into()))
        .await
        .expect("the socket takes the message");
    let back = tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .expect("an echo within 10 s");
    assert!(
        matches!(&back, Some(Ok(Message::Text(text))) if text.as_str() == "hi"),
        "{back:?}"
    );
    echo
}

/// A close frame with any payload at all, as a broken or hostile client
/// might send one: tungstenite's own `Message::Close` can only say a code
/// and a UTF-8 reason.
pub fn raw_close(payload: &[u8]) -> Message {
    let header = FrameHeader {
        opcode: OpCode::Control(Control::Close),
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload.to_vec().into()))
}

/// The client starts the closing handshake with `close` and gets the
/// server's close frame in answer (`None` for one without a code); the
/// connection must then end cleanly.
pub async fn answer_to_close(socket: &mut Socket, close: Message) -> Option<CloseFrame> {
    socket
        .send(close)
        .await
        .expect("the socket takes the close frame");
    let answer = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the server answers within 10 s");
        match message {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                panic!("the connection broke before the server's close frame: {error}")
            }
            None => panic!("the connection ended without the server's close frame"),
        }
    };
    ends_cleanly(socket).await;
    answer
}

/// RFC 6455's closing handshake started by the client, on a socket of
/// `path`: whoever receives a close frame sends one back (5.5.1), with the
/// same code when it is one a client may send, and 1002 when it is not
/// (7.4); then the server ends the TCP connection (7.1.1). A browser's
/// `ws.close()` reports `wasClean` only when all of that happened.
pub async fn client_closes_are_answered(server: &Running, path: &str) {
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }))
    };
    // Codes a client may send come back as they were sent.
    for (code, reason) in [(1000, "bye"), (1001, "tab closed"), (4000, "done")] {
        let mut socket = connect(server, path).await;
        let answer = answer_to_close(&mut socket, close(code, reason))
            .await
            .expect("a close frame with a code");
        assert_eq!(
            (u16::from(answer.code), answer.reason.as_str()),
            (code, reason),
            "{path}: the answer to {code}"
        );
    }
    // `ws.close()` without a code sends a close frame without one; the
    // answer may say 1000 or, like the client, nothing.
    let mut socket = connect(server, path).await;
    let answer = answer_to_close(&mut socket, Message::Close(None)).await;
    assert!(
        answer
            .as_ref()
            .is_none_or(|frame| frame.code == CloseCode::Normal),
        "{path}: the answer to a close without a code: {answer:?}"
    );
    // Codes nobody may send on the wire: out of range (999, 5000), or the
    // ones that only report what happened (1005 no code, 1006 no close
    // frame, 1015 TLS); and a payload of one byte, half a code.
    for (close, what) in [
        (close(999, ""), "999"),
        (close(1005, ""), "1005"),
        (close(1006, ""), "1006"),
        (close(1015, ""), "1015"),
        (close(5000, ""), "5000"),
        (raw_close(&[0x03]), "a 1-byte payload"),
    ] {
        let mut socket = connect(server, path).await;
        let answer = answer_to_close(&mut socket, close)
            .await
            .expect("a close frame with a code");
        assert_eq!(
            answer.code,
            CloseCode::Protocol,
            "{path}: the answer to {what}"
        );
    }
    // A reason that is not UTF-8: 1007, the code for text that is not
    // (7.4.1), as for a text frame.
    let mut socket = connect(server, path).await;
    let answer = answer_to_close(&mut socket, raw_close(&[0x03, 0xe8, 0xff, 0xfe]))
        .await
        .expect("a close frame with a code");
    assert_eq!(
        answer.code,
        CloseCode::Invalid,
        "{path}: a reason not in UTF-8"
    );
}
