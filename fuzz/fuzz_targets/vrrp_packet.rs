//! Whatever arrives on a VRRP socket: an IPv4 datagram from its header, or
//! an IPv6 payload. Parsing refuses with a reason, never panics; what it
//! accepts encodes back to what it decoded.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use vrrpd::packet::{Advert, V2Auth, parse_ipv4};

fn check(msg: &[u8], src: IpAddr, dst: IpAddr) {
    for auth in [V2Auth::None, V2Auth::password("s3cret")] {
        if let Ok(adv) = Advert::decode_authenticated(msg, src, dst, &auth) {
            let again = adv.encode_authenticated(src, dst, &auth);
            assert_eq!(
                Advert::decode_authenticated(&again, src, dst, &auth),
                Ok(adv),
                "an accepted advert must survive its own encoding"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok((h, msg)) = parse_ipv4(data) {
        check(msg, h.src.into(), h.dst.into());
    }
    let (src, dst): (IpAddr, IpAddr) = ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap());
    check(data, src, dst);
});
