//! The news feed every step serves: a bounded history with cursors, a way to
//! wait for the next item (long polling) and a push subscription (WebSocket).
//!
//! ## Cursors, and why a feed sometimes says "reset"
//!
//! Every item gets an id greater than all before it, and a client remembers
//! the last id it has seen: its *cursor*. "What came after 41?" has an exact
//! answer only while the feed still holds everything after 41. When it does
//! not, because the cursor is older than the history, comes from before a
//! restart, or is ahead of anything this feed has issued, the feed answers
//! **reset** with its latest items instead of guessing. A client that gets a
//! reset replaces what it shows; a silent gap would be a lie.
//!
//! Ids never repeat across restarts: the counter starts at the boot time in
//! microseconds (the way Redis stream ids start from the clock), so a cursor
//! from a previous run is always below this run's first id, and is answered
//! with a reset.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::sync::watch;

use crate::news::NewPost;
use crate::news::NewsItem;

/// How many items a feed keeps unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 1_000;
/// How many items a reset carries: what a page shows on a fresh load.
pub const RESET_ITEMS: usize = 50;
/// How many pushed items a subscriber may fall behind before it has to catch
/// up from the history instead (see [`Subscription::next`]).
pub const PUSH_BUFFER: usize = 256;

/// Where a feed gets the time from; tests pass a fixed clock.
pub type Clock = fn() -> SystemTime;

/// The shared news feed. Cloning is cheap (one `Arc`), and every clone is the
/// same feed: the launcher hands one to every step.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    /// How many items the history keeps before it forgets the oldest.
    capacity: usize,
    clock: Clock,
    /// The history and the id counter. A std `Mutex`, not tokio's: it is held
    /// for a few pointer moves and never across an `.await`, which is the
    /// case the tokio docs recommend the std one for.
    state: Mutex<State>,
    /// The newest id, for long polls: each waiter holds a receiver and wakes
    /// when the value passes its cursor.
    newest: watch::Sender<u64>,
    /// Every new item, for push subscribers (WebSocket steps).
    pushed: broadcast::Sender<Arc<NewsItem>>,
}

struct State {
    /// Oldest first. `Arc` so that a page render, a JSON answer and a
    /// thousand subscribers share one copy of each item.
    items: VecDeque<Arc<NewsItem>>,
    /// The last id issued: the cursor of a client that has seen everything.
    last_id: u64,
    /// The lowest cursor the feed can still answer exactly: the id of the
    /// newest item it has forgotten, or the feed's origin when it has
    /// forgotten nothing.
    floor: u64,
}

/// One page of the history (see [`Feed::page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Newest first.
    pub items: Vec<Arc<NewsItem>>,
    /// More matching items lie beyond this page.
    pub more: bool,
    /// The feed's cursor when the page was taken: a script on the page asks
    /// for what came after it, and gets exactly what the page is missing.
    pub cursor: u64,
}

/// The answer to "what came after this cursor?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// Oldest first.
    pub items: Vec<Arc<NewsItem>>,
    /// The id to ask from next time.
    pub cursor: u64,
    /// The feed could not vouch for the cursor: `items` are the latest items,
    /// to be shown *instead of* what the client had.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new(DEFAULT_CAPACITY)
    }
}

impl Feed {
    /// An empty feed keeping `capacity` items, ids starting from now.
    pub fn new(capacity: usize) -> Feed {
        let now = SystemTime::now();
        let micros = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        Feed::starting_at(capacity, micros as u64, SystemTime::now)
    }

    /// An empty feed whose first item gets id `origin + 1`. Tests use this
    /// with a fixed clock, so that ids and times in snapshots are stable.
    pub fn starting_at(capacity: usize, origin: u64, clock: Clock) -> Feed {
        let capacity = capacity.max(1);
        let (pushed, _) = broadcast::channel(PUSH_BUFFER);
        Feed {
            inner: Arc::new(Inner {
                capacity,
                clock,
                state: Mutex::new(State {
                    items: VecDeque::with_capacity(capacity),
                    last_id: origin,
                    floor: origin,
                }),
                newest: watch::Sender::new(origin),
                pushed,
            }),
        }
    }

    /// A new, empty feed with this one's capacity and clock, its ids starting
    /// from the clock's present: what step 05 makes for each new room.
    pub fn sibling(&self) -> Feed {
        let now = (self.inner.clock)();
        let micros = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        Feed::starting_at(self.inner.capacity, micros as u64, self.inner.clock)
    }

    /// A new, empty feed with this one's capacity and clock, that copies a
    /// feed kept elsewhere from after `floor` (see [`Feed::append`]): what
    /// step 06 makes for each room it reads from Redis.
    pub fn replica(&self, floor: u64) -> Feed {
        Feed::starting_at(self.inner.capacity, floor, self.inner.clock)
    }

    /// How many items the history keeps.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Stores a validated post and tells every waiter and subscriber.
    pub fn post(&self, post: NewPost) -> Arc<NewsItem> {
        let mut state = self.lock();
        let item = Arc::new(NewsItem {
            id: state.last_id + 1,
            title: post.title,
            body: post.body,
            posted_at: (self.inner.clock)(),
        });
        self.store(&mut state, item)
    }

    /// Stores an item whose id was given elsewhere, and tells every waiter
    /// and subscriber: what a local copy of a feed kept in another process
    /// does (step 06 keeps each room in a Redis stream, and every server
    /// copies the items it reads there).
    ///
    /// Ids must increase. An item at or below the last id is not stored and
    /// the answer is `None`: the copy already has it (read twice), or it
    /// belongs before what the copy started from. Start the copy (with
    /// [`Feed::replica`]) at the id just before the first item it will be
    /// given, so that it vouches for exactly the cursors it can answer.
    pub fn append(&self, item: NewsItem) -> Option<Arc<NewsItem>> {
        let mut state = self.lock();
        if item.id <= state.last_id {
            return None;
        }
        Some(self.store(&mut state, Arc::new(item)))
    }

    /// Adds an item with a new, higher id to the history; the caller holds
    /// the lock.
    fn store(&self, state: &mut State, item: Arc<NewsItem>) -> Arc<NewsItem> {
        state.last_id = item.id;
        if state.items.len() == self.inner.capacity {
            let forgotten = state
                .items
                .pop_front()
                .expect("a full history is not empty");
            state.floor = forgotten.id;
        }
        state.items.push_back(item.clone());
        // Announced while still holding the lock, so that subscribers see
        // items in id order even when two requests post at the same instant.
        self.inner.newest.send_replace(item.id);
        let _no_subscribers_is_fine = self.inner.pushed.send(item.clone());
        item
    }

    /// The cursor of a client that has seen everything so far.
    pub fn cursor(&self) -> u64 {
        self.lock().last_id
    }

    /// Up to `n` items, newest first (the order a page shows them in).
    pub fn latest(&self, n: usize) -> Vec<Arc<NewsItem>> {
        self.lock().items.iter().rev().take(n).cloned().collect()
    }

    /// One page of the history, newest first: up to `n` items older than
    /// `before` (from the newest when `None`) that `keep` accepts.
    pub fn page(&self, before: Option<u64>, n: usize, keep: impl Fn(&NewsItem) -> bool) -> Page {
        let state = self.lock();
        let mut matching = state
            .items
            .iter()
            .rev()
            .filter(|item| before.is_none_or(|before| item.id < before))
            .filter(|item| keep(item));
        let items: Vec<_> = matching.by_ref().take(n).cloned().collect();
        let more = matching.next().is_some();
        Page {
            items,
            more,
            cursor: state.last_id,
        }
    }

    /// The latest `n` items, oldest first, with the cursor to continue from:
    /// what a client that has nothing yet starts with.
    pub fn recent(&self, n: usize) -> Batch {
        self.lock().recent(n)
    }

    /// What a client asking `?since=` gets: everything after its cursor, or
    /// when it has none yet, the latest items to start from.
    pub fn answer(&self, since: Option<u64>) -> Batch {
        self.lock().answer(since)
    }

    /// Everything after `cursor`, oldest first, or a reset with the latest
    /// items when the feed cannot vouch for the cursor.
    pub fn since(&self, cursor: u64) -> Batch {
        self.lock().since(cursor)
    }

    /// Waits until the feed has something after `cursor`, then returns at
    /// once. Dropping the future (a client that hung up, a timeout) stops
    /// the wait and frees everything it held.
    pub async fn wait_after(&self, cursor: u64) {
        let mut newest = self.inner.newest.subscribe();
        // `wait_for` checks the current value first, so an item posted between
        // the caller's last look and this line is not missed.
        let _closed_only_when_the_feed_is_gone = newest.wait_for(|&id| id > cursor).await;
    }

    /// What a client asking `since` gets now (see [`Feed::answer`]), plus a
    /// subscription that yields every later item exactly once, in order.
    /// Taken under one lock, so nothing posted in between is lost or doubled.
    pub fn subscribe(&self, since: Option<u64>) -> (Batch, Subscription) {
        let state = self.lock();
        let batch = state.answer(since);
        let subscription = Subscription {
            feed: self.clone(),
            pushed: self.inner.pushed.subscribe(),
            cursor: batch.cursor,
            backlog: VecDeque::new(),
        };
        (batch, subscription)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in a few lines of
        // pointer moves; the data is still consistent, so carry on.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn recent(&self, n: usize) -> Batch {
        let start = self.items.len().saturating_sub(n);
        Batch {
            items: self.items.range(start..).cloned().collect(),
            cursor: self.last_id,
            reset: false,
        }
    }

    fn answer(&self, since: Option<u64>) -> Batch {
        match since {
            Some(cursor) => self.since(cursor),
            None => self.recent(RESET_ITEMS),
        }
    }

    fn since(&self, cursor: u64) -> Batch {
        if cursor < self.floor || cursor > self.last_id {
            let start = self.items.len().saturating_sub(RESET_ITEMS);
            return Batch {
                items: self.items.range(start..).cloned().collect(),
                cursor: self.last_id,
                reset: true,
            };
        }
        // Ids are increasing, so the items after the cursor are a suffix.
        let start = self.items.partition_point(|item| item.id <= cursor);
        Batch {
            items: self.items.range(start..).cloned().collect(),
            cursor: self.last_id,
            reset: false,
        }
    }
}

/// A live stream of new items for one client (see [`Feed::subscribe`]).
pub struct Subscription {
    feed: Feed,
    pushed: broadcast::Receiver<Arc<NewsItem>>,
    /// The last id handed out: nothing at or below it is handed out again.
    cursor: u64,
    /// Items fetched from the history after falling behind, oldest first.
    backlog: VecDeque<Arc<NewsItem>>,
}

/// What a subscription yields next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The next item after the last one.
    Item(Arc<NewsItem>),
    /// The subscriber fell so far behind that the history no longer covers
    /// it: replace everything with this batch.
    Reset(Batch),
}

impl Subscription {
    /// The next item, never skipping and never repeating one.
    ///
    /// A subscriber that reads slower than the feed is posted to falls more
    /// than the push buffer behind; tokio's broadcast channel then drops the
    /// oldest messages for it and says so (`Lagged`). Instead of losing them,
    /// the subscription catches up from the feed's history by cursor, or
    /// answers with a reset when the history no longer reaches back that far.
    pub async fn next(&mut self) -> Pushed {
        loop {
            if let Some(item) = self.backlog.pop_front() {
                self.cursor = item.id;
                return Pushed::Item(item);
            }
            match self.pushed.recv().await {
                Ok(item) if item.id > self.cursor => {
                    self.cursor = item.id;
                    return Pushed::Item(item);
                }
                // Already handed out from the backlog.
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let batch = self.feed.since(self.cursor);
                    if batch.reset {
                        self.cursor = batch.cursor;
                        return Pushed::Reset(batch);
                    }
                    self.backlog.extend(batch.items);
                }
                Err(broadcast::error::RecvError::Closed) => {
                    unreachable!("the subscription holds the feed, so the sender is alive")
                }
            }
        }
    }

    /// The next item if one is already waiting, without waiting for one:
    /// what a socket uses to gather a burst into one write. (Polling
    /// [`Subscription::next`] once would also do, but it signs up to be
    /// woken and then signs off again, two trips through the channel's
    /// lock per item and socket.)
    pub fn try_next(&mut self) -> Option<Pushed> {
        loop {
            if let Some(item) = self.backlog.pop_front() {
                self.cursor = item.id;
                return Some(Pushed::Item(item));
            }
            match self.pushed.try_recv() {
                Ok(item) if item.id > self.cursor => {
                    self.cursor = item.id;
                    return Some(Pushed::Item(item));
                }
                Ok(_) => continue,
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    let batch = self.feed.since(self.cursor);
                    if batch.reset {
                        self.cursor = batch.cursor;
                        return Some(Pushed::Reset(batch));
                    }
                    self.backlog.extend(batch.items);
                }
                Err(
                    broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed,
                ) => {
                    return None;
                }
            }
        }
    }

    /// The last id this subscription handed out.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    fn post(title: &str) -> NewPost {
        NewPost {
            title: title.into(),
            body: String::new(),
        }
    }

    fn fixed() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_000_000)
    }

    fn ids(items: &[Arc<NewsItem>]) -> Vec<u64> {
        items.iter().map(|item| item.id).collect()
    }

    #[test]
    fn ids_increase_from_the_origin_and_latest_is_newest_first() {
        let feed = Feed::starting_at(10, 100, fixed);
        assert_eq!(feed.cursor(), 100);
        assert_eq!(feed.post(post("a")).id, 101);
        assert_eq!(feed.post(post("b")).id, 102);
        assert_eq!(ids(&feed.latest(5)), [102, 101]);
        assert_eq!(ids(&feed.latest(1)), [102]);
        assert_eq!(feed.cursor(), 102);
    }

    #[test]
    fn since_answers_exactly_what_came_after_the_cursor() {
        let feed = Feed::starting_at(10, 0, fixed);
        for t in ["a", "b", "c"] {
            feed.post(post(t));
        }
        let batch = feed.since(1);
        assert_eq!(ids(&batch.items), [2, 3]);
        assert_eq!((batch.cursor, batch.reset), (3, false));
        let up_to_date = feed.since(3);
        assert!(up_to_date.items.is_empty());
        assert_eq!((up_to_date.cursor, up_to_date.reset), (3, false));
        assert_eq!(
            ids(&feed.since(0).items),
            [1, 2, 3],
            "origin = from the start"
        );
    }

    #[test]
    fn recent_is_the_tail_of_the_history_oldest_first() {
        let feed = Feed::starting_at(10, 0, fixed);
        for t in ["a", "b", "c"] {
            feed.post(post(t));
        }
        let batch = feed.recent(2);
        assert_eq!(ids(&batch.items), [2, 3]);
        assert_eq!((batch.cursor, batch.reset), (3, false));
    }

    #[test]
    fn a_sibling_is_a_new_feed_with_the_same_clock() {
        let feed = Feed::starting_at(10, 0, fixed);
        feed.post(post("a"));
        let sibling = feed.sibling();
        assert_eq!(sibling.cursor(), 1_795_000_000_000_000);
        let item = sibling.post(post("b"));
        assert_eq!((item.id, item.posted_at), (1_795_000_000_000_001, fixed()));
        assert_eq!(feed.cursor(), 1, "the original is untouched");
    }

    fn item(id: u64, title: &str) -> NewsItem {
        NewsItem {
            id,
            title: title.into(),
            body: String::new(),
            posted_at: fixed(),
        }
    }

    #[test]
    fn a_copy_stores_the_ids_it_is_given_in_order_and_once() {
        // A copy of a feed kept elsewhere, whose items 41 and before are gone.
        let copy = Feed::starting_at(3, 0, fixed).replica(41);
        assert_eq!((copy.capacity(), copy.cursor()), (3, 41));
        assert_eq!(copy.append(item(42, "a")).map(|i| i.id), Some(42));
        assert_eq!(copy.append(item(43, "b")).map(|i| i.id), Some(43));
        assert_eq!(copy.append(item(43, "b")), None, "read twice: stored once");
        assert_eq!(copy.append(item(40, "old")), None, "before the copy began");
        assert_eq!(copy.cursor(), 43);
        assert_eq!(ids(&copy.since(41).items), [42, 43]);
        assert!(copy.since(40).reset, "the copy cannot vouch for 40");
        // Ids given elsewhere may skip; the history edge still holds.
        copy.append(item(50, "c"));
        copy.append(item(51, "d"));
        assert_eq!(ids(&copy.latest(10)), [51, 50, 43]);
        assert!(!copy.since(42).reset);
        assert!(copy.since(41).reset, "42 was forgotten");
    }

    #[tokio::test]
    async fn appended_items_reach_waiters_and_subscribers() {
        let copy = Feed::starting_at(10, 100, fixed);
        let (_, mut live) = copy.subscribe(Some(100));
        let waiter = tokio::spawn({
            let copy = copy.clone();
            async move { copy.wait_after(100).await }
        });
        copy.append(item(101, "a"));
        waiter.await.unwrap();
        assert_eq!(live.next().await, Pushed::Item(copy.latest(1)[0].clone()));
    }

    #[test]
    fn the_history_edge_is_exact() {
        let feed = Feed::starting_at(3, 0, fixed);
        for i in 1..=5 {
            feed.post(post(&i.to_string()));
        }
        // Items 3, 4, 5 are held; 1 and 2 are forgotten.
        assert_eq!(ids(&feed.latest(10)), [5, 4, 3]);
        let at_edge = feed.since(2);
        assert!(
            !at_edge.reset,
            "2 is the newest forgotten id: all after it is held"
        );
        assert_eq!(ids(&at_edge.items), [3, 4, 5]);
        let beyond = feed.since(1);
        assert!(beyond.reset, "item 2 is gone: a silent gap would be a lie");
        assert_eq!(ids(&beyond.items), [3, 4, 5]);
    }

    #[test]
    fn a_cursor_from_a_previous_run_or_the_future_resets() {
        let before_restart = Feed::starting_at(10, 1_000, fixed);
        before_restart.post(post("old"));
        let old_cursor = before_restart.cursor();

        let after_restart = Feed::new(10);
        after_restart.post(post("new"));
        assert!(after_restart.cursor() > old_cursor, "ids never repeat");
        let batch = after_restart.since(old_cursor);
        assert!(batch.reset);
        assert_eq!(batch.items[0].title, "new");

        let ahead = after_restart.since(after_restart.cursor() + 1);
        assert!(ahead.reset);
        assert_eq!(ahead.cursor, after_restart.cursor());
    }

    #[test]
    fn a_reset_carries_only_the_latest_items() {
        let feed = Feed::starting_at(200, 0, fixed);
        for i in 0..120 {
            feed.post(post(&i.to_string()));
        }
        let batch = feed.since(u64::MAX);
        assert!(batch.reset);
        assert_eq!(batch.items.len(), RESET_ITEMS);
        assert_eq!(batch.items.last().unwrap().id, 120);
    }

    #[test]
    fn pages_walk_back_through_matching_items() {
        let feed = Feed::starting_at(100, 0, fixed);
        for i in 1..=7 {
            feed.post(post(if i % 2 == 0 { "even" } else { "odd" }));
        }
        let page = feed.page(None, 3, |_| true);
        assert_eq!((ids(&page.items), page.more), (vec![7, 6, 5], true));
        assert_eq!(page.cursor, 7);
        let page = feed.page(Some(5), 3, |_| true);
        assert_eq!((ids(&page.items), page.more), (vec![4, 3, 2], true));
        let page = feed.page(Some(2), 3, |_| true);
        assert_eq!((ids(&page.items), page.more), (vec![1], false));
        let page = feed.page(None, 3, |item| item.title == "even");
        assert_eq!((ids(&page.items), page.more), (vec![6, 4, 2], false));
    }

    #[test]
    fn concurrent_posters_get_unique_ordered_ids() {
        let feed = Feed::starting_at(10_000, 0, fixed);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let feed = feed.clone();
                std::thread::spawn(move || (0..500).map(|_| feed.post(post("x")).id).collect())
            })
            .collect();
        let mut all = HashSet::new();
        for thread in threads {
            let ids: Vec<u64> = thread.join().unwrap();
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "each poster sees its ids grow"
            );
            all.extend(ids);
        }
        assert_eq!(all.len(), 4_000, "no id was given twice");
        let history = ids(&feed.since(0).items);
        assert!(history.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[tokio::test]
    async fn a_waiter_wakes_for_the_next_item_and_not_before() {
        let feed = Feed::starting_at(10, 0, fixed);
        feed.post(post("a"));
        // Something newer than 0 exists: no wait at all.
        feed.wait_after(0).await;

        let waiter = tokio::spawn({
            let feed = feed.clone();
            async move {
                feed.wait_after(1).await;
                feed.since(1)
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        feed.post(post("b"));
        let batch = waiter.await.unwrap();
        assert_eq!(ids(&batch.items), [2]);
    }

    #[tokio::test]
    async fn a_subscription_misses_nothing_between_snapshot_and_push() {
        let feed = Feed::starting_at(10, 0, fixed);
        feed.post(post("before"));
        let (snapshot, mut live) = feed.subscribe(Some(0));
        assert_eq!(ids(&snapshot.items), [1]);
        feed.post(post("after"));
        assert_eq!(live.next().await, Pushed::Item(feed.latest(1)[0].clone()));
        assert_eq!(live.cursor(), 2);
    }

    #[tokio::test]
    async fn try_next_takes_what_is_waiting_and_never_waits() {
        let feed = Feed::starting_at(1_000, 0, fixed);
        let (_, mut live) = feed.subscribe(Some(0));
        assert_eq!(live.try_next(), None);
        for i in 0..(PUSH_BUFFER + 10) {
            feed.post(post(&i.to_string()));
        }
        // Past the push buffer: caught up from the history, in order.
        let mut ids = Vec::new();
        while let Some(Pushed::Item(item)) = live.try_next() {
            ids.push(item.id);
        }
        assert_eq!(ids, (1..=(PUSH_BUFFER as u64 + 10)).collect::<Vec<_>>());
        assert_eq!(live.try_next(), None);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_catches_up_from_the_history() {
        let feed = Feed::starting_at(1_000, 0, fixed);
        let (_, mut slow) = feed.subscribe(Some(0));
        for i in 0..(PUSH_BUFFER * 2) {
            feed.post(post(&i.to_string()));
        }
        for expected in 1..=(PUSH_BUFFER as u64 * 2) {
            match slow.next().await {
                Pushed::Item(item) => assert_eq!(item.id, expected),
                Pushed::Reset(_) => panic!("the history still covers the subscriber"),
            }
        }
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_whole_history_gets_a_reset() {
        let feed = Feed::starting_at(10, 0, fixed);
        let (_, mut slow) = feed.subscribe(Some(0));
        for i in 0..(PUSH_BUFFER + 5) {
            feed.post(post(&i.to_string()));
        }
        match slow.next().await {
            Pushed::Reset(batch) => {
                assert_eq!(batch.items.len(), 10);
                assert_eq!(batch.cursor, PUSH_BUFFER as u64 + 5);
            }
            Pushed::Item(item) => panic!("item {} although its history is gone", item.id),
        }
        feed.post(post("next"));
        match slow.next().await {
            Pushed::Item(item) => assert_eq!(item.id, PUSH_BUFFER as u64 + 6),
            Pushed::Reset(_) => panic!("caught up after the reset"),
        }
    }
}
