//! tandem's web UI: server-rendered pages, a JSON API and Prometheus
//! metrics over the daemons' control sockets, and safe edits of the one
//! configuration file.
//!
//! - [`session`], [`csrf`], [`ratelimit`], [`metrics`] and the text side
//!   of [`configedit`] are sans-IO: plain values and a clock in, decisions
//!   out.
//! - [`auth`] checks credentials (argon2); [`daemons`] talks to vrrpd and
//!   healthd; [`tls`] is the HTTPS listener.
//! - [`state`] is what every handler shares, [`caller`] who is asking, and
//!   [`extract`] the viewer and admin gates with their refusals.
//! - [`pages`] and [`api`] are thin handlers over those; what both do
//!   lives beside them: [`apply`] (a configuration text), [`eventlog`]
//!   (the events), [`peers`]. [`chrome`] is the pages' frame, [`render`]
//!   keeps what was rendered from a status document until it changes, and
//!   [`format`] writes times and sizes for people.
//! - [`server`] puts the router and the middleware together; it is the
//!   only module that knows both the pages and the API.

pub mod api;
pub mod apply;
pub mod auth;
pub mod caller;
pub mod chrome;
pub mod cluster;
pub mod configedit;
pub mod csrf;
pub mod daemons;
pub mod eventlog;
pub mod extract;
pub mod format;
pub mod metrics;
pub mod pages;
pub mod peers;
pub mod ratelimit;
pub mod render;
pub mod server;
pub mod session;
pub mod state;
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
