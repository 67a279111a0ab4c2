//! Quorum of a virtual server, sans IO: lost when fewer than
//! `quorum - hysteresis` real servers are up, regained at
//! `quorum + hysteresis` (keepalived's quorum_up/quorum_down, counting
//! servers rather than weights).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    quorum: usize,
    hysteresis: usize,
    met: bool,
}

impl Quorum {
    pub fn new(quorum: usize, hysteresis: usize, up: usize) -> Quorum {
        Quorum {
            quorum,
            hysteresis,
            met: up >= quorum,
        }
    }

    pub fn met(&self) -> bool {
        self.met
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// A new count of servers up; returns the new verdict when it changed.
    pub fn update(&mut self, up: usize) -> Option<bool> {
        let now_met = if self.met {
            up >= self.quorum.saturating_sub(self.hysteresis)
        } else {
            up >= self.quorum + self.hysteresis
        };
        (now_met != self.met).then(|| {
            self.met = now_met;
            now_met
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_hysteresis_quorum_follows_the_count() {
        let mut q = Quorum::new(2, 0, 3);
        assert!(q.met());
        assert_eq!(q.update(2), None);
        assert_eq!(q.update(1), Some(false));
        assert_eq!(q.update(2), Some(true));
    }

    #[test]
    fn hysteresis_keeps_the_verdict_near_the_threshold() {
        let mut q = Quorum::new(3, 1, 3);
        assert_eq!(q.update(2), None, "lost only below 3 - 1");
        assert_eq!(q.update(1), Some(false));
        assert_eq!(q.update(3), None, "back only at 3 + 1");
        assert_eq!(q.update(4), Some(true));
    }

    #[test]
    fn a_quorum_of_zero_is_always_met() {
        let mut q = Quorum::new(0, 0, 0);
        assert!(q.met());
        assert_eq!(q.update(0), None);
    }
}
