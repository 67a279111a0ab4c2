//! Directors in a netns lab: tandem's vrrpd (and Debian's keepalived as a
//! peer or a baseline) on hosts plugged into one switch with a client.
//!
//! Addressing: directors are 10.77.0.1, .2, ... and fd00:77::1, ::2, ...;
//! the client is 10.77.0.200 / fd00:77::200; every host's interface is
//! `eth0`.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tandem_model::api::{InstanceStatus, VrrpState, VrrpdStatus};
use tandem_model::control::Client;

use crate::binary;
use crate::netns::{self, Host, Lab, Proc, wait_until};

pub struct Net {
    pub lab: Lab,
    pub client: Host,
    pub directors: Vec<Host>,
}

/// A lab with `n` directors and a client on one switch; `None` when netns
/// tests cannot run here (see [`netns::lab`]).
pub fn net(test: &str, n: usize) -> Option<Net> {
    let mut lab = netns::lab(test)?;
    let mut directors = Vec::new();
    for i in 1..=n {
        let h = lab.host(&format!("lb{i}"));
        lab.connect(&h, "eth0");
        lab.addr(&h, "eth0", &format!("10.77.0.{i}/24"));
        lab.addr(&h, "eth0", &format!("fd00:77::{i}/64"));
        directors.push(h);
    }
    let client = lab.host("client");
    lab.connect(&client, "eth0");
    lab.addr(&client, "eth0", "10.77.0.200/24");
    lab.addr(&client, "eth0", "fd00:77::200/64");
    Some(Net {
        lab,
        client,
        directors,
    })
}

/// One `[[vrrp_instance]]` table.
pub fn instance(name: &str, vrid: u8, priority: u8, vips: &[&str], extra: &str) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("\"{v}\"")).collect();
    format!(
        "[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\npriority = {priority}\nvirtual_ips = [{}]\n{extra}\n",
        vips.join(", ")
    )
}

/// How long a daemon may take to answer on its socket: seconds on a busy
/// machine, more under emulation in the test VM.
const START: Duration = Duration::from_secs(45);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// The nice value `tandem-vrrpd.service` gives vrrpd.
pub const VRRPD_NICE: libc::c_int = -10;

/// tandem-vrrpd running in a lab host.
pub struct Vrrpd {
    pub host: Host,
    pub dir: PathBuf,
    pub config: PathBuf,
    proc: Option<Proc>,
    runs: u32,
}

impl Vrrpd {
    /// Writes `toml` as its configuration and starts it; returns once its
    /// control socket answers.
    pub fn start(lab: &Lab, host: &Host, toml: &str) -> Vrrpd {
        Vrrpd::start_as_is(
            lab,
            host,
            &format!("[node]\nname = \"{}\"\n\n{toml}", host.name),
        )
    }

    /// Like [`start`](Self::start) with a whole configuration, `[node]`
    /// included (an imported one).
    pub fn start_as_is(lab: &Lab, host: &Host, toml: &str) -> Vrrpd {
        // One directory per node, shared with its healthd: vrrpd finds
        // healthd's socket beside its own.
        let dir = lab.dir().join(format!("node-{}", host.name));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("vrrpd.toml");
        std::fs::write(&config, toml).unwrap();
        let mut v = Vrrpd {
            host: host.clone(),
            dir,
            config,
            proc: None,
            runs: 0,
        };
        v.restart(lab);
        v
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("vrrpd.sock")
    }

    /// Starts it again (after a kill or a stop) with the same config.
    pub fn restart(&mut self, lab: &Lab) {
        self.runs += 1;
        let bin = binary("tandem-vrrpd");
        let mut cmd = lab.command(
            &self.host,
            &[
                bin.to_str().unwrap(),
                "--config",
                self.config.to_str().unwrap(),
                "--socket-dir",
                self.dir.to_str().unwrap(),
                "--log",
                "debug",
            ],
        );
        cmd.env("NO_COLOR", "1");
        // As the package's unit runs it (Nice=-10): ahead of the checks,
        // the load and the test itself on a busy machine.
        // SAFETY: setpriority is async-signal-safe and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpriority(libc::PRIO_PROCESS, 0, VRRPD_NICE) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut p = lab.spawn_cmd(&self.host, &format!("vrrpd{}", self.runs), cmd);
        let client = Client::new(self.socket());
        let up = wait_until(START, || {
            block_on(client.get::<serde_json::Value>("/status")).is_ok()
        });
        if up.is_none() {
            panic!(
                "vrrpd on {} did not answer on {} within {START:?}:\n{}",
                self.host.name,
                self.socket().display(),
                p.output()
            );
        }
        assert!(
            p.alive(),
            "vrrpd on {} exited:\n{}",
            self.host.name,
            p.output()
        );
        self.proc = Some(p);
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket())
    }

    pub fn status(&self) -> VrrpdStatus {
        block_on(self.client().get("/status")).unwrap_or_else(|e| {
            panic!("status of vrrpd on {}: {e}\n{}", self.host.name, self.log())
        })
    }

    pub fn instance(&self, name: &str) -> InstanceStatus {
        self.status()
            .instances
            .into_iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no instance {name} on {}", self.host.name))
    }

    pub fn state(&self, instance: &str) -> VrrpState {
        self.instance(instance).state
    }

    /// Waits until `instance` is in `state`; returns how long it took.
    #[track_caller]
    pub fn wait_state(&self, instance: &str, state: VrrpState, timeout: Duration) -> Duration {
        wait_until(timeout, || self.state(instance) == state).unwrap_or_else(|| {
            panic!(
                "{instance} on {} is {} after {timeout:?}, expected {state}\n{}",
                self.host.name,
                self.state(instance),
                self.log()
            )
        })
    }

    /// POSTs to the control API.
    pub fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, tandem_model::control::ClientError> {
        block_on(self.client().post(path, body))
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::output).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.signal(libc::SIGKILL);
            p.wait_timeout(Duration::from_secs(5));
        }
    }

    /// SIGTERM; returns once it has exited (a handover takes at most a few
    /// advert intervals).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let p = self.proc.as_mut()?;
        p.signal(libc::SIGTERM);
        p.wait_timeout(Duration::from_secs(20))
    }

    pub fn signal(&self, sig: i32) {
        if let Some(p) = self.proc.as_ref() {
            p.signal(sig);
        }
    }

    pub fn alive(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::alive)
    }

    /// Its process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, Proc::pid)
    }

    /// Waits for it to exit on its own; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.proc.as_mut()?.wait_timeout(timeout)
    }
}

/// Debian's keepalived (VRRP only) running in a lab host.
pub struct Keepalived {
    proc: Proc,
    path: PathBuf,
}

impl Keepalived {
    /// keepalived's VRRP alone.
    pub fn start(lab: &Lab, host: &Host, conf: &str) -> Keepalived {
        Keepalived::launch(lab, host, conf, true)
    }

    /// keepalived whole: VRRP and the checkers that program IPVS.
    pub fn start_full(lab: &Lab, host: &Host, conf: &str) -> Keepalived {
        Keepalived::launch(lab, host, conf, false)
    }

    fn launch(lab: &Lab, host: &Host, conf: &str, vrrp_only: bool) -> Keepalived {
        let dir = lab.dir().join(format!("keepalived-{}", host.name));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keepalived.conf");
        std::fs::write(&path, conf).unwrap();
        let pid = |n: &str| dir.join(n).to_str().unwrap().to_string();
        let mut argv = vec![
            "keepalived",
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--dont-respawn",
        ];
        if vrrp_only {
            argv.push("--vrrp");
        }
        let p = lab.spawn(
            host,
            "keepalived",
            &[
                argv.as_slice(),
                &[
                    "--use-file",
                    path.to_str().unwrap(),
                    "--pid",
                    &pid("keepalived.pid"),
                    "--vrrp_pid",
                    &pid("vrrp.pid"),
                    "--checkers_pid",
                    &pid("checkers.pid"),
                ],
            ]
            .concat(),
        );
        Keepalived { proc: p, path }
    }

    /// Its configuration file.
    pub fn conf_path(&self) -> &std::path::Path {
        &self.path
    }

    /// SIGHUP: keepalived re-reads its file.
    pub fn reload(&self) {
        self.proc.signal(libc::SIGHUP);
    }

    pub fn log(&self) -> String {
        self.proc.output()
    }

    /// Kills the whole keepalived (parent and VRRP child) with SIGKILL.
    pub fn kill9(&mut self) {
        let _ = std::process::Command::new("pkill")
            .args(["-9", "-P", &self.proc.pid().to_string()])
            .status();
        self.proc.signal(libc::SIGKILL);
        self.proc.wait_timeout(Duration::from_secs(5));
    }

    pub fn stop(&mut self) {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_timeout(Duration::from_secs(10));
    }
}

/// A keepalived `vrrp_instance` block for the lab.
pub fn keepalived_instance(
    name: &str,
    vrid: u8,
    priority: u8,
    version: u8,
    advert: &str,
    vips: &[&str],
    extra: &str,
) -> String {
    format!(
        "global_defs {{\n  router_id {name}\n  vrrp_version {version}\n  script_user root\n  enable_script_security\n}}\n\
         vrrp_instance {name} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {vrid}\n  priority {priority}\n  advert_int {advert}\n{extra}\n  virtual_ipaddress {{\n{}\n  }}\n}}\n",
        vips.iter()
            .map(|v| format!("    {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Whether `host` has `addr` on `ifname`.
pub fn has_addr(lab: &Lab, host: &Host, ifname: &str, addr: &str) -> bool {
    let out = lab.exec(host, &["ip", "-o", "addr", "show", "dev", ifname]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(addr))
}

/// The MAC address of `ifname` in `host`.
pub fn mac(lab: &Lab, host: &Host, ifname: &str) -> String {
    lab.exec_ok(host, &["cat", &format!("/sys/class/net/{ifname}/address")])
        .trim()
        .to_string()
}

/// The MAC `host` has in its neighbour table for `addr`, if any.
pub fn neighbour(lab: &Lab, host: &Host, addr: &str) -> Option<String> {
    let out = lab.exec(host, &["ip", "neigh", "show", addr]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_string)
}

/// A ping running in the background, every `interval`.
pub struct Pinger {
    proc: Proc,
}

impl Pinger {
    pub fn start(lab: &Lab, host: &Host, dst: &str, interval: Duration) -> Pinger {
        let i = format!("{:.3}", interval.as_secs_f64());
        let p = lab.spawn(
            host,
            &format!("ping-{dst}"),
            &["ping", "-n", "-i", &i, "-W", "1", dst],
        );
        Pinger { proc: p }
    }

    /// Stops it; returns (sent, received).
    pub fn stop(mut self) -> (u32, u32) {
        self.proc.signal(libc::SIGINT);
        self.proc.wait_timeout(Duration::from_secs(5));
        let out = self.proc.output();
        let line = out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("no ping summary:\n{out}"));
        let nums: Vec<u32> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(2)
            .map(|s| s.parse().unwrap())
            .collect();
        (nums[0], nums[1])
    }
}

/// Waits until `dst` answers a ping from `host`; returns how long it took.
pub fn wait_reachable(lab: &Lab, host: &Host, dst: &str, timeout: Duration) -> Option<Duration> {
    let ip: IpAddr = dst.parse().unwrap();
    wait_until(timeout, || lab.ping(host, ip, Duration::from_millis(300)))
}

/// Elapsed since `start`, in milliseconds, for messages.
pub fn ms_since(start: Instant) -> u128 {
    start.elapsed().as_millis()
}

/// tandem-healthd running in a lab host.
pub struct Healthd {
    pub host: Host,
    pub dir: PathBuf,
    pub config: PathBuf,
    proc: Option<Proc>,
    runs: u32,
}

impl Healthd {
    /// Writes `toml` as its configuration and starts it; returns once its
    /// control socket answers. Its drains are kept in `dir/state`.
    pub fn start(lab: &Lab, host: &Host, toml: &str) -> Healthd {
        Healthd::start_as_is(
            lab,
            host,
            &format!("[node]\nname = \"{}\"\n\n{toml}", host.name),
        )
    }

    /// Like [`start`](Self::start) with a whole configuration, `[node]`
    /// included (an imported one).
    pub fn start_as_is(lab: &Lab, host: &Host, toml: &str) -> Healthd {
        let dir = lab.dir().join(format!("node-{}", host.name));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("healthd.toml");
        std::fs::write(&config, toml).unwrap();
        let mut h = Healthd {
            host: host.clone(),
            dir,
            config,
            proc: None,
            runs: 0,
        };
        h.restart(lab);
        h
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("healthd.sock")
    }

    pub fn restart(&mut self, lab: &Lab) {
        self.runs += 1;
        let bin = binary("tandem-healthd");
        let state = self.dir.join("state");
        let mut cmd = lab.command(
            &self.host,
            &[
                bin.to_str().unwrap(),
                "--config",
                self.config.to_str().unwrap(),
                "--socket-dir",
                self.dir.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "--log",
                "debug",
            ],
        );
        cmd.env("NO_COLOR", "1");
        let mut p = lab.spawn_cmd(&self.host, &format!("healthd{}", self.runs), cmd);
        let client = Client::new(self.socket());
        let up = wait_until(START, || {
            block_on(client.get::<serde_json::Value>("/status")).is_ok()
        });
        if up.is_none() {
            panic!(
                "healthd on {} did not answer:\n{}",
                self.host.name,
                p.output()
            );
        }
        assert!(
            p.alive(),
            "healthd on {} exited:\n{}",
            self.host.name,
            p.output()
        );
        self.proc = Some(p);
    }

    pub fn client(&self) -> Client {
        Client::new(self.socket())
    }

    pub fn status(&self) -> tandem_model::api::HealthdStatus {
        block_on(self.client().get("/status")).unwrap_or_else(|e| {
            panic!(
                "status of healthd on {}: {e}\n{}",
                self.host.name,
                self.log()
            )
        })
    }

    pub fn real_server(&self, vs: &str, rs: &str) -> tandem_model::api::RealServerStatus {
        let st = self.status();
        st.virtual_servers
            .iter()
            .find(|v| v.name == vs)
            .and_then(|v| v.real_servers.iter().find(|r| r.address == rs))
            .cloned()
            .unwrap_or_else(|| panic!("no real server {rs} in {vs}: {st:?}"))
    }

    /// Waits until real server `rs` of `vs` is in `state`; returns how long
    /// it took and the reason it gives.
    #[track_caller]
    pub fn wait_health(
        &self,
        vs: &str,
        rs: &str,
        state: tandem_model::api::HealthState,
        timeout: Duration,
    ) -> (Duration, String) {
        let took =
            wait_until(timeout, || self.real_server(vs, rs).health == state).unwrap_or_else(|| {
                panic!(
                    "{vs}/{rs} is not {state} after {timeout:?}: {:?}\n{}",
                    self.real_server(vs, rs),
                    self.log()
                )
            });
        (took, self.real_server(vs, rs).reason)
    }

    pub fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, tandem_model::control::ClientError> {
        block_on(self.client().post(path, body))
    }

    pub fn log(&self) -> String {
        self.proc.as_ref().map(Proc::output).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.signal(libc::SIGTERM);
            p.wait_timeout(Duration::from_secs(10));
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(p) = self.proc.as_ref() {
            p.signal(sig);
        }
    }

    /// Its process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, Proc::pid)
    }
}

/// A test real server (`tandem-testserver`) in a lab host: its behaviour
/// is the first line of its mode file.
pub struct TestServer {
    pub mode_file: PathBuf,
    pub count_file: PathBuf,
    proc: Proc,
}

impl TestServer {
    /// `extra`: `--tls`, `--line`.
    pub fn start(
        lab: &Lab,
        host: &Host,
        listen: &[&str],
        mode: &str,
        extra: &[&str],
    ) -> TestServer {
        let dir = lab.dir().join(format!(
            "server-{}-{}",
            host.name,
            listen[0].replace([':', '[', ']'], "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mode_file = dir.join("mode");
        let count_file = dir.join("count");
        std::fs::write(&mode_file, mode).unwrap();
        let bin = binary("tandem-testserver");
        let mut args: Vec<String> = vec![bin.display().to_string()];
        for l in listen {
            args.push("--listen".into());
            args.push(l.to_string());
        }
        args.extend([
            "--mode-file".to_string(),
            mode_file.display().to_string(),
            "--count-file".into(),
            count_file.display().to_string(),
            "--name".into(),
            host.name.clone(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = lab.spawn(host, &format!("server-{}", listen[0]), &argv);
        proc.wait_for_output("listening on", Duration::from_secs(10));
        TestServer {
            mode_file,
            count_file,
            proc,
        }
    }

    pub fn set(&self, mode: &str) {
        std::fs::write(&self.mode_file, mode).unwrap();
    }

    /// Connections it accepted.
    pub fn connections(&self) -> u64 {
        std::fs::read_to_string(&self.count_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn kill(&mut self) {
        self.proc.signal(libc::SIGKILL);
        self.proc.wait_timeout(Duration::from_secs(5));
    }
}
