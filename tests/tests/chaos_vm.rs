//! The chaos soak, in the test VM: a pair under steady HTTP load while a
//! seeded schedule kills directors, cuts links, partitions the pair,
//! flaps real servers, stops vrrpd, drains and kills healthd, reloads a
//! broken configuration and storms SIGHUP, changes a weight on both
//! directors. From one Master_Down_Interval after a cut or a partition
//! heals, never two masters. After each fault has healed, the
//! invariants: lb1 (the higher priority, preempting) master and the only
//! VIP holder, lb2 backup, both IPVS tables full at the file's weights,
//! the drains and the running configuration kept, no VIP on a director
//! whose vrrpd stopped; and over the whole run, requests fail only inside
//! fault windows and each long-lived daemon's memory stays flat.
//!
//! `TANDEM_CHAOS_SEED` replays a schedule (every run prints its seed);
//! `TANDEM_CHAOS_STEPS` sets its length (CI runs 10: every kind of fault
//! once, then two drawn).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tandem_model::api::VrrpState::{Backup, Master};
use tandem_tests::chaos::{Memory, Rng};
use tandem_tests::cluster::has_addr;
use tandem_tests::e2e::{self, Load, Mode, TandemDirector, VIP};
use tandem_tests::netns::wait_until;
use tandem_tests::vm;

/// Converging after a fault: preempt_delay (3 s), checks settling, a
/// busy emulated CPU.
const SETTLE: Duration = Duration::from_secs(30);
/// After a fault has converged, a quiet stretch in which nothing may
/// fail: the invariants hold between faults, not just eventually.
const QUIET: Duration = Duration::from_secs(4);
/// A request started before convergence may still time out (1 s) after
/// it, and an ARP cache may point at the old holder a moment longer.
const GRACE: f64 = 2.5;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Both daemons killed with SIGKILL and the cable cut (a dead box),
    /// then back.
    KillDirector(usize),
    CutLink(usize),
    /// The directors stop hearing each other; both still reach the rest.
    Partition,
    FlapServer(usize),
    /// SIGTERM to vrrpd: it must take its VIP with it.
    StopVrrpd(usize),
    /// A drain, then healthd killed with SIGKILL and restarted.
    DrainThenKillHealthd(usize),
    /// A broken file and SIGHUP to both daemons; then the good file back
    /// and a storm of SIGHUPs.
    BadReloadThenStorm(usize),
    /// A valid change on both directors, as an operator makes one: rs1's
    /// weight in the HTTP service, then SIGHUP to every daemon.
    ChangeWeight(u32),
}

/// The schedule: every kind of fault once, in a seeded order, then
/// seeded draws.
fn schedule(rng: &mut Rng, steps: usize) -> Vec<Fault> {
    let mut kinds: Vec<u64> = (0..KINDS).collect();
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i as u64 + 1) as usize);
    }
    (0..steps)
        .map(|i| {
            let kind = kinds.get(i).copied().unwrap_or_else(|| rng.below(KINDS));
            fault(kind, rng)
        })
        .collect()
}

const KINDS: u64 = 8;

fn fault(kind: u64, rng: &mut Rng) -> Fault {
    let d = rng.below(2) as usize;
    match kind {
        0 => Fault::KillDirector(d),
        1 => Fault::CutLink(d),
        2 => Fault::Partition,
        3 => Fault::FlapServer(rng.below(3) as usize),
        4 => Fault::StopVrrpd(d),
        5 => Fault::DrainThenKillHealthd(d),
        6 => Fault::BadReloadThenStorm(d),
        _ => Fault::ChangeWeight(2 + rng.below(8) as u32),
    }
}

/// The HTTP service's first real server, whose weight
/// [`Fault::ChangeWeight`] moves.
const WEIGHTED: &str = "10.90.0.11:80";

/// `file` with [`WEIGHTED`]'s weight set to `w` (`e2e::config` leaves it
/// at the default, 1).
fn with_weight(file: &str, w: u32) -> String {
    let at = format!("address = \"{WEIGHTED}\"\n");
    assert!(file.contains(&at), "no {WEIGHTED} in the file");
    file.replacen(&at, &format!("{at}weight = {w}\n"), 1)
}

/// For `wait_until`: settled, or not yet and asked again in 250 ms. Each
/// look runs half a dozen `ip` and `ipvsadm` processes per director, and
/// asked every 10 ms they take the VM's one emulated CPU from the daemons
/// under test (a storm like that once made lb2 take over during a reload).
fn settled_yet(r: Result<(), String>) -> bool {
    if r.is_err() {
        std::thread::sleep(Duration::from_millis(240));
    }
    r.is_ok()
}

/// [`WEIGHTED`]'s weight in director `i`'s kernel table (`ipvsadm -Ln`:
/// `-> ADDRESS FORWARD WEIGHT ACTIVE INACTIVE`).
fn kernel_weight(net: &e2e::Net, i: usize) -> Option<u32> {
    e2e::ipvsadm(net, i, &["-Ln"]).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 4 && f[0] == "->" && f[1] == WEIGHTED)
            .then(|| f[3].parse().ok())
            .flatten()
    })
}

/// Master_Down_Interval of the pair's backup (RFC 5798 6.1: three
/// adverts and the skew of priority 100, at 200 ms adverts), the longer
/// of the two directors'.
const MDI: Duration = Duration::from_millis(600 + (256 - 100) * 200 / 256);

/// After a heal both directors may be master a moment: RFC 5798 6.4.3
/// ends it at the first advert the lower priority hears. From one
/// Master_Down_Interval after `healed` on, for 1.5 s (before a returning
/// lb1's preempt_delay of 3 s can end), they never both say master. A
/// sample is timed when it is asked for, so an answer given later still
/// counts from the earlier instant.
fn one_master_after(d: &[TandemDirector; 2], healed: Instant) -> Result<usize, String> {
    let from = healed + MDI;
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let mut samples = 0;
    while Instant::now() < from + Duration::from_millis(1500) {
        let asked = Instant::now();
        let (s1, s2) = (d[0].vrrpd.state("web"), d[1].vrrpd.state("web"));
        if (s1, s2) == (Master, Master) {
            return Err(format!(
                "both directors master {:?} after the heal, past its Master_Down_Interval ({MDI:?})",
                asked - healed
            ));
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(samples)
}

#[test]
fn a_pair_under_load_survives_a_seeded_schedule_of_faults_and_loses_nothing() {
    let seed = Rng::seed_from_env();
    let steps = Rng::steps_from_env(10);
    if !vm::inside() {
        eprintln!("chaos soak: TANDEM_CHAOS_SEED={seed} TANDEM_CHAOS_STEPS={steps}");
    }
    if vm::booted_outside(&["tandem-vrrpd", "tandem-healthd"], |s| {
        s.memory_mib(768)
            .timeout(Duration::from_secs(150 + 45 * steps as u64))
            .env("TANDEM_CHAOS_SEED", seed.to_string())
            .env("TANDEM_CHAOS_STEPS", steps.to_string())
    }) {
        return;
    }
    soak(seed, steps);
}

fn soak(seed: u64, steps: usize) {
    eprintln!("chaos soak: seed {seed}, {steps} faults");
    let mut rng = Rng(seed);
    let net = e2e::net("chaos", Mode::Dr, 3);
    let _servers = e2e::start_servers(&net);
    let good = [
        e2e::config(&net, 150, "200ms", "300ms"),
        e2e::config(&net, 100, "200ms", "300ms"),
    ];
    let mut d = [
        TandemDirector::start(&net, 0, &good[0]),
        TandemDirector::start(&net, 1, &good[1]),
    ];
    let mut files: Vec<(String, String)> = d
        .iter()
        .map(|t| {
            (
                std::fs::read_to_string(&t.vrrpd.config).unwrap(),
                std::fs::read_to_string(&t.healthd.config).unwrap(),
            )
        })
        .collect();
    // As the directors started; a weight change is made on these.
    let base = files.clone();
    let load = Load::start(&net, Duration::from_millis(50), Duration::from_secs(1));

    // Fault windows: (start, end) in epoch seconds; a failure outside
    // every one of them is a violation.
    let mut windows: Vec<(f64, f64)> = Vec::new();
    let mut journal = String::new();
    let mut memory = Memory::default();
    let mut drained: Option<(usize, String)> = None;

    // The settled state every step must come back to.
    let mut weight = 1;
    let settled = |d: &[TandemDirector; 2],
                   drained: &Option<(usize, String)>,
                   weight: u32|
     -> Result<(), String> {
        let holders: Vec<usize> = (0..2)
            .filter(|&i| has_addr(&net.lab, &net.directors[i], "eth0", VIP))
            .collect();
        // lb1 has the higher priority and preempts (after
        // preempt_delay) whenever it is back: settled means it holds
        // the VIP again, not just that someone does (lb2 holding it is
        // a state on the way).
        if holders != [0] {
            return Err(format!("VIP holders {holders:?}, want lb1 alone"));
        }
        let (s1, s2) = (d[0].vrrpd.state("web"), d[1].vrrpd.state("web"));
        if (s1, s2) != (Master, Backup) {
            return Err(format!("lb1 is {s1}, lb2 {s2}"));
        }
        for (i, t) in d.iter().enumerate() {
            let st = t.healthd.status();
            for v in &st.virtual_servers {
                let want = match drained {
                    Some((j, vs)) if *j == i && *vs == v.name => 2,
                    _ => 3,
                };
                if v.up != want {
                    return Err(format!("lb{} {}: {} up, want {want}", i + 1, v.name, v.up));
                }
            }
            let table = e2e::ipvs_real_servers(&net, i);
            if table != [3, 3] {
                return Err(format!("lb{} IPVS table {table:?}", i + 1));
            }
            let w = kernel_weight(&net, i);
            if w != Some(weight) {
                return Err(format!(
                    "lb{} has {WEIGHTED} at weight {w:?}, the file {weight}",
                    i + 1
                ));
            }
        }
        Ok(())
    };
    wait_until(SETTLE, || settled_yet(settled(&d, &drained, weight))).unwrap_or_else(|| {
        panic!(
            "the pair never settled: {:?}",
            settled(&d, &drained, weight)
        )
    });

    let run_started = Instant::now();
    let faults = schedule(&mut rng, steps);
    for (step, &fault) in faults.iter().enumerate() {
        let start = tandem_tests::epoch_secs();
        let _ = writeln!(
            journal,
            "{:7.1}s step {step}: {fault:?}",
            run_started.elapsed().as_secs_f64()
        );
        eprintln!("chaos step {step}: {fault:?}");
        match fault {
            Fault::KillDirector(i) => {
                d[i].kill9();
                net.lab.cut(&net.directors[i], "eth0");
                std::thread::sleep(rng.ms(2000, 5000));
                // A dead box comes back without its addresses (a reboot).
                let _ = net.lab.exec(
                    &net.directors[i],
                    &["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"],
                );
                net.lab.heal(&net.directors[i], "eth0");
                d[i].restart(&net.lab);
            }
            Fault::CutLink(i) => {
                net.lab.cut(&net.directors[i], "eth0");
                std::thread::sleep(rng.ms(1500, 4000));
                net.lab.heal(&net.directors[i], "eth0");
                let n = one_master_after(&d, Instant::now())
                    .unwrap_or_else(|e| panic!("step {step}: {e}\n{journal}"));
                let _ = writeln!(
                    journal,
                    "         one master from MDI after the heal ({n} samples)"
                );
            }
            Fault::Partition => {
                for h in &net.directors {
                    net.lab.isolate(h, "eth0", true);
                }
                std::thread::sleep(rng.ms(1500, 4000));
                for h in &net.directors {
                    net.lab.isolate(h, "eth0", false);
                }
                let n = one_master_after(&d, Instant::now())
                    .unwrap_or_else(|e| panic!("step {step}: {e}\n{journal}"));
                let _ = writeln!(
                    journal,
                    "         one master from MDI after the heal ({n} samples)"
                );
            }
            Fault::FlapServer(s) => {
                for _ in 0..1 + rng.below(3) {
                    net.lab.cut(&net.servers[s], "eth0");
                    std::thread::sleep(rng.ms(500, 2000));
                    net.lab.heal(&net.servers[s], "eth0");
                    std::thread::sleep(rng.ms(300, 1500));
                }
            }
            Fault::StopVrrpd(i) => {
                let status = d[i].vrrpd.stop();
                assert!(
                    status.is_some_and(|s| s.success()),
                    "step {step}: vrrpd on lb{} did not stop cleanly: {status:?}\n{}",
                    i + 1,
                    d[i].vrrpd.log()
                );
                assert!(
                    !has_addr(&net.lab, &net.directors[i], "eth0", VIP),
                    "step {step}: lb{}'s vrrpd stopped and left the VIP behind",
                    i + 1
                );
                std::thread::sleep(rng.ms(1000, 3000));
                d[i].vrrpd.restart(&net.lab);
            }
            Fault::DrainThenKillHealthd(i) => {
                let rs = format!("{}:80", net.rs_addr(2));
                if let Some((j, _)) = drained.take() {
                    let _: serde_json::Value = d[j]
                        .healthd
                        .post(
                            &format!("/virtual-servers/http/real-servers/{rs}/enable"),
                            &serde_json::json!({}),
                        )
                        .unwrap();
                }
                let _: serde_json::Value = d[i]
                    .healthd
                    .post(
                        &format!("/virtual-servers/http/real-servers/{rs}/drain"),
                        &serde_json::json!({}),
                    )
                    .unwrap();
                drained = Some((i, "http".to_string()));
                d[i].healthd.signal(libc::SIGKILL);
                std::thread::sleep(rng.ms(500, 2000));
                d[i].healthd.restart(&net.lab);
                assert!(
                    d[i].healthd.real_server("http", &rs).drained,
                    "step {step}: lb{}'s drain of {rs} was lost with its healthd",
                    i + 1
                );
            }
            Fault::BadReloadThenStorm(i) => {
                let before = d[i].vrrpd.instance("web").counters;
                let broken = |s: &str| format!("{s}\n[[vrrp_instance]]\nname = 7\n");
                std::fs::write(&d[i].vrrpd.config, broken(&files[i].0)).unwrap();
                std::fs::write(&d[i].healthd.config, broken(&files[i].1)).unwrap();
                d[i].vrrpd.signal(libc::SIGHUP);
                d[i].healthd.signal(libc::SIGHUP);
                std::thread::sleep(Duration::from_secs(1));
                assert!(
                    d[i].vrrpd.alive(),
                    "step {step}: vrrpd died of a broken file:\n{}",
                    d[i].vrrpd.log()
                );
                assert_eq!(
                    d[i].vrrpd.status().instances.len(),
                    1,
                    "step {step}: vrrpd lost its instance"
                );
                assert_eq!(
                    d[i].healthd.status().virtual_servers.len(),
                    2,
                    "step {step}: healthd lost its virtual servers"
                );
                std::fs::write(&d[i].vrrpd.config, &files[i].0).unwrap();
                std::fs::write(&d[i].healthd.config, &files[i].1).unwrap();
                for _ in 0..20 {
                    d[i].vrrpd.signal(libc::SIGHUP);
                    d[i].healthd.signal(libc::SIGHUP);
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_secs(1));
                let after = d[i].vrrpd.instance("web").counters;
                assert_eq!(
                    after.transitions,
                    before.transitions,
                    "step {step}: a refused file and a SIGHUP storm of the same file moved lb{}'s state",
                    i + 1
                );
            }
            Fault::ChangeWeight(w) => {
                weight = w;
                let before: Vec<u64> = d
                    .iter()
                    .map(|t| t.vrrpd.instance("web").counters.transitions)
                    .collect();
                for (i, t) in d.iter().enumerate() {
                    files[i] = (with_weight(&base[i].0, w), with_weight(&base[i].1, w));
                    std::fs::write(&t.vrrpd.config, &files[i].0).unwrap();
                    std::fs::write(&t.healthd.config, &files[i].1).unwrap();
                    t.vrrpd.signal(libc::SIGHUP);
                    t.healthd.signal(libc::SIGHUP);
                }
                // Within the detection time (a check interval and a
                // sync), generous under emulation. Asked every 250 ms: an
                // `ipvsadm` every 10 ms is a storm of processes that takes
                // the one emulated CPU from the daemons under test.
                for (i, t) in d.iter().enumerate() {
                    let got = wait_until(Duration::from_secs(10), || {
                        let ok = kernel_weight(&net, i) == Some(w);
                        if !ok {
                            std::thread::sleep(Duration::from_millis(240));
                        }
                        ok
                    });
                    assert!(
                        got.is_some(),
                        "step {step}: lb{}'s kernel has {WEIGHTED} at weight {:?}, the file {w}\n{}",
                        i + 1,
                        kernel_weight(&net, i),
                        t.healthd.log()
                    );
                }
                let after: Vec<u64> = d
                    .iter()
                    .map(|t| t.vrrpd.instance("web").counters.transitions)
                    .collect();
                assert_eq!(
                    after,
                    before,
                    "step {step}: a weight change moved a director's VRRP state\n--- lb1 ---\n{}\n--- lb2 ---\n{}",
                    d[0].vrrpd.log(),
                    d[1].vrrpd.log()
                );
            }
        }
        let took = wait_until(SETTLE, || settled_yet(settled(&d, &drained, weight))).unwrap_or_else(|| {
            panic!(
                "step {step} ({fault:?}, seed {seed}): not settled after {SETTLE:?}: {:?}\n{journal}\n--- lb1 ---\n{}\n--- lb2 ---\n{}",
                settled(&d, &drained, weight),
                d[0].vrrpd.log(),
                d[1].vrrpd.log()
            )
        });
        let end = tandem_tests::epoch_secs();
        windows.push((start, end + GRACE));
        let _ = writeln!(
            journal,
            "         settled {:.1}s after the fault ended",
            took.as_secs_f64()
        );
        // The quiet stretch: the settled state holds, sampled.
        let quiet_until = Instant::now() + QUIET;
        while Instant::now() < quiet_until {
            if let Err(e) = settled(&d, &drained, weight) {
                panic!("step {step} ({fault:?}, seed {seed}): settled, then {e}\n{journal}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for (i, t) in d.iter().enumerate() {
            for (name, pid) in [("vrrpd", t.vrrpd.pid()), ("healthd", t.healthd.pid())] {
                memory.look(format!("lb{} {name}", i + 1), pid);
            }
        }
    }
    let why = load.failures(0.0);
    let results = load.stop();

    let outside: Vec<f64> = results
        .iter()
        .filter(|r| !r.1 && !windows.iter().any(|w| r.0 >= w.0 && r.0 <= w.1))
        .map(|r| r.0)
        .collect();
    let failed = results.iter().filter(|r| !r.1).count();
    // What made a vrrpd late, as it logged it (a wake-up past its
    // deadline, an input that held its loop): the soak's evidence when a
    // backup took over without a fault.
    for (i, t) in d.iter().enumerate() {
        let log = t.vrrpd.log();
        let late: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("after a deadline") || l.contains("held the loop"))
            .collect();
        eprintln!("lb{} vrrpd was late {} time(s)", i + 1, late.len());
        for l in late {
            eprintln!("  {l}");
        }
    }
    eprintln!(
        "chaos soak: seed {seed}, {steps} faults in {:.0}s, {} requests, {failed} failed, {} outside a fault window\n{journal}",
        run_started.elapsed().as_secs_f64(),
        results.len(),
        outside.len()
    );
    assert!(
        outside.is_empty(),
        "requests failed outside every fault window (seed {seed}) at {outside:?}\nwindows {windows:?}\nfailures {why:?}\n{journal}\n--- lb1 vrrpd ---\n{}\n--- lb2 vrrpd ---\n{}\n--- lb1 healthd ---\n{}\n--- lb2 healthd ---\n{}",
        d[0].vrrpd.log(),
        d[1].vrrpd.log(),
        d[0].healthd.log(),
        d[1].healthd.log()
    );
    memory.assert_flat(seed);
}
