//! tandem-vrrpd on a real (virtual) wire: two or three directors and a
//! client in network namespaces. Adverts every 200 ms keep the suite
//! quick (Master_Down_Interval about 0.7 s); the margins below are wide so
//! a loaded CI machine does not make them flap.

use std::time::{Duration, Instant};

use tandem_model::api::{ReloadResult, VrrpState::*};
use tandem_tests::binary;
use tandem_tests::cluster::{
    Net, Pinger, Vrrpd, has_addr, instance, mac, neighbour, net, wait_reachable,
};
use tandem_tests::netns::{tshark_fields, wait_until};

const ADV: &str = "advert_interval = \"200ms\"";
const VIP: &str = "10.77.0.100";
const T: Duration = Duration::from_secs(10);

fn web(priority: u8, extra: &str) -> String {
    instance(
        "web",
        51,
        priority,
        &["10.77.0.100/24"],
        &format!("{ADV}\n{extra}"),
    )
}

/// lb1 (priority 150) master, lb2 (100) backup, the client talking to the VIP.
fn pair(net: &Net, extra1: &str, extra2: &str) -> (Vrrpd, Vrrpd) {
    let lb1 = Vrrpd::start(&net.lab, &net.directors[0], &web(150, extra1));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web(100, extra2));
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);
    assert!(
        wait_reachable(&net.lab, &net.client, VIP, T).is_some(),
        "the VIP does not answer"
    );
    (lb1, lb2)
}

fn holds(net: &Net, i: usize, addr: &str) -> bool {
    has_addr(&net.lab, &net.directors[i], "eth0", addr)
}

#[test]
fn the_higher_priority_becomes_master_and_only_it_holds_the_vip() {
    let Some(net) = net("election", 2) else {
        return;
    };
    let (lb1, lb2) = pair(&net, "", "");
    assert!(holds(&net, 0, VIP));
    assert!(!holds(&net, 1, VIP));
    let st = lb2.instance("web");
    let master = st.master.expect("lb2 hears a master");
    assert_eq!(
        (master.address.to_string(), master.priority),
        ("10.77.0.1".into(), 150)
    );
    assert!(st.counters.adverts_received > 0);
    assert!(lb1.instance("web").counters.adverts_sent > 0);
    assert_eq!(
        neighbour(&net.lab, &net.client, VIP),
        Some(mac(&net.lab, &net.directors[0], "eth0"))
    );
}

#[test]
fn backup_takes_over_within_master_down_interval_when_the_master_is_killed() {
    let Some(net) = net("kill9", 2) else { return };
    let (mut lb1, lb2) = pair(&net, "", "");
    let killed = Instant::now();
    lb1.kill9();
    let took = lb2.wait_state("web", Master, T);
    // Master_Down_Interval at 200 ms and priority 100: 0.72 s.
    assert!(
        took < Duration::from_millis(2000),
        "took over after {took:?}"
    );
    // The client's ARP entry moves to lb2 by our gratuitous ARP, without
    // waiting for it to expire (lb1's VIP is still on its dead interface).
    let lb2_mac = mac(&net.lab, &net.directors[1], "eth0");
    let moved = wait_until(Duration::from_secs(3), || {
        neighbour(&net.lab, &net.client, VIP).as_deref() == Some(lb2_mac.as_str())
    });
    assert!(
        moved.is_some(),
        "client still points at {:?}",
        neighbour(&net.lab, &net.client, VIP)
    );
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    let _ = killed;
    let counters = lb2.instance("web").counters;
    assert!(counters.announcements_sent >= 5, "{counters:?}");
}

#[test]
fn backup_takes_over_when_the_master_s_link_is_cut() {
    let Some(net) = net("cut", 2) else { return };
    let (lb1, lb2) = pair(&net, "", "");
    net.lab.cut(&net.directors[0], "eth0");
    lb2.wait_state("web", Master, T);
    // The cut master sees its carrier gone: FAULT, VIP removed.
    lb1.wait_state("web", Fault, T);
    assert!(!holds(&net, 0, VIP));
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    net.lab.heal(&net.directors[0], "eth0");
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);
}

#[test]
fn the_old_master_preempts_when_it_comes_back() {
    let Some(net) = net("preempt", 2) else { return };
    let (mut lb1, lb2) = pair(&net, "", "");
    lb1.kill9();
    lb2.wait_state("web", Master, T);
    lb1.restart(&net.lab);
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    assert!(
        lb1.log().contains(
            "10.77.0.100/24 on eth0 is on the interface already: kept until a master is heard"
        ),
        "{}",
        lb1.log()
    );
}

#[test]
fn without_preempt_the_returning_master_stays_backup() {
    let Some(net) = net("nopreempt", 2) else {
        return;
    };
    let (mut lb1, lb2) = pair(&net, "preempt = false", "preempt = false");
    lb1.kill9();
    lb2.wait_state("web", Master, T);
    lb1.restart(&net.lab);
    lb1.wait_state("web", Backup, T);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lb1.state("web"), Backup);
    assert_eq!(lb2.state("web"), Master);
}

#[test]
fn preempt_delay_holds_the_returning_master_back() {
    let Some(net) = net("preempt_delay", 2) else {
        return;
    };
    let (mut lb1, lb2) = pair(&net, "preempt_delay = \"3s\"", "");
    lb1.kill9();
    lb2.wait_state("web", Master, T);
    let back = Instant::now();
    lb1.restart(&net.lab);
    lb1.wait_state("web", Master, T);
    let after = back.elapsed();
    assert!(after >= Duration::from_secs(3), "preempted after {after:?}");
    assert!(after < Duration::from_secs(6), "preempted after {after:?}");
}

#[test]
fn sigterm_hands_over_without_losing_a_ping() {
    let Some(net) = net("sigterm", 2) else { return };
    let (mut lb1, lb2) = pair(&net, "", "");
    let ping = Pinger::start(&net.lab, &net.client, VIP, Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(500));
    let status = lb1.stop().expect("vrrpd exits on SIGTERM");
    assert!(status.success(), "{status}");
    lb2.wait_state("web", Master, T);
    std::thread::sleep(Duration::from_millis(500));
    let (sent, received) = ping.stop();
    assert!(sent > 50, "{sent} pings");
    assert_eq!(
        sent,
        received,
        "lost {} of {sent} pings across the handover",
        sent - received
    );
    assert!(!holds(&net, 0, VIP), "the stopped node keeps the VIP");
    assert!(
        lb1.log().contains("shutdown: 10.77.0.2 took over"),
        "{}",
        lb1.log()
    );
}

#[test]
fn maintenance_hands_over_without_losing_a_ping_and_can_be_undone() {
    let Some(net) = net("maintenance", 2) else {
        return;
    };
    let (lb1, lb2) = pair(&net, "", "");
    let ping = Pinger::start(&net.lab, &net.client, VIP, Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(500));
    let st: tandem_model::api::InstanceStatus = lb1
        .post(
            "/instances/web/maintenance",
            &serde_json::json!({"on": true}),
        )
        .unwrap();
    assert!(st.maintenance);
    lb2.wait_state("web", Master, T);
    lb1.wait_state("web", Backup, T);
    std::thread::sleep(Duration::from_millis(500));
    let (sent, received) = ping.stop();
    assert_eq!(
        sent,
        received,
        "lost {} of {sent} pings across the handover",
        sent - received
    );
    assert_eq!(lb1.instance("web").effective_priority, 1);
    // Maintenance holds: lb1 does not preempt back.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lb1.state("web"), Backup);
    let _: tandem_model::api::InstanceStatus = lb1
        .post(
            "/instances/web/maintenance",
            &serde_json::json!({"on": false}),
        )
        .unwrap();
    lb1.wait_state("web", Master, T);
    let err = lb1
        .post::<serde_json::Value>(
            "/instances/nope/maintenance",
            &serde_json::json!({"on": true}),
        )
        .unwrap_err();
    assert!(err.to_string().contains("no instance named nope"), "{err}");
}

#[test]
fn a_split_brain_heals_to_one_master_that_re_announces() {
    let Some(net) = net("split_brain", 2) else {
        return;
    };
    let (lb1, lb2) = pair(&net, "", "");
    // Adverts lost both ways: both become master.
    net.lab.drop_protocol(&net.directors[0], 112);
    net.lab.drop_protocol(&net.directors[1], 112);
    lb2.wait_state("web", Master, T);
    assert_eq!(lb1.state("web"), Master);
    // lb2's gratuitous ARP took the client.
    let lb2_mac = mac(&net.lab, &net.directors[1], "eth0");
    wait_until(T, || {
        neighbour(&net.lab, &net.client, VIP).as_deref() == Some(lb2_mac.as_str())
    })
    .expect("the client follows lb2's announcement during the split");
    net.lab.undrop(&net.directors[0]);
    net.lab.undrop(&net.directors[1]);
    lb2.wait_state("web", Backup, T);
    assert_eq!(lb1.state("web"), Master);
    // The survivor re-announces: the client points at lb1 again at once,
    // not after its ARP entry expires.
    let lb1_mac = mac(&net.lab, &net.directors[0], "eth0");
    let back = wait_until(Duration::from_secs(2), || {
        neighbour(&net.lab, &net.client, VIP).as_deref() == Some(lb1_mac.as_str())
    });
    assert!(
        back.is_some(),
        "client still points at {:?}\n{}",
        neighbour(&net.lab, &net.client, VIP),
        lb1.log()
    );
    assert!(!holds(&net, 1, VIP));
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
}

#[test]
fn unicast_adverts_go_to_the_peer_only() {
    let Some(net) = net("unicast", 3) else { return };
    let u1 = "unicast_src = \"10.77.0.1\"\nunicast_peers = [\"10.77.0.2\"]";
    let u2 = "unicast_src = \"10.77.0.2\"\nunicast_peers = [\"10.77.0.1\"]";
    let cap = net.lab.capture(&net.directors[2], "eth0", "ip proto 112");
    let cap_peer = net.lab.capture(&net.directors[1], "eth0", "ip proto 112");
    let (mut lb1, lb2) = pair(&net, u1, u2);
    std::thread::sleep(Duration::from_secs(1));
    let bystander = cap.stop();
    let peer = cap_peer.stop();
    let seen = tshark_fields(&peer, "vrrp", &["ip.src", "ip.dst"]);
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| r[0] == "10.77.0.1" && r[1] == "10.77.0.2"),
        "{seen:?}"
    );
    // A third host on the switch sees none of them (the bridge learned
    // where the peer is; nothing was multicast).
    let stray = tshark_fields(&bystander, "vrrp && ip.dst == 224.0.0.18", &["ip.src"]);
    assert!(stray.is_empty(), "{stray:?}");
    lb1.kill9();
    lb2.wait_state("web", Master, T);
}

#[test]
fn an_ipv6_vip_fails_over_and_the_client_follows_by_neighbour_advertisement() {
    let Some(net) = net("ipv6", 2) else { return };
    let web6 = |p| instance("web6", 52, p, &["fd00:77::100/64"], ADV);
    let mut lb1 = Vrrpd::start(&net.lab, &net.directors[0], &web6(150));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web6(100));
    lb1.wait_state("web6", Master, T);
    lb2.wait_state("web6", Backup, T);
    assert!(wait_reachable(&net.lab, &net.client, "fd00:77::100", T).is_some());
    let m = lb2.instance("web6").master.unwrap();
    assert!(
        m.address.to_string().starts_with("fe80::"),
        "adverts come from the link-local address: {m:?}"
    );
    lb1.kill9();
    lb2.wait_state("web6", Master, T);
    let lb2_mac = mac(&net.lab, &net.directors[1], "eth0");
    let moved = wait_until(Duration::from_secs(3), || {
        neighbour(&net.lab, &net.client, "fd00:77::100").as_deref() == Some(lb2_mac.as_str())
    });
    assert!(
        moved.is_some(),
        "client still points at {:?}",
        neighbour(&net.lab, &net.client, "fd00:77::100")
    );
    assert!(wait_reachable(&net.lab, &net.client, "fd00:77::100", T).is_some());
}

#[test]
fn a_sync_group_fails_over_together_when_one_member_faults() {
    let Some(net) = net("sync_group", 2) else {
        return;
    };
    let flag = net.lab.dir().join("fault-flag");
    let cfg = |p: u8, tracked: bool| {
        let track = if tracked {
            format!("track_files = [{{ path = \"{}\" }}]", flag.display())
        } else {
            String::new()
        };
        format!(
            "{}{}[[vrrp_sync_group]]\nname = \"g\"\ninstances = [\"a\", \"b\"]\n",
            instance("a", 61, p, &["10.77.0.101/24"], &format!("{ADV}\n{track}")),
            instance("b", 62, p, &["10.77.0.102/24"], ADV),
        )
    };
    let lb1 = Vrrpd::start(&net.lab, &net.directors[0], &cfg(150, true));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &cfg(100, false));
    for i in ["a", "b"] {
        lb1.wait_state(i, Master, T);
        lb2.wait_state(i, Backup, T);
    }
    // Instance a's tracked file says "fault": both a and b leave lb1.
    std::fs::write(&flag, "1\n").unwrap();
    for i in ["a", "b"] {
        lb1.wait_state(i, Fault, T);
        lb2.wait_state(i, Master, T);
    }
    assert_eq!(lb1.status().sync_groups[0].state, Fault);
    assert!(!holds(&net, 0, "10.77.0.102"));
    std::fs::write(&flag, "0\n").unwrap();
    for i in ["a", "b"] {
        lb1.wait_state(i, Master, T);
    }
}

#[test]
fn a_tracked_interface_going_down_hands_the_vip_over() {
    let Some(mut net) = net("track_if", 2) else {
        return;
    };
    for h in net.directors.clone() {
        net.lab.connect(&h, "eth1");
    }
    let (lb1, lb2) = pair(
        &net,
        "track_interfaces = [\"eth1\"]",
        "track_interfaces = [\"eth1\"]",
    );
    net.lab.cut(&net.directors[0], "eth1");
    lb1.wait_state("web", Fault, T);
    lb2.wait_state("web", Master, T);
    let reason = lb1.instance("web").last_transition.unwrap().reason;
    assert!(reason.contains("interface eth1 is down"), "{reason}");
    net.lab.heal(&net.directors[0], "eth1");
    lb1.wait_state("web", Master, T);
}

#[test]
fn a_weighted_tracked_interface_lowers_priority_and_lets_the_peer_preempt() {
    let Some(mut net) = net("track_weight", 2) else {
        return;
    };
    for h in net.directors.clone() {
        net.lab.connect(&h, "eth1");
    }
    let w = "track_interfaces = [{ interface = \"eth1\", weight = -60 }]";
    let (lb1, lb2) = pair(&net, w, "");
    net.lab.cut(&net.directors[0], "eth1");
    lb2.wait_state("web", Master, T);
    let st = lb1.instance("web");
    assert_eq!((st.state, st.effective_priority), (Backup, 90));
}

#[test]
fn a_reload_that_touches_another_instance_does_not_flap_the_master() {
    let Some(net) = net("reload", 2) else { return };
    let (lb1, _lb2) = pair(&net, "", "");
    let ping = Pinger::start(&net.lab, &net.client, VIP, Duration::from_millis(10));
    let before = lb1.instance("web").counters.became_master;
    let extra = instance("api", 52, 150, &["10.77.0.110/24"], ADV);
    std::fs::write(
        &lb1.config,
        format!("[node]\nname = \"lb1\"\n\n{}{extra}", web(150, "")),
    )
    .unwrap();
    let r: ReloadResult = lb1.post("/reload", &serde_json::json!({})).unwrap();
    assert_eq!(r.changes, vec!["instance api: added".to_string()]);
    assert_eq!(r.unchanged, 1);
    lb1.wait_state("api", Master, T);
    // Now change web's priority in place: still master, no transition.
    std::fs::write(
        &lb1.config,
        format!("[node]\nname = \"lb1\"\n\n{}{extra}", web(140, "")),
    )
    .unwrap();
    lb1.signal(libc::SIGHUP);
    wait_until(T, || lb1.instance("web").configured_priority == 140).expect("SIGHUP reloads");
    std::thread::sleep(Duration::from_millis(500));
    let (sent, received) = ping.stop();
    assert_eq!(sent, received, "the VIP flapped during the reload");
    let web = lb1.instance("web");
    assert_eq!(web.state, Master);
    assert_eq!(
        web.counters.became_master, before,
        "web went through a transition"
    );
}

#[test]
fn a_refused_reload_keeps_the_running_state() {
    let Some(net) = net("reload_bad", 2) else {
        return;
    };
    let (lb1, _lb2) = pair(&net, "", "");
    std::fs::write(
        &lb1.config,
        "[[vrrp_instance]]\nname = \"web\"\nvrid = 300\n",
    )
    .unwrap();
    let err = lb1
        .post::<ReloadResult>("/reload", &serde_json::json!({}))
        .unwrap_err();
    match err {
        tandem_model::control::ClientError::Http { status, body, .. } => {
            assert_eq!(status, 422);
            let body = body.expect("a JSON error");
            assert!(
                body.error.contains("running configuration kept"),
                "{}",
                body.error
            );
            assert_eq!(body.diagnostics[0].line, 1);
        }
        other => panic!("{other}"),
    }
    // The CLI says the same: the finding at its line, exit status 1.
    let out = std::process::Command::new(tandem_tests::binary("tandem-vrrpd"))
        .arg("reload")
        .arg("--socket-dir")
        .arg(lb1.socket().parent().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("vrrpd.toml:1:1: "), "{stderr}");
    assert!(stderr.contains("running configuration kept"), "{stderr}");
    assert_eq!(lb1.state("web"), Master);
    assert!(holds(&net, 0, VIP));
}

#[test]
fn our_adverts_pass_tshark_s_checksum_with_keepalived_s_header() {
    let Some(net) = net("tshark", 2) else { return };
    let cap = net
        .lab
        .capture(&net.client, "eth0", "ip proto 112 or ip6 proto 112");
    let v6 = instance("web6", 52, 150, &["fd00:77::100/64"], ADV);
    let lb1 = Vrrpd::start(
        &net.lab,
        &net.directors[0],
        &format!("{}{v6}", web(150, "")),
    );
    lb1.wait_state("web", Master, T);
    lb1.wait_state("web6", Master, T);
    std::thread::sleep(Duration::from_secs(1));
    let pcap = cap.stop();
    let rows = tshark_fields(
        &pcap,
        "vrrp",
        &[
            "vrrp.checksum.status",
            "ip.ttl",
            "ip.dsfield",
            "ip.flags.df",
            "ipv6.hlim",
            "vrrp.version",
        ],
    );
    assert!(rows.len() >= 6, "{rows:?}");
    for r in &rows {
        // Wireshark's checksum status: 0 bad, 1 good, 2 unverified.
        assert_eq!(r[0], "1", "tshark does not find the checksum good: {r:?}");
        assert_eq!(r[5], "3");
        if !r[1].is_empty() {
            assert_eq!(
                (r[1].as_str(), r[2].as_str(), r[3].as_str()),
                ("255", "0xc0", "0"),
                "{r:?}"
            );
        } else {
            assert_eq!(r[4], "255");
        }
    }
}

#[test]
fn a_bad_advert_is_dropped_and_counted() {
    let Some(net) = net("bad_packet", 2) else {
        return;
    };
    let (_lb1, lb2) = pair(&net, "", "");
    // A VRRP packet that was routed (TTL 64), and one with a bad checksum,
    // both from the client.
    let script = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("10.77.0.200"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 64)
adv = bytes([0x31, 51, 200, 1, 0x00, 0x14, 0x00, 0x00, 10, 77, 0, 100])
s.sendto(adv, ("224.0.0.18", 0))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.sendto(adv, ("224.0.0.18", 0))
"#;
    net.lab.exec_ok(&net.client, &["python3", "-c", script]);
    let drops = wait_until(T, || {
        let d = lb2.instance("web").counters.drops;
        d.get("ttl") == Some(&1) && d.get("checksum") == Some(&1)
    });
    assert!(drops.is_some(), "{:?}", lb2.instance("web").counters.drops);
    assert_eq!(
        lb2.state("web"),
        Backup,
        "a bad priority-200 advert must not count"
    );
}

#[test]
fn with_a_virtual_mac_the_client_sees_the_rfc_mac_through_a_failover() {
    let Some(net) = net("vmac", 2) else { return };
    let (mut lb1, lb2) = pair(&net, "use_vmac = true", "use_vmac = true");
    let vmac = "00:00:5e:00:01:33"; // RFC 5798 7.3: 00-00-5E-00-01-{VRID 51}
    assert_eq!(neighbour(&net.lab, &net.client, VIP).as_deref(), Some(vmac));
    // The backup hears the master, whose adverts carry the virtual MAC
    // its own macvlan has too, and stays backup.
    backup_hears_master_through_its_macvlan(&net, &lb2, "web", "10.77.0.1", "vrrp.51", VIP);
    assert!(
        has_addr(&net.lab, &net.directors[0], "vrrp.51", VIP),
        "the VIP lives on the macvlan"
    );
    let arp_ignore = net.lab.exec_ok(
        &net.directors[0],
        &["sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore"],
    );
    assert_eq!(arp_ignore.trim(), "1");
    lb1.kill9();
    lb2.wait_state("web", Master, T);
    assert!(wait_reachable(&net.lab, &net.client, VIP, T).is_some());
    // The client's entry never changed: the switch learned the MAC's new
    // port from lb2's gratuitous ARP.
    assert_eq!(neighbour(&net.lab, &net.client, VIP).as_deref(), Some(vmac));
    // A clean stop removes the macvlan and restores the sysctls.
    let mut lb2 = lb2;
    lb2.stop().expect("stops");
    let links = net.lab.exec_ok(&net.directors[1], &["ip", "-o", "link"]);
    assert!(!links.contains("vrrp.51"), "{links}");
    let arp_ignore = net.lab.exec_ok(
        &net.directors[1],
        &["sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore"],
    );
    assert_eq!(arp_ignore.trim(), "0");
}

/// Well past Master_Down_Interval the backup is still backup, it counts
/// the master's adverts, and its macvlan holds no VIP (no split brain).
#[track_caller]
fn backup_hears_master_through_its_macvlan(
    net: &Net,
    backup: &Vrrpd,
    instance: &str,
    master: &str,
    macvlan: &str,
    vip: &str,
) {
    let heard = backup.instance(instance).counters.adverts_received;
    std::thread::sleep(Duration::from_secs(2));
    let st = backup.instance(instance);
    assert_eq!(st.state, Backup, "{}", backup.log());
    assert!(
        st.counters.adverts_received >= heard + 5,
        "the backup hears no adverts: {:?}",
        st.counters
    );
    assert_eq!(
        st.master.map(|m| m.address.to_string()).as_deref(),
        Some(master)
    );
    assert!(!has_addr(&net.lab, &backup.host, macvlan, vip));
}

#[test]
fn with_an_ipv6_virtual_mac_the_client_follows_the_rfc_mac_and_adverts_leave_from_the_link_local() {
    let Some(net) = net("vmac6", 2) else { return };
    let cap = net.lab.capture(&net.client, "eth0", "ip6 proto 112");
    let web6 = |p| {
        instance(
            "web6",
            52,
            p,
            &["fd00:77::100/64"],
            &format!("{ADV}\nuse_vmac = true"),
        )
    };
    let mut lb1 = Vrrpd::start(&net.lab, &net.directors[0], &web6(150));
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web6(100));
    lb1.wait_state("web6", Master, T);
    let vip = "fd00:77::100";
    assert!(wait_reachable(&net.lab, &net.client, vip, T).is_some());
    let vmac = "00:00:5e:00:02:34"; // RFC 5798 7.3: 00-00-5E-00-02-{VRID 52}
    assert_eq!(neighbour(&net.lab, &net.client, vip).as_deref(), Some(vmac));
    assert!(has_addr(&net.lab, &net.directors[0], "vrrp.52", vip));
    // RFC 5798 7.4: the macvlan makes no link-local address of its own
    // (the EUI-64 of the virtual MAC is the same on both directors); it
    // carries the interface's, deprecated, to send the adverts from.
    let ll = |i: usize, ifname: &str| {
        net.lab.exec_ok(
            &net.directors[i],
            &[
                "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link",
            ],
        )
    };
    let eth0_ll = ll(0, "eth0");
    let own = eth0_ll
        .split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .expect("eth0 has a link-local address")
        .to_string();
    let on_vmac = ll(0, "vrrp.52");
    assert_eq!(on_vmac.matches("inet6").count(), 1, "{on_vmac}");
    assert!(on_vmac.contains(&own), "{on_vmac} lacks {own}");
    assert!(on_vmac.contains("deprecated"), "{on_vmac}");
    assert!(
        !ll(1, "vrrp.52").contains("fe80::200:5eff"),
        "EUI-64 of the VMAC"
    );
    let own_ll = own.split('/').next().unwrap().to_string();
    backup_hears_master_through_its_macvlan(&net, &lb2, "web6", &own_ll, "vrrp.52", vip);

    lb1.kill9();
    lb2.wait_state("web6", Master, T);
    assert!(wait_reachable(&net.lab, &net.client, vip, T).is_some());
    assert_eq!(neighbour(&net.lab, &net.client, vip).as_deref(), Some(vmac));
    let pcap = cap.stop();
    // On the wire: the adverts leave from the virtual MAC and the
    // link-local address, and tshark finds them well formed.
    let rows = tshark_fields(
        &pcap,
        "vrrp",
        &["eth.src", "ipv6.src", "vrrp.checksum.status", "ipv6.hlim"],
    );
    assert!(rows.len() >= 5, "{rows:?}");
    for r in &rows {
        assert_eq!(r[0], vmac, "{r:?}");
        assert!(r[1].starts_with("fe80::"), "{r:?}");
        assert_eq!((r[2].as_str(), r[3].as_str()), ("1", "255"), "{r:?}");
    }
    let mut lb2 = lb2;
    lb2.stop().expect("stops");
    let links = net.lab.exec_ok(&net.directors[1], &["ip", "-o", "link"]);
    assert!(!links.contains("vrrp.52"), "{links}");
}

#[test]
fn notify_runs_with_keepalived_s_arguments_and_events_stream_every_transition() {
    let Some(net) = net("notify", 2) else { return };
    let out = net.lab.dir().join("notify.log");
    let script = net.lab.dir().join("notify.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", out.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let notify = format!("notify = \"{}\"", script.display());
    let (mut lb1, lb2) = pair(&net, &notify, &notify);
    // Follow lb2's events from the start.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = lb2.client();
    let mut events = Box::pin(rt.block_on(client.events(Some(0))).unwrap());
    lb1.kill9();
    lb2.wait_state("web", Master, T);
    let seen = rt.block_on(async {
        use futures::StreamExt;
        let mut seen = Vec::new();
        while let Ok(Some(Ok(e))) =
            tokio::time::timeout(Duration::from_secs(5), events.next()).await
        {
            let done = matches!(
                &e.kind,
                tandem_model::api::EventKind::VrrpTransition { to: Master, .. }
            );
            seen.push(e);
            if done {
                break;
            }
        }
        seen
    });
    let transitions: Vec<String> = seen
        .iter()
        .filter_map(|e| match &e.kind {
            tandem_model::api::EventKind::VrrpTransition {
                instance, from, to, ..
            } => Some(format!("{instance} {from}->{to}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        vec!["web INIT->BACKUP", "web BACKUP->MASTER"],
        "{seen:?}"
    );
    let log = wait_until(T, || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("INSTANCE web MASTER 100"))
    })
    .map(|_| std::fs::read_to_string(&out).unwrap());
    let log =
        log.unwrap_or_else(|| panic!("notify did not run: {:?}", std::fs::read_to_string(&out)));
    assert!(log.contains("INSTANCE web BACKUP 100"), "{log}");
    assert!(log.contains("INSTANCE web MASTER 150"), "{log}");
}

#[test]
fn a_failing_track_script_faults_the_master_and_its_recovery_brings_it_back() {
    let Some(net) = net("track_script", 2) else {
        return;
    };
    let flag = net.lab.dir().join("healthy");
    std::fs::write(&flag, "").unwrap();
    let scripts = format!(
        "[[track_script]]\nname = \"chk\"\ncommand = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 2\n\n",
        flag.display()
    );
    let lb1 = Vrrpd::start(
        &net.lab,
        &net.directors[0],
        &format!("{scripts}{}", web(150, "track_scripts = [\"chk\"]")),
    );
    let lb2 = Vrrpd::start(&net.lab, &net.directors[1], &web(100, ""));
    lb1.wait_state("web", Master, T);
    lb2.wait_state("web", Backup, T);
    std::fs::remove_file(&flag).unwrap();
    lb1.wait_state("web", Fault, T);
    lb2.wait_state("web", Master, T);
    let reason = lb1.instance("web").last_transition.unwrap().reason;
    assert_eq!(reason, "script chk failed");
    std::fs::write(&flag, "").unwrap();
    lb1.wait_state("web", Master, T);
}

#[test]
fn release_takes_away_what_a_killed_vrrpd_left_and_nothing_else() {
    let Some(net) = net("release", 1) else { return };
    let lb1 = &net.directors[0];
    // An address vrrpd has nothing to do with, beside its VIPs.
    net.lab.addr(lb1, "eth0", "10.77.0.150/24");
    let toml = format!(
        "{}{}",
        web(150, ""),
        instance(
            "vmac",
            52,
            150,
            &["10.77.0.101/24"],
            &format!("{ADV}\nuse_vmac = true")
        )
    );
    let mut v = Vrrpd::start(&net.lab, lb1, &toml);
    v.wait_state("web", Master, T);
    v.wait_state("vmac", Master, T);
    let (config, dir) = (v.config.clone(), v.dir.clone());
    let release = || {
        net.lab.exec(
            lb1,
            &[
                binary("tandem-vrrpd").to_str().unwrap(),
                "release",
                "--config",
                config.to_str().unwrap(),
                "--socket-dir",
                dir.to_str().unwrap(),
            ],
        )
    };
    // A live vrrpd keeps its VIPs: release refuses.
    let refused = release();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("a vrrpd answers"),
        "{refused:?}"
    );
    assert!(holds(&net, 0, VIP));

    v.kill9();
    assert!(holds(&net, 0, VIP), "kill -9 leaves the VIP behind");
    assert!(has_addr(&net.lab, lb1, "vrrp.52", "10.77.0.101"));
    let out = release();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains("released web: 10.77.0.100/24 from eth0"),
        "{said}"
    );
    assert!(
        said.contains("released vmac: macvlan vrrp.52 on eth0"),
        "{said}"
    );
    assert!(!holds(&net, 0, VIP));
    let links = net.lab.exec_ok(lb1, &["ip", "-o", "link"]);
    assert!(!links.contains("vrrp.52"), "{links}");
    for kept in ["10.77.0.1", "10.77.0.150"] {
        assert!(holds(&net, 0, kept), "{kept} was not vrrpd's to remove");
    }
    // Again: there is nothing left.
    let again = release();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to release"));
}

#[test]
fn a_reload_that_drops_the_virtual_mac_removes_its_macvlan() {
    let Some(net) = net("vmac_reload", 1) else {
        return;
    };
    let lb1 = &net.directors[0];
    let with_vmac = |on: bool| {
        format!(
            "[node]\nname = \"lb1\"\n\n{}",
            web(150, if on { "use_vmac = true" } else { "" })
        )
    };
    let v = Vrrpd::start(&net.lab, lb1, &web(150, "use_vmac = true"));
    v.wait_state("web", Master, T);
    assert!(has_addr(&net.lab, lb1, "vrrp.51", VIP));
    std::fs::write(&v.config, with_vmac(false)).unwrap();
    let _: ReloadResult = v.post("/reload", &serde_json::json!({})).unwrap();
    v.wait_state("web", Master, T);
    let gone = wait_until(T, || {
        !net.lab
            .exec_ok(lb1, &["ip", "-o", "link"])
            .contains("vrrp.51")
    });
    assert!(gone.is_some(), "the macvlan stayed:\n{}", v.log());
    assert!(
        wait_until(T, || holds(&net, 0, VIP)).is_some(),
        "the VIP is on eth0 now\n{}",
        v.log()
    );
}
