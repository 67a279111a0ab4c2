//! tandem's VRRP: virtual IPs that float between the directors.
//!
//! The protocol is sans IO: [`packet`] (the wire format), [`fsm`] (one
//! virtual router's state machine, RFC 5798 6.4), [`track`] (tracked
//! objects and priority), [`node`] (every instance of this node with its
//! sync groups), [`vip`] (the virtual IPs' reconciler), [`vmac`] (the
//! virtual-MAC macvlans' and their sysctls' reconciler), [`reload`] (what a
//! new configuration changes) and [`binding`] (an instance's configuration
//! resolved for this host).
//!
//! The adapters around them: [`socket`] (raw sockets), [`timer`] (the
//! loop's timerfd), [`netlink`] (links and addresses), [`healthd`] (quorum
//! from healthd), [`input`] (what the loop is told), and the event loop
//! [`daemon`] with its rooms (`daemon::links`: links, sockets and the
//! macvlans through [`vmac`]; `rx`: receive checks; `addresses`: the VIPs
//! through [`vip`], and `release`; `announce`, `trackers`, `status`);
//! [`control`] (the control API) and [`report`] (status for a terminal).

pub mod auth;
pub mod binding;
pub mod control;
pub mod daemon;
pub mod fsm;
pub mod healthd;
pub mod input;
pub mod lateness;
pub mod netlink;
pub mod node;
pub mod packet;
pub mod reload;
pub mod report;
pub mod socket;
pub mod timer;
pub mod track;
pub mod vip;
pub mod vmac;
