//! What tandem-clusterd keeps on disk: the configuration file it owns
//! (replaced atomically, mode and owner kept), its ledger, the versions
//! it has held (the history, kept as backups) and a conflict's other
//! side, under `<state_dir>/cluster/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tandem_model::sync::{ConfigVersion, Conflict};

use crate::ledger::Ledger;

/// Versions kept in the history (and so restorable).
pub const KEEP: usize = 50;

pub struct Store {
    config: PathBuf,
    dir: PathBuf,
}

impl Store {
    pub fn open(config: &Path, state_dir: &Path) -> io::Result<Store> {
        let dir = state_dir.join("cluster");
        // Versions hold password hashes: root's alone.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("versions"))?;
        Ok(Store {
            config: config.to_path_buf(),
            dir,
        })
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn read_config(&self) -> io::Result<String> {
        fs::read_to_string(&self.config)
    }

    /// Replaces the configuration file atomically: a temporary file
    /// beside it, fsync, rename, fsync of the directory. Its mode and
    /// owner stay as they were (it holds password hashes).
    pub fn write_config(&self, text: &str) -> io::Result<()> {
        let parent = self.config.parent().unwrap_or(Path::new("."));
        let name = self
            .config
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.clusterd-{}", std::process::id()));
        let old = fs::metadata(&self.config).ok();
        let result = (|| {
            // Readable by nobody else until it has the old file's mode.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            if let Some(m) = &old {
                f.set_permissions(m.permissions())?;
                // Only when it differs from ours (a root:tandem file): the
                // common root:root needs neither the call nor CAP_CHOWN.
                let mine = f.metadata()?;
                if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
                    std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
                }
            }
            f.sync_all()?;
            fs::rename(&tmp, &self.config)?;
            File::open(parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The ledger kept, `None` when there is none yet. One that cannot be
    /// read is an error: starting over would take any other director's
    /// version over this one's.
    pub fn load_ledger(&self) -> io::Result<Option<Ledger>> {
        let path = self.dir.join("ledger.json");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is damaged ({e}): move it away to start this director's history over (it then takes the cluster's version)",
                    path.display()
                ),
            )
        })
    }

    pub fn save_ledger(&self, l: &Ledger) -> io::Result<()> {
        write_atomic(
            &self.dir.join("ledger.json"),
            &serde_json::to_vec_pretty(l)?,
        )
    }

    /// Keeps a version's text and description in the history, and trims
    /// the history to [`KEEP`] versions.
    pub fn keep(&self, v: &ConfigVersion, text: &str) -> io::Result<()> {
        if !tandem_model::sync::is_id(&v.id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a version id",
            ));
        }
        let base = self.dir.join("versions").join(&v.id);
        write_atomic(&base.with_extension("toml"), text.as_bytes())?;
        write_atomic(&base.with_extension("json"), &serde_json::to_vec_pretty(v)?)?;
        let history = self.history();
        for old in history.iter().skip(KEEP) {
            let b = self.dir.join("versions").join(&old.id);
            let _ = fs::remove_file(b.with_extension("toml"));
            let _ = fs::remove_file(b.with_extension("json"));
        }
        Ok(())
    }

    /// Drops a version from the history (one that was undone).
    pub fn forget(&self, id: &str) {
        if !tandem_model::sync::is_id(id) {
            return;
        }
        let b = self.dir.join("versions").join(id);
        let _ = fs::remove_file(b.with_extension("toml"));
        let _ = fs::remove_file(b.with_extension("json"));
    }

    pub fn text(&self, id: &str) -> Option<String> {
        if !tandem_model::sync::is_id(id) {
            return None;
        }
        fs::read_to_string(self.dir.join("versions").join(id).with_extension("toml")).ok()
    }

    pub fn version(&self, id: &str) -> Option<ConfigVersion> {
        if !tandem_model::sync::is_id(id) {
            return None;
        }
        let t =
            fs::read_to_string(self.dir.join("versions").join(id).with_extension("json")).ok()?;
        serde_json::from_str(&t).ok()
    }

    /// The versions held, newest first.
    pub fn history(&self) -> Vec<ConfigVersion> {
        let mut out: Vec<ConfigVersion> = fs::read_dir(self.dir.join("versions"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        out.sort_by(|a: &ConfigVersion, b| b.generation.cmp(&a.generation).then(b.at.cmp(&a.at)));
        out
    }

    pub fn load_conflict(&self) -> Option<Conflict> {
        let text = fs::read_to_string(self.dir.join("conflict.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save_conflict(&self, c: Option<&Conflict>) -> io::Result<()> {
        save_or_remove(&self.dir.join("conflict.json"), c)
    }
}

/// A version about to be written to the file, recorded before the file
/// is touched: a crash between the file and the ledger leaves the file
/// at this version and the ledger at the one before, and the next start
/// finishes the step ([`Store::load_pending`]) instead of taking the
/// file for a hand edit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub version: ConfigVersion,
    pub lineage: Vec<String>,
    pub text: String,
}

impl Store {
    pub fn save_pending(&self, p: Option<&Pending>) -> io::Result<()> {
        save_or_remove(&self.dir.join("pending.json"), p)
    }

    /// The step recorded and not finished; `None` when there is none or
    /// it cannot be read (the file then shows as a hand edit, as it
    /// would have without the record).
    pub fn load_pending(&self) -> Option<Pending> {
        let text = fs::read_to_string(self.dir.join("pending.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Keeps a hand edit that a change is about to replace, beside the
/// history; returns where.
impl Store {
    pub fn keep_hand_edit(&self, text: &str, at: u64) -> io::Result<PathBuf> {
        let p = self.dir.join(format!("hand-edit-{at}.toml"));
        write_atomic(&p, text.as_bytes())?;
        Ok(p)
    }
}

/// `value` as JSON at `path`, or no file at all for `None`.
fn save_or_remove<T: serde::Serialize>(path: &Path, value: Option<&T>) -> io::Result<()> {
    match value {
        Some(v) => write_atomic(path, &serde_json::to_vec_pretty(v)?),
        None => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_replaced_file_keeps_its_mode() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("tandem.toml");
        fs::write(&cfg, "a = 1\n").unwrap();
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o640)).unwrap();
        let s = Store::open(&cfg, &d.path().join("state")).unwrap();
        s.write_config("a = 2\n").unwrap();
        assert_eq!(s.read_config().unwrap(), "a = 2\n");
        assert_eq!(
            fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn the_history_is_newest_first_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("tandem.toml");
        fs::write(&cfg, "").unwrap();
        let s = Store::open(&cfg, d.path()).unwrap();
        let mut l = Ledger::adopt("", "lb1", 0);
        for i in 0..(KEEP + 5) {
            let text = format!("x = {i}\n");
            let (v, lineage) = l.next(&text, "a", "lb1", i as u64, "", &[]);
            s.keep(&v, &text).unwrap();
            l.advance(v, lineage);
        }
        let h = s.history();
        assert_eq!(h.len(), KEEP);
        assert_eq!(h[0].id, l.head.id);
        assert_eq!(
            s.text(&l.head.id).as_deref(),
            Some(&*format!("x = {}\n", KEEP + 4))
        );
        assert!(s.text("../../etc/passwd").is_none());
    }
}
