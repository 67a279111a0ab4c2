//! healthd's control API: the routes, each a request to the event loop.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tandem_model::control::EventLog;
use tandem_model::host::Loop;
use tokio::sync::mpsc;

use crate::daemon::{Command, Input};

type Api = Loop<Input>;

/// `GET /status`, `POST /reload`,
/// `POST /virtual-servers/{vs}/real-servers/{rs}/drain` and `.../enable`,
/// and the event routes.
pub fn router(tx: mpsc::Sender<Input>, events: &EventLog) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/reload", post(reload))
        .route("/virtual-servers/{vs}/real-servers/{rs}/drain", post(drain))
        .route(
            "/virtual-servers/{vs}/real-servers/{rs}/enable",
            post(enable),
        )
        .with_state(Loop::new(tx, "healthd"))
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

async fn set_drain(api: Api, vs: String, rs: String, on: bool) -> Response {
    let asked = api
        .ask(|reply| {
            Input::Command(Command::Drain {
                virtual_server: vs,
                real_server: rs,
                on,
                reply,
            })
        })
        .await;
    match asked {
        Ok(Ok(())) => Json(serde_json::json!({ "drained": on })).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(r) => r,
    }
}

async fn drain(State(api): State<Api>, Path((vs, rs)): Path<(String, String)>) -> Response {
    set_drain(api, vs, rs, true).await
}

async fn enable(State(api): State<Api>, Path((vs, rs)): Path<(String, String)>) -> Response {
    set_drain(api, vs, rs, false).await
}
