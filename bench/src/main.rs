//! # The bench: what each era costs
//!
//! A workshop about transports needs numbers about the transports. This
//! program starts a step as a process of its own on 127.0.0.1, opens many
//! simulated pages against it that speak exactly what the step's page
//! speaks, posts news the way a page posts it, and reports what it saw.
//!
//! ```sh
//! cargo run --release -p bench -- eras       # the cost of one update, era by era
//! cargo run --release -p bench -- capacity   # how far one server goes
//! cargo run --release -p bench -- reset      # pages that fall behind get a reset
//! cargo run --release -p bench -- floor      # what the kernel alone takes per delivery
//! cargo run --release -p bench -- smoke      # all four, tiny (what CI runs)
//! ```
//!
//! What is measured, and where:
//!
//! - **Latency**: from the moment a `POST /news` starts to go out to the
//!   moment a page has parsed the item. Every delivery (one item on one
//!   page) is a sample; tables give the median (p50), the 99th percentile
//!   and the maximum.
//! - **Requests and bytes**: counted at each page's socket, both directions,
//!   HTTP headers and WebSocket framing included, as the browser's Network
//!   tab would show them.
//! - **Server CPU and memory**: from `/proc/PID/stat` (user + system time)
//!   and `/proc/PID/status` (`VmRSS` now, `VmHWM` at its peak) of the step's
//!   process, which runs nothing but the step.
//! - **Exactly once, in order**: every page records the ids it got; at the
//!   end they must equal the ids posted. A loss, a duplicate, a reordering,
//!   a reset or a broken connection fails the run with a message that says
//!   which page saw what. In `reset`, where pages fall behind on purpose, a
//!   reset is allowed and checked instead: after it, nothing missing and
//!   nothing doubled.
//!
//! Every wait has a deadline and every run a fixed number of pages and
//! posts, so a run always ends by itself. The bench raises its own
//! open-file limit (each page is a socket) and the server inherits it;
//! `capacity --sizes max` runs as many pages as that limit allows. The
//! pages connect from 127.0.0.2 onwards, 5,000 from each address, so that
//! ephemeral ports cannot run out however many runs come in a row.
//!
//! The modules: [`server`] starts the step and reads `/proc`; [`wire`]
//! counts bytes and speaks HTTP/1.1; [`socket`] speaks WebSocket;
//! [`events`] reads an event stream;
//! [`clients`] holds one function per era's page; [`swarm`] opens the
//! pages, posts, and checks what they got;
//! [`eras`], [`capacity`] and [`reset`] are the scenarios (with
//! [`isolation`], step 05's rooms kept apart, inside `capacity`); [`report`] prints the
//! tables and draws the charts (`target/bench/*.svg`). [`floor`] measures
//! what the kernel alone takes for one delivery, under every era's figure.
//!
//! Server and pages share one machine, so a heavy run measures both. The
//! pages are kept lean: they parse each item's JSON and record its id, and
//! speak HTTP/1.1 and WebSocket with a few functions of their own ([`wire`],
//! [`socket`]) rather than hyper's client and tungstenite, which took the
//! pages more CPU than the server spent. On a 2-core machine they still
//! take a good part of it (the `Pages' CPU` column).

mod capacity;
mod clients;
mod eras;
mod events;
mod floor;
mod isolation;
mod report;
mod reset;
mod server;
mod socket;
mod swarm;
mod wire;

use std::future::Future;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::Subcommand;
use shared::Feed;
use shared::Shutdown;
use shared::steps::Step;
use tokio::net::TcpListener;

use crate::clients::Era;

/// What each era of the real-time web costs, measured.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The cost of one update: latency, requests, bytes, server CPU and
    /// memory, era by era.
    Eras(eras::Options),
    /// How far one server goes: memory per idle page, fan-out latency,
    /// burst throughput.
    Capacity(capacity::Options),
    /// Pages that fall behind a burst larger than the push buffer and the
    /// history: each gets a reset, never a silent gap.
    Reset(reset::Options),
    /// The kernel's own cost of one delivery on this machine: a bare send
    /// per connection, with no server around it.
    Floor(floor::Options),
    /// All four scenarios, tiny (a few pages, a few seconds), as CI runs
    /// them.
    Smoke,
    // The step under test: the bench starts itself again with one of these,
    // in a child process of its own (see `server.rs`).
    #[command(name = "serve-02", hide = true)]
    Serve02(Serve<xhr_polling::Options>),
    #[command(name = "serve-03", hide = true)]
    Serve03(Serve<long_polling::Options>),
    #[command(name = "serve-03b", hide = true)]
    Serve03b(Serve<server_sent_events::Options>),
    #[command(name = "serve-04", hide = true)]
    Serve04(Serve<websocket::Options>),
    #[command(name = "serve-05", hide = true)]
    Serve05(Serve<rooms::Options>),
    #[command(name = "serve-06", hide = true)]
    Serve06(Serve<redis_rooms::Options>),
}

/// A step's own flags, exactly as its binary takes them.
#[derive(clap::Args)]
struct Serve<O: clap::Args> {
    #[command(flatten)]
    server: shared::cli::Server,
    #[command(flatten)]
    options: O,
}

/// No run takes longer than this, whatever its options.
const RUN_LIMIT: Duration = Duration::from_secs(20 * 60);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve02(args) => serve(xhr_polling::STEP, args, xhr_polling::run),
        Command::Serve03(args) => serve(long_polling::STEP, args, long_polling::run),
        Command::Serve03b(args) => serve(server_sent_events::STEP, args, server_sent_events::run),
        Command::Serve04(args) => serve(websocket::STEP, args, websocket::run),
        Command::Serve05(args) => serve(rooms::STEP, args, rooms::run),
        Command::Serve06(args) => serve(redis_rooms::STEP, args, redis_rooms::run),
        Command::Eras(options) => measure(async move {
            let rows = eras::run(&options).await?;
            eras::report(&options, &rows, "eras.svg")
        }),
        Command::Capacity(options) => measure(async move {
            let outcome = capacity::run(&options, server::raise_fd_limit()).await?;
            capacity::report(&options, &outcome, "capacity.svg")
        }),
        Command::Reset(options) => measure(async move {
            let rows = reset::run(&options).await?;
            reset::report(&options, &rows, "reset.svg")
        }),
        Command::Floor(options) => measure(async move {
            let floor = floor::run(&options, server::raise_fd_limit()).await?;
            floor::report(&options, &floor)
        }),
        Command::Smoke => measure(smoke()),
    }
}

/// Runs a scenario and says where its chart went, or why it failed.
fn measure(scenario: impl Future<Output = Result<String, String>>) -> ExitCode {
    let fd_limit = server::raise_fd_limit();
    eprintln!("open-file limit: {fd_limit}; {}", server::pin());
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let outcome = runtime.block_on(async {
        tokio::time::timeout(RUN_LIMIT, scenario)
            .await
            .unwrap_or_else(|_| Err(format!("the run took longer than {RUN_LIMIT:?}")))
    });
    match outcome {
        Ok(chart) => {
            eprintln!("chart: {chart}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Every scenario with a few pages for a few seconds: enough to prove that
/// every era still works under the bench, too small to mean anything.
async fn smoke() -> Result<String, String> {
    let eras = eras::Options {
        clients: 5,
        posts: 5,
        rate: 10.0,
        interval: 200,
        eras: vec![
            Era::XhrPolling,
            Era::LongPolling,
            Era::ServerSentEvents,
            Era::WebSocket,
            Era::Rooms,
        ],
    };
    let rows = eras::run(&eras).await?;
    let eras_chart = eras::report(&eras, &rows, "smoke-eras.svg")?;
    let capacity = capacity::Options {
        sizes: vec![capacity::Size::Pages(20)],
        eras: vec![
            Era::LongPolling,
            Era::ServerSentEvents,
            Era::WebSocket,
            Era::Rooms,
            Era::Redis,
        ],
        singles: 2,
        rate: 20.0,
        seconds: 0.5,
        burst: 20,
        rooms: 4,
        members: 5,
    };
    let outcome = capacity::run(&capacity, server::raise_fd_limit()).await?;
    let capacity_chart = capacity::report(&capacity, &outcome, "smoke-capacity.svg")?;
    // Ten times the history and four times the push buffer, a page in four
    // asleep: resets, in a second or so per era.
    let reset = reset::Options {
        eras: vec![
            Era::LongPolling,
            Era::ServerSentEvents,
            Era::WebSocket,
            Era::Rooms,
        ],
        pages: 20,
        sleepy: 4,
        burst: 1_000,
        history: 100,
    };
    let rows = reset::run(&reset).await?;
    let reset_chart = reset::report(&reset, &rows, "smoke-reset.svg")?;
    let floor = floor::Options {
        pages: 20,
        rate: 20.0,
        seconds: 0.2,
        bytes: 220,
    };
    floor::report(&floor, &floor::run(&floor, server::raise_fd_limit()).await?)?;
    Ok(format!("{eras_chart}, {capacity_chart} and {reset_chart}"))
}

/// The child process: what the step's own `main.rs` does (bind, a fresh
/// feed, `run`), plus telling the parent where it listens.
fn serve<O, F, R>(step: &'static Step, args: Serve<O>, run: F) -> ExitCode
where
    O: clap::Args,
    F: FnOnce(TcpListener, Feed, O, Shutdown) -> R,
    R: Future<Output = io::Result<()>>,
{
    server::pin_server();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    runtime.block_on(async {
        shared::cli::init_logging();
        shared::cli::report(
            async {
                let listener = args.server.bind(step).await?;
                let feed = Feed::new(args.server.history);
                server::announce(listener.local_addr()?);
                run(listener, feed, args.options, Shutdown::on_ctrl_c()).await
            }
            .await,
        )
    })
}
