//! ipvsctl against the real kernel IPVS, in the test VM: every attribute
//! both ways between ipvsctl and ipvsadm, save/restore interchange, real
//! traffic through NAT, DR and TUN with the schedulers' distributions,
//! the reconciler's promises (idempotent, one edit for one weight, open
//! connections survive), and the error messages.
//!
//! Each test runs its own body inside a VM (`vm::inside()`), as root in
//! the VM's network namespaces.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipvsctl::save;
use ipvsctl::types::Table;
use tandem_tests::{binary, vm};

// ---------------------------------------------------------------------
// Harness glue.

fn ipvsctl_path() -> PathBuf {
    binary("ipvsctl")
}

/// Runs a shell script (`set -e`), returns stdout; panics with both
/// streams on failure.
#[track_caller]
fn sh(script: &str) -> String {
    let out = Command::new("/bin/sh")
        .arg("-ec")
        .arg(script)
        .env("IPVSCTL", ipvsctl_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "script failed ({}):\n{script}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// ipvsctl in a network namespace ("" for the VM's own), with stdin.
fn ipvsctl(ns: &str, args: &[&str], stdin: &str) -> Output {
    let mut cmd = if ns.is_empty() {
        Command::new(ipvsctl_path())
    } else {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(ipvsctl_path());
        c
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[track_caller]
fn ipvsctl_ok(ns: &str, args: &[&str], stdin: &str) -> String {
    let out = ipvsctl(ns, args, stdin);
    assert!(
        out.status.success(),
        "ipvsctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The table `ipvsctl list --json` shows, without counters.
fn listed(ns: &str) -> Table {
    let json = ipvsctl_ok(ns, &["list", "--json"], "");
    serde_json::from_str::<Table>(&json)
        .unwrap_or_else(|e| panic!("{e}: {json}"))
        .settings_only()
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// A routable subnet in the VM's own namespace: real servers on
/// 10.0.0.0/24 and 2001:db8::/64 are unicast addresses it can reach.
fn local_subnets() {
    sh("ip link add lab0 type dummy\n\
        ip link set lab0 up\n\
        ip addr add 10.0.0.254/24 dev lab0\n\
        ip -6 addr add 2001:db8::fe/64 dev lab0 nodad\n");
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on an open namespace file; it affects this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

// ---------------------------------------------------------------------
// A table with every attribute.

/// Every kind of service, forwarding, tunnel, flag and option, as
/// ipvsctl save prints it.
const EVERY_ATTRIBUTE: &str = "\
-A -t 10.0.0.1:0 -s rr -p 360
-A -t 10.0.0.1:80 -s wrr
-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.0.0.3:8080 -m -w 3 -x 100 -y 50
-A -t 10.0.0.1:81 -s dh -p 10 --pe sip
-A -u 10.0.0.1:53 -s sh -o -b sh-fallback,sh-port
-a -u 10.0.0.1:53 -r 10.0.0.4:53 -g -w 2
-a -u 10.0.0.1:53 -r 10.0.0.5:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-nocsum
-a -u 10.0.0.1:53 -r 10.0.0.6:53 -i -w 1 --tun-type gue --tun-port 6081 --tun-csum
-a -u 10.0.0.1:53 -r 10.0.0.7:53 -i -w 1 --tun-type gue --tun-port 6082 --tun-remcsum
-a -u 10.0.0.1:53 -r 10.0.0.8:53 -i -w 0 --tun-type ipip
-a -u 10.0.0.1:53 -r 10.0.0.10:53 -i -w 1 --tun-type gre --tun-csum
-a -u 10.0.0.1:53 -r 10.0.0.11:53 -i -w 1 --tun-type gre --tun-nocsum
-A --sctp-service 10.0.0.1:9 -s mh -b mh-fallback,mh-port
-a --sctp-service 10.0.0.1:9 -r 10.0.0.12:9 -g -w 7 -x 10
-A -t [2001:db8::1]:443 -s lc -p 60 -M 64
-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -m -w 1
-a -t [2001:db8::1]:443 -r [2001:db8::3]:8443 -m -w 65535
-A -u [2001:db8::1]:53 -s sed -o
-a -u [2001:db8::1]:53 -r [2001:db8::4]:53 -i -w 1 --tun-type ipip
-a -u [2001:db8::1]:53 -r 10.0.0.13:53 -i -w 1 --tun-type ipip
-A -f 7 -s wlc -p 300 -M 255.255.255.0
-a -f 7 -r 10.0.0.9:0 -g -w 1
-A -f 8 -6 -s nq -p 120 -M 48
-a -f 8 -6 -r [2001:db8::5]:0 -g -w 4
";

/// Schedulers the VM's kernel ships as modules (ip_vs_<name>.ko).
fn kernel_schedulers() -> Vec<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let dir = format!("/lib/modules/{}/kernel/net/netfilter/ipvs", release.trim());
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let name = n.strip_prefix("ip_vs_")?.split(".ko").next()?.to_string();
            // Helpers and persistence engines, not schedulers.
            (!matches!(name.as_str(), "ftp" | "pe_sip")).then_some(name)
        })
        .collect();
    out.sort();
    out
}

/// One service per scheduler the kernel has, each with a real server.
fn every_scheduler() -> String {
    let scheds = kernel_schedulers();
    for known in tandem_model::config::SCHEDULERS {
        // twos arrived in Linux 6.2; everything else is in every kernel
        // this project supports.
        assert!(
            *known == "twos" || scheds.iter().any(|s| s == known),
            "the kernel lacks scheduler {known}: {scheds:?}"
        );
    }
    let mut out = String::new();
    for (i, s) in scheds.iter().enumerate() {
        let port = 1000 + i;
        out.push_str(&format!(
            "-A -t 10.0.0.100:{port} -s {s}\n-a -t 10.0.0.100:{port} -r 10.0.0.20:{port} -m -w 2\n"
        ));
    }
    out
}

/// ipvsadm 1.31 does not print thresholds in -S output.
fn without_thresholds(rules: &str) -> String {
    let mut out = String::new();
    for line in rules.lines() {
        let mut words = line.split_whitespace().peekable();
        let mut kept = Vec::new();
        while let Some(w) = words.next() {
            if w == "-x" || w == "-y" {
                words.next();
            } else {
                kept.push(w);
            }
        }
        out.push_str(&kept.join(" "));
        out.push('\n');
    }
    out
}

#[test]
fn every_attribute_written_by_ipvsctl_reads_the_same_in_ipvsadm() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    local_subnets();
    let rules = format!("{EVERY_ATTRIBUTE}{}", every_scheduler());
    let expected = save::parse_table(&rules).unwrap();
    ipvsctl_ok("", &["restore"], &rules);

    // ipvsadm's save: the same rules, line for line (less thresholds).
    let saved = sh("ipvsadm -S -n");
    assert_eq!(
        sorted_lines(&saved),
        sorted_lines(&without_thresholds(&save::render(&expected))),
        "ipvsadm -S -n:\n{saved}"
    );
    // ...which thresholds and tunnel parameters show in its listings.
    let thresholds = sh("ipvsadm -Ln --thresholds");
    assert!(
        thresholds.lines().any(|l| l.contains("-> 10.0.0.3:8080")
            && l.split_whitespace().collect::<Vec<_>>()[2..4] == ["100", "50"]),
        "{thresholds}"
    );
    let tun = sh("ipvsadm -Ln --tun-info");
    for (addr, info) in [
        ("10.0.0.5:53", "gue:6080:-c"),
        ("10.0.0.6:53", "gue:6081:+c"),
        ("10.0.0.7:53", "gue:6082:r"),
        ("10.0.0.8:53", "ipip"),
        ("10.0.0.10:53", "gre:+c"),
        ("10.0.0.11:53", "gre:-c"),
    ] {
        assert!(
            tun.lines()
                .any(|l| l.contains(&format!("-> {addr} ")) && l.contains(info)),
            "{addr} {info}:\n{tun}"
        );
    }
    // ipvsadm's listing and ipvsctl's read the same, line for line.
    let theirs = sh("ipvsadm -Ln");
    let ours = ipvsctl_ok("", &["list"], "");
    assert_eq!(sorted_lines(&ours), sorted_lines(&theirs));
    // And ipvsctl's own JSON has every attribute back.
    assert_eq!(listed(""), expected);
}

#[test]
fn every_attribute_written_by_ipvsadm_reads_the_same_in_ipvsctl() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    local_subnets();
    // One ipvsadm invocation per line, the way people use it.
    let rules = format!("{EVERY_ATTRIBUTE}{}", every_scheduler());
    let mut script = String::new();
    for line in rules.lines() {
        script.push_str(&format!("ipvsadm {line}\n"));
    }
    sh(&script);
    let expected = save::parse_table(&rules).unwrap();
    assert_eq!(listed(""), expected);
    // The library, straight: the same table.
    let mut k = ipvsctl::Kernel::connect().unwrap();
    assert_eq!(k.table().unwrap().settings_only(), expected);
    // One service alone, and one that is not there.
    let key = "udp:10.0.0.1:53".parse().unwrap();
    let one = k.service(&key).unwrap().expect("the service is there");
    assert_eq!(
        Table::new(vec![one]).settings_only().services[0],
        *expected.service(&key).unwrap()
    );
    assert_eq!(
        k.service(&"udp:10.0.0.1:54".parse().unwrap()).unwrap(),
        None
    );
    let info = k.info().unwrap();
    assert_eq!(info.version_string(), "1.2.1");
    assert!(info.conn_table_size > 0);
}

#[test]
fn save_and_restore_interchange_with_ipvsadm_both_ways() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    // Three namespaces: the original table, one copy per direction.
    let mut setup = String::new();
    for ns in ["orig", "viaipvsadm", "viaipvsctl"] {
        setup.push_str(&format!(
            "ip netns add {ns}\n\
             ip -n {ns} link set lo up\n\
             ip -n {ns} link add dummy0 type dummy\n\
             ip -n {ns} link set dummy0 up\n\
             ip -n {ns} addr add 10.0.0.254/24 dev dummy0\n\
             ip -n {ns} -6 addr add 2001:db8::fe/64 dev dummy0 nodad\n"
        ));
    }
    sh(&setup);
    // ipvsadm -S does not carry thresholds: leave them out of the
    // ipvsadm -> ipvsctl direction.
    let rules = without_thresholds(EVERY_ATTRIBUTE);
    ipvsctl_ok("orig", &["restore"], &rules);
    let original = listed("orig");
    assert_eq!(original, save::parse_table(&rules).unwrap());

    // ipvsctl save | ipvsadm -R
    let ours = ipvsctl_ok("orig", &["save"], "");
    std::fs::write("/tmp/ours.rules", &ours).unwrap();
    sh("ip netns exec viaipvsadm ipvsadm -R < /tmp/ours.rules");
    assert_eq!(listed("viaipvsadm"), original);

    // ipvsadm -S | ipvsctl restore
    let theirs = sh("ip netns exec orig ipvsadm -S -n");
    ipvsctl_ok("viaipvsctl", &["restore"], &theirs);
    assert_eq!(listed("viaipvsctl"), original);

    // With thresholds, ipvsctl -> ipvsadm keeps them (ipvsctl prints -x/-y).
    sh("ip netns exec viaipvsadm ipvsadm -C");
    ipvsctl_ok("orig", &["flush"], "");
    ipvsctl_ok("orig", &["restore"], EVERY_ATTRIBUTE);
    let ours = ipvsctl_ok("orig", &["save"], "");
    std::fs::write("/tmp/ours.rules", &ours).unwrap();
    sh("ip netns exec viaipvsadm ipvsadm -R < /tmp/ours.rules");
    assert_eq!(
        listed("viaipvsadm"),
        save::parse_table(EVERY_ATTRIBUTE).unwrap()
    );
}

// ---------------------------------------------------------------------
// Traffic.

/// client (10.0.1.2) -- director (10.0.1.1 | 10.0.2.1) -- bridge --
/// rs1 (10.0.2.11), rs2 (10.0.2.12). NAT VIP 10.0.1.1; DR VIP 10.0.3.1
/// and TUN VIP 10.0.4.1 on the director's and the real servers' lo.
/// The real servers serve HTTP on port 80 ("served by rsN").
const LAB: &str = r#"
ns() { ip netns add "$1"; ip -n "$1" link set lo up; }
for n in client director rs1 rs2 sw; do ns $n; done
ip -n sw link add br0 type bridge
ip -n sw link set br0 up
ip -n client link add eth0 type veth peer name eth0 netns director
ip -n client addr add 10.0.1.2/24 dev eth0
ip -n client link set eth0 up
ip -n client route add default via 10.0.1.1
ip -n director addr add 10.0.1.1/24 dev eth0
ip -n director link set eth0 up
ip -n director link add eth1 type veth peer name p0 netns sw
ip -n director addr add 10.0.2.1/24 dev eth1
ip -n director link set eth1 up
ip -n director addr add 10.0.3.1/32 dev lo
ip -n director addr add 10.0.4.1/32 dev lo
ip -n sw link set p0 master br0 up
ip netns exec director sysctl -q -w net.ipv4.ip_forward=1
# DR and TUN replies come back through the director (the real servers'
# gateway) with the VIP, one of its own addresses, as source.
ip netns exec director sysctl -q -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth1.rp_filter=0 net.ipv4.conf.eth1.accept_local=1
i=1
for rs in rs1 rs2; do
  ip -n $rs link add eth0 type veth peer name p$i netns sw
  ip -n sw link set p$i master br0 up
  ip -n $rs addr add 10.0.2.1$i/24 dev eth0
  ip -n $rs link set eth0 up
  ip -n $rs route add default via 10.0.2.1
  # DR and TUN: the VIPs are local, but never answered for on the wire.
  ip netns exec $rs sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  ip netns exec $rs sysctl -q -w net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
  ip -n $rs addr add 10.0.3.1/32 dev lo
  ip -n $rs addr add 10.0.4.1/32 dev lo
  ip -n $rs link set tunl0 up
  ip netns exec $rs sysctl -q -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.tunl0.rp_filter=0 net.ipv4.conf.default.rp_filter=0
  mkdir -p /tmp/www-$rs
  echo "served by $rs" >/tmp/www-$rs/index.html
  ip netns exec $rs busybox httpd -p 80 -h /tmp/www-$rs
  i=$((i + 1))
done
"#;

fn lab() {
    sh(LAB);
}

/// A `[[virtual_server]]` table for tandem.toml.
fn virtual_server(
    name: &str,
    addr: &str,
    sched: &str,
    fwd: &str,
    servers: &[(&str, u32)],
) -> String {
    let mut s = format!(
        "[[virtual_server]]\nname = \"{name}\"\naddress = \"{addr}\"\nscheduler = \"{sched}\"\nforwarding = \"{fwd}\"\n"
    );
    for (rs, w) in servers {
        s.push_str(&format!(
            "[[virtual_server.real_server]]\naddress = \"{rs}\"\nweight = {w}\n"
        ));
    }
    s
}

/// Writes a tandem.toml and applies it in the director; the plan lines.
fn apply(config: &str) -> Vec<String> {
    std::fs::write("/tmp/tandem.toml", config).unwrap();
    ipvsctl_ok("director", &["apply", "/tmp/tandem.toml"], "")
        .lines()
        .map(str::to_string)
        .collect()
}

/// One HTTP GET from the client namespace; which real server answered.
fn fetch_from_client(vip: &'static str, n: usize) -> BTreeMap<String, usize> {
    in_netns("client", move || {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let addr: SocketAddr = vip.parse().unwrap();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect {vip}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n").unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            let body = reply
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_else(|| panic!("no body from {vip}: {reply:?}"))
                .trim()
                .to_string();
            *seen.entry(body).or_insert(0) += 1;
        }
        seen
    })
    .join()
    .unwrap()
}

fn count(seen: &BTreeMap<String, usize>, rs: &str) -> usize {
    seen.get(&format!("served by {rs}")).copied().unwrap_or(0)
}

#[test]
fn nat_dr_and_tun_carry_traffic_and_rr_spreads_it_evenly() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    lab();
    let config = [
        virtual_server(
            "nat",
            "10.0.1.1:80",
            "rr",
            "nat",
            &[("10.0.2.11", 1), ("10.0.2.12", 1)],
        ),
        virtual_server(
            "dr",
            "10.0.3.1:80",
            "rr",
            "dr",
            &[("10.0.2.11", 1), ("10.0.2.12", 1)],
        ),
        virtual_server(
            "tun",
            "10.0.4.1:80",
            "rr",
            "tun",
            &[("10.0.2.11", 1), ("10.0.2.12", 1)],
        ),
    ]
    .join("\n");
    assert_eq!(apply(&config).len(), 9);
    let listing = ipvsctl_ok("director", &["list"], "");
    for fwd in ["Masq", "Route", "Tunnel"] {
        assert_eq!(listing.matches(fwd).count(), 2, "{listing}");
    }
    for vip in ["10.0.1.1:80", "10.0.3.1:80", "10.0.4.1:80"] {
        let seen = fetch_from_client(vip, 20);
        assert_eq!(count(&seen, "rs1"), 10, "{vip}: {seen:?}");
        assert_eq!(count(&seen, "rs2"), 10, "{vip}: {seen:?}");
    }
    // Totals count the connections; zero clears one service's only.
    let conns = |listing: &str, vip: &str| -> u64 {
        let line = listing
            .lines()
            .find(|l| l.starts_with("TCP") && l.contains(vip))
            .unwrap_or_else(|| panic!("{vip}: {listing}"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    // The kernel folds its per-CPU counters into these every 2 s
    // (the estimator's timer): poll until they show.
    let stats = || ipvsctl_ok("director", &["list", "--stats"], "");
    let settled = |want: &[(&str, u64)]| {
        let mut last = String::new();
        for _ in 0..40 {
            last = stats();
            if want.iter().all(|(vip, n)| conns(&last, vip) == *n) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("counters never reached {want:?}:\n{last}");
    };
    settled(&[
        ("10.0.1.1:80", 20),
        ("10.0.3.1:80", 20),
        ("10.0.4.1:80", 20),
    ]);
    ipvsctl_ok("director", &["zero", "tcp:10.0.1.1:80"], "");
    settled(&[("10.0.1.1:80", 0), ("10.0.3.1:80", 20), ("10.0.4.1:80", 20)]);
    ipvsctl_ok("director", &["zero"], "");
    settled(&[("10.0.1.1:80", 0), ("10.0.3.1:80", 0), ("10.0.4.1:80", 0)]);
}

/// Opens `n` connections from the client to `vip` and keeps them open
/// (no request sent: the HTTP server waits) until the handle is joined
/// after `release` is sent.
fn hold_connections(vip: &'static str, n: usize) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let handle = in_netns("client", move || {
        let addr: SocketAddr = vip.parse().unwrap();
        let held: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap())
            .collect();
        ready_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(60));
        drop(held);
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    (release_tx, handle)
}

#[test]
fn wrr_sh_lc_and_wlc_distribute_as_their_rules_say() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    lab();
    let rs = |w1, w2| [("10.0.2.11:80", w1), ("10.0.2.12:80", w2)];
    let config = |lc_rs2: u32| {
        [
            virtual_server("wrr", "10.0.1.1:80", "wrr", "nat", &rs(3, 1)),
            virtual_server("sh", "10.0.1.1:81", "sh", "nat", &rs(1, 1)),
            virtual_server("lc", "10.0.1.1:82", "lc", "nat", &rs(1, lc_rs2)),
            virtual_server("wlc", "10.0.1.1:83", "wlc", "nat", &rs(1, lc_rs2)),
        ]
        .join("\n")
    };
    apply(&config(0));

    // wrr 3:1 over 400 connections: about three quarters to rs1.
    let seen = fetch_from_client("10.0.1.1:80", 400);
    let share = count(&seen, "rs1") as f64 / 400.0;
    assert!((0.65..=0.85).contains(&share), "wrr 3:1 gave {seen:?}");
    assert_eq!(count(&seen, "rs1") + count(&seen, "rs2"), 400);

    // sh: one client, one server.
    let seen = fetch_from_client("10.0.1.1:81", 20);
    assert_eq!(seen.len(), 1, "sh spread one client: {seen:?}");

    // lc and wlc: rs2 is quiesced (weight 0) while three connections
    // settle on rs1; then rs2 comes back and, idle, takes the new ones.
    for vip in ["10.0.1.1:82", "10.0.1.1:83"] {
        let (release, held) = hold_connections(vip, 3);
        let conns = sh("ip netns exec director ipvsadm -Ln");
        assert!(
            conns
                .lines()
                .any(|l| l.contains("-> 10.0.2.11:80") && l.split_whitespace().nth(4) == Some("3")),
            "{vip}: the held connections are not all on rs1:\n{conns}"
        );
        let ops = apply(&config(1));
        assert_eq!(ops.len(), 2, "{ops:?}");
        let seen = fetch_from_client(vip, 10);
        assert!(
            count(&seen, "rs2") >= 9,
            "{vip}: the idle server got {seen:?}"
        );
        release.send(()).unwrap();
        held.join().unwrap();
        apply(&config(0));
    }
}

// ---------------------------------------------------------------------
// The reconciler.

#[test]
fn applying_twice_changes_nothing_and_only_prune_removes_foreign_services() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    local_subnets();
    let config = |w: u32| {
        [
            virtual_server(
                "web",
                "10.0.0.1:80",
                "wlc",
                "nat",
                &[("10.0.0.2", 1), ("10.0.0.3", w), ("10.0.0.4:8080", 1)],
            ),
            "[[virtual_server]]\nname = \"mail\"\nfwmark = 7\nscheduler = \"sh\"\n\
             scheduler_flags = [\"fallback\"]\npersistence = \"5m\"\npersistence_prefix = 24\n\
             forwarding = \"dr\"\n[[virtual_server.real_server]]\naddress = \"10.0.0.5\"\n"
                .to_string(),
            "[[virtual_server]]\nname = \"web6\"\naddress = \"[2001:db8::1]:443\"\n\
             scheduler = \"rr\"\nforwarding = \"tun\"\ntunnel = { type = \"gue\", port = 6080 }\n\
             [[virtual_server.real_server]]\naddress = \"2001:db8::2\"\n"
                .to_string(),
        ]
        .join("\n")
    };
    std::fs::write("/tmp/t.toml", config(1)).unwrap();
    let apply = |args: &[&str]| {
        let mut all = vec!["apply", "/tmp/t.toml"];
        all.extend_from_slice(args);
        ipvsctl("", &all, "")
    };
    let diff = |args: &[&str]| {
        let mut all = vec!["diff", "/tmp/t.toml"];
        all.extend_from_slice(args);
        ipvsctl("", &all, "")
    };

    // A dry run shows the plan and changes nothing.
    let dry = apply(&["--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(
        text(&dry.stdout).lines().count(),
        8,
        "{}",
        text(&dry.stdout)
    );
    assert!(sh("ipvsadm -S -n").is_empty());

    let first = apply(&[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(text(&first.stdout).lines().count(), 8);
    let before = sh("ipvsadm -S -n");

    // The second time: nothing to do, nothing done, the table as it was.
    let second = apply(&[]);
    assert!(second.status.success());
    assert_eq!(text(&second.stdout), "");
    assert_eq!(text(&second.stderr), "ipvsctl: 0 operations applied\n");
    assert_eq!(diff(&[]).status.code(), Some(0));
    assert_eq!(sh("ipvsadm -S -n"), before);

    // A service someone else made stays, unless pruning.
    sh("ipvsadm -A -u 10.0.0.1:5353 -s rr");
    assert_eq!(text(&apply(&[]).stdout), "");
    assert!(sh("ipvsadm -S -n").contains("-A -u 10.0.0.1:5353 -s rr"));
    let pruning = diff(&["--prune"]);
    assert_eq!(pruning.status.code(), Some(2));
    assert_eq!(text(&pruning.stdout), "-D -u 10.0.0.1:5353\n");
    assert!(apply(&["--prune"]).status.success());
    assert_eq!(sh("ipvsadm -S -n"), before);

    // One weight: one operation, an edit of that real server.
    std::fs::write("/tmp/t.toml", config(5)).unwrap();
    let d = diff(&[]);
    assert_eq!(d.status.code(), Some(2));
    assert_eq!(
        text(&d.stdout),
        "-e -t 10.0.0.1:80 -r 10.0.0.3:80 -m -w 5\n"
    );
    let changed = apply(&[]);
    assert_eq!(
        text(&changed.stdout),
        "-e -t 10.0.0.1:80 -r 10.0.0.3:80 -m -w 5\n"
    );
    assert_eq!(diff(&[]).status.code(), Some(0));
    assert!(sh("ipvsadm -S -n").contains("-a -t 10.0.0.1:80 -r 10.0.0.3:80 -m -w 5"));
}

/// A line echo server in `ns` on port 7000, answering "NS: LINE".
fn echo_server(ns: &'static str) {
    let (tx, rx) = mpsc::channel();
    in_netns(ns, move || {
        let listener = TcpListener::bind("0.0.0.0:7000").unwrap();
        tx.send(()).unwrap();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let reader = BufReader::new(conn.try_clone().unwrap());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    if conn
                        .write_all(format!("{ns}: {line}\n").as_bytes())
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_weight_change_is_one_edit_and_an_open_connection_survives_it() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    lab();
    echo_server("rs1");
    echo_server("rs2");
    let config = |w1: u32, w2: u32| {
        virtual_server(
            "echo",
            "10.0.1.1:7000",
            "wrr",
            "nat",
            &[("10.0.2.11", w1), ("10.0.2.12", w2)],
        )
    };
    apply(&config(1, 1));

    let (to_client, commands) = mpsc::channel::<String>();
    let (answers, from_client) = mpsc::channel::<String>();
    let client = in_netns("client", move || {
        let addr: SocketAddr = "10.0.1.1:7000".parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        for line in commands {
            s.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            reader.read_line(&mut reply).unwrap();
            answers.send(reply.trim().to_string()).unwrap();
        }
    });
    to_client.send("before".into()).unwrap();
    let reply = from_client.recv_timeout(Duration::from_secs(15)).unwrap();
    let (server, said) = reply.split_once(": ").unwrap();
    assert_eq!(said, "before");

    // Change the weight of the server holding the connection.
    let ops = if server == "rs1" {
        apply(&config(5, 1))
    } else {
        apply(&config(1, 5))
    };
    let ip = if server == "rs1" {
        "10.0.2.11"
    } else {
        "10.0.2.12"
    };
    assert_eq!(ops, [format!("-e -t 10.0.1.1:7000 -r {ip}:7000 -m -w 5")]);

    to_client.send("after".into()).unwrap();
    let reply = from_client.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(reply, format!("{server}: after"));
    let conns = sh("ip netns exec director ipvsadm -Lnc");
    assert!(
        conns
            .lines()
            .any(|l| l.contains("ESTABLISHED") && l.contains(&format!("{ip}:7000"))),
        "{conns}"
    );
    drop(to_client);
    client.join().unwrap();
}

// ---------------------------------------------------------------------
// Errors, settings, daemons.

#[test]
fn kernel_errors_read_as_human_messages() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    local_subnets();
    ipvsctl_ok(
        "",
        &["restore"],
        "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m\n",
    );
    let fails = |rules: &str| {
        let out = ipvsctl("", &["restore"], rules);
        assert_eq!(out.status.code(), Some(1), "{rules}");
        text(&out.stderr)
    };
    // 10.0.0.255 is the dummy subnet's broadcast address: EINVAL.
    let msg = fails("-a -t 10.0.0.1:80 -r 10.0.0.255:80 -m\n");
    assert!(
        msg.starts_with(
            "ipvsctl: adding real server 10.0.0.255:80 to TCP 10.0.0.1:80: the kernel refused \
             real server 10.0.0.255:80 of TCP 10.0.0.1:80 (EINVAL). The usual causes: 10.0.0.255 \
             is not a unicast address the director can send to"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("the director needs a route to the real server"),
        "{msg}"
    );
    assert_eq!(
        fails("-a -t 10.0.0.1:99 -r 10.0.0.2:80 -m\n"),
        "ipvsctl: adding real server 10.0.0.2:80 to TCP 10.0.0.1:99: there is no service \
         TCP 10.0.0.1:99 (ESRCH)\n"
    );
    assert_eq!(
        fails("-d -t 10.0.0.1:80 -r 10.0.0.9:80\n"),
        "ipvsctl: deleting real server 10.0.0.9:80 of TCP 10.0.0.1:80: TCP 10.0.0.1:80 has no \
         real server 10.0.0.9:80 (ENOENT)\n"
    );
    assert_eq!(
        fails("-A -t 10.0.0.1:80 -s rr\n"),
        "ipvsctl: adding service TCP 10.0.0.1:80: service TCP 10.0.0.1:80 already exists \
         (EEXIST); change it instead of adding it\n"
    );
    let msg = fails("-A -t 10.0.0.1:82 -s nosuch\n");
    assert!(msg.contains("no scheduler \"nosuch\""), "{msg}");
    let missing = ipvsctl("", &["zero", "udp:10.0.0.1:53"], "");
    assert_eq!(
        text(&missing.stderr),
        "ipvsctl: zeroing the counters of UDP 10.0.0.1:53: there is no service UDP \
         10.0.0.1:53 (ESRCH)\n"
    );
    // Several failures in one batch are all reported; the rest applied.
    let msg = fails(
        "-a -t 10.0.0.1:80 -r 10.0.0.3:80 -m\n-a -t 10.0.0.1:99 -r 10.0.0.2:80 -m\n\
         -a -t 10.0.0.1:80 -r 10.0.0.4:80 -m\n-A -t 10.0.0.1:80\n",
    );
    assert!(msg.contains("(2 operations failed)"), "{msg}");
    let saved = sh("ipvsadm -S -n");
    assert!(
        saved.contains("-r 10.0.0.3:80") && saved.contains("-r 10.0.0.4:80"),
        "{saved}"
    );

    // A flood of failures: every one reported, none lost to a full
    // receive buffer.
    let flood: String = (0..3000)
        .map(|i| {
            format!(
                "-a -t 10.0.0.1:99 -r 10.0.{}.{}:80 -m\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let msg = fails(&flood);
    assert!(
        msg.contains("(3000 operations failed)"),
        "{}",
        &msg[msg.len().saturating_sub(300)..]
    );
    assert_eq!(
        msg.matches("there is no service TCP 10.0.0.1:99 (ESRCH)")
            .count(),
        3000
    );

    // Without CAP_NET_ADMIN.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(ipvsctl_path())
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "ipvsctl: listing services: permission denied (EPERM): IPVS needs CAP_NET_ADMIN; run \
         ipvsctl as root (or give it the capability)\n"
    );
}

#[test]
fn timeouts_and_sync_daemons_round_trip_with_ipvsadm() {
    if vm::booted_outside(&["ipvsctl"], |s| s) {
        return;
    }
    sh("ip link add sync0 type dummy && ip link set sync0 up multicast on");
    assert_eq!(
        ipvsctl_ok("", &["timeout", "--tcp", "1000", "--udp", "200"], ""),
        "Timeout (tcp tcpfin udp): 1000 120 200\n"
    );
    assert_eq!(
        sh("ipvsadm -L --timeout"),
        "Timeout (tcp tcpfin udp): 1000 120 200\n"
    );
    sh("ipvsadm --set 0 30 0");
    assert_eq!(
        ipvsctl_ok("", &["timeout"], ""),
        "Timeout (tcp tcpfin udp): 1000 30 200\n"
    );

    ipvsctl_ok(
        "",
        &[
            "sync-daemon",
            "start",
            "master",
            "--interface",
            "sync0",
            "--syncid",
            "5",
        ],
        "",
    );
    ipvsctl_ok(
        "",
        &[
            "sync-daemon",
            "start",
            "backup",
            "--interface",
            "sync0",
            "--syncid",
            "6",
            "--maxlen",
            "1400",
            "--group",
            "224.0.0.99",
            "--port",
            "9000",
            "--ttl",
            "3",
        ],
        "",
    );
    let ours = ipvsctl_ok("", &["sync-daemon", "status"], "");
    let theirs = sh("ipvsadm -L --daemon");
    assert_eq!(sorted_lines(&ours), sorted_lines(&theirs));
    assert!(
        theirs.contains(
            "backup sync daemon (mcast=sync0, syncid=6, maxlen=1400, group=224.0.0.99, port=9000, ttl=3)"
        ),
        "{theirs}"
    );
    let again = ipvsctl(
        "",
        &["sync-daemon", "start", "master", "--interface", "sync0"],
        "",
    );
    assert_eq!(
        text(&again.stderr),
        "ipvsctl: starting the master sync daemon: a master sync daemon is already running (EEXIST)\n"
    );
    ipvsctl_ok("", &["sync-daemon", "stop", "master"], "");
    assert!(!sh("ipvsadm -L --daemon").contains("master"));
    sh("ipvsadm --stop-daemon backup");
    assert_eq!(
        ipvsctl_ok("", &["sync-daemon", "status"], ""),
        "no sync daemon is running\n"
    );
}

#[test]
fn without_the_ip_vs_module_ipvsctl_says_what_to_load() {
    if vm::booted_outside(&["ipvsctl"], |s| s.no_default_modules()) {
        return;
    }
    // As on a kernel without the modules at all: nothing may load ip_vs
    // behind the test's back (the VM is thrown away afterwards).
    sh("echo 1 > /proc/sys/kernel/modules_disabled");
    assert!(!std::path::Path::new("/proc/net/ip_vs").exists());
    let out = ipvsctl("", &["list"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "ipvsctl: this kernel has no IPVS: load the ip_vs module (modprobe ip_vs)\n"
    );
}
