//! tandem's web UI: server-rendered pages, a JSON API and Prometheus
//! metrics over the daemons' control sockets, and safe edits of the one
//! configuration file.
//!
//! - [`session`], [`csrf`], [`ratelimit`], [`metrics`] and the text side
//!   of [`configedit`] are sans-IO: plain values and a clock in, decisions
//!   out.
//! - [`auth`] checks credentials (argon2) and decides who is asking;
//!   [`daemons`] talks to vrrpd and healthd; [`pages`] and [`api`] are thin
//!   handlers over both; [`server`] puts the router, the live event hub and
//!   the listener (plain or TLS) together.
//! - [`apply`], [`eventlog`] and [`peers`] are what the pages and the API
//!   both do: apply a configuration text, list the events, list the peers.
//! - [`render`] keeps what was rendered from a status document until the
//!   document changes; [`format`] writes times and sizes for people.

pub mod api;
pub mod apply;
pub mod auth;
pub mod configedit;
pub mod csrf;
pub mod daemons;
pub mod eventlog;
pub mod format;
pub mod metrics;
pub mod pages;
pub mod peers;
pub mod ratelimit;
pub mod render;
pub mod server;
pub mod session;
pub mod tls;

/// A source of wall-clock time in milliseconds since the Unix epoch; tests
/// swap it for a clock they move by hand.
pub type Clock = std::sync::Arc<dyn Fn() -> tandem_model::api::UnixMillis + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(tandem_model::api::now_millis)
}

/// `n` random bytes from the operating system, URL-safe base64 encoded:
/// session ids and CSRF tokens.
pub fn random_token(n: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the operating system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
