//! Stopping a server gracefully: one signal that the accept loop, every
//! connection, every long poll, stream and socket waits on, fired by Ctrl-C
//! or SIGTERM. What each of them does when it fires is its step's business
//! (a long poll answers, a socket says 1001 "going away").

use std::sync::Arc;

use tokio::sync::watch;

/// A signal that the server is stopping. Clones share the signal: the
/// accept loop, every connection, every long poll and every socket can wait
/// on it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    signal: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Shutdown {
        Shutdown {
            signal: Arc::new(watch::Sender::new(false)),
        }
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
        self.signal.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once the shutdown has started (at once if it already has).
    pub async fn wait(&self) {
        let mut receiver = self.signal.subscribe();
        // The sender lives in `self`, so the channel cannot close under us.
        let _ = receiver.wait_for(|&stopping| stopping).await;
    }
}
