//! How late the loop ran, sans IO: wake-ups that came past a deadline and
//! inputs whose work held the loop, both past [`SLOW`]. A master's adverts
//! and a backup's Master_Down timer waited that long, so each is counted
//! (status, metrics) and the log says what happened; but on a box that is
//! starved for seconds, a line per occurrence would bury everything else,
//! so after the first the log says at most one line per [`LOG_EVERY`],
//! with how many it did not print.

use std::time::{Duration, Instant};

use tandem_model::api::LoopLateness;

/// Lateness below this is the scheduler's ordinary jitter; above it, an
/// advert at 100 ms intervals would have been missed outright.
pub const SLOW: Duration = Duration::from_millis(200);
/// The log's pace once it has said something.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Late {
    /// The loop woke this long after a deadline.
    Wakeup,
    /// One input's work (or a timer's) held the loop this long.
    Held,
}

/// What to log for one occurrence: `None` to stay quiet, else how many
/// occurrences were left unlogged before it.
pub type Log = Option<u64>;

#[derive(Debug, Default)]
pub struct Lateness {
    counts: LoopLateness,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Lateness {
    /// Records that the loop was `by` late (of kind `what`) at `now`.
    /// Below [`SLOW`] nothing happens.
    pub fn note(&mut self, now: Instant, what: Late, by: Duration) -> Log {
        if by < SLOW {
            return None;
        }
        match what {
            Late::Wakeup => self.counts.late_wakeups += 1,
            Late::Held => self.counts.held_loop += 1,
        }
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.counts.worst_ms = self.counts.worst_ms.max(ms);
        let due = self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY);
        if due {
            self.last_log = Some(now);
            Some(std::mem::take(&mut self.unlogged))
        } else {
            self.unlogged += 1;
            None
        }
    }

    pub fn counts(&self) -> LoopLateness {
        self.counts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ordinary_jitter_is_neither_counted_nor_logged() {
        let mut l = Lateness::default();
        assert_eq!(l.note(Instant::now(), Late::Wakeup, 199 * MS), None);
        assert_eq!(l.counts(), LoopLateness::default());
    }

    #[test]
    fn every_late_run_is_counted_and_the_log_says_one_line_per_ten_seconds() {
        let t0 = Instant::now();
        let mut l = Lateness::default();
        assert_eq!(
            l.note(t0, Late::Wakeup, 250 * MS),
            Some(0),
            "the first is logged"
        );
        for i in 1..=30 {
            let at = t0 + i * 100 * MS;
            assert_eq!(l.note(at, Late::Held, 300 * MS), None, "{i}");
        }
        // Ten seconds after the first: logged, with the 30 left out.
        assert_eq!(l.note(t0 + 10_000 * MS, Late::Wakeup, 1200 * MS), Some(30));
        assert_eq!(
            l.counts(),
            LoopLateness {
                late_wakeups: 2,
                held_loop: 30,
                worst_ms: 1200,
            }
        );
    }
}
