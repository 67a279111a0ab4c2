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
use tandem_model::config::Diagnostic;
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
        ClientError::Connect { path, source } => {
            format!("not running (no answer on {}: {source})", path.display())
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

/// A cached status: when it was fetched, under which generation, and what
/// it was. An event bumps the generation, which outdates a fetch that was
/// under way when the event came.
type Slot<T> = Mutex<Option<(UnixMillis, u64, Reach<Arc<T>>)>>;

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
            vrrpd: Client::new(socket_dir.join("vrrpd.sock")),
            healthd: Client::new(socket_dir.join("healthd.sock")),
            vrrpd_status: Mutex::new(None),
            healthd_status: Mutex::new(None),
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

    async fn cached<T: serde::de::DeserializeOwned>(
        &self,
        d: Daemon,
        slot: &Slot<T>,
    ) -> Reach<Arc<T>> {
        // Held across the fetch: concurrent requests wait for one answer
        // instead of all asking the daemon.
        let mut slot = slot.lock().await;
        let now = (self.clock)();
        let generation = self.generation[d as usize].load(Ordering::SeqCst);
        if let Some((at, g, r)) = slot.as_ref()
            && *g == generation
            && now.saturating_sub(*at) < STATUS_TTL_MS
        {
            return r.clone();
        }
        let asked = timed(STATUS_TIMEOUT, "status", self.client(d).get::<T>("/status")).await;
        let r = match asked {
            Ok(s) => Reach::Up(Arc::new(s)),
            Err(e) => Reach::Down(e),
        };
        *slot = Some((now, generation, r.clone()));
        r
    }

    pub async fn vrrpd_status(&self) -> Reach<Arc<VrrpdStatus>> {
        self.cached(Daemon::Vrrpd, &self.vrrpd_status).await
    }

    pub async fn healthd_status(&self) -> Reach<Arc<HealthdStatus>> {
        self.cached(Daemon::Healthd, &self.healthd_status).await
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
    pub async fn set_drain(&self, vs: &str, rs: &str, drain: bool) -> Result<(), String> {
        let path = format!(
            "/virtual-servers/{}/real-servers/{}/{}",
            path_segment(vs),
            path_segment(rs),
            if drain { "drain" } else { "enable" }
        );
        let r = timed(
            STATUS_TIMEOUT,
            "drain",
            self.healthd
                .post::<_, serde_json::Value>(&path, &serde_json::json!({})),
        )
        .await;
        self.invalidate(Daemon::Healthd);
        r.map(|_| ())
    }

    /// Puts a VRRP instance in maintenance (the peer takes over) or back.
    pub async fn set_maintenance(&self, instance: &str, on: bool) -> Result<(), String> {
        let path = format!("/instances/{}/maintenance", path_segment(instance));
        let r = timed(
            STATUS_TIMEOUT,
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
