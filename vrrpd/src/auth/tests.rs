use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::packet::{self, Advert};

const KEY1: &str = "hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEY2: &str = "hex:f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff";
const S: Duration = Duration::from_secs(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn keys(lines: &str) -> BTreeMap<u8, Key> {
    parse_keys(lines, "keys").expect("valid keys")
}

fn cfg(replay: AntiReplay, mode: AuthMode, active: i64) -> AuthHmac {
    AuthHmac {
        key_file: Some("keys".into()),
        key_credential: None,
        active_key: active,
        anti_replay: replay,
        time_window: (replay == AntiReplay::Time).then_some(Duration::from_secs(5)),
        mode,
    }
}

fn auth(replay: AntiReplay, mode: AuthMode) -> Auth {
    Auth::new(
        &cfg(replay, mode, 1),
        keys(&format!("1 {KEY1}\n2 {KEY2}\n")),
        S,
    )
    .expect("active key present")
}

/// A captured frame: its VRRP context, message, trailer and the whole
/// payload as sent.
struct Frame {
    ctx: Context,
    dst: IpAddr,
    payload: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    decode_hex(s.trim()).expect("hex")
}

fn frames(case: &str) -> Vec<Frame> {
    let path = format!(
        "{}/tests/vectors/keepalived-2.4.3-hmac/{case}.frames.hex",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f = unhex(l);
            let ethertype = u16::from_be_bytes([f[12], f[13]]);
            let ip = &f[14..];
            let (src, dst, payload): (IpAddr, IpAddr, Vec<u8>) = if ethertype == 0x0800 {
                let (h, msg) = packet::parse_ipv4(ip).expect("an IPv4 VRRP packet");
                (h.src.into(), h.dst.into(), msg.to_vec())
            } else {
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[8..24]);
                let src = Ipv6Addr::from(a);
                a.copy_from_slice(&ip[24..40]);
                let dst = Ipv6Addr::from(a);
                let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                (src.into(), dst.into(), ip[40..40 + len].to_vec())
            };
            let version = if payload[0] >> 4 == 2 {
                Version::V2
            } else {
                Version::V3
            };
            Frame {
                ctx: Context {
                    version,
                    vrid: payload[1],
                    src,
                },
                dst,
                payload,
            }
        })
        .collect()
}

const CASES: [(&str, AntiReplay); 5] = [
    ("v3_ipv4_multicast_key1_time", AntiReplay::Time),
    ("v2_ipv4_multicast_key1_time", AntiReplay::Time),
    ("v3_ipv6_multicast_key1_time", AntiReplay::Time),
    ("v3_ipv4_unicast_key1_time", AntiReplay::Time),
    ("v3_ipv4_multicast_key2_monotonic", AntiReplay::Monotonic),
];

fn seq_in(trailer: &[u8]) -> u64 {
    u64::from_be_bytes(trailer[4..12].try_into().unwrap())
}

#[test]
fn every_advert_keepalived_2_4_3_signed_verifies_with_its_key() {
    for (case, replay) in CASES {
        let fs = frames(case);
        assert_eq!(fs.len(), 7, "{case}");
        let mut rx = auth(replay, AuthMode::Enforce);
        let start = Instant::now();
        for (n, f) in fs.iter().enumerate() {
            let v6 = f.ctx.src.is_ipv6();
            let (body, trailer) = packet::split_trailer(&f.payload, v6);
            let trailer = trailer.unwrap_or_else(|| panic!("{case} #{}: no trailer", n + 1));
            let summed = if v6 { &f.payload[..] } else { body };
            let adv = Advert::decode(summed, f.ctx.src, f.dst)
                .unwrap_or_else(|d| panic!("{case} #{}: {d}", n + 1));
            assert_eq!((adv.vrid, adv.version), (53, f.ctx.version));
            // The receiver's clock: the sender's time, as at the capture.
            let wall = Duration::from_secs(u64::from(seq_secs(seq_in(trailer))));
            let now = start + Duration::from_secs(n as u64);
            assert_eq!(
                rx.verify(&f.ctx, body, Some(trailer), now, wall),
                Ok(()),
                "{case} #{}",
                n + 1
            );
        }
        // Any of them again is a replay.
        let (body, trailer) = packet::split_trailer(&fs[0].payload, fs[0].ctx.src.is_ipv6());
        let wall = Duration::from_secs(u64::from(seq_secs(seq_in(trailer.unwrap()))));
        assert_eq!(
            rx.verify(&fs[0].ctx, body, trailer, start + secs(7), wall),
            Err(Drop::AuthReplay),
            "{case}"
        );
    }
}

#[test]
fn signing_the_same_fields_gives_keepalived_2_4_3_s_bytes() {
    for (case, _) in CASES {
        for (n, f) in frames(case).iter().enumerate() {
            let v6 = f.ctx.src.is_ipv6();
            let (body, trailer) = packet::split_trailer(&f.payload, v6);
            let trailer = trailer.expect("trailer");
            let summed = if v6 { &f.payload[..] } else { body };
            let adv = Advert::decode(summed, f.ctx.src, f.dst).expect("decodes");
            let key_id = trailer[1];
            let ks = keys(&format!("1 {KEY1}\n2 {KEY2}\n"));
            let msg = adv.encode(f.ctx.src, f.dst);
            let ours = super::trailer(&ks[&key_id], key_id, seq_in(trailer), &f.ctx, &msg);
            let sent = packet::with_trailer(msg, &ours, f.ctx.src, f.dst);
            assert_eq!(sent, f.payload, "{case} #{}", n + 1);
        }
    }
}

#[test]
fn a_forged_or_altered_advert_is_dropped_by_reason() {
    let f = &frames("v3_ipv4_multicast_key1_time")[0];
    let (body, trailer) = packet::split_trailer(&f.payload, false);
    let trailer = trailer.unwrap().to_vec();
    let wall = Duration::from_secs(u64::from(seq_secs(seq_in(&trailer))));
    let now = Instant::now();
    let check = |body: &[u8], t: Option<&[u8]>, mode| {
        auth(AntiReplay::Time, mode).verify(&f.ctx, body, t, now, wall)
    };
    // The priority raised to 255: the MAC no longer matches.
    let mut forged = body.to_vec();
    forged[2] = 255;
    assert_eq!(
        check(&forged, Some(&trailer), AuthMode::Enforce),
        Err(Drop::AuthBadMac)
    );
    let mut t = trailer.clone();
    t[1] = 9;
    assert_eq!(
        check(body, Some(&t), AuthMode::Enforce),
        Err(Drop::AuthUnknownKey)
    );
    let mut t = trailer.clone();
    t[0] = 2;
    assert_eq!(
        check(body, Some(&t), AuthMode::Enforce),
        Err(Drop::AuthMalformed)
    );
    let mut t = trailer.clone();
    t[3] = 1;
    assert_eq!(
        check(body, Some(&t), AuthMode::Enforce),
        Err(Drop::AuthMalformed)
    );
    // Another sender: the source address is in the MAC.
    let other = Context {
        src: IpAddr::V4(Ipv4Addr::new(192, 168, 78, 9)),
        ..f.ctx
    };
    assert_eq!(
        auth(AntiReplay::Time, AuthMode::Enforce).verify(&other, body, Some(&trailer), now, wall),
        Err(Drop::AuthBadMac)
    );
    // No trailer: refused when enforcing, let through while migrating.
    assert_eq!(check(body, None, AuthMode::Enforce), Err(Drop::AuthMissing));
    assert_eq!(check(body, None, AuthMode::Permissive), Ok(()));
    assert_eq!(check(body, None, AuthMode::ReceiveOnly), Ok(()));
    // A bad trailer is dropped in every mode.
    assert_eq!(
        check(&forged, Some(&trailer), AuthMode::Permissive),
        Err(Drop::AuthBadMac)
    );
    assert_eq!(
        check(&forged, Some(&trailer), AuthMode::ReceiveOnly),
        Err(Drop::AuthBadMac)
    );
}

#[test]
fn a_first_advert_outside_the_window_is_stale_inside_it_is_taken() {
    let f = &frames("v3_ipv4_multicast_key1_time")[0];
    let (body, trailer) = packet::split_trailer(&f.payload, false);
    let sent_at = u64::from(seq_secs(seq_in(trailer.unwrap())));
    let now = Instant::now();
    for (skew, ok) in [(-6i64, false), (-5, true), (0, true), (5, true), (6, false)] {
        let wall = Duration::from_secs((sent_at as i64 + skew) as u64);
        let r = auth(AntiReplay::Time, AuthMode::Enforce).verify(&f.ctx, body, trailer, now, wall);
        assert_eq!(r.is_ok(), ok, "receiver clock {skew:+} s: {r:?}");
        if !ok {
            assert_eq!(r, Err(Drop::AuthStale));
        }
    }
    // Monotonic sequence numbers have no window: an hour off is taken.
    let wall = Duration::from_secs(sent_at + 3600);
    let mut mono = auth(AntiReplay::Monotonic, AuthMode::Enforce);
    assert_eq!(mono.verify(&f.ctx, body, trailer, now, wall), Ok(()));
}

/// A pair in memory: `tx` signs, `rx` verifies, each with its own clocks.
struct Pair {
    tx: Auth,
    rx: Auth,
    ctx: Context,
    msg: Vec<u8>,
}

impl Pair {
    fn new(replay: AntiReplay) -> Pair {
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let adv = Advert {
            version: Version::V3,
            vrid: 51,
            priority: 150,
            interval: S,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))],
        };
        Pair {
            tx: auth(replay, AuthMode::Enforce),
            rx: auth(replay, AuthMode::Enforce),
            ctx: Context {
                version: Version::V3,
                vrid: 51,
                src,
            },
            msg: adv.encode(src, IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18))),
        }
    }

    /// One advert sent at `now` with the sender's wall clock `tx_wall`,
    /// received with the receiver's `rx_wall`.
    fn advert(&mut self, now: Instant, tx_wall: Duration, rx_wall: Duration) -> Result<(), Drop> {
        let t = self
            .tx
            .sign(&self.ctx, &self.msg, now, tx_wall)
            .expect("signs");
        self.rx.verify(&self.ctx, &self.msg, Some(&t), now, rx_wall)
    }
}

const EPOCH: Duration = Duration::from_secs(1_796_152_324);

#[test]
fn the_senders_sequence_never_falls_when_its_clock_steps_back() {
    let mut a = auth(AntiReplay::Time, AuthMode::Enforce);
    let t0 = Instant::now();
    let mut last = 0;
    for n in 0..20u64 {
        // An hour back after 10 s: the wall clock says so, the adverts
        // do not.
        let wall = if n < 10 {
            EPOCH + secs(n)
        } else {
            EPOCH + secs(n) - Duration::from_secs(3600)
        };
        let seq = a.next_seq(t0 + secs(n), wall);
        assert!(seq_after(seq, last), "advert {n}: {seq:x} after {last:x}");
        assert_eq!(u64::from(seq_secs(seq)), EPOCH.as_secs() + n, "advert {n}");
        last = seq;
    }
    // Forward, it follows the wall clock (a clock put right by NTP).
    let seq = a.next_seq(t0 + secs(20), EPOCH + Duration::from_secs(7200));
    assert_eq!(u64::from(seq_secs(seq)), EPOCH.as_secs() + 7200);
}

#[test]
fn two_adverts_in_the_same_instant_still_rise() {
    let mut a = auth(AntiReplay::Time, AuthMode::Enforce);
    let t0 = Instant::now();
    let one = a.next_seq(t0, EPOCH);
    let two = a.next_seq(t0, EPOCH);
    assert_eq!(two, one + 1);
}

#[test]
fn a_clock_step_on_either_director_keeps_a_live_stream_accepted() {
    for step in [-3600i64, -10, 10, 3600] {
        let shifted =
            |n: u64| Duration::from_secs((EPOCH.as_secs() as i64 + n as i64 + step) as u64);
        let plain = |n: u64| EPOCH + secs(n);
        // The sender's clock steps after 5 adverts.
        let mut p = Pair::new(AntiReplay::Time);
        let t0 = Instant::now();
        for n in 0..30u64 {
            let tx = if n < 5 { plain(n) } else { shifted(n) };
            assert_eq!(
                p.advert(t0 + secs(n), tx, plain(n)),
                Ok(()),
                "sender {step:+} s, advert {n}"
            );
        }
        // The receiver's.
        let mut p = Pair::new(AntiReplay::Time);
        for n in 0..30u64 {
            let rx = if n < 5 { plain(n) } else { shifted(n) };
            assert_eq!(
                p.advert(t0 + secs(n), plain(n), rx),
                Ok(()),
                "receiver {step:+} s, advert {n}"
            );
        }
    }
}

#[test]
fn after_a_step_a_replay_is_still_refused() {
    let mut p = Pair::new(AntiReplay::Time);
    let t0 = Instant::now();
    let first = p.tx.sign(&p.ctx, &p.msg, t0, EPOCH).unwrap();
    assert_eq!(p.rx.verify(&p.ctx, &p.msg, Some(&first), t0, EPOCH), Ok(()));
    for n in 1..5u64 {
        assert_eq!(
            p.advert(t0 + secs(n), EPOCH + secs(n), EPOCH + secs(n)),
            Ok(())
        );
    }
    // The receiver's clock jumps back to when `first` was sent.
    assert_eq!(
        p.rx.verify(&p.ctx, &p.msg, Some(&first), t0 + secs(5), EPOCH),
        Err(Drop::AuthReplay)
    );
    // And long after the stream went quiet, the window refuses it.
    assert_eq!(
        p.rx.verify(
            &p.ctx,
            &p.msg,
            Some(&first),
            t0 + secs(600),
            EPOCH + secs(600)
        ),
        Err(Drop::AuthStale)
    );
}

#[test]
fn a_sender_whose_clock_was_wrong_and_is_put_right_is_heard_again() {
    let mut p = Pair::new(AntiReplay::Time);
    let t0 = Instant::now();
    // Heard while both clocks agreed...
    for n in 0..3u64 {
        assert_eq!(
            p.advert(t0 + secs(n), EPOCH + secs(n), EPOCH + secs(n)),
            Ok(())
        );
    }
    // ...then silent for a minute (it was backup), and back with a new
    // sender state whose clock is right and earlier than the mark would
    // allow only if the mark had not expired.
    let mut fresh = auth(AntiReplay::Time, AuthMode::Enforce);
    let t = fresh
        .sign(&p.ctx, &p.msg, t0 + secs(60), EPOCH + secs(60))
        .unwrap();
    assert_eq!(
        p.rx.verify(&p.ctx, &p.msg, Some(&t), t0 + secs(60), EPOCH + secs(60)),
        Ok(())
    );
}

#[test]
fn a_reload_with_a_new_key_keeps_the_sequence_rising() {
    let mut a = auth(AntiReplay::Time, AuthMode::Enforce);
    let t0 = Instant::now();
    let before = a.next_seq(t0, EPOCH);
    let rotated = Auth::new(
        &cfg(AntiReplay::Time, AuthMode::Enforce, 2),
        keys(&format!("1 {KEY1}\n2 {KEY2}\n")),
        S,
    )
    .unwrap();
    a.reconfigure(rotated);
    // The sender's clock went back meanwhile: the carried one did not.
    let after = a.next_seq(t0, EPOCH - Duration::from_secs(30));
    assert!(seq_after(after, before));
    assert_eq!(a.active, 2);
}

#[test]
fn a_flood_of_senders_with_good_macs_cannot_grow_the_marks_without_bound() {
    let mut rx = auth(AntiReplay::Monotonic, AuthMode::Enforce);
    let t0 = Instant::now();
    for n in 0..1000u32 {
        let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        rx.accept(src, 1, t0 + Duration::from_millis(u64::from(n)), EPOCH)
            .unwrap();
    }
    assert_eq!(rx.marks.len(), MARKS);
}

#[test]
fn a_key_file_is_refused_with_its_line_when_it_cannot_be_used() {
    let err = |text: &str| parse_keys(text, "k").unwrap_err().to_string();
    assert_eq!(err("# none\n\n"), "k: no keys in it");
    assert!(err(&format!("1 {KEY1}\n0 {KEY2}\n")).starts_with("k:2: key id \"0\""));
    assert!(err("1 hex:0011\n").starts_with("k:1: the key is 2 octets"));
    assert!(
        err("1 s3cret-but-not-hex-and-long-enough-to-pass-length\n")
            .starts_with("k:1: the key must be written")
    );
    assert!(err(&format!("1 {KEY1}\n1 {KEY2}\n")).starts_with("k:2: key id 1 is given twice"));
    assert!(err("1 hex:zz\n").starts_with("k:1: the key is not hex"));
    let ok = keys(&format!(
        "# rotation: 2 is next\n1 {KEY1}  # in use\n2 {KEY2}\n"
    ));
    assert_eq!(ok.keys().copied().collect::<Vec<_>>(), [1, 2]);
    // Printing a key never shows it.
    assert_eq!(format!("{:?}", ok[&1]), "Key(32 octets)");
}

#[test]
fn an_active_key_missing_from_the_file_is_refused() {
    let e = Auth::new(
        &cfg(AntiReplay::Time, AuthMode::Enforce, 3),
        keys(&format!("1 {KEY1}\n")),
        S,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "active_key 3 is not in the key file (it has 1)"
    );
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tandem-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vrrp.keys");
    std::fs::write(&path, format!("1 {KEY1}\n")).unwrap();
    let mut c = cfg(AntiReplay::Time, AuthMode::Enforce, 1);
    c.key_file = Some(path.clone());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load_keys(&c, None).unwrap_err().to_string();
    assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(load_keys(&c, None).map(|k| k.len()), Ok(1));
    // The same file as a systemd credential.
    c.key_file = None;
    c.key_credential = Some("vrrp.keys".into());
    assert_eq!(load_keys(&c, Some(&dir)).map(|k| k.len()), Ok(1));
    assert!(
        load_keys(&c, None)
            .unwrap_err()
            .to_string()
            .contains("LoadCredential=vrrp.keys")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
