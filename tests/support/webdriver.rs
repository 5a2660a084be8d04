//! The few WebDriver commands the browser tests use, spoken by hand.
//!
//! WebDriver (W3C, https://www.w3.org/TR/webdriver2/) is plain HTTP and
//! JSON: chromedriver listens on a port, `POST /session` starts a browser
//! and answers its session id, and every command after that is a request
//! under `/session/{id}/...` whose answer is `{"value": ...}`. A failed
//! command answers an error status with `{"value": {"error": "no such
//! alert", "message": ...}}`. That is the whole protocol this module needs,
//! on the `reqwest` and `serde_json` the other tests already use.

use std::fmt;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use serde_json::json;

/// How an element is named in WebDriver's JSON (a fixed, odd-looking key).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Longer than any command takes (a page load, a script), short enough
/// that a browser that hangs fails the test instead of stalling it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A command that failed: WebDriver's error code and message, or, as
/// `"connection"`, why chromedriver could not be asked at all.
#[derive(Debug, Clone)]
pub struct Error {
    pub code: String,
    pub message: String,
}

impl Error {
    fn connection(error: impl fmt::Display) -> Error {
        Error {
            code: "connection".into(),
            message: error.to_string(),
        }
    }

    /// Whether this is the error `code`, as the spec names it
    /// (`"no such alert"`, `"unexpected alert open"`, ...).
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // chromedriver's messages carry a stack trace of its own after the
        // first line; the first line says what went wrong.
        let first_line = self.message.lines().next().unwrap_or_default();
        write!(f, "{}: {first_line}", self.code)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// One WebDriver session: one browser, with its windows. Cloning is cheap;
/// every clone drives the same browser.
#[derive(Clone)]
pub struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    url: String,
}

impl Session {
    /// Starts a browser with these capabilities (`goog:chromeOptions` and
    /// the like) through the driver at `driver` (`http://127.0.0.1:PORT`).
    pub async fn start(driver: &str, capabilities: Value) -> Result<Session> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .map_err(Error::connection)?;
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let answer = send(&http, Method::POST, &format!("{driver}/session"), body).await?;
        let id = answer["sessionId"]
            .as_str()
            .ok_or_else(|| Error::connection(format!("no session id in {answer}")))?;
        Ok(Session {
            http,
            url: format!("{driver}/session/{id}"),
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        send(
            &self.http,
            Method::GET,
            &format!("{}{path}", self.url),
            Value::Null,
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        send(
            &self.http,
            Method::POST,
            &format!("{}{path}", self.url),
            body,
        )
        .await
    }

    /// Ends the session: the browser quits.
    pub async fn end(self) -> Result<()> {
        send(&self.http, Method::DELETE, &self.url, Value::Null).await?;
        Ok(())
    }

    /// Loads `url` in the current window, and waits until it has loaded.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await?;
        Ok(())
    }

    /// Loads the page again, as the Reload button does.
    pub async fn refresh(&self) -> Result<()> {
        self.post("/refresh", json!({})).await?;
        Ok(())
    }

    /// The current window's handle.
    pub async fn window(&self) -> Result<String> {
        let handle = self.get("/window").await?;
        Ok(handle.as_str().unwrap_or_default().to_owned())
    }

    /// Opens a new window (not made current) and returns its handle.
    pub async fn new_window(&self) -> Result<String> {
        let window = self
            .post("/window/new", json!({ "type": "window" }))
            .await?;
        Ok(window["handle"].as_str().unwrap_or_default().to_owned())
    }

    /// Makes a window current, at its top-level page (out of any frame).
    pub async fn switch_to_window(&self, handle: &str) -> Result<()> {
        self.post("/window", json!({ "handle": handle })).await?;
        Ok(())
    }

    /// Makes an `<iframe>` of the current page the place where commands
    /// act, or, with `None`, the top-level page again.
    pub async fn switch_to_frame(&self, frame: Option<&Element>) -> Result<()> {
        let id = frame.map_or(Value::Null, Element::reference);
        self.post("/frame", json!({ "id": id })).await?;
        Ok(())
    }

    /// Resizes the current window.
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        let rect = json!({ "width": width, "height": height });
        self.post("/window/rect", rect).await?;
        Ok(())
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let found = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await?;
        Ok(self.element(&found))
    }

    fn element(&self, reference: &Value) -> Element {
        Element {
            session: self.clone(),
            id: reference[ELEMENT].as_str().unwrap_or_default().to_owned(),
        }
    }

    /// Runs `script` (the body of a function: `arguments` are `args`, and
    /// what it returns comes back as JSON) in the page.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.post("/execute/sync", body).await
    }

    /// What the window shows, as PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let encoded = self.get("/screenshot").await?;
        let encoded = encoded.as_str().unwrap_or_default();
        base64_decode(encoded).ok_or_else(|| Error::connection("a screenshot that is not base64"))
    }

    /// The page as printed (`@media print`), as PDF.
    pub async fn print(&self) -> Result<Vec<u8>> {
        let encoded = self.post("/print", json!({})).await?;
        let encoded = encoded.as_str().unwrap_or_default();
        base64_decode(encoded).ok_or_else(|| Error::connection("a PDF that is not base64"))
    }

    /// The text of the open alert (an error `"no such alert"` if none is).
    pub async fn alert_text(&self) -> Result<String> {
        let text = self.get("/alert/text").await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Closes the open alert, as its Cancel button would.
    pub async fn dismiss_alert(&self) -> Result<()> {
        self.post("/alert/dismiss", json!({})).await?;
        Ok(())
    }
}

/// An element of a page, found by `Session::find`.
pub struct Element {
    session: Session,
    id: String,
}

impl Element {
    /// How a command's JSON names this element (also as a script argument).
    pub fn reference(&self) -> Value {
        json!({ ELEMENT: self.id })
    }

    /// Clicks the element's middle, as a person would.
    pub async fn click(&self) -> Result<()> {
        let path = format!("/element/{}/click", self.id);
        self.session.post(&path, json!({})).await?;
        Ok(())
    }

    /// Types `text` into the element. For a file input, `text` is the
    /// absolute path of the file to choose.
    pub async fn send_keys(&self, text: &str) -> Result<()> {
        let path = format!("/element/{}/value", self.id);
        self.session.post(&path, json!({ "text": text })).await?;
        Ok(())
    }
}

/// One request to chromedriver; its `value`, or the error it names.
async fn send(http: &reqwest::Client, method: Method, url: &str, body: Value) -> Result<Value> {
    let mut request = http.request(method, url);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(Error::connection)?;
    let status = response.status();
    let mut answer: Value = response.json().await.map_err(Error::connection)?;
    let value = answer["value"].take();
    if status.is_success() {
        return Ok(value);
    }
    Err(Error {
        code: value["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_owned(),
        message: value["message"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Standard base64 (with `=` padding) to bytes; `None` if it is not.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(byte: u8) -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim_end_matches('=').as_bytes();
    let mut bytes = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0;
        for (i, &byte) in chunk.iter().enumerate() {
            bits |= sextet(byte)? << (18 - 6 * i);
        }
        // Four characters carry three bytes; a last chunk of two or three
        // characters carries one or two.
        let carried = chunk.len() * 6 / 8;
        bytes.extend_from_slice(&bits.to_be_bytes()[1..=carried]);
    }
    Some(bytes)
}
