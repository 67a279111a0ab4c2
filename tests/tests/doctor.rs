//! `tandem doctor` against hosts set up wrong in network namespaces: each
//! finding seen, fixed with the command it prints, and gone.

use std::time::Duration;

use tandem_model::api::VrrpState;
use tandem_tests::binary;
use tandem_tests::cluster::{Vrrpd, instance, net};
use tandem_tests::netns::{Host, Lab};

/// `tandem doctor --json` in `host`, over the sockets beside `config`:
/// its exit status and findings.
fn doctor(lab: &Lab, host: &Host, config: &std::path::Path) -> (i32, Vec<serde_json::Value>) {
    let bin = binary("tandem");
    let dir = config.parent().unwrap();
    let out = lab.exec(
        host,
        &[
            bin.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--socket-dir",
            dir.to_str().unwrap(),
            "doctor",
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "tandem doctor: {e}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let code = out.status.code().unwrap_or(-1);
    assert_eq!(
        v["exit"].as_i64(),
        Some(i64::from(code)),
        "the exit status is the one it reports"
    );
    (code, v["findings"].as_array().cloned().unwrap_or_default())
}

/// The command of a fix printed as `on HOST: COMMAND   # why`, which
/// must name `host`.
fn on_host<'a>(host: &str, fix: &'a serde_json::Value) -> &'a str {
    let fix = fix.as_str().unwrap();
    let command = fix
        .strip_prefix(&format!("on {host}: ") as &str)
        .unwrap_or_else(|| panic!("{fix} names {host}"));
    command.split("   #").next().unwrap()
}

/// Runs a printed fix in `host`, as an operator pastes it.
fn run_fix(lab: &Lab, host: &Host, command: &str) {
    let out = lab.exec(host, &["sh", "-c", command]);
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A NAT service with its VIP on the clients' side (192.0.2.0/24) and one
/// real server on the lab's segment.
const NAT: &str = "[node]\nname = \"lb1\"\n\n[[virtual_server]]\nname = \"web\"\naddress = \"192.0.2.10:80\"\nforwarding = \"nat\"\n\n[[virtual_server.real_server]]\naddress = \"10.77.0.200\"\n";

#[test]
fn nat_without_forwarding_is_found_fixed_by_the_printed_sysctl_and_gone() {
    let Some(net) = net("doctor-nat", 1) else {
        return;
    };
    let lb1 = &net.directors[0];
    let config = net.lab.dir().join("tandem.toml");
    std::fs::write(&config, NAT).unwrap();
    // The real server's gateway is lb1, as NAT wants it.
    run_fix(
        &net.lab,
        &net.client,
        "ip route replace default via 10.77.0.1",
    );
    run_fix(&net.lab, lb1, "sysctl -qw net.ipv4.ip_forward=0");
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!(code, 2, "{found:#?}");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f["id"], "nat-forwarding");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["seen"], "net.ipv4.ip_forward = 0");
    assert!(f["what"].as_str().unwrap().contains("web"), "{f}");
    // The first command fixes the running host (the second makes it
    // last across a reboot: not on the machine the test runs on).
    run_fix(&net.lab, lb1, f["fix"][0].as_str().unwrap());
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
}

#[test]
fn a_firewall_dropping_vrrp_is_found_and_its_printed_fix_ends_two_masters() {
    let Some(net) = net("doctor-vrrp", 2) else {
        return;
    };
    let (lb1, lb2) = (&net.directors[0], &net.directors[1]);
    let adverts = "advert_interval = \"200ms\"";
    let v1 = Vrrpd::start(
        &net.lab,
        lb1,
        &instance("web", 51, 150, &["10.77.0.100/24"], adverts),
    );
    let v2 = Vrrpd::start(
        &net.lab,
        lb2,
        &instance("web", 51, 100, &["10.77.0.100/24"], adverts),
    );
    v1.wait_state("web", VrrpState::Master, Duration::from_secs(15));
    v2.wait_state("web", VrrpState::Backup, Duration::from_secs(15));
    let (code, found) = doctor(&net.lab, lb2, &v2.config);
    assert_eq!((code, found.len()), (0, 0), "a healthy backup: {found:#?}");

    // What an over-eager firewall does: protocol 112 dropped both ways.
    net.lab.drop_protocol(lb2, 112);
    v2.wait_state("web", VrrpState::Master, Duration::from_secs(15));
    assert_eq!(v1.state("web"), VrrpState::Master, "two masters");
    let (code, found) = doctor(&net.lab, lb2, &v2.config);
    assert_eq!(code, 2, "{found:#?}");
    let rules: Vec<&serde_json::Value> = found
        .iter()
        .filter(|f| f["id"] == "nft-drops-vrrp")
        .collect();
    assert_eq!(
        rules.len(),
        2,
        "the input rule and the output rule: {found:#?}"
    );
    // What the rule breaks, seen too: lb1, master as well, answers ARP
    // for the VIP lb2 holds.
    let lb1_mac = tandem_tests::cluster::mac(&net.lab, lb1, "eth0");
    let elsewhere: Vec<&serde_json::Value> = found
        .iter()
        .filter(|f| f["id"] == "vip-answered-elsewhere")
        .collect();
    assert_eq!(elsewhere.len(), 1, "{found:#?}");
    assert!(
        elsewhere[0]["what"].as_str().unwrap().contains(&lb1_mac),
        "{} names lb1's {lb1_mac}",
        elsewhere[0]["what"]
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    for f in rules {
        assert!(
            f["seen"].as_str().unwrap().contains("inet tandem_test"),
            "{f}"
        );
        let fix = f["fix"][0].as_str().unwrap();
        assert!(
            fix.starts_with("nft delete rule inet tandem_test "),
            "{fix}"
        );
        run_fix(&net.lab, lb2, fix);
    }
    // The fix is the cure: lb2 hears lb1 again and steps down.
    v2.wait_state("web", VrrpState::Backup, Duration::from_secs(15));
    assert_eq!(v1.state("web"), VrrpState::Master);
    let (code, found) = doctor(&net.lab, lb2, &v2.config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
    let (code, found) = doctor(&net.lab, lb1, &v1.config);
    assert_eq!((code, found.len()), (0, 0), "lb1, master alone: {found:#?}");
}

#[test]
fn another_router_on_our_vrid_is_found_and_gone_once_the_vrid_is_ours_alone() {
    let Some(net) = net("doctor-vrid", 2) else {
        return;
    };
    let (lb1, other) = (&net.directors[0], &net.directors[1]);
    let adverts = "advert_interval = \"200ms\"";
    let mut v1 = Vrrpd::start(
        &net.lab,
        lb1,
        &instance("web", 51, 100, &["10.77.0.100/24"], adverts),
    );
    v1.wait_state("web", VrrpState::Master, Duration::from_secs(15));
    // A router that is not ours, on the same VRID, another VIP, a higher
    // priority: lb1 follows it, and nobody holds 10.77.0.100.
    let rogue = Vrrpd::start(
        &net.lab,
        other,
        &instance("gw", 51, 200, &["10.77.0.150/24"], adverts),
    );
    rogue.wait_state("gw", VrrpState::Master, Duration::from_secs(15));
    v1.wait_state("web", VrrpState::Backup, Duration::from_secs(15));
    let (code, found) = doctor(&net.lab, lb1, &v1.config);
    assert_eq!(code, 2, "{found:#?}");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f["id"], "vrrp-other-router");
    assert!(
        f["seen"]
            .as_str()
            .unwrap()
            .contains("follows 10.77.0.2 (priority 200)"),
        "{f}"
    );
    assert!(
        f["fix"][0]
            .as_str()
            .unwrap()
            .starts_with("tcpdump -eni eth0"),
        "{f}"
    );
    // The fix it names: a VRID nobody else uses, and a reload.
    let file = std::fs::read_to_string(&v1.config).unwrap();
    std::fs::write(&v1.config, file.replace("vrid = 51", "vrid = 52")).unwrap();
    v1.signal(libc::SIGHUP);
    v1.wait_state("web", VrrpState::Master, Duration::from_secs(15));
    let (code, found) = doctor(&net.lab, lb1, &v1.config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
    drop(rogue);
    let _ = v1.stop();
}

#[test]
fn a_dr_real_server_answering_arp_for_the_vip_is_found_and_gone_once_it_ignores_it() {
    let Some(net) = net("doctor-arp", 1) else {
        return;
    };
    let lb1 = &net.directors[0];
    let v1 = Vrrpd::start(
        &net.lab,
        lb1,
        &instance(
            "web",
            51,
            150,
            &["10.77.0.100/24"],
            "advert_interval = \"200ms\"",
        ),
    );
    v1.wait_state("web", VrrpState::Master, Duration::from_secs(15));
    let (code, found) = doctor(&net.lab, lb1, &v1.config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
    // A DR real server as set up by hand: the VIP on lo, and the kernel's
    // default of answering ARP for it on eth0.
    let rs = &net.client;
    run_fix(&net.lab, rs, "ip addr add 10.77.0.100/32 dev lo");
    run_fix(
        &net.lab,
        rs,
        "sysctl -qw net.ipv4.conf.all.arp_ignore=0 net.ipv4.conf.all.arp_announce=0",
    );
    let (code, found) = doctor(&net.lab, lb1, &v1.config);
    assert_eq!(code, 2, "{found:#?}");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f["id"], "vip-answered-elsewhere");
    let rs_mac = tandem_tests::cluster::mac(&net.lab, rs, "eth0");
    assert!(f["what"].as_str().unwrap().contains(&rs_mac), "{f}");
    // The printed fix, on that host.
    let fix = f["fix"][1].as_str().unwrap();
    let command = fix.split(": ").last().unwrap();
    assert!(command.starts_with("sysctl -w "), "{fix}");
    run_fix(&net.lab, rs, command);
    let (code, found) = doctor(&net.lab, lb1, &v1.config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
}

#[test]
fn a_firewall_dropping_connection_sync_is_found_and_gone_after_the_printed_fix() {
    let Some(net) = net("doctor-sync", 1) else {
        return;
    };
    let lb1 = &net.directors[0];
    let config = net.lab.dir().join("tandem.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"lb1\"\n\n{}\n[connection_sync]\ninstance = \"web\"\ninterface = \"eth0\"\n",
            instance("web", 51, 150, &["10.77.0.100/24"], "")
        ),
    )
    .unwrap();
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
    net.lab.nft(
        lb1,
        "table inet fw {\n chain in { type filter hook input priority 0; udp dport { 53, 8848 } drop; }\n}\n",
    );
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!(code, 2, "{found:#?}");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["id"], "nft-drops-sync");
    run_fix(&net.lab, lb1, found[0]["fix"][0].as_str().unwrap());
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
}

#[test]
fn a_dr_real_server_without_the_vip_is_found_and_gone_once_it_holds_it() {
    let Some(net) = net("doctor-dr", 1) else {
        return;
    };
    let lb1 = &net.directors[0];
    let rs = &net.client;
    let config = net.lab.dir().join("tandem.toml");
    std::fs::write(
        &config,
        "[node]\nname = \"lb1\"\n\n[[virtual_server]]\nname = \"web\"\naddress = \"10.77.0.100:80\"\nforwarding = \"dr\"\n\n[[virtual_server.real_server]]\naddress = \"10.77.0.200\"\n",
    )
    .unwrap();
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!(code, 2, "{found:#?}");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f["id"], "dr-vip-missing");
    let rs_mac = tandem_tests::cluster::mac(&net.lab, rs, "eth0");
    assert!(f["seen"].as_str().unwrap().contains(&rs_mac), "{f}");
    // The printed fixes, on the real server.
    for fix in f["fix"].as_array().unwrap() {
        run_fix(&net.lab, rs, on_host("10.77.0.200", fix));
    }
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
    // A real server that drops ICMP altogether cannot be told apart:
    // the doctor says nothing rather than guess.
    run_fix(&net.lab, rs, "ip addr del 10.77.0.100/32 dev lo");
    net.lab.drop_protocol(rs, 1);
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
}

#[test]
fn a_nat_real_server_routing_around_the_director_is_found_and_gone_once_it_routes_through_it() {
    let Some(net) = net("doctor-natgw", 1) else {
        return;
    };
    let lb1 = &net.directors[0];
    let rs = &net.client;
    let config = net.lab.dir().join("tandem.toml");
    std::fs::write(&config, NAT).unwrap();
    run_fix(&net.lab, lb1, "sysctl -qw net.ipv4.ip_forward=1");
    // No route back to the clients at all (another router would do the
    // same: the replies never reach lb1).
    let _ = net.lab.exec(rs, &["ip", "route", "del", "default"]);
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!(code, 2, "{found:#?}");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f["id"], "nat-gateway");
    let command = on_host("10.77.0.200", &f["fix"][0]);
    assert_eq!(command, "ip route replace default via 10.77.0.1");
    run_fix(&net.lab, rs, command);
    let (code, found) = doctor(&net.lab, lb1, &config);
    assert_eq!((code, found.len()), (0, 0), "{found:#?}");
}
