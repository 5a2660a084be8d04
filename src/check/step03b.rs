//! The checks of step 03b's exercises: event streams read as EventSource
//! reads them, field by field.

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

/// `03b-retry-after`: refused with `503` and `Retry-After: 5`, the page
/// waits 5 s before it tries again, instead of its backoff of about 1 s.
pub async fn retry_after() -> Checked {
    let browser = Browser::launch().await?;
    let step = start_with(server_sent_events::Options { max_streams: 1 }).await?;
    // Another client takes the one place: the page is refused.
    let other = Stream::open(&step).await?;
    browser.open(&step.url("/")).await?;
    if !within(Duration::from_secs(5), async || {
        stat(&step, "refused").await.is_ok_and(|refused| refused >= 1)
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
        stat(&step, "streams").await.is_ok_and(|streams| streams == 1)
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

/// One event of a stream: its fields (`retry`, `id`, `event`, `data`) as
/// they came, comments left out.
#[derive(Debug, Default)]
struct Event {
    fields: Vec<(String, String)>,
}

impl Event {
    fn get(&self, name: &str) -> Option<&str> {
        let mut found = self.fields.iter().filter(|(field, _)| field == name);
        found.next().map(|(_, value)| value.as_str())
    }
}

/// An open `GET /events`, read event by event.
struct Stream {
    response: reqwest::Response,
    /// What came and is not a whole event yet.
    buffer: String,
}

impl Stream {
    async fn open(step: &Running) -> Result<Stream, Failure> {
        let response = client()
            .get(step.url("/events"))
            .send()
            .await
            .map_err(unanswered("GET /events"))?;
        if !response.status().is_success() {
            return wrong(format!("GET /events answered {}", response.status()));
        }
        Ok(Stream {
            response,
            buffer: String::new(),
        })
    }

    /// The next event (a blank line ends one), or `None` after `limit`.
    async fn next(&mut self, limit: Duration) -> Result<Option<Event>, Failure> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let fields: Vec<(String, String)> = block
                    .lines()
                    .filter(|line| !line.is_empty() && !line.starts_with(':'))
                    .map(|line| {
                        let (name, value) = line.split_once(':').unwrap_or((line, ""));
                        (name.to_owned(), value.trim_start().to_owned())
                    })
                    .collect();
                if !fields.is_empty() {
                    return Ok(Some(Event { fields }));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Err(_) => return Ok(None),
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => return wrong("the event stream ended"),
                Ok(Err(error)) => return wrong(format!("the event stream broke off: {error}")),
            }
        }
    }

    /// The next event named `name`, skipping others, within `limit`.
    async fn next_named(&mut self, name: &str, limit: Duration) -> Result<Option<Event>, Failure> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Some(event) if event.get("event") == Some(name) => return Ok(Some(event)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}

/// The number in `event: streams` / `data: {"open":N}`.
fn open_count(event: &Event) -> Option<u64> {
    let data: serde_json::Value = serde_json::from_str(event.get("data")?).ok()?;
    data["open"].as_u64()
}

/// `03b-open-streams`: whenever a stream opens or ends, every open stream
/// gets `event: streams` with `data: {"open":N}`, and no `id:`.
pub async fn open_streams() -> Checked {
    let step = start().await?;
    let limit = Duration::from_secs(3);
    let mut first = Stream::open(&step).await?;
    let second = Stream::open(&step).await?;

    let told = |event: Option<Event>, expected: u64, what: &str| -> Result<(), Failure> {
        let Some(event) = event else {
            return wrong(format!(
                "{what}, and the first stream got no `event: streams` within {} s",
                limit.as_secs()
            ));
        };
        if event.get("id").is_some() {
            return wrong(
                "an `event: streams` carries an id: line; the browser would send it back as \
                 Last-Event-ID and resume from a count, not from an item",
            );
        }
        match open_count(&event) {
            Some(open) if open == expected => Ok(()),
            Some(open) => wrong(format!(
                "{what}, and the first stream was told {{\"open\":{open}}}; {expected} are open"
            )),
            None => wrong(format!(
                "an `event: streams` says {:?}; it should say {{\"open\":{expected}}}",
                event.get("data").unwrap_or_default()
            )),
        }
    };
    // The count may come once per change, or also when a stream opens:
    // the first stream's latest word after the second opened must be 2.
    let mut latest = None;
    while let Some(event) = first.next_named("streams", limit).await? {
        let done = open_count(&event) == Some(2);
        latest = Some(event);
        if done {
            break;
        }
    }
    told(latest, 2, "a second stream opened")?;
    drop(second);
    let event = first.next_named("streams", limit).await?;
    told(event, 1, "the second stream ended")?;
    step.stop().await;
    Ok("a second stream opened: the first was told {\"open\":2}; it ended: {\"open\":1}".into())
}
