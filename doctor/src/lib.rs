//! `tandem doctor`: a director's host, examined for what makes a VIP
//! dead although every daemon runs (forwarding off under NAT, a firewall
//! dropping VRRP, another router on one of our VRIDs).
//!
//! - [`arp`]: who answers ARP for an address (a probe and its replies)
//! - [`dr`]: whether a DR real server takes packets for the VIP
//! - [`finding`]: a finding (what, how it was seen, what it breaks, the
//!   fix) and its severity
//! - [`examine`]: the rules, sans IO: facts in, findings out
//! - [`link`]: one interface's wire (an AF_PACKET socket) for the probes
//! - [`gather`]: the facts of this host (sysctls, the nftables ruleset,
//!   vrrpd's status)

pub mod arp;
pub mod dr;
pub mod examine;
pub mod finding;
pub mod gather;
pub mod link;

pub use examine::{Facts, examine};
pub use finding::{Finding, Severity};

use serde::{Deserialize, Serialize};
use tandem_model::config::Config;

/// What to examine beyond the file and `/proc/sys`: the ruleset needs
/// CAP_NET_ADMIN; the probes (ARP for the VIPs, ICMP to the DR real
/// servers) need CAP_NET_RAW and send on the segment.
#[derive(Clone, Copy, Debug)]
pub struct Examine {
    pub nft: bool,
    pub probes: bool,
}

/// One examination: its findings, worst first, and what it could see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// When it ran (Unix milliseconds).
    pub at: u64,
    pub findings: Vec<Finding>,
    /// 0, 1 or 2: as `tandem doctor` exits.
    pub exit: u8,
    /// The nftables ruleset was read.
    pub nft: bool,
    /// vrrpd was watched for this long (milliseconds); `None` when it
    /// does not run here or has no instance.
    pub vrrpd_watched_ms: Option<u64>,
    /// Probes sent (ARP for VIPs, DR real servers); `None` when not
    /// asked to probe.
    pub probes: Option<usize>,
}

pub async fn diagnose(config: Config, what: Examine, now: u64) -> Report {
    let facts = gather::gather(config, what).await;
    let findings = examine(&facts);
    Report {
        at: now,
        exit: finding::exit_status(&findings),
        findings,
        nft: facts.nft.is_some(),
        vrrpd_watched_ms: facts.vrrpd.as_ref().map(|_| facts.apart.as_millis() as u64),
        probes: what.probes.then_some(facts.arp.len() + facts.dr.len()),
    }
}
