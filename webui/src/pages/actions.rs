//! Draining a real server and VRRP maintenance, each behind a
//! confirmation page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::caller::Caller;
use crate::chrome::{Chrome, MessagePage};
use crate::extract::Admin;
use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    title: String,
    question: String,
    action: &'static str,
    fields: Vec<(&'static str, String)>,
    button: String,
    cancel: &'static str,
}

#[derive(Deserialize)]
pub struct DrainForm {
    vs: String,
    rs: String,
    /// "drain" or "enable".
    op: String,
}

pub async fn confirm_drain(
    State(app): State<AppState>,
    Admin(caller, _): Admin,
    Query(f): Query<DrainForm>,
) -> Response {
    let drain = f.op != "enable";
    ConfirmPage {
        chrome: Chrome::new(&app, &caller, "virtual-servers"),
        title: if drain { "Drain" } else { "Enable" }.to_string() + " a real server",
        question: if drain {
            format!(
                "Drain {} of {}? Its weight becomes 0: no new connections, the open ones finish. It stays drained across restarts until enabled.",
                f.rs, f.vs
            )
        } else {
            format!(
                "Enable {} of {} again? It gets its configured weight back if it is healthy.",
                f.rs, f.vs
            )
        },
        action: "/actions/drain",
        cancel: "/virtual-servers",
        button: if drain { "Drain" } else { "Enable" }.into(),
        fields: vec![("vs", f.vs), ("rs", f.rs), ("op", f.op)],
    }
    .into_response()
}

pub async fn drain(
    State(app): State<AppState>,
    Admin(caller, user): Admin,
    Form(f): Form<DrainForm>,
) -> Response {
    let on = f.op != "enable";
    let what = if on { "drained" } else { "enabled" };
    if app.cluster.is_some() {
        let r = crate::cluster::set_drain(&app, &user.name, &f.vs, &f.rs, on).await;
        tracing::info!(user = %user.name, "{}/{} {what} on the cluster: {r:?}", f.vs, f.rs);
        let r = match r {
            Ok(r) if r.done => Ok(format!(
                "{} of {} is {what} on every director ({}).",
                f.rs,
                f.vs,
                crate::cluster::action_summary(&r)
            )),
            Ok(r) => Err(format!(
                "{} of {} is not {what} everywhere: {}",
                f.rs,
                f.vs,
                crate::cluster::action_summary(&r)
            )),
            Err(e) => Err(e),
        };
        return action_result(
            &app,
            &caller,
            r,
            ("/virtual-servers", "Back to the virtual servers"),
        );
    }
    let r = app.daemons.set_drain(&f.vs, &f.rs, on).await;
    tracing::info!(user = %user.name, "{}/{} {what}: {r:?}", f.vs, f.rs);
    action_result(
        &app,
        &caller,
        r.map(|()| format!("{} of {} is {what}.", f.rs, f.vs))
            .map_err(|e| e.message),
        ("/virtual-servers", "Back to the virtual servers"),
    )
}

#[derive(Deserialize)]
pub struct MaintenanceForm {
    instance: String,
    /// "on" or "off".
    op: String,
}

pub async fn confirm_maintenance(
    State(app): State<AppState>,
    Admin(caller, _): Admin,
    Query(f): Query<MaintenanceForm>,
) -> Response {
    let on = f.op == "on";
    ConfirmPage {
        chrome: Chrome::new(&app, &caller, "overview"),
        title: format!("Maintenance {}", if on { "on" } else { "off" }),
        question: if on {
            format!(
                "Hand {} over to the peer? This node sends priority 0, keeps its VIPs until the peer is master, then stays at priority 1 and never preempts until maintenance is off.",
                f.instance
            )
        } else {
            format!(
                "End maintenance of {}? Its configured priority comes back and it preempts if configured to.",
                f.instance
            )
        },
        action: "/actions/maintenance",
        cancel: "/",
        button: if on { "Hand over" } else { "End maintenance" }.into(),
        fields: vec![("instance", f.instance), ("op", f.op)],
    }
    .into_response()
}

pub async fn maintenance(
    State(app): State<AppState>,
    Admin(caller, user): Admin,
    Form(f): Form<MaintenanceForm>,
) -> Response {
    let on = f.op == "on";
    let r = app.daemons.set_maintenance(&f.instance, on).await;
    tracing::info!(user = %user.name, "maintenance of {} {}: {r:?}", f.instance, f.op);
    action_result(
        &app,
        &caller,
        r.map_err(|e| e.message).map(|()| {
            format!(
                "Maintenance of {} is {}.",
                f.instance,
                if on { "on" } else { "off" }
            )
        }),
        ("/", "Back to the overview"),
    )
}

fn action_result(
    app: &AppState,
    caller: &Caller,
    r: Result<String, String>,
    back: (&str, &str),
) -> Response {
    let (status, title, message) = match r {
        Ok(m) => (StatusCode::OK, "Done", m),
        Err(e) => (StatusCode::BAD_GATEWAY, "Failed", e),
    };
    let page = MessagePage {
        chrome: Chrome::new(app, caller, ""),
        title: title.into(),
        message,
        ok: status.is_success(),
        back: Some((back.0.into(), back.1.into())),
    };
    (status, page).into_response()
}
