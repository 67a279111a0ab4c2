//! Both daemons' recent events, merged and filtered, as the events page and
//! the JSON API show them, and how each event reads.

use serde::Deserialize;
use tandem_model::api::{Event, EventKind};

use crate::daemons::{Daemon, Reach};
use crate::state::AppState;

/// The filter of the events page and API.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct EventFilter {
    /// "vrrpd", "healthd", or empty for both.
    #[serde(default)]
    pub daemon: String,
    /// An event type (`vrrp_transition`, ...), or empty for all.
    #[serde(default)]
    pub kind: String,
    /// Text anywhere in the event.
    #[serde(default)]
    pub q: String,
}

pub const EVENT_KINDS: [&str; 12] = [
    "vrrp_transition",
    "priority_changed",
    "sync_group_transition",
    "real_server_health",
    "quorum",
    "action",
    "reloaded",
    "reload_refused",
    "daemon_started",
    "daemon_stopping",
    "config_version",
    "cluster_sync",
];

pub fn kind_name(k: &EventKind) -> &'static str {
    match k {
        EventKind::DaemonStarted { .. } => "daemon_started",
        EventKind::DaemonStopping => "daemon_stopping",
        EventKind::Reloaded { .. } => "reloaded",
        EventKind::ReloadRefused { .. } => "reload_refused",
        EventKind::VrrpTransition { .. } => "vrrp_transition",
        EventKind::SyncGroupTransition { .. } => "sync_group_transition",
        EventKind::PriorityChanged { .. } => "priority_changed",
        EventKind::RealServerHealth { .. } => "real_server_health",
        EventKind::Quorum { .. } => "quorum",
        EventKind::Action { .. } => "action",
        EventKind::ConfigVersion { .. } => "config_version",
        EventKind::ClusterSync { .. } => "cluster_sync",
    }
}

/// One line saying what happened.
pub fn describe(k: &EventKind) -> String {
    match k {
        EventKind::DaemonStarted { version } => format!("started (version {version})"),
        EventKind::DaemonStopping => "stopping".into(),
        EventKind::Reloaded { changes } if changes.is_empty() => {
            "configuration reloaded: nothing changed".into()
        }
        EventKind::Reloaded { changes } => {
            format!("configuration reloaded: {}", changes.join("; "))
        }
        EventKind::ReloadRefused { error } => format!("reload refused: {error}"),
        EventKind::VrrpTransition {
            instance,
            from,
            to,
            priority,
            reason,
        } => format!("{instance}: {from} → {to} (priority {priority}): {reason}"),
        EventKind::SyncGroupTransition { group, to } => format!("sync group {group} → {to}"),
        EventKind::PriorityChanged {
            instance,
            from,
            to,
            reason,
        } => format!("{instance}: priority {from} → {to}: {reason}"),
        EventKind::RealServerHealth {
            virtual_server,
            real_server,
            up,
            reason,
        } => format!(
            "{virtual_server}/{real_server} {}: {reason}",
            if *up { "UP" } else { "DOWN" }
        ),
        EventKind::Quorum {
            virtual_server,
            met,
            up,
            quorum,
        } => format!(
            "{virtual_server}: quorum {} ({up} up, quorum {quorum})",
            if *met { "met" } else { "LOST" }
        ),
        EventKind::Action {
            action,
            target,
            user,
        } => match user {
            Some(u) => format!("{action} {target} by {u}"),
            None => format!("{action} {target}"),
        },
        EventKind::ConfigVersion {
            generation,
            version,
            author,
            made_on,
            how,
        } => {
            let by = if author.is_empty() {
                String::new()
            } else {
                format!(" by {author}")
            };
            format!(
                "configuration {how}: version {} (generation {generation}), made on {made_on}{by}",
                tandem_model::sync::short(version)
            )
        }
        EventKind::ClusterSync { state, detail } => format!("cluster {state}: {detail}"),
    }
}

/// Both daemons' recent events, newest first, filtered; and the daemons
/// that could not be asked.
pub async fn filtered_events(app: &AppState, f: &EventFilter) -> (Vec<Event>, Vec<String>) {
    let mut all = Vec::new();
    let mut down = Vec::new();
    for d in Daemon::ALL {
        if !f.daemon.is_empty() && f.daemon != d.name() {
            continue;
        }
        match app.daemons.recent_events(d).await {
            Reach::Up(mut e) => all.append(&mut e),
            Reach::Down(why) => down.push(format!("{d}: {why}")),
        }
    }
    let q = f.q.to_lowercase();
    all.retain(|e| {
        (f.kind.is_empty() || kind_name(&e.kind) == f.kind)
            && (q.is_empty()
                || describe(&e.kind).to_lowercase().contains(&q)
                || e.node.to_lowercase().contains(&q)
                || e.daemon.contains(&q))
    });
    all.sort_by(|a, b| b.at.cmp(&a.at).then(b.seq.cmp(&a.seq)));
    (all, down)
}
