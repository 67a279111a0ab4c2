//! The probes themselves: ICMP echo, TCP, HTTP(S), scripts. Each returns
//! an [`Outcome`] with a reason a person reads in the status and the
//! events ("HTTP 503", "connection refused", "timeout after 1s"); none
//! takes longer than its spec's timeout.

// dns and smtp are public for their readers of what a server answers
// (dns::verdict, smtp::reply), which the fuzz target `check_reply` feeds.
pub mod dns;
mod http;
mod icmp;
pub mod smtp;
mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_model::config::format_duration;
use tandem_model::exec::{self, RunAs};

use crate::health::Outcome;
use crate::spec::{Kind, ProbeSpec};

/// How much longer than its timeout a check that bounds its own wait
/// (udp) may take before it counts as timed out.
const SLACK: Duration = Duration::from_millis(100);

/// What probes share: TLS configurations, ICMP sockets, kept-alive HTTP
/// connections.
pub struct Prober {
    http: http::HttpProber,
    icmp: icmp::IcmpProber,
}

/// Why a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// The server failed it: "connection refused", "HTTP 503".
    Server(String),
    /// This director could not run it (see [`is_local`]).
    Local(String),
}

impl From<String> for Failed {
    fn from(reason: String) -> Failed {
        Failed::Server(reason)
    }
}

impl Failed {
    /// An error of a socket call, with its short phrase.
    pub fn io(e: io::Error) -> Failed {
        if is_local(&e) {
            Failed::Local(format!("cannot check: {}", describe_io(&e)))
        } else {
            Failed::Server(describe_io(&e))
        }
    }
}

/// Errors that say this director ran out of something, not that the
/// server failed: no file descriptor left (EMFILE, ENFILE), no memory or
/// socket buffer (ENOMEM, ENOBUFS). Counting them against the servers
/// would take every one of them out of the table at once exactly when the
/// director is busiest.
pub fn is_local(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl Prober {
    pub fn new() -> Result<Prober, ProbeError> {
        Ok(Prober {
            http: http::HttpProber::new()?,
            icmp: icmp::IcmpProber::default(),
        })
    }

    /// Runs one probe; never longer than `spec.timeout` (and a little).
    pub async fn run(self: &Arc<Self>, spec: &ProbeSpec) -> Outcome {
        let start = Instant::now();
        let timed_out = || {
            Outcome::down(
                format!("timeout after {}", format_duration(spec.timeout)),
                spec.timeout,
            )
        };
        match &spec.kind {
            Kind::Icmp { target, source } => self.icmp.ping(*target, *source, spec.timeout).await,
            Kind::Script {
                argv,
                user,
                real_server,
                virtual_server,
            } => {
                let run_as = match user.as_deref().map(RunAs::lookup) {
                    Some(Err(e)) => return Outcome::down(e, Duration::ZERO),
                    Some(Ok(u)) => Some(u),
                    None => None,
                };
                let env = [
                    ("TANDEM_VIRTUAL_SERVER", virtual_server.clone()),
                    ("TANDEM_REAL_SERVER", real_server.to_string()),
                    ("TANDEM_REAL_SERVER_IP", real_server.ip().to_string()),
                    ("TANDEM_REAL_SERVER_PORT", real_server.port().to_string()),
                ];
                let r = exec::run_script(argv, run_as, &env, spec.timeout).await;
                let latency = start.elapsed();
                if r.success() {
                    Outcome::up("script succeeded", latency)
                } else {
                    Outcome::down(format!("script: {r}"), latency)
                }
            }
            Kind::Tcp {
                target,
                source,
                send,
                expect,
            } => {
                let r =
                    tokio::time::timeout(spec.timeout, tcp::check(*target, *source, send, expect));
                match r.await {
                    Ok(r) => verdict(r, start),
                    Err(_) => timed_out(),
                }
            }
            Kind::Udp {
                target,
                source,
                send,
                expect,
            } => {
                // The check bounds its own wait: without `expect`, a
                // timeout is its success. The outer bound only catches a
                // send that never returns.
                let check = udp::check(*target, *source, send, expect, spec.timeout);
                match tokio::time::timeout(spec.timeout + SLACK, check).await {
                    Ok(r) => verdict(r, start),
                    Err(_) => timed_out(),
                }
            }
            // It bounds its own wait, and says so in its reason.
            Kind::Dns(d) => verdict(dns::check(d, spec.timeout).await, start),
            Kind::Smtp {
                target,
                source,
                helo,
                tls,
            } => {
                let tls = tls.as_ref().map(|t| (t, self.http.tls(t.verify)));
                let r =
                    tokio::time::timeout(spec.timeout, smtp::check(*target, *source, helo, tls));
                match r.await {
                    Ok(r) => verdict(r, start),
                    Err(_) => timed_out(),
                }
            }
            Kind::Http(h) => {
                match tokio::time::timeout(spec.timeout, self.http.check(spec, h)).await {
                    Ok(r) => verdict(r, start),
                    Err(_) => {
                        self.http.forget(spec);
                        timed_out()
                    }
                }
            }
        }
    }
}

/// A check's result as an outcome: up or down with the server's reason
/// and the time it took, or no verdict when this director could not run
/// it.
fn verdict(r: Result<String, Failed>, start: Instant) -> Outcome {
    match r {
        Ok(reason) => Outcome::up(reason, start.elapsed()),
        Err(Failed::Server(reason)) => Outcome::down(reason, start.elapsed()),
        Err(Failed::Local(reason)) => Outcome::local(reason),
    }
}

/// A connection error as a short phrase.
pub fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::UnexpectedEof => "connection closed by the server".into(),
        io::ErrorKind::AddrNotAvailable => "source address not available".into(),
        _ => e.to_string(),
    }
}

/// Connects, from `source` when given.
pub async fn connect(
    target: SocketAddr,
    source: Option<IpAddr>,
) -> io::Result<tokio::net::TcpStream> {
    let socket = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(src) = source {
        socket.bind(SocketAddr::new(src, 0))?;
    }
    let stream = socket.connect(target).await?;
    // Closing a probe's connection resets it instead of leaving it in
    // TIME_WAIT: ten thousand checks a second would otherwise pile up
    // hundreds of thousands of them on the director (HAProxy's checks do
    // the same).
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_or_buffers_is_this_directors_failure() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(matches!(Failed::io(e), Failed::Local(_)), "errno {errno}");
        }
        for errno in [libc::ECONNREFUSED, libc::EHOSTUNREACH, libc::EADDRNOTAVAIL] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(matches!(Failed::io(e), Failed::Server(_)), "errno {errno}");
        }
    }
}
