//! The whole appliance in a netns lab (in the test VM, where the kernel
//! has IPVS): a client, two directors running vrrpd and healthd, real
//! servers, on one switch; a steady HTTP load and long-lived connections
//! measured from the client. Used by the end-to-end tests, the benchmark
//! against keepalived, and the demo lab.
//!
//! Addressing: directors 10.90.0.1 and .2, client 10.90.0.200, the VIP
//! 10.90.0.100. In DR mode the real servers are 10.90.0.11.. with the VIP
//! on their loopback; in NAT mode they are 10.91.0.11.. behind a gateway
//! VIP 10.91.0.1 that the directors float too (sync group with the VIP).

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::{Healthd, Keepalived, Vrrpd, has_addr};
use crate::netns::{self, Host, Lab, Proc, wait_until};

pub const VIP: &str = "10.90.0.100";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Dr,
    Nat,
}

pub struct Net {
    pub lab: Lab,
    pub client: Host,
    pub directors: Vec<Host>,
    pub servers: Vec<Host>,
    pub mode: Mode,
}

impl Net {
    /// Real server `i`'s address.
    pub fn rs_addr(&self, i: usize) -> String {
        match self.mode {
            Mode::Dr => format!("10.90.0.{}", 11 + i),
            Mode::Nat => format!("10.91.0.{}", 11 + i),
        }
    }

    /// Which director holds the VIP, if one does.
    pub fn holder(&self) -> Option<usize> {
        (0..self.directors.len()).find(|&i| has_addr(&self.lab, &self.directors[i], "eth0", VIP))
    }
}

/// Builds the lab: hosts, addresses, forwarding, and in DR mode the real
/// servers' loopback VIP (ARP off for it).
pub fn net(test: &str, mode: Mode, servers: usize) -> Net {
    let mut lab = netns::lab(test).expect("netns");
    let client = lab.host("client");
    lab.connect(&client, "eth0");
    lab.addr(&client, "eth0", "10.90.0.200/24");
    let mut directors = Vec::new();
    for i in 1..=2 {
        let h = lab.host(&format!("lb{i}"));
        lab.connect(&h, "eth0");
        lab.addr(&h, "eth0", &format!("10.90.0.{i}/24"));
        if mode == Mode::Nat {
            lab.addr(&h, "eth0", &format!("10.91.0.{}/24", 1 + i));
            lab.exec_ok(&h, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            // The IPVS connection table follows a NAT connection both
            // ways through whichever director holds it.
            lab.exec_ok(&h, &["sysctl", "-qw", "net.ipv4.vs.conntrack=1"]);
        }
        directors.push(h);
    }
    let mut hosts = Vec::new();
    for i in 0..servers {
        let h = lab.host(&format!("rs{}", i + 1));
        lab.connect(&h, "eth0");
        match mode {
            Mode::Dr => {
                lab.addr(&h, "eth0", &format!("10.90.0.{}/24", 11 + i));
                lab.exec_ok(
                    &h,
                    &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
                );
                for (k, v) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                    for dev in ["all", "eth0"] {
                        lab.exec_ok(
                            &h,
                            &["sysctl", "-qw", &format!("net.ipv4.conf.{dev}.{k}={v}")],
                        );
                    }
                }
            }
            Mode::Nat => {
                lab.addr(&h, "eth0", &format!("10.91.0.{}/24", 11 + i));
                lab.exec_ok(&h, &["ip", "route", "add", "default", "via", "10.91.0.1"]);
            }
        }
        hosts.push(h);
    }
    Net {
        lab,
        client,
        directors,
        servers: hosts,
        mode,
    }
}

/// A director's configuration: instance `web` (and `gw` in NAT mode, in a
/// sync group with it), virtual servers HTTP :80 and echo :9000 over the
/// real servers, connection sync. A returning director waits 3 s before
/// it preempts (`preempt_delay`): its health checks settle first, so it
/// never takes the VIP with an empty table.
pub fn config(net: &Net, priority: u8, advert: &str, check_interval: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[[vrrp_instance]]\nname = \"web\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\nadvert_interval = \"{advert}\"\npreempt_delay = \"3s\"\nvirtual_ips = [\"{VIP}/24\"]\n"
    );
    if net.mode == Mode::Nat {
        let _ = writeln!(
            s,
            "[[vrrp_instance]]\nname = \"gw\"\ninterface = \"eth0\"\nvrid = 52\npriority = {priority}\nadvert_interval = \"{advert}\"\npreempt_delay = \"3s\"\nvirtual_ips = [\"10.91.0.1/24\"]\n\n\
             [[vrrp_sync_group]]\nname = \"director\"\ninstances = [\"web\", \"gw\"]\n"
        );
    }
    let fwd = match net.mode {
        Mode::Dr => "dr",
        Mode::Nat => "nat",
    };
    for (name, port, check) in [
        ("http", 80, "type = \"http\""),
        ("echo", 9000, "type = \"tcp\""),
    ] {
        let _ = writeln!(
            s,
            "[[virtual_server]]\nname = \"{name}\"\naddress = \"{VIP}:{port}\"\nscheduler = \"rr\"\nforwarding = \"{fwd}\"\ndrain_timeout = \"5s\"\n\n\
             [virtual_server.check]\n{check}\ninterval = \"{check_interval}\"\ntimeout = \"200ms\"\nrise = 1\nfall = 2\n"
        );
        for i in 0..net.servers.len() {
            let _ = writeln!(
                s,
                "[[virtual_server.real_server]]\naddress = \"{}:{port}\"\n",
                net.rs_addr(i)
            );
        }
    }
    let _ = writeln!(
        s,
        "[connection_sync]\ninstance = \"web\"\ninterface = \"eth0\"\n"
    );
    s
}

/// A director running tandem: vrrpd and healthd on one configuration.
pub struct TandemDirector {
    pub vrrpd: Vrrpd,
    pub healthd: Healthd,
}

impl TandemDirector {
    pub fn start(net: &Net, i: usize, toml: &str) -> TandemDirector {
        // healthd first: vrrpd then finds it at once.
        let healthd = Healthd::start(&net.lab, &net.directors[i], toml);
        let vrrpd = Vrrpd::start(&net.lab, &net.directors[i], toml);
        TandemDirector { vrrpd, healthd }
    }

    /// Like [`start`](Self::start) with a whole configuration, `[node]`
    /// included (an imported one).
    pub fn start_as_is(net: &Net, i: usize, toml: &str) -> TandemDirector {
        let healthd = Healthd::start_as_is(&net.lab, &net.directors[i], toml);
        let vrrpd = Vrrpd::start_as_is(&net.lab, &net.directors[i], toml);
        TandemDirector { vrrpd, healthd }
    }

    /// The director dies: both daemons killed with SIGKILL.
    pub fn kill9(&mut self) {
        self.vrrpd.kill9();
        self.healthd.signal(libc::SIGKILL);
    }

    pub fn restart(&mut self, lab: &Lab) {
        self.healthd.restart(lab);
        self.vrrpd.restart(lab);
    }
}

/// keepalived's configuration of the same director (VRRP, IPVS virtual
/// servers with checks, lvs_sync_daemon), for the comparison. `advert` and
/// `check_interval` are in seconds (fractions allowed: `vrrp_version 3`
/// takes `advert_int 0.2`). A failing real server is retried once after
/// `check_interval` (`retry 1`), like tandem's `fall = 2`.
pub fn keepalived_config(net: &Net, priority: u8, advert: &str, check_interval: &str) -> String {
    let fwd = match net.mode {
        Mode::Dr => "DR",
        Mode::Nat => "NAT",
    };
    let mut s = format!(
        "global_defs {{\n  router_id lb{priority}\n  vrrp_version 3\n  lvs_sync_daemon eth0 web\n  script_user root\n  enable_script_security\n}}\n\
         vrrp_instance web {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {advert}\n  preempt_delay 3\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
    );
    if net.mode == Mode::Nat {
        let _ = write!(
            s,
            "vrrp_instance gw {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 52\n  priority {priority}\n  advert_int {advert}\n  preempt_delay 3\n  virtual_ipaddress {{\n    10.91.0.1/24\n  }}\n}}\n\
             vrrp_sync_group director {{\n  group {{\n    web\n    gw\n  }}\n}}\n"
        );
    }
    for (port, check) in [
        (
            80,
            format!(
                "HTTP_GET {{\n      url {{\n        path /\n        status_code 200\n      }}\n      connect_timeout 0.2\n      retry 1\n      delay_before_retry {check_interval}\n    }}"
            ),
        ),
        (
            9000,
            format!(
                "TCP_CHECK {{\n      connect_timeout 0.2\n      retry 1\n      delay_before_retry {check_interval}\n    }}"
            ),
        ),
    ] {
        let _ = write!(
            s,
            "virtual_server {VIP} {port} {{\n  delay_loop {check_interval}\n  lb_algo rr\n  lb_kind {fwd}\n  protocol TCP\n"
        );
        for i in 0..net.servers.len() {
            let _ = write!(
                s,
                "  real_server {} {port} {{\n    weight 1\n    {check}\n  }}\n",
                net.rs_addr(i)
            );
        }
        s.push_str("}\n");
    }
    s
}

/// A director running keepalived (VRRP and checkers).
pub struct KeepalivedDirector {
    pub keepalived: Keepalived,
    /// Where [`Keepalived`] keeps its pid files.
    dir: PathBuf,
    killed: bool,
}

impl KeepalivedDirector {
    pub fn start(net: &Net, i: usize, conf: &str) -> KeepalivedDirector {
        KeepalivedDirector {
            keepalived: Keepalived::start_full(&net.lab, &net.directors[i], conf),
            dir: net
                .lab
                .dir()
                .join(format!("keepalived-{}", net.directors[i].name)),
            killed: false,
        }
    }

    /// The director dies: keepalived's three processes (parent, VRRP
    /// child, checker child) stopped with SIGSTOP, then killed with
    /// SIGKILL. Killed one by one, a process still running between the
    /// kills reacts to the death of another (the parent tells the checker
    /// to stop, which removes its virtual servers; a VRRP child sends a
    /// priority-0 advert): a handover, not a death. Stopped, none can.
    pub fn kill9(&mut self) {
        let pids: Vec<i32> = ["vrrp.pid", "checkers.pid", "keepalived.pid"]
            .iter()
            .filter_map(|name| {
                std::fs::read_to_string(self.dir.join(name))
                    .ok()
                    .and_then(|p| p.trim().parse::<i32>().ok())
            })
            .filter(|p| *p > 1)
            .collect();
        for sig in [libc::SIGSTOP, libc::SIGKILL] {
            for &pid in &pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, sig);
                }
            }
        }
        // Reaps the parent (and kills any child the pid files missed).
        self.keepalived.kill9();
        self.killed = true;
    }

    pub fn log(&self) -> String {
        self.keepalived.log()
    }
}

impl Drop for KeepalivedDirector {
    /// The lab kills only the parent: its children go too.
    fn drop(&mut self) {
        if !self.killed {
            self.kill9();
        }
    }
}

/// `ipvsadm ARGS` in director `i`'s namespace: its stdout.
pub fn ipvsadm(net: &Net, i: usize, args: &[&str]) -> String {
    let argv: Vec<&str> = std::iter::once("ipvsadm")
        .chain(args.iter().copied())
        .collect();
    let out = net.lab.exec(&net.directors[i], &argv);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Real servers per virtual service in director `i`'s IPVS table
/// (`ipvsadm -Ln`), in the table's order.
pub fn ipvs_real_servers(net: &Net, i: usize) -> Vec<usize> {
    let mut counts = Vec::new();
    for line in ipvsadm(net, i, &["-Ln"]).lines() {
        let line = line.trim_start();
        if line.starts_with("TCP ") || line.starts_with("UDP ") || line.starts_with("FWM ") {
            counts.push(0);
        } else if line.starts_with("-> ") && !line.contains("RemoteAddress") {
            if let Some(n) = counts.last_mut() {
                *n += 1;
            }
        }
    }
    counts
}

/// HTTP and echo servers on every real server, silent about connections
/// the peer resets: tandem's checks close with a reset (no TIME_WAIT), and
/// a Python traceback for each, several a second per server, halved the
/// rate the client's load was served at in the emulated VM (and would
/// bias a comparison with keepalived's checks, which close with a FIN).
pub fn start_servers(net: &Net) -> Vec<Proc> {
    servers(
        net,
        "threading.excepthook = lambda args: None\n\
         socketserver.BaseServer.handle_error = lambda self, request, address: None\n",
    )
}

fn servers(net: &Net, prologue: &str) -> Vec<Proc> {
    net.servers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let script = format!(
                r#"
import socket, threading, http.server, socketserver
{prologue}class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"rs{n}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
threading.Thread(target=S(("0.0.0.0", 80), H).serve_forever, daemon=True).start()
e = socket.socket()
e.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
e.bind(("0.0.0.0", 9000))
e.listen(64)
print("serving", flush=True)
def echo(c):
    f = c.makefile("rwb")
    for line in f:
        f.write(line)
        f.flush()
while True:
    c, _ = e.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"#,
                n = i + 1
            );
            let mut p = net.lab.spawn(h, "servers", &["python3", "-c", &script]);
            p.wait_for_output("serving", Duration::from_secs(20));
            p
        })
        .collect()
}

/// A steady HTTP load from the client: one request every `every`, each
/// with a timeout, results as "<epoch> ok|fail <seconds> [error]" lines.
pub struct Load {
    proc: Proc,
    out: PathBuf,
}

impl Load {
    pub fn start(net: &Net, every: Duration, timeout: Duration) -> Load {
        let out = net
            .lab
            .dir()
            .join(format!("load-{}.txt", std::process::id()));
        let script = format!(
            r#"
import time, urllib.request, sys
out = open("{out}", "w", buffering=1)
while True:
    t = time.time()
    try:
        urllib.request.urlopen("http://{VIP}/", timeout={timeout}).read()
        out.write(f"{{t:.3f}} ok {{time.time() - t:.3f}}\n")
    except Exception as e:
        out.write(f"{{t:.3f}} fail {{time.time() - t:.3f}} {{e!r}}\n")
    time.sleep(max(0.0, {every} - (time.time() - t)))
"#,
            out = out.display(),
            every = every.as_secs_f64(),
            timeout = timeout.as_secs_f64()
        );
        let proc = net
            .lab
            .spawn(&net.client, "load", &["python3", "-c", &script]);
        let load = Load { proc, out };
        // Python starts slowly under emulation: the load counts from its
        // first answer.
        if wait_until(Duration::from_secs(60), || {
            load.results().iter().any(|r| r.1)
        })
        .is_none()
        {
            panic!(
                "the load never got an answer: {:?}\n{}",
                load.results(),
                load.log()
            );
        }
        load
    }

    /// (epoch seconds, succeeded) of every request so far.
    pub fn results(&self) -> Vec<(f64, bool)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split(' ');
                let t = words.next()?.parse().ok()?;
                Some((t, words.next()? == "ok"))
            })
            .collect()
    }

    /// The failed requests since `since`, each as "+seconds after it,
    /// seconds taken, the error": a timeout and a reset tell different
    /// stories.
    pub fn failures(&self, since: f64) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.splitn(4, ' ');
                let t: f64 = words.next()?.parse().ok()?;
                (t >= since && words.next()? == "fail").then(|| {
                    let took = words.next().unwrap_or("?");
                    let why = words.next().unwrap_or("?");
                    format!("{:+.2}s took {took}s: {why}", t - since)
                })
            })
            .collect()
    }

    /// What the load generator printed (its errors).
    pub fn log(&self) -> String {
        self.proc.output()
    }

    pub fn stop(self) -> Vec<(f64, bool)> {
        self.proc.signal(libc::SIGKILL);
        self.results()
    }
}

/// Requests failed after `since`, and the outage: from the first failure
/// after `since` to the next success (0 when none failed).
pub fn outage(results: &[(f64, bool)], since: f64) -> (usize, Duration) {
    let after: Vec<&(f64, bool)> = results.iter().filter(|r| r.0 >= since).collect();
    let failed = after.iter().filter(|r| !r.1).count();
    let first_fail = after.iter().find(|r| !r.1).map(|r| r.0);
    let window = match first_fail {
        Some(f) => after
            .iter()
            .find(|r| r.0 > f && r.1)
            .map_or(Duration::MAX, |r| Duration::from_secs_f64(r.0 - f)),
        None => Duration::ZERO,
    };
    (failed, window)
}

/// The longest outage after `since`: from the first of a run of failed
/// requests to the next success (`Duration::MAX` when none came).
pub fn longest_outage(results: &[(f64, bool)], since: f64) -> Duration {
    let mut longest = Duration::ZERO;
    let mut first_fail: Option<f64> = None;
    for r in results.iter().filter(|r| r.0 >= since) {
        match (r.1, first_fail) {
            (false, None) => first_fail = Some(r.0),
            (true, Some(f)) => {
                longest = longest.max(Duration::from_secs_f64(r.0 - f));
                first_fail = None;
            }
            _ => {}
        }
    }
    if first_fail.is_some() {
        Duration::MAX
    } else {
        longest
    }
}

/// A long-lived TCP connection from the client through the VIP to an echo
/// server, exchanging a line every 100 ms; it reports when an exchange
/// fails.
pub struct LongConnection {
    proc: Proc,
}

impl LongConnection {
    pub fn open(net: &Net) -> LongConnection {
        let script = format!(
            r#"
import socket, time
print("started", flush=True)
c = socket.create_connection(("{VIP}", 9000), timeout=2)
c.settimeout(3)
f = c.makefile("rwb")
n = 0
print("open", flush=True)
while True:
    n += 1
    try:
        f.write(b"%d\n" % n); f.flush()
        got = f.readline()
        if got.strip() != b"%d" % n:
            raise Exception("got %r" % got)
    except Exception as e:
        print("broken at", n, e, flush=True)
        break
    if n % 10 == 0:
        print("alive", n, flush=True)
    time.sleep(0.1)
"#
        );
        let mut proc = net
            .lab
            .spawn(&net.client, "long", &["python3", "-c", &script]);
        // Python's own start is not what is measured: on the VM's one
        // emulated CPU, with another VM on the host, it has taken more
        // than 10 s (seen in CI). The connect through the VIP is: it
        // gives up after 2 s, and the whole open after 10 s.
        proc.wait_for_output("started", Duration::from_secs(60));
        proc.wait_for_output("open", Duration::from_secs(10));
        LongConnection { proc }
    }

    /// Exchanges done so far, or an error when it broke.
    pub fn state(&self) -> Result<u32, String> {
        let out = self.proc.output();
        if let Some(l) = out.lines().find(|l| l.starts_with("broken")) {
            return Err(l.to_string());
        }
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("alive ")?.parse().ok())
            .max()
            .unwrap_or(0))
    }

    /// Waits for `more` exchanges beyond now; Err if it breaks first.
    pub fn carries(&self, more: u32, timeout: Duration) -> Result<(), String> {
        let start = self.state()?;
        wait_until(
            timeout,
            || !matches!(self.state(), Ok(n) if n < start + more),
        )
        .ok_or_else(|| "no progress".to_string())?;
        self.state().map(|_| ())
    }
}
