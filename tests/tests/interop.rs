//! A mixed pair: tandem-vrrpd next to Debian's keepalived, each as master
//! and as backup, VRRPv3 and VRRPv2, multicast and unicast, and IPv6 with
//! the RFC virtual MAC on both. The client reaches the VIP after every
//! transition.

use std::time::Duration;

use tandem_model::api::VrrpState::*;
use tandem_tests::cluster::{
    Keepalived, Net, Vrrpd, has_addr, instance, keepalived_instance, mac, neighbour, net,
    wait_reachable,
};
use tandem_tests::netns::wait_until;

const VIP: &str = "10.77.0.100";
const T: Duration = Duration::from_secs(15);

#[derive(Clone, Copy)]
struct Mode {
    version: u8,
    unicast: bool,
    /// VRRPv2 simple password (keepalived's auth_type PASS).
    pass: Option<&'static str>,
}

fn tandem_cfg(priority: u8, m: Mode) -> String {
    let mut extra = format!("version = {}\nadvert_interval = \"1s\"\n", m.version);
    if m.unicast {
        extra.push_str("unicast_src = \"10.77.0.1\"\nunicast_peers = [\"10.77.0.2\"]\n");
    }
    if let Some(p) = m.pass {
        extra.push_str(&format!("auth_pass = \"{p}\"\n"));
    }
    instance("web", 51, priority, &["10.77.0.100/24"], &extra)
}

fn keepalived_cfg(priority: u8, m: Mode) -> String {
    let mut extra = if m.unicast {
        "  unicast_src_ip 10.77.0.2\n  unicast_peer {\n    10.77.0.1\n  }\n"
    } else {
        ""
    }
    .to_string();
    if let Some(p) = m.pass {
        extra.push_str(&format!(
            "  authentication {{\n    auth_type PASS\n    auth_pass {p}\n  }}\n"
        ));
    }
    keepalived_instance(
        "web",
        51,
        priority,
        m.version,
        "1",
        &["10.77.0.100/24"],
        &extra,
    )
}

fn keepalived_holds(net: &Net) -> bool {
    has_addr(&net.lab, &net.directors[1], "eth0", VIP)
}

/// tandem master, keepalived backup; tandem dies; keepalived serves.
fn tandem_master_keepalived_backup(test: &str, m: Mode) {
    tandem_master_keepalived_backup_with(test, m, &tandem_cfg(150, m));
}

fn tandem_master_keepalived_backup_with(test: &str, m: Mode, ours: &str) {
    let Some(net) = net(test, 2) else { return };
    let mut ours = Vrrpd::start(&net.lab, &net.directors[0], ours);
    let mut theirs = Keepalived::start(&net.lab, &net.directors[1], &keepalived_cfg(100, m));
    ours.wait_state("web", Master, T);
    // keepalived hears us and stays backup.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !keepalived_holds(&net),
        "keepalived took the VIP next to a live master:\n{}",
        theirs.log()
    );
    assert_eq!(ours.state("web"), Master, "{}", ours.log());
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    ours.kill9();
    wait_until(T, || keepalived_holds(&net))
        .unwrap_or_else(|| panic!("keepalived did not take over:\n{}", theirs.log()));
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    // tandem comes back with the higher priority and preempts keepalived.
    ours.restart(&net.lab);
    ours.wait_state("web", Master, T);
    wait_until(T, || !keepalived_holds(&net))
        .unwrap_or_else(|| panic!("keepalived kept the VIP:\n{}", theirs.log()));
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    theirs.stop();
}

/// keepalived master, tandem backup; keepalived dies; tandem serves.
fn keepalived_master_tandem_backup(test: &str, m: Mode) {
    keepalived_master_tandem_backup_with(test, m, &tandem_cfg(100, m));
}

fn keepalived_master_tandem_backup_with(test: &str, m: Mode, ours: &str) {
    let Some(net) = net(test, 2) else { return };
    let mut theirs = Keepalived::start(&net.lab, &net.directors[1], &keepalived_cfg(150, m));
    wait_until(T, || keepalived_holds(&net))
        .unwrap_or_else(|| panic!("keepalived did not become master:\n{}", theirs.log()));
    let ours = Vrrpd::start(&net.lab, &net.directors[0], ours);
    ours.wait_state("web", Backup, T);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ours.state("web"), Backup, "{}", ours.log());
    let seen = ours.instance("web");
    let master = seen.master.expect("we hear keepalived");
    assert_eq!(
        (master.address.to_string(), master.priority),
        ("10.77.0.2".into(), 150)
    );
    assert!(seen.counters.drops.is_empty(), "{:?}", seen.counters.drops);
    assert!(
        seen.counters.mismatches.is_empty(),
        "{:?}",
        seen.counters.mismatches
    );
    theirs.kill9();
    ours.wait_state("web", Master, T);
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
}

const V3: Mode = Mode {
    version: 3,
    unicast: false,
    pass: None,
};
const V2: Mode = Mode {
    version: 2,
    unicast: false,
    pass: None,
};
const V3_UNICAST: Mode = Mode {
    version: 3,
    unicast: true,
    pass: None,
};
const V2_UNICAST: Mode = Mode {
    version: 2,
    unicast: true,
    pass: None,
};

#[test]
fn keepalived_backs_up_tandem_over_vrrpv3() {
    tandem_master_keepalived_backup("ka_v3_backup", V3);
}

#[test]
fn tandem_backs_up_keepalived_over_vrrpv3() {
    keepalived_master_tandem_backup("ka_v3_master", V3);
}

#[test]
fn keepalived_backs_up_tandem_over_vrrpv2() {
    tandem_master_keepalived_backup("ka_v2_backup", V2);
}

#[test]
fn tandem_backs_up_keepalived_over_vrrpv2() {
    keepalived_master_tandem_backup("ka_v2_master", V2);
}

const V2_PASS: Mode = Mode {
    version: 2,
    unicast: false,
    pass: Some("s3cret"),
};

#[test]
fn keepalived_backs_up_tandem_over_vrrpv2_with_a_password() {
    tandem_master_keepalived_backup("ka_v2pass_backup", V2_PASS);
}

#[test]
fn tandem_backs_up_keepalived_over_vrrpv2_with_a_password() {
    keepalived_master_tandem_backup("ka_v2pass_master", V2_PASS);
}

/// keepalived's own file, as `tandem import keepalived` converts it (the
/// harness names the node, so the imported `[node]` goes).
fn imported(keepalived_conf: &str) -> String {
    let files =
        tandem_import::Memory::default().with("/etc/keepalived/keepalived.conf", keepalived_conf);
    let opts = tandem_import::Options {
        config_id: "lb".into(),
        instance: String::new(),
    };
    let i = tandem_import::keepalived(
        &files,
        std::path::Path::new("/etc/keepalived/keepalived.conf"),
        &opts,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let toml = i.toml.replace("[node]\nname = \"web\"\n", "");
    assert!(toml.contains("auth_pass = \"s3cret\""), "{toml}");
    toml
}

#[test]
fn tandem_with_keepalived_s_file_imported_backs_it_up_and_is_backed_up() {
    keepalived_master_tandem_backup_with(
        "ka_imported_master",
        V2_PASS,
        &imported(&keepalived_cfg(100, V2_PASS)),
    );
    tandem_master_keepalived_backup_with(
        "ka_imported_backup",
        V2_PASS,
        &imported(&keepalived_cfg(150, V2_PASS)),
    );
}

/// Another password on each side: neither accepts the other's adverts, so
/// both are master (what RFC 2338 7.1 asks; the password keeps two routers
/// apart), and both count what they drop.
#[test]
fn a_wrong_password_is_dropped_and_counted_on_both_sides() {
    let Some(net) = net("ka_v2pass_wrong", 2) else {
        return;
    };
    let theirs = Keepalived::start(&net.lab, &net.directors[1], &keepalived_cfg(150, V2_PASS));
    wait_until(T, || keepalived_holds(&net))
        .unwrap_or_else(|| panic!("keepalived did not become master:\n{}", theirs.log()));
    let wrong = Mode {
        pass: Some("guess"),
        ..V2_PASS
    };
    let ours = Vrrpd::start(&net.lab, &net.directors[0], &tandem_cfg(100, wrong));
    ours.wait_state("web", Master, T);
    let dropped = wait_until(T, || {
        ours.instance("web")
            .counters
            .drops
            .get("password")
            .copied()
            .unwrap_or(0)
            >= 2
    });
    assert!(
        dropped.is_some(),
        "{:?}",
        ours.instance("web").counters.drops
    );
    assert!(ours.instance("web").master.is_some_and(|m| m.is_self));
    let refused = wait_until(T, || theirs.log().contains("received an invalid passwd"));
    assert!(
        refused.is_some(),
        "keepalived did not say it dropped our adverts:\n{}",
        theirs.log()
    );
    assert!(
        keepalived_holds(&net),
        "keepalived stays master: it ignores us"
    );
}

#[test]
fn keepalived_backs_up_tandem_over_unicast() {
    tandem_master_keepalived_backup("ka_uni_backup", V3_UNICAST);
}

#[test]
fn tandem_backs_up_keepalived_over_unicast() {
    keepalived_master_tandem_backup("ka_uni_master", V3_UNICAST);
}

#[test]
fn keepalived_and_tandem_pair_over_vrrpv2_unicast() {
    keepalived_master_tandem_backup("ka_v2_uni", V2_UNICAST);
}

// IPv6 with the RFC virtual MAC on both sides: each director's macvlan
// has 00:00:5e:00:02:34, and the adverts of either arrive on the other's
// macvlan, not on eth0.
const VIP6: &str = "fd00:77::100";
const VMAC6: &str = "00:00:5e:00:02:34";

fn tandem_vmac6(priority: u8) -> String {
    instance(
        "web6",
        52,
        priority,
        &["fd00:77::100/64"],
        "advert_interval = \"1s\"\nuse_vmac = true\n",
    )
}

fn keepalived_vmac6(priority: u8) -> String {
    keepalived_instance(
        "web6",
        52,
        priority,
        3,
        "1",
        &["fd00:77::100/64"],
        "  use_vmac\n",
    )
}

fn keepalived_holds6(net: &Net) -> bool {
    has_addr(&net.lab, &net.directors[1], "vrrp.52", VIP6)
}

/// The client reaches the VIP, and through the virtual MAC.
#[track_caller]
fn client_reaches_vip6_at_the_virtual_mac(net: &Net) {
    assert!(wait_reachable(&net.lab, &net.client, VIP6, T).is_some());
    assert_eq!(
        neighbour(&net.lab, &net.client, VIP6).as_deref(),
        Some(VMAC6)
    );
}

#[test]
fn keepalived_backs_up_tandem_with_an_ipv6_virtual_mac() {
    let Some(net) = net("ka_vmac6_backup", 2) else {
        return;
    };
    let mut ours = Vrrpd::start(&net.lab, &net.directors[0], &tandem_vmac6(150));
    let mut theirs = Keepalived::start(&net.lab, &net.directors[1], &keepalived_vmac6(100));
    ours.wait_state("web6", Master, T);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !keepalived_holds6(&net),
        "keepalived took the VIP next to a live master:\n{}",
        theirs.log()
    );
    assert_eq!(ours.state("web6"), Master, "{}", ours.log());
    client_reaches_vip6_at_the_virtual_mac(&net);
    ours.kill9();
    wait_until(T, || keepalived_holds6(&net))
        .unwrap_or_else(|| panic!("keepalived did not take over:\n{}", theirs.log()));
    client_reaches_vip6_at_the_virtual_mac(&net);
    // tandem comes back over the macvlan the killed daemon left, hears
    // keepalived there, and preempts it with the higher priority.
    ours.restart(&net.lab);
    ours.wait_state("web6", Master, T);
    wait_until(T, || !keepalived_holds6(&net))
        .unwrap_or_else(|| panic!("keepalived kept the VIP:\n{}", theirs.log()));
    client_reaches_vip6_at_the_virtual_mac(&net);
    theirs.stop();
}

#[test]
fn tandem_backs_up_keepalived_with_an_ipv6_virtual_mac() {
    let Some(net) = net("ka_vmac6_master", 2) else {
        return;
    };
    let mut theirs = Keepalived::start(&net.lab, &net.directors[1], &keepalived_vmac6(150));
    wait_until(T, || keepalived_holds6(&net))
        .unwrap_or_else(|| panic!("keepalived did not become master:\n{}", theirs.log()));
    let ours = Vrrpd::start(&net.lab, &net.directors[0], &tandem_vmac6(100));
    ours.wait_state("web6", Backup, T);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ours.state("web6"), Backup, "{}", ours.log());
    let seen = ours.instance("web6");
    let master = seen.master.expect("we hear keepalived");
    assert!(
        master.address.to_string().starts_with("fe80::") && master.priority == 150,
        "{master:?}"
    );
    assert!(seen.counters.drops.is_empty(), "{:?}", seen.counters.drops);
    assert!(
        seen.counters.mismatches.is_empty(),
        "{:?}",
        seen.counters.mismatches
    );
    client_reaches_vip6_at_the_virtual_mac(&net);
    theirs.kill9();
    ours.wait_state("web6", Master, T);
    client_reaches_vip6_at_the_virtual_mac(&net);
}

/// `ip monitor address` on `host` while `f` runs: the lines where an
/// address was deleted.
fn deletions_during(net: &Net, host: usize, f: impl FnOnce()) -> Vec<String> {
    let mon = net.lab.spawn(
        &net.directors[host],
        "monitor",
        &["ip", "-o", "monitor", "address"],
    );
    // The monitor subscribes before anything below can change.
    std::thread::sleep(Duration::from_millis(300));
    f();
    std::thread::sleep(Duration::from_millis(300));
    mon.signal(libc::SIGTERM);
    mon.output()
        .lines()
        .filter(|l| l.starts_with("Deleted") && l.contains(VIP))
        .map(str::to_string)
        .collect()
}

#[test]
fn tandem_started_where_keepalived_was_killed_keeps_the_vip_through_its_takeover() {
    let Some(net) = net("adopt_keepalived", 2) else {
        return;
    };
    let m = Mode {
        version: 2,
        unicast: false,
        pass: Some("tandem1"),
    };
    let mut theirs = Keepalived::start(&net.lab, &net.directors[0], &keepalived_cfg(150, m));
    wait_until(T, || has_addr(&net.lab, &net.directors[0], "eth0", VIP))
        .unwrap_or_else(|| panic!("keepalived did not become master:\n{}", theirs.log()));
    // keepalived dies without a word: the VIP stays on the interface.
    theirs.kill9();
    assert!(has_addr(&net.lab, &net.directors[0], "eth0", VIP));
    let mut ours = None;
    let deleted = deletions_during(&net, 0, || {
        let v = Vrrpd::start(&net.lab, &net.directors[0], &tandem_cfg(150, m));
        v.wait_state("web", Master, T);
        ours = Some(v);
    });
    let ours = ours.unwrap();
    assert!(
        deleted.is_empty(),
        "the VIP left the interface before the takeover: {deleted:?}\n{}",
        ours.log()
    );
    assert!(
        ours.log()
            .contains("10.77.0.100/24 on eth0 is on the interface already"),
        "{}",
        ours.log()
    );
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
}

#[test]
fn tandem_started_with_a_leftover_vip_gives_it_up_to_the_keepalived_master_it_hears() {
    let Some(net) = net("adopt_yield", 2) else {
        return;
    };
    let m = Mode {
        version: 2,
        unicast: false,
        pass: Some("tandem1"),
    };
    let theirs = Keepalived::start(&net.lab, &net.directors[1], &keepalived_cfg(150, m));
    wait_until(T, || keepalived_holds(&net))
        .unwrap_or_else(|| panic!("keepalived did not become master:\n{}", theirs.log()));
    // What a killed run left on lb1.
    net.lab.exec_ok(
        &net.directors[0],
        &["ip", "addr", "add", "10.77.0.100/24", "dev", "eth0"],
    );
    let ours = Vrrpd::start(&net.lab, &net.directors[0], &tandem_cfg(100, m));
    // keepalived advertises every second: the first advert heard takes
    // the VIP off lb1.
    let gone = wait_until(Duration::from_secs(4), || {
        !has_addr(&net.lab, &net.directors[0], "eth0", VIP)
    });
    assert!(gone.is_some(), "lb1 kept the VIP:\n{}", ours.log());
    assert_eq!(ours.state("web"), Backup);
    assert!(keepalived_holds(&net));
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    assert_eq!(
        neighbour(&net.lab, &net.client, VIP),
        Some(mac(&net.lab, &net.directors[1], "eth0")),
        "the client reaches the VIP at keepalived's director"
    );
}
