//! Fake vrrpd and healthd: the daemons' control routes on Unix sockets in
//! a temporary directory, answering canned status documents the test can
//! change, recording the calls they get, and publishing events on demand.
//! For the web UI's tests and benchmark, where real daemons would need
//! root, namespaces and IPVS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tandem_model::api::{
    ApiError, CheckResult, DaemonInfo, DataplaneStatus, EventKind, HealthState, HealthdStatus,
    InstanceCounters, InstanceStatus, IpvsStats, LatencyHistogram, MasterSeen, RealServerStatus,
    ReloadResult, Transition, VirtualServerStatus, VrrpState, VrrpdStatus, now_millis,
};
use tandem_model::config::{Diagnostic, Family};
use tandem_model::control::{EventLog, error_response};

/// How a fake answers `POST /reload`.
#[derive(Clone, Debug)]
pub enum ReloadReply {
    Accept(ReloadResult),
    Refuse(ApiError),
}

/// One fake daemon's state.
pub struct Fake<S> {
    pub status: Mutex<S>,
    pub reload: Mutex<ReloadReply>,
    /// "POST /reload", "drain web/10.0.0.1:80", "maintenance web on", ...
    pub calls: Mutex<Vec<String>>,
    pub events: EventLog,
}

impl<S> Fake<S> {
    fn new(name: &str, status: S) -> Arc<Self> {
        Arc::new(Fake {
            status: Mutex::new(status),
            reload: Mutex::new(ReloadReply::Accept(ReloadResult {
                changes: vec![format!("{name}: reloaded")],
                unchanged: 1,
            })),
            calls: Mutex::new(Vec::new()),
            events: EventLog::new(name, "lb1", 256),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

type Vrrpd = Arc<Fake<VrrpdStatus>>;
type Healthd = Arc<Fake<HealthdStatus>>;

/// Both fakes, serving in `dir` until dropped.
pub struct FakeDaemons {
    pub dir: PathBuf,
    pub vrrpd: Vrrpd,
    pub healthd: Healthd,
    runtime: Option<tokio::runtime::Runtime>,
    stops: Vec<(&'static str, tokio::sync::oneshot::Sender<()>)>,
}

impl FakeDaemons {
    /// Starts both in `dir` (their sockets: `vrrpd.sock`, `healthd.sock`),
    /// on a runtime of their own, so sync and async callers alike can use
    /// them. Returns once both answer.
    pub fn start(dir: &Path, vrrpd: VrrpdStatus, healthd: HealthdStatus) -> FakeDaemons {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let mut f = FakeDaemons {
            dir: dir.to_path_buf(),
            vrrpd: Fake::new("vrrpd", vrrpd),
            healthd: Fake::new("healthd", healthd),
            runtime: Some(runtime),
            stops: Vec::new(),
        };
        f.serve("vrrpd");
        f.serve("healthd");
        f
    }

    pub fn socket(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.sock"))
    }

    fn router(&self, daemon: &str) -> Router {
        match daemon {
            "vrrpd" => Router::new()
                .route("/status", get(get_vrrpd_status))
                .route("/reload", post(reload::<VrrpdStatus>))
                .route("/instances/{name}/maintenance", post(maintenance))
                .with_state(self.vrrpd.clone())
                .merge(self.vrrpd.events.routes()),
            _ => Router::new()
                .route("/status", get(get_healthd_status))
                .route("/reload", post(reload::<HealthdStatus>))
                .route("/virtual-servers/{vs}/real-servers/{rs}/drain", post(drain))
                .route(
                    "/virtual-servers/{vs}/real-servers/{rs}/enable",
                    post(enable),
                )
                .with_state(self.healthd.clone())
                .merge(self.healthd.events.routes()),
        }
    }

    /// (Re)starts `daemon` ("vrrpd" or "healthd").
    pub fn serve(&mut self, daemon: &'static str) {
        let path = self.socket(daemon);
        let router = self.router(daemon);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rt = self.runtime.as_ref().expect("running");
        // Bound on the fakes' own runtime (the caller may be inside
        // another one, where blocking on a runtime is not allowed).
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let listener = match tandem_model::control::bind(&path).await {
                Ok(l) => {
                    let _ = bound_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = bound_tx.send(Err(format!("{}: {e}", path.display())));
                    return;
                }
            };
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        if let Err(e) = bound_rx.recv().expect("the bind reports") {
            panic!("fake {daemon}: {e}");
        }
        self.stops.push((daemon, tx));
    }

    /// Stops `daemon` and removes its socket: it is "not running".
    pub fn stop(&mut self, daemon: &str) {
        let mut i = 0;
        while i < self.stops.len() {
            if self.stops[i].0 == daemon {
                let (_, tx) = self.stops.remove(i);
                let _ = tx.send(());
            } else {
                i += 1;
            }
        }
        // Open event streams would keep the server (and its socket) alive:
        // the socket file goes now, so no new connection reaches it.
        let _ = std::fs::remove_file(self.socket(daemon));
    }
}

impl Drop for FakeDaemons {
    fn drop(&mut self) {
        for (_, tx) in self.stops.drain(..) {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            // Allowed from inside another runtime, unlike a plain drop.
            rt.shutdown_background();
        }
    }
}

async fn get_vrrpd_status(State(f): State<Vrrpd>) -> Json<VrrpdStatus> {
    Json(f.status.lock().unwrap().clone())
}

async fn get_healthd_status(State(f): State<Healthd>) -> Json<HealthdStatus> {
    Json(f.status.lock().unwrap().clone())
}

async fn reload<S>(State(f): State<Arc<Fake<S>>>) -> Response {
    f.record("POST /reload".into());
    let reply = f.reload.lock().unwrap().clone();
    match reply {
        ReloadReply::Accept(r) => {
            f.events.publish(EventKind::Reloaded {
                changes: r.changes.clone(),
            });
            Json(r).into_response()
        }
        ReloadReply::Refuse(e) => {
            f.events.publish(EventKind::ReloadRefused {
                error: e.error.clone(),
            });
            (StatusCode::UNPROCESSABLE_ENTITY, Json(e)).into_response()
        }
    }
}

#[derive(serde::Deserialize)]
struct On {
    on: bool,
}

async fn maintenance(
    State(f): State<Vrrpd>,
    UrlPath(name): UrlPath<String>,
    Json(b): Json<On>,
) -> Response {
    let mut st = f.status.lock().unwrap();
    let Some(i) = st.instances.iter_mut().find(|i| i.name == name) else {
        return error_response(StatusCode::NOT_FOUND, format!("no instance named {name}"));
    };
    i.maintenance = b.on;
    drop(st);
    f.record(format!(
        "maintenance {name} {}",
        if b.on { "on" } else { "off" }
    ));
    f.events.publish(EventKind::Action {
        action: if b.on {
            "maintenance on"
        } else {
            "maintenance off"
        }
        .into(),
        target: name,
        user: None,
    });
    Json(serde_json::json!({ "maintenance": b.on })).into_response()
}

fn set_drain(f: &Healthd, vs: &str, rs: &str, on: bool) -> Response {
    let mut st = f.status.lock().unwrap();
    let found = st
        .virtual_servers
        .iter_mut()
        .find(|v| v.name == vs)
        .and_then(|v| v.real_servers.iter_mut().find(|r| r.address == rs));
    let Some(r) = found else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("virtual server {vs} has no real server {rs}"),
        );
    };
    r.drained = on;
    drop(st);
    let action = if on { "drain" } else { "enable" };
    f.record(format!("{action} {vs}/{rs}"));
    f.events.publish(EventKind::Action {
        action: action.into(),
        target: format!("{vs}/{rs}"),
        user: None,
    });
    Json(serde_json::json!({ "drained": on })).into_response()
}

async fn drain(State(f): State<Healthd>, UrlPath((vs, rs)): UrlPath<(String, String)>) -> Response {
    set_drain(&f, &vs, &rs, true)
}

async fn enable(
    State(f): State<Healthd>,
    UrlPath((vs, rs)): UrlPath<(String, String)>,
) -> Response {
    set_drain(&f, &vs, &rs, false)
}

fn info(daemon: &str) -> DaemonInfo {
    let now = now_millis();
    DaemonInfo {
        daemon: daemon.into(),
        version: "0.1.0".into(),
        node: "lb1".into(),
        pid: 4242,
        started_at: now - 3_600_000,
        config_path: "/etc/tandem/tandem.toml".into(),
        config_loaded_at: now - 600_000,
    }
}

/// vrrpd with `n` instances (`web`, `web2`, ...): the odd ones master
/// here, the even ones backup of a peer at 10.77.0.2.
pub fn vrrpd_status(n: usize) -> VrrpdStatus {
    let now = now_millis();
    let instances = (0..n)
        .map(|k| {
            let name = if k == 0 {
                "web".to_string()
            } else {
                format!("web{}", k + 1)
            };
            let master_here = k % 2 == 0;
            let mut drops = BTreeMap::new();
            drops.insert("ttl".to_string(), 2);
            InstanceStatus {
                name,
                interface: "eth0".into(),
                vrid: (k % 255 + 1) as u8,
                family: Family::Ipv4,
                version: 3,
                state: if master_here {
                    VrrpState::Master
                } else {
                    VrrpState::Backup
                },
                configured_priority: 150,
                effective_priority: if master_here { 150 } else { 90 },
                advert_interval_ms: 1000,
                virtual_ips: vec![format!("10.77.{}.{}/24", k / 200, k % 200 + 10)],
                master: Some(if master_here {
                    MasterSeen {
                        address: "10.77.0.1".parse().unwrap(),
                        priority: 150,
                        advert_interval_ms: 1000,
                        is_self: true,
                        last_seen: now,
                    }
                } else {
                    MasterSeen {
                        address: "10.77.0.2".parse().unwrap(),
                        priority: 120,
                        advert_interval_ms: 1000,
                        is_self: false,
                        last_seen: now - 400,
                    }
                }),
                last_transition: Some(Transition {
                    from: VrrpState::Backup,
                    to: if master_here {
                        VrrpState::Master
                    } else {
                        VrrpState::Backup
                    },
                    reason: "master down: no advert from 10.77.0.2 for 3.61s".into(),
                    at: now - 65_000,
                }),
                counters: InstanceCounters {
                    adverts_sent: 1200,
                    adverts_received: 35,
                    became_master: 2,
                    transitions: 4,
                    drops,
                    ..Default::default()
                },
                tracking: Vec::new(),
                maintenance: false,
                sync_group: None,
            }
        })
        .collect();
    VrrpdStatus {
        daemon: info("vrrpd"),
        instances,
        sync_groups: Vec::new(),
        unclaimed_drops: BTreeMap::new(),
        // A director that was starved three times, once by its own work.
        lateness: tandem_model::api::LoopLateness {
            late_wakeups: 3,
            held_loop: 1,
            worst_ms: 450,
        },
    }
}

/// healthd with `vss` virtual servers (`web-http`, `vs2`, ...) of
/// `per_vs` real servers each; the third real server of each is down.
pub fn healthd_status(vss: usize, per_vs: usize) -> HealthdStatus {
    let now = now_millis();
    let virtual_servers = (0..vss)
        .map(|v| {
            let name = if v == 0 {
                "web-http".to_string()
            } else {
                format!("vs{}", v + 1)
            };
            let real_servers: Vec<RealServerStatus> = (0..per_vs)
                .map(|r| {
                    let down = r == 2;
                    let mut lat = LatencyHistogram::default();
                    for ms in [1, 3, 7, 40] {
                        lat.observe(ms);
                    }
                    RealServerStatus {
                        address: format!("10.{}.{}.{}:80", v / 250, v % 250, r + 11),
                        weight: 1,
                        kernel_weight: if down { None } else { Some(1) },
                        health: if down {
                            HealthState::Down
                        } else {
                            HealthState::Up
                        },
                        since: now - 120_000,
                        reason: if down {
                            "HTTP 503".into()
                        } else {
                            "HTTP 200".into()
                        },
                        last_check: Some(CheckResult {
                            ok: !down,
                            reason: if down { "HTTP 503" } else { "HTTP 200" }.into(),
                            latency_ms: 3,
                            at: now - 800,
                        }),
                        checks: 100,
                        failures: if down { 10 } else { 0 },
                        drained: false,
                        slow_start_until: None,
                        active_conns: 12,
                        inactive_conns: 30,
                        stats: Some(IpvsStats {
                            conns: 5000,
                            inbytes: 1_000_000,
                            outbytes: 9_000_000,
                            cps: 25,
                            inbps: 12_000,
                            outbps: 250_000,
                            ..Default::default()
                        }),
                        check_latency: Some(lat),
                    }
                })
                .collect();
            VirtualServerStatus {
                name,
                service: format!("tcp 10.77.{}.{}:80", v / 200, v % 200 + 100),
                scheduler: "wlc".into(),
                forwarding: "dr".into(),
                check: Some("http GET /healthz every 2s".into()),
                quorum: 1,
                up: real_servers
                    .iter()
                    .filter(|r| r.health == HealthState::Up)
                    .count(),
                quorum_met: true,
                sorry_server: None,
                sorry_active: false,
                stats: Some(IpvsStats {
                    cps: 50,
                    inbps: 24_000,
                    outbps: 500_000,
                    ..Default::default()
                }),
                real_servers,
            }
        })
        .collect();
    HealthdStatus {
        daemon: info("healthd"),
        dataplane: DataplaneStatus {
            ok: true,
            error: None,
            last_sync: Some(now),
            operations: 10,
            connection_sync: Some("master on eth0, sync id 51".into()),
        },
        virtual_servers,
    }
}

/// A refusal as a daemon words it.
pub fn refusal(message: &str, line: usize, column: usize) -> ApiError {
    ApiError {
        error: message.into(),
        diagnostics: vec![
            serde_json::from_value::<Diagnostic>(serde_json::json!({
                "file": "/etc/tandem/tandem.toml",
                "line": line,
                "column": column,
                "span": { "start": 0, "end": 1 },
                "message": message,
            }))
            .expect("a diagnostic"),
        ],
    }
}
