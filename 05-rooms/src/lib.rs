//! # Step 05 · Rooms: the Socket.IO ideas, by hand
//!
//! Step 04 gives every page one socket and one feed. Real applications want
//! more from a socket, and libraries such as Socket.IO became popular by
//! providing it: rooms, acknowledgements, binary payloads, namespaces, and
//! reconnection that picks up where it left off. This step builds each of
//! them in the open, on step 04's WebSocket. Read it in this order (04's
//! `handshake`, `socket` and `echo` come over unchanged):
//!
//! - this file: the URLs. `/ws` and `/admin/ws` upgrade, `/rooms.js` is
//!   the client library, served the way Socket.IO serves its own.
//! - [`protocol`]: 04's messages with a `room`, and `join`, `leave`,
//!   `presence`; a `ref` on any message comes back on its answer.
//! - [`rooms`]: named groups, each with its own feed, made on first use.
//! - [`presence`]: who is in a room, counted and told to its members, and
//!   a room's news and count as one stream for a socket.
//! - [`member`]: one socket in many rooms; [`session`], its loop.
//! - [`attachments`]: images as binary frames next to the JSON.
//! - [`admin`]: a second namespace, behind a token.
//!
//! Run it with `cargo run -p rooms`, open http://127.0.0.1:3005/ in three
//! tabs, put them in different rooms and post. The server prints the admin
//! page's address, token included, when it starts. In the Network tab's WS
//! view, watch `join`, `joined`, `presence`, and binary frames carrying
//! images.

mod admin;
mod attachments;
mod echo;
mod handshake;
mod member;
mod presence;
mod protocol;
mod rooms;
mod session;
mod socket;

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

use crate::rooms::Rooms;

/// This step: its number, name and port, for the page and the launcher.
pub const STEP: &Step = &STEPS[5];

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ping_interval: socket::PING_INTERVAL_S,
            max_rooms_per_socket: 16,
            max_rooms: 1_000,
            admin_token: None,
        }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
struct App {
    /// The news of the room `general`. Shared with every other step when
    /// run from the launcher.
    feed: Feed,
    options: Options,
    /// Every room, `general` included.
    rooms: Arc<Rooms>,
    /// The admin namespace's token: `--admin-token`, or a random one.
    admin_token: Arc<str>,
    /// The open sockets, so that the server can wait for their goodbyes.
    sockets: Sockets,
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
    // Refuse to start with an empty or short token: it would open the
    // admin namespace to anyone.
    let admin_token: Arc<str> = shared::token::admin(options.admin_token.as_deref())
        .map_err(|refusal| io::Error::new(io::ErrorKind::InvalidInput, refusal))?
        .into();
    if options.admin_token.is_none() {
        let address = listener.local_addr()?;
        tracing::info!("05 admin page: http://{address}/admin#token={admin_token}");
    }
    let app = App {
        rooms: Rooms::new(feed.clone(), options.max_rooms),
        feed,
        options,
        admin_token,
        sockets: Sockets::default(),
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
    match Listing::from_query(&app.feed, query) {
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
async fn post_json(app: &App, request: Request<Incoming>) -> Response {
    match posting::read_json(request, BODY_LIMIT).await {
        Ok(post) => http::json(StatusCode::CREATED, &app.feed.post(post)),
        Err(refusal) => refusal,
    }
}
