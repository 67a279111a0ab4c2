//! The virtual IPs in the kernel, as a reconciler, sans IO: what the
//! interfaces should hold (every master's VIPs) and what they hold go in,
//! the fewest address operations come out. One path for every reason an
//! address moves: a takeover, a fallback, a reload that changes a master's
//! list, the start-up cleanup after a vrrpd killed with -9, and
//! `tandem-vrrpd release`.
//!
//! Rules:
//! - Only addresses vrrpd manages are ever removed: the VIPs of configured
//!   instances (not an address owner's, which are the interface's own) and
//!   those it placed itself, so a reload that drops a VIP still takes it
//!   off. Every other address of an interface belongs to someone else.
//! - Additions come before removals: a master whose list changes on
//!   reload never holds none of its addresses.
//! - An address is compared by interface, address and prefix length; a
//!   label is what it is added with, not part of its identity (the kernel
//!   keys IPv4 addresses by address and prefix, `inet_insert_ifa`).
//! - An address whose interface does not exist cannot be placed: it waits,
//!   and the plan says so, until the interface appears.
//! - Planning against the result of applying a plan gives nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::net::IpAddr;

/// A virtual IP on the interface that carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vip {
    pub ifname: String,
    pub addr: IpAddr,
    pub prefix_len: u8,
    pub label: Option<String>,
}

impl Vip {
    fn key(&self) -> (&str, IpAddr, u8) {
        (&self.ifname, self.addr, self.prefix_len)
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} on {}", self.addr, self.prefix_len, self.ifname)
    }
}

/// One change to an interface's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Add(Vip),
    Del(Vip),
}

impl Op {
    pub fn vip(&self) -> &Vip {
        match self {
            Op::Add(v) | Op::Del(v) => v,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Add(v) => write!(f, "adding {}/{} to {}", v.addr, v.prefix_len, v.ifname),
            Op::Del(v) => write!(f, "removing {}/{} from {}", v.addr, v.prefix_len, v.ifname),
        }
    }
}

/// What the interfaces hold, by name: (address, prefix length). An
/// interface that does not exist is absent.
pub type Have = BTreeMap<String, Vec<(IpAddr, u8)>>;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Wanted on an interface that does not exist (yet).
    pub waiting: Vec<Vip>,
}

/// The operations that make the interfaces hold `want`, removing only
/// what is in `managed` (see the module's rules).
pub fn plan(want: &[Vip], managed: &[Vip], have: &Have) -> Plan {
    let present = |v: &Vip| {
        have.get(&v.ifname)
            .is_some_and(|addrs| addrs.contains(&(v.addr, v.prefix_len)))
    };
    let wanted: BTreeSet<(&str, IpAddr, u8)> = want.iter().map(Vip::key).collect();
    let mut out = Plan::default();
    let mut seen = BTreeSet::new();
    for v in want {
        if !seen.insert(v.key()) {
            continue;
        }
        if !have.contains_key(&v.ifname) {
            out.waiting.push(v.clone());
        } else if !present(v) {
            out.ops.push(Op::Add(v.clone()));
        }
    }
    for v in managed {
        if !wanted.contains(&v.key()) && present(v) && seen.insert(v.key()) {
            out.ops.push(Op::Del(v.clone()));
        }
    }
    out
}

/// Where the addresses live: rtnetlink in the daemon, memory in tests.
pub trait Addresses {
    type Error: fmt::Display;

    /// The addresses of the interfaces named; one that does not exist is
    /// absent from the answer.
    fn dump(
        &mut self,
        ifnames: &BTreeSet<String>,
    ) -> impl Future<Output = Result<Have, Self::Error>>;

    /// Applies one operation. Adding an address that is there, or
    /// removing one that is gone, succeeds.
    fn apply(&mut self, op: &Op) -> impl Future<Output = Result<(), Self::Error>>;
}

/// What one [`sync`] did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: Vec<Op>,
    /// Operations the kernel refused, with its reason; the others were
    /// still applied. A caller retries them.
    pub failed: Vec<(Op, String)>,
    pub waiting: Vec<Vip>,
    /// The interfaces could not be read: nothing was planned.
    pub unreadable: Option<String>,
}

impl Outcome {
    /// Something is left to do: a retry is due.
    pub fn incomplete(&self) -> bool {
        !self.failed.is_empty() || self.unreadable.is_some()
    }
}

/// Reads the interfaces involved, plans and applies.
pub async fn sync<A: Addresses>(plane: &mut A, want: &[Vip], managed: &[Vip]) -> Outcome {
    let ifnames: BTreeSet<String> = want
        .iter()
        .chain(managed)
        .map(|v| v.ifname.clone())
        .collect();
    let mut out = Outcome::default();
    if ifnames.is_empty() {
        return out;
    }
    let have = match plane.dump(&ifnames).await {
        Ok(h) => h,
        Err(e) => {
            out.unreadable = Some(e.to_string());
            return out;
        }
    };
    let p = plan(want, managed, &have);
    out.waiting = p.waiting;
    for op in p.ops {
        match plane.apply(&op).await {
            Ok(()) => out.applied.push(op),
            Err(e) => out.failed.push((op, e.to_string())),
        }
    }
    out
}

/// Interfaces and their addresses in memory, with the kernel's answers:
/// the twin the reconciler's tests run against.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub have: Have,
    /// Operations on these (interface, address) are refused, as the
    /// kernel refuses an address it cannot take.
    pub refuse: BTreeSet<(String, IpAddr)>,
}

impl Memory {
    pub fn with_interfaces(names: &[&str]) -> Memory {
        Memory {
            have: names.iter().map(|n| (n.to_string(), Vec::new())).collect(),
            refuse: BTreeSet::new(),
        }
    }
}

impl Addresses for Memory {
    type Error = String;

    async fn dump(&mut self, ifnames: &BTreeSet<String>) -> Result<Have, String> {
        Ok(self
            .have
            .iter()
            .filter(|(n, _)| ifnames.contains(*n))
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let v = op.vip();
        if self.refuse.contains(&(v.ifname.clone(), v.addr)) {
            return Err(format!("{op}: refused"));
        }
        // ENODEV, as rtnetlink answers for a missing interface.
        let addrs = self
            .have
            .get_mut(&v.ifname)
            .ok_or_else(|| format!("{op}: no such device"))?;
        let a = (v.addr, v.prefix_len);
        match op {
            Op::Add(_) if !addrs.contains(&a) => addrs.push(a),
            Op::Del(_) => addrs.retain(|x| *x != a),
            Op::Add(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vip(ifname: &str, addr: &str) -> Vip {
        Vip {
            ifname: ifname.into(),
            addr: addr.parse().unwrap(),
            prefix_len: 24,
            label: None,
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_new_master_adds_its_addresses_and_leaves_the_interface_s_own() {
        let mut m = Memory::with_interfaces(&["eth0"]);
        m.have
            .get_mut("eth0")
            .unwrap()
            .push(("10.0.0.1".parse().unwrap(), 24));
        let want = [vip("eth0", "10.0.0.100"), vip("eth0", "10.0.0.101")];
        let out = block_on(sync(&mut m, &want, &want));
        assert_eq!(out.applied.len(), 2);
        assert_eq!(m.have["eth0"].len(), 3, "the interface's own address stays");
        // Again: already in place, nothing to do.
        assert!(block_on(sync(&mut m, &want, &want)).applied.is_empty());
    }

    #[test]
    fn a_backup_removes_only_the_addresses_it_manages() {
        let mut m = Memory::with_interfaces(&["eth0"]);
        for a in ["10.0.0.1", "10.0.0.100"] {
            m.have
                .get_mut("eth0")
                .unwrap()
                .push((a.parse().unwrap(), 24));
        }
        let managed = [vip("eth0", "10.0.0.100")];
        let out = block_on(sync(&mut m, &[], &managed));
        assert_eq!(out.applied, vec![Op::Del(managed[0].clone())]);
        assert_eq!(m.have["eth0"], vec![("10.0.0.1".parse().unwrap(), 24)]);
    }

    #[test]
    fn a_changed_list_adds_before_it_removes() {
        let old = vip("eth0", "10.0.0.100");
        let new = vip("eth0", "10.0.0.200");
        let mut have = Have::new();
        have.insert("eth0".into(), vec![(old.addr, 24)]);
        let p = plan(
            std::slice::from_ref(&new),
            &[old.clone(), new.clone()],
            &have,
        );
        assert_eq!(p.ops, vec![Op::Add(new), Op::Del(old)]);
    }

    #[test]
    fn an_address_for_a_missing_interface_waits_and_a_refusal_is_reported() {
        let mut m = Memory::with_interfaces(&["eth0"]);
        m.refuse
            .insert(("eth0".into(), "10.0.0.101".parse().unwrap()));
        let want = [
            vip("eth0", "10.0.0.100"),
            vip("eth0", "10.0.0.101"),
            vip("eth9", "10.0.9.100"),
        ];
        let out = block_on(sync(&mut m, &want, &want));
        assert_eq!(out.applied, vec![Op::Add(want[0].clone())]);
        assert_eq!(out.failed.len(), 1, "{:?}", out.failed);
        assert_eq!(out.waiting, vec![want[2].clone()]);
        assert!(out.incomplete());
        // The refusal lifts: the retry places what is left, and only that.
        m.refuse.clear();
        let again = block_on(sync(&mut m, &want, &want));
        assert_eq!(again.applied, vec![Op::Add(want[1].clone())]);
    }

    fn arb_vip() -> impl Strategy<Value = Vip> {
        (0..2usize, 0..6u8, prop_oneof![Just(24u8), Just(32u8)]).prop_map(|(i, a, p)| Vip {
            ifname: ["eth0", "eth1"][i].into(),
            addr: IpAddr::from([10, 0, 0, 100 + a]),
            prefix_len: p,
            label: None,
        })
    }

    proptest! {
        #[test]
        fn planning_against_the_result_of_a_plan_gives_nothing(
            want in prop::collection::vec(arb_vip(), 0..6),
            extra in prop::collection::vec(arb_vip(), 0..6),
            there in prop::collection::vec(arb_vip(), 0..6),
        ) {
            let managed: Vec<Vip> = want.iter().chain(&extra).cloned().collect();
            let mut m = Memory::with_interfaces(&["eth0", "eth1"]);
            for v in &there {
                let addrs = m.have.get_mut(&v.ifname).unwrap();
                if !addrs.contains(&(v.addr, v.prefix_len)) {
                    addrs.push((v.addr, v.prefix_len));
                }
            }
            let unmanaged: Vec<Vip> = there.iter().filter(|v| !managed.contains(v)).cloned().collect();
            block_on(sync(&mut m, &want, &managed));
            let p = plan(&want, &managed, &m.have);
            prop_assert!(p.ops.is_empty(), "{:?}", p.ops);
            // Whatever it does not manage is still there.
            for v in unmanaged {
                prop_assert!(m.have[&v.ifname].contains(&(v.addr, v.prefix_len)));
            }
        }
    }
}
