//! The application state every handler shares: the settings taken from the
//! configuration, sessions, rate limits, the daemons, the file, the live
//! event hub and the render cache.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use axum::http::HeaderValue;
use tandem_model::config::{Config, WebUser};
use tokio::sync::broadcast;

use crate::Clock;
use crate::auth::BasicCache;
use crate::configedit::ConfigFile;
use crate::daemons::{self, Daemon, Daemons, LiveNote};
use crate::ratelimit::{Limits, RateLimiter};
use crate::render::Renders;
use crate::session::{SessionStore, User};

pub struct Options {
    pub config_path: PathBuf,
    pub socket_dir: PathBuf,
    /// Previous versions of the configuration kept (`tandem.toml.1` ...).
    pub backups: usize,
    /// Served over TLS: cookies get `Secure` (and the `__Host-` prefix).
    pub tls: bool,
    pub clock: Clock,
    pub limits: Limits,
}

/// What the web UI takes from the configuration; replaced when a new
/// configuration is applied (or on SIGHUP).
pub struct Settings {
    pub users: Vec<WebUser>,
    pub session_timeout_ms: u64,
    pub node: String,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Settings {
            users: c.webui.users.clone(),
            session_timeout_ms: c.webui.session_timeout.as_millis() as u64,
            node: c.node_name(),
        }
    }
}

pub struct App {
    pub settings: RwLock<Settings>,
    pub sessions: Mutex<SessionStore>,
    pub limiter: Mutex<RateLimiter>,
    pub basic: Mutex<BasicCache>,
    pub daemons: Arc<Daemons>,
    pub config: ConfigFile,
    /// One configuration write (and its reloads) at a time.
    pub writes: tokio::sync::Mutex<()>,
    pub live: broadcast::Sender<LiveNote>,
    pub clock: Clock,
    pub tls: bool,
    /// Pages and metrics rendered from the current status documents.
    pub renders: Renders,
    /// tandem-clusterd on this director, when the file is a synchronised
    /// cluster file: it owns the file, and changes go through it.
    pub cluster: Option<tandem_model::control::Client>,
    /// Its last answer, refreshed every second.
    pub cluster_view: RwLock<Option<Arc<tandem_model::sync::ClusterStatus>>>,
    /// Rates of every director for the cluster page's charts.
    pub samples: Mutex<crate::cluster::charts::Samples>,
    /// The listener's connections (admitted, refused, timed out).
    pub connections: Arc<tandem_model::serve::Stats>,
    /// TLS handshakes in progress, admitted and refused the same way.
    pub handshakes: Arc<tandem_model::serve::Stats>,
    /// Password checks at once.
    pub passwords: &'static crate::auth::PasswordGate,
    /// The daemons' sockets (the doctor asks vrrpd there).
    pub socket_dir: PathBuf,
    /// The doctor's last report, shown while it is fresh.
    pub doctor: tokio::sync::Mutex<Option<Arc<tandem_doctor::Report>>>,
}

/// How long the doctor's report stands before a page asks for a new one.
pub const DOCTOR_FRESH_MS: u64 = 60_000;

pub type AppState = Arc<App>;

impl App {
    pub fn new(opts: Options, config: &Config) -> AppState {
        let (live, _) = broadcast::channel(256);
        Arc::new(App {
            settings: RwLock::new(Settings::from_config(config)),
            sessions: Mutex::new(SessionStore::new()),
            limiter: Mutex::new(RateLimiter::new(opts.limits)),
            basic: Mutex::new(BasicCache::default()),
            daemons: Arc::new(Daemons::new(&opts.socket_dir, opts.clock.clone())),
            config: ConfigFile::new(opts.config_path, opts.backups),
            writes: tokio::sync::Mutex::new(()),
            live,
            clock: opts.clock,
            tls: opts.tls,
            renders: Default::default(),
            cluster: config
                .cluster
                .as_ref()
                .filter(|c| c.synchronised())
                .map(|_| {
                    tandem_model::control::Client::new(tandem_model::config::socket_in(
                        &opts.socket_dir,
                        "clusterd",
                    ))
                }),
            cluster_view: RwLock::new(None),
            samples: Mutex::new(Default::default()),
            connections: Arc::default(),
            handshakes: Arc::default(),
            passwords: crate::auth::PasswordGate::shared(),
            socket_dir: opts.socket_dir.clone(),
            doctor: tokio::sync::Mutex::new(None),
        })
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// No `[[webui.user]]`: everyone who reaches the (loopback-only)
    /// listener sees everything and changes nothing.
    pub fn open_mode(&self) -> bool {
        self.settings.read().unwrap().users.is_empty()
    }

    pub fn node(&self) -> String {
        self.settings.read().unwrap().node.clone()
    }

    pub fn cookie_name(&self) -> &'static str {
        // `__Host-`: the browser takes it only over HTTPS, for this host,
        // for every path: no subdomain can plant or shadow it.
        if self.tls {
            "__Host-tandem_session"
        } else {
            "tandem_session"
        }
    }

    pub fn session_cookie(&self, id: &str, max_age_secs: u64) -> HeaderValue {
        let secure = if self.tls { "; Secure" } else { "" };
        let v = format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}",
            self.cookie_name()
        );
        HeaderValue::from_str(&v).expect("a token is a valid header value")
    }

    pub fn clear_cookie(&self) -> HeaderValue {
        self.session_cookie("", 0)
    }

    /// Takes the `[webui]` part of a configuration now in force: users
    /// removed or demoted lose their sessions.
    pub fn apply_settings(&self, config: &Config) {
        let s = Settings::from_config(config);
        let keep: Vec<User> = s
            .users
            .iter()
            .map(|u| User {
                name: u.name.clone(),
                role: u.role,
            })
            .collect();
        self.sessions.lock().unwrap().retain_users(&keep);
        self.basic.lock().unwrap().clear();
        *self.settings.write().unwrap() = s;
    }

    /// Starts following both daemons' events, and the cluster.
    pub fn spawn_followers(self: &Arc<Self>) {
        for d in Daemon::ALL {
            tokio::spawn(daemons::follow(self.daemons.clone(), d, self.live.clone()));
        }
        if self.cluster.is_some() {
            tokio::spawn(crate::cluster::follow(self.clone()));
        }
    }

    /// The doctor's report on this director, examined again when the last
    /// is older than [`DOCTOR_FRESH_MS`]. The web UI runs without
    /// CAP_NET_ADMIN and CAP_NET_RAW: it reads the file, `/proc/sys` and
    /// vrrpd; the ruleset and the ARP probes are `sudo tandem doctor`'s.
    pub async fn doctor(&self) -> Result<Arc<tandem_doctor::Report>, String> {
        let mut held = self.doctor.lock().await;
        if let Some(r) = held
            .as_ref()
            .filter(|r| self.now().saturating_sub(r.at) < DOCTOR_FRESH_MS)
        {
            return Ok(r.clone());
        }
        let mut c = tandem_model::config::load(self.config.path()).map_err(|e| e.to_string())?;
        c.node.socket_dir = self.socket_dir.clone();
        let what = tandem_doctor::Examine {
            nft: false,
            probes: false,
        };
        let r = Arc::new(tandem_doctor::diagnose(c, what, self.now()).await);
        *held = Some(r.clone());
        Ok(r)
    }

    /// The cluster as clusterd last told it, when this is a cluster.
    pub fn cluster_view(&self) -> Option<Arc<tandem_model::sync::ClusterStatus>> {
        self.cluster_view.read().unwrap().clone()
    }
}
