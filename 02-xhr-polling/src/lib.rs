//! # Step 02 · XHR polling: the page asks, again and again
//!
//! In 2005 "Ajax" gave the web a new trick: a script on the page sends
//! HTTP requests of its own with `XMLHttpRequest` and updates the page
//! with the answer, without loading a new one. The simplest way to get news
//! that way is to ask over and over: *polling*. This step is step 01 plus
//! two JSON endpoints and the script that uses them:
//!
//! - `GET /news?since=ID` answers `{"items":[...],"cursor":N}`: the items
//!   after the client's cursor, oldest first, and the cursor to send next
//!   time. A cursor the feed cannot vouch for (too old, from before a
//!   restart) gets `"reset":true` and the latest items instead of a silent
//!   gap. The answer carries an `ETag` naming the feed's state; a client
//!   that sends it back in `If-None-Match` gets `304 Not Modified`, with no
//!   body, while nothing has changed.
//! - `POST /news` with JSON answers `201 Created` and the stored item, or
//!   `422` with `{"errors":{"title":"..."}}`. The form of step 01 still
//!   works without JavaScript: urlencoded posts still get their `303`.
//!
//! The page (`templates/index.html`) polls every `--interval` milliseconds
//! (2000 by default). Run it with `cargo run -p xhr-polling`, open
//! http://127.0.0.1:3002/ in two tabs, and post: the other tab shows it
//! within two seconds, no reload. Then look at the Network tab while nobody
//! posts: a request every two seconds, nearly all answered `304`. The meter
//! at the bottom counts them. That is the cost of this era: the page pays
//! for every question, news or not, and news waits for the next question.

use std::io;

use askama::Template;
use hyper::HeaderMap;
use hyper::Method;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use shared::Feed;
use shared::Shutdown;
use shared::assets;
use shared::form::Fields;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::page;
use shared::page::Layout;
use shared::page::Listing;
use shared::page::PostForm;
use shared::posting;
use shared::steps::STEPS;
use shared::steps::Step;
use tokio::net::TcpListener;

/// This step: its number, name and port, for the page and the launcher.
pub const STEP: &Step = &STEPS[1];

/// The largest request body we read: room for the largest valid post,
/// however the form or the script encodes it (26 KiB, see
/// `news::MAX_POST_BYTES`); anything bigger is refused before it fills our
/// memory.
const BODY_LIMIT: usize = news::MAX_POST_BYTES;

/// What the page's script sends when it posts.
const JSON: &str = "application/json";

/// How often the page asks for news, unless `--interval` says otherwise.
pub const DEFAULT_INTERVAL_MS: u64 = 2_000;

/// What a workshop leader can tune in this step.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How often the page asks for news, in milliseconds.
    #[arg(long, default_value_t = DEFAULT_INTERVAL_MS)]
    pub interval: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: DEFAULT_INTERVAL_MS,
        }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
struct App {
    /// The news. Shared with every other step when run from the launcher.
    feed: Feed,
    options: Options,
}

/// Serves this step on `listener` until `shutdown` fires.
pub async fn run(
    listener: TcpListener,
    feed: Feed,
    options: Options,
    shutdown: Shutdown,
) -> io::Result<()> {
    let app = App { feed, options };
    http::serve(listener, shutdown, move |request| {
        route(app.clone(), request)
    })
    .await
}

/// Every URL this step answers, and what a wrong method or path gets.
async fn route(app: App, request: Request<Incoming>) -> Response {
    let layout = Layout::new(STEP, request.headers());
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => index(&app, layout, request.uri().query()),
        (&Method::GET, "/news") => news_since(&app, request.uri().query(), request.headers()),
        (&Method::POST, "/news") if http::has_content_type(request.headers(), JSON) => {
            post_json(&app, request).await
        }
        (&Method::POST, "/news") => post_news(&app, layout, request).await,
        (_, "/") => page::method_not_allowed(layout, "GET"),
        (_, "/news") => page::method_not_allowed(layout, "GET, POST"),
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
    /// How long the page's script waits between two questions.
    interval_ms: u64,
}

/// `GET /`: the whole page, built from scratch on every request.
fn index(app: &App, layout: Layout, query: Option<&str>) -> Response {
    match Listing::from_query(&app.feed, query) {
        Ok(listing) => {
            let index = Index {
                layout,
                listing,
                form: PostForm::default(),
                interval_ms: app.options.interval,
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
                interval_ms: app.options.interval,
            };
            page::render(StatusCode::UNPROCESSABLE_ENTITY, &index)
        }
    }
}

/// `GET /news?since=ID`: what came after the client's cursor, as JSON.
fn news_since(app: &App, query: Option<&str>, headers: &HeaderMap) -> Response {
    let since = Fields::query(query).and_then(|query| query.number("since"));
    let batch = match since {
        Ok(since) => app.feed.answer(since),
        Err(message) => return http::json_error(StatusCode::BAD_REQUEST, &message),
    };
    // The cursor names the state of the feed: while it stays the same, so
    // does the answer. As an `ETag` it lets the client ask "has anything
    // changed since this?" and get a bodiless 304 when nothing has.
    let etag = format!("\"{}\"", batch.cursor);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
    let response = if unchanged {
        http::response(StatusCode::NOT_MODIFIED, "application/json", "")
    } else {
        http::json(StatusCode::OK, &batch)
    };
    // `no-cache`: the browser may keep the answer, but must ask us again.
    let response = http::with_header(response, header::CACHE_CONTROL, "no-cache");
    http::with_header(response, header::ETAG, &etag)
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
