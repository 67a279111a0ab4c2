//! How fast ipvsctl programs IPVS, measured in the test VM against
//! `ipvsadm -R` of the same table: 1,000 virtual services x 10 real
//! servers applied to an empty table (through the library and through
//! `ipvsctl restore`), then a no-op reconcile of that table, then one
//! changed weight.
//!
//! `cargo bench -p tandem-tests --bench ipvs_apply`. The VM runs under
//! TCG (no KVM here), so absolute times are those of an emulated CPU;
//! the ratios are what carries over.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipvsctl::reconcile::{Dataplane, Options, plan, reconcile};
use ipvsctl::types::{
    Dest, DestSettings, Family, Forwarding, Service, ServiceKey, ServiceSettings, Table,
};
use ipvsctl::{Kernel, save};
use tandem_tests::{binary, vm};

const SERVICES: usize = 1000;
const REAL_SERVERS: usize = 10;
const RUNS: usize = 3;

fn main() {
    if vm::inside() {
        inside();
        return;
    }
    let ipvsctl = binary("ipvsctl");
    let Some(machine) = vm::require("ipvs_apply") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = machine
        .scenario("ipvs_apply")
        .env("IPVSCTL", ipvsctl.display().to_string())
        .script(format!(
            "exec {}",
            vm::shell_quote(&exe.display().to_string())
        ))
        .timeout(Duration::from_secs(900))
        .run();
    out.assert_success();
    print!("{}", out.read("results.txt"));
}

/// Service `i`: TCP 10.1.x.y:80; its real servers 10.2.0.0/16, DR.
fn desired() -> Table {
    let mut services = Vec::with_capacity(SERVICES);
    for i in 0..SERVICES {
        let vip = Ipv4Addr::new(10, 1, (i / 250) as u8, (i % 250 + 1) as u8);
        let key = ServiceKey::tcp(SocketAddr::new(IpAddr::V4(vip), 80));
        let mut svc = Service::new(key, ServiceSettings::new(Family::Ipv4, "wlc"));
        for j in 0..REAL_SERVERS {
            let n = i * REAL_SERVERS + j;
            let ip = Ipv4Addr::new(10, 2, (n / 250) as u8, (n % 250 + 1) as u8);
            svc.dests.push(Dest::new(
                SocketAddr::new(IpAddr::V4(ip), 80),
                DestSettings::new(Forwarding::Route, 1 + (j as u32 % 3)),
            ));
        }
        services.push(svc);
    }
    Table::new(services)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A fresh network namespace (so a fresh IPVS: nothing in the kernel's
/// destination trash from an earlier run) with a route to the real
/// servers.
fn fresh_netns(name: &str) {
    let status = Command::new("/bin/sh")
        .arg("-ec")
        .arg(format!(
            "ip netns add {name}\n\
             ip -n {name} link set lo up\n\
             ip -n {name} link add bench0 type dummy\n\
             ip -n {name} link set bench0 up\n\
             ip -n {name} addr add 10.2.0.254/16 dev bench0\n"
        ))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs `f` with a kernel client inside namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce(&mut Kernel) -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on an open namespace file; it affects this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        let mut k = Kernel::connect().unwrap();
        f(&mut k)
    })
    .join()
    .unwrap()
}

/// Runs a program in namespace `ns` with `stdin` from a file; its wall
/// time (`ip netns exec` included, for both programs alike).
fn timed_in(ns: &str, program: &str, args: &[&str], stdin: &str) -> Duration {
    let file = std::fs::File::open(stdin).unwrap();
    let t0 = Instant::now();
    let status = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::from(file))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let elapsed = t0.elapsed();
    assert!(status.success(), "{program} {args:?} failed");
    elapsed
}

fn table_in(ns: &str) -> Table {
    in_netns(ns, |k| k.table().unwrap().settings_only())
}

fn inside() {
    let ipvsctl = std::env::var("IPVSCTL").expect("IPVSCTL names the CLI");
    let desired = desired();
    let ops_total = SERVICES * (1 + REAL_SERVERS);
    let rules = "/tmp/bench.rules";
    std::fs::write(rules, save::render(&desired)).unwrap();
    let mut out = String::new();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    out.push_str(&format!(
        "ipvs_apply: {SERVICES} virtual services x {REAL_SERVERS} real servers \
         ({ops_total} operations), kernel {} under QEMU TCG, medians of {RUNS} runs\n",
        release.trim()
    ));

    // Full apply into an empty table, three ways, each run in fresh
    // namespaces.
    let (mut lib, mut cli, mut adm) = (Vec::new(), Vec::new(), Vec::new());
    let mut lib_datagrams = 0;
    for run in 0..RUNS {
        let (ns_lib, ns_cli, ns_adm) = (
            format!("lib{run}"),
            format!("cli{run}"),
            format!("adm{run}"),
        );
        for ns in [&ns_lib, &ns_cli, &ns_adm] {
            fresh_netns(ns);
        }
        let want = desired.clone();
        let (took, datagrams) = in_netns(&ns_lib, move |k| {
            let before = k.counters();
            let t0 = Instant::now();
            let ops = reconcile(k, &want, Options::default()).unwrap();
            let took = t0.elapsed();
            assert_eq!(ops.len(), ops_total);
            (took, k.counters().datagrams - before.datagrams)
        });
        lib.push(took);
        lib_datagrams = datagrams;
        assert_eq!(table_in(&ns_lib), desired);

        cli.push(timed_in(&ns_cli, &ipvsctl, &["restore"], rules));
        assert_eq!(table_in(&ns_cli), desired);

        adm.push(timed_in(&ns_adm, "ipvsadm", &["-R"], rules));
        assert_eq!(table_in(&ns_adm), desired);
    }
    let (lib, cli, adm) = (median(lib), median(cli), median(adm));
    out.push_str("full apply into an empty table:\n");
    out.push_str(&format!(
        "  ipvsctl (library: dump, plan, apply)   {:>9}   ({lib_datagrams} sendmsg calls in all)\n",
        secs(lib)
    ));
    out.push_str(&format!(
        "  ipvsctl restore < rules                {:>9}\n",
        secs(cli)
    ));
    out.push_str(&format!(
        "  ipvsadm -R < rules                     {:>9}\n",
        secs(adm)
    ));
    out.push_str(&format!(
        "  ratio ipvsctl/ipvsadm -R: library {:.3}, CLI {:.3}\n",
        lib.as_secs_f64() / adm.as_secs_f64(),
        cli.as_secs_f64() / adm.as_secs_f64()
    ));

    // No-op reconcile: a full dump and a plan with nothing in it.
    let ns = format!("lib{}", RUNS - 1);
    let want = desired.clone();
    let (noop, noop_changes, noop_reads, dump_time, plan_time) = in_netns(&ns, move |k| {
        let mut times = Vec::new();
        let mut changes = 0;
        let mut reads = 0;
        for _ in 0..RUNS {
            let before = k.counters();
            let t0 = Instant::now();
            let ops = reconcile(k, &want, Options::default()).unwrap();
            times.push(t0.elapsed());
            assert!(ops.is_empty(), "{ops:?}");
            changes = k.counters().changes - before.changes;
            reads = k.counters().reads - before.reads;
        }
        // Where the time goes: the dump, and the plan alone.
        let t0 = Instant::now();
        let current = k.dump().unwrap();
        let dump = t0.elapsed();
        let t0 = Instant::now();
        assert!(plan(&want, &current, Options::default()).is_empty());
        (median(times), changes, reads, dump, t0.elapsed())
    });
    // The same dumps through libnl, for scale: ipvsadm -S -n.
    let adm_save = median(
        (0..RUNS)
            .map(|_| {
                timed_in(
                    &format!("adm{}", RUNS - 1),
                    "ipvsadm",
                    &["-S", "-n"],
                    "/dev/null",
                )
            })
            .collect(),
    );
    out.push_str(&format!(
        "no-op reconcile: {} ({noop_changes} change operations; {noop_reads} dump requests; \
         dump {}, plan {}; ipvsadm -S -n of the same table: {})\n",
        ms(noop),
        ms(dump_time),
        ms(plan_time),
        ms(adm_save)
    ));
    // ipvsadm's figure includes starting the program, as an operator's
    // `ipvsadm -S -n` does; the reconcile runs in a daemon already up.
    out.push_str(&format!(
        "  ratio no-op reconcile/ipvsadm -S -n: {:.3}\n",
        noop.as_secs_f64() / adm_save.as_secs_f64()
    ));

    // One changed weight.
    let mut changed = desired.clone();
    changed.services[SERVICES / 2].dests[3].settings.weight += 10;
    let want = changed.clone();
    let (one, ops, changes) = in_netns(&ns, move |k| {
        let before = k.counters();
        let t0 = Instant::now();
        let ops = reconcile(k, &want, Options::default()).unwrap();
        let took = t0.elapsed();
        (took, ops, k.counters().changes - before.changes)
    });
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(changes, 1);
    assert_eq!(table_in(&ns), changed);
    out.push_str(&format!(
        "one weight changed: {} ({} operation, {}; {changes} change request sent)\n",
        ms(one),
        ops.len(),
        save::op_line(&ops[0])
    ));

    out.push_str(&format!(
        "targets: full apply faster than ipvsadm -R: {}; no-op reconcile under 100 ms: {}; \
         one change = one netlink operation: {}\n",
        if lib < adm && cli < adm {
            "met"
        } else {
            "MISSED"
        },
        if noop < Duration::from_millis(100) {
            "met"
        } else {
            "MISSED"
        },
        if changes == 1 { "met" } else { "MISSED" },
    ));
    print!("{out}");
    std::fs::write(vm::dir().join("results.txt"), out).unwrap();
}
