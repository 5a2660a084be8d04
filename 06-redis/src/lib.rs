//! # Step 06 · Redis: one feed, many servers
//!
//! Step 05 keeps its rooms in the memory of one process: a second server
//! would have rooms of its own, and a page that reconnects to it would find
//! strangers and a history it never saw. When one server is not enough, the
//! rooms must live somewhere every server can reach, and the classic answer
//! is Redis, which is two things at once here: **storage** (each room's
//! history) and **real time** (every server hears of every post at once).
//! This step is step 05, page unchanged and protocol too (but for one
//! answer, below), with its rooms moved into Redis:
//!
//! - Each room's history is a Redis *stream* (`workshop:room:rust`): a post
//!   is an `XADD` with a length cap, run by a small Lua script so that ids
//!   stay plain increasing numbers, and a stream id doubles as the cursor.
//!   A post is acknowledged (`posted`) only once Redis has it.
//! - A post whose answer from Redis never came may have been stored: the
//!   answer says the outcome is unknown (`"outcome": "unknown"`), never
//!   "nothing was stored". Each post carries a random key (the `key` of a
//!   `post` message, or an `Idempotency-Key` header), which the script
//!   remembers for five minutes, so that sending it again with its key
//!   answers the first id instead of storing it twice.
//! - Each server keeps a copy of the rooms its sockets are in, as the same
//!   `Feed` step 05 uses. One task per server reads every one of those
//!   streams with a single blocking `XREAD`, from where each copy ends, and
//!   appends what comes; from there on it is step 05 again: subscriptions,
//!   resets, `joined` and `news` frames, each encoded once.
//! - A socket that reconnects to *another* server rejoins with `since`, and
//!   that server answers from its copy of the same stream: nothing missed,
//!   nothing twice. No sticky sessions needed.
//! - Presence counts every server's members: each says its counts every
//!   two seconds (`workshop:presence:rust`), and a server that stops saying
//!   them is counted out.
//! - When Redis goes away, the server stays up: sockets close with 1013
//!   "try again later" (the page reconnects by itself), new ones get 503,
//!   posts are refused and never acknowledged. It asks Redis every second
//!   and, once it answers, reads the rooms again and carries on.
//!
//! Everything that talks to Redis is in `src/store.rs` (and its two Lua
//! scripts, `post.lua` and `presence.lua`); this file is step 05's, changed
//! where a room's history or its members now come from Redis.
//!
//! Run Redis (`redis-server`), then two servers: `cargo run -p redis-rooms`
//! and `cargo run -p redis-rooms -- --port 3016`. Open
//! http://127.0.0.1:3006/ and http://127.0.0.1:3016/, join the same room in
//! both, post, and watch `redis-cli monitor` while you do.

mod store;

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use askama::Template;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::SinkExt;
use futures_util::Stream;
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
use shared::feed::Subscription;
use shared::flood::Poster;
use shared::form::Fields;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::news::ATTACHMENT_LIMIT;
use shared::news::FieldErrors;
use shared::news::NewPost;
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
use store::AWAY;
use store::Entry;
use store::Refusal;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::sync::broadcast;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::StreamMap;
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
pub const STEP: &Step = &STEPS[6];

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

/// The largest text message a client may send: the same as a POST body.
const MESSAGE_LIMIT: usize = BODY_LIMIT;

/// Attachments a room keeps for its history, and all rooms together: past
/// either, the oldest go first (a flood of images pushes out old ones, it
/// never locks new ones out). Redis holds them, and counts them in
/// `post.lua`.
const ROOM_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;
const SERVER_ATTACHMENT_BYTES: usize = 64 * 1024 * 1024;
/// What one client address may upload per [`UPLOAD_WINDOW`] to this
/// server: a quarter of what Redis keeps, so that one client cannot push
/// everyone's images out on its own.
const CLIENT_UPLOAD_BYTES: usize = SERVER_ATTACHMENT_BYTES / 4;
const UPLOAD_WINDOW: Duration = Duration::from_secs(10 * 60);

/// How long one write may wait for a client that does not read before the
/// server gives up on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// After this many posts in a row refused for coming too fast (the limit is
/// per client address, see `shared::flood`), the socket is closed.
const FLOOD_LIMIT: usize = 20;

/// The least time between two `presence` frames for one room on one socket.
const PRESENCE_QUIET: Duration = Duration::from_millis(250);

/// The room every socket starts in.
const GENERAL: &str = "general";

/// Why sockets close with 1013 when Redis goes away.
const REDIS_AWAY: &str = "the news service lost Redis; try again in a moment";

/// The header that names a post over HTTP, so that it can be sent again
/// safely (`post_json`); over a socket, the post's `key` field does.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What a key that breaks the rule of [`is_post_key`] gets.
const KEY_RULE: &str =
    "A post's key is 1 to 64 letters, digits, dashes and underscores. Nothing was stored.";

/// Where Redis listens unless `--redis` says otherwise.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// How often a server tells Redis how many of its sockets are in each room,
/// and reads the totals. Counts it stops saying stand three times as long.
const PRESENCE_EVERY: Duration = Duration::from_secs(2);

/// How long a post waits for this server's copy of its room to show it
/// (the reader brings it back from Redis in a few milliseconds), and a join
/// for a cursor that another server handed out a moment ago.
const CATCH_UP: Duration = Duration::from_secs(2);

/// What a workshop leader can tune in this step.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How often the server pings each socket, in seconds. A socket that
    /// has not answered for two intervals is dropped.
    #[arg(long, default_value_t = DEFAULT_PING_INTERVAL_S)]
    pub ping_interval: u64,
    /// How many rooms one socket may be in at once.
    #[arg(long, default_value_t = 16)]
    pub max_rooms_per_socket: usize,
    /// How many rooms the server keeps at once.
    #[arg(long, default_value_t = 1_000)]
    pub max_rooms: usize,
    /// The token the admin namespace (`/admin`) asks for. Without one, a
    /// random token is made and printed at start-up.
    #[arg(long, env = "ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Where Redis listens. Every server of the same rooms uses the same.
    #[arg(long, env = "REDIS_URL", default_value = DEFAULT_REDIS)]
    pub redis: String,
    /// What every Redis key of this step starts with, so that several
    /// workshops (or test runs) can share one Redis.
    #[arg(long, default_value = "workshop")]
    pub redis_prefix: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ping_interval: DEFAULT_PING_INTERVAL_S,
            max_rooms_per_socket: 16,
            max_rooms: 1_000,
            admin_token: None,
            redis: DEFAULT_REDIS.into(),
            redis_prefix: "workshop".into(),
        }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
struct App {
    /// Redis, where the rooms live. It also says when it cannot be reached.
    store: Arc<Store>,
    options: Options,
    /// Every room this server follows, `general` included.
    rooms: Arc<Rooms>,
    /// The admin namespace's token: `--admin-token`, or a random one.
    admin_token: Arc<str>,
    /// The open sockets, so that the server can wait for their goodbyes.
    sockets: Sockets,
    /// Sockets close with 1001 when the server stops.
    shutdown: Shutdown,
}

/// Serves this step on `listener` until `shutdown` fires.
///
/// Only `feed`'s size matters here: the rooms' histories are in Redis, and
/// this server's copy of each room keeps as many items (`Feed::replica`).
pub async fn run(
    listener: TcpListener,
    feed: Feed,
    options: Options,
    shutdown: Shutdown,
) -> io::Result<()> {
    // Without Redis there is nothing to serve: say so at once, and how to
    // fix it.
    let store = Store::connect(
        &options.redis,
        &options.redis_prefix,
        feed.capacity(),
        options.max_rooms,
    )
    .await
    .map_err(|why| {
        let start = store::how_to_start(&options.redis);
        io::Error::other(format!("{}: {why}; {start} or pass --redis URL", STEP.slug))
    })?;
    // Refuse to start with an empty or short token: it would open the
    // admin namespace to anyone.
    let admin_token: Arc<str> = shared::token::admin(options.admin_token.as_deref())
        .map_err(|refusal| io::Error::new(io::ErrorKind::InvalidInput, refusal))?
        .into();
    if options.admin_token.is_none() {
        let address = listener.local_addr()?;
        tracing::info!("06 admin page: http://{address}/admin#token={admin_token}");
    }
    let rooms = Rooms::new(feed, store.clone(), options.max_rooms)
        .await
        .map_err(|error| io::Error::other(format!("{}: Redis: {error}", STEP.slug)))?;
    let app = App {
        store,
        rooms: rooms.clone(),
        options,
        admin_token,
        sockets: Sockets::default(),
        shutdown: shutdown.clone(),
    };
    // The three tasks that keep this server in step with Redis. Dropping
    // the set when `run` ends stops them.
    let mut tasks = JoinSet::new();
    tasks.spawn(read_rooms(rooms.clone(), shutdown.clone()).in_current_span());
    tasks.spawn(count_members(rooms.clone(), shutdown.clone()).in_current_span());
    tasks.spawn(watch_redis(rooms.clone(), shutdown.clone()).in_current_span());
    let sockets = app.sockets.clone();
    http::serve(listener, shutdown, move |request| {
        route(app.clone(), request)
    })
    .await?;
    // The HTTP connections are done; give the sockets a moment to send
    // their close frames.
    sockets.closed(Duration::from_secs(3)).await;
    // Then tell Redis that this server's members are gone, rather than
    // leave the other servers counting them until their counts expire.
    if rooms.store.is_up() {
        rooms.count(None).await;
    }
    Ok(())
}

/// Does a Redis answer at `url`? If not, why and what to do, in one line
/// (the launcher runs this step only when one does).
pub async fn redis_answers(url: &str) -> Result<(), String> {
    match Store::connect(url, "", 1, 1).await {
        Ok(_) => Ok(()),
        Err(why) => Err(format!("{why}; {}", store::how_to_start(url))),
    }
}

/// Every URL this step answers, and what a wrong method or path gets.
async fn route(app: App, request: Request<Incoming>) -> Response {
    let layout = Layout::new(STEP, request.headers());
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => index(&app, layout, request.uri().query()),
        // While Redis is away, sockets are turned down: the page's script
        // tries again by itself, with backoff.
        (&Method::GET, "/ws" | "/admin/ws") if !app.store.is_up() => {
            let response = http::json_error(StatusCode::SERVICE_UNAVAILABLE, AWAY);
            http::with_header(response, header::RETRY_AFTER, "2")
        }
        (&Method::GET, "/ws") => {
            let since =
                Fields::query(request.uri().query()).and_then(|query| query.number("since"));
            match since {
                Ok(since) => upgrade(request, move |socket, poster| {
                    room_socket(app, socket, poster, since)
                }),
                Err(message) => http::json_error(StatusCode::BAD_REQUEST, &message),
            }
        }
        (&Method::GET, "/admin/ws") => {
            // The namespace's rule comes before the handshake: no token, no
            // 101. Browsers cannot add headers to a WebSocket request, so
            // the token travels in the query string (the log hides it).
            let query = Fields::query(request.uri().query()).unwrap_or_default();
            if !shared::token::same(query.get("token").unwrap_or(""), &app.admin_token) {
                let message = "The admin namespace needs ?token= with the admin token.";
                return http::json_error(StatusCode::UNAUTHORIZED, message);
            }
            upgrade(request, move |socket, _| admin_socket(app, socket))
        }
        (&Method::GET, "/admin") => page::render(StatusCode::OK, &Admin { layout }),
        (&Method::GET, "/rooms.js") => {
            let script = include_str!("../static/rooms.js");
            let response = http::response(StatusCode::OK, "text/javascript; charset=utf-8", script);
            http::with_header(response, header::CACHE_CONTROL, "no-cache")
        }
        (&Method::GET, "/echo") => upgrade(request, move |socket, _| echo_socket(app, socket)),
        (&Method::POST, "/news") if http::has_content_type(request.headers(), JSON) => {
            post_json(&app, request).await
        }
        (&Method::POST, "/news") => post_news(&app, layout, request).await,
        (_, "/") => page::method_not_allowed(layout, "GET"),
        (_, "/news") => page::method_not_allowed(layout, "POST"),
        (_, "/ws" | "/echo" | "/admin" | "/admin/ws" | "/rooms.js") => {
            page::method_not_allowed(layout, "GET")
        }
        (&Method::GET, path) => match assets::get(path, request.headers()) {
            Some(asset) => asset,
            None => page::not_found(layout, path),
        },
        (_, path) => page::not_found(layout, path),
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

/// The admin namespace's page.
#[derive(Template)]
#[template(path = "admin.html")]
struct Admin {
    layout: Layout,
}

/// `GET /`: the whole page, built from scratch on every request.
fn index(app: &App, layout: Layout, query: Option<&str>) -> Response {
    match Listing::from_query(&app.rooms.general().feed, query) {
        Ok(listing) => {
            let index = Index {
                layout,
                listing,
                form: PostForm {
                    attachments: true,
                    ..PostForm::default()
                },
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
        Ok(post) => match app.rooms.general().post(&app.rooms, post, None, None).await {
            // Post/Redirect/Get: answer the POST with "see /" rather than
            // with a page. The browser GETs `/`, and that GET is what its
            // history remembers, so Reload shows the page again instead of
            // asking "resend the form?" and posting twice.
            Ok(_) => http::see_other("/"),
            Err(refusal) => page::error(layout, refusal.status(), refusal.message()),
        },
        Err(errors) => {
            // 422: the request was understood but cannot be accepted as it
            // is. The page comes back with the messages and what was typed.
            let index = Index {
                layout,
                listing: Listing::latest(&app.rooms.general().feed),
                form: PostForm {
                    attachments: true,
                    ..PostForm::rejected(title, text, errors)
                },
                sockets: app.sockets.count(),
            };
            page::render(StatusCode::UNPROCESSABLE_ENTITY, &index)
        }
    }
}

/// `POST /news` with JSON, the way the page's script posts: `201 Created`
/// with the stored item, or `422` with a message per field. Refusals are
/// JSON too, so that the script can show them.
///
/// A script may name its post with an `Idempotency-Key` header (the name
/// the IETF's draft gives it, as Stripe and others use it): sent again
/// with the same key, the post answers `201` with the id (and time) of the
/// one stored the first time, and nothing new is stored. That is what
/// makes sending it again safe after a `503` whose `"outcome"` is
/// `"unknown"`.
async fn post_json(app: &App, request: Request<Incoming>) -> Response {
    // Taken before the body is read: reading consumes the request.
    let key = request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .map(|key| key.to_str().unwrap_or_default().to_owned());
    match posting::read_json(request, BODY_LIMIT).await {
        Ok(_) if key.as_deref().is_some_and(|key| !is_post_key(key)) => {
            http::json_error(StatusCode::BAD_REQUEST, KEY_RULE)
        }
        Ok(post) => match app
            .rooms
            .general()
            .post(&app.rooms, post, key.as_deref(), None)
            .await
        {
            Ok(item) => http::json(StatusCode::CREATED, &item),
            Err(refusal) => refused(refusal),
        },
        Err(refusal) => refusal,
    }
}

/// A post that was not stored, or may not have been: `{"error": ...}`,
/// with `"outcome": "unknown"` when nobody knows which. A 503 says when to
/// try again.
fn refused(refusal: Refusal) -> Response {
    let mut answer = serde_json::json!({ "error": refusal.message() });
    if let Some(outcome) = refusal.outcome() {
        answer["outcome"] = outcome.into();
    }
    let response = http::json(refusal.status(), &answer);
    match refusal.status() {
        StatusCode::SERVICE_UNAVAILABLE => http::with_header(response, header::RETRY_AFTER, "2"),
        _ => response,
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
/// Clients send short messages, so 1 KiB will do (attachments grow the
/// buffer for as long as they take, and come in a read per KiB). Writes
/// gather in a small buffer until a flush; incoming messages are capped at
/// the size of an attachment, and text messages at 26 KiB by each socket's
/// loop.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(64 * 1024 + ATTACHMENT_LIMIT)
        .max_message_size(Some(ATTACHMENT_LIMIT))
        .max_frame_size(Some(ATTACHMENT_LIMIT))
}

/// Every room this server follows, by name.
struct Rooms {
    by_name: Mutex<HashMap<Arc<str>, Arc<Room>>>,
    /// How many rooms this server may follow at once.
    max: usize,
    /// Everything that happens in any room, for the admin namespace.
    activity: broadcast::Sender<Activity>,
    /// Redis, where the rooms really are.
    store: Arc<Store>,
    /// What each room's copy is made like (`Feed::replica`): its size.
    template: Feed,
    /// The admin sockets open here. While there is one, this server follows
    /// every room that has news, so that the admins see them all.
    admins: Sockets,
    /// Wakes [`count_members`] when a socket leaves a room.
    left: Notify,
    /// What each client uploaded lately: since when, and how many bytes.
    uploads: Mutex<HashMap<IpAddr, (Instant, usize)>>,
}

/// One room: this server's copy of its stream (history, cursor,
/// subscriptions), its members count and the attachments of its history.
struct Room {
    name: Arc<str>,
    /// Filled from Redis, never posted to directly: see [`Room::post`].
    feed: Feed,
    /// How many sockets are in the room on every server together. Members
    /// watch it for `presence`.
    members: watch::Sender<usize>,
    /// How many of them are on this server: what this server tells Redis.
    here: AtomicUsize,
    /// Attachments by item id, oldest first.
    attachments: Mutex<VecDeque<(u64, Attachment)>>,
    /// Every `news` frame of this room, encoded once for all members, and
    /// whether an attachment follows it.
    frames: EncodeOnce<u64, (Utf8Bytes, bool)>,
    /// Dropped with the room, which ends its task forwarding to the admins.
    _forwarding: oneshot::Sender<()>,
}

/// An image that came with a post.
#[derive(Clone, Debug)]
struct Attachment {
    mime: &'static str,
    /// Reference-counted: every member is sent the same bytes.
    bytes: Bytes,
}

/// What the admin namespace hears about.
#[derive(Clone, Debug)]
enum Activity {
    News {
        room: Arc<str>,
        item: Arc<NewsItem>,
        attachment: Option<Attachment>,
    },
    Presence {
        room: Arc<str>,
        members: usize,
    },
}

impl Rooms {
    /// The rooms of a server, starting with `general` read from Redis.
    async fn new(template: Feed, store: Arc<Store>, max: usize) -> redis::RedisResult<Arc<Rooms>> {
        let rooms = Arc::new(Rooms {
            by_name: Mutex::default(),
            max: max.max(1),
            activity: broadcast::channel(1024).0,
            store,
            template,
            admins: Sockets::default(),
            left: Notify::new(),
            uploads: Mutex::default(),
        });
        let general = rooms.load(GENERAL).await?;
        lock(&rooms.by_name).insert(general.name.clone(), general);
        Ok(rooms)
    }

    /// `general`, which this server always follows.
    fn general(&self) -> Arc<Room> {
        lock(&self.by_name)[GENERAL].clone()
    }

    /// A place in the room called `name`. A room this server does not
    /// follow yet is read from Redis first, while the server has room for
    /// it. The place is taken under the same lock that forgets unused
    /// rooms, so a room cannot be forgotten between finding it and joining.
    async fn join(self: &Arc<Rooms>, name: &str) -> Result<Membership, String> {
        let limit = || format!("This server already has {} rooms, its limit.", self.max);
        let found = lock(&self.by_name)
            .get(name)
            .map(|room| Membership::new(room.clone(), self.clone()));
        let membership = match found {
            Some(membership) => membership,
            None => {
                if lock(&self.by_name).len() >= self.max {
                    return Err(limit());
                }
                let loaded = self.load(name).await.map_err(|_| AWAY.to_owned())?;
                let membership = {
                    let mut by_name = lock(&self.by_name);
                    let room = match by_name.get(name) {
                        // Another socket read it meanwhile: one copy is enough.
                        Some(room) => room.clone(),
                        None if by_name.len() >= self.max => return Err(limit()),
                        None => {
                            by_name.insert(loaded.name.clone(), loaded.clone());
                            loaded
                        }
                    };
                    Membership::new(room, self.clone())
                };
                // The reader reads this room too from now on.
                self.store.wake_reader().await;
                membership
            }
        };
        // Counted in at once, everywhere: `joined` says how many are here.
        self.count(Some(&membership.room)).await;
        Ok(membership)
    }

    /// A copy of the room called `name`: the end of its history, read from
    /// Redis. The reader follows it once it is in `by_name`.
    async fn load(&self, name: &str) -> redis::RedisResult<Arc<Room>> {
        let (floor, entries) = self.store.load(name).await?;
        let feed = self.template.replica(floor);
        let mut attachments = VecDeque::new();
        for entry in entries {
            if let (Some(item), Some(attachment)) = (feed.append(entry.item), entry.attachment) {
                attachments.push_back((item.id, attachment));
            }
        }
        let room = self.create(name.into(), feed);
        *lock(&room.attachments) = attachments;
        Ok(room)
    }

    fn create(&self, name: Arc<str>, feed: Feed) -> Arc<Room> {
        let (forwarding, stop) = oneshot::channel();
        let room = Arc::new(Room {
            name,
            feed,
            members: watch::Sender::new(0),
            here: AtomicUsize::new(0),
            attachments: Mutex::default(),
            // As many frames as a socket may be behind the newest item: in
            // a burst, the slowest member still finds every frame encoded.
            frames: EncodeOnce::new(shared::feed::PUSH_BUFFER),
            _forwarding: forwarding,
        });
        tokio::spawn(forward_to_admins(
            Arc::downgrade(&room),
            self.activity.clone(),
            stop,
        ));
        room
    }

    /// Reads every room again after Redis was away: it may have restarted
    /// empty, and the copies here may hold what it lost. The sockets were
    /// closed meanwhile, so this server starts over with `general`.
    async fn reload(&self) -> redis::RedisResult<()> {
        let general = self.load(GENERAL).await?;
        let mut by_name = lock(&self.by_name);
        by_name.clear();
        by_name.insert(general.name.clone(), general);
        Ok(())
    }

    /// Follows every room that has news, for the admin namespace.
    async fn follow_all(&self) {
        let Ok(names) = self.store.rooms().await else {
            return;
        };
        for name in names {
            let followed = lock(&self.by_name).contains_key(name.as_str());
            if followed || !is_room_name(&name) || lock(&self.by_name).len() >= self.max {
                continue;
            }
            let Ok(room) = self.load(&name).await else {
                return;
            };
            lock(&self.by_name).entry(room.name.clone()).or_insert(room);
        }
        self.store.wake_reader().await;
    }

    /// Tells Redis how many of this server's sockets are in one room (or
    /// in every room it follows), and takes the totals over every server.
    /// Members of a room whose total changed get `presence`.
    async fn count(&self, only: Option<&Arc<Room>>) {
        let rooms: Vec<Arc<Room>> = match only {
            Some(room) => vec![room.clone()],
            None => lock(&self.by_name).values().cloned().collect(),
        };
        let here: Vec<(&str, usize)> = rooms
            .iter()
            .map(|room| (&*room.name, room.here.load(Ordering::Relaxed)))
            .collect();
        let Ok(totals) = self.store.count(&here, 3 * PRESENCE_EVERY).await else {
            return;
        };
        for (room, total) in rooms.iter().zip(totals) {
            if room
                .members
                .send_if_modified(|members| std::mem::replace(members, total) != total)
            {
                let _ = self.activity.send(Activity::Presence {
                    room: room.name.clone(),
                    members: total,
                });
            }
        }
    }

    /// Every room, for the admin namespace.
    fn list(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<_> = lock(&self.by_name)
            .values()
            .map(|room| RoomInfo {
                name: room.name.clone(),
                members: *room.members.borrow(),
                cursor: room.feed.cursor(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// Counts an upload of `size` bytes from `client`, or says why not:
    /// each client may upload [`CLIENT_UPLOAD_BYTES`] per [`UPLOAD_WINDOW`].
    fn count_upload(&self, client: Option<IpAddr>, size: usize) -> Result<(), String> {
        let Some(client) = client else {
            return Ok(());
        };
        let now = Instant::now();
        let mut uploads = lock(&self.uploads);
        uploads.retain(|_, (since, _)| now.duration_since(*since) < UPLOAD_WINDOW);
        let (_, sent) = uploads.entry(client).or_insert((now, 0));
        if *sent + size > CLIENT_UPLOAD_BYTES {
            return Err(format!(
                "You sent {} MiB of images in the last {} minutes, the most one address may. \
                 Nothing was stored.",
                CLIENT_UPLOAD_BYTES / (1024 * 1024),
                UPLOAD_WINDOW.as_secs() / 60
            ));
        }
        *sent += size;
        Ok(())
    }

    /// Forgets the rooms no socket here is in: their history is in Redis,
    /// and costs one read to copy again. `general` stays, and every room
    /// while an admin watches. Answers the rooms it forgot.
    fn forget_unused(&self) -> Vec<Arc<Room>> {
        if self.admins.count() > 0 {
            return Vec::new();
        }
        let mut forgotten = Vec::new();
        lock(&self.by_name).retain(|name, room| {
            let keep = &**name == GENERAL || room.here.load(Ordering::Relaxed) > 0;
            if !keep {
                forgotten.push(room.clone());
            }
            keep
        });
        forgotten
    }
}

impl Room {
    /// Stores a post in Redis, with its attachment if it has one, and
    /// answers once this server's copy of the room has it too. A post sent
    /// again with its `key` answers the id of the one stored the first time.
    async fn post(
        &self,
        rooms: &Rooms,
        post: NewPost,
        key: Option<&str>,
        attachment: Option<Attachment>,
    ) -> Result<Arc<NewsItem>, Refusal> {
        let item = rooms
            .store
            .post(&self.name, &post, key, attachment.as_ref())
            .await?;
        // The post is in Redis; the reader brings it back here in a few
        // milliseconds. Waiting for it means that whoever posted sees it
        // in its place among the others, and that the page a form post
        // redirects to shows it.
        let _ = tokio::time::timeout(CATCH_UP, self.feed.wait_after(item.id - 1)).await;
        Ok(Arc::new(item))
    }

    /// Adds an entry read from Redis to this server's copy of the room.
    fn copy(&self, entry: Entry) {
        // Members look attachments up as soon as the feed announces the
        // item: hold the lock across both, so that the lookup waits for the
        // attachment instead of missing it.
        let mut attachments = lock(&self.attachments);
        let Some(item) = self.feed.append(entry.item) else {
            return;
        };
        if let Some(attachment) = entry.attachment {
            attachments.push_back((item.id, attachment));
            let mut kept: usize = attachments.iter().map(|(_, a)| a.bytes.len()).sum();
            while kept > ROOM_ATTACHMENT_BYTES {
                let (_, oldest) = attachments
                    .pop_front()
                    .expect("kept > 0 means one is there");
                kept -= oldest.bytes.len();
            }
        }
    }

    fn attachment(&self, id: u64) -> Option<Attachment> {
        let attachments = lock(&self.attachments);
        attachments
            .iter()
            .find(|(item, _)| *item == id)
            .map(|(_, attachment)| attachment.clone())
    }
}

/// Tells the admins about every item of one room, whoever posted it (a
/// socket, an HTTP POST, another server), until the room is forgotten.
async fn forward_to_admins(
    room: Weak<Room>,
    activity: broadcast::Sender<Activity>,
    mut stop: oneshot::Receiver<()>,
) {
    let Some((name, mut news)) = room.upgrade().map(|room| {
        let (_, news) = room.feed.subscribe(Some(room.feed.cursor()));
        (room.name.clone(), news)
    }) else {
        return;
    };
    loop {
        tokio::select! {
            pushed = news.next() => {
                let Pushed::Item(item) = pushed else { continue };
                let attachment = room.upgrade().and_then(|room| room.attachment(item.id));
                let _no_admins_is_fine = activity.send(Activity::News { room: name.clone(), item, attachment });
            }
            _ = &mut stop => return,
        }
    }
}

/// Copies what arrives in Redis into this server's rooms, in order. One
/// `XREAD` waits for news in every room followed here, each from where its
/// copy ends, then the next read starts from the new ends.
///
/// Why read streams rather than subscribe to Pub/Sub: a Pub/Sub message
/// reaches whoever listens at that instant and is gone, so a server that
/// reconnects to Redis misses what was said meanwhile, and would need the
/// history anyway. A stream is the history: reading it from the last id
/// misses nothing and repeats nothing, in the order Redis stored it.
async fn read_rooms(rooms: Arc<Rooms>, shutdown: Shutdown) {
    let mut reader = rooms.store.reader();
    loop {
        tokio::select! {
            () = rooms.store.back() => {}
            () = shutdown.wait() => return,
        }
        let followed: Vec<Arc<Room>> = lock(&rooms.by_name).values().cloned().collect();
        let from: Vec<(&str, u64)> = followed
            .iter()
            .map(|room| (&*room.name, room.feed.cursor()))
            .collect();
        let read = tokio::select! {
            read = reader.read(&from) => read,
            () = shutdown.wait() => return,
        };
        match read {
            Ok(news) => {
                for (name, entries) in news {
                    let room = lock(&rooms.by_name).get(name.as_str()).cloned();
                    for entry in entries {
                        if let Some(room) = &room {
                            room.copy(entry);
                        }
                    }
                }
            }
            // Redis went away (the store says so to everyone, and
            // `watch_redis` waits for it); or it refused the read, which
            // would be a bug: either way, not in a tight loop.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Presence over every server: every two seconds, and whenever a socket
/// leaves a room, this server says how many of its sockets are in each
/// room and reads the totals. Then it forgets the rooms nobody here is in.
async fn count_members(rooms: Arc<Rooms>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(PRESENCE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = rooms.left.notified() => {}
            () = shutdown.wait() => return,
        }
        if !rooms.store.is_up() {
            continue;
        }
        if rooms.admins.count() > 0 {
            rooms.follow_all().await;
        }
        rooms.count(None).await;
        // Say 0 for each room just forgotten: a socket may have joined and
        // left it while the count above was on its way to Redis, which
        // would then go on counting that member on every server.
        for room in rooms.forget_unused() {
            rooms.count(Some(&room)).await;
        }
    }
}

/// Keeps an eye on Redis. When it cannot be reached, the server stays up:
/// every socket closes with 1013 "try again later" (each socket's loop
/// sees it) and the pages reconnect by themselves, with backoff; new
/// sockets get 503, and posts are refused, never acknowledged. Meanwhile
/// this task asks Redis every second; once it answers, the rooms are read
/// again from it and the server takes sockets again.
async fn watch_redis(rooms: Arc<Rooms>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = rooms.store.down() => {}
            () = shutdown.wait() => return,
        }
        tracing::warn!(
            "Redis is away: sockets close with 1013, posts are refused until it is back"
        );
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.wait() => return,
            }
            if rooms.store.ping().await.is_ok() && rooms.reload().await.is_ok() {
                break;
            }
        }
        rooms.store.mark_up();
        tracing::info!("Redis is back: sockets and posts are welcome again");
    }
}

/// A socket's place in a room. Counted while it lives; dropping it (on
/// `leave`, or when the socket closes) counts the socket out, and Redis
/// hears of it at once.
struct Membership {
    room: Arc<Room>,
    rooms: Arc<Rooms>,
}

impl Membership {
    fn new(room: Arc<Room>, rooms: Arc<Rooms>) -> Membership {
        room.here.fetch_add(1, Ordering::Relaxed);
        Membership { room, rooms }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.here.fetch_sub(1, Ordering::Relaxed);
        self.rooms.left.notify_one();
    }
}

/// What happens in a room a socket is in.
enum RoomEvent {
    Pushed(Pushed),
    Presence(usize),
}

/// A room's news and members count as one stream, for the socket's
/// `StreamMap` of joined rooms.
type RoomEvents = Pin<Box<dyn Stream<Item = RoomEvent> + Send>>;

/// A room's events for one socket: its news, and its members count.
///
/// Members counts go out at most every [`PRESENCE_QUIET`] per socket: when a
/// thousand pages join at once, each member gets a few counts, the last one
/// right, instead of a thousand frames.
///
/// News comes first (`biased`): when an item wakes a room's 5,000 sockets,
/// each takes it without signing up for the members count (a lock shared
/// by the whole room) or starting a timer (another) on the way.
fn room_events(news: Subscription, members: watch::Receiver<usize>) -> RoomEvents {
    let quiet_until = tokio::time::Instant::now();
    Box::pin(futures_util::stream::unfold(
        (news, members, quiet_until),
        |(mut news, mut members, mut quiet_until)| async move {
            // Sleep first, then wait for a change: both can be dropped
            // half-way (when news wins the race) without losing the change.
            let presence = async {
                if quiet_until > tokio::time::Instant::now() {
                    tokio::time::sleep_until(quiet_until).await;
                }
                members.changed().await
            };
            let event = tokio::select! {
                biased;
                pushed = news.next() => RoomEvent::Pushed(pushed),
                Ok(()) = presence => {
                    quiet_until = tokio::time::Instant::now() + PRESENCE_QUIET;
                    RoomEvent::Presence(*members.borrow_and_update())
                }
            };
            Some((event, (news, members, quiet_until)))
        },
    ))
}

/// `^[A-Za-z0-9_-]{1,64}$`: a post's key, as a page makes it (random hex,
/// or a UUID), short and safe in a Redis key and a log.
fn is_post_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// `^[a-z0-9][a-z0-9-]{0,31}$`: short, lowercase, safe in a URL and a log.
fn is_room_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.len() <= 32
        && bytes.all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// What the server sends, on `/ws` and `/admin/ws`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ToClient<'a> {
    /// The socket is in the room: what it missed (or a reset), the cursor,
    /// the members. The binary frames of `attachments` follow, in order.
    Joined {
        #[serde(rename = "ref", skip_serializing_if = "Value::is_null")]
        reference: &'a Value,
        room: &'a str,
        #[serde(flatten)]
        batch: &'a Batch,
        members: usize,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<AttachmentInfo>,
    },
    /// The socket left the room.
    Left {
        #[serde(rename = "ref", skip_serializing_if = "Value::is_null")]
        reference: &'a Value,
        room: &'a str,
    },
    /// One new item in a room. If it has an attachment, a binary frame
    /// with its bytes follows.
    News {
        room: &'a str,
        item: &'a NewsItem,
        #[serde(skip_serializing_if = "Option::is_none")]
        attachment: Option<AttachmentInfo>,
    },
    /// How many sockets are in a room now.
    Presence { room: &'a str, members: usize },
    /// The post with this `ref` was stored with this id.
    Posted {
        #[serde(rename = "ref")]
        reference: &'a Value,
        id: u64,
    },
    /// Every room, for the admin namespace.
    Rooms { rooms: Vec<RoomInfo> },
    /// The announcement with this `ref` was posted to this many rooms.
    Announced {
        #[serde(rename = "ref")]
        reference: &'a Value,
        rooms: usize,
    },
    /// Something the client sent was refused, or, for a post whose
    /// `outcome` is `"unknown"`, may have been stored: sending it again
    /// with the same key is safe.
    Error {
        #[serde(rename = "ref", skip_serializing_if = "Value::is_null")]
        reference: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors: Option<&'a FieldErrors>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        outcome: Option<&'a str>,
    },
}

/// An attachment as announced in JSON; its bytes travel in a binary frame.
#[derive(Debug, Serialize, Deserialize)]
struct AttachmentInfo {
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    id: Option<u64>,
    mime: String,
    size: usize,
}

#[derive(Serialize)]
struct RoomInfo {
    name: Arc<str>,
    members: usize,
    cursor: u64,
}

/// What a client may send. (`ref`, when present, is read apart: any message
/// may carry one, and every answer to it carries it back.)
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FromClient {
    Join {
        room: String,
        #[serde(default)]
        since: Option<u64>,
    },
    Leave {
        room: String,
    },
    Post {
        room: String,
        #[serde(flatten)]
        post: PostRequest,
        #[serde(default)]
        attachment: Option<AttachmentInfo>,
        /// The post's own random name (see `is_post_key`): sent again with
        /// the same key, it is stored once.
        #[serde(default)]
        key: Option<String>,
    },
    /// Admin namespace only: post to every room.
    Announce {
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

/// A socket on `/ws` and the rooms it is in.
struct Member {
    /// The rooms joined, each with the place that counts this socket in it.
    joined: HashMap<Arc<str>, Membership>,
    /// The events of every joined room, merged into one stream.
    events: StreamMap<Arc<str>, RoomEvents>,
    /// A post that announced an attachment, waiting for its binary frame.
    awaiting: Option<Awaiting>,
    /// Whose posts these are, for the limit on posts per client.
    poster: Poster,
    /// How many posts in a row were refused for coming too fast.
    refused: usize,
}

struct Awaiting {
    reference: Value,
    room: Arc<Room>,
    post: NewPost,
    key: Option<String>,
    mime: &'static str,
    size: usize,
}

/// One socket on `/ws`: `general` first, then whatever rooms it joins,
/// until one side closes.
async fn room_socket(
    app: App,
    mut socket: WebSocketStream<TokioIo<Upgraded>>,
    poster: Poster,
    since: Option<u64>,
) {
    let _open = app.sockets.open();
    let mut redis = app.store.health();
    let started = Instant::now();
    tracing::info!(
        "WS /ws opened, since={since:?}, {} sockets open",
        app.sockets.count()
    );
    let mut member = Member {
        joined: HashMap::new(),
        events: StreamMap::new(),
        awaiting: None,
        poster,
        refused: 0,
    };
    let joined = join(&app, &mut member, &Value::Null, GENERAL, since).await;
    let ending = match send_all(&mut socket, joined).await {
        Ok(()) => serve_rooms(&app, &mut socket, &mut member, &mut redis).await,
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
/// client, an event in one of its rooms, a heartbeat, the server stopping,
/// or Redis going away.
async fn serve_rooms(
    app: &App,
    socket: &mut WebSocketStream<TokioIo<Upgraded>>,
    member: &mut Member,
    redis: &mut watch::Receiver<bool>,
) -> Ending {
    let ping_every = Duration::from_secs(app.options.ping_interval.max(1));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut heard = Instant::now();
    // Made once, not at every turn of the loop: each new wait signs up with
    // the shutdown signal, and thousands of sockets signing up again for
    // every item they send would queue on its lock.
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    // Made once: it resolves at the first outage of Redis since the socket
    // opened.
    let mut redis_lost = std::pin::pin!(store::lost(redis));
    loop {
        tokio::select! {
            // News first: a task woken by an item takes it without polling
            // the socket, the heartbeat and the shutdown signal on the way
            // (with 5,000 sockets, that is 5,000 times per item).
            biased;
            Some((room, event)) = member.events.next() => {
                // Feed the event, and any others already waiting, into the
                // socket's buffer, then flush once: a burst of 200 items
                // becomes a few large writes instead of 200 small ones.
                let burst = async {
                    let mut next = Some((room, event));
                    while let Some((room, event)) = next {
                        let Some(membership) = member.joined.get(&room) else { break };
                        for frame in event_frames(&membership.room, event) {
                            socket.feed(frame).await?;
                        }
                        next = member.events.next().now_or_never().flatten();
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
                let replies = match message {
                    Message::Text(text) if text.len() > MESSAGE_LIMIT => {
                        return Ending::Close(CloseCode::Size, "text messages are limited to 26 KiB");
                    }
                    Message::Text(text) => {
                        let mut replies = Vec::new();
                        if let Some(dropped) = member.awaiting.take() {
                            let message = "The attachment must come right after its post, as one binary frame. The post was dropped.";
                            replies.push(error_reply(&dropped.reference, None, Some(message)));
                        }
                        match handle_text(app, member, &text).await {
                            Ok(more) => replies.extend(more),
                            Err(ending) => return ending,
                        }
                        replies
                    }
                    Message::Binary(bytes) => vec![handle_attachment(app, member, bytes).await],
                    // Pings are answered by tungstenite itself; pongs only
                    // tell us the client is alive (`heard`, above).
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    Message::Close(_) => return Ending::ClientClosed,
                };
                if let Err(ending) = send_all(socket, replies).await {
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
            // 1013, "try again later": the page reconnects with backoff, to
            // this server once Redis is back, or to another one.
            () = &mut redis_lost => return Ending::Close(CloseCode::Again, REDIS_AWAY),
        }
    }
}

/// A JSON message from a `/ws` client → the frames that answer it.
async fn handle_text(app: &App, member: &mut Member, text: &str) -> Result<Vec<Message>, Ending> {
    let Ok(json) = serde_json::from_str::<Map<String, Value>>(text) else {
        return Ok(vec![error_reply(
            &Value::Null,
            None,
            Some("That message is not a JSON object."),
        )]);
    };
    let reference = json.get("ref").cloned().unwrap_or(Value::Null);
    let message = match serde_json::from_value::<FromClient>(Value::Object(json)) {
        Ok(message) => message,
        Err(error) => {
            let message = format!("That message is not one this server understands: {error}.");
            return Ok(vec![error_reply(&reference, None, Some(&message))]);
        }
    };
    let reply = match message {
        FromClient::Join { room, since } => {
            if member.joined.len() >= app.options.max_rooms_per_socket
                && !member.joined.contains_key(room.as_str())
            {
                let message = format!(
                    "A socket may be in at most {} rooms.",
                    app.options.max_rooms_per_socket
                );
                return Ok(vec![error_reply(&reference, None, Some(&message))]);
            }
            return Ok(join(app, member, &reference, &room, since).await);
        }
        FromClient::Leave { room } => match member.joined.remove(room.as_str()) {
            Some(_membership) => {
                member.events.remove(room.as_str());
                encode(&ToClient::Left {
                    reference: &reference,
                    room: &room,
                })
            }
            None => error_reply(&reference, None, Some("This socket is not in that room.")),
        },
        FromClient::Post {
            room,
            post,
            attachment,
            key,
        } => {
            if let Err(refusal) = member.poster.admit() {
                member.refused += 1;
                if member.refused > FLOOD_LIMIT {
                    return Err(Ending::Close(CloseCode::Policy, "too many posts"));
                }
                return Ok(vec![error_reply(&reference, None, Some(&refusal.message))]);
            }
            member.refused = 0;
            let Some(joined) = member.joined.get(room.as_str()).map(|m| m.room.clone()) else {
                return Ok(vec![error_reply(
                    &reference,
                    None,
                    Some("Join the room before posting to it."),
                )]);
            };
            let post = match news::validate(&post.title, &post.body) {
                Ok(post) => post,
                Err(errors) => return Ok(vec![error_reply(&reference, Some(&errors), None)]),
            };
            if key.as_deref().is_some_and(|key| !is_post_key(key)) {
                return Ok(vec![error_reply(&reference, None, Some(KEY_RULE))]);
            }
            match attachment {
                None => match joined.post(&app.rooms, post, key.as_deref(), None).await {
                    Ok(item) => encode(&ToClient::Posted {
                        reference: &reference,
                        id: item.id,
                    }),
                    Err(refusal) => refusal_reply(&reference, refusal),
                },
                Some(announced) => {
                    let mime = match news::check_attachment(&announced.mime, announced.size) {
                        Ok(mime) => mime,
                        Err(message) => {
                            return Ok(vec![error_reply(&reference, None, Some(message))]);
                        }
                    };
                    // Nothing is stored until the bytes arrive, whole and right.
                    member.awaiting = Some(Awaiting {
                        reference,
                        room: joined,
                        post,
                        key,
                        mime,
                        size: announced.size,
                    });
                    return Ok(Vec::new());
                }
            }
        }
        FromClient::Announce { .. } => error_reply(
            &reference,
            None,
            Some("Announcements belong to the admin namespace."),
        ),
    };
    Ok(vec![reply])
}

/// Joins a room (or joins it again, to resync): `joined` with what came
/// after `since`, then the attachments of those items as binary frames.
async fn join(
    app: &App,
    member: &mut Member,
    reference: &Value,
    name: &str,
    since: Option<u64>,
) -> Vec<Message> {
    if !is_room_name(name) {
        let message = "Room names are 1 to 32 lowercase letters, digits and dashes, starting with a letter or digit.";
        return vec![error_reply(reference, None, Some(message))];
    }
    // Joining a room again resyncs it from `since`; the place is kept.
    let room = match member.joined.get(name) {
        Some(membership) => membership.room.clone(),
        None => match app.rooms.join(name).await {
            Ok(membership) => {
                let room = membership.room.clone();
                member.joined.insert(room.name.clone(), membership);
                room
            }
            Err(message) => return vec![error_reply(reference, None, Some(&message))],
        },
    };
    // A cursor handed out by another server can be a moment ahead of this
    // server's copy of the room: let the copy catch up, rather than answer
    // with a reset.
    if let Some(since) = since.filter(|&since| since > room.feed.cursor()) {
        let _ = tokio::time::timeout(CATCH_UP, room.feed.wait_after(since - 1)).await;
    }
    let (batch, news) = room.feed.subscribe(since);
    let mut members = room.members.subscribe();
    members.mark_unchanged();
    member
        .events
        .insert(room.name.clone(), room_events(news, members));
    joined_frames(&room, reference, &batch)
}

/// `joined` for a batch of a room's items, then their attachments.
fn joined_frames(room: &Room, reference: &Value, batch: &Batch) -> Vec<Message> {
    let attached: Vec<(u64, Attachment)> = batch
        .items
        .iter()
        .filter_map(|item| Some((item.id, room.attachment(item.id)?)))
        .collect();
    let attachments = attached
        .iter()
        .map(|(id, attachment)| AttachmentInfo {
            id: Some(*id),
            mime: attachment.mime.into(),
            size: attachment.bytes.len(),
        })
        .collect();
    let joined = encode(&ToClient::Joined {
        reference,
        room: &room.name,
        batch,
        members: *room.members.borrow(),
        attachments,
    });
    let bytes = attached
        .into_iter()
        .map(|(_, attachment)| Message::Binary(attachment.bytes));
    std::iter::once(joined).chain(bytes).collect()
}

/// A binary frame: the attachment of the post just before it, or an error.
async fn handle_attachment(app: &App, member: &mut Member, bytes: Bytes) -> Message {
    let Some(awaiting) = member.awaiting.take() else {
        let message = "A binary frame must follow a post that announces it as an attachment.";
        return error_reply(&Value::Null, None, Some(message));
    };
    let reference = &awaiting.reference;
    if bytes.len() != awaiting.size {
        let message = format!(
            "The attachment was announced as {} bytes but {} arrived. Nothing was stored.",
            awaiting.size,
            bytes.len()
        );
        return error_reply(reference, None, Some(&message));
    }
    if !news::looks_like(awaiting.mime, &bytes) {
        let message = format!(
            "Those bytes are not a {} image. Nothing was stored.",
            awaiting.mime
        );
        return error_reply(reference, None, Some(&message));
    }
    if let Err(message) = app.rooms.count_upload(member.poster.client(), bytes.len()) {
        return error_reply(reference, None, Some(&message));
    }
    let attachment = Attachment {
        mime: awaiting.mime,
        bytes,
    };
    match awaiting
        .room
        .post(
            &app.rooms,
            awaiting.post,
            awaiting.key.as_deref(),
            Some(attachment),
        )
        .await
    {
        Ok(item) => encode(&ToClient::Posted {
            reference,
            id: item.id,
        }),
        Err(refusal) => refusal_reply(reference, refusal),
    }
}

/// The frames for one event in a room: `news` (encoded once for all
/// members) and its attachment; `joined` again for a member that fell
/// behind the whole history; or `presence`.
fn event_frames(room: &Room, event: RoomEvent) -> Vec<Message> {
    match event {
        RoomEvent::Pushed(Pushed::Item(item)) => {
            // Only the first member looks for an attachment; the others
            // learn from it whether there is one, and if not (most items)
            // never touch the lock of the room's attachments.
            let (news, attached) = room.frames.get(item.id, || {
                let info = room.attachment(item.id).map(|attachment| AttachmentInfo {
                    id: None,
                    mime: attachment.mime.into(),
                    size: attachment.bytes.len(),
                });
                let attached = info.is_some();
                match encode(&ToClient::News {
                    room: &room.name,
                    item: &item,
                    attachment: info,
                }) {
                    Message::Text(json) => (json, attached),
                    _ => unreachable!("encode() makes text frames"),
                }
            });
            let bytes = attached
                .then(|| room.attachment(item.id))
                .flatten()
                .map(|attachment| Message::Binary(attachment.bytes));
            std::iter::once(Message::Text(news)).chain(bytes).collect()
        }
        RoomEvent::Pushed(Pushed::Reset(batch)) => joined_frames(room, &Value::Null, &batch),
        RoomEvent::Presence(members) => vec![encode(&ToClient::Presence {
            room: &room.name,
            members,
        })],
    }
}

/// One socket on `/admin/ws`: the list of rooms, then every room's news and
/// presence, and announcements to every room.
async fn admin_socket(app: App, mut socket: WebSocketStream<TokioIo<Upgraded>>) {
    let _open = app.sockets.open();
    let mut redis = app.store.health();
    tracing::info!("WS /admin/ws opened");
    // While an admin watches, this server follows every room with news.
    let _watching = app.rooms.admins.open();
    app.rooms.follow_all().await;
    app.rooms.count(None).await;
    let mut activity = app.rooms.activity.subscribe();
    let ending = match send(
        &mut socket,
        encode(&ToClient::Rooms {
            rooms: app.rooms.list(),
        }),
    )
    .await
    {
        Ok(()) => serve_admin(&app, &mut socket, &mut activity, &mut redis).await,
        Err(ending) => ending,
    };
    end(&mut socket, ending).await;
    tracing::info!("WS /admin/ws closed");
}

async fn serve_admin(
    app: &App,
    socket: &mut WebSocketStream<TokioIo<Upgraded>>,
    activity: &mut broadcast::Receiver<Activity>,
    redis: &mut watch::Receiver<bool>,
) -> Ending {
    let ping_every = Duration::from_secs(app.options.ping_interval.max(1));
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut heard = Instant::now();
    // Made once, not at every turn of the loop: each new wait signs up with
    // the shutdown signal, and thousands of sockets signing up again for
    // every item they send would queue on its lock.
    let mut stopping = std::pin::pin!(app.shutdown.wait());
    // Made once: it resolves at the first outage of Redis since the socket
    // opened.
    let mut redis_lost = std::pin::pin!(store::lost(redis));
    loop {
        let frames = tokio::select! {
            incoming = socket.next() => {
                heard = Instant::now();
                match incoming {
                    None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ending::Gone,
                    Some(Err(error)) => return read_error(error),
                    Some(Ok(Message::Text(text))) if text.len() > MESSAGE_LIMIT => {
                        return Ending::Close(CloseCode::Size, "text messages are limited to 26 KiB");
                    }
                    Some(Ok(Message::Text(text))) => vec![announce(app, &text).await],
                    Some(Ok(Message::Binary(_))) => return Ending::Close(CloseCode::Unsupported, "binary frames are not spoken here"),
                    Some(Ok(Message::Close(_))) => return Ending::ClientClosed,
                    Some(Ok(_)) => continue,
                }
            }
            heard_of = activity.recv() => match heard_of {
                Ok(Activity::News { room, item, attachment }) => {
                    let info = attachment.as_ref().map(|attachment| AttachmentInfo {
                        id: None,
                        mime: attachment.mime.into(),
                        size: attachment.bytes.len(),
                    });
                    let news = encode(&ToClient::News { room: &room, item: &item, attachment: info });
                    std::iter::once(news).chain(attachment.map(|a| Message::Binary(a.bytes))).collect()
                }
                Ok(Activity::Presence { room, members }) => vec![encode(&ToClient::Presence { room: &room, members })],
                // An admin that fell behind gets the room list again; the
                // news it missed is in each room's history.
                Err(broadcast::error::RecvError::Lagged(_)) => vec![encode(&ToClient::Rooms { rooms: app.rooms.list() })],
                Err(broadcast::error::RecvError::Closed) => return Ending::Gone,
            },
            _ = heartbeat.tick() => {
                if heard.elapsed() > 2 * ping_every {
                    return Ending::Gone;
                }
                vec![Message::Ping(Bytes::new())]
            }
            () = &mut stopping => return Ending::Close(CloseCode::Away, "the server is stopping"),
            () = &mut redis_lost => return Ending::Close(CloseCode::Again, REDIS_AWAY),
        };
        if let Err(ending) = send_all(socket, frames).await {
            return ending;
        }
    }
}

/// `{"type":"announce","ref":R,"title":...}` from an admin: post it to
/// every room.
async fn announce(app: &App, text: &str) -> Message {
    let Ok(json) = serde_json::from_str::<Map<String, Value>>(text) else {
        return error_reply(
            &Value::Null,
            None,
            Some("That message is not a JSON object."),
        );
    };
    let reference = json.get("ref").cloned().unwrap_or(Value::Null);
    let Ok(FromClient::Announce { post }) =
        serde_json::from_value::<FromClient>(Value::Object(json))
    else {
        let message =
            "The admin namespace takes {\"type\":\"announce\",\"title\":...,\"body\":...}.";
        return error_reply(&reference, None, Some(message));
    };
    let post = match news::validate(&post.title, &post.body) {
        Ok(post) => post,
        Err(errors) => return error_reply(&reference, Some(&errors), None),
    };
    let rooms: Vec<Arc<Room>> = lock(&app.rooms.by_name).values().cloned().collect();
    for room in &rooms {
        if let Err(refusal) = room.post(&app.rooms, post.clone(), None, None).await {
            return refusal_reply(&reference, refusal);
        }
    }
    encode(&ToClient::Announced {
        reference: &reference,
        rooms: rooms.len(),
    })
}

fn error_reply(reference: &Value, errors: Option<&FieldErrors>, message: Option<&str>) -> Message {
    encode(&ToClient::Error {
        reference,
        errors,
        message,
        outcome: None,
    })
}

/// `error` for a post that was not stored, or may not have been: then its
/// `outcome` is `"unknown"`.
fn refusal_reply(reference: &Value, refusal: Refusal) -> Message {
    encode(&ToClient::Error {
        reference,
        errors: None,
        message: Some(refusal.message()),
        outcome: refusal.outcome(),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// tungstenite reports a broken message as an error and drops the
/// connection; the close code that tells the client why is ours to send.
fn read_error(error: WsError) -> Ending {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Ending::Close(CloseCode::Size, "messages are limited to 256 KiB")
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

/// Sends a few messages with one flush.
async fn send_all(
    socket: &mut WebSocketStream<TokioIo<Upgraded>>,
    messages: Vec<Message>,
) -> Result<(), Ending> {
    in_time(async {
        for message in messages {
            socket.feed(message).await?;
        }
        socket.flush().await
    })
    .await
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
/// limits (text up to 26 KiB, binary up to an attachment's 256 KiB) and
/// close codes, the same heartbeat, counted among the open sockets, and
/// told 1001 when the server stops.
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
                    Some(Ok(Message::Text(text))) if text.len() > MESSAGE_LIMIT => {
                        return Ending::Close(CloseCode::Size, "text messages are limited to 26 KiB");
                    }
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
