//! The VIPs of this node's instances, placed through their reconciler
//! ([`crate::vip`]): what every master wants against what the kernel
//! holds, applied over rtnetlink. The daemon syncs on every takeover and
//! fallback, after a reload, at start-up (the cleanup after a vrrpd
//! killed with -9) and at its end; `tandem-vrrpd release` runs the same
//! plan with nobody master. A failed operation is counted on its instance
//! and tried again a second later, never only logged.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tandem_model::config::Config;
use tracing::{error, info, warn};

use super::Daemon;
use crate::binding::{Binding, managed_vips, masters_vips, vmac_name};
use crate::input::DaemonError;
use crate::netlink::{Netlink, NetlinkError, virtual_mac};
use crate::node::InstanceId;
use crate::vip::{self, Addresses, Have, Op, Vip};

/// How soon address operations that failed are tried again.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// Whose VIPs stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Every master's: the normal case.
    Masters,
    /// Nobody's: before the election (a dead vrrpd's leftovers) and at
    /// the very end of a stop.
    Nothing,
}

/// The instance a VIP belongs to, for logs and counters.
fn owner<'a>(bindings: impl Iterator<Item = &'a Binding>, v: &Vip) -> Option<&'a Binding> {
    bindings.into_iter().find(|b| {
        b.vips
            .iter()
            .any(|x| x.addr == v.addr && x.ifname == v.ifname)
    })
}

impl Daemon {
    /// A takeover's fast path: instance `id`'s VIPs added at once, one
    /// request each, on interfaces whose index the link watcher already
    /// knows, without first reading what the interfaces hold (the full
    /// sync reads the link and its addresses first: three round trips
    /// per interface, each slow on a busy director, all before the
    /// advert and the gratuitous ARPs, while clients still send to the
    /// dead master). The full sync follows right after the advert and
    /// the announcements are out (`vip_retry`, due now), and does
    /// whatever this skipped: an address owner's addresses, an interface
    /// not yet seen, a failed add.
    pub(crate) async fn add_vips_now(&mut self, id: InstanceId) {
        let Some(b) = self.bindings.get(&id) else {
            return;
        };
        if !b.cfg.address_owner {
            let name = b.cfg.name.clone();
            let vips: Vec<Vip> = b
                .vips
                .iter()
                .filter(|v| !self.placed.contains(*v))
                .cloned()
                .collect();
            for v in vips {
                let Some(index) = self.links.get(&v.ifname).map(|l| l.index) else {
                    continue;
                };
                // An address already there answers EEXIST, taken as done.
                let added = self
                    .nl
                    .add_address(index, v.addr, v.prefix_len, v.label.as_deref())
                    .await;
                if added.is_ok() {
                    info!(instance = %name, "{}", Op::Add(v.clone()));
                    self.placed.insert(v);
                }
            }
        }
        self.vip_retry = Some(Instant::now());
    }

    /// Before the election: every instance finds which of its VIPs the
    /// interfaces hold already, and adopts them ([`Instance::adopt_addresses`]).
    /// A read that fails adopts nothing: the start-up sync then cleans up
    /// as if nothing was there, the safe side.
    ///
    /// [`Instance::adopt_addresses`]: crate::fsm::Instance::adopt_addresses
    pub(crate) async fn adopt_vips(&mut self) {
        let ifnames: BTreeSet<String> = self
            .bindings
            .values()
            .flat_map(|b| b.vips.iter().map(|v| v.ifname.clone()))
            .collect();
        let have = match KernelAddresses::new(&self.nl).dump(&ifnames).await {
            Ok(h) => h,
            Err(e) => {
                warn!("cannot read the interfaces' addresses before the election: {e}");
                return;
            }
        };
        let present = |v: &Vip| {
            have.get(&v.ifname)
                .is_some_and(|a| a.contains(&(v.addr, v.prefix_len)))
        };
        let ids: Vec<InstanceId> = self.bindings.keys().copied().collect();
        for id in ids {
            let Some(b) = self.bindings.get(&id) else {
                continue;
            };
            if b.cfg.address_owner {
                continue;
            }
            let found: Vec<Vip> = b.vips.iter().filter(|v| present(v)).cloned().collect();
            if found.is_empty() {
                continue;
            }
            let Some(m) = self.node.get_mut(id) else {
                continue;
            };
            m.inst.adopt_addresses();
            let name = b.cfg.name.clone();
            for v in found {
                info!(
                    instance = %name,
                    "{v} is on the interface already: kept until a master is heard"
                );
                self.placed.insert(v);
            }
        }
    }

    /// Whether this node placed (or adopted) any of instance `id`'s VIPs.
    pub(crate) fn holds_placed(&self, id: InstanceId) -> bool {
        self.bindings
            .get(&id)
            .is_some_and(|b| b.vips.iter().any(|v| self.placed.contains(v)))
    }

    /// Makes the interfaces hold what `keep` says, and nothing else vrrpd
    /// manages.
    pub(crate) async fn sync_vips(&mut self, keep: Keep) {
        let want: Vec<Vip> = match keep {
            Keep::Nothing => Vec::new(),
            Keep::Masters => masters_vips(&self.node, &self.bindings),
        };
        let mut managed = managed_vips(self.bindings.values());
        managed.extend(self.placed.iter().cloned());
        let mut plane = KernelAddresses::new(&self.nl);
        let outcome = vip::sync(&mut plane, &want, &managed).await;
        let before_election = keep == Keep::Nothing && self.shutting_down.is_none();
        for op in &outcome.applied {
            let name = owner(self.bindings.values(), op.vip()).map(|b| b.cfg.name.clone());
            let name = name.as_deref().unwrap_or("-");
            match op {
                Op::Add(v) => {
                    self.placed.insert(v.clone());
                    info!(instance = name, "{op}");
                }
                Op::Del(v) => {
                    self.placed.remove(v);
                    if before_election {
                        info!(
                            instance = name,
                            "removing {} from {}: left behind by an earlier run", v.addr, v.ifname
                        );
                    } else {
                        info!(instance = name, "{op}");
                    }
                }
            }
        }
        for (op, e) in &outcome.failed {
            let b = self
                .bindings
                .values_mut()
                .find(|b| b.vips.iter().any(|x| x.addr == op.vip().addr));
            match b {
                Some(b) => {
                    b.counters.address_failures += 1;
                    error!(instance = %b.cfg.name, "{e}; trying again in {RETRY:?}");
                }
                None => error!("{e}; trying again in {RETRY:?}"),
            }
        }
        if let Some(e) = &outcome.unreadable {
            error!("cannot read the interfaces' addresses: {e}; trying again in {RETRY:?}");
        }
        let waiting: BTreeSet<String> = outcome.waiting.iter().map(|v| v.ifname.clone()).collect();
        for v in &outcome.waiting {
            if !self.vip_waiting.contains(&v.ifname) {
                let name = owner(self.bindings.values(), v).map(|b| b.cfg.name.clone());
                warn!(
                    instance = name.as_deref().unwrap_or("-"),
                    "cannot add {}: no interface {} (added when it appears)", v.addr, v.ifname
                );
            }
        }
        self.vip_waiting = waiting;
        self.vip_retry = outcome.incomplete().then(|| Instant::now() + RETRY);
    }
}

/// The kernel's addresses over rtnetlink, for the reconciler.
pub struct KernelAddresses<'a> {
    nl: &'a Netlink,
    index: HashMap<String, u32>,
}

impl<'a> KernelAddresses<'a> {
    pub fn new(nl: &'a Netlink) -> Self {
        KernelAddresses {
            nl,
            index: HashMap::new(),
        }
    }
}

impl Addresses for KernelAddresses<'_> {
    type Error = NetlinkError;

    async fn dump(&mut self, ifnames: &BTreeSet<String>) -> Result<Have, NetlinkError> {
        let mut have = Have::new();
        for name in ifnames {
            let Some(link) = self.nl.link(name).await? else {
                continue;
            };
            self.index.insert(name.clone(), link.index);
            let addrs = self.nl.addresses(link.index).await?;
            have.insert(
                name.clone(),
                addrs.into_iter().map(|a| (a.addr, a.prefix_len)).collect(),
            );
        }
        Ok(have)
    }

    async fn apply(&mut self, op: &Op) -> Result<(), NetlinkError> {
        let v = op.vip();
        let index = match self.index.get(&v.ifname) {
            Some(i) => *i,
            None => match self.nl.link(&v.ifname).await? {
                Some(l) => l.index,
                None => {
                    return Err(NetlinkError::Request {
                        what: op.to_string(),
                        cause: std::io::Error::from_raw_os_error(libc::ENODEV),
                    });
                }
            },
        };
        match op {
            Op::Add(v) => {
                self.nl
                    .add_address(index, v.addr, v.prefix_len, v.label.as_deref())
                    .await
            }
            Op::Del(v) => self.nl.del_address(index, v.addr, v.prefix_len).await,
        }
    }
}

/// What [`release`] did on this host.
#[derive(Debug, Default)]
pub struct Released {
    /// One line per address or macvlan removed.
    pub removed: Vec<String>,
    /// What could not be removed; the rest was still attempted.
    pub errors: Vec<String>,
}

/// Takes off this host what a vrrpd of `config` puts on it while master:
/// the virtual IPs of every instance (address owners excepted: those are
/// the interface's own addresses) and the virtual-MAC macvlans. A vrrpd
/// that stops cleanly has done it already; one killed with -9 or crashed
/// has not, and its VIPs would keep answering ARP next to the new master.
/// `tandem-vrrpd release` runs this as the systemd unit's stop hook.
///
/// The sysctls a virtual MAC sets on the base interface (`arp_ignore`,
/// `arp_filter`, `arp_announce`) stay: the values they replaced died with
/// the daemon, and the next vrrpd sets them again anyway.
pub async fn release(config: &Config) -> Result<Released, DaemonError> {
    let nl = Netlink::connect()?;
    let mut out = Released::default();
    let bindings: Vec<Binding> = config.vrrp_instances.iter().map(Binding::new).collect();
    let managed = managed_vips(bindings.iter());
    let outcome = vip::sync(&mut KernelAddresses::new(&nl), &[], &managed).await;
    let name_of =
        |v: &Vip| owner(bindings.iter(), v).map_or("-".to_string(), |b| b.cfg.name.clone());
    for op in &outcome.applied {
        let v = op.vip();
        out.removed.push(format!(
            "{}: {}/{} from {}",
            name_of(v),
            v.addr,
            v.prefix_len,
            v.ifname
        ));
    }
    for (op, e) in &outcome.failed {
        out.errors.push(format!("{}: {e}", name_of(op.vip())));
    }
    if let Some(e) = outcome.unreadable {
        out.errors.push(e);
    }
    for cfg in &config.vrrp_instances {
        let Some(vmac) = vmac_name(cfg) else {
            continue;
        };
        let found = async {
            let base = nl.link(&cfg.interface).await?;
            let link = nl.link(&vmac).await?;
            Ok::<_, NetlinkError>(base.zip(link))
        };
        match found.await {
            // Only the macvlan vrrpd would have made: on this base, with
            // the instance's virtual MAC. Anything else under that name is
            // someone else's.
            Ok(Some((base, link)))
                if link.lower == Some(base.index)
                    && link.mac == virtual_mac(cfg.vrid(), cfg.is_ipv6()) =>
            {
                match nl.delete_link(link.index).await {
                    Ok(()) => out
                        .removed
                        .push(format!("{}: macvlan {vmac} on {}", cfg.name, base.name)),
                    Err(e) => out.errors.push(format!("{}: {e}", cfg.name)),
                }
            }
            Ok(_) => {}
            Err(e) => out.errors.push(format!("{}: {e}", cfg.name)),
        }
    }
    Ok(out)
}
