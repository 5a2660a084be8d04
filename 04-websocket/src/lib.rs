//! # Step 04 · WebSocket: full duplex, server push
//!
//! Long polling (step 03) gets news to the page at once, but every item
//! still costs a whole HTTP request and answer, headers and all, and the
//! page can only *answer* the server, never be told. WebSocket (RFC 6455,
//! 2011) fixes both: one HTTP request asks to *upgrade* the connection, the
//! server agrees with `101 Switching Protocols`, and from then on the same
//! TCP connection carries small framed messages in both directions,
//! whenever either side likes.
//!
//! - `GET /ws?since=ID` upgrades (see [`upgrade`] for the handshake, done
//!   by hand with hyper). The server sends
//!   `{"type":"snapshot","items":[...],"cursor":N}` with what came after
//!   `ID` (or `"reset":true` and the latest items), then
//!   `{"type":"news","item":{...}}` for every new item, the moment it
//!   exists. The page sends `{"type":"post","ref":R,"title":...,"body":...}`
//!   and gets `{"type":"posted","ref":R,"id":N}` back, or
//!   `{"type":"error","ref":R,"errors":{...}}`.
//! - `POST /news` over HTTP still works (form or JSON) and reaches every
//!   socket: sockets follow the feed, not each other.
//! - `GET /echo` upgrades to the smallest full-duplex demo: every message
//!   comes back as it was sent.
//! - Bad input closes the socket with a code that says why: 1009 for a
//!   message over 26 KiB, 1007 for text that is not UTF-8, 1003 for a binary
//!   frame on `/ws`, 1002 for a broken frame, 1008 for sustained flooding.
//!   Every `--ping-interval` seconds (20) the server pings each socket and
//!   drops those that have not answered for two intervals; when the server
//!   stops, every socket gets close code 1001, "going away".
//!
//! Run it with `cargo run -p websocket`, open http://127.0.0.1:3004/ in two
//! tabs, and post. In the Network tab, filter on "WS": one request, status
//! 101, and its Messages view lists every frame. Nothing is polled; an idle
//! page costs a ping every 20 seconds. Stop the server while the page is
//! open, start it again: the page reconnects by itself and asks for what
//! it missed with `?since=`.

use std::io;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use askama::Template;
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::StreamExt;
use hyper::HeaderMap;
use hyper::Method;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Map;
use serde_json::Value;
use shared::Feed;
use shared::Shutdown;
use shared::assets;
use shared::feed::Batch;
use shared::feed::Pushed;
use shared::flood::Poster;
use shared::form::Fields;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::news::FieldErrors;
use shared::news::NewsItem;
use shared::news::PostRequest;
use shared::page;
use shared::page::Layout;
use shared::page::Listing;
use shared::page::PostForm;
use shared::posting;
use shared::push::EncodeOnce;
use shared::push::Sockets;
use shared::steps::STEPS;
use shared::steps::Step;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument;

/// This step: its number, name and port, for the page and the launcher.
pub const STEP: &Step = &STEPS[4];

/// The largest request body we read: room for the largest valid post,
/// however the form or the script encodes it (26 KiB, see
/// `news::MAX_POST_BYTES`); anything bigger is refused before it fills our
/// memory.
const BODY_LIMIT: usize = news::MAX_POST_BYTES;

/// What the page's script sends when it posts.
const JSON: &str = "application/json";

/// How often the server pings each socket unless `--ping-interval` says
/// otherwise.
pub const DEFAULT_PING_INTERVAL_S: u64 = 20;

/// The largest message a client may send: the same as a POST body.
const MESSAGE_LIMIT: usize = BODY_LIMIT;

/// How long one write may wait for a client that does not read before the
/// server gives up on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// After this many posts in a row refused for coming too fast (the limit is
/// per client address, see `shared::flood`), the socket is closed.
const FLOOD_LIMIT: usize = 20;

/// What a workshop leader can tune in this step.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How often the server pings each socket, in seconds. A socket that
    /// has not answered for two intervals is dropped.
    #[arg(long, default_value_t = DEFAULT_PING_INTERVAL_S)]
    pub ping_interval: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ping_interval: DEFAULT_PING_INTERVAL_S,
        }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
struct App {
    /// The news. Shared with every other step when run from the launcher.
    feed: Feed,
    options: Options,
    /// The open sockets, so that the server can wait for their goodbyes.
    sockets: Sockets,
    /// Every `news` frame, encoded once for all sockets.
    frames: Arc<EncodeOnce<u64, Utf8Bytes>>,
    /// Sockets close with 1001 when the server stops.
    shutdown: Shutdown,
}

/// Serves this step on `listener` until `shutdown` fires.
pub async fn run(
    listener: TcpListener,
    feed: Feed,
    options: Options,
    shutdown: Shutdown,
) -> io::Result<()> {
    let app = App {
        feed,
        options,
        sockets: Sockets::default(),
        // As many frames as a socket may be behind the newest item: in a
        // burst, the slowest socket still finds every frame encoded.
        frames: Arc::new(EncodeOnce::new(shared::feed::PUSH_BUFFER)),
        shutdown: shutdown.clone(),
    };
    let sockets = app.sockets.clone();
    http::serve(listener, shutdown, move |request| {
        route(app.clone(), request)
    })
    .await?;
    // The HTTP connections are done; give the sockets a moment to send
    // their close frames.
    sockets.closed(Duration::from_secs(3)).await;
    Ok(())
}

/// Every URL this step answers, and what a wrong method or path gets.
async fn route(app: App, request: Request<Incoming>) -> Response {
    let layout = Layout::new(STEP, request.headers());
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => index(&app, layout, request.uri().query()),
        (&Method::GET, "/ws") => {
            let since =
                Fields::query(request.uri().query()).and_then(|query| query.number("since"));
            match since {
                Ok(since) => upgrade(request, move |socket, poster| {
                    news_socket(app, socket, poster, since)
                }),
                Err(message) => http::json_error(StatusCode::BAD_REQUEST, &message),
            }
        }
        (&Method::GET, "/echo") => upgrade(request, move |socket, _| echo_socket(app, socket)),
        (&Method::POST, "/news") if http::has_content_type(request.headers(), JSON) => {
            post_json(&app, request).await
        }
        (&Method::POST, "/news") => post_news(&app, layout, request).await,
        (_, "/") => method_not_allowed(layout, "GET"),
        (_, "/news") => method_not_allowed(layout, "POST"),
        (_, "/ws" | "/echo") => method_not_allowed(layout, "GET"),
        (&Method::GET, path) => match assets::get(path, request.headers()) {
            Some(asset) => asset,
            None => not_found(layout, path),
        },
        (_, path) => not_found(layout, path),
    }
}

/// The page: the layout, the items, and the post form.
#[derive(Template)]
#[template(path = "index.html")]
struct Index {
    layout: Layout,
    listing: Listing,
    form: PostForm,
    /// How many sockets are open as the page is rendered.
    sockets: usize,
}

/// `GET /`: the whole page, built from scratch on every request.
fn index(app: &App, layout: Layout, query: Option<&str>) -> Response {
    match Listing::from_query(&app.feed, query) {
        Ok(listing) => {
            let index = Index {
                layout,
                listing,
                form: PostForm::default(),
                sockets: app.sockets.count(),
            };
            page::render(StatusCode::OK, &index)
        }
        Err(message) => page::error(layout, StatusCode::BAD_REQUEST, &message),
    }
}

/// `POST /news`: store the post, then send the browser back to the page.
///
/// Every check comes before anything is stored, so a refused request
/// changes nothing.
async fn post_news(app: &App, layout: Layout, request: Request<Incoming>) -> Response {
    let fields = match posting::read_form(&layout, request, BODY_LIMIT).await {
        Ok(fields) => fields,
        Err(refusal) => return refusal,
    };
    let title = fields.get("title").unwrap_or("");
    let text = fields.get("body").unwrap_or("");

    match news::validate(title, text) {
        Ok(post) => {
            app.feed.post(post);
            // Post/Redirect/Get: answer the POST with "see /" rather than
            // with a page. The browser GETs `/`, and that GET is what its
            // history remembers, so Reload shows the page again instead of
            // asking "resend the form?" and posting twice.
            http::see_other("/")
        }
        Err(errors) => {
            // 422: the request was understood but cannot be accepted as it
            // is. The page comes back with the messages and what was typed.
            let index = Index {
                layout,
                listing: Listing::latest(&app.feed),
                form: PostForm::rejected(title, text, errors),
                sockets: app.sockets.count(),
            };
            page::render(StatusCode::UNPROCESSABLE_ENTITY, &index)
        }
    }
}

/// `POST /news` with JSON, the way the page's script posts: `201 Created`
/// with the stored item, or `422` with a message per field. Refusals are
/// JSON too, so that the script can show them.
async fn post_json(app: &App, request: Request<Incoming>) -> Response {
    match posting::read_json(request, BODY_LIMIT).await {
        Ok(post) => http::json(StatusCode::CREATED, &app.feed.post(post)),
        Err(refusal) => refusal,
    }
}

/// `GET /ws` and `GET /echo`: the WebSocket handshake (RFC 6455 §4), by hand.
///
/// The browser sends an ordinary GET with a few extra headers:
///
/// ```text
/// GET /ws?since=41 HTTP/1.1
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
fn upgrade<F, S>(mut request: Request<Incoming>, session: F) -> Response
where
    F: FnOnce(WebSocketStream<TokioIo<Upgraded>>, Poster) -> S + Send + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let headers = request.headers();
    // Browsers let any page open a WebSocket to any server, and the
    // same-origin policy does not apply. `Origin` is how a server tells its
    // own pages from someone else's: check it before agreeing to anything.
    if !http::same_origin(headers) {
        let message = "WebSocket connections are only accepted from pages of this server.";
        return http::json_error(StatusCode::FORBIDDEN, message);
    }
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        let message = "This address speaks WebSocket: connect with new WebSocket(url).";
        let response = http::json_error(StatusCode::UPGRADE_REQUIRED, message);
        return http::with_header(response, header::UPGRADE, "websocket");
    }
    // 13 is the only version of the protocol there is; 426 says which one
    // this server speaks.
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != "13")
    {
        let message = "Only WebSocket version 13 is spoken here.";
        let response = http::json_error(StatusCode::UPGRADE_REQUIRED, message);
        return http::with_header(response, header::SEC_WEBSOCKET_VERSION, "13");
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| is_websocket_key(key.as_bytes()))
    else {
        let message = "Sec-WebSocket-Key must be 16 random bytes in base64.";
        return http::json_error(StatusCode::BAD_REQUEST, message);
    };
    // The answer proves that this server read the request and speaks
    // WebSocket: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
    // A plain HTTP server, or a cache replaying an old answer, could not
    // produce it.
    let accept = derive_accept_key(key.as_bytes());
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
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(socket_config()),
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

/// Memory and time per socket are set here. tungstenite reads into a
/// buffer it allocates for every socket, 128 KiB by default: 1.25 GiB for
/// 10,000 idle sockets. And before every read it zero-fills the part it
/// reads into, even when nothing has come, which is each time the socket's
/// loop turns: with 5,000 sockets, every item would clear 5,000 of those.
/// Clients send short messages, so 256 bytes will do (a long post takes a
/// few reads). Writes gather in a small buffer until a flush; incoming
/// messages are capped.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(MESSAGE_LIMIT))
        .max_frame_size(Some(MESSAGE_LIMIT))
}

/// What the server sends on `/ws`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ToClient<'a> {
    /// What the client missed (or a reset), right after connecting.
    Snapshot {
        #[serde(flatten)]
        batch: &'a Batch,
    },
    /// One new item.
    News { item: &'a NewsItem },
    /// The post with this `ref` was stored with this id.
    Posted {
        #[serde(rename = "ref")]
        reference: &'a Value,
        id: u64,
    },
    /// Something the client sent was refused.
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Value::is_null")]
        reference: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors: Option<&'a FieldErrors>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
    },
}

/// What a client may send on `/ws`.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FromClient {
    Post {
        #[serde(flatten)]
        post: PostRequest,
    },
}

fn encode(message: &ToClient<'_>) -> Message {
    let json = serde_json::to_string(message).expect("messages always serialize");
    Message::Text(json.into())
}

/// Why a socket's session ends.
enum Ending {
    /// The connection broke, or the client hung up without a close frame:
    /// nothing more to say.
    Gone,
    /// The client sent a close frame: it gets one back, then we hang up.
    ClientClosed,
    /// We close, with a code and a reason the client can read.
    Close(CloseCode, &'static str),
}

/// One socket on `/ws`: the snapshot, then news as it happens, and posts
/// from the client, until one side closes.
async fn news_socket(
    app: App,
    mut socket: WebSocketStream<TokioIo<Upgraded>>,
    poster: Poster,
    since: Option<u64>,
) {
    let _open = app.sockets.open();
    let started = Instant::now();
    // Subscribe and take the snapshot in one step, so that an item posted
    // in between is in exactly one of them.
    let (snapshot, mut news) = app.feed.subscribe(since);
    tracing::info!(
        "WS /ws opened, since={since:?}, {} sockets open",
        app.sockets.count()
    );
    let ending = match send(
        &mut socket,
        encode(&ToClient::Snapshot { batch: &snapshot }),
    )
    .await
    {
        Ok(()) => serve_news(&app, &mut socket, &mut news, &poster).await,
        Err(ending) => ending,
    };
    end(&mut socket, ending).await;
    tracing::info!(
        "WS /ws closed after {:.1} s, {} sockets open",
        started.elapsed().as_secs_f64(),
        app.sockets.count() - 1
    );
}

/// The loop of a `/ws` socket: whichever comes first of a message from the
/// client, an item from the feed, a heartbeat, or the server stopping.
async fn serve_news(
    app: &App,
    socket: &mut WebSocketStream<TokioIo<Upgraded>>,
    news: &mut shared::feed::Subscription,
    poster: &Poster,
) -> Ending {
    let ping_every = Duration::from_secs(app.options.ping_interval.max(1));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut heard = Instant::now();
    let mut refused = 0;
    // Made once, not at every turn of the loop: each new wait signs up with
    // the shutdown signal, and thousands of sockets signing up again for
    // every item they send would queue on its lock.
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    loop {
        tokio::select! {
            // News first: a task woken by an item takes it without polling
            // the socket, the heartbeat and the shutdown signal on the way
            // (with 5,000 sockets, that is 5,000 times per item).
            biased;
            pushed = news.next() => {
                // Feed the item, and any others already waiting, into the
                // socket's buffer, then flush once: a burst of 200 items
                // becomes a few large writes instead of 200 small ones.
                let burst = async {
                    let mut next = Some(pushed);
                    while let Some(pushed) = next {
                        socket.feed(news_frame(app, pushed)).await?;
                        next = news.try_next();
                    }
                    socket.flush().await
                };
                if let Err(ending) = in_time(burst).await {
                    return ending;
                }
            }
            incoming = socket.next() => {
                heard = Instant::now();
                let message = match incoming {
                    None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ending::Gone,
                    Some(Err(error)) => return read_error(error),
                    Some(Ok(message)) => message,
                };
                let reply = match message {
                    Message::Text(text) => match handle_post(app, poster, &mut refused, &text) {
                        Ok(reply) => reply,
                        Err(ending) => return ending,
                    },
                    Message::Binary(_) => return Ending::Close(CloseCode::Unsupported, "binary frames are not spoken here"),
                    // Pings are answered by tungstenite itself; pongs only
                    // tell us the client is alive (`heard`, above).
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    Message::Close(_) => return Ending::ClientClosed,
                };
                if let Err(ending) = send(socket, reply).await {
                    return ending;
                }
            }
            _ = heartbeat.tick() => {
                if heard.elapsed() > 2 * ping_every {
                    tracing::info!("WS /ws: no answer to two pings, dropping the socket");
                    return Ending::Gone;
                }
                if let Err(ending) = send(socket, Message::Ping(Bytes::new())).await {
                    return ending;
                }
            }
            () = &mut stopping => return Ending::Close(CloseCode::Away, "the server is stopping"),
        }
    }
}

/// `{"type":"post",...}` → store it and say `posted`, or say what is wrong.
/// A post past the client's limit is refused (`refused` counts those in a
/// row); past [`FLOOD_LIMIT`] of them, the socket is closed.
fn handle_post(
    app: &App,
    poster: &Poster,
    refused: &mut usize,
    text: &str,
) -> Result<Message, Ending> {
    let Ok(json) = serde_json::from_str::<Map<String, Value>>(text) else {
        return Ok(error_reply(
            &Value::Null,
            None,
            Some("That message is not a JSON object."),
        ));
    };
    let reference = json.get("ref").cloned().unwrap_or(Value::Null);
    let post = match serde_json::from_value::<FromClient>(Value::Object(json)) {
        Ok(FromClient::Post { post }) => post,
        Err(error) => {
            let message = format!("That message is not one this server understands: {error}.");
            return Ok(error_reply(&reference, None, Some(&message)));
        }
    };
    if let Err(refusal) = poster.admit() {
        *refused += 1;
        if *refused > FLOOD_LIMIT {
            return Err(Ending::Close(CloseCode::Policy, "too many posts"));
        }
        return Ok(error_reply(&reference, None, Some(&refusal.message)));
    }
    *refused = 0;
    match news::validate(&post.title, &post.body) {
        Ok(post) => {
            let item = app.feed.post(post);
            Ok(encode(&ToClient::Posted {
                reference: &reference,
                id: item.id,
            }))
        }
        Err(errors) => Ok(error_reply(&reference, Some(&errors), None)),
    }
}

fn error_reply(reference: &Value, errors: Option<&FieldErrors>, message: Option<&str>) -> Message {
    encode(&ToClient::Error {
        reference,
        errors,
        message,
    })
}

/// The frame for one pushed item, encoded once for all sockets; or a
/// snapshot with a reset for a socket that fell behind the whole history.
fn news_frame(app: &App, pushed: Pushed) -> Message {
    match pushed {
        Pushed::Item(item) => Message::Text(app.frames.get(item.id, || {
            match encode(&ToClient::News { item: &item }) {
                Message::Text(json) => json,
                _ => unreachable!("encode() makes text frames"),
            }
        })),
        Pushed::Reset(batch) => encode(&ToClient::Snapshot { batch: &batch }),
    }
}

/// tungstenite reports a broken message as an error and drops the
/// connection; the close code that tells the client why is ours to send.
fn read_error(error: WsError) -> Ending {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Ending::Close(CloseCode::Size, "messages are limited to 26 KiB")
        }
        WsError::Utf8(_) => Ending::Close(CloseCode::Invalid, "text frames must be UTF-8"),
        WsError::Protocol(_) | WsError::Capacity(_) => Ending::Close(
            CloseCode::Protocol,
            "that frame breaks the WebSocket protocol",
        ),
        _ => Ending::Gone,
    }
}

/// Sends one message now.
async fn send(
    socket: &mut WebSocketStream<TokioIo<Upgraded>>,
    message: Message,
) -> Result<(), Ending> {
    in_time(socket.send(message)).await
}

/// Gives a write to the client [`SEND_TIMEOUT`]. A client that stops
/// reading fills its TCP window, then our buffer; past the limit it is cut
/// off, so it holds a bounded amount of memory and never slows the others.
async fn in_time(write: impl Future<Output = Result<(), WsError>>) -> Result<(), Ending> {
    match tokio::time::timeout(SEND_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Ending::Gone),
        Err(_) => Err(Ending::Close(CloseCode::Policy, "the client does not read")),
    }
}

/// Ends a session the way it ended: the answer to the client's close frame,
/// or our own close frame and the closing handshake, or nothing at all for a
/// connection that broke.
async fn end(socket: &mut WebSocketStream<TokioIo<Upgraded>>, ending: Ending) {
    match ending {
        Ending::Gone => {}
        // tungstenite queued the answer as the client's close frame came
        // in: the same code back (RFC 6455, 5.5.1), or 1002 for a code
        // that nobody may send, such as 999 or 1005 (7.4). The flush sends
        // it; that ends the closing handshake, and the server, which should
        // be the first to close the TCP connection (7.1.1), drops it.
        Ending::ClientClosed => {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.flush()).await;
        }
        Ending::Close(code, reason) => close(socket, code, reason).await,
    }
}

/// Sends a close frame with a code and a reason, then reads (and ignores)
/// what the client still sends until its own close frame comes back: the
/// closing handshake of RFC 6455, 7.1. Hanging up on unread data would make
/// the kernel answer with a reset, which can destroy our close frame before
/// the client reads it. Gives up after a second.
async fn close(
    socket: &mut WebSocketStream<TokioIo<Upgraded>>,
    code: CloseCode,
    reason: &'static str,
) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let handshake = async {
        socket.close(Some(frame)).await?;
        while socket.next().await.transpose()?.is_some() {}
        Ok::<(), WsError>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), handshake).await;
}

/// One socket on `/echo`: every text or binary message comes back as it
/// was sent. In all else it is a socket like those of `/ws`: the same
/// limits and close codes, the same heartbeat, counted among the open
/// sockets, and told 1001 when the server stops.
async fn echo_socket(app: App, mut socket: WebSocketStream<TokioIo<Upgraded>>) {
    let _open = app.sockets.open();
    tracing::info!("WS /echo opened, {} sockets open", app.sockets.count());
    let ending = serve_echo(&app, &mut socket).await;
    end(&mut socket, ending).await;
    tracing::info!("WS /echo closed, {} sockets open", app.sockets.count() - 1);
}

/// The loop of an `/echo` socket: whichever comes first of a message to
/// send back, a heartbeat, or the server stopping.
async fn serve_echo(app: &App, socket: &mut WebSocketStream<TokioIo<Upgraded>>) -> Ending {
    let ping_every = Duration::from_secs(app.options.ping_interval.max(1));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut heard = Instant::now();
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    loop {
        tokio::select! {
            incoming = socket.next() => {
                heard = Instant::now();
                let echo = match incoming {
                    None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ending::Gone,
                    Some(Err(error)) => return read_error(error),
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => message,
                    Some(Ok(Message::Close(_))) => return Ending::ClientClosed,
                    Some(Ok(_)) => continue,
                };
                if let Err(ending) = send(socket, echo).await {
                    return ending;
                }
            }
            _ = heartbeat.tick() => {
                if heard.elapsed() > 2 * ping_every {
                    tracing::info!("WS /echo: no answer to two pings, dropping the socket");
                    return Ending::Gone;
                }
                if let Err(ending) = send(socket, Message::Ping(Bytes::new())).await {
                    return ending;
                }
            }
            () = &mut stopping => return Ending::Close(CloseCode::Away, "the server is stopping"),
        }
    }
}

/// 405: the path exists, the method does not. `Allow` says which one does.
fn method_not_allowed(layout: Layout, allow: &str) -> Response {
    let message = format!("This address only answers {allow}.");
    let response = page::error(layout, StatusCode::METHOD_NOT_ALLOWED, &message);
    http::with_header(response, header::ALLOW, allow)
}

/// 404, as a page with the navigation, so that nobody is stranded.
fn not_found(layout: Layout, path: &str) -> Response {
    let message = format!("There is no page at {path}.");
    page::error(layout, StatusCode::NOT_FOUND, &message)
}
