//! A real browser for tests: headless Chromium, driven over WebDriver by
//! chromedriver, so that a test can do what a participant does: open a step
//! in two tabs, type into the post form, press Post, and look.
//!
//! Each test gets its own chromedriver (on a port it picks itself) and its
//! own Chromium with a fresh profile, so tests can run side by side.
//! `Browser::close` ends both; dropping a `Browser` (a test that failed)
//! kills them.
//!
//! Without chromedriver or Chromium, `Browser::launch` says once why the
//! browser tests are skipped and returns `None`, and the test returns
//! early. With `CI=true` it fails instead: CI must not skip them quietly.
//!
//! WebDriver itself is a handful of HTTP requests: see `webdriver.rs`.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Once;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use serde_json::json;

use super::webdriver;
use super::webdriver::Session;

/// Chromium must not phone home: there is no network here but loopback,
/// and a test must not depend on one. Plus: no GPU in CI, no sandbox as
/// root, no throttling of the window a test is not looking at (its timers
/// run as in a window the participant looks at), and room for the whole
/// list in a screenshot.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--window-size=1280,1600",
];

/// How long chromedriver and Chromium may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium of this test's own, and the chromedriver that
/// drives it.
pub struct Browser {
    session: Session,
    driver: Driver,
    /// The window the browser opened with, handed out as the first tab.
    first_window: Option<String>,
}

/// chromedriver and what it started; ended when dropped.
struct Driver {
    /// chromedriver, leader of a process group that Chromium joins.
    process: Child,
    /// Chromium's profile: fresh for every browser, removed at the end.
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and Chromium, or returns `None` (after saying why,
    /// once per test binary) when they are not installed.
    pub async fn launch() -> Option<Browser> {
        let (chromedriver, chromium) = match find_binaries() {
            Ok(found) => found,
            Err(missing) => {
                skip(&missing);
                return None;
            }
        };
        let profile = fresh_profile();
        let mut process = Command::new(&chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Chromium starts in chromedriver's process group, so that one
            // signal ends them all, even if the test fails half-way.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", chromedriver.display()));
        let stdout = process.stdout.take().expect("stdout is piped");
        // From here on, a panic drops `driver`, which ends chromedriver.
        let driver = Driver { process, profile };
        let port = driver_port(stdout);

        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&flag| flag.to_owned()).collect();
        args.push(format!("--user-data-dir={}", driver.profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            // An alert stays open, so that a test can see it (and fail).
            "unhandledPromptBehavior": "ignore",
        });
        let webdriver = format!("http://127.0.0.1:{port}");
        let session = tokio::time::timeout(START_TIMEOUT, Session::start(&webdriver, capabilities))
            .await
            .expect("Chromium starts within 30 s")
            .unwrap_or_else(|error| panic!("chromedriver starts a Chromium session: {error}"));
        let first_window = session
            .window()
            .await
            .unwrap_or_else(|error| panic!("a new browser has a window: {error}"));
        Some(Browser {
            session,
            driver,
            first_window: Some(first_window),
        })
    }

    /// Opens `url` in a new tab (the browser's first window, the first time).
    pub async fn open(&mut self, name: &'static str, url: &str) -> Tab {
        let handle = match self.first_window.take() {
            Some(handle) => handle,
            None => {
                // A second window, as on a participant's screen. Headless,
                // both count as visible (and CHROMIUM_FLAGS turn off
                // throttling, should a version think otherwise).
                self.session
                    .new_window()
                    .await
                    .unwrap_or_else(|error| panic!("a new window: {error}"))
            }
        };
        let tab = Tab {
            name,
            session: self.session.clone(),
            handle,
            frame: None,
        };
        tab.focus().await;
        self.session
            .navigate(url)
            .await
            .unwrap_or_else(|error| panic!("{name} loads {url}: {error}"));
        tab
    }

    /// Ends the WebDriver session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let ended = self.session.end().await;
        ended.unwrap_or_else(|error| panic!("the browser closes: {error}"));
        drop(self.driver);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = self.process.id() as libc::pid_t;
        // SAFETY: killpg only sends a signal. The group is chromedriver's own
        // (`process_group(0)`), and its id cannot be reused before the
        // `wait` below reaps chromedriver.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
        let _ = self.process.wait();
        let _ = fs::remove_dir_all(&self.profile);
    }
}

/// One tab (a window, in fact) of a `Browser`, showing a page; or one
/// `<iframe>` of that page (see `Tab::frame`).
///
/// WebDriver acts on one window, and one frame in it, at a time: every
/// method first brings its tab (and frame) to the front.
pub struct Tab {
    /// "tab A", "tab B": for failure messages.
    pub name: &'static str,
    session: Session,
    handle: String,
    /// The CSS selector of the `<iframe>` this tab looks into, if any.
    frame: Option<&'static str>,
}

impl Tab {
    async fn focus(&self) {
        let focused = self.try_focus().await;
        focused.unwrap_or_else(|error| panic!("{} is open: {error}", self.name));
    }

    async fn try_focus(&self) -> webdriver::Result<()> {
        // A window switch also leaves any frame: commands act on the
        // window's top-level page.
        self.session.switch_to_window(&self.handle).await?;
        if let Some(css) = self.frame {
            let frame = self.session.find(css).await?;
            self.session.switch_to_frame(Some(&frame)).await?;
        }
        Ok(())
    }

    /// The page inside this tab's `<iframe>` matching `css`, as a tab of
    /// its own (named `name`): its methods act inside the frame.
    pub fn frame(&self, name: &'static str, css: &'static str) -> Tab {
        Tab {
            name,
            session: self.session.clone(),
            handle: self.handle.clone(),
            frame: Some(css),
        }
    }

    /// Resizes the tab's window (for a screenshot of a wide page).
    pub async fn resize(&self, width: u32, height: u32) {
        self.focus().await;
        let resized = self.session.set_window_size(width, height).await;
        resized.unwrap_or_else(|error| panic!("resizing {}: {error}", self.name));
    }

    /// Resizes the tab's window so that the page itself gets `width` by
    /// `height` CSS pixels, as on a screen of that size in full-screen mode
    /// (`resize` sizes the window, whose bars take some of the height).
    pub async fn resize_viewport(&self, width: u32, height: u32) {
        self.resize(width, height).await;
        let inner = self
            .run("return [innerWidth, innerHeight];", Value::Null)
            .await;
        let inner: [u32; 2] = serde_json::from_value(inner).expect("two numbers");
        self.resize(2 * width - inner[0], 2 * height - inner[1])
            .await;
        self.wait_for(
            &format!("the page is {width}x{height}"),
            "return (innerWidth === arguments[0][0] && innerHeight === arguments[0][1]) \
             || `${innerWidth}x${innerHeight}`;",
            json!([width, height]),
        )
        .await;
    }

    /// Runs `script` (the body of a function; `arguments[0]` is `arg`) in
    /// the page and returns what it returns.
    pub async fn try_run(&self, script: &str, arg: Value) -> webdriver::Result<Value> {
        self.try_focus().await?;
        self.session.execute(script, vec![arg]).await
    }

    /// `try_run`, for scripts that cannot fail on a loaded page.
    pub async fn run(&self, script: &str, arg: Value) -> Value {
        self.try_run(script, arg)
            .await
            .unwrap_or_else(|error| panic!("script in {}: {error}\n{script}", self.name))
    }

    /// Waits (see `support::wait_until`) until `script` returns `true`.
    /// Errors count as "not yet": a page may be loading; but an alert
    /// fails the test at once. What the page answered is printed when it
    /// changes, for the failure's output.
    pub async fn wait_for(&self, what: &str, script: &str, arg: Value) {
        let what = format!("{}: {what}", self.name);
        let mut last = String::new();
        super::wait_until(&what, async || {
            let answer = self.try_run(script, arg.clone()).await;
            if let Err(error) = &answer
                && error.is("unexpected alert open")
            {
                panic!("{what}: the page opened an alert instead ({error})");
            }
            let seen = match &answer {
                Ok(value) => value.to_string(),
                Err(error) => error.to_string(),
            };
            if seen != last {
                eprintln!("{what}? {seen}");
                last = seen;
            }
            matches!(answer, Ok(Value::Bool(true)))
        })
        .await;
    }

    /// Types a post into the page's own form and presses its Post button,
    /// then waits until the form is empty again: the server took the post
    /// (step 01 loads a fresh page, later steps clear the form). The title
    /// must not be empty: the browser would not send the form at all.
    pub async fn post(&self, title: &str, body: &str) {
        self.type_into("form.post-form #title", title).await;
        self.type_into("form.post-form #body", body).await;
        self.click("form.post-form button[type=submit]").await;
        // Until then, what the form says (a message beside a field?) shows
        // in the output of a failed test.
        self.wait_for(
            "the form is empty again after Post",
            "const form = document.querySelector('form.post-form'); \
             if (document.readyState === 'complete' && form.elements.title.value === '') \
               return true; \
             return Array.from(form.querySelectorAll('.field-error, .form-status'), \
               (node) => node.textContent).filter(Boolean).join(' / ') || false;",
            Value::Null,
        )
        .await;
    }

    /// Types `text` into the field matching `css` (for a file input: the
    /// absolute path of the file to choose).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.focus().await;
        let name = self.name;
        let field = self.session.find(css).await;
        let field = field.unwrap_or_else(|error| panic!("{name} has no {css}: {error}"));
        let typed = field.send_keys(text).await;
        typed.unwrap_or_else(|error| panic!("typing into {css} in {name}: {error}"));
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.focus().await;
        let name = self.name;
        let element = self.session.find(css).await;
        let element = element.unwrap_or_else(|error| panic!("{name} has no {css}: {error}"));
        let clicked = element.click().await;
        clicked.unwrap_or_else(|error| panic!("clicking {css} in {name}: {error}"));
    }

    /// The titles in the list, top to bottom, as a person reads them.
    pub async fn titles(&self) -> Vec<String> {
        let titles = self
            .run(
                "return Array.from(document.querySelectorAll('#items > article.item .item-title'), \
                 (title) => title.textContent)",
                Value::Null,
            )
            .await;
        serde_json::from_value(titles).expect("a list of strings")
    }

    /// Waits until the list shows an item titled `title`.
    pub async fn wait_for_title(&self, title: &str) {
        self.wait_for(
            &format!("the list shows {title:?}"),
            "return Array.from(document.querySelectorAll('#items > article.item .item-title'))\
             .some((node) => node.textContent === arguments[0])",
            json!(title),
        )
        .await;
    }

    /// Reloads the page, as the browser's Reload button does.
    pub async fn reload(&self) {
        self.focus().await;
        let reloaded = self.session.refresh().await;
        reloaded.unwrap_or_else(|error| panic!("{} reloads: {error}", self.name));
    }

    /// Leaves a mark in the page's `window`. A reload or a navigation wipes
    /// it: `same_page` tells whether the page stayed the same.
    pub async fn mark(&self) {
        self.run("window.__sameDocument = true;", Value::Null).await;
    }

    /// Whether the page still has the mark `mark` left.
    pub async fn same_page(&self) -> bool {
        self.run("return window.__sameDocument === true;", Value::Null)
            .await
            .as_bool()
            .expect("a boolean")
    }

    /// The text of the alert the page opened, if one is open.
    pub async fn alert(&self) -> Option<String> {
        self.focus().await;
        match self.session.alert_text().await {
            Ok(text) => Some(text),
            Err(error) if error.is("no such alert") => None,
            Err(error) => panic!("asking {} for an alert: {error}", self.name),
        }
    }

    /// The network meter in the footer, as displayed.
    pub async fn meter(&self) -> Meter {
        let shown = self
            .run(
                "return ['requests', 'empty', 'bytes', 'latency', 'frames', 'events'].map((name) => \
                 document.querySelector(`aside.meter [data-meter=\"${name}\"]`)?.textContent);",
                Value::Null,
            )
            .await;
        let mut shown: Vec<Option<String>> = serde_json::from_value(shown).expect("texts");
        // Every meter has a row for WebSocket frames, or (step 03b) one
        // for events.
        let events = shown.pop().flatten();
        let frames = shown.pop().flatten();
        let Some([requests, empty, bytes, latency]) = shown
            .into_iter()
            .collect::<Option<Vec<String>>>()
            .and_then(|texts| <[String; 4]>::try_from(texts).ok())
        else {
            panic!("{} has no network meter", self.name);
        };
        let socket = self
            .run(
                "const row = document.querySelector('aside.meter [data-meter-socket]'); \
                 return row && !row.hidden ? row.querySelector('[data-meter=\"socket\"]').textContent : null;",
                Value::Null,
            )
            .await;
        Meter {
            requests,
            empty,
            bytes,
            frames,
            events,
            latency,
            socket: socket.as_str().map(str::to_owned),
        }
    }

    /// The rows of the page's wire view, oldest first, as a person reads
    /// them: what each is, and what it says.
    pub async fn wire(&self) -> Vec<WireRow> {
        let rows = self
            .run(
                "return Array.from(document.querySelectorAll('details.wire .wire-rows > li'), (row) => [\
                 row.dataset.kind, row.dataset.dir, row.dataset.what, row.dataset.status ?? '', \
                 row.hasAttribute('data-empty'), row.hasAttribute('data-open'), row.textContent]);",
                Value::Null,
            )
            .await;
        let rows: Vec<(String, String, String, String, bool, bool, String)> =
            serde_json::from_value(rows).expect("rows of the wire view");
        rows.into_iter()
            .map(|(kind, dir, what, status, empty, open, text)| WireRow {
                kind,
                dir,
                what,
                status,
                empty,
                open,
                text,
            })
            .collect()
    }

    /// The page as printed, as PDF.
    pub async fn print(&self) -> Vec<u8> {
        self.focus().await;
        let pdf = self.session.print().await;
        pdf.unwrap_or_else(|error| panic!("printing {}: {error}", self.name))
    }

    /// Saves what the tab shows as `target/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        self.focus().await;
        let png = self.session.screenshot().await;
        let png = png.unwrap_or_else(|error| panic!("a screenshot of {}: {error}", self.name));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "a screenshot is a PNG"
        );
        let dir = target_dir().join("screenshots");
        fs::create_dir_all(&dir).expect("target/screenshots can be created");
        let path = dir.join(format!("{name}.png"));
        fs::write(&path, png).expect("the screenshot can be written");
        path
    }
}

/// One row of a page's wire view (`details.wire`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRow {
    /// `http` (a request and its answer), `socket` (the WebSocket's
    /// upgrade, and the socket it opened), `stream` (an EventSource's
    /// request, and its answer that stays open), `frame` or `event`.
    pub kind: String,
    /// `out` (the page sent it), `in` (the server did), `both` (a request
    /// and its answer).
    pub dir: String,
    /// `GET /news?since=41`, `POST /news`; a frame's or an event's name
    /// (`news`).
    pub what: String,
    /// The answer's status (`303`, `304`, `101`), empty while there is none.
    pub status: String,
    /// The answer brought nothing new.
    pub empty: bool,
    /// The exchange is still open: no answer yet, or a socket or a stream.
    pub open: bool,
    /// All the row says.
    pub text: String,
}

/// The network meter (`aside.meter`) as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    pub requests: String,
    pub empty: String,
    pub bytes: String,
    /// "WebSocket frames", `3 ↓ 1 ↑`; `None` on step 03b's meter.
    pub frames: Option<String>,
    /// "Events", server-sent events received; only on step 03b's meter.
    pub events: Option<String>,
    pub latency: String,
    /// "WebSocket" (`open`, `closed (1001)`...) or, on step 03b,
    /// "EventSource" (`open`, `reconnecting`, `closed`); `None` while the
    /// page has opened neither (the row is hidden).
    pub socket: Option<String>,
}

impl Meter {
    /// "Requests", as a number.
    pub fn requests(&self) -> u64 {
        self.requests.parse().expect("requests is a count")
    }

    /// "Nothing new", as a number.
    pub fn empty(&self) -> u64 {
        self.empty.parse().expect("empty is a count")
    }
}

/// chromedriver and Chromium: `CHROMEDRIVER` and `CHROMIUM` if set,
/// otherwise the first found on `PATH`; or what is missing.
fn find_binaries() -> Result<(PathBuf, PathBuf), String> {
    let chromedriver = find("CHROMEDRIVER", &["chromedriver"])?;
    let chromium = find(
        "CHROMIUM",
        &[
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ],
    )?;
    Ok((chromedriver, chromium))
}

fn find(variable: &str, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(path) = env::var_os(variable) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!("{variable}={} does not exist", path.display())),
        };
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| format!("{} not found on PATH", names[0]))
}

/// Says why the browser tests do not run: once, on stderr even when the
/// test harness captures output. On CI (`CI=true`) that is a failure.
fn skip(missing: &str) {
    let why = format!(
        "{missing} (install Debian's chromium and chromium-driver, \
         or set CHROMEDRIVER and CHROMIUM)"
    );
    if env::var_os("CI").as_deref() == Some(OsStr::new("true")) {
        panic!("browser tests cannot run on CI: {why}");
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        // `io::stderr()` directly, not `eprintln!`: the harness would keep
        // the line to itself, as the test passes.
        let _ = writeln!(std::io::stderr(), "browser tests skipped: {why}");
    });
}

/// Reads chromedriver's "started successfully on port N." line, then keeps
/// reading (on a thread of its own) so that chromedriver never blocks on a
/// full pipe.
fn driver_port(stdout: std::process::ChildStdout) -> u16 {
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut port_tx = Some(port_tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let port = line
                .split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').parse::<u16>().ok());
            if let Some(port) = port
                && let Some(port_tx) = port_tx.take()
            {
                let _ = port_tx.send(port);
            }
        }
    });
    port_rx
        .recv_timeout(START_TIMEOUT)
        .expect("chromedriver starts and says its port within 30 s")
}

/// A new, empty directory for Chromium's profile, under cargo's scratch
/// space for integration tests (`target/tmp`).
fn fresh_profile() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chromium-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).expect("a profile directory can be created");
    path
}

/// Cargo's target directory (the parent of `target/tmp`), wherever
/// `CARGO_TARGET_DIR` or the configuration put it.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/tmp is inside the target directory")
        .to_owned()
}
