//! Authenticated adverts, sans IO: the HMAC-SHA256 trailer of
//! draft-cassen-vrrp-auth-hmac as keepalived 2.4.3 (`auth_hmac`) puts it
//! on the wire, its sequence numbers and the receiver's replay rules.
//!
//! On the wire (28 octets after the address list, and after VRRPv2's
//! Authentication Data; nothing in the VRRP header announces it, the IP
//! length covers it):
//!
//! ```text
//! ext_type (1) = 1 | key_id (1) | reserved (2) = 0
//! sequence (8): seconds (4), 1/65536 s (2), counter (2) of the sender's UNIX time
//! hmac (16): the first 16 octets of HMAC-SHA256(key, M)
//! ```
//!
//! M is a 20-octet pseudo-header (family 4 or 6, VRRP version, VRID, 0,
//! the IP source address padded to 16 octets), the VRRP message with its
//! checksum read as zero, the trailer's first 12 octets, and 16 zero
//! octets for the MAC. The checksum is outside the MAC: for IPv4 it covers
//! the message without the trailer (v3's pseudo-header length too), for
//! IPv6 the whole payload, MAC included (keepalived leaves it to the
//! kernel's IPV6_CHECKSUM, which sums what is sent).
//!
//! Where tandem's rules differ from keepalived's, it is so that a clock
//! step on either director cannot make two masters:
//! - the sender's time is the wall clock read once and then carried by
//!   the monotonic clock; it follows the wall clock forward and never
//!   back, so its sequence numbers never fall (keepalived's fall back to
//!   the clock when it runs more than the window behind them, and its
//!   receivers then drop them as replays or stale);
//! - a receiver holding a live stream from a sender (an advert accepted
//!   within the last window, by the monotonic clock) accepts any later
//!   sequence number whatever the two wall clocks say; the window only
//!   judges the first advert of a stream, which is all it is for
//!   (a replay after a restart, when no earlier sequence is known).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tandem_model::config::{AntiReplay, AuthHmac, AuthMode, Config};

use crate::packet::{Drop, Version};

/// The trailer's length on the wire.
pub const TRAILER_LEN: usize = 28;
/// `ext_type` 1: HMAC-SHA256 truncated to 128 bits.
const EXT_HMAC_SHA256: u8 = 1;
const MAC_LEN: usize = 16;
/// keepalived refuses keys outside 32-64 octets; so does tandem, so that a
/// key works on both.
const KEY_LEN: std::ops::RangeInclusive<usize> = 32..=64;
/// Senders remembered per instance. Only a sender whose advert passed its
/// MAC takes a place, so no forged flood can push a real peer out.
const MARKS: usize = 16;

/// One key. Its bytes are never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} octets)", self.0.len())
    }
}

/// A key file that cannot be used, with where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Keys by id, from `text` (the file at `path`): one `<id> hex:<key>` per
/// line, `#` comments and blank lines allowed.
pub fn parse_keys(text: &str, path: &str) -> Result<BTreeMap<u8, Key>, KeyError> {
    let mut keys = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |reason: String| KeyError::Line {
            path: path.to_string(),
            line: n + 1,
            reason,
        };
        let mut words = line.split_whitespace();
        let (Some(id), Some(key), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected \"<id> hex:<key>\"".into()));
        };
        let id: u8 = match id.parse() {
            Ok(id) if id > 0 => id,
            _ => return Err(bad(format!("key id \"{id}\" is not 1-255"))),
        };
        let Some(hex) = key.strip_prefix("hex:") else {
            return Err(bad(
                "the key must be written \"hex:\" and its octets in hex (64-128 digits)".into(),
            ));
        };
        let bytes = decode_hex(hex).ok_or_else(|| bad("the key is not hex digits".into()))?;
        if !KEY_LEN.contains(&bytes.len()) {
            return Err(bad(format!(
                "the key is {} octets: allowed 32-64 (keepalived's bounds; HMAC-SHA256 wants at least 32)",
                bytes.len()
            )));
        }
        if keys.insert(id, Key(bytes)).is_some() {
            return Err(bad(format!("key id {id} is given twice")));
        }
    }
    if keys.is_empty() {
        return Err(KeyError::File {
            path: path.to_string(),
            reason: "no keys in it".into(),
        });
    }
    Ok(keys)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads the keys `cfg` names: its key file, or its systemd credential
/// under `credentials` (`$CREDENTIALS_DIRECTORY`). A key file anyone but
/// its owner may read or write is refused: the keys are the only thing
/// between the segment and the VIPs.
pub fn load_keys(
    cfg: &AuthHmac,
    credentials: Option<&Path>,
) -> Result<BTreeMap<u8, Key>, KeyError> {
    let path = match (&cfg.key_file, &cfg.key_credential) {
        (Some(f), _) => f.clone(),
        (None, Some(c)) => credentials
            .ok_or_else(|| {
                KeyError::Config(format!(
                    "key_credential \"{c}\": no $CREDENTIALS_DIRECTORY (give the unit LoadCredential={c}:<file>)"
                ))
            })?
            .join(c),
        (None, None) => return Err(KeyError::Config("auth_hmac names no keys".into())),
    };
    let shown = path.display().to_string();
    let file_err = |reason: String| KeyError::File {
        path: shown.clone(),
        reason,
    };
    let meta = std::fs::metadata(&path).map_err(|e| file_err(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(file_err(format!(
                "mode {:o} lets others than its owner read or change the keys: chmod 600 it",
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(e.to_string()))?;
    parse_keys(&text, &shown)
}

/// Every instance's authentication in `config`, by instance name, with
/// its keys read (systemd credentials from `$CREDENTIALS_DIRECTORY`).
pub fn for_config(config: &Config) -> Result<BTreeMap<String, Auth>, KeyError> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let mut out = BTreeMap::new();
    for inst in &config.vrrp_instances {
        let Some(h) = &inst.auth_hmac else {
            continue;
        };
        let named = |e: KeyError| KeyError::Config(format!("instance {}: {e}", inst.name));
        let keys = load_keys(h, credentials.as_deref()).map_err(named)?;
        let auth = Auth::new(h, keys, inst.advert_interval).map_err(named)?;
        out.insert(inst.name.clone(), auth);
    }
    Ok(out)
}

/// What the MAC binds besides the message: who sent it, for which
/// virtual router.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub version: Version,
    pub vrid: u8,
    pub src: IpAddr,
}

impl Context {
    fn pseudo_header(&self) -> [u8; 20] {
        let mut p = [0u8; 20];
        p[1] = self.version.number();
        p[2] = self.vrid;
        match self.src {
            IpAddr::V4(a) => {
                p[0] = 4;
                p[4..8].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                p[0] = 6;
                p[4..20].copy_from_slice(&a.octets());
            }
        }
        p
    }
}

/// The 16-octet MAC of `msg` (the VRRP message without trailer) and the
/// trailer's first 12 octets `head`.
fn mac(key: &Key, ctx: &Context, msg: &[u8], head: &[u8]) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(&key.0).ok()?;
    m.update(&ctx.pseudo_header());
    m.update(msg.get(..6)?);
    m.update(&[0, 0]);
    m.update(msg.get(8..)?);
    m.update(head);
    m.update(&[0u8; MAC_LEN]);
    Some(m)
}

/// The 28-octet trailer for `msg`, signed with `key` as `key_id`.
pub fn trailer(key: &Key, key_id: u8, seq: u64, ctx: &Context, msg: &[u8]) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[0] = EXT_HMAC_SHA256;
    t[1] = key_id;
    t[4..12].copy_from_slice(&seq.to_be_bytes());
    if let Some(m) = mac(key, ctx, msg, &t[..12]) {
        t[12..].copy_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
    }
    t
}

/// RFC 1982 serial arithmetic on 64 bits, as keepalived compares them.
fn seq_after(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) > 0
}

/// A sequence number at `unix` (time since the epoch): seconds, 1/65536 s,
/// counter 0.
fn seq_of(unix: Duration) -> u64 {
    let frac = (u64::from(unix.subsec_nanos()) << 16) / 1_000_000_000;
    (unix.as_secs() & 0xffff_ffff) << 32 | frac << 16
}

/// The seconds a sequence number carries.
fn seq_secs(seq: u64) -> u32 {
    (seq >> 32) as u32
}

/// What a receiver remembers of one sender.
#[derive(Clone, Copy, Debug)]
struct Mark {
    src: IpAddr,
    seq: u64,
    at: Instant,
}

/// One instance's authentication: its keys and settings, the sequence it
/// sends, and what it has accepted from whom.
#[derive(Debug)]
pub struct Auth {
    keys: BTreeMap<u8, Key>,
    active: u8,
    replay: AntiReplay,
    window: Duration,
    mode: AuthMode,
    /// The sender's time: the wall clock at that instant.
    anchor: Option<(Instant, Duration)>,
    sent: u64,
    marks: Vec<Mark>,
}

impl Auth {
    /// From the configuration and its keys; refused when the active key is
    /// not among them (keepalived then quietly sends unauthenticated).
    pub fn new(
        cfg: &AuthHmac,
        keys: BTreeMap<u8, Key>,
        advert_interval: Duration,
    ) -> Result<Auth, KeyError> {
        let active = u8::try_from(cfg.active_key).unwrap_or(0);
        if !keys.contains_key(&active) {
            return Err(KeyError::Config(format!(
                "active_key {} is not in the key file (it has {})",
                cfg.active_key,
                keys.keys()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Auth {
            keys,
            active,
            replay: cfg.anti_replay,
            window: cfg.window(advert_interval),
            mode: cfg.mode,
            anchor: None,
            sent: 0,
            marks: Vec::new(),
        })
    }

    /// Takes `new`'s keys and settings and keeps what this one has sent and
    /// accepted: a reload (a key rotated, a mode moved on) must not make
    /// the sequence fall or forget a sender's last advert.
    pub fn reconfigure(&mut self, new: Auth) {
        self.keys = new.keys;
        self.active = new.active;
        self.replay = new.replay;
        self.window = new.window;
        self.mode = new.mode;
    }

    /// Adverts carry a trailer (not in `receive-only`).
    pub fn signs(&self) -> bool {
        self.mode != AuthMode::ReceiveOnly
    }

    /// The time this sender tells at `now`, `wall` being the wall clock
    /// then: carried by the monotonic clock from the first reading,
    /// moved forward when the wall clock is ahead of it by a second or
    /// more, never back.
    fn clock(&mut self, now: Instant, wall: Duration) -> Duration {
        let carried = match self.anchor {
            Some((at, base)) => base + now.saturating_duration_since(at),
            None => wall,
        };
        if self.anchor.is_none() || wall >= carried + Duration::from_secs(1) {
            self.anchor = Some((now, wall));
            return wall;
        }
        carried
    }

    /// The next sequence number: the sender's time, or one more than the
    /// last when that time has not moved past it.
    pub fn next_seq(&mut self, now: Instant, wall: Duration) -> u64 {
        let clk = seq_of(self.clock(now, wall));
        self.sent = if seq_after(clk, self.sent) {
            clk
        } else {
            self.sent.wrapping_add(1)
        };
        self.sent
    }

    /// Signs `msg` (the VRRP message, checksum in place) once for all its
    /// destinations, as keepalived 2.4.3: the MAC does not cover the
    /// destination. None in receive-only mode.
    pub fn sign(
        &mut self,
        ctx: &Context,
        msg: &[u8],
        now: Instant,
        wall: Duration,
    ) -> Option<[u8; TRAILER_LEN]> {
        if !self.signs() {
            return None;
        }
        let seq = self.next_seq(now, wall);
        let key = self.keys.get(&self.active)?;
        Some(trailer(key, self.active, seq, ctx, msg))
    }

    /// The receive checks, in order: a trailer where the mode asks for
    /// one, well formed, a known key, the MAC, then the sequence (see the
    /// module's notes). Only an advert that passes them all changes what
    /// is remembered.
    pub fn verify(
        &mut self,
        ctx: &Context,
        msg: &[u8],
        trailer: Option<&[u8]>,
        now: Instant,
        wall: Duration,
    ) -> Result<(), Drop> {
        let Some(t) = trailer else {
            return match self.mode {
                AuthMode::Enforce => Err(Drop::AuthMissing),
                AuthMode::Permissive | AuthMode::ReceiveOnly => Ok(()),
            };
        };
        if t.len() != TRAILER_LEN || t[0] != EXT_HMAC_SHA256 || t[2..4] != [0, 0] {
            return Err(Drop::AuthMalformed);
        }
        let key = self.keys.get(&t[1]).ok_or(Drop::AuthUnknownKey)?;
        let m = mac(key, ctx, msg, &t[..12]).ok_or(Drop::AuthMalformed)?;
        // Constant time, over the 16 octets sent (hmac's truncated verify).
        m.verify_truncated_left(&t[12..])
            .map_err(|_| Drop::AuthBadMac)?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&t[4..12]);
        let seq = u64::from_be_bytes(seq);
        self.accept(ctx.src, seq, now, wall)
    }

    fn accept(&mut self, src: IpAddr, seq: u64, now: Instant, wall: Duration) -> Result<(), Drop> {
        let i = self.marks.iter().position(|m| m.src == src);
        let mark = i.map(|i| self.marks[i]);
        let live = mark.is_some_and(|m| now.saturating_duration_since(m.at) <= self.window);
        match self.replay {
            AntiReplay::Monotonic => {
                if mark.is_some_and(|m| !seq_after(seq, m.seq)) {
                    return Err(Drop::AuthReplay);
                }
            }
            AntiReplay::Time if live => {
                if mark.is_some_and(|m| !seq_after(seq, m.seq)) {
                    return Err(Drop::AuthReplay);
                }
            }
            AntiReplay::Time => {
                // A first advert, or one after a silence longer than the
                // window: its time must be ours, give or take the window
                // (bounds included, as keepalived).
                let skew = (wall.as_secs() as u32).wrapping_sub(seq_secs(seq)) as i32;
                if u64::from(skew.unsigned_abs()) > self.window.as_secs() {
                    return Err(Drop::AuthStale);
                }
                // An expired mark still refuses what it has seen, unless
                // its time is itself out of the window (a sender whose
                // clock was wrong and has been put right).
                if let Some(m) = mark {
                    let mark_skew = (wall.as_secs() as u32).wrapping_sub(seq_secs(m.seq)) as i32;
                    let mark_fresh = u64::from(mark_skew.unsigned_abs()) <= self.window.as_secs();
                    if mark_fresh && !seq_after(seq, m.seq) {
                        return Err(Drop::AuthReplay);
                    }
                }
            }
        }
        let new = Mark { src, seq, at: now };
        match i {
            Some(i) => self.marks[i] = new,
            None if self.marks.len() < MARKS => self.marks.push(new),
            None => {
                // The sender heard from longest ago gives up its place.
                if let Some(oldest) = self.marks.iter_mut().min_by_key(|m| m.at) {
                    *oldest = new;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
