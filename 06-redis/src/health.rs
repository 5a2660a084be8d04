//! When Redis goes away, the server stays up. Every socket closes with 1013
//! "try again later" (each socket's loop watches [`lost`]) and its page
//! reconnects by itself, with backoff; new sockets get 503, and posts are
//! refused, never acknowledged. Meanwhile [`watch_redis`] asks Redis every
//! second; once it answers, the rooms are read again from it and the
//! server takes sockets again.

use std::sync::Arc;
use std::time::Duration;

use redis::ErrorKind;
use redis::RedisError;
use redis::RedisResult;
use redis::ServerErrorKind;
use shared::Shutdown;
use tokio::sync::watch;

use crate::rooms::Rooms;
use crate::store::Store;

/// Why sockets close with 1013 when Redis goes away.
pub const REDIS_AWAY: &str = "the news service lost Redis; try again in a moment";

impl Store {
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// What a socket watches from its first moment: see [`lost`].
    pub fn health(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Resolves when Redis cannot be reached (at once if it cannot now).
    pub async fn down(&self) {
        let _ = self.up.subscribe().wait_for(|&up| !up).await;
    }

    /// Resolves when Redis answers again (at once if it does now).
    pub async fn back(&self) {
        let _ = self.up.subscribe().wait_for(|&up| up).await;
    }

    /// Says that Redis answers again: sockets and posts are welcome.
    pub fn mark_up(&self) {
        self.up.send_replace(true);
    }

    /// Passes a result through, noting when its error means that Redis
    /// cannot be reached (as opposed to, say, a bug in a script).
    pub fn check<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result {
            if unreachable(error) {
                // Said once per outage: a change is what closes the sockets.
                if self.up.send_if_modified(|up| std::mem::replace(up, false)) {
                    tracing::warn!("Redis at {} cannot be reached: {error}", self.url);
                }
            } else {
                tracing::error!(%error, "Redis refused a command");
            }
        }
        result
    }
}

/// Keeps an eye on Redis. When it cannot be reached, the server stays up:
/// every socket closes with 1013 "try again later" (each socket's loop
/// sees it) and the pages reconnect by themselves, with backoff; new
/// sockets get 503, and posts are refused, never acknowledged. Meanwhile
/// this task asks Redis every second; once it answers, the rooms are read
/// again from it and the server takes sockets again.
pub async fn watch_redis(rooms: Arc<Rooms>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = rooms.store.down() => {}
            () = shutdown.wait() => return,
        }
        tracing::warn!(
            "Redis is away: sockets close with 1013, posts are refused until it is back"
        );
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.wait() => return,
            }
            if rooms.store.ping().await.is_ok() && rooms.reload().await.is_ok() {
                break;
            }
        }
        rooms.store.mark_up();
        tracing::info!("Redis is back: sockets and posts are welcome again");
    }
}

/// Resolves once Redis could not be reached at some moment since `health`
/// was taken from [`Store::health`], even if it is back by now: a socket
/// opened before an outage closes, and its page reconnects to a server
/// whose rooms were read again from Redis.
pub async fn lost(health: &mut watch::Receiver<bool>) {
    if !*health.borrow() {
        return;
    }
    // The only changes are "down" and "back up": any change is an outage.
    let _ = health.changed().await;
}

/// Errors that mean "Redis is not there", rather than "Redis said no".
pub fn unreachable(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_unrecoverable_error()
        || error.is_timeout()
        || error.kind() == ErrorKind::Server(ServerErrorKind::BusyLoading)
}
