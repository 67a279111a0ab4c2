//! The web UI's handlers against fake daemons (canned vrrpd and healthd
//! status on Unix sockets), through `Router::oneshot`: login and logout,
//! roles, CSRF, rate limiting, session expiry, configuration validation,
//! atomic writes with backups, concurrent edits, rollback, reload results,
//! actions, metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tandem_model::api::{VrrpState, now_millis};
use tandem_tests::fake::{self, FakeDaemons, ReloadReply};
use tower::ServiceExt;
use webui::ratelimit::Limits;
use webui::server::router;
use webui::state::{App, Options};

fn hashes() -> &'static (String, String) {
    static H: OnceLock<(String, String)> = OnceLock::new();
    H.get_or_init(|| {
        (
            webui::auth::hash_password("admin-pw").unwrap(),
            webui::auth::hash_password("viewer-pw").unwrap(),
        )
    })
}

fn config_text(with_users: bool) -> String {
    let (a, v) = hashes();
    let mut t = String::from("[node]\nname = \"lb1\"\n\n[webui]\nsession_timeout = \"10m\"\n");
    if with_users {
        t.push_str(&format!(
            "\n[[webui.user]]\nname = \"ada\"\npassword_hash = \"{a}\"\nrole = \"admin\"\n\n[[webui.user]]\nname = \"vic\"\npassword_hash = \"{v}\"\nrole = \"viewer\"\n"
        ));
    }
    t
}

struct Env {
    _dir: tempfile::TempDir,
    fakes: FakeDaemons,
    router: Router,
    clock: Arc<AtomicU64>,
    config: PathBuf,
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A logged-in browser: its cookie and CSRF token.
#[derive(Clone)]
struct Browser {
    cookie: String,
    csrf: String,
}

const ADDR: &str = "192.0.2.7:50000";

fn env_with(with_users: bool, limits: Limits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("run");
    std::fs::create_dir_all(&sockets).unwrap();
    let fakes = FakeDaemons::start(&sockets, fake::vrrpd_status(3), fake::healthd_status(2, 4));
    let config = dir.path().join("tandem.toml");
    let text = config_text(with_users);
    std::fs::write(&config, &text).unwrap();
    let parsed = tandem_model::config::parse(&text, "tandem.toml").unwrap();
    let clock = Arc::new(AtomicU64::new(now_millis()));
    let c = clock.clone();
    let app = App::new(
        Options {
            config_path: config.clone(),
            socket_dir: sockets,
            backups: 3,
            tls: false,
            clock: Arc::new(move || c.load(Ordering::SeqCst)),
            limits,
        },
        &parsed,
    );
    let addr: SocketAddr = ADDR.parse().unwrap();
    let router = router(app).layer(MockConnectInfo(addr));
    Env {
        _dir: dir,
        fakes,
        router,
        clock,
        config,
    }
}

fn env() -> Env {
    env_with(true, Limits::default())
}

fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no hidden field {name} in:\n{html}"))
        + needle.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Env {
    async fn send(&self, req: Request<Body>) -> Resp {
        let r = self.router.clone().oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, b: Option<&Browser>) -> Resp {
        let mut r = Request::get(path);
        if let Some(b) = b {
            r = r.header(header::COOKIE, &b.cookie);
        }
        self.send(r.body(Body::empty()).unwrap()).await
    }

    /// A form POST with the browser's cookie; `csrf` as given (None: left out).
    async fn post_form(
        &self,
        path: &str,
        b: Option<&Browser>,
        csrf: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Resp {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        if let Some(t) = csrf {
            all.push(("csrf", t));
        }
        let mut r =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(b) = b {
            r = r.header(header::COOKIE, &b.cookie);
        }
        self.send(r.body(Body::from(form(&all))).unwrap()).await
    }

    async fn api(
        &self,
        method: Method,
        path: &str,
        basic: Option<(&str, &str)>,
        b: Option<(&Browser, Option<&str>)>,
        body: Option<serde_json::Value>,
    ) -> Resp {
        use base64::Engine;
        let mut r = Request::builder().method(method).uri(path);
        if let Some((u, p)) = basic {
            let v = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            r = r.header(header::AUTHORIZATION, format!("Basic {v}"));
        }
        if let Some((b, csrf)) = b {
            r = r.header(header::COOKIE, &b.cookie);
            if let Some(t) = csrf {
                r = r.header("x-csrf-token", t);
            }
        }
        let body = match body {
            Some(j) => {
                r = r.header(header::CONTENT_TYPE, "application/json");
                Body::from(j.to_string())
            }
            None => Body::empty(),
        };
        self.send(r.body(body).unwrap()).await
    }

    /// The login form's anonymous session.
    async fn login_page(&self) -> Browser {
        let r = self.get("/login", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let cookie = r.set_cookie().expect("an anonymous session");
        Browser {
            cookie: cookie.split(';').next().unwrap().to_string(),
            csrf: hidden(&r.body, "csrf"),
        }
    }

    async fn try_login(&self, name: &str, password: &str) -> (Browser, Resp) {
        let anon = self.login_page().await;
        let r = self
            .post_form(
                "/login",
                Some(&anon),
                Some(&anon.csrf),
                &[("name", name), ("password", password), ("next", "/config")],
            )
            .await;
        (anon, r)
    }

    async fn login(&self, name: &str, password: &str) -> Browser {
        let (_, r) = self.try_login(name, password).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        let cookie = r
            .set_cookie()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let who = self
            .api(
                Method::GET,
                "/api/v1/whoami",
                None,
                Some((
                    &Browser {
                        cookie: cookie.clone(),
                        csrf: String::new(),
                    },
                    None,
                )),
                None,
            )
            .await;
        let csrf = who.json()["csrf_token"].as_str().unwrap().to_string();
        Browser { cookie, csrf }
    }

    fn advance(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap()
    }

    fn backup(&self, n: usize) -> Option<String> {
        std::fs::read_to_string(format!("{}.{n}", self.config.display())).ok()
    }
}

#[tokio::test]
async fn login_sets_a_strict_httponly_cookie_and_logout_ends_the_session() {
    let e = env();
    let (anon, r) = e.try_login("ada", "admin-pw").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/config", "back where the login was asked");
    let cookie = r.set_cookie().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
    let id = cookie.split(';').next().unwrap();
    assert_ne!(id, anon.cookie, "logging in issues a new session id");
    // The anonymous session is gone: its id is worthless now.
    let old = e.get("/", Some(&anon)).await;
    assert_eq!(old.status, StatusCode::SEE_OTHER);

    let b = e.login("ada", "admin-pw").await;
    let page = e.get("/", Some(&b)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("ada") && page.body.contains("admin"));

    let out = e.post_form("/logout", Some(&b), Some(&b.csrf), &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.set_cookie().unwrap().contains("Max-Age=0"));
    let after = e.get("/", Some(&b)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/login?next=%2F");
}

#[tokio::test]
async fn a_login_never_redirects_to_another_site() {
    let e = env();
    // Browsers strip tabs and newlines and read `\` as `/`: every one of
    // these would land on evil.example.
    for evil in [
        "/\t/evil.example/",
        "/\n/evil.example/",
        "/\\evil.example/",
        "//evil.example/",
    ] {
        let form_page = e
            .get(&format!("/login?next={}", urlencode(evil)), None)
            .await;
        assert_eq!(form_page.status, StatusCode::OK);
        assert_eq!(hidden(&form_page.body, "next"), "/", "{evil:?} in the form");

        let anon = e.login_page().await;
        let r = e
            .post_form(
                "/login",
                Some(&anon),
                Some(&anon.csrf),
                &[("name", "ada"), ("password", "admin-pw"), ("next", evil)],
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        assert_eq!(r.location(), "/", "{evil:?} after login");
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_never_echoed() {
    let e = env();
    let (_, r) = e.try_login("ada", "hunter2-guess").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong user name or password"));
    assert!(!r.body.contains("hunter2-guess"), "the password came back");
    assert!(r.body.contains("value=\"ada\""), "the name is kept");
    let (_, r) = e.try_login("nobody", "admin-pw").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_credentials_pages_redirect_to_login_and_the_api_answers_401() {
    let e = env();
    let r = e.get("/virtual-servers", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login?next=%2Fvirtual-servers");
    for path in ["/api/v1/status", "/metrics", "/api/v1/config"] {
        let r = e.get(path, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.json()["error"].as_str().unwrap().contains("log in"));
        assert!(
            r.headers.get(header::WWW_AUTHENTICATE).is_none(),
            "no browser prompt"
        );
    }
    let r = e
        .api(
            Method::GET,
            "/api/v1/status",
            Some(("ada", "bad")),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_viewer_sees_everything_but_hashes_and_changes_nothing() {
    let e = env();
    let v = e.login("vic", "viewer-pw").await;
    for path in ["/", "/virtual-servers", "/events", "/config"] {
        let r = e.get(path, Some(&v)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    }
    let cfg = e.get("/config", Some(&v)).await;
    assert!(
        cfg.body.contains("password_hash = &#34;********&#34;"),
        "{}",
        cfg.body
    );
    assert!(
        !cfg.body.contains("$argon2"),
        "a hash was shown to a viewer"
    );
    assert!(!cfg.body.contains("<textarea"), "no editor for a viewer");
    let api = e
        .api(
            Method::GET,
            "/api/v1/config",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    assert!(!api.body.contains("$argon2"));

    let vs = e.get("/virtual-servers", Some(&v)).await;
    assert!(!vs.body.contains("/actions/drain"), "no action buttons");
    let r = e
        .post_form(
            "/actions/drain",
            Some(&v),
            Some(&v.csrf),
            &[("vs", "web-http"), ("rs", "10.0.0.11:80"), ("op", "drain")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("only an admin"), "{}", r.body);
    let before = e.file();
    let r = e
        .post_form(
            "/config/apply",
            Some(&v),
            Some(&v.csrf),
            &[
                ("text", "[node]\n"),
                ("base", &webui::configedit::version(&before)),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(e.file(), before);
    let r = e
        .api(
            Method::POST,
            "/api/v1/instances/web/maintenance",
            Some(("vic", "viewer-pw")),
            None,
            Some(serde_json::json!({"on": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(e.fakes.healthd.calls().is_empty() && e.fakes.vrrpd.calls().is_empty());

    let a = e.login("ada", "admin-pw").await;
    let cfg = e.get("/config", Some(&a)).await;
    assert!(
        cfg.body.contains("$argon2"),
        "the admin edits the whole file"
    );
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let e = env();
    let a = e.login("ada", "admin-pw").await;
    let fields = [("vs", "web-http"), ("rs", "10.0.0.11:80"), ("op", "drain")];
    let missing = e.post_form("/actions/drain", Some(&a), None, &fields).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.body.contains("CSRF"), "{}", missing.body);
    let wrong = e
        .post_form("/actions/drain", Some(&a), Some("forged"), &fields)
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // Another session's token does not do either.
    let other = e.login("ada", "admin-pw").await;
    let crossed = e
        .post_form("/actions/drain", Some(&a), Some(&other.csrf), &fields)
        .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);
    assert!(e.fakes.healthd.calls().is_empty(), "nothing was drained");

    let api = e
        .api(
            Method::POST,
            "/api/v1/virtual-servers/web-http/real-servers/10.0.0.11:80/drain",
            None,
            Some((&a, None)),
            None,
        )
        .await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);
    assert!(api.json()["error"].as_str().unwrap().contains("CSRF"));
    let api = e
        .api(
            Method::POST,
            "/api/v1/virtual-servers/web-http/real-servers/10.0.0.11:80/drain",
            None,
            Some((&a, Some(&a.csrf))),
            None,
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    // Scripts with basic auth send no token.
    let basic = e
        .api(
            Method::POST,
            "/api/v1/virtual-servers/web-http/real-servers/10.0.0.11:80/enable",
            Some(("ada", "admin-pw")),
            None,
            None,
        )
        .await;
    assert_eq!(basic.status, StatusCode::OK, "{}", basic.body);
    // A name the daemon does not know is its 404, not a gateway error.
    let unknown = e
        .api(
            Method::POST,
            "/api/v1/virtual-servers/nope/real-servers/10.0.0.11:80/drain",
            Some(("ada", "admin-pw")),
            None,
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    assert_eq!(
        e.fakes.healthd.calls(),
        [
            "drain web-http/10.0.0.11:80",
            "enable web-http/10.0.0.11:80"
        ]
    );
    // Even the login form needs its token.
    let anon = e.login_page().await;
    let r = e
        .post_form(
            "/login",
            Some(&anon),
            None,
            &[("name", "ada"), ("password", "admin-pw")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn login_attempts_are_limited_per_user_and_per_address() {
    let e = env_with(
        true,
        Limits {
            window_ms: 60_000,
            per_user: 3,
            per_address: 5,
        },
    );
    for _ in 0..3 {
        let (_, r) = e.try_login("ada", "wrong").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is not checked.
    let (_, r) = e.try_login("ada", "admin-pw").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(
        r.body.contains("too many failed login attempts: wait 60 s"),
        "{}",
        r.body
    );
    assert_eq!(r.headers.get(header::RETRY_AFTER).unwrap(), "60");
    // Basic auth counts the same.
    let b = e
        .api(
            Method::GET,
            "/api/v1/status",
            Some(("ada", "admin-pw")),
            None,
            None,
        )
        .await;
    assert_eq!(b.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(b.json()["error"].as_str().unwrap().contains("wait"));
    // Another user from the same address: two more failures fill the
    // address's budget.
    for _ in 0..2 {
        let (_, r) = e.try_login("vic", "wrong").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let (_, r) = e.try_login("vic", "viewer-pw").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    e.advance(60_001);
    e.login("ada", "admin-pw").await;
}

#[tokio::test]
async fn a_session_expires_after_the_session_timeout() {
    let e = env();
    let b = e.login("ada", "admin-pw").await;
    e.advance(9 * 60 * 1000);
    assert_eq!(e.get("/", Some(&b)).await.status, StatusCode::OK);
    e.advance(60 * 1000);
    let r = e.get("/", Some(&b)).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "10m after login it is over"
    );
}

/// The line (1-based) of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[tokio::test]
async fn a_config_error_is_shown_at_its_line_and_column_and_nothing_is_written() {
    let e = env();
    let a = e.login("ada", "admin-pw").await;
    let before = e.file();
    let bad = before.replace("session_timeout = \"10m\"", "session_timeout = \"5s\"");
    let line = line_of(&bad, "session_timeout");
    let base = webui::configedit::version(&before);
    let r = e
        .post_form(
            "/config/preview",
            Some(&a),
            Some(&a.csrf),
            &[("text", &bad), ("base", &base)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let located = format!("tandem.toml:{line}:19: session_timeout");
    assert!(r.body.contains(&located), "{located} not in {}", r.body);
    assert!(
        r.body
            .contains(&format!("data-line=\"{line}\" data-column=\"19\"")),
        "{}",
        r.body
    );
    // Apply straight away is refused the same way.
    let r = e
        .post_form(
            "/config/apply",
            Some(&a),
            Some(&a.csrf),
            &[("text", &bad), ("base", &base)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e.file(), before);
    assert!(e.backup(1).is_none());
    assert!(e.fakes.vrrpd.calls().is_empty(), "no reload");
    // The API reports the same finding.
    let v = e
        .api(
            Method::POST,
            "/api/v1/config/validate",
            Some(("ada", "admin-pw")),
            None,
            Some(serde_json::json!({ "text": bad })),
        )
        .await;
    assert_eq!(v.status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = &v.json()["diagnostics"][0];
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(line as u64), Some(19))
    );
}

#[tokio::test]
async fn applying_writes_the_file_keeps_a_backup_and_reloads_both_daemons() {
    let e = env();
    let a = e.login("ada", "admin-pw").await;
    let before = e.file();
    let new = before.replace("name = \"lb1\"", "name = \"lb1-new\"");
    let base = webui::configedit::version(&before);
    let p = e
        .post_form(
            "/config/preview",
            Some(&a),
            Some(&a.csrf),
            &[("text", &new), ("base", &base)],
        )
        .await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("lb1-new") && p.body.contains("class=\"d added\""));
    assert_eq!(e.file(), before, "a preview writes nothing");
    // The preview's Apply form carries the text and the version it is based on.
    assert_eq!(hidden(&p.body, "base"), base);
    let r = e
        .post_form(
            "/config/apply",
            Some(&a),
            Some(&a.csrf),
            &[("text", &new), ("base", &base)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Configuration applied"));
    assert!(
        r.body.contains("vrrpd: reloaded") && r.body.contains("healthd: reloaded"),
        "{}",
        r.body
    );
    assert_eq!(e.file(), new);
    assert_eq!(e.backup(1).as_deref(), Some(before.as_str()));
    assert_eq!(e.fakes.vrrpd.calls(), ["POST /reload"]);
    assert_eq!(e.fakes.healthd.calls(), ["POST /reload"]);
    // The web UI took the new node name.
    assert!(e.get("/", Some(&a)).await.body.contains("lb1-new"));
}

#[tokio::test]
async fn a_second_save_based_on_the_same_version_is_refused() {
    let e = env();
    let a = e.login("ada", "admin-pw").await;
    let b = e.login("ada", "admin-pw").await;
    let before = e.file();
    let base = webui::configedit::version(&before);
    let first = before.replace("name = \"lb1\"", "name = \"first\"");
    let second = before.replace("name = \"lb1\"", "name = \"second\"");
    let r = e
        .post_form(
            "/config/apply",
            Some(&a),
            Some(&a.csrf),
            &[("text", &first), ("base", &base)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = e
        .post_form(
            "/config/apply",
            Some(&b),
            Some(&b.csrf),
            &[("text", &second), ("base", &base)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("changed by someone else"), "{}", r.body);
    assert_eq!(e.file(), first, "the first save is not lost");
    // The refusal shows what the second text would change in the current
    // file, and is based on the current version now.
    assert!(r.body.contains("class=\"d removed\"") && r.body.contains("first"));
    assert_eq!(hidden(&r.body, "base"), webui::configedit::version(&first));
    // The API says the same with 409.
    let api = e
        .api(
            Method::POST,
            "/api/v1/config",
            Some(("ada", "admin-pw")),
            None,
            Some(serde_json::json!({"text": second, "base_version": base})),
        )
        .await;
    assert_eq!(api.status, StatusCode::CONFLICT);
    assert_eq!(e.file(), first);
}

#[tokio::test]
async fn rollback_restores_a_previous_version_through_the_same_path() {
    let e = env();
    let a = e.login("ada", "admin-pw").await;
    let v0 = e.file();
    let v1 = v0.replace("name = \"lb1\"", "name = \"v1\"");
    let v2 = v0.replace("name = \"lb1\"", "name = \"v2\"");
    for (text, base) in [(&v1, &v0), (&v2, &v1)] {
        let r = e
            .api(
                Method::POST,
                "/api/v1/config",
                None,
                Some((&a, Some(&a.csrf))),
                Some(serde_json::json!({"text": text, "base_version": webui::configedit::version(base)})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(e.backup(1).as_deref(), Some(v1.as_str()));
    assert_eq!(e.backup(2).as_deref(), Some(v0.as_str()));
    let page = e.get("/config/backups/2", Some(&a)).await;
    assert!(page.body.contains("Roll back to version 2"));
    let r = e
        .post_form(
            "/config/rollback",
            Some(&a),
            Some(&a.csrf),
            &[("backup", "2"), ("base", &hidden(&page.body, "base"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(e.file(), v0);
    assert_eq!(e.backup(1).as_deref(), Some(v2.as_str()));
    assert_eq!(e.backup(2).as_deref(), Some(v1.as_str()));
    assert_eq!(e.fakes.vrrpd.calls().len(), 3, "reloaded after each write");
}

#[tokio::test]
async fn a_daemon_refusing_the_new_file_puts_the_previous_one_back() {
    let e = env();
    *e.fakes.vrrpd.reload.lock().unwrap() =
        ReloadReply::Refuse(fake::refusal("interface eth9 does not exist", 3, 13));
    let before = e.file();
    let new = before.replace("name = \"lb1\"", "name = \"refused\"");
    let r = e
        .api(
            Method::POST,
            "/api/v1/config",
            Some(("ada", "admin-pw")),
            None,
            Some(serde_json::json!({"text": new, "base_version": webui::configedit::version(&before)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let j = r.json();
    assert_eq!(j["reloads"][0]["daemon"], "vrrpd");
    assert_eq!(j["reloads"][0]["result"], "refused");
    assert_eq!(j["reloads"][0]["diagnostics"][0]["line"], 3);
    assert_eq!(j["reloads"][1]["result"], "reloaded");
    assert_eq!(j["restored"][0]["daemon"], "healthd", "{j}");
    assert_eq!(e.file(), before, "the previous file is back");
    assert!(e.backup(1).is_none(), "and the backups as they were");
    // healthd took the new file, then the old one again.
    assert_eq!(e.fakes.healthd.calls(), ["POST /reload", "POST /reload"]);
}

#[tokio::test]
async fn a_daemon_that_is_not_running_is_shown_as_such_and_skipped_by_reload() {
    let mut e = env();
    e.fakes.stop("healthd");
    let a = e.login("ada", "admin-pw").await;
    let r = e.get("/virtual-servers", Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("healthd is not running"), "{}", r.body);
    let o = e.get("/", Some(&a)).await;
    assert!(o.body.contains("daemon stopped") && o.body.contains("not running"));
    let m = e.get("/metrics", None).await;
    assert_eq!(
        m.status,
        StatusCode::SEE_OTHER.max(StatusCode::UNAUTHORIZED)
    );
    let m = e
        .api(
            Method::GET,
            "/metrics",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    assert!(m.body.contains("tandem_healthd_up 0\n") && m.body.contains("tandem_vrrpd_up 1\n"));
    let before = e.file();
    let new = before.replace("name = \"lb1\"", "name = \"x\"");
    let r = e
        .api(
            Method::POST,
            "/api/v1/config",
            Some(("ada", "admin-pw")),
            None,
            Some(serde_json::json!({"text": new, "base_version": webui::configedit::version(&before)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["reloads"][1]["result"], "not_running");
}

#[tokio::test]
async fn drain_and_maintenance_go_through_a_confirmation_to_the_daemons() {
    let e = env();
    let a = e.login("ada", "admin-pw").await;
    let vs = e.get("/virtual-servers", Some(&a)).await;
    let link = "/actions/drain?vs=web-http&amp;rs=10.0.0.13%3A80&amp;op=drain";
    assert!(vs.body.contains(link), "{}", vs.body);
    let confirm = e
        .get(
            "/actions/drain?vs=web-http&rs=10.0.0.13%3A80&op=drain",
            Some(&a),
        )
        .await;
    assert!(confirm.body.contains("Drain 10.0.0.13:80 of web-http?"));
    assert!(e.fakes.healthd.calls().is_empty(), "asking is not doing");
    let r = e
        .post_form(
            "/actions/drain",
            Some(&a),
            Some(&hidden(&confirm.body, "csrf")),
            &[("vs", "web-http"), ("rs", "10.0.0.13:80"), ("op", "drain")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(e.fakes.healthd.calls(), ["drain web-http/10.0.0.13:80"]);
    let vs = e.get("/virtual-servers", Some(&a)).await;
    assert!(
        vs.body.contains("op=enable"),
        "the drained server offers Enable"
    );

    let confirm = e
        .get("/actions/maintenance?instance=web&op=on", Some(&a))
        .await;
    assert!(confirm.body.contains("Hand web over to the peer?"));
    let r = e
        .post_form(
            "/actions/maintenance",
            Some(&a),
            Some(&a.csrf),
            &[("instance", "web"), ("op", "on")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(e.fakes.vrrpd.calls(), ["maintenance web on"]);
    let r = e
        .post_form(
            "/actions/maintenance",
            Some(&a),
            Some(&a.csrf),
            &[("instance", "nope"), ("op", "on")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.body.contains("no instance named nope"), "{}", r.body);
}

#[tokio::test]
async fn pages_show_instances_peers_and_real_servers() {
    let e = env();
    let a = e.login("vic", "viewer-pw").await;
    let o = e.get("/", Some(&a)).await;
    assert!(o.body.contains("data-state=\"MASTER\"") && o.body.contains("data-state=\"BACKUP\""));
    assert!(o.body.contains("10.77.0.2"), "the peer heard");
    assert!(o.body.contains("configured 150"), "effective vs configured");
    assert!(o.body.contains("master down: no advert"));
    let v = e.get("/virtual-servers", Some(&a)).await;
    for s in [
        "TCP 10.77.0.100:80",
        "wlc",
        "dr",
        "HTTP 503",
        "10.0.0.13:80",
        "12.0 kB/s",
        "3 ms",
        "IPVS in sync; connection sync: master on eth0, sync id 51",
    ] {
        assert!(v.body.contains(s), "{s} missing");
    }
}

#[tokio::test]
async fn events_of_both_daemons_are_merged_and_filtered() {
    let e = env();
    e.fakes
        .vrrpd
        .events
        .publish(tandem_model::api::EventKind::VrrpTransition {
            instance: "web".into(),
            from: VrrpState::Backup,
            to: VrrpState::Master,
            priority: 150,
            reason: "master down".into(),
        });
    e.fakes
        .healthd
        .events
        .publish(tandem_model::api::EventKind::RealServerHealth {
            virtual_server: "web-http".into(),
            real_server: "10.0.0.13:80".into(),
            up: false,
            reason: "HTTP 503".into(),
        });
    let a = e.login("vic", "viewer-pw").await;
    let all = e.get("/events", Some(&a)).await;
    assert!(all.body.contains("web: BACKUP → MASTER") && all.body.contains("HTTP 503"));
    let only = e.get("/events?daemon=healthd", Some(&a)).await;
    assert!(!only.body.contains("BACKUP → MASTER") && only.body.contains("HTTP 503"));
    let kind = e.get("/events?kind=vrrp_transition", Some(&a)).await;
    assert!(kind.body.contains("BACKUP → MASTER") && !kind.body.contains("HTTP 503"));
    let text = e
        .api(
            Method::GET,
            "/api/v1/events?q=503",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    let ev = text.json()["events"].as_array().unwrap().clone();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["type"], "real_server_health");
}

#[tokio::test]
async fn metrics_carry_vrrp_and_real_server_series() {
    let e = env();
    let m = e
        .api(
            Method::GET,
            "/metrics",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for line in [
        "tandem_vrrpd_up 1",
        "tandem_healthd_up 1",
        "tandem_vrrp_state{instance=\"web\",state=\"MASTER\"} 1",
        "tandem_vrrp_state{instance=\"web\",state=\"BACKUP\"} 0",
        "tandem_vrrp_priority{instance=\"web2\"} 90",
        "tandem_vrrp_configured_priority{instance=\"web2\"} 150",
        "tandem_vrrp_transitions_total{instance=\"web\"} 4",
        "tandem_vrrp_adverts_sent_total{instance=\"web\"} 1200",
        "tandem_vrrp_drops_total{instance=\"web\",reason=\"ttl\"} 2",
        "tandem_vrrp_loop_late_total{kind=\"wakeup\"} 3",
        "tandem_vrrp_loop_late_total{kind=\"held\"} 1",
        "tandem_vrrp_loop_worst_late_seconds 0.45",
        "tandem_real_server_health{virtual_server=\"web-http\",real_server=\"10.0.0.13:80\",state=\"down\"} 1",
        "tandem_real_server_weight{virtual_server=\"web-http\",real_server=\"10.0.0.11:80\"} 1",
        "tandem_real_server_active_connections{virtual_server=\"web-http\",real_server=\"10.0.0.11:80\"} 12",
        "tandem_real_server_in_bytes_total{virtual_server=\"web-http\",real_server=\"10.0.0.11:80\"} 1000000",
        "tandem_real_server_bytes_per_second{virtual_server=\"web-http\",real_server=\"10.0.0.11:80\",direction=\"out\"} 250000",
        "tandem_real_server_last_check_latency_seconds{virtual_server=\"web-http\",real_server=\"10.0.0.11:80\"} 0.003",
        // 4 real servers x checks of 1, 3, 7, 40 ms.
        "tandem_check_latency_seconds_bucket{virtual_server=\"web-http\",le=\"0.005\"} 8",
        "tandem_check_latency_seconds_bucket{virtual_server=\"web-http\",le=\"+Inf\"} 16",
        "tandem_check_latency_seconds_sum{virtual_server=\"web-http\"} 0.204",
        "# TYPE tandem_check_latency_seconds histogram",
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "no line {line}\n{}",
            m.body
        );
    }
}

#[tokio::test]
async fn metrics_are_gzip_compressed_for_a_scraper_that_asks() {
    use std::io::Read;
    let e = env();
    let plain = e
        .api(
            Method::GET,
            "/metrics",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    let r = e
        .router
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header(header::AUTHORIZATION, "Basic dmljOnZpZXdlci1wdw==")
                .header(header::ACCEPT_ENCODING, "gzip, deflate")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, plain.body);
    assert!(bytes.len() < plain.body.len() / 4);
}

#[tokio::test]
async fn without_users_the_ui_is_read_only_without_login() {
    let e = env_with(false, Limits::default());
    let r = e.get("/", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("read-only"), "{}", r.body);
    assert!(
        e.get("/metrics", None)
            .await
            .body
            .contains("tandem_vrrpd_up 1")
    );
    let before = e.file();
    let r = e
        .api(
            Method::POST,
            "/api/v1/config",
            None,
            None,
            Some(serde_json::json!({"text": "[node]\n", "base_version": webui::configedit::version(&before)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(e.file(), before);
}

#[tokio::test]
async fn a_single_director_has_no_cluster_page_nor_cluster_api() {
    let e = env();
    let r = e
        .api(
            Method::GET,
            "/api/v1/cluster",
            Some(("ada", "admin-pw")),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not a synchronised cluster"),
        "{}",
        r.body
    );
    let b = e.login("ada", "admin-pw").await;
    let page = e.get("/", Some(&b)).await;
    assert!(!page.body.contains("href=\"/cluster\""), "no Cluster tab");
    let page = e.get("/cluster", Some(&b)).await;
    assert!(
        page.body.contains("not a synchronised cluster"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn metrics_without_real_servers_keep_only_the_virtual_server_series() {
    let e = env();
    let m = e
        .api(
            Method::GET,
            "/metrics?real_servers=off",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.body
            .lines()
            .any(|l| l == "tandem_virtual_server_real_servers_up{virtual_server=\"web-http\"} 3"),
        "{}",
        m.body
    );
    assert!(m.body.contains("tandem_check_latency_seconds_count"));
    assert!(!m.body.contains("tandem_real_server_"), "{}", m.body);
    let all = e
        .api(
            Method::GET,
            "/metrics",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    assert!(
        all.body.contains("tandem_real_server_health"),
        "the default keeps them"
    );
}

#[tokio::test]
async fn the_virtual_servers_page_and_api_search_filter_and_page() {
    let e = env();
    let v = e.login("vic", "viewer-pw").await;
    let page = e.get("/virtual-servers?q=10.0.1.12", Some(&v)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"vs-vs2\""), "{}", page.body);
    assert!(!page.body.contains("id=\"vs-web-http\""));
    assert!(
        page.body
            .contains("Virtual server 1-1 of 1 (matching of 2 virtual servers, 8 real servers)"),
        "{}",
        page.body
    );
    let second = e.get("/virtual-servers?per_page=1&page=2", Some(&v)).await;
    assert!(second.body.contains("id=\"vs-vs2\""));
    assert!(second.body.contains("rel=\"prev\""), "{}", second.body);
    assert!(!second.body.contains("rel=\"next\""));
    let api = e
        .api(
            Method::GET,
            "/api/v1/virtual-servers?q=WEB&problems=on",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await
        .json();
    assert_eq!(api["matching"], 1);
    assert_eq!(api["virtual_servers"][0]["name"], "web-http");
    let every = e
        .api(
            Method::GET,
            "/api/v1/virtual-servers",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await
        .json();
    assert_eq!(
        every["virtual_servers"].as_array().unwrap().len(),
        2,
        "no filter: all"
    );
}

#[tokio::test]
async fn the_doctor_page_and_api_show_this_directors_findings_to_a_viewer() {
    let e = env();
    let v = e.login("vic", "viewer-pw").await;
    let page = e.get("/doctor", Some(&v)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"no-findings\""), "{}", page.body);
    assert!(
        page.body.contains("sudo tandem doctor"),
        "it says what only root examines: {}",
        page.body
    );
    let api = e
        .api(
            Method::GET,
            "/api/v1/doctor",
            Some(("vic", "viewer-pw")),
            None,
            None,
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let r = api.json();
    assert_eq!(r["exit"], 0);
    assert_eq!(r["findings"], serde_json::json!([]));
    assert_eq!(r["nft"], false, "the web UI does not read the ruleset");
    assert!(r["probes"].is_null(), "nor send probes");
}

#[tokio::test]
async fn the_doctor_page_names_a_file_that_does_not_load() {
    let e = env();
    let v = e.login("vic", "viewer-pw").await;
    let good = std::fs::read_to_string(&e.config).unwrap();
    std::fs::write(&e.config, format!("{good}\n[[vrrp_instance]]\nname = 7\n")).unwrap();
    let page = e.get("/doctor", Some(&v)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"doctor-error\""), "{}", page.body);
    assert!(
        page.body.contains("tandem.toml:"),
        "file:line:column: {}",
        page.body
    );
}
