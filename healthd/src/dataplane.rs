//! What healthd asks of the dataplane, and one sync that gets it, sans
//! IO: over any [`ConnectionSync`] dataplane, the kernel
//! ([`ipvsctl::Kernel`], in the daemon's IPVS thread) or memory
//! ([`ipvsctl::memory::Memory`], in the tests).
//!
//! A sync makes the services healthd owns look like the engine's table,
//! deletes the ones it owned and no longer wants, leaves every other
//! service alone, and runs the one connection sync daemon vrrpd's state
//! calls for.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::time::{Duration, Instant};

use ipvsctl::reconcile::{ConnectionSync, Options, apply_to, plan};
use ipvsctl::types::{ServiceKey, SyncDaemon, Table};
use tandem_model::api::VrrpState;
use tandem_model::config::Config;
use tracing::{info, warn};

use crate::engine::Engine;

/// What a sync with the dataplane found and did.
pub struct Synced {
    /// The dataplane's table after the sync.
    pub table: Table,
    pub operations: usize,
    /// The sync daemon running, when connection sync is configured.
    pub sync_daemon: Option<SyncDaemon>,
    /// How long reading the table took, when this sync read it.
    pub read: Option<Duration>,
}

/// A request to the IPVS thread: make the managed services look like
/// `desired` (deleting managed services it lacks).
pub struct SyncRequest {
    pub desired: Table,
    pub managed: BTreeSet<ServiceKey>,
    /// The connection sync daemon that should run, if configured.
    pub sync_daemon: Option<SyncDaemon>,
    /// Read the dataplane's table first, rather than plan against the
    /// table the last sync left: for fresh connection counters, and to
    /// find what someone else changed.
    pub read: bool,
}

impl SyncRequest {
    /// What the daemon asks for at `now`: the engine's table (`current`,
    /// the dataplane's table as last seen, tells it which leaving servers
    /// still have connections), over the services the engine owns and
    /// those a reload `retired`; `read`: see [`SyncRequest::read`].
    pub fn new(
        engine: &mut Engine,
        now: Instant,
        current: &Table,
        retired: &BTreeSet<ServiceKey>,
        sync_daemon: Option<SyncDaemon>,
        read: bool,
    ) -> SyncRequest {
        let desired = engine.desired(now, current);
        let mut managed = engine.keys().clone();
        managed.extend(retired.iter().copied());
        SyncRequest {
            desired,
            managed,
            sync_daemon,
            read,
        }
    }
}

/// The sync daemon the configuration and vrrpd's state of its instance
/// call for (see [`crate::vrrp::role`]).
pub fn wanted_sync_daemon(config: &Config, vrrp: Option<VrrpState>) -> Option<SyncDaemon> {
    let cs = config.connection_sync.as_ref()?;
    let vrid = config.vrrp_instance(&cs.instance).map_or(0, |i| i.vrid);
    Some(SyncDaemon {
        role: crate::vrrp::role(vrrp),
        interface: cs.interface.clone(),
        sync_id: cs.sync_id.unwrap_or(vrid) as u32,
        max_len: None,
        group: None,
        port: None,
        ttl: None,
    })
}

/// The retired services still to delete, once a sync left `current`: a
/// service is retired until it is gone, or until the configuration owns
/// it again (`owned`).
pub fn retire(retired: &mut BTreeSet<ServiceKey>, current: &Table, owned: &BTreeSet<ServiceKey>) {
    retired.retain(|k| current.service(k).is_some() && !owned.contains(k));
}

/// One sync: runs the wanted sync daemon and applies what the managed
/// services need. It plans against `known`, the table the last sync left
/// (kept by the caller between syncs), and reads the dataplane's table
/// only when asked to, when nothing is known (the first sync, or after an
/// error), or when an operation is refused because someone else changed
/// the table meanwhile; it then plans again from what it read. After
/// applying, the table is known without reading it back
/// ([`apply_to`]): at 37,000 real servers a read costs far more than the
/// change it would confirm. An error is in words, for the status and the
/// log; it leaves nothing known.
pub fn sync_once<D>(
    dp: &mut D,
    req: &SyncRequest,
    known: &mut Option<Table>,
) -> Result<Synced, String>
where
    D: ConnectionSync,
    D::Error: Display,
{
    let mut read = None;
    let mut current = match known.take() {
        Some(t) if !req.read => t,
        _ => read_table(dp, &mut read)?,
    };
    let daemon_ops = match &req.sync_daemon {
        Some(want) => sync_daemon(dp, want)?,
        None => 0,
    };
    // Only the services this configuration owns (or owned before a
    // reload) are compared: another service in the table is someone
    // else's and is left alone.
    let options = Options {
        prune: true,
        managed: Some(req.managed.clone()),
    };
    let mut ops = plan(&req.desired, &current, options.clone());
    let mut operations = daemon_ops + ops.len();
    if !ops.is_empty() {
        log(&ops);
        if let Err(e) = dp.apply(&ops) {
            if read.is_some() {
                return Err(e.to_string());
            }
            // The table changed behind healthd's back since it was last
            // read (an operation found a service or real server that
            // should not be there, or missed one that should).
            warn!("IPVS: {e}; reading the table and planning again");
            current = read_table(dp, &mut read)?;
            ops = plan(&req.desired, &current, options);
            operations += ops.len();
            log(&ops);
            dp.apply(&ops).map_err(|e| e.to_string())?;
        }
        apply_to(&mut current, &ops);
    }
    *known = Some(current.clone());
    Ok(Synced {
        table: current,
        operations,
        sync_daemon: req.sync_daemon.clone(),
        read,
    })
}

/// Reads the dataplane's table, noting in `took` how long it took.
fn read_table<D>(dp: &mut D, took: &mut Option<Duration>) -> Result<Table, String>
where
    D: ConnectionSync,
    D::Error: Display,
{
    let start = Instant::now();
    let table = dp.dump().map_err(|e| e.to_string())?;
    *took = Some(start.elapsed());
    Ok(table)
}

fn log(ops: &[ipvsctl::reconcile::Op]) {
    for op in ops {
        info!("ipvs: {op}");
    }
}

/// Makes `want` the only sync daemon running (a director is either the
/// sender or a receiver of the connection table). A daemon is compared
/// by role, interface and sync id only: the kernel lists its own
/// defaults for what was not asked. Returns the operations.
fn sync_daemon<D>(dp: &mut D, want: &SyncDaemon) -> Result<usize, String>
where
    D: ConnectionSync,
    D::Error: Display,
{
    let running = dp.sync_daemons().map_err(|e| e.to_string())?;
    let mut ops = 0;
    let same = |d: &SyncDaemon| {
        d.role == want.role && d.interface == want.interface && d.sync_id == want.sync_id
    };
    for d in running.iter().filter(|d| !same(d)) {
        dp.stop_sync_daemon(d.role).map_err(|e| e.to_string())?;
        ops += 1;
    }
    if !running.iter().any(same) {
        dp.start_sync_daemon(want).map_err(|e| e.to_string())?;
        info!(
            "connection sync: {} on {}, sync id {}",
            want.role.name(),
            want.interface,
            want.sync_id
        );
        ops += 1;
    }
    Ok(ops)
}

#[cfg(test)]
mod tests;
