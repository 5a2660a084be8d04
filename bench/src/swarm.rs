//! A crowd of simulated pages, the poster that feeds them, and the check
//! that every page got every item exactly once, in order.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use hyper::StatusCode;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::sync::SemaphorePermit;
use tokio::sync::oneshot;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clients::Client;
use crate::clients::ClientLog;
use crate::clients::Era;
use crate::clients::Reset;
use crate::wire::Http;
use crate::wire::Target;

/// How many pages may be connecting at once, as visitors arriving close
/// together rather than all in the same millisecond. The server's listen
/// queue holds 1,024 connections that are not accepted yet; opening 10,000
/// at once would overflow it, and the kernel would make the rest retry a
/// second later. And each connection in its handshake holds HTTP buffers
/// (16 KiB or so) that an idle page no longer needs: thousands at once
/// would leave the server's memory high, and "memory per idle page" would
/// count the stampede, not the pages.
const CONNECTING_AT_ONCE: usize = 64;

/// What the pages report while they run: the bench watches it to know
/// when everyone has everything.
pub struct Crowd {
    /// Per page: 0 until it is connected, then the newest id it has shown.
    newest: Vec<Slot>,
    failed: AtomicUsize,
    connecting: Semaphore,
    /// While true, sleepy pages stop reading (see [`Crowd::doze`]).
    dozing: watch::Sender<bool>,
}

/// One page's progress, alone on its cache line: pages on different
/// threads then never slow each other down by writing next to each other.
#[repr(align(64))]
struct Slot(AtomicU64);

impl Crowd {
    /// Only page `index` writes its slot.
    pub fn ready(&self, index: usize, cursor: u64) {
        self.newest[index].0.store(cursor.max(1), Ordering::Relaxed);
    }

    pub fn seen(&self, index: usize, id: u64) {
        self.newest[index].0.store(id, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub async fn connecting(&self) -> SemaphorePermit<'_> {
        self.connecting
            .acquire()
            .await
            .expect("the semaphore is never closed")
    }

    /// Sleepy pages stop reading (`true`) or read again (`false`). Only
    /// they watch this, and only between two reads.
    pub fn doze(&self, dozing: bool) {
        self.dozing.send_replace(dozing);
    }

    /// Returns once the crowd is not dozing.
    pub async fn awake(&self) {
        if !*self.dozing.borrow() {
            return;
        }
        let mut dozing = self.dozing.subscribe();
        let _never_closed_while_the_crowd_lives = dozing.wait_for(|dozing| !dozing).await;
    }

    /// How many pages have not yet reached `id`.
    fn behind(&self, id: u64) -> usize {
        self.newest
            .iter()
            .filter(|newest| newest.0.load(Ordering::Relaxed) < id)
            .count()
    }
}

/// The simulated pages of one run.
pub struct Swarm {
    crowd: Arc<Crowd>,
    /// One per page (see [`crate::clients::Stop`]).
    stop: Vec<oneshot::Sender<()>>,
    pages: JoinSet<(usize, ClientLog)>,
}

/// How the pages of a swarm behave.
pub struct Pages {
    pub era: Era,
    pub count: usize,
    /// The cursor the pages start from: what each server (in the order of
    /// the targets) renders into its page.
    pub cursors: Vec<u64>,
    /// 02's polling interval.
    pub interval: Duration,
    /// How many items each page will get: room is made for their records
    /// up front, so that recording does not reallocate in a burst.
    pub items: usize,
    /// 05 and 06: how many rooms the pages are shared out to, in equal
    /// runs (pages 0 to 49 in `r0`, and so on); 0 keeps them in `general`.
    pub rooms: usize,
    /// One page in this many is sleepy (pages 0, `sleepy`, 2 × `sleepy`,
    /// ...): it stops reading while the crowd dozes, on a slow link (see
    /// [`crate::wire::SLOW_LINK`]). 0: none.
    pub sleepy: usize,
}

/// Is page `index` sleepy, when one page in `every` is (see
/// [`Pages::sleepy`])?
pub fn is_sleepy(index: usize, every: usize) -> bool {
    every > 0 && index.is_multiple_of(every)
}

/// The name of room number `number`: `r0`, `r1`, ...
pub fn room_name(number: usize) -> Arc<str> {
    format!("r{number}").into()
}

impl Swarm {
    /// Opens `pages.count` pages, shared out in turn over the servers
    /// at `targets`. They connect in the background; see [`Swarm::ready`].
    pub fn start(targets: &[Target], pages: &Pages) -> Swarm {
        let crowd = Arc::new(Crowd {
            newest: (0..pages.count).map(|_| Slot(AtomicU64::new(0))).collect(),
            failed: AtomicUsize::new(0),
            connecting: Semaphore::new(CONNECTING_AT_ONCE),
            dozing: watch::Sender::new(false),
        });
        let mut stop = Vec::with_capacity(pages.count);
        let mut set = JoinSet::new();
        for index in 0..pages.count {
            let (stopper, stopped) = oneshot::channel();
            stop.push(stopper);
            let sleepy = is_sleepy(index, pages.sleepy);
            let mut target = targets[index % targets.len()].for_page(index);
            target.slow = sleepy;
            let client = Client {
                index,
                target,
                cursor: pages.cursors[index % targets.len()],
                crowd: crowd.clone(),
                interval: pages.interval,
                items: pages.items,
                // Spread the first polls evenly over one interval.
                first_wait: pages
                    .interval
                    .mul_f64((index + 1) as f64 / pages.count as f64),
                room: (pages.rooms > 0).then(|| room_name(index * pages.rooms / pages.count)),
                sleepy,
            };
            let era = pages.era;
            set.spawn(async move { (index, era.page(client, stopped).await) });
        }
        Swarm {
            crowd,
            stop,
            pages: set,
        }
    }

    /// Sleepy pages stop reading, or read again (see [`Crowd::doze`]).
    pub fn doze(&self, dozing: bool) {
        self.crowd.doze(dozing);
    }

    /// Waits until every page is connected.
    pub async fn ready(&self, limit: Duration) -> Result<(), String> {
        self.wait_for(1, limit, "connected").await
    }

    /// Waits until every page has shown item `id`.
    pub async fn reached(&self, id: u64, limit: Duration) -> Result<(), String> {
        self.wait_for(id, limit, &format!("shown item {id}")).await
    }

    /// Waits until every page has shown the item its own room ends with:
    /// `ids[page]`.
    pub async fn reached_each(&self, ids: &[u64], limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let failed = self.crowd.failed.load(Ordering::Relaxed);
            if failed > 0 {
                return Err(format!(
                    "{failed} pages failed while waiting for their rooms' news"
                ));
            }
            let behind = (self.crowd.newest.iter().zip(ids))
                .filter(|(newest, id)| newest.0.load(Ordering::Relaxed) < **id)
                .count();
            if behind == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{behind} of {} pages have not shown their rooms' last item after {limit:?}",
                    ids.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn wait_for(&self, id: u64, limit: Duration, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let failed = self.crowd.failed.load(Ordering::Relaxed);
            if failed > 0 {
                return Err(format!(
                    "{failed} pages failed while waiting until all {what}"
                ));
            }
            let behind = self.crowd.behind(id);
            if behind == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{behind} of {} pages have not {what} after {limit:?}",
                    self.crowd.newest.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Tells every page to stop, and collects what each one saw, in page
    /// order.
    pub async fn stop(mut self) -> Result<Vec<ClientLog>, String> {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        let mut logs: Vec<Option<ClientLog>> = (0..self.crowd.newest.len()).map(|_| None).collect();
        let collect = async {
            while let Some(ended) = self.pages.join_next().await {
                let (index, log) = ended.map_err(|error| format!("a page panicked: {error}"))?;
                logs[index] = Some(log);
            }
            Ok::<(), String>(())
        };
        tokio::time::timeout(Duration::from_secs(30), collect)
            .await
            .map_err(|_| "pages did not stop within 30 s".to_string())??;
        Ok(logs
            .into_iter()
            .map(|log| log.expect("every page ended"))
            .collect())
    }
}

/// [`page_cursor`] of each server: two servers of step 06 share the
/// rooms, but each renders the cursor of its own copy.
pub async fn page_cursors(targets: &[Target]) -> Result<Vec<u64>, String> {
    let mut cursors = Vec::new();
    for target in targets {
        cursors.push(page_cursor(target).await?);
    }
    Ok(cursors)
}

/// The cursor a fresh page starts from: the server renders it into the
/// page as `data-cursor`, and the page's script asks for what came after.
pub async fn page_cursor(target: &Target) -> Result<u64, String> {
    let mut http = Http::connect(target, &Arc::default()).await?;
    let answer = http.get("/", None).await?;
    let html = String::from_utf8_lossy(&answer.body);
    html.split_once("data-cursor=\"")
        .and_then(|(_, rest)| rest.split('"').next()?.parse().ok())
        .ok_or_else(|| "the page has no data-cursor".to_string())
}

/// One post: its id, and when its request started to go out.
#[derive(Clone, Copy, Debug)]
pub struct Posted {
    pub id: u64,
    pub sent: Instant,
}

/// Posts news the way a page does (`POST /news` with JSON and the page's
/// `Origin`), over a few keep-alive connections so that a post never waits
/// for the previous one to be answered.
pub struct Poster {
    connections: Vec<tokio::sync::Mutex<Http>>,
    next: AtomicUsize,
}

/// Title and body come to about 100 bytes, a short news item.
pub const BODY: &str =
    "A short news item, about the length of a sentence or two: nothing more, nothing less.";

/// The part of the 201 answer the poster reads.
#[derive(Deserialize)]
struct Stored {
    id: u64,
}

impl Poster {
    pub async fn connect(target: &Target, connections: usize) -> Result<Arc<Poster>, String> {
        let mut open = Vec::new();
        for _ in 0..connections.max(1) {
            let http = Http::connect(target, &Arc::default()).await?;
            open.push(tokio::sync::Mutex::new(http));
        }
        Ok(Arc::new(Poster {
            connections: open,
            next: AtomicUsize::new(0),
        }))
    }

    /// Posts one item and returns its id and when it was sent. The
    /// latency of each delivery is measured from `sent`, whether the page
    /// shows the item before or after the 201 comes back.
    pub async fn post(&self, number: usize) -> Result<Posted, String> {
        let pick = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let mut http = self.connections[pick].lock().await;
        let json = serde_json::json!({
            "title": format!("Item {number}"),
            "body": BODY,
        })
        .to_string();
        let sent = Instant::now();
        let answer = http.post_json("/news", json).await?;
        if answer.status != StatusCode::CREATED {
            return Err(format!(
                "POST /news answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        let stored: Stored = serde_json::from_slice(&answer.body)
            .map_err(|error| format!("the 201 is not the item expected: {error}"))?;
        Ok(Posted {
            id: stored.id,
            sent,
        })
    }

    /// `count` posts at a steady `per_second`, each on its own schedule
    /// (a slow answer does not delay the next post).
    pub async fn steady(
        self: &Arc<Self>,
        count: usize,
        per_second: f64,
    ) -> Result<Vec<Posted>, String> {
        let every = Duration::from_secs_f64(1.0 / per_second);
        let start = tokio::time::Instant::now();
        let mut posts = JoinSet::new();
        for number in 0..count {
            tokio::time::sleep_until(start + every * number as u32).await;
            let poster = self.clone();
            posts.spawn(async move { poster.post(number).await });
        }
        collect(posts).await
    }

    /// `count` posts all at once, spread over the poster's connections.
    pub async fn burst(self: &Arc<Self>, count: usize) -> Result<Vec<Posted>, String> {
        let mut posts = JoinSet::new();
        for number in 0..count {
            let poster = self.clone();
            posts.spawn(async move { poster.post(number).await });
        }
        collect(posts).await
    }
}

/// Waits for every post; sorted by id.
async fn collect(mut posts: JoinSet<Result<Posted, String>>) -> Result<Vec<Posted>, String> {
    let mut done = Vec::new();
    while let Some(post) = posts.join_next().await {
        done.push(post.map_err(|error| format!("a post panicked: {error}"))??);
    }
    done.sort_by_key(|post| post.id);
    Ok(done)
}

/// The latency of every delivery of the items in `posted`: from when the
/// post was sent to when the page parsed the item.
pub fn latencies(logs: &[ClientLog], posted: &[Posted]) -> Vec<Duration> {
    let sent: HashMap<u64, Instant> = posted.iter().map(|post| (post.id, post.sent)).collect();
    logs.iter()
        .flat_map(|log| &log.got)
        .filter_map(|(id, at)| Some(at.saturating_duration_since(*sent.get(id)?)))
        .collect()
}

/// When the last page parsed the last of the items in `posted`.
pub fn last_delivery(logs: &[ClientLog], posted: &[Posted]) -> Option<Instant> {
    let ids: HashSet<u64> = posted.iter().map(|post| post.id).collect();
    logs.iter()
        .flat_map(|log| &log.got)
        .filter(|(id, _)| ids.contains(id))
        .map(|(_, at)| *at)
        .max()
}

/// Every page got every posted item exactly once, in order, without an
/// error or a reset; or a description of what went wrong where.
pub fn check(logs: &[ClientLog], posted: &[u64]) -> Result<(), String> {
    let mut problems = Vec::new();
    for (index, log) in logs.iter().enumerate() {
        let got: Vec<u64> = log.got.iter().map(|(id, _)| *id).collect();
        let mut trouble = Vec::new();
        if let Some(error) = &log.error {
            trouble.push(format!("failed: {error}"));
        }
        if !log.resets.is_empty() {
            trouble.push(format!("{} resets", log.resets.len()));
        }
        if got != posted {
            trouble.push(difference(posted, &got));
        }
        if !trouble.is_empty() {
            problems.push(format!("page {index}: {}", trouble.join("; ")));
        }
    }
    verdict(
        &problems,
        logs.len(),
        "did not get every item exactly once, in order",
    )
}

/// The promise of a reset, for pages that may fall behind: every page
/// ends with the last item posted, without an error, and what it shows is
/// right at every moment. Before its first reset it got exactly the first
/// items posted, in order. A reset carries the server's latest items, a run
/// of what was posted without a hole, up to the reset's cursor; it never
/// takes a page back to older news than it had; and after it the page gets
/// exactly what came after the cursor, nothing missing and nothing doubled,
/// until the next reset or the end. (Items a reset shows again are not
/// doubled: the page shows the reset's items *instead of* what it had.)
pub fn check_resets(logs: &[ClientLog], posted: &[u64]) -> Result<(), String> {
    let problems: Vec<String> = (logs.iter().enumerate())
        .filter_map(|(index, log)| {
            let got: Vec<u64> = log.got.iter().map(|(id, _)| *id).collect();
            let trouble = match &log.error {
                Some(error) => Err(format!("failed: {error}")),
                None => view(&got, &log.resets, posted),
            };
            trouble
                .err()
                .map(|trouble| format!("page {index}: {trouble}"))
        })
        .collect();
    verdict(
        &problems,
        logs.len(),
        "broke the promise of a reset (no silent gap, nothing doubled)",
    )
}

/// `Ok` without problems; else how many of `pages` pages did `what`, and
/// the first ten problems, one per line.
fn verdict(problems: &[String], pages: usize, what: &str) -> Result<(), String> {
    if problems.is_empty() {
        return Ok(());
    }
    let shown = problems.len().min(10);
    let more = if problems.len() > shown {
        "\n  ..."
    } else {
        ""
    };
    Err(format!(
        "{} of {pages} pages {what}:\n  {}{more}",
        problems.len(),
        problems[..shown].join("\n  "),
    ))
}

/// One page's log, read as [`check_resets`] says. `posted` is in id order.
fn view(got: &[u64], resets: &[Reset], posted: &[u64]) -> Result<(), String> {
    // How many of `posted` the page has shown in order: what it must get
    // next is `posted[next]`.
    let mut next = 0;
    let mut at = 0;
    // What follows the start of the log, then each reset, up to the next.
    let starts = std::iter::once(None).chain(resets.iter().map(Some));
    let ends = (resets.iter().map(|reset| reset.at)).chain(std::iter::once(got.len()));
    for (reset, end) in starts.zip(ends) {
        if let Some(reset) = reset {
            let items = got
                .get(reset.at..reset.at + reset.items)
                .ok_or("a reset past the end of the log")?;
            // The reset's items end at its cursor: the server's latest.
            let after = match posted.binary_search(&reset.cursor) {
                Ok(index) => index + 1,
                Err(_) if reset.cursor == 0 && items.is_empty() => next,
                Err(_) => return Err(format!("a reset to {} was never posted", reset.cursor)),
            };
            if after < next {
                return Err(format!(
                    "a reset to {} took the page back from {}",
                    reset.cursor,
                    posted[next - 1]
                ));
            }
            let latest = &posted[after.saturating_sub(items.len())..after];
            if items != latest {
                return Err(format!(
                    "a reset to {} whose items are not the latest: {}",
                    reset.cursor,
                    divergence(latest, items, None)
                ));
            }
            (next, at) = (after, reset.at + reset.items);
        }
        let normal = &got[at..end];
        let expected = &posted[next..(next + normal.len()).min(posted.len())];
        if normal != expected {
            let before = next.checked_sub(1).map(|last| posted[last]);
            return Err(divergence(&posted[next..], normal, before));
        }
        next += normal.len();
    }
    match posted.get(next) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "stopped before {missing}: {} of the last items never came",
            posted.len() - next
        )),
    }
}

/// Where `got` first leaves `expected` (what should have come, in order,
/// after `before`), in words.
fn divergence(expected: &[u64], got: &[u64], before: Option<u64>) -> String {
    let Some(at) = (0..got.len()).find(|&i| expected.get(i) != Some(&got[i])) else {
        return "nothing wrong".into();
    };
    let previous = if at == 0 { before } else { Some(got[at - 1]) };
    let after = previous.map_or("first".to_string(), |id| format!("after {id}"));
    match expected.get(at) {
        _ if previous.is_some_and(|previous| got[at] <= previous) => {
            format!("{} again {after} (doubled or out of order)", got[at])
        }
        Some(missing) => format!(
            "a silent gap: {} came {after}, and {missing} never did",
            got[at]
        ),
        None => format!("{} came {after}, past the last item posted", got[at]),
    }
}

/// Says how `got` differs from `expected`: what is missing, doubled,
/// unexpected or out of order.
fn difference(expected: &[u64], got: &[u64]) -> String {
    let wanted: HashSet<u64> = expected.iter().copied().collect();
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for id in got {
        *counts.entry(*id).or_default() += 1;
    }
    let missing: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|id| !counts.contains_key(id))
        .collect();
    let mut doubled: Vec<u64> = counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(id, _)| *id)
        .collect();
    doubled.sort_unstable();
    let mut unexpected: Vec<u64> = counts
        .keys()
        .copied()
        .filter(|id| !wanted.contains(id))
        .collect();
    unexpected.sort_unstable();
    let disorder = got.windows(2).position(|pair| pair[1] < pair[0]);

    let mut parts = Vec::new();
    let list = |ids: &[u64]| {
        let shown: Vec<String> = ids.iter().take(5).map(u64::to_string).collect();
        let more = if ids.len() > 5 { ", ..." } else { "" };
        format!("{} ({}{more})", ids.len(), shown.join(", "))
    };
    if !missing.is_empty() {
        parts.push(format!("lost {}", list(&missing)));
    }
    if !doubled.is_empty() {
        parts.push(format!("duplicated {}", list(&doubled)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("never posted {}", list(&unexpected)));
    }
    if let Some(at) = disorder {
        parts.push(format!("out of order: {} after {}", got[at + 1], got[at]));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(ids: &[u64]) -> ClientLog {
        let now = Instant::now();
        ClientLog {
            got: ids.iter().map(|id| (*id, now)).collect(),
            tally: Arc::default(),
            resets: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn every_item_once_in_order_passes() {
        assert_eq!(
            check(&[log(&[1, 2, 3]), log(&[1, 2, 3])], &[1, 2, 3]),
            Ok(())
        );
    }

    #[test]
    fn a_loss_a_duplicate_and_disorder_are_named() {
        let error = check(&[log(&[1, 2, 3]), log(&[1, 3])], &[1, 2, 3]).unwrap_err();
        assert!(error.contains("page 1: lost 1 (2)"), "{error}");
        assert!(error.starts_with("1 of 2 pages"), "{error}");

        let error = check(&[log(&[1, 2, 2, 3])], &[1, 2, 3]).unwrap_err();
        assert!(error.contains("duplicated 1 (2)"), "{error}");
        assert!(!error.contains("out of order"), "{error}");

        let error = check(&[log(&[2, 1, 3])], &[1, 2, 3]).unwrap_err();
        assert!(error.contains("out of order: 1 after 2"), "{error}");
        assert!(!error.contains("lost"), "{error}");
    }

    #[test]
    fn errors_and_resets_fail_the_check() {
        let mut broken = log(&[1, 2]);
        broken.error = Some("the socket broke".into());
        broken.resets = vec![Reset {
            at: 0,
            items: 0,
            cursor: 0,
        }];
        let error = check(&[broken], &[1, 2]).unwrap_err();
        assert!(
            error.contains("failed: the socket broke; 1 resets"),
            "{error}"
        );
    }

    fn reset(at: usize, items: usize, cursor: u64) -> Reset {
        Reset { at, items, cursor }
    }

    #[test]
    fn a_reset_then_everything_after_it_passes() {
        let posted: Vec<u64> = (1..=10).collect();
        // Got 1 and 2, fell behind; the reset brought the latest three
        // (6, 7, 8) up to its cursor, then 9 and 10 came.
        let mut behind = log(&[1, 2, 6, 7, 8, 9, 10]);
        behind.resets = vec![reset(2, 3, 8)];
        // A reset may show again what the page had: it replaces the view.
        let mut again = log(&[1, 2, 3, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        again.resets = vec![reset(3, 2, 3)];
        // Two resets, the second at the very end.
        let mut twice = log(&[1, 4, 5, 9, 10]);
        twice.resets = vec![reset(1, 2, 5), reset(3, 2, 10)];
        let caught_up = log(&posted);
        assert_eq!(
            check_resets(&[behind, again, twice, caught_up], &posted),
            Ok(())
        );
    }

    #[test]
    fn a_silent_gap_or_a_doubled_item_after_a_reset_fails() {
        let posted: Vec<u64> = (1..=10).collect();
        let check = |ids: &[u64], resets: Vec<Reset>| {
            let mut page = log(ids);
            page.resets = resets;
            check_resets(&[page], &posted).unwrap_err()
        };
        // No reset at all, and 3 to 5 missing.
        let error = check(&[1, 2, 6, 7, 8, 9, 10], vec![]);
        assert!(
            error.contains("page 0: a silent gap: 6 came after 2, and 3 never did"),
            "{error}"
        );
        // After the reset to 8, 9 never came.
        let error = check(&[1, 2, 6, 7, 8, 10], vec![reset(2, 3, 8)]);
        assert!(error.contains("a silent gap: 10 came after 8"), "{error}");
        // 9 twice after the reset.
        let error = check(&[1, 6, 7, 8, 9, 9, 10], vec![reset(1, 3, 8)]);
        assert!(error.contains("9 again after 9"), "{error}");
        // A reset whose items have a hole in them.
        let error = check(&[1, 6, 8, 9, 10], vec![reset(1, 2, 8)]);
        assert!(error.contains("not the latest"), "{error}");
        // A reset that goes back in time.
        let error = check(&[1, 2, 3, 4, 2, 3, 4, 5], vec![reset(4, 2, 3)]);
        assert!(error.contains("took the page back from 4"), "{error}");
        // The page never got the last items.
        let error = check(&[1, 6, 7, 8], vec![reset(1, 3, 8)]);
        assert!(error.contains("stopped before 9"), "{error}");
    }

    #[test]
    fn latency_counts_from_the_send_even_when_the_item_came_first() {
        let sent = Instant::now();
        let mut seen = log(&[]);
        seen.got = vec![(7, sent + Duration::from_millis(3)), (8, sent)];
        let posted = [Posted { id: 7, sent }];
        assert_eq!(latencies(&[seen], &posted), [Duration::from_millis(3)]);
    }
}
