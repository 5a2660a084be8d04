//! Headless Chromium for the checks of exercises on a page's script, driven
//! over WebDriver by chromedriver: load the step's page, let its script
//! run, and read what it shows (the network meter in its footer counts
//! every request the page makes).
//!
//! The browser tests have the full kit (`tests/support/browser.rs` and
//! `webdriver.rs`: tabs, typing, screenshots). A check needs three
//! commands, so this is a smaller copy of the same ideas, with the same
//! flags, rather than test code compiled into the launcher.

use std::env;
use std::fs;
use std::io::BufRead;
use std::io::BufReader;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use serde_json::json;

use super::Failure;

/// As in the browser tests: no network but loopback, no GPU, no sandbox as
/// root, and timers that run as in a window someone looks at.
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
];

/// How long chromedriver and Chromium may take to start on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One Chromium with one window, and the chromedriver that drives it;
/// both end when this is dropped.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    /// chromedriver, leader of a process group Chromium joins.
    driver: Child,
    /// Chromium's profile: fresh, removed at the end.
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and Chromium, or says in one line why it cannot.
    pub async fn launch() -> Result<Browser, Failure> {
        let chromedriver = find("CHROMEDRIVER", &["chromedriver"])?;
        let chromium = find(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )?;
        let profile = env::temp_dir().join(format!("workshop-check-{}", std::process::id()));
        let _ = fs::remove_dir_all(&profile);
        let mut driver = Command::new(&chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|error| {
                Failure::CannotRun(format!("cannot start {}: {error}", chromedriver.display()))
            })?;
        let port = driver_port(driver.stdout.take().expect("stdout is piped"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a plain HTTP client builds");
        let mut browser = Browser {
            http,
            session: String::new(),
            driver,
            profile,
        };
        let port = port.ok_or_else(|| Failure::CannotRun("chromedriver did not start".into()))?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|&flag| flag.into()).collect();
        args.push(format!("--user-data-dir={}", browser.profile.display()));
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        }}});
        let driver = format!("http://127.0.0.1:{port}");
        let started = tokio::time::timeout(
            START_TIMEOUT,
            browser.command(Method::POST, &format!("{driver}/session"), capabilities),
        )
        .await;
        let answer = match started {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => return Err(Failure::CannotRun(format!("Chromium: {why}"))),
            Err(_) => return Err(Failure::CannotRun("Chromium did not start in 30 s".into())),
        };
        let id = answer["sessionId"].as_str().unwrap_or_default();
        browser.session = format!("{driver}/session/{id}");
        Ok(browser)
    }

    /// Loads `url`, and waits until it has loaded.
    pub async fn open(&self, url: &str) -> Result<(), Failure> {
        let url_command = format!("{}/url", self.session);
        self.command(Method::POST, &url_command, json!({ "url": url }))
            .await
            .map(drop)
            .map_err(|why| Failure::Wrong(format!("the browser could not load {url}: {why}")))
    }

    /// Runs `script` (a function body; `arguments[0]` is `arg`) in the page
    /// and returns what it returns.
    pub async fn run(&self, script: &str, arg: Value) -> Result<Value, Failure> {
        let body = json!({ "script": script, "args": [arg] });
        let execute = format!("{}/execute/sync", self.session);
        self.command(Method::POST, &execute, body)
            .await
            .map_err(|why| Failure::Wrong(format!("the page's script failed: {why}")))
    }

    /// What the network meter in the page's footer counts: `requests` or
    /// `empty` (answers with nothing new).
    pub async fn meter(&self, name: &str) -> Result<u64, Failure> {
        let script = "const shown = document.querySelector(`[data-meter=\"${arguments[0]}\"]`); \
                      return shown ? Number(shown.textContent.replace(/\\D/g, '')) : null;";
        let count = self.run(script, json!(name)).await?;
        count
            .as_u64()
            .ok_or_else(|| Failure::Wrong("the page has no network meter any more".into()))
    }

    /// Whether the page shows an item with this title.
    pub async fn shows(&self, title: &str) -> Result<bool, Failure> {
        let script = "return document.body.innerText.includes(arguments[0]);";
        Ok(self.run(script, json!(title)).await? == Value::Bool(true))
    }

    /// One WebDriver command: its `value`, or the error it names.
    async fn command(&self, method: Method, url: &str, body: Value) -> Result<Value, String> {
        let response = self
            .http
            .request(method, url)
            .json(&body)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let mut answer: Value = response.json().await.map_err(|error| error.to_string())?;
        let value = answer["value"].take();
        if status.is_success() {
            return Ok(value);
        }
        let message = value["message"].as_str().unwrap_or("unknown error");
        Err(message.lines().next().unwrap_or_default().to_owned())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = self.driver.id() as libc::pid_t;
        // SAFETY: killpg only sends a signal, to chromedriver's own group
        // (`process_group(0)`), whose id cannot be reused before the `wait`
        // below reaps chromedriver.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
        let _ = self.driver.wait();
        let _ = fs::remove_dir_all(&self.profile);
    }
}

/// A program named by `variable`, or the first of `names` on `PATH`.
fn find(variable: &str, names: &[&str]) -> Result<PathBuf, Failure> {
    let missing = |what: String| {
        Failure::CannotRun(format!(
            "{what}; this check runs the page in Chromium (on Debian: \
             sudo apt-get install chromium chromium-driver, or set CHROMEDRIVER and CHROMIUM)"
        ))
    };
    if let Some(path) = env::var_os(variable) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(missing(format!(
                "{variable}={} does not exist",
                path.display()
            ))),
        };
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| missing(format!("{} is not installed", names[0])))
}

/// The port chromedriver says it listens on (it picks one with `--port=0`).
fn driver_port(stdout: std::process::ChildStdout) -> Option<u16> {
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let port = line
                .split_once("started successfully on port ")
                .and_then(|(_, rest)| rest.trim_end_matches('.').parse::<u16>().ok());
            if let Some(port) = port {
                let _ = port_tx.send(port);
            }
        }
    });
    port_rx.recv_timeout(START_TIMEOUT).ok()
}
