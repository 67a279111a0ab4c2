use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tandem_model::config;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info};
use vrrpd::daemon::{Daemon, Input, Options, Signal};

/// tandem's VRRP daemon: floats the virtual IPs between the directors
/// (VRRPv3 RFC 5798 and v2 RFC 3768, IPv4 and IPv6).
///
/// Examples:
///   tandem-vrrpd --check /etc/tandem/tandem.toml
///   tandem-vrrpd --config /etc/tandem/tandem.toml
///   curl --unix-socket /run/tandem/vrrpd.sock http://localhost/status
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// Validate this configuration file, print the findings, and exit
    /// (0: clean, 1: refused).
    #[arg(long, value_name = "CONFIG")]
    check: Option<PathBuf>,
    /// The configuration file.
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Directory of the control socket (overrides [node] socket_dir).
    #[arg(long)]
    socket_dir: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "vrrpd=debug".
    #[arg(long, env = "TANDEM_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check {
        return config::run_check(&path);
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
    let (tx, rx) = mpsc::channel::<Input>(1024);
    let mut daemon = Daemon::new(opts, tx.clone()).await?;
    let socket = daemon.socket_path();
    let listener = tandem_model::control::bind(&socket)
        .await
        .with_context(|| format!("control socket {}", socket.display()))?;
    let router = vrrpd::control::router(tx.clone(), &daemon.events());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = api_stopped.await;
            })
            .await
    });
    spawn_signals(tx)?;
    daemon.start().await?;
    info!(socket = %socket.display(), "running");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let result = daemon.run(rx).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_api.send(());
    let _ = api.await;
    let _ = std::fs::remove_file(&socket);
    result.map_err(Into::into)
}

fn spawn_signals(tx: mpsc::Sender<Input>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Terminate,
                _ = hup.recv() => Signal::Reload,
            };
            if tx.send(Input::Signal(sig)).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
