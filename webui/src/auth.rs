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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
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
///
/// argon2's own verification allocates the hash's memory (19 MiB by
/// default, 64-byte aligned) afresh on every call, and glibc 2.36
/// (bookworm) does not reuse a freed aligned chunk of that size for the
/// next aligned allocation (memalign scans its free bins only from 2.38):
/// the process grew by that much on every check, for good, and anyone
/// who reaches the login page could drive it. Each thread that checks
/// keeps one buffer of blocks and reuses it.
pub fn verify_password(hash: &str, password: &str) -> bool {
    thread_local! {
        static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const {
            std::cell::RefCell::new(Vec::new())
        };
    }
    let Ok(h) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&h.salt, &h.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&h) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm.as_str()) else {
        return false;
    };
    let version = match h.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let count = params.block_count();
    let mut out = vec![0u8; expected.len()];
    let hashed = BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < count {
            blocks.resize(count, argon2::Block::new());
        }
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut out,
            &mut blocks[..count],
        )
    });
    use subtle::ConstantTimeEq;
    hashed.is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
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

/// Password checks on a few threads of their own, with a bounded queue.
///
/// An argon2id check takes a core and 19 MiB (the default parameters; a
/// hash made with larger ones takes more) for tens of milliseconds. The
/// rate limiter counts failures once they are known, so a burst of
/// parallel logins all pass it first. On the blocking pool they would run
/// all at once, and worse, each of its threads gets a malloc arena of its
/// own that keeps its last 19 MiB (glibc raises its mmap threshold after
/// the first free): 32 parallel logins left the web UI 350 MiB larger.
/// One thread per core, each reusing its arena, bound both the time and
/// the memory; beyond the queue a login is answered 503 at once.
pub struct PasswordGate {
    jobs: std::sync::mpsc::SyncSender<Job>,
    shared: Arc<GateCounters>,
    threads: usize,
    rx: Arc<Mutex<std::sync::mpsc::Receiver<Job>>>,
    started: std::sync::Once,
}

struct Job {
    users: Vec<WebUser>,
    name: String,
    password: String,
    reply: tokio::sync::oneshot::Sender<Option<User>>,
}

#[derive(Default)]
struct GateCounters {
    waiting: AtomicUsize,
    checks: AtomicU64,
    refused: AtomicU64,
}

/// The gate's counters, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateSnapshot {
    pub checks: u64,
    pub refused: u64,
    pub waiting: usize,
}

/// Too many logins are being checked or waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many logins are being checked at once; try again in a moment")]
pub struct Busy;

impl PasswordGate {
    /// `threads` checkers and a queue of `max_waiting`. The threads start
    /// with the first check (a web UI nobody logs in to has none) and end
    /// when the gate is dropped.
    pub fn new(threads: usize, max_waiting: usize) -> PasswordGate {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(max_waiting);
        PasswordGate {
            jobs,
            shared: Arc::default(),
            threads: threads.max(1),
            rx: Arc::new(Mutex::new(rx)),
            started: std::sync::Once::new(),
        }
    }

    fn start(&self) {
        for i in 0..self.threads {
            let (rx, shared) = (self.rx.clone(), self.shared.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap().recv();
                        let Ok(job) = job else { return };
                        shared.waiting.fetch_sub(1, Ordering::Relaxed);
                        // The client may have gone; the answer is dropped.
                        if job.reply.is_closed() {
                            continue;
                        }
                        shared.checks.fetch_add(1, Ordering::Relaxed);
                        let _ = job.reply.send(check(&job.users, &job.name, &job.password));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password checker: {e}");
            }
        }
    }

    /// The process's gate: one checker per core, and a queue a burst can
    /// fill in a second. One for the process, not one per web UI state,
    /// so the checkers and their argon2 memory are made once.
    pub fn shared() -> &'static PasswordGate {
        static GATE: OnceLock<PasswordGate> = OnceLock::new();
        GATE.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            PasswordGate::new(cores, 64)
        })
    }

    /// [`check`] on a checker thread, or [`Busy`] when the queue is full.
    pub async fn check(
        &self,
        users: Vec<WebUser>,
        name: String,
        password: String,
    ) -> Result<Option<User>, Busy> {
        self.started.call_once(|| self.start());
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.waiting.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            users,
            name,
            password,
            reply,
        };
        if self.jobs.try_send(job).is_err() {
            self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Busy);
        }
        answer.await.map_err(|_| Busy)
    }

    pub fn snapshot(&self) -> GateSnapshot {
        GateSnapshot {
            checks: self.shared.checks.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            waiting: self.shared.waiting.load(Ordering::Relaxed),
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

    #[tokio::test]
    async fn a_full_password_queue_answers_busy_at_once_and_the_rest_are_checked() {
        let gate = PasswordGate::new(1, 2);
        let users = vec![user("ada", "pw-a", Role::Admin)];
        let answers = futures::future::join_all(
            (0..20).map(|_| gate.check(users.clone(), "ada".into(), "pw-a".into())),
        )
        .await;
        let busy = answers.iter().filter(|a| a.is_err()).count();
        let checked = answers
            .iter()
            .filter(|a| matches!(a, Ok(Some(u)) if u.name == "ada"))
            .count();
        // The queue holds two and the checker takes one off it meanwhile:
        // at most a few are checked, every other is told at once.
        assert!(busy >= 16, "{busy} busy of 20");
        assert_eq!(busy + checked, 20);
        let s = gate.snapshot();
        assert_eq!(
            (s.refused, s.checks, s.waiting),
            (busy as u64, checked as u64, 0)
        );
        // Once drained, it takes checks again.
        assert!(matches!(
            gate.check(users, "ada".into(), "wrong".into()).await,
            Ok(None)
        ));
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
