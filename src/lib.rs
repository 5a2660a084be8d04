//! The workshop launcher: every step in one process, each on its own port,
//! all serving one shared feed, and an index page that shows them side by
//! side. Post once and watch each era find out in its own way.
//!
//! - [`without_redis`] drops step 06 when no Redis answers: it keeps its
//!   rooms there, and everything else runs without one.
//! - [`bind`] takes the ports: BASE for the index, BASE + NN for step NN
//!   (and BASE + 13 for step 03b, see `Step::offset`).
//! - [`serve`] runs the index and the steps until the shutdown signal, and
//!   stops them all together (one failing stops the others).
//!
//! - [`check`] is `cargo run -- check NAME`: whether an exercise is done.
//!
//! `src/main.rs` reads the flags and calls both; the tests bind port 0 for
//! each and call [`serve`] directly.

pub mod check;

use std::io;
use std::net::SocketAddr;

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
use shared::posting;
use shared::steps::STEPS;
use shared::steps::Step;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::Instrument;
use tracing::info_span;

/// The listeners of a launcher: the index page and each step it runs.
pub struct Listeners {
    pub index: TcpListener,
    pub steps: Vec<(&'static Step, TcpListener)>,
}

/// The steps whose numbers are listed (`["01", "03"]`), or every step.
pub fn select(numbers: &[String]) -> Result<Vec<&'static Step>, String> {
    if numbers.is_empty() {
        return Ok(STEPS.iter().collect());
    }
    numbers
        .iter()
        .map(|number| {
            STEPS
                .iter()
                .find(|step| step.number.trim_start_matches('0') == number.trim_start_matches('0'))
                .ok_or_else(|| {
                    let numbers: Vec<&str> = STEPS
                        .iter()
                        .map(|step| step.number.trim_start_matches('0'))
                        .collect();
                    format!(
                        "there is no step {number}; the steps are {}",
                        numbers.join(", ")
                    )
                })
        })
        .collect()
}

/// Step 06 needs a Redis server, at its default address
/// (`redis://127.0.0.1:6379`). When `steps` include it and no Redis answers
/// there, returns the steps without it, and why in one line.
pub async fn without_redis(steps: Vec<&'static Step>) -> (Vec<&'static Step>, Option<String>) {
    if !steps.iter().any(|step| step.number == "06") {
        return (steps, None);
    }
    match redis_rooms::redis_answers(redis_rooms::DEFAULT_REDIS).await {
        Ok(()) => (steps, None),
        Err(why) => {
            let steps = steps
                .into_iter()
                .filter(|step| step.number != "06")
                .collect();
            (
                steps,
                Some(format!("06 Redis skipped: {why} to run it too")),
            )
        }
    }
}

/// Binds the index on `base_port` and each step as far above it as its
/// own port is above 3000: step NN on `base_port + NN`, 03b on
/// `base_port + 13`.
pub async fn bind(host: &str, base_port: u16, steps: &[&'static Step]) -> io::Result<Listeners> {
    let index = TcpListener::bind((host, base_port)).await.map_err(|error| {
        let hint = if error.kind() == io::ErrorKind::AddrInUse {
            format!("port {base_port} is already in use (another launcher?); stop it or choose other ports with --base-port")
        } else {
            format!("cannot listen on {host}:{base_port}")
        };
        io::Error::new(error.kind(), format!("the workshop index: {hint}: {error}"))
    })?;
    let mut bound = Vec::new();
    for &step in steps {
        let port = base_port.saturating_add(step.offset());
        let listener = shared::cli::bind(host, port, step, "--base-port").await?;
        bound.push((step, listener));
    }
    Ok(Listeners {
        index,
        steps: bound,
    })
}

/// Runs the index and every step on `feed` until `shutdown` fires or one
/// of them fails; then stops all of them and waits for each to end.
pub async fn serve(listeners: Listeners, feed: Feed, shutdown: Shutdown) -> io::Result<()> {
    let mut panes = Vec::new();
    let mut tasks = JoinSet::new();
    for (step, listener) in listeners.steps {
        let port = listener.local_addr()?.port();
        panes.push(Pane { step, port });
        let (feed, stop) = (feed.clone(), shutdown.clone());
        // Each step runs in a span named after it, so that every line it
        // logs starts with its number: `03: GET /news?since=41 200 OK`.
        match step.number {
            "01" => tasks.spawn(form_post::run(listener, feed, stop).instrument(info_span!("01"))),
            "02" => tasks.spawn(
                xhr_polling::run(listener, feed, Default::default(), stop)
                    .instrument(info_span!("02")),
            ),
            "03" => tasks.spawn(
                long_polling::run(listener, feed, Default::default(), stop)
                    .instrument(info_span!("03")),
            ),
            "03b" => tasks.spawn(
                server_sent_events::run(listener, feed, Default::default(), stop)
                    .instrument(info_span!("03b")),
            ),
            "04" => tasks.spawn(
                websocket::run(listener, feed, Default::default(), stop)
                    .instrument(info_span!("04")),
            ),
            "05" => tasks.spawn(
                rooms::run(listener, feed, Default::default(), stop).instrument(info_span!("05")),
            ),
            // 06 keeps its rooms in Redis, shared with its other servers
            // rather than with the other steps: it takes only the feed's size.
            "06" => tasks.spawn(
                redis_rooms::run(listener, feed, Default::default(), stop)
                    .instrument(info_span!("06")),
            ),
            other => unreachable!("step {other} is not known to the launcher"),
        };
    }
    let index = Index { panes, feed };
    let addr: SocketAddr = listeners.index.local_addr()?;
    tracing::info!("the workshop index listening on http://{addr}/");
    tasks.spawn(
        http::serve(listeners.index, shutdown.clone(), move |request| {
            route(index.clone(), request)
        })
        .instrument(info_span!("index")),
    );

    let mut result = Ok(());
    while let Some(ended) = tasks.join_next().await {
        match ended {
            Ok(Ok(())) => {}
            Ok(Err(error)) => result = Err(error),
            Err(panic) => result = Err(io::Error::other(panic)),
        }
        // One step ending (a failure, or the shutdown) ends them all.
        shutdown.trigger();
    }
    result
}

/// One era on the index page.
#[derive(Clone, Debug)]
struct Pane {
    step: &'static Step,
    port: u16,
}

impl Pane {
    /// What this era does, and what it costs, in one line.
    fn cost(&self) -> &'static str {
        match self.step.number {
            "01" => "Shows news when you reload. Costs a whole page per look.",
            "02" => "Asks every 2 s. Costs a request per client per interval, news or not.",
            "03" => {
                "The server holds the question. Costs a request per item per client, and an open connection."
            }
            "03b" => {
                "The answer never ends. Costs an open connection per client; an item is one event in it."
            }
            "04" => {
                "The server pushes frames. Costs an open socket per client; an item is a small frame."
            }
            "05" => {
                "Rooms on one socket. Costs the same as 04, plus the bookkeeping a library would do."
            }
            "06" => {
                "05's rooms on any number of servers, through Redis (its feed is there: post in its pane). Costs a Redis round trip per post."
            }
            _ => "",
        }
    }
}

/// What the index's handlers can reach.
#[derive(Clone)]
struct Index {
    panes: Vec<Pane>,
    feed: Feed,
}

/// The index page: a pane per era, and one post box.
#[derive(Template)]
#[template(path = "launcher.html")]
struct IndexPage<'a> {
    panes: &'a [Pane],
    /// The host name the browser used, so that the panes point at the
    /// same machine.
    host: String,
}

/// The talk at `/talk`: the story of the workshop in about fifteen slides,
/// the slides about an era showing that era's live page.
#[derive(Template)]
#[template(path = "talk.html")]
struct TalkPage<'a> {
    panes: &'a [Pane],
    /// As on the index: the panes point at the machine the browser used.
    host: String,
    /// Step 06 runs (a Redis answered): its slide can show it.
    runs_redis: bool,
}

async fn route(index: Index, request: Request<Incoming>) -> Response {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => {
            let layout = shared::page::Layout::new(&STEPS[0], request.headers());
            let page = IndexPage {
                panes: &index.panes,
                host: layout.host,
            };
            shared::page::render(StatusCode::OK, &page)
        }
        (&Method::GET, "/talk") => {
            let layout = shared::page::Layout::new(&STEPS[0], request.headers());
            let page = TalkPage {
                panes: &index.panes,
                host: layout.host,
                runs_redis: index.panes.iter().any(|pane| pane.step.number == "06"),
            };
            shared::page::render(StatusCode::OK, &page)
        }
        (&Method::POST, "/news") => post(&index.feed, request).await,
        (&Method::GET, path) => match assets::get(path, request.headers()) {
            Some(asset) => asset,
            None => http::json_error(
                StatusCode::NOT_FOUND,
                "There is nothing here but the index at / and the talk at /talk.",
            ),
        },
        _ => http::json_error(
            StatusCode::NOT_FOUND,
            "There is nothing here but the index at / and the talk at /talk.",
        ),
    }
}

/// `POST /news` with JSON from the index page's post box: into the shared
/// feed, the same checks as every step.
async fn post(feed: &Feed, request: Request<Incoming>) -> Response {
    if !http::has_content_type(request.headers(), "application/json") {
        return http::json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Send the post as JSON.");
    }
    match posting::read_json(request, news::MAX_POST_BYTES).await {
        Ok(post) => http::json(StatusCode::CREATED, &feed.post(post)),
        Err(refusal) => refusal,
    }
}
