//! HTTP serving that a hostile or broken client cannot exhaust: the loop
//! behind the control sockets and the web UI.
//!
//! `axum::serve` takes every connection it is offered and waits for each
//! one's headers and body for as long as the client likes, so a few
//! hundred half-open connections (slowloris) hold the process's file
//! descriptors and memory, and nobody else gets an answer. Here:
//! - at most [`Limits::connections`] connections are served at once, and
//!   at most [`Limits::per_peer`] from one address; one more is closed at
//!   once and counted, so a single host cannot take every slot;
//! - a request's headers must arrive within [`Limits::header_timeout`]
//!   (also the longest a kept-alive connection may sit idle) and fit in
//!   [`Limits::header_bytes`];
//! - a request's body must be complete within [`Limits::body_timeout`]
//!   (the size cap is the router's `DefaultBodyLimit`).
//!
//! Answers that stream (server-sent events) are not bounded: a client
//! reading them is served, not waited for.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::ServiceExt;

/// How long an open connection may take to finish its request once the
/// server is told to stop.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What one server admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Connections served at once from one IP address (not applied to
    /// Unix sockets, whose peers have none).
    pub per_peer: usize,
    /// From the first byte of a request (or the end of the previous
    /// answer) to the end of its headers.
    pub header_timeout: Duration,
    /// The largest request head.
    pub header_bytes: usize,
    /// From the end of the headers to the end of the body.
    pub body_timeout: Duration,
}

impl Limits {
    /// The control sockets: local callers only (the web UI's followers,
    /// the CLIs, scripts), so no per-address share.
    pub const CONTROL: Limits = Limits {
        connections: 128,
        per_peer: usize::MAX,
        header_timeout: Duration::from_secs(10),
        header_bytes: 64 * 1024,
        body_timeout: Duration::from_secs(30),
    };

    /// The web UI: browsers and scrapers over the network. A browser
    /// opens about six connections to a site; 32 leave room for several
    /// tabs and a script behind one NAT address.
    pub const WEB: Limits = Limits {
        connections: 512,
        per_peer: 32,
        header_timeout: Duration::from_secs(10),
        header_bytes: 64 * 1024,
        body_timeout: Duration::from_secs(30),
    };
}

/// Connections admitted and refused, for status and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    /// Refused because [`Limits::connections`] were open.
    pub refused_full: AtomicU64,
    /// Refused because [`Limits::per_peer`] were open from that address.
    pub refused_peer: AtomicU64,
    /// Closed because a request's head did not arrive in time.
    pub header_timeouts: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub accepted: u64,
    pub refused_full: u64,
    pub refused_peer: u64,
    pub header_timeouts: u64,
    pub open: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            refused_full: self.refused_full.load(Ordering::Relaxed),
            refused_peer: self.refused_peer.load(Ordering::Relaxed),
            header_timeouts: self.header_timeouts.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
        }
    }
}

/// The address a connection came from, for the per-peer share.
pub trait Peer {
    fn peer_ip(&self) -> Option<IpAddr>;
}

impl Peer for SocketAddr {
    fn peer_ip(&self) -> Option<IpAddr> {
        // An IPv4 client on a dual-stack socket is one client, whichever
        // way its address is written.
        Some(self.ip().to_canonical())
    }
}

impl Peer for tokio::net::unix::SocketAddr {
    fn peer_ip(&self) -> Option<IpAddr> {
        None
    }
}

/// Counts open connections, in total and per address; a [`Slot`] is one
/// of them and gives itself back when dropped.
#[derive(Clone, Debug)]
pub struct Admission {
    limits: Limits,
    stats: Arc<Stats>,
    per_peer: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection.
#[derive(Debug)]
pub struct Slot {
    admission: Admission,
    peer: Option<IpAddr>,
}

impl Admission {
    pub fn new(limits: Limits, stats: Arc<Stats>) -> Admission {
        Admission {
            limits,
            stats,
            per_peer: Arc::default(),
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// A slot for a connection from `peer`, or `None` (counted) when the
    /// server or that address is at its limit.
    pub fn admit(&self, peer: Option<IpAddr>) -> Option<Slot> {
        let mut map = self.per_peer.lock().unwrap();
        if self.stats.open.load(Ordering::Relaxed) as usize >= self.limits.connections {
            self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if let Some(ip) = peer {
            let n = map.entry(ip).or_default();
            if *n >= self.limits.per_peer {
                self.stats.refused_peer.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *n += 1;
        }
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            admission: self.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.admission.per_peer.lock().unwrap();
        if let Some(ip) = self.peer
            && let Some(n) = map.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
        self.admission.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes; then open connections finish their current request (for
/// at most [`SHUTDOWN_GRACE`]) and close. Each request carries `ConnectInfo<L::Addr>`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: Peer + Clone + Send + Sync + 'static,
{
    let admission = Admission::new(limits, stats);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        // Closing at once, rather than leaving it in the backlog, tells
        // the client now and costs nothing while it retries.
        let Some(slot) = admission.admit(addr.peer_ip()) else {
            drop(io);
            continue;
        };
        tokio::spawn(connection(
            io,
            addr,
            router.clone(),
            limits,
            slot,
            stop_rx.clone(),
        ));
    }
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Wait for the connections to finish their requests (graceful), as
    // axum::serve does: each holds a receiver until it is done.
    stop_tx.closed().await;
    Ok(())
}

/// Serves one admitted connection.
pub async fn connection<I, A>(
    io: I,
    addr: A,
    router: Router,
    limits: Limits,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Clone + Send + Sync + 'static,
{
    let body_timeout = limits.body_timeout;
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut req = req.map(|b| Body::new(Deadline::new(b, body_timeout)));
        req.extensions_mut().insert(ConnectInfo(addr.clone()));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.header_bytes.max(8192));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        // Shutting down (or the server gone): finish the request in
        // hand, then close; but an answer that streams (the events) never
        // finishes, and a client that reads slowly must not hold the
        // daemon's exit, so not for longer than SHUTDOWN_GRACE.
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = r
        && e.is_timeout()
    {
        slot.admission
            .stats
            .header_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }
    drop(slot);
}

/// A request body that fails once `timeout` has passed since the headers
/// (a slow POST holds a connection no longer than that).
struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl Deadline {
    fn new(inner: Incoming, timeout: Duration) -> Deadline {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// Why a body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(f) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| r.map_err(BodyError::from)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::Timeout(self.timeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(connections: usize, per_peer: usize) -> Admission {
        Admission::new(
            Limits {
                connections,
                per_peer,
                ..Limits::WEB
            },
            Arc::default(),
        )
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let a = admission(10, 2);
        let _one = a.admit(ip("192.0.2.1")).unwrap();
        let _two = a.admit(ip("192.0.2.1")).unwrap();
        assert!(a.admit(ip("192.0.2.1")).is_none());
        // Another address still gets in.
        let _other = a.admit(ip("192.0.2.2")).unwrap();
        let s = a.stats().snapshot();
        assert_eq!((s.open, s.accepted, s.refused_peer), (3, 3, 1));
    }

    #[test]
    fn a_closed_connection_gives_its_slot_back() {
        let a = admission(2, 1);
        let first = a.admit(ip("192.0.2.1")).unwrap();
        assert!(a.admit(ip("192.0.2.1")).is_none());
        drop(first);
        let _again = a.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(a.stats().snapshot().open, 1);
        assert!(a.per_peer.lock().unwrap().len() == 1);
    }

    #[test]
    fn a_full_server_refuses_everyone_until_one_closes() {
        let a = admission(2, 10);
        let one = a.admit(None).unwrap();
        let _two = a.admit(ip("192.0.2.1")).unwrap();
        assert!(a.admit(ip("192.0.2.9")).is_none());
        assert!(a.admit(None).is_none());
        drop(one);
        assert!(a.admit(None).is_some());
        assert_eq!(a.stats().snapshot().refused_full, 2);
    }

    #[test]
    fn a_mapped_ipv4_address_is_the_same_peer() {
        let a = admission(10, 1);
        let v4: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:1001".parse().unwrap();
        let _s = a.admit(v4.peer_ip()).unwrap();
        assert!(a.admit(mapped.peer_ip()).is_none());
    }
}
