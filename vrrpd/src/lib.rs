//! tandem's VRRP: virtual IPs that float between the directors.
//!
//! The protocol is sans IO: [`packet`] (the wire format), [`fsm`] (one
//! virtual router's state machine, RFC 5798 6.4), [`track`] (tracked
//! objects and priority), [`node`] (every instance of this node with its
//! sync groups). The adapters around them: [`socket`] (raw sockets),
//! [`timer`] (the loop's timerfd),
//! [`netlink`] (links and addresses), [`healthd`] (quorum from healthd),
//! [`daemon`] (the
//! event loop), [`control`] (the control API) and [`report`] (status for
//! a terminal).

pub mod control;
pub mod daemon;
pub mod fsm;
pub mod healthd;
pub mod netlink;
pub mod node;
pub mod packet;
pub mod report;
pub mod socket;
pub mod timer;
pub mod track;
