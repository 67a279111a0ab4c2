//! Sessions, sans IO: ids, who is logged in, their CSRF token and when
//! they expire. Time comes in as a plain value.
//!
//! A browser gets an anonymous session on its first visit so that even the
//! login form carries a CSRF token tied to it; logging in replaces that
//! session with a new id (an id an attacker planted before login is worth
//! nothing after it).

use std::collections::HashMap;

use tandem_model::api::UnixMillis;
use tandem_model::config::Role;

/// Anonymous sessions only carry a login form: they live briefly.
pub const ANONYMOUS_TTL_MS: u64 = 15 * 60 * 1000;
/// Above this many sessions the oldest anonymous ones go first, so a
/// client fetching the login page in a loop cannot grow memory.
pub const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub user: Option<User>,
    pub csrf: String,
    pub created: UnixMillis,
    pub expires: UnixMillis,
}

#[derive(Default)]
pub struct SessionStore {
    sessions: HashMap<String, Session>,
}

impl SessionStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new anonymous session; returns its id.
    pub fn create_anonymous(&mut self, now: UnixMillis) -> String {
        self.insert(None, now, ANONYMOUS_TTL_MS)
    }

    /// Logs `user` in: the old session (if any) is dropped and a new id
    /// with a new CSRF token is issued, valid for `timeout_ms` from now.
    pub fn login(
        &mut self,
        old: Option<&str>,
        user: User,
        now: UnixMillis,
        timeout_ms: u64,
    ) -> String {
        if let Some(old) = old {
            self.sessions.remove(old);
        }
        self.insert(Some(user), now, timeout_ms)
    }

    fn insert(&mut self, user: Option<User>, now: UnixMillis, ttl: u64) -> String {
        self.sweep(now);
        if self.sessions.len() >= MAX_SESSIONS {
            self.evict_oldest_anonymous();
        }
        let id = crate::random_token(32);
        self.sessions.insert(
            id.clone(),
            Session {
                user,
                csrf: crate::random_token(32),
                created: now,
                expires: now.saturating_add(ttl),
            },
        );
        id
    }

    /// The live session with this id; an expired one is removed.
    pub fn get(&mut self, id: &str, now: UnixMillis) -> Option<Session> {
        match self.sessions.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                self.sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&mut self, id: &str) {
        self.sessions.remove(id);
    }

    /// Ends every session of users no longer in `keep` (or whose role
    /// changed) — after the configuration changed its users.
    pub fn retain_users(&mut self, keep: &[User]) {
        self.sessions
            .retain(|_, s| s.user.as_ref().is_none_or(|u| keep.contains(u)));
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn sweep(&mut self, now: UnixMillis) {
        self.sessions.retain(|_, s| s.expires > now);
    }

    fn evict_oldest_anonymous(&mut self) {
        let victim = self
            .sessions
            .iter()
            .filter(|(_, s)| s.user.is_none())
            .min_by_key(|(_, s)| s.created)
            .map(|(id, _)| id.clone());
        match victim {
            Some(id) => {
                self.sessions.remove(&id);
            }
            None => {
                // Only logged-in sessions: the oldest one goes.
                if let Some(id) = self
                    .sessions
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(id, _)| id.clone())
                {
                    self.sessions.remove(&id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> User {
        User {
            name: "ada".into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn a_session_expires_after_its_timeout() {
        let mut s = SessionStore::new();
        let id = s.login(None, admin(), 1_000, 60_000);
        assert!(s.get(&id, 60_999).is_some());
        assert!(s.get(&id, 61_000).is_none());
        assert!(s.is_empty(), "the expired session is removed");
    }

    #[test]
    fn login_replaces_the_anonymous_session_with_a_new_id_and_token() {
        let mut s = SessionStore::new();
        let anon = s.create_anonymous(0);
        let anon_csrf = s.get(&anon, 1).unwrap().csrf;
        let id = s.login(Some(&anon), admin(), 1, 60_000);
        assert_ne!(id, anon);
        assert!(s.get(&anon, 2).is_none(), "the planted id is worthless");
        let sess = s.get(&id, 2).unwrap();
        assert_ne!(sess.csrf, anon_csrf);
        assert_eq!(sess.user, Some(admin()));
    }

    #[test]
    fn anonymous_sessions_are_short_lived_and_bounded() {
        let mut s = SessionStore::new();
        let logged = s.login(None, admin(), 0, 10 * ANONYMOUS_TTL_MS);
        for i in 0..MAX_SESSIONS + 5 {
            s.create_anonymous(i as u64);
        }
        assert!(s.len() <= MAX_SESSIONS);
        assert!(s.get(&logged, MAX_SESSIONS as u64).is_some());
        // All anonymous ones are gone once their TTL passed.
        let later = (MAX_SESSIONS + 5) as u64 + ANONYMOUS_TTL_MS;
        assert!(s.get(&logged, later).is_some());
        s.create_anonymous(later);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn removed_users_lose_their_sessions() {
        let mut s = SessionStore::new();
        let id = s.login(None, admin(), 0, 60_000);
        let demoted = User {
            name: "ada".into(),
            role: Role::Viewer,
        };
        s.retain_users(&[demoted]);
        assert!(s.get(&id, 1).is_none());
    }
}
