//! The README's main command works: `scripts/lab up` brings up the whole
//! appliance (in the VM here, where the kernel has no IPVS; in namespaces
//! where it has), the client is served through the VIP, the web UI
//! answers on the host's loopback, the directors are one cluster in sync
//! (a drain reaches both), a director and a real server die
//! without the client noticing for long, and `down` leaves nothing behind.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use tandem_tests::{binary, netns, vm, workspace_root};

struct Lab {
    name: String,
    bin_dir: PathBuf,
    port: u16,
}

impl Lab {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(workspace_root().join("scripts/lab"))
            .args(args)
            .env("TANDEM_LAB", &self.name)
            .env("TANDEM_BIN_DIR", &self.bin_dir)
            .env("TANDEM_LAB_PORT", self.port.to_string())
            .current_dir(workspace_root())
            .output()
            .unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "scripts/lab {args:?} failed:\n{text}");
        text
    }

    #[track_caller]
    fn wait_status(&self, needle: &str) -> String {
        let mut last = String::new();
        let found = netns::wait_until(Duration::from_secs(60), || {
            last = self.ok(&["status"]);
            last.contains(needle)
        });
        assert!(found.is_some(), "no {needle:?} in:\n{last}");
        last
    }

    /// `load SECONDS`: the lines of per-second counts.
    fn load(&self, seconds: u32) -> Vec<String> {
        self.ok(&["load", &seconds.to_string()])
            .lines()
            .filter(|l| l.contains(" ok "))
            .map(str::to_string)
            .collect()
    }

    fn curl(&self, path: &str, user: Option<&str>) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-m", "10", "-w", "\n%{http_code}"]);
        if let Some(u) = user {
            cmd.args(["-u", u]);
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

/// Two free loopback ports in a row (lb1's and lb2's web UI).
fn two_free_ports() -> u16 {
    loop {
        let p = vm::free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn failed(line: &str) -> u32 {
    line.split("failed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failure count in {line:?}"))
}

#[test]
fn the_demo_lab_comes_up_serves_through_failures_and_goes_away() {
    // The lab needs what the netns harness needs, and the VM where the
    // kernel has no IPVS.
    if netns::lab("demo_lab_probe").is_none() {
        return;
    }
    let has_ipvs = std::path::Path::new("/proc/net/ip_vs").exists();
    if !has_ipvs && vm::require("demo_lab").is_none() {
        return;
    }
    let vrrpd = binary("tandem-vrrpd");
    for b in [
        "tandem-healthd",
        "tandem-webui",
        "tandem-labvm",
        "tandem-clusterd",
        "tandem",
    ] {
        binary(b);
    }
    let lab = Lab {
        name: format!("tdmlab{}", std::process::id()),
        bin_dir: vrrpd.parent().unwrap().to_path_buf(),
        port: two_free_ports(),
    };
    let up = lab.ok(&["up"]);
    assert!(up.contains("lb1 holds 10.99.0.100 fd00:99::100"), "{up}");
    assert!(
        up.contains("the client reaches http://10.99.0.100/"),
        "{up}"
    );
    assert!(up.contains("3 of 3 up"), "{up}");
    assert!(up.contains("sudo scripts/lab kill lb1"), "{up}");
    assert!(
        up.contains(&format!("lb1  http://127.0.0.1:{}/", lab.port)),
        "{up}"
    );

    // The web UI answers on the host's loopback: its login page, and the
    // API with the lab's credentials.
    let login = lab.curl("/login", None);
    assert!(
        login.ends_with("\n200") && login.contains("password"),
        "{login}"
    );
    let api = lab.curl("/api/v1/status", Some("admin:tandem"));
    assert!(api.ends_with("\n200") && api.contains("\"web\""), "{api}");
    assert!(lab.curl("/api/v1/status", None).ends_with("\n401"));
    // The two directors are one cluster, in sync.
    let cluster = lab.curl("/api/v1/cluster", Some("admin:tandem"));
    assert!(
        cluster.ends_with("\n200") && cluster.contains("\"state\":\"in_sync\""),
        "{cluster}"
    );
    let drained = lab.ok(&["drain", "rs3"]);
    assert!(
        drained.contains("lb1: done") && drained.contains("lb2: done"),
        "{drained}"
    );
    // Weight 0 in both directors' IPVS tables.
    for d in ["lb1", "lb2"] {
        let weight = |lab: &Lab| {
            lab.ok(&["run", d, "ipvsadm", "-Ln"])
                .lines()
                .find(|l| l.contains("10.99.0.13:80"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        };
        let zero = netns::wait_until(Duration::from_secs(20), || {
            weight(&lab).as_deref() == Some("0")
        });
        assert!(zero.is_some(), "{d}: {:?}", weight(&lab));
    }
    lab.ok(&["enable", "rs3"]);

    // Served by every real server.
    let lines = lab.load(2);
    assert!(
        lines
            .iter()
            .any(|l| failed(l) == 0 && ["rs1:", "rs2:", "rs3:"].iter().all(|s| l.contains(s))),
        "{lines:?}"
    );

    // The master dies; lb2 serves.
    lab.ok(&["kill", "lb1"]);
    let st = lab.wait_status("lb2 holds 10.99.0.100 fd00:99::100");
    assert!(st.contains("== lb1\nvrrpd is not running"), "{st}");
    lab.wait_status("the client reaches http://10.99.0.100/");

    // A real server dies; after its detection nobody is sent to it.
    lab.ok(&["kill", "rs2"]);
    lab.wait_status("2 of 3 up");
    let lines = lab.load(2);
    assert!(
        lines.iter().all(|l| failed(l) == 0 && !l.contains("rs2:")),
        "{lines:?}"
    );

    // Both come back; lb1 preempts.
    lab.ok(&["start", "rs2"]);
    lab.ok(&["start", "lb1"]);
    lab.wait_status("lb1 holds 10.99.0.100 fd00:99::100");

    lab.ok(&["down"]);
    let left: Vec<String> = netns::list_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&lab.name))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        !std::path::Path::new("/run").join(&lab.name).exists(),
        "/run/{} is left",
        lab.name
    );
}
