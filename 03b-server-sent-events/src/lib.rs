//! # Step 03b · Server-sent events: the long poll that never ends
//!
//! Long polling (step 03) gets news to the page at once, but each answer
//! carries one batch and then ends, and the page must ask again: a whole
//! request and answer, headers and all, per item and per client. Server-sent
//! events (the `EventSource` of HTML5, in every browser since about 2010)
//! change one thing: the answer does not end. The server sends the status
//! and headers, then keeps writing into the body, one *event* per item, for
//! as long as the page stays open. It is still plain HTTP, one way: the page
//! posts with an ordinary request, as in step 03.
//!
//! The API is step 03's, with one endpoint in place of the long poll:
//!
//! - `GET /events?since=ID` answers `200` with `Content-Type:
//!   text/event-stream` and never finishes. It starts with `retry: 2000`
//!   (how long the browser waits before reconnecting), then one event per
//!   item after `ID`, then one per new item the moment it exists:
//!
//!   ```text
//!   id: 42
//!   event: news
//!   data: {"id":42,"title":"...","body":"...","posted_at":"..."}
//!
//!   ```
//!
//!   A cursor the feed cannot vouch for gets `event: reset` with the latest
//!   items instead (`{"items":[...],"cursor":N,"reset":true}`, as step 03
//!   answers). After 15 s without news, a comment line (`: keep-alive`)
//!   tells proxies and the browser that the connection is alive.
//! - When the answer breaks off, the browser reconnects by itself to the
//!   same address and sends `Last-Event-ID`, the `id:` of the last event it
//!   got; the server resumes after it. That header wins over `?since=`,
//!   which only said where the first connection started.
//! - At most `--max-streams` streams (10,000 by default) are open at once;
//!   past that the answer is `503 Service Unavailable` with `Retry-After`.
//!   A client that stops reading is cut off after 10 s, and when the server
//!   stops, every stream ends.
//! - `GET /stats` tells how many streams are open and what they carried.
//!
//! Run it with `cargo run -p server-sent-events`, open
//! http://127.0.0.1:3013/ in two tabs, and watch the Network tab: one
//! `/events` request per tab that never completes, and its EventStream view
//! listing each event as it arrives. The server's terminal logs each stream
//! when it opens and when it ends.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use askama::Template;
use bytes::Bytes;
use hyper::HeaderMap;
use hyper::Method;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
use hyper::header::HeaderName;
use serde::Serialize;
use shared::Feed;
use shared::Shutdown;
use shared::assets;
use shared::feed::Batch;
use shared::feed::Pushed;
use shared::feed::Subscription;
use shared::form::Fields;
use shared::http;
use shared::http::Response;
use shared::news;
use shared::news::NewsItem;
use shared::page;
use shared::page::Layout;
use shared::page::Listing;
use shared::page::PostForm;
use shared::posting;
use shared::push::EncodeOnce;
use shared::steps::STEPS;
use shared::steps::Step;
use shared::stream;
use shared::stream::Stream;
use tokio::net::TcpListener;
use tracing::Instrument;

/// This step: its number, name and port, for the page and the launcher.
pub const STEP: &Step = &STEPS[3];

/// The largest request body we read: room for the largest valid post,
/// however the form or the script encodes it (26 KiB, see
/// `news::MAX_POST_BYTES`); anything bigger is refused before it fills our
/// memory.
const BODY_LIMIT: usize = news::MAX_POST_BYTES;

/// What the page's script sends when it posts.
const JSON: &str = "application/json";

/// How long the browser waits before it reconnects, in milliseconds: the
/// stream's first line, `retry: 2000`. Without it, browsers wait about 3 s.
pub const RETRY_MS: u64 = 2_000;

/// How often a stream with nothing to say sends a comment. Proxies, load
/// balancers and mobile networks cut connections that stay silent too long
/// (often after 30 or 60 s); a comment every 15 s keeps this one busy.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long one write may wait for a client that does not read before the
/// server gives up on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How many streams may be open at once unless `--max-streams` says
/// otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 10_000;

/// What a workshop leader can tune in this step.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How many event streams may be open at once; past that, 503.
    #[arg(long, default_value_t = DEFAULT_MAX_STREAMS)]
    pub max_streams: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// What every request handler can reach.
#[derive(Clone)]
struct App {
    /// The news. Shared with every other step when run from the launcher.
    feed: Feed,
    options: Options,
    /// The streams open right now, and what they carried.
    stats: Arc<Stats>,
    /// Every `news` event, encoded once for all streams.
    events: Arc<EncodeOnce<u64, Bytes>>,
    /// Streams end when the server stops.
    shutdown: Shutdown,
}

/// What `GET /stats` reports.
#[derive(Debug, Default, Serialize)]
struct Stats {
    /// Event streams open right now.
    streams: AtomicUsize,
    /// Events sent (news and resets), over all streams.
    events: AtomicU64,
    /// Keep-alive comments sent, over all streams.
    keep_alives: AtomicU64,
    /// Requests refused with 503 because too many streams were open.
    refused: AtomicU64,
    /// Streams cut off because their client stopped reading.
    cut_off: AtomicU64,
}

/// An open stream's place. It is given back when the stream ends, however
/// it ends: the task that writes the stream holds it.
struct Open(Arc<Stats>);

impl Stats {
    /// Takes a place among the open streams, if one is free.
    fn open(self: &Arc<Self>, max: usize) -> Option<Open> {
        let taken = self
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |streams| {
                (streams < max).then_some(streams + 1)
            });
        // `map`, not `then_some`: an `Open` made for a refused place would
        // be dropped at once, and give back a place it never took.
        taken.ok().map(|_| Open(self.clone()))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
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
        // As many events as a stream may be behind the newest item: in a
        // burst, the slowest stream still finds every event encoded.
        events: Arc::new(EncodeOnce::new(shared::feed::PUSH_BUFFER)),
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
        (&Method::GET, "/events") => events(&app, &request),
        (&Method::GET, "/stats") => http::json(StatusCode::OK, &*app.stats),
        (&Method::POST, "/news") if http::has_content_type(request.headers(), JSON) => {
            post_json(&app, request).await
        }
        (&Method::POST, "/news") => post_news(&app, layout, request).await,
        (_, "/") => page::method_not_allowed(layout, "GET"),
        (_, "/events") => page::method_not_allowed(layout, "GET"),
        (_, "/news") => page::method_not_allowed(layout, "POST"),
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
    /// How often a quiet stream says it is alive.
    keep_alive_s: u64,
    /// How many streams are open as the page is rendered.
    streams: usize,
}

/// `GET /`: the whole page, built from scratch on every request.
fn index(app: &App, layout: Layout, query: Option<&str>) -> Response {
    match Listing::from_query(&app.feed, query) {
        Ok(listing) => {
            let index = Index {
                layout,
                listing,
                form: PostForm::default(),
                keep_alive_s: KEEP_ALIVE.as_secs(),
                streams: app.stats.streams.load(Ordering::Relaxed),
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
                keep_alive_s: KEEP_ALIVE.as_secs(),
                streams: app.stats.streams.load(Ordering::Relaxed),
            };
            page::render(StatusCode::UNPROCESSABLE_ENTITY, &index)
        }
    }
}

/// `GET /events?since=ID`: an answer that never ends, with an event in it
/// for every item after the client's cursor, as soon as there is one.
fn events(app: &App, request: &Request<Incoming>) -> Response {
    let asked = Fields::query(request.uri().query()).and_then(|query| query.number("since"));
    let since = match (last_event_id(request.headers()), asked) {
        // A browser that reconnects asks for the same address again, with
        // the `?since=` the page opened it with, and says in `Last-Event-ID`
        // which event it got last: that is newer, so it wins.
        (Ok(Some(id)), _) => Some(id),
        (Ok(None), Ok(since)) => since,
        (Err(message), _) | (_, Err(message)) => {
            return http::json_error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let Some(open) = app.stats.open(app.options.max_streams) else {
        app.stats.refused.fetch_add(1, Ordering::Relaxed);
        // For EventSource, any answer but a `200` event stream is final:
        // it gives up for good, and the page decides when to try again.
        let message = "Too many clients are following the news; try again shortly.";
        let response = http::json_error(StatusCode::SERVICE_UNAVAILABLE, message);
        return http::with_header(response, header::RETRY_AFTER, "5");
    };
    // Subscribed before the answer goes out: what came before is in the
    // batch, and everything posted from now on reaches this stream.
    let (batch, news) = app.feed.subscribe(since);
    let (response, stream) = stream::streaming(request.extensions(), "text/event-stream");
    let writer = write_events(app.clone(), batch, news, stream, open);
    tokio::spawn(writer.in_current_span());
    // `no-store`: an event stream is not a document to keep, and nothing on
    // the way (the browser, a proxy) should hold on to it. The answer is
    // never compressed either: a compressor holds bytes back until it has
    // enough to squeeze, and an event would wait for the next ones.
    let response = http::with_header(response, header::CACHE_CONTROL, "no-store");
    // nginx, the most common reverse proxy, collects an answer before
    // passing it on; this header asks it to pass each event on at once.
    http::with_header(response, HeaderName::from_static("x-accel-buffering"), "no")
}

/// The `Last-Event-ID` a reconnecting browser sends: the `id:` of the last
/// event it got, which here is always an item id (or a reset's cursor).
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let Some(id) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(id.as_bytes());
    if id.is_empty() {
        return Ok(None);
    }
    id.parse().map(Some).map_err(|_| {
        format!("\u{201c}Last-Event-ID\u{201d} must be an id this server sent, not \u{201c}{id}\u{201d}.")
    })
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client closed the connection (the tab went away).
    Left,
    /// The client stopped reading; the server hung up.
    TooSlow,
    /// The server is stopping.
    Shutdown,
}

/// Writes one client's stream until the client leaves, stops reading, or
/// the server stops: when the answer ends, the browser reconnects by itself
/// `retry:` milliseconds later, to whichever server answers then.
async fn write_events(app: App, batch: Batch, mut news: Subscription, stream: Stream, _open: Open) {
    let started = Instant::now();
    let ending = tokio::select! {
        ending = follow(&app, batch, &mut news, &stream) => ending,
        () = stream.closed() => Ending::Left,
        () = app.shutdown.wait() => Ending::Shutdown,
    };
    let why = match ending {
        Ending::Left => "the client left",
        Ending::Shutdown => "the server is stopping",
        Ending::TooSlow => {
            app.stats.cut_off.fetch_add(1, Ordering::Relaxed);
            stream.hang_up();
            "the client stopped reading; cut off"
        }
    };
    let held = started.elapsed().as_secs_f64();
    tracing::info!("an event stream ended after {held:.1} s: {why}");
}

/// The stream itself: `retry:` and what the client missed, then an event
/// for every new item and a comment whenever the stream was quiet for
/// [`KEEP_ALIVE`]. Returns only when the stream cannot go on.
async fn follow(app: &App, batch: Batch, news: &mut Subscription, stream: &Stream) -> Ending {
    let missed = if batch.reset {
        vec![reset_event(&batch)]
    } else {
        batch
            .items
            .iter()
            .map(|item| news_event(app, item))
            .collect()
    };
    // The items are in their events now: the stream need not keep them.
    drop(batch);
    app.stats
        .events
        .fetch_add(missed.len() as u64, Ordering::Relaxed);
    // One write for all of it, rather than one per event.
    let mut opening = format!("retry: {RETRY_MS}\n\n").into_bytes();
    for event in missed {
        opening.extend_from_slice(&event);
    }
    if let Err(ending) = in_time(stream, opening.into()).await {
        return ending;
    }

    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        let chunk = tokio::select! {
            pushed = news.next() => {
                keep_alive.reset();
                burst(app, pushed, news)
            }
            _ = keep_alive.tick() => {
                app.stats.keep_alives.fetch_add(1, Ordering::Relaxed);
                // A line that starts with a colon is a comment: EventSource
                // reads it and throws it away.
                Bytes::from_static(b": keep-alive\n\n")
            }
        };
        if let Err(ending) = in_time(stream, chunk).await {
            return ending;
        }
    }
}

/// The event for what was pushed, and for whatever else is already waiting
/// behind it, as one chunk: a burst of 200 posts becomes a few writes
/// instead of 200 (the bench's burst; see the README). A lone event goes
/// out as the bytes every stream shares.
fn burst(app: &App, pushed: Pushed, news: &mut Subscription) -> Bytes {
    let event = |pushed: Pushed| match pushed {
        Pushed::Item(item) => news_event(app, &item),
        Pushed::Reset(batch) => reset_event(&batch),
    };
    let first = event(pushed);
    let mut events = 1;
    let chunk = match news.try_next() {
        None => first,
        Some(second) => {
            let mut chunk = first.to_vec();
            let mut next = Some(second);
            while let Some(pushed) = next {
                chunk.extend_from_slice(&event(pushed));
                events += 1;
                next = news.try_next();
            }
            chunk.into()
        }
    };
    app.stats.events.fetch_add(events, Ordering::Relaxed);
    chunk
}

/// One item as one event: `id:` lets the browser say where it stopped,
/// `event:` names the listener it goes to, `data:` carries the item, and a
/// blank line ends the event. JSON escapes every line break inside a
/// string, so the item is always one `data:` line (a raw line break would
/// end the field, and a blank line the event). Encoded once for every
/// stream.
fn news_event(app: &App, item: &NewsItem) -> Bytes {
    app.events.get(item.id, || {
        let json = serde_json::to_string(item).expect("an item is text and numbers");
        format!("id: {}\nevent: news\ndata: {json}\n\n", item.id).into()
    })
}

/// A reset as one event: the latest items, to show instead of what the
/// client has, and the cursor to resume from as its `id:`.
fn reset_event(batch: &Batch) -> Bytes {
    let json = serde_json::to_string(batch).expect("a batch is items and numbers");
    format!("id: {}\nevent: reset\ndata: {json}\n\n", batch.cursor).into()
}

/// Gives a write to the client [`SEND_TIMEOUT`]. A client that stops
/// reading fills its TCP window, then our buffers; past the limit it is cut
/// off, so it holds a bounded amount of memory and never slows the others.
async fn in_time(stream: &Stream, chunk: Bytes) -> Result<(), Ending> {
    match tokio::time::timeout(SEND_TIMEOUT, stream.send(chunk)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(stream::Gone)) => Err(Ending::Left),
        Err(_) => Err(Ending::TooSlow),
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
