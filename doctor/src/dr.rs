//! Real servers probed from the director without logging into them, with
//! ICMP echoes in frames addressed to the real server's MAC:
//! - direct routing: one to the VIP, as IPVS's DR forwarding hands it
//!   packets (only the MAC rewritten): is the VIP on one of its
//!   interfaces?
//! - NAT: one to its own address from the VIP (a source outside its
//!   segment, as a client's after IPVS rewrote the destination): does
//!   the reply come back to this director, its gateway?
//!
//! Each with an echo to its own address from this director's first, so
//! a server that drops ICMP is told apart. The replies are read off the
//! wire (an AF_PACKET socket), not from the IP stack: a director that
//! holds the VIP drops a reply from it (a martian) before any socket.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::link::Link;

const ETH_P_IP: u16 = 0x0800;

/// RFC 1071 checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame with an ICMP echo request from `src` to `dst`.
pub fn echo_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 20 + 16);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let total: u16 = 20 + 16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip[8] = 64;
    ip[9] = 1; // ICMP
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut icmp = [0u8; 16];
    icmp[0] = 8; // echo request
    icmp[4..6].copy_from_slice(&id.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[8..16].copy_from_slice(b"tandem-d");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

/// The source, identifier and sequence of an ICMP echo reply in `frame`.
pub fn echo_reply(frame: &[u8]) -> Option<(Ipv4Addr, u16, u16)> {
    if frame.get(12..14)? != ETH_P_IP.to_be_bytes() {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || *ip.get(9)? != 1 {
        return None;
    }
    let icmp = ip.get(ihl..ihl + 8)?;
    if icmp[0] != 0 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    Some((
        src,
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// The neighbour entry for `ip` (`/proc/net/arp`): its MAC and device,
/// once resolved.
fn neighbour(ip: Ipv4Addr) -> Option<([u8; 6], String)> {
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // IP address, HW type, Flags (0x2: complete), HW address, Mask, Device
        if f.len() < 6 || f[0] != ip.to_string() || f[2] == "0x0" {
            return None;
        }
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = f[3].split(':').collect();
        if parts.len() != 6 {
            return None;
        }
        for (m, p) in mac.iter_mut().zip(parts) {
            *m = u8::from_str_radix(p, 16).ok()?;
        }
        (mac != [0; 6]).then(|| (mac, f[5].to_string()))
    })
}

/// What one real server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answers {
    pub mac: [u8; 6],
    pub device: String,
    /// This director's address on that segment.
    pub src: Ipv4Addr,
    /// To its own address from `src`.
    pub own: bool,
    /// To the second echo (see [`Second`]).
    pub second: bool,
}

/// The second echo: what is asked of the real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Second {
    /// Direct routing: from `src` to the VIP.
    ToVip(Ipv4Addr),
    /// NAT: from the VIP to the real server's own address.
    FromVip(Ipv4Addr),
}

/// Probes real server `rs`; `Ok(None)` when its MAC cannot be learnt (it
/// does not answer ARP: not on a segment of ours, or down).
pub fn probe(rs: Ipv4Addr, second: Second, wait: Duration) -> io::Result<Option<Answers>> {
    // A datagram to the discard port makes the kernel resolve its MAC,
    // and names the address this director reaches it from.
    let udp = UdpSocket::bind("0.0.0.0:0")?;
    udp.connect(SocketAddr::from((rs, 9)))?;
    let src = match udp.local_addr()? {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => return Ok(None),
    };
    let _ = udp.send(b"");
    let until = Instant::now() + wait;
    let (mac, device) = loop {
        if let Some(n) = neighbour(rs) {
            break n;
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (index, own_mac) = crate::link::interface(&device)?;
    let link = Link::open(index, ETH_P_IP, mac)?;
    let id = (std::process::id() as u16) ^ 0x7464;
    // The second reply comes from where the echo went.
    let (second_src, second_dst) = match second {
        Second::ToVip(vip) => (src, vip),
        Second::FromVip(vip) => (vip, rs),
    };
    for (seq, from, dst) in [(1u16, src, rs), (2, second_src, second_dst)] {
        link.send(&echo_frame(mac, own_mac, from, dst, id, seq))?;
    }
    let (mut own, mut answered) = (false, false);
    link.receive_until(Instant::now() + wait, |frame| {
        match echo_reply(frame) {
            Some((from, i, 1)) if i == id && from == rs => own = true,
            Some((from, i, 2)) if i == id && from == second_dst => answered = true,
            _ => {}
        }
        own && answered
    })?;
    Ok(Some(Answers {
        mac,
        device,
        src,
        own,
        second: answered,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_well_formed_and_its_reply_is_read_back() {
        let f = echo_frame(
            [2, 0, 0, 0, 0, 9],
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(192, 0, 2, 10),
            0x1234,
            2,
        );
        assert_eq!(f.len(), 14 + 20 + 16);
        assert_eq!(checksum(&f[14..34]), 0, "the IP header sums to zero");
        assert_eq!(checksum(&f[34..]), 0, "the ICMP message sums to zero");
        assert_eq!(echo_reply(&f), None, "a request is not a reply");
        // The reply: addresses swapped, type 0.
        let mut r = f.clone();
        r[26..30].copy_from_slice(&[192, 0, 2, 10]);
        r[30..34].copy_from_slice(&[10, 0, 0, 1]);
        r[34] = 0;
        assert_eq!(
            echo_reply(&r),
            Some((Ipv4Addr::new(192, 0, 2, 10), 0x1234, 2))
        );
        assert_eq!(echo_reply(&r[..40]), None, "truncated");
    }
}
