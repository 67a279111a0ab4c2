//! The `tandem` package on Debian bookworm boxes booted with systemd in
//! the VM: installed with dpkg on a fresh debootstrapped system, its
//! units come up hardened and ready, a VRRP pair forms across two boxes
//! joined by a wire, the VIP follows a stopped or killed vrrpd, an
//! upgrade keeps the configuration and the IPVS table, remove takes the
//! VIPs away and purge leaves nothing behind.

use std::time::{Duration, Instant};

use tandem_model::api::{HealthState, HealthdStatus, VrrpState, VrrpdStatus};
use tandem_tests::package;
use tandem_tests::vm::{self, Running, System, Vm};

/// What the boxes have besides debootstrap's minbase and systemd: `ip` to
/// look at the VIPs, and man-db, with which `systemd-analyze verify`
/// checks that the units' Documentation= pages are installed. procps is
/// the package's own dependency (/bin/kill), in the list so the tree is
/// the harness's own.
const PACKAGES: &[&str] = &["iproute2", "man-db", "procps"];
const UNITS: &[&str] = &[
    "tandem-vrrpd",
    "tandem-healthd",
    "tandem-webui",
    "tandem-clusterd",
];

/// Highest `systemd-analyze security` exposure accepted per unit (0 is
/// best, 10 worst): a setting dropped from a unit fails the test. The
/// scores measured are printed.
const MAX_EXPOSURE: &[(&str, f64)] = &[
    ("tandem-vrrpd", 2.5),
    ("tandem-healthd", 2.5),
    ("tandem-webui", 2.0),
    ("tandem-clusterd", 2.0),
];

/// Wall time per phase of a test, printed at its end.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Phases {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn end(&mut self, phase: &'static str) {
        self.done.push((phase, self.last.elapsed()));
        self.last = Instant::now();
    }

    fn report(&self) -> String {
        self.done
            .iter()
            .map(|(p, d)| format!("  {p}: {:.1} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn setup(test: &str) -> Option<(Vm, System)> {
    let vm = vm::require(test)?;
    let system = vm.debian("bookworm", PACKAGES)?;
    Some((vm, system))
}

/// Runs `cond` in the guest every 100 ms until it succeeds; panics after
/// `secs` with the last output.
#[track_caller]
fn wait_for(b: &mut Running, cond: &str, secs: u32) -> String {
    let script = format!(
        "i=0\nwhile [ $i -lt {n} ]; do\n  if out=$( {cond} ) 2>&1; then printf '%s' \"$out\"; exit 0; fi\n  i=$((i + 1)); sleep 0.1\ndone\necho \"$out\"; exit 1\n",
        n = secs * 10
    );
    let e = b.sh_timeout(&script, Duration::from_secs(u64::from(secs) + 30));
    assert!(
        e.success(),
        "not true after {secs} s: {cond}\nlast output: {}",
        e.output
    );
    e.output
}

/// Asks `cond` every 100 ms until it holds; panics after `secs`.
#[track_caller]
fn poll(b: &mut Running, secs: u64, what: &str, mut cond: impl FnMut(&mut Running) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond(b) {
        assert!(Instant::now() < deadline, "not after {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn vrrpd_status(b: &mut Running) -> VrrpdStatus {
    let json = b.sh_ok("tandem-vrrpd status --json");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn healthd_status(b: &mut Running) -> HealthdStatus {
    let json = b.sh_ok("tandem-healthd status --json");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Waits until instance `web` is in `state` on `b`.
#[track_caller]
fn wait_state(b: &mut Running, state: VrrpState, secs: u32) {
    let want = format!("\"state\": \"{state}\"");
    wait_for(
        b,
        &format!("tandem-vrrpd status --json | grep -F '{want}'"),
        secs,
    );
}

fn holds(b: &mut Running, ifname: &str, addr: &str) -> bool {
    b.sh(&format!("ip -o addr show dev {ifname} 2>/dev/null"))
        .output
        .contains(&format!(" {addr}/"))
}

/// `unit`'s property `prop` (`systemctl show -p`).
fn property(b: &mut Running, unit: &str, prop: &str) -> String {
    b.sh_ok(&format!("systemctl show -p {prop} --value {unit}"))
        .trim()
        .to_string()
}

/// One HTTP/1.0 GET with bash's /dev/tcp (the box has no HTTP client).
fn http_get(b: &mut Running, port: u16, path: &str) -> String {
    b.sh_ok(&format!(
        "exec bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port} && printf \"GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n\" >&3 && cat <&3'"
    ))
}

/// The default configuration with one instance and two virtual servers:
/// an ICMP check (a raw socket: CAP_NET_RAW) and a script check as
/// `nobody` (setuid: not allowed until the run-as-user drop-in).
const ONE_BOX: &str = r#"[node]
name = "lb1"

[[vrrp_instance]]
name = "web"
interface = "eth0"
vrid = 51
priority = 150
advert_interval = "200ms"
use_vmac = true
virtual_ips = ["10.0.2.100/24"]

[[virtual_server]]
name = "pinged"
address = "10.0.2.100:80"
scheduler = "rr"
forwarding = "dr"

[virtual_server.check]
type = "icmp"
interval = "500ms"
timeout = "400ms"
rise = 1

[[virtual_server.real_server]]
address = "10.0.2.15"

[[virtual_server]]
name = "scripted"
address = "10.0.2.100:443"
scheduler = "rr"
forwarding = "dr"
initial_state = "down"

[virtual_server.check]
type = "script"
command = ["/bin/true"]
user = "nobody"
interval = "500ms"
timeout = "400ms"
rise = 1

[[virtual_server.real_server]]
address = "10.0.2.15"
"#;

#[test]
fn a_fresh_box_installs_the_package_and_runs_its_hardened_units_until_purged_in_vm() {
    let Some((vm, system)) = setup("package_one_box") else {
        return;
    };
    let Some(deb) = package::build("package_one_box", "0.1.0-1") else {
        return;
    };
    let mut phases = Phases::new();
    let mut b = vm
        .scenario("one-box")
        .system(&system)
        .agent()
        .nic(vm::Nic::User { forwards: vec![] })
        .file("tandem.deb", std::fs::read(&deb).unwrap())
        .file("one-box.toml", ONE_BOX)
        .memory_mib(384)
        .timeout(Duration::from_secs(600))
        .spawn();
    b.sh_ok("systemctl is-system-running --wait || true");
    b.sh_ok("ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up");
    phases.end("boot");

    // dpkg alone: every dependency is in a minimal system.
    let installed = b.sh_ok("dpkg -i $TANDEM_VM_DIR/tandem.deb 2>&1");
    assert_eq!(
        b.sh_ok("dpkg-query -W -f '${Status} ${Version}' tandem"),
        "install ok installed 0.1.0-1",
        "{installed}"
    );
    // dpkg recorded digests of the files (the package ships no md5sums).
    assert!(
        b.sh_ok("cat /var/lib/dpkg/info/tandem.md5sums")
            .contains("usr/bin/tandem-vrrpd")
    );

    phases.end("dpkg -i");

    // The daemons were started and told systemd they are ready: a
    // Type=notify unit is "active" only after READY=1.
    for unit in ["tandem-vrrpd", "tandem-healthd"] {
        assert_eq!(property(&mut b, unit, "Type"), "notify");
        assert_eq!(property(&mut b, unit, "ActiveState"), "active", "{unit}");
        assert_eq!(property(&mut b, unit, "UnitFileState"), "enabled", "{unit}");
    }
    for unit in ["tandem-webui", "tandem-clusterd"] {
        assert_eq!(property(&mut b, unit, "ActiveState"), "inactive", "{unit}");
        assert_eq!(
            property(&mut b, unit, "UnitFileState"),
            "disabled",
            "{unit}"
        );
    }
    // Ready means serving: the control socket answers the moment a
    // (re)start returns.
    b.sh_ok("systemctl restart tandem-vrrpd && tandem-vrrpd status");
    b.sh_ok("systemctl restart tandem-healthd && tandem-healthd status");

    // The installed configuration starts nothing.
    assert!(vrrpd_status(&mut b).instances.is_empty());
    assert!(healthd_status(&mut b).virtual_servers.is_empty());
    let table = b.sh_ok("ipvsctl list");
    assert!(
        !table.lines().any(|l| ["TCP", "UDP", "SCTP", "FWM"]
            .iter()
            .any(|p| l.starts_with(p))),
        "{table}"
    );

    // systemd's own checks.
    let verify = b.sh("systemd-analyze verify /usr/lib/systemd/system/tandem-*.service 2>&1");
    assert!(
        verify.success() && verify.output.trim().is_empty(),
        "{}",
        verify.output
    );
    let mut scores = Vec::new();
    for (unit, max) in MAX_EXPOSURE {
        let out = b.sh_ok(&format!(
            "systemd-analyze security --no-pager {unit}.service"
        ));
        let line = out
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("{out}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(score <= *max, "{unit}: exposure {score} > {max}\n{out}");
        scores.push(line.trim().to_string());
    }

    phases.end("units ready, verify, security");

    // Capabilities as the units bound them.
    let caps = |b: &mut Running, unit: &str| {
        let pid = property(b, unit, "MainPID");
        b.sh_ok(&format!("grep -E '^Cap(Eff|Bnd)' /proc/{pid}/status"))
    };
    let net_admin_raw = "0000000000003000";
    for unit in ["tandem-vrrpd", "tandem-healthd"] {
        let c = caps(&mut b, unit);
        assert!(c.lines().all(|l| l.ends_with(net_admin_raw)), "{unit}: {c}");
    }
    // vrrpd runs ahead of the checks (the unit's Nice=-10), healthd not.
    for (unit, nice) in [("tandem-vrrpd", "-10"), ("tandem-healthd", "0")] {
        let pid = property(&mut b, unit, "MainPID");
        let got = b.sh_ok(&format!("ps -o ni= -p {pid}"));
        assert_eq!(got.trim(), nice, "{unit}'s nice value");
    }

    // A configuration dropped in and reloaded: the instance comes up
    // alone (master) with its virtual MAC, which means writing
    // /proc/sys/net/ipv4/conf/eth0 through ProtectKernelTunables.
    b.sh_ok("cp $TANDEM_VM_DIR/one-box.toml /etc/tandem/tandem.toml");
    b.sh_ok("systemctl reload tandem-vrrpd tandem-healthd");
    wait_state(&mut b, VrrpState::Master, 20);
    assert!(holds(&mut b, "vrrp.51", "10.0.2.100"));
    assert_eq!(
        b.sh_ok("cat /proc/sys/net/ipv4/conf/eth0/arp_ignore")
            .trim(),
        "1"
    );
    // Also under the macvlan it created after the sandbox was set up.
    assert_eq!(
        b.sh_ok("cat /proc/sys/net/ipv6/conf/vrrp.51/disable_ipv6")
            .trim(),
        "1"
    );
    // healthd programs kernel IPVS (loaded on demand) and pings with a
    // raw socket...
    wait_for(&mut b, "ipvsctl list | grep -F -- '-> 10.0.2.15:80'", 20);
    let up = |b: &mut Running, vs: &str| {
        healthd_status(b)
            .virtual_servers
            .iter()
            .find(|v| v.name == vs)
            .map(|v| v.real_servers[0].clone())
            .expect("the virtual server")
    };
    assert_eq!(up(&mut b, "pinged").health, HealthState::Up);
    // ...but cannot switch users for a script check until told so.
    poll(
        &mut b,
        20,
        "the script check fails for want of setuid",
        |b| up(b, "scripted").reason.contains("Operation not permitted"),
    );
    assert_ne!(up(&mut b, "scripted").health, HealthState::Up);
    let dropin = "/etc/systemd/system/tandem-healthd.service.d";
    b.sh_ok(&format!(
        "mkdir -p {dropin} && cp /usr/share/doc/tandem/examples/run-as-user.conf {dropin}/ && \
         systemctl daemon-reload && systemctl restart tandem-healthd"
    ));
    poll(&mut b, 20, "the script check passes as nobody", |b| {
        up(b, "scripted").health == HealthState::Up
    });
    // The operator's drop-in is the operator's: gone before the purge
    // below looks for leftovers.
    b.sh_ok(&format!(
        "rm -r {dropin} && systemctl daemon-reload && systemctl restart tandem-healthd"
    ));

    phases.end("config reload, IPVS, checks, drop-in");

    // kill -9: the stop hook takes the VIP and the macvlan away before
    // systemd restarts the daemon, which takes over again.
    b.sh_ok("systemctl kill -s KILL tandem-vrrpd");
    wait_for(
        &mut b,
        "journalctl -u tandem-vrrpd -o cat | grep -F 'released web: 10.0.2.100/24 from vrrp.51'",
        20,
    );
    assert!(
        b.sh_ok("journalctl -u tandem-vrrpd -o cat")
            .contains("released web: macvlan vrrp.51 on eth0")
    );
    wait_for(
        &mut b,
        "[ \"$(systemctl show -p NRestarts --value tandem-vrrpd)\" = 1 ]",
        20,
    );
    wait_state(&mut b, VrrpState::Master, 20);
    assert!(holds(&mut b, "vrrp.51", "10.0.2.100"));

    phases.end("kill -9, stop hook, restart");

    // The web UI, once enabled, answers on its port.
    b.sh_ok("systemctl enable --now tandem-webui");
    assert_eq!(property(&mut b, "tandem-webui", "ActiveState"), "active");
    let page = http_get(&mut b, 8080, "/");
    assert!(
        page.lines().next().is_some_and(|l| l.ends_with(" 200 OK")),
        "{page}"
    );
    assert!(
        page.contains("<tr id=\"instance-web\">") && page.contains("data-state=\"MASTER\""),
        "{page}"
    );
    assert_eq!(caps(&mut b, "tandem-webui").lines().count(), 2);
    assert!(
        caps(&mut b, "tandem-webui")
            .lines()
            .all(|l| l.ends_with("0000000000000000"))
    );

    phases.end("web UI");

    // remove: the daemons stop and the VIPs and the macvlan go; the
    // configuration stays.
    b.sh_ok("dpkg -r tandem");
    assert!(!holds(&mut b, "eth0", "10.0.2.100"));
    assert!(!b.sh_ok("ip -o link").contains("vrrp.51"));
    for unit in UNITS {
        assert_eq!(property(&mut b, unit, "ActiveState"), "inactive", "{unit}");
    }
    b.sh_ok("test -f /etc/tandem/tandem.toml && ! test -e /run/tandem");

    phases.end("dpkg -r");

    // purge: nothing is left.
    b.sh_ok("dpkg -P tandem");
    let left = b.sh(
        "ls -d /etc/tandem /var/lib/tandem /run/tandem /usr/lib/systemd/system/tandem-* \
         /etc/systemd/system/tandem-* /etc/systemd/system/*/tandem-* \
         /var/lib/systemd/deb-systemd-helper-enabled/*/tandem-* 2>/dev/null",
    );
    assert_eq!(left.output.trim(), "", "left after purge");
    // (It exits 1 when nothing matches.)
    let known = b
        .sh("systemctl list-unit-files --no-legend 'tandem*'")
        .output;
    assert_eq!(known.trim(), "", "{known}");

    phases.end("dpkg -P");

    let out = b.finish();
    out.assert_success();
    eprintln!(
        "one box: {:.1} s in the VM\n{}\n{}",
        out.elapsed.as_secs_f64(),
        phases.report(),
        scores.join("\n")
    );
}

/// The pair's configuration: lb1 (priority 150) and lb2 (100) float
/// 192.168.77.100 on the wire between them; each one's healthd pings the
/// other box as the real server of a DR virtual server on the VIP.
fn pair_config(me: u8) -> String {
    let peer = 3 - me;
    format!(
        r#"[node]
name = "lb{me}"

[[vrrp_instance]]
name = "web"
interface = "eth0"
vrid = 51
priority = {}
advert_interval = "1s"
virtual_ips = ["192.168.77.100/24"]

[[virtual_server]]
name = "web-http"
address = "192.168.77.100:80"
scheduler = "rr"
forwarding = "dr"

[virtual_server.check]
type = "icmp"
interval = "1s"
timeout = "500ms"
rise = 1

[[virtual_server.real_server]]
address = "192.168.77.{peer}"
"#,
        if me == 1 { 150 } else { 100 }
    )
}

/// The pair as a cluster: one file for both, with the sync channel on
/// the wire between them.
fn cluster_config(vips: &[&str]) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("\"{v}\"")).collect();
    format!(
        r#"[cluster]
nodes = ["lb1", "lb2"]
address = {{ lb1 = "192.168.77.1", lb2 = "192.168.77.2" }}

[[vrrp_instance]]
name = "web"
interface = "eth0"
vrid = 51
priority = {{ lb1 = 150, lb2 = 100 }}
advert_interval = "1s"
virtual_ips = [{}]
"#,
        vips.join(", ")
    )
}

const VIP: &str = "192.168.77.100";

/// Runs `f` on both boxes at once (each VM is one busy core under TCG).
fn both<T: Send>(boxes: &mut [Running; 2], f: impl Fn(&mut Running, u8) -> T + Sync) -> [T; 2] {
    let [a, b] = boxes;
    std::thread::scope(|s| {
        let f = &f;
        let ta = s.spawn(move || f(a, 1));
        let tb = s.spawn(move || f(b, 2));
        [ta.join().unwrap(), tb.join().unwrap()]
    })
}

/// The vrrpd transitions `b` logged since the unix time `since`.
fn transitions_since(b: &mut Running, since: &str) -> Vec<String> {
    b.sh_ok(&format!(
        "journalctl -u tandem-vrrpd -o cat --since @{since} | grep -oE '(INIT|BACKUP|MASTER|FAULT) -> (BACKUP|MASTER|FAULT|STOP)' || true"
    ))
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn two_boxes_float_a_vip_hand_it_over_and_keep_it_through_an_upgrade_in_vm() {
    let Some((vm, system)) = setup("package_pair") else {
        return;
    };
    let Some(v1) = package::build("package_pair", "0.1.0-1") else {
        return;
    };
    let Some(v2) = package::build("package_pair", "0.1.0-2") else {
        return;
    };
    let mut phases = Phases::new();
    let link = vm::Link::new();
    let spawned = vm::spawn_together(
        [1u8, 2]
            .into_iter()
            .map(|me| {
                vm.scenario(&format!("lb{me}"))
                    .system(&system)
                    .agent()
                    .nic(if me == 1 {
                        link.listen()
                    } else {
                        link.connect()
                    })
                    .file("tandem_1.deb", std::fs::read(&v1).unwrap())
                    .file("tandem_2.deb", std::fs::read(&v2).unwrap())
                    .file("tandem.toml", pair_config(me))
                    .memory_mib(768)
                    .timeout(Duration::from_secs(900))
            })
            .collect(),
    );
    let mut boxes: [Running; 2] = spawned.try_into().ok().expect("two boxes");
    both(&mut boxes, |b, me| {
        b.sh_ok("systemctl is-system-running --wait || true");
        b.sh_ok(&format!(
            "ip addr add 192.168.77.{me}/24 dev eth0 && ip link set eth0 up"
        ));
    });
    phases.end("boot both");

    both(&mut boxes, |b, _| {
        b.sh_ok("dpkg -i $TANDEM_VM_DIR/tandem_1.deb");
        for unit in ["tandem-vrrpd", "tandem-healthd"] {
            assert_eq!(property(b, unit, "ActiveState"), "active", "{unit}");
        }
    });
    phases.end("dpkg -i on both");

    // The configuration dropped in and reloaded: a pair across the wire.
    both(&mut boxes, |b, _| {
        b.sh_ok(
            "cp $TANDEM_VM_DIR/tandem.toml /etc/tandem/tandem.toml && \
             systemctl reload tandem-vrrpd tandem-healthd",
        );
    });
    let [a, b] = &mut boxes;
    wait_state(a, VrrpState::Master, 30);
    wait_state(b, VrrpState::Backup, 30);
    assert!(holds(a, "eth0", VIP));
    assert!(!holds(b, "eth0", VIP));
    let master = vrrpd_status(b).instances[0]
        .master
        .clone()
        .expect("lb2 hears lb1");
    assert_eq!(master.address.to_string(), "192.168.77.1");
    // Each healthd pings the other box over the wire and programs IPVS.
    both(&mut boxes, |b, me| {
        let peer = 3 - me;
        wait_for(
            b,
            &format!("ipvsctl list | grep -F -- '-> 192.168.77.{peer}:80'"),
            30,
        );
    });
    phases.end("pair up");

    // Stopping the master's vrrpd hands the VIP to the other box...
    let [a, b] = &mut boxes;
    a.sh_ok("systemctl stop tandem-vrrpd");
    wait_state(b, VrrpState::Master, 15);
    assert!(holds(b, "eth0", VIP));
    assert!(!holds(a, "eth0", VIP));
    // ...and starting it takes it back (preempt).
    a.sh_ok("systemctl start tandem-vrrpd");
    wait_state(a, VrrpState::Master, 15);
    wait_state(b, VrrpState::Backup, 15);
    assert!(holds(a, "eth0", VIP) && !holds(b, "eth0", VIP));
    phases.end("stop, start: VIP over and back");

    // Upgrade of the master: the configuration stays, both daemons are
    // restarted on the new version, vrrpd's restart hands the VIP to lb2
    // and takes it back, healthd's adopts the IPVS table.
    let conf_sum = "md5sum /etc/tandem/tandem.toml";
    let before_sum = a.sh_ok(conf_sum);
    let pids = |b: &mut Running| {
        [
            property(b, "tandem-vrrpd", "MainPID"),
            property(b, "tandem-healthd", "MainPID"),
        ]
    };
    let before_pids = pids(a);
    let table_before = a.sh_ok("ipvsctl list");
    let now = |b: &mut Running| b.sh_ok("date +%s").trim().to_string();
    let (since_a, since_b) = (now(a), now(b));
    a.sh_ok("dpkg -i $TANDEM_VM_DIR/tandem_2.deb");
    assert_eq!(a.sh_ok("dpkg-query -W -f '${Version}' tandem"), "0.1.0-2");
    assert_eq!(a.sh_ok(conf_sum), before_sum, "the configuration was kept");
    let after_pids = pids(a);
    assert!(
        before_pids.iter().zip(&after_pids).all(|(x, y)| x != y),
        "not restarted: {before_pids:?} -> {after_pids:?}"
    );
    wait_state(a, VrrpState::Master, 15);
    wait_state(b, VrrpState::Backup, 15);
    assert!(holds(a, "eth0", VIP) && !holds(b, "eth0", VIP));
    assert_eq!(
        transitions_since(b, &since_b),
        ["BACKUP -> MASTER", "MASTER -> BACKUP"],
        "lb2 held the VIP while lb1's vrrpd restarted"
    );
    assert_eq!(a.sh_ok("ipvsctl list"), table_before);
    let ops = a.sh_ok(&format!(
        "journalctl -u tandem-healthd -o cat --since @{since_a} | grep -F 'ipvs: ' || true"
    ));
    assert_eq!(ops, "", "the restarted healthd changed the IPVS table");
    phases.end("upgrade of the master");

    // The backup's upgrade moves nothing.
    let since = now(a);
    b.sh_ok("dpkg -i $TANDEM_VM_DIR/tandem_2.deb");
    wait_state(b, VrrpState::Backup, 15);
    assert!(transitions_since(a, &since).is_empty());
    assert!(holds(a, "eth0", VIP));
    phases.end("upgrade of the backup");

    // The pair becomes a cluster: one identity (made on lb1, lb2's bundle
    // carried across), one file, tandem-clusterd enabled on both; an edit
    // applied on lb1 is lb2's file and lb2's running configuration.
    let [a, b] = &mut boxes;
    a.sh_ok("echo lb1 > /etc/tandem/node && tandem cluster init --node lb1");
    let bundle = a.sh_ok("tandem cluster invite lb2");
    b.sh_ok(&format!(
        "echo lb2 > /etc/tandem/node && cat > /root/lb2.bundle <<'EOF'\n{bundle}EOF\ntandem cluster join /root/lb2.bundle && rm /root/lb2.bundle"
    ));
    both(&mut boxes, |b, _| {
        b.sh_ok(&format!(
            "cat > /etc/tandem/tandem.toml <<'EOF'\n{}EOF\nsystemctl enable --now tandem-clusterd && systemctl restart tandem-vrrpd tandem-healthd",
            cluster_config(&["192.168.77.100/24"])
        ));
        assert_eq!(property(b, "tandem-clusterd", "ActiveState"), "active");
    });
    let [a, b] = &mut boxes;
    wait_for(b, "tandem cluster status | grep -q 'IN SYNC'", 30);
    a.sh_ok(&format!(
        "cat > /root/new.toml <<'EOF'\n{}EOF\ntandem config apply /root/new.toml --comment 'a second VIP'",
        cluster_config(&["192.168.77.100/24", "192.168.77.101/24"])
    ));
    assert_eq!(
        b.sh_ok("md5sum < /etc/tandem/tandem.toml"),
        a.sh_ok("md5sum < /etc/tandem/tandem.toml")
    );
    wait_state(a, VrrpState::Master, 30);
    assert!(
        vrrpd_status(b).instances[0].virtual_ips.len() == 2,
        "lb2's vrrpd runs lb1's edit"
    );
    let history = b.sh_ok("tandem config history");
    assert!(history.contains("a second VIP"), "{history}");
    phases.end("a cluster of the two packaged boxes");

    // Removing the package from the master stops its daemons: the VIP
    // goes to lb2, the configuration stays for a reinstall.
    a.sh_ok("dpkg -r tandem");
    wait_state(b, VrrpState::Master, 15);
    assert!(holds(b, "eth0", VIP) && !holds(a, "eth0", VIP));
    a.sh_ok("test -f /etc/tandem/tandem.toml");
    phases.end("dpkg -r on the master");

    let [a, b] = boxes;
    for out in [a.finish(), b.finish()] {
        out.assert_success();
    }
    eprintln!("pair:\n{}", phases.report());
}
