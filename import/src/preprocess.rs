//! keepalived.conf as keepalived 2.2's parser sees it, line by line,
//! after its preprocessing (`lib/parser.c`):
//!
//! - `include PATTERN`: the rest of the line is a glob(3) pattern with
//!   brace expansion and no tilde; a relative one is taken from the
//!   including file's directory; the files it matches are read there, in
//!   sorted order; one that matches nothing is logged and skipped.
//! - `$NAME=value` at the start of a line defines a macro (a value ending
//!   in `\` continues on the next line, each line of it a line of the
//!   file where it is used); `${NAME}` uses it anywhere, `$NAME` before
//!   white space, `,`, `)` or the end of the line, also inside
//!   another's value; an undefined name is left as written. Built in:
//!   `${_PWD}` (the current file's directory), `${_INSTANCE}`,
//!   `${_HASH}` (`#`), `${_BANG}` (`!`).
//! - `@ID line` keeps the line only on the node whose configuration id is
//!   ID, `@^ID line` everywhere else (keepalived's `-i`, by default the
//!   first label of the host name).
//!
//! Not followed, each a [`Finding`] and the line left out: `~SEQ` and
//! `~LST` loops, `${_RANDOM}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::files::Files;
use crate::lex::{self, Token};
use crate::{Finding, Pos, ReadError};

/// Nested includes deeper than this are a loop.
const MAX_DEPTH: usize = 32;
/// Macros that still expand after this many rounds refer to themselves.
const MAX_ROUNDS: usize = 32;
/// A line that grows past this by expansion is a macro using itself more
/// than once (`$A=$A $A` doubles each round): refused before it takes the
/// machine's memory.
const MAX_LINE: usize = 64 * 1024;

/// What keepalived is told on its command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// `-i`: the configuration id `@ID` lines are compared with.
    pub config_id: String,
    /// `--instance`: `${_INSTANCE}`.
    pub instance: String,
}

/// A line after preprocessing, at the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub at: Pos,
    /// Columns are those of the line after macro substitution.
    pub tokens: Vec<Token>,
}

#[derive(Debug, Default)]
pub struct Preprocessed {
    pub lines: Vec<Line>,
    pub findings: Vec<Finding>,
    /// Every file read, in the order read.
    pub files: Vec<PathBuf>,
}

pub fn preprocess(
    files: &dyn Files,
    path: &Path,
    opts: &Options,
) -> Result<Preprocessed, ReadError> {
    let mut st = State {
        files,
        opts,
        macros: BTreeMap::new(),
        out: Preprocessed::default(),
        open: Vec::new(),
    };
    st.file(path, None)?;
    Ok(st.out)
}

struct State<'a> {
    files: &'a dyn Files,
    opts: &'a Options,
    /// Name -> the lines of its value.
    macros: BTreeMap<String, Vec<String>>,
    out: Preprocessed,
    /// The files being read, outermost first.
    open: Vec<PathBuf>,
}

impl State<'_> {
    fn file(&mut self, path: &Path, from: Option<&Pos>) -> Result<(), ReadError> {
        if self.open.len() >= MAX_DEPTH || self.open.iter().any(|p| p == path) {
            let at = from.cloned().unwrap_or_else(|| pos(path, 1, 1));
            return Err(ReadError::Include {
                at,
                what: format!("{} includes itself", path.display()),
            });
        }
        let text = self.files.read(path).map_err(|cause| ReadError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        self.out.files.push(path.to_path_buf());
        self.open.push(path.to_path_buf());
        let file = Arc::new(path.to_path_buf());
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        // A macro whose value goes on: its name and the lines so far.
        let mut defining: Option<(String, Vec<String>)> = None;
        for (n, raw) in text.lines().enumerate() {
            let at = Pos {
                file: file.clone(),
                line: n as u32 + 1,
                column: 1,
            };
            if let Some((name, mut value)) = defining.take() {
                let (part, more) = continued(lex::strip_comment(raw).trim());
                value.push(part.to_string());
                if more {
                    defining = Some((name, value));
                } else {
                    self.macros.insert(name, value);
                }
                continue;
            }
            // Untrimmed, so that tokens keep their columns.
            let mut body = lex::strip_comment(raw).to_string();
            let trimmed = body.trim_start();
            if trimmed.trim_end().is_empty() {
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('@') {
                let cond = rest.split(char::is_whitespace).next().unwrap_or("");
                let here = match cond.strip_prefix('^') {
                    Some(id) => id != self.opts.config_id,
                    None => cond == self.opts.config_id,
                };
                if !here {
                    continue;
                }
                // The condition becomes blanks: the columns stay.
                let indent = body.len() - trimmed.len();
                let width = 1 + cond.chars().count();
                body = format!(
                    "{}{}",
                    " ".repeat(indent + width),
                    &trimmed[1 + cond.len()..]
                );
            }
            let line = body.trim();
            if let Some((name, value)) = definition(line) {
                let (part, more) = continued(value.trim());
                if more {
                    defining = Some((name.to_string(), vec![part.to_string()]));
                } else {
                    self.macros.insert(name.to_string(), vec![part.to_string()]);
                }
                continue;
            }
            if line.starts_with("~SEQ") || line.starts_with("~LST") {
                self.find(
                    &at,
                    "a ~SEQ or ~LST loop is not followed: write its lines out",
                );
                continue;
            }
            if line.contains("${_RANDOM}") {
                self.find(
                    &at,
                    "${_RANDOM} differs at every use in keepalived: the line is left out",
                );
                continue;
            }
            let expanded = match self.substitute(&body, &dir) {
                Ok(s) => s,
                Err(what) => {
                    self.find(&at, &what);
                    continue;
                }
            };
            for line in expanded.lines() {
                if let Some(pattern) = include(line.trim()) {
                    self.include(pattern, &dir, &at)?;
                    continue;
                }
                let tokens = lex::tokens(line);
                if !tokens.is_empty() {
                    self.out.lines.push(Line {
                        at: at.clone(),
                        tokens,
                    });
                }
            }
        }
        if let Some((name, value)) = defining {
            self.macros.insert(name, value);
        }
        self.open.pop();
        Ok(())
    }

    fn include(&mut self, pattern: &str, dir: &Path, at: &Pos) -> Result<(), ReadError> {
        let mut matched = false;
        for alt in expand_braces(pattern) {
            let full = normalize(&dir.join(&alt)).to_string_lossy().into_owned();
            let paths = self.files.glob(&full).map_err(|e| ReadError::Include {
                at: at.clone(),
                what: format!("include {pattern}: {e}"),
            })?;
            for p in paths {
                matched = true;
                self.file(&p, Some(at))?;
            }
        }
        if !matched {
            self.find(
                at,
                &format!("include {pattern} matches no file (keepalived goes on without it)"),
            );
        }
        Ok(())
    }

    /// `line` with every macro replaced, until none is left: a value may
    /// use another macro.
    fn substitute(&self, line: &str, dir: &Path) -> Result<String, String> {
        let mut s = line.to_string();
        for _ in 0..MAX_ROUNDS {
            let next = self.substitute_once(&s, dir);
            if next == s {
                return Ok(s);
            }
            if next.len() > MAX_LINE {
                return Err(format!(
                    "macros in \"{line}\" expand past {} KiB",
                    MAX_LINE / 1024
                ));
            }
            s = next;
        }
        Err(format!("macros in \"{line}\" expand without end"))
    }

    fn substitute_once(&self, s: &str, dir: &Path) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (name, len) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                // keepalived replaces a bare $NAME only before white space,
                // `,`, `)` or the end of the line: `$VIP/24` stays as
                // written (it logs an invalid address), `${VIP}/24` does not.
                let ends = after[end..]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || c == ',' || c == ')');
                if ends { (&after[..end], end) } else { ("", 0) }
            };
            match self.value(name, dir) {
                Some(v) if !name.is_empty() => {
                    out.push_str(&v);
                    rest = &after[len..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn value(&self, name: &str, dir: &Path) -> Option<String> {
        match name {
            "_PWD" => Some(dir.display().to_string()),
            "_INSTANCE" => Some(self.opts.instance.clone()),
            "_HASH" => Some("#".into()),
            "_BANG" => Some("!".into()),
            _ => self.macros.get(name).map(|v| v.join("\n")),
        }
    }

    fn find(&mut self, at: &Pos, message: &str) {
        self.out.findings.push(Finding {
            at: at.clone(),
            message: message.to_string(),
        });
    }
}

fn pos(path: &Path, line: u32, column: u32) -> Pos {
    Pos {
        file: Arc::new(path.to_path_buf()),
        line,
        column,
    }
}

/// `a/./b/../c` as `a/c`, without asking the file system: the places in
/// a report read as the operator wrote them, not through `..`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// `$NAME=value` at the start of a line.
fn definition(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('$')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim_end();
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some((name, value))
}

/// A value's part on this line, and whether it goes on.
fn continued(part: &str) -> (&str, bool) {
    match part.strip_suffix('\\') {
        Some(p) => (p.trim_end(), true),
        None => (part, false),
    }
}

/// The pattern of an `include` line.
fn include(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("include")?;
    rest.starts_with(char::is_whitespace)
        .then(|| rest.trim())
        .filter(|p| !p.is_empty())
}

/// GLOB_BRACE: `a{b,c{d,e}}f` is `abf acdf acef`, left to right.
pub fn expand_braces(pattern: &str) -> Vec<String> {
    let bytes = pattern.as_bytes();
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut start = open + 1;
    let mut close = None;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(&pattern[start..i]);
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => {
                parts.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    let Some(close) = close else {
        // Unbalanced: glob(3) takes it literally.
        return vec![pattern.to_string()];
    };
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    let mut out = Vec::new();
    for p in parts {
        for rest in expand_braces(&format!("{head}{p}{tail}")) {
            out.push(rest);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Memory;

    fn opts(id: &str) -> Options {
        Options {
            config_id: id.into(),
            instance: "".into(),
        }
    }

    fn read(files: &Memory, id: &str) -> Preprocessed {
        preprocess(
            files,
            Path::new("/etc/keepalived/keepalived.conf"),
            &opts(id),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Each line as its words and its place.
    fn lines(p: &Preprocessed) -> Vec<String> {
        p.lines
            .iter()
            .map(|l| {
                let words: Vec<&str> = l.tokens.iter().map(|t| t.text.as_str()).collect();
                format!(
                    "{}:{} {}",
                    l.at.file.file_name().unwrap().to_string_lossy(),
                    l.at.line,
                    words.join(" ")
                )
            })
            .collect()
    }

    #[test]
    fn includes_are_read_in_place_sorted_relative_to_the_including_file() {
        let files = Memory::default()
            .with(
                "/etc/keepalived/keepalived.conf",
                "global_defs {\n}\ninclude conf.d/*.conf\nvrrp_script chk {\n}\n",
            )
            .with("/etc/keepalived/conf.d/b.conf", "virtual_server b\n")
            .with(
                "/etc/keepalived/conf.d/a.conf",
                "include ../common/x\nvirtual_server a\n",
            )
            .with("/etc/keepalived/common/x", "! shared\nlvs_id x\n")
            .with(
                "/etc/keepalived/conf.d/.hidden.conf",
                "virtual_server hidden\n",
            );
        let p = read(&files, "lb1");
        assert_eq!(
            lines(&p),
            [
                "keepalived.conf:1 global_defs {",
                "keepalived.conf:2 }",
                "x:2 lvs_id x",
                "a.conf:2 virtual_server a",
                "b.conf:1 virtual_server b",
                "keepalived.conf:4 vrrp_script chk {",
                "keepalived.conf:5 }",
            ]
        );
        assert!(p.findings.is_empty(), "{:?}", p.findings);
    }

    #[test]
    fn an_include_that_matches_nothing_is_a_finding_and_reading_goes_on() {
        let files = Memory::default().with(
            "/etc/keepalived/keepalived.conf",
            "include /etc/keepalived/none/*.conf\nglobal_defs {\n}\n",
        );
        let p = read(&files, "lb1");
        assert_eq!(lines(&p).len(), 2);
        assert_eq!(p.findings.len(), 1);
        assert_eq!(p.findings[0].at.line, 1);
        assert!(p.findings[0].message.contains("matches no file"));
    }

    #[test]
    fn braces_in_an_include_expand_left_to_right() {
        assert_eq!(
            expand_braces("/k/{vrrp,lvs{1,2}}.conf"),
            ["/k/vrrp.conf", "/k/lvs1.conf", "/k/lvs2.conf"]
        );
        assert_eq!(expand_braces("/k/{a.conf"), ["/k/{a.conf"]);
        let files = Memory::default()
            .with(
                "/etc/keepalived/keepalived.conf",
                "include {lvs,vrrp}.conf\n",
            )
            .with("/etc/keepalived/vrrp.conf", "vrrp_instance v\n")
            .with("/etc/keepalived/lvs.conf", "virtual_server l\n");
        assert_eq!(
            lines(&read(&files, "lb1")),
            ["lvs.conf:1 virtual_server l", "vrrp.conf:1 vrrp_instance v"]
        );
    }

    #[test]
    fn a_file_that_includes_itself_is_refused_with_the_include_s_place() {
        let files = Memory::default()
            .with("/etc/keepalived/keepalived.conf", "include a.conf\n")
            .with("/etc/keepalived/a.conf", "\ninclude keepalived.conf\n");
        let err = preprocess(
            &files,
            Path::new("/etc/keepalived/keepalived.conf"),
            &opts("lb1"),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "/etc/keepalived/a.conf:2:1: /etc/keepalived/keepalived.conf includes itself"
            ),
            "{err}"
        );
    }

    #[test]
    fn macros_expand_in_any_file_also_inside_other_macros_and_undefined_ones_stay() {
        let files = Memory::default()
            .with(
                "/etc/keepalived/keepalived.conf",
                "$IF=eth0\n$VIP=10.0.0.100/24 dev ${IF}\ninclude v.conf\n",
            )
            .with(
                "/etc/keepalived/v.conf",
                "interface $IF\nvirtual_ipaddress { $VIP $IF/x }\nnotify \"$HOME/x ${_PWD}\"\n",
            );
        assert_eq!(
            lines(&read(&files, "lb1")),
            [
                "v.conf:1 interface eth0",
                "v.conf:2 virtual_ipaddress { 10.0.0.100/24 dev eth0 $IF/x }",
                "v.conf:3 notify $HOME/x /etc/keepalived",
            ]
        );
    }

    #[test]
    fn a_macro_continued_with_a_backslash_is_several_lines_where_it_is_used() {
        let files = Memory::default().with(
            "/etc/keepalived/keepalived.conf",
            "$RS=real_server 10.0.0.1 80 { \\\n  weight 2 \\\n}\nvirtual_server 10.0.0.100 80 {\n$RS\n}\n",
        );
        assert_eq!(
            lines(&read(&files, "lb1")),
            [
                "keepalived.conf:4 virtual_server 10.0.0.100 80 {",
                "keepalived.conf:5 real_server 10.0.0.1 80 {",
                "keepalived.conf:5 weight 2",
                "keepalived.conf:5 }",
                "keepalived.conf:6 }",
            ]
        );
    }

    #[test]
    fn hash_and_bang_built_ins_give_the_characters_a_comment_would_take() {
        let files = Memory::default().with(
            "/etc/keepalived/keepalived.conf",
            "notify \"/bin/echo ${_HASH}1${_BANG}\" # gone\n",
        );
        assert_eq!(
            lines(&read(&files, "lb1")),
            ["keepalived.conf:1 notify /bin/echo #1!"]
        );
    }

    #[test]
    fn a_macro_that_doubles_itself_is_a_finding_not_a_machine_out_of_memory() {
        let files = Memory::default().with(
            "/etc/keepalived/keepalived.conf",
            "$A=$A $A\nrouter_id $A\n",
        );
        let p = read(&files, "lb1");
        assert!(p.lines.is_empty());
        assert!(
            p.findings[0].message.contains("expand past"),
            "{:?}",
            p.findings
        );
    }

    #[test]
    fn a_macro_that_uses_itself_is_a_finding_not_a_hang() {
        let files = Memory::default().with(
            "/etc/keepalived/keepalived.conf",
            "$A=x $A\nrouter_id $A\nlvs_id y\n",
        );
        let p = read(&files, "lb1");
        assert_eq!(lines(&p), ["keepalived.conf:3 lvs_id y"]);
        assert_eq!(p.findings[0].at.line, 2);
        assert!(p.findings[0].message.contains("without end"));
    }

    #[test]
    fn at_lines_are_kept_only_on_their_node_and_at_caret_lines_everywhere_else() {
        let text = "@lb1 priority 150\n@lb2 priority 100\n@^lb1 state BACKUP\nadvert_int 1\n";
        let files = Memory::default().with("/etc/keepalived/keepalived.conf", text);
        assert_eq!(
            lines(&read(&files, "lb1")),
            [
                "keepalived.conf:1 priority 150",
                "keepalived.conf:4 advert_int 1"
            ]
        );
        assert_eq!(
            lines(&read(&files, "lb2")),
            [
                "keepalived.conf:2 priority 100",
                "keepalived.conf:3 state BACKUP",
                "keepalived.conf:4 advert_int 1"
            ]
        );
    }

    #[test]
    fn loops_and_random_values_are_findings_with_their_place() {
        let files = Memory::default().with(
            "/etc/keepalived/keepalived.conf",
            "~SEQ(i,1,3) real_server 10.0.0.$i 80\nrouter_id r${_RANDOM}\n",
        );
        let p = read(&files, "lb1");
        assert_eq!(lines(&p), Vec::<String>::new());
        let at: Vec<u32> = p.findings.iter().map(|f| f.at.line).collect();
        assert_eq!(at, [1, 2]);
    }
}
