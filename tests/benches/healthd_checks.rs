//! healthd's checking cost: checks per second, CPU and RSS with 1,000 and
//! 10,000 TCP targets and 1,000 HTTP targets, every target checked every
//! second, on loopback. The targets are distinct addresses of
//! 127.0.0.0/8 inside a namespace of their own, served by one listener.
//!
//! Then the same 1,000 TCP targets in the test VM (kernel IPVS there),
//! checked once by tandem-healthd and once by keepalived's checker
//! (`keepalived --check`, TCP_CHECK, delay_loop 1), one after the other
//! in one boot: CPU of each over the same window, and the ratio. The VM
//! is emulated (TCG), so only the ratio means anything there.
//!
//! Run as root: `cargo bench -p tandem-tests --bench healthd_checks`
//! (`TANDEM_BENCH_SECONDS=N` changes the measuring window, 15 s).

use std::fmt::Write;
use std::time::{Duration, Instant};

use tandem_tests::cluster::{Healthd, TestServer};
use tandem_tests::netns::{self, Host, Lab};
use tandem_tests::{binary, vm};

fn config(kind: &str, targets: usize) -> String {
    let per_vs = 1000;
    let mut s = String::new();
    for v in 0..targets.div_ceil(per_vs) {
        let _ = write!(
            s,
            "[[virtual_server]]\nname = \"vs{v}\"\naddress = \"192.0.2.{}:80\"\nquorum = 0\n\n\
             [virtual_server.check]\ntype = \"{kind}\"\nport = 8000\ninterval = \"1s\"\ntimeout = \"500ms\"\nrise = 1\nfall = 1\n",
            v + 1
        );
        for i in 0..per_vs.min(targets - v * per_vs) {
            let n = v * per_vs + i;
            let _ = write!(
                s,
                "\n[[virtual_server.real_server]]\naddress = \"127.{}.{}.{}:80\"\n",
                1 + n / 62500,
                (n / 250) % 250,
                n % 250 + 1
            );
        }
        s.push('\n');
    }
    s
}

fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn healthd_pid(host: &Host) -> u32 {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", &host.ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "tandem-healthd")
        })
        .expect("healthd runs")
}

struct Result {
    label: String,
    checks_per_s: f64,
    failures: u64,
    cpu_pct: f64,
    rss_kib: u64,
}

fn run(lab: &Lab, host: &Host, kind: &str, targets: usize, window: Duration) -> Result {
    let hd = Healthd::start(lab, host, &config(kind, targets));
    // Let every probe run once and the schedule settle.
    std::thread::sleep(Duration::from_secs(3));
    let pid = healthd_pid(host);
    let total = |hd: &Healthd| -> (u64, u64) {
        let st = hd.status();
        st.virtual_servers
            .iter()
            .flat_map(|v| v.real_servers.iter())
            .fold((0, 0), |(c, f), r| (c + r.checks, f + r.failures))
    };
    let (c0, f0) = total(&hd);
    let cpu0 = cpu_ns(pid);
    let start = Instant::now();
    std::thread::sleep(window);
    let (c1, f1) = total(&hd);
    let cpu1 = cpu_ns(pid);
    let secs = start.elapsed().as_secs_f64();
    let rss = rss_kib(pid);
    // Why checks failed, if any did: a loaded machine, not the servers.
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for r in hd
        .status()
        .virtual_servers
        .iter()
        .flat_map(|v| v.real_servers.iter())
    {
        if let Some(c) = r.last_check.as_ref().filter(|c| !c.ok) {
            *reasons.entry(c.reason.clone()).or_default() += 1;
        }
    }
    if !reasons.is_empty() {
        println!("    last failures: {reasons:?}");
    }
    let mut hd = hd;
    hd.stop();
    Result {
        label: format!("{targets} {kind} targets"),
        checks_per_s: (c1 - c0) as f64 / secs,
        failures: f1 - f0,
        cpu_pct: (cpu1 - cpu0) as f64 / 1e9 / secs * 100.0,
        rss_kib: rss,
    }
}

/// keepalived.conf with the same targets as [`config`] (DR, so IPVS takes
/// loopback-range destinations as keepalived adds them).
fn keepalived_config(targets: usize) -> String {
    let per_vs = 1000;
    let mut s = String::from("global_defs {\n  router_id bench\n}\n");
    for v in 0..targets.div_ceil(per_vs) {
        let _ = write!(
            s,
            "virtual_server 192.0.2.{} 80 {{\n  delay_loop 1\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n",
            v + 1
        );
        for i in 0..per_vs.min(targets - v * per_vs) {
            let n = v * per_vs + i;
            let _ = write!(
                s,
                "  real_server 127.{}.{}.{} 80 {{\n    TCP_CHECK {{\n      connect_port 8000\n      connect_timeout 0.5\n    }}\n  }}\n",
                1 + n / 62500,
                (n / 250) % 250,
                n % 250 + 1
            );
        }
        s.push_str("}\n");
    }
    s
}

/// ((CPU %, checks/s) of tandem, of keepalived) in the VM.
fn in_vm(targets: usize, window: Duration) -> Option<((f64, f64), (f64, f64))> {
    let healthd = binary("tandem-healthd");
    let server = binary("tandem-testserver");
    let machine = vm::require("healthd_vs_keepalived")?;
    let secs = window.as_secs();
    let script = format!(
        r#"set -e
ip netns add b
ip -n b link set lo up
ip netns exec b sysctl -qw net.ipv4.ip_local_port_range="1024 65001" net.core.somaxconn=8192
mkdir -p /run/bench
# Checks are counted in the kernel: every SYN to the servers' port.
ip netns exec b nft add table inet count
ip netns exec b nft add chain inet count in '{{ type filter hook input priority 0; }}'
ip netns exec b nft add rule inet count in tcp dport 8000 tcp flags syn counter
syns() {{ ip netns exec b nft list chain inet count in | grep -o 'packets [0-9]*' | awk '{{print $2}}'; }}
echo ok > mode
ip netns exec b {server} --listen 0.0.0.0:8000 --mode-file $PWD/mode >/dev/null 2>&1 &
sleep 1
cpu() {{ t=0; for p in "$@"; do for f in /proc/$p/task/*/schedstat; do read a rest < $f; t=$((t+a)); done; done; echo $t; }}
# Unix sockets cannot live on the 9p share: the control socket goes to /run.
ip netns exec b {healthd} -c $PWD/h.toml --socket-dir /run/bench --state-dir /run/bench/st --log warn > $TANDEM_VM_DIR/healthd.log 2>&1 &
HP=$!
sleep 5
a=$(cpu $HP); c0=$(syns)
sleep {secs}
b=$(cpu $HP); c1=$(syns)
echo "tandem $a $b $c0 $c1" > $TANDEM_VM_DIR/cpu
kill $HP; wait $HP || true
ip netns exec b ipvsadm -C
ip netns exec b keepalived --dont-fork --log-console --check --use-file $PWD/k.conf --pid /run/bench/k.pid --checkers_pid /run/bench/c.pid > $TANDEM_VM_DIR/keepalived.log 2>&1 &
KP=$!
sleep 5
CP=$(cat /run/bench/c.pid)
a=$(cpu $KP $CP); c0=$(syns)
sleep {secs}
b=$(cpu $KP $CP); c1=$(syns)
echo "keepalived $a $b $c0 $c1" >> $TANDEM_VM_DIR/cpu
ip netns exec b ipvsadm -Ln | grep -c -- '->' > $TANDEM_VM_DIR/dests || true
kill $KP
"#,
        server = server.display(),
        healthd = healthd.display(),
    );
    let out = machine
        .scenario("healthd_vs_keepalived")
        .file(
            "h.toml",
            format!("[node]\nname = \"bench\"\n\n{}", config("tcp", targets))
                .replace("quorum = 0\n", "quorum = 0\nforwarding = \"dr\"\n"),
        )
        .file("k.conf", keepalived_config(targets))
        .script(script)
        .timeout(Duration::from_secs(120 + 4 * secs))
        .run();
    out.assert_success();
    let cpu = out.read("cpu");
    let mut tandem = (0.0, 0.0);
    let mut keepalived = (0.0, 0.0);
    for line in cpu.lines() {
        let f: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let m = (
            (f[1] - f[0]) / 1e9 / secs as f64 * 100.0,
            (f[3] - f[2]) / secs as f64,
        );
        if line.starts_with("tandem") {
            tandem = m;
        } else {
            keepalived = m;
        }
    }
    Some((tandem, keepalived))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let window = Duration::from_secs(
        std::env::var("TANDEM_BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15),
    );
    let mut lab = netns::lab("bench_checks").expect("the benchmark needs root and netns");
    let host = lab.host("lb");
    // Loopback has room for many connections a second: widen the port
    // range and let sockets in TIME_WAIT be reused by the listener side.
    lab.exec_ok(
        &host,
        &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"],
    );
    lab.exec_ok(&host, &["sysctl", "-qw", "net.core.somaxconn=8192"]);
    let _server = TestServer::start(&lab, &host, &["0.0.0.0:8000"], "ok", &[]);
    println!(
        "healthd checks on loopback, every target every 1 s, {} s window",
        window.as_secs()
    );
    let mut rows = Vec::new();
    for (kind, n) in [("tcp", 1000), ("tcp", 10_000), ("http", 1000)] {
        let r = run(&lab, &host, kind, n, window);
        println!(
            "  {:<18} {:>8.0} checks/s  {:>3} failed  CPU {:>5.1} % of one core  RSS {:>6} KiB",
            r.label, r.checks_per_s, r.failures, r.cpu_pct, r.rss_kib
        );
        rows.push(r);
    }
    println!("\n| targets | checks/s | failed | CPU (one core) | RSS |\n|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {:.1} % | {} MiB |",
            r.label,
            r.checks_per_s,
            r.failures,
            r.cpu_pct,
            r.rss_kib / 1024
        );
    }
    drop(lab);
    if let Some((ours, theirs)) = in_vm(1000, window) {
        // CPU per check: the two do not check at exactly the same rate.
        let per = |(cpu, rate): (f64, f64)| cpu / 100.0 / rate.max(1.0) * 1e6;
        println!(
            "\nin the VM (TCG), 1000 TCP targets every 1 s, checks counted as SYNs by nftables:\n  tandem-healthd    {:.1} % CPU, {:.0} checks/s, {:.0} us CPU per check\n  keepalived --check {:.1} % CPU, {:.0} checks/s, {:.0} us CPU per check\n  -> CPU per check, tandem / keepalived = {:.2}",
            ours.0,
            ours.1,
            per(ours),
            theirs.0,
            theirs.1,
            per(theirs),
            per(ours) / per(theirs)
        );
    }
}
