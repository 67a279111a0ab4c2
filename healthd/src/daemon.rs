//! The daemon: one loop owns the engine; probes run as tasks and report
//! back; a dedicated thread owns the IPVS netlink socket and reconciles
//! the kernel's table to what the engine wants ([`crate::dataplane`]
//! against [`Kernel`]). healthd is the only writer of that table while it
//! runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipvsctl::Kernel;
use ipvsctl::types::{ServiceKey, SyncDaemon, Table};
use tandem_model::api::{
    ApiError, DaemonInfo, DataplaneStatus, EventKind, HealthdStatus, ReloadResult, now_millis,
};
use tandem_model::config::{self, Config, ConfigError};
use tandem_model::control::{CommandError, EventLog, Reloads};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

pub use crate::dataplane::Synced;
use crate::dataplane::{SyncRequest, retire, sync_once, wanted_sync_daemon};
use crate::engine::{Engine, ProbeRef};
use crate::health::Outcome;
use crate::probe::Prober;

#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    pub socket_dir: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Setup(String),
}

pub enum Command {
    Status(oneshot::Sender<HealthdStatus>),
    Reload(oneshot::Sender<Result<ReloadResult, ApiError>>),
    Drain {
        virtual_server: String,
        real_server: String,
        on: bool,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
}

pub use tandem_model::host::Signal;

pub enum Input {
    Probe {
        probe: ProbeRef,
        outcome: Outcome,
    },
    Synced(Result<Synced, String>),
    /// The state of the instance connection sync follows (None: vrrpd
    /// cannot be reached).
    VrrpState(Option<tandem_model::api::VrrpState>),
    Command(Command),
    Signal(Signal),
    /// A reload's parse, done off the loop.
    Parsed(Box<Result<Config, ConfigError>>),
}

type ReloadReply = oneshot::Sender<Result<ReloadResult, ApiError>>;

/// Starts the thread that owns the netlink socket. It connects lazily
/// and again after an error, so a kernel without IPVS is reported, not
/// fatal: the checks go on.
fn spawn_ipvs(tx: mpsc::Sender<Input>) -> std::sync::mpsc::Sender<SyncRequest> {
    let (req_tx, req_rx) = std::sync::mpsc::channel::<SyncRequest>();
    std::thread::Builder::new()
        .name("ipvs".into())
        .spawn(move || {
            let mut kernel: Option<Kernel> = None;
            let mut known: Option<Table> = None;
            while let Ok(mut req) = req_rx.recv() {
                // Only the latest desired table matters, read if any
                // request asked for it.
                while let Ok(newer) = req_rx.try_recv() {
                    let read = req.read || newer.read;
                    req = newer;
                    req.read = read;
                }
                let result = sync_kernel(&mut kernel, &req, &mut known);
                if result.is_err() {
                    kernel = None;
                }
                if tx.blocking_send(Input::Synced(result)).is_err() {
                    return;
                }
            }
        })
        .expect("a thread");
    req_tx
}

/// One sync with the kernel, connecting first when there is no
/// connection (the first time, or after an error).
fn sync_kernel(
    kernel: &mut Option<Kernel>,
    req: &SyncRequest,
    known: &mut Option<Table>,
) -> Result<Synced, String> {
    let k = match kernel {
        Some(k) => k,
        None => kernel.insert(Kernel::connect().map_err(|e| e.to_string())?),
    };
    sync_once(k, req, known)
}

/// Hands the memory a reload freed back to the system. Parsing a file of
/// 37,000 real servers peaks at tens of megabytes that glibc's allocator
/// would otherwise keep for good: RSS grew by half after one reload.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Operator drains, kept across restarts.
fn state_file(dir: &Path) -> PathBuf {
    dir.join("healthd-drains.json")
}

fn load_drains(dir: &Path) -> BTreeSet<String> {
    let path = state_file(dir);
    match std::fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| {
            error!("{}: {e}; no real server is drained", path.display());
            BTreeSet::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => {
            error!("{}: {e}; no real server is drained", path.display());
            BTreeSet::new()
        }
    }
}

/// Written to a temporary file and renamed: a crash never leaves half a
/// file.
fn save_drains(dir: &Path, drains: &BTreeSet<String>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = state_file(dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(drains).expect("strings serialize"),
    )?;
    std::fs::rename(&tmp, &path)
}

pub fn socket_path(opts: &Options, config: &Config) -> PathBuf {
    config::socket_in(&socket_dir(opts, config), "healthd")
}

fn socket_dir(opts: &Options, config: &Config) -> PathBuf {
    opts.socket_dir
        .clone()
        .unwrap_or_else(|| config.node.socket_dir.clone())
}

pub struct Daemon {
    opts: Options,
    config: Config,
    info: DaemonInfo,
    engine: Engine,
    prober: Arc<Prober>,
    events: EventLog,
    tx: mpsc::Sender<Input>,
    /// Probe results, on a channel of their own: the loop serves commands
    /// and the dataplane's answers first, so an operator is answered even
    /// while ten thousand results a second queue up.
    results: mpsc::Sender<Input>,
    results_rx: Option<mpsc::Receiver<Input>>,
    ipvs: std::sync::mpsc::Sender<SyncRequest>,
    /// The kernel's table as last seen.
    current: Table,
    dataplane: DataplaneStatus,
    /// Services owned before a reload removed them: deleted at the next
    /// sync.
    retired: BTreeSet<ServiceKey>,
    sync_in_flight: bool,
    sync_wanted: bool,
    /// The sync wanted next must read the table.
    read_wanted: bool,
    state_dir: PathBuf,
    /// An instant and its Unix time, for stable timestamps in the status.
    anchor: (Instant, u64),
    /// When a sync last read the kernel's table, and how long the read
    /// took.
    last_read: Option<Instant>,
    read_cost: Duration,
    /// A status was asked for since the last read of the table.
    status_asked: bool,
    /// Checks that could not run, as last warned of, and why the last one
    /// could not.
    not_run: (u64, Arc<str>),
    /// vrrpd's state of the instance connection sync follows.
    vrrp_state: Option<tandem_model::api::VrrpState>,
    vrrp_task: Option<tokio::task::JoinHandle<()>>,
    reloads: Reloads<ReloadReply>,
}

/// The longest healthd goes without comparing the table with the kernel's,
/// unless reading it costs more than 1 % of a CPU at that pace.
const RESYNC: Duration = Duration::from_secs(10);
/// How often connection counters are read while something watches them
/// (a real server leaving, an operator's status), unless reading costs
/// more than 5 % of a CPU at that pace.
const WATCH: Duration = Duration::from_secs(1);
/// The grid probe starts are gathered on.
const SLACK: Duration = Duration::from_millis(10);

/// Where the loop's one probe timer goes: to the next probe start,
/// gathered on a grid of SLACK (counted from `epoch`), and far off when
/// no probe is queued (all running, or none configured). It moves only
/// when that instant changes.
struct Arming {
    epoch: Instant,
    /// The instant the timer is set for; None once it has fired.
    armed: Option<Instant>,
}

impl Arming {
    fn new(epoch: Instant) -> Arming {
        Arming { epoch, armed: None }
    }

    /// The instant to set the timer to, when it must move. A timer that
    /// fired is always set again: left as it is, it would be ready at
    /// every turn and the loop would spin.
    fn next(&mut self, deadline: Option<Instant>) -> Option<Instant> {
        let at = deadline.map_or(self.epoch + IDLE, |d| self.on_grid(d));
        (self.armed != Some(at)).then(|| {
            self.armed = Some(at);
            at
        })
    }

    fn fired(&mut self) {
        self.armed = None;
    }

    /// The first point of the grid at or after `t`.
    fn on_grid(&self, t: Instant) -> Instant {
        let since = t.saturating_duration_since(self.epoch).as_nanos();
        let step = SLACK.as_nanos();
        self.epoch + Duration::from_nanos((since.div_ceil(step) * step) as u64)
    }
}

/// Inputs handled per wakeup.
const BATCH: usize = 512;
/// How long the loop sleeps with no probe scheduled: far enough to be
/// never (a year).
const IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

impl Daemon {
    pub async fn new(opts: Options, tx: mpsc::Sender<Input>) -> Result<Daemon, DaemonError> {
        let config = config::load(&opts.config)?;
        let state_dir = opts
            .state_dir
            .clone()
            .unwrap_or_else(|| config.node.state_dir.clone());
        let prober = Arc::new(Prober::new().map_err(|e| DaemonError::Setup(e.to_string()))?);
        let ipvs = spawn_ipvs(tx.clone());
        // The kernel's table before anything else: what is there and
        // healthy is adopted, not removed and re-added.
        let first = tokio::task::spawn_blocking(|| Kernel::connect().and_then(|mut k| k.table()))
            .await
            .map_err(|e| DaemonError::Setup(e.to_string()))?;
        let (current, dataplane) = match first {
            Ok(t) => (
                t,
                DataplaneStatus {
                    ok: true,
                    ..Default::default()
                },
            ),
            Err(e) => {
                warn!("IPVS: {e}; checking anyway, the table is programmed once IPVS answers");
                (
                    Table::default(),
                    DataplaneStatus {
                        ok: false,
                        error: Some(e.to_string()),
                        ..Default::default()
                    },
                )
            }
        };
        let engine = Engine::new(&config, Instant::now(), &current, load_drains(&state_dir))
            .map_err(|e| DaemonError::Setup(e.to_string()))?;
        let node = config.node_name();
        let (results, results_rx) = mpsc::channel(16384);
        Ok(Daemon {
            events: EventLog::new("healthd", &node, 5000),
            info: DaemonInfo {
                daemon: "healthd".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                node,
                pid: std::process::id(),
                started_at: now_millis(),
                config_path: opts.config.display().to_string(),
                config_loaded_at: now_millis(),
            },
            opts,
            config,
            engine,
            prober,
            tx,
            results,
            results_rx: Some(results_rx),
            ipvs,
            current,
            dataplane,
            retired: BTreeSet::new(),
            sync_in_flight: false,
            sync_wanted: true,
            read_wanted: false,
            state_dir,
            anchor: (Instant::now(), now_millis()),
            last_read: None,
            read_cost: Duration::ZERO,
            status_asked: false,
            not_run: (0, Arc::from("")),
            vrrp_state: None,
            vrrp_task: None,
            reloads: Reloads::new(),
        })
    }

    pub fn events(&self) -> EventLog {
        self.events.clone()
    }

    pub fn socket_path(&self) -> PathBuf {
        socket_path(&self.opts, &self.config)
    }

    /// The sync daemon the configuration and vrrpd's state call for.
    fn sync_daemon(&self) -> Option<SyncDaemon> {
        wanted_sync_daemon(&self.config, self.vrrp_state)
    }

    /// Whether the periodic tick should read the table: a server is
    /// leaving (its connections are watched), the last sync failed,
    /// someone asked for the status (fresh counters), or it has been
    /// `RESYNC` since the last read (a table changed behind healthd's back
    /// is put right). Both periods stretch with the cost of a read, so
    /// that reading stays a small part of healthd's work at any size: a
    /// dump per second regardless cost more than the checks themselves
    /// with a thousand real servers under emulation, and a read of 37,000
    /// takes seconds there.
    fn resync_due(&self) -> bool {
        let age = self.last_read.map_or(Duration::MAX, |t| t.elapsed());
        let watch = WATCH.max(self.read_cost * 20);
        let drift = RESYNC.max(self.read_cost * 100);
        ((self.engine.leaving() || self.status_asked) && age >= watch)
            || !self.dataplane.ok
            || age >= drift
    }

    /// Asks the IPVS thread for a sync (after the one in flight, if any);
    /// `read`: with a fresh read of the kernel's table rather than against
    /// the table the last sync left.
    fn request_sync(&mut self, read: bool) {
        self.read_wanted |= read;
        if self.sync_in_flight {
            self.sync_wanted = true;
            return;
        }
        let now = Instant::now();
        let sync_daemon = self.sync_daemon();
        let read = std::mem::take(&mut self.read_wanted);
        let req = SyncRequest::new(
            &mut self.engine,
            now,
            &self.current,
            &self.retired,
            sync_daemon,
            read,
        );
        self.sync_in_flight = true;
        self.sync_wanted = false;
        if read {
            self.status_asked = false;
            self.last_read = Some(now);
        }
        let _ = self.ipvs.send(req);
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) -> Result<(), DaemonError> {
        self.events.publish(EventKind::DaemonStarted {
            version: self.info.version.clone(),
        });
        info!(probes = self.engine.probes(), "checking");
        self.follow_vrrp();
        self.request_sync(true);
        let mut results = self.results_rx.take().expect("run is called once");
        // Every change of health, drain or configuration syncs at once;
        // this tick syncs besides when something needs watching (see
        // `resync_due`).
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One timer, moved only when the next probe's time changes, and
        // inputs taken in batches: with ten thousand results a second, a
        // new timer and a wakeup per result cost more than the probes.
        let timer = tokio::time::sleep(IDLE);
        tokio::pin!(timer);
        let mut arming = Arming::new(Instant::now());
        let mut batch = Vec::with_capacity(BATCH);
        let mut outcomes = Vec::with_capacity(BATCH);
        let mut stop = false;
        while !stop {
            // Probe starts are gathered on a grid of SLACK: a thousand
            // probes a second then wake the loop a hundred times, not a
            // thousand (a wakeup costs more than a probe); a check starts
            // at most SLACK late.
            if let Some(at) = arming.next(self.engine.next_deadline()) {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            // Commands, signals and the dataplane's answers first, then
            // the clocks, then probe results: under any load of results
            // an operator is answered and probes start on time.
            tokio::select! {
                biased;
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                }
                _ = tick.tick() => {
                    self.warn_not_run();
                    if self.resync_due() {
                        self.request_sync(true);
                    } else if self.engine.ramping() {
                        // A slow start's next step: the table moves with
                        // time alone (one weight change per ramping server
                        // and second, at most).
                        self.request_sync(false);
                    }
                    continue;
                }
                _ = &mut timer => arming.fired(),
                _ = results.recv_many(&mut outcomes, BATCH) => {}
            }
            let now = Instant::now();
            let mut changed = false;
            for input in batch.drain(..).chain(outcomes.drain(..)) {
                match input {
                    Input::Probe { probe, outcome } => {
                        if outcome.local {
                            self.not_run.1 = outcome.reason.clone();
                        }
                        let events = self.engine.record(now, probe, outcome);
                        if !events.is_empty() {
                            self.publish(events);
                            changed = true;
                        }
                    }
                    Input::Synced(r) => self.synced(r),
                    Input::VrrpState(state) => {
                        if crate::vrrp::role(state) != crate::vrrp::role(self.vrrp_state) {
                            changed = true;
                        }
                        self.vrrp_state = state;
                    }
                    Input::Command(c) => self.command(c),
                    Input::Signal(Signal::Reload) => {
                        let (tx, _) = oneshot::channel();
                        self.command(Command::Reload(tx));
                    }
                    Input::Parsed(parsed) => self.parsed(*parsed),
                    Input::Signal(Signal::Terminate) => stop = true,
                }
            }
            if changed {
                self.request_sync(false);
            }
            self.start_due(now);
        }
        // The table stays as it is: the next healthd adopts it, and
        // traffic keeps flowing meanwhile.
        self.events.publish(EventKind::DaemonStopping);
        info!("stopped; the IPVS table is left as it is");
        Ok(())
    }

    /// Says, at most once a tick, how many checks could not run since the
    /// last time and why: the director is short of something, which its
    /// operator must hear of, while no server's health moved for it.
    fn warn_not_run(&mut self) {
        let n = self.engine.not_run();
        if n > self.not_run.0 {
            warn!(
                "{} check(s) could not run ({}); no real server's health changed for them",
                n - self.not_run.0,
                self.not_run.1
            );
            self.not_run.0 = n;
        }
    }

    /// Connection sync follows vrrpd's state of its instance.
    fn follow_vrrp(&mut self) {
        if let Some(t) = self.vrrp_task.take() {
            t.abort();
        }
        if let Some(cs) = &self.config.connection_sync {
            let dir = socket_dir(&self.opts, &self.config);
            self.vrrp_task = Some(tokio::spawn(crate::vrrp::watch(
                config::socket_in(&dir, "vrrpd"),
                cs.instance.clone(),
                self.tx.clone(),
            )));
        }
    }

    fn start_due(&mut self, now: Instant) {
        for (probe, spec) in self.engine.due(now) {
            let prober = self.prober.clone();
            let tx = self.results.clone();
            tokio::spawn(async move {
                let outcome = prober.run(&spec).await;
                let _ = tx.send(Input::Probe { probe, outcome }).await;
            });
        }
    }

    fn publish(&self, events: Vec<EventKind>) {
        for e in events {
            match &e {
                EventKind::RealServerHealth {
                    virtual_server,
                    real_server,
                    up,
                    reason,
                } => info!(
                    virtual_server = %virtual_server,
                    "real server {real_server} is {}: {reason}",
                    if *up { "UP" } else { "DOWN" }
                ),
                EventKind::Quorum {
                    virtual_server,
                    met,
                    up,
                    quorum,
                } => info!(
                    virtual_server = %virtual_server,
                    "quorum {}: {up} of {quorum} needed up",
                    if *met { "met" } else { "lost" }
                ),
                _ => {}
            }
            self.events.publish(e);
        }
    }

    fn synced(&mut self, r: Result<Synced, String>) {
        self.sync_in_flight = false;
        match r {
            Ok(s) => {
                if !self.dataplane.ok {
                    info!("IPVS: table in sync");
                }
                self.current = s.table;
                if let Some(took) = s.read {
                    self.read_cost = took;
                }
                self.dataplane.ok = true;
                self.dataplane.error = None;
                self.dataplane.last_sync = Some(now_millis());
                self.dataplane.operations += s.operations as u64;
                self.dataplane.connection_sync = s.sync_daemon.map(|d| {
                    format!(
                        "{} on {}, sync id {}",
                        d.role.name(),
                        d.interface,
                        d.sync_id
                    )
                });
                retire(&mut self.retired, &self.current, self.engine.keys());
            }
            Err(e) => {
                if self.dataplane.error.as_deref() != Some(e.as_str()) {
                    error!("IPVS: {e}");
                }
                self.dataplane.ok = false;
                self.dataplane.error = Some(e);
            }
        }
        if self.sync_wanted {
            self.request_sync(false);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                self.status_asked = true;
                let _ = reply.send(self.status());
            }
            Command::Drain {
                virtual_server,
                real_server,
                on,
                reply,
            } => {
                let _ = reply.send(self.drain(&virtual_server, &real_server, on));
            }
            Command::Reload(reply) => {
                if self.reloads.request(reply) {
                    self.parse();
                }
            }
        }
    }

    /// An operator's drain (`on`) or enable. Saved before it is applied:
    /// a drain that would not survive a restart is refused, not half done.
    fn drain(&mut self, vs: &str, rs: &str, on: bool) -> Result<(), CommandError> {
        let after = self
            .engine
            .drains_after(vs, rs, on)
            .map_err(CommandError::NotFound)?;
        if &after != self.engine.drains() {
            save_drains(&self.state_dir, &after).map_err(|e| {
                let why = format!(
                    "cannot keep the drains in {}: {e}; nothing changed",
                    state_file(&self.state_dir).display()
                );
                error!("{why}");
                CommandError::Failed(why)
            })?;
        }
        let events = self
            .engine
            .set_drain(Instant::now(), vs, rs, on)
            .map_err(CommandError::NotFound)?;
        self.publish(events);
        self.request_sync(false);
        Ok(())
    }

    /// Parses the file on a blocking thread; the result comes back as
    /// [`Input::Parsed`].
    fn parse(&self) {
        let path = self.opts.config.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = config::load(&path);
            let _ = tx.blocking_send(Input::Parsed(Box::new(parsed)));
        });
    }

    fn parsed(&mut self, parsed: Result<Config, ConfigError>) {
        let result = self.reload(parsed);
        let (answered, again) = self.reloads.finished();
        for reply in answered {
            let _ = reply.send(result.clone());
        }
        if again {
            self.parse();
        }
    }

    fn reload(&mut self, parsed: Result<Config, ConfigError>) -> Result<ReloadResult, ApiError> {
        let new = match parsed {
            Ok(c) => c,
            Err(e) => {
                let refused = tandem_model::control::refused_reload(&self.opts.config, &e);
                warn!("reload refused: {e}");
                self.events.publish(EventKind::ReloadRefused {
                    error: refused.error.clone(),
                });
                return Err(refused);
            }
        };
        let old_keys = self.engine.keys().clone();
        match self.engine.reload(&new, Instant::now(), &self.current) {
            Ok(changes) => {
                self.retired
                    .extend(old_keys.difference(self.engine.keys()).copied());
                let unchanged = new
                    .virtual_servers
                    .len()
                    .saturating_sub(changes.iter().filter(|c| !c.ends_with(": removed")).count());
                let follow = self.config.connection_sync != new.connection_sync;
                self.config = new;
                if follow {
                    self.follow_vrrp();
                }
                self.info.config_loaded_at = now_millis();
                release_freed_memory();
                info!("reloaded: {} change(s)", changes.len());
                self.events.publish(EventKind::Reloaded {
                    changes: changes.clone(),
                });
                self.request_sync(false);
                Ok(ReloadResult { changes, unchanged })
            }
            // Validation refuses what the conversion would; kept as the
            // conversion's own guard.
            Err(e) => Err(ApiError {
                error: format!("{e}; running configuration kept"),
                diagnostics: Vec::new(),
            }),
        }
    }

    pub fn status(&self) -> HealthdStatus {
        HealthdStatus {
            daemon: self.info.clone(),
            dataplane: self.dataplane.clone(),
            virtual_servers: self.engine.status(self.anchor, &self.current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_probe_timer_moves_only_when_the_next_start_changes() {
        let t0 = Instant::now();
        let mut a = Arming::new(t0);
        assert_eq!(a.next(Some(t0 + 3 * MS)), Some(t0 + SLACK));
        assert_eq!(a.next(Some(t0 + 7 * MS)), None, "same grid point");
        assert_eq!(a.next(Some(t0 + 15 * MS)), Some(t0 + 2 * SLACK));
    }

    #[test]
    fn a_fired_timer_with_no_probe_queued_is_set_far_off() {
        let t0 = Instant::now();
        let mut a = Arming::new(t0);
        a.next(Some(t0 + SLACK));
        a.fired();
        // Every probe is running: nothing is queued.
        assert_eq!(a.next(None), Some(t0 + IDLE));
        assert_eq!(a.next(None), None);
        a.fired();
        assert_eq!(
            a.next(Some(t0 + SLACK)),
            Some(t0 + SLACK),
            "set again even at the same instant"
        );
    }
}
