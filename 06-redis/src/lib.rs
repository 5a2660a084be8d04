//! # Step 06 · Redis: one feed, many servers
//!
//! Step 05 keeps its rooms in the memory of one process: a second server
//! would have rooms of its own, and a page that reconnects to it would find
//! strangers and a history it never saw. When one server is not enough, the
//! rooms must live somewhere every server can reach, and the classic answer
//! is Redis, which is two things at once here: **storage** (each room's
//! history, a Redis stream) and **real time** (every server reads every
//! stream its sockets follow). This is step 05, page and protocol unchanged
//! but for one answer (a post's `"outcome"` may be `"unknown"`), with its
//! rooms moved into Redis. Read it in this order (05's `handshake`,
//! `socket` and `echo` come over unchanged; `member` changes by a few
//! lines, `protocol` gains the post's `key` and `outcome`):
//!
//! - this file: the URLs, and the tasks that keep this server in step.
//! - [`store`]: everything said to Redis, and its keys; [`streams`], the
//!   reading of the rooms' streams; `post.lua` and `presence.lua`.
//! - [`rooms`]: 05's rooms, as copies of their streams; [`replica`]: the
//!   one `XREAD` that keeps the copies up to date.
//! - [`presence`]: members counted over every server.
//! - [`refusal`] and [`health`]: what a post is told when Redis does not
//!   answer, and what the server does until it answers again.
//! - [`session`], [`attachments`], [`admin`]: 05's, posting through Redis.
//!
//! Run Redis (`redis-server`), then two servers: `cargo run -p redis-rooms`
//! and `cargo run -p redis-rooms -- --port 3016`. Open
//! http://127.0.0.1:3006/ and http://127.0.0.1:3016/, join the same room in
//! both, post, and watch `redis-cli monitor` while you do.

mod admin;
mod attachments;
mod echo;
mod handshake;
mod health;
mod member;
mod presence;
mod protocol;
mod refusal;
mod replica;
mod rooms;
mod session;
mod socket;
mod store;
mod streams;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use hyper::Method;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use shared::Feed;
use shared::Shutdown;
use shared::assets;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::page;
use shared::page::Layout;
use shared::page::Listing;
use shared::page::PostForm;
use shared::posting;
use shared::push::Sockets;
use shared::steps::STEPS;
use shared::steps::Step;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::refusal::AWAY;
use crate::refusal::Refusal;
use crate::rooms::Rooms;
use crate::store::Limits;
use crate::store::Store;

/// This step: its number, name and port, for the page and the launcher.
pub const STEP: &Step = &STEPS[6];

/// The largest request body we read: room for the largest valid post,
/// however the form or the script encodes it (26 KiB, see
/// `news::MAX_POST_BYTES`); anything bigger is refused before it fills our
/// memory.
const BODY_LIMIT: usize = news::MAX_POST_BYTES;

/// What the page's script sends when it posts.
const JSON: &str = "application/json";

/// The largest message a client may send: an attachment's bytes. (Text
/// messages stop at 26 KiB, as a POST body does.)
/// (`socket::config` gives it to tungstenite.)
const MESSAGE_LIMIT: usize = news::ATTACHMENT_LIMIT;

/// Where Redis listens unless `--redis` says otherwise.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// The header that names a post over HTTP, so that it can be sent again
/// safely (`post_json`); over a socket, the post's `key` field does.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What a workshop leader can tune in this step.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How often the server pings each socket, in seconds. A socket that
    /// has not answered for two intervals is dropped.
    #[arg(long, default_value_t = socket::PING_INTERVAL_S)]
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
            ping_interval: socket::PING_INTERVAL_S,
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
    let limits = Limits {
        history: feed.capacity(),
        max_rooms: options.max_rooms,
        room_attachments: attachments::ROOM_ATTACHMENT_BYTES,
        all_attachments: attachments::SERVER_ATTACHMENT_BYTES,
    };
    let store = Store::connect(&options.redis, &options.redis_prefix, limits)
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
    let _tasks = keep_in_step(&rooms, &shutdown);
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

/// The three tasks that keep this server in step with Redis: the reader,
/// the presence count, and the watch on Redis itself. Dropping the set
/// when `run` ends stops them.
fn keep_in_step(rooms: &Arc<Rooms>, shutdown: &Shutdown) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(replica::read_rooms(rooms.clone(), shutdown.clone()).in_current_span());
    tasks.spawn(presence::count_members(rooms.clone(), shutdown.clone()).in_current_span());
    tasks.spawn(health::watch_redis(rooms.clone(), shutdown.clone()).in_current_span());
    tasks
}

/// Does a Redis answer at `url`? If not, why and what to do, in one line
/// (the launcher runs this step only when one does).
pub async fn redis_answers(url: &str) -> Result<(), String> {
    let limits = Limits {
        history: 1,
        max_rooms: 1,
        room_attachments: 0,
        all_attachments: 0,
    };
    match Store::connect(url, "", limits).await {
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
        (&Method::GET, "/ws") => session::open(app, request),
        (&Method::GET, "/admin/ws") => admin::open(app, request),
        (&Method::GET, "/admin") => page::render(StatusCode::OK, &Admin { layout }),
        (&Method::GET, "/rooms.js") => {
            let script = include_str!("../static/rooms.js");
            let response = http::response(StatusCode::OK, "text/javascript; charset=utf-8", script);
            http::with_header(response, header::CACHE_CONTROL, "no-cache")
        }
        (&Method::GET, "/echo") => {
            handshake::upgrade(request, move |socket, _| echo::session(app, socket))
        }
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
        Ok(_)
            if key
                .as_deref()
                .is_some_and(|key| !protocol::is_post_key(key)) =>
        {
            http::json_error(StatusCode::BAD_REQUEST, protocol::KEY_RULE)
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
