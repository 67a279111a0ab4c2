//! The virtual servers page: each virtual server with its real servers'
//! health, weights, connections and traffic.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tandem_model::api::{HealthState, HealthdStatus, UnixMillis};

use crate::chrome::Chrome;
use crate::extract::Viewer;
use crate::format::{ago, bytes, utc};
use crate::render::{Same, html};
use crate::state::AppState;

use super::overview::{DaemonView, healthd_view};

pub struct RealServerView {
    pub address: String,
    pub health: String,
    pub health_class: &'static str,
    pub reason: String,
    pub since: String,
    pub weight: String,
    pub drained: bool,
    pub active: u32,
    pub inactive: u32,
    pub cps: String,
    pub in_rate: String,
    pub out_rate: String,
    pub latency: String,
}

pub struct VirtualServerView {
    pub name: String,
    pub protocol: String,
    pub address: String,
    pub scheduler: String,
    pub forwarding: String,
    pub check: String,
    pub quorum: String,
    pub quorum_met: bool,
    pub sorry: String,
    pub traffic: String,
    pub real_servers: Vec<RealServerView>,
}

fn health_class(h: HealthState) -> &'static str {
    match h {
        HealthState::Up => "up",
        HealthState::Down => "down",
        HealthState::Unknown => "idle",
    }
}

fn virtual_server_views(s: &HealthdStatus, now: UnixMillis) -> Vec<VirtualServerView> {
    s.virtual_servers
        .iter()
        .map(|v| {
            let (protocol, address) = v
                .service
                .split_once(' ')
                .map_or((String::new(), v.service.clone()), |(p, a)| {
                    (p.to_uppercase(), a.to_string())
                });
            VirtualServerView {
                name: v.name.clone(),
                protocol,
                address,
                scheduler: v.scheduler.clone(),
                forwarding: v.forwarding.clone(),
                check: v.check.clone().unwrap_or_else(|| "no check".into()),
                quorum: format!("{} up, quorum {}", v.up, v.quorum),
                quorum_met: v.quorum_met,
                sorry: match (&v.sorry_server, v.sorry_active) {
                    (Some(s), true) => format!("sorry server {s} ACTIVE"),
                    (Some(s), false) => format!("sorry server {s}"),
                    (None, _) => String::new(),
                },
                traffic: v.stats.map_or_else(String::new, |st| {
                    format!(
                        "{} conn/s · in {}/s · out {}/s",
                        st.cps,
                        bytes(st.inbps),
                        bytes(st.outbps)
                    )
                }),
                real_servers: v
                    .real_servers
                    .iter()
                    .map(|r| RealServerView {
                        address: r.address.clone(),
                        health: if r.drained {
                            format!("{} · drained", r.health)
                        } else {
                            r.health.to_string()
                        },
                        health_class: if r.drained {
                            "drained"
                        } else {
                            health_class(r.health)
                        },
                        reason: r.reason.clone(),
                        since: ago(now, r.since),
                        weight: match r.kernel_weight {
                            Some(k) if k != r.weight => format!("{} (kernel {k})", r.weight),
                            Some(_) => r.weight.to_string(),
                            None => format!("{} (not in table)", r.weight),
                        },
                        drained: r.drained,
                        active: r.active_conns,
                        inactive: r.inactive_conns,
                        cps: r.stats.map_or("–".into(), |s| s.cps.to_string()),
                        in_rate: r
                            .stats
                            .map_or("–".into(), |s| format!("{}/s", bytes(s.inbps))),
                        out_rate: r
                            .stats
                            .map_or("–".into(), |s| format!("{}/s", bytes(s.outbps))),
                        latency: r.last_check.as_ref().map_or("–".into(), |c| {
                            format!("{} ms, {}", c.latency_ms, ago(now, c.at))
                        }),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "vs_list.html")]
struct VirtualServersFragment {
    admin: bool,
    servers: Vec<VirtualServerView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "virtual_servers.html")]
struct VirtualServersPage {
    chrome: Chrome,
    healthd: DaemonView,
    servers_html: Bytes,
    no_servers: bool,
    generated: String,
}

impl VirtualServersPage {
    fn servers(&self) -> &str {
        html(&self.servers_html)
    }
}

pub async fn virtual_servers(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    let hs = app.daemons.healthd_snapshot().await;
    let h = hs.reach;
    let now = app.now();
    let admin = caller.is_admin();
    let servers_html = match h.up() {
        Some(s) => {
            let render = || {
                VirtualServersFragment {
                    admin,
                    servers: virtual_server_views(s, now),
                }
                .render()
                .unwrap_or_default()
            };
            let key = Same(s.clone());
            app.renders
                .virtual_servers
                .get_or(key, (hs.generation, 0), admin, render)
                .await
        }
        None => Bytes::new(),
    };
    VirtualServersPage {
        chrome: Chrome::new(&app, &caller, "virtual-servers"),
        healthd: healthd_view(&h, now),
        servers_html,
        no_servers: h.up().is_some_and(|s| s.virtual_servers.is_empty()),
        generated: utc(now),
    }
    .into_response()
}
