//! The whole appliance failing over under load, tandem against Debian's
//! keepalived 2.2.7, on the same topology in one VM run (kernel IPVS
//! there; the VM is emulated with TCG, so the ratios mean more than the
//! absolute figures).
//!
//! The lab is `tandem_tests::e2e`'s, in DR mode: a client, two directors
//! (lb1 priority 150, lb2 100) and three real servers (HTTP :80, echo
//! :9000) on one switch. Each director runs either tandem-vrrpd +
//! tandem-healthd or keepalived (VRRP + its IPVS checkers, from
//! `e2e::keepalived_config`), with the same settings: VRRPv3 adverts
//! every 200 ms (keepalived takes `advert_int 0.2` with `vrrp_version
//! 3`), checks every 300 ms (200 ms timeout, a failure retried once), IPVS
//! connection sync on eth0 (sync id 51). Once lb1 is master and lb2
//! backup, both tables hold the 3 real servers of each service and the
//! sync daemons run (master on lb1, backup on lb2), the client opens a
//! long-lived TCP connection through the VIP (a line echoed every 100 ms)
//! and starts an HTTP request every 20 ms (300 ms timeout). Then the
//! master dies at a random point of the advert interval: its cable cut,
//! its daemons killed with SIGKILL. Measured, from the client:
//!
//! - failed requests: those started from one request timeout before the
//!   death (the one in flight fails too) on;
//! - the outage (`e2e::outage`): from the first failed request's start to
//!   the next success's start. Requests time out after 300 ms one after
//!   the other, so it moves in steps of about 300 ms;
//! - whether the long connection survived: it goes on through lb2 thanks
//!   to the synced IPVS connection entry, and carries 10 more lines;
//! - for context: when the VIP was seen on lb2 after the cut (polled
//!   with `ip`, coarse under emulation), and the CPU the daemons of both
//!   directors took under the load before the death, per director,
//!   process and thread, and summed by part of the work (VRRP; health
//!   checks with the IPVS work they drive; the rest).
//!
//! The real servers are `e2e::start_servers` (they stay quiet when a
//! check closes with a reset, as tandem's do).
//!
//! `TANDEM_BENCH_CAPTURE=1` also captures the client's interface around
//! the death and keeps it, the request log and lb2's vrrpd log in
//! `target/e2e-captures/`: the way to see which packet of a takeover
//! came late.
//!
//! `TANDEM_BENCH_RUNS` (5) runs per implementation, a fresh lab each,
//! alternating which goes first to spread the machine's noise; the
//! per-run figures, the medians and the tandem / keepalived ratios are
//! printed and kept in `target/e2e-bench.txt`.
//!
//! Run as root: `sudo cargo bench -p tandem-tests --bench e2e_failover`
//! (about a minute per pair of runs on a 2-core machine).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tandem_model::api::VrrpState::{Backup, Master};
use tandem_tests::cluster::has_addr;
use tandem_tests::e2e::{
    self, KeepalivedDirector, Load, LongConnection, Mode, Net, TandemDirector,
};
use tandem_tests::netns::wait_until;
use tandem_tests::webui::target_dir;
use tandem_tests::{binary, vm};

/// The same advert interval for both: keepalived takes fractions of a
/// second with `vrrp_version 3`.
const ADVERT: Duration = Duration::from_millis(200);
const CHECK_INTERVAL: Duration = Duration::from_millis(300);
const REQUEST_EVERY: Duration = Duration::from_millis(20);
/// `e2e::Load`'s timeout per request.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
/// Generous: daemons start slowly under emulation.
const T: Duration = Duration::from_secs(30);
/// Per run (one implementation) in the VM, at most.
const RUN_BUDGET: Duration = Duration::from_secs(240);
const RESULTS: &str = "results";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Tandem,
    Keepalived,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Tandem => "tandem",
            Impl::Keepalived => "keepalived",
        }
    }
}

enum Director {
    Tandem(Box<TandemDirector>),
    Keepalived(KeepalivedDirector),
}

impl Director {
    fn start(which: Impl, net: &Net, i: usize, priority: u8) -> Director {
        match which {
            Impl::Tandem => Director::Tandem(Box::new(TandemDirector::start(
                net,
                i,
                &e2e::config(
                    net,
                    priority,
                    &format!("{}ms", ADVERT.as_millis()),
                    &format!("{}ms", CHECK_INTERVAL.as_millis()),
                ),
            ))),
            Impl::Keepalived => Director::Keepalived(KeepalivedDirector::start(
                net,
                i,
                &e2e::keepalived_config(
                    net,
                    priority,
                    &ADVERT.as_secs_f64().to_string(),
                    &CHECK_INTERVAL.as_secs_f64().to_string(),
                ),
            )),
        }
    }

    fn kill9(&mut self) {
        match self {
            Director::Tandem(d) => d.kill9(),
            Director::Keepalived(d) => d.kill9(),
        }
    }
}

#[track_caller]
fn wait(what: &str, cond: impl FnMut() -> bool) {
    if wait_until(T, cond).is_none() {
        panic!("not within {T:?}: {what}");
    }
}

/// Both directors ready: lb1 master, lb2 backup, 3 real servers per
/// service in both tables, the sync daemons running.
fn wait_ready(net: &Net, lb1: &Director, lb2: &Director) {
    match (lb1, lb2) {
        (Director::Tandem(lb1), Director::Tandem(lb2)) => {
            lb1.vrrpd.wait_state("web", Master, T);
            lb2.vrrpd.wait_state("web", Backup, T);
            for d in [lb1, lb2] {
                wait("tandem: every real server up on both directors", || {
                    d.healthd.status().virtual_servers.iter().all(|v| v.up == 3)
                });
            }
            wait("tandem: lb1 sends its connections", || {
                lb1.healthd.status().dataplane.connection_sync.as_deref()
                    == Some("master on eth0, sync id 51")
            });
            wait("tandem: lb2 receives them", || {
                lb2.healthd.status().dataplane.connection_sync.as_deref()
                    == Some("backup on eth0, sync id 51")
            });
        }
        (Director::Keepalived(_), Director::Keepalived(lb2)) => {
            wait("keepalived: lb1 holds the VIP", || holds(net, 0));
            wait("keepalived: lb2 is backup", || {
                lb2.log().contains("(web) Entering BACKUP STATE")
            });
            for i in 0..2 {
                wait("keepalived: 3 real servers per service", || {
                    e2e::ipvs_real_servers(net, i) == [3, 3]
                });
            }
            for (i, role) in [(0, "master"), (1, "backup")] {
                wait_sync_daemon(net, i, role);
            }
        }
        _ => unreachable!("both directors run the same implementation"),
    }
    // lb1 serves the VIP alone.
    assert!(holds(net, 0) && !holds(net, 1), "lb1 alone holds the VIP");
}

/// CPU time (ns) of the directors' daemons (tandem-vrrpd and
/// tandem-healthd, or keepalived's three processes), per director,
/// process and thread (schedstat, finer than /proc/PID/stat's ticks):
/// keys like `lb1 tandem-healthd/ipvs` or `lb2 keepalived-checker`.
/// keepalived's processes all have one name; its pid files tell which is
/// which.
fn daemons_cpu(net: &Net) -> BTreeMap<String, u64> {
    let mut cpu = BTreeMap::new();
    for d in &net.directors {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", &d.ns])
            .output()
            .expect("ip netns pids");
        let pid_file = |name: &str| {
            std::fs::read_to_string(net.lab.dir().join(format!("keepalived-{}/{name}", d.name)))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let (vrrp, checker) = (pid_file("vrrp.pid"), pid_file("checkers.pid"));
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let process = match comm.trim() {
                p @ ("tandem-vrrpd" | "tandem-healthd") => p.to_string(),
                "keepalived" if pid == vrrp => "keepalived-vrrp".to_string(),
                "keepalived" if pid == checker => "keepalived-checker".to_string(),
                "keepalived" => "keepalived-parent".to_string(),
                _ => continue,
            };
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.filter_map(Result::ok) {
                let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                else {
                    continue;
                };
                let thread = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                let thread = thread.trim();
                // The main thread carries the process's name.
                let key = if process.starts_with("keepalived") || thread == comm.trim() {
                    format!("{} {process}", d.name)
                } else {
                    format!("{} {process}/{thread}", d.name)
                };
                *cpu.entry(key).or_insert(0) += ns;
            }
        }
    }
    cpu
}

/// Whether director `i` has the VIP (a killed master keeps it on its
/// cut interface: [`Net::holder`] would still name it).
fn holds(net: &Net, i: usize) -> bool {
    has_addr(&net.lab, &net.directors[i], "eth0", e2e::VIP)
}

/// Waits until director `i`'s kernel runs keepalived's `role` ("master"
/// or "backup") sync daemon on eth0 with sync id 51 (`ipvsadm -L
/// --daemon`; the kernel also reports maxlen, group, port and ttl).
#[track_caller]
fn wait_sync_daemon(net: &Net, i: usize, role: &str) {
    let want = format!("{role} sync daemon (mcast=eth0, syncid=51");
    if wait_until(T, || {
        e2e::ipvsadm(net, i, &["-L", "--daemon"]).contains(&want)
    })
    .is_none()
    {
        panic!(
            "keepalived: no {role} sync daemon on lb{} within {T:?}: {:?}",
            i + 1,
            e2e::ipvsadm(net, i, &["-L", "--daemon"])
        );
    }
}

struct Sample {
    /// % of the VM's CPU used by both directors' daemons under the load,
    /// before the death.
    cpu: f64,
    /// The same, per director, process and thread ([`daemons_cpu`]).
    breakdown: BTreeMap<String, f64>,
    failed: usize,
    outage: Duration,
    vip_moved: Duration,
    requests: usize,
    long: Result<(), String>,
}

fn failover_once(which: Impl, run: usize) -> Sample {
    let net = e2e::net(&format!("bench_{}_{run}", which.name()), Mode::Dr, 3);
    let _servers = e2e::start_servers(&net);
    let mut lb1 = Director::start(which, &net, 0, 150);
    let mut lb2 = Director::start(which, &net, 1, 100);
    wait_ready(&net, &lb1, &lb2);

    // TANDEM_BENCH_CAPTURE=1: what the client's eth0 sees around the
    // death, for reading with tshark (`capture-IMPL-RUN.pcap` in the VM
    // run's directory; the cut's epoch time and every request's start and
    // outcome in `capture-IMPL-RUN.txt`).
    let capture = std::env::var_os("TANDEM_BENCH_CAPTURE").map(|_| {
        let pcap = vm::dir().join(format!("capture-{}-{run}.pcap", which.name()));
        let mut cmd = net.lab.command(
            &net.client,
            &[
                "dumpcap",
                "-q",
                "-i",
                "eth0",
                "-s",
                "160",
                "-w",
                pcap.to_str().unwrap(),
            ],
        );
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd.spawn().expect("dumpcap (Debian package tshark) runs");
        (child, pcap)
    });
    // The long connection first: Python starts slowly under emulation,
    // slower still beside the load.
    let long = LongConnection::open(&net);
    let load = Load::start(&net, REQUEST_EVERY, REQUEST_TIMEOUT);
    long.carries(10, T)
        .unwrap_or_else(|e| panic!("the long connection does not work before the failover: {e}"));
    // The daemons' cost under the load, over 2 s.
    let cpu0 = daemons_cpu(&net);
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu1 = daemons_cpu(&net);
    let secs = window.elapsed().as_secs_f64();
    let breakdown: BTreeMap<String, f64> = cpu1
        .iter()
        .map(|(k, ns)| {
            let used = ns.saturating_sub(cpu0.get(k).copied().unwrap_or(0));
            (k.clone(), used as f64 / 1e9 / secs * 100.0)
        })
        .collect();
    let cpu = breakdown.values().sum();
    let before = load.results();
    assert!(
        before.iter().filter(|r| r.1).count() > 20,
        "the load is not served: {before:?}\n{}",
        load.log()
    );

    // The master dies: cable cut, daemons killed with SIGKILL. The cut
    // comes first: it stops the adverts and the forwarding (the kernel's
    // IPVS table and the VIP outlive the daemons) at one instant for both
    // implementations. Killed first, keepalived's master would go on
    // forwarding for the half second its kill takes under emulation
    // (pkill reaps its three processes), tandem's for 30 ms, while
    // lb2's Master_Down timer already runs: a head start for keepalived.
    std::thread::sleep(ADVERT.mul_f64(tandem_tests::jitter()));
    let killed = tandem_tests::epoch_secs();
    net.lab.cut(&net.directors[0], "eth0");
    let t_cut = tandem_tests::epoch_secs();
    lb1.kill9();
    let mut moved = f64::NAN;
    wait("lb2 takes the VIP", || {
        let has = holds(&net, 1);
        if has {
            moved = tandem_tests::epoch_secs();
        }
        has
    });
    // From the end of the cut (its `ip` takes a few hundred ms to start
    // under emulation, and the link goes down at its very end).
    let vip_moved = Duration::from_secs_f64((moved - t_cut).max(0.0));
    wait("the load is served again", || {
        load.results().iter().any(|r| r.0 > killed && r.1)
    });
    // lb2 sends the connections it now serves.
    match &lb2 {
        Director::Tandem(d) => wait("tandem: lb2 is the sync master", || {
            d.healthd.status().dataplane.connection_sync.as_deref()
                == Some("master on eth0, sync id 51")
        }),
        Director::Keepalived(_) => wait_sync_daemon(&net, 1, "master"),
    }
    std::thread::sleep(Duration::from_secs(2));
    if let Some((mut child, pcap)) = capture {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let _ = child.wait();
        let mut log = format!("cut {killed:.6} {t_cut:.6}\n");
        for r in load.results() {
            let _ = writeln!(log, "request {:.6} {}", r.0, r.1);
        }
        std::fs::write(pcap.with_extension("txt"), log).unwrap();
        if let Director::Tandem(d) = &lb2 {
            std::fs::write(pcap.with_extension("vrrpd.log"), d.vrrpd.log()).unwrap();
        }
    }
    let results = load.results();
    // The request in flight at the death fails too: count from one
    // request timeout before it (none fails before the death).
    let since = killed - REQUEST_TIMEOUT.as_secs_f64();
    assert!(
        results.iter().all(|r| r.1 || r.0 >= since),
        "requests failed before the death: {results:?}"
    );
    let (failed, outage) = e2e::outage(&results, since);
    let long = long.carries(10, T);
    let requests = results.iter().filter(|r| r.0 >= since).count();
    load.stop();
    lb2.kill9();
    Sample {
        cpu,
        breakdown,
        failed,
        outage,
        vip_moved,
        requests,
        long,
    }
}

/// Inside the VM: every run, one line each in the run directory's
/// `results` (written as they come: a run that fails or a VM that times
/// out still leaves the ones before).
fn in_vm(runs: usize) -> ExitCode {
    let path = vm::dir().join(RESULTS);
    let mut ok = true;
    for run in 0..runs {
        let order = if run % 2 == 0 {
            [Impl::Tandem, Impl::Keepalived]
        } else {
            [Impl::Keepalived, Impl::Tandem]
        };
        for which in order {
            let line = match std::panic::catch_unwind(|| failover_once(which, run)) {
                Ok(s) => format!(
                    "cpu {} {run} {}\nrun {} {run} {:.1} {} {:.0} {:.0} {} {}",
                    which.name(),
                    s.breakdown
                        .iter()
                        .map(|(k, v)| format!("{}={v:.2}", k.replace(' ', ":")))
                        .collect::<Vec<_>>()
                        .join(" "),
                    which.name(),
                    s.cpu,
                    s.failed,
                    s.outage.as_secs_f64() * 1000.0,
                    s.vip_moved.as_secs_f64() * 1000.0,
                    s.requests,
                    match s.long {
                        Ok(()) => "survived".to_string(),
                        Err(e) => format!("broken {}", e.replace('\n', " ")),
                    }
                ),
                Err(e) => {
                    ok = false;
                    let why = e
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| e.downcast_ref::<&str>().copied())
                        .unwrap_or("?");
                    let first = why.lines().next().unwrap_or("?");
                    format!("error {} {run} {first}", which.name())
                }
            };
            eprintln!("e2e_failover: {line}");
            let mut all = std::fs::read_to_string(&path).unwrap_or_default();
            all.push_str(&line);
            all.push('\n');
            std::fs::write(&path, all).unwrap();
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Row {
    which: String,
    run: usize,
    cpu: f64,
    failed: usize,
    outage_ms: f64,
    vip_ms: f64,
    requests: usize,
    long: String,
}

/// One run's CPU of one director's process or thread ([`daemons_cpu`]).
struct Cpu {
    which: String,
    run: usize,
    /// `lb1 tandem-healthd/ipvs`.
    key: String,
    pct: f64,
}

fn parse(results: &str) -> (Vec<Row>, Vec<Cpu>, Vec<String>) {
    let mut rows = Vec::new();
    let mut cpus = Vec::new();
    let mut errors = Vec::new();
    for line in results.lines() {
        let w: Vec<&str> = line.splitn(9, ' ').collect();
        match w.first() {
            Some(&"cpu") => {
                let mut f = line.split(' ');
                let which = f.nth(1).unwrap_or("?").to_string();
                let run = f.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                for kv in f {
                    if let Some((k, v)) = kv.split_once('=') {
                        cpus.push(Cpu {
                            which: which.clone(),
                            run,
                            key: k.replace(':', " "),
                            pct: v.parse().unwrap_or(f64::NAN),
                        });
                    }
                }
            }
            Some(&"run") if w.len() == 9 => rows.push(Row {
                which: w[1].to_string(),
                run: w[2].parse().unwrap_or(0),
                cpu: w[3].parse().unwrap_or(f64::NAN),
                failed: w[4].parse().unwrap_or(0),
                outage_ms: w[5].parse().unwrap_or(f64::NAN),
                vip_ms: w[6].parse().unwrap_or(f64::NAN),
                requests: w[7].parse().unwrap_or(0),
                long: w[8].to_string(),
            }),
            _ => errors.push(line.to_string()),
        }
    }
    (rows, cpus, errors)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".to_string()
    }
}

/// Which part of the work a process or thread (a [`Cpu`] key without
/// its director) does, to set tandem's daemons beside keepalived's
/// processes.
fn part(process: &str) -> &'static str {
    match process {
        "tandem-vrrpd" | "keepalived-vrrp" => "VRRP (tandem-vrrpd; keepalived's VRRP process)",
        "keepalived-parent" => "keepalived's parent process",
        p if p.starts_with("tandem-healthd/ipvs") => "IPVS programming (healthd's ipvs thread)",
        _ => {
            "health checks (healthd's main thread; keepalived's checker process, its IPVS work included)"
        }
    }
}

fn report(runs: usize, rows: &[Row], cpus: &[Cpu], errors: &[String], vm_secs: f64) -> String {
    let mut s = format!(
        "end-to-end failover under load, DR, tandem vs keepalived 2.2.7, one VM run (TCG), {runs} runs each\n\
         adverts {} ms (VRRPv3), checks every {} ms, a request every {} ms (300 ms timeout), connection sync on\n\n",
        ADVERT.as_millis(),
        CHECK_INTERVAL.as_millis(),
        REQUEST_EVERY.as_millis()
    );
    for r in rows {
        let _ = writeln!(
            s,
            "  run {} {:<10} failed {:>3} of {:>4} requests, outage {:>5.0} ms, VIP on lb2 {:>5.0} ms after the cut, long connection {}, daemons' CPU {:>4.1} %",
            r.run, r.which, r.failed, r.requests, r.outage_ms, r.vip_ms, r.long, r.cpu
        );
    }
    for e in errors {
        let _ = writeln!(s, "  FAILED: {e}");
    }
    let of = |which: &str| -> Vec<&Row> { rows.iter().filter(|r| r.which == which).collect() };
    let (t, k) = (of("tandem"), of("keepalived"));
    let med = |rs: &[&Row], f: fn(&Row) -> f64| median(rs.iter().map(|r| f(r)).collect());
    let outage = (med(&t, |r| r.outage_ms), med(&k, |r| r.outage_ms));
    let failed = (med(&t, |r| r.failed as f64), med(&k, |r| r.failed as f64));
    let vip = (med(&t, |r| r.vip_ms), med(&k, |r| r.vip_ms));
    let cpu = (med(&t, |r| r.cpu), med(&k, |r| r.cpu));
    let broken = |rs: &[&Row]| rs.iter().filter(|r| r.long != "survived").count();
    let _ = write!(
        s,
        "\n| median of {runs} | tandem | keepalived | tandem / keepalived |\n|---|---|---|---|\n\
         | outage (first failed request to the next success) | {:.0} ms | {:.0} ms | {} |\n\
         | failed requests (20 ms apart) | {:.0} | {:.0} | {} |\n\
         | long connections broken | {} of {} | {} of {} | |\n\
         | VIP seen on the backup after the cut (polled, coarse) | {:.0} ms | {:.0} ms | {} |\n\
         | CPU of both directors' daemons under the load (% of the VM's CPU) | {:.1} % | {:.1} % | {} |\n",
        outage.0,
        outage.1,
        ratio(outage.0, outage.1),
        failed.0,
        failed.1,
        ratio(failed.0, failed.1),
        broken(&t),
        t.len(),
        broken(&k),
        k.len(),
        vip.0,
        vip.1,
        ratio(vip.0, vip.1),
        cpu.0,
        cpu.1,
        ratio(cpu.0, cpu.1),
    );
    // Where the CPU goes: each process and thread, the median over the
    // runs (a run where a thread did not exist counts as 0), and the same
    // summed by part of the work.
    let mut keys: Vec<(&str, &str)> = cpus
        .iter()
        .map(|c| (c.which.as_str(), c.key.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    let runs_of = |which: &str| rows.iter().filter(|r| r.which == which).count().max(1);
    let med_of = |which: &str, f: &dyn Fn(&Cpu) -> bool| -> f64 {
        let mut per_run: BTreeMap<usize, f64> = BTreeMap::new();
        for c in cpus.iter().filter(|c| c.which == which && f(c)) {
            *per_run.entry(c.run).or_insert(0.0) += c.pct;
        }
        let mut v: Vec<f64> = per_run.into_values().collect();
        v.resize(runs_of(which).max(v.len()), 0.0);
        median(v)
    };
    let _ = writeln!(
        s,
        "\nCPU under the load by process and thread (median of the runs, % of the VM's CPU):"
    );
    for (which, key) in &keys {
        let m = med_of(which, &|c: &Cpu| c.key == *key);
        let _ = writeln!(s, "  {which:<10} {key:<36} {m:>5.2} %");
    }
    let _ = write!(
        s,
        "\n| CPU by part of the work, both directors (median) | tandem | keepalived | tandem / keepalived |\n|---|---|---|---|\n"
    );
    let mut parts: Vec<&str> = keys
        .iter()
        .map(|(_, k)| part(k.split_once(' ').map_or(*k, |(_, p)| p)))
        .collect();
    parts.sort();
    parts.dedup();
    for p in parts {
        let in_part = |c: &Cpu| part(c.key.split_once(' ').map_or(&c.key, |(_, p)| p)) == p;
        let (t, k) = (med_of("tandem", &in_part), med_of("keepalived", &in_part));
        let _ = writeln!(s, "| {p} | {t:.2} % | {k:.2} % | {} |", ratio(t, k));
    }
    let _ = writeln!(s, "\nVM run: {vm_secs:.0} s");
    s
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        return ExitCode::SUCCESS; // cargo bench --list
    }
    let runs: usize = std::env::var("TANDEM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    if vm::inside() {
        return in_vm(runs);
    }
    binary("tandem-vrrpd");
    binary("tandem-healthd");
    let Some(machine) = vm::require("e2e_failover") else {
        return ExitCode::SUCCESS;
    };
    let exe = std::env::current_exe().expect("the bench's own path");
    println!(
        "e2e_failover: {runs} runs each of tandem and keepalived in one VM (a few minutes per pair)"
    );
    let mut scenario = machine.scenario("e2e_failover");
    if let Ok(v) = std::env::var("TANDEM_BENCH_CAPTURE") {
        scenario = scenario.env("TANDEM_BENCH_CAPTURE", v);
    }
    let out = scenario
        .memory_mib(1536)
        .env("TANDEM_BENCH_RUNS", runs.to_string())
        .timeout(Duration::from_secs(120) + RUN_BUDGET * (2 * runs as u32))
        .script(format!(
            "exec {} --in-vm",
            vm::shell_quote(&exe.display().to_string())
        ))
        .run();
    let results = std::fs::read_to_string(out.path(RESULTS)).unwrap_or_default();
    // The run's directory goes with `out`: captures are kept beside the
    // record.
    let captures = target_dir().join("e2e-captures");
    for e in std::fs::read_dir(out.path(""))
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("capture-") {
            std::fs::create_dir_all(&captures).unwrap();
            std::fs::copy(e.path(), captures.join(e.file_name())).unwrap();
        }
    }
    let (rows, cpus, errors) = parse(&results);
    let text = report(runs, &rows, &cpus, &errors, out.elapsed.as_secs_f64());
    print!("{text}");
    let record = target_dir().join("e2e-bench.txt");
    std::fs::write(&record, &text).unwrap();
    println!("recorded in {}", record.display());
    if !out.success() {
        eprintln!("{out}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
