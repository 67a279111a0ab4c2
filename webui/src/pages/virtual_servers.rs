//! The virtual servers page: each virtual server with its real servers'
//! health, weights, connections and traffic; searched, filtered to the
//! ones with a problem, and paged, so that 2,284 virtual servers with
//! 37,298 real servers (keepalived issue #2318) stay one quick page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use tandem_model::api::{HealthState, UnixMillis, VirtualServerStatus};

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

/// Which virtual servers to show: `q` (a part of the name, the service
/// or a real server's address, any case), `problems` (only those below
/// quorum or with a real server that is not up, drained, or not at its
/// weight in the kernel), one `page` (from 1) of `per_page`; a
/// `per_page` of 0 is every match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct VsFilter {
    pub q: String,
    #[serde(deserialize_with = "checkbox")]
    pub problems: bool,
    pub page: usize,
    pub per_page: Option<usize>,
}

/// A form checkbox: present ("on", "1", "true") or absent.
fn checkbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = String::deserialize(d)?;
    Ok(!matches!(v.as_str(), "" | "0" | "false" | "off"))
}

/// Virtual servers on a page of the web UI unless asked otherwise.
pub const PER_PAGE: usize = 25;

/// One page of the virtual servers a filter selects.
pub struct Selection<'a> {
    pub shown: Vec<&'a VirtualServerStatus>,
    /// How many match, over all pages.
    pub matching: usize,
    /// The page shown (from 1) and the number of pages.
    pub page: usize,
    pub pages: usize,
}

impl VsFilter {
    fn matches(&self, v: &VirtualServerStatus, q: &str) -> bool {
        let has = |s: &str| q.is_empty() || s.to_lowercase().contains(q);
        let text =
            has(&v.name) || has(&v.service) || v.real_servers.iter().any(|r| has(&r.address));
        let trouble = || {
            !v.quorum_met
                || v.real_servers.iter().any(|r| {
                    r.health != HealthState::Up || r.drained || r.kernel_weight != Some(r.weight)
                })
        };
        text && (!self.problems || trouble())
    }

    pub fn select<'a>(&self, all: &'a [VirtualServerStatus], per_page: usize) -> Selection<'a> {
        let q = self.q.trim().to_lowercase();
        let matching: Vec<&VirtualServerStatus> =
            all.iter().filter(|v| self.matches(v, &q)).collect();
        let per_page = self.per_page.unwrap_or(per_page);
        let pages = if per_page == 0 {
            1
        } else {
            matching.len().div_ceil(per_page).max(1)
        };
        let page = self.page.clamp(1, pages);
        let shown = if per_page == 0 {
            matching.clone()
        } else {
            matching
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .copied()
                .collect()
        };
        Selection {
            shown,
            matching: matching.len(),
            page,
            pages,
        }
    }

    /// This filter's query string for another page.
    fn href(&self, page: usize) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            q.append_pair("q", &self.q);
        }
        if self.problems {
            q.append_pair("problems", "on");
        }
        if let Some(n) = self.per_page {
            q.append_pair("per_page", &n.to_string());
        }
        q.append_pair("page", &page.to_string());
        format!("/virtual-servers?{}", q.finish())
    }
}

fn virtual_server_views(vss: &[&VirtualServerStatus], now: UnixMillis) -> Vec<VirtualServerView> {
    vss.iter()
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
                            Some(k) if r.slow_start_until.is_some() => {
                                format!("{} (kernel {k}, slow start)", r.weight)
                            }
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
    filter: VsFilter,
    servers_html: Bytes,
    no_servers: bool,
    /// "Virtual servers 26-50 of 2284 (37298 real servers)", when some
    /// are configured.
    summary: String,
    prev: Option<String>,
    next: Option<String>,
    generated: String,
}

impl VirtualServersPage {
    fn servers(&self) -> &str {
        html(&self.servers_html)
    }
}

pub async fn virtual_servers(
    State(app): State<AppState>,
    Viewer(caller, _): Viewer,
    Query(filter): Query<VsFilter>,
) -> Response {
    let hs = app.daemons.healthd_snapshot().await;
    let h = hs.reach;
    let now = app.now();
    let admin = caller.is_admin();
    let (mut summary, mut prev, mut next) = (String::new(), None, None);
    let servers_html = match h.up() {
        Some(s) => {
            let sel = filter.select(&s.virtual_servers, PER_PAGE);
            let total_rs: usize = s.virtual_servers.iter().map(|v| v.real_servers.len()).sum();
            let first = if sel.shown.is_empty() {
                0
            } else {
                1 + (sel.page - 1) * filter.per_page.unwrap_or(PER_PAGE)
            };
            summary = format!(
                "{} {}-{} of {} ({} of {} virtual servers, {} real servers)",
                if sel.matching == 1 {
                    "Virtual server"
                } else {
                    "Virtual servers"
                },
                first,
                first + sel.shown.len().saturating_sub(1),
                sel.matching,
                if filter.q.is_empty() && !filter.problems {
                    "all"
                } else {
                    "matching"
                },
                s.virtual_servers.len(),
                total_rs,
            );
            prev = (sel.page > 1).then(|| filter.href(sel.page - 1));
            next = (sel.page < sel.pages).then(|| filter.href(sel.page + 1));
            let render = || {
                VirtualServersFragment {
                    admin,
                    servers: virtual_server_views(&sel.shown, now),
                }
                .render()
                .unwrap_or_default()
            };
            let key = Same(s.clone());
            let variant = (admin, filter.clone());
            app.renders
                .virtual_servers
                .get_or(key, (hs.generation, 0), variant, render)
                .await
        }
        None => Bytes::new(),
    };
    VirtualServersPage {
        chrome: Chrome::new(&app, &caller, "virtual-servers"),
        healthd: healthd_view(&h, now),
        filter,
        servers_html,
        no_servers: h.up().is_some_and(|s| s.virtual_servers.is_empty()),
        summary,
        prev,
        next,
        generated: utc(now),
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_model::api::RealServerStatus;

    fn vs(name: &str, rs: &[(&str, HealthState)]) -> VirtualServerStatus {
        VirtualServerStatus {
            name: name.into(),
            service: format!("tcp 192.0.2.{}:80", name.len()),
            scheduler: "wlc".into(),
            forwarding: "nat".into(),
            check: None,
            quorum: 0,
            up: rs.len(),
            quorum_met: true,
            sorry_server: None,
            sorry_active: false,
            stats: None,
            real_servers: rs
                .iter()
                .map(|(a, h)| RealServerStatus {
                    address: a.to_string(),
                    weight: 1,
                    kernel_weight: Some(1),
                    health: *h,
                    since: 0,
                    reason: String::new(),
                    last_check: None,
                    checks: 0,
                    failures: 0,
                    drained: false,
                    slow_start_until: None,
                    active_conns: 0,
                    inactive_conns: 0,
                    stats: None,
                    check_latency: None,
                })
                .collect(),
        }
    }

    fn names(sel: &Selection<'_>) -> Vec<String> {
        sel.shown.iter().map(|v| v.name.clone()).collect()
    }

    #[test]
    fn search_finds_a_virtual_server_by_name_service_or_real_server_in_any_case() {
        let all = vec![
            vs("web", &[("10.0.0.11:80", HealthState::Up)]),
            vs("Mail", &[("10.0.1.25:25", HealthState::Up)]),
        ];
        let find = |q: &str| {
            let f = VsFilter {
                q: q.into(),
                ..Default::default()
            };
            names(&f.select(&all, PER_PAGE))
        };
        assert_eq!(find("mail"), ["Mail"]);
        assert_eq!(find("10.0.0.11"), ["web"]);
        assert_eq!(find(" 192.0.2.3:80 "), ["web"]);
        assert!(find("nothing").is_empty());
        assert_eq!(find("").len(), 2);
    }

    #[test]
    fn problems_shows_only_virtual_servers_with_a_server_not_serving() {
        let mut drained = vs("drained", &[("10.0.0.3:80", HealthState::Up)]);
        drained.real_servers[0].drained = true;
        let mut low = vs("low", &[]);
        low.quorum_met = false;
        let all = vec![
            vs("fine", &[("10.0.0.1:80", HealthState::Up)]),
            vs("down", &[("10.0.0.2:80", HealthState::Down)]),
            drained,
            low,
        ];
        let f = VsFilter {
            problems: true,
            ..Default::default()
        };
        assert_eq!(names(&f.select(&all, PER_PAGE)), ["down", "drained", "low"]);
    }

    #[test]
    fn pages_cover_every_match_once_and_a_page_past_the_end_shows_the_last() {
        let all: Vec<_> = (0..60).map(|i| vs(&format!("vs{i}"), &[])).collect();
        let page = |n| {
            VsFilter {
                page: n,
                ..Default::default()
            }
            .select(&all, 25)
        };
        let (p1, p3) = (page(1), page(3));
        assert_eq!((p1.shown.len(), p1.pages, p1.matching), (25, 3, 60));
        assert_eq!(
            names(&p3),
            (50..60).map(|i| format!("vs{i}")).collect::<Vec<_>>()
        );
        assert_eq!(page(0).page, 1);
        assert_eq!(names(&page(99)), names(&p3));
        let every = VsFilter {
            per_page: Some(0),
            ..Default::default()
        };
        assert_eq!(every.select(&all, 25).shown.len(), 60);
        let huge = VsFilter {
            page: usize::MAX,
            per_page: Some(usize::MAX),
            ..Default::default()
        };
        let sel = huge.select(&all, 25);
        assert_eq!((sel.page, sel.pages, sel.shown.len()), (1, 1, 60));
    }
}
