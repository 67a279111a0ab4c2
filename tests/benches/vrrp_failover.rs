//! Failover, tandem-vrrpd against Debian's keepalived, on the same netns
//! topology in the same run (two directors and a client on one switch):
//!
//! - the master dies (kill -9 of its daemon and its cable cut at once, at
//!   a random point between two adverts): time until the client's pings
//!   (every 10 ms) are answered again, at 1 s and 100 ms adverts, median
//!   of `TANDEM_BENCH_RUNS` (5). Where the fault falls between two adverts
//!   moves that time by up to one interval, so the bench also captures the
//!   master's last advert and reports how long after the protocol's own
//!   deadline (last advert + Master_Down_Interval) the client is served:
//!   that part is the implementation's;
//! - planned handover (SIGTERM of the master): pings lost at 10 ms spacing;
//! - RSS and CPU of an idle master at 100 ms adverts.
//!
//! Run as root: `cargo bench -p tandem-tests --bench vrrp_failover`
//! (`TANDEM_BENCH_RUNS=N` changes the number of runs).

use std::time::{Duration, Instant};

use tandem_model::api::VrrpState;
use tandem_tests::cluster::{
    Keepalived, Net, Vrrpd, has_addr, instance, keepalived_instance, net, wait_reachable,
};
use tandem_tests::netns::{Host, Lab, Proc, tshark_fields, wait_until};

const VIP: &str = "10.77.0.100";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Tandem,
    Keepalived,
}

enum Daemon {
    Tandem(Vrrpd),
    Keepalived(Keepalived),
}

impl Daemon {
    fn start(which: Impl, lab: &Lab, host: &Host, priority: u8, advert: Duration) -> Daemon {
        match which {
            Impl::Tandem => {
                let adv = format!("advert_interval = \"{}ms\"", advert.as_millis());
                Daemon::Tandem(Vrrpd::start(
                    lab,
                    host,
                    &instance("web", 51, priority, &["10.77.0.100/24"], &adv),
                ))
            }
            Impl::Keepalived => {
                let adv = format!("{}", advert.as_secs_f64());
                Daemon::Keepalived(Keepalived::start(
                    lab,
                    host,
                    &keepalived_instance("web", 51, priority, 3, &adv, &["10.77.0.100/24"], ""),
                ))
            }
        }
    }

    fn kill9(&mut self) {
        match self {
            Daemon::Tandem(v) => v.kill9(),
            Daemon::Keepalived(k) => k.kill9(),
        }
    }

    fn stop(&mut self) {
        match self {
            Daemon::Tandem(v) => {
                v.stop();
            }
            Daemon::Keepalived(k) => k.stop(),
        }
    }
}

/// Timestamps (epoch seconds) of the replies `ping -D` printed.
fn reply_times(ping: &Proc) -> Vec<f64> {
    ping.output()
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

fn holds(net: &Net, i: usize) -> bool {
    has_addr(&net.lab, &net.directors[i], "eth0", VIP)
}

/// Starts a master (lb1) and a backup (lb2) and waits until the client
/// reaches the VIP through lb1.
fn setup(which: Impl, advert: Duration, tag: &str) -> (Net, Daemon, Daemon) {
    let net = net(&format!("bench_{tag}"), 2).expect("the benchmark needs root and netns");
    // The backup first, so the master's takeover is the one we observe.
    let backup = Daemon::start(which, &net.lab, &net.directors[1], 100, advert);
    let master = Daemon::start(which, &net.lab, &net.directors[0], 150, advert);
    wait_until(Duration::from_secs(30), || {
        holds(&net, 0) && !holds(&net, 1)
    })
    .expect("lb1 becomes master");
    if let (Daemon::Tandem(b), true) = (&backup, which == Impl::Tandem) {
        b.wait_state("web", VrrpState::Backup, Duration::from_secs(10));
    }
    wait_reachable(&net.lab, &net.client, VIP, Duration::from_secs(10)).expect("the VIP answers");
    // Let the backup settle on the master's adverts.
    std::thread::sleep(4 * advert + Duration::from_millis(500));
    (net, master, backup)
}

/// RFC 5798 6.1 for the backup (priority 100): 3 x interval + Skew_Time.
fn master_down_interval(advert: Duration) -> f64 {
    (3.0 + (256.0 - 100.0) / 256.0) * advert.as_secs_f64()
}

/// (ms from the master's death to the client's first answered ping,
///  ms from the protocol's deadline to that ping).
fn failover_once(which: Impl, advert: Duration, run: usize) -> (f64, f64) {
    let tag = format!("{which:?}_{}ms_{run}", advert.as_millis()).to_lowercase();
    let (net, mut master, _backup) = setup(which, advert, &tag);
    let adverts = net.lab.capture(&net.client, "eth0", "ip proto 112");
    let ping = net.lab.spawn(
        &net.client,
        "ping",
        &["ping", "-D", "-n", "-i", "0.01", "-W", "1", VIP],
    );
    std::thread::sleep(Duration::from_millis(300));
    std::thread::sleep(advert.mul_f64(tandem_tests::jitter()));
    let killed = tandem_tests::epoch_secs();
    // A dead director neither advertises nor answers: without the cut its
    // kernel would go on answering for the VIP it still holds.
    master.kill9();
    net.lab.cut(&net.directors[0], "eth0");
    // Replies after this instant can only come from the backup.
    let cut = tandem_tests::epoch_secs();
    wait_until(Duration::from_secs(20), || holds(&net, 1)).expect("the backup takes over");
    let served = || reply_times(&ping).into_iter().find(|t| *t > cut);
    wait_until(Duration::from_secs(10), || served().is_some());
    let first = served().expect("a reply after the failover");
    let pcap = adverts.stop();
    let last_advert = tshark_fields(&pcap, "vrrp && ip.src == 10.77.0.1", &["frame.time_epoch"])
        .into_iter()
        .filter_map(|r| r.first()?.parse::<f64>().ok())
        .filter(|t| *t <= killed)
        .fold(f64::NAN, f64::max);
    assert!(
        last_advert.is_finite(),
        "no advert from the master was captured"
    );
    let deadline = last_advert + master_down_interval(advert);
    ((first - killed) * 1000.0, (first - deadline) * 1000.0)
}

/// Pings lost at 10 ms spacing while the master hands over on SIGTERM.
fn handover_loss(which: Impl, advert: Duration) -> (u32, u32) {
    let tag = format!("{which:?}_handover").to_lowercase();
    let (net, mut master, _backup) = setup(which, advert, &tag);
    let ping =
        tandem_tests::cluster::Pinger::start(&net.lab, &net.client, VIP, Duration::from_millis(10));
    std::thread::sleep(Duration::from_millis(500));
    master.stop();
    wait_until(Duration::from_secs(20), || holds(&net, 1)).expect("the backup takes over");
    std::thread::sleep(Duration::from_secs(1));
    let (sent, received) = ping.stop();
    (sent - received, sent)
}

/// (RSS in KiB, CPU in % of one core) of the master's processes, idle at
/// 100 ms adverts over 20 s.
fn idle_cost(which: Impl) -> (u64, f64) {
    let advert = Duration::from_millis(100);
    let (net, master, _backup) = setup(which, advert, &format!("{which:?}_idle").to_lowercase());
    let pids = pids_in(
        &net.directors[0],
        match which {
            Impl::Tandem => "tandem-vrrpd",
            Impl::Keepalived => "keepalived",
        },
    );
    let cpu_ns = |pids: &[u32]| -> u64 { pids.iter().map(|p| cpu_ns(*p)).sum() };
    let t0 = cpu_ns(&pids);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(20));
    let used = (cpu_ns(&pids) - t0) as f64 / 1e9;
    let cpu = used / start.elapsed().as_secs_f64() * 100.0;
    let rss = pids.iter().map(|p| rss_kib(*p)).sum();
    drop(master);
    (rss, cpu)
}

/// Processes running in `host` whose command starts with `name`.
fn pids_in(host: &Host, name: &str) -> Vec<u32> {
    let all = std::process::Command::new("ip")
        .args(["netns", "pids", &host.ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&all.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim().starts_with(&name[..name.len().min(15)]))
        })
        .collect()
}

/// CPU time of every thread of `pid`, in nanoseconds (schedstat, not the
/// 10 ms ticks of /proc/PID/stat, which an idle daemon barely moves).
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list
    }
    let runs: usize = std::env::var("TANDEM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!("vrrp failover: tandem-vrrpd vs keepalived 2.2.7, netns, median of {runs}");
    let mut lines = Vec::new();
    for advert in [Duration::from_secs(1), Duration::from_millis(100)] {
        let mut medians = Vec::new();
        for which in [Impl::Tandem, Impl::Keepalived] {
            let runs: Vec<(f64, f64)> =
                (0..runs).map(|r| failover_once(which, advert, r)).collect();
            let outage = median(runs.iter().map(|r| r.0).collect());
            let late = median(runs.iter().map(|r| r.1).collect());
            println!(
                "  master dies, adverts {:>6}: {:<10} client served after {:>5.0} ms, {:>4.0} ms after the protocol's deadline  (each run: {})",
                format!("{}ms", advert.as_millis()),
                format!("{which:?}"),
                outage,
                late,
                runs.iter()
                    .map(|t| format!("{:.0}/{:.0}", t.0, t.1))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            medians.push((outage, late));
        }
        println!(
            "  -> tandem / keepalived: outage {:.2}, past the deadline {:.2}",
            medians[0].0 / medians[1].0,
            medians[0].1 / medians[1].1
        );
        lines.push(format!(
            "| master dies, {} ms adverts: client served again after | {:.0} ms | {:.0} ms | {:.2} |",
            advert.as_millis(),
            medians[0].0,
            medians[1].0,
            medians[0].0 / medians[1].0
        ));
        lines.push(format!(
            "| ... of which past last advert + Master_Down_Interval | {:.0} ms | {:.0} ms | {:.2} |",
            medians[0].1,
            medians[1].1,
            medians[0].1 / medians[1].1
        ));
    }
    let mut loss = Vec::new();
    for which in [Impl::Tandem, Impl::Keepalived] {
        let (lost, sent) = handover_loss(which, Duration::from_secs(1));
        println!("  SIGTERM handover, 1 s adverts: {which:?} lost {lost} of {sent} pings at 10 ms");
        loss.push((lost, sent));
    }
    lines.push(format!(
        "| pings lost (10 ms apart) across a SIGTERM handover, 1 s adverts | {} of {} | {} of {} | |",
        loss[0].0, loss[0].1, loss[1].0, loss[1].1
    ));
    let mut cost = Vec::new();
    for which in [Impl::Tandem, Impl::Keepalived] {
        let (rss, cpu) = idle_cost(which);
        println!("  idle master at 100 ms adverts: {which:?} RSS {rss} KiB, CPU {cpu:.3} %");
        cost.push((rss, cpu));
    }
    lines.push(format!(
        "| RSS of an idle master (all its processes) | {} KiB | {} KiB | {:.2} |",
        cost[0].0,
        cost[1].0,
        cost[0].0 as f64 / cost[1].0 as f64
    ));
    lines.push(format!(
        "| CPU of an idle master, 100 ms adverts | {:.3} % | {:.3} % | {:.2} |",
        cost[0].1,
        cost[1].1,
        cost[0].1 / cost[1].1
    ));
    println!("\n| measure | tandem | keepalived | ratio |\n|---|---|---|---|");
    for l in lines {
        println!("{l}");
    }
}
