//! Which names a server answers to, and which pages may post to it.
//!
//! Every HTTP/1.1 request says in `Host` which name the browser used. A
//! server that answers any name can be reached through *DNS rebinding*: a
//! page on `rebind.example` makes its own name point at 127.0.0.1, and the
//! browser, which only compares names, lets that page read and post to our
//! server as if it were its own (the `Origin` check cannot tell: `Origin`
//! and `Host` are both `rebind.example`). So a server answers only the
//! names it knows are its own:
//!
//! - loopback: `localhost` (and `*.localhost`), `127.0.0.1` and the rest of
//!   127.0.0.0/8, `[::1]`;
//! - the address it listens on, or, listening on every interface
//!   (`--host 0.0.0.0`), each address of this machine;
//! - names the leader adds with `--allowed-host` (a DNS name the room uses,
//!   or an HTTPS tunnel's or proxy's name).
//!
//! Anything else gets `421 Misdirected Request` and a message naming the
//! flag. Pages reached through an `--allowed-host` may also post over
//! `https://`: that is what a TLS tunnel or proxy in front of us looks like
//! (`Origin: https://abc.example`, `Host: abc.example`).

use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::OnceLock;

use hyper::HeaderMap;
use hyper::header;

/// The names added with `--allowed-host`, for every server of the process.
static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();

/// Adds names every server of this process answers to (`--allowed-host`).
/// Called once, by a binary's `main`, before it serves; later calls change
/// nothing.
pub fn allow(names: &[String]) {
    let names = names.iter().map(|name| name.to_ascii_lowercase()).collect();
    let _first_call_wins = ALLOWED.set(names);
}

/// The names one server answers to.
#[derive(Debug, Clone)]
pub struct OwnHosts {
    /// Addresses of this machine the server can be reached at.
    addresses: Vec<IpAddr>,
    /// Names the leader added, lowercase.
    allowed: Vec<String>,
}

impl OwnHosts {
    /// For a server listening on `local`, with the process's
    /// `--allowed-host` names.
    pub fn for_listener(local: SocketAddr) -> OwnHosts {
        OwnHosts::new(local, ALLOWED.get().cloned().unwrap_or_default())
    }

    /// For a server listening on `local`, answering `allowed` too.
    pub fn new(local: SocketAddr, allowed: Vec<String>) -> OwnHosts {
        let mut addresses = vec![local.ip()];
        if local.ip().is_unspecified() {
            let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
            addresses.extend(interfaces.iter().map(|interface| interface.ip()));
        }
        OwnHosts { addresses, allowed }
    }

    /// Does this server answer to the request's `Host`? (A request without
    /// one, from an HTTP/1.0 client such as a plain script, is let in: no
    /// browser sends it.)
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        match headers.get(header::HOST).map(|host| host.to_str()) {
            None => true,
            Some(Ok(host)) => self.is_own(name_of(host)),
            Some(Err(_)) => false,
        }
    }

    /// Is `name` (a `Host` without its port) one of ours?
    fn is_own(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(address) = literal.parse::<IpAddr>() {
            return address.is_loopback() || self.addresses.contains(&address);
        }
        self.allowed.contains(&name)
    }

    /// Is `name` one the leader added (a tunnel or proxy may serve it over
    /// HTTPS)?
    pub fn is_allowed_name(&self, name: &str) -> bool {
        self.allowed.contains(&name.to_ascii_lowercase())
    }
}

/// `Host: 127.0.0.1:3001` → `127.0.0.1`; `[::1]:3001` → `[::1]`.
pub fn name_of(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

/// The process's `--allowed-host` names, for checking an `Origin`.
pub(crate) fn allowed_names() -> &'static [String] {
    ALLOWED.get().map_or(&[], Vec::as_slice)
}

/// What a request to a name we do not answer to is told.
pub fn misdirected_message(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map_or("(unreadable)", name_of);
    format!(
        "This server does not answer to the name “{host}”. If the room reaches it by that \
         name (a DNS name, a tunnel or a proxy), start it with --allowed-host {host}."
    )
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn loopback_names_and_the_bound_address_are_ours() {
        let own = OwnHosts::new("192.0.2.7:3001".parse().unwrap(), vec![]);
        for name in [
            "localhost:3001",
            "LOCALHOST",
            "app.localhost:3001",
            "127.0.0.1:3001",
            "127.1.2.3",
            "[::1]:3001",
            "192.0.2.7:3001",
        ] {
            assert!(own.accepts(&host(name)), "{name}");
        }
        assert!(own.accepts(&HeaderMap::new()), "no Host at all");
    }

    #[test]
    fn other_names_are_not_ours_unless_allowed() {
        let own = OwnHosts::new("127.0.0.1:3001".parse().unwrap(), vec![]);
        for name in [
            "rebind.example:3001",
            "192.0.2.99:3001",
            "localhost.rebind.example",
            "",
        ] {
            assert!(!own.accepts(&host(name)), "{name}");
        }
        let own = OwnHosts::new(
            "127.0.0.1:3001".parse().unwrap(),
            vec!["workshop.example".into()],
        );
        assert!(own.accepts(&host("workshop.example")));
        assert!(own.accepts(&host("Workshop.Example:443")));
        assert!(own.is_allowed_name("workshop.example"));
        assert!(!own.is_allowed_name("localhost"));
    }

    #[test]
    fn every_interface_means_every_address_of_this_machine() {
        let own = OwnHosts::new("0.0.0.0:3001".parse().unwrap(), vec![]);
        for interface in if_addrs::get_if_addrs().unwrap() {
            let name = match interface.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            };
            assert!(own.accepts(&host(&name)), "{name}");
        }
        assert!(!own.accepts(&host("rebind.example")));
    }

    #[test]
    fn the_message_names_the_flag() {
        let message = misdirected_message(&host("rebind.example:3001"));
        assert!(message.contains("“rebind.example”"), "{message}");
        assert!(
            message.contains("--allowed-host rebind.example"),
            "{message}"
        );
    }
}
