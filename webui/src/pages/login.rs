//! Logging in and out: the form, the check (rate limited), the session
//! cookie.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::auth::role_name;
use crate::caller::{Caller, Via};
use crate::extract::too_many;
use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    node: String,
    csrf: String,
    next: String,
    name: String,
    error: Option<String>,
    open_mode: bool,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site: never send a fresh login elsewhere.
///
/// An allow-list, not a deny-list: the WHATWG URL parser that browsers
/// follow strips tabs and newlines anywhere in a URL and reads `\` as `/`,
/// so `/\t/evil.example/` is `//evil.example/`, another site. Our own links
/// are percent-encoded, so a path of printable ASCII without `\` loses
/// nothing.
fn safe_next(next: Option<&str>) -> String {
    let ours = |n: &str| {
        let b = n.as_bytes();
        b.first() == Some(&b'/')
            && !matches!(b.get(1), Some(b'/'))
            && b.iter().all(|&c| c.is_ascii_graphic() && c != b'\\')
    };
    match next {
        Some(n) if ours(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

pub async fn login_form(
    State(app): State<AppState>,
    caller: Caller,
    Query(q): Query<NextQuery>,
) -> Response {
    if caller.via == Via::Session && caller.user.is_some() {
        return Redirect::to(&safe_next(q.next.as_deref())).into_response();
    }
    let mut cookie = None;
    let csrf = match caller.via {
        Via::Session => caller.csrf.clone(),
        _ => {
            let mut store = app.sessions.lock().unwrap();
            let id = store.create_anonymous(app.now());
            let csrf = store
                .get(&id, app.now())
                .map(|s| s.csrf)
                .unwrap_or_default();
            cookie = Some(app.session_cookie(&id, crate::session::ANONYMOUS_TTL_MS / 1000));
            csrf
        }
    };
    let page = LoginPage {
        node: app.node(),
        csrf,
        next: safe_next(q.next.as_deref()),
        name: String::new(),
        error: None,
        open_mode: app.open_mode(),
    };
    let mut r = page.into_response();
    if let Some(c) = cookie {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(app): State<AppState>,
    caller: Caller,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref());
    let again = |status: StatusCode, error: String| {
        let page = LoginPage {
            node: app.node(),
            csrf: caller.csrf.clone(),
            next: next.clone(),
            // The name comes back; the password never does.
            name: f.name.clone(),
            error: Some(error),
            open_mode: app.open_mode(),
        };
        (status, page).into_response()
    };
    let now = app.now();
    let blocked = app.limiter.lock().unwrap().check(caller.addr, &f.name, now);
    if let Err(b) = blocked {
        let mut r = again(StatusCode::TOO_MANY_REQUESTS, format!("{b}."));
        let t = too_many(false, b);
        if let Some(v) = t.headers().get(header::RETRY_AFTER) {
            r.headers_mut().insert(header::RETRY_AFTER, v.clone());
        }
        return r;
    }
    let users = app.settings.read().unwrap().users.clone();
    let (name, password) = (f.name.clone(), f.password.clone());
    let Ok(found) = app.passwords.check(users, name, password).await else {
        let mut r = again(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many logins at once; try again in a moment.".into(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    let now = app.now();
    let Some(user) = found else {
        app.limiter
            .lock()
            .unwrap()
            .failed(caller.addr, &f.name, now);
        tracing::warn!(user = %f.name, from = %caller.addr, "failed login");
        return again(
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.".into(),
        );
    };
    app.limiter.lock().unwrap().succeeded(caller.addr, &f.name);
    let timeout = app.settings.read().unwrap().session_timeout_ms;
    let id = app.sessions.lock().unwrap().login(
        caller.session_id.as_deref(),
        user.clone(),
        now,
        timeout,
    );
    tracing::info!(user = %user.name, role = role_name(user.role), from = %caller.addr, "login");
    let mut r = Redirect::to(&next).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, app.session_cookie(&id, timeout / 1000));
    r
}

pub async fn logout(State(app): State<AppState>, caller: Caller) -> Response {
    if let Some(id) = &caller.session_id {
        app.sessions.lock().unwrap().remove(id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, app.clear_cookie());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_only_sends_people_to_this_site() {
        assert_eq!(safe_next(Some("/config")), "/config");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(
            safe_next(Some("/virtual-servers?q=a%20b")),
            "/virtual-servers?q=a%20b"
        );
        // Browsers drop tabs and newlines and read `\` as `/`: each of these
        // is `//evil.example/` to them.
        for evil in [
            "/\t/evil.example/",
            "/\n/evil.example/",
            "/\r/evil.example/",
            "/\\evil.example/",
            "/\t\\evil.example/",
            "/ /evil.example/",
            "/\u{7f}/evil.example/",
            "/\u{a0}/evil.example/",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
    }
}
