//! tandem's cluster: the directors operated as one appliance.
//!
//! One configuration file for every director, owned on each by
//! tandem-clusterd: a change made on any director is checked by every
//! reachable one against its own view, then taken by all or kept by none;
//! a director that was away catches up before vrrpd may start; edits on
//! both sides of a partition are a conflict that nobody overwrites.
//!
//! - [`ledger`]: versions and how two directors' versions relate (sans IO)
//! - [`wire`]: the messages of the sync channel
//! - [`identity`]: the cluster's certificate authority and node identities
//! - [`peer`]: the mutual-TLS channel, both ends
//! - [`store`]: the file, the ledger and the history on disk
//! - [`local`]: checking and taking a file on this director
//! - [`owner`]: the owner of the file, the coordinator of changes
//! - [`control`]: the control socket the web UI and `tandem` use

pub mod control;
pub mod identity;
pub mod ledger;
pub mod local;
pub mod owner;
pub mod peer;
pub mod store;
pub mod wire;
