//! Directors of a synchronised cluster in a netns lab: each with its own
//! directory (configuration, node name, identity, state, sockets), its
//! tandem-clusterd and its vrrpd, all reading one cluster file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_model::api::{Event, VrrpState, VrrpdStatus};
use tandem_model::control::Client;
use tandem_model::sync::ClusterStatus;

use crate::binary;
use crate::cluster::Net;
use crate::netns::{Host, Lab, Proc, wait_until};

/// How long a daemon may take to answer on its socket.
const START: Duration = Duration::from_secs(45);

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

pub struct Director {
    pub host: Host,
    pub dir: PathBuf,
    pub config: PathBuf,
    clusterd: Option<Proc>,
    vrrpd: Option<Proc>,
    healthd: Option<Proc>,
    runs: u32,
}

/// The `[cluster]` table and per-node settings for `n` directors of a
/// [`Net`], each with its own directory under the lab's.
pub fn cluster_head(lab: &Lab, n: usize) -> String {
    let names: Vec<String> = (1..=n).map(|i| format!("\"lb{i}\"")).collect();
    let per = |f: &dyn Fn(usize) -> String| {
        let v: Vec<String> = (1..=n).map(|i| format!("lb{i} = \"{}\"", f(i))).collect();
        format!("{{ {} }}", v.join(", "))
    };
    let dir = |i: usize| lab.dir().join(format!("node-lb{i}")).display().to_string();
    format!(
        "[cluster]\nnodes = [{}]\naddress = {}\nidentity_dir = {}\ncatch_up = \"20s\"\n\n[node]\nsocket_dir = {}\nstate_dir = {}\n\n",
        names.join(", "),
        per(&|i| format!("10.77.0.{i}")),
        per(&|i| format!("{}/identity", dir(i))),
        per(&|i| dir(i)),
        per(&|i| format!("{}/state", dir(i))),
    )
}

/// Makes each director's directory, its node name and its identity (one
/// authority, made on lb1, each other director invited and joined), and
/// writes `text` as every director's configuration.
pub fn directors(net: &Net, text: &str) -> Vec<Director> {
    let mut out = Vec::new();
    for (i, h) in net.directors.iter().enumerate() {
        let dir = net.lab.dir().join(format!("node-{}", h.name));
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("node"), format!("{}\n", h.name)).unwrap();
        let id = dir.join("identity");
        if i == 0 {
            tandem_cluster::identity::init(&id, &h.name).unwrap();
        }
        let config = dir.join("tandem.toml");
        std::fs::write(&config, text).unwrap();
        out.push(Director {
            host: h.clone(),
            dir,
            config,
            clusterd: None,
            vrrpd: None,
            healthd: None,
            runs: 0,
        });
    }
    let ca = out[0].dir.join("identity");
    for d in &out[1..] {
        let bundle = tandem_cluster::identity::invite(&ca, &d.host.name).unwrap();
        tandem_cluster::identity::join(&d.dir.join("identity"), &bundle, Path::new("bundle"))
            .unwrap();
    }
    out
}

impl Director {
    pub fn clusterd_client(&self) -> Client {
        Client::new(self.dir.join("clusterd.sock"))
    }

    pub fn vrrpd_client(&self) -> Client {
        Client::new(self.dir.join("vrrpd.sock"))
    }

    /// Starts `tandem-<daemon>` on the cluster file in this director's
    /// namespace, its log kept.
    fn spawn(&mut self, lab: &Lab, daemon: &str) -> Proc {
        self.runs += 1;
        let bin = binary(&format!("tandem-{daemon}"));
        let mut cmd = lab.command(
            &self.host,
            &[
                bin.to_str().unwrap(),
                "--config",
                self.config.to_str().unwrap(),
                "--log",
                "debug",
            ],
        );
        cmd.env("NO_COLOR", "1");
        lab.spawn_cmd(&self.host, &format!("{daemon}{}", self.runs), cmd)
    }

    /// Waits until `daemon`'s socket answers; panics with its log if it
    /// does not (or exits).
    fn wait_up(&self, daemon: &str, p: &mut Proc) {
        let c = Client::new(self.dir.join(format!("{daemon}.sock")));
        let up = wait_until(START, || {
            block_on(c.get::<serde_json::Value>("/status")).is_ok() || !p.alive()
        });
        assert!(
            up.is_some() && p.alive(),
            "{daemon} on {} did not start:\n{}",
            self.host.name,
            p.output()
        );
    }

    /// Starts tandem-clusterd; returns once its socket answers.
    pub fn start_clusterd(&mut self, lab: &Lab) {
        let mut p = self.spawn(lab, "clusterd");
        self.wait_up("clusterd", &mut p);
        self.clusterd = Some(p);
    }

    /// Starts vrrpd without waiting for it (it may wait for clusterd).
    pub fn spawn_vrrpd(&mut self, lab: &Lab) {
        self.vrrpd = Some(self.spawn(lab, "vrrpd"));
    }

    /// Starts vrrpd and waits until its socket answers.
    pub fn start_vrrpd(&mut self, lab: &Lab) {
        let mut p = self.spawn(lab, "vrrpd");
        self.wait_up("vrrpd", &mut p);
        self.vrrpd = Some(p);
    }

    /// Starts healthd on the cluster file; returns once its socket answers.
    pub fn start_healthd(&mut self, lab: &Lab) {
        let mut p = self.spawn(lab, "healthd");
        self.wait_up("healthd", &mut p);
        self.healthd = Some(p);
    }

    pub fn healthd_status(&self) -> tandem_model::api::HealthdStatus {
        block_on(Client::new(self.dir.join("healthd.sock")).get("/status"))
            .unwrap_or_else(|e| panic!("healthd on {}: {e}", self.host.name))
    }

    pub fn stop_clusterd(&mut self) {
        if let Some(mut p) = self.clusterd.take() {
            p.signal(libc::SIGTERM);
            p.wait_timeout(Duration::from_secs(10));
        }
    }

    /// SIGKILL to tandem-clusterd, as a crash: nothing of its own runs.
    pub fn kill_clusterd(&mut self) {
        if let Some(mut p) = self.clusterd.take() {
            p.signal(libc::SIGKILL);
            p.wait_timeout(Duration::from_secs(10));
        }
    }

    pub fn clusterd_pid(&self) -> Option<u32> {
        self.clusterd.as_ref().map(Proc::pid)
    }

    pub fn vrrpd_pid(&self) -> Option<u32> {
        self.vrrpd.as_ref().map(Proc::pid)
    }

    pub fn stop_vrrpd(&mut self) {
        if let Some(mut p) = self.vrrpd.take() {
            p.signal(libc::SIGTERM);
            p.wait_timeout(Duration::from_secs(15));
        }
    }

    pub fn clusterd_log(&self) -> String {
        self.clusterd
            .as_ref()
            .map(|p| p.output())
            .unwrap_or_default()
    }

    pub fn vrrpd_log(&self) -> String {
        self.vrrpd.as_ref().map(|p| p.output()).unwrap_or_default()
    }

    pub fn status(&self) -> ClusterStatus {
        block_on(self.clusterd_client().get("/status")).unwrap_or_else(|e| {
            panic!(
                "clusterd on {}: {e}\n{}",
                self.host.name,
                self.clusterd_log()
            )
        })
    }

    pub fn vrrpd_status(&self) -> VrrpdStatus {
        block_on(self.vrrpd_client().get("/status"))
            .unwrap_or_else(|e| panic!("vrrpd on {}: {e}\n{}", self.host.name, self.vrrpd_log()))
    }

    pub fn vrrp_state(&self, instance: &str) -> Option<VrrpState> {
        block_on(self.vrrpd_client().get::<VrrpdStatus>("/status"))
            .ok()?
            .instances
            .into_iter()
            .find(|i| i.name == instance)
            .map(|i| i.state)
    }

    pub fn file(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap()
    }

    pub fn clusterd_events(&self) -> Vec<Event> {
        block_on(self.clusterd_client().get("/events/recent")).unwrap_or_default()
    }

    pub fn vrrpd_events(&self) -> Vec<Event> {
        block_on(self.vrrpd_client().get("/events/recent")).unwrap_or_default()
    }

    /// Runs `tandem ARGS` on this director; returns (success, output).
    pub fn tandem(&self, lab: &Lab, args: &[&str]) -> (bool, String) {
        let bin = binary("tandem");
        let mut argv = vec![
            bin.to_str().unwrap(),
            "--config",
            self.config.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        let out = lab.exec(&self.host, &argv);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The logs of both daemons, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- {} clusterd ---\n{}\n--- {} vrrpd ---\n{}",
            self.host.name,
            self.clusterd_log(),
            self.host.name,
            self.vrrpd_log()
        )
    }
}

/// Runs `f` on a thread inside `host`'s network namespace.
pub fn in_netns<T: Send + 'static>(host: &Host, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = host.ns.clone();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace");
        // SAFETY: setns on this thread only, with a valid descriptor.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the thread in the namespace")
}
