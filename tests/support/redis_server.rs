//! A Redis server for the tests of step 06: the one `REDIS_URL` names, or
//! a `redis-server` this test starts on a free port and stops when it ends.
//!
//! Without `redis-server` (and without `REDIS_URL`), the Redis tests print
//! one line saying so and pass, so that `cargo test` works on a laptop with
//! no Redis; with `CI=true` they fail instead.

use std::net::TcpListener;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

/// A Redis a test may use. Dropping it stops the server if the test
/// started one.
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT`
    pub url: String,
    /// The server this test started, if it did.
    process: Option<Process>,
}

struct Process {
    child: Option<Child>,
    port: u16,
    /// Where its append-only file lives, for a server that is restarted.
    dir: PathBuf,
    durable: bool,
}

impl RedisServer {
    /// `REDIS_URL` if set, otherwise a new `redis-server`. `None` when
    /// there is neither (outside CI).
    pub fn any() -> Option<RedisServer> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Some(RedisServer { url, process: None });
        }
        RedisServer::spawn(false)
    }

    /// A `redis-server` of this test's own, that it may stop and start
    /// again (see [`RedisServer::stop`]), or pause and resume (see
    /// [`RedisServer::pause`]). It writes every change to an
    /// append-only file before it answers (`appendfsync always`), so that
    /// what it acknowledged survives a crash and a restart.
    pub fn own() -> Option<RedisServer> {
        RedisServer::spawn(true)
    }

    fn spawn(durable: bool) -> Option<RedisServer> {
        let program = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        if Command::new(&program)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            let why = format!(
                "`{program}` is not installed (on Debian: apt-get install redis-server), and REDIS_URL is not set"
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the Redis tests need Redis in CI: {why}"
            );
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                // `io::stderr()` directly, not `eprintln!`: the harness would
                // keep the line to itself, as the test passes.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "redis tests skipped: {why}");
            });
            return None;
        }
        // A free port: bind port 0, note what the system chose, let go.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port on loopback")
            .port();
        let dir = std::env::temp_dir().join(format!("redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut process = Process {
            child: None,
            port,
            dir,
            durable,
        };
        process.start(&program);
        Some(RedisServer {
            url: format!("redis://127.0.0.1:{port}"),
            process: Some(process),
        })
    }

    /// Kills the server at once, the way a crash would (SIGKILL: no time
    /// to save or say goodbye), and waits until it is gone.
    pub fn stop(&mut self) {
        let process = self.process.as_mut().expect("a server this test started");
        process.kill();
    }

    /// Starts the server again, on the same port, with the same files.
    pub fn start(&mut self) {
        let program = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let process = self.process.as_mut().expect("a server this test started");
        process.start(&program);
    }

    /// Freezes the server (SIGSTOP), the way a long pause does (a fork for
    /// a snapshot, a swapping machine, a stalled network): its connections
    /// stay open, and what is sent to it waits, unanswered, until
    /// [`RedisServer::resume`]. Then it runs it all.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&mut self, signal: libc::c_int) {
        let process = self.process.as_mut().expect("a server this test started");
        let child = process.child.as_ref().expect("a running server");
        let pid = libc::pid_t::try_from(child.id()).expect("a process id fits a pid_t");
        // SAFETY: kill only sends a signal, to the process this test started.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "redis-server gets the signal"
        );
    }
}

impl Process {
    fn start(&mut self, program: &str) {
        let (appendonly, fsync) = if self.durable {
            ("yes", "always")
        } else {
            ("no", "no")
        };
        let child = Command::new(program)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                fsync,
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        // Ready once it accepts a connection and answers PING.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server answers on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Does a Redis on this port answer `PING` with `+PONG`?
fn answers(port: u16) -> bool {
    use std::io::Read;
    use std::io::Write;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}
