//! Memory that comes back: what a burst or a crowd of connections freed is
//! given back to the system, instead of staying in the process for good.
//!
//! When a connection closes, or a socket's outbox lets go of its buffer,
//! the memory goes back to the allocator, not to the system. glibc's
//! allocator returns it to the system only from the top of its heap, and
//! a heap where 200 posting connections came and went, among thousands
//! that stay, is full of holes in the middle: after one burst, the
//! server's memory stayed about a third higher, for good, though none of
//! it was in use. `malloc_trim` gives back every whole page in those
//! holes. [`start`] runs it every [`EVERY`], on a thread of tokio's
//! blocking pool, where its walk through the heap holds up no socket. Other allocators (jemalloc,
//! mimalloc) do this by themselves; on systems without glibc this module
//! does nothing.

use std::sync::Once;
use std::time::Duration;

/// How often freed memory is given back.
pub const EVERY: Duration = Duration::from_secs(1);

/// Starts giving freed memory back, once per process however many servers
/// call it (the launcher runs all the steps in one). Must be called from
/// inside a tokio runtime.
pub fn start() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        tokio::spawn(async {
            let mut ticks = tokio::time::interval(EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let _ = tokio::task::spawn_blocking(trim).await;
            }
        });
    });
}

/// Gives the free pages of the heap back to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free
    // memory; it is safe to call at any time, from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
