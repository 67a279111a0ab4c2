//! Reading keepalived.conf the way keepalived 2.2 reads it, as plain
//! values: no file is opened here but through [`Files`].
//!
//! - [`lex`]: one line into tokens (comments, quotes, braces).
//! - [`preprocess`]: the file as keepalived's parser sees it after
//!   `include`, `$MACRO` definitions and uses, and `@node` conditionals,
//!   every line keeping the file and line it came from.
//! - [`tree`]: the lines as nested blocks (`keyword args { ... }`).
//! - [`keepalived`]: the blocks as a tandem configuration and a report.
//!
//! What keepalived would read differently is never guessed: a line this
//! reader cannot follow (a `~SEQ` loop, an include that matches nothing)
//! is a [`Finding`] with its place, and the line is left out.

pub mod files;
pub mod keepalived;
pub mod lex;
pub mod preprocess;
pub mod tree;

pub use files::{Disk, Files, Memory};
pub use preprocess::{Line, Options, Preprocessed, preprocess};
pub use tree::{Node, Tree, tree};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// keepalived.conf at `path` (and what it includes) as tandem's TOML
/// and the report of what was not carried over or shifts in meaning.
pub fn keepalived(
    files: &dyn Files,
    path: &std::path::Path,
    opts: &Options,
) -> Result<keepalived::Imported, ReadError> {
    let p = preprocess(files, path, opts)?;
    let t = tree(&p.lines);
    let mut findings = p.findings;
    findings.extend(t.findings);
    Ok(keepalived::import(&t.nodes, &findings))
}

/// Where something is: file, line and column (both 1-based), as the
/// reports print it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub file: Arc<PathBuf>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Something in the input this reader did not carry through, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub at: Pos,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Why the input could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{at}: {what}")]
    Include { at: Pos, what: String },
}
