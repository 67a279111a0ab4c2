//! The model every tandem part shares: the configuration file and the
//! control API spoken over each daemon's Unix socket.
//!
//! - [`config`]: the one `tandem.toml`, typed with serde and validated with
//!   every error located at `file:line:column`.
//! - [`api`]: the JSON types of `/status`, `/events` and the actions.
//! - [`control`]: HTTP/JSON over a Unix socket, the server side (axum) and a
//!   small client (hyper) used by the web UI, the CLIs and the tests.
//! - [`host`]: what every daemon does around its loop (control socket,
//!   signals, readiness, ask-and-wait).
//! - [`exec`]: running the programs the configuration names (scripts),
//!   without a shell, with a timeout, as a user.
//! - [`manpages`]: the programs' manual pages, from their clap definitions.

pub mod api;
pub mod config;
pub mod control;
pub mod exec;
pub mod host;
pub mod manpages;
pub mod serve;
pub mod sync;
