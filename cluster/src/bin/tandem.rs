use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tandem_cluster::identity;
use tandem_model::api::now_millis;
use tandem_model::config;
use tandem_model::control::Client;
use tandem_model::sync::{
    Action, ActionRequest, ActionResult, ApplyRequest, ApplyResult, ClusterStatus, ConfigVersion,
};

/// tandem: the cluster of directors, operated as one.
///
/// Talks to tandem-clusterd on this director, which speaks for the whole
/// cluster: a change applied here is checked and taken by every director,
/// or by none.
///
/// Examples:
///   tandem cluster status
///   tandem config apply                  # after editing /etc/tandem/tandem.toml
///   tandem config apply new.toml --comment "add web3"
///   tandem drain web 10.0.0.11:80        # on every director
///   tandem config resolve --take lb2     # end a conflict with lb2's version
///   tandem cluster init                  # on the first director
///   tandem cluster invite lb2 --out lb2.bundle
///   tandem cluster join lb2.bundle       # on lb2
///   tandem import keepalived /etc/keepalived/keepalived.conf --node lb1 -o tandem.toml
#[derive(Parser)]
#[command(name = "tandem", version, verbatim_doc_comment)]
struct Args {
    /// The configuration file.
    #[arg(long, short, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Directory of the control sockets (overrides [node] socket_dir).
    #[arg(long, global = true)]
    socket_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The cluster: its directors, their versions, the sync.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The cluster's configuration file.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Drain a real server (weight 0) on every director.
    Drain {
        virtual_server: String,
        real_server: String,
    },
    /// Put a drained real server back in service on every director.
    Enable {
        virtual_server: String,
        real_server: String,
    },
    /// Maintenance of a VRRP instance on one director: "on" hands it over
    /// to another director, "off" restores its priority.
    Maintenance {
        instance: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// The director (this one when absent).
        #[arg(long)]
        node: Option<String>,
    },
    /// Follow tandem-clusterd's events (versions taken, sync state) as JSON lines.
    Events {
        #[arg(long)]
        since: Option<u64>,
    },
    /// Examine this director for what is set up wrong (NAT without
    /// forwarding, a firewall dropping VRRP, another router on one of
    /// our VRIDs; vrrpd is watched for three adverts' time):
    /// each finding with how it was seen, what it breaks and the command
    /// that fixes it, worst first. Exit 0: nothing worse than info, 1: a
    /// warning, 2: an error.
    Doctor {
        /// The findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert another load balancer's configuration into tandem's.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Print a shell completion script (e.g. `completions bash`).
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (section 8) into DIR, as the package ships them.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum ImportCmd {
    /// keepalived.conf (with its includes, macros and @node lines) as
    /// tandem's TOML, checked as `--check` would. The report on standard
    /// error names, with file:line:column, every keyword not carried over
    /// and every one whose meaning shifts. Exit status: 0 complete, 1
    /// partial (something was not carried over), 2 failed.
    #[command(verbatim_doc_comment)]
    Keepalived {
        /// keepalived's configuration file.
        file: PathBuf,
        /// The director to import for: `@ID` lines are kept for it (as
        /// keepalived's -i; default the first label of the host name).
        #[arg(long)]
        node: Option<String>,
        /// Write the TOML here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Every director: reachable, its version, in sync or not, its instances.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make a new cluster identity (a certificate authority and this
    /// director's certificate) on the first director.
    Init {
        /// This director's name (as [cluster] nodes has it); from
        /// TANDEM_NODE, the file node beside the configuration, or the
        /// host name when absent.
        #[arg(long)]
        node: Option<String>,
        /// Where the identity goes ([cluster] identity_dir).
        #[arg(long, default_value = config::cluster::DEFAULT_IDENTITY_DIR)]
        dir: PathBuf,
    },
    /// Make the identity bundle of another director, for `join` there.
    Invite {
        node: String,
        #[arg(long, default_value = config::cluster::DEFAULT_IDENTITY_DIR)]
        dir: PathBuf,
        /// Write the bundle here (mode 0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Install the bundle `invite` made for this director.
    Join {
        bundle: PathBuf,
        #[arg(long, default_value = config::cluster::DEFAULT_IDENTITY_DIR)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Make FILE (the configuration file itself when absent, after a hand
    /// edit) the cluster's configuration, on every director or none.
    Apply {
        file: Option<PathBuf>,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// End a conflict: take one director's version, or a merged file.
    Resolve {
        /// The director whose version to keep (this one's name keeps ours).
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        take: Option<String>,
        /// A file merged by hand from the versions in conflict.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Drop a hand edit: put the version held back in the file.
    Discard,
    /// The versions held, newest first.
    History,
    /// Print a version's text.
    Show { version: String },
    /// Show a conflict's differences.
    Diff,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match &args.command {
        Cmd::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "tandem",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Cmd::Man { dir } => return tandem_model::manpages::run(Args::command(), dir),
        Cmd::Import(ImportCmd::Keepalived { file, node, out }) => {
            return import_keepalived(file, node.as_deref(), out.as_deref());
        }
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tandem: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Cmd::Doctor { json } = args.command {
        return doctor(&rt, &args.config, args.socket_dir.as_deref(), json);
    }
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tandem: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tandem doctor`: the exit status is the worst finding's (3 when the
/// file does not load: nothing was examined).
fn doctor(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    socket_dir: Option<&Path>,
    json: bool,
) -> ExitCode {
    let mut c = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(3);
        }
    };
    if let Some(d) = socket_dir {
        c.node.socket_dir = d.to_path_buf();
    }
    let what = tandem_doctor::Examine {
        nft: true,
        probes: true,
    };
    let r = rt.block_on(tandem_doctor::diagnose(
        c,
        what,
        tandem_model::api::now_millis(),
    ));
    if json {
        match serde_json::to_string(&r) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("tandem: {e}");
                return ExitCode::from(3);
            }
        }
    } else if r.findings.is_empty() {
        println!(
            "no findings ({}; {})",
            path.display(),
            tandem_doctor::finding::examined(&r)
        );
    } else {
        print!("{}", tandem_doctor::finding::render(&r.findings));
        println!("({})", tandem_doctor::finding::examined(&r));
    }
    ExitCode::from(r.exit)
}

/// `tandem import keepalived`: 0 complete, 1 partial, 2 failed.
fn import_keepalived(file: &Path, node: Option<&str>, out: Option<&Path>) -> ExitCode {
    // keepalived's default configuration id: the host name up to its
    // first dot.
    let config_id = node.map(str::to_string).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .split('.')
            .next()
            .unwrap_or("")
            .to_string()
    });
    let opts = tandem_import::Options {
        config_id,
        instance: String::new(),
    };
    let imported = match tandem_import::keepalived(&tandem_import::Disk, file, &opts) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    for n in &imported.notes {
        eprintln!("{n}");
    }
    let origin = out.map_or("(imported)".into(), |p| p.display().to_string());
    if let Err(e) = config::parse(&imported.toml, &origin) {
        eprintln!("tandem: the imported configuration does not pass the check:\n{e}");
        return ExitCode::from(2);
    }
    let written = match out {
        Some(p) => std::fs::write(p, &imported.toml).map_err(|e| format!("{}: {e}", p.display())),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(imported.toml.as_bytes())
                .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = written {
        eprintln!("tandem: {e}");
        return ExitCode::from(2);
    }
    let not = imported
        .notes
        .iter()
        .filter(|n| n.kind == tandem_import::keepalived::Kind::NotCarried)
        .count();
    let shifted = imported.notes.len() - not;
    eprintln!(
        "tandem: {}: {not} not carried over, {shifted} shifted in meaning; the result passes the check",
        if imported.complete() {
            "complete"
        } else {
            "partial"
        }
    );
    if imported.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn socket(args: &Args) -> PathBuf {
    let dir = match &args.socket_dir {
        Some(d) => d.clone(),
        None => match config::load(&args.config) {
            Ok(c) => c.node.socket_dir,
            Err(e) => {
                // A broken hand edit must not lock the operator out of
                // `tandem config discard`.
                let first = e.to_string();
                eprintln!(
                    "tandem: {} does not load ({}); using {} (pass --socket-dir if the sockets are elsewhere)",
                    args.config.display(),
                    first.lines().next().unwrap_or_default(),
                    config::DEFAULT_SOCKET_DIR
                );
                config::DEFAULT_SOCKET_DIR.into()
            }
        },
    };
    config::socket_in(&dir, "clusterd")
}

/// Who is making the change: the user behind sudo, else the login.
fn author() -> String {
    for v in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(v)
            && !u.is_empty()
        {
            return u;
        }
    }
    "root".into()
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = Client::new(socket(&args));
    match args.command {
        Cmd::Cluster(ClusterCmd::Status { json }) => {
            let st: ClusterStatus = c.get("/status").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", render_status(&st));
            }
            Ok(if st.state.in_sync() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Cmd::Cluster(ClusterCmd::Init { node, dir }) => {
            let node = node
                .or_else(|| config::cluster::identity(&args.config))
                .context("name this director with --node")?;
            identity::init(&dir, &node)?;
            println!(
                "cluster identity for {node} in {}: invite the other directors with `tandem cluster invite NODE --out NODE.bundle`",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cluster(ClusterCmd::Invite { node, dir, out }) => {
            let bundle = identity::invite(&dir, &node)?;
            match out {
                Some(p) => {
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&p)
                        .with_context(|| format!("cannot create {}", p.display()))?;
                    f.write_all(bundle.as_bytes())?;
                    println!(
                        "{}: copy it to {node} (it holds {node}'s key), run `tandem cluster join {}` there, then delete it",
                        p.display(),
                        p.display()
                    );
                }
                None => print!("{bundle}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cluster(ClusterCmd::Join { bundle, dir }) => {
            let text = read(&bundle)?;
            let node = identity::join(&dir, &text, &bundle)?;
            println!(
                "this director is {node} of the cluster (identity in {}): start tandem-clusterd",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config(ConfigCmd::Apply { file, comment }) => {
            let text = read(file.as_deref().unwrap_or(&args.config))?;
            apply(&c, text, comment, false).await
        }
        Cmd::Config(ConfigCmd::Resolve { take, file }) => {
            let st: ClusterStatus = c.get("/status").await?;
            if st.conflict.is_none() {
                anyhow::bail!("there is no conflict to resolve ({})", st.state.label());
            }
            let text = match (take, file) {
                (_, Some(f)) => read(&f)?,
                (Some(n), None) => {
                    let v = st.side_of(&n).with_context(|| {
                        format!("{n} is not in the conflict; the sides are {}", st.sides())
                    })?;
                    version_text(&c, v).await?
                }
                (None, None) => unreachable!("clap requires --take or --file"),
            };
            apply(&c, text, "resolves a conflict".into(), true).await
        }
        Cmd::Config(ConfigCmd::Discard) => {
            let v: ConfigVersion = c.post("/config/discard", &serde_json::json!({})).await?;
            println!(
                "the file is version {} (generation {}) again",
                v.short(),
                v.generation
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config(ConfigCmd::History) => {
            let st: ClusterStatus = c.get("/status").await?;
            for v in &st.history {
                let mark = if v.id == st.version.id { "*" } else { " " };
                println!(
                    "{mark} {} generation {:>4}  {}  by {} on {}{}",
                    v.short(),
                    v.generation,
                    ago(v.at),
                    if v.author.is_empty() {
                        "(adopted)"
                    } else {
                        &v.author
                    },
                    v.node,
                    if v.comment.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", v.comment)
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config(ConfigCmd::Show { version }) => {
            let st: ClusterStatus = c.get("/status").await?;
            let v = st
                .history
                .iter()
                .find(|v| v.id.starts_with(&version))
                .with_context(|| format!("no version {version} in the history"))?;
            print!("{}", version_text(&c, v).await?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config(ConfigCmd::Diff) => {
            let st: ClusterStatus = c.get("/status").await?;
            match st.conflict {
                Some(conflict) => {
                    for t in &conflict.theirs {
                        print!("{}", t.diff);
                    }
                    Ok(ExitCode::from(3))
                }
                None => {
                    println!("no conflict ({})", st.state.label());
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Cmd::Drain {
            virtual_server,
            real_server,
        } => {
            act(
                &c,
                Action::Drain {
                    virtual_server,
                    real_server,
                },
            )
            .await
        }
        Cmd::Enable {
            virtual_server,
            real_server,
        } => {
            act(
                &c,
                Action::Enable {
                    virtual_server,
                    real_server,
                },
            )
            .await
        }
        Cmd::Maintenance {
            instance,
            state,
            node,
        } => {
            let node = match node {
                Some(n) => n,
                None => c.get::<ClusterStatus>("/status").await?.node,
            };
            act(
                &c,
                Action::Maintenance {
                    instance,
                    on: state == "on",
                    node,
                },
            )
            .await
        }
        Cmd::Events { since } => {
            use futures::StreamExt;
            let mut events = Box::pin(c.events(since).await?);
            while let Some(e) = events.next().await {
                println!("{}", serde_json::to_string(&e?)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completions { .. } | Cmd::Man { .. } | Cmd::Import(_) | Cmd::Doctor { .. } => {
            unreachable!("main handles these")
        }
    }
}

async fn version_text(c: &Client, v: &ConfigVersion) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Text {
        text: String,
    }
    let t: Text = c.get(&format!("/versions/{}", v.id)).await?;
    Ok(t.text)
}

async fn apply(
    c: &Client,
    text: String,
    comment: String,
    resolve: bool,
) -> anyhow::Result<ExitCode> {
    let r: ApplyResult = c
        .post(
            "/config",
            &ApplyRequest {
                text,
                author: author(),
                comment,
                base: None,
                resolve,
            },
        )
        .await?;
    print!("{}", r.render());
    Ok(if r.applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn act(c: &Client, action: Action) -> anyhow::Result<ExitCode> {
    let r: ActionResult = c
        .post(
            "/actions",
            &ActionRequest {
                action,
                author: author(),
            },
        )
        .await?;
    for n in &r.nodes {
        println!(
            "{}: {}{}",
            n.node,
            if n.ok { "done" } else { "FAILED" },
            if n.ok || n.message.is_empty() {
                String::new()
            } else {
                format!(": {}", n.message)
            }
        );
    }
    Ok(if r.done {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn ago(at: u64) -> String {
    let s = now_millis().saturating_sub(at) / 1000;
    match s {
        0..60 => format!("{s:>3}s ago"),
        60..3600 => format!("{:>3}m ago", s / 60),
        3600..86400 => format!("{:>3}h ago", s / 3600),
        _ => format!("{:>3}d ago", s / 86400),
    }
}

fn render_status(st: &ClusterStatus) -> String {
    let mut out = format!(
        "cluster: {}\n  {}\n\n",
        st.state.label().to_uppercase(),
        st.detail
    );
    out.push_str(&format!(
        "{:<12} {:<9} {:<26} {}\n",
        "DIRECTOR", "REACHABLE", "VERSION", "MASTER OF"
    ));
    out.push_str(&format!(
        "{:<12} {:<9} {:<26} (this director)\n",
        st.node,
        "yes",
        format!("{} gen {}", st.version.short(), st.version.generation)
    ));
    for p in &st.peers {
        let version = p
            .version
            .as_ref()
            .map(|v| format!("{} gen {}", v.short(), v.generation))
            .unwrap_or_else(|| "-".into());
        let masters = p
            .vrrpd
            .as_ref()
            .map(|v| {
                v.instances
                    .iter()
                    .filter(|i| i.state == tandem_model::api::VrrpState::Master)
                    .map(|i| i.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<12} {:<9} {:<26} {}\n",
            p.name,
            if p.reachable { "yes" } else { "NO" },
            version,
            if p.reachable {
                masters
            } else {
                p.error.clone().unwrap_or_default()
            }
        ));
    }
    if let Some(c) = &st.conflict {
        out.push_str("\nconflict:\n");
        for t in &c.theirs {
            out.push_str(&t.diff);
        }
        out.push_str("\nresolve with `tandem config resolve --take NODE` or `--file MERGED`\n");
    }
    let k = &st.counters;
    if k.refused_tls + k.refused_peers + k.bad_messages + k.stale_messages > 0 {
        out.push_str(&format!(
            "\nrefused on the sync channel: {} TLS, {} unknown peers, {} malformed, {} stale\n",
            k.refused_tls, k.refused_peers, k.bad_messages, k.stale_messages
        ));
    }
    out
}
