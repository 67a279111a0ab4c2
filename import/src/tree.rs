//! Preprocessed lines as nested blocks. Every line is a statement, its
//! first word the keyword; `{` opens a block for the statement before it
//! (also when the brace stands on a later line, as keepalived allows) and
//! `}` closes it. A list block (`virtual_ipaddress { ... }`) is a block
//! whose statements are its items.

use crate::lex::Token;
use crate::preprocess::Line;
use crate::{Finding, Pos};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub keyword: String,
    pub args: Vec<Token>,
    pub at: Pos,
    /// `Some` for a statement with a block, even an empty one.
    pub children: Option<Vec<Node>>,
}

impl Node {
    /// The arguments' words.
    pub fn words(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }

    /// The statements of its block named `keyword`.
    pub fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children
            .iter()
            .flatten()
            .filter(move |n| n.keyword == keyword)
    }
}

#[derive(Debug, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub findings: Vec<Finding>,
}

pub fn tree(lines: &[Line]) -> Tree {
    // The blocks open, outermost first; the top level is the first.
    let mut stack: Vec<(Vec<Node>, Option<Node>)> = vec![(Vec::new(), None)];
    let mut findings = Vec::new();
    let at = |l: &Line, t: &Token| Pos {
        column: t.column,
        ..l.at.clone()
    };
    for line in lines {
        let mut stmt: Vec<Token> = Vec::new();
        // Whether the last statement of this level ended on an earlier
        // line, so that a `{` starting this one is still its block.
        let mut fresh_line = true;
        for t in line.tokens.iter().chain(std::iter::once(&end_of_line())) {
            let eol = t.column == 0;
            if !eol && !t.is_open() && !t.is_close() {
                stmt.push(t.clone());
                continue;
            }
            if !stmt.is_empty() {
                let node = Node {
                    keyword: stmt[0].text.clone(),
                    at: at(line, &stmt[0]),
                    args: stmt.split_off(1),
                    children: None,
                };
                stmt.clear();
                let level = &mut stack.last_mut().expect("the top level").0;
                level.push(node);
                fresh_line = false;
            } else if t.is_open() {
                // `{` alone: the block of the statement before, written
                // on an earlier line.
                let level = &mut stack.last_mut().expect("the top level").0;
                let attachable = fresh_line && level.last().is_some_and(|n| n.children.is_none());
                if !attachable {
                    findings.push(Finding {
                        at: at(line, t),
                        message: "a `{` with no keyword before it".into(),
                    });
                    // Its contents still need a home: an anonymous block.
                    level.push(Node {
                        keyword: String::new(),
                        args: Vec::new(),
                        at: at(line, t),
                        children: None,
                    });
                }
            }
            if t.is_open() {
                let level = &mut stack.last_mut().expect("the top level").0;
                let owner = level.pop().expect("a statement was just pushed or found");
                stack.push((Vec::new(), Some(owner)));
                fresh_line = false;
            } else if t.is_close() {
                if stack.len() == 1 {
                    findings.push(Finding {
                        at: at(line, t),
                        message: "a `}` with no block to close".into(),
                    });
                    continue;
                }
                close(&mut stack);
                fresh_line = false;
            }
        }
    }
    while stack.len() > 1 {
        let owner = stack
            .last()
            .and_then(|s| s.1.as_ref())
            .expect("an open block");
        findings.push(Finding {
            at: owner.at.clone(),
            message: format!(
                "the block of `{}` is never closed (keepalived closes it at the end of the file)",
                owner.keyword
            ),
        });
        close(&mut stack);
    }
    Tree {
        nodes: stack.pop().expect("the top level").0,
        findings,
    }
}

fn close(stack: &mut Vec<(Vec<Node>, Option<Node>)>) {
    let (children, owner) = stack.pop().expect("an open block");
    let mut owner = owner.expect("a block has its statement");
    owner.children = Some(children);
    stack.last_mut().expect("the top level").0.push(owner);
}

/// Column 0 marks the end of a line (real tokens start at 1).
fn end_of_line() -> Token {
    Token {
        text: String::new(),
        column: 0,
        quoted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Memory;
    use crate::preprocess::{Options, preprocess};
    use std::path::Path;

    fn parse(text: &str) -> Tree {
        let files = Memory::default().with("/k.conf", text);
        let opts = Options {
            config_id: "lb1".into(),
            instance: String::new(),
        };
        let p = preprocess(&files, Path::new("/k.conf"), &opts).unwrap();
        tree(&p.lines)
    }

    /// keyword(args){children} for a compact comparison.
    fn show(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| {
                let mut s = n.keyword.clone();
                for a in &n.args {
                    s.push(' ');
                    s.push_str(&a.text);
                }
                if let Some(c) = &n.children {
                    s.push_str(&format!(" {{{}}}", show(c)));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn blocks_nest_and_every_line_in_them_is_a_statement() {
        let t = parse(
            "vrrp_instance VI_1 {\n  state MASTER\n  virtual_ipaddress {\n    10.0.0.100/24 dev eth0\n    10.0.0.101\n  }\n}\n",
        );
        assert_eq!(
            show(&t.nodes),
            "vrrp_instance VI_1 {state MASTER; virtual_ipaddress {10.0.0.100/24 dev eth0; 10.0.0.101}}"
        );
        assert!(t.findings.is_empty());
        let vi = &t.nodes[0].children.as_ref().unwrap()[1];
        assert_eq!((vi.at.line, vi.at.column), (3, 3));
    }

    #[test]
    fn a_brace_on_the_next_line_opens_the_block_of_the_statement_before() {
        let t = parse("virtual_server 10.0.0.1 80\n{\n  delay_loop 6\n}\n");
        assert_eq!(show(&t.nodes), "virtual_server 10.0.0.1 80 {delay_loop 6}");
        assert!(t.findings.is_empty());
    }

    #[test]
    fn one_line_blocks_and_statements_after_a_closing_brace() {
        let t = parse("a { b { c } d } e\nf {}\n");
        assert_eq!(show(&t.nodes), "a {b {c}; d}; e; f {}");
    }

    #[test]
    fn stray_and_missing_braces_are_findings_and_nothing_is_lost() {
        let t = parse("}\nx {\n  y\n");
        assert_eq!(show(&t.nodes), "x {y}");
        let msgs: Vec<String> = t.findings.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "/k.conf:1:1: a `}` with no block to close",
                "/k.conf:2:1: the block of `x` is never closed (keepalived closes it at the end of the file)"
            ]
        );
        let t = parse("a {\n}\n{\nb\n}\n");
        assert_eq!(show(&t.nodes), "a {};  {b}");
        assert_eq!(t.findings.len(), 1);
    }
}
