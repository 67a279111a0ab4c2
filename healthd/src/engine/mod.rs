//! Everything healthd decides, sans IO: the health of every real server,
//! which probe runs when, quorum, operator drains, and the IPVS table
//! that follows from them. The daemon feeds it probe outcomes and the
//! kernel's table, and carries out what it returns.
//!
//! Rules:
//! - a real server without a check is up; one not yet checked counts as
//!   its virtual server's `initial_state`;
//! - a real server found in the kernel's table (with its weight) when
//!   healthd starts is adopted as up: a restart removes nothing that
//!   serves;
//! - one that must leave goes to weight 0 first and is deleted once its
//!   connections are gone or `drain_timeout` has passed (with
//!   `inhibit_on_failure` it stays at weight 0);
//! - a drained one stays at weight 0 whatever its health, and does not
//!   count for quorum;
//! - below quorum, the sorry server joins the service.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ipvsctl::desired::{self, DesiredError};
use ipvsctl::types::{Dest, Service, ServiceKey, Table};
use tandem_model::api::{EventKind, HealthState};
use tandem_model::config::{Config, InitialState, RealServer, VirtualServer};

use crate::health::{Health, Outcome};
use crate::quorum::Quorum;
use crate::schedule::{self, Schedule};
use crate::spec::{self, ProbeSpec, Thresholds};

/// Identifies a real server across reloads: virtual server name and the
/// real server's address.
pub type RsId = (String, SocketAddr);

pub fn rs_label(id: &RsId) -> String {
    format!("{}/{}", id.0, id.1)
}

struct RsState {
    addr: SocketAddr,
    dest: Dest,
    probe: Option<(ProbeSpec, Thresholds)>,
    /// None: no check, always up.
    health: Option<Health>,
    /// Since when it has been leaving the table (weight 0, draining).
    leaving_since: Option<Instant>,
    /// Drained by an operator.
    drained: bool,
}

struct VsState {
    cfg: VirtualServer,
    key: ServiceKey,
    service: Service,
    quorum: Quorum,
    rs: Vec<RsState>,
}

/// A probe as handed out to run: its index and the generation of the
/// engine (a reload starts a new one; a result from an older generation
/// is ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRef {
    pub generation: u64,
    pub id: u32,
}

pub struct Engine {
    vss: Vec<VsState>,
    generation: u64,
    /// Every distinct probe, by id, with the real servers that share its
    /// results. Integer ids keep the hot path (10,000 probes a second)
    /// free of hashing and cloning probe specs.
    probes: Vec<Arc<ProbeSpec>>,
    subscribers: Vec<Vec<(usize, usize)>>,
    ids: HashMap<ProbeSpec, u32>,
    schedule: Schedule<u32>,
    drains: BTreeSet<String>,
    /// Services this configuration owns.
    keys: BTreeSet<ServiceKey>,
}

impl Engine {
    /// Builds the state for `config`. `current` is the kernel's table:
    /// real servers in it with their configured weight start up.
    /// `keep` hands over the health of real servers of a previous engine
    /// (a reload) whose probe did not change.
    pub fn new(
        config: &Config,
        now: Instant,
        current: &Table,
        drains: BTreeSet<String>,
        mut keep: HashMap<RsId, (ProbeSpec, Health)>,
    ) -> Result<Engine, DesiredError> {
        let mut vss = Vec::new();
        let mut keys = BTreeSet::new();
        for vs in &config.virtual_servers {
            let service = desired::service(vs)?;
            let key = service.key;
            keys.insert(key);
            let in_kernel = current.service(&key);
            let mut rss = Vec::new();
            for rs in &vs.real_servers {
                let dest = desired::dest(vs, rs)?;
                let addr = dest.addr;
                let probe = spec::probe_for(vs, rs);
                let health = probe.as_ref().map(|(p, th)| {
                    if let Some((old_spec, mut h)) = keep.remove(&(vs.name.clone(), addr)) {
                        if old_spec == *p {
                            h.set_thresholds(th.rise, th.fall);
                            return h;
                        }
                    }
                    let adopted = in_kernel.and_then(|s| s.dest(addr)).is_some_and(|d| {
                        d.settings.weight == dest.settings.weight && d.settings.weight > 0
                    });
                    if adopted {
                        Health::new(
                            now,
                            th.rise,
                            th.fall,
                            HealthState::Up,
                            "in the kernel's table at start",
                        )
                    } else {
                        Health::new(
                            now,
                            th.rise,
                            th.fall,
                            HealthState::Unknown,
                            "not checked yet",
                        )
                    }
                });
                let drained = drains.contains(&rs_label(&(vs.name.clone(), addr)));
                rss.push(RsState {
                    addr,
                    dest,
                    probe,
                    health,
                    leaving_since: None,
                    drained,
                });
            }
            vss.push(VsState {
                cfg: vs.clone(),
                key,
                service,
                quorum: Quorum::new(0, 0, 0),
                rs: rss,
            });
        }
        let mut e = Engine {
            vss,
            generation: 0,
            probes: Vec::new(),
            subscribers: Vec::new(),
            ids: HashMap::new(),
            schedule: Schedule::default(),
            drains,
            keys,
        };
        for v in 0..e.vss.len() {
            let up = e.up_count(v);
            let cfg = &e.vss[v].cfg;
            e.vss[v].quorum = Quorum::new(
                cfg.quorum.max(0) as usize,
                cfg.quorum_hysteresis.max(0) as usize,
                up,
            );
            for r in 0..e.vss[v].rs.len() {
                if let Some((p, _)) = &e.vss[v].rs[r].probe {
                    let id = match e.ids.get(p) {
                        Some(&id) => id,
                        None => {
                            let id = e.probes.len() as u32;
                            e.ids.insert(p.clone(), id);
                            e.probes.push(Arc::new(p.clone()));
                            e.subscribers.push(Vec::new());
                            e.schedule
                                .add_at(id, p.interval, now + schedule::phase(p, p.interval));
                            id
                        }
                    };
                    e.subscribers[id as usize].push((v, r));
                }
            }
        }
        Ok(e)
    }

    /// Moves to a new configuration (a reload): real servers whose probe
    /// is unchanged keep their health and their place in the schedule;
    /// the others start over. On error nothing changes. Returns what
    /// changed, one line per object.
    pub fn reload(
        &mut self,
        config: &Config,
        now: Instant,
        current: &Table,
    ) -> Result<Vec<String>, DesiredError> {
        let mut keep = HashMap::new();
        for v in &self.vss {
            for r in &v.rs {
                if let (Some((p, _)), Some(h)) = (&r.probe, &r.health) {
                    keep.insert((v.cfg.name.clone(), r.addr), (p.clone(), h.clone()));
                }
            }
        }
        let mut next = Engine::new(config, now, current, self.drains.clone(), keep)?;
        let mut changes = Vec::new();
        for vs in &config.virtual_servers {
            match self.vss.iter().find(|v| v.cfg.name == vs.name) {
                None => changes.push(format!("virtual server {}: added", vs.name)),
                Some(old) if old.cfg != *vs => {
                    changes.push(format!("virtual server {}: changed", vs.name))
                }
                Some(_) => {}
            }
        }
        for old in &self.vss {
            if config.virtual_server(&old.cfg.name).is_none() {
                changes.push(format!("virtual server {}: removed", old.cfg.name));
            }
        }
        changes.sort();
        // Probes that stay keep their place in the schedule: the next
        // run stays where it was (or one interval after a run in flight,
        // whose result belongs to the old generation and is dropped).
        for (spec, &new_id) in &next.ids {
            if let Some(&old_id) = self.ids.get(spec) {
                if let Some((at, running)) = self.schedule.next_run(&old_id) {
                    let at = if running { at + spec.interval } else { at };
                    next.schedule.remove(&new_id);
                    next.schedule.add_at(new_id, spec.interval, at.max(now));
                }
            }
        }
        next.generation = self.generation + 1;
        *self = next;
        Ok(changes)
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
        let generation = self.generation;
        self.schedule
            .due(now)
            .into_iter()
            .map(|id| {
                (
                    ProbeRef { generation, id },
                    self.probes[id as usize].clone(),
                )
            })
            .collect()
    }

    /// Number of distinct probes.
    pub fn probes(&self) -> usize {
        self.schedule.len()
    }

    fn is_up(&self, v: usize, r: usize) -> bool {
        let vs = &self.vss[v];
        match vs.rs[r].health.as_ref().map(Health::state) {
            None | Some(HealthState::Up) => true,
            Some(HealthState::Down) => false,
            Some(HealthState::Unknown) => vs.cfg.initial_state == InitialState::Up,
        }
    }

    fn drained(&self, v: usize, r: usize) -> bool {
        self.vss[v].rs[r].drained
    }

    fn up_count(&self, v: usize) -> usize {
        (0..self.vss[v].rs.len())
            .filter(|&r| self.is_up(v, r) && !self.drained(v, r))
            .count()
    }

    /// Records a probe's outcome for every real server that shares it;
    /// returns the events it caused.
    pub fn record(&mut self, now: Instant, probe: ProbeRef, outcome: Outcome) -> Vec<EventKind> {
        if probe.generation != self.generation {
            return Vec::new();
        }
        self.schedule.done(&probe.id, now);
        let mut events = Vec::new();
        for i in 0..self.subscribers[probe.id as usize].len() {
            let (v, r) = self.subscribers[probe.id as usize][i];
            let Some(h) = self.vss[v].rs[r].health.as_mut() else {
                continue;
            };
            if let Some(change) = h.record(now, outcome.clone()) {
                events.push(EventKind::RealServerHealth {
                    virtual_server: self.vss[v].cfg.name.clone(),
                    real_server: self.vss[v].rs[r].addr.to_string(),
                    up: change.to == HealthState::Up,
                    reason: change.reason,
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
    pub fn set_drain(&mut self, vs: &str, rs: &str, on: bool) -> Result<Vec<EventKind>, String> {
        let (v, r) = self.find(vs, rs)?;
        let label = rs_label(&(vs.to_string(), self.vss[v].rs[r].addr));
        let changed = if on {
            self.drains.insert(label.clone())
        } else {
            self.drains.remove(&label)
        };
        self.vss[v].rs[r].drained = on;
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
                let rs = &mut self.vss[v].rs[r];
                let mut dest = rs.dest.clone();
                if up && !drained {
                    rs.leaving_since = None;
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
                                        reason: o.reason.clone(),
                                        latency_ms: o.latency.as_millis() as u64,
                                        at: unix(*at),
                                    },
                                ),
                                checks: rs.health.as_ref().map_or(0, Health::checks),
                                failures: rs.health.as_ref().map_or(0, Health::failures),
                                drained: self.drained(v, r),
                                active_conns: k.map_or(0, |d| d.counters.active_conns),
                                inactive_conns: k.map_or(0, |d| d.counters.inactive_conns),
                                stats: k.map(|d| stats(&d.counters.stats)),
                                check_latency: rs.health.as_ref().map(|h| h.latency().clone()),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }
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
