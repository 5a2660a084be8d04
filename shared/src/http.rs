//! HTTP plumbing every step uses the same way, so that a step's `lib.rs` is
//! about its transport and nothing else.
//!
//! The accept loop is the one from hyper's own examples: accept a TCP
//! connection, wrap it in `TokioIo` (hyper speaks its own IO traits), spawn a
//! task that serves HTTP/1.1 on it. On top of that: one log line per request,
//! and a graceful shutdown (see [`crate::shutdown`]) that stops accepting,
//! lets requests in flight finish for a moment, then closes what is left.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Either;
use http_body_util::Full;
use hyper::HeaderMap;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::header::HeaderName;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::rt::TokioTimer;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::flood::Client;
use crate::flood::PostLimit;
use crate::hosts;
use crate::hosts::OwnHosts;
use crate::shutdown::Shutdown;
use crate::stream::Hangup;
use crate::stream::Streaming;

/// A response body in the workshop: one buffer (pages, JSON, assets), or
/// an answer that never ends, written while it is sent (step 03b's event
/// stream, see [`crate::stream`]).
pub type Body = Either<Full<Bytes>, Streaming>;
/// The response type of every handler.
pub type Response = hyper::Response<Body>;

/// How long requests in flight may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a client may take to send a request's headers. Also closes
/// keep-alive connections that sit idle that long, and stops a client that
/// opens a connection and sends nothing from holding it forever.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` fires.
///
/// Connections are served `with_upgrades()`, so that a handler can turn one
/// into a WebSocket (step 04): after the 101 answer hyper hands the raw
/// connection back instead of closing it.
pub async fn serve<H, F>(listener: TcpListener, shutdown: Shutdown, handler: H) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let mut connections = JoinSet::new();
    crate::give_back::start();
    // This server's count of who posted lately (see `flood`).
    let post_limit = Arc::new(PostLimit::default());
    // The names this server answers to (see `hosts`).
    let own_hosts = Arc::new(OwnHosts::for_listener(listener.local_addr()?));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually "too many open files": wait for some to close
                    // instead of spinning on the error.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
            () = shutdown.wait() => break,
        };
        // Small writes (a news item, a WebSocket frame) go out at once
        // instead of waiting to be merged with the next one.
        let _ = stream.set_nodelay(true);
        let limits = (post_limit.clone(), own_hosts.clone());
        let connection = connection(stream, peer, handler.clone(), limits, shutdown.clone());
        // Each connection's log lines keep the server's context: in the
        // launcher, the number of the step they belong to.
        connections.spawn(connection.in_current_span());
    }

    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "closing connections still busy after {SHUTDOWN_GRACE:?}"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves HTTP/1.1 on one accepted connection until it ends, the handler
/// hangs up on it, or the server stops.
async fn connection<H, F>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    (post_limit, own_hosts): (Arc<PostLimit>, Arc<OwnHosts>),
    shutdown: Shutdown,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    // A handler may close this connection (a stream whose
    // client stopped reading, see `stream`).
    let hangup = Hangup::default();
    let service = service_fn({
        let hangup = hangup.clone();
        move |mut request: Request<Incoming>| {
            // Who is asking, and the count their posts fall under.
            request.extensions_mut().insert(Client(peer.ip()));
            request.extensions_mut().insert(post_limit.clone());
            request.extensions_mut().insert(hangup.clone());
            logged(handler.clone(), own_hosts.clone(), request)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = hangup.wait() => {
            // Dropping the connection closes the socket, with
            // whatever was still waiting to be written.
            tracing::debug!(%peer, "hung up on the client");
            return;
        }
        () = shutdown.wait() => {
            // Finish the request in progress, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        log_connection_error(peer, &error);
    }
}

/// Runs the handler, for a name this server answers to, and writes the one
/// log line a participant watches: `GET /news?since=41 200 OK 0.3 ms`.
async fn logged<H, F>(
    handler: H,
    own_hosts: Arc<OwnHosts>,
    request: Request<Incoming>,
) -> Result<Response, Infallible>
where
    H: Fn(Request<Incoming>) -> F,
    F: Future<Output = Response>,
{
    let handler = |request: Request<Incoming>| async {
        if own_hosts.accepts(request.headers()) {
            handler(request).await
        } else {
            // DNS rebinding, or a name the leader did not add: nothing here
            // is meant for that name.
            let message = hosts::misdirected_message(request.headers());
            json_error(StatusCode::MISDIRECTED_REQUEST, &message)
        }
    };
    if !tracing::enabled!(tracing::Level::INFO) {
        // `RUST_LOG=warn` (the bench): no line, so nothing to prepare.
        return Ok(handler(request).await);
    }
    let started = Instant::now();
    let method = request.method().clone();
    // A copy, not the `Uri` itself: that shares hyper's read buffer, and
    // would keep it alive for as long as a long poll is parked.
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| hide_tokens(pq.as_str()));
    let response = handler(request).await;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        "{method} {} {} {elapsed:.1} ms",
        target.as_deref().unwrap_or("/"),
        response.status()
    );
    Ok(response)
}

/// `/admin/ws?token=secret` is logged as `/admin/ws?token=…`: a log is
/// read by more people than the token is meant for.
fn hide_tokens(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("token", _)) => "token=…".to_owned(),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error) {
    // A browser closing a keep-alive connection, a header timeout, a client
    // that hung up mid-request: normal life on the web, not worth a warning.
    if error.is_incomplete_message() || error.is_timeout() || error.is_closed() {
        tracing::debug!(%peer, %error, "connection ended");
    } else {
        tracing::warn!(%peer, %error, "connection failed");
    }
}

/// Is this request allowed to change something here?
///
/// Browsers send `Origin` with every POST and every WebSocket handshake,
/// naming the page that made the request. A page from another site may
/// submit a form to us (that is how cross-site request forgery works), but it
/// cannot lie about its origin. So: no `Origin` at all (curl, an old
/// browser) is fine; an `Origin` must name this very server
/// (`http://` + the `Host` the request was sent to), or a name the leader
/// added with `--allowed-host`, over `http://` or `https://` (a tunnel or
/// TLS proxy in front of us; see `hosts`); anything else, including `null`
/// from sandboxed frames, is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some((scheme, rest)) = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
    else {
        return false;
    };
    let this_server = headers
        .get(header::HOST)
        .is_some_and(|host| rest.as_bytes().eq_ignore_ascii_case(host.as_bytes()));
    let added = hosts::allowed_names().contains(&hosts::name_of(rest).to_ascii_lowercase());
    (scheme == "http" && this_server) || ((scheme == "http" || scheme == "https") && added)
}

/// What a page of another site is told when it tries to post or open a
/// socket here: which origin was refused, and what to do if it is ours.
pub fn foreign_origin_message(headers: &HeaderMap, what: &str) -> String {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .unwrap_or("(unreadable)");
    format!(
        "{what} came from another site ({origin}); only pages of this server may post here. \
         If that is this server seen through an HTTPS tunnel or proxy, start it with \
         --allowed-host and the tunnel's name."
    )
}

/// Does the request's `Content-Type` name this media type (parameters such
/// as `; charset=utf-8` aside)?
pub fn has_content_type(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type))
}

/// A response with a body and its content type.
pub fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut response = hyper::Response::new(Either::Left(Full::new(body.into())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An HTML page.
pub fn html(status: StatusCode, page: String) -> Response {
    response(status, "text/html; charset=utf-8", page)
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response {
    // Room for an answer with an item or two, so that it is written
    // without growing (and copying) the buffer on the way.
    let mut body = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut body, value) {
        Ok(()) => response(status, "application/json", body),
        Err(error) => {
            tracing::error!(%error, "cannot serialize a JSON answer");
            response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/json",
                r#"{"error":"internal error"}"#,
            )
        }
    }
}

/// `{"error": "..."}` with a status: what JSON clients get for a bad request.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// 303 See Other: "the answer is over there, go GET it". After a form
/// POST this is what keeps the reload button from posting twice
/// (Post/Redirect/Get): the page the browser ends up on came from a GET.
pub fn see_other(location: &str) -> Response {
    let mut response = hyper::Response::new(Either::Left(Full::default()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Adds a header to a response, for the few answers that need one more
/// (`Allow` on a 405, `Retry-After` on a 503, `ETag`, ...).
pub fn with_header(mut response: Response, name: HeaderName, value: &str) -> Response {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            response.headers_mut().insert(name, value);
        }
        Err(error) => tracing::error!(%error, %name, "invalid header value"),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.clone(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn origin_must_be_this_server_when_present() {
        let host = (header::HOST, "127.0.0.1:3001");
        assert!(same_origin(&headers(std::slice::from_ref(&host))));
        assert!(same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:3001")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://127.0.0.1:3002")
        ])));
        assert!(!same_origin(&headers(&[
            host.clone(),
            (header::ORIGIN, "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, (header::ORIGIN, "null")])));
        assert!(!same_origin(&headers(&[(
            header::ORIGIN,
            "http://127.0.0.1:3001"
        )])));
    }

    #[test]
    fn tokens_stay_out_of_the_log() {
        assert_eq!(hide_tokens("/admin/ws?token=s3cret"), "/admin/ws?token=…");
        assert_eq!(
            hide_tokens("/news?since=4&token=x&a=b"),
            "/news?since=4&token=…&a=b"
        );
        assert_eq!(hide_tokens("/news?since=4"), "/news?since=4");
        assert_eq!(hide_tokens("/"), "/");
    }

    #[test]
    fn content_type_ignores_parameters_and_case() {
        let form = "application/x-www-form-urlencoded";
        assert!(has_content_type(
            &headers(&[(
                header::CONTENT_TYPE,
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
            )]),
            form
        ));
        assert!(!has_content_type(
            &headers(&[(header::CONTENT_TYPE, "text/plain")]),
            form
        ));
        assert!(!has_content_type(&HeaderMap::new(), form));
    }
}
