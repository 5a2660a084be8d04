//! How many posts one client may send: at most 20 in any 10 seconds, per
//! client address, whichever way it posts (a form, a script's JSON, a
//! WebSocket message). Past that the post is refused (`429 Too Many
//! Requests` with `Retry-After` over HTTP, an error message on a socket)
//! and nothing is stored, so that one participant's loop cannot fill
//! everyone's feed.
//!
//! Every server keeps its own count ([`http::serve`](crate::http::serve)
//! makes one [`PostLimit`] per listener and hands it to each request); the
//! policy is the process's, set once from the command line with
//! `--post-limit` ([`set_policy`]). The bench posts bursts of 200 on
//! purpose and lifts it (`--post-limit 0`); so may a leader.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use hyper::http::Extensions;

/// How many posts a client may send per [`WINDOW`] unless `--post-limit`
/// says otherwise.
pub const DEFAULT_POSTS: usize = 20;

/// The window the limit counts over.
pub const WINDOW: Duration = Duration::from_secs(10);

/// How many clients a server remembers at once. Past that, the clients
/// that have not posted for a whole window are forgotten first; a server
/// flooded from more addresses than that stops counting the newest ones
/// rather than growing without end.
const MAX_CLIENTS: usize = 10_000;

/// The process's policy: posts per window, `None` for no limit.
static POLICY: OnceLock<Option<usize>> = OnceLock::new();

/// Sets how many posts a client may send per 10 seconds, `0` for no limit.
/// Called once, by a binary's `main`, before it serves; later calls change
/// nothing.
pub fn set_policy(posts: usize) {
    let _first_call_wins = POLICY.set((posts > 0).then_some(posts));
}

/// Who sent a request: its TCP peer's address. [`http::serve`] puts it in
/// every request's extensions.
///
/// [`http::serve`]: crate::http::serve
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client(pub IpAddr);

/// What a server remembers of each client's recent posts.
#[derive(Debug)]
pub struct PostLimit {
    /// Posts per window; `None` lets everything through.
    posts: Option<usize>,
    /// When each client posted lately, oldest first.
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Default for PostLimit {
    /// The process's policy (20 per 10 s unless `--post-limit` changed it).
    fn default() -> Self {
        PostLimit::new(*POLICY.get().unwrap_or(&Some(DEFAULT_POSTS)))
    }
}

impl PostLimit {
    /// At most `posts` per window per client; `None` for no limit.
    pub fn new(posts: Option<usize>) -> PostLimit {
        PostLimit {
            posts,
            recent: Mutex::default(),
        }
    }

    /// Counts a post from `client`, or refuses it and says why.
    pub fn admit(&self, client: IpAddr) -> Result<(), Refusal> {
        self.admit_at(client, Instant::now())
            .map_err(|wait| Refusal::new(self.posts.unwrap_or(0), wait))
    }

    /// `Err` says how long to wait until the client may post again.
    fn admit_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(posts) = self.posts else {
            return Ok(());
        };
        let mut recent = self.recent.lock().expect("no panics while counting");
        if recent.len() >= MAX_CLIENTS && !recent.contains_key(&client) {
            recent.retain(|_, times| times.back().is_some_and(|&at| now - at < WINDOW));
            if recent.len() >= MAX_CLIENTS {
                return Ok(());
            }
        }
        let times = recent.entry(client).or_default();
        while times.front().is_some_and(|&at| now - at >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= posts {
            let oldest = *times.front().expect("a full window is not empty");
            return Err(WINDOW - (now - oldest));
        }
        times.push_back(now);
        Ok(())
    }
}

/// A post refused for coming too fast.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Whole seconds until the client may post again (`Retry-After`).
    pub retry_after: u64,
    /// What the person reads: the limit, and when to try again.
    pub message: String,
}

impl Refusal {
    fn new(posts: usize, wait: Duration) -> Refusal {
        let retry_after = retry_after(wait);
        let message = format!(
            "Too many posts: at most {posts} in {} seconds from one address. \
             Nothing was stored; try again in {retry_after} s.",
            WINDOW.as_secs(),
        );
        Refusal {
            retry_after,
            message,
        }
    }
}

/// Counts a post sent with this request, or refuses it, by the limit and
/// the client that [`http::serve`](crate::http::serve) put in its
/// extensions. (A request without them, from a server of another kind,
/// is not limited.)
pub fn admit(extensions: &Extensions) -> Result<(), Refusal> {
    Poster::of(extensions).admit()
}

/// A client and the limit it posts under, kept beyond its request: a
/// WebSocket takes them from its upgrade request, so that its posts count
/// with the same client's HTTP posts and those of its other sockets.
/// Otherwise every new socket would be a fresh allowance.
#[derive(Clone, Debug, Default)]
pub struct Poster {
    /// `None` for a request without them (see [`admit`]): not limited.
    limit: Option<(Arc<PostLimit>, Client)>,
}

impl Poster {
    /// The limit and the client that [`http::serve`](crate::http::serve)
    /// put in a request's extensions.
    pub fn of(extensions: &Extensions) -> Poster {
        let limit = match (
            extensions.get::<Arc<PostLimit>>(),
            extensions.get::<Client>(),
        ) {
            (Some(limit), Some(client)) => Some((limit.clone(), *client)),
            _ => None,
        };
        Poster { limit }
    }

    /// The client's address, when the request had one.
    pub fn client(&self) -> Option<IpAddr> {
        self.limit.as_ref().map(|(_, client)| client.0)
    }

    /// Counts a post from this client, or refuses it and says why.
    pub fn admit(&self) -> Result<(), Refusal> {
        match &self.limit {
            Some((limit, client)) => limit.admit(client.0),
            None => Ok(()),
        }
    }
}

/// `wait` in whole seconds, rounded up, as `Retry-After` wants it.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const BOB: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_client_gets_its_posts_per_window_and_no_more() {
        let limit = PostLimit::new(Some(3));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.admit_at(ALICE, start), Ok(()));
        }
        let second = Duration::from_secs(1);
        assert_eq!(limit.admit_at(ALICE, start + second), Err(WINDOW - second));
        // Someone else is not held up by Alice.
        assert_eq!(limit.admit_at(BOB, start + second), Ok(()));
        // A refused post is not counted: once the window has passed, Alice
        // may post again.
        assert_eq!(limit.admit_at(ALICE, start + WINDOW), Ok(()));
    }

    #[test]
    fn no_limit_lets_everything_through() {
        let limit = PostLimit::new(None);
        let now = Instant::now();
        for _ in 0..1_000 {
            assert_eq!(limit.admit_at(ALICE, now), Ok(()));
        }
    }

    #[test]
    fn memory_stays_bounded_under_many_addresses() {
        let limit = PostLimit::new(Some(1));
        let now = Instant::now();
        for n in 0..(MAX_CLIENTS as u32 + 500) {
            let _ = limit.admit_at(IpAddr::V4(n.into()), now);
        }
        assert!(limit.recent.lock().unwrap().len() <= MAX_CLIENTS);
        // Once their window is over, old clients make room for new ones.
        let later = now + WINDOW;
        assert_eq!(limit.admit_at(ALICE, later), Ok(()));
        assert_eq!(limit.admit_at(ALICE, later), Err(WINDOW));
    }

    #[test]
    fn a_poster_counts_with_the_requests_of_its_client() {
        let mut upgrade = Extensions::new();
        upgrade.insert(Arc::new(PostLimit::new(Some(2))));
        upgrade.insert(Client(ALICE));
        // The socket opened by that request, and a later request of the
        // same client to the same server.
        let socket = Poster::of(&upgrade);
        let mut request = Extensions::new();
        request.insert(upgrade.get::<Arc<PostLimit>>().unwrap().clone());
        request.insert(Client(ALICE));
        assert_eq!(socket.admit(), Ok(()));
        assert_eq!(admit(&request), Ok(()));
        assert!(socket.admit().is_err());
        // Without a limit in the request, nothing is limited.
        assert_eq!(Poster::of(&Extensions::new()).admit(), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after(Duration::from_millis(1)), 1);
        assert_eq!(retry_after(Duration::from_secs(3)), 3);
        assert_eq!(retry_after(Duration::from_millis(9_001)), 10);
        let refusal = Refusal::new(20, Duration::from_millis(2_500));
        assert_eq!(refusal.retry_after, 3);
        assert!(refusal.message.contains("at most 20 in 10 seconds"));
        assert!(refusal.message.contains("try again in 3 s"));
    }
}
