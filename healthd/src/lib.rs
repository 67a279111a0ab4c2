//! tandem's health checker: which real servers get traffic.
//!
//! Sans IO: [`health`] (rise/fall state of one real server), [`schedule`]
//! (when each probe runs, spread over its interval), [`quorum`] and
//! [`spec`] (what to probe, shared between virtual servers), and
//! [`engine`], which puts them together and decides the IPVS table, and
//! [`dataplane`], one sync of that table (and the connection sync
//! daemon) with any dataplane. The adapters:
//! [`probe`] (ICMP, TCP, HTTP(S), scripts), [`vrrp`] (vrrpd's state, for
//! connection sync), [`daemon`] (the loop and the
//! IPVS thread), [`control`] (the control API).

pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod engine;
pub mod health;
pub mod probe;
pub mod quorum;
pub mod report;
pub mod schedule;
pub mod spec;
pub mod vrrp;
