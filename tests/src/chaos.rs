//! What the chaos soaks share: seeded schedules (a fixed, printed seed
//! replays the same faults in the same order) and the memory of their
//! long-lived daemons, sampled between faults.

use std::collections::BTreeMap;

/// xorshift64*.
pub struct Rng(pub u64);

impl Rng {
    /// The seed from `TANDEM_CHAOS_SEED`, or one drawn from the clock.
    pub fn seed_from_env() -> u64 {
        std::env::var("TANDEM_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| (crate::epoch_secs() * 1000.0) as u64 | 1)
    }

    /// The schedule's length from `TANDEM_CHAOS_STEPS`, or `default`.
    pub fn steps_from_env(default: usize) -> usize {
        std::env::var("TANDEM_CHAOS_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    }

    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n
    }

    /// Milliseconds in `lo..hi`.
    pub fn ms(&mut self, lo: u64, hi: u64) -> std::time::Duration {
        std::time::Duration::from_millis(lo + self.below(hi - lo))
    }

    /// Every kind in `0..kinds` once, in a seeded order, then seeded
    /// draws, `steps` in all.
    pub fn kinds(&mut self, kinds: u64, steps: usize) -> Vec<u64> {
        let mut order: Vec<u64> = (0..kinds).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.below(i as u64 + 1) as usize);
        }
        (0..steps)
            .map(|i| order.get(i).copied().unwrap_or_else(|| self.below(kinds)))
            .collect()
    }
}

/// Resident set of `pid` in KiB (0 when gone).
pub fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Each daemon process's resident set at its first and latest look.
#[derive(Default)]
pub struct Memory(BTreeMap<(String, u32), (u64, u64, u32)>);

impl Memory {
    pub fn look(&mut self, who: String, pid: u32) {
        let kib = rss(pid);
        let e = self.0.entry((who, pid)).or_insert((kib, kib, 0));
        e.1 = kib;
        e.2 += 1;
    }

    /// Prints every process's figures; panics when one seen at five
    /// looks or more grew by 8 MiB. A leak of a few KiB per fault would
    /// show over a long soak, so the bound is loose for a short one.
    pub fn assert_flat(&self, seed: u64) {
        for ((who, pid), (first, last, seen)) in &self.0 {
            eprintln!("memory {who} (pid {pid}): {first} -> {last} KiB over {seen} looks");
            if *seen >= 5 {
                assert!(
                    *last < first + 8 * 1024,
                    "{who} grew from {first} to {last} KiB (seed {seed})"
                );
            }
        }
    }
}
