//! The router, and the middleware every request passes on its way: who is
//! asking (session cookie, basic auth, or nobody), the CSRF check on every
//! state-changing request, and the headers every answer carries.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tandem_model::config::Role;

use crate::auth;
use crate::caller::{Caller, Via};
use crate::extract::{error, refuse, too_many};
use crate::session::User;
use crate::state::AppState;
use crate::{api, chrome, csrf, pages};

/// Largest request body read (a configuration file in a form).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Requests under these answer JSON (or text) errors instead of pages.
fn is_machine_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics" || path == "/live"
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Finds the caller, refuses bad basic credentials (rate limited like the
/// login form), and checks the CSRF token of every state-changing request
/// made with a session cookie.
pub async fn authenticate(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let machine = is_machine_path(req.uri().path());
    let now = app.now();
    let session = cookie(req.headers(), app.cookie_name())
        .and_then(|id| Some((id.to_string(), app.sessions.lock().unwrap().get(id, now)?)));
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::parse_basic);
    let mut caller = Caller {
        user: None,
        via: Via::Nothing,
        session_id: None,
        csrf: String::new(),
        addr,
        machine,
        target: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string()),
    };
    if let Some((id, s)) = session {
        caller.user = s.user;
        caller.via = Via::Session;
        caller.session_id = Some(id);
        caller.csrf = s.csrf;
    }
    if caller.user.is_none()
        && let Some((name, password)) = basic
    {
        match basic_login(&app, addr, &name, &password).await {
            Ok(u) => {
                caller.user = Some(u);
                caller.via = Via::Basic;
                caller.session_id = None;
            }
            Err(r) => return r,
        }
    }
    if caller.user.is_none() && caller.via == Via::Nothing && app.open_mode() {
        caller.user = Some(User {
            name: "anonymous".into(),
            role: Role::Viewer,
        });
        caller.via = Via::Open;
    }
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let req = if unsafe_method && caller.via != Via::Basic {
        match check_csrf(&caller, req).await {
            Ok(req) => req,
            Err(why) => return refuse(machine, &app, &caller, StatusCode::FORBIDDEN, why),
        }
    } else {
        req
    };
    let mut req = req;
    req.extensions_mut().insert(caller);
    next.run(req).await
}

async fn basic_login(
    app: &AppState,
    addr: IpAddr,
    name: &str,
    password: &str,
) -> Result<User, Response> {
    let now = app.now();
    if let Some(u) = app.basic.lock().unwrap().get(name, password, now) {
        return Ok(u);
    }
    if let Err(b) = app.limiter.lock().unwrap().check(addr, name, now) {
        return Err(too_many(true, b));
    }
    let users = app.settings.read().unwrap().users.clone();
    let (n, p) = (name.to_string(), password.to_string());
    let found = app.passwords.check(users, n, p).await.map_err(|b| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            b.to_string(),
        )
            .into_response()
    })?;
    let now = app.now();
    match found {
        Some(u) => {
            app.limiter.lock().unwrap().succeeded(addr, name);
            app.basic
                .lock()
                .unwrap()
                .put(name, password, u.clone(), now);
            Ok(u)
        }
        None => {
            app.limiter.lock().unwrap().failed(addr, name, now);
            // No `WWW-Authenticate: Basic` challenge: a browser that was
            // never asked never caches credentials it would then send on
            // its own (with no CSRF token needed).
            Err(error(
                StatusCode::UNAUTHORIZED,
                "wrong user name or password",
            ))
        }
    }
}

/// The token from the header or, for a form, from its `csrf` field (the
/// body is read and put back for the handler).
async fn check_csrf(caller: &Caller, req: Request) -> Result<Request, &'static str> {
    if caller.via != Via::Session {
        return Err(
            "this request needs a session: open the page again (or use basic auth for scripts)",
        );
    }
    if let Some(t) = req
        .headers()
        .get(csrf::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return if csrf::verify(&caller.csrf, Some(t)) {
            Ok(req)
        } else {
            Err("the CSRF token is wrong: open the page again and retry")
        };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err("the CSRF token is missing (form field csrf or header X-CSRF-Token)");
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| "the form is too large")?;
    let token = form_field(&bytes, csrf::FIELD);
    if !csrf::verify(&caller.csrf, token.as_deref()) {
        return Err(
            "the form's CSRF token is missing or wrong (the page is old, or the form came from another site): open the page again and retry",
        );
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Headers every answer carries: no framing (the confirmation buttons
/// must not be clickable through another site's page), scripts and styles
/// from this origin only, and no caching of what the daemons said. Over
/// TLS, browsers are told to come back over TLS only (HSTS), so a
/// downgraded first request cannot leak the session.
async fn security_headers(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if app.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !is_static {
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    r
}

/// Every route.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/virtual-servers", get(pages::virtual_servers))
        .route("/events", get(pages::events))
        .route("/doctor", get(pages::doctor))
        .route("/cluster", get(pages::cluster))
        .route("/cluster/resolve", post(pages::resolve))
        .route("/cluster/maintenance", post(pages::cluster_maintenance))
        .route("/config", get(pages::config))
        .route("/config/preview", post(pages::config_preview))
        .route("/config/apply", post(pages::config_apply))
        .route("/config/backups/{n}", get(pages::backup))
        .route("/config/rollback", post(pages::config_rollback))
        .route(
            "/actions/drain",
            get(pages::confirm_drain).post(pages::drain),
        )
        .route(
            "/actions/maintenance",
            get(pages::confirm_maintenance).post(pages::maintenance),
        )
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/live", get(pages::live))
        .route("/static/{file}", get(pages::static_file))
        .route("/metrics", get(api::metrics))
        .nest("/api/v1", api::routes())
        .fallback(chrome::not_found)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            security_headers,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        let body = b"a=1&text=x+%3D+%22y%22%0A&csrf=t%2Fk&e=&a=2";
        assert_eq!(form_field(body, "a").as_deref(), Some("1"));
        assert_eq!(form_field(body, "text").as_deref(), Some("x = \"y\"\n"));
        assert_eq!(form_field(body, "csrf").as_deref(), Some("t/k"));
        assert_eq!(form_field(body, "e").as_deref(), Some(""));
        assert_eq!(form_field(body, "missing"), None);
        // A `%` that starts no escape is kept as it is.
        assert_eq!(form_field(b"v=100%", "v").as_deref(), Some("100%"));
        assert_eq!(form_field(b"v=%zz", "v").as_deref(), Some("%zz"));
        // Only two hex digits make an escape: `+` is a space, even here.
        assert_eq!(form_field(b"v=%+1", "v").as_deref(), Some("% 1"));
    }
}
