//! The WebSocket handshake (RFC 6455 §4), by hand, with hyper.
//!
//! A WebSocket starts life as an ordinary HTTP GET with a few extra
//! headers; the server agrees with `101 Switching Protocols`, and from then
//! on the same TCP connection carries WebSocket frames instead of HTTP.
//! Every check the protocol asks of a server is here, in order; a step may
//! add its own before it calls [`upgrade`] (05's admin token, say).

use std::future::Future;

use hyper::HeaderMap;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use shared::flood::Poster;
use shared::http;
use shared::http::Response;
use shared::outbox::Outbox;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::Instrument;

use crate::socket;
use crate::socket::Socket;

/// `GET /ws` and its siblings: the handshake, then `session` on the socket.
///
/// The browser sends an ordinary GET with a few extra headers (here, a
/// page of step 04; in later steps only the port differs):
///
/// ```text
/// GET /ws?since=41 HTTP/1.1
/// Host: 127.0.0.1:3004
/// Connection: Upgrade
/// Upgrade: websocket
/// Sec-WebSocket-Version: 13
/// Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
/// Origin: http://127.0.0.1:3004
/// ```
///
/// and the server agrees with `101 Switching Protocols`. From then on the
/// connection no longer speaks HTTP: hyper hands it over, and `session`
/// speaks WebSocket frames on it, for the client that sent the request.
pub fn upgrade<F, S>(mut request: Request<Incoming>, session: F) -> Response
where
    F: FnOnce(Socket, Poster) -> S + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    if let Some(refusal) = refusal(request.headers()) {
        return refusal;
    }
    // The answer proves that this server read the request and speaks
    // WebSocket: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
    // A plain HTTP server, or a cache replaying an old answer, could not
    // produce it.
    let key = request.headers().get(header::SEC_WEBSOCKET_KEY);
    let accept = derive_accept_key(key.map(HeaderValue::as_bytes).unwrap_or_default());
    // Posts over the socket count against the client's limit, together
    // with its HTTP posts and those of its other sockets.
    let poster = Poster::of(request.extensions());

    // Ask hyper for the connection once the 101 has gone out. This must be
    // taken from the request before we answer; the future resolves after.
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(
                        Outbox::new(TokioIo::new(upgraded)),
                        Role::Server,
                        Some(socket::config()),
                    )
                    .await;
                    session(socket, poster).await;
                }
                Err(error) => tracing::warn!(%error, "the upgrade did not complete"),
            }
        }
        // The socket's log lines keep the request's context (in the launcher,
        // the step's number).
        .in_current_span(),
    );

    let mut response = http::response(StatusCode::SWITCHING_PROTOCOLS, "text/plain", "");
    response.headers_mut().remove(header::CONTENT_TYPE);
    let response = http::with_header(response, header::CONNECTION, "Upgrade");
    let response = http::with_header(response, header::UPGRADE, "websocket");
    http::with_header(response, header::SEC_WEBSOCKET_ACCEPT, &accept)
}

/// The checks, in order, before agreeing to anything: the answer that
/// refuses the handshake and says why, or `None` to go ahead.
fn refusal(headers: &HeaderMap) -> Option<Response> {
    // Browsers let any page open a WebSocket to any server, and the
    // same-origin policy does not apply. `Origin` is how a server tells its
    // own pages from someone else's: check it before agreeing to anything.
    if !http::same_origin(headers) {
        let message = "WebSocket connections are only accepted from pages of this server.";
        return Some(http::json_error(StatusCode::FORBIDDEN, message));
    }
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        let message = "This address speaks WebSocket: connect with new WebSocket(url).";
        let response = http::json_error(StatusCode::UPGRADE_REQUIRED, message);
        return Some(http::with_header(response, header::UPGRADE, "websocket"));
    }
    // 13 is the only version of the protocol there is; 426 says which one
    // this server speaks.
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != "13")
    {
        let message = "Only WebSocket version 13 is spoken here.";
        let response = http::json_error(StatusCode::UPGRADE_REQUIRED, message);
        return Some(http::with_header(
            response,
            header::SEC_WEBSOCKET_VERSION,
            "13",
        ));
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    if !key.is_some_and(|key| is_websocket_key(key.as_bytes())) {
        let message = "Sec-WebSocket-Key must be 16 random bytes in base64.";
        return Some(http::json_error(StatusCode::BAD_REQUEST, message));
    }
    None
}

/// Does this comma-separated header (`Connection: keep-alive, Upgrade`)
/// hold `token`, ignoring case?
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// 16 bytes in base64: 22 characters and `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
}
