//! Every step in a real browser (headless Chromium), the way a participant
//! tries it: the step open in two tabs, a post typed into tab A's form,
//! and a look at tab B. Step 01 shows it there only after a reload; later
//! steps bring it without one. A title that looks like HTML stays text in
//! both tabs. The network meter counts what the transport costs. Steps 04
//! and 05 are stopped and started again under an open page, which finds
//! its way back by itself; step 05 keeps rooms apart and carries images;
//! step 06 says when its Redis is away, and sends a post again, with its
//! key, when Redis stalled and nobody knows whether it was stored.
//! Two tabs of step 03 in one browser each have a question waiting; two
//! tabs of step 03b each have a stream, and 03b finds its way back after a
//! restart by itself.
//! The launcher's index shows every era at once, every pane and its meter
//! in sight on a projector, a laptop and a large screen, seven panes too,
//! and one pane can fill the screen. A screenshot of each step and of the
//! index lands in `target/screenshots/`.
//!
//! These tests need chromedriver and Chromium (Debian: `chromium` and
//! `chromium-driver`); without them they say so in one line and pass,
//! except on CI (`CI=true`). See `support/browser.rs`.

mod support;

use std::fs;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use serde_json::json;
use shared::Feed;
use shared::Shutdown;
use shared::news;
use shared::news::NewPost;
use support::Running;
use support::api;
use support::browser::Browser;
use support::browser::Tab;
use tokio::net::TcpListener;

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
    let scripts = a
        .run(
            "return Array.from(document.scripts, (script) => new URL(script.src).pathname);",
            Value::Null,
        )
        .await;
    assert_eq!(
        scripts,
        json!(["/static/wire.js", "/static/meter.js"]),
        "step 01 has no JavaScript but the meter's and the wire view's"
    );

    news_reaches_the_other_tab(&a, &b, Updates::OnReload).await;
    html_stays_text(&a, &b, Updates::OnReload).await;

    // Tab A's wire view, kept across its page loads: each post is a POST
    // answered 303 See Other, and the GET of the page it names.
    let rows = a.wire().await;
    let posts: Vec<usize> = (0..rows.len())
        .filter(|&at| rows[at].what == "POST /news")
        .collect();
    assert_eq!(posts.len(), 2, "two posts: {rows:#?}");
    for at in posts {
        let (post, get) = (&rows[at], rows.get(at + 1));
        assert_eq!(post.status, "303", "{post:?}");
        assert!(post.text.contains("303 See Other"), "{post:?}");
        let get = get.unwrap_or_else(|| panic!("a GET after the 303: {rows:#?}"));
        assert_eq!((get.what.as_str(), get.status.as_str()), ("GET /", "200"));
    }

    // The meter counts page loads: tab B was loaded three times, each time
    // with news. Once more, and it is a whole page for nothing new.
    wait_for_meter(&b, "requests", "3").await;
    b.reload().await;
    wait_for_meter(&b, "requests", "4").await;
    let meter = b.meter().await;
    assert_eq!(meter.empty, "1", "{meter:?}");
    assert_ne!(meter.bytes, "0 B", "{meter:?}");
    // Tab A posted: from Post to the page showing the item.
    let meter = a.meter().await;
    assert!(meter.latency.ends_with(" ms"), "{meter:?}");

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
    // In its wire view, one question after another, and while nobody
    // posts, each answered 304: nothing new.
    let rows = b.wire().await;
    let last: Vec<&support::browser::WireRow> = rows.iter().rev().take(3).collect();
    for row in &last {
        assert!(row.what.starts_with("GET /news?since="), "{rows:#?}");
        assert_eq!(row.status, "304", "{row:?}");
        assert!(row.empty && row.text.contains("nothing new"), "{row:?}");
    }
    let meter = a.meter().await;
    assert!(meter.latency.ends_with(" ms"), "{meter:?}");
    assert_ne!(meter.bytes, "0 B", "{meter:?}");
    assert_eq!(meter.frames.as_deref(), Some("0 ↓ 0 ↑"), "{meter:?}");

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

    // Tab B's wire view: its question, held by the server, open...
    let held = wait_for_an_open_row(&b, "GET /news?since=").await;
    news_reaches_the_other_tab(&a, &b, Updates::Live).await;
    // ...until the post answered it; and the next one is held again.
    let rows = b.wire().await;
    let answered = rows.iter().find(|row| row.what == held.what);
    let answered = answered.unwrap_or_else(|| panic!("{held:?} is gone: {rows:#?}"));
    assert_eq!(answered.status, "200", "{answered:?}");
    assert!(!answered.open && !answered.empty, "{answered:?}");
    let newest = rows.last().expect("rows");
    assert!(
        newest.open && newest.what.starts_with("GET /news?since="),
        "{rows:#?}"
    );
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

/// Two tabs of one browser ask the same question at first ("anything after
/// this cursor?"): each must still be a request of its own on the server,
/// not one that the browser holds back behind the other's.
#[tokio::test]
async fn step_03_keeps_two_tabs_of_one_browser_live() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = support::start_with_feed(feed_with_news(), |listener, feed, shutdown| {
        long_polling::run(listener, feed, long_polling::Options::default(), shutdown)
    })
    .await;
    // Nothing is posted yet: both tabs wait for news after the same cursor.
    let (a, b) = two_tabs(&mut browser, &server).await;
    let parked = async || api::get_json(&server, "/stats").await.1["parked"] == 2;
    support::wait_until("both tabs have a request waiting at once", parked).await;

    // News posted from elsewhere reaches both of them at once.
    let title = "Seen by both tabs";
    let posted = tokio::time::Instant::now();
    api::post(&server, title).await;
    for tab in [&a, &b] {
        tab.wait_for_title(title).await;
        let delay = posted.elapsed();
        assert!(
            delay <= Duration::from_secs(1),
            "{} showed the news {delay:?} after it was posted",
            tab.name
        );
    }
    // And both ask again, each with a question of its own.
    support::wait_until("both tabs wait again", parked).await;
    browser.close().await;
    server.stop().await;
}

/// Step 03b with its default options, as a function: the restart test
/// calls it again to start the step again.
fn server_sent_events_step(
    listener: TcpListener,
    feed: Feed,
    shutdown: Shutdown,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    server_sent_events::run(listener, feed, Default::default(), shutdown)
}

/// Two tabs of one browser, each with an answer of its own that never
/// ends: news reaches both at once, and however much is posted, a tab
/// that only listens made one request.
#[tokio::test]
async fn step_03b_pushes_news_down_one_answer_per_tab() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = support::start_with_feed(feed_with_news(), server_sent_events_step).await;
    let (a, b) = two_tabs(&mut browser, &server).await;
    let streams = async || api::get_json(&server, "/stats").await.1["streams"] == 2;
    support::wait_until("both tabs have a stream open at once", streams).await;

    news_reaches_the_other_tab(&a, &b, Updates::Live).await;
    html_stays_text(&a, &b, Updates::Live).await;
    for n in 1..=3 {
        a.post(&format!("Post {n} down the same answer"), "").await;
    }
    b.wait_for_title("Post 3 down the same answer").await;
    // Tab A posted five times, each a request of its own; tab B only
    // listened. Each got at least the five events.
    for (tab, requests) in [(&a, "6"), (&b, "1")] {
        tab.wait_for(
            "the meter counts at least five events",
            "return Number(document.querySelector('aside.meter [data-meter=\"events\"]').textContent) >= 5;",
            Value::Null,
        )
        .await;
        let meter = tab.meter().await;
        assert_eq!(meter.requests, requests, "{}: {meter:?}", tab.name);
        assert_eq!(meter.empty, "0", "{}: {meter:?}", tab.name);
        assert_eq!(meter.socket.as_deref(), Some("open"), "{}", tab.name);
        assert_eq!(meter.frames, None, "{}: no WebSocket here", tab.name);
    }
    let meter = a.meter().await;
    assert!(meter.latency.ends_with(" ms"), "{meter:?}");
    assert!(b.same_page().await, "tab B was not reloaded");
    support::wait_until("both streams are still open", streams).await;
    // Tab B's wire view: one stream, open, and an event in it per item.
    let rows = b.wire().await;
    assert_one_open_then("stream", "200", &rows, "event", &["news"; 5]);

    b.screenshot("03b-server-sent-events").await;
    browser.close().await;
    server.stop().await;
}

/// The server stops under an open page and starts again: EventSource
/// reconnects by itself, says where it stopped (`Last-Event-ID`), and the
/// page shows what it missed; with a new feed, it shows the reset.
#[tokio::test]
async fn step_03b_finds_its_way_back_after_a_restart() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    // Ids from the clock, as in a real run: a feed made later starts
    // above every id of this one.
    let feed = Feed::new(1_000);
    feed.post(news::validate("Before the restart", "").expect("a valid post"));
    let server = support::start_with_feed(feed, server_sent_events_step).await;
    let tab = browser.open("the page", &server.url("/")).await;
    tab.wait_for_title("Before the restart").await;
    wait_for_meter(&tab, "socket", "open").await;

    let server =
        restart_with_the_same_feed(&tab, server, server_sent_events_step, "reconnecting").await;
    restart_with_a_new_feed(&tab, server, server_sent_events_step).await;
    browser.close().await;
}

/// Step 04 with its default options, as a function: the restart tests
/// call it again to start the step again.
fn websocket_step(
    listener: TcpListener,
    feed: Feed,
    shutdown: Shutdown,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    websocket::run(listener, feed, websocket::Options::default(), shutdown)
}

/// Step 05, likewise.
fn rooms_step(
    listener: TcpListener,
    feed: Feed,
    shutdown: Shutdown,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    rooms::run(listener, feed, rooms::Options::default(), shutdown)
}

/// Waits until the meter has counted at least `down` frames received and
/// at least `up` sent.
/// Waits until the newest row of `tab`'s wire view is an exchange still
/// open (a question the server holds) whose request starts with `what`.
async fn wait_for_an_open_row(tab: &Tab, what: &str) -> support::browser::WireRow {
    tab.wait_for(
        "the wire view shows a question held open",
        "const row = document.querySelector('details.wire .wire-rows > li:last-child');          return (row?.hasAttribute('data-open') && row.dataset.what.startsWith(arguments[0]))            || row?.textContent || 'no rows';",
        json!(what),
    )
    .await;
    tab.wire().await.pop().expect("a row")
}

/// In a wire view (`rows`): the first row is the one exchange of `kind`
/// (a socket, a stream), answered `status` and still open; every other
/// row is a `then` (frame, event), and those named `names` come among
/// them in that order, each with the server's or the page's arrow.
#[track_caller]
fn assert_one_open_then(
    kind: &str,
    status: &str,
    rows: &[support::browser::WireRow],
    then: &str,
    names: &[&str],
) {
    let first = rows.first().unwrap_or_else(|| panic!("no rows"));
    assert_eq!(
        (first.kind.as_str(), first.status.as_str()),
        (kind, status),
        "{rows:#?}"
    );
    assert!(first.open, "the {kind} is still open: {first:?}");
    assert!(rows[1..].iter().all(|row| row.kind == then), "{rows:#?}");
    let mut names = names.iter().peekable();
    for row in &rows[1..] {
        assert!(row.dir == "in" || row.dir == "out", "{row:?}");
        if names.peek() == Some(&&row.what.as_str()) {
            names.next();
        }
    }
    assert_eq!(names.next(), None, "missing, in this order: {rows:#?}");
}

async fn wait_for_frames(tab: &Tab, down: u64, up: u64) {
    tab.wait_for(
        &format!("the meter counts at least {down} frames down and {up} up"),
        "const [down, up] = document.querySelector('aside.meter [data-meter=\"frames\"]')\
         .textContent.split(/ [↓↑] ?/).map(Number);\
         return down >= arguments[0].down && up >= arguments[0].up;",
        json!({ "down": down, "up": up }),
    )
    .await;
}

/// Waits until the meter's `name` row says `text`. (The meter redraws at
/// the next animation frame, a moment after what it counts.)
async fn wait_for_meter(tab: &Tab, name: &str, text: &str) {
    tab.wait_for(
        &format!("the meter's {name} says {text:?}"),
        "return document.querySelector(`aside.meter [data-meter=\"${arguments[0].name}\"]`)\
         .textContent === arguments[0].text;",
        json!({ "name": name, "text": text }),
    )
    .await;
}

#[tokio::test]
async fn step_04_pushes_news_over_one_socket() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = support::start_with_feed(feed_with_news(), websocket_step).await;
    let (a, b) = two_tabs(&mut browser, &server).await;

    news_reaches_the_other_tab(&a, &b, Updates::Live).await;
    html_stays_text(&a, &b, Updates::Live).await;

    // Three more posts, and still one connection per tab: the upgrade
    // request is the only request either tab ever made. Tab A sent (at
    // least) five posts and got back at least the snapshot, five news and
    // five acks; tab B got at least the snapshot and five news. ("At
    // least": an exercise may add messages of its own, both ways: who is
    // online, say, or "someone is typing" sent while tab A types.)
    for n in 1..=3 {
        a.post(&format!("Post {n} over the same socket"), "").await;
    }
    b.wait_for_title("Post 3 over the same socket").await;
    for (tab, down, up) in [(&a, 11, 5), (&b, 6, 0)] {
        wait_for_frames(tab, down, up).await;
        let meter = tab.meter().await;
        assert_eq!(meter.requests, "1", "{}: {meter:?}", tab.name);
        assert_eq!(meter.empty, "0", "{}: {meter:?}", tab.name);
        assert_eq!(meter.socket.as_deref(), Some("open"), "{}", tab.name);
    }
    let meter = a.meter().await;
    assert!(meter.latency.ends_with(" ms"), "{meter:?}");
    assert!(b.same_page().await, "tab B was not reloaded");
    // The wire views: one upgrade, answered 101, the socket still open;
    // then frames only. Tab B got the snapshot and the news; tab A sent
    // its posts and got their acks.
    let rows = b.wire().await;
    assert_one_open_then(
        "socket",
        "101",
        &rows,
        "frame",
        &["snapshot", "news", "news"],
    );
    let rows = a.wire().await;
    assert_one_open_then(
        "socket",
        "101",
        &rows,
        "frame",
        &["post", "posted", "post", "posted"],
    );

    b.screenshot("04-websocket").await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn step_04_finds_its_way_back_after_a_restart() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    // Ids from the clock, as in a real run: a feed made later starts
    // above every id of this one.
    let feed = Feed::new(1_000);
    feed.post(news::validate("Before the restart", "").expect("a valid post"));
    let server = support::start_with_feed(feed, websocket_step).await;
    let tab = browser.open("the page", &server.url("/")).await;
    tab.wait_for_title("Before the restart").await;

    let server = restart_with_the_same_feed(&tab, server, websocket_step, "closed (1001)").await;
    restart_with_a_new_feed(&tab, server, websocket_step).await;
    browser.close().await;
}

#[tokio::test]
async fn step_05_keeps_rooms_apart_and_carries_images() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = support::start_with_feed(feed_with_news(), rooms_step).await;
    let (a, b) = two_tabs(&mut browser, &server).await;

    // In #general, the room every page starts in, news goes everywhere.
    news_reaches_the_other_tab(&a, &b, Updates::Live).await;
    html_stays_text(&a, &b, Updates::Live).await;

    // Tabs A and C join #rust; tab B stays in #general.
    let c = browser.open("tab C", &server.url("/")).await;
    c.wait_for_title("Workshop starts at ten").await;
    for tab in [&a, &c] {
        join(tab, "rust").await;
    }
    // Presence: the room's button in tab A counts its members.
    a.wait_for(
        "the #rust button counts two members",
        "const button = Array.from(document.querySelectorAll('.room-tab'))\
         .find((button) => button.firstChild.textContent === '#rust'); \
         return button.querySelector('.room-count').textContent === '2';",
        Value::Null,
    )
    .await;

    a.post("Only for #rust", "Tab B is not in this room.").await;
    wait_for_shown_title(&c, "Only for #rust").await;

    // An image goes along as a binary frame, and shows in the other tab.
    let image = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-attachment.png");
    fs::write(&image, DISC_PNG).expect("target/tmp is writable");
    a.type_into("form.post-form #attachment", &image.display().to_string())
        .await;
    a.post("A picture for #rust", "An orange disc on blue.")
        .await;
    for tab in [&a, &c] {
        tab.wait_for(
            "the picture shows under its item",
            "const item = Array.from(document.querySelectorAll('.items:not([hidden]) > article.item'))\
             .find((item) => item.querySelector('.item-title').textContent === arguments[0]); \
             const image = item?.querySelector('img.item-image'); \
             return image !== null && image !== undefined && image.complete && image.naturalWidth === 48;",
            json!("A picture for #rust"),
        )
        .await;
    }

    // Tab B posts in #general: tabs A and C, members there too, get it
    // (in their #general list, not the #rust one shown)...
    b.post("Meanwhile in #general", "").await;
    for tab in [&a, &c] {
        tab.wait_for_title("Meanwhile in #general").await;
        let shown = shown_titles(tab).await;
        assert!(
            !shown.contains(&"Meanwhile in #general".into()),
            "{shown:?}"
        );
    }
    // ...and tab B, by then, has seen nothing of #rust: one room, one
    // list, no picture, no title of #rust.
    let seen = b
        .run(
            "return { rooms: document.querySelectorAll('.room-tab').length, \
                      lists: document.querySelectorAll('.feed .items').length, \
                      images: document.querySelectorAll('img').length };",
            Value::Null,
        )
        .await;
    assert_eq!(
        seen,
        json!({ "rooms": 1, "lists": 1, "images": 0 }),
        "tab B"
    );
    let titles = b.titles().await;
    assert!(
        !titles.iter().any(|title| title.contains("#rust")),
        "tab B: {titles:?}"
    );

    // One socket per tab, however many rooms.
    for tab in [&a, &b, &c] {
        let meter = tab.meter().await;
        assert_eq!(meter.requests, "1", "{}: {meter:?}", tab.name);
        assert_eq!(meter.socket.as_deref(), Some("open"), "{}", tab.name);
    }
    // Tab A's wire view: the one upgrade, then frames: joining #rust, and
    // the post with a picture, a JSON frame and then a binary one.
    let rows = a.wire().await;
    let names = ["join", "joined", "post", "binary", "posted"];
    assert_one_open_then("socket", "101", &rows, "frame", &names);

    c.screenshot("05-rooms").await;
    browser.close().await;
    server.stop().await;
}

#[tokio::test]
async fn step_05_finds_its_way_back_after_a_restart() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let feed = Feed::new(1_000);
    feed.post(news::validate("Before the restart", "").expect("a valid post"));
    let server = support::start_with_feed(feed, rooms_step).await;
    let page = browser.open("the page", &server.url("/")).await;
    let rust = browser.open("the page in #rust", &server.url("/")).await;
    for tab in [&page, &rust] {
        tab.wait_for_title("Before the restart").await;
    }
    join(&rust, "rust").await;

    let server = restart_with_the_same_feed(&page, server, rooms_step, "closed (1001)").await;
    // The other page came back too, and rejoined #rust by itself: the
    // server takes its post there (it refuses posts to a room the socket
    // is not in).
    rust.wait_for_title(MISSED[1]).await;
    assert_eq!(
        rust.titles().await,
        [MISSED[1], MISSED[0], "Before the restart"],
        "#general in {}",
        rust.name
    );
    rust.post("Back in #rust", "").await;
    wait_for_shown_title(&rust, "Back in #rust").await;

    restart_with_a_new_feed(&page, server, rooms_step).await;
    browser.close().await;
}

#[tokio::test]
async fn the_launcher_shows_every_era_side_by_side() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let launcher = Launcher::start(feed_with_news()).await;
    let index = browser.open("the index", &launcher.index).await;
    // A projector's screen (the browser in full-screen mode).
    index.resize_viewport(1280, 720).await;
    let panes = [
        index.frame("pane 01", "section.step-01 iframe"),
        index.frame("pane 02", "section.step-02 iframe"),
        index.frame("pane 03", "section.step-03 iframe"),
        index.frame("pane 03b", "section.step-03b iframe"),
        index.frame("pane 04", "section.step-04 iframe"),
        index.frame("pane 05", "section.step-05 iframe"),
    ];
    for pane in &panes {
        pane.wait_for_title("Workshop starts at ten").await;
        // Every pane shows its meter, 01 included, inside the pane.
        pane.meter().await;
        pane.wait_for(
            "the meter is in sight",
            "const box = document.querySelector('aside.meter').getBoundingClientRect(); \
             return box.height > 0 && box.top >= 0 && box.bottom <= innerHeight;",
            Value::Null,
        )
        .await;
    }

    // One post in the index's box...
    let title = "Posted once, seen six ways";
    index.type_into("#post #title", title).await;
    index.click("#post button[type=submit]").await;
    index
        .wait_for(
            "the index says it posted",
            "return document.getElementById('post-status').textContent.startsWith('Posted.') \
             || document.getElementById('post-status').textContent;",
            Value::Null,
        )
        .await;
    // ...shows in 03, 03b, 04 and 05 at once, in 02 at its next poll...
    for pane in &panes[1..] {
        pane.wait_for_title(title).await;
    }
    assert!(
        !panes[0].titles().await.iter().any(|shown| shown == title),
        "pane 01 shows the news without being loaded again"
    );
    // (The picture in the README: every era but 01 has the news.)
    let screenshot = index.screenshot("launcher").await;
    // ...and in 01 when its pane is loaded again.
    index.click("section.step-01 button.reload").await;
    panes[0].wait_for_title(title).await;

    // Each pane's meter counts its own way of finding out: 01 a whole page
    // per look (it was loaded twice)...
    wait_for_meter(&panes[0], "requests", "2").await;
    let meter = panes[0].meter().await;
    assert_ne!(meter.bytes, "0 B", "{}: {meter:?}", panes[0].name);
    // ...03b, 04 and 05 one request each, the stream or the socket. (A
    // pane below the window draws nothing, the browser skips its animation
    // frames: each is brought into sight first.)
    for (pane, number) in panes[3..].iter().zip(["03b", "04", "05"]) {
        index
            .run(
                "document.querySelector(`section.step-${arguments[0]}`).scrollIntoView();",
                json!(number),
            )
            .await;
        wait_for_meter(pane, "requests", "1").await;
        let meter = pane.meter().await;
        assert_eq!(meter.socket.as_deref(), Some("open"), "{}", pane.name);
    }
    index.run("window.scrollTo(0, 0);", Value::Null).await;
    // 02 asks again and again, news or not.
    panes[1]
        .wait_for(
            "the meter counts a second poll",
            "return Number(document.querySelector('aside.meter [data-meter=\"requests\"]').textContent) >= 2;",
            Value::Null,
        )
        .await;

    // The timeline under the post box: one lane per era, each with a dot
    // where that pane had the post. 01 had it last (only when loaded
    // again, after every other pane showed it), and the dots stand in the
    // order the panes had it.
    index
        .wait_for(
            "every lane of the timeline has its dot",
            "const lanes = document.querySelectorAll('#timeline g.timeline-lane');              const had = document.querySelectorAll('#timeline g.timeline-lane[data-had=yes] circle');              return (lanes.length === 6 && had.length === 6) || `${had.length} of ${lanes.length}`;",
            Value::Null,
        )
        .await;
    index.click("#timeline summary").await;
    let lanes = index
        .run(
            "return Array.from(document.querySelectorAll('#timeline g.timeline-lane'), (lane) => [\
             lane.dataset.step, Number(lane.dataset.at), \
             Number(lane.querySelector('circle').getAttribute('cx')), \
             lane.querySelector('.timeline-cost').textContent]);",
            Value::Null,
        )
        .await;
    let lanes: Vec<(String, f64, f64, String)> = serde_json::from_value(lanes).expect("lanes");
    let steps: Vec<&str> = lanes.iter().map(|lane| lane.0.as_str()).collect();
    assert_eq!(steps, ["01", "02", "03", "03b", "04", "05"]);
    let (first, others) = lanes.split_first().expect("lanes");
    for lane in others {
        assert!(
            lane.1 < first.1 && lane.2 < first.2,
            "{lane:?} after 01's {first:?}"
        );
    }
    let mut by_time = lanes.clone();
    by_time.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut by_place = lanes.clone();
    by_place.sort_by(|a, b| a.2.total_cmp(&b.2));
    let order = |lanes: &[(String, f64, f64, String)]| -> Vec<String> {
        lanes.iter().map(|lane| lane.0.clone()).collect()
    };
    assert_eq!(order(&by_time), order(&by_place), "{lanes:?}");
    // What it cost each: 01 a page load, 02 a poll at least; the pushing
    // eras, whose connection was open before the post, no request at all.
    assert!(first.3.contains(" 1 request,"), "{first:?}");
    assert!(!lanes[1].3.contains(" 0 requests"), "{:?}", lanes[1]);
    for lane in &lanes[2..] {
        assert!(lane.3.contains(" 0 requests,"), "{lane:?}");
    }
    index.screenshot("launcher-timeline").await;

    // The README shows this picture; `UPDATE_SCREENSHOTS=1` refreshes it.
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|value| value == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/launcher.png");
        fs::copy(&screenshot, &docs).expect("docs/launcher.png can be written");
    }
    browser.close().await;
    launcher.stop().await;
}

/// The screens the launcher's index must fit, the page filling each (the
/// browser in full-screen mode): a projector, a laptop, a large screen.
const SCREENS: [(u32, u32); 3] = [(1280, 720), (1440, 900), (1920, 1080)];

/// Each pane's frame, in order, for up to seven panes (01, 02, 03, 03b,
/// 04, 05 and 06, when Redis answers).
const PANE_FRAMES: [(&str, &str); 7] = [
    ("pane 1", ".panes > .pane:nth-child(1) iframe"),
    ("pane 2", ".panes > .pane:nth-child(2) iframe"),
    ("pane 3", ".panes > .pane:nth-child(3) iframe"),
    ("pane 4", ".panes > .pane:nth-child(4) iframe"),
    ("pane 5", ".panes > .pane:nth-child(5) iframe"),
    ("pane 6", ".panes > .pane:nth-child(6) iframe"),
    ("pane 7", ".panes > .pane:nth-child(7) iframe"),
];

/// In the index: `true` when every pane (its head and its frame) is inside
/// the window and the page does not scroll; otherwise what is not.
const PANES_IN_SIGHT: &str = "\
    const root = document.documentElement; \
    const [width, height] = [root.clientWidth, root.clientHeight]; \
    const outside = []; \
    if (root.scrollHeight > height) outside.push(`the page scrolls (${root.scrollHeight} px tall)`); \
    for (const pane of document.querySelectorAll('.panes > .pane')) { \
      const box = pane.querySelector('iframe').getBoundingClientRect(); \
      const head = pane.querySelector('.pane-head').getBoundingClientRect(); \
      if (box.height < 1 || head.top < 0 || box.left < 0 || box.right > width || box.bottom > height) \
        outside.push(`${pane.className} from ${Math.round(box.left)},${Math.round(head.top)} \
          to ${Math.round(box.right)},${Math.round(box.bottom)}`); \
    } \
    return outside.length === 0 || `in ${width}x${height}: ${outside.join('; ')}`;";

/// In a pane's page: `true` when its meter is inside the frame, and the
/// newest item shows whole above it; otherwise what is not.
const METER_IN_SIGHT: &str = "\
    const meter = document.querySelector('aside.meter').getBoundingClientRect(); \
    const item = document.querySelector('#items > article.item').getBoundingClientRect(); \
    if (meter.height < 1 || meter.top < 0 || meter.bottom > innerHeight || meter.right > innerWidth) \
      return `the meter is at ${meter.top}..${meter.bottom} in a frame ${innerWidth}x${innerHeight}`; \
    return (item.top >= 0 && item.bottom <= meter.top) \
      || `the newest item is at ${item.top}..${item.bottom}, the meter from ${meter.top}`;";

/// The smallest text a page shows, in CSS pixels.
const SMALLEST_TEXT: &str = "\
    const sizes = Array.from(document.querySelectorAll('body *')) \
      .filter((node) => node.checkVisibility() && Array.from(node.childNodes) \
        .some((child) => child.nodeType === Node.TEXT_NODE && child.textContent.trim())) \
      .map((node) => parseFloat(getComputedStyle(node).fontSize)); \
    return Math.min(...sizes);";

/// In the index: `true` when the pane matching `arguments[0]` fills the
/// window, its frame most of it, and its focus button is pressed;
/// otherwise where it is.
const PANE_FILLS_THE_WINDOW: &str = "\
    const pane = document.querySelector(arguments[0]); \
    const root = document.documentElement; \
    const box = pane.getBoundingClientRect(); \
    const frame = pane.querySelector('iframe').getBoundingClientRect(); \
    const pressed = pane.querySelector('button.focus').getAttribute('aria-pressed'); \
    const fills = box.left === 0 && box.top === 0 \
      && box.width === root.clientWidth && box.height === root.clientHeight \
      && frame.width * frame.height >= 0.8 * box.width * box.height; \
    return (pressed === 'true' && fills) \
      || `aria-pressed=${pressed}, the pane at ${box.left},${box.top} ${box.width}x${box.height}, \
          its frame ${frame.width}x${frame.height}, in ${root.clientWidth}x${root.clientHeight}`;";

/// Where the pane matching `arguments[0]` is: `[left, top, width, height]`.
const PANE_BOX: &str = "\
    const box = document.querySelector(arguments[0]).getBoundingClientRect(); \
    return [box.left, box.top, box.width, box.height];";

/// In the index: `true` when the pane matching `arguments[0][0]` is back
/// where `PANE_BOX` saw it (`arguments[0][1]`), its focus button not
/// pressed; otherwise where it is.
const BACK_IN_ITS_PLACE: &str = "\
    const pane = document.querySelector(arguments[0][0]); \
    const box = pane.getBoundingClientRect(); \
    const pressed = pane.querySelector('button.focus').getAttribute('aria-pressed'); \
    const back = JSON.stringify([box.left, box.top, box.width, box.height]) \
      === JSON.stringify(arguments[0][1]); \
    return (pressed === 'false' && back) \
      || `aria-pressed=${pressed}, the pane at ${box.left},${box.top} ${box.width}x${box.height}`;";

/// WebDriver's key code for Escape.
const ESCAPE: &str = "\u{E00C}";

#[tokio::test]
async fn the_launcher_fits_every_pane_and_its_meter_on_the_screen() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let launcher = Launcher::start(feed_with_news()).await;
    let index = browser.open("the index", &launcher.index).await;
    let panes = panes_of(&index).await;
    fits_every_screen(&index, &panes, "launcher").await;

    // On the projector, one pane can fill the screen, and give it back.
    index.resize_viewport(1280, 720).await;
    let pane = "section.step-03";
    let button = "section.step-03 button.focus";
    let before = index.run(PANE_BOX, json!(pane)).await;
    index.click(button).await;
    index
        .wait_for(
            "pane 03 fills the window",
            PANE_FILLS_THE_WINDOW,
            json!(pane),
        )
        .await;
    panes[2]
        .wait_for("its meter is in sight", METER_IN_SIGHT, Value::Null)
        .await;
    index.screenshot("launcher-focused").await;
    // Escape gives it back (the button kept the keyboard's focus)...
    index.type_into(button, ESCAPE).await;
    index
        .wait_for(
            "pane 03 is back in its place",
            BACK_IN_ITS_PLACE,
            json!([pane, before]),
        )
        .await;
    // ...and so does a second click; a double click on its head focuses it.
    index
        .run(
            "document.querySelector(arguments[0] + ' .pane-head') \
             .dispatchEvent(new MouseEvent('dblclick', { bubbles: true }));",
            json!(pane),
        )
        .await;
    index
        .wait_for(
            "pane 03 fills the window",
            PANE_FILLS_THE_WINDOW,
            json!(pane),
        )
        .await;
    index.click(button).await;
    index
        .wait_for(
            "pane 03 is back in its place",
            BACK_IN_ITS_PLACE,
            json!([pane, before]),
        )
        .await;
    index
        .wait_for("every pane is in sight again", PANES_IN_SIGHT, Value::Null)
        .await;

    browser.close().await;
    launcher.stop().await;
}

/// A tab for each pane of the index, in order.
async fn panes_of(index: &Tab) -> Vec<Tab> {
    let count = index
        .run(
            "return document.querySelectorAll('.panes > .pane').length;",
            Value::Null,
        )
        .await;
    let count = count.as_u64().expect("a number") as usize;
    assert!(count <= PANE_FRAMES.len(), "{count} panes");
    let panes: Vec<Tab> = PANE_FRAMES[..count]
        .iter()
        .map(|&(name, css)| index.frame(name, css))
        .collect();
    for pane in &panes {
        pane.wait_for_title("Workshop starts at ten").await;
    }
    panes
}

/// On each of the `SCREENS`, every pane of the index and its meter are in
/// sight, without scrolling, in text the back of the room can read; a
/// screenshot of each lands in `target/screenshots/NAME-WxH.png`.
async fn fits_every_screen(index: &Tab, panes: &[Tab], name: &str) {
    for (width, height) in SCREENS {
        index.resize_viewport(width, height).await;
        // Taken first, so that a test that fails shows why.
        index.screenshot(&format!("{name}-{width}x{height}")).await;
        index
            .wait_for(
                "every pane is in sight, the page does not scroll",
                PANES_IN_SIGHT,
                Value::Null,
            )
            .await;
        for pane in panes {
            pane.wait_for("its meter is in sight", METER_IN_SIGHT, Value::Null)
                .await;
        }
        // Read from the back of the room: no text under 12 px.
        for tab in std::iter::once(index).chain(panes) {
            let smallest = tab.run(SMALLEST_TEXT, Value::Null).await;
            let smallest = smallest.as_f64().expect("a size");
            assert!(
                smallest >= 12.0,
                "{} at {width}x{height}: text of {smallest} px",
                tab.name
            );
        }
    }
}

#[tokio::test]
async fn seven_panes_fit_on_the_screen_too() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    // As many panes as the launcher shows at most. Steps 03 and 05 run
    // twice, standing in for 03b and for 06 (whose Redis this test has
    // no say in).
    let numbers = ["1", "2", "3", "3", "4", "5", "5"];
    let launcher = Launcher::with_steps(feed_with_news(), &numbers).await;
    let index = browser.open("the index", &launcher.index).await;
    let panes = panes_of(&index).await;
    assert_eq!(panes.len(), 7);
    fits_every_screen(&index, &panes, "launcher-7-panes").await;
    browser.close().await;
    launcher.stop().await;
}

/// WebDriver's key codes for the arrow keys, Home and End.
const ARROW_RIGHT: &str = "\u{E014}";
const ARROW_LEFT: &str = "\u{E012}";
const HOME: &str = "\u{E011}";
const END: &str = "\u{E010}";

/// In the talk: which slide shows (1 for the first), and how many there are.
const CURRENT_SLIDE: &str = "\
    const slides = Array.from(document.querySelectorAll('.slide')); \
    const shown = slides.filter((slide) => slide.checkVisibility()); \
    return [slides.indexOf(shown[0]) + 1, shown.length, slides.length, \
      document.querySelector('.slide.current')?.dataset.step ?? null];";

#[tokio::test]
async fn the_talk_turns_with_the_arrow_keys_and_shows_the_eras_live() {
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let launcher = Launcher::start(feed_with_news()).await;
    let talk = browser
        .open("the talk", &format!("{}talk", launcher.index))
        .await;
    talk.resize_viewport(1280, 720).await;
    let slide = async || -> (u64, u64, u64, Option<String>) {
        serde_json::from_value(talk.run(CURRENT_SLIDE, Value::Null).await).expect("numbers")
    };
    // One slide at a time, the first to begin with; about fifteen.
    let (at, shown, total, _) = slide().await;
    assert_eq!((at, shown), (1, 1), "one slide shows, the first");
    assert!((12..=18).contains(&total), "{total} slides");
    talk.screenshot("talk-1").await;
    // The arrow keys turn them, Home and End go to either end.
    talk.type_into("body", ARROW_RIGHT).await;
    assert_eq!(slide().await.0, 2);
    talk.type_into("body", ARROW_LEFT).await;
    assert_eq!(slide().await.0, 1);
    talk.type_into("body", END).await;
    assert_eq!(slide().await.0, total);
    talk.type_into("body", HOME).await;
    assert_eq!(slide().await.0, 1);

    // Step 03's slide shows its page, live, with its wire view open: the
    // question the server holds is there.
    let mut step = None;
    for _ in 1..total {
        talk.type_into("body", ARROW_RIGHT).await;
        step = slide().await.3;
        if step.as_deref() == Some("03") {
            break;
        }
    }
    assert_eq!(step.as_deref(), Some("03"), "a slide is about step 03");
    let pane = talk.frame("the talk's pane 03", ".slide.current iframe");
    pane.wait_for_title("Workshop starts at ten").await;
    wait_for_an_open_row(&pane, "GET /news?since=").await;
    let open = pane
        .run(
            "return document.querySelector('details.wire').open;",
            Value::Null,
        )
        .await;
    assert_eq!(open, true, "the wire view is open on the slide");
    talk.screenshot("talk-03").await;

    // Printed, every slide is a page of its own.
    let pdf = talk.print().await;
    let pages = pdf
        .windows(b"/Type /Page".len() + 1)
        .filter(|bytes| bytes.starts_with(b"/Type /Page") && bytes.last() != Some(&b's'))
        .count();
    assert_eq!(pages as u64, total, "one page per slide");

    browser.close().await;
    launcher.stop().await;
}

/// A 48×48 PNG: an orange disc on blue.
const DISC_PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\
\x00\x00\x00\x30\x00\x00\x00\x30\x08\x02\x00\x00\x00\xd8\x60\x6e\xd0\x00\x00\x00\x8d\x49\x44\x41\
\x54\x78\xda\xed\xd8\xb1\x0d\x80\x30\x10\x43\x51\x2f\xc2\x04\xec\xc2\x24\x0c\x4c\xc9\x28\x69\x29\
\x48\x08\x51\xee\xe4\x48\x5f\xf2\x00\xaf\x3a\x9d\xad\xed\xb8\xac\x22\x40\x80\x00\x3d\x72\x9f\xfb\
\x6b\xb2\x41\x35\xc7\x14\x99\x82\x28\xc3\x2c\x85\x52\x06\x58\xca\xd1\xf4\x9b\x94\xa6\xe9\x34\x29\
\x53\xd3\x63\x52\xb2\xe6\xd3\xb4\x0e\x28\x4e\xd3\x36\x2d\x02\x8a\xd6\x34\x4c\x80\x06\x40\x39\x9a\
\x9a\x09\x10\x20\x40\x80\xb8\xd4\x6b\x82\xf8\x87\xf8\xa9\xe7\x80\xec\x6a\x90\x63\x51\x74\xac\xd2\
\x8e\x63\x83\xe3\x1c\x63\x3a\x58\x99\x4e\x7a\xac\xb0\x80\x00\xfd\x49\x01\x6f\xea\x2a\xe5\xaa\x6e\
\x54\x0f\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";

/// Joins a room through the page's "join a room" box, and waits until the
/// page shows that room.
async fn join(tab: &Tab, room: &str) {
    tab.type_into("#join-room input[name=room]", room).await;
    tab.click("#join-room button[type=submit]").await;
    tab.wait_for(
        &format!("the page shows #{room}"),
        "return document.getElementById('feed-title').textContent === 'Latest news in #' + arguments[0] \
         || document.querySelector('.form-status').textContent;",
        json!(room),
    )
    .await;
}

/// The titles in the list the page shows (in step 05: the room shown).
async fn shown_titles(tab: &Tab) -> Vec<String> {
    let titles = tab
        .run(
            "return Array.from(document.querySelectorAll('.items:not([hidden]) > article.item .item-title'), \
             (title) => title.textContent);",
            Value::Null,
        )
        .await;
    serde_json::from_value(titles).expect("a list of strings")
}

/// Waits until the list the page shows has an item titled `title`.
async fn wait_for_shown_title(tab: &Tab, title: &str) {
    tab.wait_for(
        &format!("the room shown lists {title:?}"),
        "return Array.from(document.querySelectorAll('.items:not([hidden]) > article.item .item-title'))\
         .some((node) => node.textContent === arguments[0]);",
        json!(title),
    )
    .await;
}

/// What is posted while the server is down, oldest first.
const MISSED: [&str; 2] = ["Posted while the page was away", "And once more while away"];

/// Stops the step under the open page, and waits for its meter to say so
/// (`away`: `closed (1001)` for a socket closed as going away,
/// `reconnecting` for an event stream that ended); posts into its feed
/// meanwhile, and starts it again on the same port with the same feed: the
/// page comes back by itself and shows exactly what it missed, once each,
/// without a reload and without a reset. Returns the step, running again.
async fn restart_with_the_same_feed<F, Fut>(
    tab: &Tab,
    server: Running,
    run: F,
    away: &str,
) -> Running
where
    F: FnOnce(TcpListener, Feed, Shutdown) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let (addr, feed) = (server.addr, server.feed.clone());
    let before = tab.titles().await;
    tab.mark().await;
    // Every state the meter's WebSocket row goes through, in order.
    tab.run(
        "const state = document.querySelector('aside.meter [data-meter=\"socket\"]'); \
         window.__socketStates = [state.textContent]; \
         new MutationObserver(() => window.__socketStates.push(state.textContent)) \
           .observe(state, { childList: true, characterData: true, subtree: true });",
        Value::Null,
    )
    .await;

    server.stop().await;
    tab.wait_for(
        &format!("the meter says the server went away: {away:?}"),
        "return window.__socketStates.includes(arguments[0]) || window.__socketStates.join(', ');",
        json!(away),
    )
    .await;
    for title in MISSED {
        feed.post(NewPost {
            title: title.into(),
            body: "The page was not connected.".into(),
        });
    }
    let server = start_on(addr, feed, run).await;

    tab.wait_for_title(MISSED[1]).await;
    let mut expected: Vec<String> = MISSED.iter().rev().map(|&title| title.into()).collect();
    expected.extend(before);
    assert_eq!(tab.titles().await, expected, "{}", tab.name);
    assert!(tab.same_page().await, "{} was not reloaded", tab.name);
    let status = tab
        .run(
            "return document.querySelector('.form-status').textContent;",
            Value::Null,
        )
        .await;
    assert_eq!(status, "", "{}: no reset, no message", tab.name);
    wait_for_meter(tab, "socket", "open").await;
    server
}

/// Stops the step, and starts it again on the same port with a new feed
/// (as a real restart would: its history was in memory): the page comes
/// back, cannot resume from its cursor, and shows the new feed instead of
/// what it had. Then stops the step.
async fn restart_with_a_new_feed<F, Fut>(tab: &Tab, server: Running, run: F)
where
    F: FnOnce(TcpListener, Feed, Shutdown) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let addr = server.addr;
    server.stop().await;
    let fresh = Feed::new(1_000);
    fresh.post(news::validate("A new feed after the restart", "").expect("a valid post"));
    let server = start_on(addr, fresh, run).await;

    tab.wait_for(
        "the list shows the new feed, and only it",
        "const titles = Array.from(document.querySelectorAll('#items > article.item .item-title'), \
           (node) => node.textContent); \
         return titles.length === 1 && titles[0] === arguments[0] || titles.join(' / ');",
        json!("A new feed after the restart"),
    )
    .await;
    assert!(tab.same_page().await, "{} was not reloaded", tab.name);
    let status = tab
        .run(
            "return document.querySelector('.form-status').textContent;",
            Value::Null,
        )
        .await;
    // 04 says it of its one feed; 05 names the room.
    let said = [
        "The feed was reset: showing the latest news.",
        "#general was reset: showing its latest news.",
    ];
    assert!(
        said.contains(&status.as_str().unwrap_or("")),
        "{}: {status}",
        tab.name
    );
    server.stop().await;
}

/// Starts a step on `addr`, where it ran before it stopped: the open page
/// knows only that address. (The port is free again as soon as the old
/// listener is closed; the wait is for the rare case it is not yet.)
async fn start_on<F, Fut>(addr: SocketAddr, feed: Feed, run: F) -> Running
where
    F: FnOnce(TcpListener, Feed, Shutdown) -> Fut,
    Fut: Future<Output = io::Result<()>> + Send + 'static,
{
    let mut listener = None;
    support::wait_until(&format!("{addr} is free again"), async || {
        listener = TcpListener::bind(addr).await.ok();
        listener.is_some()
    })
    .await;
    let listener = listener.expect("bound");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(listener, feed.clone(), shutdown.clone()));
    Running {
        addr,
        feed,
        shutdown,
        task,
    }
}

/// The launcher (`cargo run`) on free ports, with steps 01 to 05 (03b
/// included).
struct Launcher {
    /// `http://127.0.0.1:PORT/`, the index.
    index: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Launcher {
    async fn start(feed: Feed) -> Launcher {
        Launcher::with_steps(feed, &["1", "2", "3", "3b", "4", "5"]).await
    }

    /// The launcher with the steps numbered (a number may come twice).
    async fn with_steps(feed: Feed, numbers: &[&str]) -> Launcher {
        let numbers: Vec<String> = numbers.iter().map(|&number| number.to_owned()).collect();
        let mut steps = Vec::new();
        for step in workshop::select(&numbers).expect("the steps exist") {
            let listener = TcpListener::bind("127.0.0.1:0").await;
            steps.push((step, listener.expect("a free port on loopback")));
        }
        let index = TcpListener::bind("127.0.0.1:0").await;
        let index = index.expect("a free port on loopback");
        let url = format!("http://{}/", index.local_addr().expect("an address"));
        let shutdown = Shutdown::new();
        let listeners = workshop::Listeners { index, steps };
        let task = tokio::spawn(workshop::serve(listeners, feed, shutdown.clone()));
        Launcher {
            index: url,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        ended
            .expect("the launcher stops within 10 s")
            .expect("the launcher did not panic")
            .expect("the launcher ended cleanly");
    }
}

/// Step 06 on `redis`, with a key prefix of its own.
async fn redis_step(redis: &support::redis_server::RedisServer) -> Running {
    let options = redis_rooms::Options {
        redis: redis.url.clone(),
        redis_prefix: format!("browser-{}", &shared::token::random()[..12]),
        admin_token: Some("a-long-enough-admin-token".into()),
        ..Default::default()
    };
    support::start_with_feed(Feed::new(1_000), |listener, feed, shutdown| {
        redis_rooms::run(listener, feed, options, shutdown)
    })
    .await
}

#[tokio::test]
async fn step_06_says_when_its_redis_is_away_and_comes_back_by_itself() {
    let Some(mut redis) = support::redis_server::RedisServer::own() else {
        return;
    };
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = redis_step(&redis).await;
    let page = browser.open("the page", &server.url("/")).await;
    wait_for_meter(&page, "socket", "open").await;

    // Redis stops: the socket closes with 1013, and every reconnect is
    // refused (503, which the browser reports as 1006). The page keeps
    // saying why, instead of a bare close code.
    redis.stop();
    let status = "return document.querySelector('.form-status').textContent;";
    page.wait_for(
        "the page says the server lost Redis",
        "return document.querySelector('.form-status').textContent\
         .includes('Redis');",
        Value::Null,
    )
    .await;
    page.wait_for(
        "a refused reconnect (1006) still says why",
        "return /Disconnected \\(1006\\): .*Redis.*Reconnecting by itself/\
         .test(document.querySelector('.form-status').textContent);",
        Value::Null,
    )
    .await;

    // Redis is back: the page reconnects by itself, the message goes, and
    // a post goes through.
    redis.start();
    wait_for_meter(&page, "socket", "open").await;
    page.wait_for(
        "the message is gone",
        "return !document.querySelector('.form-status').textContent.startsWith('Disconnected');",
        Value::Null,
    )
    .await;
    let shown = page.run(status, Value::Null).await;
    assert!(!shown.as_str().unwrap_or("").contains("Redis"), "{shown}");
    page.post("Redis is back", "").await;
    wait_for_shown_title(&page, "Redis is back").await;
    browser.close().await;
    server.stop().await;
}

/// Redis stalls for 3 s (SIGSTOP) while a post is on its way. Redis runs
/// it when it wakes up, but the server, with no answer within 2 s, can only
/// say that nobody knows whether it was stored, and closes the socket (it
/// lost Redis). The page reconnects by itself and sends the post again
/// with its key: the server answers the id of the item Redis stored, and
/// the item shows once.
#[tokio::test]
async fn step_06_sends_a_post_again_after_redis_stalls_and_shows_it_once() {
    let Some(mut redis) = support::redis_server::RedisServer::own() else {
        return;
    };
    let Some(mut browser) = Browser::launch().await else {
        return;
    };
    let server = redis_step(&redis).await;
    let page = browser.open("the page", &server.url("/")).await;
    wait_for_meter(&page, "socket", "open").await;
    // The first post loads post.lua into Redis, as in life.
    page.post("Before the stall", "").await;
    wait_for_shown_title(&page, "Before the stall").await;

    redis.pause();
    page.type_into("form.post-form #title", "During the stall")
        .await;
    page.click("form.post-form button[type=submit]").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.resume();
    page.wait_for(
        "the page says it posted",
        "return document.querySelector('.form-status').textContent.startsWith('Posted') \
         || document.querySelector('.form-status').textContent;",
        Value::Null,
    )
    .await;
    let shown = page
        .run(
            "return Array.from(document.querySelectorAll('.items:not([hidden]) > article.item .item-title'))\
             .filter((node) => node.textContent === arguments[0]).length;",
            json!("During the stall"),
        )
        .await;
    assert_eq!(shown, 1, "the item shows once");
    browser.close().await;
    server.stop().await;
}
