//! The cluster page: every director side by side (its version and sync
//! state, which instances it is master of, real-server health as it sees
//! it), connections/s and bytes/s per virtual server and director over the
//! last hour, a conflict's diff with the choice that ends it, and the
//! history of versions.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tandem_model::api::{HealthState, HealthdStatus, VrrpState, VrrpdStatus};
use tandem_model::sync::{ClusterStatus, ConfigVersion};

use crate::chrome::{Chrome, message_page};
use crate::cluster::charts::{self, ChartRow};
use crate::extract::{Admin, Viewer};
use crate::format::ago;
use crate::state::AppState;

pub struct DirectorView {
    pub name: String,
    pub reachable: bool,
    pub version: String,
    pub state: String,
    pub relation: String,
    pub error: String,
}

pub struct Row {
    pub name: String,
    pub cells: Vec<Cell>,
    /// Directors disagree about it: a network problem near one of them.
    pub split: bool,
    pub note: String,
}

pub struct Cell {
    pub text: String,
    pub class: &'static str,
    /// For an instance: the director, and whether it is in maintenance.
    pub node: String,
    pub maintenance: Option<bool>,
}

pub struct ConflictView {
    pub node: String,
    pub version: String,
    pub diff: String,
}

pub struct TimelineRow {
    pub ago: String,
    pub time: String,
    pub node: String,
    pub daemon: String,
    pub kind: &'static str,
    pub text: String,
}

pub struct HistoryRow {
    pub short: String,
    pub generation: u64,
    pub ago: String,
    pub author: String,
    pub node: String,
    pub comment: String,
    pub current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "cluster.html")]
struct ClusterPage {
    chrome: Chrome,
    available: bool,
    state_class: &'static str,
    state: String,
    detail: String,
    me: String,
    directors: Vec<DirectorView>,
    instances: Vec<Row>,
    real_servers: Vec<Row>,
    charts: Vec<ChartRow>,
    chart_names: Vec<String>,
    conflict: Vec<ConflictView>,
    history: Vec<HistoryRow>,
    timeline: Vec<TimelineRow>,
    counters: String,
}

/// Each director's daemons as the cluster view has them (this one's from
/// its own sockets).
fn statuses(
    st: &ClusterStatus,
    vrrpd: Option<VrrpdStatus>,
    healthd: Option<HealthdStatus>,
) -> Vec<(String, bool, Option<VrrpdStatus>, Option<HealthdStatus>)> {
    let mut out = vec![(st.node.clone(), true, vrrpd, healthd)];
    for p in &st.peers {
        out.push((
            p.name.clone(),
            p.reachable,
            p.vrrpd.clone(),
            p.healthd.clone(),
        ));
    }
    // In the order the file names them, on every director's page alike.
    out.sort_by_key(|d| order(st, &d.0));
    out
}

fn order(st: &ClusterStatus, node: &str) -> usize {
    st.nodes
        .iter()
        .position(|n| n == node)
        .unwrap_or(usize::MAX)
}

fn cell(text: &str, class: &'static str) -> Cell {
    Cell {
        text: text.into(),
        class,
        node: String::new(),
        maintenance: None,
    }
}

fn instance_rows(all: &[(String, bool, Option<VrrpdStatus>, Option<HealthdStatus>)]) -> Vec<Row> {
    let names: BTreeSet<String> = all
        .iter()
        .filter_map(|d| d.2.as_ref())
        .flat_map(|v| v.instances.iter().map(|i| i.name.clone()))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let cells: Vec<Cell> = all
                .iter()
                .map(|(node, up, v, _)| {
                    match v
                        .as_ref()
                        .and_then(|v| v.instances.iter().find(|i| i.name == name))
                    {
                        Some(i) => Cell {
                            text: format!(
                                "{} ({}){}",
                                i.state,
                                i.effective_priority,
                                if i.maintenance { ", maintenance" } else { "" }
                            ),
                            class: match i.state {
                                VrrpState::Master => "master",
                                VrrpState::Backup => "backup",
                                _ => "down",
                            },
                            node: node.clone(),
                            maintenance: Some(i.maintenance),
                        },
                        None if !*up => cell("unreachable", "muted"),
                        None => cell("-", "muted"),
                    }
                })
                .collect();
            let masters = cells.iter().filter(|c| c.class == "master").count();
            Row {
                name,
                split: masters > 1,
                note: if masters > 1 {
                    "more than one master".into()
                } else if masters == 0 {
                    "no master".into()
                } else {
                    String::new()
                },
                cells,
            }
        })
        .collect()
}

fn real_server_rows(
    all: &[(String, bool, Option<VrrpdStatus>, Option<HealthdStatus>)],
) -> Vec<Row> {
    let mut keys: BTreeMap<(String, String), ()> = BTreeMap::new();
    for (_, _, _, h) in all {
        for vs in h.iter().flat_map(|h| &h.virtual_servers) {
            for rs in &vs.real_servers {
                keys.insert((vs.name.clone(), rs.address.clone()), ());
            }
        }
    }
    keys.into_keys()
        .map(|(vs, rs)| {
            let mut down_from = Vec::new();
            let mut up_from = 0;
            let cells = all
                .iter()
                .map(|(node, up, _, h)| {
                    let found = h
                        .as_ref()
                        .and_then(|h| h.virtual_servers.iter().find(|v| v.name == vs))
                        .and_then(|v| v.real_servers.iter().find(|r| r.address == rs));
                    match found {
                        Some(r) => {
                            match r.health {
                                HealthState::Down => down_from.push(node.clone()),
                                HealthState::Up => up_from += 1,
                                HealthState::Unknown => {}
                            }
                            Cell {
                                node: String::new(),
                                maintenance: None,
                                text: format!(
                                    "{}{}",
                                    r.health,
                                    if r.drained { ", drained" } else { "" }
                                ),
                                class: match r.health {
                                    HealthState::Up if r.drained => "backup",
                                    HealthState::Up => "master",
                                    HealthState::Down => "down",
                                    HealthState::Unknown => "muted",
                                },
                            }
                        }
                        None if !*up => cell("unreachable", "muted"),
                        None => cell("-", "muted"),
                    }
                })
                .collect();
            let split = !down_from.is_empty() && up_from > 0;
            Row {
                name: format!("{vs} / {rs}"),
                note: if split {
                    format!(
                        "down from {} only: look at the network near {}",
                        down_from.join(", "),
                        if down_from.len() == 1 { "it" } else { "them" }
                    )
                } else {
                    String::new()
                },
                split,
                cells,
            }
        })
        .collect()
}

fn history_rows(st: &ClusterStatus, now: u64) -> Vec<HistoryRow> {
    st.history
        .iter()
        .take(20)
        .map(|v: &ConfigVersion| HistoryRow {
            short: v.short().to_string(),
            generation: v.generation,
            ago: ago(now, v.at),
            author: if v.author.is_empty() {
                "(adopted as found)".into()
            } else {
                v.author.clone()
            },
            node: v.node.clone(),
            comment: v.comment.clone(),
            current: v.id == st.version.id,
        })
        .collect()
}

pub async fn cluster(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    let chrome = Chrome::new(&app, &caller, "cluster");
    let Some(st) = app.cluster_view() else {
        return ClusterPage {
            chrome,
            available: false,
            state_class: "down",
            state: if app.cluster.is_some() {
                "tandem-clusterd does not answer".into()
            } else {
                "not a synchronised cluster".into()
            },
            detail: if app.cluster.is_some() {
                "Start tandem-clusterd on this director (systemctl start tandem-clusterd).".into()
            } else {
                "This configuration has no [cluster] address: each director's file is its own."
                    .into()
            },
            me: app.node(),
            directors: Vec::new(),
            instances: Vec::new(),
            real_servers: Vec::new(),
            charts: Vec::new(),
            chart_names: Vec::new(),
            conflict: Vec::new(),
            history: Vec::new(),
            timeline: Vec::new(),
            counters: String::new(),
        }
        .into_response();
    };
    let timeline = async {
        match app.cluster.as_ref() {
            Some(c) => tokio::time::timeout(
                std::time::Duration::from_secs(5),
                c.get::<Vec<tandem_model::api::Event>>("/timeline"),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
            None => Vec::new(),
        }
    };
    let (v, h, events) = tokio::join!(
        app.daemons.vrrpd_status(),
        app.daemons.healthd_status(),
        timeline
    );
    let all = statuses(
        &st,
        v.up().map(|s| (**s).clone()),
        h.up().map(|s| (**s).clone()),
    );
    let now = app.now();
    let mut directors = vec![DirectorView {
        name: st.node.clone(),
        reachable: true,
        version: format!(
            "{} (generation {})",
            st.version.short(),
            st.version.generation
        ),
        state: st.state.label().to_string(),
        relation: "this director".into(),
        error: String::new(),
    }];
    for p in &st.peers {
        directors.push(DirectorView {
            name: p.name.clone(),
            reachable: p.reachable,
            version: p
                .version
                .as_ref()
                .map(|v| format!("{} (generation {})", v.short(), v.generation))
                .unwrap_or_else(|| "-".into()),
            state: p.state.map(|s| s.label().to_string()).unwrap_or_default(),
            relation: match p.relation {
                Some(tandem_model::sync::Relation::Same) => "same version".into(),
                Some(tandem_model::sync::Relation::Ahead) => {
                    "ahead: this director catches up".into()
                }
                Some(tandem_model::sync::Relation::Behind) => "behind: catching up".into(),
                Some(tandem_model::sync::Relation::Diverged) => "CONFLICT".into(),
                None => String::new(),
            },
            error: p.error.clone().unwrap_or_default(),
        });
    }
    directors.sort_by_key(|d| order(&st, &d.name));
    let names: Vec<String> = all.iter().map(|d| d.0.clone()).collect();
    let k = &st.counters;
    let page = ClusterPage {
        chrome,
        available: true,
        state_class: if st.state.in_sync() { "up" } else { "down" },
        state: st.state.label().to_string(),
        detail: st.detail.clone(),
        me: st.node.clone(),
        directors,
        instances: instance_rows(&all),
        real_servers: real_server_rows(&all),
        charts: charts::rows(&app, &names, now),
        chart_names: names,
        conflict: st
            .conflict
            .iter()
            .flat_map(|c| &c.theirs)
            .map(|t| ConflictView {
                node: t.node.clone(),
                version: format!(
                    "{} (generation {})",
                    t.version.short(),
                    t.version.generation
                ),
                diff: t.diff.clone(),
            })
            .collect(),
        history: history_rows(&st, now),
        timeline: events
            .iter()
            .take(60)
            .map(|e| TimelineRow {
                ago: ago(now, e.at),
                time: crate::format::utc(e.at),
                node: e.node.clone(),
                daemon: e.daemon.clone(),
                kind: crate::eventlog::kind_name(&e.kind),
                text: crate::eventlog::describe(&e.kind),
            })
            .collect(),
        counters: format!(
            "{} changes applied, {} refused; refused on the sync channel: {} TLS, {} unknown peers, {} malformed, {} stale",
            k.changes_applied,
            k.changes_refused,
            k.refused_tls,
            k.refused_peers,
            k.bad_messages,
            k.stale_messages
        ),
    };
    page.into_response()
}

#[derive(Deserialize)]
pub struct ResolveForm {
    /// The director whose version the cluster keeps.
    take: String,
}

/// Ends a conflict with `take`'s version, for every director: the
/// result, or the status and reason it was not tried.
async fn resolve_with(
    app: &AppState,
    author: &str,
    take: &str,
) -> Result<tandem_model::sync::ApplyResult, (StatusCode, String)> {
    let unavailable = |m: &str| (StatusCode::SERVICE_UNAVAILABLE, m.to_string());
    let c = app
        .cluster
        .as_ref()
        .ok_or_else(|| unavailable("not a synchronised cluster"))?;
    let st = app
        .cluster_view()
        .ok_or_else(|| unavailable("tandem-clusterd does not answer"))?;
    if st.conflict.is_none() {
        return Err((
            StatusCode::CONFLICT,
            "there is no conflict (any more)".to_string(),
        ));
    }
    let version = st.side_of(take).cloned().ok_or_else(|| {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "{take} is not a side of the conflict; the sides are {}",
                st.sides()
            ),
        )
    })?;
    #[derive(Deserialize)]
    struct Text {
        text: String,
    }
    let text = c
        .get::<Text>(&format!("/versions/{}", version.id))
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))?
        .text;
    let _one = app.writes.lock().await;
    crate::cluster::apply(app, author, &text, true)
        .await
        .map_err(|e| unavailable(&e))
}

/// Ends a conflict with one side's version, for every director.
pub async fn resolve(
    State(app): State<AppState>,
    Admin(caller, user): Admin,
    Form(f): Form<ResolveForm>,
) -> Response {
    match resolve_with(&app, &user.name, &f.take).await {
        Ok(r) => message_page(
            &app,
            &caller,
            if r.applied {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            if r.applied {
                "Conflict resolved"
            } else {
                "Not resolved"
            },
            &format!("The cluster keeps {}'s version.\n{}", f.take, r.render()),
        ),
        Err((status, e)) => message_page(&app, &caller, status, "Not resolved", &e),
    }
}

/// `POST /api/v1/cluster/resolve` `{take}`.
pub async fn api_resolve(
    State(app): State<AppState>,
    Admin(_, user): Admin,
    axum::Json(f): axum::Json<ResolveForm>,
) -> Response {
    match resolve_with(&app, &user.name, &f.take).await {
        Ok(r) => {
            let status = if r.applied {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, axum::Json(r)).into_response()
        }
        Err((status, e)) => crate::extract::error(status, e),
    }
}

#[derive(Deserialize)]
pub struct MaintenanceBody {
    node: String,
    instance: String,
    on: bool,
}

/// `POST /api/v1/cluster/maintenance` `{node, instance, on}`.
pub async fn api_maintenance(
    State(app): State<AppState>,
    Admin(_, user): Admin,
    axum::Json(b): axum::Json<MaintenanceBody>,
) -> Response {
    match crate::cluster::maintenance(&app, &user.name, &b.node, &b.instance, b.on).await {
        Ok(r) => {
            let status = if r.done {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (status, axum::Json(r)).into_response()
        }
        Err(e) => crate::extract::error(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `GET /api/v1/cluster`: the cluster as this director's clusterd has it.
pub async fn api_cluster(State(app): State<AppState>, _v: Viewer) -> Response {
    match (app.cluster.as_ref(), app.cluster_view()) {
        (None, _) => crate::extract::error(
            StatusCode::NOT_FOUND,
            "not a synchronised cluster: the configuration has no [cluster] address",
        ),
        (Some(_), None) => crate::extract::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "tandem-clusterd does not answer on this director",
        ),
        (Some(_), Some(st)) => axum::Json(&*st).into_response(),
    }
}

#[derive(Deserialize)]
pub struct MaintenanceForm {
    node: String,
    instance: String,
    /// "on" or "off".
    op: String,
}

/// Maintenance of an instance on any director of the cluster.
pub async fn maintenance(
    State(app): State<AppState>,
    Admin(caller, user): Admin,
    Form(f): Form<MaintenanceForm>,
) -> Response {
    let on = f.op == "on";
    match crate::cluster::maintenance(&app, &user.name, &f.node, &f.instance, on).await {
        Ok(r) if r.done => message_page(
            &app,
            &caller,
            StatusCode::OK,
            "Maintenance",
            &format!(
                "{} on {}: maintenance {}.",
                f.instance,
                f.node,
                if on { "on, handing over" } else { "off" }
            ),
        ),
        Ok(r) => message_page(
            &app,
            &caller,
            StatusCode::BAD_GATEWAY,
            "Maintenance not done",
            &crate::cluster::action_summary(&r),
        ),
        Err(e) => message_page(
            &app,
            &caller,
            StatusCode::SERVICE_UNAVAILABLE,
            "Maintenance not done",
            &e,
        ),
    }
}
