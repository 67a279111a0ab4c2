//! Locating configuration findings at `file:line:column` and rendering
//! them the way an operator reads them at 3 a.m.: the location, what is
//! wrong with which value and what is allowed, and the line itself with the
//! value underlined.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a path into the document: a key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(&'static str),
    Index(usize),
}

/// A validation finding before it is located in the text.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    pub path: Vec<Seg>,
    pub message: String,
}

/// One located problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Byte range of the offending text.
    pub span: Range<usize>,
    pub message: String,
    /// The offending line, for rendering.
    #[serde(skip)]
    source_line: String,
    /// Width of the underline, in characters.
    #[serde(skip)]
    width: usize,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl Diagnostic {
    /// The located message followed by the source line with the offending
    /// value underlined.
    pub fn render(&self) -> String {
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        let indent: String = self
            .source_line
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "{self}\n {pad} |\n {num} | {}\n {pad} | {indent}{}\n",
            self.source_line,
            "^".repeat(self.width.max(1))
        )
    }
}

/// Every finding of one file, in the order they appear in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{}", d.render())?;
        }
        let n = self.0.len();
        let file = self.0.first().map_or("", |d| d.file.as_str());
        write!(
            f,
            "{file}: {n} error{}, configuration not used",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// The text of one file, indexed by line.
pub(crate) struct Source<'a> {
    origin: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(origin: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            origin,
            text,
            line_starts,
        }
    }

    pub(crate) fn diagnostic(&self, span: Range<usize>, message: String) -> Diagnostic {
        // Spans come from the parser and are trusted for nothing: a finding
        // on a hostile file must still render, never panic the daemon that
        // is reloading it.
        let start = floor_char_boundary(self.text, span.start);
        let line_idx = self.line_starts.partition_point(|&s| s <= start) - 1;
        let line_start = self.line_starts[line_idx];
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let line_text = self.text[line_start..line_end].trim_end_matches('\r');
        let column = self.text[line_start..start].chars().count() + 1;
        // Underline the span, but never past the end of its first line. The
        // finding may sit in the carriage returns trimmed off that line
        // (`\r\r\n`), past its visible end: then the underline is empty.
        let visible_end = line_start + line_text.len();
        let end = floor_char_boundary(self.text, span.end.min(visible_end)).max(start);
        let width = self.text[start..end].chars().count();
        Diagnostic {
            file: self.origin.to_string(),
            line: line_idx + 1,
            column,
            span,
            message,
            source_line: line_text.to_string(),
            width,
        }
    }

    /// A TOML syntax error or a serde shape error (unknown key, wrong type,
    /// missing key).
    pub fn toml_error(&self, e: &toml::de::Error) -> Diagnostics {
        let span = e.span().unwrap_or(0..0);
        let message = improve_toml_message(e.message().trim());
        Diagnostics(vec![self.diagnostic(span, message)])
    }

    /// The 1-based line of the node at `path` (for "also defined at").
    pub fn line_of(&self, root: &Spanned<DeTable<'_>>, path: &[Seg]) -> usize {
        let start = span_of(root, path).start.min(self.text.len());
        self.line_starts.partition_point(|&s| s <= start)
    }

    /// Locates validation findings by their path in the parsed document.
    pub fn locate(&self, root: &Spanned<DeTable<'_>>, findings: Vec<Finding>) -> Diagnostics {
        let mut out: Vec<Diagnostic> = findings
            .into_iter()
            .map(|f| self.diagnostic(span_of(root, &f.path), f.message))
            .collect();
        out.sort_by_key(|d| d.span.start);
        Diagnostics(out)
    }
}

/// `i` clamped into `text` and moved back to the start of its character.
fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The span of the deepest existing node on `path`: the value itself when
/// present, else the table that should have held it.
fn span_of(root: &Spanned<DeTable<'_>>, path: &[Seg]) -> Range<usize> {
    let mut span = root.span();
    let mut cur: Option<&DeValue<'_>> = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    for seg in path {
        let next: Option<&Spanned<DeValue<'_>>> = match (seg, table, cur) {
            (Seg::Key(k), Some(t), _) => t.get(*k),
            (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        cur = Some(next.get_ref());
        table = match next.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

/// Makes serde's messages read like the rest: unknown keys get a
/// suggestion of the closest known one.
fn improve_toml_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let known: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let suggestion = known
            .iter()
            .map(|k| (edit_distance(field, k), *k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 3))
            .min();
        let allowed = if known.is_empty() {
            "this table takes no keys".to_string()
        } else {
            format!("allowed here: {}", known.join(", "))
        };
        return match suggestion {
            Some((_, k)) => format!("unknown key `{field}` (did you mean `{k}`?); {allowed}"),
            None => format!("unknown key `{field}`; {allowed}"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let allowed: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        return format!(
            "\"{value}\" is not allowed here: use one of {}",
            allowed.join(", ")
        );
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return format!("missing key `{field}`, which this table requires");
    }
    message.to_string()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "a = 1\nname = \"é\" # x\n";
        let src = Source::new("t.toml", text);
        let start = text.find('#').unwrap();
        let d = src.diagnostic(start..start + 1, "m".into());
        assert_eq!((d.line, d.column), (2, 12));
    }

    #[test]
    fn a_finding_in_trailing_carriage_returns_renders_without_panicking() {
        // `\r\r\n`: the line's visible text ends before the finding.
        let text = "[node]\nname = \"lb1\"\r\r\n";
        let src = Source::new("t.toml", text);
        let start = text.find("\r\r").unwrap() + 1;
        let d = src.diagnostic(start..start + 1, "m".into());
        assert_eq!(d.line, 2);
        assert!(d.render().contains("name = \"lb1\""));
    }

    #[test]
    fn a_span_inside_a_character_or_past_the_end_is_clamped() {
        let text = "a = \"é\"\n";
        let src = Source::new("t.toml", text);
        let e = text.find('é').unwrap();
        assert_eq!(src.diagnostic(e + 1..e + 2, "m".into()).column, 6);
        assert_eq!(src.diagnostic(100..200, "m".into()).line, 2);
        let (start, end) = (5, 2);
        src.diagnostic(start..end, "m".into()).render();
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("prority", "priority"), 1);
        assert_eq!(edit_distance("vrid", "vrid"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
