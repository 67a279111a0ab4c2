//! The gates handlers take as arguments ([`Viewer`], [`Admin`]) and the
//! refusals they and the middleware answer with: JSON for scripts, a page
//! for people.

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tandem_model::api::ApiError;
use tandem_model::config::Role;

use crate::caller::{Caller, Via};
use crate::chrome::message_page;
use crate::daemons;
use crate::session::User;
use crate::state::AppState;

/// The JSON error body every API refusal has (the daemons' shape).
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
            diagnostics: Vec::new(),
        }),
    )
        .into_response()
}

/// Too many failed logins: the refusal says when to try again.
pub fn too_many(machine: bool, b: crate::ratelimit::Blocked) -> Response {
    let mut r = if machine {
        error(StatusCode::TOO_MANY_REQUESTS, b.to_string())
    } else {
        (StatusCode::TOO_MANY_REQUESTS, b.to_string()).into_response()
    };
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(b.retry_after_secs));
    r
}

/// A refusal in the caller's language: JSON for scripts, a page for people.
pub fn refuse(
    machine: bool,
    app: &AppState,
    caller: &Caller,
    status: StatusCode,
    why: &str,
) -> Response {
    if machine {
        error(status, why)
    } else {
        message_page(app, caller, status, "Refused", why)
    }
}

/// Any logged-in user (or everyone, in open mode).
pub struct Viewer(pub Caller, pub User);

/// A logged-in admin.
pub struct Admin(pub Caller, pub User);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let caller = Caller::from_request_parts(parts, app).await?;
        match caller.user.clone() {
            Some(u) => Ok(Viewer(caller, u)),
            None if caller.machine => Err(error(
                StatusCode::UNAUTHORIZED,
                "log in: a session cookie, or HTTP basic auth with a [[webui.user]]",
            )),
            None => {
                let to = format!("/login?next={}", daemons::path_segment(&caller.target));
                Err(Redirect::to(&to).into_response())
            }
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Response> {
        let Viewer(caller, user) = Viewer::from_request_parts(parts, app).await?;
        if user.role == Role::Admin {
            return Ok(Admin(caller, user));
        }
        let why = if caller.via == Via::Open {
            "no users are configured, so the web UI is read-only: add a [[webui.user]] with role = \"admin\" (password hash from `tandem-webui hash-password`)"
        } else {
            "your role is viewer: only an admin can do this"
        };
        Err(refuse(
            caller.machine,
            app,
            &caller,
            StatusCode::FORBIDDEN,
            why,
        ))
    }
}
