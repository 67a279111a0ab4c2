//! One line of keepalived.conf into tokens, as keepalived 2.2's
//! `lib/parser.c` splits it: `#` or `!` outside a quoted string starts a
//! comment; words are split on white space; `{` and `}` are tokens of
//! their own wherever they stand; a token that starts with `"` runs to the
//! next `"` (spaces and braces included, the quotes dropped, no escapes).

/// A token and the column (1-based, in characters) it starts at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub column: u32,
    /// Written in quotes: `"{"` is a word, not a brace.
    pub quoted: bool,
}

impl Token {
    pub fn is_open(&self) -> bool {
        !self.quoted && self.text == "{"
    }

    pub fn is_close(&self) -> bool {
        !self.quoted && self.text == "}"
    }
}

/// `line` without its comment; quoted text keeps its `#` and `!`.
pub fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' | '!' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The tokens of a line whose comment is already gone.
pub fn tokens(line: &str) -> Vec<Token> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let column = i as u32 + 1;
        if c == '{' || c == '}' {
            out.push(Token {
                text: c.to_string(),
                column,
                quoted: false,
            });
            i += 1;
            continue;
        }
        if c == '"' {
            // An unterminated string runs to the end of the line, as in
            // keepalived.
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '"')
                .map_or(chars.len(), |p| i + 1 + p);
            out.push(Token {
                text: chars[i + 1..end].iter().collect(),
                column,
                quoted: true,
            });
            i = end + 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '{' && chars[i] != '}' {
            i += 1;
        }
        out.push(Token {
            text: chars[start..i].iter().collect(),
            column,
            quoted: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        tokens(strip_comment(line))
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn a_hash_or_a_bang_starts_a_comment_anywhere_outside_quotes() {
        assert_eq!(words("priority 100 # the backup"), ["priority", "100"]);
        assert_eq!(words("priority 100! no space needed"), ["priority", "100"]);
        assert_eq!(words("! a whole line"), Vec::<String>::new());
        assert_eq!(
            words("notify \"/bin/echo # not a comment\" # but this is"),
            ["notify", "/bin/echo # not a comment"]
        );
    }

    #[test]
    fn braces_are_tokens_of_their_own_even_when_glued_to_a_word() {
        assert_eq!(
            words("vrrp_instance VI_1{state MASTER}"),
            ["vrrp_instance", "VI_1", "{", "state", "MASTER", "}"]
        );
        let t = tokens("a \"{\" {");
        assert!(!t[1].is_open() && t[1].quoted);
        assert!(t[2].is_open());
    }

    #[test]
    fn a_quoted_string_is_one_token_without_its_quotes_and_keeps_its_column() {
        let t = tokens("  script \"/usr/bin/check --fast\" ok");
        assert_eq!(t[0].column, 3);
        assert_eq!(t[1].text, "/usr/bin/check --fast");
        assert_eq!(t[1].column, 10);
        assert_eq!(t[2].column, 34);
        // Unterminated: to the end of the line.
        assert_eq!(tokens("a \"b c")[1].text, "b c");
    }
}
