//! vrrpd's control API: the routes, each a request to the event loop.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tandem_model::control::EventLog;
use tandem_model::host::Loop;
use tokio::sync::mpsc;

use crate::input::{Command, Input};

type Api = Loop<Input>;

/// `GET /status`, `POST /reload`, `POST /instances/{name}/maintenance`,
/// and the event routes.
pub fn router(tx: mpsc::Sender<Input>, events: &EventLog) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/reload", post(reload))
        .route("/instances/{name}/maintenance", post(maintenance))
        .with_state(Loop::new(tx, "vrrpd"))
        .merge(events.routes())
}

async fn status(State(api): State<Api>) -> Response {
    match api.ask(|r| Input::Command(Command::Status(r))).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

async fn reload(State(api): State<Api>) -> Response {
    match api.ask(|r| Input::Command(Command::Reload(r))).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, Json(e)).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct MaintenanceBody {
    on: bool,
}

async fn maintenance(
    State(api): State<Api>,
    Path(name): Path<String>,
    Json(body): Json<MaintenanceBody>,
) -> Response {
    let asked = api
        .ask(|reply| {
            Input::Command(Command::Maintenance {
                instance: name,
                on: body.on,
                reply,
            })
        })
        .await;
    match asked {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(r) => r,
    }
}
