//! What a checked server answers, read by healthd: a DNS response against
//! several expectations (`dns::verdict`), or an SMTP conversation's
//! replies one after another (`smtp::reply`, multi-line, bounded in lines
//! and length). None panics; a reply read is within its bounds.
//!
//! Input: byte 0 picks DNS (even) or SMTP (odd); the rest is the
//! datagram, or the bytes the SMTP server sends.
#![no_main]

use std::sync::OnceLock;

use healthd::probe::{dns, smtp};
use healthd::spec::Dns;
use libfuzzer_sys::fuzz_target;
use tokio::io::BufReader;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    })
}

fn spec(rcode: &str, answer: Option<&str>) -> Dns {
    Dns {
        target: "127.0.0.1:53".parse().unwrap(),
        source: None,
        name: "example.com.".into(),
        qtype: "A".into(),
        rcode: rcode.into(),
        answer: answer.map(str::to_string),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        // The id the reply carries, so the verdict goes past the check
        // that it answers our query; and one it does not carry.
        let id = match rest {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        for d in [
            spec("NOERROR", None),
            spec("NXDOMAIN", None),
            spec("NOERROR", Some("10.0.0.1")),
            spec("NOERROR", Some("2001:db8::1")),
            spec("NOERROR", Some("mail.example.com")),
            spec("NOERROR", Some("v=spf1 -all")),
        ] {
            let _ = dns::verdict(&d, id, rest);
            assert!(
                dns::verdict(&d, id.wrapping_add(1), rest).is_none(),
                "a reply to another query is not a verdict"
            );
        }
    } else {
        rt().block_on(async {
            let mut r = BufReader::new(rest);
            // Each reply takes at least one byte: at most rest.len() of them.
            for _ in 0..=rest.len() {
                match smtp::reply(&mut r).await {
                    Ok((code, lines)) => {
                        assert!(code <= 999, "a three-digit code");
                        assert!(
                            !lines.is_empty() && lines.len() <= 64,
                            "{} lines",
                            lines.len()
                        );
                        assert!(lines.iter().all(|l| l.len() <= 1000));
                    }
                    Err(_) => break,
                }
            }
        });
    }
});
