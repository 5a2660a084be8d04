//! What every test of a step does first: start the step on a free port with
//! a feed whose ids and times are fixed (so snapshots are stable), and talk
//! to it the way a browser would.

#![allow(dead_code)] // Each test file uses its own part of this module.

pub mod api;
pub mod browser;
pub mod redis_server;
pub mod rooms;
pub mod sse;
pub mod webdriver;
pub mod ws;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use shared::Feed;
use shared::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Every item posted in a test says it was posted at 2026-11-18 11:06:40 UTC.
pub fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

/// A step running in this test process.
pub struct Running {
    pub addr: SocketAddr,
    /// The step's feed: tests look at it to check what was (not) stored.
    pub feed: Feed,
    pub shutdown: Shutdown,
    pub task: JoinHandle<io::Result<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What a browser would send as `Origin` from a page of this step.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the step and waits until it has.
    pub async fn stop(self) {
        self.shutdown.trigger();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the step stops within 10 s of the shutdown signal");
        ended
            .expect("the step did not panic")
            .expect("the step ended cleanly");
    }
}

/// Starts a step on 127.0.0.1:0 with a fresh feed whose first id is 1.
pub async fn start<F, Fut>(run: F) -> Running
where
    F: FnOnce(TcpListener, Feed, Shutdown) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    start_with_feed(Feed::starting_at(1_000, 0, fixed_clock), run).await
}

/// Starts a step on 127.0.0.1:0 serving `feed`.
pub async fn start_with_feed<F, Fut>(feed: Feed, run: F) -> Running
where
    F: FnOnce(TcpListener, Feed, Shutdown) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on loopback");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(listener, feed.clone(), shutdown.clone()));
    Running {
        addr,
        feed,
        shutdown,
        task,
    }
}

/// Raises this process's open-file limit to its hard limit, for tests that
/// hold a thousand connections (two sockets each, as client and server live
/// in one process), beyond the 1,024 many systems allow by default.
pub fn raise_fd_limit() {
    shared::cli::raise_fd_limit();
}

/// Waits until `condition` holds, checking every 10 ms, for at most 20 s
/// (a browser test on a busy 2-core CI machine once waited more than 10 s
/// for what takes about a second here).
pub async fn wait_until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 20 s for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Snapshots are stored as `tests/snapshots/NAME.snap`, named after the
/// step (`01_empty_page`), whichever file or helper takes them. Hold the
/// guard while taking snapshots.
pub fn snapshots() -> insta::internals::SettingsBindDropGuard {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind_to_scope()
}

/// A page as a snapshot should see it: its markup, with the text of each
/// inline `<script>` left out. The scripts are what participants change in
/// the exercises (a page that slows down when idle, a socket that counts
/// who is online); a snapshot that held them would fail every correct
/// solution. What a script does is checked by the browser tests instead.
pub fn markup(page: &str) -> String {
    let mut markup = String::with_capacity(page.len());
    let mut rest = page;
    while let Some(start) = rest.find("<script>") {
        let (before, script) = rest.split_at(start + "<script>".len());
        markup.push_str(before);
        let end = script
            .find("</script>")
            .expect("every inline script is closed");
        markup.push_str("\n[the page's script, left out of snapshots]\n");
        rest = &script[end..];
    }
    markup.push_str(rest);
    markup
}

/// An HTTP client that, unlike a browser, shows us redirects instead of
/// following them, so that tests can check the 303 itself.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client builds")
}

/// GETs a page (or any text) as a browser would, and returns its text.
pub async fn page(url: impl reqwest::IntoUrl) -> String {
    client()
        .get(url)
        .send()
        .await
        .expect("the server answers")
        .text()
        .await
        .expect("the answer is text")
}

/// The largest posts the rules allow, made of the characters that take
/// the most bytes on the wire: a 120-character title and a 2,000-character
/// text of emoji (4 bytes of UTF-8 each), then of CJK (3 bytes each).
pub fn largest_valid_posts() -> [(String, String); 2] {
    [
        ("🦀".repeat(120), "📰".repeat(2000)),
        ("漢".repeat(120), "字".repeat(2000)),
    ]
}

/// `text` the way a form sends it, at its largest: every byte of its
/// UTF-8 as `%XX` (browsers do that to every byte of a non-ASCII
/// character: an emoji becomes 12 bytes).
pub fn form_encoded(text: &str) -> String {
    text.bytes().map(|byte| format!("%{byte:02X}")).collect()
}

/// `text` inside a JSON string at its largest: every character as a
/// `\uXXXX` escape, an emoji as two of them (a surrogate pair, 12 bytes).
pub fn json_escaped(text: &str) -> String {
    text.encode_utf16()
        .map(|unit| format!("\\u{unit:04X}"))
        .collect()
}
