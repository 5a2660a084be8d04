//! Stopping a server gracefully: one signal that the accept loop, every
//! connection, every long poll, stream and socket waits on, fired by Ctrl-C
//! or SIGTERM. What each of them does when it fires is its step's business
//! (a long poll answers, a socket says 1001 "going away").

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use tokio::sync::Notify;

/// A signal that the server is stopping. Clones share the signal: the
/// accept loop, every connection, every long poll and every socket can wait
/// on it.
///
/// A flag, and a `Notify` for those who wait: every open socket keeps one
/// wait for the whole of its life, and this one is small (96 bytes in the
/// socket's task, where a `watch` channel's took 176).
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    signal: Arc<Signal>,
}

#[derive(Debug, Default)]
struct Signal {
    stopping: AtomicBool,
    waiters: Notify,
}

impl Shutdown {
    /// A signal that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// A signal that fires on Ctrl-C (SIGINT), or on SIGTERM, which is how
    /// `kill`, systemd and container runtimes ask a server to stop.
    pub fn on_ctrl_c() -> Shutdown {
        let shutdown = Shutdown::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let terminate = async {
                use tokio::signal::unix::SignalKind;
                match tokio::signal::unix::signal(SignalKind::terminate()) {
                    Ok(mut signal) => signal.recv().await,
                    Err(_) => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let terminate = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
                _ = terminate => tracing::info!("SIGTERM: shutting down"),
            }
            trigger.trigger();
        });
        shutdown
    }

    /// Starts the shutdown; calling it again does nothing.
    pub fn trigger(&self) {
        self.signal.stopping.store(true, Ordering::SeqCst);
        self.signal.waiters.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.signal.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once the shutdown has started (at once if it already has).
    pub async fn wait(&self) {
        // Signed up before the flag is read: a trigger in between wakes
        // this wait, instead of slipping past it.
        let mut woken = pin!(self.signal.waiters.notified());
        woken.as_mut().enable();
        if self.is_triggered() {
            return;
        }
        woken.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_wait_ends_when_the_shutdown_starts() {
        let shutdown = Shutdown::new();
        let waits: Vec<_> = (0..3)
            .map(|_| {
                let shutdown = shutdown.clone();
                tokio::spawn(async move { shutdown.wait().await })
            })
            .collect();
        // Let them start waiting.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!shutdown.is_triggered());
        assert!(waits.iter().all(|wait| !wait.is_finished()));
        shutdown.trigger();
        for wait in waits {
            let ended = tokio::time::timeout(Duration::from_secs(1), wait).await;
            ended.expect("the wait ends").expect("the task ran");
        }
        // A wait that starts afterwards ends at once.
        let late = tokio::time::timeout(Duration::from_secs(1), shutdown.wait()).await;
        late.expect("a late wait ends at once");
    }
}
