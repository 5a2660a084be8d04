//! The checks of step 02's exercises, on the page's script: the page runs
//! in headless Chromium, and its network meter says how often it asks.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::Checked;
use super::Running;
use super::browser::Browser;
use super::within;
use super::wrong;

/// The step as a participant runs it: `cargo run -p xhr-polling`, polling
/// every 2 s.
async fn start() -> Result<Running, super::Failure> {
    super::start(|listener, feed, shutdown| {
        xhr_polling::run(listener, feed, Default::default(), shutdown)
    })
    .await
}

/// `02-back-off`: while nothing happens, the page waits longer and longer
/// between two questions; after news, it asks every 2 s again.
pub async fn back_off() -> Checked {
    let browser = Browser::launch().await?;
    let step = start().await?;
    browser.open(&step.url("/")).await?;

    // Quiet for 12 s. Every 2 s would be 6 questions; doubling (2, 4, 8 s)
    // is 2, or 3 if the page only starts doubling after one more.
    let quiet = Duration::from_secs(12);
    let before = browser.meter("requests").await?;
    tokio::time::sleep(quiet).await;
    let asked = browser.meter("requests").await? - before;
    if asked > 3 {
        return wrong(format!(
            "the page still asks every 2 s while nothing happens: {asked} requests in {} s \
             (doubling the wait after each empty answer makes it 2 or 3)",
            quiet.as_secs()
        ));
    }

    // News: the page, waiting up to 16 s by now, finds it at its next
    // question...
    step.post("News after a quiet spell");
    let limit = Duration::from_secs(35);
    if !within(limit, async || {
        matches!(browser.shows("News after a quiet spell").await, Ok(true))
    })
    .await
    {
        return wrong(format!(
            "an item posted after {} s of quiet was not on the page {} s later: \
             does the wait stop growing at 30 s?",
            quiet.as_secs(),
            limit.as_secs()
        ));
    }
    // ...and asks every 2 s again, so that the next item shows quickly.
    let posted = Instant::now();
    step.post("News right after news");
    if !within(Duration::from_secs(5), async || {
        matches!(browser.shows("News right after news").await, Ok(true))
    })
    .await
    {
        return wrong(
            "right after news, the page kept waiting as long as before: after news, go back \
             to asking every 2 s",
        );
    }
    let delay = posted.elapsed().as_secs_f64();
    step.stop().await;
    Ok(format!(
        "{asked} requests in {} s of quiet (every 2 s would be 6); right after news, the next \
         item showed in {delay:.1} s",
        quiet.as_secs()
    ))
}

/// Makes the page believe its tab went to the background (`hidden`) or
/// came back (`visible`), as switching tabs does: `document.hidden`,
/// `document.visibilityState`, and a `visibilitychange` event.
async fn set_visibility(browser: &Browser, state: &str) -> Result<(), super::Failure> {
    let script = "const state = arguments[0]; \
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state }); \
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => state === 'hidden' }); \
        document.dispatchEvent(new Event('visibilitychange'));";
    browser.run(script, Value::from(state)).await.map(drop)
}

/// `02-only-while-visible`: a tab in the background asks nothing; when it
/// comes back it asks at once, then as before.
pub async fn only_while_visible() -> Checked {
    let browser = Browser::launch().await?;
    let step = start().await?;
    browser.open(&step.url("/")).await?;
    // A few questions while visible, as before.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    set_visibility(&browser, "hidden").await?;
    // A question already on its way may finish; then nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = browser.meter("requests").await?;
    let hidden = Duration::from_secs(8);
    tokio::time::sleep(hidden).await;
    let asked = browser.meter("requests").await? - before;
    if asked > 0 {
        return wrong(format!(
            "in the background the page still asks: {asked} requests in {} s while its tab \
             was hidden",
            hidden.as_secs()
        ));
    }

    let before = browser.meter("requests").await?;
    set_visibility(&browser, "visible").await?;
    if !within(Duration::from_millis(1_000), async || {
        browser
            .meter("requests")
            .await
            .is_ok_and(|now| now > before)
    })
    .await
    {
        return wrong(
            "the tab came back and the page did not ask within 1 s: ask once, at once, \
             since news may have come while it was away",
        );
    }
    step.post("News for a visible tab");
    if !within(Duration::from_secs(5), async || {
        matches!(browser.shows("News for a visible tab").await, Ok(true))
    })
    .await
    {
        return wrong("back in front, the page stopped asking: news posted then did not show");
    }
    step.stop().await;
    Ok(format!(
        "no request in {} s in the background; back in front, a question at once, and news \
         shows again",
        hidden.as_secs()
    ))
}
