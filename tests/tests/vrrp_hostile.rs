//! tandem-vrrpd when the network or the host misbehaves: a flood of
//! protocol 112 on the segment, an interface that vanishes in the middle
//! of a stop. The daemon keeps its schedule, counts what it drops, and
//! always finishes what it started.

use std::time::{Duration, Instant};

use tandem_model::api::VrrpState::*;
use tandem_tests::binary;
use tandem_tests::cluster::{Vrrpd, instance, net};

const T: Duration = Duration::from_secs(10);

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
    let out = net.lab.exec_ok(
        &net.client,
        &[
            binary("tandem-flood").to_str().unwrap(),
            "--interface",
            "eth0",
            "--source",
            "10.77.0.200",
            "--vrid",
            "51",
            "--seconds",
            &secs.to_string(),
            "--pps",
            "40000",
        ],
    );
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
