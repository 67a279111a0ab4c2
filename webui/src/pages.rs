//! The HTML pages: thin handlers that ask the daemons (or the file), turn
//! the answers into view values, and render a template.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tandem_model::api::{HealthState, HealthdStatus, InstanceStatus, UnixMillis, VrrpState};
use tandem_model::config::Diagnostic;

use crate::apply::{Applied, apply_text};
use crate::auth::role_name;
use crate::caller::{Caller, Via};
use crate::chrome::{Chrome, MessagePage, message_page};
use crate::configedit::{self, Change, DiffLine, WriteError};
use crate::daemons::{Daemon, Reach, ReloadOutcome};
use crate::eventlog::{EVENT_KINDS, EventFilter, describe, filtered_events, kind_name};
use crate::extract::{Admin, Viewer, too_many};
use crate::format::{ago, bytes, utc};
use crate::peers::{PeerView, peers};
use crate::render::{Same, html};
use crate::state::AppState;

// ---------------------------------------------------------------- static

const STYLE: &str = include_str!("../static/style.css");
const SCRIPT: &str = include_str!("../static/live.js");

pub async fn static_file(Path(file): Path<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "live.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------- login

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
    let found = tokio::task::spawn_blocking(move || crate::auth::check(&users, &name, &password))
        .await
        .unwrap_or(None);
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
    app.limiter.lock().unwrap().succeeded(&f.name);
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

// ---------------------------------------------------------------- live

/// Server-sent events to browsers: a note whenever a daemon publishes an
/// event, goes away or comes back; the page then fetches itself again.
pub async fn live(
    State(app): State<AppState>,
    _v: Viewer,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let rx = app.live.subscribe();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|n| async move {
        let n = n.ok()?;
        Some(Ok(sse::Event::default().json_data(&n).unwrap_or_default()))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

// ---------------------------------------------------------------- overview

pub struct DaemonView {
    pub name: &'static str,
    pub running: bool,
    pub detail: String,
}

pub fn daemon_view<T>(
    name: &'static str,
    r: &Reach<T>,
    info: impl Fn(&T) -> &tandem_model::api::DaemonInfo,
    now: UnixMillis,
) -> DaemonView {
    match r {
        Reach::Up(s) => {
            let i = info(s);
            DaemonView {
                name,
                running: true,
                detail: format!(
                    "{} (pid {}), up {}; config loaded {}",
                    i.version,
                    i.pid,
                    ago(now, i.started_at).trim_end_matches(" ago"),
                    ago(now, i.config_loaded_at)
                ),
            }
        }
        Reach::Down(why) => DaemonView {
            name,
            running: false,
            detail: why.clone(),
        },
    }
}

/// healthd's line: the daemon, then what it keeps in the kernel (the IPVS
/// table in sync or why not, the connection sync daemon's role).
fn healthd_view(h: &Reach<Arc<HealthdStatus>>, now: UnixMillis) -> DaemonView {
    let mut view = daemon_view("healthd", h, |s| &s.daemon, now);
    if let Some(s) = h.up() {
        let d = &s.dataplane;
        match &d.error {
            Some(e) if !d.ok => view.detail.push_str(&format!("; IPVS: {e}")),
            _ => view.detail.push_str("; IPVS in sync"),
        }
        if let Some(cs) = &d.connection_sync {
            view.detail.push_str(&format!("; connection sync: {cs}"));
        }
    }
    view
}

pub struct InstanceView {
    pub name: String,
    pub placement: String,
    pub state: String,
    pub state_class: &'static str,
    pub effective: u8,
    pub configured: u8,
    pub maintenance: bool,
    pub master: String,
    pub vips: Vec<String>,
    pub transition: String,
    pub transition_ago: String,
    pub tracking: Vec<String>,
}

fn state_class(s: VrrpState) -> &'static str {
    match s {
        VrrpState::Master => "master",
        VrrpState::Backup => "backup",
        VrrpState::Fault => "fault",
        VrrpState::Init | VrrpState::Stop => "idle",
    }
}

fn instance_view(i: &InstanceStatus, now: UnixMillis) -> InstanceView {
    let family = match i.family {
        tandem_model::config::Family::Ipv4 => "IPv4",
        tandem_model::config::Family::Ipv6 => "IPv6",
    };
    let master = match &i.master {
        Some(m) if m.is_self => "this node".to_string(),
        Some(m) => format!("{} (priority {})", m.address, m.priority),
        None => "none heard".to_string(),
    };
    let (transition, transition_ago) = match &i.last_transition {
        Some(t) => (
            format!("{} → {}: {}", t.from, t.to, t.reason),
            format!("{} ({})", ago(now, t.at), utc(t.at)),
        ),
        None => ("none yet".to_string(), String::new()),
    };
    InstanceView {
        name: i.name.clone(),
        placement: format!(
            "{} · VRID {} · {family} · VRRPv{}",
            i.interface, i.vrid, i.version
        ),
        state: i.state.to_string(),
        state_class: state_class(i.state),
        effective: i.effective_priority,
        configured: i.configured_priority,
        maintenance: i.maintenance,
        master,
        vips: i.virtual_ips.clone(),
        transition,
        transition_ago,
        tracking: i
            .tracking
            .iter()
            .filter(|t| !t.ok || t.delta != 0)
            .map(|t| {
                format!(
                    "{} {} {}{}",
                    t.kind,
                    t.name,
                    if t.ok { "ok" } else { "failed" },
                    if t.delta != 0 {
                        format!(" ({:+})", t.delta)
                    } else if t.faults && !t.ok {
                        " (fault)".to_string()
                    } else {
                        String::new()
                    }
                )
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "instances.html")]
struct InstancesFragment {
    admin: bool,
    peers: Vec<PeerView>,
    instances: Vec<InstanceView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    daemons: Vec<DaemonView>,
    instances_html: Bytes,
    vrrpd_running: bool,
    generated: String,
}

impl OverviewPage {
    fn instances(&self) -> &str {
        html(&self.instances_html)
    }
}

pub async fn overview(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    let (vs, h) = tokio::join!(app.daemons.vrrpd_snapshot(), app.daemons.healthd_status());
    let v = vs.reach;
    let now = app.now();
    let admin = caller.is_admin();
    let instances_html = match v.up() {
        Some(s) => {
            let render = || {
                InstancesFragment {
                    admin,
                    peers: peers(s, now),
                    instances: s.instances.iter().map(|i| instance_view(i, now)).collect(),
                }
                .render()
                .unwrap_or_default()
            };
            let key = Same(s.clone());
            app.renders
                .instances
                .get_or(key, (vs.generation, 0), admin, render)
                .await
        }
        None => Bytes::new(),
    };
    OverviewPage {
        chrome: Chrome::new(&app, &caller, "overview"),
        daemons: vec![
            daemon_view("vrrpd", &v, |s| &s.daemon, now),
            healthd_view(&h, now),
        ],
        instances_html,
        vrrpd_running: v.up().is_some(),
        generated: utc(now),
    }
    .into_response()
}

// ---------------------------------------------------------------- virtual servers

pub struct RealServerView {
    pub address: String,
    pub health: String,
    pub health_class: &'static str,
    pub reason: String,
    pub since: String,
    pub weight: String,
    pub drained: bool,
    pub active: u32,
    pub inactive: u32,
    pub cps: String,
    pub in_rate: String,
    pub out_rate: String,
    pub latency: String,
}

pub struct VirtualServerView {
    pub name: String,
    pub protocol: String,
    pub address: String,
    pub scheduler: String,
    pub forwarding: String,
    pub check: String,
    pub quorum: String,
    pub quorum_met: bool,
    pub sorry: String,
    pub traffic: String,
    pub real_servers: Vec<RealServerView>,
}

fn health_class(h: HealthState) -> &'static str {
    match h {
        HealthState::Up => "up",
        HealthState::Down => "down",
        HealthState::Unknown => "idle",
    }
}

fn virtual_server_views(s: &HealthdStatus, now: UnixMillis) -> Vec<VirtualServerView> {
    s.virtual_servers
        .iter()
        .map(|v| {
            let (protocol, address) = v
                .service
                .split_once(' ')
                .map_or((String::new(), v.service.clone()), |(p, a)| {
                    (p.to_uppercase(), a.to_string())
                });
            VirtualServerView {
                name: v.name.clone(),
                protocol,
                address,
                scheduler: v.scheduler.clone(),
                forwarding: v.forwarding.clone(),
                check: v.check.clone().unwrap_or_else(|| "no check".into()),
                quorum: format!("{} up, quorum {}", v.up, v.quorum),
                quorum_met: v.quorum_met,
                sorry: match (&v.sorry_server, v.sorry_active) {
                    (Some(s), true) => format!("sorry server {s} ACTIVE"),
                    (Some(s), false) => format!("sorry server {s}"),
                    (None, _) => String::new(),
                },
                traffic: v.stats.map_or_else(String::new, |st| {
                    format!(
                        "{} conn/s · in {}/s · out {}/s",
                        st.cps,
                        bytes(st.inbps),
                        bytes(st.outbps)
                    )
                }),
                real_servers: v
                    .real_servers
                    .iter()
                    .map(|r| RealServerView {
                        address: r.address.clone(),
                        health: if r.drained {
                            format!("{} · drained", r.health)
                        } else {
                            r.health.to_string()
                        },
                        health_class: if r.drained {
                            "drained"
                        } else {
                            health_class(r.health)
                        },
                        reason: r.reason.clone(),
                        since: ago(now, r.since),
                        weight: match r.kernel_weight {
                            Some(k) if k != r.weight => format!("{} (kernel {k})", r.weight),
                            Some(_) => r.weight.to_string(),
                            None => format!("{} (not in table)", r.weight),
                        },
                        drained: r.drained,
                        active: r.active_conns,
                        inactive: r.inactive_conns,
                        cps: r.stats.map_or("–".into(), |s| s.cps.to_string()),
                        in_rate: r
                            .stats
                            .map_or("–".into(), |s| format!("{}/s", bytes(s.inbps))),
                        out_rate: r
                            .stats
                            .map_or("–".into(), |s| format!("{}/s", bytes(s.outbps))),
                        latency: r.last_check.as_ref().map_or("–".into(), |c| {
                            format!("{} ms, {}", c.latency_ms, ago(now, c.at))
                        }),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "vs_list.html")]
struct VirtualServersFragment {
    admin: bool,
    servers: Vec<VirtualServerView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "virtual_servers.html")]
struct VirtualServersPage {
    chrome: Chrome,
    healthd: DaemonView,
    servers_html: Bytes,
    no_servers: bool,
    generated: String,
}

impl VirtualServersPage {
    fn servers(&self) -> &str {
        html(&self.servers_html)
    }
}

pub async fn virtual_servers(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    let hs = app.daemons.healthd_snapshot().await;
    let h = hs.reach;
    let now = app.now();
    let admin = caller.is_admin();
    let servers_html = match h.up() {
        Some(s) => {
            let render = || {
                VirtualServersFragment {
                    admin,
                    servers: virtual_server_views(s, now),
                }
                .render()
                .unwrap_or_default()
            };
            let key = Same(s.clone());
            app.renders
                .virtual_servers
                .get_or(key, (hs.generation, 0), admin, render)
                .await
        }
        None => Bytes::new(),
    };
    VirtualServersPage {
        chrome: Chrome::new(&app, &caller, "virtual-servers"),
        healthd: healthd_view(&h, now),
        servers_html,
        no_servers: h.up().is_some_and(|s| s.virtual_servers.is_empty()),
        generated: utc(now),
    }
    .into_response()
}

// ---------------------------------------------------------------- events

pub struct EventRow {
    pub time: String,
    pub ago: String,
    pub daemon: String,
    pub node: String,
    pub kind: &'static str,
    pub text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "events.html")]
struct EventsPage {
    chrome: Chrome,
    filter: EventFilter,
    kinds: &'static [&'static str],
    rows: Vec<EventRow>,
    down: Vec<String>,
}

pub async fn events(
    State(app): State<AppState>,
    Viewer(caller, _): Viewer,
    Query(f): Query<EventFilter>,
) -> Response {
    let (events, down) = filtered_events(&app, &f).await;
    let now = app.now();
    EventsPage {
        chrome: Chrome::new(&app, &caller, "events"),
        kinds: &EVENT_KINDS,
        rows: events
            .iter()
            .map(|e| EventRow {
                time: utc(e.at),
                ago: ago(now, e.at),
                daemon: e.daemon.clone(),
                node: e.node.clone(),
                kind: kind_name(&e.kind),
                text: describe(&e.kind),
            })
            .collect(),
        down,
        filter: f,
    }
    .into_response()
}

// ---------------------------------------------------------------- config

/// A line of the file with the findings located on it.
pub struct NumberedLine {
    pub number: usize,
    pub text: String,
    pub findings: Vec<FindingView>,
}

pub struct FindingView {
    /// Spaces up to the column, for the caret.
    pub pad: String,
    pub column: usize,
    pub message: String,
}

fn numbered(text: &str, diags: &[Diagnostic]) -> Vec<NumberedLine> {
    let mut lines: Vec<NumberedLine> = text
        .split('\n')
        .enumerate()
        .map(|(i, l)| NumberedLine {
            number: i + 1,
            text: l.trim_end_matches('\r').to_string(),
            findings: Vec::new(),
        })
        .collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    for d in diags {
        if let Some(l) = lines.get_mut(d.line.saturating_sub(1)) {
            l.findings.push(FindingView {
                pad: " ".repeat(d.column.saturating_sub(1)),
                column: d.column,
                message: d.message.clone(),
            });
        }
    }
    lines
}

pub struct BackupView {
    pub number: usize,
    pub name: String,
    pub modified: String,
    pub size: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "config.html")]
struct ConfigPage {
    chrome: Chrome,
    path: String,
    version: String,
    short_version: String,
    lines: Vec<NumberedLine>,
    text: String,
    backups: Vec<BackupView>,
}

fn backup_views(app: &AppState, now: UnixMillis) -> Vec<BackupView> {
    app.config
        .backups()
        .into_iter()
        .map(|b| BackupView {
            number: b.number,
            name: b
                .path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            modified: format!("{} ({})", utc(b.modified), ago(now, b.modified)),
            size: b.size,
        })
        .collect()
}

/// The file as this caller may see it: password hashes masked for
/// everyone but admins (who edit the file and need it whole).
fn shown(caller: &Caller, text: &str) -> String {
    if caller.is_admin() {
        text.to_string()
    } else {
        configedit::mask_secrets(text)
    }
}

pub async fn config(State(app): State<AppState>, Viewer(caller, _): Viewer) -> Response {
    let (text, version) = match app.config.read() {
        Ok(r) => r,
        Err(e) => {
            return message_page(
                &app,
                &caller,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot read the configuration",
                &e.to_string(),
            );
        }
    };
    let text = shown(&caller, &text);
    ConfigPage {
        chrome: Chrome::new(&app, &caller, "config"),
        path: app.config.path().display().to_string(),
        lines: numbered(&text, &[]),
        text: if caller.is_admin() {
            text
        } else {
            String::new()
        },
        short_version: version[..12].to_string(),
        version,
        backups: backup_views(&app, app.now()),
    }
    .into_response()
}

pub struct DiffRow {
    pub class: &'static str,
    pub sign: &'static str,
    pub old: String,
    pub new: String,
    pub text: String,
    pub gap: bool,
}

fn diff_rows(d: Vec<Option<DiffLine>>) -> Vec<DiffRow> {
    d.into_iter()
        .map(|l| match l {
            None => DiffRow {
                class: "gap",
                sign: "",
                old: String::new(),
                new: String::new(),
                text: "⋯".into(),
                gap: true,
            },
            Some(l) => DiffRow {
                class: match l.change {
                    Change::Same => "same",
                    Change::Added => "added",
                    Change::Removed => "removed",
                },
                sign: match l.change {
                    Change::Same => " ",
                    Change::Added => "+",
                    Change::Removed => "-",
                },
                old: l.old_line.map_or_else(String::new, |n| n.to_string()),
                new: l.new_line.map_or_else(String::new, |n| n.to_string()),
                text: l.text,
                gap: false,
            },
        })
        .collect()
}

/// The editor with what was submitted: errors at their lines, or the diff
/// and the Apply button, or the conflict.
#[derive(Template, WebTemplate)]
#[template(path = "preview.html")]
struct PreviewPage {
    chrome: Chrome,
    path: String,
    /// The version the edit is based on.
    base: String,
    text: String,
    findings: Vec<String>,
    lines: Vec<NumberedLine>,
    diff: Vec<DiffRow>,
    unchanged: bool,
    conflict: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct EditForm {
    text: String,
    base: String,
}

/// Browsers submit textareas with CRLF line ends: the file keeps LF.
fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n")
}

fn preview_page(
    app: &AppState,
    caller: &Caller,
    text: String,
    base: String,
    conflict: Option<String>,
) -> PreviewPage {
    let path = app.config.path().display().to_string();
    let (findings, lines) = match configedit::validate(&text, &path) {
        Ok(_) => (Vec::new(), Vec::new()),
        Err(d) => (
            d.iter().map(ToString::to_string).collect(),
            numbered(&text, &d),
        ),
    };
    let current = app.config.read().map(|(t, _)| t).unwrap_or_default();
    let diff = configedit::diff(&current, &text, 3);
    PreviewPage {
        chrome: Chrome::new(app, caller, "config"),
        path,
        unchanged: diff.is_empty(),
        diff: diff_rows(diff),
        base,
        text,
        findings,
        lines,
        conflict,
        error: None,
    }
}

pub async fn config_preview(
    State(app): State<AppState>,
    Admin(caller, _): Admin,
    Form(f): Form<EditForm>,
) -> Response {
    let text = normalize(&f.text);
    let page = preview_page(&app, &caller, text, f.base, None);
    let status = if page.findings.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, page).into_response()
}

pub struct OutcomeView {
    pub daemon: &'static str,
    pub ok: bool,
    pub summary: String,
    pub details: Vec<String>,
}

pub fn outcome_view(d: Daemon, o: &ReloadOutcome) -> OutcomeView {
    let (ok, summary, details) = match o {
        ReloadOutcome::Reloaded { changes, unchanged } => (
            true,
            format!(
                "reloaded: {} change(s), {unchanged} unchanged",
                changes.len()
            ),
            changes.clone(),
        ),
        ReloadOutcome::Refused { error, diagnostics } => (
            false,
            format!("refused: {error}"),
            diagnostics.iter().map(ToString::to_string).collect(),
        ),
        ReloadOutcome::NotRunning { error } => (
            true,
            "not running: it reads the file when it starts".into(),
            vec![error.clone()],
        ),
        ReloadOutcome::Failed { error } => (false, format!("failed: {error}"), Vec::new()),
    };
    OutcomeView {
        daemon: d.name(),
        ok,
        summary,
        details,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "applied.html")]
struct AppliedPage {
    chrome: Chrome,
    ok: bool,
    headline: String,
    notes: Vec<String>,
    outcomes: Vec<OutcomeView>,
}

fn applied_response(
    app: &AppState,
    caller: &Caller,
    a: Applied,
    text: String,
    base: String,
) -> Response {
    let chrome = Chrome::new(app, caller, "config");
    match a {
        Applied::Done {
            backup, reloads, ..
        } => AppliedPage {
            chrome,
            ok: true,
            headline: "Configuration applied".into(),
            notes: vec![format!("The previous version is kept as {backup}.")],
            outcomes: reloads.iter().map(|(d, o)| outcome_view(*d, o)).collect(),
        }
        .into_response(),
        Applied::RolledBack { reloads, restored } => {
            let mut outcomes: Vec<OutcomeView> =
                reloads.iter().map(|(d, o)| outcome_view(*d, o)).collect();
            outcomes.extend(restored.iter().map(|(d, o)| {
                let mut v = outcome_view(*d, o);
                v.summary = format!("back on the previous file: {}", v.summary);
                v
            }));
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                AppliedPage {
                    chrome,
                    ok: false,
                    headline: "Refused by a daemon: nothing changed".into(),
                    notes: vec![
                        "The previous file was put back and every daemon runs on it.".into(),
                    ],
                    outcomes,
                },
            )
                .into_response()
        }
        Applied::Refused(WriteError::Conflict { current, .. }) => {
            let msg = WriteError::Conflict {
                based_on: base.clone(),
                current: current.clone(),
            }
            .to_string();
            // The editor now shows the diff against the current file and
            // is based on it: the second save is a decision, not an accident.
            let page = preview_page(app, caller, text, current, Some(msg));
            (StatusCode::CONFLICT, page).into_response()
        }
        Applied::Refused(WriteError::Invalid(_)) => {
            let page = preview_page(app, caller, text, base, None);
            (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
        }
        Applied::Refused(e @ WriteError::Io { .. }) => {
            let mut page = preview_page(app, caller, text, base, None);
            page.error = Some(format!("nothing was written: {e}"));
            (StatusCode::INTERNAL_SERVER_ERROR, page).into_response()
        }
    }
}

pub async fn config_apply(
    State(app): State<AppState>,
    Admin(caller, user): Admin,
    Form(f): Form<EditForm>,
) -> Response {
    let text = normalize(&f.text);
    let a = apply_text(&app, &user, &text, &f.base).await;
    applied_response(&app, &caller, a, text, f.base)
}

#[derive(Template, WebTemplate)]
#[template(path = "backup.html")]
struct BackupPage {
    chrome: Chrome,
    number: usize,
    name: String,
    base: String,
    lines: Vec<NumberedLine>,
    diff: Vec<DiffRow>,
}

pub async fn backup(
    State(app): State<AppState>,
    Viewer(caller, _): Viewer,
    Path(n): Path<usize>,
) -> Response {
    let text = match app.config.read_backup(n) {
        Ok(t) => t,
        Err(_) => {
            return message_page(
                &app,
                &caller,
                StatusCode::NOT_FOUND,
                "No such backup",
                &format!("There is no backup {n} of the configuration."),
            );
        }
    };
    let (current, version) = app.config.read().unwrap_or_default();
    BackupPage {
        chrome: Chrome::new(&app, &caller, "config"),
        number: n,
        name: app.config.backup_path(n).display().to_string(),
        base: version,
        lines: numbered(&shown(&caller, &text), &[]),
        diff: diff_rows(configedit::diff(
            &shown(&caller, &current),
            &shown(&caller, &text),
            3,
        )),
    }
    .into_response()
}

#[derive(Deserialize)]
pub struct RollbackForm {
    backup: usize,
    base: String,
}

pub async fn config_rollback(
    State(app): State<AppState>,
    Admin(caller, user): Admin,
    Form(f): Form<RollbackForm>,
) -> Response {
    let text = match app.config.read_backup(f.backup) {
        Ok(t) => t,
        Err(e) => {
            return message_page(
                &app,
                &caller,
                StatusCode::NOT_FOUND,
                "No such backup",
                &e.to_string(),
            );
        }
    };
    let a = apply_text(&app, &user, &text, &f.base).await;
    applied_response(&app, &caller, a, text, f.base)
}

// ---------------------------------------------------------------- actions

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
    let r = app.daemons.set_drain(&f.vs, &f.rs, on).await;
    let what = if on { "drained" } else { "enabled" };
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

    #[test]
    fn findings_land_on_their_line_with_the_caret_at_their_column() {
        let d = configedit::validate("[webui]\nsession_timeout = \"5s\"\n", "t").unwrap_err();
        let lines = numbered("[webui]\nsession_timeout = \"5s\"\n", &d);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].findings.is_empty());
        let f = &lines[1].findings[0];
        assert_eq!((f.column, f.pad.len()), (19, 18));
    }
}
