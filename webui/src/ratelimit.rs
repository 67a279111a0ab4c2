//! Login attempts, sans IO: failures are counted per source address, and
//! per user name from that address, in a sliding window; past a limit,
//! attempts are refused (without checking the password) until the oldest
//! failure leaves the window.
//!
//! A user name is limited per address, not everywhere: counted across
//! addresses, anyone who can reach the login page could lock the real
//! admin out by failing five times with its name. Guessing one name from
//! many addresses is paid for by argon2's cost per attempt and by each
//! address's own limit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use tandem_model::api::UnixMillis;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub window_ms: u64,
    /// Failed attempts allowed for one user name from one address in the
    /// window.
    pub per_user: usize,
    /// Failed attempts allowed from one address in the window (higher:
    /// several operators may sit behind one NAT).
    pub per_address: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window_ms: 5 * 60 * 1000,
            per_user: 5,
            per_address: 20,
        }
    }
}

/// How long to wait before trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub retry_after_secs: u64,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many failed login attempts: wait {} s before trying again",
            self.retry_after_secs
        )
    }
}

#[derive(Default)]
pub struct RateLimiter {
    limits: Limits,
    users: HashMap<(String, IpAddr), VecDeque<UnixMillis>>,
    addresses: HashMap<IpAddr, VecDeque<UnixMillis>>,
}

impl RateLimiter {
    pub fn new(limits: Limits) -> Self {
        RateLimiter {
            limits,
            ..Default::default()
        }
    }

    /// Whether an attempt for `user` from `addr` may be checked now.
    pub fn check(&mut self, addr: IpAddr, user: &str, now: UnixMillis) -> Result<(), Blocked> {
        let window = self.limits.window_ms;
        let by_user = blocked(
            self.users.get_mut(&(user.to_string(), addr)),
            self.limits.per_user,
            window,
            now,
        );
        let by_addr = blocked(
            self.addresses.get_mut(&addr),
            self.limits.per_address,
            window,
            now,
        );
        match by_user.max(by_addr) {
            Some(ms) => Err(Blocked {
                retry_after_secs: ms.div_ceil(1000).max(1),
            }),
            None => Ok(()),
        }
    }

    pub fn failed(&mut self, addr: IpAddr, user: &str, now: UnixMillis) {
        self.prune(now);
        self.users
            .entry((user.to_string(), addr))
            .or_default()
            .push_back(now);
        self.addresses.entry(addr).or_default().push_back(now);
    }

    /// A successful login clears the user's failures from that address
    /// (not the address's: one good account must not unlock guessing at
    /// the others).
    pub fn succeeded(&mut self, addr: IpAddr, user: &str) {
        self.users.remove(&(user.to_string(), addr));
    }

    /// Drops what left the window, so names never tried again do not stay.
    fn prune(&mut self, now: UnixMillis) {
        let window = self.limits.window_ms;
        let fresh = |q: &mut VecDeque<UnixMillis>| {
            while q.front().is_some_and(|&t| t + window <= now) {
                q.pop_front();
            }
            !q.is_empty()
        };
        self.users.retain(|_, q| fresh(q));
        self.addresses.retain(|_, q| fresh(q));
    }
}

/// Milliseconds until the attempts in `q` fall under `limit`, if over it.
fn blocked(
    q: Option<&mut VecDeque<UnixMillis>>,
    limit: usize,
    window: u64,
    now: UnixMillis,
) -> Option<u64> {
    let q = q?;
    while q.front().is_some_and(|&t| t + window <= now) {
        q.pop_front();
    }
    if q.len() < limit {
        return None;
    }
    // The attempt that must leave the window for one more to be allowed.
    let t = q[q.len() - limit];
    Some(t + window - now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn limits() -> Limits {
        Limits {
            window_ms: 60_000,
            per_user: 3,
            per_address: 5,
        }
    }

    #[test]
    fn a_user_is_blocked_after_the_limit_until_the_window_moves() {
        let mut r = RateLimiter::new(limits());
        for t in 0..3 {
            assert!(r.check(A, "ada", t * 1000).is_ok());
            r.failed(A, "ada", t * 1000);
        }
        // Blocked from A, for the rest of the first failure's window.
        assert_eq!(
            r.check(A, "ada", 10_000),
            Err(Blocked {
                retry_after_secs: 50
            })
        );
        assert!(r.check(A, "ada", 60_000).is_ok());
    }

    #[test]
    fn failures_from_one_address_never_lock_the_user_out_elsewhere() {
        let mut r = RateLimiter::new(limits());
        // An attacker at A fails with the admin's name until A is blocked.
        for t in 0..10 {
            if r.check(A, "ada", t).is_ok() {
                r.failed(A, "ada", t);
            }
        }
        assert!(r.check(A, "ada", 20).is_err());
        // The admin, from B, is checked as ever.
        assert!(r.check(B, "ada", 20).is_ok());
    }

    #[test]
    fn an_address_is_blocked_whatever_user_names_it_tries() {
        let mut r = RateLimiter::new(limits());
        for i in 0..5 {
            r.failed(A, &format!("u{i}"), 0);
        }
        let err = r.check(A, "someone-else", 1).unwrap_err();
        assert_eq!(err.retry_after_secs, 60);
        assert!(err.to_string().contains("wait 60 s"), "{err}");
        assert!(r.check(B, "someone-else", 1).is_ok());
    }

    #[test]
    fn success_clears_the_users_failures_but_not_the_addresss() {
        let mut r = RateLimiter::new(limits());
        for _ in 0..2 {
            r.failed(A, "ada", 0);
        }
        r.succeeded(A, "ada");
        r.failed(A, "ada", 1);
        r.failed(A, "ada", 2);
        assert!(r.check(A, "ada", 3).is_ok(), "2 failures since the success");
        r.failed(A, "x", 4);
        assert!(r.check(A, "y", 5).is_err(), "5 failures from A in all");
    }
}
