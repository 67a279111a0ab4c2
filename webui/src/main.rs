use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser, Subcommand};
use tandem_model::config;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};
use webui::state::{App, Options};

/// tandem's web UI: the cluster's state, the virtual servers, events,
/// drains and handovers, and safe edits of the configuration file, over
/// the daemons' control sockets. Also a JSON API and /metrics.
///
/// Without a subcommand it runs the server (listening on [webui] listen,
/// 127.0.0.1:8080 by default).
///
/// Examples:
///   tandem-webui --check /etc/tandem/tandem.toml
///   tandem-webui hash-password            # prints an argon2 PHC string
///   tandem-webui --listen 127.0.0.1:9090
#[derive(Parser)]
#[command(name = "tandem-webui", version, verbatim_doc_comment)]
struct Args {
    /// Validate this configuration file, print the findings, and exit
    /// (0: clean, 1: refused).
    #[arg(long, value_name = "CONFIG")]
    check: Option<PathBuf>,
    /// The configuration file (read, and written by the config page).
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Directory of the daemons' control sockets (overrides [node] socket_dir).
    #[arg(long)]
    socket_dir: Option<PathBuf>,
    /// Listen here instead of [webui] listen (port 0: any free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Previous versions of the configuration to keep (FILE.1 ... FILE.N).
    #[arg(long, default_value_t = 10)]
    backups: usize,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "webui=debug".
    #[arg(long, env = "TANDEM_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Read a password (from the terminal without echo, or one line of
    /// standard input) and print its argon2id hash for [[webui.user]]
    /// password_hash.
    HashPassword,
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
        Some(Cmd::HashPassword) => {
            return match hash_password() {
                Ok(h) => {
                    println!("{h}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tandem-webui: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Cmd::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Args::command(),
                "tandem-webui",
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
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-webui: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("tandem-webui: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = read_hidden("Password: ")?;
        let second = read_hidden("Again: ")?;
        if first != second {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    Ok(webui::auth::hash_password(&password)?)
}

/// One line from the terminal with echo off (restored whatever happens).
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("opening the terminal")?;
    tty.write_all(prompt.as_bytes())?;
    tty.flush()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tty);
    // SAFETY: a zeroed termios is a valid buffer for tcgetattr to fill.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is the open terminal; term is a valid termios.
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        bail!("cannot read the terminal's settings");
    }
    let saved = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: as above, with the settings just read and changed.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    // SAFETY: restores what tcgetattr gave.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listen = args.listen.unwrap_or(cfg.webui.listen);
    if let Some(why) = cfg.webui.plain_http_refusal(listen) {
        bail!("{why}");
    }
    if cfg.webui.users.is_empty() {
        if !listen.ip().is_loopback() {
            bail!(
                "listen {listen} is reachable from other hosts but no [[webui.user]] is defined: add users (password hashes from `tandem-webui hash-password`) or listen on 127.0.0.1"
            );
        }
        warn!(
            "no [[webui.user]] in {}: serving read-only, without login, on loopback only",
            args.config.display()
        );
    }
    let tls = match (&cfg.webui.tls_cert, &cfg.webui.tls_key) {
        (Some(c), Some(k)) => Some(webui::tls::server_config(c, k)?),
        _ => None,
    };
    let socket_dir = args
        .socket_dir
        .clone()
        .unwrap_or_else(|| cfg.node.socket_dir.clone());
    let app = App::new(
        Options {
            config_path: args.config.clone(),
            socket_dir: socket_dir.clone(),
            backups: args.backups,
            tls: tls.is_some(),
            clock: webui::system_clock(),
            limits: Default::default(),
        },
        &cfg,
    );
    app.spawn_followers();
    let router = webui::server::router(app.clone());
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = tcp.local_addr()?;

    let mut hup = signal(SignalKind::hangup())?;
    let reload_app = app.clone();
    let config_path = args.config.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            // The users and the session timeout; the listener and TLS
            // need a restart.
            match config::load(&config_path) {
                Ok(c) => {
                    reload_app.apply_settings(&c);
                    info!("SIGHUP: users and session timeout re-read");
                }
                Err(e) => warn!("SIGHUP: configuration refused, keeping the users:\n{e}"),
            }
        }
    });
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(
        config = %args.config.display(),
        sockets = %socket_dir.display(),
        "listening on {scheme}://{local}"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let stats = app.connections.clone();
    let limits = tandem_model::serve::Limits::WEB;
    match tls {
        Some(t) => {
            let listener = webui::tls::TlsListener::new(tcp, t, app.handshakes.clone())?;
            tandem_model::serve::serve(listener, router, limits, stats, shutdown).await?
        }
        None => tandem_model::serve::serve(tcp, router, limits, stats, shutdown).await?,
    }
    Ok(())
}
