//! The web UI's clients of the daemons' control sockets.
//!
//! A daemon that does not answer is a state to show ([`Reach::Down`]), not
//! an error. Status documents are cached briefly and shared by concurrent
//! requests, so a page with a thousand real servers asked for by many
//! browsers costs one status call per daemon per [`STATUS_TTL_MS`]; every
//! event a daemon publishes drops its cached status at once, so a
//! transition shows on the next refresh.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tandem_model::api::{Event, HealthdStatus, ReloadResult, UnixMillis, VrrpdStatus};
use tandem_model::config::{self, Diagnostic};
use tandem_model::control::{Client, ClientError};
use tokio::sync::Mutex;

use crate::Clock;

/// How long a status document is reused.
pub const STATUS_TTL_MS: u64 = 1000;
/// A daemon that takes longer than this to answer a status is shown as
/// not answering.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// A reload re-reads and applies the whole file.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Daemon {
    Vrrpd,
    Healthd,
}

impl Daemon {
    pub const ALL: [Daemon; 2] = [Daemon::Vrrpd, Daemon::Healthd];

    pub fn name(self) -> &'static str {
        match self {
            Daemon::Vrrpd => "vrrpd",
            Daemon::Healthd => "healthd",
        }
    }
}

impl std::fmt::Display for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What asking a daemon gave.
#[derive(Clone, Debug)]
pub enum Reach<T> {
    Up(T),
    /// Not running (or not answering): why, for the operator.
    Down(String),
}

impl<T> Reach<T> {
    pub fn up(&self) -> Option<&T> {
        match self {
            Reach::Up(t) => Some(t),
            Reach::Down(_) => None,
        }
    }
}

fn down_reason(e: &ClientError) -> String {
    match e {
        ClientError::Connect { path, cause } => {
            format!("not running (no answer on {}: {cause})", path.display())
        }
        e => e.to_string(),
    }
}

async fn timed<T>(
    limit: Duration,
    what: &str,
    f: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(down_reason(&e)),
        Err(_) => Err(format!("{what}: no answer within {} s", limit.as_secs())),
    }
}

/// Why a daemon did not carry out an action: its own refusal (a 4xx, with
/// its status: 404 for a name it does not know) or no answer at all.
#[derive(Debug)]
pub struct ActionError {
    /// The daemon's 4xx status; `None` when it could not be reached or
    /// failed.
    pub refused: Option<u16>,
    pub message: String,
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

async fn action<T>(
    what: &str,
    f: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ActionError> {
    match tokio::time::timeout(STATUS_TIMEOUT, f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(ActionError {
            refused: match &e {
                ClientError::Http { status, .. } if (400..500).contains(status) => Some(*status),
                _ => None,
            },
            message: down_reason(&e),
        }),
        Err(_) => Err(ActionError {
            refused: None,
            message: format!("{what}: no answer within {} s", STATUS_TIMEOUT.as_secs()),
        }),
    }
}

/// A cached status: when it was fetched, under which generation, and what
/// it was. An event bumps the generation, which outdates a fetch that was
/// under way when the event came.
struct Cached<T> {
    at: UnixMillis,
    generation: u64,
    reach: Reach<Arc<T>>,
}

struct Slot<T> {
    current: std::sync::Mutex<Option<Cached<T>>>,
    /// One fetch at a time; the others wait for its answer.
    fetching: Mutex<()>,
    /// A background refresh of a merely old (not outdated) status runs.
    refreshing: std::sync::atomic::AtomicBool,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            current: std::sync::Mutex::new(None),
            fetching: Mutex::new(()),
            refreshing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A status and the generation it belongs to: renders made from it are
/// reused while the generation holds.
pub struct Snapshot<T> {
    pub reach: Reach<Arc<T>>,
    pub generation: u64,
}

/// One reload's outcome, per daemon.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReloadOutcome {
    Reloaded {
        changes: Vec<String>,
        unchanged: usize,
    },
    /// The daemon refused the file and kept running as it was.
    Refused {
        error: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// Not running: it reads the file when it starts.
    NotRunning { error: String },
    /// Running but the reload failed otherwise (timeout, transport).
    Failed { error: String },
}

impl ReloadOutcome {
    pub fn accepted(&self) -> bool {
        matches!(
            self,
            ReloadOutcome::Reloaded { .. } | ReloadOutcome::NotRunning { .. }
        )
    }
}

/// Both daemons of this node.
pub struct Daemons {
    vrrpd: Client,
    healthd: Client,
    vrrpd_status: Slot<VrrpdStatus>,
    healthd_status: Slot<HealthdStatus>,
    generation: [AtomicU64; 2],
    clock: Clock,
}

impl Daemons {
    pub fn new(socket_dir: &Path, clock: Clock) -> Self {
        Daemons {
            vrrpd: Client::new(config::socket_in(socket_dir, "vrrpd")),
            healthd: Client::new(config::socket_in(socket_dir, "healthd")),
            vrrpd_status: Slot::default(),
            healthd_status: Slot::default(),
            generation: [AtomicU64::new(0), AtomicU64::new(0)],
            clock,
        }
    }

    pub fn client(&self, d: Daemon) -> &Client {
        match d {
            Daemon::Vrrpd => &self.vrrpd,
            Daemon::Healthd => &self.healthd,
        }
    }

    /// The slot of `d`'s status type. By daemon rather than by reference
    /// so a background refresh, which outlives the request that started
    /// it, finds its slot again through the `Arc`.
    fn slot_of<T: 'static>(&self, d: Daemon) -> &Slot<T> {
        let any: &dyn std::any::Any = match d {
            Daemon::Vrrpd => &self.vrrpd_status,
            Daemon::Healthd => &self.healthd_status,
        };
        any.downcast_ref().expect("the status type of this daemon")
    }

    async fn fetch<T: serde::de::DeserializeOwned>(&self, d: Daemon) -> Reach<Arc<T>> {
        match timed(STATUS_TIMEOUT, "status", self.client(d).get::<T>("/status")).await {
            Ok(s) => Reach::Up(Arc::new(s)),
            Err(e) => Reach::Down(e),
        }
    }

    /// The status of `d`. Outdated by an event (or never fetched): the
    /// caller waits for a fresh one (one fetch for all waiting). Merely
    /// older than [`STATUS_TTL_MS`]: the old one is returned at once and a
    /// refresh runs in the background, so no request waits for it.
    async fn cached<T>(self: &Arc<Self>, d: Daemon) -> Snapshot<T>
    where
        T: serde::de::DeserializeOwned + Send + Sync + 'static,
    {
        let slot = self.slot_of::<T>(d);
        let generation = self.generation[d as usize].load(Ordering::SeqCst);
        let now = (self.clock)();
        if let Some(c) = slot.current.lock().unwrap().as_ref()
            && c.generation == generation
        {
            if now.saturating_sub(c.at) >= STATUS_TTL_MS
                && !slot.refreshing.swap(true, Ordering::SeqCst)
            {
                let me = self.clone();
                tokio::spawn(async move {
                    let slot = me.slot_of::<T>(d);
                    let _one = slot.fetching.lock().await;
                    let generation = me.generation[d as usize].load(Ordering::SeqCst);
                    let reach = me.fetch::<T>(d).await;
                    *slot.current.lock().unwrap() = Some(Cached {
                        at: (me.clock)(),
                        generation,
                        reach,
                    });
                    slot.refreshing.store(false, Ordering::SeqCst);
                });
            }
            return Snapshot {
                reach: c.reach.clone(),
                generation,
            };
        }
        let _one = slot.fetching.lock().await;
        // Someone else may have fetched while this one waited.
        let generation = self.generation[d as usize].load(Ordering::SeqCst);
        if let Some(c) = slot.current.lock().unwrap().as_ref()
            && c.generation == generation
        {
            return Snapshot {
                reach: c.reach.clone(),
                generation,
            };
        }
        let reach = self.fetch::<T>(d).await;
        *slot.current.lock().unwrap() = Some(Cached {
            at: (self.clock)(),
            generation,
            reach: reach.clone(),
        });
        Snapshot { reach, generation }
    }

    pub async fn vrrpd_snapshot(self: &Arc<Self>) -> Snapshot<VrrpdStatus> {
        self.cached(Daemon::Vrrpd).await
    }

    pub async fn healthd_snapshot(self: &Arc<Self>) -> Snapshot<HealthdStatus> {
        self.cached(Daemon::Healthd).await
    }

    pub async fn vrrpd_status(self: &Arc<Self>) -> Reach<Arc<VrrpdStatus>> {
        self.vrrpd_snapshot().await.reach
    }

    pub async fn healthd_status(self: &Arc<Self>) -> Reach<Arc<HealthdStatus>> {
        self.healthd_snapshot().await.reach
    }

    /// Outdates the cached status of `d` (it changed, or it went away).
    pub fn invalidate(&self, d: Daemon) {
        self.generation[d as usize].fetch_add(1, Ordering::SeqCst);
    }

    pub async fn recent_events(&self, d: Daemon) -> Reach<Vec<Event>> {
        match timed(
            STATUS_TIMEOUT,
            "events",
            self.client(d).get::<Vec<Event>>("/events/recent"),
        )
        .await
        {
            Ok(e) => Reach::Up(e),
            Err(e) => Reach::Down(e),
        }
    }

    pub async fn reload(&self, d: Daemon) -> ReloadOutcome {
        let asked = tokio::time::timeout(
            RELOAD_TIMEOUT,
            self.client(d)
                .post::<_, ReloadResult>("/reload", &serde_json::json!({})),
        )
        .await;
        self.invalidate(d);
        match asked {
            Ok(Ok(r)) => ReloadOutcome::Reloaded {
                changes: r.changes,
                unchanged: r.unchanged,
            },
            Ok(Err(ClientError::Http {
                status: 422,
                message,
                body,
                ..
            })) => ReloadOutcome::Refused {
                error: message,
                diagnostics: body.map(|b| b.diagnostics).unwrap_or_default(),
            },
            Ok(Err(e @ ClientError::Connect { .. })) => ReloadOutcome::NotRunning {
                error: down_reason(&e),
            },
            Ok(Err(e)) => ReloadOutcome::Failed {
                error: e.to_string(),
            },
            Err(_) => ReloadOutcome::Failed {
                error: format!("no answer within {} s", RELOAD_TIMEOUT.as_secs()),
            },
        }
    }

    /// Drains (weight 0) or enables a real server through healthd.
    pub async fn set_drain(&self, vs: &str, rs: &str, drain: bool) -> Result<(), ActionError> {
        let path = format!(
            "/virtual-servers/{}/real-servers/{}/{}",
            path_segment(vs),
            path_segment(rs),
            if drain { "drain" } else { "enable" }
        );
        let r = action(
            "drain",
            self.healthd
                .post::<_, serde_json::Value>(&path, &serde_json::json!({})),
        )
        .await;
        self.invalidate(Daemon::Healthd);
        r.map(|_| ())
    }

    /// Puts a VRRP instance in maintenance (the peer takes over) or back.
    pub async fn set_maintenance(&self, instance: &str, on: bool) -> Result<(), ActionError> {
        let path = format!("/instances/{}/maintenance", path_segment(instance));
        let r = action(
            "maintenance",
            self.vrrpd
                .post::<_, serde_json::Value>(&path, &serde_json::json!({ "on": on })),
        )
        .await;
        self.invalidate(Daemon::Vrrpd);
        r.map(|_| ())
    }
}

/// Percent-encodes what is not safe in one path segment (a real server
/// is "10.0.0.1:80" or "[2001:db8::1]:80").
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the web UI pushes to browsers: something changed in a daemon.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveNote {
    DaemonUp { daemon: Daemon },
    DaemonDown { daemon: Daemon },
    Event { daemon: Daemon, event: Event },
}

/// Follows `d`'s `/events` for as long as the web UI runs: every event
/// outdates the cached status and is passed on to browsers; a daemon that
/// goes away (or comes back) is passed on too. Retries every second.
pub async fn follow(
    daemons: Arc<Daemons>,
    d: Daemon,
    live: tokio::sync::broadcast::Sender<LiveNote>,
) {
    use futures::StreamExt;
    // Unknown at first: the first attempt reports either way.
    let mut was_up: Option<bool> = None;
    loop {
        match daemons.client(d).events(None).await {
            Ok(stream) => {
                daemons.invalidate(d);
                let _ = live.send(LiveNote::DaemonUp { daemon: d });
                let mut stream = Box::pin(stream);
                while let Some(Ok(event)) = stream.next().await {
                    daemons.invalidate(d);
                    let _ = live.send(LiveNote::Event { daemon: d, event });
                }
                daemons.invalidate(d);
                let _ = live.send(LiveNote::DaemonDown { daemon: d });
                was_up = Some(false);
            }
            Err(_) => {
                if was_up != Some(false) {
                    daemons.invalidate(d);
                    let _ = live.send(LiveNote::DaemonDown { daemon: d });
                    was_up = Some(false);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
