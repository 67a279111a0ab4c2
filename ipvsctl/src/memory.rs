//! A dataplane held in memory, with the kernel's rules for what may be
//! added, changed and deleted (`ip_vs_genl_set_cmd`,
//! net/netfilter/ipvs/ip_vs_ctl.c): a service or destination that exists
//! cannot be added again, and one that does not cannot be changed or
//! deleted. For tests of anything that drives a [`Dataplane`], and for
//! `--dry-run` style previews.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::reconcile::{Dataplane, Op};
use crate::types::{Dest, DestSettings, Service, ServiceKey, ServiceSettings, Table};

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
}

#[derive(Clone, Debug, Default)]
struct Entry {
    settings: Option<ServiceSettings>,
    dests: BTreeMap<SocketAddr, DestSettings>,
}

/// The table in memory. Counts what it was asked to do.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    services: BTreeMap<ServiceKey, Entry>,
    /// Operations applied so far (failed ones included).
    pub ops_applied: usize,
    /// Calls to [`Dataplane::dump`].
    pub dumps: usize,
}

impl Memory {
    pub fn new(table: &Table) -> Memory {
        let mut m = Memory::default();
        for s in &table.services {
            m.services.insert(
                s.key,
                Entry {
                    settings: Some(s.settings.clone()),
                    dests: s.dests.iter().map(|d| (d.addr, d.settings)).collect(),
                },
            );
        }
        m
    }

    pub fn table(&self) -> Table {
        Table::new(
            self.services
                .iter()
                .filter_map(|(k, e)| {
                    let mut s = Service::new(*k, e.settings.clone()?);
                    s.dests = e.dests.iter().map(|(a, d)| Dest::new(*a, *d)).collect();
                    Some(s)
                })
                .collect(),
        )
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
        let entry = self
            .services
            .get_mut(&key)
            .ok_or(MemoryError::NoService(key))?;
        match op {
            Op::EditService { settings, .. } => entry.settings = Some(settings.clone()),
            Op::AddDest { addr, settings, .. } => {
                if entry.dests.contains_key(addr) {
                    return Err(MemoryError::DestExists {
                        service: key,
                        addr: *addr,
                    });
                }
                entry.dests.insert(*addr, *settings);
            }
            Op::EditDest { addr, settings, .. } => match entry.dests.get_mut(addr) {
                Some(d) => *d = *settings,
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
