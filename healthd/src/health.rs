//! The health of one real server, sans IO: consecutive results turned
//! into UP and DOWN by `rise` and `fall` (keepalived's semantics), with
//! the reason of every change.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use tandem_model::api::HealthState;
use tandem_model::api::{LATENCY_BUCKETS_MS, LatencyHistogram};

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// "HTTP 200", "connection refused", "timeout after 1s". Shared: one
    /// probe's outcome is recorded by every real server that follows it,
    /// and a server that stays up keeps the words of its last result.
    pub reason: Arc<str>,
    pub latency: Duration,
    /// The check could not run for want of something on this director
    /// (file descriptors, memory, buffers): no verdict on the server.
    pub local: bool,
}

impl Outcome {
    pub fn up(reason: impl Into<Arc<str>>, latency: Duration) -> Outcome {
        Outcome {
            ok: true,
            reason: reason.into(),
            latency,
            local: false,
        }
    }

    pub fn down(reason: impl Into<Arc<str>>, latency: Duration) -> Outcome {
        Outcome {
            ok: false,
            reason: reason.into(),
            latency,
            local: false,
        }
    }

    /// The check did not run because this director lacks a resource: it
    /// counts neither for nor against the server.
    pub fn local(reason: impl Into<Arc<str>>) -> Outcome {
        Outcome {
            ok: false,
            reason: reason.into(),
            latency: Duration::ZERO,
            local: true,
        }
    }
}

/// A change of state and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: HealthState,
    pub to: HealthState,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Health {
    state: HealthState,
    rise: u32,
    fall: u32,
    /// Consecutive results against the current state, all `run_ok`.
    run: u32,
    run_ok: bool,
    since: Instant,
    reason: Arc<str>,
    last: Option<(Instant, Outcome)>,
    checks: u64,
    failures: u64,
    latency: Latency,
}

/// Every check's latency, in [`LATENCY_BUCKETS_MS`]: a fixed array, not
/// the API's vectors, since a director at keepalived issue #2318's size
/// keeps 37,000 of these (two heap blocks each were 8 MiB).
#[derive(Clone, Debug, Default)]
pub struct Latency {
    /// Cumulative: `counts[i]` checks took at most `LATENCY_BUCKETS_MS[i]`.
    counts: [u64; LATENCY_BUCKETS_MS.len()],
    count: u64,
    sum_ms: u64,
}

impl Latency {
    pub fn observe(&mut self, ms: u64) {
        for (le, c) in LATENCY_BUCKETS_MS.iter().zip(self.counts.iter_mut()) {
            if ms <= *le {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum_ms += ms;
    }

    /// The API's (and Prometheus's) shape of it.
    pub fn histogram(&self) -> LatencyHistogram {
        LatencyHistogram {
            le_ms: LATENCY_BUCKETS_MS.to_vec(),
            counts: self.counts.to_vec(),
            count: self.count,
            sum_ms: self.sum_ms,
        }
    }
}

impl Health {
    /// A server not yet checked (`Unknown`), or one already known to be
    /// up (adopted from the kernel's table at a restart).
    pub fn new(
        now: Instant,
        rise: u32,
        fall: u32,
        state: HealthState,
        reason: impl Into<Arc<str>>,
    ) -> Health {
        Health {
            state,
            rise: rise.max(1),
            fall: fall.max(1),
            run: 0,
            run_ok: false,
            since: now,
            reason: reason.into(),
            last: None,
            checks: 0,
            failures: 0,
            latency: Latency::default(),
        }
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn last(&self) -> Option<&(Instant, Outcome)> {
        self.last.as_ref()
    }

    /// Every check's latency since this server was configured.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    pub fn checks(&self) -> u64 {
        self.checks
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// New rise/fall from a reload; the state and the run so far stay.
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
    }

    /// Records one result; returns the change it caused, if any.
    pub fn record(&mut self, now: Instant, outcome: Outcome) -> Option<Change> {
        self.checks += 1;
        self.latency.observe(outcome.latency.as_millis() as u64);
        if !outcome.ok {
            self.failures += 1;
        }
        let ok = outcome.ok;
        let reason = outcome.reason.clone();
        self.last = Some((now, outcome));
        let agrees = match self.state {
            HealthState::Up => ok,
            HealthState::Down => !ok,
            HealthState::Unknown => false,
        };
        if agrees {
            self.run = 0;
            // Keep the latest words for the state it is in.
            self.reason = reason;
            return None;
        }
        if self.run > 0 && self.run_ok != ok {
            // Unknown, and the results changed direction: start over.
            self.run = 0;
        }
        self.run_ok = ok;
        self.run += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.run < needed {
            return None;
        }
        let from = self.state;
        self.state = if ok {
            HealthState::Up
        } else {
            HealthState::Down
        };
        self.run = 0;
        self.since = now;
        self.reason = reason.clone();
        Some(Change {
            from,
            to: self.state,
            reason: reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ok() -> Outcome {
        Outcome::up("HTTP 200", MS)
    }

    fn bad(why: &str) -> Outcome {
        Outcome::down(why, MS)
    }

    #[test]
    fn an_unknown_server_comes_up_after_rise_successes() {
        let t = Instant::now();
        let mut h = Health::new(t, 2, 3, HealthState::Unknown, "not checked yet");
        assert_eq!(h.record(t, ok()), None);
        let c = h.record(t, ok()).expect("up after 2");
        assert_eq!(
            (c.from, c.to, c.reason.as_str()),
            (HealthState::Unknown, HealthState::Up, "HTTP 200")
        );
    }

    #[test]
    fn an_up_server_goes_down_after_fall_failures_in_a_row() {
        let t = Instant::now();
        let mut h = Health::new(t, 2, 3, HealthState::Up, "adopted");
        assert_eq!(h.record(t, bad("HTTP 503")), None);
        assert_eq!(h.record(t, bad("HTTP 503")), None);
        assert_eq!(h.record(t, ok()), None, "a success resets the run");
        assert_eq!(h.record(t, bad("HTTP 503")), None);
        assert_eq!(h.record(t, bad("HTTP 503")), None);
        let c = h
            .record(t, bad("connection refused"))
            .expect("down after 3 in a row");
        assert_eq!(
            (c.to, c.reason.as_str()),
            (HealthState::Down, "connection refused")
        );
        assert_eq!((h.checks(), h.failures()), (6, 5));
    }

    #[test]
    fn an_unknown_server_that_flips_starts_its_count_over() {
        let t = Instant::now();
        let mut h = Health::new(t, 2, 2, HealthState::Unknown, "");
        assert_eq!(h.record(t, ok()), None);
        assert_eq!(h.record(t, bad("timeout after 1s")), None);
        assert_eq!(h.record(t, ok()), None);
        assert!(h.record(t, ok()).is_some());
    }

    #[test]
    fn the_reason_follows_the_latest_result_of_the_state() {
        let t = Instant::now();
        let mut h = Health::new(t, 1, 1, HealthState::Unknown, "");
        h.record(t, bad("connection refused"));
        h.record(t, bad("timeout after 1s"));
        assert_eq!(h.state(), HealthState::Down);
        assert_eq!(h.reason(), "timeout after 1s");
    }

    #[test]
    fn every_checks_latency_lands_in_the_histogram() {
        let t = Instant::now();
        let mut h = Health::new(t, 1, 1, HealthState::Unknown, "");
        h.record(t, Outcome::up("HTTP 200", Duration::from_millis(3)));
        h.record(
            t,
            Outcome::down("timeout after 1s", Duration::from_millis(1000)),
        );
        let l = h.latency().histogram();
        assert_eq!((l.count, l.sum_ms), (2, 1003));
        let le = |ms| l.counts[l.le_ms.iter().position(|&b| b == ms).unwrap()];
        assert_eq!((le(2), le(5), le(500), le(1000)), (0, 1, 1, 2));
    }
}
