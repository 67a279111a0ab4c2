//! VRRP advertisements on the wire: VRRPv3 (RFC 5798) over IPv4 and IPv6
//! and VRRPv2 (RFC 3768) over IPv4, as keepalived speaks them; plus the
//! IPv4 header we send them in and the gratuitous ARP / unsolicited
//! neighbour advertisement a new master announces itself with.
//!
//! Pure functions over bytes: nothing here touches a socket. Parsing never
//! panics; whatever it refuses comes back as a [`Drop`] reason, which the
//! daemon counts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IP protocol number of VRRP (RFC 5798 5.1.1.4).
pub const IPPROTO_VRRP: u8 = 112;
/// RFC 5798 5.1.1.3 / 5.1.2.3: sent with TTL / hop limit 255, and a
/// receiver drops anything else (7.1), so a VRRP packet cannot have been
/// routed.
pub const VRRP_TTL: u8 = 255;
/// DSCP CS6 (network control), what keepalived marks adverts with.
pub const VRRP_TOS: u8 = 0xc0;

const V2_AUTH_DATA_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

/// An advertisement, the one VRRP packet type (RFC 5798 5.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: u8,
    pub priority: u8,
    /// v3: Max Adver Int, in centiseconds on the wire (12 bits); v2: Adver
    /// Int, in whole seconds (8 bits).
    pub interval: Duration,
    pub addresses: Vec<IpAddr>,
}

/// Why a received packet was dropped. The names are the labels of the
/// drop counters in `/status` and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Drop {
    /// Shorter than its headers or than its address count says.
    Truncated,
    /// IPv4 header malformed (version, header length, total length).
    IpHeader,
    /// Not IP protocol 112.
    Protocol,
    /// TTL / hop limit is not 255 (RFC 5798 7.1): it was routed.
    Ttl,
    /// Not the VRRP version this virtual router speaks.
    Version,
    /// Not an advertisement (type 1).
    Type,
    Checksum,
    /// VRRPv2 authentication of another type than ours (none, or
    /// keepalived's PASS; AH is not spoken).
    Auth,
    /// VRRPv2 simple password other than ours.
    Password,
    /// IPvX Addr Count 0 (RFC 5798 5.2.5: "MUST be ignored"; RFC 9568
    /// erratum 8299 makes it a 7.1 receive check).
    NoAddresses,
    /// VRRPv2 advert interval differs from ours (RFC 3768 7.1 says drop).
    Interval,
    /// No virtual router with this VRID on the interface.
    UnknownVrid,
    /// We own the addresses (priority 255): RFC 5798 7.1 drops adverts.
    Owner,
    /// An IPv4 advert on an IPv6 router or the reverse.
    Family,
    /// Sent by this node itself (looped back by a switch or a peer list).
    Own,
    /// Authenticated adverts (`auth_hmac`, see [`crate::auth`]): no
    /// trailer where one is required.
    AuthMissing,
    /// A trailer of another type, or with reserved bits set.
    AuthMalformed,
    /// Signed with a key id we do not have.
    AuthUnknownKey,
    /// The MAC does not match: forged, altered, or another key.
    AuthBadMac,
    /// A first advert whose time is outside the window of ours.
    AuthStale,
    /// A sequence number not after the last one accepted from its sender.
    AuthReplay,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::IpHeader => "ip_header",
            Drop::Protocol => "protocol",
            Drop::Ttl => "ttl",
            Drop::Version => "version",
            Drop::Type => "type",
            Drop::Checksum => "checksum",
            Drop::Auth => "auth",
            Drop::Password => "password",
            Drop::NoAddresses => "no_addresses",
            Drop::Interval => "interval",
            Drop::UnknownVrid => "unknown_vrid",
            Drop::Owner => "owner",
            Drop::Family => "family",
            Drop::Own => "own",
            Drop::AuthMissing => "auth_missing",
            Drop::AuthMalformed => "auth_malformed",
            Drop::AuthUnknownKey => "auth_unknown_key",
            Drop::AuthBadMac => "auth_bad_mac",
            Drop::AuthStale => "auth_stale",
            Drop::AuthReplay => "auth_replay",
        }
    }
}

impl fmt::Display for Drop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Internet checksum (RFC 1071) over `parts`, as if concatenated.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in part.iter() {
            match odd.take() {
                None => odd = Some(b),
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header VRRPv3 sums over (RFC 5798 5.2.8, RFC 8200 8.1).
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = Vec::with_capacity(12);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, IPPROTO_VRRP]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = Vec::with_capacity(40);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, IPPROTO_VRRP]);
            p
        }
        // Mixed families cannot occur on one socket; sum nothing extra so
        // the checksum simply fails.
        _ => Vec::new(),
    }
}

/// VRRPv2 authentication (RFC 2338 5.3.6-5.3.7), as keepalived's
/// `auth_type PASS` still sends it (RFC 3768 removed it, VRRPv3 has none).
/// A simple password travels in clear text in every advert: it keeps two
/// virtual routers that share a segment and a VRID apart, nothing more.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum V2Auth {
    /// Auth Type 0.
    #[default]
    None,
    /// Auth Type 1: the 8 octets of Authentication Data, the password
    /// padded with zeros.
    Password([u8; V2_AUTH_DATA_LEN]),
}

impl V2Auth {
    /// A password of at most 8 bytes (longer ones are cut, as keepalived
    /// does; the configuration refuses them).
    pub fn password(p: &str) -> V2Auth {
        let mut data = [0u8; V2_AUTH_DATA_LEN];
        for (d, b) in data.iter_mut().zip(p.bytes()) {
            *d = b;
        }
        V2Auth::Password(data)
    }

    fn type_code(&self) -> u8 {
        match self {
            V2Auth::None => 0,
            V2Auth::Password(_) => 1,
        }
    }

    fn data(&self) -> [u8; V2_AUTH_DATA_LEN] {
        match self {
            V2Auth::None => [0; V2_AUTH_DATA_LEN],
            V2Auth::Password(p) => *p,
        }
    }
}

impl Advert {
    fn v3_interval_cs(&self) -> u16 {
        ((self.interval.as_millis() / 10).min(0x0fff)) as u16
    }

    /// The VRRP message, checksum included. `src` and `dst` are the IP
    /// addresses it travels between (v3 sums over them).
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        self.encode_authenticated(src, dst, &V2Auth::None)
    }

    /// As [`encode`](Self::encode), with VRRPv2 authentication `auth`
    /// (ignored for v3, which has none).
    pub fn encode_authenticated(&self, src: IpAddr, dst: IpAddr, auth: &V2Auth) -> Vec<u8> {
        let addr_len = self.addresses.iter().map(|a| match a {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        });
        let body: usize = addr_len.sum();
        let tail = if self.version == Version::V2 {
            V2_AUTH_DATA_LEN
        } else {
            0
        };
        let mut out = Vec::with_capacity(8 + body + tail);
        out.push(self.version.number() << 4 | 1);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(self.addresses.len().min(255) as u8);
        match self.version {
            Version::V3 => out.extend_from_slice(&self.v3_interval_cs().to_be_bytes()),
            Version::V2 => {
                out.push(auth.type_code());
                out.push(self.interval.as_secs().clamp(1, 255) as u8);
            }
        }
        out.extend_from_slice(&[0, 0]);
        for a in self.addresses.iter().take(255) {
            match a {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        if self.version == Version::V2 {
            // RFC 2338 5.3.7: 8 octets of Authentication Data, covered by
            // the checksum.
            out.extend_from_slice(&auth.data());
        }
        debug_assert_eq!(out.len(), 8 + body + tail);
        let sum = match self.version {
            // RFC 3768 5.3.8: over the VRRP message only.
            Version::V2 => checksum(&[&out]),
            Version::V3 => checksum(&[&pseudo_header(src, dst, out.len()), &out]),
        };
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Parses a VRRP message that arrived from `src` to `dst`, checking
    /// what RFC 5798 7.1 asks of the message itself: complete, a known
    /// version, an advertisement, a correct checksum. (TTL, VRID and the
    /// rest are the receiver's checks.)
    pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, Drop> {
        Self::decode_authenticated(msg, src, dst, &V2Auth::None)
    }

    /// As [`decode`](Self::decode), for a VRRPv2 router with
    /// authentication `auth`: RFC 2338 7.1 drops an advert whose Auth Type
    /// or Authentication Data is not ours.
    pub fn decode_authenticated(
        msg: &[u8],
        src: IpAddr,
        dst: IpAddr,
        auth: &V2Auth,
    ) -> Result<Advert, Drop> {
        if msg.len() < 8 {
            return Err(Drop::Truncated);
        }
        let version = match msg[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            _ => return Err(Drop::Version),
        };
        if msg[0] & 0x0f != 1 {
            return Err(Drop::Type);
        }
        let v6 = src.is_ipv6();
        if version == Version::V2 && v6 {
            return Err(Drop::Family);
        }
        let count = usize::from(msg[3]);
        if count == 0 {
            return Err(Drop::NoAddresses);
        }
        let alen = if v6 { 16 } else { 4 };
        let tail = if version == Version::V2 {
            V2_AUTH_DATA_LEN
        } else {
            0
        };
        // keepalived and RFC 3768 peers always send the 8 bytes of v2
        // authentication data; tolerate their absence only if nothing else
        // is missing, as some stacks trim them.
        let need = 8 + count * alen;
        if msg.len() < need {
            return Err(Drop::Truncated);
        }
        let msg_len = if version == Version::V2 {
            msg.len().min(need + tail)
        } else {
            msg.len()
        };
        let msg = &msg[..msg_len];
        let ok = match version {
            Version::V2 => checksum(&[msg]) == 0,
            Version::V3 => checksum(&[&pseudo_header(src, dst, msg.len()), msg]) == 0,
        };
        if !ok {
            return Err(Drop::Checksum);
        }
        let interval = match version {
            Version::V3 => {
                Duration::from_millis(u64::from(u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff) * 10)
            }
            Version::V2 => {
                if msg[4] != auth.type_code() {
                    return Err(Drop::Auth);
                }
                if let V2Auth::Password(p) = auth {
                    if msg.get(need..need + tail) != Some(&p[..]) {
                        return Err(Drop::Password);
                    }
                }
                // RFC 3768 5.3.7: whole seconds, from 1. No VRRPv2 router
                // can be configured to send 0 (found by fuzzing: it decoded
                // to an advert no encoder could write back).
                if msg[5] == 0 {
                    return Err(Drop::Interval);
                }
                Duration::from_secs(u64::from(msg[5]))
            }
        };
        let addresses = msg[8..need]
            .chunks_exact(alen)
            .map(|c| {
                if v6 {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::V6(Ipv6Addr::from(o))
                } else {
                    IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                }
            })
            .collect();
        Ok(Advert {
            version,
            vrid: msg[1],
            priority: msg[2],
            interval,
            addresses,
        })
    }
}

/// The length of the VRRP message `msg` says it has (header, addresses
/// and, for VRRPv2, the Authentication Data), when its header is there.
fn message_len(msg: &[u8], v6: bool) -> Option<usize> {
    let version = msg.first()? >> 4;
    let count = usize::from(*msg.get(3)?);
    let alen = if v6 { 16 } else { 4 };
    let tail = if version == 2 { V2_AUTH_DATA_LEN } else { 0 };
    Some(8 + count * alen + tail)
}

/// Splits `msg` into the VRRP message and an authentication trailer.
/// Nothing in the header announces one: as keepalived, a trailer is there
/// when the message is exactly [`crate::auth::TRAILER_LEN`] octets longer
/// than its address count says (Ethernet padding never adds that much to
/// a VRRP packet). Only an instance with `auth_hmac` looks.
pub fn split_trailer(msg: &[u8], v6: bool) -> (&[u8], Option<&[u8]>) {
    match message_len(msg, v6) {
        Some(len) if msg.len() == len + crate::auth::TRAILER_LEN => {
            let (m, t) = msg.split_at(len);
            (m, Some(t))
        }
        _ => (msg, None),
    }
}

/// `msg` (a VRRP message from [`Advert::encode`] for `src` -> `dst`) with
/// an authentication trailer after it. The IPv4 checksum stays as it is:
/// it covers the message only. The IPv6 one covers the whole payload,
/// trailer included (the kernel's IPV6_CHECKSUM on keepalived's socket
/// sums everything sent), so it is computed again.
pub fn with_trailer(mut msg: Vec<u8>, trailer: &[u8], src: IpAddr, dst: IpAddr) -> Vec<u8> {
    msg.extend_from_slice(trailer);
    if src.is_ipv6() && msg.len() >= 8 {
        msg[6..8].copy_from_slice(&[0, 0]);
        let sum = checksum(&[&pseudo_header(src, dst, msg.len()), &msg]);
        msg[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    msg
}

/// The parts of an IPv4 header a VRRP receiver looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub protocol: u8,
}

/// Splits a raw IPv4 packet (what an AF_INET raw socket delivers) into its
/// header and payload.
pub fn parse_ipv4(packet: &[u8]) -> Result<(Ipv4Header, &[u8]), Drop> {
    if packet.len() < 20 {
        return Err(Drop::Truncated);
    }
    if packet[0] >> 4 != 4 {
        return Err(Drop::IpHeader);
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if ihl < 20 || total < ihl || packet.len() < ihl {
        return Err(Drop::IpHeader);
    }
    // The kernel hands a raw socket the datagram as received; trust the
    // shorter of the buffer and the header's total length.
    let end = total.min(packet.len());
    let header = Ipv4Header {
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        ttl: packet[8],
        protocol: packet[9],
    };
    Ok((header, &packet[ihl..end]))
}

/// An IPv4 header for an advert we send with IP_HDRINCL: TOS CS6, TTL
/// 255, no DF (a 40-byte packet never fragments, and keepalived leaves DF
/// clear too), our own identification counter.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut h = Vec::with_capacity(total as usize);
    h.extend_from_slice(&[0x45, VRRP_TOS]);
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&[0, 0, VRRP_TTL, IPPROTO_VRRP, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let sum = checksum(&[&h]);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// The 42-byte Ethernet frame of a gratuitous ARP for `ip` from `mac`:
/// a broadcast ARP request with sender = target = `ip`, target hardware
/// address all ones, byte for byte what keepalived sends.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request
    f[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// ICMPv6 Neighbor Advertisement flags (RFC 4861 4.4).
pub const NA_FLAG_ROUTER: u8 = 0x80;
pub const NA_FLAG_OVERRIDE: u8 = 0x20;

/// An unsolicited neighbour advertisement for `target` (RFC 4861 7.2.6)
/// with the Override flag and the target link-layer address option, the
/// ICMPv6 message only. `checksum_src`/`checksum_dst` fill the checksum
/// (a raw ICMPv6 socket has the kernel overwrite it anyway).
pub fn unsolicited_na(
    target: Ipv6Addr,
    mac: [u8; 6],
    router: bool,
    checksum_src: Ipv6Addr,
    checksum_dst: Ipv6Addr,
) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0];
    m.push(NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 });
    m.extend_from_slice(&[0, 0, 0]);
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    m.extend_from_slice(&mac);
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&checksum_src.octets());
    pseudo.extend_from_slice(&checksum_dst.octets());
    pseudo.extend_from_slice(&(m.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    let sum = checksum(&[&pseudo, &m]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn checksum_of_data_with_its_checksum_is_zero() {
        let a = Advert {
            version: Version::V3,
            vrid: 7,
            priority: 100,
            interval: Duration::from_secs(1),
            addresses: vec![v4("10.0.0.1"), v4("10.0.0.2")],
        };
        let m = a.encode(v4("10.0.0.9"), v4("224.0.0.18"));
        assert_eq!(
            checksum(&[
                &pseudo_header(v4("10.0.0.9"), v4("224.0.0.18"), m.len()),
                &m
            ]),
            0
        );
    }

    #[test]
    fn odd_length_checksum_pads_with_zero() {
        assert_eq!(checksum(&[&[0x01]]), !0x0100);
        assert_eq!(checksum(&[&[0x01], &[0x02]]), checksum(&[&[0x01, 0x02]]));
    }

    #[test]
    fn a_v3_advert_round_trips() {
        let a = Advert {
            version: Version::V3,
            vrid: 255,
            priority: 1,
            interval: Duration::from_millis(40_950),
            addresses: vec![v4("192.0.2.1")],
        };
        let (s, d) = (v4("192.0.2.9"), v4("224.0.0.18"));
        assert_eq!(Advert::decode(&a.encode(s, d), s, d), Ok(a));
    }

    #[test]
    fn a_corrupted_advert_fails_its_checksum() {
        let a = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 100,
            interval: Duration::from_secs(1),
            addresses: vec![v4("192.0.2.1")],
        };
        let (s, d) = (v4("192.0.2.9"), v4("224.0.0.18"));
        let mut m = a.encode(s, d);
        m[2] ^= 0x10;
        assert_eq!(Advert::decode(&m, s, d), Err(Drop::Checksum));
        // The v3 checksum covers the pseudo-header: another source fails.
        let m = a.encode(s, d);
        assert_eq!(Advert::decode(&m, v4("192.0.2.8"), d), Err(Drop::Checksum));
    }

    #[test]
    fn a_short_or_foreign_message_is_dropped_with_its_reason() {
        let (s, d) = (v4("192.0.2.9"), v4("224.0.0.18"));
        assert_eq!(Advert::decode(&[0x31, 1, 100], s, d), Err(Drop::Truncated));
        assert_eq!(
            Advert::decode(&[0x41, 1, 100, 0, 0, 100, 0, 0], s, d),
            Err(Drop::Version)
        );
        assert_eq!(
            Advert::decode(&[0x32, 1, 100, 0, 0, 100, 0, 0], s, d),
            Err(Drop::Type)
        );
        // Says two addresses, carries one.
        let mut m = Advert {
            version: Version::V3,
            vrid: 1,
            priority: 100,
            interval: Duration::from_secs(1),
            addresses: vec![v4("192.0.2.1")],
        }
        .encode(s, d);
        m[3] = 2;
        assert_eq!(Advert::decode(&m, s, d), Err(Drop::Truncated));
    }

    #[test]
    fn ipv4_parse_takes_the_header_apart() {
        let payload = [1u8, 2, 3];
        let p = ipv4_packet(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(224, 0, 0, 18),
            7,
            &payload,
        );
        let (h, body) = parse_ipv4(&p).unwrap();
        assert_eq!(h.ttl, 255);
        assert_eq!(h.protocol, 112);
        assert_eq!(h.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(body, &payload);
        assert_eq!(checksum(&[&p[..20]]), 0);
        assert_eq!(parse_ipv4(&p[..10]), Err(Drop::Truncated));
    }

    fn v2_advert() -> Advert {
        Advert {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval: Duration::from_secs(1),
            addresses: vec![v4("192.0.2.10")],
        }
    }

    #[test]
    fn a_v2_password_is_sent_padded_and_checked_on_receipt() {
        let (src, dst) = (v4("10.0.0.1"), v4("224.0.0.18"));
        let pass = V2Auth::password("s3cret");
        let m = v2_advert().encode_authenticated(src, dst, &pass);
        // RFC 2338 5.3.6: Auth Type 1; 5.3.7: the password, zero padded.
        assert_eq!(m[4], 1);
        assert_eq!(&m[m.len() - 8..], b"s3cret\0\0");
        assert_eq!(checksum(&[&m]), 0, "the checksum covers the password");
        assert_eq!(
            Advert::decode_authenticated(&m, src, dst, &pass),
            Ok(v2_advert())
        );
        let wrong = V2Auth::password("s3cre7");
        assert_eq!(
            Advert::decode_authenticated(&m, src, dst, &wrong),
            Err(Drop::Password)
        );
        // A router without a password drops it, and a router with one drops
        // an advert without.
        assert_eq!(Advert::decode(&m, src, dst), Err(Drop::Auth));
        let plain = v2_advert().encode(src, dst);
        assert_eq!(
            Advert::decode_authenticated(&plain, src, dst, &pass),
            Err(Drop::Auth)
        );
        // Authentication Data trimmed away: not our password.
        let mut short = m[..m.len() - 8].to_vec();
        short[6..8].copy_from_slice(&[0, 0]);
        let sum = checksum(&[&short]);
        short[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            Advert::decode_authenticated(&short, src, dst, &pass),
            Err(Drop::Password)
        );
    }

    #[test]
    fn a_v2_advert_interval_of_zero_is_dropped() {
        let (src, dst) = (v4("10.0.0.1"), v4("224.0.0.18"));
        let mut m = v2_advert().encode(src, dst);
        m[5] = 0;
        m[6..8].copy_from_slice(&[0, 0]);
        let sum = checksum(&[&m]);
        m[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(Advert::decode(&m, src, dst), Err(Drop::Interval));
    }

    #[test]
    fn a_password_is_at_most_eight_octets() {
        assert_eq!(
            V2Auth::password("123456789"),
            V2Auth::Password(*b"12345678")
        );
    }
}
