//! A WebSocket client for the checks of steps 04 and 05: it opens `/ws`
//! as the step's page does (with its `Origin`) and reads JSON messages.

use std::time::Duration;

use futures_util::SinkExt;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::Failure;
use super::Running;
use super::wrong;

pub type Socket = WebSocketStream<TcpStream>;

/// Opens a WebSocket on `path` as a page of the step would.
pub async fn connect(step: &Running, path: &str) -> Result<Socket, Failure> {
    let mut request = step
        .url(path)
        .replacen("http", "ws", 1)
        .into_client_request()
        .expect("a valid WebSocket URL");
    let origin = step.origin().parse().expect("an origin is a header value");
    request.headers_mut().insert("origin", origin);
    let stream = TcpStream::connect(step.addr)
        .await
        .map_err(|error| Failure::Wrong(format!("the step does not listen: {error}")))?;
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((socket, _)) => Ok(socket),
        Err(error) => wrong(format!("the WebSocket handshake on {path} failed: {error}")),
    }
}

/// Sends one JSON message.
pub async fn send(socket: &mut Socket, message: Value) -> Result<(), Failure> {
    let text = message.to_string();
    match socket.send(Message::text(text)).await {
        Ok(()) => Ok(()),
        Err(error) => wrong(format!("sending {message} failed: {error}")),
    }
}

/// The next message of type `kind` within `limit`, skipping others (and
/// binary frames); `None` if none came.
pub async fn next_of_type(
    socket: &mut Socket,
    kind: &str,
    limit: Duration,
) -> Result<Option<Value>, Failure> {
    next_of_types(socket, &[kind], limit).await
}

/// The next message of one of these types within `limit`.
pub async fn next_of_types(
    socket: &mut Socket,
    kinds: &[&str],
    limit: Duration,
) -> Result<Option<Value>, Failure> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let message = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return wrong("the socket was closed"),
            Ok(Some(Err(error))) => return wrong(format!("the socket broke: {error}")),
            Ok(Some(Ok(message))) => message,
        };
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<Value>(&text) else {
            return wrong(format!(
                "the server sent a text frame that is not JSON: {text}"
            ));
        };
        if kinds.iter().any(|kind| json["type"] == *kind) {
            return Ok(Some(json));
        }
    }
}
