//! The launcher: every step answers on its port, they share one feed, the
//! index posts into it, and one shutdown signal ends them all.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header;
use serde_json::json;
use shared::Feed;
use shared::Shutdown;
use support::Running;
use support::api;
use support::sse;
use support::ws;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The launcher on free ports: where each of its servers listens.
struct Launcher {
    index: String,
    /// Each step but 06 by number (`"03b"`), and its `http://127.0.0.1:PORT`,
    /// in order.
    steps: Vec<(&'static str, String)>,
    feed: Feed,
    shutdown: Shutdown,
    task: JoinHandle<std::io::Result<()>>,
}

async fn launch() -> Launcher {
    let index = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut steps = Vec::new();
    // Step 06 needs a Redis server: tests/redis.rs tries it against one.
    for step in workshop::select(&[]).unwrap() {
        if step.number != "06" {
            steps.push((step, TcpListener::bind("127.0.0.1:0").await.unwrap()));
        }
    }
    let urls = steps
        .iter()
        .map(|(step, listener)| {
            let url = format!("http://{}", listener.local_addr().unwrap());
            (step.number, url)
        })
        .collect();
    let index_url = format!("http://{}", index.local_addr().unwrap());
    let feed = Feed::starting_at(1_000, 0, support::fixed_clock);
    let shutdown = Shutdown::new();
    let listeners = workshop::Listeners { index, steps };
    let task = tokio::spawn(workshop::serve(listeners, feed.clone(), shutdown.clone()));
    Launcher {
        index: index_url,
        steps: urls,
        feed,
        shutdown,
        task,
    }
}

impl Launcher {
    /// `http://127.0.0.1:PORT` of step `number` (`"03b"`).
    fn url(&self, number: &str) -> &str {
        let (_, url) = self
            .steps
            .iter()
            .find(|(step, _)| *step == number)
            .expect("the launcher runs that step");
        url
    }

    /// One step as a [`Running`], for the helpers the step tests use.
    fn step(&self, number: &str) -> Running {
        Running {
            addr: self
                .url(number)
                .trim_start_matches("http://")
                .parse()
                .unwrap(),
            feed: self.feed.clone(),
            shutdown: self.shutdown.clone(),
            task: tokio::spawn(async { Ok(()) }),
        }
    }
}

#[tokio::test]
async fn every_port_answers_with_its_step() {
    let launcher = launch().await;
    let client = support::client();
    let numbers: Vec<&str> = launcher.steps.iter().map(|(number, _)| *number).collect();
    assert_eq!(numbers, ["01", "02", "03", "03b", "04", "05"]);
    for (number, url) in &launcher.steps {
        let page = client.get(format!("{url}/")).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "step {number}");
        let text = page.text().await.unwrap();
        assert!(
            text.contains(&format!("<body class=\"step-{number}\">")),
            "step {number}"
        );
    }
    let index = client
        .get(format!("{}/", launcher.index))
        .send()
        .await
        .unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let index = index.text().await.unwrap();
    for (_, url) in &launcher.steps {
        let port = url.rsplit(':').next().unwrap();
        assert!(
            index.contains(&format!(":{port}/\" title=\"Step")),
            "a pane for port {port}"
        );
    }
    launcher.shutdown.trigger();
    launcher.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_post_through_one_step_is_seen_through_every_other() {
    let launcher = launch().await;
    // 03b's event stream and the sockets of 04 and 05 first, to see the
    // post pushed.
    let mut stream = sse::open(&launcher.step("03b"), "/events?since=0", None).await;
    assert_eq!(stream.status, StatusCode::OK);
    let mut socket4 = ws::connect(&launcher.step("04"), "/ws?since=0").await;
    ws::next_json(&mut socket4).await;
    let mut socket5 = ws::connect(&launcher.step("05"), "/ws?since=0").await;
    ws::next_json(&mut socket5).await;

    // Posted as a form to step 01...
    let response = support::client()
        .post(format!("{}/news", launcher.url("01")))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("title=Hello+from+1995")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // ...seen by 02's poll, 03's long poll, 03b's stream, 04's and 05's
    // sockets.
    let (_, answer) = api::get_json(&launcher.step("02"), "/news?since=0").await;
    assert_eq!(answer["items"][0]["title"], "Hello from 1995");
    let (_, answer) = api::get_json(&launcher.step("03"), "/news?since=0&timeout=1").await;
    assert_eq!(answer["items"][0]["title"], "Hello from 1995");
    let event = stream.next_event().await;
    assert_eq!(
        (event.event.as_str(), event.data["title"].as_str()),
        ("news", Some("Hello from 1995"))
    );
    let news = ws::next_json(&mut socket4).await;
    assert_eq!(news["item"]["title"], "Hello from 1995");
    let news = ws::next_json(&mut socket5).await;
    assert_eq!(
        (news["room"].as_str(), news["item"]["title"].as_str()),
        (Some("general"), Some("Hello from 1995"))
    );

    // And a post on 05's socket reaches step 01's page.
    ws::send_json(
        &mut socket5,
        json!({ "type": "post", "ref": 1, "room": "general", "title": "Hello from the 2010s" }),
    )
    .await;
    support::wait_until("05's post is stored", async || launcher.feed.cursor() == 2).await;
    let page = support::page(format!("{}/", launcher.url("01"))).await;
    assert!(page.contains("Hello from the 2010s"));

    launcher.shutdown.trigger();
    launcher.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_index_posts_into_the_shared_feed() {
    let launcher = launch().await;
    let client = support::client();
    let origin = launcher.index.clone();
    let response = client
        .post(format!("{}/news", launcher.index))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, origin)
        .body(r#"{"title":"From the index"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(launcher.feed.latest(1)[0].title, "From the index");

    let refused = client
        .post(format!("{}/news", launcher.index))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ORIGIN, "http://evil.example")
        .body(r#"{"title":"forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let invalid = client
        .post(format!("{}/news", launcher.index))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"title":"  "}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(launcher.feed.cursor(), 1, "nothing else was stored");

    // The largest valid post fits through the index's post box too.
    let index = Running {
        addr: launcher
            .index
            .trim_start_matches("http://")
            .parse()
            .unwrap(),
        feed: launcher.feed.clone(),
        shutdown: launcher.shutdown.clone(),
        task: tokio::spawn(async { Ok(()) }),
    };
    api::the_largest_json_post_is_stored(&index).await;

    launcher.shutdown.trigger();
    launcher.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_index_links_to_the_talk_and_the_launcher_serves_it() {
    let launcher = launch().await;
    let index = support::page(&launcher.index).await;
    assert!(index.contains(r#"href="/talk""#), "{index}");

    let response = support::client()
        .get(format!("{}/talk", launcher.index))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let talk = response.text().await.unwrap();
    // About fifteen slides; each era the launcher runs has one with its
    // live page in a frame, on the step's own port.
    let slides = talk.matches(r#"<section class="slide"#).count();
    assert!((12..=18).contains(&slides), "{slides} slides");
    for (number, url) in &launcher.steps {
        let slide = format!(r#"data-step="{number}""#);
        assert!(talk.contains(&slide), "no slide for step {number}");
        let frame = format!(r#"<iframe src="{url}/""#);
        assert!(talk.contains(&frame), "no live page of step {number}");
    }
    // Step 06 does not run here (no Redis for this launcher): its slide
    // says so instead.
    assert!(talk.contains("Step 06 is not running here"));
    launcher.shutdown.trigger();
    launcher.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_ends_every_step_even_with_clients_waiting() {
    let launcher = launch().await;
    // A parked long poll, an event stream and an open socket: all must let
    // go.
    let parked = tokio::spawn({
        let url = format!("{}/news?since=0", launcher.url("03"));
        async move { support::client().get(url).send().await.map(|r| r.status()) }
    });
    let mut stream = sse::open(&launcher.step("03b"), "/events?since=0", None).await;
    stream.next_block().await;
    let mut socket = ws::connect(&launcher.step("04"), "/ws?since=0").await;
    ws::next_json(&mut socket).await;
    support::wait_until("the long poll is parked", async || {
        let (_, stats) = api::get_json(&launcher.step("03"), "/stats").await;
        stats["parked"] == 1
    })
    .await;

    launcher.shutdown.trigger();
    let ended = tokio::time::timeout(Duration::from_secs(10), launcher.task).await;
    ended
        .expect("every step ends within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(parked.await.unwrap().unwrap(), StatusCode::OK);
    stream.ends().await;
    assert_eq!(
        ws::close_code(&mut socket).await.0,
        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away
    );
    for (_, url) in &launcher.steps {
        let refused = support::client().get(format!("{url}/")).send().await;
        assert!(refused.is_err(), "{url} no longer answers");
    }
}

#[tokio::test]
async fn steps_are_chosen_by_number() {
    let chosen: Vec<_> = workshop::select(&["1".into(), "3b".into(), "04".into()])
        .unwrap()
        .iter()
        .map(|step| step.slug)
        .collect();
    assert_eq!(
        chosen,
        ["01-form-post", "03b-server-sent-events", "04-websocket"]
    );
    assert_eq!(
        workshop::select(&["9".into()]).unwrap_err(),
        "there is no step 9; the steps are 1, 2, 3, 3b, 4, 5, 6"
    );
    assert!(workshop::select(&["03b".into()]).is_ok());
}

#[tokio::test]
async fn a_port_in_use_is_named_with_the_flag_that_changes_it() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = taken.local_addr().unwrap().port();
    let error = workshop::bind("127.0.0.1", base, &[])
        .await
        .err()
        .expect("the port is taken");
    let message = error.to_string();
    assert!(
        message.contains(&format!("port {base} is already in use")),
        "{message}"
    );
    assert!(message.contains("--base-port"), "{message}");
}

#[tokio::test]
async fn step_nn_listens_on_base_plus_nn_and_03b_on_base_plus_13() {
    // A base port whose steps 03 and 03b ports are free too.
    let base = loop {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = free.local_addr().unwrap().port();
        drop(free);
        let taken = |offset| async move {
            TcpListener::bind(("127.0.0.1", base + offset))
                .await
                .is_err()
        };
        if base < 65_000 && !taken(3).await && !taken(13).await {
            break base;
        }
    };
    let steps = workshop::select(&["3".into(), "3b".into()]).unwrap();
    let listeners = workshop::bind("127.0.0.1", base, &steps).await.unwrap();
    let ports: Vec<(&str, u16)> = listeners
        .steps
        .iter()
        .map(|(step, listener)| (step.number, listener.local_addr().unwrap().port()))
        .collect();
    assert_eq!(ports, [("03", base + 3), ("03b", base + 13)]);
    assert_eq!(listeners.index.local_addr().unwrap().port(), base);
}

/// `cargo run`'s binary, as a leader starts it: it serves, labels each
/// line of its log with the step it comes from, counts posts by
/// `--post-limit`, takes posts from a page served through an HTTPS tunnel
/// it was told of with `--allowed-host`, and stops with exit code 0 on
/// Ctrl-C.
#[tokio::test]
async fn the_binary_labels_its_log_limits_posts_and_stops_on_ctrl_c() {
    use std::io::Read;
    use std::process::Stdio;

    // A base port whose step 02 port is free too.
    let base = loop {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = free.local_addr().unwrap().port();
        if base < 65_000 && TcpListener::bind(("127.0.0.1", base + 2)).await.is_ok() {
            break base;
        }
    };
    let mut launcher = std::process::Command::new(env!("CARGO_BIN_EXE_workshop"))
        .args(["--steps", "2", "--post-limit", "3"])
        .args(["--allowed-host", "tunnel.example"])
        .args(["--base-port", &base.to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the launcher starts");
    let step = Running {
        addr: ([127, 0, 0, 1], base + 2).into(),
        feed: Feed::new(10),
        shutdown: Shutdown::new(),
        task: tokio::spawn(async { Ok(()) }),
    };
    support::wait_until("step 02 answers", async || {
        support::client().get(step.url("/")).send().await.is_ok()
    })
    .await;

    for i in 0..2 {
        let response = api::post_json(&step, &json!({ "title": format!("{i}") }).to_string()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    // A page served through the tunnel: `https://tunnel.example`, and the
    // tunnel passes its name on in `Host`.
    let through_tunnel = support::client()
        .post(step.url("/news"))
        .header(header::HOST, "tunnel.example")
        .header(header::ORIGIN, "https://tunnel.example")
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"title":"through the tunnel"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(through_tunnel.status(), StatusCode::CREATED);
    let response = api::post_json(&step, r#"{"title":"one too many"}"#).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("at most 3 in 10 seconds")
    );

    let pid = launcher.id() as libc::pid_t;
    // SAFETY: kill only sends a signal to the process we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let stopped = tokio::time::Instant::now();
    let status = loop {
        if let Some(status) = launcher.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(5) {
            launcher.kill().unwrap();
            panic!("the launcher did not stop within 5 s of Ctrl-C");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");

    let mut log = String::new();
    let mut stdout = launcher.stdout.take().unwrap();
    stdout.read_to_string(&mut log).unwrap();
    assert!(log.contains("02: POST /news 201 Created"), "{log}");
    assert!(
        log.contains("02: POST /news 429 Too Many Requests"),
        "{log}"
    );
}
