//! The `tandem` Debian package: its metadata, systemd units and the
//! default configuration live beside this crate.

/// The configuration shipped in `/etc/tandem/tandem.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../tandem.toml");
