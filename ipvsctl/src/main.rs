use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};

use ipvsctl::list::Columns;
use ipvsctl::reconcile::{Dataplane, Options};
use ipvsctl::save::{self, Command as SaveCommand};
use ipvsctl::types::{ServiceKey, SyncDaemon, SyncRole, Timeouts};
use ipvsctl::{Kernel, desired, list};

const EXAMPLES: &str = "\
Examples:
  ipvsctl list                          the table, like ipvsadm -Ln
  ipvsctl list --stats                  totals per service and real server
  ipvsctl list --json                   everything, for scripts
  ipvsctl diff /etc/tandem/tandem.toml  what apply would do (exit 2 when not in sync)
  ipvsctl apply /etc/tandem/tandem.toml --dry-run
  ipvsctl apply /etc/tandem/tandem.toml --prune
  ipvsctl save > rules                  ipvsadm -S -n format
  ipvsadm -S -n | ipvsctl restore       read ipvsadm -R format from stdin
  ipvsctl zero tcp:192.0.2.10:80        zero one service's counters (or all without SERVICE)
  ipvsctl timeout --tcp 900 --udp 300
  ipvsctl sync-daemon start master --interface eth1 --syncid 5
  ipvsctl completions bash > /etc/bash_completion.d/ipvsctl

Services are written tcp:ADDR:PORT, udp:ADDR:PORT, sctp:ADDR:PORT, fwmark:MARK
or fwmark:MARK:ipv6 (IPv6 addresses in brackets: tcp:[2001:db8::1]:443).
IPVS answers only with CAP_NET_ADMIN (run as root), even to reads.";

/// Kernel IPVS over generic netlink: list, apply, diff, save and restore.
#[derive(Parser)]
#[command(name = "ipvsctl", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the table, like ipvsadm -Ln.
    List {
        /// Totals: connections, packets and bytes.
        #[arg(long, conflicts_with_all = ["rate", "json"])]
        stats: bool,
        /// Rates per second.
        #[arg(long, conflicts_with = "json")]
        rate: bool,
        /// The whole table (settings, counters, statistics) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring the kernel to the virtual servers of a tandem.toml.
    ///
    /// Real servers whose weight, forwarding or thresholds change are
    /// edited in place (connections survive); services the file does not
    /// name are left alone unless --prune.
    Apply {
        /// The configuration file.
        #[arg(value_name = "CONFIG", env = "TANDEM_CONFIG")]
        config: PathBuf,
        /// Print the operations instead of applying them.
        #[arg(long)]
        dry_run: bool,
        /// Also delete services the file does not name.
        #[arg(long)]
        prune: bool,
    },
    /// Print the operations apply would run; exit 0 in sync, 2 not.
    Diff {
        #[arg(value_name = "CONFIG", env = "TANDEM_CONFIG")]
        config: PathBuf,
        /// Count services the file does not name as differences.
        #[arg(long)]
        prune: bool,
    },
    /// Print the table as ipvsadm rules (what ipvsadm -S -n prints).
    Save,
    /// Run ipvsadm rules from stdin (what ipvsadm -R reads).
    Restore,
    /// Zero the counters of one service, or of all.
    Zero {
        /// tcp:ADDR:PORT, udp:..., sctp:..., fwmark:MARK[:ipv6].
        service: Option<ServiceKey>,
    },
    /// Delete every service.
    Flush,
    /// Show the connection timeouts, or set those given.
    Timeout {
        /// TCP (established) timeout in seconds.
        #[arg(long)]
        tcp: Option<u32>,
        /// TCP FIN_WAIT timeout in seconds.
        #[arg(long)]
        tcpfin: Option<u32>,
        /// UDP timeout in seconds.
        #[arg(long)]
        udp: Option<u32>,
    },
    /// The connection synchronisation daemons.
    SyncDaemon {
        #[command(subcommand)]
        action: SyncAction,
    },
    /// Print the IPVS version and connection table size.
    Info,
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (section 8) into DIR, as the package ships them.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum SyncAction {
    /// Start a daemon.
    Start {
        #[arg(value_enum)]
        role: Role,
        /// Multicast interface.
        #[arg(long)]
        interface: String,
        /// Sync id (0-255; 0 accepts every id as backup).
        #[arg(long, default_value_t = 0)]
        syncid: u32,
        /// Largest sync message payload in bytes.
        #[arg(long)]
        maxlen: Option<u16>,
        /// Multicast group (default 224.0.0.81).
        #[arg(long)]
        group: Option<IpAddr>,
        /// UDP port (default 8848).
        #[arg(long)]
        port: Option<u16>,
        /// Multicast TTL (default 1).
        #[arg(long)]
        ttl: Option<u8>,
    },
    /// Stop a daemon.
    Stop {
        #[arg(value_enum)]
        role: Role,
    },
    /// Show the running daemons.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Role {
    Master,
    Backup,
}

impl From<Role> for SyncRole {
    fn from(r: Role) -> SyncRole {
        match r {
            Role::Master => SyncRole::Master,
            Role::Backup => SyncRole::Backup,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        // A reader that went away (`ipvsctl list | head`) is no failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipvsctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<tandem_model::config::Config> {
    tandem_model::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// At run time healthd is the one writer of the IPVS table: it puts back
/// what it wants at its next sync, whatever was changed here. Say so
/// when it answers on its control socket.
fn warn_if_healthd_owns_the_table(socket_dir: &Path) {
    let socket = tandem_model::config::socket_in(socket_dir, "healthd");
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        eprintln!(
            "ipvsctl: warning: tandem-healthd is running ({}) and owns the IPVS table: \
             it will undo changes made here at its next sync",
            socket.display()
        );
    }
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    if let Cmd::Completions { shell } = cmd {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "ipvsctl",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Cmd::Man { dir } = &cmd {
        tandem_model::manpages::write(Cli::command(), dir)
            .with_context(|| dir.display().to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    // Read the configuration before touching the kernel: a refused file
    // should say so whatever the kernel has.
    let config = match &cmd {
        Cmd::Apply { config, .. } | Cmd::Diff { config, .. } => Some(load(config)?),
        _ => None,
    };
    let desired = config.as_ref().map(desired::table).transpose()?;
    match (&cmd, &config) {
        (Cmd::Apply { dry_run: false, .. }, Some(c)) => {
            warn_if_healthd_owns_the_table(&c.node.socket_dir)
        }
        (Cmd::Restore | Cmd::Flush, _) => {
            warn_if_healthd_owns_the_table(Path::new(tandem_model::config::DEFAULT_SOCKET_DIR))
        }
        _ => {}
    }
    let rules = match &cmd {
        Cmd::Restore => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading rules from stdin")?;
            Some(save::parse(&text).context("stdin")?)
        }
        _ => None,
    };
    let mut k = Kernel::connect()?;
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::List { stats, rate, json } => {
            let table = k.table()?;
            if json {
                serde_json::to_writer_pretty(&mut out, &table)?;
                writeln!(out)?;
            } else {
                let info = k.info()?;
                let columns = if stats {
                    Columns::Stats
                } else if rate {
                    Columns::Rate
                } else {
                    Columns::Connections
                };
                out.write_all(list::render(&table, Some(&info), columns).as_bytes())?;
            }
        }
        Cmd::Apply { dry_run, prune, .. } => {
            let desired = desired.expect("read above");
            let options = Options {
                prune,
                ..Options::default()
            };
            let current = k.dump()?;
            let ops = ipvsctl::plan(&desired, &current, options);
            for op in &ops {
                writeln!(out, "{}", save::op_line(op))?;
            }
            if !dry_run && !ops.is_empty() {
                k.apply(&ops)?;
            }
            eprintln!(
                "ipvsctl: {} operation{}{}",
                ops.len(),
                if ops.len() == 1 { "" } else { "s" },
                if dry_run { " (dry run)" } else { " applied" }
            );
        }
        Cmd::Diff { prune, .. } => {
            let desired = desired.expect("read above");
            let current = k.dump()?;
            let options = Options {
                prune,
                ..Options::default()
            };
            let ops = ipvsctl::plan(&desired, &current, options);
            for op in &ops {
                writeln!(out, "{}", save::op_line(op))?;
            }
            if !ops.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
        Cmd::Save => out.write_all(save::render(&k.table()?).as_bytes())?,
        Cmd::Restore => {
            // Runs of operations go in one batch; a clear splits them.
            let mut batch = Vec::new();
            for c in rules.expect("read above") {
                match c {
                    SaveCommand::Op(op) => batch.push(op),
                    SaveCommand::Clear => {
                        k.apply(&std::mem::take(&mut batch))?;
                        k.flush()?;
                    }
                }
            }
            k.apply(&batch)?;
        }
        Cmd::Zero { service } => k.zero(service.as_ref())?,
        Cmd::Flush => k.flush()?,
        Cmd::Timeout { tcp, tcpfin, udp } => {
            let t = Timeouts {
                tcp,
                tcp_fin: tcpfin,
                udp,
            };
            if t != Timeouts::default() {
                k.set_timeouts(&t)?;
            }
            let t = k.timeouts()?;
            let show = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
            writeln!(
                out,
                "Timeout (tcp tcpfin udp): {} {} {}",
                show(t.tcp),
                show(t.tcp_fin),
                show(t.udp)
            )?;
        }
        Cmd::SyncDaemon { action } => match action {
            SyncAction::Start {
                role,
                interface,
                syncid,
                maxlen,
                group,
                port,
                ttl,
            } => {
                if syncid > 255 {
                    bail!("--syncid {syncid} is out of range: allowed 0-255");
                }
                k.start_daemon(&SyncDaemon {
                    role: role.into(),
                    interface,
                    sync_id: syncid,
                    max_len: maxlen,
                    group,
                    port,
                    ttl,
                })?;
            }
            SyncAction::Stop { role } => k.stop_daemon(role.into())?,
            SyncAction::Status { json } => {
                let daemons = k.daemons()?;
                if json {
                    serde_json::to_writer_pretty(&mut out, &daemons)?;
                    writeln!(out)?;
                    return Ok(ExitCode::SUCCESS);
                }
                if daemons.is_empty() {
                    writeln!(out, "no sync daemon is running")?;
                }
                // As ipvsadm -L --daemon prints them.
                for d in &daemons {
                    write!(
                        out,
                        "{} sync daemon (mcast={}, syncid={}",
                        d.role.name(),
                        d.interface,
                        d.sync_id
                    )?;
                    if let Some(v) = d.max_len {
                        write!(out, ", maxlen={v}")?;
                    }
                    if let Some(v) = d.group {
                        write!(out, ", group={v}")?;
                    }
                    if let Some(v) = d.port {
                        write!(out, ", port={v}")?;
                    }
                    if let Some(v) = d.ttl {
                        write!(out, ", ttl={v}")?;
                    }
                    writeln!(out, ")")?;
                }
            }
        },
        Cmd::Info => {
            let i = k.info()?;
            writeln!(
                out,
                "IP Virtual Server version {} (size={})",
                i.version_string(),
                i.conn_table_size
            )?;
        }
        Cmd::Completions { .. } | Cmd::Man { .. } => unreachable!("handled first"),
    }
    Ok(ExitCode::SUCCESS)
}
