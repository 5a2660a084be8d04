//! Every step in a real browser (headless Chromium), the way a participant
//! tries it: the step open in two tabs, a post typed into tab A's form,
//! and a look at tab B. Step 01 shows it there only after a reload; later
//! steps bring it without one. A title that looks like HTML stays text in
//! both tabs. The network meter counts what the transport costs. A
//! screenshot of each step lands in `target/screenshots/`.
//!
//! These tests need chromedriver and Chromium (Debian: `chromium` and
//! `chromium-driver`); without them they say so in one line and pass,
//! except on CI (`CI=true`). See `support/browser.rs`.

mod support;

use std::time::Duration;

use serde_json::Value;
use serde_json::json;
use shared::Feed;
use shared::news;
use support::Running;
use support::api;
use support::browser::Browser;
use support::browser::Tab;

/// Renders as an image whose failure to load runs a script, if a page
/// treated it as HTML instead of text.
const HTML_TITLE: &str = "<img src=x onerror=alert(1)>";
/// The same trick twice more, in the text.
const HTML_BODY: &str = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 1\">";

/// How news posted in one tab reaches another tab on the same step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Updates {
    /// Only when the page is loaded again (step 01).
    OnReload,
    /// By itself, while the page stays open (steps 02 onwards).
    Live,
}

/// A feed that already has a little news in it, as in a workshop that has
/// been going for a while.
fn feed_with_news() -> Feed {
    let feed = Feed::starting_at(1_000, 0, support::fixed_clock);
    for (title, body) in [
        (
            "Workshop starts at ten",
            "Room 2, second floor. Coffee is on the left.",
        ),
        ("Bring two browser tabs", "One to post in, one to watch."),
    ] {
        feed.post(news::validate(title, body).expect("a valid post"));
    }
    feed
}

/// The step's page in tab A and in tab B.
async fn two_tabs(browser: &mut Browser, server: &Running) -> (Tab, Tab) {
    let a = browser.open("tab A", &server.url("/")).await;
    let b = browser.open("tab B", &server.url("/")).await;
    for tab in [&a, &b] {
        tab.wait_for_title("Workshop starts at ten").await;
    }
    (a, b)
}

/// Posts in tab A through its form and checks when tab B shows it. For
/// live steps, returns how long it took from pressing Post in tab A to the
/// item appearing in tab B, as the two pages' clocks saw it.
async fn news_reaches_the_other_tab(a: &Tab, b: &Tab, updates: Updates) -> Option<Duration> {
    let title = "Hello from tab A";
    b.mark().await;
    // Tab B notes when each title first appears in its list; tab A notes
    // when Post was pressed.
    b.run(
        "window.__arrivals = {}; \
         new MutationObserver(() => { \
           for (const node of document.querySelectorAll('#items .item-title')) \
             window.__arrivals[node.textContent] ??= Date.now(); \
         }).observe(document.getElementById('items'), { childList: true });",
        Value::Null,
    )
    .await;
    a.run(
        "document.querySelector('form.post-form').addEventListener('submit', \
         () => { window.__postedAt = Date.now(); });",
        Value::Null,
    )
    .await;

    a.post(title, "Typed into the form, sent with the Post button.")
        .await;
    a.wait_for_title(title).await;
    match updates {
        Updates::OnReload => {
            assert!(
                !b.titles().await.iter().any(|shown| shown == title),
                "tab B shows the news without being loaded again"
            );
            assert!(b.same_page().await, "tab B was left as it was");
            b.reload().await;
            b.wait_for_title(title).await;
            None
        }
        Updates::Live => {
            b.wait_for_title(title).await;
            assert!(b.same_page().await, "tab B was not reloaded");
            let posted_at = a.run("return window.__postedAt;", Value::Null).await;
            let arrived_at = b
                .run("return window.__arrivals[arguments[0]];", json!(title))
                .await;
            let millis = arrived_at.as_f64().expect("tab B noted the arrival")
                - posted_at.as_f64().expect("tab A noted the post");
            Some(Duration::from_millis(millis.max(0.0) as u64))
        }
    }
}

/// Posts a title and a text that look like HTML: both tabs show them as
/// typed, and nothing in them runs.
async fn html_stays_text(a: &Tab, b: &Tab, updates: Updates) {
    a.post(HTML_TITLE, HTML_BODY).await;
    a.wait_for_title(HTML_TITLE).await;
    if updates == Updates::OnReload {
        b.reload().await;
    }
    b.wait_for_title(HTML_TITLE).await;
    for tab in [a, b] {
        let shown = tab
            .run(
                "const item = Array.from(document.querySelectorAll('#items > article.item'))\
                 .find((item) => item.querySelector('.item-title').textContent === arguments[0]); \
                 return { title: item.querySelector('.item-title').textContent, \
                          body: item.querySelector('.item-body').textContent, \
                          elements: document.querySelectorAll('#items img, #items script').length, \
                          xss: window.__xss ?? null };",
                json!(HTML_TITLE),
            )
            .await;
        let name = tab.name;
        assert_eq!(shown["title"], HTML_TITLE, "{name}");
        assert_eq!(shown["body"], HTML_BODY, "{name}");
        assert_eq!(shown["elements"], 0, "{name} made elements of the text");
        assert_eq!(
            shown["xss"],
            Value::Null,
            "{name} ran a script from the text"
        );
        assert_eq!(tab.alert().await, None, "{name} opened an alert");
    }
}

#[tokio::test]
async fn step_01_shows_news_after_a_reload() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = support::start_with_feed(feed_with_news(), form_post::run).await;
    let (a, b) = two_tabs(&mut browser, &server).await;
    let scripts = a.run("return document.scripts.length;", Value::Null).await;
    assert_eq!(scripts, 0, "step 01 is a page without JavaScript");

    news_reaches_the_other_tab(&a, &b, Updates::OnReload).await;
    html_stays_text(&a, &b, Updates::OnReload).await;

    b.screenshot("01-form-post").await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn step_02_shows_news_within_one_poll_interval() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    // Short, so that the test sees many polls in little time.
    let interval = Duration::from_millis(300);
    let options = xhr_polling::Options {
        interval: interval.as_millis() as u64,
    };
    let server = support::start_with_feed(feed_with_news(), |listener, feed, shutdown| {
        xhr_polling::run(listener, feed, options, shutdown)
    })
    .await;
    let (a, b) = two_tabs(&mut browser, &server).await;

    let delay = news_reaches_the_other_tab(&a, &b, Updates::Live)
        .await
        .expect("a delay");
    // One interval, plus the two requests and the timers' lateness on a
    // busy machine.
    assert!(
        delay <= interval + Duration::from_millis(1_000),
        "tab B showed the news {delay:?} after Post; it polls every {interval:?}"
    );
    html_stays_text(&a, &b, Updates::Live).await;

    // Nothing is posted now, and tab B keeps asking, mostly for nothing.
    let before = b.meter().await;
    b.wait_for(
        "the meter counts 3 more polls, all for nothing",
        "const count = (name) => \
         Number(document.querySelector(`[data-meter=\"${name}\"]`).textContent); \
         return count('requests') >= arguments[0].requests + 3 \
             && count('empty') >= arguments[0].empty + 3;",
        json!({ "requests": before.requests(), "empty": before.empty() }),
    )
    .await;
    let meter = a.meter().await;
    assert!(meter.latency.ends_with(" ms"), "{meter:?}");
    assert_ne!(meter.bytes, "0 B", "{meter:?}");
    assert_eq!(meter.frames, "0 ↓ 0 ↑", "{meter:?}");

    a.screenshot("02-xhr-polling").await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn step_03_shows_news_at_once_and_waits_quietly() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = support::start_with_feed(feed_with_news(), |listener, feed, shutdown| {
        long_polling::run(listener, feed, long_polling::Options::default(), shutdown)
    })
    .await;
    let (a, b) = two_tabs(&mut browser, &server).await;

    news_reaches_the_other_tab(&a, &b, Updates::Live).await;
    html_stays_text(&a, &b, Updates::Live).await;

    // Both tabs have a question waiting on the server, and while nothing
    // is posted, neither asks anything else (a long poll lasts 25 s).
    let parked = async || api::get_json(&server, "/stats").await.1["parked"] == 2;
    support::wait_until("both tabs have a request waiting", parked).await;
    let before = (a.meter().await, b.meter().await);
    // Not a wait for something to happen: a look, for a while, at what
    // does not happen. In this time, step 02's page would poll five times.
    let watch = tokio::time::Instant::now() + Duration::from_millis(1_500);
    let mut after = before.clone();
    while tokio::time::Instant::now() < watch {
        after = (a.meter().await, b.meter().await);
        for (tab, before, after) in [(&a, &before.0, &after.0), (&b, &before.1, &after.1)] {
            // One more at most: a question that waited out its 25 s.
            assert!(
                after.requests() <= before.requests() + 1,
                "{} kept asking: {before:?} then {after:?}",
                tab.name
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Tab B asked three times: the two posts each answered a question, and
    // one question waits now. (A fourth, and one "nothing new", only if a
    // question waited out its 25 s.)
    let b_meter = &after.1;
    assert!(b_meter.requests() <= 3 + b_meter.empty(), "{b_meter:?}");
    assert!(b_meter.empty() <= 1, "{b_meter:?}");
    let meter = a.meter().await;
    assert!(meter.latency.ends_with(" ms"), "{meter:?}");

    a.screenshot("03-long-polling").await;
    browser.close().await;
    server.stop().await;
}
