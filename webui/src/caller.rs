//! Who is asking: what the authentication middleware found out about a
//! request, for the handlers and the page frame to read.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tandem_model::config::Role;

use crate::session::User;
use crate::state::AppState;

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A session cookie (logged in, or the anonymous session of the
    /// login form).
    Session,
    /// HTTP basic auth (scripts, Prometheus).
    Basic,
    /// No users are configured: anonymous, read-only.
    Open,
    Nothing,
}

/// Who is asking, as the middleware found out.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: Option<User>,
    pub via: Via,
    pub session_id: Option<String>,
    pub csrf: String,
    pub addr: IpAddr,
    /// The request is for a script (`/api/`, `/metrics`, `/live`): refusals
    /// are JSON, not pages.
    pub machine: bool,
    /// Path and query as asked (inside a nested router the path is cut).
    pub target: String,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.role == Role::Admin)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}
