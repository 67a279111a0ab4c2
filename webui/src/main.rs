use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use clap::{CommandFactory, Parser, Subcommand};
use tandem_model::api::{HealthdStatus, VrrpdStatus};
use tandem_model::config::{self, Config};
use tandem_model::control::Client;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

/// tandem's web UI: cluster status and safe configuration editing.
///
/// This build serves a read-only status page of this director (its VRRP
/// instances and virtual servers, read from the daemons' control sockets)
/// on the `[webui] listen` address, loopback only: it has no login, so it
/// refuses an address other hosts can reach, and TLS.
///
/// Examples:
///   tandem-webui --check /etc/tandem/tandem.toml
///   tandem-webui --config /etc/tandem/tandem.toml
///   ssh -L 8080:127.0.0.1:8080 lb1     # then browse http://127.0.0.1:8080/
#[derive(Parser)]
#[command(name = "tandem-webui", version, verbatim_doc_comment)]
struct Args {
    /// Validate this configuration file, print the findings, and exit
    /// (0: clean, 1: refused).
    #[arg(long, value_name = "CONFIG")]
    check: Option<PathBuf>,
    /// The configuration file.
    #[arg(long, short, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Directory of the daemons' control sockets (overrides [node] socket_dir).
    #[arg(long)]
    socket_dir: Option<PathBuf>,
    /// Log filter (RUST_LOG syntax), e.g. "info" or "debug".
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
                "tandem-webui",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Some(Cmd::Man { dir }) => {
            return match tandem_model::manpages::write(Args::command(), &dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tandem-webui: {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            };
        }
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
            eprintln!("tandem-webui: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args.config, args.socket_dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("tandem-webui: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Ui {
    config_path: PathBuf,
    socket_dir: Option<PathBuf>,
}

async fn run(config_path: PathBuf, socket_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::load(&config_path)?;
    let listen = config.webui.listen;
    // Without a login, anyone who reaches the port reads the director's
    // state: only this host's users may.
    if !listen.ip().is_loopback() {
        anyhow::bail!(
            "[webui] listen {listen}: this build has no login and serves loopback addresses only"
        );
    }
    if config.webui.tls_cert.is_some() {
        anyhow::bail!("[webui] tls_cert: this build serves plain HTTP on loopback only");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let ui = Arc::new(Ui {
        config_path,
        socket_dir,
    });
    let app = Router::new().route("/", get(page)).with_state(ui);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let stop = async move {
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                // The page reads the file on every request: only the
                // listen address is fixed at start.
                _ = hup.recv() => warn!("reload: pages already follow the file; a new listen address needs a restart"),
            }
        }
    };
    info!(%listen, "serving");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    info!("stopped");
    Ok(())
}

async fn page(State(ui): State<Arc<Ui>>) -> Html<String> {
    let loaded = config::load(&ui.config_path);
    let dir = match (&ui.socket_dir, &loaded) {
        (Some(d), _) => d.clone(),
        (None, Ok(c)) => c.node.socket_dir.clone(),
        (None, Err(_)) => config::DEFAULT_SOCKET_DIR.into(),
    };
    let vrrpd = Client::new(dir.join("vrrpd.sock"))
        .get::<VrrpdStatus>("/status")
        .await;
    let healthd = Client::new(dir.join("healthd.sock"))
        .get::<HealthdStatus>("/status")
        .await;
    Html(render(
        &ui.config_path,
        &loaded,
        vrrpd.map_err(|e| e.to_string()),
        healthd.map_err(|e| e.to_string()),
    ))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn render(
    config_path: &Path,
    config: &Result<Config, config::ConfigError>,
    vrrpd: Result<VrrpdStatus, String>,
    healthd: Result<HealthdStatus, String>,
) -> String {
    let node = match config {
        Ok(c) => c.node_name(),
        Err(_) => "tandem".to_string(),
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{0}: tandem</title></head><body>\n<h1>{0}</h1>\n",
        esc(&node)
    );
    let _ = match config {
        Ok(_) => writeln!(
            h,
            "<p>configuration {}: valid</p>",
            esc(&config_path.display().to_string())
        ),
        Err(e) => writeln!(
            h,
            "<p>configuration refused: <pre>{}</pre></p>",
            esc(&e.to_string())
        ),
    };
    h.push_str("<h2>VRRP instances</h2>\n");
    match vrrpd {
        Ok(st) if st.instances.is_empty() => h.push_str("<p>none configured</p>\n"),
        Ok(st) => {
            h.push_str("<table><tr><th>instance</th><th>interface</th><th>VRID</th><th>state</th><th>priority</th><th>VIPs</th></tr>\n");
            for i in &st.instances {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&i.name),
                    esc(&i.interface),
                    i.vrid,
                    i.state,
                    i.effective_priority,
                    esc(&i.virtual_ips.join(" "))
                );
            }
            h.push_str("</table>\n");
        }
        Err(e) => {
            let _ = writeln!(h, "<p>tandem-vrrpd does not answer: {}</p>", esc(&e));
        }
    }
    h.push_str("<h2>Virtual servers</h2>\n");
    match healthd {
        Ok(st) if st.virtual_servers.is_empty() => h.push_str("<p>none configured</p>\n"),
        Ok(st) => {
            h.push_str("<table><tr><th>virtual server</th><th>service</th><th>up</th><th>quorum</th></tr>\n");
            for v in &st.virtual_servers {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{} of {}</td><td>{}</td></tr>",
                    esc(&v.name),
                    esc(&v.service),
                    v.up,
                    v.real_servers.len(),
                    if v.quorum_met { "met" } else { "lost" }
                );
            }
            h.push_str("</table>\n");
        }
        Err(e) => {
            let _ = writeln!(h, "<p>tandem-healthd does not answer: {}</p>", esc(&e));
        }
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_node_and_says_which_daemon_is_down() {
        let config = config::parse("[node]\nname = \"lb1\"\n", "t.toml");
        let page = render(
            Path::new("/etc/tandem/tandem.toml"),
            &config,
            Err("connection refused".into()),
            Err("no such file".into()),
        );
        assert!(page.contains("<h1>lb1</h1>"), "{page}");
        assert!(page.contains("configuration /etc/tandem/tandem.toml: valid"));
        assert!(page.contains("tandem-vrrpd does not answer: connection refused"));
        assert!(page.contains("tandem-healthd does not answer: no such file"));
    }

    #[test]
    fn a_refused_configuration_is_shown_escaped() {
        let config = config::parse("[node]\nname = \"lb<1>\"\n", "t.toml");
        let page = render(
            Path::new("/etc/tandem/tandem.toml"),
            &config,
            Err("down".into()),
            Err("down".into()),
        );
        assert!(page.contains("configuration refused"), "{page}");
        assert!(page.contains("&quot;lb&lt;1&gt;&quot;"), "{page}");
        assert!(!page.contains("lb<1>"), "{page}");
    }
}
