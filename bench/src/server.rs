//! The step under test, as a process of its own, and what `/proc` says
//! about it.
//!
//! The bench runs a step by starting *itself* again with a hidden
//! subcommand (`bench serve-04 --port 0 ...`), which does exactly what the
//! step's `main.rs` does: bind, make a feed, call the step's `run`. So the
//! server has its own pid, its own CPU time and its own memory, apart from
//! the simulated clients, and `cargo run -p bench` always measures the code
//! in the working tree (a separately built step binary could be stale).
//!
//! The child prints `listening ADDRESS PID` once bound; logging is set to
//! `warn` so that one log line per request does not become the thing we
//! measure. Warnings, if any, are passed on to our stderr. The child exits
//! when its stdin closes, so that it never outlives the bench, however the
//! bench ends; [`Server`]'s `Drop` closes it, and kills the child if that
//! is not enough.
//!
//! Step 06 keeps its rooms in Redis and runs as two servers: a
//! [`Deployment`] starts a `redis-server` of the run's own on a free port
//! (no snapshots, no append-only file: nothing is written to disk), then
//! both servers with a fresh key prefix. Dropping it stops all three.

use std::io;
use std::io::BufRead;
use std::io::Read as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clients::Era;
use crate::clients::StepFlags;
use crate::wire::Target;

/// What the parent reads on the child's stdout to learn its address.
const LISTENING: &str = "listening ";

/// A step running in a child process. Dropping it stops the process.
pub struct Server {
    child: Child,
    /// Our end of the child's stdin: closing it stops the child.
    stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    /// The step's process id, for `/proc`.
    pid: u32,
}

impl Server {
    /// Starts `era`'s step with these flags (after `--port 0`) and waits
    /// until it listens.
    ///
    /// To profile the server, set `BENCH_WRAP` to a command that runs
    /// another, for example `BENCH_WRAP="perf record -g -o /tmp/perf.data"`
    /// or `BENCH_WRAP=heaptrack`: the step then runs under it.
    pub async fn start(era: Era, flags: &[String]) -> Result<Server, String> {
        let exe = std::env::current_exe()
            .map_err(|error| format!("cannot find the bench's own executable: {error}"))?;
        let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(wrapper) => {
                let mut command = Command::new(wrapper);
                command.args(words).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let mut child = command
            .arg(era.serve_command())
            .args(["--host", "127.0.0.1", "--port", "0"])
            // The bench posts bursts of 200 from one address on purpose.
            .args(["--post-limit", "0"])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", era.slug()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // From here on, `server` stops the child on every way out.
        let mut server = Server {
            stdin: child.stdin.take(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: 0,
        };

        let (listening, announced) = oneshot::channel();
        let slug = era.slug();
        std::thread::spawn(move || {
            let mut listening = Some(listening);
            for line in io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix(LISTENING).and_then(parse_announcement) {
                    Some(announced) if listening.is_some() => {
                        let _ = listening.take().expect("checked").send(announced);
                    }
                    _ => eprintln!("  [{slug}] {line}"),
                }
            }
        });
        (server.addr, server.pid) = tokio::time::timeout(Duration::from_secs(10), announced)
            .await
            .map_err(|_| format!("{slug} did not start listening within 10 s"))?
            .map_err(|_| format!("{slug} exited before it listened"))?;
        Ok(server)
    }

    /// The server's CPU time and memory right now.
    pub fn usage(&self) -> Result<Usage, String> {
        Usage::of(self.pid)
            .map_err(|error| format!("cannot read /proc/{} (did it crash?): {error}", self.pid))
    }
}

/// The servers of one run: one step process, or for step 06 two of them
/// and the Redis they share. Dropping it stops them all.
pub struct Deployment {
    pub servers: Vec<Server>,
    /// Declared after the servers, so dropped after them: they say goodbye
    /// to a Redis that is still there.
    _redis: Option<RedisServer>,
}

impl Deployment {
    /// Starts `era.instances()` servers of `era` (and a Redis for 06).
    /// `Ok(None)` when the era cannot run on this machine, after one line
    /// saying why.
    pub async fn start(era: Era, mut flags: StepFlags) -> Result<Option<Deployment>, String> {
        let redis = if era == Era::Redis {
            let Some(redis) = RedisServer::start().await? else {
                return Ok(None);
            };
            let prefix = format!("bench-{}-{}", std::process::id(), redis.port);
            flags.redis = Some((redis.url.clone(), prefix));
            Some(redis)
        } else {
            None
        };
        let mut servers = Vec::new();
        for _ in 0..era.instances() {
            servers.push(Server::start(era, &era.flags(&flags)).await?);
        }
        Ok(Some(Deployment {
            servers,
            _redis: redis,
        }))
    }

    /// Where the pages connect, server by server.
    pub fn targets(&self) -> Vec<Target> {
        self.servers
            .iter()
            .map(|server| Target::new(server.addr))
            .collect()
    }

    /// Each server's CPU time and memory right now.
    pub fn usage(&self) -> Result<Vec<Usage>, String> {
        self.servers.iter().map(Server::usage).collect()
    }
}

/// A `redis-server` of the bench's own, on a free port of 127.0.0.1.
/// Dropping it kills it.
pub struct RedisServer {
    child: Child,
    port: u16,
    /// `redis://127.0.0.1:PORT`
    url: String,
}

impl RedisServer {
    /// `Ok(None)` when there is no `redis-server` to run, after one line
    /// saying so.
    async fn start() -> Result<Option<RedisServer>, String> {
        let program = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let installed = Command::new(&program)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            eprintln!(
                "  skipping 06: `{program}` is not installed (on Debian: apt-get install redis-server)"
            );
            return Ok(None);
        }
        // A free port: bind port 0, note what the system chose, let go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("no free port for Redis: {error}"))?
            .port();
        let child = Command::new(&program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {program}: {error}"))?;
        let redis = RedisServer {
            child,
            port,
            url: format!("redis://127.0.0.1:{port}"),
        };
        // Ready once it answers PING.
        for _ in 0..500 {
            if answers(port) {
                return Ok(Some(redis));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!(
            "{program} did not answer on port {port} within 10 s"
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Does a Redis on this port answer `PING` with `+PONG`?
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// `ADDRESS PID`.
fn parse_announcement(text: &str) -> Option<(SocketAddr, u32)> {
    let (addr, pid) = text.split_once(' ')?;
    Some((addr.parse().ok()?, pid.parse().ok()?))
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing its stdin tells the server to exit (and a profiler that
        // wraps it to write its data); kill it if it does not.
        drop(self.stdin.take());
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side: announce the address and the process id (which is not
/// the one the parent started when a profiler wraps the step), and exit
/// when the parent's end of stdin closes: the parent is done with us, or
/// gone, however it ended.
pub fn announce(addr: SocketAddr) {
    println!("{LISTENING}{addr} {}", std::process::id());
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });
}

/// What `/proc` says about a process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// CPU time, user plus system, since the process started.
    pub cpu: Duration,
    /// Resident memory now (`VmRSS`), in bytes.
    pub rss: u64,
    /// The most resident memory so far (`VmHWM`, "high water mark").
    pub peak_rss: u64,
}

impl Usage {
    /// Several processes together: CPU times and memory added up.
    pub fn total(usages: &[Usage]) -> Usage {
        Usage {
            cpu: usages.iter().map(|usage| usage.cpu).sum(),
            rss: usages.iter().map(|usage| usage.rss).sum(),
            peak_rss: usages.iter().map(|usage| usage.peak_rss).sum(),
        }
    }

    pub fn of(pid: u32) -> io::Result<Usage> {
        // /proc/PID/stat: "pid (name) state ppid ...". The name may hold
        // spaces, so count fields after the last ')': utime and stime are
        // fields 14 and 15 of the whole line, in clock ticks.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks = |index: usize| -> io::Result<u64> {
            fields
                .get(index)
                .and_then(|field| field.parse().ok())
                .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
        };
        // Field 3 (state) is index 0 here, so field 14 is index 11.
        let (utime, stime) = (ticks(11)?, ticks(12)?);
        // SAFETY: sysconf only reads a system constant.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu = Duration::from_secs_f64((utime + stime) as f64 / per_second);

        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib = |name: &str| -> io::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .map(|kib| kib * 1024)
                .ok_or_else(|| io::Error::other(format!("no {name} in /proc/PID/status")))
        };
        Ok(Usage {
            cpu,
            rss: kib("VmRSS:")?,
            peak_rss: kib("VmHWM:")?,
        })
    }
}

/// CPU time the whole machine has spent busy (all cores, all processes)
/// since it booted, from the first line of `/proc/stat`. Compared with the
/// server's and the bench's own, it tells whether something else was
/// running during a measurement.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        // user nice system idle iowait irq softirq steal: skip idle, iowait.
        .filter(|(index, _)| *index != 3 && *index != 4)
        .filter_map(|(_, field)| field.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// Warns when other programs took a noticeable share of the machine while
/// `what` was measured: the figures are then partly about them.
pub fn warn_if_busy(what: &str, machine: Duration, ours: Duration, wall: Duration) {
    let others = machine.saturating_sub(ours);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let share = others.as_secs_f64() / (wall.as_secs_f64() * cores).max(1e-9);
    if share > 0.05 {
        eprintln!(
            "  note: other programs used {:.1} s of CPU ({:.0}% of the machine) while {what} \
             ran: its figures are partly about them",
            others.as_secs_f64(),
            share * 100.0
        );
    }
}

/// Raises this process's open-file limit to the hard limit: every
/// simulated page holds a socket, and each socket is a file descriptor.
/// The server, started later as a child, inherits the raised limit.
pub fn raise_fd_limit() -> u64 {
    shared::cli::raise_fd_limit()
}

/// `target/bench/`: `$CARGO_TARGET_DIR/bench` when set, else next to the
/// `release` or `debug` folder the bench runs from.
pub fn output_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("bench");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench")
}

/// The environment variable that tells a child which CPU to run on.
const SERVER_CPU: &str = "BENCH_SERVER_CPU";

/// Server and pages on cores of their own, the way a server and its
/// clients would be on different machines: the server on the first CPU
/// this process may use, the pages (this process, and every thread it
/// starts from now on) on the others. Nothing happens with fewer than two
/// CPUs, or with `BENCH_PIN=0`. Returns what was done, in words.
pub fn pin() -> String {
    if std::env::var("BENCH_PIN").is_ok_and(|pin| pin == "0") {
        return "not pinned (BENCH_PIN=0)".into();
    }
    let mine = cpus();
    let [server, pages @ ..] = mine.as_slice() else {
        return "not pinned (no CPU list)".into();
    };
    if pages.is_empty() || !set_cpus(pages) {
        return "not pinned (one CPU)".into();
    }
    // SAFETY: the bench sets this once, before any thread reads it.
    unsafe { std::env::set_var(SERVER_CPU, server.to_string()) };
    let list: Vec<String> = pages.iter().map(usize::to_string).collect();
    format!("server on CPU {server}, pages on CPU {}", list.join(","))
}

/// In the child, before its runtime starts: the CPU [`pin`] chose. Tokio
/// then starts one worker thread, for the one core it may use.
pub fn pin_server() {
    if let Some(cpu) = std::env::var(SERVER_CPU)
        .ok()
        .and_then(|cpu| cpu.parse().ok())
    {
        set_cpus(&[cpu]);
    }
}

/// The CPUs this thread may run on.
fn cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled by the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Restricts this thread (and the threads it starts later) to `cpus`.
fn set_cpus(cpus: &[usize]) -> bool {
    // SAFETY: as above; the set only holds CPUs below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&cpu| cpu < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
