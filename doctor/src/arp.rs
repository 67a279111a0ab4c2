//! Who answers ARP for an address: an RFC 5227 probe (sender address
//! 0.0.0.0, so no cache on the segment learns anything from it) sent as
//! a broadcast out of one interface, and every reply's sender hardware
//! address collected for a while.

use std::io;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

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

/// An interface's index and hardware address, from sysfs.
pub fn interface(ifname: &str) -> io::Result<(u32, [u8; 6])> {
    let base = std::path::Path::new("/sys/class/net").join(ifname);
    let index: u32 = std::fs::read_to_string(base.join("ifindex"))?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ifindex"))?;
    let text = std::fs::read_to_string(base.join("address"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an Ethernet address",
        ));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "address"))?;
    }
    Ok((index, mac))
}

/// The hardware addresses that answer ARP for `target` on `ifname`
/// within `wait`, in the order they answered, each once.
pub fn who_answers(ifname: &str, target: Ipv4Addr, wait: Duration) -> io::Result<Vec<[u8; 6]>> {
    let (index, mac) = interface(ifname)?;
    let s = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(Protocol::from(i32::from(ETH_P_ARP.to_be()))),
    )?;
    // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { MaybeUninit::zeroed().assume_init() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ARP.to_be();
    sll.sll_ifindex = index as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    let ptr = (&sll as *const libc::sockaddr_ll).cast();
    // SAFETY: sll is valid for len bytes.
    if unsafe { libc::bind(s.as_raw_fd(), ptr, len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let frame = probe_frame(mac, target);
    // SAFETY: frame and sll are valid for the given lengths.
    let rc = unsafe {
        libc::sendto(
            s.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            ptr,
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out: Vec<[u8; 6]> = Vec::new();
    let until = Instant::now() + wait;
    let mut buf = [MaybeUninit::<u8>::uninit(); 128];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(out);
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        // SAFETY: recv initialised the first n bytes.
        let got: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if let Some((ip, from)) = reply_sender(&got)
            && ip == target
            && !out.contains(&from)
        {
            out.push(from);
        }
    }
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
