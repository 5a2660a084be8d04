//! # Step 04 · WebSocket: full duplex, server push
//!
//! Long polling (03) and server-sent events (03b) get news to the page at
//! once, but the page still sends with requests of its own. WebSocket
//! (RFC 6455, 2011) gives both sides one connection: one HTTP request asks
//! to *upgrade* it, the server agrees with `101 Switching Protocols`, and
//! from then on the TCP connection carries small framed messages both ways,
//! whenever either side likes. Read it in this order:
//!
//! - this file: `GET /ws?since=ID` and `GET /echo` upgrade; `POST /news`
//!   still works, and reaches every socket: sockets follow the feed.
//! - [`handshake`]: the upgrade, by hand, and what it proves.
//! - [`protocol`]: the JSON messages on `/ws`, and the `ref` of an answer.
//! - [`session`]: one page's socket, the loop that pushes and answers.
//! - [`socket`]: what every socket shares: close codes, write deadlines,
//!   the closing handshake, a ping every `--ping-interval` seconds.
//! - [`echo`]: `/echo`, the smallest full-duplex demo.
//!
//! Run it with `cargo run -p websocket`, open http://127.0.0.1:3004/ in two
//! tabs, and post. In the Network tab, filter on "WS": one request, status
//! 101, and its Messages view lists every frame. Stop the server while the
//! page is open and start it again: the page reconnects by itself and asks
//! for what it missed with `?since=`.

mod echo;
mod handshake;
mod protocol;
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
use shared::push::EncodeOnce;
use shared::push::Sockets;
use shared::steps::STEPS;
use shared::steps::Step;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// This step: its number, name and port, for the page and the launcher.
pub const STEP: &Step = &STEPS[4];

/// The largest request body we read: room for the largest valid post,
/// however the form or the script encodes it (26 KiB, see
/// `news::MAX_POST_BYTES`); anything bigger is refused before it fills our
/// memory.
const BODY_LIMIT: usize = news::MAX_POST_BYTES;

/// What the page's script sends when it posts.
const JSON: &str = "application/json";

/// The largest message a client may send: the same as a POST body.
/// (`socket::config` gives it to tungstenite.)
const MESSAGE_LIMIT: usize = BODY_LIMIT;

/// What a workshop leader can tune in this step.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How often the server pings each socket, in seconds. A socket that
    /// has not answered for two intervals is dropped.
    #[arg(long, default_value_t = socket::PING_INTERVAL_S)]
    pub ping_interval: u64,
}

impl Default for Options {
    fn default() -> Self {
        let ping_interval = socket::PING_INTERVAL_S;
        Options { ping_interval }
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
        (&Method::GET, "/ws") => session::open(app, request),
        (&Method::GET, "/echo") => {
            handshake::upgrade(request, move |socket, _| echo::session(app, socket))
        }
        (&Method::POST, "/news") if http::has_content_type(request.headers(), JSON) => {
            post_json(&app, request).await
        }
        (&Method::POST, "/news") => post_news(&app, layout, request).await,
        (_, "/") => page::method_not_allowed(layout, "GET"),
        (_, "/news") => page::method_not_allowed(layout, "POST"),
        (_, "/ws" | "/echo") => page::method_not_allowed(layout, "GET"),
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
