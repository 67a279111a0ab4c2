//! The virtual-MAC macvlans (RFC 5798 7.3) and the sysctls they need, as a
//! reconciler, sans IO: the macvlans the instances want and what the
//! kernel has go in, the operations come out, in the order that keeps the
//! shared MAC quiet until it is configured.
//!
//! Rules:
//! - A macvlan is created down, configured (its sysctls; for IPv6 the
//!   adverts' source address), then brought up: a frame from the shared
//!   virtual MAC before that would pull the switch's forwarding entry to a
//!   backup.
//! - One of the wanted name with another MAC or lower device (the instance
//!   changed family or interface) is deleted and made again.
//! - Only macvlans this daemon created are deleted when no longer wanted;
//!   a link of that name made by someone else is theirs until wanted.
//! - The base interface of an IPv4 virtual MAC must not answer ARP for the
//!   VIPs with its own MAC (Linux answers for any local address by
//!   default), nor ask with a VIP as the sender: `arp_ignore=1`,
//!   `arp_filter=1`, `arp_announce=2`. These are the interface's own
//!   settings: the applier keeps what they were, to put back at the end.
//!   IPv6 needs nothing there: a neighbour solicitation is answered only
//!   for the receiving interface's own addresses.
//! - On an IPv6 macvlan, an address other than the adverts' source and
//!   the VIPs is a source it used before (the link-local address changed):
//!   it goes. VIPs are [`crate::vip`]'s.
//! - Planning against the result of applying a plan gives nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;

/// A macvlan an instance wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub name: String,
    pub base: String,
    pub mac: [u8; 6],
    pub v6: bool,
    /// IPv6: the adverts' source, carried by the macvlan they leave from.
    pub source: Option<IpAddr>,
}

/// A link as the kernel has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub mac: [u8; 6],
    /// A macvlan's lower device.
    pub lower: Option<u32>,
    pub up: bool,
    pub addrs: Vec<(IpAddr, u8)>,
}

/// What the kernel has: links by name (absent: no such link), and sysctl
/// values by path under /proc/sys (absent: unreadable, e.g. the link does
/// not exist yet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Have {
    pub links: BTreeMap<String, LinkState>,
    pub sysctls: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Delete {
        name: String,
    },
    /// Created down, in private mode on `base`.
    Create {
        name: String,
        base: String,
        mac: [u8; 6],
    },
    /// `restore`: the base interface's own setting, put back at the end.
    Sysctl {
        path: String,
        value: String,
        restore: bool,
    },
    AddSource {
        name: String,
        addr: IpAddr,
    },
    DelAddress {
        name: String,
        addr: IpAddr,
        prefix_len: u8,
    },
    Up {
        name: String,
    },
}

impl Op {
    /// The link an operation is for (a sysctl's, from its path).
    pub fn link(&self) -> &str {
        match self {
            Op::Delete { name }
            | Op::Create { name, .. }
            | Op::AddSource { name, .. }
            | Op::DelAddress { name, .. }
            | Op::Up { name } => name,
            Op::Sysctl { path, .. } => path.split('/').nth(3).unwrap_or(""),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Delete { name } => write!(f, "deleting {name}"),
            Op::Create { name, base, mac } => write!(
                f,
                "creating macvlan {name} on {base} with {}",
                mac.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            ),
            Op::Sysctl { path, value, .. } => write!(f, "setting {path} to {value}"),
            Op::AddSource { name, addr } => write!(f, "adding source {addr} to {name}"),
            Op::DelAddress {
                name,
                addr,
                prefix_len,
            } => write!(f, "removing old source {addr}/{prefix_len} from {name}"),
            Op::Up { name } => write!(f, "bringing {name} up"),
        }
    }
}

/// The settings of a macvlan itself, set while it is down. They go with
/// it: nothing to put back.
fn own_sysctls(w: &Want) -> Vec<(String, &'static str)> {
    let n = &w.name;
    if w.v6 {
        // RFC 5798 7.4: no link-local address of its own (the EUI-64 of the
        // virtual MAC would be the same on every router); no router
        // solicitations, no addresses from router advertisements.
        vec![
            (format!("net/ipv6/conf/{n}/addr_gen_mode"), "1"),
            (format!("net/ipv6/conf/{n}/accept_ra"), "0"),
        ]
    } else {
        // IPv6 on an IPv4 macvlan would send DAD and router solicitations
        // from the virtual MAC, also on the backup.
        vec![
            (format!("net/ipv6/conf/{n}/disable_ipv6"), "1"),
            (format!("net/ipv4/conf/{n}/arp_ignore"), "1"),
            (format!("net/ipv4/conf/{n}/accept_local"), "1"),
            (format!("net/ipv4/conf/{n}/rp_filter"), "0"),
        ]
    }
}

fn base_sysctls(base: &str) -> Vec<(String, &'static str)> {
    ["arp_ignore", "arp_filter", "arp_announce"]
        .iter()
        .zip(["1", "1", "2"])
        .map(|(k, v)| (format!("net/ipv4/conf/{base}/{k}"), v))
        .collect()
}

/// The sysctl paths a plan for `want` reads.
pub fn sysctl_paths(want: &[Want]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for w in want {
        out.extend(own_sysctls(w).into_iter().map(|(p, _)| p));
        if !w.v6 {
            out.extend(base_sysctls(&w.base).into_iter().map(|(p, _)| p));
        }
    }
    out
}

/// The operations that give every wanted macvlan its configuration and
/// delete the `owned` ones no longer wanted. `vips` are left alone on the
/// macvlans. A want whose base interface does not exist is skipped: its
/// base appearing brings the next sync.
pub fn plan(want: &[Want], owned: &BTreeSet<String>, vips: &[IpAddr], have: &Have) -> Vec<Op> {
    let mut ops = Vec::new();
    let differs =
        |path: &str, value: &str| have.sysctls.get(path).map(String::as_str) != Some(value);
    let mut bases_done = BTreeSet::new();
    for w in want {
        let Some(base) = have.links.get(&w.base) else {
            continue;
        };
        if !w.v6 && bases_done.insert(w.base.clone()) {
            for (path, value) in base_sysctls(&w.base) {
                if differs(&path, value) {
                    ops.push(Op::Sysctl {
                        path,
                        value: value.into(),
                        restore: true,
                    });
                }
            }
        }
        let current = have.links.get(&w.name);
        let fits = current.is_some_and(|l| l.mac == w.mac && l.lower == Some(base.index));
        let fresh = !fits;
        if let (Some(_), false) = (current, fits) {
            ops.push(Op::Delete {
                name: w.name.clone(),
            });
        }
        if fresh {
            ops.push(Op::Create {
                name: w.name.clone(),
                base: w.base.clone(),
                mac: w.mac,
            });
        }
        for (path, value) in own_sysctls(w) {
            if fresh || differs(&path, value) {
                ops.push(Op::Sysctl {
                    path,
                    value: value.into(),
                    restore: false,
                });
            }
        }
        let addrs: &[(IpAddr, u8)] = match current {
            Some(l) if fits => &l.addrs,
            _ => &[],
        };
        if let (true, Some(src)) = (w.v6, w.source) {
            if !addrs.iter().any(|(a, _)| *a == src) {
                ops.push(Op::AddSource {
                    name: w.name.clone(),
                    addr: src,
                });
            }
            for (a, p) in addrs {
                if a.is_ipv6() && *a != src && !vips.contains(a) {
                    ops.push(Op::DelAddress {
                        name: w.name.clone(),
                        addr: *a,
                        prefix_len: *p,
                    });
                }
            }
        }
        if fresh || current.is_some_and(|l| !l.up) {
            ops.push(Op::Up {
                name: w.name.clone(),
            });
        }
    }
    for name in owned {
        if !want.iter().any(|w| &w.name == name) && have.links.contains_key(name) {
            ops.push(Op::Delete { name: name.clone() });
        }
    }
    ops
}

/// Where links and sysctls live: rtnetlink and /proc/sys in the daemon,
/// memory in tests.
pub trait Links {
    type Error: fmt::Display;

    fn dump(
        &mut self,
        names: &BTreeSet<String>,
        sysctls: &BTreeSet<String>,
    ) -> impl Future<Output = Result<Have, Self::Error>>;

    fn apply(&mut self, op: &Op) -> impl Future<Output = Result<(), Self::Error>>;
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: Vec<Op>,
    /// Refused, with the reason; the rest of that link's configuration
    /// was not attempted (it must not come up half configured).
    pub failed: Vec<(Op, String)>,
    pub unreadable: Option<String>,
}

impl Outcome {
    pub fn incomplete(&self) -> bool {
        !self.failed.is_empty() || self.unreadable.is_some()
    }
}

/// Reads what the plan needs, plans and applies.
pub async fn sync<L: Links>(
    links: &mut L,
    want: &[Want],
    owned: &BTreeSet<String>,
    vips: &[IpAddr],
) -> Outcome {
    let mut out = Outcome::default();
    let names: BTreeSet<String> = want
        .iter()
        .flat_map(|w| [w.name.clone(), w.base.clone()])
        .chain(owned.iter().cloned())
        .collect();
    if names.is_empty() {
        return out;
    }
    let have = match links.dump(&names, &sysctl_paths(want)).await {
        Ok(h) => h,
        Err(e) => {
            out.unreadable = Some(e.to_string());
            return out;
        }
    };
    let mut broken = BTreeSet::new();
    for op in plan(want, owned, vips, &have) {
        let link = op.link().to_string();
        if broken.contains(&link) {
            continue;
        }
        match links.apply(&op).await {
            Ok(()) => out.applied.push(op),
            Err(e) => {
                // A base interface's ARP setting failing does not stop
                // its macvlans; a macvlan's own step does stop it.
                if !matches!(op, Op::Sysctl { restore: true, .. }) {
                    broken.insert(link);
                }
                out.failed.push((op, e.to_string()));
            }
        }
    }
    out
}

/// Links and sysctls in memory, with the kernel's rules that matter here:
/// a created link starts down with default settings, its sysctls exist
/// only while it does, and deleting it takes them along.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub have: Have,
    /// Sysctl paths whose writes are refused.
    pub refuse: BTreeSet<String>,
    next_index: u32,
}

impl Memory {
    pub fn with_base(name: &str) -> Memory {
        let mut m = Memory {
            next_index: 10,
            ..Memory::default()
        };
        m.have.links.insert(
            name.into(),
            LinkState {
                index: 2,
                mac: [2, 0, 0, 0, 0, 1],
                lower: None,
                up: true,
                addrs: Vec::new(),
            },
        );
        for (k, v) in [
            ("arp_ignore", "0"),
            ("arp_filter", "0"),
            ("arp_announce", "0"),
        ] {
            m.have
                .sysctls
                .insert(format!("net/ipv4/conf/{name}/{k}"), v.into());
        }
        m
    }
}

impl Links for Memory {
    type Error = String;

    async fn dump(
        &mut self,
        names: &BTreeSet<String>,
        sysctls: &BTreeSet<String>,
    ) -> Result<Have, String> {
        Ok(Have {
            links: self
                .have
                .links
                .iter()
                .filter(|(n, _)| names.contains(*n))
                .map(|(n, l)| (n.clone(), l.clone()))
                .collect(),
            sysctls: self
                .have
                .sysctls
                .iter()
                .filter(|(p, _)| sysctls.contains(*p))
                .map(|(p, v)| (p.clone(), v.clone()))
                .collect(),
        })
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let no_link = || format!("{op}: no such device");
        match op {
            Op::Delete { name } => {
                self.have.links.remove(name).ok_or_else(no_link)?;
                self.have
                    .sysctls
                    .retain(|p, _| p.split('/').nth(3) != Some(name));
            }
            Op::Create { name, base, mac } => {
                let lower = self.have.links.get(base).ok_or_else(no_link)?.index;
                if self.have.links.contains_key(name) {
                    return Err(format!("{op}: file exists"));
                }
                self.next_index += 1;
                self.have.links.insert(
                    name.clone(),
                    LinkState {
                        index: self.next_index,
                        mac: *mac,
                        lower: Some(lower),
                        up: false,
                        addrs: Vec::new(),
                    },
                );
            }
            Op::Sysctl { path, value, .. } => {
                if self.refuse.contains(path) {
                    return Err(format!("{op}: permission denied"));
                }
                let link = path.split('/').nth(3).unwrap_or("");
                if !self.have.links.contains_key(link) {
                    return Err(format!("{op}: no such file"));
                }
                self.have.sysctls.insert(path.clone(), value.clone());
            }
            Op::AddSource { name, addr } => {
                let l = self.have.links.get_mut(name).ok_or_else(no_link)?;
                l.addrs.push((*addr, 64));
            }
            Op::DelAddress { name, addr, .. } => {
                let l = self.have.links.get_mut(name).ok_or_else(no_link)?;
                l.addrs.retain(|(a, _)| a != addr);
            }
            Op::Up { name } => {
                let l = self.have.links.get_mut(name).ok_or_else(no_link)?;
                // The kernel's rule that matters: configure first.
                if !l.up
                    && !self
                        .have
                        .sysctls
                        .keys()
                        .any(|p| p.contains(&format!("/{name}/")))
                {
                    return Err(format!("{op}: up before it was configured"));
                }
                l.up = true;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn v4(name: &str) -> Want {
        Want {
            name: name.into(),
            base: "eth0".into(),
            mac: [0, 0, 0x5e, 0, 1, 51],
            v6: false,
            source: None,
        }
    }

    fn v6(name: &str, src: &str) -> Want {
        Want {
            name: name.into(),
            base: "eth0".into(),
            mac: [0, 0, 0x5e, 0, 2, 51],
            v6: true,
            source: Some(src.parse().unwrap()),
        }
    }

    #[test]
    fn a_macvlan_is_created_down_configured_and_only_then_brought_up() {
        let ops = plan(
            &[v4("vrrp.51")],
            &BTreeSet::new(),
            &[],
            &Memory::with_base("eth0").have,
        );
        let names: Vec<String> = ops
            .iter()
            .map(|o| match o {
                Op::Create { .. } => "create".into(),
                Op::Up { .. } => "up".into(),
                Op::Sysctl { path, .. } => path.clone(),
                other => other.to_string(),
            })
            .collect();
        let create = names.iter().position(|n| n == "create").unwrap();
        let up = names.iter().position(|n| n == "up").unwrap();
        assert_eq!(up, names.len() - 1, "up comes last: {names:?}");
        for own in [
            "net/ipv6/conf/vrrp.51/disable_ipv6",
            "net/ipv4/conf/vrrp.51/arp_ignore",
        ] {
            let at = names.iter().position(|n| n == own).unwrap();
            assert!(create < at && at < up, "{own}: {names:?}");
        }
        // The base's ARP settings, to be put back at the end.
        assert!(ops.iter().any(|o| matches!(o,
            Op::Sysctl { path, value, restore: true } if path == "net/ipv4/conf/eth0/arp_announce" && value == "2")));
    }

    #[test]
    fn an_ipv6_macvlan_carries_the_adverts_source_and_sheds_an_old_one() {
        let mut m = Memory::with_base("eth0");
        let want = [v6("vrrp.51", "fe80::1")];
        let vip: IpAddr = "2001:db8::10".parse().unwrap();
        let out = block_on(sync(&mut m, &want, &BTreeSet::new(), &[vip]));
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        assert!(
            !out.applied.iter().any(|o| o.link() == "eth0"),
            "IPv6 leaves the base alone"
        );
        let l = &m.have.links["vrrp.51"];
        assert!(l.up);
        assert_eq!(l.addrs, vec![("fe80::1".parse().unwrap(), 64)]);
        // The VIP lands (vip.rs's job); then the link-local address changes.
        m.have
            .links
            .get_mut("vrrp.51")
            .unwrap()
            .addrs
            .push((vip, 64));
        let moved = [v6("vrrp.51", "fe80::2")];
        block_on(sync(&mut m, &moved, &BTreeSet::new(), &[vip]));
        let mut addrs: Vec<IpAddr> = m.have.links["vrrp.51"].addrs.iter().map(|a| a.0).collect();
        addrs.sort();
        assert_eq!(addrs, vec![vip, "fe80::2".parse().unwrap()]);
    }

    #[test]
    fn a_macvlan_with_another_mac_is_made_again_and_an_unwanted_one_of_ours_goes() {
        let mut m = Memory::with_base("eth0");
        let owned: BTreeSet<String> = ["vrrp.51".to_string(), "vrrp.52".to_string()].into();
        block_on(sync(&mut m, &[v4("vrrp.51"), v4("vrrp.52")], &owned, &[]));
        // vrrp.51 turns IPv6 (another MAC); vrrp.52 is no longer wanted;
        // someone else's vrrp.53 is left alone.
        block_on(sync(&mut m, &[v4("vrrp.53")], &BTreeSet::new(), &[]));
        let theirs = m.have.links["vrrp.53"].index;
        let out = block_on(sync(&mut m, &[v6("vrrp.51", "fe80::1")], &owned, &[]));
        assert!(out.applied.contains(&Op::Delete {
            name: "vrrp.51".into()
        }));
        assert_eq!(m.have.links["vrrp.51"].mac, [0, 0, 0x5e, 0, 2, 51]);
        assert!(!m.have.links.contains_key("vrrp.52"));
        assert_eq!(m.have.links["vrrp.53"].index, theirs);
    }

    #[test]
    fn a_failed_step_keeps_that_macvlan_down_and_leaves_the_others_alone() {
        let mut m = Memory::with_base("eth0");
        m.refuse.insert("net/ipv6/conf/vrrp.51/disable_ipv6".into());
        let out = block_on(sync(
            &mut m,
            &[v4("vrrp.51"), v4("vrrp.52")],
            &BTreeSet::new(),
            &[],
        ));
        assert_eq!(out.failed.len(), 1, "{:?}", out.failed);
        assert!(out.incomplete());
        assert!(!m.have.links["vrrp.51"].up, "never up half configured");
        assert!(m.have.links["vrrp.52"].up);
        // The refusal lifts: the retry finishes vrrp.51, and only that.
        m.refuse.clear();
        let again = block_on(sync(
            &mut m,
            &[v4("vrrp.51"), v4("vrrp.52")],
            &BTreeSet::new(),
            &[],
        ));
        assert!(
            again.applied.iter().all(|o| o.link() == "vrrp.51"),
            "{:?}",
            again.applied
        );
        assert!(m.have.links["vrrp.51"].up);
    }

    #[test]
    fn planning_against_the_result_of_a_plan_gives_nothing() {
        let mut m = Memory::with_base("eth0");
        let want = [v4("vrrp.51"), v6("vrrp.61", "fe80::1")];
        let owned: BTreeSet<String> = want.iter().map(|w| w.name.clone()).collect();
        block_on(sync(&mut m, &want, &owned, &[]));
        let names = ["eth0", "vrrp.51", "vrrp.61"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let have = block_on(m.dump(&names, &sysctl_paths(&want))).unwrap();
        assert_eq!(plan(&want, &owned, &[], &have), Vec::new());
        // A base that does not exist: nothing to do yet, nothing fails.
        let elsewhere = Want {
            base: "eth9".into(),
            ..v4("vrrp.71")
        };
        let out = block_on(sync(&mut m, &[elsewhere], &BTreeSet::new(), &[]));
        assert!(out.applied.is_empty() && out.failed.is_empty());
    }
}
