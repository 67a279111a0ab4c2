//! Everything healthd decides, sans IO: the health of every real server,
//! which probe runs when, quorum, operator drains, and the IPVS table
//! that follows from them. The daemon feeds it probe outcomes and the
//! kernel's table, and carries out what it returns.
//!
//! Rules:
//! - a real server without a check is up; one not yet checked counts as
//!   its virtual server's `initial_state`;
//! - the kernel's table when healthd starts is adopted as the last
//!   owner's verdict (healthd's own before a restart, or keepalived's): a
//!   real server found with its weight is up, one of a service in the
//!   table but missing from it (or at weight 0) is down, so a restart or
//!   a move from keepalived changes nothing that matches the
//!   configuration;
//! - one that must leave goes to weight 0 first and is deleted once its
//!   connections are gone or `drain_timeout` has passed (with
//!   `inhibit_on_failure` it stays at weight 0);
//! - a drained one stays at weight 0 whatever its health, and does not
//!   count for quorum;
//! - below quorum, the sorry server joins the service.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use ipvsctl::desired::{self, DesiredError};
use ipvsctl::types::{Dest, Service, ServiceKey, Table};
use tandem_model::api::{EventKind, HealthState};
use tandem_model::config::{Config, InitialState, RealServer, VirtualServer, format_duration};

use crate::health::{Health, Outcome};
use crate::quorum::Quorum;
use crate::schedule::{self, Schedule};
use crate::spec::{self, ProbeSpec, Thresholds};

// One copy of the words every real server starts with, not one each.
static ADOPTED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("in the kernel's table at start"));
static ADOPTED_DOWN: LazyLock<Arc<str>> =
    LazyLock::new(|| Arc::from("out of the kernel's table at start (or at weight 0)"));
static NOT_CHECKED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("not checked yet"));

/// Identifies a real server across reloads: virtual server name and the
/// real server's address.
pub type RsId = (String, SocketAddr);

pub fn rs_label(id: &RsId) -> String {
    format!("{}/{}", id.0, id.1)
}

struct RsState {
    addr: SocketAddr,
    dest: Dest,
    /// Once attached, the very `Arc` the engine's probe table holds:
    /// 37,000 real servers keep one copy of each distinct spec, not three.
    probe: Option<(Arc<ProbeSpec>, Thresholds)>,
    /// The shared probe it follows, once attached.
    probe_id: Option<u32>,
    /// None: no check, always up.
    health: Option<Health>,
    /// Since when it has been leaving the table (weight 0, draining).
    leaving_since: Option<Instant>,
    /// Drained by an operator.
    drained: bool,
    /// Since when it has been coming back under `slow_start`: its weight
    /// ramps up until then + slow_start.
    rising_since: Option<Instant>,
}

struct VsState {
    cfg: VirtualServer,
    key: ServiceKey,
    service: Service,
    quorum: Quorum,
    rs: Vec<RsState>,
}

impl VsState {
    /// The state for `cfg`. Real servers of `old` (the same virtual
    /// server before a reload) whose probe did not change keep their
    /// health and drain clock; the others start as the kernel's table
    /// says (in it with their weight: up) or unchecked.
    fn build(
        cfg: &VirtualServer,
        now: Instant,
        current: &Table,
        drains: &BTreeSet<String>,
        old: Option<&VsState>,
    ) -> Result<VsState, DesiredError> {
        let service = desired::service(cfg)?;
        let key = service.key;
        let in_kernel = current.service(&key);
        let before: HashMap<SocketAddr, &RsState> = old
            .map(|o| o.rs.iter().map(|r| (r.addr, r)).collect())
            .unwrap_or_default();
        let mut rss = Vec::with_capacity(cfg.real_servers.len());
        for rs in &cfg.real_servers {
            let dest = desired::dest(cfg, rs)?;
            let addr = dest.addr;
            let probe = spec::probe_for(cfg, rs).map(|(p, th)| (Arc::new(p), th));
            let was = before.get(&addr);
            let health = probe.as_ref().map(|(p, th)| {
                let kept = was.and_then(|w| match (&w.probe, &w.health) {
                    (Some((old_spec, _)), Some(h)) if **old_spec == **p => Some(h.clone()),
                    _ => None,
                });
                if let Some(mut h) = kept {
                    h.set_thresholds(th.rise, th.fall);
                    return h;
                }
                // The table found at start is the last owner's verdict
                // (this healthd's before a restart, or keepalived's): a
                // server in it at its weight was up; one missing, or at
                // weight 0 where it should weigh more, was down. Only a
                // service nobody programmed starts at `initial_state`.
                let Some(service) = in_kernel else {
                    return Health::new(
                        now,
                        th.rise,
                        th.fall,
                        HealthState::Unknown,
                        NOT_CHECKED.clone(),
                    );
                };
                let up = service
                    .dest(addr)
                    .is_some_and(|d| d.settings.weight == dest.settings.weight);
                if up {
                    Health::new(now, th.rise, th.fall, HealthState::Up, ADOPTED.clone())
                } else {
                    Health::new(
                        now,
                        th.rise,
                        th.fall,
                        HealthState::Down,
                        ADOPTED_DOWN.clone(),
                    )
                }
            });
            let drained = drains.contains(&rs_label(&(cfg.name.clone(), addr)));
            rss.push(RsState {
                addr,
                dest,
                probe,
                probe_id: None,
                health,
                leaving_since: was.and_then(|w| w.leaving_since),
                drained,
                rising_since: was.and_then(|w| w.rising_since),
            });
        }
        let mut vs = VsState {
            cfg: cfg.clone(),
            key,
            service,
            quorum: Quorum::new(0, 0, 0),
            rs: rss,
        };
        vs.quorum = Quorum::new(
            cfg.quorum.max(0) as usize,
            cfg.quorum_hysteresis.max(0) as usize,
            vs.up_count(),
        );
        Ok(vs)
    }

    fn is_up(&self, r: usize) -> bool {
        match self.rs[r].health.as_ref().map(Health::state) {
            None | Some(HealthState::Up) => true,
            Some(HealthState::Down) => false,
            Some(HealthState::Unknown) => self.cfg.initial_state == InitialState::Up,
        }
    }

    fn up_count(&self) -> usize {
        (0..self.rs.len())
            .filter(|&r| self.is_up(r) && !self.rs[r].drained)
            .count()
    }
}

/// A probe as handed out to run: its id and that id's generation (a
/// probe a reload removed frees its id; a result for an older
/// generation is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRef {
    pub generation: u64,
    pub id: u32,
}

pub struct Engine {
    vss: Vec<VsState>,
    /// Every distinct probe, by id (None: a free id), with the real
    /// servers that share its results. Integer ids keep the hot path
    /// (10,000 probes a second) free of hashing and cloning probe specs.
    probes: Vec<Option<Arc<ProbeSpec>>>,
    generations: Vec<u64>,
    free: Vec<u32>,
    subscribers: Vec<Vec<(usize, usize)>>,
    ids: HashMap<Arc<ProbeSpec>, u32>,
    schedule: Schedule<u32>,
    drains: BTreeSet<String>,
    /// Services this configuration owns.
    keys: BTreeSet<ServiceKey>,
    /// Checks that could not run for want of a resource on this director
    /// (see [`Outcome::local`]).
    not_run: u64,
}

impl Engine {
    /// Builds the state for `config`. `current` is the kernel's table:
    /// real servers in it with their configured weight start up.
    pub fn new(
        config: &Config,
        now: Instant,
        current: &Table,
        drains: BTreeSet<String>,
    ) -> Result<Engine, DesiredError> {
        let vss = config
            .virtual_servers
            .iter()
            .map(|vs| VsState::build(vs, now, current, &drains, None))
            .collect::<Result<Vec<_>, _>>()?;
        let mut e = Engine {
            vss,
            probes: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            subscribers: Vec::new(),
            ids: HashMap::new(),
            schedule: Schedule::default(),
            drains,
            keys: BTreeSet::new(),
            not_run: 0,
        };
        e.attach(now);
        Ok(e)
    }

    /// Moves to a new configuration (a reload). A virtual server whose
    /// configuration is unchanged is kept whole: its health, quorum and
    /// probes are not touched, so a reload costs what changed, not what
    /// is configured (keepalived issue #2318: 2,284 virtual servers with
    /// 37,298 real servers). In a changed one, real servers whose probe
    /// is unchanged keep their health, and a probe that stays keeps its
    /// place in the schedule (a check in flight still counts). On error
    /// nothing changes. Returns what changed, one line per object.
    pub fn reload(
        &mut self,
        config: &Config,
        now: Instant,
        current: &Table,
    ) -> Result<Vec<String>, DesiredError> {
        enum Next {
            Same(usize),
            Built(Box<VsState>),
        }
        let mut before: HashMap<&str, usize> = self
            .vss
            .iter()
            .enumerate()
            .map(|(i, v)| (v.cfg.name.as_str(), i))
            .collect();
        let mut plan = Vec::with_capacity(config.virtual_servers.len());
        let mut changes = Vec::new();
        for vs in &config.virtual_servers {
            let old = before.remove(vs.name.as_str());
            match old {
                Some(i) if self.vss[i].cfg == *vs => plan.push(Next::Same(i)),
                _ => {
                    let old = old.map(|i| &self.vss[i]);
                    let what = if old.is_some() { "changed" } else { "added" };
                    changes.push(format!("virtual server {}: {what}", vs.name));
                    plan.push(Next::Built(Box::new(VsState::build(
                        vs,
                        now,
                        current,
                        &self.drains,
                        old,
                    )?)));
                }
            }
        }
        changes.extend(
            before
                .into_keys()
                .map(|name| format!("virtual server {name}: removed")),
        );
        changes.sort();
        let mut old: Vec<Option<VsState>> = std::mem::take(&mut self.vss)
            .into_iter()
            .map(Some)
            .collect();
        self.vss = plan
            .into_iter()
            .filter_map(|n| match n {
                Next::Same(i) => old[i].take(),
                Next::Built(v) => Some(*v),
            })
            .collect();
        self.attach(now);
        Ok(changes)
    }

    /// Gives every real server whose probe has no id yet the id of an
    /// equal probe, or a new one (placed in the schedule); rebuilds who
    /// follows which probe, frees the probes nobody follows, and the
    /// services owned.
    fn attach(&mut self, now: Instant) {
        for v in 0..self.vss.len() {
            for r in 0..self.vss[v].rs.len() {
                let rs = &self.vss[v].rs[r];
                if rs.probe_id.is_some() {
                    continue;
                }
                let Some((spec, _)) = &rs.probe else {
                    continue;
                };
                let id = match self.ids.get(&**spec) {
                    Some(&id) => id,
                    None => {
                        let spec = spec.clone();
                        let id = self.free.pop().unwrap_or_else(|| {
                            self.probes.push(None);
                            self.generations.push(0);
                            self.subscribers.push(Vec::new());
                            (self.probes.len() - 1) as u32
                        });
                        self.schedule.add_at(
                            id,
                            spec.interval,
                            now + schedule::phase(&*spec, spec.interval),
                        );
                        self.ids.insert(spec.clone(), id);
                        self.probes[id as usize] = Some(spec);
                        id
                    }
                };
                let rs = &mut self.vss[v].rs[r];
                if let (Some((own, _)), Some(shared)) = (&mut rs.probe, &self.probes[id as usize]) {
                    *own = shared.clone();
                }
                self.vss[v].rs[r].probe_id = Some(id);
            }
        }
        for s in &mut self.subscribers {
            s.clear();
        }
        for (v, vs) in self.vss.iter().enumerate() {
            for (r, rs) in vs.rs.iter().enumerate() {
                if let Some(id) = rs.probe_id {
                    self.subscribers[id as usize].push((v, r));
                }
            }
        }
        for id in 0..self.probes.len() {
            if !self.subscribers[id].is_empty() {
                continue;
            }
            if let Some(spec) = self.probes[id].take() {
                self.ids.remove(&*spec);
                self.schedule.remove(&(id as u32));
                self.generations[id] += 1;
                self.free.push(id as u32);
            }
        }
        self.keys = self.vss.iter().map(|v| v.key).collect();
    }

    /// Services this engine owns (a reload deletes the ones it dropped).
    pub fn keys(&self) -> &BTreeSet<ServiceKey> {
        &self.keys
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedule.next_deadline()
    }

    /// The probes to start now.
    pub fn due(&mut self, now: Instant) -> Vec<(ProbeRef, Arc<ProbeSpec>)> {
        self.schedule
            .due(now)
            .into_iter()
            .filter_map(|id| {
                let spec = self.probes[id as usize].clone()?;
                let generation = self.generations[id as usize];
                Some((ProbeRef { generation, id }, spec))
            })
            .collect()
    }

    /// Number of distinct probes.
    /// Checks so far that could not run for want of a resource on this
    /// director, and gave no verdict.
    pub fn not_run(&self) -> u64 {
        self.not_run
    }

    pub fn probes(&self) -> usize {
        self.schedule.len()
    }

    fn is_up(&self, v: usize, r: usize) -> bool {
        self.vss[v].is_up(r)
    }

    fn drained(&self, v: usize, r: usize) -> bool {
        self.vss[v].rs[r].drained
    }

    fn up_count(&self, v: usize) -> usize {
        self.vss[v].up_count()
    }

    /// Records a probe's outcome for every real server that shares it;
    /// returns the events it caused.
    pub fn record(&mut self, now: Instant, probe: ProbeRef, outcome: Outcome) -> Vec<EventKind> {
        if self.generations.get(probe.id as usize) != Some(&probe.generation)
            || self.probes[probe.id as usize].is_none()
        {
            return Vec::new();
        }
        self.schedule.done(&probe.id, now);
        if outcome.local {
            // No verdict: the server's health stays as it was and the
            // check runs again at its next interval.
            self.not_run += 1;
            return Vec::new();
        }
        let mut events = Vec::new();
        for i in 0..self.subscribers[probe.id as usize].len() {
            let (v, r) = self.subscribers[probe.id as usize][i];
            let Some(h) = self.vss[v].rs[r].health.as_mut() else {
                continue;
            };
            if let Some(change) = h.record(now, outcome.clone()) {
                let up = change.to == HealthState::Up;
                let mut reason = change.reason.to_string();
                // A server that was out of the table comes back in steps;
                // one that served already (not yet checked, counted as up
                // by initial_state) keeps its weight.
                let was_out = change.from == HealthState::Down
                    || (change.from == HealthState::Unknown
                        && self.vss[v].cfg.initial_state == InitialState::Down);
                let slow_start = self.vss[v].cfg.slow_start.filter(|_| up && was_out);
                let rs = &mut self.vss[v].rs[r];
                rs.rising_since = slow_start.map(|_| now);
                if let Some(ss) = slow_start {
                    reason = format!("{reason}; slow start over {}", format_duration(ss));
                }
                events.push(EventKind::RealServerHealth {
                    virtual_server: self.vss[v].cfg.name.clone(),
                    real_server: self.vss[v].rs[r].addr.to_string(),
                    up,
                    reason,
                });
                events.extend(self.update_quorum(v));
            }
        }
        events
    }

    fn update_quorum(&mut self, v: usize) -> Option<EventKind> {
        let up = self.up_count(v);
        let vs = &mut self.vss[v];
        vs.quorum.update(up).map(|met| EventKind::Quorum {
            virtual_server: vs.cfg.name.clone(),
            met,
            up,
            quorum: vs.quorum.quorum(),
        })
    }

    fn find(&self, vs: &str, rs: &str) -> Result<(usize, usize), String> {
        let v = self
            .vss
            .iter()
            .position(|x| x.cfg.name == vs)
            .ok_or_else(|| format!("no virtual server named {vs}"))?;
        let r = self.vss[v]
            .rs
            .iter()
            .position(|x| x.addr.to_string() == rs || x.addr.ip().to_string() == rs)
            .ok_or_else(|| format!("virtual server {vs} has no real server {rs}"))?;
        Ok((v, r))
    }

    /// An operator drains (`on`) or enables a real server. Returns the
    /// events and the drains to persist.
    pub fn set_drain(
        &mut self,
        now: Instant,
        vs: &str,
        rs: &str,
        on: bool,
    ) -> Result<Vec<EventKind>, String> {
        let (v, r) = self.find(vs, rs)?;
        let label = rs_label(&(vs.to_string(), self.vss[v].rs[r].addr));
        let changed = if on {
            self.drains.insert(label.clone())
        } else {
            self.drains.remove(&label)
        };
        self.vss[v].rs[r].drained = on;
        if changed && !on && self.vss[v].cfg.slow_start.is_some() {
            // Back from a drain: as good as a fresh start for its clients.
            self.vss[v].rs[r].rising_since = Some(now);
        }
        let mut events = Vec::new();
        if changed {
            events.push(EventKind::Action {
                action: if on { "drain" } else { "enable" }.into(),
                target: label,
                user: None,
            });
            events.extend(self.update_quorum(v));
        }
        Ok(events)
    }

    pub fn drains(&self) -> &BTreeSet<String> {
        &self.drains
    }

    /// The drains as they would be after [`set_drain`](Self::set_drain),
    /// to be saved before it is applied.
    pub fn drains_after(&self, vs: &str, rs: &str, on: bool) -> Result<BTreeSet<String>, String> {
        let (v, r) = self.find(vs, rs)?;
        let label = rs_label(&(vs.to_string(), self.vss[v].rs[r].addr));
        let mut drains = self.drains.clone();
        if on {
            drains.insert(label);
        } else {
            drains.remove(&label);
        }
        Ok(drains)
    }

    /// The table the kernel should hold now. `current` is its table (for
    /// the connections of servers that are leaving).
    pub fn desired(&mut self, now: Instant, current: &Table) -> Table {
        let mut services = Vec::new();
        for v in 0..self.vss.len() {
            let kernel = current.service(&self.vss[v].key).cloned();
            let mut svc = self.vss[v].service.clone();
            svc.dests.clear();
            for r in 0..self.vss[v].rs.len() {
                let up = self.is_up(v, r);
                let drained = self.drained(v, r);
                let inhibit = self.vss[v].cfg.inhibit_on_failure;
                let drain_timeout = self.vss[v].cfg.drain_timeout;
                let slow_start = self.vss[v].cfg.slow_start;
                let rs = &mut self.vss[v].rs[r];
                let mut dest = rs.dest.clone();
                if up && !drained {
                    rs.leaving_since = None;
                    if let (Some(ss), Some(since)) = (slow_start, rs.rising_since) {
                        match ramp(
                            dest.settings.weight,
                            now.saturating_duration_since(since),
                            ss,
                        ) {
                            Some(w) => dest.settings.weight = w,
                            None => rs.rising_since = None,
                        }
                    }
                    svc.dests.push(dest);
                    continue;
                }
                if drained || inhibit {
                    dest.settings.weight = 0;
                    svc.dests.push(dest);
                    continue;
                }
                // Leaving: weight 0 while connections remain, then gone.
                let Some(k) = kernel.as_ref().and_then(|s| s.dest(rs.addr)) else {
                    rs.leaving_since = None;
                    continue;
                };
                let since = *rs.leaving_since.get_or_insert(now);
                // TCP (and SCTP) connections that are closing (FIN_WAIT,
                // TIME_WAIT: "inactive") carry no more data; a UDP flow is
                // always "inactive", so for UDP and fwmark services those
                // count too.
                let conns = match self.vss[v].key {
                    ServiceKey::Addr {
                        protocol: ipvsctl::types::Protocol::Tcp | ipvsctl::types::Protocol::Sctp,
                        ..
                    } => k.counters.active_conns,
                    _ => k.counters.active_conns + k.counters.inactive_conns,
                };
                if conns > 0 && now.saturating_duration_since(since) < drain_timeout {
                    dest.settings.weight = 0;
                    svc.dests.push(dest);
                }
            }
            let vs = &self.vss[v];
            if !vs.quorum.met() && vs.cfg.sorry_server.is_some() {
                // The sorry server forwards as the virtual server does.
                if let Ok(mut d) = desired::dest(&vs.cfg, &sorry_rs(&vs.cfg)) {
                    if svc.dest(d.addr).is_none() {
                        d.settings.weight = 1;
                        svc.dests.push(d);
                    }
                }
            }
            svc.sort();
            services.push(svc);
        }
        Table::new(services)
    }

    /// Whether some real server's weight is ramping up (`slow_start`): the
    /// table then changes with time alone, and is synced every second.
    pub fn ramping(&self) -> bool {
        self.vss
            .iter()
            .any(|v| v.rs.iter().any(|r| r.rising_since.is_some()))
    }

    /// Whether some real server is leaving the table (at weight 0 while
    /// its connections drain).
    pub fn leaving(&self) -> bool {
        self.vss
            .iter()
            .any(|v| v.rs.iter().any(|r| r.leaving_since.is_some()))
    }

    /// Whether the sorry server of virtual server `v` is in use.
    fn sorry_active(&self, v: usize) -> bool {
        !self.vss[v].quorum.met() && self.vss[v].cfg.sorry_server.is_some()
    }

    /// The quorum verdict of every virtual server, for vrrpd.
    pub fn quorum(&self) -> Vec<(String, bool)> {
        self.vss
            .iter()
            .map(|v| (v.cfg.name.clone(), v.quorum.met()))
            .collect()
    }

    /// What `/status` shows of the virtual servers. `anchor` pairs an
    /// instant with its Unix time, so an instant always converts to the
    /// same millisecond.
    pub fn status(
        &self,
        anchor: (Instant, u64),
        current: &Table,
    ) -> Vec<tandem_model::api::VirtualServerStatus> {
        use tandem_model::api::{CheckResult, RealServerStatus, VirtualServerStatus};
        let unix = |t: Instant| {
            if t >= anchor.0 {
                anchor.1 + t.duration_since(anchor.0).as_millis() as u64
            } else {
                anchor
                    .1
                    .saturating_sub(anchor.0.duration_since(t).as_millis() as u64)
            }
        };
        let stats = |s: &ipvsctl::types::Stats| tandem_model::api::IpvsStats {
            conns: s.conns,
            inpkts: s.inpkts,
            outpkts: s.outpkts,
            inbytes: s.inbytes,
            outbytes: s.outbytes,
            cps: s.cps,
            inpps: s.inpps,
            outpps: s.outpps,
            inbps: s.inbps,
            outbps: s.outbps,
        };
        self.vss
            .iter()
            .enumerate()
            .map(|(v, vs)| {
                let kernel = current.service(&vs.key);
                VirtualServerStatus {
                    name: vs.cfg.name.clone(),
                    service: vs.key.to_string(),
                    scheduler: vs.cfg.scheduler.clone(),
                    forwarding: format!("{:?}", vs.cfg.forwarding).to_lowercase(),
                    check: vs
                        .rs
                        .iter()
                        .find_map(|r| r.probe.as_ref().map(|(p, _)| p.describe())),
                    quorum: vs.quorum.quorum(),
                    up: self.up_count(v),
                    quorum_met: vs.quorum.met(),
                    sorry_server: vs
                        .cfg
                        .sorry_server
                        .map(|s| s.with_default_port(vs.key.port()).to_string()),
                    sorry_active: self.sorry_active(v),
                    stats: kernel.map(|k| stats(&k.stats)),
                    real_servers: vs
                        .rs
                        .iter()
                        .enumerate()
                        .map(|(r, rs)| {
                            let k = kernel.and_then(|s| s.dest(rs.addr));
                            let (state, since, reason) = match &rs.health {
                                Some(h) => (h.state(), unix(h.since()), h.reason().to_string()),
                                None => (HealthState::Up, 0, "no check".to_string()),
                            };
                            RealServerStatus {
                                address: rs.addr.to_string(),
                                weight: rs.dest.settings.weight,
                                kernel_weight: k.map(|d| d.settings.weight),
                                health: state,
                                since,
                                reason,
                                last_check: rs.health.as_ref().and_then(|h| h.last()).map(
                                    |(at, o)| CheckResult {
                                        ok: o.ok,
                                        reason: o.reason.to_string(),
                                        latency_ms: o.latency.as_millis() as u64,
                                        at: unix(*at),
                                    },
                                ),
                                checks: rs.health.as_ref().map_or(0, Health::checks),
                                failures: rs.health.as_ref().map_or(0, Health::failures),
                                drained: self.drained(v, r),
                                slow_start_until: rs
                                    .rising_since
                                    .zip(vs.cfg.slow_start)
                                    .map(|(t, ss)| unix(t + ss)),
                                active_conns: k.map_or(0, |d| d.counters.active_conns),
                                inactive_conns: k.map_or(0, |d| d.counters.inactive_conns),
                                stats: k.map(|d| stats(&d.counters.stats)),
                                check_latency: rs.health.as_ref().map(|h| h.latency().histogram()),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// The weight of a server `elapsed` into a slow start of `over`, rising
/// in a straight line from 1 to `full` (never 0: at weight 0 IPVS sends
/// it nothing, and the ramp would start late); None once it is over (or
/// has reached `full`).
fn ramp(full: u32, elapsed: Duration, over: Duration) -> Option<u32> {
    if elapsed >= over || full <= 1 {
        return None;
    }
    let share = elapsed.as_secs_f64() / over.as_secs_f64();
    let w = ((f64::from(full) * share).ceil() as u32).clamp(1, full);
    // At full weight the ramp is over, whatever time is left.
    (w < full).then_some(w)
}

/// The sorry server as a real server of `vs`, for its forwarding.
fn sorry_rs(vs: &VirtualServer) -> RealServer {
    RealServer {
        address: vs.sorry_server.expect("called with a sorry server"),
        weight: 1,
        forwarding: None,
        upper_threshold: 0,
        lower_threshold: 0,
        tunnel: None,
        check: None,
    }
}

#[cfg(test)]
pub(crate) mod tests;
