//! The flags every step's binary takes, binding with a clear message, and
//! the log output participants watch.

use std::io;
use std::net::IpAddr;

use tokio::net::TcpListener;

use crate::feed::DEFAULT_CAPACITY;
use crate::flood::DEFAULT_POSTS;
use crate::steps::Step;

/// Where a step listens and how much history it keeps.
#[derive(Debug, clap::Args)]
pub struct Server {
    /// The address to listen on. Use 0.0.0.0 to let other machines in the
    /// room connect.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// The port to listen on (default: the step's own, 3001 for step 01...).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// How many items the feed keeps.
    #[arg(long, default_value_t = DEFAULT_CAPACITY)]
    pub history: usize,
    /// How many posts one client address may send per 10 seconds; past
    /// that, 429 Too Many Requests. 0 lifts the limit.
    #[arg(long, env = "POST_LIMIT", default_value_t = DEFAULT_POSTS)]
    pub post_limit: usize,
    /// A name this server is reached by besides its own addresses (a DNS
    /// name, or an HTTPS tunnel's or proxy's), comma-separated or repeated.
    /// Requests for other names get 421; pages served through these may
    /// post over https too.
    #[arg(long, env = "ALLOWED_HOST", value_delimiter = ',')]
    pub allowed_host: Vec<String>,
}

impl Server {
    /// Binds the step's port and prints where to open it; the server it
    /// starts then counts posts by `--post-limit` and answers the names of
    /// `--allowed-host`.
    pub async fn bind(&self, step: &Step) -> io::Result<TcpListener> {
        crate::flood::set_policy(self.post_limit);
        crate::hosts::allow(&self.allowed_host);
        raise_fd_limit();
        bind(&self.host, self.port.unwrap_or(step.port), step, "--port").await
    }
}

/// Binds `host:port` for `step`, turning "address in use" into a message
/// that names the port and the flag (`flag`) that changes it.
pub async fn bind(host: &str, port: u16, step: &Step, flag: &str) -> io::Result<TcpListener> {
    let listener = TcpListener::bind((host, port)).await.map_err(|error| {
        let hint = if error.kind() == io::ErrorKind::AddrInUse {
            format!(
                "port {port} is already in use (another copy of this step, or the launcher?); \
                 stop it or choose another port with {flag}"
            )
        } else {
            format!("cannot listen on {host}:{port}")
        };
        io::Error::new(error.kind(), format!("{}: {hint}: {error}", step.slug))
    })?;
    let port = listener.local_addr()?.port();
    for host in reachable_hosts(host) {
        tracing::info!(
            "{} {} listening on http://{host}:{port}/",
            step.number,
            step.name
        );
    }
    Ok(listener)
}

/// The host names people can type to reach a server listening on `host`.
///
/// `0.0.0.0` (or `::`) means "every interface of this machine", which is
/// not an address anyone can open: for it, this lists the machine's own
/// addresses, loopback first (`127.0.0.1`, then `192.168.1.20`, ...), so
/// that the leader can read out the one the room can reach. Any other host
/// is given back as it is.
pub fn reachable_hosts(host: &str) -> Vec<String> {
    let everywhere = host
        .parse::<IpAddr>()
        .is_ok_and(|address| address.is_unspecified());
    if !everywhere {
        return vec![host.to_owned()];
    }
    let mut hosts = vec!["127.0.0.1".to_owned()];
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    hosts.extend(
        interfaces
            .iter()
            .filter(|interface| !interface.is_loopback())
            .filter_map(|interface| match interface.ip() {
                // Link-local IPv6 addresses need a zone (`%eth0`) that
                // browsers do not take in a URL: leave them out.
                IpAddr::V6(address) if address.is_unicast_link_local() => None,
                IpAddr::V6(address) if host.contains(':') => Some(format!("[{address}]")),
                IpAddr::V6(_) => None,
                IpAddr::V4(address) => Some(address.to_string()),
            }),
    );
    hosts.dedup();
    hosts
}

/// Raises this process's limit on open files to the most it may have.
///
/// Every connection is a file descriptor, and many systems start a
/// process with a limit of 1,024: a thousand idle WebSockets, or a
/// thousand clients that stall in the middle of a request, would use them
/// all and lock everyone else out ("cannot accept a connection"). The hard
/// limit is what the system allows this process without privileges
/// (`ulimit -Hn`); returns it, as it is now.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Turns how a step's `main` ended into its exit code, printing the error
/// (a port in use, say) for the person who started it.
pub fn report(result: io::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to the terminal: one line per request or socket event, at `info`
/// unless `RUST_LOG` says otherwise (for example `RUST_LOG=debug`, or
/// `RUST_LOG=info,hyper=debug`).
pub fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;

    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let _already_set_is_fine = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(io::IsTerminal::is_terminal(&io::stdout()))
                .with_filter(filter),
        )
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_host_is_printed_as_it_is() {
        assert_eq!(reachable_hosts("127.0.0.1"), ["127.0.0.1"]);
        assert_eq!(reachable_hosts("workshop.local"), ["workshop.local"]);
    }

    #[test]
    fn every_interface_is_printed_as_the_addresses_people_can_type() {
        let hosts = reachable_hosts("0.0.0.0");
        assert_eq!(hosts[0], "127.0.0.1", "loopback first");
        assert!(!hosts.iter().any(|host| host == "0.0.0.0"), "{hosts:?}");
        for interface in if_addrs::get_if_addrs().unwrap() {
            if let IpAddr::V4(address) = interface.ip() {
                assert!(
                    hosts.contains(&address.to_string()),
                    "{address} in {hosts:?}"
                );
            }
        }
    }
}
