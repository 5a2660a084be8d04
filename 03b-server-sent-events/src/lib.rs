//! # Step 03b · Server-sent events: the long poll that never ends
//!
//! Long polling (step 03) gets news to the page at once, but each answer
//! carries one batch and then ends, and the page must ask again: a whole
//! request and answer per item and per client. Server-sent events (HTML5's
//! `EventSource`, in every browser since about 2010) change one thing: the
//! answer does not end. `GET /events` sends the status and headers, then
//! keeps writing into the body, one *event* per item, for as long as the
//! page stays open; when it breaks off, the browser reconnects by itself and
//! says with `Last-Event-ID` where it stopped. Posting stays as in step 03.
//!
//! Run it with `cargo run -p server-sent-events`, open two tabs at
//! http://127.0.0.1:3013/, and watch `/events` never complete in DevTools.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use askama::Template;
use bytes::Bytes;
use hyper::Method;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header;
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
use shared::page;
use shared::page::Layout;
use shared::page::Listing;
use shared::page::PostForm;
use shared::posting;
use shared::steps::STEPS;
use shared::steps::Step;
use shared::stream;
use shared::stream::Place;
use shared::stream::Stopped;
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

/// How long the browser waits before it reconnects when the answer ends, in
/// milliseconds: the stream's first line. Without it, browsers wait ~3 s.
pub const RETRY_MS: u64 = 2_000;

/// How often a quiet stream sends a comment: proxies, load balancers and
/// mobile networks cut connections silent for too long (often 30 or 60 s).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long one write may wait for a client that stopped reading: past it,
/// it is cut off, so that it holds bounded memory and never slows the others.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How many streams may be open at once unless `--max-streams` says so.
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
    events: stream::OncePerItem,
    /// Streams end when the server stops.
    shutdown: Shutdown,
}

/// What `GET /stats` reports.
#[derive(Debug, Default, Serialize)]
struct Stats {
    /// Event streams open right now.
    streams: stream::Places,
    /// Events sent (news and resets), over all streams.
    events: AtomicU64,
    /// Keep-alive comments sent, over all streams.
    keep_alives: AtomicU64,
    /// Requests refused with 503 because too many streams were open.
    refused: AtomicU64,
    /// Streams cut off because their client stopped reading.
    cut_off: AtomicU64,
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
        events: stream::OncePerItem::default(),
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
                streams: app.stats.streams.count(),
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
                streams: app.stats.streams.count(),
            };
            page::render(StatusCode::UNPROCESSABLE_ENTITY, &index)
        }
    }
}

/// `GET /events?since=ID`: an answer that never ends, with an event in it
/// for every item after the client's cursor, as soon as there is one.
fn events(app: &App, request: &Request<Incoming>) -> Response {
    // A browser that reconnects asks for the same address again, with the
    // `?since=` the page opened it with, and says in `Last-Event-ID` which
    // event it got last: that is newer, so it wins.
    let asked = match stream::last_event_id(request.headers()) {
        Ok(None) => Fields::query(request.uri().query()).and_then(|query| query.number("since")),
        last_event_id => last_event_id,
    };
    let since = match asked {
        Ok(since) => since,
        Err(message) => return http::json_error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(place) = app.stats.streams.take(app.options.max_streams) else {
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
    let (response, stream) = stream::streaming(request, "text/event-stream", SEND_TIMEOUT);
    tokio::spawn(write_events(app.clone(), batch, news, stream, place).in_current_span());
    response
}

/// Writes one client's stream until the client leaves, stops reading, or
/// the server stops, and gives its place back then.
async fn write_events(app: App, batch: Batch, mut news: Subscription, stream: Stream, _: Place) {
    let writing = || follow(&app, batch, &mut news, &stream);
    if stream.serve(writing, &app.shutdown).await == stream::Ended::CutOff {
        app.stats.cut_off.fetch_add(1, Ordering::Relaxed);
    }
}

/// The stream itself: `retry:` and what the client missed, then an event
/// for every new item and a comment whenever the stream was quiet for
/// [`KEEP_ALIVE`]. Returns only when the stream cannot go on.
async fn follow(app: &App, batch: Batch, news: &mut Subscription, stream: &Stream) -> Stopped {
    // `retry:` first, then what the client missed: one write for all of it.
    let missed = match batch.reset {
        true => vec![Pushed::Reset(batch)],
        false => batch.items.into_iter().map(Pushed::Item).collect(),
    };
    let mut missed = missed.into_iter().map(|pushed| event(app, pushed));
    let retry = format!("retry: {RETRY_MS}\n\n").into();
    let (mut chunk, blocks) = stream::gather(retry, move || missed.next());
    app.stats.events.fetch_add(blocks - 1, Ordering::Relaxed);
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    loop {
        if let Err(stopped) = stream.send(chunk).await {
            return stopped;
        }
        chunk = tokio::select! {
            pushed = news.next() => {
                keep_alive.reset();
                // Whatever waits behind this item goes in the same chunk.
                let waiting = || news.try_next().map(|pushed| event(app, pushed));
                let (chunk, events) = stream::gather(event(app, pushed), waiting);
                app.stats.events.fetch_add(events, Ordering::Relaxed);
                chunk
            }
            _ = keep_alive.tick() => {
                app.stats.keep_alives.fetch_add(1, Ordering::Relaxed);
                // A line that starts with a colon is a comment: EventSource
                // reads it and throws it away.
                Bytes::from_static(b": keep-alive\n\n")
            }
        };
    }
}

/// What the feed pushed, as one event: `id:` lets the browser say where it
/// stopped, `event:` names the listener it goes to, `data:` carries the
/// item (or the latest items and the cursor, for a reset), and a blank line
/// ends the event. JSON escapes line breaks inside strings, so the data is
/// always one `data:` line (a raw line break would end the field).
fn event(app: &App, pushed: Pushed) -> Bytes {
    match pushed {
        Pushed::Item(item) => app.events.get(item.id, || {
            let json = serde_json::to_string(&item).expect("an item is text and numbers");
            format!("id: {}\nevent: news\ndata: {json}\n\n", item.id).into()
        }),
        Pushed::Reset(batch) => {
            let json = serde_json::to_string(&batch).expect("a batch is items and numbers");
            format!("id: {}\nevent: reset\ndata: {json}\n\n", batch.cursor).into()
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
