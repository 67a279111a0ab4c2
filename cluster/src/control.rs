//! tandem-clusterd's control socket: the web UI and the `tandem` command
//! hand it their changes and ask it about the cluster.
//!
//! `GET /status` (a [`ClusterStatus`]), `GET /versions/{id}` (a version's
//! text), `POST /config` (an [`ApplyRequest`]), `POST /config/discard`,
//! `POST /actions` (an [`ActionRequest`]), `GET /timeline` (every
//! director's recent events, newest first), and the event routes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tandem_model::control::{EventLog, error_response};
use tandem_model::sync::{ActionRequest, ApplyRequest};

use crate::owner::Owner;

pub fn router(owner: Arc<Owner>, events: &EventLog) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/versions/{id}", get(version))
        .route("/config", post(apply))
        .route("/config/discard", post(discard))
        .route("/actions", post(act))
        .route("/timeline", get(timeline))
        .with_state(owner)
        .merge(events.routes())
}

async fn status(State(o): State<Arc<Owner>>) -> Response {
    Json(o.status()).into_response()
}

async fn version(State(o): State<Arc<Owner>>, Path(id): Path<String>) -> Response {
    match o.version_text(&id) {
        Some((version, text)) => {
            Json(serde_json::json!({ "version": version, "text": text })).into_response()
        }
        None => error_response(
            axum::http::StatusCode::NOT_FOUND,
            format!("no version {id} in the history"),
        ),
    }
}

async fn apply(State(o): State<Arc<Owner>>, Json(req): Json<ApplyRequest>) -> Response {
    Json(o.apply(req).await).into_response()
}

async fn discard(State(o): State<Arc<Owner>>) -> Response {
    match o.discard().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(axum::http::StatusCode::CONFLICT, e),
    }
}

async fn timeline(State(o): State<Arc<Owner>>) -> Response {
    Json(o.timeline().await).into_response()
}

async fn act(State(o): State<Arc<Owner>>, Json(req): Json<ActionRequest>) -> Response {
    Json(o.act(req).await).into_response()
}
