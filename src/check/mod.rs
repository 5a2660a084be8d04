//! `cargo run -- check NAME`: is my solution to an exercise right?
//!
//! Every exercise of the workshop has a check here. A check starts the
//! participant's own copy of the step (the launcher depends on every step,
//! so `cargo run -- check` first rebuilds it with their edits) in this
//! process, on 127.0.0.1 and a free port, and uses it as a person would:
//! HTTP requests, an event stream, or a real headless Chromium for the
//! exercises on a page's script. It then says what it saw, in words
//! ("the page still asks every 2 s while nothing happens: 6 requests in
//! 12 s"), and the process exits non-zero unless the exercise is done.
//!
//! - [`EXERCISES`] lists them all, in the order of the workshop;
//!   `cargo run -- check --list` prints it.
//! - `step01.rs` .. `step06.rs`: the checks of each step's exercises.
//! - `ready.rs`: `cargo run -- check --ready`, whether this machine is
//!   ready for the workshop (ports, a step, Chromium, Redis).
//! - `ws.rs`: a WebSocket client, as the pages of steps 04 and on.
//! - `browser.rs`: headless Chromium over WebDriver, for the checks that
//!   need a page's script to run.
//!
//! The reference solutions are `solutions/NAME.patch`; `.ci/exercises`
//! proves for each that its check fails without it and passes with it.

mod browser;
mod ready;
mod step01;
mod step02;
mod step03;
mod step03b;
mod step04;
mod step05;
mod step06;
mod ws;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use shared::Feed;
use shared::Shutdown;
use shared::news;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What `cargo run -- check` takes.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The exercise to check, as `check --list` names it (`02-back-off`).
    name: Option<String>,
    /// Lists every exercise, with its step and what it asks.
    #[arg(long)]
    list: bool,
    /// Checks that this machine is ready for the workshop instead.
    #[arg(long, conflicts_with = "list")]
    ready: bool,
}

/// One exercise, and how to check it.
pub struct Exercise {
    /// What the participant types: `cargo run -- check NAME`.
    pub name: &'static str,
    /// The step it belongs to ("02").
    pub step: &'static str,
    /// What it asks, in one line.
    pub summary: &'static str,
    /// About how long it takes someone new to Rust.
    pub minutes: u32,
    /// Whether the check needs Chromium (an exercise on a page's script).
    pub browser: bool,
    /// The check itself.
    pub check: fn() -> Pin<Box<dyn Future<Output = Checked>>>,
}

/// Every exercise, in the workshop's order.
pub const EXERCISES: &[Exercise] = &[
    Exercise {
        name: "01-stay-live",
        step: "01",
        summary: "posting from /?refresh=5 brings you back to /?refresh=5, still reloading itself",
        minutes: 10,
        browser: false,
        check: || Box::pin(step01::stay_live()),
    },
    Exercise {
        name: "01-not-modified",
        step: "01",
        summary: "a reload with nothing new costs a 304 and no page",
        minutes: 15,
        browser: false,
        check: || Box::pin(step01::not_modified()),
    },
    Exercise {
        name: "02-back-off",
        step: "02",
        summary: "the page asks less and less often while nothing happens, and every 2 s again after news",
        minutes: 10,
        browser: true,
        check: || Box::pin(step02::back_off()),
    },
    Exercise {
        name: "02-only-while-visible",
        step: "02",
        summary: "a tab in the background does not ask at all, and asks at once when it comes back",
        minutes: 10,
        browser: true,
        check: || Box::pin(step02::only_while_visible()),
    },
    Exercise {
        name: "03-retry-after",
        step: "03",
        summary: "refused with 503 and Retry-After: 5, the page waits 5 s before it asks again",
        minutes: 10,
        browser: true,
        check: || Box::pin(step03::retry_after()),
    },
    Exercise {
        name: "03-parked-count",
        step: "03",
        summary: "every /news answer, 304s included, says in X-Parked how many questions are waiting",
        minutes: 15,
        browser: false,
        check: || Box::pin(step03::parked_count()),
    },
    Exercise {
        name: "03b-close-when-hidden",
        step: "03b",
        summary: "a tab in the background closes its stream, and reopens it from its cursor when it comes back",
        minutes: 10,
        browser: true,
        check: || Box::pin(step03b::close_when_hidden()),
    },
    Exercise {
        name: "03b-retry-after",
        step: "03b",
        summary: "refused with 503 and Retry-After: 5, the page waits 5 s, though EventSource hides the answer",
        minutes: 15,
        browser: true,
        check: || Box::pin(step03b::retry_after()),
    },
    Exercise {
        name: "04-going-away",
        step: "04",
        summary: "closed with 1001 (the server is stopping), the page says the server is restarting",
        minutes: 10,
        browser: true,
        check: || Box::pin(step04::going_away()),
    },
    Exercise {
        name: "04-online",
        step: "04",
        summary: "every socket gets {\"type\":\"online\",\"count\":N} when a socket opens or closes",
        minutes: 25,
        browser: false,
        check: || Box::pin(step04::online()),
    },
    Exercise {
        name: "05-my-rooms",
        step: "05",
        summary: "{\"type\":\"mine\",\"ref\":7} is answered with the rooms this socket is in, and the same ref",
        minutes: 15,
        browser: false,
        check: || Box::pin(step05::my_rooms()),
    },
    Exercise {
        name: "05-typing",
        step: "05",
        summary: "\"someone is typing\" reaches the room's other members at once, and is stored nowhere",
        minutes: 25,
        browser: false,
        check: || Box::pin(step05::typing()),
    },
    Exercise {
        name: "06-key-reuse",
        step: "06",
        summary: "a post's key sent again with other words is refused, not answered with the first post's id",
        minutes: 20,
        browser: false,
        check: || Box::pin(step06::key_reuse()),
    },
    Exercise {
        name: "06-rooms-list",
        step: "06",
        summary: "GET /rooms lists every room with news, on any server: Redis knows them all",
        minutes: 10,
        browser: false,
        check: || Box::pin(step06::rooms_list()),
    },
];

/// What a check found: `Ok` with what it saw when the exercise is done.
pub type Checked = Result<String, Failure>;

/// Why a check did not pass.
#[derive(Debug)]
pub enum Failure {
    /// The step does not do what the exercise asks: what it did instead.
    Wrong(String),
    /// The check could not run here (no Chromium): why, and what to do.
    CannotRun(String),
}

/// A check fails with this message, in a person's words.
pub fn wrong<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Wrong(message.into()))
}

/// `cargo run -- check ...`.
pub async fn main(args: Args) -> ExitCode {
    if args.list {
        print_list();
        return ExitCode::SUCCESS;
    }
    if args.ready {
        return ready::main().await;
    }
    let Some(name) = args.name else {
        print_list();
        eprintln!("\nSay which exercise to check: cargo run -- check NAME");
        return ExitCode::FAILURE;
    };
    let Some(exercise) = EXERCISES.iter().find(|exercise| exercise.name == name) else {
        eprintln!("There is no exercise {name}. These are:\n");
        print_list();
        return ExitCode::FAILURE;
    };
    println!(
        "Checking {} (step {}): {}.",
        exercise.name, exercise.step, exercise.summary
    );
    match (exercise.check)().await {
        Ok(seen) => {
            println!("PASS {}: {seen}", exercise.name);
            ExitCode::SUCCESS
        }
        Err(Failure::Wrong(why)) => {
            println!("FAIL {}: {why}", exercise.name);
            ExitCode::FAILURE
        }
        Err(Failure::CannotRun(why)) => {
            println!("CANNOT CHECK {}: {why}", exercise.name);
            // Neither pass nor fail: `.ci/exercises` tells them apart.
            ExitCode::from(2)
        }
    }
}

fn print_list() {
    println!("Exercises (check one with: cargo run -- check NAME)\n");
    for exercise in EXERCISES {
        let browser = if exercise.browser { ", Chromium" } else { "" };
        println!(
            "  {:<22} step {:<3}  {:>2} min{browser:<10}  {}",
            exercise.name, exercise.step, exercise.minutes, exercise.summary
        );
    }
    println!("\nEach step's README has the exercises' statements and hints.");
}

/// A step running in this process, as the participant has written it.
pub struct Running {
    pub addr: SocketAddr,
    /// The step's feed: a check posts into it directly, as another tab would.
    pub feed: Feed,
    shutdown: Shutdown,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What a browser sends as `Origin` from a page of this step.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Posts an item, as someone in another tab would, and returns its id.
    pub fn post(&self, title: &str) -> u64 {
        let post = news::validate(title, "Posted by the check.").expect("a valid post");
        self.feed.post(post).id
    }

    /// Stops the step (it has up to 5 s to end).
    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Starts a step on 127.0.0.1 and a free port, with an empty feed.
pub async fn start<F, Fut>(run: F) -> Result<Running, Failure>
where
    F: FnOnce(TcpListener, Feed, Shutdown) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| Failure::CannotRun(format!("no free port on 127.0.0.1: {error}")))?;
    let addr = listener
        .local_addr()
        .map_err(|error| Failure::CannotRun(error.to_string()))?;
    let feed = Feed::new(shared::feed::DEFAULT_CAPACITY);
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(listener, feed.clone(), shutdown.clone()));
    Ok(Running {
        addr,
        feed,
        shutdown,
        task,
    })
}

/// An HTTP client as a check needs one: redirects shown, not followed.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain HTTP client builds")
}

/// A request that failed to get an answer at all.
pub fn unanswered(what: &str) -> impl FnOnce(reqwest::Error) -> Failure + '_ {
    move |error| Failure::Wrong(format!("{what} got no answer: {error}"))
}

/// Waits until `condition` holds, checking every 50 ms, for at most
/// `limit`; whether it did.
pub async fn within(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
