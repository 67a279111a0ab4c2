//! The netns harness proves itself: hosts on a switch reach each other, a
//! cut cable stops them, a healed one restores them, nftables drops what it
//! is told, tshark sees the wire, and nothing outlives the lab.

use std::net::IpAddr;
use std::time::Duration;

use tandem_tests::netns::{self, tshark_fields};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const T: Duration = Duration::from_secs(2);

fn three_hosts(lab: &mut netns::Lab) -> [netns::Host; 3] {
    let hosts = ["a", "b", "c"].map(|n| lab.host(n));
    for (i, h) in hosts.iter().enumerate() {
        lab.connect(h, "eth0");
        lab.addr(h, "eth0", &format!("10.9.0.{}/24", i + 1));
        lab.addr(h, "eth0", &format!("fd00:9::{}/64", i + 1));
    }
    hosts
}

#[test]
fn three_hosts_on_a_switch_reach_each_other_over_ipv4_and_ipv6() {
    let Some(mut lab) = netns::lab("three_hosts") else {
        return;
    };
    let [a, b, c] = three_hosts(&mut lab);
    for (from, to) in [
        (&a, "10.9.0.2"),
        (&b, "10.9.0.3"),
        (&c, "10.9.0.1"),
        (&a, "fd00:9::3"),
    ] {
        assert!(lab.ping(from, ip(to), T), "{} cannot reach {to}", from.name);
    }
}

#[test]
fn a_cut_link_stops_traffic_and_healing_it_restores_it() {
    let Some(mut lab) = netns::lab("cut_heal") else {
        return;
    };
    let [a, b, _c] = three_hosts(&mut lab);
    assert!(lab.ping(&a, ip("10.9.0.2"), T));
    lab.cut(&b, "eth0");
    assert!(
        !lab.ping(&a, ip("10.9.0.2"), Duration::from_millis(500)),
        "b still answers with its cable cut"
    );
    let carrier = lab.exec_ok(&b, &["cat", "/sys/class/net/eth0/carrier"]);
    assert_eq!(carrier.trim(), "0", "b sees its carrier lost");
    lab.heal(&b, "eth0");
    let back = netns::wait_until(Duration::from_secs(5), || {
        lab.ping(&a, ip("10.9.0.2"), Duration::from_millis(300))
    });
    assert!(back.is_some(), "b does not answer after the heal");
}

#[test]
fn an_isolated_pair_still_reaches_the_third_host() {
    let Some(mut lab) = netns::lab("isolate") else {
        return;
    };
    let [a, b, c] = three_hosts(&mut lab);
    lab.isolate(&a, "eth0", true);
    lab.isolate(&b, "eth0", true);
    assert!(!lab.ping(&a, ip("10.9.0.2"), Duration::from_millis(500)));
    assert!(lab.ping(&a, ip("10.9.0.3"), T));
    assert!(lab.ping(&c, ip("10.9.0.2"), T));
    lab.isolate(&a, "eth0", false);
    assert!(lab.ping(&a, ip("10.9.0.2"), T));
}

#[test]
fn nftables_drops_a_protocol_until_told_otherwise() {
    let Some(mut lab) = netns::lab("nft_drop") else {
        return;
    };
    let [a, b, _c] = three_hosts(&mut lab);
    lab.drop_protocol(&b, 1); // ICMP
    assert!(!lab.ping(&a, ip("10.9.0.2"), Duration::from_millis(500)));
    assert!(
        lab.ping(&a, ip("fd00:9::2"), T),
        "ICMPv6 (58) is another protocol"
    );
    lab.undrop(&b);
    assert!(lab.ping(&a, ip("10.9.0.2"), T));
}

#[test]
fn tshark_captures_what_crosses_the_wire() {
    let Some(mut lab) = netns::lab("capture") else {
        return;
    };
    let [a, b, _c] = three_hosts(&mut lab);
    let cap = lab.capture(&b, "eth0", "icmp");
    for _ in 0..3 {
        assert!(lab.ping(&a, ip("10.9.0.2"), T));
    }
    let pcap = cap.stop();
    let rows = tshark_fields(&pcap, "icmp.type == 8", &["ip.src", "ip.dst"]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        rows[0],
        vec!["10.9.0.1".to_string(), "10.9.0.2".to_string()]
    );
}

#[test]
fn a_spawned_process_runs_in_its_host_and_its_output_is_kept() {
    let Some(mut lab) = netns::lab("spawn") else {
        return;
    };
    let [a, _b, _c] = three_hosts(&mut lab);
    let mut p = lab.spawn(
        &a,
        "addr",
        &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
    );
    p.wait_for_output("10.9.0.1/24", Duration::from_secs(5));
    assert!(p.wait_timeout(Duration::from_secs(5)).unwrap().success());
    let mut sleeper = lab.spawn(&a, "sleep", &["sleep", "600"]);
    assert!(sleeper.alive());
    sleeper.signal(libc_sigterm());
    assert!(sleeper.wait_timeout(Duration::from_secs(5)).is_some());
}

fn libc_sigterm() -> i32 {
    15
}

#[test]
fn a_panicking_test_leaves_no_namespace_behind() {
    if netns::lab("probe").is_none() {
        return;
    }
    let prefix = std::thread::spawn(|| {
        let mut lab = netns::lab("doomed").unwrap();
        let prefix = lab.prefix().to_string();
        let h = lab.host("x");
        lab.connect(&h, "eth0");
        let _p = lab.spawn(&h, "sleep", &["sleep", "600"]);
        assert!(
            netns::list_namespaces()
                .iter()
                .any(|n| n.starts_with(&prefix))
        );
        std::panic::panic_any(prefix);
    })
    .join()
    .expect_err("the thread panics")
    .downcast::<String>()
    .unwrap();
    let left: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(prefix.as_str()))
        .collect();
    assert!(left.is_empty(), "namespaces leaked: {left:?}");
}
