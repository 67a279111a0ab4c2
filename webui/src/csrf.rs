//! The synchronizer token: every state-changing request made with a session
//! cookie must carry the token stored in that session, as the form field
//! `csrf` or the header `X-CSRF-Token`. A cross-site page can make the
//! browser send the cookie, but cannot read the token.

use subtle::ConstantTimeEq;

/// Form field and header that carry the token.
pub const FIELD: &str = "csrf";
pub const HEADER: &str = "x-csrf-token";

/// Whether `presented` is the session's token. Constant time, so the
/// comparison leaks nothing about how much of a guess was right.
pub fn verify(expected: &str, presented: Option<&str>) -> bool {
    match presented {
        Some(p) if !expected.is_empty() => expected.as_bytes().ct_eq(p.as_bytes()).into(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        assert!(verify("abc", Some("abc")));
        assert!(!verify("abc", Some("abd")));
        assert!(!verify("abc", Some("ab")));
        assert!(!verify("abc", None));
        assert!(!verify("", Some("")));
    }
}
