//! When each probe runs, sans IO. Every probe keeps a fixed cadence
//! (interval after interval, not interval after it finished), and its
//! first run is placed at a point of its interval derived from its key,
//! so ten thousand probes with a 1 s interval are spread over the second
//! instead of firing together, and a restart places them the same way.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

struct Entry {
    interval: Duration,
    next: Instant,
    running: bool,
    /// Its place in the queue while not running: removing an entry is
    /// then one lookup, not a scan of the queue (a scan per probe made a
    /// reload of 37,000 probes take seconds).
    slot: Option<(Instant, u64)>,
}

pub struct Schedule<K> {
    entries: HashMap<K, Entry>,
    /// (next run, tie-breaker) -> key, for entries not running.
    queue: BTreeMap<(Instant, u64), K>,
    seq: u64,
}

impl<K> Default for Schedule<K> {
    fn default() -> Self {
        Schedule {
            entries: HashMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
        }
    }
}

/// Where in its interval a key's probe runs: a stable fraction from a hash
/// of the key.
pub fn phase<K: Hash>(key: &K, interval: Duration) -> Duration {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    let frac = (h.finish() % 1_000_000) as f64 / 1_000_000.0;
    interval.mul_f64(frac)
}

impl<K: Hash + Eq + Clone> Schedule<K> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    fn enqueue(&mut self, key: K, at: Instant) -> (Instant, u64) {
        self.seq += 1;
        let slot = (at, self.seq);
        self.queue.insert(slot, key);
        slot
    }

    /// Adds a probe; its first run is `phase` into its first interval.
    pub fn add(&mut self, key: K, interval: Duration, now: Instant) {
        let at = now + phase(&key, interval);
        self.add_at(key, interval, at);
    }

    /// Adds a probe whose first run is at `next`.
    pub fn add_at(&mut self, key: K, interval: Duration, next: Instant) {
        if self.entries.contains_key(&key) {
            return;
        }
        let slot = self.enqueue(key.clone(), next);
        self.entries.insert(
            key,
            Entry {
                interval,
                next,
                running: false,
                slot: Some(slot),
            },
        );
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(slot) = self.entries.remove(key).and_then(|e| e.slot) {
            self.queue.remove(&slot);
        }
    }

    /// The probes due at `now`; they count as running until [`done`](Self::done).
    pub fn due(&mut self, now: Instant) -> Vec<K> {
        let mut out = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some(e) = self.entries.get_mut(&key) {
                e.running = true;
                e.slot = None;
                out.push(key);
            }
        }
        out
    }

    /// A probe finished: its next run is one interval after its last
    /// scheduled one (never in the past: a probe late by more than an
    /// interval runs again at once, not in a burst).
    pub fn done(&mut self, key: &K, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if !e.running {
            return;
        }
        e.running = false;
        e.next = (e.next + e.interval).max(now);
        let at = e.next;
        let slot = self.enqueue(key.clone(), at);
        self.entries.get_mut(key).expect("looked up above").slot = Some(slot);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|((t, _), _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ten_thousand_probes_are_spread_over_their_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        for i in 0..10_000u32 {
            s.add(i, S, t0);
        }
        // Count first runs in each tenth of the second: all near 1,000.
        let mut buckets = [0usize; 10];
        let mut now = t0;
        for b in &mut buckets {
            now += S / 10;
            *b = s.due(now).len();
        }
        assert_eq!(buckets.iter().sum::<usize>(), 10_000);
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn a_probe_keeps_its_cadence_whatever_it_takes() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add("a", S, t0);
        let first = s.next_deadline().unwrap();
        assert_eq!(s.due(first), vec!["a"]);
        assert_eq!(s.next_deadline(), None, "not rescheduled while running");
        s.done(&"a", first + Duration::from_millis(300));
        assert_eq!(s.next_deadline(), Some(first + S));
    }

    #[test]
    fn a_probe_late_by_more_than_its_interval_runs_once_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add("a", S, t0);
        let first = s.next_deadline().unwrap();
        s.due(first);
        let late = first + 5 * S;
        s.done(&"a", late);
        assert_eq!(s.next_deadline(), Some(late));
        assert_eq!(s.due(late + 10 * S).len(), 1);
    }

    #[test]
    fn a_removed_probe_never_runs_again() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add("a", S, t0);
        s.add("b", S, t0);
        s.remove(&"a");
        assert_eq!(s.due(t0 + 2 * S), vec!["b"]);
        s.done(&"a", t0 + 2 * S);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_probe_removed_while_queued_or_running_leaves_nothing_behind() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.add("a", S, t0);
        s.add("b", S, t0);
        s.add("c", S, t0);
        s.remove(&"c");
        let later = t0 + 3 * S;
        assert_eq!(s.due(later).len(), 2);
        s.remove(&"a");
        s.done(&"a", later);
        s.done(&"b", later);
        assert_eq!(
            s.due(t0 + 10 * S),
            vec!["b"],
            "a removed probe leaves nothing queued"
        );
    }
}
