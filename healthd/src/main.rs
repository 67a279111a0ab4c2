use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use healthd::daemon::{Daemon, Input, Options};
use tandem_model::api::{HealthdStatus, now_millis};
use tandem_model::config;
use tandem_model::control::{Client, reload_and_report};
use tandem_model::host::{Host, forward_signals};
use tokio::sync::mpsc;
use tracing::{error, info};

/// tandem's health checker: checks the real servers of every virtual
/// server and keeps the kernel's IPVS table to the ones that are up.
///
/// Without a subcommand it runs the daemon. The subcommands talk to a
/// running one over its control socket.
///
/// Examples:
///   tandem-healthd --check /etc/tandem/tandem.toml
///   tandem-healthd status
///   tandem-healthd drain web-http 10.0.0.11     # weight 0, kept across restarts
///   tandem-healthd enable web-http 10.0.0.11
///   tandem-healthd reload
#[derive(Parser)]
#[command(name = "tandem-healthd", version, verbatim_doc_comment)]
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
    /// Directory of the drains kept across restarts (overrides [node] state_dir).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "healthd=debug".
    #[arg(long, env = "TANDEM_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every virtual server: real servers, health and why, weights, connections.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration; a refused file keeps the running state.
    Reload,
    /// Weight 0 for a real server (its connections drain); kept across restarts.
    Drain {
        virtual_server: String,
        real_server: String,
    },
    /// Undo a drain.
    Enable {
        virtual_server: String,
        real_server: String,
    },
    /// Follow the daemon's events as JSON lines.
    Events {
        #[arg(long)]
        since: Option<u64>,
    },
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
                "tandem-healthd",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Some(Cmd::Man { dir }) => return tandem_model::manpages::run(Args::command(), &dir),
        _ => {}
    }
    raise_open_files_limit();
    // One thread: the loop and thousands of probes a second are I/O;
    // moving them between threads cost more (wakeups, futexes) than it
    // gained, as perf showed.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem-healthd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(cmd) = args.command {
        let dir = args.socket_dir.clone().unwrap_or_else(|| {
            config::load(&args.config)
                .map(|c| c.node.socket_dir)
                .unwrap_or_else(|_| config::DEFAULT_SOCKET_DIR.into())
        });
        return match rt.block_on(client(cmd, config::socket_in(&dir, "healthd"))) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("tandem-healthd: {e:#}");
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
    let opts = Options {
        config: args.config,
        socket_dir: args.socket_dir,
        state_dir: args.state_dir,
    };
    match rt.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("tandem-healthd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every check in flight holds a socket, and at 37,000 real servers
/// thousands are in flight at once: the soft limit of open files (1,024
/// by default) would refuse them. It is raised to at least 65,536 where
/// healthd may raise the hard limit (as root, as keepalived does for its
/// checkers), else to the hard limit, as systemd.exec(5) advises
/// programs that need many descriptors (524,288 under systemd). Checks
/// that still find no descriptor give no verdict (see `Outcome::local`).
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct
    // passed, which lives across the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let hard = lim.rlim_max;
        let want = hard.max(65_536);
        for max in [want, hard] {
            let l = libc::rlimit {
                rlim_cur: max,
                rlim_max: max,
            };
            if lim.rlim_cur >= max || libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
                return;
            }
        }
    }
}

async fn run(opts: Options) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<Input>(16384);
    let daemon = Daemon::new(opts, tx.clone()).await?;
    let router = healthd::control::router(tx.clone(), &daemon.events());
    let host = Host::serve(&daemon.socket_path(), router).await?;
    forward_signals(tx, Input::Signal)?;
    info!(socket = %host.socket().display(), "running");
    host.ready();
    let result = daemon.run(rx).await;
    host.stop().await;
    result.map_err(Into::into)
}

async fn client(cmd: Cmd, socket: PathBuf) -> anyhow::Result<ExitCode> {
    let c = Client::new(socket);
    match cmd {
        Cmd::Status { json } => {
            let st: HealthdStatus = c.get("/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", healthd::report::render(&st, now_millis()));
            }
        }
        Cmd::Reload => {
            if !reload_and_report(&c).await? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Drain {
            virtual_server,
            real_server,
        } => {
            let path =
                format!("/virtual-servers/{virtual_server}/real-servers/{real_server}/drain");
            let _: serde_json::Value = c.post(&path, &serde_json::json!({})).await?;
            println!("{virtual_server}/{real_server}: drained (weight 0; connections finish)");
        }
        Cmd::Enable {
            virtual_server,
            real_server,
        } => {
            let path =
                format!("/virtual-servers/{virtual_server}/real-servers/{real_server}/enable");
            let _: serde_json::Value = c.post(&path, &serde_json::json!({})).await?;
            println!("{virtual_server}/{real_server}: enabled");
        }
        Cmd::Events { since } => {
            use futures::StreamExt;
            let mut events = Box::pin(c.events(since).await?);
            while let Some(e) = events.next().await {
                println!("{}", serde_json::to_string(&e?)?);
            }
        }
        Cmd::Completions { .. } | Cmd::Man { .. } => unreachable!("main handles these first"),
    }
    Ok(ExitCode::SUCCESS)
}
