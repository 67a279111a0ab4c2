//! TCP: connect, optionally send bytes and expect the answer to start with
//! others.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Failed, connect, describe_io};

/// Ok(reason) when the server passes, Err(why) when not. The caller
/// bounds it with the timeout.
pub async fn check(
    target: SocketAddr,
    source: Option<IpAddr>,
    send: &Option<String>,
    expect: &Option<String>,
) -> Result<String, Failed> {
    let mut s = connect(target, source).await.map_err(Failed::io)?;
    if let Some(bytes) = send {
        s.write_all(bytes.as_bytes()).await.map_err(Failed::io)?;
    }
    let Some(want) = expect else {
        return Ok("connected".into());
    };
    let want = want.as_bytes();
    let mut got = Vec::with_capacity(want.len());
    let mut buf = [0u8; 512];
    while got.len() < want.len() {
        let n = s.read(&mut buf).await.map_err(|e| describe_io(&e))?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got.starts_with(want) {
        Ok("expected answer".into())
    } else {
        let shown: String = String::from_utf8_lossy(&got[..got.len().min(40)])
            .escape_debug()
            .collect();
        Err(format!("answer \"{shown}\" does not start with the expected bytes").into())
    }
}
