//! The proof that tandem does its job, in the test VM: clients keep being
//! served while directors and real servers die. Two directors run vrrpd
//! and healthd; three real servers; a steady HTTP load (a request every
//! 20 ms) and a long-lived TCP connection from the client.

use std::time::Duration;

use tandem_model::api::VrrpState::{Backup, Master};
use tandem_tests::e2e::{self, Load, LongConnection, Mode, TandemDirector};
use tandem_tests::netns::wait_until;
use tandem_tests::vm;

const T: Duration = Duration::from_secs(20);

/// The whole story in one mode: failover under load with a connection
/// that survives, a real server dying under load, the old master back
/// (taking over again after `preempt_delay`, or with `preempt = false`
/// staying backup).
fn story(mode: Mode, preempt: bool) {
    let net = e2e::net(&format!("e2e_{mode:?}").to_lowercase(), mode, 3);
    let _servers = e2e::start_servers(&net);
    let conf = |priority| {
        let c = e2e::config(&net, priority, "200ms", "300ms");
        if preempt {
            c
        } else {
            c.replace("preempt_delay = \"3s\"", "preempt = false")
        }
    };
    let mut lb1 = TandemDirector::start(&net, 0, &conf(150));
    let lb2 = TandemDirector::start(&net, 1, &conf(100));
    lb1.vrrpd.wait_state("web", Master, T);
    lb2.vrrpd.wait_state("web", Backup, T);
    // Both directors' tables are full, and lb1 sends its connections.
    for d in [&lb1, &lb2] {
        wait_until(T, || {
            d.healthd.status().virtual_servers.iter().all(|v| v.up == 3)
        })
        .unwrap_or_else(|| panic!("not every real server is up: {:?}", d.healthd.status()));
    }
    wait_until(T, || {
        lb1.healthd.status().dataplane.connection_sync.as_deref()
            == Some("master on eth0, sync id 51")
    })
    .unwrap_or_else(|| panic!("{:?}", lb1.healthd.status().dataplane));
    assert_eq!(
        lb2.healthd.status().dataplane.connection_sync.as_deref(),
        Some("backup on eth0, sync id 51")
    );

    // A request gives up after 1 s. The VM has one emulated CPU for both
    // directors, three servers and the client: a daemon starting up can
    // hold a request back for more than 0.3 s (seen in CI, only while the
    // returning director's daemons started, with the peer master), which
    // is no outage. A request that goes nowhere still fails.
    let load = Load::start(&net, Duration::from_millis(20), Duration::from_secs(1));
    let long = LongConnection::open(&net);
    long.carries(10, T).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let before = load.results();
    assert!(
        before.iter().filter(|r| r.1).count() > 50,
        "the load is not served: {before:?}\n{}",
        load.log()
    );

    // The master dies: daemons killed, cable cut.
    let killed = tandem_tests::epoch_secs();
    lb1.kill9();
    net.lab.cut(&net.directors[0], "eth0");
    lb2.vrrpd.wait_state("web", Master, T);
    wait_until(T, || {
        lb2.healthd.status().dataplane.connection_sync.as_deref()
            == Some("master on eth0, sync id 51")
    })
    .expect("lb2 sends the connections now");
    std::thread::sleep(Duration::from_secs(2));
    let (failed, window) = e2e::outage(&load.results(), killed);
    eprintln!("{mode:?}: master death cost {failed} requests, outage {window:?}");
    // Master_Down_Interval at 200 ms is 0.72 s; requests time out after
    // 1 s: a few requests at most.
    assert!(window < Duration::from_secs(3), "outage {window:?}");
    assert!(failed < 100, "{failed} requests failed");
    // The connection opened through lb1 goes on through lb2 (synced).
    long.carries(10, T)
        .unwrap_or_else(|e| panic!("the long-lived connection broke: {e}"));

    // A real server dies: failures bounded by its detection time
    // (fall 2 x interval 300 ms + timeout 200 ms), then none.
    let died = tandem_tests::epoch_secs();
    net.lab.cut(&net.servers[0], "eth0");
    let http = |d: &TandemDirector| {
        d.healthd
            .status()
            .virtual_servers
            .into_iter()
            .find(|v| v.name == "http")
            .unwrap()
    };
    wait_until(T, || http(&lb2).up == 2).expect("lb2 takes rs1 out");
    let detected = tandem_tests::epoch_secs();
    std::thread::sleep(Duration::from_secs(2));
    let (failed, _) = e2e::outage(&load.results(), died);
    eprintln!(
        "{mode:?}: a dead real server cost {failed} requests, detected after {:.2}s",
        detected - died
    );
    assert!(failed < 40, "{failed} requests failed");
    // Once healthd says rs1 is out, no new request goes there; one sent
    // just before may still time out.
    let late = load.failures(detected + 0.5);
    assert!(
        late.is_empty(),
        "failures after detection ({:.2}s after rs1 died):\n  {}",
        detected - died,
        late.join("\n  ")
    );

    // The old master comes back: it preempts (after its checks settled),
    // or it stays backup; either way no second outage.
    net.lab.heal(&net.directors[0], "eth0");
    let back = tandem_tests::epoch_secs();
    lb1.restart(&net.lab);
    eprintln!(
        "{mode:?}: lb1's daemons answer {:+.2}s after its return",
        tandem_tests::epoch_secs() - back
    );
    if preempt {
        lb1.vrrpd.wait_state("web", Master, T);
        eprintln!(
            "{mode:?}: lb1 master again {:+.2}s after its return",
            tandem_tests::epoch_secs() - back
        );
        lb2.vrrpd.wait_state("web", Backup, T);
    } else {
        lb1.vrrpd.wait_state("web", Backup, T);
        // Longer than its Master_Down_Interval and any preempt delay.
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(
            lb1.vrrpd.state("web"),
            Backup,
            "preempt = false, yet lb1 took over"
        );
        assert_eq!(lb2.vrrpd.state("web"), Master);
    }
    std::thread::sleep(Duration::from_secs(2));
    let (failed, window) = e2e::outage(&load.results(), back);
    eprintln!(
        "{mode:?}: the old master's return cost {failed} requests, outage {window:?}: {:#?}",
        load.failures(back)
    );
    // Both directors' transitions, with when: a failure before lb1 took
    // over is explained (or not) by them.
    for (name, d) in [("lb1", &lb1), ("lb2", &lb2)] {
        for l in d.vrrpd.log().lines().filter(|l| l.contains(" -> ")) {
            eprintln!("{mode:?}: {name}: {l}");
        }
    }
    eprintln!("{mode:?}: returned at {back:.3}");
    // The handover loses a request or two. A run of failures over 2.5 s
    // is an outage: at 200 ms adverts a VIP nobody holds is taken within
    // Master_Down_Interval (0.72 s).
    let longest = e2e::longest_outage(&load.results(), back);
    if failed > 5 || longest > Duration::from_millis(2500) {
        // What the returning director thought when it took over: which
        // requests failed when, and its real servers and their reasons.
        let failures = load.failures(back).join("\n  ");
        panic!(
            "{failed} requests failed during the old master's return, the longest outage {longest:?}:\n  {failures}\n\
             lb1 healthd: {:#?}\nlb1 vrrpd:\n{}",
            lb1.healthd.status().virtual_servers,
            lb1.vrrpd.log()
        );
    }
    long.carries(5, T)
        .unwrap_or_else(|e| panic!("the long-lived connection broke on preemption: {e}"));
    load.stop();
}

#[test]
fn in_dr_mode_clients_are_served_through_director_and_server_deaths() {
    if vm::booted_outside(&["tandem-vrrpd", "tandem-healthd"], |s| {
        s.memory_mib(512).timeout(Duration::from_secs(300))
    }) {
        return;
    }
    story(Mode::Dr, true);
}

#[test]
fn in_nat_mode_with_the_gateway_vip_and_no_preemption_clients_are_served_through_director_and_server_deaths()
 {
    if vm::booted_outside(&["tandem-vrrpd", "tandem-healthd"], |s| {
        s.memory_mib(512).timeout(Duration::from_secs(300))
    }) {
        return;
    }
    story(Mode::Nat, false);
}
