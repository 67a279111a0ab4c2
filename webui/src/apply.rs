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
}

/// Writes `text` if the file is still at `base`, reloads the daemons, and
/// undoes the write if one refuses it. One at a time.
pub async fn apply_text(app: &AppState, user: &User, text: &str, base: &str) -> Applied {
    let _one = app.writes.lock().await;
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
