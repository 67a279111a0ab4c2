//! The reconciler, sans-IO: a desired table and the current one in, the
//! fewest ordered operations out.
//!
//! Rules:
//! - A destination whose weight, forwarding, thresholds or tunnel differ
//!   is edited in place (`IPVS_CMD_SET_DEST`), never deleted and added
//!   again: the kernel keeps a destination's connections across an edit,
//!   while a deleted destination's connections stop being forwarded.
//! - A service whose scheduler, flags, persistence, netmask or engine
//!   differ is edited in place (`IPVS_CMD_SET_SERVICE`).
//! - A service is added before its destinations; the destinations of a
//!   service being deleted are not deleted one by one (deleting the
//!   service takes them along, `__ip_vs_del_service`).
//! - Within a kept service, additions come before edits and edits before
//!   deletions, so a service whose real servers are all replaced never
//!   has none.
//! - Services the desired table does not name are left alone unless
//!   `prune` is set: another tool (or person) may own them. With a
//!   `managed` scope, prune deletes only the services in it: a daemon
//!   that shares the table owns its services, not the whole table.
//! - Planning against the result of applying a plan gives nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::types::{
    Dest, DestSettings, Service, ServiceKey, ServiceSettings, SyncDaemon, SyncRole, Table,
};

/// One change to the table: what a dataplane applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    AddService {
        key: ServiceKey,
        settings: ServiceSettings,
    },
    EditService {
        key: ServiceKey,
        settings: ServiceSettings,
    },
    DelService {
        key: ServiceKey,
    },
    AddDest {
        service: ServiceKey,
        addr: SocketAddr,
        settings: DestSettings,
    },
    EditDest {
        service: ServiceKey,
        addr: SocketAddr,
        settings: DestSettings,
    },
    DelDest {
        service: ServiceKey,
        addr: SocketAddr,
    },
}

impl Op {
    /// The service the operation touches.
    pub fn service(&self) -> &ServiceKey {
        match self {
            Op::AddService { key, .. } | Op::EditService { key, .. } | Op::DelService { key } => {
                key
            }
            Op::AddDest { service, .. }
            | Op::EditDest { service, .. }
            | Op::DelDest { service, .. } => service,
        }
    }

    /// The destination the operation touches, if any.
    pub fn dest(&self) -> Option<SocketAddr> {
        match self {
            Op::AddDest { addr, .. } | Op::EditDest { addr, .. } | Op::DelDest { addr, .. } => {
                Some(*addr)
            }
            _ => None,
        }
    }
}

/// A short human description ("adding real server 10.0.0.2:80 to TCP
/// 10.0.0.1:80"), for messages.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddService { key, .. } => write!(f, "adding service {key}"),
            Op::EditService { key, .. } => write!(f, "changing service {key}"),
            Op::DelService { key } => write!(f, "deleting service {key}"),
            Op::AddDest { service, addr, .. } => {
                write!(f, "adding real server {addr} to {service}")
            }
            Op::EditDest { service, addr, .. } => {
                write!(f, "changing real server {addr} of {service}")
            }
            Op::DelDest { service, addr } => {
                write!(f, "deleting real server {addr} of {service}")
            }
        }
    }
}

/// How far the reconciler's authority goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Delete services the desired table does not name.
    pub prune: bool,
    /// The services the caller owns, when it does not own the whole
    /// table: one outside this set (and outside the desired table) is
    /// never changed or deleted, whatever `prune` says. A service
    /// the desired table names is owned by being named. `None`: every
    /// service in the table is the caller's.
    pub managed: Option<BTreeSet<ServiceKey>>,
}

impl Options {
    /// Whether `key` is in the managed scope.
    pub fn manages(&self, key: &ServiceKey) -> bool {
        self.managed.as_ref().is_none_or(|m| m.contains(key))
    }
}

/// The operations that turn `current` into `desired`, in order.
pub fn plan(desired: &Table, current: &Table, options: Options) -> Vec<Op> {
    let want: BTreeMap<ServiceKey, _> = desired.services.iter().map(|s| (s.key, s)).collect();
    let have: BTreeMap<ServiceKey, _> = current
        .services
        .iter()
        .filter(|s| want.contains_key(&s.key) || options.manages(&s.key))
        .map(|s| (s.key, s))
        .collect();
    let mut ops = Vec::new();

    if options.prune {
        for key in have.keys().filter(|k| !want.contains_key(k)) {
            ops.push(Op::DelService { key: *key });
        }
    }

    for (key, svc) in &want {
        let old = have.get(key);
        match old {
            None => ops.push(Op::AddService {
                key: *key,
                settings: svc.settings.clone(),
            }),
            Some(old) if old.settings != svc.settings => ops.push(Op::EditService {
                key: *key,
                settings: svc.settings.clone(),
            }),
            Some(_) => {}
        }
        let old_dests: BTreeMap<SocketAddr, &DestSettings> = old
            .map(|o| o.dests.iter().map(|d| (d.addr, &d.settings)).collect())
            .unwrap_or_default();
        let mut edits = Vec::new();
        let mut wanted = BTreeSet::new();
        for d in &svc.dests {
            wanted.insert(d.addr);
            match old_dests.get(&d.addr) {
                None => ops.push(Op::AddDest {
                    service: *key,
                    addr: d.addr,
                    settings: d.settings,
                }),
                Some(cur) if !d.settings.satisfied_by(cur) => edits.push(Op::EditDest {
                    service: *key,
                    addr: d.addr,
                    settings: d.settings,
                }),
                Some(_) => {}
            }
        }
        ops.extend(edits);
        for addr in old_dests.keys().filter(|a| !wanted.contains(a)) {
            ops.push(Op::DelDest {
                service: *key,
                addr: *addr,
            });
        }
    }
    ops
}

/// `table` as a dataplane lists it once it has applied `ops` without
/// error: a caller that keeps the table it last read need not read it
/// again after every change (a dump of 37,000 destinations costs more
/// than the changes it would confirm). New services and destinations
/// start with zero counters; an edited destination keeps its
/// connections, as the kernel keeps them (`__ip_vs_update_dest`).
pub fn apply_to(table: &mut Table, ops: &[Op]) {
    let services = &mut table.services;
    for op in ops {
        let key = *op.service();
        let at = services.binary_search_by_key(&key, |s| s.key);
        match (op, at) {
            (Op::AddService { settings, .. }, Err(i)) => {
                services.insert(i, Service::new(key, settings.clone()));
            }
            (Op::AddService { settings, .. } | Op::EditService { settings, .. }, Ok(i)) => {
                services[i].settings = settings.clone();
            }
            (Op::DelService { .. }, Ok(i)) => {
                services.remove(i);
            }
            (Op::AddDest { addr, settings, .. } | Op::EditDest { addr, settings, .. }, Ok(i)) => {
                let dests = &mut services[i].dests;
                match dests.binary_search_by_key(addr, |d| d.addr) {
                    Ok(j) => dests[j].settings = *settings,
                    Err(j) => dests.insert(j, Dest::new(*addr, *settings)),
                }
            }
            (Op::DelDest { addr, .. }, Ok(i)) => {
                let dests = &mut services[i].dests;
                if let Ok(j) = dests.binary_search_by_key(addr, |d| d.addr) {
                    dests.remove(j);
                }
            }
            // An operation on a service that is not there cannot have
            // been applied without error.
            (_, Err(_)) => {}
        }
    }
}

/// The narrow interface the reconciler drives: read the whole table,
/// apply operations. The kernel client implements it for IPVS
/// ([`crate::kernel::Kernel`]), [`crate::memory::Memory`] in memory;
/// another dataplane (nftables, XDP) would implement the same two calls.
pub trait Dataplane {
    type Error;

    /// The whole current table.
    fn dump(&mut self) -> Result<Table, Self::Error>;

    /// Applies the operations in order. On error, the operations the
    /// error does not name may have been applied.
    fn apply(&mut self, ops: &[Op]) -> Result<(), Self::Error>;
}

/// The kernel's connection synchronisation daemons
/// (`IPVS_CMD_NEW_DAEMON` / `DEL_DAEMON` / `GET_DAEMON`), driven like the
/// table: [`crate::kernel::Kernel`] in the kernel,
/// [`crate::memory::Memory`] in memory.
///
/// A trait of its own rather than more calls on [`Dataplane`]:
/// connection sync is IPVS's own multicast protocol (ip_vs_sync.c), not
/// part of a table of services, and a dataplane that is a table only
/// (nftables, XDP) would have nothing honest to put behind it. It shares
/// the dataplane's error type, so a caller that drives both has one kind
/// of error.
pub trait ConnectionSync: Dataplane {
    /// The daemons running: at most one master and one backup, the
    /// master first, as `ip_vs_genl_dump_daemons` lists them.
    fn sync_daemons(&mut self) -> Result<Vec<SyncDaemon>, Self::Error>;

    /// Starts a daemon. Refused when one of that role already runs
    /// (EEXIST, `start_sync_thread`): a daemon is never changed in place,
    /// it is stopped and started again.
    fn start_sync_daemon(&mut self, daemon: &SyncDaemon) -> Result<(), Self::Error>;

    /// Stops the daemon of `role`; refused when none runs (ESRCH,
    /// `stop_sync_thread`).
    fn stop_sync_daemon(&mut self, role: SyncRole) -> Result<(), Self::Error>;
}

/// Dumps, plans and applies; returns what was applied.
pub fn reconcile<D: Dataplane>(
    dataplane: &mut D,
    desired: &Table,
    options: Options,
) -> Result<Vec<Op>, D::Error> {
    let current = dataplane.dump()?;
    let ops = plan(desired, &current, options);
    if !ops.is_empty() {
        dataplane.apply(&ops)?;
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Family, Forwarding};

    fn svc(port: u16, dests: &[(u8, u32)]) -> Service {
        let key = ServiceKey::tcp(format!("10.0.0.1:{port}").parse().unwrap());
        let mut s = Service::new(key, ServiceSettings::new(Family::Ipv4, "wlc"));
        s.dests = dests
            .iter()
            .map(|(last, w)| {
                Dest::new(
                    format!("10.0.1.{last}:{port}").parse().unwrap(),
                    DestSettings::new(Forwarding::Masq, *w),
                )
            })
            .collect();
        s
    }

    #[test]
    fn a_weight_change_is_one_set_dest() {
        let current = Table::new(vec![svc(80, &[(1, 1), (2, 1)])]);
        let desired = Table::new(vec![svc(80, &[(1, 1), (2, 5)])]);
        let ops = plan(&desired, &current, Options::default());
        assert_eq!(ops.len(), 1, "{ops:?}");
        assert!(matches!(&ops[0], Op::EditDest { settings, .. } if settings.weight == 5));
    }

    #[test]
    fn a_forwarding_or_threshold_change_is_an_edit_not_a_replacement() {
        let current = Table::new(vec![svc(80, &[(1, 1)])]);
        let mut desired = current.clone();
        desired.services[0].dests[0].settings.forwarding = Forwarding::Route;
        desired.services[0].dests[0].settings.upper_threshold = 10;
        let ops = plan(&desired, &current, Options::default());
        assert!(matches!(ops.as_slice(), [Op::EditDest { .. }]), "{ops:?}");
    }

    #[test]
    fn a_scheduler_change_is_one_set_service() {
        let current = Table::new(vec![svc(80, &[(1, 1)])]);
        let mut desired = current.clone();
        desired.services[0].settings.scheduler = "rr".into();
        desired.services[0].settings.persistence = Some(60);
        let ops = plan(&desired, &current, Options::default());
        assert!(
            matches!(ops.as_slice(), [Op::EditService { .. }]),
            "{ops:?}"
        );
    }

    #[test]
    fn a_new_service_comes_before_its_destinations() {
        let desired = Table::new(vec![svc(80, &[(1, 1), (2, 1)])]);
        let ops = plan(&desired, &Table::default(), Options::default());
        assert!(matches!(ops[0], Op::AddService { .. }));
        assert!(ops[1..].iter().all(|o| matches!(o, Op::AddDest { .. })));
        assert_eq!(ops.len(), 3);
    }

    #[test]
    fn an_unnamed_service_is_left_alone_unless_pruning() {
        let current = Table::new(vec![svc(80, &[(1, 1)]), svc(81, &[(1, 1), (2, 1)])]);
        let desired = Table::new(vec![svc(80, &[(1, 1)])]);
        assert!(plan(&desired, &current, Options::default()).is_empty());
        let ops = plan(
            &desired,
            &current,
            Options {
                prune: true,
                ..Options::default()
            },
        );
        // One delete for the service; its destinations go with it.
        assert_eq!(
            ops,
            vec![Op::DelService {
                key: current.services[1].key
            }]
        );
    }

    #[test]
    fn a_service_outside_the_managed_scope_is_left_alone_even_when_pruning() {
        let ours = svc(80, &[(1, 1)]);
        let foreign = svc(81, &[(1, 1), (2, 1)]);
        let retired = svc(82, &[(1, 1)]);
        let current = Table::new(vec![ours.clone(), foreign.clone(), retired.clone()]);
        // The desired table names only ours, with a change; the scope
        // also holds a service no longer desired (to be deleted).
        let desired = Table::new(vec![svc(80, &[(1, 7)])]);
        let options = Options {
            prune: true,
            managed: Some([ours.key, retired.key].into()),
        };
        let ops = plan(&desired, &current, options);
        assert!(ops.iter().all(|o| *o.service() != foreign.key), "{ops:?}");
        assert!(
            ops.contains(&Op::DelService { key: retired.key }),
            "{ops:?}"
        );
        assert!(
            ops.iter()
                .any(|o| matches!(o, Op::EditDest { settings, .. } if settings.weight == 7)),
            "{ops:?}"
        );
        // A desired service is owned by being named, in the scope or not:
        // it is compared with the table, not added a second time.
        let options = Options {
            prune: true,
            managed: Some(BTreeSet::new()),
        };
        let ops = plan(&desired, &current, options);
        assert!(
            matches!(ops.as_slice(), [Op::EditDest { service, .. }] if *service == ours.key),
            "{ops:?}"
        );
    }

    #[test]
    fn replacing_every_real_server_adds_before_it_deletes() {
        let current = Table::new(vec![svc(80, &[(1, 1), (2, 1)])]);
        let desired = Table::new(vec![svc(80, &[(3, 1), (4, 1)])]);
        let ops = plan(&desired, &current, Options::default());
        let kinds: Vec<&str> = ops
            .iter()
            .map(|o| match o {
                Op::AddDest { .. } => "add",
                Op::DelDest { .. } => "del",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["add", "add", "del", "del"]);
    }

    #[test]
    fn counters_do_not_make_a_difference() {
        let desired = Table::new(vec![svc(80, &[(1, 1)])]);
        let mut current = desired.clone();
        current.services[0].stats.conns = 10;
        current.services[0].dests[0].counters.active_conns = 3;
        assert!(plan(&desired, &current, Options::default()).is_empty());
    }
}
