use super::*;
use ipvsctl::reconcile::{Options, plan};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// Virtual server "web" (192.0.2.10:80, direct routing, sorry server
/// 10.0.0.99) with a TCP check every second and real servers
/// 10.0.0.11 (weight 10) and 10.0.0.12 (weight 20). `vs` goes into the
/// virtual server, `check` into its check (rise, fall), `top` after it.
pub(crate) fn web_config(vs: &str, check: &str, top: &str) -> Config {
    tandem_model::config::parse(
        &format!(
            r#"
[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
forwarding = "dr"
sorry_server = "10.0.0.99"
{vs}
[virtual_server.check]
type = "tcp"
interval = "1s"
timeout = "500ms"
{check}
[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 10
[[virtual_server.real_server]]
address = "10.0.0.12"
weight = 20
{top}
"#
        ),
        "t.toml",
    )
    .unwrap()
}

fn config(extra_vs: &str) -> Config {
    web_config(&format!("quorum = 2\n{extra_vs}"), "rise = 1\nfall = 1", "")
}

fn rs(n: u8) -> SocketAddr {
    format!("10.0.0.{n}:80").parse().unwrap()
}

fn weights(t: &Table) -> Vec<(SocketAddr, u32)> {
    t.services[0]
        .dests
        .iter()
        .map(|d| (d.addr, d.settings.weight))
        .collect()
}

fn probe_of(e: &Engine, n: u8) -> ProbeRef {
    let id = e
        .subscribers
        .iter()
        .position(|subs| subs.iter().any(|(v, r)| e.vss[*v].rs[*r].addr == rs(n)))
        .unwrap();
    ProbeRef {
        generation: e.generations[id],
        id: id as u32,
    }
}

fn up() -> Outcome {
    Outcome::up("connected", Duration::from_millis(1))
}

fn down() -> Outcome {
    Outcome::down("connection refused", Duration::from_millis(1))
}

fn with_conns(mut t: Table, n: u8, conns: u32) -> Table {
    for d in &mut t.services[0].dests {
        if d.addr == rs(n) {
            d.counters.active_conns = conns;
        }
    }
    t
}

#[test]
fn a_restart_adopts_the_kernel_table_and_changes_nothing() {
    let c = config("");
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let want = e.desired(t0, &kernel);
    assert!(plan(&want, &kernel, Options::default()).is_empty());
    assert!(e.quorum()[0].1);
}

/// The table another owner left (keepalived's, or this healthd's before
/// it was killed) after `down` failed their checks.
fn table_after(c: &Config, t0: Instant, down_servers: &[u8]) -> Table {
    let empty = Table::default();
    let mut e = Engine::new(c, t0, &empty, BTreeSet::new()).unwrap();
    for n in down_servers {
        let p = probe_of(&e, *n);
        e.record(t0, p, down());
    }
    for n in [11, 12].iter().filter(|n| !down_servers.contains(n)) {
        let p = probe_of(&e, *n);
        e.record(t0, p, up());
    }
    e.desired(t0, &empty)
}

#[test]
fn a_start_adopts_the_down_servers_of_the_table_it_finds_and_changes_nothing() {
    let t0 = Instant::now();
    // Below quorum: the failed servers are out and the sorry server in.
    let c = config("");
    let kernel = table_after(&c, t0, &[11, 12]);
    assert_eq!(
        weights(&kernel).len(),
        1,
        "only the sorry server: {kernel:?}"
    );
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let want = e.desired(t0, &kernel);
    assert!(plan(&want, &kernel, Options::default()).is_empty());
    assert!(!e.quorum()[0].1);
    // inhibit_on_failure: the failed server is in at weight 0.
    let c = web_config("inhibit_on_failure = true", "rise = 1\nfall = 1", "");
    let kernel = table_after(&c, t0, &[11]);
    assert_eq!(weights(&kernel), [(rs(11), 0), (rs(12), 20)]);
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let want = e.desired(t0, &kernel);
    assert!(plan(&want, &kernel, Options::default()).is_empty());
    // It comes back at its first success (rise 1), not before.
    let p = probe_of(&e, 11);
    e.record(t0 + S, p, up());
    assert_eq!(
        weights(&e.desired(t0 + S, &kernel)),
        [(rs(11), 10), (rs(12), 20)]
    );
}

#[test]
fn a_failed_server_drains_at_weight_zero_and_then_leaves() {
    let c = config("");
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let p = probe_of(&e, 11);
    let ev = e.record(t0, p, down());
    assert!(
        matches!(&ev[0], EventKind::RealServerHealth { up: false, reason, .. } if reason == "connection refused")
    );
    // With connections: weight 0 (one SET_DEST), not deleted.
    let busy = with_conns(kernel.clone(), 11, 3);
    let want = e.desired(t0, &busy);
    assert_eq!(weights(&want)[..2], [(rs(11), 0), (rs(12), 20)]);
    let ops = plan(&want, &busy, Options::default());
    assert_eq!(ops.len(), 2, "{ops:?}"); // weight 0 for .11, and the sorry server joins (quorum 2 lost)
    // Once idle it leaves.
    let idle = with_conns(want.clone(), 11, 0);
    let want = e.desired(t0 + S, &idle);
    assert!(want.services[0].dest(rs(11)).is_none());
    // A stuck connection does not hold it past drain_timeout (30 s).
    let mut e2 = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    e2.record(t0, p, down());
    let busy = with_conns(kernel.clone(), 11, 3);
    assert!(e2.desired(t0, &busy).services[0].dest(rs(11)).is_some());
    assert!(
        e2.desired(t0 + 31 * S, &busy).services[0]
            .dest(rs(11))
            .is_none()
    );
}

#[test]
fn a_check_this_director_could_not_run_changes_no_health() {
    let c = config("");
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let p = probe_of(&e, 11);
    // fall = 1: one real failure would take it out.
    let out_of_fds = Outcome::local("cannot check: Too many open files (os error 24)");
    assert!(e.record(t0, p, out_of_fds).is_empty());
    assert_eq!(e.not_run(), 1);
    assert_eq!(
        weights(&e.desired(t0, &kernel)),
        [(rs(11), 10), (rs(12), 20)]
    );
    assert_eq!(
        e.record(t0 + S, p, down()).len(),
        2,
        "down, and quorum lost"
    );
}

#[test]
fn inhibit_on_failure_keeps_a_failed_server_at_weight_zero() {
    let c = config("inhibit_on_failure = true");
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let p = probe_of(&e, 12);
    e.record(t0, p, down());
    let want = e.desired(t0 + 100 * S, &kernel);
    assert_eq!(want.services[0].dest(rs(12)).unwrap().settings.weight, 0);
    e.record(t0, p, up());
    let want = e.desired(t0 + 100 * S, &kernel);
    assert_eq!(want.services[0].dest(rs(12)).unwrap().settings.weight, 20);
}

#[test]
fn the_sorry_server_joins_below_quorum_and_leaves_when_it_is_back() {
    let c = config("");
    let t0 = Instant::now();
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    let sorry: SocketAddr = "10.0.0.99:80".parse().unwrap();
    for n in [11, 12] {
        let p = probe_of(&e, n);
        e.record(t0, p, up());
    }
    assert!(
        e.desired(t0, &Table::default()).services[0]
            .dest(sorry)
            .is_none()
    );
    let p = probe_of(&e, 12);
    let ev = e.record(t0, p, down());
    assert!(ev.contains(&EventKind::Quorum {
        virtual_server: "web".into(),
        met: false,
        up: 1,
        quorum: 2
    }));
    let t = e.desired(t0, &Table::default());
    assert_eq!(t.services[0].dest(sorry).unwrap().settings.weight, 1);
    e.record(t0, p, up());
    assert!(
        e.desired(t0, &Table::default()).services[0]
            .dest(sorry)
            .is_none()
    );
}

#[test]
fn a_drained_server_stays_at_weight_zero_and_does_not_count_for_quorum() {
    let c = config("");
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let ev = e
        .set_drain(Instant::now(), "web", "10.0.0.11", true)
        .unwrap();
    assert!(matches!(&ev[0], EventKind::Action { action, .. } if action == "drain"));
    assert!(
        ev.iter()
            .any(|x| matches!(x, EventKind::Quorum { met: false, .. }))
    );
    assert_eq!(
        e.desired(t0, &kernel).services[0]
            .dest(rs(11))
            .unwrap()
            .settings
            .weight,
        0
    );
    assert!(
        e.set_drain(Instant::now(), "web", "10.9.9.9", true)
            .unwrap_err()
            .contains("no real server 10.9.9.9")
    );
    e.set_drain(Instant::now(), "web", "10.0.0.11:80", false)
        .unwrap();
    assert_eq!(
        e.desired(t0, &kernel).services[0]
            .dest(rs(11))
            .unwrap()
            .settings
            .weight,
        10
    );
}

#[test]
fn an_unknown_server_counts_as_the_initial_state() {
    let t0 = Instant::now();
    let c = config("initial_state = \"down\"");
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    assert!(
        e.desired(t0, &Table::default()).services[0]
            .dest(rs(11))
            .is_none()
    );
    let c = config("");
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    assert!(
        e.desired(t0, &Table::default()).services[0]
            .dest(rs(11))
            .is_some()
    );
}

#[test]
fn a_reload_keeps_the_health_and_schedule_of_unchanged_servers() {
    let c = config("initial_state = \"down\"");
    let t0 = Instant::now();
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    let p = probe_of(&e, 11);
    e.record(t0, p, up());
    let next = e.next_deadline();
    let mut c2 = c.clone();
    c2.virtual_servers[0].real_servers[1].weight = 5;
    let changes = e.reload(&c2, t0, &Table::default()).unwrap();
    assert_eq!(changes, vec!["virtual server web: changed".to_string()]);
    assert!(
        e.desired(t0 + S, &Table::default()).services[0]
            .dest(rs(11))
            .is_some(),
        "still up"
    );
    assert_eq!(e.next_deadline(), next, "the schedule carried over");
    assert_eq!(probe_of(&e, 11), p, "the same probe");
    assert!(
        matches!(
            e.record(t0 + S, p, down())[..],
            [EventKind::RealServerHealth { up: false, .. }]
        ),
        "a check in flight across the reload still counts"
    );
}

#[test]
fn a_result_for_a_probe_the_reload_removed_is_dropped() {
    let c = config("");
    let t0 = Instant::now();
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    let stale = probe_of(&e, 12);
    let mut c2 = c.clone();
    c2.virtual_servers[0].real_servers.pop();
    e.reload(&c2, t0, &Table::default()).unwrap();
    assert_eq!(e.probes(), 1);
    assert!(e.record(t0 + S, stale, down()).is_empty());
    // The freed id serves the next new probe, under a new generation.
    e.reload(&c, t0, &Table::default()).unwrap();
    let fresh = probe_of(&e, 12);
    assert_eq!(fresh.id, stale.id);
    assert_ne!(fresh.generation, stale.generation);
    assert!(e.record(t0 + S, stale, down()).is_empty());
    assert_eq!(e.record(t0 + S, fresh, down()).len(), 2);
}

#[test]
fn an_unchanged_virtual_server_is_kept_whole_across_a_reload() {
    let mut c = config("");
    let mut other = c.virtual_servers[0].clone();
    other.name = "api".into();
    other.address = Some("192.0.2.20:80".parse().unwrap());
    c.virtual_servers.push(other);
    let t0 = Instant::now();
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    let ids = |e: &Engine| {
        e.vss
            .iter()
            .flat_map(|v| v.rs.iter().map(|r| r.probe_id))
            .collect::<Vec<_>>()
    };
    let before = ids(&e);
    e.vss[1].rs[0].leaving_since = Some(t0);
    let mut c2 = c.clone();
    c2.virtual_servers.swap(0, 1);
    c2.virtual_servers[1].quorum = 1;
    let changes = e.reload(&c2, t0, &Table::default()).unwrap();
    assert_eq!(changes, vec!["virtual server web: changed".to_string()]);
    assert_eq!(e.vss[0].cfg.name, "api");
    assert_eq!(e.vss[0].rs[0].leaving_since, Some(t0), "kept as it was");
    assert_eq!(e.probes(), 2, "the servers of both still share two probes");
    let mut after = ids(&e);
    after.rotate_left(2);
    assert_eq!(after, before);
    for id in 0..2u32 {
        assert_eq!(e.subscribers[id as usize].len(), 2);
    }
}

fn slow_config() -> Config {
    web_config(
        "slow_start = \"10s\"\nscheduler = \"wlc\"",
        "rise = 1\nfall = 1",
        "",
    )
}

#[test]
fn a_server_that_comes_back_ramps_its_weight_over_slow_start() {
    let c = slow_config();
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    // Adopted at start: serving already, so at full weight.
    assert_eq!(
        weights(&e.desired(t0, &kernel)),
        [(rs(11), 10), (rs(12), 20)]
    );
    assert!(!e.ramping());
    let p = probe_of(&e, 12);
    e.record(t0, p, down());
    let back = t0 + S;
    let ev = e.record(back, p, up());
    assert!(
        matches!(&ev[0], EventKind::RealServerHealth { up: true, reason, .. } if reason.ends_with("; slow start over 10s")),
        "{ev:?}"
    );
    assert!(e.ramping());
    let weight_at = |e: &mut Engine, secs: u32| weights(&e.desired(back + secs * S, &kernel))[1].1;
    // From 1 (never 0: IPVS would send it nothing) in a straight line.
    assert_eq!([0, 1, 5, 9].map(|s| weight_at(&mut e, s)), [1, 2, 10, 18]);
    assert_eq!(weight_at(&mut e, 10), 20);
    assert!(!e.ramping(), "the ramp is over");
    let st = e.status((back, 1_000_000), &kernel);
    assert_eq!(st[0].real_servers[1].slow_start_until, None);
}

#[test]
fn a_server_enabled_after_a_drain_ramps_and_one_going_down_stops_ramping() {
    let c = slow_config();
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    e.set_drain(t0, "web", "10.0.0.11", true).unwrap();
    assert_eq!(weights(&e.desired(t0, &kernel))[0], (rs(11), 0));
    e.set_drain(t0 + S, "web", "10.0.0.11", false).unwrap();
    assert_eq!(weights(&e.desired(t0 + S, &kernel))[0], (rs(11), 1));
    let st = e.status((t0, 1_000_000), &kernel);
    assert_eq!(st[0].real_servers[0].slow_start_until, Some(1_011_000));
    // Down in the middle of its ramp: the next return starts over.
    let p = probe_of(&e, 11);
    e.record(t0 + 3 * S, p, down());
    assert!(!e.ramping());
    e.record(t0 + 4 * S, p, up());
    assert_eq!(weights(&e.desired(t0 + 4 * S, &kernel))[0], (rs(11), 1));
}

#[test]
fn without_slow_start_a_server_comes_back_at_its_full_weight() {
    let c = config("");
    let t0 = Instant::now();
    let kernel = ipvsctl::desired::table(&c).unwrap();
    let mut e = Engine::new(&c, t0, &kernel, BTreeSet::new()).unwrap();
    let p = probe_of(&e, 12);
    e.record(t0, p, down());
    e.record(t0 + S, p, up());
    assert!(!e.ramping());
    assert_eq!(weights(&e.desired(t0 + S, &kernel))[1], (rs(12), 20));
}

#[test]
fn a_ramp_rises_from_one_to_the_full_weight() {
    let over = 10 * S;
    assert_eq!(ramp(100, Duration::ZERO, over), Some(1));
    assert_eq!(ramp(100, 5 * S, over), Some(50));
    assert_eq!(ramp(100, over, over), None);
    // Weight 1 has nowhere to rise from.
    assert_eq!(ramp(1, S, over), None);
}

#[test]
fn a_server_serving_before_its_first_check_is_not_ramped() {
    // initial_state = "up" (the default): in the table at full weight
    // before any check, so its first success changes nothing.
    let c = slow_config();
    let t0 = Instant::now();
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    let p = probe_of(&e, 12);
    e.record(t0, p, up());
    assert!(!e.ramping());
    // initial_state = "down": its first success brings it in, in steps.
    let c = web_config(
        "slow_start = \"10s\"\ninitial_state = \"down\"",
        "rise = 1\nfall = 1",
        "",
    );
    let mut e = Engine::new(&c, t0, &Table::default(), BTreeSet::new()).unwrap();
    let p = probe_of(&e, 12);
    e.record(t0, p, up());
    assert!(e.ramping());
}
