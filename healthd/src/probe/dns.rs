//! DNS over UDP (RFC 1035 4.2.1): one query, up when the response code is
//! the expected one and, when asked, an answer carries the expected data.
//! The message codec is hickory-proto's; this module only decides.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tandem_model::config::format_duration;

use super::Failed;
use super::udp::{connected, recv_error};
use crate::spec::Dns;

/// The query's bytes, under `id`.
pub fn query(d: &Dns, id: u16) -> Result<Vec<u8>, String> {
    let name = Name::from_str(&d.name).map_err(|e| format!("query name {}: {e}", d.name))?;
    let qtype =
        RecordType::from_str(&d.qtype).map_err(|e| format!("query type {}: {e}", d.qtype))?;
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    // A recursor answers from its cache; an authoritative server ignores it.
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, qtype));
    m.to_vec().map_err(|e| e.to_string())
}

/// What a reply says: None when it is not the answer to query `id` (a
/// stray or late datagram: keep waiting), else the verdict.
pub fn verdict(d: &Dns, id: u16, reply: &[u8]) -> Option<Result<String, String>> {
    let m = Message::from_vec(reply).ok()?;
    if m.metadata.id != id || m.metadata.message_type != MessageType::Response {
        return None;
    }
    let rcode = rcode_name(m.metadata.response_code);
    if rcode != d.rcode {
        return Some(Err(format!("DNS {rcode}, expected {}", d.rcode)));
    }
    let Some(want) = &d.answer else {
        return Some(Ok(format!("DNS {rcode}")));
    };
    let found = m.answers.iter().any(|r| matches(&r.data, want));
    Some(if found {
        Ok(format!("DNS {rcode} with {want}"))
    } else if m.answers.is_empty() {
        Err(format!("DNS {rcode} without an answer, expected {want}"))
    } else {
        let shown: Vec<String> = m
            .answers
            .iter()
            .take(3)
            .map(|r| r.data.to_string())
            .collect();
        Err(format!("DNS answer {}, expected {want}", shown.join(", ")))
    })
}

/// An answer's data against the expected text: addresses compare as
/// addresses (2001:db8::1 is 2001:DB8:0::1), names with or without the
/// final dot, the rest as printed.
fn matches(data: &RData, want: &str) -> bool {
    let want_ip = IpAddr::from_str(want).ok();
    match data {
        RData::A(a) => want_ip == Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => want_ip == Some(IpAddr::V6(a.0)),
        other => {
            let got = other.to_string();
            got.eq_ignore_ascii_case(want)
                || got
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(want.trim_end_matches('.'))
        }
    }
}

fn rcode_name(r: ResponseCode) -> String {
    match r {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// Asks and waits for the answer, at most `timeout`.
pub async fn check(d: &Dns, timeout: Duration) -> Result<String, Failed> {
    let id: u16 = rand_id();
    let q = query(d, id).map_err(Failed::Local)?;
    let s = connected(d.target, d.source).await.map_err(Failed::io)?;
    s.send(&q).await.map_err(recv_error)?;
    let mut buf = vec![0u8; 4096];
    let wait = async {
        loop {
            let n = s.recv(&mut buf).await.map_err(recv_error)?;
            if let Some(v) = verdict(d, id, &buf[..n]) {
                return v.map_err(Failed::Server);
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(Failed::Server(format!(
            "no DNS answer within {}",
            format_duration(timeout)
        ))),
    }
}

/// A query id nobody on the path can guess in advance (RFC 5452 9.2).
fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    if getrandom::fill(&mut b).is_err() {
        // No entropy source: the time still varies the id.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.subsec_nanos() as u16;
    }
    u16::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;

    fn spec(answer: Option<&str>) -> Dns {
        Dns {
            target: "192.0.2.53:53".parse().unwrap(),
            source: None,
            name: "www.example.com.".into(),
            qtype: "A".into(),
            rcode: "NOERROR".into(),
            answer: answer.map(str::to_string),
        }
    }

    fn reply(id: u16, rcode: ResponseCode, answers: &[&str]) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        let name = Name::from_str("www.example.com.").unwrap();
        for a in answers {
            let ip: std::net::Ipv4Addr = a.parse().unwrap();
            m.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A(ip))));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn the_query_asks_for_the_name_and_type_with_recursion() {
        let q = Message::from_vec(&query(&spec(None), 7).unwrap()).unwrap();
        assert_eq!(q.metadata.id, 7);
        assert!(q.metadata.recursion_desired);
        assert_eq!(q.queries[0].name().to_string(), "www.example.com.");
        assert_eq!(q.queries[0].query_type(), RecordType::A);
    }

    #[test]
    fn a_reply_passes_on_its_rcode_and_expected_answer() {
        let d = spec(None);
        assert_eq!(
            verdict(&d, 7, &reply(7, ResponseCode::NoError, &[])),
            Some(Ok("DNS NOERROR".into()))
        );
        assert_eq!(
            verdict(&d, 7, &reply(7, ResponseCode::Refused, &[])),
            Some(Err("DNS REFUSED, expected NOERROR".into()))
        );
        let d = spec(Some("192.0.2.80"));
        assert!(matches!(
            verdict(
                &d,
                7,
                &reply(7, ResponseCode::NoError, &["192.0.2.7", "192.0.2.80"])
            ),
            Some(Ok(_))
        ));
        assert_eq!(
            verdict(&d, 7, &reply(7, ResponseCode::NoError, &["192.0.2.7"])),
            Some(Err("DNS answer 192.0.2.7, expected 192.0.2.80".into()))
        );
        assert_eq!(
            verdict(&d, 7, &reply(7, ResponseCode::NoError, &[])),
            Some(Err(
                "DNS NOERROR without an answer, expected 192.0.2.80".into()
            ))
        );
    }

    #[test]
    fn a_datagram_that_is_not_the_answer_is_ignored() {
        let d = spec(None);
        assert_eq!(verdict(&d, 7, &reply(8, ResponseCode::NoError, &[])), None);
        assert_eq!(verdict(&d, 7, b"garbage"), None);
        assert_eq!(
            verdict(&d, 7, &query(&d, 7).unwrap()),
            None,
            "a query is no answer"
        );
    }
}
