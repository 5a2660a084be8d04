//! An event-stream client for tests of step 03b: open `/events` as
//! EventSource would (with `Accept: text/event-stream`, and `Last-Event-ID`
//! when it reconnects), and read what arrives block by block, a block being
//! what comes before a blank line: an event, `retry:`, or a comment.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::Running;

/// An open event stream.
pub struct EventStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    response: reqwest::Response,
    /// What arrived and is not a whole block yet.
    buffer: String,
}

/// One event, as EventSource hands it to a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `id:` line: what the browser would send back as `Last-Event-ID`.
    pub id: Option<String>,
    /// The `event:` line, the listener's name (`message` without one).
    pub event: String,
    /// The `data:` line, parsed as JSON.
    pub data: Value,
}

/// Opens `path` (`/events?since=0`) as a page's EventSource would; with
/// `last_event_id`, as it does when it reconnects.
pub async fn open(server: &Running, path: &str, last_event_id: Option<&str>) -> EventStream {
    let mut request = reqwest::Client::new()
        .get(server.url(path))
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = tokio::time::timeout(Duration::from_secs(10), request.send())
        .await
        .expect("the head of the answer within 10 s")
        .expect("the step answers");
    EventStream {
        status: response.status(),
        headers: response.headers().clone(),
        response,
        buffer: String::new(),
    }
}

impl EventStream {
    /// The next block, without its blank line, or `None` when the answer
    /// has ended properly (an answer that breaks off fails the test).
    /// Waits at most `within`.
    pub async fn next_block_within(&mut self, within: Duration) -> Option<String> {
        tokio::time::timeout(within, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block = self.buffer[..end].to_owned();
                    self.buffer.drain(..end + 2);
                    return Some(block);
                }
                match self.response.chunk().await {
                    Ok(Some(chunk)) => self
                        .buffer
                        .push_str(std::str::from_utf8(&chunk).expect("an event stream is UTF-8")),
                    // The last chunk came: the answer ended properly.
                    Ok(None) => {
                        assert!(
                            self.buffer.is_empty(),
                            "a block was cut off: {:?}",
                            self.buffer
                        );
                        return None;
                    }
                    Err(error) => panic!("the answer broke off: {error}"),
                }
            }
        })
        .await
        .expect("a block, or the end of the stream, in time")
    }

    /// The next block, within 10 s.
    pub async fn next_block(&mut self) -> Option<String> {
        self.next_block_within(Duration::from_secs(10)).await
    }

    /// The next event, skipping `retry:` and comments.
    pub async fn next_event(&mut self) -> Event {
        loop {
            let block = self.next_block().await.expect("the stream goes on");
            if let Some(event) = parse(&block) {
                return event;
            }
        }
    }

    /// Reads until the answer ends (within 10 s), and says it did.
    pub async fn ends(&mut self) {
        while self.next_block().await.is_some() {}
    }
}

/// The event in a block, as the HTML standard reads it ("interpreting an
/// event stream"): `field: value` lines, one space after the colon dropped;
/// lines starting with a colon are comments. A block without `data:` is no
/// event (a `retry:`, a comment).
pub fn parse(block: &str) -> Option<Event> {
    let (mut id, mut event, mut data) = (None, None, None::<String>);
    for line in block.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => {
                data = Some(match data {
                    Some(before) => format!("{before}\n{value}"),
                    None => value.to_owned(),
                })
            }
            _ => {}
        }
    }
    let data = data?;
    Some(Event {
        id,
        event: event.unwrap_or_else(|| "message".into()),
        data: serde_json::from_str(&data).expect("every event carries JSON"),
    })
}
