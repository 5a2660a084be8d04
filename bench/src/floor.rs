//! Scenario `floor`: what the kernel alone takes to deliver one item.
//!
//! Whatever the era, a delivery ends in a `send` on one page's socket, and
//! on 127.0.0.1 the kernel's work for the *receiving* side (TCP, the
//! wakeup of the page) runs inside that same call, on the server's CPU. So
//! part of every "CPU per delivery" in `capacity` belongs to the kernel
//! and to the loopback, not to the step.
//!
//! This scenario measures that part alone. It opens N connections inside
//! the bench; a plain thread pinned to the server's CPU sends one small
//! message (about a news frame's size) on each, `--rate` times a second,
//! and nothing else: no runtime, no framing, no task to wake, no buffer.
//! Its CPU time per send is the floor under the figures of every era on
//! this machine; what an era costs above it is the step's own.

use std::io::Write as _;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::report;
use crate::server;

#[derive(clap::Args, Clone, Debug)]
pub struct Options {
    /// How many connections (each is two sockets in this one process).
    #[arg(long, default_value_t = 5000)]
    pub pages: usize,
    /// Sends per connection per second, as `capacity`'s steady phase.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// For how long.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// The size of one message: a news item's frame is about this.
    #[arg(long, default_value_t = 220)]
    pub bytes: usize,
}

/// What a bare send cost: CPU time per send, and how many were made.
pub struct Floor {
    pub pages: usize,
    pub sends: usize,
    pub per_send: Duration,
}

pub async fn run(options: &Options, fd_limit: u64) -> Result<Floor, String> {
    if options.rate <= 0.0 || options.seconds <= 0.0 || options.pages == 0 {
        return Err("--pages, --rate and --seconds must be more than zero".into());
    }
    // Both ends of every connection are in this process.
    let most = (fd_limit.saturating_sub(64) / 2) as usize;
    let pages = options.pages.min(most);
    if pages < options.pages {
        eprintln!(
            "floor: {pages} connections, not {}: the open-file limit is {fd_limit}",
            options.pages
        );
    }
    let io = |error: std::io::Error| format!("floor: {error}");
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let mut senders = Vec::with_capacity(pages);
    let mut readers = JoinSet::new();
    for _ in 0..pages {
        let mut page = TcpStream::connect(addr).await.map_err(io)?;
        let (server, _) = listener.accept().await.map_err(io)?;
        server.set_nodelay(true).map_err(io)?;
        let server = server.into_std().map_err(io)?;
        server.set_nonblocking(false).map_err(io)?;
        senders.push(server);
        // The page reads everything and throws it away.
        readers.spawn(async move {
            let mut buffer = [0u8; 2048];
            while matches!(page.read(&mut buffer).await, Ok(n) if n > 0) {}
        });
    }

    let rounds = ((options.rate * options.seconds).round() as usize).max(1);
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let message = vec![b'x'; options.bytes.max(1)];
    let sender = std::thread::spawn(move || -> std::io::Result<Duration> {
        server::pin_server();
        let mut spent = Duration::ZERO;
        for _ in 0..rounds {
            let started = thread_cpu();
            for socket in &mut senders {
                socket.write_all(&message)?;
            }
            spent += thread_cpu().saturating_sub(started);
            std::thread::sleep(interval);
        }
        Ok(spent)
    });
    let spent = tokio::task::spawn_blocking(move || sender.join())
        .await
        .map_err(|error| format!("floor: {error}"))?
        .map_err(|_| "floor: the sending thread panicked".to_string())?
        .map_err(io)?;
    // The senders are gone with their thread: every page reads its end.
    while readers.join_next().await.is_some() {}
    let sends = rounds * pages;
    Ok(Floor {
        pages,
        sends,
        per_send: spent / sends as u32,
    })
}

/// This thread's CPU time so far, user and system.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on our stack.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

pub fn report(options: &Options, floor: &Floor) -> Result<String, String> {
    println!(
        "\n### The floor: one bare send of {} bytes on each of {} connections, {}/s for {} s\n",
        options.bytes,
        report::thousands(floor.pages as u64),
        options.rate,
        options.seconds
    );
    print!(
        "{}",
        report::table(
            &["Connections", "Sends", "CPU per send"],
            &[vec![
                report::thousands(floor.pages as u64),
                report::thousands(floor.sends as u64),
                format!("{:.2} µs", floor.per_send.as_secs_f64() * 1e6),
            ]],
        )
    );
    println!(
        "\nA plain thread on the server's CPU, writing on blocking sockets: the kernel's \
         own cost of one delivery on this machine (on 127.0.0.1, the receiving side's \
         TCP work included). `capacity`'s CPU per delivery can only be above it."
    );
    Ok("none (one figure)".into())
}
