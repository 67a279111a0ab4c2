//! The frame every page has (who is logged in, the node, navigation), and
//! the plain message pages: refusals, results of actions, not found.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::role_name;
use crate::caller::{Caller, Via};
use crate::state::AppState;

/// What every page's frame shows: who is logged in, the node, navigation.
pub struct Chrome {
    pub node: String,
    pub user: Option<String>,
    pub role: &'static str,
    pub admin: bool,
    pub open_mode: bool,
    pub logged_in: bool,
    pub csrf: String,
    pub nav: &'static str,
    /// In a cluster whose directors do not all have the same version:
    /// what is wrong, for a banner on every page.
    pub cluster_banner: Option<String>,
    pub cluster: bool,
}

impl Chrome {
    pub fn new(app: &AppState, caller: &Caller, nav: &'static str) -> Chrome {
        Chrome {
            node: app.node(),
            user: caller.user.as_ref().map(|u| u.name.clone()),
            role: caller.user.as_ref().map_or("", |u| role_name(u.role)),
            admin: caller.is_admin(),
            open_mode: caller.via == Via::Open,
            logged_in: caller.via == Via::Session && caller.user.is_some(),
            csrf: caller.csrf.clone(),
            nav,
            cluster_banner: crate::cluster::banner(app),
            cluster: app.cluster.is_some(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
    pub ok: bool,
    pub back: Option<(String, String)>,
}

/// A page with a title and a message (refusals, results of actions).
pub fn message_page(
    app: &AppState,
    caller: &Caller,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    let page = MessagePage {
        chrome: Chrome::new(app, caller, ""),
        title: title.into(),
        message: message.into(),
        ok: status.is_success(),
        back: None,
    };
    (status, page).into_response()
}

pub async fn not_found(State(app): State<AppState>, caller: Caller) -> Response {
    message_page(
        &app,
        &caller,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
    )
}
