//! The file system as the reader needs it: read a file, expand an
//! `include` pattern. [`Disk`] is the real one, [`Memory`] the tests'.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// glob(3) without flags: `*` stops at `/`, a leading dot is matched
/// only by a dot.
const OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

pub trait Files {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The paths `pattern` (a glob, braces already expanded) matches,
    /// sorted as glob(3) returns them.
    fn glob(&self, pattern: &str) -> io::Result<Vec<PathBuf>>;
}

/// The host's files.
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn glob(&self, pattern: &str) -> io::Result<Vec<PathBuf>> {
        let paths = glob::glob_with(pattern, OPTIONS)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut out: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Files held in memory, by path.
#[derive(Default)]
pub struct Memory(pub BTreeMap<PathBuf, String>);

impl Memory {
    pub fn with(mut self, path: &str, text: &str) -> Memory {
        self.0.insert(PathBuf::from(path), text.to_string());
        self
    }
}

impl Files for Memory {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn glob(&self, pattern: &str) -> io::Result<Vec<PathBuf>> {
        let pat = glob::Pattern::new(pattern)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(self
            .0
            .keys()
            .filter(|p| pat.matches_path_with(p, OPTIONS))
            .cloned()
            .collect())
    }
}
