//! Both ends of the sync channel: dialling another director with one
//! request, and accepting theirs. Each exchange is its own TLS 1.3
//! connection, verified against the cluster's authority in both
//! directions, so there is no session to hijack and nothing to resume.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::wire::{self, Answer, Request};

/// A director that does not complete a connection in this long is
/// counted as not answering.
pub const CONNECT: Duration = Duration::from_secs(2);
/// A client that has not finished its handshake and request in this long
/// is cut off: a slow peer cannot hold connections open.
const ACCEPT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the kernel's backlog.
const CONCURRENT: usize = 32;

/// How long to wait for the answer to a request: writing a file and
/// reloading the daemons takes longer than a question.
pub fn answer_within(req: &Request) -> Duration {
    match req {
        Request::Commit { .. } | Request::Restore { .. } | Request::Act { .. } => {
            Duration::from_secs(40)
        }
        Request::Prepare { .. } => Duration::from_secs(10),
        _ => Duration::from_secs(5),
    }
}

/// Sends `req` to director `node` at `addr` and returns its answer, or
/// why there is none.
pub async fn call(
    tls: &Arc<rustls::ClientConfig>,
    source: Option<std::net::IpAddr>,
    node: &str,
    addr: SocketAddr,
    req: &Request,
) -> Result<Answer, String> {
    let name = ServerName::try_from(node.to_string())
        .map_err(|_| format!("\"{node}\" is not a name a certificate can carry"))?;
    let exchange = async {
        // From this director's own sync address: the others accept only
        // the directors' addresses, whatever the route's preferred source.
        let connect = async {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            if let Some(ip) = source.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            socket.connect(addr).await
        };
        let tcp = tokio::time::timeout(CONNECT, connect)
            .await
            .map_err(|_| format!("no connection to {addr} within {} s", CONNECT.as_secs()))?
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut tls =
            tokio::time::timeout(CONNECT, TlsConnector::from(tls.clone()).connect(name, tcp))
                .await
                .map_err(|_| format!("{addr}: no TLS handshake within {} s", CONNECT.as_secs()))?
                .map_err(|e| format!("{addr}: TLS refused: {e}"))?;
        wire::write(&mut tls, req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let answer: Answer = wire::read(&mut tls)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(answer)
    };
    tokio::time::timeout(answer_within(req), exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{addr}: no answer within {} s",
                answer_within(req).as_secs()
            ))
        })
}

/// What the accepting side tells its owner about each connection.
pub enum Incoming {
    /// Not from a director's address: closed before any TLS.
    Stranger(std::net::IpAddr),
    /// TLS refused the connection (handshake or a record).
    TlsRefused(String),
    /// The certificate is good but names no other node of this cluster.
    NotAPeer(Vec<String>),
    /// Not a request.
    BadMessage(String),
}

/// The owner's side: who may talk, and what to answer.
pub trait Service: Send + Sync + 'static {
    /// Whether a connection from this address may go on to TLS (the
    /// directors' addresses only: nobody else can hold a slot).
    fn admits(&self, from: std::net::IpAddr) -> bool;
    /// The node a verified certificate belongs to, if it is another node
    /// of this cluster.
    fn peer_of(&self, cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String>;
    fn count(&self, what: Incoming);
    fn handle(
        self: Arc<Self>,
        from: String,
        req: Request,
    ) -> impl std::future::Future<Output = Answer> + Send;
}

/// Accepts connections until the task is dropped.
pub async fn serve<S: Service>(listener: TcpListener, tls: Arc<rustls::ServerConfig>, svc: Arc<S>) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("sync channel: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !svc.admits(from.ip()) {
            svc.count(Incoming::Stranger(from.ip()));
            drop(tcp);
            continue;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let svc = svc.clone();
        tokio::spawn(async move {
            let _permit = permit;
            one(acceptor, tcp, from, svc).await;
        });
    }
}

async fn one<S: Service>(acceptor: TlsAcceptor, tcp: TcpStream, from: SocketAddr, svc: Arc<S>) {
    let _ = tcp.set_nodelay(true);
    let request = async {
        let mut tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| Incoming::TlsRefused(format!("{from}: {e}")))?;
        let node = {
            let (_, conn) = tls.get_ref();
            let cert = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .ok_or_else(|| Incoming::TlsRefused(format!("{from}: no certificate")))?;
            svc.peer_of(cert)
                .ok_or_else(|| Incoming::NotAPeer(crate::identity::names(cert)))?
        };
        let req: Request = wire::read(&mut tls).await.map_err(|e| match e {
            wire::FrameError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                Incoming::TlsRefused(format!("{from}: {e}"))
            }
            e => Incoming::BadMessage(format!("{from} ({node}): {e}")),
        })?;
        Ok::<_, Incoming>((tls, node, req))
    };
    let (mut tls, node, req) = match tokio::time::timeout(ACCEPT, request).await {
        Ok(Ok(r)) => r,
        Ok(Err(what)) => {
            svc.count(what);
            return;
        }
        Err(_) => {
            svc.count(Incoming::BadMessage(format!(
                "{from}: no request within {} s",
                ACCEPT.as_secs()
            )));
            return;
        }
    };
    let answer = svc.handle(node, req).await;
    let _ = tokio::time::timeout(ACCEPT, wire::write(&mut tls, &answer)).await;
    let _ = tokio::time::timeout(ACCEPT, tokio::io::AsyncWriteExt::shutdown(&mut tls)).await;
}
