//! The simulated pages: one function per era, each speaking exactly what
//! the step's page speaks (its `templates/index.html`), minus the drawing.
//!
//! - 02 asks `GET /news?since=CURSOR` every interval, sending the ETag of
//!   its last 200 in `If-None-Match`, so an unchanged feed answers `304`.
//! - 03 asks the same, and the server holds the question until there is
//!   news (or 25 s pass); the page asks again the moment it has an answer.
//! - 03b opens `GET /events?since=CURSOR` once, and reads one `news` event
//!   per item (or a `reset`) from the answer that never ends.
//! - 04 opens `GET /ws?since=CURSOR` with the page's `Origin`, reads the
//!   `snapshot`, then one `news` frame per item.
//!
//! Every page starts from the cursor the server rendered into the page
//! (`data-cursor`), records each item's id and the instant it parsed it,
//! and stops when told to. An error ends the page and fails the run: a
//! browser would retry, but a benchmark that needs retries has found a bug.
//!
//! - 05 and 06 open `/ws` too, and speak the rooms protocol of
//!   `/rooms.js`: the socket starts in `general`, whose `joined` carries
//!   what came after the cursor, then `{"type":"news","room":R,"item":{...}}`
//!   per item. A page given a room of its own (the isolation check of
//!   `capacity`) sends `{"type":"join","room":R}`, waits for its `joined`,
//!   then `leave`s `general`, so that it is in that one room only. A `news`
//!   from a room the page is not in fails the page at once.
//!
//! To add an era: a variant of [`Era`] (and its `serve-NN` command in
//! `main.rs`), its flags in [`Era::flags`], and a page function here.

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::events;
use crate::events::Events;
use crate::socket::Socket;
use crate::swarm::Crowd;
use crate::wire::Http;
use crate::wire::Tally;
use crate::wire::Target;

/// The eras the bench can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Era {
    /// 02: the page asks every interval.
    #[value(name = "02")]
    XhrPolling,
    /// 03: the server holds the question until there is news.
    #[value(name = "03")]
    LongPolling,
    /// 03b: one answer that never ends, an event per item.
    #[value(name = "03b")]
    ServerSentEvents,
    /// 04: one WebSocket, the server pushes.
    #[value(name = "04")]
    WebSocket,
    /// 05: one WebSocket, many rooms.
    #[value(name = "05")]
    Rooms,
    /// 06: step 05's rooms in Redis, two servers at once.
    #[value(name = "06")]
    Redis,
}

impl Era {
    pub const ALL: [Era; 6] = [
        Era::XhrPolling,
        Era::LongPolling,
        Era::ServerSentEvents,
        Era::WebSocket,
        Era::Rooms,
        Era::Redis,
    ];

    /// How many servers of the step a run starts: step 06 is about more
    /// than one, so it gets two, sharing one Redis.
    pub fn instances(self) -> usize {
        if self == Era::Redis { 2 } else { 1 }
    }

    /// The step's folder and binary name.
    pub fn slug(self) -> &'static str {
        self.step().slug
    }

    /// `03 Long polling`: how tables and charts name the era.
    pub fn label(self) -> String {
        let step = self.step();
        format!("{} {}", step.number, step.name)
    }

    /// Its number alone, `03`.
    pub fn number(self) -> &'static str {
        self.step().number
    }

    fn step(self) -> &'static shared::steps::Step {
        match self {
            Era::XhrPolling => xhr_polling::STEP,
            Era::LongPolling => long_polling::STEP,
            Era::ServerSentEvents => server_sent_events::STEP,
            Era::WebSocket => websocket::STEP,
            Era::Rooms => rooms::STEP,
            Era::Redis => redis_rooms::STEP,
        }
    }

    /// The hidden subcommand that runs this step in a child process.
    pub fn serve_command(self) -> &'static str {
        match self {
            Era::XhrPolling => "serve-02",
            Era::LongPolling => "serve-03",
            Era::ServerSentEvents => "serve-03b",
            Era::WebSocket => "serve-04",
            Era::Rooms => "serve-05",
            Era::Redis => "serve-06",
        }
    }

    /// The step's flags for a run of the bench (after `--port 0`).
    pub fn flags(self, flags: &StepFlags) -> Vec<String> {
        let mut args = vec!["--history".to_string(), flags.history.to_string()];
        match self {
            Era::XhrPolling => args.extend(["--interval".into(), flags.interval_ms.to_string()]),
            Era::LongPolling => args.extend(["--max-parked".into(), flags.max_parked.to_string()]),
            Era::ServerSentEvents => {
                args.extend(["--max-streams".into(), flags.max_parked.to_string()])
            }
            // The default heartbeat (a ping every 20 s) is part of the era.
            Era::WebSocket | Era::Rooms => {}
            Era::Redis => {
                let (url, prefix) = flags
                    .redis
                    .clone()
                    .expect("a run of 06 starts a Redis first");
                args.extend(["--redis".into(), url, "--redis-prefix".into(), prefix]);
            }
        }
        args
    }

    /// Runs one simulated page of this era until `stop` fires.
    pub async fn page(self, client: Client, stop: Stop) -> ClientLog {
        match self {
            Era::XhrPolling => polling(client, stop).await,
            Era::LongPolling => long_polling(client, stop).await,
            Era::ServerSentEvents => server_sent_events(client, stop).await,
            Era::WebSocket => websocket(client, stop).await,
            Era::Rooms | Era::Redis => rooms(client, stop).await,
        }
    }

    /// Waits until `n` pages are really listening. A long poll is only
    /// waiting once the server has parked it, which the client cannot see;
    /// step 03's `/stats` can. The other eras are ready when their pages
    /// say so.
    pub async fn settle(self, target: &Target, n: usize, limit: Duration) -> Result<(), String> {
        if self != Era::LongPolling {
            return Ok(());
        }
        let deadline = Instant::now() + limit;
        let mut probe = Http::connect(target, &Arc::default()).await?;
        loop {
            let answer = probe.get("/stats", None).await?;
            let stats: Stats = serde_json::from_slice(&answer.body)
                .map_err(|error| format!("/stats is not the JSON expected: {error}"))?;
            if stats.parked >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {n} long polls are parked after {limit:?}",
                    stats.parked
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The flags a run passes to the step.
pub struct StepFlags {
    /// Items the feed keeps: enough that no page of the run falls behind it.
    pub history: usize,
    /// 02: how often a page polls, in milliseconds.
    pub interval_ms: u64,
    /// 03: how many long polls may wait at once; 03b: how many streams may
    /// be open.
    pub max_parked: usize,
    /// 06: the Redis URL and a key prefix of this run's own.
    pub redis: Option<(String, String)>,
}

/// Step 03's `/stats`, the part the bench reads.
#[derive(Deserialize)]
struct Stats {
    parked: usize,
}

/// Fires when the run is over. Each page has its own: watching a channel
/// of one's own costs nothing, where thousands of pages watching one shared
/// channel would queue up on its lock with every message they read.
pub type Stop = oneshot::Receiver<()>;

/// What one simulated page is given.
pub struct Client {
    /// Which page of the crowd this is.
    pub index: usize,
    pub target: Target,
    /// The cursor the page was rendered with: it asks for what came after.
    pub cursor: u64,
    /// Where pages report progress, shared with the bench.
    pub crowd: Arc<Crowd>,
    /// 02 only: the polling interval, and how long this page waits before
    /// its first poll (pages are opened at different moments, so their
    /// polls are spread over the interval).
    pub interval: Duration,
    pub first_wait: Duration,
    /// How many items the page will get, to make room for their records.
    pub items: usize,
    /// 05 and 06: the one room this page is in instead of `general`, for
    /// the isolation check; `None` for a page that stays in `general`.
    pub room: Option<Arc<str>>,
    /// The page stops reading while the crowd dozes (see
    /// [`Crowd::doze`]): a tab in the background, a phone in a tunnel.
    pub sleepy: bool,
}

/// What one page saw.
pub struct ClientLog {
    /// Every item id, in the order the page parsed them, and when.
    pub got: Vec<(u64, Instant)>,
    pub tally: Arc<Tally>,
    /// Answers that said "reset": the server could not vouch for the cursor.
    pub resets: Vec<Reset>,
    /// Why the page ended early, if it did.
    pub error: Option<String>,
}

/// One reset a page got: the server's latest items, to show *instead of*
/// what the page had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    /// Where in [`ClientLog::got`] the reset's items begin...
    pub at: usize,
    /// ...and how many there are.
    pub items: usize,
    /// The cursor it came with: the newest id the server had then.
    pub cursor: u64,
}

/// The state of a page while it runs.
struct Page<'a> {
    client: &'a Client,
    log: ClientLog,
    newest: u64,
}

impl<'a> Page<'a> {
    fn new(client: &'a Client) -> Page<'a> {
        Page {
            client,
            log: ClientLog {
                got: Vec::with_capacity(client.items),
                tally: Arc::default(),
                resets: Vec::new(),
                error: None,
            },
            newest: client.cursor,
        }
    }

    /// The page is connected and will see whatever is posted from now on.
    fn ready(&self) {
        self.client.crowd.ready(self.client.index, self.newest);
    }

    /// Shows a batch (what came after the cursor, or a reset) with its
    /// cursor.
    fn batch(&mut self, items: &[Id], reset: bool, cursor: Option<u64>) {
        if reset {
            self.log.resets.push(Reset {
                at: self.log.got.len(),
                items: items.len(),
                cursor: cursor.unwrap_or_default(),
            });
            self.newest = self.newest.max(cursor.unwrap_or_default());
        }
        self.show(items);
    }

    /// Waits while the crowd dozes, if this page is one that sleeps.
    async fn nap(&self) {
        if self.client.sleepy {
            self.client.crowd.awake().await;
        }
    }

    /// Shows items: records them, and tells the bench how far this page got.
    fn show(&mut self, items: &[Id]) {
        let at = Instant::now();
        for item in items {
            self.log.got.push((item.id, at));
            self.newest = self.newest.max(item.id);
        }
        if !items.is_empty() {
            self.client.crowd.seen(self.client.index, self.newest);
        }
    }

    fn end(mut self, result: Result<(), String>) -> ClientLog {
        if let Err(error) = result {
            self.client.crowd.failed();
            self.log.error = Some(error);
        }
        self.log
    }
}

/// An item as the bench reads it: only the id matters here; the parser
/// still walks the whole item, as the page's `JSON.parse` does.
#[derive(Deserialize)]
pub struct Id {
    pub id: u64,
}

/// `{"items":[...],"cursor":N}` or with `"reset":true` (02 and 03).
#[derive(Deserialize)]
struct Batch {
    items: Vec<Id>,
    cursor: u64,
    #[serde(default)]
    reset: bool,
}

/// Any message on `/ws`: `snapshot` (04) and `joined` (05) have `items`,
/// `news` has `item`; in 05 each names its `room`.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    items: Vec<Id>,
    item: Option<Id>,
    #[serde(default)]
    reset: bool,
    #[serde(borrow)]
    room: Option<&'a str>,
    cursor: Option<u64>,
    #[serde(rename = "ref")]
    reference: Option<u64>,
}

/// The message types the protocols of steps 04 to 06 define. A page
/// ignores any other type (an exercise may add one: who is online, say),
/// and so do these pages; one of these where it does not belong is an error.
const PROTOCOL: [&str; 9] = [
    "snapshot",
    "news",
    "posted",
    "error",
    "joined",
    "left",
    "presence",
    "rooms",
    "announced",
];

/// Step 02: ask every interval; `304 Not Modified` while nothing changed.
async fn polling(client: Client, mut stop: Stop) -> ClientLog {
    let mut page = Page::new(&client);
    let result = async {
        let mut http = {
            let _permit = client.crowd.connecting().await;
            Http::connect(&client.target, &page.log.tally).await?
        };
        page.ready();
        let mut question = Question {
            cursor: client.cursor,
            etag: None,
        };
        let mut wait = client.first_wait;
        loop {
            // The page's `setTimeout(poll, interval)` after every answer.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = &mut stop => return Ok(()),
            }
            wait = client.interval;
            tokio::select! {
                asked = ask(&mut page, &mut http, &mut question) => asked?,
                _ = &mut stop => return Ok(()),
            }
        }
    }
    .await;
    page.end(result)
}

/// Step 03: ask, and the server answers when there is news; ask again at
/// once.
async fn long_polling(client: Client, mut stop: Stop) -> ClientLog {
    let mut page = Page::new(&client);
    let result = async {
        let mut http = {
            let _permit = client.crowd.connecting().await;
            Http::connect(&client.target, &page.log.tally).await?
        };
        // Ready as soon as the first question is on its way; the bench
        // checks with `/stats` that the server has parked it.
        page.ready();
        let mut question = Question {
            cursor: client.cursor,
            etag: None,
        };
        loop {
            // A sleepy page stops reading here while the crowd dozes.
            tokio::select! {
                () = page.nap() => {}
                _ = &mut stop => return Ok(()),
            }
            tokio::select! {
                asked = ask(&mut page, &mut http, &mut question) => asked?,
                _ = &mut stop => return Ok(()),
            }
        }
    }
    .await;
    page.end(result)
}

/// What a polling page (02, 03) sends with its next question: its cursor,
/// and the `ETag` of its last answer for `If-None-Match`.
struct Question {
    cursor: u64,
    etag: Option<HeaderValue>,
}

/// One `GET /news?since=CURSOR`: shows what came, if anything (a `304` is
/// "nothing new"), and moves the question on.
async fn ask(page: &mut Page<'_>, http: &mut Http, question: &mut Question) -> Result<(), String> {
    let path = format!("/news?since={}", question.cursor);
    let answer = http.get(&path, question.etag.as_ref()).await?;
    match answer.status {
        StatusCode::OK => {
            let batch: Batch = parse(&answer.body)?;
            page.batch(&batch.items, batch.reset, Some(batch.cursor));
            question.cursor = batch.cursor;
            question.etag = answer.etag;
            Ok(())
        }
        StatusCode::NOT_MODIFIED => Ok(()),
        status => Err(format!("GET {path} answered {status}")),
    }
}

/// Step 03b: one request, whose answer never ends; an event per item.
async fn server_sent_events(client: Client, mut stop: Stop) -> ClientLog {
    let mut page = Page::new(&client);
    let result = async {
        let mut events = {
            let _permit = client.crowd.connecting().await;
            let path = format!("/events?since={}", client.cursor);
            Events::open(&client.target, &path, &page.log.tally).await?
        };
        // The server subscribed the page before it sent the head: whatever
        // is posted from now on reaches it.
        page.ready();
        loop {
            // A sleepy page stops reading here while the crowd dozes.
            tokio::select! {
                () = page.nap() => {}
                _ = &mut stop => return Ok(()),
            }
            let block = tokio::select! {
                block = events.next_block() => block?,
                _ = &mut stop => return Ok(()),
            };
            match events::event(block)? {
                // `retry:`, a keep-alive comment.
                None => {}
                Some(event) if event.name == "news" => {
                    let item: Id = parse(event.data)?;
                    page.show(&[item]);
                }
                Some(event) if event.name == "reset" => {
                    let batch: Batch = parse(event.data)?;
                    page.batch(&batch.items, true, Some(batch.cursor));
                }
                Some(event) => return Err(format!("unexpected event {:?}", event.name)),
            }
        }
    }
    .await;
    page.end(result)
}

/// Step 04: one socket; a snapshot, then a frame per item.
async fn websocket(client: Client, mut stop: Stop) -> ClientLog {
    let mut page = Page::new(&client);
    let result = async {
        let mut socket = {
            let _permit = client.crowd.connecting().await;
            let path = format!("/ws?since={}", client.cursor);
            Socket::open(&client.target, &path, &page.log.tally).await?
        };
        loop {
            // A sleepy page stops reading here while the crowd dozes.
            tokio::select! {
                () = page.nap() => {}
                _ = &mut stop => return Ok(()),
            }
            let text = tokio::select! {
                text = socket.next_text() => text?,
                _ = &mut stop => return Ok(()),
            };
            let frame: Frame = parse(text.as_bytes())?;
            match frame.kind {
                "snapshot" => {
                    page.batch(&frame.items, frame.reset, frame.cursor);
                    page.ready();
                }
                "news" => match frame.item {
                    Some(item) => page.show(&[item]),
                    None => return Err("a news frame without an item".to_string()),
                },
                other if PROTOCOL.contains(&other) => {
                    return Err(format!("unexpected message type {other:?}"));
                }
                _ => {}
            }
        }
    }
    .await;
    page.end(result)
}

/// Steps 05 and 06: one socket, in `general` from the start; or, for the
/// isolation check, in one room of its own and nothing else.
async fn rooms(client: Client, mut stop: Stop) -> ClientLog {
    let mut page = Page::new(&client);
    let result = async {
        let mut socket = {
            let _permit = client.crowd.connecting().await;
            let path = format!("/ws?since={}", client.cursor);
            Socket::open(&client.target, &path, &page.log.tally).await?
        };
        // The one room whose news this page may get: `general` until it has
        // joined its own, which it then keeps alone.
        let mut room: &str = "general";
        loop {
            // A sleepy page stops reading here while the crowd dozes.
            tokio::select! {
                () = page.nap() => {}
                _ = &mut stop => return Ok(()),
            }
            let text = tokio::select! {
                text = socket.next_text() => text?,
                _ = &mut stop => return Ok(()),
            };
            let frame: Frame = parse(text.as_bytes())?;
            let from = frame.room.unwrap_or_default();
            match frame.kind {
                // Every socket is put in `general` first.
                "joined" if from == "general" && room == "general" => {
                    page.batch(&frame.items, frame.reset, frame.cursor);
                    match &client.room {
                        None => page.ready(),
                        Some(own) => {
                            let join = serde_json::json!({"type": "join", "ref": 1, "room": own});
                            socket.send_text(&join.to_string()).await?;
                        }
                    }
                }
                // Its own room: from here on, the ids are that room's.
                "joined" if Some(from) == client.room.as_deref() => {
                    page.newest = frame.cursor.unwrap_or_default();
                    page.batch(&frame.items, frame.reset, frame.cursor);
                    room = client.room.as_deref().expect("checked");
                    let leave = serde_json::json!({"type": "leave", "ref": 2, "room": "general"});
                    socket.send_text(&leave.to_string()).await?;
                }
                "left" if from == "general" && frame.reference == Some(2) => page.ready(),
                "news" if from != room => {
                    return Err(format!(
                        "news of room {from:?} reached a page that is only in {room:?}"
                    ));
                }
                "news" => match frame.item {
                    Some(item) => page.show(&[item]),
                    None => return Err("a news frame without an item".to_string()),
                },
                // Members counts go out whenever someone joins or leaves.
                "presence" => {}
                other if PROTOCOL.contains(&other) => {
                    return Err(format!("unexpected message: {text}"));
                }
                _ => {}
            }
        }
    }
    .await;
    page.end(result)
}

/// A socket that posts to one room, as the page does with
/// `rooms.emit("post", ...)`: it joins the room, leaves `general`, and
/// posts with a `ref` whose `posted` answer carries the item's id.
pub struct RoomPoster {
    socket: Socket,
    room: Arc<str>,
    next_ref: u64,
}

impl RoomPoster {
    pub async fn connect(target: &Target, room: Arc<str>) -> Result<RoomPoster, String> {
        let mut socket = Socket::open(target, "/ws?since=0", &Arc::default()).await?;
        let join = serde_json::json!({"type": "join", "ref": 1, "room": &*room});
        socket.send_text(&join.to_string()).await?;
        let leave = serde_json::json!({"type": "leave", "ref": 2, "room": "general"});
        socket.send_text(&leave.to_string()).await?;
        let mut poster = RoomPoster {
            socket,
            room,
            next_ref: 3,
        };
        poster.answer(2, "left").await?;
        Ok(poster)
    }

    /// Sends `count` posts one after the other without waiting, then
    /// waits for every `posted`. Each post's latency counts from the moment
    /// it was sent.
    pub async fn post(&mut self, count: usize) -> Result<Vec<crate::swarm::Posted>, String> {
        let mut sent = Vec::with_capacity(count);
        for _ in 0..count {
            let reference = self.next_ref;
            self.next_ref += 1;
            let post = serde_json::json!({
                "type": "post",
                "ref": reference,
                "room": &*self.room,
                "title": format!("Item {reference} of {}", self.room),
                "body": crate::swarm::BODY,
            });
            sent.push((reference, Instant::now()));
            self.socket.send_text(&post.to_string()).await?;
        }
        let mut posted = Vec::with_capacity(count);
        for (reference, at) in sent {
            let id = self.answer(reference, "posted").await?;
            posted.push(crate::swarm::Posted { id, sent: at });
        }
        Ok(posted)
    }

    /// Reads until the answer to `reference`, skipping the room's news and
    /// presence; `posted` gives the id.
    async fn answer(&mut self, reference: u64, kind: &str) -> Result<u64, String> {
        let limit = Duration::from_secs(30);
        loop {
            let text = tokio::time::timeout(limit, self.socket.next_text())
                .await
                .map_err(|_| format!("no {kind} for ref {reference} within {limit:?}"))??;
            #[derive(Deserialize)]
            struct Answer {
                #[serde(rename = "type")]
                kind: String,
                #[serde(rename = "ref")]
                reference: Option<u64>,
                id: Option<u64>,
            }
            let answer: Answer = parse(text.as_bytes())?;
            if answer.reference != Some(reference) {
                continue;
            }
            if answer.kind != kind {
                return Err(format!("{kind} expected for ref {reference}: {text}"));
            }
            return Ok(answer.id.unwrap_or_default());
        }
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| {
        let start = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("unexpected answer ({error}): {start}")
    })
}
