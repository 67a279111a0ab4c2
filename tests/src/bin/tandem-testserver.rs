//! A real server for tests: answers HTTP (or HTTPS with a self-signed
//! certificate, or a line protocol over TCP) the way a mode file says,
//! read again for every connection, so a test changes its behaviour by
//! rewriting the file.
//!
//! Modes (first line of the mode file):
//!   ok                 200 with the body "ok <name>"
//!   status N           that status
//!   body TEXT          200 with that body
//!   hang               accept, never answer
//!   slow DURATION_MS   answer 200 after that many milliseconds
//!   flap PERIOD_MS     200 and 500 alternating every period
//!   close              accept and close at once
//!
//! With `--line`, every connection gets the first line of the mode file
//! followed by CRLF (a line protocol such as "+PONG").
//!
//! With `--smtp`, it speaks SMTP: `ok` greets with 220 and answers EHLO
//! with 250 (offering STARTTLS with `--tls`, which then starts TLS only
//! on STARTTLS), `status N` greets with N, `hang` never greets.
//!
//! Every connection is counted: `--count-file` holds the total.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

struct Opts {
    listen: Vec<SocketAddr>,
    mode_file: PathBuf,
    count_file: Option<PathBuf>,
    name: String,
    tls: bool,
    line: bool,
    smtp: bool,
}

fn parse() -> Opts {
    let mut o = Opts {
        listen: Vec::new(),
        mode_file: PathBuf::from("mode"),
        count_file: None,
        name: "server".into(),
        tls: false,
        line: false,
        smtp: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => o
                .listen
                .push(args.next().expect("an address").parse().expect("ip:port")),
            "--mode-file" => o.mode_file = args.next().expect("a path").into(),
            "--count-file" => o.count_file = Some(args.next().expect("a path").into()),
            "--name" => o.name = args.next().expect("a name"),
            "--tls" => o.tls = true,
            "--line" => o.line = true,
            "--smtp" => o.smtp = true,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!o.listen.is_empty(), "--listen ADDR is required");
    o
}

fn mode(o: &Opts) -> String {
    std::fs::read_to_string(&o.mode_file)
        .unwrap_or_else(|_| "ok".into())
        .lines()
        .next()
        .unwrap_or("ok")
        .trim()
        .to_string()
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, o: &Opts, started: Instant) {
    let m = mode(o);
    if o.line {
        let _ = s.write_all(format!("{m}\r\n").as_bytes()).await;
        let _ = s.shutdown().await;
        return;
    }
    let (verb, arg) = m.split_once(' ').unwrap_or((m.as_str(), ""));
    if verb == "close" {
        return;
    }
    // Read the request head.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 65536 {
            return;
        }
    }
    let (code, body) = match verb {
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        "status" => (arg.parse().unwrap_or(500), format!("status {arg}")),
        "body" => (200, arg.to_string()),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(arg.parse().unwrap_or(2000))).await;
            (200, format!("ok {}", o.name))
        }
        "flap" => {
            let period = arg.parse::<u64>().unwrap_or(1000).max(1);
            let phase = started.elapsed().as_millis() as u64 / period;
            if phase % 2 == 0 {
                (200, "up".into())
            } else {
                (500, "down".into())
            }
        }
        _ => (200, format!("ok {}", o.name)),
    };
    let resp = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// One SMTP session until QUIT; `Some(acceptor)` offers STARTTLS and
/// returns the connection to upgrade when the client asks for it.
async fn smtp_session<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut tokio::io::BufReader<S>,
    offer_tls: bool,
) -> bool {
    use tokio::io::AsyncBufReadExt;
    loop {
        let mut line = String::new();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let verb = line
            .trim()
            .split(' ')
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" if offer_tls => "250-mx.test\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n",
            "EHLO" => "250-mx.test\r\n250 SIZE 10240000\r\n",
            "STARTTLS" if offer_tls => {
                let _ = s.get_mut().write_all(b"220 go ahead\r\n").await;
                return true;
            }
            "QUIT" => {
                let _ = s.get_mut().write_all(b"221 bye\r\n").await;
                return false;
            }
            _ => "502 unknown command\r\n",
        };
        if s.get_mut().write_all(answer.as_bytes()).await.is_err() {
            return false;
        }
    }
}

async fn serve_smtp(
    s: tokio::net::TcpStream,
    o: &Opts,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    let m = mode(o);
    let (verb, arg) = m.split_once(' ').unwrap_or((m.as_str(), ""));
    let mut s = tokio::io::BufReader::new(s);
    match verb {
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        }
        "status" => {
            let _ = s
                .get_mut()
                .write_all(format!("{arg} mx.test not today\r\n").as_bytes())
                .await;
            return;
        }
        _ => {}
    }
    if s.get_mut()
        .write_all(b"220 mx.test ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    if smtp_session(&mut s, acceptor.is_some()).await {
        let Some(a) = acceptor else { return };
        let Ok(tls) = a.accept(s.into_inner()).await else {
            return;
        };
        let mut tls = tokio::io::BufReader::new(tls);
        smtp_session(&mut tls, false).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = Arc::new(parse());
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let acceptor = o.tls.then(|| {
        let cert =
            rcgen::generate_simple_self_signed(vec!["test.invalid".into()]).expect("a certificate");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("a TLS config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let mut tasks = Vec::new();
    for addr in o.listen.clone() {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let (o, count, acceptor) = (o.clone(), count.clone(), acceptor.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let (o, acceptor) = (o.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if o.smtp {
                        serve_smtp(s, &o, acceptor).await;
                        return;
                    }
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(s).await {
                                serve(tls, &o, started).await;
                            }
                        }
                        None => serve(s, &o, started).await,
                    }
                });
            }
        }));
    }
    // The count goes to its file ten times a second, not once per
    // connection: a benchmark makes tens of thousands a second.
    if let Some(f) = o.count_file.clone() {
        let count = count.clone();
        tokio::spawn(async move {
            let mut last = u64::MAX;
            loop {
                let n = count.load(Ordering::Relaxed);
                if n != last {
                    let tmp = f.with_extension("tmp");
                    if std::fs::write(&tmp, n.to_string()).is_ok() {
                        let _ = std::fs::rename(&tmp, &f);
                    }
                    last = n;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    println!("listening on {:?}", o.listen);
    for t in tasks {
        let _ = t.await;
    }
}
