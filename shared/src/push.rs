//! Plumbing for the steps that push (04 and 05): encode each item once for
//! every socket, and count the sockets that are open so that a server can
//! wait for them to say goodbye when it stops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Encodes each message once, however many sockets send it.
///
/// When an item is posted, every socket's task wants the same frame
/// (`{"type":"news","item":{...}}`) at about the same moment. The first one
/// encodes it; the others get a clone of the same bytes, which for
/// `Utf8Bytes` or `Bytes` is a reference count, not a copy. Only the most
/// recent frames are kept: a burst of items is over long before it would
/// matter.
pub struct EncodeOnce<K, V> {
    recent: Mutex<VecDeque<(K, V)>>,
    keep: usize,
}

impl<K: PartialEq, V: Clone> EncodeOnce<K, V> {
    /// Remembers the last `keep` encodings.
    pub fn new(keep: usize) -> Self {
        EncodeOnce {
            recent: Mutex::new(VecDeque::with_capacity(keep)),
            keep: keep.max(1),
        }
    }

    /// The encoding of `key`, made by `encode` if nobody made it yet.
    pub fn get(&self, key: K, encode: impl FnOnce() -> V) -> V {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, value)) = recent.iter().rev().find(|(k, _)| *k == key) {
            return value.clone();
        }
        let value = encode();
        if recent.len() == self.keep {
            recent.pop_front();
        }
        recent.push_back((key, value.clone()));
        value
    }
}

/// How many sockets are open. Each socket holds an [`Open`] for as long as
/// it lives.
#[derive(Clone, Debug)]
pub struct Sockets {
    open: Arc<watch::Sender<usize>>,
}

impl Default for Sockets {
    fn default() -> Self {
        Sockets {
            open: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// One open socket; dropping it closes the count.
#[derive(Debug)]
pub struct Open {
    sockets: Sockets,
}

impl Sockets {
    /// Counts a new socket until the returned guard is dropped.
    pub fn open(&self) -> Open {
        self.open.send_modify(|open| *open += 1);
        Open {
            sockets: self.clone(),
        }
    }

    /// How many sockets are open now.
    pub fn count(&self) -> usize {
        *self.open.borrow()
    }

    /// Waits until every socket has closed, or `limit` has passed.
    pub async fn closed(&self, limit: Duration) {
        let mut open = self.open.subscribe();
        let _ = tokio::time::timeout(limit, open.wait_for(|&open| open == 0)).await;
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.sockets.open.send_modify(|open| *open -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_encoded_once() {
        let cache = EncodeOnce::new(2);
        let mut calls = 0;
        for _ in 0..3 {
            let value = cache.get(1, || {
                calls += 1;
                "one".to_string()
            });
            assert_eq!(value, "one");
        }
        assert_eq!(calls, 1);
        cache.get(2, || "two".to_string());
        cache.get(3, || "three".to_string());
        // 1 was pushed out by 2 and 3.
        assert_eq!(cache.get(1, || "again".to_string()), "again");
    }

    #[tokio::test]
    async fn sockets_are_counted_until_dropped() {
        let sockets = Sockets::default();
        let first = sockets.open();
        let second = sockets.open();
        assert_eq!(sockets.count(), 2);
        drop(first);
        assert_eq!(sockets.count(), 1);
        let waiter = tokio::spawn({
            let sockets = sockets.clone();
            async move { sockets.closed(Duration::from_secs(10)).await }
        });
        drop(second);
        waiter.await.unwrap();
        assert_eq!(sockets.count(), 0);
    }
}
