//! Kernel IPVS over generic netlink.
//!
//! - [`types`]: the table as plain values (services, destinations,
//!   settings, counters).
//! - [`netlink`], [`codec`]: netlink framing and the IPVS family's
//!   attributes, sans-IO.
//! - [`kernel`]: the client that talks to the kernel (the only module
//!   with a socket).
//! - [`reconcile`]: desired + current table -> the fewest ordered
//!   operations, the [`reconcile::Dataplane`] trait it drives, and
//!   [`reconcile::ConnectionSync`] for the sync daemons.
//! - [`memory`]: an in-memory dataplane (table and sync daemons) with the
//!   kernel's rules.
//! - [`desired`]: the table a tandem.toml asks for.
//! - [`save`]: ipvsadm's rule format (`ipvsadm -S` / `ipvsadm -R`).
//! - [`list`]: the `ipvsadm -Ln`-like listing.
//! - [`error`]: errors, and kernel errnos in words.

pub mod codec;
pub mod desired;
pub mod error;
pub mod kernel;
pub mod list;
pub mod memory;
pub mod netlink;
pub mod reconcile;
pub mod save;
pub mod types;

pub use error::Error;
pub use kernel::Kernel;
pub use reconcile::{ConnectionSync, Dataplane, Op, Options, plan, reconcile};
pub use types::{Dest, DestSettings, Service, ServiceKey, ServiceSettings, Table};
