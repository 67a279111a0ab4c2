//! healthd's table logic against the in-memory dataplane: the engine on a
//! fake clock, its probes answered by a list of failing servers, and its
//! table carried out by the same [`sync_once`] the daemon's IPVS thread
//! runs against the kernel.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipvsctl::memory::Memory;
use ipvsctl::reconcile::{ConnectionSync, Dataplane};
use ipvsctl::types::{
    Dest, DestCounters, DestSettings, Family, Forwarding, Service, ServiceKey, ServiceSettings,
    SyncRole, Table,
};
use tandem_model::api::VrrpState;
use tandem_model::config::Config;

use super::*;
use crate::engine::Engine;
use crate::engine::tests::web_config;
use crate::health::Outcome;
use crate::spec::Kind;

const S: Duration = Duration::from_secs(1);

/// The engine tests' virtual server "web", with rise 2 and fall 3 and
/// the default quorum of 1; `vs` goes inside the virtual server, `top`
/// after it.
fn config(vs: &str, top: &str) -> Config {
    web_config(vs, "rise = 2\nfall = 3", top)
}

/// Connection sync following VRRP instance "vi" (vrid 51).
const CONNECTION_SYNC: &str = r#"
[[vrrp_instance]]
name = "vi"
interface = "eth0"
vrid = 51
virtual_ips = ["192.0.2.10/24"]

[connection_sync]
instance = "vi"
interface = "eth1"
"#;

/// A second virtual server, without a check.
const API: &str = r#"
[[virtual_server]]
name = "api"
address = "192.0.2.11:80"
forwarding = "dr"
[[virtual_server.real_server]]
address = "10.0.0.21"
"#;

fn rs(n: u8) -> SocketAddr {
    format!("10.0.0.{n}:80").parse().unwrap()
}

fn web() -> ServiceKey {
    ServiceKey::tcp("192.0.2.10:80".parse().unwrap())
}

fn api() -> ServiceKey {
    ServiceKey::tcp("192.0.2.11:80".parse().unwrap())
}

/// A service some other tool put in the table.
fn foreign() -> Service {
    let key = ServiceKey::tcp("198.51.100.1:443".parse().unwrap());
    let mut s = Service::new(key, ServiceSettings::new(Family::Ipv4, "rr"));
    s.dests = vec![Dest::new(
        "10.9.0.1:443".parse().unwrap(),
        DestSettings::new(Forwarding::Masq, 3),
    )];
    s
}

/// healthd over a dataplane, driven as the daemon drives it.
struct Lab {
    config: Config,
    engine: Engine,
    dp: Memory,
    now: Instant,
    /// The table as last synced: the daemon's `current`.
    current: Table,
    /// The table the IPVS thread keeps between syncs.
    known: Option<Table>,
    retired: BTreeSet<ServiceKey>,
    vrrp: Option<VrrpState>,
    /// Probe targets that refuse connections.
    failing: BTreeSet<SocketAddr>,
}

impl Lab {
    /// healthd starting on `dp`: the table is read first and what it
    /// holds is adopted, as in `Daemon::new`.
    fn start(config: Config, mut dp: Memory) -> Lab {
        let now = Instant::now();
        let current = dp.dump().unwrap();
        let engine = Engine::new(&config, now, &current, BTreeSet::new()).unwrap();
        Lab {
            config,
            engine,
            dp,
            now,
            current,
            known: None,
            retired: BTreeSet::new(),
            vrrp: None,
            failing: BTreeSet::new(),
        }
    }

    /// One sync after a change, as `Daemon::request_sync`, the IPVS
    /// thread and `Daemon::synced` chain it; returns its operations.
    fn sync(&mut self) -> usize {
        self.sync_reading(false)
    }

    /// The sync of the daemon's tick, which reads the table (fresh
    /// connection counters, what someone else changed).
    fn tick(&mut self) -> usize {
        self.sync_reading(true)
    }

    fn sync_reading(&mut self, read: bool) -> usize {
        let want = wanted_sync_daemon(&self.config, self.vrrp);
        let req = SyncRequest::new(
            &mut self.engine,
            self.now,
            &self.current,
            &self.retired,
            want,
            read,
        );
        let synced = sync_once(&mut self.dp, &req, &mut self.known)
            .unwrap_or_else(|e| panic!("the dataplane refused an operation: {e}"));
        self.current = synced.table;
        retire(&mut self.retired, &self.current, self.engine.keys());
        synced.operations
    }

    /// Moves the clock to the next probe start and runs the probes due
    /// then; a change of health syncs at once, as in the daemon's loop.
    /// Returns the targets checked.
    fn step(&mut self) -> Vec<SocketAddr> {
        let at = self.engine.next_deadline().expect("a probe is scheduled");
        self.now = self.now.max(at);
        let mut checked = Vec::new();
        let mut changed = false;
        for (probe, spec) in self.engine.due(self.now) {
            let Kind::Tcp { target, .. } = spec.kind else {
                panic!("the lab answers TCP checks only");
            };
            let latency = Duration::from_millis(1);
            let outcome = if self.failing.contains(&target) {
                Outcome::down("connection refused", latency)
            } else {
                Outcome::up("connected", latency)
            };
            checked.push(target);
            changed |= !self.engine.record(self.now, probe, outcome).is_empty();
        }
        if changed {
            self.sync();
        }
        checked
    }

    /// Runs probes until `addr` has been checked `n` more times.
    fn checks(&mut self, addr: SocketAddr, n: usize) {
        let mut seen = 0;
        while seen < n {
            seen += self.step().iter().filter(|t| **t == addr).count();
        }
    }

    /// Lets `d` pass, the probes running and the daemon's one-second
    /// tick syncing (it does while a server is leaving).
    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let tick = (self.now + S).min(end);
            while self.engine.next_deadline().is_some_and(|t| t <= tick) {
                self.step();
            }
            self.now = tick;
            self.tick();
        }
    }

    /// The weight of real server `addr` of the web service in the
    /// dataplane; `None` when it is not there.
    fn weight(&self, addr: SocketAddr) -> Option<u32> {
        self.dp
            .table()
            .service(&web())
            .and_then(|s| s.dest(addr))
            .map(|d| d.settings.weight)
    }

    fn dests(&self) -> Vec<(SocketAddr, u32)> {
        self.dp.table().service(&web()).map_or(Vec::new(), |s| {
            s.dests
                .iter()
                .map(|d| (d.addr, d.settings.weight))
                .collect()
        })
    }

    /// Gives real server `addr` that many active connections.
    fn connections(&mut self, addr: SocketAddr, active: u32) {
        let counters = DestCounters {
            active_conns: active,
            ..DestCounters::default()
        };
        self.dp.set_counters(&web(), addr, counters).unwrap();
    }

    fn daemons(&mut self) -> Vec<(SyncRole, String, u32)> {
        self.dp
            .sync_daemons()
            .unwrap()
            .into_iter()
            .map(|d| (d.role, d.interface, d.sync_id))
            .collect()
    }
}

/// Both real servers up and in the table.
fn started(vs: &str, top: &str, dp: Memory) -> Lab {
    let mut lab = Lab::start(config(vs, top), dp);
    lab.sync();
    lab.checks(rs(11), 2);
    lab.checks(rs(12), 2);
    assert_eq!(lab.dests(), [(rs(11), 10), (rs(12), 20)]);
    lab
}

#[test]
fn a_real_server_that_fails_fall_checks_leaves_the_table() {
    let mut lab = started("", "", Memory::default());
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 2);
    assert_eq!(lab.weight(rs(11)), Some(10), "two failures of three");
    lab.checks(rs(11), 1);
    assert_eq!(lab.weight(rs(11)), None, "no connection: gone at once");
    assert_eq!(lab.weight(rs(12)), Some(20));
}

#[test]
fn a_real_server_that_passes_rise_checks_comes_back_with_its_weight() {
    let mut lab = started("", "", Memory::default());
    lab.failing.insert(rs(12));
    lab.checks(rs(12), 3);
    assert_eq!(lab.weight(rs(12)), None);
    lab.failing.clear();
    lab.checks(rs(12), 1);
    assert_eq!(lab.weight(rs(12)), None, "one success of two");
    lab.checks(rs(12), 1);
    assert_eq!(lab.weight(rs(12)), Some(20));
}

#[test]
fn with_inhibit_on_failure_a_failed_real_server_stays_at_weight_zero() {
    let mut lab = started("inhibit_on_failure = true", "", Memory::default());
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 3);
    assert_eq!(lab.weight(rs(11)), Some(0));
    lab.wait(100 * S);
    assert_eq!(lab.weight(rs(11)), Some(0), "kept past drain_timeout");
    lab.failing.clear();
    lab.checks(rs(11), 2);
    assert_eq!(lab.weight(rs(11)), Some(10));
}

#[test]
fn a_failed_real_server_with_connections_drains_at_weight_zero_and_leaves_when_they_end() {
    let mut lab = started("", "", Memory::default());
    lab.connections(rs(11), 5);
    lab.wait(S); // the daemon sees the connections at its next sync
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 3);
    assert_eq!(lab.weight(rs(11)), Some(0), "draining, not deleted");
    lab.wait(10 * S);
    assert_eq!(lab.weight(rs(11)), Some(0), "still has connections");
    lab.connections(rs(11), 0);
    // One tick sees the connections gone, the next deletes it.
    lab.wait(2 * S);
    assert_eq!(lab.weight(rs(11)), None);
}

#[test]
fn a_draining_real_server_leaves_after_drain_timeout_even_with_connections() {
    let mut lab = started("drain_timeout = \"20s\"", "", Memory::default());
    lab.connections(rs(11), 5);
    lab.wait(S);
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 3);
    let failed = lab.now;
    lab.wait(19 * S);
    assert_eq!(lab.weight(rs(11)), Some(0), "{:?} after", lab.now - failed);
    lab.wait(2 * S);
    assert_eq!(lab.weight(rs(11)), None, "{:?} after", lab.now - failed);
}

#[test]
fn an_operator_drain_holds_weight_zero_while_the_server_is_up() {
    let mut lab = started("", "", Memory::default());
    lab.engine
        .set_drain(Instant::now(), "web", "10.0.0.12", true)
        .unwrap();
    lab.sync();
    lab.wait(100 * S);
    assert_eq!(lab.weight(rs(12)), Some(0));
    lab.engine
        .set_drain(Instant::now(), "web", "10.0.0.12", false)
        .unwrap();
    lab.sync();
    assert_eq!(lab.weight(rs(12)), Some(20));
}

#[test]
fn the_sorry_server_takes_over_when_every_real_server_is_down_and_leaves_at_the_first_up() {
    let sorry = rs(99);
    let mut lab = started("", "", Memory::default());
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 3);
    assert_eq!(lab.dests(), [(rs(12), 20)], "one up still meets quorum 1");
    lab.failing.insert(rs(12));
    lab.checks(rs(12), 3);
    assert_eq!(lab.dests(), [(sorry, 1)]);
    lab.failing.remove(&rs(12));
    lab.checks(rs(12), 2);
    assert_eq!(lab.dests(), [(rs(12), 20)]);
}

#[test]
fn a_change_is_applied_without_reading_the_table_back() {
    let mut lab = started("", "", Memory::default());
    let dumps = lab.dp.dumps;
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 3);
    assert_eq!(lab.weight(rs(11)), None);
    assert_eq!(lab.dp.dumps, dumps, "the table after the change is known");
    assert_eq!(lab.current, lab.dp.table());
}

#[test]
fn a_table_changed_behind_healthds_back_is_read_and_planned_again() {
    let mut lab = started("", "", Memory::default());
    // Someone deletes the service; healthd does not know yet.
    lab.dp
        .apply(&[ipvsctl::reconcile::Op::DelService { key: web() }])
        .unwrap();
    let dumps = lab.dp.dumps;
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 3);
    // Deleting rs(11) from a service that is not there is refused: the
    // table is read and the service put back with the server still up.
    assert_eq!(lab.dests(), [(rs(12), 20)]);
    assert_eq!(lab.dp.dumps, dumps + 1);
    assert_eq!(lab.current, lab.dp.table());
}

#[test]
fn the_tick_reads_the_table_and_puts_back_what_someone_removed() {
    let mut lab = started("", "", Memory::default());
    lab.dp
        .apply(&[ipvsctl::reconcile::Op::DelDest {
            service: web(),
            addr: rs(12),
        }])
        .unwrap();
    assert_eq!(lab.tick(), 1);
    assert_eq!(lab.dests(), [(rs(11), 10), (rs(12), 20)]);
}

#[test]
fn a_restart_that_finds_its_table_in_the_dataplane_changes_nothing() {
    // Servers not yet checked count as down: only adoption keeps them.
    let c = config("initial_state = \"down\"", CONNECTION_SYNC);
    let mut dp = Memory::new(&ipvsctl::desired::table(&c).unwrap());
    // The previous healthd's daemon, as backup (vrrpd not reached yet).
    dp.start_sync_daemon(&wanted_sync_daemon(&c, None).unwrap())
        .unwrap();
    let before = dp.table();
    let mut lab = Lab::start(c, dp);
    assert_eq!(lab.sync(), 0);
    assert_eq!((lab.dp.ops_applied, lab.dp.daemon_changes), (0, 1));
    assert_eq!(lab.dp.table(), before);
}

#[test]
fn a_service_outside_the_configuration_is_left_alone() {
    let foreign = foreign();
    let dp = Memory::new(&Table::new(vec![foreign.clone()]));
    let mut lab = started("", "", dp);
    lab.failing.insert(rs(11));
    lab.checks(rs(11), 3);
    lab.wait(15 * S);
    assert_eq!(lab.dp.table().service(&foreign.key), Some(&foreign));
}

#[test]
fn a_service_a_reload_removed_is_deleted_at_the_next_sync_and_others_stay() {
    let foreign = foreign();
    let dp = Memory::new(&Table::new(vec![foreign.clone()]));
    let mut lab = started("", API, dp);
    assert!(lab.dp.table().service(&api()).is_some());
    // As `Daemon::reload`: the services the new engine lacks retire.
    let old = lab.engine.keys().clone();
    let next = config("", "");
    lab.engine.reload(&next, lab.now, &lab.current).unwrap();
    lab.retired
        .extend(old.difference(lab.engine.keys()).copied());
    lab.config = next;
    assert_eq!(lab.sync(), 1);
    assert!(lab.dp.table().service(&api()).is_none());
    assert!(lab.retired.is_empty(), "gone, so no longer retired");
    assert_eq!(lab.dp.table().service(&foreign.key), Some(&foreign));
    assert_eq!(lab.dests(), [(rs(11), 10), (rs(12), 20)]);
}

#[test]
fn connection_sync_is_master_only_while_vrrp_is_master() {
    let mut lab = Lab::start(config("", CONNECTION_SYNC), Memory::default());
    let backup = || (SyncRole::Backup, "eth1".to_string(), 51);
    let master = || (SyncRole::Master, "eth1".to_string(), 51);
    lab.sync();
    assert_eq!(lab.daemons(), [backup()], "vrrpd not reached yet");
    lab.vrrp = Some(VrrpState::Master);
    assert_eq!(lab.sync(), 2, "the backup stops, the master starts");
    assert_eq!(lab.daemons(), [master()]);
    assert_eq!(lab.sync(), 0);
    for state in [Some(VrrpState::Fault), Some(VrrpState::Backup), None] {
        lab.vrrp = state;
        lab.sync();
        assert_eq!(lab.daemons(), [backup()], "{state:?}");
    }
    lab.vrrp = Some(VrrpState::Master);
    lab.sync();
    assert_eq!(lab.daemons(), [master()]);
}

#[test]
fn a_changed_sync_id_restarts_the_sync_daemon() {
    let mut lab = Lab::start(config("", CONNECTION_SYNC), Memory::default());
    lab.sync();
    lab.config.connection_sync.as_mut().unwrap().sync_id = Some(9);
    assert_eq!(
        lab.sync(),
        2,
        "a daemon is stopped and started, never edited"
    );
    assert_eq!(lab.daemons(), [(SyncRole::Backup, "eth1".to_string(), 9)]);
}

#[test]
fn without_connection_sync_no_sync_daemon_is_started() {
    let mut lab = Lab::start(config("", ""), Memory::default());
    lab.vrrp = Some(VrrpState::Master);
    lab.sync();
    assert!(lab.daemons().is_empty());
    assert_eq!(lab.dp.daemon_changes, 0);
}
