//! Who answers ARP for an address: an RFC 5227 probe (sender address
//! 0.0.0.0, so no cache on the segment learns anything from it) sent as
//! a broadcast out of one interface, and every reply's sender hardware
//! address collected for a while.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::link::Link;
use crate::link::interface;

const ETH_P_ARP: u16 = 0x0806;

/// The probe's Ethernet frame from `mac` for `target`.
pub fn probe_frame(mac: [u8; 6], target: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, hlen 6, plen 4, request.
    f[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f[22..28].copy_from_slice(&mac);
    // Sender protocol address 0.0.0.0 (RFC 5227 2.1.1); target hardware
    // address zero.
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// An ARP reply's sender, when `frame` (from its Ethernet header on) is
/// one.
pub fn reply_sender(frame: &[u8]) -> Option<(Ipv4Addr, [u8; 6])> {
    let arp = frame.get(14..42)?;
    if frame[12..14] != ETH_P_ARP.to_be_bytes()
        || arp[..8] != [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02]
    {
        return None;
    }
    let mac: [u8; 6] = arp[8..14].try_into().ok()?;
    let ip = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    Some((ip, mac))
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The hardware addresses that answer ARP for `target` on `ifname`
/// within `wait`, in the order they answered, each once.
pub fn who_answers(ifname: &str, target: Ipv4Addr, wait: Duration) -> io::Result<Vec<[u8; 6]>> {
    let (index, mac) = interface(ifname)?;
    let link = Link::open(index, ETH_P_ARP, [0xff; 6])?;
    link.send(&probe_frame(mac, target))?;
    let mut out: Vec<[u8; 6]> = Vec::new();
    link.receive_until(Instant::now() + wait, |frame| {
        if let Some((ip, from)) = reply_sender(frame)
            && ip == target
            && !out.contains(&from)
        {
            out.push(from);
        }
        false
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_asks_from_nowhere_and_a_reply_names_its_sender() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = probe_frame(mac, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(
            &f[28..32],
            &[0, 0, 0, 0],
            "RFC 5227: sender address 0.0.0.0"
        );
        assert_eq!(reply_sender(&f), None, "a request is not a reply");
        // The reply the target's owner sends back.
        let mut r = f;
        r[21] = 2;
        r[22..28].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        r[28..32].copy_from_slice(&[192, 0, 2, 10]);
        assert_eq!(
            reply_sender(&r),
            Some((Ipv4Addr::new(192, 0, 2, 10), [2, 0, 0, 0, 0, 9]))
        );
        assert_eq!(reply_sender(&r[..30]), None, "truncated");
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 0xab]), "02:00:00:00:00:ab");
    }
}
