//! Types of the control API every daemon serves on its Unix socket.
//!
//! `GET /status` returns the daemon's status document (for vrrpd
//! [`VrrpdStatus`]); `GET /events` streams [`Event`]s as server-sent
//! events (`?since=SEQ` replays what the daemon still holds after SEQ);
//! `GET /events/recent` returns them as a JSON array; `POST /reload`
//! answers [`ReloadResult`]. Errors are [`ApiError`] with an HTTP status.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Family;

/// Milliseconds since the Unix epoch; what every timestamp in the API is.
pub type UnixMillis = u64;

pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The body of every non-2xx answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    /// Located configuration findings, when a reload was refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<crate::config::Diagnostic>,
}

/// What every daemon says about itself in its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub daemon: String,
    pub version: String,
    pub node: String,
    pub pid: u32,
    pub started_at: UnixMillis,
    /// The configuration file in force and when it was loaded.
    pub config_path: String,
    pub config_loaded_at: UnixMillis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    /// RFC 5798 Initialize: waiting for the startup event.
    Init,
    Backup,
    Master,
    /// A tracked object without weight failed, or the interface is down:
    /// the instance neither sends nor takes over.
    Fault,
    /// The daemon is shutting down (keepalived's STOP).
    Stop,
}

impl std::fmt::Display for VrrpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VrrpState::Init => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
            VrrpState::Stop => "STOP",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpdStatus {
    pub daemon: DaemonInfo,
    pub instances: Vec<InstanceStatus>,
    #[serde(default)]
    pub sync_groups: Vec<SyncGroupStatus>,
    /// Received packets dropped before any instance could claim them
    /// (malformed, or for a VRID nobody here runs), by reason.
    #[serde(default)]
    pub unclaimed_drops: BTreeMap<String, u64>,
    /// How often the daemon's loop ran late (each past 200 ms).
    #[serde(default)]
    pub lateness: LoopLateness,
}

/// Times vrrpd's loop ran late since it started: adverts and timers
/// waited each time. Non-zero means a starved or overloaded director.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopLateness {
    /// Wake-ups that came more than 200 ms past a deadline.
    pub late_wakeups: u64,
    /// Inputs (or timers) whose work held the loop more than 200 ms.
    pub held_loop: u64,
    /// The worst of either, in milliseconds.
    pub worst_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub family: Family,
    pub version: u8,
    pub state: VrrpState,
    pub configured_priority: u8,
    /// After tracking adjustments and maintenance.
    pub effective_priority: u8,
    pub advert_interval_ms: u64,
    pub virtual_ips: Vec<String>,
    /// The master this node hears (itself when master).
    pub master: Option<MasterSeen>,
    pub last_transition: Option<Transition>,
    pub counters: InstanceCounters,
    #[serde(default)]
    pub tracking: Vec<TrackStatus>,
    /// Lowered on request so the peer takes over (see `POST .../handover`).
    #[serde(default)]
    pub maintenance: bool,
    #[serde(default)]
    pub sync_group: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterSeen {
    pub address: IpAddr,
    pub priority: u8,
    pub advert_interval_ms: u64,
    /// This node itself.
    pub is_self: bool,
    pub last_seen: UnixMillis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: VrrpState,
    pub to: VrrpState,
    pub reason: String,
    pub at: UnixMillis,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceCounters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub became_master: u64,
    /// State transitions of any kind.
    #[serde(default)]
    pub transitions: u64,
    pub announcements_sent: u64,
    /// Address operations the kernel refused (each is tried again).
    #[serde(default)]
    pub address_failures: u64,
    /// Received packets dropped, by reason (`ttl`, `checksum`, ...).
    pub drops: BTreeMap<String, u64>,
    /// Adverts accepted despite a mismatch worth a look (address list,
    /// advert interval), as keepalived logs them.
    #[serde(default)]
    pub mismatches: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackStatus {
    /// `interface`, `file`, `script`, `virtual_server`, `healthd`.
    pub kind: String,
    pub name: String,
    pub ok: bool,
    /// Priority change it applies now (0 when ok, or when it faults instead).
    pub delta: i64,
    /// It puts the instance in FAULT when failed (no weight).
    pub faults: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroupStatus {
    pub name: String,
    pub instances: Vec<String>,
    pub state: VrrpState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Not checked enough yet to say.
    Unknown,
    Up,
    Down,
}

impl std::fmt::Display for HealthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthState::Unknown => "unknown",
            HealthState::Up => "up",
            HealthState::Down => "down",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthdStatus {
    pub daemon: DaemonInfo,
    pub dataplane: DataplaneStatus,
    pub virtual_servers: Vec<VirtualServerStatus>,
}

/// How programming the kernel's IPVS table goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneStatus {
    /// The last sync succeeded.
    pub ok: bool,
    pub error: Option<String>,
    pub last_sync: Option<UnixMillis>,
    /// Netlink operations applied since start.
    pub operations: u64,
    /// The connection sync daemon running: "master on eth0, sync id 51".
    #[serde(default)]
    pub connection_sync: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualServerStatus {
    pub name: String,
    /// "tcp 192.0.2.10:80", "fwmark 7 (ipv4)".
    pub service: String,
    pub scheduler: String,
    pub forwarding: String,
    /// "http GET /healthz every 2s", or none.
    pub check: Option<String>,
    pub quorum: usize,
    /// Real servers counted as up.
    pub up: usize,
    pub quorum_met: bool,
    pub sorry_server: Option<String>,
    pub sorry_active: bool,
    pub stats: Option<IpvsStats>,
    pub real_servers: Vec<RealServerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServerStatus {
    /// "10.0.0.11:80".
    pub address: String,
    pub weight: u32,
    /// The weight in the kernel's table; none when the server is not in it.
    pub kernel_weight: Option<u32>,
    pub health: HealthState,
    pub since: UnixMillis,
    /// Why it is in that state ("HTTP 503", "connection refused").
    pub reason: String,
    pub last_check: Option<CheckResult>,
    pub checks: u64,
    pub failures: u64,
    /// Drained by an operator (kept across restarts).
    pub drained: bool,
    /// Coming back under `slow_start`: when its weight reaches the
    /// configured one (the kernel's weight shows the step it is at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_until: Option<UnixMillis>,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub stats: Option<IpvsStats>,
    /// Latencies of every check since the server was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_latency: Option<LatencyHistogram>,
}

/// Upper bounds of [`LatencyHistogram`]'s buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

/// A cumulative histogram of check latencies (the shape Prometheus
/// histograms have): `counts[i]` checks took at most `le_ms[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    pub le_ms: Vec<u64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_ms: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            le_ms: LATENCY_BUCKETS_MS.to_vec(),
            counts: vec![0; LATENCY_BUCKETS_MS.len()],
            count: 0,
            sum_ms: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn observe(&mut self, ms: u64) {
        for (le, c) in self.le_ms.iter().zip(self.counts.iter_mut()) {
            if ms <= *le {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum_ms += ms;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub ok: bool,
    pub reason: String,
    pub latency_ms: u64,
    pub at: UnixMillis,
}

/// IPVS counters and rates (per second) of a service or destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsStats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// Answer of `POST /reload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// What changed, one line per object ("instance web: priority 150 -> 120").
    pub changes: Vec<String>,
    /// Objects left untouched because they did not change.
    pub unchanged: usize,
}

/// One thing that happened, as `/events` streams it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event of this daemon since it started.
    pub seq: u64,
    pub at: UnixMillis,
    pub daemon: String,
    pub node: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    DaemonStarted {
        version: String,
    },
    DaemonStopping,
    Reloaded {
        changes: Vec<String>,
    },
    ReloadRefused {
        error: String,
    },
    VrrpTransition {
        instance: String,
        from: VrrpState,
        to: VrrpState,
        priority: u8,
        reason: String,
    },
    SyncGroupTransition {
        group: String,
        to: VrrpState,
    },
    PriorityChanged {
        instance: String,
        from: u8,
        to: u8,
        reason: String,
    },
    RealServerHealth {
        virtual_server: String,
        real_server: String,
        up: bool,
        reason: String,
    },
    Quorum {
        virtual_server: String,
        met: bool,
        up: usize,
        quorum: usize,
    },
    /// An operator action through the API (drain, enable, handover).
    Action {
        action: String,
        target: String,
        user: Option<String>,
    },
    /// tandem-clusterd wrote a version of the configuration file and the
    /// daemons took it: `how` is "applied" (a change made here or pushed
    /// by another director), "caught up" (fetched from a director that
    /// was ahead) or "restored" (a change undone).
    ConfigVersion {
        generation: u64,
        version: String,
        author: String,
        made_on: String,
        how: String,
    },
    /// The sync between directors changed state (in sync, conflict, ...).
    ClusterSync {
        state: String,
        detail: String,
    },
}

impl EventKind {
    /// The object the event is about, for filtering.
    pub fn subject(&self) -> String {
        match self {
            EventKind::VrrpTransition { instance, .. }
            | EventKind::PriorityChanged { instance, .. } => instance.clone(),
            EventKind::SyncGroupTransition { group, .. } => group.clone(),
            EventKind::RealServerHealth {
                virtual_server,
                real_server,
                ..
            } => format!("{virtual_server}/{real_server}"),
            EventKind::Quorum { virtual_server, .. } => virtual_server.clone(),
            EventKind::Action { target, .. } => target.clone(),
            _ => String::new(),
        }
    }
}
