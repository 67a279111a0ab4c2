//! `tandem doctor`: a director's host, examined for what makes a VIP
//! dead although every daemon runs (forwarding off under NAT, a firewall
//! dropping VRRP, another router on one of our VRIDs).
//!
//! - [`arp`]: who answers ARP for an address (a probe and its replies)
//! - [`finding`]: a finding (what, how it was seen, what it breaks, the
//!   fix) and its severity
//! - [`examine`]: the rules, sans IO: facts in, findings out
//! - [`gather`]: the facts of this host (sysctls, the nftables ruleset,
//!   vrrpd's status)

pub mod arp;
pub mod examine;
pub mod finding;
pub mod gather;

pub use examine::{Facts, examine};
pub use finding::{Finding, Severity};
