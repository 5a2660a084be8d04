//! The checks of step 03b's exercises: event streams read as EventSource
//! reads them, field by field.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Checked;
use super::Failure;
use super::Running;
use super::client;
use super::unanswered;
use super::wrong;

async fn start() -> Result<Running, Failure> {
    super::start(|listener, feed, shutdown| {
        server_sent_events::run(listener, feed, Default::default(), shutdown)
    })
    .await
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

/// `03b-spread-retry`: each stream's `retry:` is its own, between 1,000
/// and 3,000 ms, so that pages cut off together come back spread out.
pub async fn spread_retry() -> Checked {
    let step = start().await?;
    let mut retries = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut stream = Stream::open(&step).await?;
        let first = stream.next(Duration::from_secs(5)).await?;
        let retry = first.as_ref().and_then(|event| event.get("retry"));
        let Some(retry) = retry.and_then(|retry| retry.parse::<u64>().ok()) else {
            return wrong("a stream did not start with a retry: line (in milliseconds)");
        };
        retries.push(retry);
        streams.push(stream);
    }
    if let Some(out) = retries.iter().find(|retry| !(1_000..=3_000).contains(*retry)) {
        return wrong(format!(
            "a stream said retry: {out}; keep every wait between 1000 and 3000 ms"
        ));
    }
    let distinct: BTreeSet<_> = retries.iter().collect();
    if distinct.len() < 5 {
        let said: Vec<String> = distinct.iter().map(|retry| retry.to_string()).collect();
        return wrong(format!(
            "20 streams said only retry: {}: after a restart, their pages would all come back \
             in the same instant",
            said.join(", ")
        ));
    }
    // And the streams still carry news.
    step.post("Spread out");
    let news = streams[0].next_named("news", Duration::from_secs(5)).await?;
    if news.is_none() {
        return wrong("after its retry: line, a stream no longer carries the news");
    }
    let (low, high) = (retries.iter().min(), retries.iter().max());
    step.stop().await;
    Ok(format!(
        "20 streams said {} different retry: values, from {} to {} ms",
        distinct.len(),
        low.expect("20 values"),
        high.expect("20 values")
    ))
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
