//! HTTP/JSON over a Unix socket: the daemons' side ([`serve`], [`EventLog`],
//! [`error_response`]) and the client the web UI, the CLIs and the tests
//! use ([`Client`]).
//!
//! A Unix socket rather than TCP: reachable only from this host, guarded
//! by file permissions, and curl-able:
//! `curl --unix-socket /run/tandem/vrrpd.sock http://localhost/status`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast;

use crate::api::{ApiError, Event, EventKind, now_millis};

/// Binds `path` (replacing a stale socket left by a dead daemon, refusing
/// to steal one a live daemon still answers on) and serves `router` until
/// `shutdown` completes, within [`Limits::CONTROL`](crate::serve::Limits)
/// (a stuck or hostile local client cannot take every connection). The
/// socket is removed on the way out.
pub async fn serve(
    path: &Path,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = bind(path).await?;
    let stats = Arc::default();
    let result = crate::serve::serve(
        listener,
        router,
        crate::serve::Limits::CONTROL,
        stats,
        shutdown,
    )
    .await;
    let _ = std::fs::remove_file(path);
    result
}

/// Binds the control socket, creating its directory. Split from [`serve`]
/// so a daemon can fail early (and report readiness only once bound).
pub async fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: another daemon of this kind is running with the same socket_dir",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    // Owner and group only: the API changes what the director does.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Reload requests and the one parse of the file in flight, for a daemon
/// that parses its file on a blocking thread: a 3 MB file takes a tenth
/// of a second on a fast CPU and seconds on a slow one, and the loop's
/// timers must keep time meanwhile (adverts held that long let the backup
/// take over; checks held that long read late results as timeouts). A
/// request that arrives during a parse waits for the next one, which
/// starts when this one ends: the file may have changed after the parse
/// in flight read it. A storm of requests so costs two parses.
pub struct Reloads<R> {
    /// Waiting for the parse in flight; None when none is.
    parsing: Option<Vec<R>>,
    /// Arrived during it.
    next: Vec<R>,
}

impl<R> Reloads<R> {
    pub fn new() -> Reloads<R> {
        Reloads {
            parsing: None,
            next: Vec::new(),
        }
    }

    /// A request: true when a parse must start now.
    pub fn request(&mut self, reply: R) -> bool {
        match &mut self.parsing {
            Some(_) => {
                self.next.push(reply);
                false
            }
            None => {
                self.parsing = Some(vec![reply]);
                true
            }
        }
    }

    /// The parse in flight ended: the requests it answers, and whether
    /// another must start for those that came meanwhile.
    pub fn finished(&mut self) -> (Vec<R>, bool) {
        let done = self.parsing.take().unwrap_or_default();
        let again = !self.next.is_empty();
        if again {
            self.parsing = Some(std::mem::take(&mut self.next));
        }
        (done, again)
    }
}

impl<R> Default for Reloads<R> {
    fn default() -> Reloads<R> {
        Reloads::new()
    }
}

/// Why a daemon refused a command; each kind chooses its HTTP status, so
/// a caller (the web UI, a script) can tell a typo from a failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No virtual server, real server or instance of that name: 404.
    #[error("{0}")]
    NotFound(String),
    /// Understood, but it could not be carried out, and nothing changed
    /// (e.g. a drain that could not be saved would not survive a
    /// restart): 500.
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn status(&self) -> StatusCode {
        match self {
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for CommandError {
    fn into_response(self) -> Response {
        error_response(self.status(), self.to_string())
    }
}

/// The answer to a reload whose file was refused, the same from every
/// daemon: how many findings (located in `diagnostics`) or why the file
/// could not be read, and that nothing changed.
pub fn refused_reload(path: &Path, e: &crate::config::ConfigError) -> ApiError {
    let error = match e {
        crate::config::ConfigError::Invalid(d) => format!(
            "{} error(s) in {}; running configuration kept",
            d.len(),
            path.display()
        ),
        crate::config::ConfigError::Io { .. } => format!("{e}; running configuration kept"),
    };
    ApiError {
        error,
        diagnostics: e.diagnostics().map(|d| d.0.clone()).unwrap_or_default(),
    }
}

/// Turns an error into the API's JSON error body.
pub fn error_response(status: StatusCode, error: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ApiError {
            error: error.into(),
            diagnostics: Vec::new(),
        }),
    )
        .into_response()
}

/// The events a daemon has published: the most recent ones kept for
/// replay, and a broadcast to everyone following `/events`.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<EventLogInner>,
}

struct EventLogInner {
    daemon: String,
    node: Mutex<String>,
    recent: Mutex<VecDeque<Event>>,
    capacity: usize,
    tx: broadcast::Sender<Event>,
}

impl EventLog {
    pub fn new(daemon: &str, node: &str, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(1024);
        EventLog {
            inner: Arc::new(EventLogInner {
                daemon: daemon.to_string(),
                node: Mutex::new(node.to_string()),
                recent: Mutex::new(VecDeque::with_capacity(capacity)),
                capacity,
                tx,
            }),
        }
    }

    /// A reload may rename the node.
    pub fn set_node(&self, node: &str) {
        *self.inner.node.lock().unwrap() = node.to_string();
    }

    /// Records and broadcasts an event; returns it with its sequence number.
    pub fn publish(&self, kind: EventKind) -> Event {
        let mut recent = self.inner.recent.lock().unwrap();
        let seq = recent.back().map_or(1, |e| e.seq + 1);
        let event = Event {
            seq,
            at: now_millis(),
            daemon: self.inner.daemon.clone(),
            node: self.inner.node.lock().unwrap().clone(),
            kind,
        };
        if recent.len() == self.inner.capacity {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        // Sent under the lock so a subscriber never sees a gap or a
        // duplicate between its replay and the live stream.
        let _ = self.inner.tx.send(event.clone());
        event
    }

    /// Events still held with `seq > since`.
    pub fn recent(&self, since: u64) -> Vec<Event> {
        let recent = self.inner.recent.lock().unwrap();
        recent.iter().filter(|e| e.seq > since).cloned().collect()
    }

    /// Replay of what is held after `since`, then every new event.
    pub fn follow(&self, since: Option<u64>) -> impl Stream<Item = Event> + Send + 'static + use<> {
        let (backlog, rx) = {
            let recent = self.inner.recent.lock().unwrap();
            let backlog: Vec<Event> = match since {
                Some(s) => recent.iter().filter(|e| e.seq > s).cloned().collect(),
                None => Vec::new(),
            };
            (backlog, self.inner.tx.subscribe())
        };
        let live = tokio_stream::wrappers::BroadcastStream::new(rx)
            // A follower that lags loses events; it can catch up with
            // `?since=` from the last seq it saw.
            .filter_map(|r| async move { r.ok() });
        futures::stream::iter(backlog).chain(live)
    }

    /// `/events` (SSE) and `/events/recent` (JSON) for a daemon's router.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/events", get(events_sse))
            .route("/events/recent", get(events_recent))
            .with_state(self.clone())
    }
}

#[derive(serde::Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn events_sse(
    State(log): State<EventLog>,
    Query(q): Query<Since>,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let stream = log.follow(q.since).map(|e| {
        Ok(sse::Event::default()
            .id(e.seq.to_string())
            .json_data(&e)
            .unwrap_or_default())
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn events_recent(
    State(log): State<EventLog>,
    Query(q): Query<Since>,
) -> axum::Json<Vec<Event>> {
    axum::Json(log.recent(q.since.unwrap_or(0)))
}

/// Why a control API call failed. Each message holds its cause once, and
/// none is also a `source()`, so a chain printer does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {}: {cause} (is the daemon running, with this socket_dir?)", path.display())]
    Connect { path: PathBuf, cause: io::Error },
    #[error("{path}: {message}")]
    Http {
        path: String,
        status: u16,
        message: String,
        /// The full error body, with located findings of a refused reload.
        body: Option<ApiError>,
    },
    #[error("{path}: the answer is not what was expected: {cause}")]
    Decode {
        path: String,
        cause: serde_json::Error,
    },
    #[error("{path}: {cause}")]
    Transport { path: String, cause: hyper::Error },
}

/// A client of one daemon's control socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|cause| ClientError::Connect {
                    path: self.socket.clone(),
                    cause,
                })?;
        let transport = |cause| ClientError::Transport {
            path: path.to_string(),
            cause,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a request from a valid path");
        let resp = sender.send_request(req).await.map_err(transport)?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        let body: Option<ApiError> = serde_json::from_slice(&bytes).ok();
        let message = body.as_ref().map_or_else(
            || format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes).trim()),
            |b| b.error.clone(),
        );
        Err(ClientError::Http {
            path: path.to_string(),
            status,
            message,
            body,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, body).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|cause| ClientError::Transport {
                path: path.to_string(),
                cause,
            })?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|cause| ClientError::Decode {
            path: path.to_string(),
            cause,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json("GET", path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).expect("API types serialize");
        self.json("POST", path, Some(body)).await
    }

    /// Follows `/events`: the held events after `since` first, then live
    /// ones. The stream ends when the daemon goes away.
    pub async fn events(
        &self,
        since: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + Send + 'static, ClientError> {
        let path = match since {
            Some(s) => format!("/events?since={s}"),
            None => "/events".to_string(),
        };
        let resp = self.send("GET", &path, None).await?;
        let body = resp.into_body().into_data_stream();
        Ok(sse_events(body, path))
    }
}

/// Splits a server-sent-event body into the JSON `data:` of each event.
fn sse_events(
    body: impl Stream<Item = Result<Bytes, hyper::Error>> + Send + 'static,
    path: String,
) -> impl Stream<Item = Result<Event, ClientError>> + Send + 'static {
    let body = Box::pin(body);
    futures::stream::unfold(
        (body, Vec::<u8>::new(), path),
        |(mut body, mut buf, path)| async move {
            loop {
                if let Some(end) = find_blank_line(&buf) {
                    let frame: Vec<u8> = buf.drain(..end.1).collect();
                    let text = String::from_utf8_lossy(&frame[..end.0]).into_owned();
                    let data: String = text
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                        .collect::<Vec<_>>()
                        .join("\n");
                    if data.is_empty() {
                        continue; // keep-alive comment
                    }
                    let item = serde_json::from_str(&data).map_err(|cause| ClientError::Decode {
                        path: path.clone(),
                        cause,
                    });
                    return Some((item, (body, buf, path)));
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(cause)) => {
                        let err = ClientError::Transport {
                            path: path.clone(),
                            cause,
                        };
                        return Some((Err(err), (body, Vec::new(), path)));
                    }
                    None => return None,
                }
            }
        },
    )
}

/// (end of the frame's text, end of its terminating blank line).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// `PROGRAM reload`, the same for every daemon: asks for a reload and
/// prints the changes applied, or, when the daemon refused the file, its
/// located findings on standard error. `Ok(false)`: refused (the running
/// state stayed).
pub async fn reload_and_report(c: &Client) -> Result<bool, ClientError> {
    match c
        .post::<_, crate::api::ReloadResult>("/reload", &serde_json::json!({}))
        .await
    {
        Ok(r) => {
            for change in &r.changes {
                println!("{change}");
            }
            println!(
                "reloaded: {} change(s), {} unchanged",
                r.changes.len(),
                r.unchanged
            );
            Ok(true)
        }
        Err(ClientError::Http { body: Some(b), .. }) => {
            for d in &b.diagnostics {
                eprintln!("{d}");
            }
            eprintln!("{}", b.error);
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_asked_during_a_parse_wait_for_one_more_parse() {
        let mut r = Reloads::new();
        assert!(r.request(1), "the first request starts a parse");
        // A storm while the file is parsed.
        for n in 2..=20 {
            assert!(!r.request(n));
        }
        let (answered, again) = r.finished();
        assert_eq!(answered, [1]);
        assert!(again, "those that came meanwhile need a parse of their own");
        // One more during the second parse: it read the file too early.
        assert!(!r.request(21));
        let (answered, again) = r.finished();
        assert_eq!(answered, (2..=20).collect::<Vec<_>>());
        assert!(again);
        let (answered, again) = r.finished();
        assert_eq!(answered, [21]);
        assert!(!again, "nothing left");
        assert!(r.request(22), "idle again: a request starts a parse");
    }

    use crate::api::EventKind;

    fn router(log: &EventLog) -> Router {
        Router::new()
            .route(
                "/status",
                get(|| async { axum::Json(serde_json::json!({"ok": true})) }),
            )
            .route(
                "/fail",
                get(|| async { error_response(StatusCode::CONFLICT, "busy") }),
            )
            .merge(log.routes())
    }

    #[tokio::test]
    async fn client_gets_status_and_follows_events_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sub/test.sock");
        let log = EventLog::new("testd", "n1", 16);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let sock = sock.clone();
            let router = router(&log);
            async move {
                serve(&sock, router, async {
                    let _ = stop_rx.await;
                })
                .await
            }
        });
        while !sock.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let client = Client::new(&sock);
        let status: serde_json::Value = client.get("/status").await.unwrap();
        assert_eq!(status["ok"], true);

        let err = client.get::<serde_json::Value>("/fail").await.unwrap_err();
        assert!(
            matches!(err, ClientError::Http { status: 409, .. }),
            "{err}"
        );
        assert_eq!(err.to_string(), "/fail: busy");

        log.publish(EventKind::DaemonStarted {
            version: "1".into(),
        });
        let mut events = Box::pin(client.events(Some(0)).await.unwrap());
        let first = events.next().await.unwrap().unwrap();
        assert_eq!((first.seq, first.daemon.as_str()), (1, "testd"));
        log.publish(EventKind::DaemonStopping);
        let second = events.next().await.unwrap().unwrap();
        assert_eq!(second.seq, 2);
        assert_eq!(second.kind, EventKind::DaemonStopping);

        let recent: Vec<Event> = client.get("/events/recent?since=1").await.unwrap();
        assert_eq!(recent.len(), 1);

        // A follower still reading the events (as healthd follows vrrpd)
        // does not hold the stop: its stream never ends by itself.
        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops while a follower reads its events")
            .unwrap()
            .unwrap();
        drop(events);
        assert!(!sock.exists(), "the socket is removed on shutdown");
    }

    #[tokio::test]
    async fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let live = bind(&sock).await.unwrap();
        let err = bind(&sock).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live); // the file stays behind, as after a crash
        assert!(sock.exists());
        bind(&sock).await.expect("a stale socket is replaced");
    }

    #[tokio::test]
    async fn a_missing_daemon_is_a_clear_error() {
        let client = Client::new("/nonexistent/tandem/x.sock");
        let err = client
            .get::<serde_json::Value>("/status")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is the daemon running"), "{err}");
    }

    #[test]
    fn event_log_keeps_the_most_recent() {
        let log = EventLog::new("d", "n", 2);
        for _ in 0..3 {
            log.publish(EventKind::DaemonStopping);
        }
        let seqs: Vec<u64> = log.recent(0).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }
}
