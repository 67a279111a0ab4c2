//! healthd's checking cost: checks per second, CPU and RSS with 1,000 and
//! 10,000 TCP targets and 1,000 HTTP targets, every target checked every
//! second, on loopback. The targets are distinct addresses of
//! 127.0.0.0/8 inside a namespace of their own, served by one listener.
//!
//! Run as root: `cargo bench -p tandem-tests --bench healthd_checks`
//! (`TANDEM_BENCH_SECONDS=N` changes the measuring window, 15 s).

use std::fmt::Write;
use std::time::{Duration, Instant};

use tandem_tests::cluster::{Healthd, TestServer};
use tandem_tests::netns::{self, Host, Lab};

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
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
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
    let out = std::process::Command::new("ip").args(["netns", "pids", &host.ns]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .find(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "tandem-healthd"))
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
    for r in hd.status().virtual_servers.iter().flat_map(|v| v.real_servers.iter()) {
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

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let window = Duration::from_secs(
        std::env::var("TANDEM_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15),
    );
    let mut lab = netns::lab("bench_checks").expect("the benchmark needs root and netns");
    let host = lab.host("lb");
    // Loopback has room for many connections a second: widen the port
    // range and let sockets in TIME_WAIT be reused by the listener side.
    lab.exec_ok(&host, &["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"]);
    lab.exec_ok(&host, &["sysctl", "-qw", "net.core.somaxconn=8192"]);
    let _server = TestServer::start(&lab, &host, &["0.0.0.0:8000"], "ok", &[]);
    println!("healthd checks on loopback, every target every 1 s, {} s window", window.as_secs());
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
}
