//! From keepalived to tandem on a live pair, in the test VM: the README's
//! migration procedure under load. A keepalived pair (VRRPv2 with a
//! password, IPVS in DR mode with HTTP_GET and TCP_CHECK checks over
//! three real servers, a persistent service, a fwmark service, a sorry
//! server, an inhibited service, `lvs_sync_daemon`) serves a steady HTTP
//! load and a long-lived TCP connection. Each director's file goes
//! through `tandem import keepalived`; then, one director at a time:
//! keepalived on the backup dies and tandem starts there (healthd adopts
//! the IPVS table keepalived left, vrrpd backs keepalived up); keepalived
//! on the master stops (tandem takes over); tandem starts on the old
//! master (it takes the VIP back after its preempt delay). Every step's
//! failed requests are counted, the long-lived connection must survive
//! them all, and the IPVS tables tandem ends with must equal the ones
//! keepalived programmed from the original files.

use std::collections::BTreeSet;
use std::time::Duration;

use tandem_model::api::VrrpState::{Backup, Master};
use tandem_tests::e2e::{
    self, KeepalivedDirector, Load, LongConnection, Mode, Net, TandemDirector,
};
use tandem_tests::netns::wait_until;
use tandem_tests::vm;

const T: Duration = Duration::from_secs(30);
const VIP: &str = e2e::VIP;

/// Director `i`'s keepalived.conf, as an operator would have written it.
fn keepalived_conf(net: &Net, i: usize) -> String {
    let priority = if i == 0 { 150 } else { 100 };
    let rs = |i: usize| net.rs_addr(i);
    let http = |addr: String| {
        format!(
            "  real_server {addr} 80 {{\n    weight 1\n    HTTP_GET {{\n      url {{\n        path /\n        status_code 200\n      }}\n      connect_timeout 1\n      retry 1\n      delay_before_retry 1\n    }}\n  }}\n"
        )
    };
    let tcp = |addr: String, port: u16, weight: u32| {
        format!(
            "  real_server {addr} {port} {{\n    weight {weight}\n    TCP_CHECK {{\n      connect_timeout 1\n      retry 1\n      delay_before_retry 1\n    }}\n  }}\n"
        )
    };
    let mut s = format!(
        "! keepalived on lb{n}\n\
         global_defs {{\n  router_id lb{n}\n  script_user root\n  enable_script_security\n  lvs_sync_daemon eth0 web\n}}\n\n\
         vrrp_instance web {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int 1\n  preempt_delay 5\n\
         \x20 authentication {{\n    auth_type PASS\n    auth_pass mig4ate\n  }}\n  virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n}}\n\n",
        n = i + 1
    );
    s.push_str(&format!(
        "virtual_server {VIP} 80 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n"
    ));
    for i in 0..3 {
        s.push_str(&http(rs(i)));
    }
    s.push_str("}\n\n");
    // The long-lived connection's service: persistent, weighted.
    s.push_str(&format!(
        "virtual_server {VIP} 9000 {{\n  delay_loop 1\n  lb_algo wlc\n  lb_kind DR\n  persistence_timeout 300\n  protocol TCP\n"
    ));
    for i in 0..3 {
        s.push_str(&tcp(rs(i), 9000, if i == 0 { 2 } else { 1 }));
    }
    s.push_str("}\n\n");
    // Marked packets (no rule marks any here: the table is what counts).
    s.push_str(
        "virtual_server fwmark 7 {\n  delay_loop 1\n  lb_algo sh\n  lb_kind DR\n  protocol TCP\n",
    );
    for i in 0..3 {
        s.push_str(&tcp(rs(i), 80, 1));
    }
    s.push_str("}\n\n");
    // Nothing listens on 8080: both servers stay in at weight 0.
    s.push_str(&format!(
        "virtual_server {VIP} 8080 {{\n  delay_loop 1\n  lb_algo wrr\n  lb_kind DR\n  protocol TCP\n  inhibit_on_failure\n"
    ));
    for i in 0..2 {
        s.push_str(&tcp(rs(i), 8080, 3));
    }
    s.push_str("}\n\n");
    // Nor on 8443: the sorry server takes the service.
    s.push_str(&format!(
        "virtual_server {VIP} 8443 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  sorry_server {} 8443\n",
        rs(2)
    ));
    s.push_str(&tcp(rs(0), 8443, 1));
    s.push_str("}\n");
    s
}

/// `ipvsadm ARGS` in director `i`, one trimmed line each, sorted: the
/// kernel lists services and real servers in hash order, which says
/// nothing about what was programmed.
fn ipvsadm_lines(net: &Net, i: usize, args: &[&str]) -> BTreeSet<String> {
    e2e::ipvsadm(net, i, args)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Director `i`'s IPVS table as `ipvsadm -S -n` saves it.
fn table(net: &Net, i: usize) -> BTreeSet<String> {
    ipvsadm_lines(net, i, &["-S", "-n"])
}

/// The sync daemons director `i` runs, as `ipvsadm -L --daemon` lists them.
fn daemons(net: &Net, i: usize) -> BTreeSet<String> {
    ipvsadm_lines(net, i, &["-L", "--daemon"])
}

/// Waits until director `i`'s table is the same over three reads a
/// second apart, and `ready` says it is complete.
fn settled(net: &Net, i: usize, ready: impl Fn(&BTreeSet<String>) -> bool) -> BTreeSet<String> {
    let mut last = BTreeSet::new();
    let mut same = 0;
    let got = wait_until(Duration::from_secs(60), || {
        let t = table(net, i);
        if t == last && ready(&t) {
            same += 1;
        } else {
            same = 0;
        }
        last = t;
        std::thread::sleep(Duration::from_secs(1));
        same >= 2
    });
    assert!(
        got.is_some(),
        "lb{}'s table did not settle:\n{}",
        i + 1,
        last.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    last
}

/// What keepalived's checks make of the lab: every real server of :80,
/// :9000 and fwmark 7 in, the inhibited ones at weight 0, the sorry
/// server in.
fn complete(t: &BTreeSet<String>) -> bool {
    let has = |needle: &str| t.iter().any(|l| l.contains(needle));
    t.iter().filter(|l| l.starts_with("-a")).count() == 3 + 3 + 3 + 2 + 1
        && has("-r 10.90.0.13:8443")
        && !has("-r 10.90.0.11:8443")
        && t.iter()
            .filter(|l| l.contains(":8080 -r"))
            .all(|l| l.ends_with("-w 0"))
}

/// Requests that failed in `[from, to)`, and the span from the first
/// failure to the last.
fn failures(load: &Load, from: f64, to: f64) -> (usize, Duration) {
    let failed: Vec<f64> = load
        .results()
        .into_iter()
        .filter(|(t, ok)| *t >= from && *t < to && !ok)
        .map(|(t, _)| t)
        .collect();
    let span = match (failed.first(), failed.last()) {
        (Some(a), Some(b)) => Duration::from_secs_f64(b - a),
        _ => Duration::ZERO,
    };
    (failed.len(), span)
}

/// `tandem import keepalived` on director `i`'s file: the TOML, after
/// the report was printed. The file must convert completely.
fn import(net: &Net, ka: &KeepalivedDirector, i: usize) -> String {
    let out_path = net.lab.dir().join(format!("lb{}-imported.toml", i + 1));
    let tandem = tandem_tests::binary("tandem");
    let out = std::process::Command::new(&tandem)
        .args(["import", "keepalived"])
        .arg(ka.keepalived.conf_path())
        .args(["--node", &format!("lb{}", i + 1), "-o"])
        .arg(&out_path)
        .output()
        .expect("tandem runs");
    let report = String::from_utf8_lossy(&out.stderr);
    eprintln!("lb{}: tandem import keepalived:\n{report}", i + 1);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the import of lb{}'s file is not complete:\n{report}",
        i + 1
    );
    std::fs::read_to_string(&out_path).unwrap()
}

#[test]
fn a_keepalived_pair_moves_to_tandem_under_load_one_director_at_a_time() {
    if vm::booted_outside(&["tandem-vrrpd", "tandem-healthd", "tandem"], |s| {
        s.memory_mib(768).timeout(Duration::from_secs(420))
    }) {
        return;
    }
    let net = e2e::net("migrate", Mode::Dr, 3);
    let _servers = e2e::start_servers(&net);
    let conf: Vec<String> = (0..2).map(|i| keepalived_conf(&net, i)).collect();
    let mut lb1_ka = KeepalivedDirector::start(&net, 0, &conf[0]);
    let mut lb2_ka = KeepalivedDirector::start(&net, 1, &conf[1]);
    wait_until(T, || net.holder() == Some(0))
        .unwrap_or_else(|| panic!("keepalived on lb1 did not take the VIP:\n{}", lb1_ka.log()));
    let keepalived_tables: Vec<BTreeSet<String>> =
        (0..2).map(|i| settled(&net, i, complete)).collect();
    let keepalived_daemons: Vec<BTreeSet<String>> = (0..2).map(|i| daemons(&net, i)).collect();
    for i in 0..2 {
        eprintln!(
            "lb{}: keepalived programmed:\n  {}\n  {}",
            i + 1,
            keepalived_tables[i]
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  "),
            keepalived_daemons[i]
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
    assert!(
        keepalived_daemons[0]
            .iter()
            .any(|l| l.starts_with("master")),
        "{:?}",
        keepalived_daemons[0]
    );

    let load = Load::start(&net, Duration::from_millis(20), Duration::from_secs(1));
    let long = LongConnection::open(&net);
    long.carries(10, T).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        load.results().iter().filter(|r| r.1).count() > 50,
        "keepalived's pair does not serve the load:\n{}",
        load.log()
    );

    let imported: Vec<String> = (0..2)
        .map(|i| import(&net, if i == 0 { &lb1_ka } else { &lb2_ka }, i))
        .collect();

    // Step 1: the backup. keepalived dies there; its IPVS table and its
    // sync daemon stay in the kernel, and tandem adopts both.
    let step1 = tandem_tests::epoch_secs();
    lb2_ka.kill9();
    let lb2 = TandemDirector::start_as_is(&net, 1, &imported[1]);
    lb2.vrrpd.wait_state("web", Backup, T);
    wait_until(T, || {
        let st = lb2.healthd.status();
        // :80, :9000 and fwmark 7 have three each; nothing answers on
        // :8080 and :8443.
        st.dataplane.ok
            && st.dataplane.last_sync.is_some()
            && st.virtual_servers.iter().map(|v| v.up).sum::<usize>() == 9
    })
    .unwrap_or_else(|| panic!("lb2's healthd did not settle: {:#?}", lb2.healthd.status()));
    let st = lb2.healthd.status();
    assert_eq!(
        st.dataplane.operations,
        0,
        "healthd changed what keepalived had programmed: {:#?}\n{}",
        st.dataplane,
        lb2.healthd.log()
    );
    assert_eq!(table(&net, 1), keepalived_tables[1]);
    // Longer than Master_Down_Interval: lb2 follows keepalived's adverts
    // (VRRPv2, the same password) and stays backup.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(lb2.vrrpd.state("web"), Backup, "{}", lb2.vrrpd.log());
    let seen = lb2.vrrpd.instance("web");
    assert_eq!(
        seen.master.map(|m| (m.address.to_string(), m.priority)),
        Some(("10.90.0.1".to_string(), 150))
    );
    assert!(seen.counters.drops.is_empty(), "{:?}", seen.counters.drops);
    assert_eq!(net.holder(), Some(0));
    let (failed1, span1) = failures(&load, step1, tandem_tests::epoch_secs());
    eprintln!("step 1 (tandem replaces the backup): {failed1} failed requests over {span1:?}");
    long.carries(5, T)
        .unwrap_or_else(|e| panic!("the long-lived connection broke in step 1: {e}"));

    // Step 2: the master hands over. keepalived stops cleanly: a
    // priority-0 advert, its VIP and its table gone; tandem takes over.
    let step2 = tandem_tests::epoch_secs();
    lb1_ka.keepalived.stop();
    lb2.vrrpd.wait_state("web", Master, T);
    wait_until(T, || {
        lb2.healthd.status().dataplane.connection_sync.as_deref()
            == Some("master on eth0, sync id 51")
    })
    .unwrap_or_else(|| {
        panic!(
            "lb2 does not send the connections: {:?}",
            lb2.healthd.status().dataplane
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    let (failed2, span2) = failures(&load, step2, tandem_tests::epoch_secs());
    eprintln!(
        "step 2 (keepalived's master hands over to tandem): {failed2} failed requests over {span2:?}"
    );
    long.carries(5, T)
        .unwrap_or_else(|e| panic!("the long-lived connection broke in step 2: {e}"));

    // Step 3: tandem on the old master. It comes up backup, builds its
    // table, receives the connections, and takes the VIP back after its
    // preempt delay (5 s).
    let step3 = tandem_tests::epoch_secs();
    let lb1 = TandemDirector::start_as_is(&net, 0, &imported[0]);
    lb1.vrrpd.wait_state("web", Master, T);
    lb2.vrrpd.wait_state("web", Backup, T);
    wait_until(T, || net.holder() == Some(0)).expect("lb1 holds the VIP");
    std::thread::sleep(Duration::from_secs(3));
    let (failed3, span3) = failures(&load, step3, tandem_tests::epoch_secs());
    eprintln!(
        "step 3 (tandem on the old master takes over again): {failed3} failed requests over {span3:?}"
    );
    long.carries(5, T)
        .unwrap_or_else(|e| panic!("the long-lived connection broke in step 3: {e}"));

    // The same kernel state as keepalived's: both tables, both daemons.
    let tables: Vec<BTreeSet<String>> = (0..2).map(|i| settled(&net, i, complete)).collect();
    for i in 0..2 {
        let only_ka: Vec<_> = keepalived_tables[i].difference(&tables[i]).collect();
        let only_tandem: Vec<_> = tables[i].difference(&keepalived_tables[i]).collect();
        assert!(
            only_ka.is_empty() && only_tandem.is_empty(),
            "lb{}: keepalived's table and tandem's differ:\n  only keepalived's: {only_ka:?}\n  only tandem's: {only_tandem:?}",
            i + 1
        );
        assert_eq!(daemons(&net, i), keepalived_daemons[i], "lb{}", i + 1);
    }

    // No failure outside one takeover per step: the backup's replacement
    // costs nothing; each takeover (a priority-0 handover, a preemption
    // by a director whose table and connections are ready) at most a
    // few requests within a second or two.
    let lost = long.state();
    load.stop();
    assert_eq!(failed1, 0, "replacing the backup failed requests");
    for (step, failed, span) in [(2, failed2, span2), (3, failed3, span3)] {
        assert!(
            failed <= 50 && span <= Duration::from_millis(2500),
            "step {step}: {failed} failed requests over {span:?}"
        );
    }
    assert!(lost.is_ok(), "the long-lived connection broke: {lost:?}");
    drop(lb1);
    drop(lb2);
}
