//! The daemon: one event loop that owns every instance's state machine and
//! carries out what they decide. Packets, link events, script results,
//! control requests and signals arrive on one channel ([`crate::input`]);
//! timers are the state machines' deadlines. Nothing else writes state,
//! so nothing locks.
//!
//! The loop's rooms, each an `impl Daemon` of its own: [`links`] (links,
//! sockets, the virtual-MAC macvlans), [`rx`] (receive checks),
//! [`addresses`] (the VIPs through their reconciler, and `release`),
//! [`announce`], [`trackers`], [`status`]; a reload is planned by
//! [`crate::reload`] and carried out by `reconfigure`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_model::api::{self, DaemonInfo, EventKind, VrrpState, now_millis};
use tandem_model::config::{self, Config};
use tandem_model::control::{CommandError, EventLog};
use tandem_model::exec;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::auth::{self, Context};
use crate::binding::{self, Binding};
use crate::fsm::Action;
use crate::input::{Command, DaemonError, Input, Options, PortKey, Signal};
use crate::lateness::{Late, Lateness};
use crate::netlink::{Link, LinkEvent, Netlink};
use crate::node::{InstanceId, Node, Out};
use crate::packet::{ipv4_packet, with_trailer};
use crate::socket::{Icmpv6Socket, PacketSocket};
use crate::track::{TrackKind, TrackValue};
use crate::vip::Vip;
use addresses::Keep;
use links::Port;
use trackers::ScriptRt;

pub mod addresses;
pub mod announce;
pub mod links;
mod reconfigure;
pub mod rx;
pub mod status;
pub mod trackers;

/// How long the loop sleeps when no state machine has a deadline.
const IDLE: Duration = Duration::from_secs(3600);
/// At most this many queued inputs are taken before a deadline that has
/// passed (see [`Daemon::run`]).
const BEFORE_DEADLINE: usize = 64;

pub struct Daemon {
    pub(crate) opts: Options,
    pub(crate) config: Config,
    pub(crate) info: DaemonInfo,
    pub(crate) node: Node,
    /// What the loop keeps per instance, under the node's ids.
    pub(crate) bindings: BTreeMap<InstanceId, Binding>,
    pub(crate) ports: HashMap<PortKey, Port>,
    pub(crate) links: HashMap<String, Link>,
    pub(crate) garp: HashMap<u32, Arc<PacketSocket>>,
    pub(crate) na: HashMap<u32, Arc<Icmpv6Socket>>,
    pub(crate) scripts: HashMap<String, ScriptRt>,
    pub(crate) files_task: Option<JoinHandle<()>>,
    pub(crate) healthd_task: Option<JoinHandle<()>>,
    pub(crate) nl: Netlink,
    pub(crate) events: EventLog,
    pub(crate) tx: mpsc::Sender<Input>,
    pub(crate) unclaimed_drops: BTreeMap<String, u64>,
    pub(crate) lateness: Lateness,
    pub(crate) shutting_down: Option<Instant>,
    /// Reload requests, and the parse in flight.
    pub(crate) reloads: tandem_model::control::Reloads<crate::input::ReloadReply>,
    /// Virtual-MAC macvlans this daemon created (name -> index).
    pub(crate) vmacs: HashMap<String, u32>,
    /// Sysctls changed, with the values to restore.
    pub(crate) sysctls: BTreeMap<String, String>,
    /// VIPs this daemon placed: a reload that drops one still removes it.
    pub(crate) placed: BTreeSet<Vip>,
    /// When address operations that failed are tried again.
    pub(crate) vip_retry: Option<Instant>,
    /// When virtual-MAC steps that failed are tried again.
    pub(crate) vmac_retry: Option<Instant>,
    /// Interfaces a wanted VIP waits for: their appearance syncs again.
    pub(crate) vip_waiting: BTreeSet<String>,
}

/// The socket path this daemon serves its control API on.
pub fn socket_path(opts: &Options, config: &Config) -> PathBuf {
    config::socket_in(&socket_dir(opts, config), "vrrpd")
}

fn socket_dir(opts: &Options, config: &Config) -> PathBuf {
    opts.socket_dir
        .clone()
        .unwrap_or_else(|| config.node.socket_dir.clone())
}

/// The wall clock as the time since the UNIX epoch (before it: zero, which
/// any receiver finds stale).
pub(crate) fn wall_clock() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

impl Daemon {
    /// Loads the configuration and prepares everything that can fail
    /// before the first packet is sent.
    pub async fn new(opts: Options, tx: mpsc::Sender<Input>) -> Result<Daemon, DaemonError> {
        let config = config::load(&opts.config)?;
        let mut auths = auth::for_config(&config).map_err(|e| DaemonError::Auth(e.to_string()))?;
        let nl = Netlink::connect()?;
        let node_name = config.node_name();
        let info = DaemonInfo {
            daemon: "vrrpd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            node: node_name.clone(),
            pid: std::process::id(),
            started_at: now_millis(),
            config_path: opts.config.display().to_string(),
            config_loaded_at: now_millis(),
        };
        let mut node = Node::default();
        let mut bindings = BTreeMap::new();
        for cfg in &config.vrrp_instances {
            let (member, mut b) = binding::build(&config, cfg);
            b.hmac = auths.remove(&cfg.name);
            bindings.insert(node.add(member), b);
        }
        node.set_groups(&groups(&config));
        Ok(Daemon {
            events: EventLog::new("vrrpd", &node_name, 1000),
            opts,
            info,
            node,
            bindings,
            ports: HashMap::new(),
            links: HashMap::new(),
            garp: HashMap::new(),
            na: HashMap::new(),
            scripts: HashMap::new(),
            files_task: None,
            healthd_task: None,
            nl,
            tx,
            unclaimed_drops: BTreeMap::new(),
            lateness: Lateness::default(),
            shutting_down: None,
            reloads: Default::default(),
            vmacs: HashMap::new(),
            sysctls: BTreeMap::new(),
            placed: BTreeSet::new(),
            vip_retry: None,
            vmac_retry: None,
            vip_waiting: BTreeSet::new(),
            config,
        })
    }

    pub fn events(&self) -> EventLog {
        self.events.clone()
    }

    pub fn socket_path(&self) -> PathBuf {
        socket_path(&self.opts, &self.config)
    }

    pub(crate) fn socket_dir(&self) -> PathBuf {
        socket_dir(&self.opts, &self.config)
    }

    /// Starts the election: cleans up, opens sockets, starts trackers.
    pub async fn start(&mut self) -> Result<(), DaemonError> {
        // Nobody is master yet: VIPs of configured instances on the
        // interfaces were left by a keepalived or a vrrpd that died
        // without cleaning up (kill -9, a crash). Each instance holding
        // some keeps them until it hears a master to follow (the fsm's
        // adoption); what no instance adopts goes now.
        self.adopt_vips().await;
        self.sync_vips(Keep::Masters).await;
        let now = Instant::now();
        let mut outs = Vec::new();
        let names: Vec<String> = self.interfaces();
        for name in names {
            outs.extend(self.refresh_link(&name, now).await);
        }
        self.start_trackers();
        self.events.publish(EventKind::DaemonStarted {
            version: self.info.version.clone(),
        });
        outs.extend(self.node.startup(now));
        self.execute(outs, now).await;
        Ok(())
    }

    /// Runs the loop until a shutdown has completed.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) -> Result<(), DaemonError> {
        let links = crate::netlink::link_events()?;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut links = Box::pin(links);
            while let Some(ev) = links.next().await {
                if tx.send(Input::Link(ev)).await.is_err() {
                    return;
                }
            }
        });
        let timer = crate::timer::Deadline::new().map_err(|cause| DaemonError::Io {
            what: "creating a timer".into(),
            cause,
        })?;
        loop {
            if let Some(started) = self.shutting_down {
                if self.bindings.values().all(|b| b.stopped) {
                    break;
                }
                // A handover waits at most 4 advert intervals; past a
                // generous bound, stop anyway.
                if started.elapsed() >= self.shutdown_bound() {
                    warn!("shutdown did not complete in time; removing addresses now");
                    break;
                }
            }
            let mut deadline = self
                .node
                .next_deadline()
                .unwrap_or_else(|| Instant::now() + IDLE);
            for retry in [self.vip_retry, self.vmac_retry].into_iter().flatten() {
                deadline = deadline.min(retry);
            }
            if let Some(started) = self.shutting_down {
                // The bound is a deadline of its own: a stop must end even
                // when nothing else is due and nothing arrives.
                deadline = deadline.min(started + self.shutdown_bound());
            }
            if let Err(e) = timer.set(deadline) {
                error!("cannot arm the timer: {e}");
            }
            // The deadline first: under any receive load (a flood of
            // protocol 112 on the segment) a master's adverts and a
            // backup's Master_Down timer keep their schedule. With the
            // channel first, a busy channel starved the timer.
            let woke = tokio::select! {
                biased;
                _ = timer.fired() => None,
                i = rx.recv() => i,
            };
            if let Some(input) = woke {
                let now = Instant::now();
                self.handle_timed(input, now).await;
                continue;
            }
            let woke_at = Instant::now();
            let late = woke_at.saturating_duration_since(deadline);
            if let Some(unlogged) = self.lateness.note(woke_at, Late::Wakeup, late) {
                warn!(
                    "woke {late:?} after a deadline: this process was not run in time{}",
                    more(unlogged)
                );
            }
            // A deadline passed. If this loop was held up (a slow netlink
            // request, a busy machine), adverts that arrived before the
            // deadline may still wait in the sockets: the readers forward
            // them when they next run. Let them run once and take what they
            // brought first, or a backup would declare a master dead that
            // advertised in time; but no more than was queued then, so a
            // flood cannot hold the deadline back.
            tokio::task::yield_now().await;
            for _ in 0..rx.len().min(BEFORE_DEADLINE) {
                let Ok(input) = rx.try_recv() else { break };
                self.handle_timed(input, Instant::now()).await;
            }
            let now = Instant::now();
            let outs = self.node.on_timer(now);
            self.execute(outs, now).await;
            let took = now.elapsed();
            if let Some(unlogged) = self.lateness.note(now + took, Late::Held, took) {
                warn!(
                    "a timer's work held the loop for {took:?}{}",
                    more(unlogged)
                );
            }
            if self.vmac_retry.is_some_and(|t| t <= now) {
                self.vmac_retry = None;
                self.sync_vmacs().await;
            }
            if self.vip_retry.is_some_and(|t| t <= now) {
                self.vip_retry = None;
                self.sync_vips(Keep::Masters).await;
            }
        }
        self.finish().await;
        Ok(())
    }

    fn shutdown_bound(&self) -> Duration {
        let max_adv = self
            .bindings
            .values()
            .map(|b| b.cfg.advert_interval)
            .max()
            .unwrap_or_default();
        4 * max_adv + Duration::from_secs(2)
    }

    /// Last words: whatever still holds addresses gives them up.
    async fn finish(&mut self) {
        self.sync_vips(Keep::Nothing).await;
        for (_, p) in self.ports.drain() {
            p.close();
        }
        // Nobody wants a virtual MAC any more: the reconciler deletes the
        // macvlans this daemon made.
        self.sync_vmacs_to(Vec::new()).await;
        for (file, value) in std::mem::take(&mut self.sysctls) {
            if let Err(e) = std::fs::write(&file, &value) {
                warn!("cannot restore {file} to {value}: {e}");
            }
        }
        for s in self.scripts.values() {
            s.task.abort();
        }
        self.events.publish(EventKind::DaemonStopping);
        info!("stopped");
    }

    /// [`Self::handle`] and its outputs, logged when they held the loop.
    async fn handle_timed(&mut self, input: Input, now: Instant) {
        let what = input.what();
        let outs = self.handle(input, now).await;
        self.execute(outs, now).await;
        let took = now.elapsed();
        if let Some(unlogged) = self.lateness.note(now + took, Late::Held, took) {
            warn!(
                "{what} held the loop for {took:?}: adverts and timers waited{}",
                more(unlogged)
            );
        }
    }

    async fn handle(&mut self, input: Input, now: Instant) -> Vec<Out> {
        match input {
            Input::Packet { port, datagram } => self.on_packet(&port, datagram, now),
            Input::PortError { port, error } => {
                error!(interface = %port.0, "receiving adverts failed: {error}; reopening");
                self.ports.remove(&port);
                self.refresh_link(&port.0.clone(), now).await
            }
            Input::Link(ev) => self.on_link(ev, now).await,
            Input::Script { name, result } => self.on_script(&name, result, now),
            Input::Quorum(verdicts) => {
                let mut outs = Vec::new();
                for (name, met) in verdicts {
                    let v = if met {
                        TrackValue::Ok
                    } else {
                        TrackValue::Failed
                    };
                    outs.extend(self.node.set_track(now, TrackKind::VirtualServer, &name, v));
                }
                outs
            }
            Input::File { path, value } => {
                self.node
                    .set_track(now, TrackKind::File, &path.display().to_string(), value)
            }
            Input::Command(cmd) => self.on_command(cmd, now).await,
            Input::Signal(Signal::Reload) => {
                let (tx, _rx) = oneshot::channel();
                self.on_command(Command::Reload(tx), now).await
            }
            Input::Signal(Signal::Terminate) => self.shutdown(now),
            Input::Parsed(parsed) => {
                let (result, outs) = self.reload(now, *parsed).await;
                let (answered, again) = self.reloads.finished();
                for reply in answered {
                    let _ = reply.send(result.clone());
                }
                if again {
                    self.parse();
                }
                outs
            }
        }
    }

    async fn on_link(&mut self, ev: LinkEvent, now: Instant) -> Vec<Out> {
        let name = match &ev {
            LinkEvent::Changed(l) => Some(l.name.clone()),
            LinkEvent::Removed { name, .. } => Some(name.clone()),
            LinkEvent::Addresses { index } => self
                .links
                .values()
                .find(|l| l.index == *index)
                .map(|l| l.name.clone()),
        };
        let Some(n) = name.filter(|n| self.interfaces().contains(n)) else {
            return Vec::new();
        };
        let changed = match &ev {
            LinkEvent::Changed(l) => self.links.get(&n) != Some(l),
            _ => true,
        };
        if !changed {
            return Vec::new();
        }
        let outs = self.refresh_link(&n, now).await;
        if self.vip_waiting.contains(&n) {
            self.sync_vips(Keep::Masters).await;
        }
        outs
    }

    fn shutdown(&mut self, now: Instant) -> Vec<Out> {
        if self.shutting_down.is_some() {
            return Vec::new();
        }
        info!("shutting down: handing over what this node holds");
        self.shutting_down = Some(now);
        self.node.shutdown(now, true)
    }

    /// Carries out the fsm's outputs. What only tells the world (a
    /// transition's log, event and notify script; a sync group's) comes
    /// after the batch's addresses and packets: an event wakes whoever
    /// follows this daemon (healthd moves its connection sync on it), and
    /// on a busy one-CPU director that ran before the new master's
    /// address, advert and gratuitous ARPs, which reached the wire 40 to
    /// 65 ms after Master_Down (measured in the VM; keepalived's were 2 to
    /// 4 ms after). keepalived too runs its notify scripts last.
    pub(crate) async fn execute(&mut self, outs: Vec<Out>, now: Instant) {
        let (tell, act): (Vec<Out>, Vec<Out>) = outs.into_iter().partition(|o| {
            matches!(
                o,
                Out::Group { .. } | Out::Instance(_, Action::Transition { .. })
            )
        });
        for out in act.into_iter().chain(tell) {
            match out {
                Out::Instance(id, action) => self.act(id, action, now).await,
                Out::Group { group, to } => {
                    info!(group = %group, "sync group is now {to}");
                    self.events.publish(EventKind::SyncGroupTransition {
                        group: group.clone(),
                        to,
                    });
                    let notify = self
                        .config
                        .vrrp_sync_groups
                        .iter()
                        .find(|g| g.name == group)
                        .and_then(|g| g.notify.clone());
                    if let (Some(n), true) = (notify, to != VrrpState::Init) {
                        exec::notify(&n, ["GROUP".into(), group, to.to_string(), "0".into()]);
                    }
                }
            }
        }
    }

    async fn act(&mut self, id: InstanceId, action: Action, _now: Instant) {
        match action {
            Action::SendAdvert { priority } => self.send_advert(id, priority),
            Action::AddAddresses => self.add_vips_now(id).await,
            // The fsm has already changed state: the reconciler reads who
            // is master now.
            Action::RemoveAddresses => self.sync_vips(Keep::Masters).await,
            Action::Announce => self.announce(id),
            Action::Transition { from, to, reason } => {
                self.on_transition(id, from, to, reason);
                // Adopted addresses of an instance that neither follows
                // a master nor became one (a fault, a stop) go.
                let adopted = matches!(from, VrrpState::Init | VrrpState::Backup)
                    && !matches!(to, VrrpState::Master | VrrpState::Backup);
                if adopted && self.holds_placed(id) {
                    self.sync_vips(Keep::Masters).await;
                }
            }
            Action::Stopped => {
                if let Some(b) = self.bindings.get_mut(&id) {
                    b.stopped = true;
                }
            }
        }
    }

    fn on_transition(&mut self, id: InstanceId, from: VrrpState, to: VrrpState, reason: String) {
        let (Some(rt), Some(m)) = (self.bindings.get_mut(&id), self.node.get(id)) else {
            return;
        };
        let priority = m.inst.priority();
        info!(instance = %rt.cfg.name, "{from} -> {to}: {reason}");
        rt.counters.transitions += 1;
        if to == VrrpState::Master {
            rt.counters.became_master += 1;
        }
        rt.last_transition = Some(api::Transition {
            from,
            to,
            reason: reason.clone(),
            at: now_millis(),
        });
        self.events.publish(EventKind::VrrpTransition {
            instance: rt.cfg.name.clone(),
            from,
            to,
            priority,
            reason,
        });
        if let (Some(n), true) = (&rt.cfg.notify, to != VrrpState::Init) {
            exec::notify(
                n,
                [
                    "INSTANCE".into(),
                    rt.cfg.name.clone(),
                    to.to_string(),
                    priority.to_string(),
                ],
            );
        }
    }

    fn send_advert(&mut self, id: InstanceId, priority: u8) {
        let (Some(rt), Some(m)) = (self.bindings.get_mut(&id), self.node.get(id)) else {
            return;
        };
        let Some(src) = rt.src else {
            debug!(instance = %rt.cfg.name, "no source address: advert not sent");
            return;
        };
        let Some(port) = self.ports.get(&rt.send_port()) else {
            debug!(instance = %rt.cfg.name, "no socket: advert not sent");
            return;
        };
        let adv = m.inst.advert(priority);
        // Signed once for every destination (keepalived 2.4.3): the MAC
        // covers neither the destination nor the checksum.
        let ctx = Context {
            version: adv.version,
            vrid: adv.vrid,
            src,
        };
        let mut trailer = None;
        for dst in rt.dests.clone() {
            let mut msg = adv.encode_authenticated(src, dst, &rt.auth);
            if let Some(h) = &mut rt.hmac {
                if trailer.is_none() {
                    trailer = h.sign(&ctx, &msg, Instant::now(), wall_clock());
                }
            }
            if let Some(t) = &trailer {
                msg = with_trailer(msg, t, src, dst);
            }
            let sent = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    rt.ip_id = rt.ip_id.wrapping_add(1);
                    port.socket.send_v4(&ipv4_packet(s, d, rt.ip_id, &msg), d)
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => port.socket.send_v6(&msg, s, d),
                _ => continue,
            };
            match sent {
                Ok(()) => {
                    rt.counters.adverts_sent += 1;
                    if priority == 0 {
                        rt.counters.priority_zero_sent += 1;
                    }
                }
                Err(e) => warn!(instance = %rt.cfg.name, "sending an advert to {dst}: {e}"),
            }
        }
    }

    async fn on_command(&mut self, cmd: Command, now: Instant) -> Vec<Out> {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
                Vec::new()
            }
            Command::Reload(reply) => {
                if self.reloads.request(reply) {
                    self.parse();
                }
                Vec::new()
            }
            Command::Maintenance {
                instance,
                on,
                reply,
            } => {
                let unknown = || CommandError::NotFound(format!("no instance named {instance}"));
                let Some(id) = self.node.id(&instance) else {
                    let _ = reply.send(Err(unknown()));
                    return Vec::new();
                };
                info!(instance = %instance, "maintenance {}", if on { "on: handing over" } else { "off" });
                self.events.publish(EventKind::Action {
                    action: if on {
                        "maintenance_on"
                    } else {
                        "maintenance_off"
                    }
                    .into(),
                    target: instance.clone(),
                    user: None,
                });
                let outs = self.node.set_maintenance(now, id, on);
                self.execute(outs, now).await;
                let _ = reply.send(self.instance_status(id).ok_or_else(unknown));
                Vec::new()
            }
        }
    }
}

/// The sync groups of `config` as the node takes them.
pub(crate) fn groups(config: &Config) -> Vec<(String, Vec<String>)> {
    config
        .vrrp_sync_groups
        .iter()
        .map(|g| (g.name.clone(), g.instances.clone()))
        .collect()
}

/// The tail of a lateness warning: how many the log left out before it.
fn more(unlogged: u64) -> String {
    if unlogged == 0 {
        String::new()
    } else {
        format!(" ({unlogged} more since the last one logged; see the status's lateness)")
    }
}
