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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn import(conf: &str) -> crate::keepalived::Imported {
        let files = Memory::default().with("/k.conf", conf);
        let opts = Options {
            config_id: "lb1".into(),
            instance: String::new(),
        };
        keepalived(&files, Path::new("/k.conf"), &opts).unwrap()
    }

    #[test]
    fn a_misc_check_without_retry_or_timeout_takes_keepalived_s_own_defaults() {
        // check_misc.c: no retry, and the script may run for delay_loop.
        let i = import(
            "virtual_server 10.0.0.1 53 {\n  delay_loop 10\n  protocol UDP\n  real_server 10.0.0.11 53 {\n    MISC_CHECK {\n      misc_path \"/usr/local/bin/dns-check 10.0.0.11\"\n    }\n  }\n}\n",
        );
        assert!(i.toml.contains("fall = 1\n"), "{}", i.toml);
        assert!(i.toml.contains("timeout = \"9s\"\n"), "{}", i.toml);
        let notes: Vec<String> = i.notes.iter().map(|n| n.to_string()).collect();
        assert!(!notes.iter().any(|n| n.contains("retry")), "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("MISC_CHECK: the script's timeout (misc_timeout, by default delay_loop) 10s is not shorter")),
            "{notes:?}"
        );
    }

    #[test]
    fn a_udp_check_carries_its_payload_and_wanted_reply_as_text() {
        let i = import(
            "virtual_server 10.0.0.1 5060 {\n  delay_loop 5\n  protocol UDP\n  real_server 10.0.0.11 5060 {\n    UDP_CHECK {\n      connect_timeout 2\n      payload 4f5054494f4e53\n      require_reply 5349502f\n      min_reply_length 4\n    }\n  }\n  real_server 10.0.0.12 5060 {\n    UDP_CHECK {\n      connect_timeout 2\n      payload 4f5054494f4e53\n      require_reply 5349502f\n    }\n  }\n}\n",
        );
        assert!(i.toml.contains("type = \"udp\"\n"), "{}", i.toml);
        assert!(i.toml.contains("send = \"OPTIONS\"\n"), "{}", i.toml);
        assert!(i.toml.contains("expect = \"SIP/\"\n"), "{}", i.toml);
        let notes: Vec<String> = i.notes.iter().map(|n| n.to_string()).collect();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("not carried: min_reply_length")),
            "{notes:?}"
        );
        // The second server's check is the same kind: no "differs" note.
        assert!(!notes.iter().any(|n| n.contains("differs")), "{notes:?}");
        // require_reply without bytes: any reply.
        let i = import(
            "virtual_server 10.0.0.1 53 {\n  protocol UDP\n  real_server 10.0.0.11 53 {\n    UDP_CHECK {\n      require_reply\n    }\n  }\n}\n",
        );
        assert!(i.toml.contains("expect = \"\"\n"), "{}", i.toml);
    }

    #[test]
    fn an_smtp_check_carries_its_helo_name() {
        let i = import(
            "virtual_server 10.0.0.1 25 {\n  delay_loop 10\n  protocol TCP\n  real_server 10.0.0.11 25 {\n    SMTP_CHECK {\n      connect_timeout 5\n      helo_name lb.example\n    }\n  }\n}\n",
        );
        assert!(i.toml.contains("type = \"smtp\"\n"), "{}", i.toml);
        assert!(
            i.toml.contains("helo_name = \"lb.example\"\n"),
            "{}",
            i.toml
        );
        assert!(i.complete(), "{:?}", i.notes);
    }

    /// A small deterministic generator: the same inputs on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Files made of keepalived's words, its punctuation and stray bytes,
    /// in any order: reading and importing them never panics, and every
    /// note has a place in a file that was read.
    #[test]
    fn any_jumble_of_keepalived_words_is_read_without_a_panic() {
        const WORDS: &[&str] = &[
            "vrrp_instance",
            "virtual_server",
            "real_server",
            "group",
            "virtual_server_group",
            "global_defs",
            "vrrp_script",
            "vrrp_sync_group",
            "HTTP_GET",
            "url",
            "path",
            "TCP_CHECK",
            "MISC_CHECK",
            "misc_path",
            "authentication",
            "auth_type",
            "PASS",
            "auth_pass",
            "virtual_ipaddress",
            "track_script",
            "track_file",
            "vrrp_track_file",
            "interface",
            "priority",
            "virtual_router_id",
            "lvs_sync_daemon",
            "weight",
            "fwmark",
            "include",
            "$A=",
            "$A",
            "${A}",
            "${_RANDOM}",
            "@lb1",
            "@^lb1",
            "~SEQ(i,1,3)",
            "{",
            "}",
            "{}",
            "\"",
            "\"a b\"",
            "#",
            "!",
            "\\",
            "10.0.0.1",
            "10.0.0.1-9",
            "2001:db8::1",
            "/24",
            "80",
            "-1",
            "255",
            "0.5",
            "eth0",
            "dev",
            "label",
            "brd",
            "x",
            "é",
            "\t",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let mut text = String::new();
            let words = rng.next() % 60;
            for _ in 0..words {
                let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
                text.push_str(w);
                text.push(match rng.next() % 5 {
                    0 => '\n',
                    1 => '\t',
                    _ => ' ',
                });
            }
            let files = Memory::default()
                .with("/k/keepalived.conf", &text)
                .with("/k/a.conf", &text.replace("include", "x"));
            let opts = Options {
                config_id: "lb1".into(),
                instance: String::new(),
            };
            match keepalived(&files, Path::new("/k/keepalived.conf"), &opts) {
                Ok(i) => {
                    for n in &i.notes {
                        assert!(n.at.line >= 1, "{n}");
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}
