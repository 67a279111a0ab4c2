//! tandem's VRRP: virtual IPs that float between the directors.
//!
//! The protocol is sans IO: [`packet`] (the wire format), [`fsm`] (one
//! virtual router's state machine, RFC 5798 6.4), [`track`] (tracked
//! objects and priority), [`node`] (every instance of this node with its
//! sync groups). The daemon around them lives in the other modules.

pub mod fsm;
pub mod node;
pub mod packet;
pub mod track;
