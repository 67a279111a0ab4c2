//! The overview page: both daemons, the VRRP instances and the peers.

use std::sync::Arc;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tandem_model::api::{HealthdStatus, InstanceStatus, UnixMillis, VrrpState};

use crate::chrome::Chrome;
use crate::daemons::Reach;
use crate::extract::Viewer;
use crate::format::{ago, utc};
use crate::peers::{PeerView, peers};
use crate::render::{Same, html};
use crate::state::AppState;

pub struct DaemonView {
    pub name: &'static str,
    pub running: bool,
    pub detail: String,
}

pub fn daemon_view<T>(
    name: &'static str,
    r: &Reach<T>,
    info: impl Fn(&T) -> &tandem_model::api::DaemonInfo,
    now: UnixMillis,
) -> DaemonView {
    match r {
        Reach::Up(s) => {
            let i = info(s);
            DaemonView {
                name,
                running: true,
                detail: format!(
                    "{} (pid {}), up {}; config loaded {}",
                    i.version,
                    i.pid,
                    ago(now, i.started_at).trim_end_matches(" ago"),
                    ago(now, i.config_loaded_at)
                ),
            }
        }
        Reach::Down(why) => DaemonView {
            name,
            running: false,
            detail: why.clone(),
        },
    }
}

/// healthd's line: the daemon, then what it keeps in the kernel (the IPVS
/// table in sync or why not, the connection sync daemon's role).
pub fn healthd_view(h: &Reach<Arc<HealthdStatus>>, now: UnixMillis) -> DaemonView {
    let mut view = daemon_view("healthd", h, |s| &s.daemon, now);
    if let Some(s) = h.up() {
        let d = &s.dataplane;
        match &d.error {
            Some(e) if !d.ok => view.detail.push_str(&format!("; IPVS: {e}")),
            _ => view.detail.push_str("; IPVS in sync"),
        }
        if let Some(cs) = &d.connection_sync {
            view.detail.push_str(&format!("; connection sync: {cs}"));
        }
    }
    view
}

pub struct InstanceView {
    pub name: String,
    pub placement: String,
    pub state: String,
    pub state_class: &'static str,
    pub effective: u8,
    pub configured: u8,
    pub maintenance: bool,
    pub master: String,
    pub vips: Vec<String>,
    pub transition: String,
    pub transition_ago: String,
    pub tracking: Vec<String>,
}

fn state_class(s: VrrpState) -> &'static str {
    match s {
        VrrpState::Master => "master",
        VrrpState::Backup => "backup",
        VrrpState::Fault => "fault",
        VrrpState::Init | VrrpState::Stop => "idle",
    }
}

fn instance_view(i: &InstanceStatus, now: UnixMillis) -> InstanceView {
    let family = match i.family {
        tandem_model::config::Family::Ipv4 => "IPv4",
        tandem_model::config::Family::Ipv6 => "IPv6",
    };
    let master = match &i.master {
        Some(m) if m.is_self => "this node".to_string(),
        Some(m) => format!("{} (priority {})", m.address, m.priority),
        None => "none heard".to_string(),
    };
    let (transition, transition_ago) = match &i.last_transition {
        Some(t) => (
            format!("{} → {}: {}", t.from, t.to, t.reason),
            format!("{} ({})", ago(now, t.at), utc(t.at)),
        ),
        None => ("none yet".to_string(), String::new()),
    };
    InstanceView {
        name: i.name.clone(),
        placement: format!(
            "{} · VRID {} · {family} · VRRPv{}",
            i.interface, i.vrid, i.version
        ),
        state: i.state.to_string(),
        state_class: state_class(i.state),
        effective: i.effective_priority,
        configured: i.configured_priority,
        maintenance: i.maintenance,
        master,
        vips: i.virtual_ips.clone(),
        transition,
        transition_ago,
        tracking: i
            .tracking
            .iter()
            .filter(|t| !t.ok || t.delta != 0)
            .map(|t| {
                format!(
                    "{} {} {}{}",
                    t.kind,
                    t.name,
                    if t.ok { "ok" } else { "failed" },
                    if t.delta != 0 {
                        format!(" ({:+})", t.delta)
                    } else if t.faults && !t.ok {
                        " (fault)".to_string()
                    } else {
                        String::new()
                    }
                )
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "instances.html")]
struct InstancesFragment {
    admin: bool,
    peers: Vec<PeerView>,
    instances: Vec<InstanceView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    daemons: Vec<DaemonView>,
    instances_html: Bytes,
    vrrpd_running: bool,
    generated: String,
}

impl OverviewPage {
    fn instances(&self) -> &str {
        html(&self.instances_html)
    }
}

pub async fn overview(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    let (vs, h) = tokio::join!(app.daemons.vrrpd_snapshot(), app.daemons.healthd_status());
    let v = vs.reach;
    let now = app.now();
    let admin = caller.is_admin();
    let instances_html = match v.up() {
        Some(s) => {
            let render = || {
                InstancesFragment {
                    admin,
                    peers: peers(s, now),
                    instances: s.instances.iter().map(|i| instance_view(i, now)).collect(),
                }
                .render()
                .unwrap_or_default()
            };
            let key = Same(s.clone());
            app.renders
                .instances
                .get_or(key, (vs.generation, 0), admin, render)
                .await
        }
        None => Bytes::new(),
    };
    OverviewPage {
        chrome: Chrome::new(&app, &caller, "overview"),
        daemons: vec![
            daemon_view("vrrpd", &v, |s| &s.daemon, now),
            healthd_view(&h, now),
        ],
        instances_html,
        vrrpd_running: v.up().is_some(),
        generated: utc(now),
    }
    .into_response()
}
