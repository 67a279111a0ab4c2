//! Whatever arrives on a VRRP socket: an IPv4 datagram from its header, or
//! an IPv6 payload. Parsing refuses with a reason, never panics; what it
//! accepts encodes back to what it decoded. With `auth_hmac`, the trailer
//! split and the verifier take anything without a panic, and an advert
//! signed by one director verifies at the other.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

use tandem_model::config::{AntiReplay, AuthHmac, AuthMode};
use vrrpd::auth::{Auth, Context, parse_keys};
use vrrpd::packet::{Advert, V2Auth, Version, parse_ipv4, split_trailer, with_trailer};

fn auth() -> Auth {
    let cfg = AuthHmac {
        key_file: None,
        key_credential: None,
        active_key: 1,
        anti_replay: AntiReplay::Monotonic,
        time_window: None,
        mode: AuthMode::Enforce,
    };
    let keys = parse_keys(
        "1 hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "k",
    )
    .unwrap();
    Auth::new(&cfg, keys, Duration::from_secs(1)).unwrap()
}

fn check_hmac(msg: &[u8], src: IpAddr, dst: IpAddr) {
    let now = Instant::now();
    let wall = Duration::from_secs(1_796_152_324);
    let (body, trailer) = split_trailer(msg, src.is_ipv6());
    let version = if msg.first().is_some_and(|b| b >> 4 == 2) {
        Version::V2
    } else {
        Version::V3
    };
    let ctx = Context {
        version,
        vrid: msg.get(1).copied().unwrap_or(0),
        src,
    };
    let _ = auth().verify(&ctx, body, trailer, now, wall);
    if let Ok(adv) = Advert::decode(body, src, dst) {
        let plain = adv.encode(src, dst);
        let ctx = Context {
            version: adv.version,
            vrid: adv.vrid,
            src,
        };
        let t = auth().sign(&ctx, &plain, now, wall).expect("enforce signs");
        let sent = with_trailer(plain, &t, src, dst);
        let (b, t) = split_trailer(&sent, src.is_ipv6());
        assert_eq!(
            auth().verify(&ctx, b, t, now, wall),
            Ok(()),
            "an advert we sign verifies"
        );
    }
}

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
        check_hmac(msg, h.src.into(), h.dst.into());
    }
    let (src, dst): (IpAddr, IpAddr) = ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap());
    check(data, src, dst);
    check_hmac(data, src, dst);
});
