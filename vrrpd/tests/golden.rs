//! Golden vectors: what Debian's keepalived 2.2.7 put on the wire parses,
//! and tandem encodes the same fields into the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use vrrpd::packet::{
    Advert, IPPROTO_VRRP, Version, garp_frame, ipv4_packet, parse_ipv4, unsolicited_na,
};

fn hex(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.trim();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Parses a captured IPv4 advert and re-encodes it, header included.
fn v4_round_trip(name: &str) -> Advert {
    let packet = hex(name);
    let (h, msg) = parse_ipv4(&packet).unwrap();
    assert_eq!((h.ttl, h.protocol), (255, IPPROTO_VRRP), "{name}");
    let adv = Advert::decode(msg, h.src.into(), h.dst.into()).unwrap();
    let id = u16::from_be_bytes([packet[4], packet[5]]);
    let ours = ipv4_packet(h.src, h.dst, id, &adv.encode(h.src.into(), h.dst.into()));
    assert_eq!(hex_of(&ours), hex_of(&packet), "{name}: our bytes differ");
    adv
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const VIP4: &str = "192.168.77.100";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn keepalived_v3_ipv4_adverts_parse_and_we_encode_them_byte_for_byte() {
    let a = v4_round_trip("vrrpv3_ipv4_advert_int1s.ip.hex");
    assert_eq!(
        a,
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 150,
            interval: Duration::from_secs(1),
            addresses: vec![ip(VIP4)],
        }
    );
    let a = v4_round_trip("vrrpv3_ipv4_advert_int10cs.ip.hex");
    assert_eq!(a.interval, Duration::from_millis(100));
    let a = v4_round_trip("vrrpv3_ipv4_prio0_shutdown.ip.hex");
    assert_eq!(a.priority, 0);
    let a = v4_round_trip("vrrpv3_ipv4_unicast_advert.ip.hex");
    assert_eq!(a.vrid, 51);
}

#[test]
fn keepalived_v2_adverts_parse_and_we_encode_them_byte_for_byte() {
    let a = v4_round_trip("vrrpv2_ipv4_advert_int1s.ip.hex");
    assert_eq!(
        a,
        Advert {
            version: Version::V2,
            vrid: 51,
            priority: 150,
            interval: Duration::from_secs(1),
            addresses: vec![ip(VIP4)],
        }
    );
    assert_eq!(
        v4_round_trip("vrrpv2_ipv4_prio0_shutdown.ip.hex").priority,
        0
    );
}

#[test]
fn keepalived_v3_ipv6_advert_parses_and_we_encode_it_byte_for_byte() {
    let packet = hex("vrrpv3_ipv6_advert_int1s.ip.hex");
    assert_eq!((packet[6], packet[7]), (IPPROTO_VRRP, 255));
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap());
    let msg = &packet[40..];
    let a = Advert::decode(msg, src.into(), dst.into()).unwrap();
    assert_eq!(
        a,
        Advert {
            version: Version::V3,
            vrid: 52,
            priority: 150,
            interval: Duration::from_secs(1),
            addresses: vec![ip("fd00:77::100")],
        }
    );
    assert_eq!(hex_of(&a.encode(src.into(), dst.into())), hex_of(msg));
}

#[test]
fn our_gratuitous_arp_is_keepalived_s_frame() {
    let frame = hex("garp_ipv4.frame.hex");
    let mac: [u8; 6] = frame[6..12].try_into().unwrap();
    let ours = garp_frame(mac, VIP4.parse::<Ipv4Addr>().unwrap());
    assert_eq!(hex_of(&ours), hex_of(&frame));
}

#[test]
fn our_unsolicited_neighbour_advertisement_is_keepalived_s() {
    let packet = hex("ipv6_unsolicited_na.ip.hex");
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap());
    let icmp = &packet[40..];
    let mac: [u8; 6] = icmp[26..32].try_into().unwrap();
    let ours = unsolicited_na("fd00:77::100".parse().unwrap(), mac, false, src, dst);
    assert_eq!(hex_of(&ours), hex_of(icmp));
}

fn any_advert() -> impl Strategy<Value = (Advert, IpAddr, IpAddr)> {
    (
        prop::bool::ANY,
        any::<u8>(),
        any::<u8>(),
        1u64..=4095,
        prop::collection::vec(any::<[u8; 16]>(), 1..20),
    )
        .prop_map(|(v6, vrid, priority, cs, raw)| {
            let (addresses, src, dst): (Vec<IpAddr>, IpAddr, IpAddr) = if v6 {
                (
                    raw.iter().map(|b| IpAddr::V6(Ipv6Addr::from(*b))).collect(),
                    ip("fe80::1"),
                    ip("ff02::12"),
                )
            } else {
                (
                    raw.iter()
                        .map(|b| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
                        .collect(),
                    ip("10.0.0.1"),
                    ip("224.0.0.18"),
                )
            };
            let adv = Advert {
                version: Version::V3,
                vrid,
                priority,
                interval: Duration::from_millis(cs * 10),
                addresses,
            };
            (adv, src, dst)
        })
}

proptest! {
    #[test]
    fn any_advert_round_trips((adv, src, dst) in any_advert()) {
        let bytes = adv.encode(src, dst);
        prop_assert_eq!(Advert::decode(&bytes, src, dst), Ok(adv));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_ipv4(&bytes);
        let _ = Advert::decode(&bytes, ip("10.0.0.1"), ip("224.0.0.18"));
        let _ = Advert::decode(&bytes, ip("fe80::1"), ip("ff02::12"));
        if let Ok((h, msg)) = parse_ipv4(&bytes) {
            let _ = Advert::decode(msg, h.src.into(), h.dst.into());
        }
    }

    #[test]
    fn a_flipped_bit_is_caught((adv, src, dst) in any_advert(), bit in 0usize..64) {
        let mut bytes = adv.encode(src, dst);
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // The Internet checksum catches every single-bit error.
        prop_assert!(Advert::decode(&bytes, src, dst).is_err());
    }
}
