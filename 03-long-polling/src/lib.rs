//! # Step 03 · Long polling: the server holds the question
//!
//! Polling (step 02) asks every two seconds, and nearly every answer is
//! "nothing new". Long polling, the trick behind the "Comet" chat pages of
//! 2006-2011, changes one thing on the server: when there is nothing new,
//! it does not answer yet. It *parks* the request until news arrives, or
//! until a timeout passes, and only then answers. The client asks again the
//! moment it has an answer. News now arrives at once, and an idle page
//! costs one request every 25 seconds instead of one every two.
//!
//! The API is step 02's, with one more parameter and one more endpoint:
//!
//! - `GET /news?since=ID&timeout=S` answers at once when something newer
//!   than `ID` exists. Otherwise it waits until a new item arrives or `S`
//!   seconds pass (25 by default, 1 to 55 allowed), then answers with what
//!   it has: possibly no items, with the same cursor. 25 s stays under the
//!   idle timeouts of common proxies and load balancers (often 30 or 60 s),
//!   which would otherwise cut the waiting request off.
//! - At most `--max-parked` requests (10,000 by default) wait at once; past
//!   that the answer is `503 Service Unavailable` with `Retry-After`. A
//!   client that hangs up frees its place at once.
//! - `GET /stats` tells how many requests are parked and how the others
//!   ended.
//!
//! Run it with `cargo run -p long-polling`, open http://127.0.0.1:3003/ in
//! two tabs, and watch the Network tab: each `/news` request stays
//! "pending" until someone posts, or for 25 s. The server's terminal logs
//! each answer with how long it was held.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use askama::Template;
use hyper::HeaderMap;
use hyper::Method;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::header::HeaderValue;
use serde::Serialize;
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
pub const STEP: &Step = &STEPS[2];

/// The largest request body we read: room for the largest valid post,
/// however the form or the script encodes it (26 KiB, see
/// `news::MAX_POST_BYTES`); anything bigger is refused before it fills our
/// memory.
const BODY_LIMIT: usize = news::MAX_POST_BYTES;

/// What the page's script sends when it posts.
const JSON: &str = "application/json";

/// How long a request waits for news unless it asks for another `timeout`.
pub const DEFAULT_TIMEOUT_S: u64 = 25;

/// The `timeout` a client may ask for, in seconds.
const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=55;

/// How many requests may wait at once unless `--max-parked` says otherwise.
pub const DEFAULT_MAX_PARKED: usize = 10_000;

/// What a workshop leader can tune in this step.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How many requests may wait for news at once; past that, 503.
    #[arg(long, default_value_t = DEFAULT_MAX_PARKED)]
    pub max_parked: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_parked: DEFAULT_MAX_PARKED,
        }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
struct App {
    /// The news. Shared with every other step when run from the launcher.
    feed: Feed,
    options: Options,
    /// The requests waiting right now, and how the others ended.
    stats: Arc<Stats>,
    /// Parked requests answer at once when the server stops.
    shutdown: Shutdown,
}

/// What `GET /stats` reports.
#[derive(Debug, Default, Serialize)]
struct Stats {
    /// Requests waiting for news right now.
    parked: AtomicUsize,
    /// Answers that carried news.
    answered_with_news: AtomicU64,
    /// Answers after a timeout with nothing new.
    answered_empty: AtomicU64,
    /// Requests refused with 503 because too many were parked.
    refused: AtomicU64,
}

/// A parked request's place. It is given back when the answer goes out or
/// when the client hangs up: hyper then drops the request's future, and
/// this with it.
struct Parked<'a>(&'a Stats);

impl Stats {
    /// Takes a place among the parked requests, if one is free.
    fn park(&self, max: usize) -> Option<Parked<'_>> {
        let taken = self
            .parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |parked| {
                (parked < max).then_some(parked + 1)
            });
        // `map`, not `then_some`: a `Parked` made for a refused place would
        // be dropped at once, and give back a place it never took.
        taken.ok().map(|_| Parked(self))
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves this step on `listener` until `shutdown` fires.
pub async fn run(
    listener: TcpListener,
    feed: Feed,
    options: Options,
    shutdown: Shutdown,
) -> io::Result<()> {
    let stats = Arc::default();
    let app = App {
        feed,
        options,
        stats,
        shutdown: shutdown.clone(),
    };
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
        (&Method::GET, "/news") => {
            // Copy what the answer needs and let the request go: parked for
            // 25 s, it would hold on to the connection's 8 KiB read buffer
            // (its URI and headers point into it), and hyper would allocate
            // another one for the next request.
            let query = request.uri().query().map(str::to_owned);
            let mut headers = HeaderMap::new();
            if let Some(tag) = request.headers().get(header::IF_NONE_MATCH) {
                let tag = HeaderValue::from_bytes(tag.as_bytes()).expect("it was valid already");
                headers.insert(header::IF_NONE_MATCH, tag);
            }
            drop(request);
            news_since(&app, query.as_deref(), &headers).await
        }
        (&Method::GET, "/stats") => http::json(StatusCode::OK, &*app.stats),
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
    /// How long the server holds a question.
    timeout_s: u64,
    /// How many requests are parked as the page is rendered.
    parked: usize,
}

/// `GET /`: the whole page, built from scratch on every request.
fn index(app: &App, layout: Layout, query: Option<&str>) -> Response {
    match Listing::from_query(&app.feed, query) {
        Ok(listing) => {
            let index = Index {
                layout,
                listing,
                form: PostForm::default(),
                timeout_s: DEFAULT_TIMEOUT_S,
                parked: app.stats.parked.load(Ordering::Relaxed),
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
                timeout_s: DEFAULT_TIMEOUT_S,
                parked: app.stats.parked.load(Ordering::Relaxed),
            };
            page::render(StatusCode::UNPROCESSABLE_ENTITY, &index)
        }
    }
}

/// `GET /news?since=ID&timeout=S`: what came after the client's cursor, as
/// JSON, as soon as there is something (or when the timeout passes).
async fn news_since(app: &App, query: Option<&str>, headers: &HeaderMap) -> Response {
    let asked = Fields::query(query)
        .and_then(|query| Ok((query.number("since")?, query.number("timeout")?)));
    let (since, timeout) = match asked {
        Ok((since, timeout)) => (since, timeout.unwrap_or(DEFAULT_TIMEOUT_S)),
        Err(message) => return http::json_error(StatusCode::BAD_REQUEST, &message),
    };
    if !TIMEOUT_RANGE.contains(&timeout) {
        let message = "“timeout” must be between 1 and 55 seconds.";
        return http::json_error(StatusCode::BAD_REQUEST, message);
    }
    let mut batch = app.feed.answer(since);
    if since.is_some() && batch.items.is_empty() && !batch.reset {
        // Nothing new yet: instead of answering "nothing", park the request
        // until the feed moves past the client's cursor, the timeout passes,
        // or the server stops. The connection stays open all that time; the
        // server holds a small future, not a thread.
        let Some(_parked) = app.stats.park(app.options.max_parked) else {
            app.stats.refused.fetch_add(1, Ordering::Relaxed);
            let message = "Too many clients are waiting for news; try again shortly.";
            let response = http::json_error(StatusCode::SERVICE_UNAVAILABLE, message);
            return http::with_header(response, header::RETRY_AFTER, "5");
        };
        tokio::select! {
            () = app.feed.wait_after(batch.cursor) => {}
            () = tokio::time::sleep(Duration::from_secs(timeout)) => {}
            () = app.shutdown.wait() => {}
        }
        batch = app.feed.answer(since);
    }
    let counter = if batch.items.is_empty() {
        &app.stats.answered_empty
    } else {
        &app.stats.answered_with_news
    };
    counter.fetch_add(1, Ordering::Relaxed);
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
