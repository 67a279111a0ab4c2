//! Network-namespace labs: hosts on a switch, built per test, torn down on
//! drop (also when the test panics).
//!
//! Nothing is created in the root namespace. Every host is a namespace
//! `<prefix>-<name>`; the switch is a bridge in its own namespace
//! `<prefix>-sw`, and each veth pair is created inside the switch
//! namespace with one end moved straight into its host, so interface names
//! never collide with the machine's or another test's.
//!
//! The prefix carries the test process's pid, so a lab leaked by a test
//! process killed with SIGKILL is swept by the next [`lab`] call.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

const PREFIX_TAG: &str = "tdm";

/// Whether this run must not skip: CI sets `CI=true`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Skips (returning `None`) loudly when the machine cannot run netns tests
/// and `CI` is unset; under CI a missing capability is a failure.
pub fn lab(test: &str) -> Option<Lab> {
    if let Err(why) = can_run() {
        if under_ci() {
            panic!("{test}: cannot build a netns lab under CI: {why}");
        }
        eprintln!(
            "\n*** SKIPPED {test}: {why}\n*** netns tests need root and iproute2; run the suite as root (CI does).\n"
        );
        return None;
    }
    sweep_stale();
    Some(Lab::new(test))
}

fn can_run() -> Result<(), String> {
    if !nix_is_root() {
        return Err("not running as root".into());
    }
    which("ip").ok_or("iproute2's `ip` is not installed")?;
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Finds a program on PATH (or the sbin directories root has).
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

/// Names of every namespace on the machine.
pub fn list_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Deletes namespaces of labs whose test process is gone.
fn sweep_stale() {
    for ns in list_namespaces() {
        let Some(rest) = ns.strip_prefix(PREFIX_TAG) else {
            continue;
        };
        let Some(pid) = rest.split('x').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// A lab: hosts, one switch, and every process started in them.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    switch_ns: String,
    ports: BTreeMap<(String, String), String>,
    procs: Arc<Mutex<Vec<u32>>>,
    dir: tempfile::TempDir,
}

/// A host of the lab: a network namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Host {
    pub name: String,
    /// The namespace's full name (`ip netns exec <ns> ...`).
    pub ns: String,
}

impl Lab {
    fn new(test: &str) -> Lab {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX_TAG}{}x{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-{test}-"))
            .tempdir()
            .expect("a temporary directory");
        let switch_ns = format!("{prefix}-sw");
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            switch_ns: switch_ns.clone(),
            ports: BTreeMap::new(),
            procs: Arc::new(Mutex::new(Vec::new())),
            dir,
        };
        lab.add_ns(&switch_ns);
        ip(&["-n", &switch_ns, "link", "add", "br0", "type", "bridge"]);
        // No STP delays, no multicast snooping surprises: a dumb switch.
        ip(&[
            "-n",
            &switch_ns,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &switch_ns, "link", "set", "br0", "up"]);
        lab
    }

    /// Prefix shared by every namespace of this lab.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A scratch directory removed with the lab.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn add_ns(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// A new host with loopback up. IPv6 duplicate address detection is
    /// off so addresses are usable at once, as on a lab switch nobody else
    /// shares.
    pub fn host(&mut self, name: &str) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        self.add_ns(&ns);
        let host = Host {
            name: name.to_string(),
            ns,
        };
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            self.exec_ok(&host, &["sysctl", "-q", "-w", key]);
        }
        host
    }

    /// Plugs `host` into the switch with an interface named `ifname`.
    pub fn connect(&mut self, host: &Host, ifname: &str) {
        let port = format!("p{}", self.ports.len());
        ip(&[
            "-n",
            &self.switch_ns,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "netns",
            &host.ns,
        ]);
        ip(&["-n", &self.switch_ns, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.switch_ns, "link", "set", &port, "up"]);
        ip(&["-n", &host.ns, "link", "set", ifname, "up"]);
        self.ports
            .insert((host.name.clone(), ifname.to_string()), port);
    }

    /// Adds an address ("10.0.0.1/24", "fd00::1/64") to an interface.
    pub fn addr(&self, host: &Host, ifname: &str, cidr: &str) {
        let mut args = vec!["-n", &host.ns, "addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        ip(&args);
    }

    fn port(&self, host: &Host, ifname: &str) -> &str {
        self.ports
            .get(&(host.name.clone(), ifname.to_string()))
            .unwrap_or_else(|| panic!("{} has no link {ifname}", host.name))
    }

    /// Cuts the cable: the switch port goes down, the host loses carrier.
    pub fn cut(&self, host: &Host, ifname: &str) {
        ip(&[
            "-n",
            &self.switch_ns,
            "link",
            "set",
            self.port(host, ifname),
            "down",
        ]);
    }

    /// Plugs the cable back in.
    pub fn heal(&self, host: &Host, ifname: &str) {
        ip(&[
            "-n",
            &self.switch_ns,
            "link",
            "set",
            self.port(host, ifname),
            "up",
        ]);
    }

    /// Isolates a switch port: carrier stays up, but it reaches only
    /// non-isolated ports (two isolated hosts no longer see each other
    /// while both still reach the rest).
    pub fn isolate(&self, host: &Host, ifname: &str, on: bool) {
        let port = self.port(host, ifname).to_string();
        run(Command::new("bridge").args([
            "-n",
            &self.switch_ns,
            "link",
            "set",
            "dev",
            &port,
            "isolated",
            if on { "on" } else { "off" },
        ]));
    }

    /// `ip netns exec <ns> argv...`
    pub fn command(&self, host: &Host, argv: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.ns]).args(argv);
        cmd
    }

    /// Runs a command to completion in `host` and returns its output.
    pub fn exec(&self, host: &Host, argv: &[&str]) -> Output {
        self.command(host, argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {}: {e}", host.name))
    }

    /// Runs a command that must succeed; returns its stdout.
    #[track_caller]
    pub fn exec_ok(&self, host: &Host, argv: &[&str]) -> String {
        let out = self.exec(host, argv);
        assert!(
            out.status.success(),
            "{argv:?} in {} failed ({}): {}{}",
            host.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a process in `host`; its stdout and stderr go to files in the
    /// lab directory. It is killed (SIGKILL) when the lab is dropped.
    pub fn spawn(&self, host: &Host, label: &str, argv: &[&str]) -> Proc {
        self.spawn_cmd(host, label, self.command(host, argv))
    }

    /// Like [`spawn`](Self::spawn) for a prepared command (environment,
    /// working directory) that already enters the namespace.
    pub fn spawn_cmd(&self, host: &Host, label: &str, mut cmd: Command) -> Proc {
        let log = self.dir.path().join(format!("{}-{label}.log", host.name));
        let file = fs::File::create(&log).expect("a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        self.procs.lock().unwrap().push(child.id());
        Proc {
            child: Some(child),
            log,
            label: format!("{}/{label}", host.name),
        }
    }

    /// One ping; true when answered within `timeout`.
    pub fn ping(&self, host: &Host, dst: IpAddr, timeout: Duration) -> bool {
        let secs = timeout.as_secs_f64().max(0.2).to_string();
        self.exec(
            host,
            &["ping", "-n", "-q", "-c", "1", "-W", &secs, &dst.to_string()],
        )
        .status
        .success()
    }

    /// Drops every packet of IP protocol `proto` (e.g. 112 for VRRP) in and
    /// out of `host`, IPv4 and IPv6, with nftables.
    pub fn drop_protocol(&self, host: &Host, proto: u8) {
        let rules = format!(
            "table inet tandem_test {{\n\
             chain in {{ type filter hook input priority -300; meta l4proto {proto} drop; }}\n\
             chain out {{ type filter hook output priority -300; meta l4proto {proto} drop; }}\n\
             }}\n"
        );
        self.nft(host, &rules);
    }

    /// Removes what [`drop_protocol`](Self::drop_protocol) installed.
    pub fn undrop(&self, host: &Host) {
        self.exec_ok(host, &["nft", "delete", "table", "inet", "tandem_test"]);
    }

    /// Loads an nftables ruleset into `host`.
    pub fn nft(&self, host: &Host, rules: &str) {
        let path = self.dir.path().join(format!(
            "{}-{}.nft",
            host.name,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&path, rules).unwrap();
        self.exec_ok(host, &["nft", "-f", path.to_str().unwrap()]);
    }

    /// Starts tshark on `ifname` of `host` with a capture filter; returns
    /// once it is capturing.
    pub fn capture(&self, host: &Host, ifname: &str, filter: &str) -> Capture {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pcap = self
            .dir
            .path()
            .join(format!("{}-{ifname}-{n}.pcap", host.name));
        let mut child = self
            .command(
                host,
                &[
                    "tshark",
                    "-n",
                    "-q",
                    "-i",
                    ifname,
                    "-f",
                    filter,
                    "-w",
                    pcap.to_str().unwrap(),
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark (Debian package tshark) runs");
        self.procs.lock().unwrap().push(child.id());
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            let mut said = String::new();
            for line in lines.by_ref() {
                let line = line.unwrap_or_default();
                said.push_str(&line);
                said.push('\n');
                // "Capturing on" comes before dumpcap really listens;
                // "Capture started" comes after.
                if line.contains("Capture started") {
                    let _ = tx.send(Ok(()));
                    // Keep draining so tshark never blocks on a full pipe.
                    for _ in lines.by_ref() {}
                    return;
                }
            }
            let _ = tx.send(Err(said));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            Ok(Err(said)) => panic!("tshark did not start on {ifname}: {said}"),
            Err(_) => panic!("tshark did not start on {ifname} within 20 s"),
        }
        Capture {
            child: Some(child),
            pcap,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for pid in self.procs.lock().unwrap().drain(..) {
            // SAFETY: kill has no memory-safety preconditions; a pid that
            // already exited (and was reaped) is at worst ESRCH.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A process started in a lab host.
pub struct Proc {
    child: Option<Child>,
    log: PathBuf,
    label: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything it wrote so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGKILL`, `libc::SIGHUP`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: see Lab::drop.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for it to exit; `None` on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits until its output contains `needle`; panics with the output
    /// after `timeout`.
    #[track_caller]
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return;
            }
            if !self.alive() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} did not print {needle:?} within {timeout:?}; it printed:\n{}",
            self.label,
            self.output()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running packet capture.
pub struct Capture {
    child: Option<Child>,
    pcap: PathBuf,
}

impl Capture {
    /// Stops capturing (SIGINT, so the file is complete) and returns the
    /// pcap's path.
    pub fn stop(mut self) -> PathBuf {
        if let Some(mut child) = self.child.take() {
            // Packets still in libpcap's ring when dumpcap is told to stop
            // are lost; give it a few update intervals to write them.
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: see Lab::drop.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.pcap.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Decodes a pcap with tshark: for every packet matching `display_filter`,
/// the values of `fields` (tshark `-e` names), tab-separated.
pub fn tshark_fields(pcap: &Path, display_filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r", pcap.to_str().unwrap(), "-T", "fields"]);
    if !display_filter.is_empty() {
        cmd.args(["-Y", display_filter]);
    }
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = run(&mut cmd);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Polls `cond` every 10 ms until it holds; returns how long it took, or
/// `None` after `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
