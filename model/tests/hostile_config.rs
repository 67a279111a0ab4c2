//! A configuration file is input from a person, an editor or a paste
//! buffer: whatever it holds, parsing, validating and rendering the
//! findings must answer with a diagnostic, never a panic (a panic in a
//! reload kills the running daemon with its VIPs still up).
//!
//! The mutants start from the shipped, fully commented example, so they
//! reach every table, key and validator rather than failing on line 1.

use proptest::prelude::*;
use tandem_model::config;

const EXAMPLE: &str = include_str!("../../packaging/tandem.example.toml");

/// Characters that break TOML or values in interesting ways: line ends
/// of other systems, quotes, brackets, multi-byte characters, digits
/// that overflow.
const NASTY: &[&str] = &[
    "\r",
    "\r\r",
    "\n",
    "\t",
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "{",
    "}",
    "=",
    ",",
    "#",
    "é",
    "∂",
    "\u{feff}",
    "0",
    "-",
    "9999999999999999999999",
    "-1",
    "\"\"",
    "::",
    "/",
    "\\",
    "\0",
    " ",
];

#[derive(Clone, Debug)]
enum Edit {
    Insert(prop::sample::Index, usize),
    Delete(prop::sample::Index, usize),
    DuplicateLine(prop::sample::Index),
    SwapLines(prop::sample::Index, prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), 0..NASTY.len()).prop_map(|(i, n)| Edit::Insert(i, n)),
        (any::<prop::sample::Index>(), 1usize..12).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(Edit::DuplicateLine),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn char_boundary(text: &str, i: &prop::sample::Index) -> usize {
    let mut at = i.index(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, e: &Edit) {
    match e {
        Edit::Insert(i, n) => {
            let at = char_boundary(text, i);
            text.insert_str(at, NASTY[*n]);
        }
        Edit::Delete(i, n) => {
            let at = char_boundary(text, i);
            let end = (at..=text.len())
                .filter(|&j| text.is_char_boundary(j))
                .nth(*n)
                .unwrap_or(text.len());
            text.replace_range(at..end, "");
        }
        Edit::DuplicateLine(i) => {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let k = i.index(lines.len());
            let mut out: Vec<&str> = lines.clone();
            out.insert(k, lines[k]);
            *text = out.concat();
        }
        Edit::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
            *text = lines.concat();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_example_is_accepted_or_refused_with_findings_never_a_panic(
        edits in prop::collection::vec(edit(), 1..4)
    ) {
        let mut text = EXAMPLE.to_string();
        for e in &edits {
            apply(&mut text, e);
        }
        match config::parse(&text, "mutant.toml") {
            Ok(_) => {}
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(shown.contains("mutant.toml:"), "{shown}");
                for d in e.diagnostics().unwrap().iter() {
                    prop_assert!(d.line >= 1 && d.column >= 1);
                }
            }
        }
    }
}

#[test]
fn a_line_ending_in_stray_carriage_returns_is_refused_at_its_line() {
    let e = config::parse("[node]\nname = \"lb1\"\r\r\n", "f.toml").unwrap_err();
    let d = e.diagnostics().unwrap().iter().next().unwrap().clone();
    assert_eq!(d.line, 2, "{e}");
    assert!(e.to_string().contains("name = \"lb1\""), "{e}");
}
