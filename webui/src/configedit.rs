//! Editing the configuration file safely.
//!
//! The text side is sans IO: [`version`] (the fingerprint a form carries
//! so a save based on an older version is refused), [`validate`],
//! [`diff`], [`mask_secrets`]. [`ConfigFile`] does the file side: an
//! atomic replace (temporary file, fsync, rename, fsync of the directory)
//! that keeps the previous versions as `<file>.1` (newest) to `<file>.N`,
//! and the undo of such a replace when the daemons refuse the new file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tandem_model::config::{self, Config, ConfigError, Diagnostic};

/// The fingerprint of a version of the file: hex SHA-256 of its bytes.
pub fn version(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses and validates `text` as the file at `origin` would be: a
/// cluster file for every node, resolved for this director.
pub fn validate(text: &str, origin: &str) -> Result<Config, Vec<Diagnostic>> {
    let me = config::cluster::identity(Path::new(origin));
    match config::parse_as(text, origin, me.as_deref()) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid(d)) => Err(d.0),
        Err(e @ ConfigError::Io { .. }) => unreachable!("parsing text reads no file: {e}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Same,
    Added,
    Removed,
}

/// One line of a diff, with its numbers in the old and the new text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub change: Change,
    pub old_line: Option<usize>,
    pub new_line: Option<usize>,
    pub text: String,
}

/// A diff of `old` to `new`: changed lines with `context` lines around
/// them; a `None` between hunks stands for the unchanged lines left out.
pub fn diff(old: &str, new: &str, context: usize) -> Vec<Option<DiffLine>> {
    let d = similar::TextDiff::from_lines(old, new);
    let mut out = Vec::new();
    for (i, group) in d.grouped_ops(context).iter().enumerate() {
        if i > 0 {
            out.push(None);
        }
        for op in group {
            for c in d.iter_changes(op) {
                let change = match c.tag() {
                    similar::ChangeTag::Equal => Change::Same,
                    similar::ChangeTag::Insert => Change::Added,
                    similar::ChangeTag::Delete => Change::Removed,
                };
                out.push(Some(DiffLine {
                    change,
                    old_line: c.old_index().map(|i| i + 1),
                    new_line: c.new_index().map(|i| i + 1),
                    text: c.value().trim_end_matches(['\n', '\r']).to_string(),
                }));
            }
        }
    }
    out
}

/// Replaces the value of every `password_hash` key with asterisks, keeping
/// the line structure (so line numbers and columns stay right).
///
/// A hash written any other way (an inline table, a quoted or dotted key,
/// a multi-line string) is found in the parsed document and its characters
/// replaced one for one; an argon2 PHC string anywhere else (a comment, a
/// file that does not parse) is masked too. Viewers never see a hash.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&mask_line(line));
    }
    let mut bytes = out.into_bytes();
    let mut spans = Vec::new();
    if let Ok(doc) = std::str::from_utf8(&bytes).map(toml::de::DeTable::parse)
        && let Ok(root) = doc
    {
        secret_spans(root.get_ref(), &mut spans);
    }
    for span in spans {
        // Keep the quotes and the line breaks: lines and columns stay.
        let inner = span.start + 1..span.end.saturating_sub(1).max(span.start + 1);
        for b in &mut bytes[inner] {
            if *b != b'\n' && *b != b'\r' {
                *b = b'*';
            }
        }
    }
    mask_phc(&mut bytes);
    // Only ASCII bytes were written over whole characters' bytes.
    String::from_utf8(bytes).unwrap_or_default()
}

/// The value spans of every `password_hash` key, however written.
fn secret_spans(table: &toml::de::DeTable<'_>, out: &mut Vec<std::ops::Range<usize>>) {
    for (key, value) in table.iter() {
        if key.get_ref() == "password_hash" {
            out.push(value.span());
        }
        secret_value_spans(value.get_ref(), out);
    }
}

fn secret_value_spans(value: &toml::de::DeValue<'_>, out: &mut Vec<std::ops::Range<usize>>) {
    match value {
        toml::de::DeValue::Table(t) => secret_spans(t, out),
        toml::de::DeValue::Array(a) => {
            for v in a.iter() {
                secret_value_spans(v.get_ref(), out);
            }
        }
        _ => {}
    }
}

/// Masks every `$argon2...` PHC string up to its end (a quote, blank,
/// comma or bracket).
fn mask_phc(bytes: &mut [u8]) {
    const MARK: &[u8] = b"$argon2";
    let mut i = 0;
    while i + MARK.len() <= bytes.len() {
        if &bytes[i..i + MARK.len()] == MARK {
            while i < bytes.len() && !b"\"' \t\r\n,]}#".contains(&bytes[i]) {
                bytes[i] = b'*';
                i += 1;
            }
        } else {
            i += 1;
        }
    }
}

fn mask_line(line: &str) -> String {
    let trimmed = line.trim_start();
    let Some(rest) = trimmed.strip_prefix("password_hash") else {
        return line.to_string();
    };
    if !rest.trim_start().starts_with('=') {
        return line.to_string();
    }
    let indent = &line[..line.len() - trimmed.len()];
    let newline = if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    };
    format!("{indent}password_hash = \"********\"{newline}")
}

/// Why a new version was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "the configuration was changed by someone else since you opened it (your version {based_on:.12}, now {current:.12}); nothing was written: review the current file and apply your change again"
    )]
    Conflict { based_on: String, current: String },
    #[error("the configuration has {} error(s); nothing was written", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
}

/// A backup kept beside the file.
#[derive(Clone, Debug, Serialize)]
pub struct Backup {
    /// 1 is the newest.
    pub number: usize,
    pub path: PathBuf,
    pub modified: tandem_model::api::UnixMillis,
    pub size: u64,
}

/// What a write did, for undoing it.
#[derive(Debug)]
pub struct Written {
    pub version: String,
    pub previous_version: String,
}

/// The configuration file and its backups.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
    keep: usize,
    /// Makes the step after the backups shifted fail, as a full disk or
    /// a lost mount would.
    #[cfg(test)]
    fail_after_rotation: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ConfigFile {
    /// `keep`: how many previous versions to keep (at least 1).
    pub fn new(path: impl Into<PathBuf>, keep: usize) -> Self {
        ConfigFile {
            path: path.into(),
            keep: keep.max(1),
            #[cfg(test)]
            fail_after_rotation: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
        let path = path.to_path_buf();
        move |cause| WriteError::Io { path, cause }
    }

    /// The current text and its version.
    pub fn read(&self) -> Result<(String, String), WriteError> {
        let text = fs::read_to_string(&self.path).map_err(self.io(&self.path))?;
        let v = version(&text);
        Ok((text, v))
    }

    pub fn backup_path(&self, n: usize) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    pub fn backups(&self) -> Vec<Backup> {
        (1..=self.keep)
            .filter_map(|n| {
                let path = self.backup_path(n);
                let meta = fs::metadata(&path).ok()?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                Some(Backup {
                    number: n,
                    path,
                    modified,
                    size: meta.len(),
                })
            })
            .collect()
    }

    pub fn read_backup(&self, n: usize) -> Result<String, WriteError> {
        if n == 0 || n > self.keep {
            return Err(WriteError::Io {
                path: self.backup_path(n),
                cause: io::Error::new(io::ErrorKind::NotFound, "no such backup"),
            });
        }
        let path = self.backup_path(n);
        fs::read_to_string(&path).map_err(self.io(&path))
    }

    /// Validates `text` and, if the file is still at `based_on`, replaces
    /// it atomically; the version it replaced becomes backup 1. Once the
    /// daemons took the new file, [`trim`](Self::trim) drops the backup
    /// beyond the last `keep`; if they refused it,
    /// [`undo_write`](Self::undo_write) puts everything back.
    ///
    /// The caller serializes writes (one at a time), so nothing changes
    /// the file between the version check and the rename but an editor
    /// outside the web UI.
    pub fn write(&self, text: &str, based_on: &str) -> Result<Written, WriteError> {
        let (_, current_version) = self.read()?;
        if current_version != based_on {
            return Err(WriteError::Conflict {
                based_on: based_on.to_string(),
                current: current_version,
            });
        }
        validate(text, &self.path.display().to_string()).map_err(WriteError::Invalid)?;
        let meta = fs::metadata(&self.path).map_err(self.io(&self.path))?;
        let tmp = self.temp_path();
        let written = (|| {
            let mut f = File::create(&tmp)?;
            // The file holds password hashes: keep its mode and owner.
            f.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid())).or_else(|e| {
                // Not root: the file stays ours, which is what we can do.
                if e.kind() == io::ErrorKind::PermissionDenied {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(WriteError::Io {
                path: tmp,
                cause: e,
            });
        }
        // Whatever fails from here on puts the backups back where they
        // were: a refused write changes nothing.
        let give_up = |e: WriteError| {
            let _ = fs::remove_file(&tmp);
            self.rotate_in();
            e
        };
        self.rotate_out().map_err(give_up)?;
        // The current version stays in place (a second name, not a copy)
        // until the rename replaces it: at every instant the file is whole.
        let b1 = self.backup_path(1);
        let linked = fs::hard_link(&self.path, &b1);
        #[cfg(test)]
        let linked = linked.and_then(|()| {
            if self
                .fail_after_rotation
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                let _ = fs::remove_file(&b1);
                Err(io::Error::other("injected failure"))
            } else {
                Ok(())
            }
        });
        linked.map_err(self.io(&b1)).map_err(give_up)?;
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&b1);
            return Err(give_up(self.io(&self.path)(e)));
        }
        self.sync_dir()?;
        Ok(Written {
            version: version(text),
            previous_version: current_version,
        })
    }

    /// Puts backup 1 back in place of the file and the older backups back
    /// in their places: the undo of the last [`write`](Self::write) when
    /// the daemons refused what it wrote.
    pub fn undo_write(&self) -> Result<(), WriteError> {
        let b1 = self.backup_path(1);
        fs::rename(&b1, &self.path).map_err(self.io(&self.path))?;
        for n in 2..=self.keep + 1 {
            let from = self.backup_path(n);
            if from.exists() {
                let to = self.backup_path(n - 1);
                fs::rename(&from, &to).map_err(self.io(&to))?;
            }
        }
        self.sync_dir()
    }

    /// Drops the backup beyond the last `keep`, after a write that stays.
    pub fn trim(&self) {
        let _ = fs::remove_file(self.backup_path(self.keep + 1));
    }

    /// Undoes [`rotate_out`](Self::rotate_out), whole or as far as it
    /// got: each backup moved up comes back to its place.
    fn rotate_in(&self) {
        for n in 1..=self.keep {
            let (to, from) = (self.backup_path(n), self.backup_path(n + 1));
            if !to.exists() && from.exists() {
                let _ = fs::rename(&from, &to);
            }
        }
    }

    /// Shifts backups up by one (n -> n+1) to make room for a new backup 1.
    /// The oldest is not dropped until the write succeeds, so an undo
    /// gets every backup back.
    fn rotate_out(&self) -> Result<(), WriteError> {
        let _ = fs::remove_file(self.backup_path(self.keep + 1));
        for n in (1..=self.keep).rev() {
            let from = self.backup_path(n);
            if from.exists() {
                let to = self.backup_path(n + 1);
                fs::rename(&from, &to).map_err(self.io(&to))?;
            }
        }
        Ok(())
    }

    fn temp_path(&self) -> PathBuf {
        let name = self.path.file_name().map_or_else(
            || "tandem.toml".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.path
            .with_file_name(format!(".{name}.tmp-{}", std::process::id()))
    }

    /// The renames are durable only once the directory is synced.
    fn sync_dir(&self) -> Result<(), WriteError> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io(&dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[node]\nname = \"lb1\"\n";
    const GOOD2: &str = "[node]\nname = \"lb2\"\n";

    fn assert_no_temporary_files(dir: &Path) {
        let leftovers: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn file(dir: &Path, keep: usize) -> ConfigFile {
        let path = dir.join("tandem.toml");
        fs::write(&path, GOOD).unwrap();
        ConfigFile::new(path, keep)
    }

    #[test]
    fn a_write_keeps_the_previous_version_as_backup_1_and_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), 3);
        fs::set_permissions(f.path(), fs::Permissions::from_mode(0o640)).unwrap();
        let w = f.write(GOOD2, &version(GOOD)).unwrap();
        assert_eq!(w.version, version(GOOD2));
        assert_eq!(fs::read_to_string(f.path()).unwrap(), GOOD2);
        assert_eq!(fs::read_to_string(f.backup_path(1)).unwrap(), GOOD);
        let mode = fs::metadata(f.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_no_temporary_files(dir.path());
    }

    #[test]
    fn a_write_that_fails_after_the_backups_shifted_puts_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), 3);
        let mut cur = GOOD.to_string();
        for i in 0..3 {
            let next = format!("[node]\nname = \"n{i}\"\n");
            f.write(&next, &version(&cur)).unwrap();
            f.trim();
            cur = next;
        }
        let before: Vec<String> = (1..=3).map(|n| f.read_backup(n).unwrap()).collect();
        f.fail_after_rotation
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(f.write(GOOD2, &version(&cur)).is_err());
        let after: Vec<String> = (1..=3).map(|n| f.read_backup(n).unwrap()).collect();
        assert_eq!(after, before, "every backup where it was");
        assert_eq!(fs::read_to_string(f.path()).unwrap(), cur);
        assert!(!f.backup_path(4).exists());
        assert_no_temporary_files(dir.path());
    }

    #[test]
    fn only_the_last_n_versions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), 2);
        let mut cur = GOOD.to_string();
        for i in 0..4 {
            let next = format!("[node]\nname = \"n{i}\"\n");
            f.write(&next, &version(&cur)).unwrap();
            f.trim();
            cur = next;
        }
        assert_eq!(
            f.backups().iter().map(|b| b.number).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(f.read_backup(1).unwrap(), "[node]\nname = \"n2\"\n");
        assert_eq!(f.read_backup(2).unwrap(), "[node]\nname = \"n1\"\n");
        assert!(!f.backup_path(3).exists());
    }

    #[test]
    fn a_save_based_on_an_old_version_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), 3);
        let stale = version("something else");
        let err = f.write(GOOD2, &stale).unwrap_err();
        assert!(matches!(err, WriteError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("changed by someone else"));
        assert_eq!(fs::read_to_string(f.path()).unwrap(), GOOD);
        assert!(f.backups().is_empty());
    }

    #[test]
    fn an_invalid_text_is_refused_with_located_findings() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), 3);
        let bad = "[node]\nname = \"lb1\"\n\n[webui]\nsession_timeout = \"5s\"\n";
        match f.write(bad, &version(GOOD)).unwrap_err() {
            WriteError::Invalid(d) => {
                assert_eq!((d[0].line, d[0].column), (5, 19), "{d:?}");
            }
            e => panic!("{e}"),
        }
        assert_eq!(fs::read_to_string(f.path()).unwrap(), GOOD);
    }

    #[test]
    fn undo_puts_the_file_and_every_backup_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), 2);
        f.write(GOOD2, &version(GOOD)).unwrap();
        f.trim();
        let third = "[node]\nname = \"lb3\"\n";
        f.write(third, &version(GOOD2)).unwrap();
        f.trim();
        // backups now: 1 = GOOD2, 2 = GOOD
        let fourth = "[node]\nname = \"lb4\"\n";
        f.write(fourth, &version(third)).unwrap();
        f.undo_write().unwrap();
        assert_eq!(fs::read_to_string(f.path()).unwrap(), third);
        assert_eq!(f.read_backup(1).unwrap(), GOOD2);
        assert_eq!(f.read_backup(2).unwrap(), GOOD, "the oldest is back too");
    }

    #[test]
    fn the_diff_numbers_lines_of_both_versions() {
        let d = diff("a\nb\nc\n", "a\nB\nc\nd\n", 1);
        let lines: Vec<_> = d
            .iter()
            .flatten()
            .map(|l| (l.change, l.old_line, l.new_line, l.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (Change::Same, Some(1), Some(1), "a"),
                (Change::Removed, Some(2), None, "b"),
                (Change::Added, None, Some(2), "B"),
                (Change::Same, Some(3), Some(3), "c"),
                (Change::Added, None, Some(4), "d"),
            ]
        );
    }

    #[test]
    fn password_hashes_are_masked_and_lines_kept() {
        let text = "[[webui.user]]\nname = \"ada\"\n  password_hash = \"$argon2id$v=19$secret\"\nrole = \"admin\"\n";
        let masked = mask_secrets(text);
        assert!(!masked.contains("secret"), "{masked}");
        assert_eq!(masked.lines().count(), text.lines().count());
        assert!(masked.contains("  password_hash = \"********\"\n"));
    }

    #[test]
    fn hashes_written_any_other_way_are_masked_too() {
        let text = "[webui]\nuser = [ { name = \"ada\", password_hash = \"$argon2id$v=19$inline\", role = \"admin\" } ]\n\
                    [[webui.user]]\n\"password_hash\" = \"$argon2id$v=19$quoted\"\n\
                    # old: $argon2id$v=19$commented\n";
        let masked = mask_secrets(text);
        for secret in ["inline", "quoted", "commented", "argon2"] {
            assert!(!masked.contains(secret), "{secret} shown in\n{masked}");
        }
        assert_eq!(masked.lines().count(), text.lines().count());
        assert!(masked.contains("name = \"ada\""), "{masked}");
        // A file that does not parse still hides what looks like a hash.
        let broken = mask_secrets("[webui\npassword_hash: \"$argon2id$v=19$x\"\n");
        assert!(!broken.contains("argon2"), "{broken}");
    }
}
