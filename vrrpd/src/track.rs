//! Tracked objects and what they do to an instance's priority, sans IO,
//! with keepalived's semantics so a migrated config behaves the same:
//!
//! - no weight (or 0): a failure puts the instance in FAULT;
//! - weight > 0: added to the priority while the object is fine;
//! - weight < 0: added (so subtracted) while it has failed;
//! - a tracked file holds an integer: with a weight the priority moves by
//!   value x weight; without one, a non-zero value means FAULT.
//!
//! The effective priority stays within 1-254; an address owner keeps 255.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackKind {
    /// The instance's own interface is always tracked (no weight).
    Interface,
    /// A usable source address on the instance's interface (an IPv4
    /// address, or an IPv6 link-local one): without it no advert can go
    /// out. Always tracked, no weight.
    Address,
    File,
    Script,
    VirtualServer,
}

impl TrackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrackKind::Interface => "interface",
            TrackKind::Address => "address",
            TrackKind::File => "file",
            TrackKind::Script => "script",
            TrackKind::VirtualServer => "virtual_server",
        }
    }
}

impl fmt::Display for TrackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one tracked object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackValue {
    Ok,
    Failed,
    /// A tracked file's integer.
    Number(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub kind: TrackKind,
    pub name: String,
    pub weight: Option<i64>,
    pub value: TrackValue,
}

impl Tracker {
    pub fn new(kind: TrackKind, name: &str, weight: Option<i64>, value: TrackValue) -> Self {
        Tracker {
            kind,
            name: name.to_string(),
            weight: weight.filter(|w| *w != 0),
            value,
        }
    }

    /// Whether the object is fine (a file: its value is 0).
    pub fn ok(&self) -> bool {
        match self.value {
            TrackValue::Ok => true,
            TrackValue::Failed => false,
            TrackValue::Number(n) => n == 0,
        }
    }

    /// The priority change this object applies now.
    pub fn delta(&self) -> i64 {
        match (self.weight, self.value) {
            (None, _) => 0,
            (Some(w), TrackValue::Number(n)) => w.saturating_mul(n),
            (Some(w), TrackValue::Ok) if w > 0 => w,
            (Some(w), TrackValue::Failed) if w < 0 => w,
            _ => 0,
        }
    }

    /// Whether it puts the instance in FAULT now.
    pub fn faults(&self) -> bool {
        self.weight.is_none() && !self.ok()
    }

    fn describe(&self) -> String {
        let name = &self.name;
        match (self.kind, self.value) {
            (kind, TrackValue::Number(n)) => format!("{kind} {name} is {n}"),
            (TrackKind::Interface, _) => format!("interface {name} is down"),
            (TrackKind::Address, _) => format!("no source address on {name}"),
            (TrackKind::VirtualServer, _) => format!("virtual server {name} lost quorum"),
            (kind, _) => format!("{kind} {name} failed"),
        }
    }
}

/// The priority and fault an instance gets from its trackers.
pub fn evaluate(base: u8, trackers: &[Tracker]) -> (u8, Option<String>) {
    let fault = trackers
        .iter()
        .filter(|t| t.faults())
        .map(Tracker::describe)
        .collect::<Vec<_>>();
    let fault = (!fault.is_empty()).then(|| fault.join(", "));
    if base == 255 {
        return (255, fault);
    }
    let delta: i64 = trackers.iter().map(Tracker::delta).sum();
    let p = (i64::from(base) + delta).clamp(1, 254) as u8;
    (p, fault)
}

/// Consecutive results turned into a state: `rise` successes make it ok,
/// `fall` failures make it failed (keepalived's vrrp_script rise/fall).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    ok: bool,
    run: u32,
}

impl RiseFall {
    /// Starts in `initial` (keepalived starts scripts ok unless told
    /// `init_fail`; vrrpd runs each one at once, before any election can
    /// end, so a failing script faults the instance in time).
    pub fn new(rise: u32, fall: u32, initial: bool) -> Self {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            ok: initial,
            run: 0,
        }
    }

    pub fn ok(&self) -> bool {
        self.ok
    }

    /// Records one result; returns the new state when it changed.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success == self.ok {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = if success { self.rise } else { self.fall };
        if self.run >= needed {
            self.ok = success;
            self.run = 0;
            Some(success)
        } else {
            None
        }
    }
}

pub use tandem_model::exec::ScriptResult;

#[cfg(test)]
mod tests {
    use super::*;

    fn t(weight: Option<i64>, value: TrackValue) -> Tracker {
        Tracker::new(TrackKind::Script, "s", weight, value)
    }

    #[test]
    fn an_unweighted_failure_faults_and_a_weighted_one_moves_priority() {
        assert_eq!(evaluate(100, &[t(None, TrackValue::Ok)]), (100, None));
        assert_eq!(
            evaluate(100, &[t(None, TrackValue::Failed)]),
            (100, Some("script s failed".into()))
        );
        assert_eq!(
            evaluate(100, &[t(Some(-30), TrackValue::Failed)]),
            (70, None)
        );
        assert_eq!(evaluate(100, &[t(Some(-30), TrackValue::Ok)]), (100, None));
        assert_eq!(evaluate(100, &[t(Some(20), TrackValue::Ok)]), (120, None));
        assert_eq!(
            evaluate(100, &[t(Some(20), TrackValue::Failed)]),
            (100, None)
        );
    }

    #[test]
    fn a_file_moves_priority_by_value_times_weight() {
        let f = |w, n| Tracker::new(TrackKind::File, "/run/f", w, TrackValue::Number(n));
        assert_eq!(evaluate(100, &[f(Some(-1), 40)]), (60, None));
        assert_eq!(evaluate(100, &[f(None, 0)]), (100, None));
        assert_eq!(
            evaluate(100, &[f(None, 3)]),
            (100, Some("file /run/f is 3".into()))
        );
    }

    #[test]
    fn priority_stays_in_range_and_an_owner_keeps_255() {
        assert_eq!(evaluate(100, &[t(Some(-200), TrackValue::Failed)]).0, 1);
        assert_eq!(evaluate(250, &[t(Some(100), TrackValue::Ok)]).0, 254);
        assert_eq!(evaluate(255, &[t(Some(-100), TrackValue::Failed)]).0, 255);
    }

    #[test]
    fn rise_and_fall_count_consecutive_results() {
        let mut rf = RiseFall::new(2, 3, false);
        assert!(!rf.ok());
        assert_eq!(rf.record(true), None);
        assert_eq!(rf.record(true), Some(true));
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(true), None, "a success resets the failure run");
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(false), None);
        assert_eq!(rf.record(false), Some(false));
    }
}
