//! UDP: send a datagram and read what comes back, on a connected socket
//! so the kernel hands an ICMP port unreachable to this socket as
//! ECONNREFUSED (Linux, ip(7) IP_RECVERR off: the error of a connected
//! socket is reported on the next call). The DNS check rides on it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::Failed;
use tandem_model::config::format_duration;

/// A UDP socket from `source` (or any address), connected to `target`.
pub async fn connected(target: SocketAddr, source: Option<IpAddr>) -> io::Result<UdpSocket> {
    let local = match (source, target) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::from(([0, 0, 0, 0], 0)),
        (None, SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], 0)),
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(target).await?;
    Ok(s)
}

/// A receive error as the reason a server failed: a port unreachable is
/// the server's answer that nothing listens.
pub fn recv_error(e: io::Error) -> Failed {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        Failed::Server("port unreachable (ICMP)".into())
    } else {
        Failed::io(e)
    }
}

/// Ok(reason) when the server passes. With `expect`, the first reply
/// must start with it ("" takes any reply) within `timeout`; without,
/// the server passes when no port unreachable came back within it
/// (keepalived's UDP_CHECK without `require_reply`): this check then
/// always takes its whole timeout.
pub async fn check(
    target: SocketAddr,
    source: Option<IpAddr>,
    send: &str,
    expect: &Option<String>,
    timeout: Duration,
) -> Result<String, Failed> {
    let s = connected(target, source).await.map_err(Failed::io)?;
    s.send(send.as_bytes()).await.map_err(recv_error)?;
    let mut buf = vec![0u8; 2048];
    let got = match tokio::time::timeout(timeout, s.recv(&mut buf)).await {
        Ok(r) => r.map_err(recv_error)?,
        Err(_) => {
            return match expect {
                None => Ok(format!(
                    "no port unreachable within {}",
                    format_duration(timeout)
                )),
                Some(_) => Err(Failed::Server(format!(
                    "no reply within {}",
                    format_duration(timeout)
                ))),
            };
        }
    };
    let reply = &buf[..got];
    match expect {
        None => Ok("replied".into()),
        Some(want) if reply.starts_with(want.as_bytes()) => Ok("expected reply".into()),
        Some(_) => {
            let shown: String = String::from_utf8_lossy(&reply[..reply.len().min(40)])
                .escape_debug()
                .collect();
            Err(Failed::Server(format!(
                "reply \"{shown}\" does not start with the expected bytes"
            )))
        }
    }
}
