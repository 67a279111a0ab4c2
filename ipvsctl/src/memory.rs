//! A dataplane held in memory, with the kernel's rules for what may be
//! added, changed and deleted (`ip_vs_genl_set_cmd`,
//! net/netfilter/ipvs/ip_vs_ctl.c): a service or destination that exists
//! cannot be added again, and one that does not cannot be changed or
//! deleted. It runs connection sync daemons the same way
//! (`start_sync_thread` / `stop_sync_thread`, ip_vs_sync.c). For tests of
//! anything that drives a [`Dataplane`], and for `--dry-run` style
//! previews.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::reconcile::{ConnectionSync, Dataplane, Op};
use crate::types::{
    Dest, DestCounters, DestSettings, Family, Forwarding, Service, ServiceKey, ServiceSettings,
    SyncDaemon, SyncRole, Table,
};

/// The multicast group, port and TTL a sync daemon gets when none is
/// asked for (`IP_VS_SYNC_GROUP` 224.0.0.81, `IP_VS_SYNC_PORT` 8848, TTL
/// 1, in `start_sync_thread`).
const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
const SYNC_PORT: u16 = 8848;
const SYNC_TTL: u8 = 1;
/// The MTU a sync message is sized for when no length is asked for:
/// always 1500 for a master, the interface's (at least 1500) for a
/// backup; memory has no interfaces, so 1500 for both.
const SYNC_MTU: u16 = 1500;

/// Why the in-memory dataplane refused an operation: the errno the
/// kernel gives in the same case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("{0}: service already exists (EEXIST)")]
    ServiceExists(ServiceKey),
    #[error("{0}: no such service (ESRCH)")]
    NoService(ServiceKey),
    #[error("{service}: real server {addr} already exists (EEXIST)")]
    DestExists {
        service: ServiceKey,
        addr: SocketAddr,
    },
    #[error("{service}: no real server {addr} (ENOENT)")]
    NoDest {
        service: ServiceKey,
        addr: SocketAddr,
    },
    #[error(
        "{service}: real server {addr} is of another address family: only tunnel forwarding \
         may mix them, and not while a sync daemon runs (EINVAL)"
    )]
    MixedFamily {
        service: ServiceKey,
        addr: SocketAddr,
    },
    #[error("a {} sync daemon is already running (EEXIST)", .0.name())]
    DaemonRunning(SyncRole),
    #[error("no {} sync daemon is running (ESRCH)", .0.name())]
    NoDaemon(SyncRole),
    #[error("sync daemon: there is no interface {0} (ENODEV)")]
    NoInterface(String),
    #[error("sync daemon: {0} is not a multicast group (EINVAL)")]
    NotMulticast(IpAddr),
    #[error(
        "sync daemon: a real server is of another address family than its service, which \
         the sync protocol cannot carry (EINVAL)"
    )]
    MixedFamilyTable,
}

#[derive(Clone, Debug, Default)]
struct Entry {
    settings: Option<ServiceSettings>,
    dests: BTreeMap<SocketAddr, (DestSettings, DestCounters)>,
}

/// The table and the sync daemons in memory. Counts what it was asked
/// to do.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    services: BTreeMap<ServiceKey, Entry>,
    master: Option<SyncDaemon>,
    backup: Option<SyncDaemon>,
    /// The interfaces a sync daemon may use; `None`: any name.
    interfaces: Option<BTreeSet<String>>,
    /// Operations applied so far (failed ones included).
    pub ops_applied: usize,
    /// Calls to [`Dataplane::dump`].
    pub dumps: usize,
    /// Sync daemons started and stopped so far (failed tries included).
    pub daemon_changes: usize,
}

impl Memory {
    /// A dataplane holding `table`, counters included (connections a
    /// restarted daemon finds).
    pub fn new(table: &Table) -> Memory {
        let mut m = Memory::default();
        for s in &table.services {
            m.services.insert(
                s.key,
                Entry {
                    settings: Some(s.settings.clone()),
                    dests: s
                        .dests
                        .iter()
                        .map(|d| (d.addr, (d.settings, d.counters)))
                        .collect(),
                },
            );
        }
        m
    }

    /// Only these interfaces exist: a sync daemon on another is refused
    /// as the kernel refuses it (ENODEV).
    pub fn with_interfaces<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        names: I,
    ) -> Memory {
        self.interfaces = Some(names.into_iter().map(Into::into).collect());
        self
    }

    pub fn table(&self) -> Table {
        Table::new(
            self.services
                .iter()
                .filter_map(|(k, e)| {
                    let mut s = Service::new(*k, e.settings.clone()?);
                    s.dests = e
                        .dests
                        .iter()
                        .map(|(a, (settings, counters))| Dest {
                            addr: *a,
                            settings: *settings,
                            counters: *counters,
                        })
                        .collect();
                    Some(s)
                })
                .collect(),
        )
    }

    /// Sets what the kernel would count for a destination (its
    /// connections, as traffic would make them). They stay across edits
    /// of the destination and go with it.
    pub fn set_counters(
        &mut self,
        service: &ServiceKey,
        addr: SocketAddr,
        counters: DestCounters,
    ) -> Result<(), MemoryError> {
        let entry = self
            .services
            .get_mut(service)
            .ok_or(MemoryError::NoService(*service))?;
        let (_, c) = entry.dests.get_mut(&addr).ok_or(MemoryError::NoDest {
            service: *service,
            addr,
        })?;
        *c = counters;
        Ok(())
    }

    fn syncing(&self) -> bool {
        self.master.is_some() || self.backup.is_some()
    }

    /// `ip_vs_genl_set_cmd`: a destination of another family than its
    /// service is only forwarded through a tunnel, and never while
    /// connections are synced (the sync protocol has no room for it).
    fn check_family(
        &self,
        key: ServiceKey,
        addr: SocketAddr,
        settings: &DestSettings,
    ) -> Result<(), MemoryError> {
        if Family::of(addr.ip()) != key.family()
            && (self.syncing() || settings.forwarding != Forwarding::Tunnel)
        {
            return Err(MemoryError::MixedFamily { service: key, addr });
        }
        Ok(())
    }

    fn one(&mut self, op: &Op) -> Result<(), MemoryError> {
        self.ops_applied += 1;
        let key = *op.service();
        match op {
            Op::AddService { settings, .. } => {
                if self.services.contains_key(&key) {
                    return Err(MemoryError::ServiceExists(key));
                }
                self.services.insert(
                    key,
                    Entry {
                        settings: Some(settings.clone()),
                        dests: BTreeMap::new(),
                    },
                );
                return Ok(());
            }
            Op::DelService { .. } => {
                return self
                    .services
                    .remove(&key)
                    .map(|_| ())
                    .ok_or(MemoryError::NoService(key));
            }
            _ => {}
        }
        if !self.services.contains_key(&key) {
            return Err(MemoryError::NoService(key));
        }
        if let Op::AddDest { addr, settings, .. } | Op::EditDest { addr, settings, .. } = op {
            self.check_family(key, *addr, settings)?;
        }
        let entry = self.services.get_mut(&key).expect("checked above");
        match op {
            Op::EditService { settings, .. } => entry.settings = Some(settings.clone()),
            Op::AddDest { addr, settings, .. } => {
                if entry.dests.contains_key(addr) {
                    return Err(MemoryError::DestExists {
                        service: key,
                        addr: *addr,
                    });
                }
                entry
                    .dests
                    .insert(*addr, (*settings, DestCounters::default()));
            }
            // An edit keeps the destination's connections
            // (`__ip_vs_update_dest` changes it in place).
            Op::EditDest { addr, settings, .. } => match entry.dests.get_mut(addr) {
                Some((d, _)) => *d = *settings,
                None => {
                    return Err(MemoryError::NoDest {
                        service: key,
                        addr: *addr,
                    });
                }
            },
            Op::DelDest { addr, .. } => {
                if entry.dests.remove(addr).is_none() {
                    return Err(MemoryError::NoDest {
                        service: key,
                        addr: *addr,
                    });
                }
            }
            Op::AddService { .. } | Op::DelService { .. } => unreachable!("handled above"),
        }
        Ok(())
    }
}

impl Dataplane for Memory {
    type Error = MemoryError;

    fn dump(&mut self) -> Result<Table, MemoryError> {
        self.dumps += 1;
        Ok(self.table())
    }

    /// Like the kernel client's batches: every operation is tried, the
    /// first failure is reported.
    fn apply(&mut self, ops: &[Op]) -> Result<(), MemoryError> {
        let mut first = None;
        for op in ops {
            if let Err(e) = self.one(op) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl ConnectionSync for Memory {
    fn sync_daemons(&mut self) -> Result<Vec<SyncDaemon>, MemoryError> {
        Ok(self.master.iter().chain(&self.backup).cloned().collect())
    }

    /// In `ip_vs_genl_new_daemon` and `start_sync_thread`'s order: the
    /// group must be multicast, the table must not mix families, the
    /// interface must exist, and the role must be free. What was not
    /// asked for is filled in with the kernel's defaults, as its listing
    /// shows them.
    fn start_sync_daemon(&mut self, daemon: &SyncDaemon) -> Result<(), MemoryError> {
        self.daemon_changes += 1;
        if let Some(group) = daemon.group {
            if !group.is_multicast() {
                return Err(MemoryError::NotMulticast(group));
            }
        }
        let mixed = self
            .services
            .iter()
            .any(|(k, e)| e.dests.keys().any(|a| Family::of(a.ip()) != k.family()));
        if mixed {
            return Err(MemoryError::MixedFamilyTable);
        }
        let known = match &self.interfaces {
            Some(names) => names.contains(&daemon.interface),
            None => !daemon.interface.is_empty(),
        };
        if !known {
            return Err(MemoryError::NoInterface(daemon.interface.clone()));
        }
        let group = daemon.group.unwrap_or(IpAddr::V4(SYNC_GROUP));
        // IP and UDP headers come off the MTU (`hlen`); an asked length is
        // clamped between the smallest message and what a datagram holds.
        let hlen: u16 = if group.is_ipv6() { 40 + 8 } else { 20 + 8 };
        let min = match daemon.role {
            SyncRole::Master => 1,
            SyncRole::Backup => 1024,
        };
        let max_len = daemon
            .max_len
            .map_or(SYNC_MTU - hlen, |l| l.clamp(min, u16::MAX - hlen));
        let running = SyncDaemon {
            role: daemon.role,
            interface: daemon.interface.clone(),
            sync_id: daemon.sync_id,
            max_len: Some(max_len),
            group: Some(group),
            port: Some(daemon.port.filter(|p| *p != 0).unwrap_or(SYNC_PORT)),
            ttl: Some(daemon.ttl.filter(|t| *t != 0).unwrap_or(SYNC_TTL)),
        };
        let slot = match daemon.role {
            SyncRole::Master => &mut self.master,
            SyncRole::Backup => &mut self.backup,
        };
        if slot.is_some() {
            return Err(MemoryError::DaemonRunning(daemon.role));
        }
        *slot = Some(running);
        Ok(())
    }

    fn stop_sync_daemon(&mut self, role: SyncRole) -> Result<(), MemoryError> {
        self.daemon_changes += 1;
        let slot = match role {
            SyncRole::Master => &mut self.master,
            SyncRole::Backup => &mut self.backup,
        };
        slot.take().map(|_| ()).ok_or(MemoryError::NoDaemon(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(role: SyncRole, interface: &str) -> SyncDaemon {
        SyncDaemon {
            role,
            interface: interface.into(),
            sync_id: 7,
            max_len: None,
            group: None,
            port: None,
            ttl: None,
        }
    }

    #[test]
    fn one_master_and_one_backup_may_run_but_not_two_of_a_role() {
        let mut m = Memory::default();
        m.start_sync_daemon(&daemon(SyncRole::Master, "eth0"))
            .unwrap();
        m.start_sync_daemon(&daemon(SyncRole::Backup, "eth1"))
            .unwrap();
        assert_eq!(
            m.start_sync_daemon(&daemon(SyncRole::Master, "eth1")),
            Err(MemoryError::DaemonRunning(SyncRole::Master))
        );
        let roles: Vec<SyncRole> = m.sync_daemons().unwrap().iter().map(|d| d.role).collect();
        assert_eq!(roles, [SyncRole::Master, SyncRole::Backup]);
        m.stop_sync_daemon(SyncRole::Master).unwrap();
        assert_eq!(
            m.stop_sync_daemon(SyncRole::Master),
            Err(MemoryError::NoDaemon(SyncRole::Master))
        );
        assert_eq!(m.sync_daemons().unwrap().len(), 1);
        assert_eq!(m.daemon_changes, 5);
    }

    #[test]
    fn a_started_daemon_lists_with_the_kernel_s_defaults() {
        let mut m = Memory::default();
        m.start_sync_daemon(&daemon(SyncRole::Backup, "eth0"))
            .unwrap();
        let d = &m.sync_daemons().unwrap()[0];
        assert_eq!(d.group, Some(IpAddr::V4(SYNC_GROUP)));
        assert_eq!(
            (d.port, d.ttl, d.max_len),
            (Some(8848), Some(1), Some(1472))
        );
        let mut small = daemon(SyncRole::Master, "eth0");
        small.max_len = Some(10);
        m.start_sync_daemon(&small).unwrap();
        assert_eq!(m.sync_daemons().unwrap()[0].max_len, Some(10));
    }

    #[test]
    fn a_daemon_on_a_missing_interface_or_a_unicast_group_is_refused() {
        let mut m = Memory::default().with_interfaces(["eth0"]);
        assert_eq!(
            m.start_sync_daemon(&daemon(SyncRole::Master, "eth9")),
            Err(MemoryError::NoInterface("eth9".into()))
        );
        let mut d = daemon(SyncRole::Master, "eth0");
        d.group = Some("10.0.0.1".parse().unwrap());
        assert!(matches!(
            m.start_sync_daemon(&d),
            Err(MemoryError::NotMulticast(_))
        ));
        assert!(m.sync_daemons().unwrap().is_empty());
    }

    #[test]
    fn mixed_families_and_connection_sync_exclude_each_other() {
        let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        let tunnel = DestSettings::new(Forwarding::Tunnel, 1);
        let add = |addr| Op::AddDest {
            service: key,
            addr,
            settings: tunnel,
        };
        let mut m = Memory::default();
        m.apply(&[Op::AddService {
            key,
            settings: ServiceSettings::new(Family::Ipv4, "rr"),
        }])
        .unwrap();
        // Only a tunnel carries IPv6 to an IPv4 service.
        assert!(matches!(
            m.apply(&[Op::AddDest {
                service: key,
                addr: v6,
                settings: DestSettings::new(Forwarding::Route, 1),
            }]),
            Err(MemoryError::MixedFamily { .. })
        ));
        m.apply(&[add(v6)]).unwrap();
        assert_eq!(
            m.start_sync_daemon(&daemon(SyncRole::Backup, "eth0")),
            Err(MemoryError::MixedFamilyTable)
        );
        m.apply(&[Op::DelDest {
            service: key,
            addr: v6,
        }])
        .unwrap();
        m.start_sync_daemon(&daemon(SyncRole::Backup, "eth0"))
            .unwrap();
        assert!(matches!(
            m.apply(&[add(v6)]),
            Err(MemoryError::MixedFamily { .. })
        ));
    }

    #[test]
    fn an_edit_keeps_a_destination_s_connections_and_a_delete_drops_them() {
        let key = ServiceKey::tcp("10.0.0.1:80".parse().unwrap());
        let addr: SocketAddr = "10.0.1.1:80".parse().unwrap();
        let mut svc = Service::new(key, ServiceSettings::new(Family::Ipv4, "rr"));
        svc.dests = vec![Dest::new(addr, DestSettings::new(Forwarding::Route, 5))];
        let mut m = Memory::new(&Table::new(vec![svc]));
        let busy = DestCounters {
            active_conns: 3,
            ..DestCounters::default()
        };
        m.set_counters(&key, addr, busy).unwrap();
        m.apply(&[Op::EditDest {
            service: key,
            addr,
            settings: DestSettings::new(Forwarding::Route, 0),
        }])
        .unwrap();
        assert_eq!(m.table().services[0].dests[0].counters.active_conns, 3);
        m.apply(&[
            Op::DelDest { service: key, addr },
            Op::AddDest {
                service: key,
                addr,
                settings: DestSettings::new(Forwarding::Route, 5),
            },
        ])
        .unwrap();
        assert_eq!(m.table().services[0].dests[0].counters.active_conns, 0);
    }
}
