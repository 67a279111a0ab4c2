//! tandem-vrrpd when the network or the host misbehaves: a flood of
//! protocol 112 on the segment, an interface that vanishes in the middle
//! of a stop. The daemon keeps its schedule, counts what it drops, and
//! always finishes what it started.

use std::time::{Duration, Instant};

use tandem_model::api::VrrpState::*;
use tandem_tests::binary;
use tandem_tests::cluster::{Net, Vrrpd, instance, net};

const T: Duration = Duration::from_secs(10);

/// tandem-flood on the client, the third host of the segment, for VRID 51.
fn hostile_host(net: &Net, args: &[&str]) -> String {
    let bin = binary("tandem-flood");
    let mut argv = vec![
        bin.to_str().unwrap(),
        "--interface",
        "eth0",
        "--source",
        "10.77.0.200",
        "--vrid",
        "51",
    ];
    argv.extend_from_slice(args);
    net.lab.exec_ok(&net.client, &argv)
}

#[test]
fn a_protocol_112_flood_neither_silences_the_master_nor_fools_the_backup() {
    let Some(net) = net("flood", 2) else { return };
    let web = |prio| {
        instance(
            "web",
            51,
            prio,
            &["10.77.0.100/24"],
            "advert_interval = \"100ms\"",
        )
    };
    let lb1 = Vrrpd::start(&net.lab, &net.directors[0], &web(150));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web(100));
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);
    // Settled: the backup has heard the master for a while.
    std::thread::sleep(Duration::from_secs(1));
    let before1 = lb1.instance("web");
    let before2 = lb2.instance("web");

    let secs = 8.0;
    let started = Instant::now();
    let out = hostile_host(&net, &["--seconds", &secs.to_string(), "--pps", "40000"]);
    let flooded = started.elapsed();
    eprintln!("flood: {out}");
    let sent: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"));
    assert!(
        sent > 100_000,
        "the flood was too thin to prove anything: {out}"
    );

    let after1 = lb1.instance("web");
    let after2 = lb2.instance("web");
    // A failure names the flood and both daemons' counters: under load the
    // question is always which side fell behind.
    let seen = format!(
        "flood: {out}\nlb1 before {:?}\nlb1 after {:?}\nlb2 before {:?}\nlb2 after {:?}",
        before1.counters, after1.counters, before2.counters, after2.counters
    );
    assert_eq!(after1.state, Master, "{seen}\n{}", lb1.log());
    assert_eq!(
        after2.counters.became_master,
        before2.counters.became_master,
        "the backup took over during the flood: the master's adverts stopped reaching it\n{seen}\n{}",
        lb2.log()
    );
    // 10 adverts a second were due; allow a loaded machine one in five late.
    let due = (flooded.as_secs_f64() * 10.0) as u64;
    let sent_adverts = after1.counters.adverts_sent - before1.counters.adverts_sent;
    assert!(
        sent_adverts * 5 >= due * 4,
        "the master sent {sent_adverts} of {due} adverts during the flood\n{seen}"
    );
    // The forged adverts for VRID 51 pass any filter: they are counted.
    let bad = |s: &tandem_model::api::InstanceStatus| s.counters.drops.get("checksum").copied();
    assert!(
        bad(&after2).unwrap_or(0) > bad(&before2).unwrap_or(0),
        "no forged advert was counted\n{seen}"
    );
    // Other VRIDs and garbage never reach the daemon: the kernel's socket
    // filter drops them, so next to nothing is left to count.
    let unclaimed: u64 = lb2.status().unclaimed_drops.values().sum();
    assert!(
        unclaimed < sent / 100,
        "{unclaimed} of {sent} flood packets reached user space"
    );
}

#[test]
fn a_stop_ends_when_the_interface_vanishes_during_the_handover() {
    let Some(net) = net("stopgone", 1) else {
        return;
    };
    let lb1 = &net.directors[0];
    let mut v = Vrrpd::start(
        &net.lab,
        lb1,
        &instance(
            "web",
            51,
            150,
            &["10.77.0.100/24"],
            "advert_interval = \"1s\"",
        ),
    );
    v.wait_state("web", Master, T);
    // Alone, a handover waits up to 4 advert intervals for a taker; the
    // interface goes away in the middle of that wait.
    v.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    net.lab.exec_ok(lb1, &["ip", "link", "del", "eth0"]);
    let gone = Instant::now();
    let exited = v.wait_exit(Duration::from_secs(8));
    assert!(
        exited.is_some(),
        "vrrpd still runs {:?} after its interface went away during a stop\n{}",
        gone.elapsed(),
        v.log()
    );
    assert!(
        v.log().contains("the handover ended by a fault"),
        "{}",
        v.log()
    );
}

/// Forged priority-255 adverts from a third host, without the key: what
/// takes the VIPs of an unauthenticated pair (checked first, so the
/// forgery is known to work) moves nothing once adverts are
/// authenticated, and each is counted by why it was dropped.
#[test]
fn a_forged_priority_255_advert_takes_nothing_from_an_authenticated_pair() {
    let Some(net) = net("forge", 2) else { return };
    let keys = net.lab.dir().join("vrrp.keys");
    std::fs::write(
        &keys,
        "# rotation: 2 is the next key\n\
         1 hex:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\
         2 hex:f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let web = |prio, auth: bool| {
        let mut extra = String::from("advert_interval = \"100ms\"\n");
        if auth {
            extra.push_str(&format!(
                "[vrrp_instance.auth_hmac]\nkey_file = \"{}\"\nactive_key = 1\n",
                keys.display()
            ));
        }
        instance("web", 51, prio, &["10.77.0.100/24"], &extra)
    };
    let forge = || hostile_host(&net, &["--forge", "20"]);

    // Unauthenticated: the forgery makes the master step down.
    let mut lb1 = Vrrpd::start(&net.lab, &net.directors[0], &web(150, false));
    let mut lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web(100, false));
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);
    let before = lb1.instance("web").counters.transitions;
    forge();
    assert!(
        lb1.instance("web").counters.transitions > before,
        "the forged adverts did not move an unauthenticated master: the test proves nothing\n{}",
        lb1.log()
    );
    lb1.stop();
    lb2.stop();

    // Authenticated: nothing moves.
    let lb1 = Vrrpd::start(&net.lab, &net.directors[0], &web(150, true));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web(100, true));
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);
    std::thread::sleep(Duration::from_secs(1));
    let (b1, b2) = (lb1.instance("web"), lb2.instance("web"));
    assert!(
        b2.counters.adverts_received >= 5,
        "the backup hears the master's signed adverts: {:?}",
        b2.counters
    );
    let out = forge();
    let (a1, a2) = (lb1.instance("web"), lb2.instance("web"));
    assert_eq!(a1.state, Master, "{out}\n{}", lb1.log());
    assert_eq!(
        a1.counters.transitions,
        b1.counters.transitions,
        "{}",
        lb1.log()
    );
    assert_eq!(
        a2.counters.transitions,
        b2.counters.transitions,
        "{}",
        lb2.log()
    );
    // Ten without a trailer, ten with a made-up MAC, on both directors;
    // and not one of the real adverts dropped.
    for (who, s) in [("lb1", &a1), ("lb2", &a2)] {
        let d = |k: &str| s.counters.drops.get(k).copied().unwrap_or(0);
        assert_eq!(
            (d("auth_missing"), d("auth_bad_mac")),
            (10, 10),
            "{who}: {:?}",
            s.counters.drops
        );
    }
    assert!(
        a2.counters.adverts_received >= b2.counters.adverts_received + 15,
        "the master's adverts kept being accepted during the forgery: {:?} then {:?}",
        b2.counters,
        a2.counters
    );
}

/// The IPv6 path signs and sums differently (the checksum covers the
/// trailer): a pair over IPv6 with monotonic sequence numbers hears each
/// other, drops nothing, and fails over when the master stops.
#[test]
fn an_authenticated_ipv6_pair_hears_each_other_and_fails_over() {
    let Some(net) = net("authv6", 2) else { return };
    let keys = net.lab.dir().join("vrrp.keys");
    std::fs::write(
        &keys,
        "7 hex:f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let web = |prio| {
        instance(
            "web6",
            52,
            prio,
            &["fd00:77::100/64"],
            &format!(
                "advert_interval = \"100ms\"\n[vrrp_instance.auth_hmac]\nkey_file = \"{}\"\nactive_key = 7\nanti_replay = \"monotonic\"\n",
                keys.display()
            ),
        )
    };
    let mut lb1 = Vrrpd::start(&net.lab, &net.directors[0], &web(150));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web(100));
    lb1.wait_state("web6", Master, T);
    lb2.wait_state("web6", Backup, T);
    std::thread::sleep(Duration::from_secs(1));
    let s = lb2.instance("web6");
    assert!(s.counters.adverts_received >= 5, "{:?}", s.counters);
    assert!(
        s.counters.drops.keys().all(|k| !k.starts_with("auth")),
        "the master's own adverts were refused: {:?}",
        s.counters.drops
    );
    lb1.stop();
    lb2.wait_state("web6", Master, T);
}
