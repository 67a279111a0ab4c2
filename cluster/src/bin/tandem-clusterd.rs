use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tandem_cluster::identity::Identity;
use tandem_cluster::local::Local;
use tandem_cluster::owner::{Owner, ROUND};
use tandem_cluster::store::Store;
use tandem_model::api::EventKind;
use tandem_model::config;
use tandem_model::control::EventLog;
use tandem_model::host::{Host, Signal, forward_signals};
use tokio::sync::mpsc;
use tracing::{error, info};

/// tandem's cluster daemon: the owner of the configuration file on this
/// director, keeping it the same on every director of the cluster over
/// mutual TLS.
///
/// A change handed to it (by the web UI or `tandem config apply`) is
/// checked by every reachable director, then taken by all or kept by
/// none. A director that was away catches up before its vrrpd starts;
/// changes made on both sides of a partition are a conflict shown
/// everywhere until an administrator chooses.
///
/// Examples:
///   tandem-clusterd --config /etc/tandem/tandem.toml
///   tandem cluster status
#[derive(Parser)]
#[command(name = "tandem-clusterd", version, verbatim_doc_comment)]
struct Args {
    /// Validate this configuration file, print the findings, and exit
    /// (0: clean, 1: refused).
    #[arg(long, value_name = "CONFIG")]
    check: Option<PathBuf>,
    /// The configuration file.
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Directory of the control sockets (overrides [node] socket_dir).
    #[arg(long)]
    socket_dir: Option<PathBuf>,
    /// Directory of the state kept across restarts (overrides [node]
    /// state_dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "tandem_cluster=debug".
    #[arg(long, env = "TANDEM_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a shell completion script (e.g. `completions bash`).
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (section 8) into DIR, as the package ships them.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check {
        return config::run_check(&path);
    }
    match args.command {
        Some(Cmd::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Args::command(),
                "tandem-clusterd",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Some(Cmd::Man { dir }) => return tandem_model::manpages::run(Args::command(), &dir),
        None => {}
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
            eprintln!("tandem-clusterd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.config, args.socket_dir, args.state_dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("tandem-clusterd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    path: PathBuf,
    socket_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let me = config::cluster::identity(&path)
        .context("this director has no name: set TANDEM_NODE, or write it in the file node beside the configuration")?;
    let c = config::load(&path)?;
    let cluster = c
        .cluster
        .clone()
        .filter(|c| c.synchronised())
        .with_context(|| {
            format!(
                "{} does not describe a synchronised cluster: tandem-clusterd needs [cluster] nodes and address",
                path.display()
            )
        })?;
    let identity = Identity::load(&cluster.identity_dir)?;
    anyhow::ensure!(
        identity.node == me,
        "this director is \"{me}\", but its cluster certificate ({}) is for \"{}\"",
        cluster
            .identity_dir
            .join(tandem_cluster::identity::NODE_CERT)
            .display(),
        identity.node
    );
    let socket_dir = socket_dir.unwrap_or_else(|| c.node.socket_dir.clone());
    let state_dir = state_dir.unwrap_or_else(|| c.node.state_dir.clone());
    let store = Store::open(&path, &state_dir)
        .with_context(|| format!("state directory {}", state_dir.display()))?;
    let events = EventLog::new("clusterd", &me, 1024);
    let local = Local::new(&me, store, &socket_dir);
    let server_tls = identity.server.clone();
    let owner = Arc::new(Owner::open(local, identity, events.clone())?);
    owner.finish_recovery().await;
    let address = cluster
        .address
        .map(|a| std::net::SocketAddr::new(a, cluster.port))
        .context("no [cluster] address for this director")?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the other directors"))?;
    let router = tandem_cluster::control::router(owner.clone(), &events);
    let host = Host::serve(&config::socket_in(&socket_dir, "clusterd"), router).await?;
    let (tx, mut rx) = mpsc::channel::<Signal>(8);
    forward_signals(tx, |s| s)?;
    events.publish(EventKind::DaemonStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
    });
    let serving = tokio::spawn(tandem_cluster::peer::serve(
        listener,
        server_tls,
        owner.clone(),
    ));
    info!(%address, socket = %host.socket().display(), "running");
    // Ready once every director was asked and a newer version taken, so
    // a vrrpd ordered after this unit starts with the cluster's file.
    owner.round().await;
    host.ready();
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => owner.round().await,
            s = rx.recv() => match s {
                Some(Signal::Reload) => owner.round().await,
                Some(Signal::Terminate) | None => break,
            },
        }
    }
    events.publish(EventKind::DaemonStopping);
    serving.abort();
    host.stop().await;
    Ok(())
}
