//! Applying a configuration text, for the config page and the JSON API
//! alike: write it, reload both daemons, and put the previous file back if
//! one refuses.

use crate::configedit::{self, WriteError};
use crate::daemons::{Daemon, ReloadOutcome};
use crate::session::User;
use crate::state::AppState;

/// What applying a text did.
pub enum Applied {
    /// Written, and every running daemon took it.
    Done {
        version: String,
        backup: String,
        reloads: Vec<(Daemon, ReloadOutcome)>,
    },
    /// Written, but a daemon refused: the previous file is back, and the
    /// daemons that had taken the new one were reloaded with it again.
    RolledBack {
        reloads: Vec<(Daemon, ReloadOutcome)>,
        restored: Vec<(Daemon, ReloadOutcome)>,
    },
    Refused(WriteError),
    /// A cluster's file: what tandem-clusterd and every director did.
    Cluster(tandem_model::sync::ApplyResult),
    /// A cluster's file, and tandem-clusterd did not answer: nothing
    /// changed.
    Unavailable(String),
}

/// Writes `text` if the file is still at `base`, reloads the daemons, and
/// undoes the write if one refuses it. One at a time.
pub async fn apply_text(app: &AppState, user: &User, text: &str, base: &str) -> Applied {
    let _one = app.writes.lock().await;
    if app.cluster.is_some() {
        return hand_over(app, user, text, base).await;
    }
    let written = match app.config.write(text, base) {
        Ok(w) => w,
        Err(e) => return Applied::Refused(e),
    };
    tracing::info!(user = %user.name, version = %&written.version[..12], "configuration written");
    let mut reloads = Vec::new();
    for d in Daemon::ALL {
        reloads.push((d, app.daemons.reload(d).await));
    }
    if reloads.iter().all(|(_, o)| o.accepted()) {
        app.config.trim();
        if let Ok(c) = configedit::validate(text, &app.config.path().display().to_string()) {
            app.apply_settings(&c);
        }
        return Applied::Done {
            version: written.version,
            backup: app.config.backup_path(1).display().to_string(),
            reloads,
        };
    }
    tracing::warn!(user = %user.name, "a daemon refused the new configuration: putting the previous one back");
    if let Err(e) = app.config.undo_write() {
        return Applied::Refused(e);
    }
    let mut restored = Vec::new();
    for (d, o) in &reloads {
        if matches!(o, ReloadOutcome::Reloaded { .. }) {
            restored.push((*d, app.daemons.reload(*d).await));
        }
    }
    Applied::RolledBack { reloads, restored }
}

/// In a cluster, the file is tandem-clusterd's: the web UI checks what it
/// can show in the editor (the base, the findings) and hands the text over.
async fn hand_over(app: &AppState, user: &User, text: &str, base: &str) -> Applied {
    let path = app.config.path().display().to_string();
    let current = match app.config.read() {
        Ok((t, _)) => t,
        Err(e) => return Applied::Refused(e),
    };
    let now = configedit::version(&current);
    if now != base {
        return Applied::Refused(WriteError::Conflict {
            based_on: base.to_string(),
            current: now,
        });
    }
    if let Err(d) = configedit::validate(text, &path) {
        return Applied::Refused(WriteError::Invalid(d));
    }
    tracing::info!(user = %user.name, "handing the configuration to tandem-clusterd");
    match crate::cluster::apply(app, &user.name, text, false).await {
        Ok(r) => Applied::Cluster(r),
        Err(e) => Applied::Unavailable(e),
    }
}
