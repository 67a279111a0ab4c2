use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tandem_model::api::{InstanceStatus, VrrpdStatus, now_millis};
use tandem_model::config;
use tandem_model::control::{Client, reload_and_report};
use tandem_model::host::{Host, forward_signals};
use tokio::sync::mpsc;
use tracing::{error, info};
use vrrpd::daemon::Daemon;
use vrrpd::input::{Input, Options};

/// tandem's VRRP daemon: floats the virtual IPs between the directors
/// (VRRPv3 RFC 5798 and v2 RFC 3768, IPv4 and IPv6).
///
/// Without a subcommand it runs the daemon. The subcommands talk to a
/// running one over its control socket.
///
/// Examples:
///   tandem-vrrpd --check /etc/tandem/tandem.toml
///   tandem-vrrpd --config /etc/tandem/tandem.toml
///   tandem-vrrpd status
///   tandem-vrrpd maintenance web on      # hand web over to the peer
///   tandem-vrrpd reload
///   tandem-vrrpd events
///   tandem-vrrpd release                 # after a crash: take the VIPs away
#[derive(Parser)]
#[command(name = "tandem-vrrpd", version, verbatim_doc_comment)]
struct Args {
    /// Validate this configuration file, print the findings, and exit
    /// (0: clean, 1: refused).
    #[arg(long, value_name = "CONFIG")]
    check: Option<PathBuf>,
    /// The configuration file.
    #[arg(long, short, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Directory of the control socket (overrides [node] socket_dir).
    #[arg(long, global = true)]
    socket_dir: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "vrrpd=debug".
    #[arg(long, env = "TANDEM_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show every instance: state, priority, master, VIPs, last transition.
    Status {
        /// The raw status document.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration; a refused file keeps the running state.
    Reload,
    /// Maintenance of an instance: "on" hands it over to the peer without
    /// losing a packet and keeps it backup; "off" restores its priority.
    Maintenance {
        instance: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Follow the daemon's events (transitions, reloads) as JSON lines.
    Events {
        /// Replay the events still held after this sequence number first.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Remove what a dead vrrpd left on this host.
    ///
    /// The virtual IPs and virtual-MAC interfaces of the configured
    /// instances, as a vrrpd killed with -9 leaves them. The systemd unit
    /// runs it whenever the daemon stops; it refuses while a vrrpd answers
    /// on the control socket.
    Release,
    /// Print a shell completion script (e.g. `completions bash`).
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (section 8) into DIR, as the package ships them.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check {
        let checked = config::run_check(&path);
        if checked != ExitCode::SUCCESS {
            return checked;
        }
        // The keys auth_hmac names are vrrpd's to read: a file that is
        // missing, open to others or malformed fails the check here, not
        // at the next start.
        if let Ok(c) = config::load(&path) {
            match vrrpd::auth::for_config(&c) {
                Ok(a) if !a.is_empty() => println!(
                    "{}: auth_hmac keys read for {}",
                    path.display(),
                    a.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        return checked;
    }
    if let Some(cmd) = args.command {
        match cmd {
            Cmd::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Args::command(),
                    "tandem-vrrpd",
                    &mut std::io::stdout(),
                );
                return ExitCode::SUCCESS;
            }
            Cmd::Man { dir } => return tandem_model::manpages::run(Args::command(), &dir),
            _ => {}
        }
        let socket = client_socket(&args.config, args.socket_dir.as_deref());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let result = match (rt, cmd) {
            (Ok(rt), Cmd::Release) => rt.block_on(release(&args.config, socket)),
            (Ok(rt), cmd) => rt.block_on(client(cmd, socket)),
            (Err(e), _) => Err(e.into()),
        };
        return match result {
            Ok(code) => code,
            Err(e) => {
                eprintln!("tandem-vrrpd: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-vrrpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        config: args.config,
        socket_dir: args.socket_dir,
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("tandem-vrrpd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: Options) -> anyhow::Result<()> {
    wait_for_cluster(&opts).await;
    let (tx, rx) = mpsc::channel::<Input>(1024);
    let mut daemon = Daemon::new(opts, tx.clone()).await?;
    let router = vrrpd::control::router(tx.clone(), &daemon.events());
    let host = Host::serve(&daemon.socket_path(), router).await?;
    forward_signals(tx, Input::Signal)?;
    daemon.start().await?;
    info!(socket = %host.socket().display(), "running");
    host.ready();
    let result = daemon.run(rx).await;
    host.stop().await;
    result.map_err(Into::into)
}

/// In a synchronised cluster, waits (at most `[cluster] catch_up`) until
/// tandem-clusterd has asked every director for its version and taken a
/// newer one: a director returning from an outage must not preempt with
/// the file it had before. Runs before the file is read, so vrrpd starts
/// with the cluster's version.
async fn wait_for_cluster(opts: &Options) {
    use tandem_model::sync::ClusterStatus;
    // A file that does not load is reported by the daemon itself.
    let Ok(c) = config::load(&opts.config) else {
        return;
    };
    let Some(cluster) = c.cluster.as_ref().filter(|c| c.synchronised()) else {
        return;
    };
    let dir = opts.socket_dir.clone().unwrap_or(c.node.socket_dir.clone());
    let clusterd = Client::new(config::socket_in(&dir, "clusterd"));
    let until = std::time::Instant::now() + cluster.catch_up;
    info!(
        "waiting up to {} for tandem-clusterd to catch up with the other directors",
        config::format_duration(cluster.catch_up)
    );
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        let asked = tokio::time::timeout(
            left.max(std::time::Duration::from_millis(100)),
            clusterd.get::<ClusterStatus>("/status"),
        )
        .await;
        let last = match asked.unwrap_or_else(|_| {
            Err(tandem_model::control::ClientError::Http {
                path: "/status".into(),
                status: 504,
                message: "no answer".into(),
                body: None,
            })
        }) {
            Ok(s) if s.ready => {
                info!(
                    version = s.version.short(),
                    generation = s.version.generation,
                    "the cluster's configuration is here ({}): starting",
                    s.state.label()
                );
                return;
            }
            Ok(s) => s.detail,
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= until {
            tracing::warn!(
                "tandem-clusterd did not catch up within {} ({last}): starting with the file as it is",
                config::format_duration(cluster.catch_up)
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `release`: what a dead vrrpd left on the interfaces goes away. A live
/// one is left alone: taking its VIPs behind its back would black-hole
/// them while it still advertises mastership.
async fn release(config_path: &std::path::Path, socket: PathBuf) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path).with_context(|| {
        format!(
            "cannot tell which VIPs to release: {}",
            config_path.display()
        )
    })?;
    if tokio::net::UnixStream::connect(&socket).await.is_ok() {
        anyhow::bail!(
            "a vrrpd answers on {}: stop it instead (it hands its VIPs over)",
            socket.display()
        );
    }
    let released = vrrpd::daemon::addresses::release(&config).await?;
    for line in &released.removed {
        println!("released {line}");
    }
    if released.removed.is_empty() && released.errors.is_empty() {
        println!("nothing to release");
    }
    for e in &released.errors {
        eprintln!("tandem-vrrpd: release: {e}");
    }
    Ok(if released.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The control socket a client command talks to: --socket-dir, else the
/// configuration's socket_dir, else the default.
fn client_socket(config_path: &std::path::Path, socket_dir: Option<&std::path::Path>) -> PathBuf {
    let dir = match socket_dir {
        Some(d) => d.to_path_buf(),
        None => config::load(config_path)
            .map(|c| c.node.socket_dir)
            .unwrap_or_else(|_| config::DEFAULT_SOCKET_DIR.into()),
    };
    config::socket_in(&dir, "vrrpd")
}

async fn client(cmd: Cmd, socket: PathBuf) -> anyhow::Result<ExitCode> {
    let c = Client::new(socket);
    match cmd {
        Cmd::Status { json } => {
            let st: VrrpdStatus = c.get("/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", vrrpd::report::render(&st, now_millis()));
            }
        }
        Cmd::Reload => {
            if !reload_and_report(&c).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Maintenance { instance, state } => {
            let path = format!("/instances/{instance}/maintenance");
            let st: InstanceStatus = c
                .post(&path, &serde_json::json!({ "on": state == "on" }))
                .await?;
            println!(
                "{}: {} at priority {}{}",
                st.name,
                st.state,
                st.effective_priority,
                if st.maintenance {
                    " (maintenance: handing over)"
                } else {
                    ""
                }
            );
        }
        Cmd::Events { since } => {
            use futures::StreamExt;
            let mut events = Box::pin(c.events(since).await?);
            while let Some(e) = events.next().await {
                println!("{}", serde_json::to_string(&e?)?);
            }
        }
        Cmd::Release | Cmd::Completions { .. } | Cmd::Man { .. } => {
            unreachable!("main handles these without a daemon")
        }
    }
    Ok(ExitCode::SUCCESS)
}
