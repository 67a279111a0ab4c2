//! A hostile host on the VRRP segment, for tests: sends IP protocol 112 to
//! 224.0.0.18 out of one interface as fast as it may, for a bounded time,
//! and prints how many packets it sent.
//!
//! The mix, cycled: well-formed VRRPv3 adverts for VRIDs other than
//! `--vrid` (what a crowded segment or a misconfigured router sends),
//! random bytes of random length (garbage), and every eighth packet an
//! advert for `--vrid` with a wrong checksum, which no socket filter can
//! tell from a real one: it reaches the daemon and must be counted.
//!
//! With `--forge N`, instead: N adverts for `--vrid` at priority 255 with
//! a correct checksum, what would take the VIPs of an unauthenticated
//! pair, every other one carrying an authentication trailer with a MAC
//! made up (an attacker without the key), ten a second.
//!
//! Usage: tandem-flood --interface eth0 --source 10.77.0.200 --vrid 51
//!        --seconds 8 [--pps 40000]
//!        tandem-flood --interface eth0 --source 10.77.0.200 --vrid 51 --forge 20

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use vrrpd::packet::{Advert, Version};

fn main() {
    let mut ifname = String::from("eth0");
    let mut source: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    let mut vrid: u8 = 51;
    let mut seconds: f64 = 5.0;
    let mut pps: Option<u64> = None;
    let mut forge: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().expect("a value");
        match a.as_str() {
            "--interface" => ifname = v(),
            "--source" => source = v().parse().expect("an IPv4 address"),
            "--vrid" => vrid = v().parse().expect("a VRID"),
            "--seconds" => seconds = v().parse().expect("seconds"),
            "--pps" => pps = Some(v().parse().expect("packets per second")),
            "--forge" => forge = Some(v().parse().expect("a count")),
            other => panic!("unknown argument {other}"),
        }
    }
    // Bounded by construction: at most a minute, whatever is asked.
    let seconds = seconds.clamp(0.0, 60.0);

    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).expect("raw socket");
    s.bind_device(Some(ifname.as_bytes()))
        .expect("bind to the interface");
    s.set_multicast_ttl_v4(255).expect("TTL 255");
    s.set_multicast_loop_v4(false).expect("no loop");
    s.set_multicast_if_v4(&source).expect("multicast interface");
    let group = Ipv4Addr::new(224, 0, 0, 18);
    let to = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(group, 0)));

    // A small xorshift: reproducible, no dependency.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let src = IpAddr::V4(source);
    let dst = IpAddr::V4(group);
    if let Some(n) = forge.map(|n| n.min(600)) {
        for i in 0..n {
            let mut m = Advert {
                version: Version::V3,
                vrid,
                priority: 255,
                interval: Duration::from_millis(100),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100))],
            }
            .encode(src, dst);
            if i % 2 == 1 {
                // ext_type 1, key id 1, reserved, a sequence of now-ish,
                // and 16 octets of made-up MAC.
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                m.extend_from_slice(&[1, 1, 0, 0]);
                m.extend_from_slice(&((secs << 32) | i).to_be_bytes());
                m.extend((0..16).map(|_| rnd() as u8));
            }
            let ok = s.send_to(&m, &to).is_ok();
            println!("forged {} {}", i + 1, if ok { "sent" } else { "failed" });
            std::thread::sleep(Duration::from_millis(100));
        }
        return;
    }
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    while Instant::now() < until {
        let kind = sent % 8;
        let msg = match kind {
            7 => {
                let mut m = Advert {
                    version: Version::V3,
                    vrid,
                    priority: 254,
                    interval: Duration::from_millis(100),
                    addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100))],
                }
                .encode(src, dst);
                m[6] ^= 0x5a;
                m
            }
            0 | 2 | 4 => {
                let len = (rnd() % 64) as usize;
                let mut m: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
                // Never our VRID by chance: garbage the filter can drop.
                if m.get(1) == Some(&vrid) {
                    m[1] = vrid.wrapping_add(1);
                }
                m
            }
            _ => {
                let other = loop {
                    let v = (rnd() % 255 + 1) as u8;
                    if v != vrid {
                        break v;
                    }
                };
                Advert {
                    version: Version::V3,
                    vrid: other,
                    priority: (rnd() % 254 + 1) as u8,
                    interval: Duration::from_millis(100),
                    addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 99, other, 1))],
                }
                .encode(src, dst)
            }
        };
        if s.send_to(&msg, &to).is_err() {
            errors += 1;
        }
        sent += 1;
        if let Some(pps) = pps {
            let due = started + Duration::from_secs_f64(sent as f64 / pps as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "sent {sent} packets in {took:.2} s ({:.0}/s), {errors} send errors",
        sent as f64 / took
    );
}
