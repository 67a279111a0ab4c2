//! Who is asking: password checks against the argon2 hashes of the
//! configuration's `[[webui.user]]`, and the roles.
//!
//! Checking a password is deliberately slow (argon2), so it runs on the
//! blocking pool. A name nobody has still costs one verification, so the
//! time an answer takes does not tell which names exist. Scripts using
//! HTTP basic auth would pay that on every request: a successful check is
//! remembered for [`BASIC_CACHE_MS`] under a keyed digest of the
//! credentials (never the password itself).

use std::collections::HashMap;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};
use tandem_model::api::UnixMillis;
use tandem_model::config::{Role, WebUser};

use crate::session::User;

/// How long a verified basic-auth credential is trusted without a new
/// argon2 check.
pub const BASIC_CACHE_MS: u64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password is empty")]
    Empty,
    #[error("hashing failed: {0}")]
    Argon2(String),
}

/// An argon2id PHC string for `password`, with a random salt and the
/// crate's default parameters (19 MiB, 2 passes, 1 lane: OWASP's minimum).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash
/// matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, checked when the name is unknown.
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY
        .get_or_init(|| hash_password(&crate::random_token(24)).expect("hashing a random password"))
}

/// The user `name` if `password` is theirs. Takes as long whether or not
/// the name exists. Call it off the async threads.
pub fn check(users: &[WebUser], name: &str, password: &str) -> Option<User> {
    match users.iter().find(|u| u.name == name) {
        Some(u) => verify_password(&u.password_hash, password).then(|| User {
            name: u.name.clone(),
            role: u.role,
        }),
        None => {
            let _ = verify_password(decoy(), password);
            None
        }
    }
}

/// Credentials from an `Authorization: Basic` header.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let (scheme, value) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Recently verified basic-auth credentials, sans IO.
pub struct BasicCache {
    key: String,
    entries: HashMap<[u8; 32], (User, UnixMillis)>,
}

impl Default for BasicCache {
    fn default() -> Self {
        BasicCache {
            // Per process: a digest taken from memory is useless elsewhere
            // and cannot be precomputed.
            key: crate::random_token(32),
            entries: HashMap::new(),
        }
    }
}

impl BasicCache {
    fn digest(&self, name: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [self.key.as_str(), name, password] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    pub fn get(&mut self, name: &str, password: &str, now: UnixMillis) -> Option<User> {
        let d = self.digest(name, password);
        match self.entries.get(&d) {
            Some((u, at)) if now.saturating_sub(*at) < BASIC_CACHE_MS => Some(u.clone()),
            Some(_) => {
                self.entries.remove(&d);
                None
            }
            None => None,
        }
    }

    pub fn put(&mut self, name: &str, password: &str, user: User, now: UnixMillis) {
        self.entries
            .retain(|_, (_, at)| now.saturating_sub(*at) < BASIC_CACHE_MS);
        let d = self.digest(name, password);
        self.entries.insert(d, (user, now));
    }

    /// After the users changed, nothing verified before counts.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The role's name as shown to people.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::Viewer => "viewer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, pw: &str, role: Role) -> WebUser {
        WebUser {
            name: name.into(),
            password_hash: hash_password(pw).unwrap(),
            role,
        }
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct horse "));
        assert!(!verify_password("not a hash", "x"));
        assert!(matches!(hash_password(""), Err(HashError::Empty)));
    }

    #[test]
    fn check_finds_the_user_and_role() {
        let users = [
            user("ada", "pw-a", Role::Admin),
            user("vic", "pw-v", Role::Viewer),
        ];
        assert_eq!(
            check(&users, "vic", "pw-v"),
            Some(User {
                name: "vic".into(),
                role: Role::Viewer
            })
        );
        assert_eq!(check(&users, "vic", "pw-a"), None);
        assert_eq!(check(&users, "nobody", "pw-a"), None);
    }

    #[test]
    fn basic_credentials_are_parsed() {
        // "ada:s3:cret" — a colon in the password stays in it.
        assert_eq!(
            parse_basic("Basic YWRhOnMzOmNyZXQ="),
            Some(("ada".into(), "s3:cret".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn the_basic_cache_forgets_after_its_time_and_on_clear() {
        let mut c = BasicCache::default();
        let u = User {
            name: "ada".into(),
            role: Role::Admin,
        };
        c.put("ada", "pw", u.clone(), 0);
        assert_eq!(c.get("ada", "pw", BASIC_CACHE_MS - 1), Some(u.clone()));
        assert_eq!(c.get("ada", "other", 1), None);
        assert_eq!(c.get("ada", "pw", BASIC_CACHE_MS), None);
        c.put("ada", "pw", u, 0);
        c.clear();
        assert_eq!(c.get("ada", "pw", 1), None);
    }
}
