//! healthd's view of vrrpd, for connection synchronisation: the state of
//! one VRRP instance, followed over vrrpd's control socket (its events,
//! and its status each time it is reached). While vrrpd cannot be
//! reached, the state is unknown, and healthd runs the sync daemon as a
//! backup: receiving connections is always safe, sending them is the
//! master's job.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use tandem_model::api::{EventKind, VrrpState, VrrpdStatus};
use tandem_model::control::Client;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::daemon::Input;

/// Follows `instance` on vrrpd at `socket`. Runs until the loop is gone.
pub async fn watch(socket: PathBuf, instance: String, tx: mpsc::Sender<Input>) {
    let client = Client::new(&socket);
    let mut reachable = None;
    loop {
        // Subscribe first, then read the status: no transition falls
        // between the two.
        if let Ok(events) = client.events(None).await {
            if let Ok(st) = client.get::<VrrpdStatus>("/status").await {
                if reachable != Some(true) {
                    info!(instance = %instance, "following vrrpd for connection sync");
                    reachable = Some(true);
                }
                let state = st
                    .instances
                    .iter()
                    .find(|i| i.name == instance)
                    .map(|i| i.state);
                if tx.send(Input::VrrpState(state)).await.is_err() {
                    return;
                }
                let mut events = Box::pin(events);
                while let Some(Ok(e)) = events.next().await {
                    if let EventKind::VrrpTransition {
                        instance: name, to, ..
                    } = e.kind
                    {
                        if name == instance && tx.send(Input::VrrpState(Some(to))).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
        if reachable != Some(false) {
            warn!(
                "vrrpd does not answer on {}: connection sync runs as backup",
                socket.display()
            );
            reachable = Some(false);
            if tx.send(Input::VrrpState(None)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The sync daemon role for a VRRP state: master only when master.
pub fn role(state: Option<VrrpState>) -> ipvsctl::types::SyncRole {
    match state {
        Some(VrrpState::Master) => ipvsctl::types::SyncRole::Master,
        _ => ipvsctl::types::SyncRole::Backup,
    }
}
