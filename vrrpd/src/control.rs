//! vrrpd's control API: the routes, each a request to the event loop.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tandem_model::control::{EventLog, error_response};
use tokio::sync::{mpsc, oneshot};

use crate::input::{Command, Input};

#[derive(Clone)]
struct Api {
    tx: mpsc::Sender<Input>,
}

impl Api {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Response> {
        let (tx, rx) = oneshot::channel();
        let gone = || error_response(StatusCode::SERVICE_UNAVAILABLE, "vrrpd is shutting down");
        self.tx
            .send(Input::Command(make(tx)))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// `GET /status`, `POST /reload`, `POST /instances/{name}/maintenance`,
/// and the event routes.
pub fn router(tx: mpsc::Sender<Input>, events: &EventLog) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/reload", post(reload))
        .route("/instances/{name}/maintenance", post(maintenance))
        .with_state(Api { tx })
        .merge(events.routes())
}

async fn status(State(api): State<Api>) -> Response {
    match api.ask(Command::Status).await {
        Ok(s) => Json(s).into_response(),
        Err(r) => r,
    }
}

async fn reload(State(api): State<Api>) -> Response {
    match api.ask(Command::Reload).await {
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
        .ask(|reply| Command::Maintenance {
            instance: name,
            on: body.on,
            reply,
        })
        .await;
    match asked {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(r) => r,
    }
}
