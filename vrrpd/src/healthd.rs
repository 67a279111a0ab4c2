//! vrrpd's view of healthd: the quorum of every virtual server an
//! instance tracks, followed over healthd's control socket (its events,
//! and its status each time it is reached). When healthd stops
//! answering, the last verdicts stand for `healthd_grace`; after that
//! every tracked virtual server counts as failed, and each tracking
//! instance applies its weight or goes to FAULT, as configured.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tandem_model::api::{EventKind, HealthdStatus};
use tandem_model::control::Client;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::input::Input;

/// Quorum verdicts (virtual server -> met).
pub type Verdicts = BTreeMap<String, bool>;

/// Follows healthd at `socket` for the virtual servers in `tracked`.
/// Runs until the daemon's loop is gone.
pub async fn watch(
    socket: PathBuf,
    tracked: Vec<String>,
    grace: Duration,
    tx: mpsc::Sender<Input>,
) {
    let client = Client::new(&socket);
    // Until healthd is first heard, the instances run as if quorum were
    // met (healthd may start after vrrpd), for the grace period.
    let mut lost_since = Instant::now();
    let mut declared = false;
    let mut ever = false;
    loop {
        // Subscribe first, then read the status: no change falls between.
        if let Ok(events) = client.events(None).await {
            if let Ok(st) = client.get::<HealthdStatus>("/status").await {
                if !ever || declared {
                    info!(socket = %socket.display(), "following healthd's quorum");
                }
                ever = true;
                declared = false;
                let mut v = Verdicts::new();
                for name in &tracked {
                    let met = st
                        .virtual_servers
                        .iter()
                        .find(|s| s.name == *name)
                        .map(|s| s.quorum_met);
                    if met.is_none() {
                        warn!("healthd has no virtual server named {name}: counting it as failed");
                    }
                    v.insert(name.clone(), met.unwrap_or(false));
                }
                if tx.send(Input::Quorum(v)).await.is_err() {
                    return;
                }
                let mut events = Box::pin(events);
                while let Some(Ok(e)) = events.next().await {
                    if let EventKind::Quorum {
                        virtual_server,
                        met,
                        ..
                    } = e.kind
                    {
                        if tracked.contains(&virtual_server) {
                            let v = Verdicts::from([(virtual_server, met)]);
                            if tx.send(Input::Quorum(v)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                warn!(
                    "healthd stopped answering; its last quorum stands for {}",
                    tandem_model::config::format_duration(grace)
                );
                lost_since = Instant::now();
            }
        }
        if !declared && lost_since.elapsed() >= grace {
            declared = true;
            warn!(
                "healthd {} for {}: every tracked virtual server counts as failed",
                if ever {
                    "has not answered"
                } else {
                    "has not been reachable"
                },
                tandem_model::config::format_duration(grace)
            );
            let v = tracked.iter().map(|n| (n.clone(), false)).collect();
            if tx.send(Input::Quorum(v)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
