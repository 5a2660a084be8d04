//! The checks of step 04's exercises: sockets opened as a page opens them
//! (with its `Origin`), and the page itself in headless Chromium.

use std::time::Duration;

use serde_json::Value;

use super::Checked;
use super::Failure;
use super::Running;
use super::browser::Browser;
use super::within;
use super::wrong;
use super::ws::connect;
use super::ws::next_of_type;

async fn start() -> Result<Running, Failure> {
    super::start(|listener, feed, shutdown| {
        websocket::run(listener, feed, Default::default(), shutdown)
    })
    .await
}

/// `04-online`: when a socket opens or closes, every socket gets
/// `{"type":"online","count":N}`.
pub async fn online() -> Checked {
    let step = start().await?;
    let limit = Duration::from_secs(3);
    let mut first = connect(&step, "/ws").await?;
    let second = connect(&step, "/ws").await?;
    // The count may also come when a socket opens: the first socket's
    // latest word after the second opened must be 2.
    let mut latest = None;
    while let Some(message) = next_of_type(&mut first, "online", limit).await? {
        let done = message["count"] == 2;
        latest = Some(message);
        if done {
            break;
        }
    }
    match latest {
        None => {
            return wrong(format!(
                "a second socket opened, and the first got no {{\"type\":\"online\"}} message \
                 within {} s",
                limit.as_secs()
            ));
        }
        Some(message) if message["count"] != 2 => {
            return wrong(format!(
                "a second socket opened, and the first was told {message}; 2 are open"
            ));
        }
        Some(_) => {}
    }
    drop(second);
    match next_of_type(&mut first, "online", limit).await? {
        Some(message) if message["count"] == 1 => {}
        Some(message) => {
            return wrong(format!(
                "the second socket went away, and the first was told {message}; 1 is open"
            ));
        }
        None => {
            return wrong(format!(
                "the second socket went away, and the first got no {{\"type\":\"online\"}} \
                 within {} s",
                limit.as_secs()
            ));
        }
    }
    step.stop().await;
    Ok(
        "a second socket opened: the first was told {\"type\":\"online\",\"count\":2}; \
        it went away: count 1"
            .into(),
    )
}

/// `04-going-away`: when the server closes the socket with 1001 (it is
/// stopping), the page tells the person it is restarting.
pub async fn going_away() -> Checked {
    let browser = Browser::launch().await?;
    let step = start().await?;
    browser.open(&step.url("/")).await?;
    let shows = async |text: &str| {
        let script = "return document.body.innerText.toLowerCase().includes(arguments[0]);";
        matches!(
            browser.run(script, Value::from(text)).await,
            Ok(Value::Bool(true))
        )
    };
    // The meter in the footer says how the page's socket is doing.
    let socket_open = async || {
        let script = "return document.querySelector('[data-meter=\"socket\"]')?.textContent;";
        matches!(browser.run(script, Value::Null).await, Ok(Value::String(state)) if state == "open")
    };
    if !within(Duration::from_secs(5), socket_open).await {
        return wrong("the page did not open its socket within 5 s");
    }
    if shows("restarting").await {
        return wrong("the page says \"restarting\" before the server stops");
    }
    // The server stops: every socket is closed with 1001, Going Away.
    step.stop().await;
    if !within(Duration::from_secs(3), async || shows("restarting").await).await {
        return wrong(
            "the server closed the socket with 1001 (going away) and the page said nothing \
             about it: tell the person the server is restarting",
        );
    }
    Ok("the server stopped (close 1001) and the page said it is restarting".into())
}
