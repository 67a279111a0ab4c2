//! SMTP (RFC 5321): the server's 220 greeting, 250 to EHLO, and with
//! STARTTLS (RFC 3207) a TLS handshake and 250 to a second EHLO inside
//! it; then QUIT, without waiting for its answer. Replies are read a line
//! at a time, bounded in lines and length, so a server that talks forever
//! fails rather than holding the check.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsConnector;

use super::{Failed, connect, describe_io};
use crate::spec::Tls;

/// A reply longer than this many lines (or one line longer than 1000
/// bytes, RFC 5321 4.5.3.1.5's limit) is refused.
const MAX_LINES: usize = 64;
const MAX_LINE: usize = 1000;

/// One reply: its code and the text of its lines.
pub async fn reply<S: AsyncRead + Unpin>(
    r: &mut BufReader<S>,
) -> Result<(u16, Vec<String>), Failed> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take(MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| Failed::Server(describe_io(&e)))?;
        if n == 0 {
            return Err(Failed::Server(
                "SMTP: connection closed by the server".into(),
            ));
        }
        if !line.ends_with(b"\n") {
            return Err(Failed::Server(if n > MAX_LINE {
                "SMTP: a reply line longer than 1000 bytes".into()
            } else {
                "SMTP: connection closed by the server".into()
            }));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let code = text.get(..3).and_then(|c| c.parse::<u16>().ok());
        let sep = text.as_bytes().get(3).copied();
        let (Some(code), Some(b' ' | b'-') | None) = (code, sep) else {
            let shown: String = text
                .chars()
                .take(40)
                .collect::<String>()
                .escape_debug()
                .collect();
            return Err(Failed::Server(format!("SMTP: malformed reply \"{shown}\"")));
        };
        lines.push(text.get(4..).unwrap_or_default().to_string());
        if sep != Some(b'-') {
            return Ok((code, lines));
        }
        if lines.len() >= MAX_LINES {
            return Err(Failed::Server("SMTP: a reply of too many lines".into()));
        }
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
) -> Result<(), Failed> {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(Failed::io)
}

/// EHLO and its 250; the extensions offered, upper case.
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    helo: &str,
) -> Result<Vec<String>, Failed> {
    send(s, &format!("EHLO {helo}")).await?;
    match reply(s).await? {
        (250, lines) => Ok(lines
            .into_iter()
            .skip(1)
            .map(|l| l.to_ascii_uppercase())
            .collect()),
        (code, lines) => Err(Failed::Server(format!(
            "SMTP EHLO answered {code} {}",
            lines.first().map(String::as_str).unwrap_or_default()
        ))),
    }
}

/// Ok(reason) when the server passes. The caller bounds it with the
/// timeout. `tls`: with STARTTLS, the client configuration to use.
pub async fn check(
    target: std::net::SocketAddr,
    source: Option<std::net::IpAddr>,
    helo: &Option<String>,
    tls: Option<(&Tls, Arc<rustls::ClientConfig>)>,
) -> Result<String, Failed> {
    let tcp = connect(target, source).await.map_err(Failed::io)?;
    // RFC 5321 4.1.3: without a name, the address the server sees.
    let helo = match helo {
        Some(h) => h.clone(),
        None => match tcp.local_addr().map_err(Failed::io)?.ip() {
            std::net::IpAddr::V4(a) => format!("[{a}]"),
            std::net::IpAddr::V6(a) => format!("[IPv6:{a}]"),
        },
    };
    let mut s = BufReader::new(tcp);
    match reply(&mut s).await? {
        (220, _) => {}
        (code, lines) => {
            return Err(Failed::Server(format!(
                "SMTP greeting {code} {}",
                lines.first().map(String::as_str).unwrap_or_default()
            )));
        }
    }
    let offered = ehlo(&mut s, &helo).await?;
    let Some((t, config)) = tls else {
        let _ = send(&mut s, "QUIT").await;
        return Ok("SMTP 250".into());
    };
    if !offered.iter().any(|e| e == "STARTTLS") {
        return Err(Failed::Server("SMTP: STARTTLS not offered".into()));
    }
    send(&mut s, "STARTTLS").await?;
    match reply(&mut s).await? {
        (220, _) => {}
        (code, _) => return Err(Failed::Server(format!("SMTP STARTTLS answered {code}"))),
    }
    // RFC 3207 5: nothing may follow the 220 before the handshake, so the
    // reader holds no bytes of it.
    let tcp = s.into_inner();
    let name = match &t.sni {
        Some(n) => ServerName::try_from(n.clone())
            .map_err(|_| Failed::Server(format!("TLS: \"{n}\" is not a server name")))?,
        None => ServerName::IpAddress(target.ip().into()),
    };
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            Failed::Server(format!(
                "TLS: {}",
                e.to_string()
                    .trim_start_matches("invalid peer certificate: ")
            ))
        })?;
    let mut s = BufReader::new(stream);
    ehlo(&mut s, &helo).await?;
    let _ = send(&mut s, "QUIT").await;
    Ok("SMTP 250 after STARTTLS".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<(u16, Vec<String>), Failed> {
        reply(&mut BufReader::new(bytes)).await
    }

    #[tokio::test]
    async fn replies_of_one_and_many_lines_are_read_to_their_last() {
        assert_eq!(
            read(b"220 mx.example ESMTP\r\n").await.unwrap(),
            (220, vec!["mx.example ESMTP".to_string()])
        );
        let (code, lines) = read(b"250-mx.example\r\n250-SIZE 100\r\n250 STARTTLS\r\n")
            .await
            .unwrap();
        assert_eq!((code, lines.len(), lines[2].as_str()), (250, 3, "STARTTLS"));
        assert_eq!(read(b"250\r\n").await.unwrap(), (250, vec![String::new()]));
    }

    #[tokio::test]
    async fn a_reply_that_is_not_smtp_or_never_ends_fails() {
        assert!(
            matches!(read(b"HTTP/1.1 400 Bad\r\n").await, Err(Failed::Server(r)) if r.starts_with("SMTP: malformed reply"))
        );
        assert!(
            matches!(read(b"250-more\r\n").await, Err(Failed::Server(r)) if r.contains("closed"))
        );
        let endless = "250-x\r\n".repeat(100);
        assert!(
            matches!(read(endless.as_bytes()).await, Err(Failed::Server(r)) if r.contains("too many lines"))
        );
        let long = format!("250 {}\r\n", "x".repeat(5000));
        assert!(read(long.as_bytes()).await.is_err());
    }
}
