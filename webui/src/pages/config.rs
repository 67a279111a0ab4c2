//! The configuration pages: the file with its backups, the editor's
//! preview (findings at their lines, the diff), applying and rolling back.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tandem_model::api::UnixMillis;
use tandem_model::config::Diagnostic;

use crate::apply::{Applied, apply_text};
use crate::caller::Caller;
use crate::chrome::{Chrome, message_page};
use crate::configedit::{self, Change, DiffLine, WriteError};
use crate::daemons::{Daemon, ReloadOutcome};
use crate::extract::{Admin, Viewer};
use crate::format::{ago, utc};
use crate::state::AppState;

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
    pub daemon: String,
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
        daemon: d.name().to_string(),
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
        Applied::Cluster(r) => {
            use tandem_model::sync::NodeOutcome;
            let outcomes = r
                .nodes
                .iter()
                .map(|n| OutcomeView {
                    daemon: n.node.clone(),
                    ok: matches!(n.outcome, NodeOutcome::Applied | NodeOutcome::Released),
                    summary: match n.outcome {
                        NodeOutcome::Applied => "applied".to_string(),
                        NodeOutcome::Released => {
                            "ready, released: another director refused".to_string()
                        }
                        NodeOutcome::Refused => format!("refused: {}", n.message),
                        NodeOutcome::Restored => {
                            "took it, then put the previous version back".to_string()
                        }
                        NodeOutcome::Unreachable => format!(
                            "not reachable: it takes this version when it returns ({})",
                            n.message
                        ),
                    },
                    details: n.diagnostics.iter().map(ToString::to_string).collect(),
                })
                .collect();
            let version = r
                .version
                .as_ref()
                .map(|v| format!("version {} (generation {})", v.short(), v.generation))
                .unwrap_or_default();
            if r.applied {
                AppliedPage {
                    chrome,
                    ok: true,
                    headline: "Applied on the cluster".into(),
                    notes: vec![format!(
                        "The cluster's configuration is {version}; every previous version is in the history (tandem config history)."
                    )],
                    outcomes,
                }
                .into_response()
            } else {
                let mut notes = vec![
                    "No director keeps it: every director runs the previous version.".to_string(),
                ];
                if !r.error.is_empty() {
                    notes.insert(0, r.error.clone());
                }
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    AppliedPage {
                        chrome,
                        ok: false,
                        headline: "Refused: nothing changed anywhere".into(),
                        notes,
                        outcomes,
                    },
                )
                    .into_response()
            }
        }
        Applied::Unavailable(e) => {
            let mut page = preview_page(app, caller, text, base, None);
            page.error = Some(format!("nothing was written: {e}"));
            (StatusCode::SERVICE_UNAVAILABLE, page).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

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
