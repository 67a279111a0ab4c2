//! `/api/v1/...`: the pages as JSON, for scripts. The same users and roles;
//! a session cookie needs the `X-CSRF-Token` header on POST, HTTP basic
//! auth does not. `/metrics` lives here too.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tandem_model::api::ApiError;

use crate::apply::{Applied, apply_text};
use crate::auth::role_name;
use crate::caller::Via;
use crate::configedit::{self, WriteError};
use crate::daemons::{Daemon, Reach, ReloadOutcome};
use crate::eventlog::{EventFilter, filtered_events};
use crate::extract::{Admin, Viewer, error};
use crate::peers::peers;
use crate::render::Same;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/status", get(status))
        .route("/cluster", get(crate::pages::api_cluster))
        .route("/cluster/resolve", post(crate::pages::api_resolve))
        .route("/cluster/maintenance", post(crate::pages::api_maintenance))
        .route("/overview", get(overview))
        .route("/virtual-servers", get(virtual_servers))
        .route("/events", get(events))
        .route("/doctor", get(doctor))
        .route("/config", get(config_get).post(config_apply))
        .route("/config/validate", post(config_validate))
        .route("/config/backups", get(config_backups))
        .route("/config/rollback", post(config_rollback))
        .route("/virtual-servers/{vs}/real-servers/{rs}/drain", post(drain))
        .route(
            "/virtual-servers/{vs}/real-servers/{rs}/enable",
            post(enable),
        )
        .route("/instances/{name}/maintenance", post(maintenance))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such API route") })
}

fn reach_json<T: Serialize>(r: &Reach<std::sync::Arc<T>>) -> serde_json::Value {
    match r {
        Reach::Up(s) => json!({ "running": true, "status": &**s }),
        Reach::Down(why) => json!({ "running": false, "error": why }),
    }
}

async fn whoami(Viewer(caller, user): Viewer) -> Response {
    Json(json!({
        "name": user.name,
        "role": role_name(user.role),
        // Only a cookie session needs (and may read) its token.
        "csrf_token": (caller.via == Via::Session).then_some(caller.csrf),
    }))
    .into_response()
}

/// Both daemons' full status documents.
async fn status(State(app): State<AppState>, _v: Viewer) -> Response {
    let (v, h) = tokio::join!(app.daemons.vrrpd_status(), app.daemons.healthd_status());
    Json(json!({
        "node": app.node(),
        "vrrpd": reach_json(&v),
        "healthd": reach_json(&h),
    }))
    .into_response()
}

async fn overview(State(app): State<AppState>, _v: Viewer) -> Response {
    let (v, h) = tokio::join!(app.daemons.vrrpd_status(), app.daemons.healthd_status());
    let now = app.now();
    let peers: Vec<serde_json::Value> = v.up().map_or_else(Vec::new, |s| {
        peers(s, now)
            .into_iter()
            .map(|p| json!({ "address": p.address, "master_of": p.instances.split(", ").collect::<Vec<_>>() }))
            .collect()
    });
    Json(json!({
        "node": app.node(),
        "vrrpd": { "running": v.up().is_some(), "error": match &v { Reach::Down(e) => Some(e), _ => None } },
        "healthd": { "running": h.up().is_some(), "error": match &h { Reach::Down(e) => Some(e), _ => None } },
        "peers": peers,
        "instances": v.up().map(|s| &s.instances),
    }))
    .into_response()
}

/// The virtual servers, all of them unless filtered and paged as the
/// web UI's page is (`q`, `problems`, `page`, `per_page`).
async fn virtual_servers(
    State(app): State<AppState>,
    _v: Viewer,
    Query(f): Query<crate::pages::VsFilter>,
) -> Response {
    let h = app.daemons.healthd_status().await;
    let sel = h.up().map(|s| f.select(&s.virtual_servers, 0));
    Json(json!({
        "healthd": { "running": h.up().is_some(), "error": match &h { Reach::Down(e) => Some(e), _ => None } },
        "virtual_servers": sel.as_ref().map(|s| &s.shown),
        "matching": sel.as_ref().map(|s| s.matching),
        "page": sel.as_ref().map(|s| s.page),
        "pages": sel.as_ref().map(|s| s.pages),
    }))
    .into_response()
}

/// The doctor's findings on this director (as `tandem doctor --json`,
/// less what needs root: see `App::doctor`).
async fn doctor(State(app): State<AppState>, _v: Viewer) -> Response {
    match app.doctor().await {
        Ok(r) => Json(&*r).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn events(State(app): State<AppState>, _v: Viewer, Query(f): Query<EventFilter>) -> Response {
    let (events, down) = filtered_events(&app, &f).await;
    Json(json!({ "events": events, "unreachable": down })).into_response()
}

async fn config_get(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    match app.config.read() {
        Ok((text, version)) => Json(json!({
            "path": app.config.path(),
            "version": version,
            "text": if caller.is_admin() { text } else { configedit::mask_secrets(&text) },
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn config_backups(State(app): State<AppState>, _v: Viewer) -> Response {
    Json(json!({ "backups": app.config.backups() })).into_response()
}

#[derive(Deserialize)]
struct ValidateBody {
    text: String,
}

async fn config_validate(
    State(app): State<AppState>,
    _a: Admin,
    Json(b): Json<ValidateBody>,
) -> Response {
    let path = app.config.path().display().to_string();
    let current = app.config.read().map(|(t, _)| t).unwrap_or_default();
    let diff: Vec<_> = configedit::diff(&current, &b.text, 3);
    match configedit::validate(&b.text, &path) {
        Ok(_) => Json(json!({ "valid": true, "diagnostics": [], "diff": diff })).into_response(),
        Err(d) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "valid": false, "diagnostics": d, "diff": diff })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ApplyBody {
    text: String,
    /// The version (from `GET /api/v1/config`) the text was based on.
    base_version: String,
}

fn reloads_json(r: &[(Daemon, ReloadOutcome)]) -> serde_json::Value {
    r.iter()
        .map(|(d, o)| {
            let mut v = serde_json::to_value(o).unwrap_or_default();
            v["daemon"] = json!(d.name());
            v
        })
        .collect()
}

fn applied_json(a: Applied) -> Response {
    match a {
        Applied::Done {
            version,
            backup,
            reloads,
        } => Json(json!({
            "applied": true,
            "version": version,
            "backup": backup,
            "reloads": reloads_json(&reloads),
        }))
        .into_response(),
        Applied::RolledBack { reloads, restored } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "applied": false,
                "error": "a daemon refused the new configuration: the previous file was put back",
                "reloads": reloads_json(&reloads),
                "restored": reloads_json(&restored),
            })),
        )
            .into_response(),
        Applied::Cluster(r) => {
            let status = if r.applied {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, Json(r)).into_response()
        }
        Applied::Unavailable(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Applied::Refused(e) => {
            let status = match &e {
                WriteError::Conflict { .. } => StatusCode::CONFLICT,
                WriteError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                WriteError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let diagnostics = match &e {
                WriteError::Invalid(d) => d.clone(),
                _ => Vec::new(),
            };
            (
                status,
                Json(ApiError {
                    error: e.to_string(),
                    diagnostics,
                }),
            )
                .into_response()
        }
    }
}

async fn config_apply(
    State(app): State<AppState>,
    Admin(_, user): Admin,
    Json(b): Json<ApplyBody>,
) -> Response {
    applied_json(apply_text(&app, &user, &b.text, &b.base_version).await)
}

#[derive(Deserialize)]
struct RollbackBody {
    backup: usize,
    base_version: String,
}

async fn config_rollback(
    State(app): State<AppState>,
    Admin(_, user): Admin,
    Json(b): Json<RollbackBody>,
) -> Response {
    match app.config.read_backup(b.backup) {
        Ok(text) => applied_json(apply_text(&app, &user, &text, &b.base_version).await),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn set_drain(app: AppState, user: &str, vs: String, rs: String, on: bool) -> Response {
    if app.cluster.is_some() {
        // Every director drains it: a drain on one only would move the
        // traffic the moment the other takes over.
        return match crate::cluster::set_drain(&app, user, &vs, &rs, on).await {
            Ok(r) => {
                let status = if r.done {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_GATEWAY
                };
                (
                    status,
                    Json(json!({ "virtual_server": vs, "real_server": rs, "drained": on, "done": r.done, "nodes": r.nodes })),
                )
                    .into_response()
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        };
    }
    let r = app.daemons.set_drain(&vs, &rs, on).await;
    tracing::info!(%user, "{vs}/{rs} {}: {r:?}", if on { "drain" } else { "enable" });
    match r {
        Ok(()) => {
            Json(json!({ "virtual_server": vs, "real_server": rs, "drained": on })).into_response()
        }
        Err(e) => action_error(e),
    }
}

/// A daemon's refusal keeps its status (404: no such name); a daemon that
/// did not answer is a 502.
fn action_error(e: crate::daemons::ActionError) -> Response {
    let status = e
        .refused
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    error(status, e.message)
}

async fn drain(
    State(app): State<AppState>,
    Admin(_, user): Admin,
    Path((vs, rs)): Path<(String, String)>,
) -> Response {
    set_drain(app, &user.name, vs, rs, true).await
}

async fn enable(
    State(app): State<AppState>,
    Admin(_, user): Admin,
    Path((vs, rs)): Path<(String, String)>,
) -> Response {
    set_drain(app, &user.name, vs, rs, false).await
}

#[derive(Deserialize)]
struct MaintenanceBody {
    on: bool,
}

async fn maintenance(
    State(app): State<AppState>,
    Admin(_, user): Admin,
    Path(name): Path<String>,
    Json(b): Json<MaintenanceBody>,
) -> Response {
    let r = app.daemons.set_maintenance(&name, b.on).await;
    tracing::info!(user = %user.name, "maintenance of {name} {}: {r:?}", b.on);
    match r {
        Ok(()) => Json(json!({ "instance": name, "maintenance": b.on })).into_response(),
        Err(e) => action_error(e),
    }
}

/// Prometheus text; any user (viewer is enough), like every page. Sent
/// gzip-compressed when the scraper accepts it (Prometheus does): a
/// thousand real servers make over a megabyte of text.
/// `?real_servers=off` leaves out the series per real server, for a
/// scrape whose size should not grow with the real servers.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct MetricsQuery {
    real_servers: Option<String>,
}

pub async fn metrics(
    State(app): State<AppState>,
    _v: Viewer,
    headers: HeaderMap,
    Query(q): Query<MetricsQuery>,
) -> Response {
    let per_rs = !matches!(q.real_servers.as_deref(), Some("off" | "0" | "false"));
    let (vs, hs) = tokio::join!(app.daemons.vrrpd_snapshot(), app.daemons.healthd_snapshot());
    let (v, h) = (&vs.reach, &hs.reach);
    let key = || (v.up().cloned().map(Same), h.up().cloned().map(Same));
    let generations = (vs.generation, hs.generation);
    let plain = app
        .renders
        .metrics
        .get_or(key(), generations, per_rs, || {
            crate::metrics::render_with(v.up().map(|s| &**s), h.up().map(|s| &**s), per_rs)
        })
        .await;
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    // The web UI's own series and the cluster's change every scrape:
    // appended, not cached (the daemons' part, the bulk, is).
    let mut extra = crate::metrics::render_webui(
        &app.connections.snapshot(),
        &app.handshakes.snapshot(),
        &app.passwords.snapshot(),
    );
    if app.cluster.is_some() {
        extra.push_str(&crate::metrics::render_cluster(
            app.cluster_view().as_deref(),
        ));
    }
    let mut text = Vec::with_capacity(plain.len() + extra.len());
    text.extend_from_slice(&plain);
    text.extend_from_slice(extra.as_bytes());
    if !gzip {
        return ([content_type, vary], text).into_response();
    }
    (
        [
            content_type,
            vary,
            (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
        ],
        gzip_bytes(&text),
    )
        .into_response()
}

fn gzip_bytes(plain: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(plain).expect("writing to memory");
    e.finish().expect("writing to memory")
}
