//! The checks of step 03b's exercises, on the page's script: the page runs
//! in headless Chromium, and the step's `/stats` says how many streams
//! are open and how many were refused.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::Checked;
use super::Failure;
use super::Running;
use super::browser::Browser;
use super::client;
use super::unanswered;
use super::within;
use super::wrong;

async fn start_with(options: server_sent_events::Options) -> Result<Running, Failure> {
    super::start(|listener, feed, shutdown| {
        server_sent_events::run(listener, feed, options, shutdown)
    })
    .await
}

async fn start() -> Result<Running, Failure> {
    start_with(Default::default()).await
}

/// What `GET /stats` says about one of its counters.
async fn stat(step: &Running, name: &str) -> Result<u64, Failure> {
    let stats: Value = client()
        .get(step.url("/stats"))
        .send()
        .await
        .map_err(unanswered("GET /stats"))?
        .json()
        .await
        .map_err(|error| Failure::Wrong(format!("GET /stats is not JSON any more: {error}")))?;
    stats[name]
        .as_u64()
        .ok_or_else(|| Failure::Wrong(format!("GET /stats no longer counts {name:?}")))
}

/// Makes the page believe its tab went to the background (`hidden`) or
/// came back (`visible`), as switching tabs does.
async fn set_visibility(browser: &Browser, state: &str) -> Result<(), Failure> {
    let script = "const state = arguments[0]; \
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state }); \
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => state === 'hidden' }); \
        document.dispatchEvent(new Event('visibilitychange'));";
    browser.run(script, Value::from(state)).await.map(drop)
}

/// `03b-close-when-hidden`: a tab in the background closes its stream
/// (each holds one of the browser's six connections to the server), and
/// back in front it opens one again, and shows what it missed.
pub async fn close_when_hidden() -> Checked {
    let browser = Browser::launch().await?;
    let step = start().await?;
    browser.open(&step.url("/")).await?;
    let streams = async |expected: u64| {
        within(Duration::from_secs(3), async || {
            stat(&step, "streams")
                .await
                .is_ok_and(|open| open == expected)
        })
        .await
    };
    if !streams(1).await {
        return wrong("the page did not open its event stream within 3 s of loading");
    }
    set_visibility(&browser, "hidden").await?;
    if !streams(0).await {
        return wrong(
            "the tab went to the background and its stream stayed open 3 s later: it still \
             holds a connection nobody looks at",
        );
    }
    step.post("News while away");
    tokio::time::sleep(Duration::from_millis(500)).await;
    set_visibility(&browser, "visible").await?;
    if !streams(1).await {
        return wrong("the tab came back and the page did not open its stream again within 3 s");
    }
    if !within(Duration::from_secs(3), async || {
        matches!(browser.shows("News while away").await, Ok(true))
    })
    .await
    {
        return wrong(
            "back in front, the page does not show what was posted while it was away: \
             open the stream from the page's cursor (?since=)",
        );
    }
    step.post("News once back");
    if !within(Duration::from_secs(3), async || {
        matches!(browser.shows("News once back").await, Ok(true))
    })
    .await
    {
        return wrong("back in front, news posted now does not show");
    }
    step.stop().await;
    Ok(
        "hidden, the page closed its stream; back in front, it opened one and showed what \
        came meanwhile, then the news as it came"
            .into(),
    )
}

/// `03b-retry-after`: refused with `503` and `Retry-After: 5`, the page
/// waits 5 s before it tries again, instead of its backoff of about 1 s.
pub async fn retry_after() -> Checked {
    let browser = Browser::launch().await?;
    let step = start_with(server_sent_events::Options { max_streams: 1 }).await?;
    // Another client takes the one place: the page is refused.
    let other = client()
        .get(step.url("/events"))
        .send()
        .await
        .map_err(unanswered("GET /events"))?;
    browser.open(&step.url("/")).await?;
    if !within(Duration::from_secs(5), async || {
        stat(&step, "refused")
            .await
            .is_ok_and(|refused| refused >= 1)
    })
    .await
    {
        return wrong("the page did not open its event stream within 5 s of loading");
    }
    let refused_at = Instant::now();
    // Asking once more at once, to read the refusal, is fine; after that,
    // nothing until Retry-After has passed. The backoff would try again
    // after 0.5 to 1 s, then 1 to 2 s more.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let at_once = stat(&step, "refused").await?;
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    let refused = stat(&step, "refused").await? - at_once;
    if refused > 0 {
        return wrong(format!(
            "the server answered 503 with Retry-After: 5, and the page tried again anyway: \
             {refused} more refusals in the next 4 s"
        ));
    }

    // The place is free again: the page's next try, 5 s after the
    // refusal, gets its stream, and news reaches it at once.
    drop(other);
    if !within(Duration::from_secs(10), async || {
        stat(&step, "streams")
            .await
            .is_ok_and(|streams| streams == 1)
    })
    .await
    {
        return wrong(format!(
            "the page did not try again {} s after it was refused with Retry-After: 5",
            refused_at.elapsed().as_secs()
        ));
    }
    let waited = refused_at.elapsed().as_secs_f64();
    step.post("News after waiting");
    if !within(Duration::from_secs(3), async || {
        matches!(browser.shows("News after waiting").await, Ok(true))
    })
    .await
    {
        return wrong("after waiting, the page has its stream, but news does not show");
    }
    step.stop().await;
    Ok(format!(
        "refused with Retry-After: 5, the page tried again {waited:.0} s later, not before, \
         and then got the news at once"
    ))
}
