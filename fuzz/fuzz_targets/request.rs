//! What the request targets share: an input cut into its flags byte, a
//! path (always starting with `/`) and a body.

/// `(flags, path, body)`: byte 0, then up to the first newline, then the
/// rest. None for an empty input.
pub fn split(data: &[u8]) -> Option<(u8, String, &[u8])> {
    let (&flags, rest) = data.split_first()?;
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let path = String::from_utf8_lossy(path);
    let path = if path.starts_with('/') {
        path.into_owned()
    } else {
        format!("/{path}")
    };
    Some((flags, path, body))
}

/// An event stream never ends: its head is the whole answer.
pub fn streaming(resp: &axum::response::Response) -> bool {
    resp.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}
