//! The web UI in a synchronised cluster: tandem-clusterd owns the file,
//! so an edit here is handed to it (and becomes every director's or
//! nobody's), a drain goes to every director, and every page says when
//! the directors do not all have the same version.

use std::sync::Arc;
use std::time::Duration;

use tandem_model::sync::{
    Action, ActionRequest, ActionResult, ApplyRequest, ApplyResult, ClusterStatus, SyncState,
};

use crate::state::AppState;

pub mod charts;

/// How often clusterd is asked (it asks the other directors as often).
const EVERY: Duration = Duration::from_secs(1);

/// Keeps `app.cluster_view` fresh; when another director's change lands
/// here, the web UI takes its `[webui]` settings (users) too.
pub async fn follow(app: AppState) {
    let Some(c) = app.cluster.clone() else {
        return;
    };
    let mut seen: Option<String> = None;
    loop {
        match tokio::time::timeout(EVERY * 3, c.get::<ClusterStatus>("/status")).await {
            Ok(Ok(st)) => {
                if seen.as_deref() != Some(st.version.id.as_str()) {
                    if seen.is_some() {
                        reread(&app);
                    }
                    seen = Some(st.version.id.clone());
                }
                sample(&app, &st).await;
                *app.cluster_view.write().unwrap() = Some(Arc::new(st));
            }
            _ => *app.cluster_view.write().unwrap() = None,
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Every ten seconds, each director's rates for the cluster page's charts.
async fn sample(app: &AppState, st: &ClusterStatus) {
    let now = app.now();
    if !app.samples.lock().unwrap().due(now) {
        return;
    }
    let mine = app.daemons.healthd_status().await;
    let mut s = app.samples.lock().unwrap();
    if let Some(h) = mine.up() {
        s.record(&st.node, h, now);
    }
    for p in &st.peers {
        if let Some(h) = &p.healthd {
            s.record(&p.name, h, now);
        }
    }
    s.taken(now);
}

fn reread(app: &AppState) {
    if let Ok((text, _)) = app.config.read()
        && let Ok(c) = crate::configedit::validate(&text, &app.config.path().display().to_string())
    {
        app.apply_settings(&c);
    }
}

/// The banner every page shows while the cluster is not in sync.
pub fn banner(app: &AppState) -> Option<String> {
    app.cluster.as_ref()?;
    match app.cluster_view() {
        None => Some(
            "tandem-clusterd does not answer on this director: changes cannot be made, and nobody can tell whether the directors agree.".into(),
        ),
        Some(st) if st.state == SyncState::InSync => None,
        Some(st) => Some(format!("{}: {}", st.state.label(), st.detail)),
    }
}

/// Hands a new file to clusterd for the whole cluster.
pub async fn apply(
    app: &AppState,
    author: &str,
    text: &str,
    resolve: bool,
) -> Result<ApplyResult, String> {
    let c = app
        .cluster
        .as_ref()
        .ok_or_else(|| "not a synchronised cluster".to_string())?;
    let r: ApplyResult = c
        .post(
            "/config",
            &ApplyRequest {
                text: text.to_string(),
                author: author.to_string(),
                comment: String::new(),
                base: None,
                resolve,
            },
        )
        .await
        .map_err(|e| format!("tandem-clusterd: {e}"))?;
    if r.applied
        && let Ok(c) = crate::configedit::validate(text, &app.config.path().display().to_string())
    {
        app.apply_settings(&c);
    }
    Ok(r)
}

/// Drains or enables a real server on every director.
pub async fn set_drain(
    app: &AppState,
    author: &str,
    vs: &str,
    rs: &str,
    drain: bool,
) -> Result<ActionResult, String> {
    let c = app
        .cluster
        .as_ref()
        .ok_or_else(|| "not a synchronised cluster".to_string())?;
    let action = if drain {
        Action::Drain {
            virtual_server: vs.to_string(),
            real_server: rs.to_string(),
        }
    } else {
        Action::Enable {
            virtual_server: vs.to_string(),
            real_server: rs.to_string(),
        }
    };
    let r = c
        .post::<_, ActionResult>(
            "/actions",
            &ActionRequest {
                action,
                author: author.to_string(),
            },
        )
        .await
        .map_err(|e| format!("tandem-clusterd: {e}"));
    app.daemons.invalidate(crate::daemons::Daemon::Healthd);
    r
}

/// One line per director of an action's result.
pub fn action_summary(r: &ActionResult) -> String {
    r.nodes
        .iter()
        .map(|n| {
            if n.ok {
                format!("{}: done", n.node)
            } else {
                format!("{}: FAILED: {}", n.node, n.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Maintenance of an instance on one director of the cluster.
pub async fn maintenance(
    app: &AppState,
    author: &str,
    node: &str,
    instance: &str,
    on: bool,
) -> Result<ActionResult, String> {
    let c = app
        .cluster
        .as_ref()
        .ok_or_else(|| "not a synchronised cluster".to_string())?;
    let r = c
        .post::<_, ActionResult>(
            "/actions",
            &ActionRequest {
                action: Action::Maintenance {
                    instance: instance.to_string(),
                    on,
                    node: node.to_string(),
                },
                author: author.to_string(),
            },
        )
        .await
        .map_err(|e| format!("tandem-clusterd: {e}"));
    app.daemons.invalidate(crate::daemons::Daemon::Vrrpd);
    r
}
