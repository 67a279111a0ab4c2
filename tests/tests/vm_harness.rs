//! The VM harness proves itself: IPVS loads and ipvsadm programs it, a
//! Rust test body runs inside the VM and hands files back, namespaces in
//! the VM carry HTTP through a NAT virtual service, and failures (a
//! non-zero rc, a hang) come back with their console log instead of
//! hanging the run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_tests::vm;

#[test]
fn ipvs_module_loads_and_ipvsadm_programs_a_service_in_the_vm() {
    let Some(vm) = vm::require("ipvs_in_vm") else {
        return;
    };
    let out = vm
        .scenario("ipvsadm")
        .script(
            "set -e\n\
             ipvsadm -A -t 10.0.0.1:80 -s rr\n\
             ipvsadm -a -t 10.0.0.1:80 -r 10.0.0.2:80 -m\n\
             ipvsadm -Ln | tee table\n",
        )
        .timeout(Duration::from_secs(90))
        .run();
    out.assert_success();
    let table = out.read("table");
    assert!(table.contains("TCP  10.0.0.1:80 rr"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("-> 10.0.0.2:80") && l.contains("Masq")),
        "{table}"
    );
    // The same lines went to the console.
    assert!(out.log.contains("-> 10.0.0.2:80"), "{out}");
    eprintln!(
        "ipvsadm scenario: {:.1} s wall, guest uptime {:?} s",
        out.elapsed.as_secs_f64(),
        out.guest_uptime
    );
}

#[test]
fn a_rust_test_function_runs_inside_the_vm() {
    if vm::inside() {
        assert!(
            Path::new("/proc/net/ip_vs").exists(),
            "no IPVS in the VM's kernel"
        );
        let ns = "tandem-vm-selftest";
        let st = std::process::Command::new("ip")
            .args(["netns", "add", ns])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add failed");
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        std::fs::write(
            vm::dir().join("inside.txt"),
            format!("kernel {}netns {ns}\n", release),
        )
        .unwrap();
        return;
    }
    let Some(vm) = vm::require("rust_fn_in_vm") else {
        return;
    };
    let out = vm.run_current_test();
    out.assert_success();
    let said = out.read("inside.txt");
    assert!(
        said.contains(&format!("kernel {}", vm.kernel_release())),
        "{said}"
    );
    assert!(said.contains("netns tandem-vm-selftest"), "{said}");
}

/// client -- director (VIP 10.0.1.1) -- bridge -- rs1, rs2 (NAT, rr).
const NAT_LAB: &str = r#"set -e
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
ip -n sw link set p0 master br0 up
i=1
for rs in rs1 rs2; do
  ip -n $rs link add eth0 type veth peer name p$i netns sw
  ip -n sw link set p$i master br0 up
  ip -n $rs addr add 10.0.2.1$i/24 dev eth0
  ip -n $rs link set eth0 up
  ip -n $rs route add default via 10.0.2.1
  mkdir -p /tmp/www-$rs
  echo "served by $rs" >/tmp/www-$rs/index.html
  ip netns exec $rs busybox httpd -p 80 -h /tmp/www-$rs
  i=$((i + 1))
done
ip netns exec director sysctl -q -w net.ipv4.ip_forward=1
ip netns exec director ipvsadm -A -t 10.0.1.1:80 -s rr
ip netns exec director ipvsadm -a -t 10.0.1.1:80 -r 10.0.2.11:80 -m
ip netns exec director ipvsadm -a -t 10.0.1.1:80 -r 10.0.2.12:80 -m
for i in 1 2 3 4; do
  ip netns exec client timeout 10 busybox wget -q -O - http://10.0.1.1/ >>responses
done
cat responses
ip netns exec director ipvsadm -Lnc
"#;

#[test]
fn namespaces_inside_the_vm_carry_http_through_a_nat_virtual_service() {
    let Some(vm) = vm::require("nat_in_vm") else {
        return;
    };
    let out = vm
        .scenario("nat_http")
        .script(NAT_LAB)
        .timeout(Duration::from_secs(120))
        .run();
    out.assert_success();
    let responses: Vec<String> = out.read("responses").lines().map(str::to_string).collect();
    assert_eq!(responses.len(), 4, "{out}");
    for pair in responses.windows(2) {
        assert_ne!(pair[0], pair[1], "rr did not alternate: {responses:?}");
    }
    for rs in ["rs1", "rs2"] {
        assert!(
            responses.contains(&format!("served by {rs}")),
            "{rs} never answered: {responses:?}"
        );
    }
    eprintln!("NAT scenario: {:.1} s wall", out.elapsed.as_secs_f64());
}

#[test]
fn a_failing_scenario_reports_its_rc_and_log() {
    let Some(vm) = vm::require("failing_in_vm") else {
        return;
    };
    let out = vm
        .scenario("fails")
        .no_default_modules()
        .env("GREETING", "it's failing")
        .script("echo \"$GREETING on purpose\"; echo partial >partial; exit 3")
        .timeout(Duration::from_secs(60))
        .run();
    assert_eq!(out.rc, 3, "{out}");
    assert!(!out.timed_out);
    assert!(out.error.is_none(), "{out}");
    assert!(!out.success());
    assert!(out.log.contains("it's failing on purpose"), "{out}");
    assert_eq!(out.read("partial"), "partial\n");
    // What assert_success would panic with.
    let shown = out.to_string();
    assert!(
        shown.contains("rc=3") && shown.contains("it's failing on purpose"),
        "{shown}"
    );
}

#[test]
fn a_hung_scenario_is_killed_at_its_timeout() {
    let Some(vm) = vm::require("hung_in_vm") else {
        return;
    };
    let t0 = Instant::now();
    let out = vm
        .scenario("hangs")
        .no_default_modules()
        .script("echo going to sleep; sleep 600")
        .timeout(Duration::from_secs(20))
        .run();
    assert!(out.timed_out, "{out}");
    assert_eq!(out.rc, -1);
    assert!(!out.success());
    assert!(
        out.error.as_deref().unwrap_or("").contains("timed out"),
        "{out}"
    );
    assert!(out.log.contains("going to sleep"), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(40), "{:?}", t0.elapsed());
}

/// Each side pings the other until it answers, then 3 more (all must
/// answer), then lingers so the peer can finish its own.
fn pinger(me: &str, peer: &str) -> String {
    format!(
        "set -e\n\
         ip addr add {me}/24 dev eth0\n\
         ip link set eth0 up\n\
         for i in $(seq 60); do ping -c 1 -W 1 {peer} >/dev/null && break; done\n\
         ping -c 3 -i 0.3 -W 2 {peer} | tee ping.txt\n\
         sleep 3\n"
    )
}

#[test]
fn two_vms_joined_by_a_link_reach_each_other() {
    let Some(vm) = vm::require("vm_pair") else {
        return;
    };
    let link = vm::Link::new();
    let t = Duration::from_secs(90);
    let outs = vm::run_together(vec![
        vm.scenario("left")
            .no_default_modules()
            .nic(link.listen())
            .script(pinger("192.168.77.1", "192.168.77.2"))
            .timeout(t),
        vm.scenario("right")
            .no_default_modules()
            .nic(link.connect())
            .script(pinger("192.168.77.2", "192.168.77.1"))
            .timeout(t),
    ]);
    for out in &outs {
        out.assert_success();
        assert!(
            out.read("ping.txt").contains("3 received"),
            "{}",
            out.read("ping.txt")
        );
    }
    eprintln!(
        "VM pair: {:.1} s and {:.1} s wall",
        outs[0].elapsed.as_secs_f64(),
        outs[1].elapsed.as_secs_f64()
    );
}

#[test]
fn a_host_port_forward_reaches_a_server_in_the_vm_while_it_runs() {
    let Some(vm) = vm::require("vm_hostfwd") else {
        return;
    };
    let port = vm::free_port();
    let mut running = vm
        .scenario("hostfwd")
        .no_default_modules()
        .nic(vm::Nic::forward(port, 8080))
        .script(
            "set -e\n\
             ip addr add 10.0.2.15/24 dev eth0\n\
             ip link set eth0 up\n\
             mkdir /tmp/www && echo hello from the vm >/tmp/www/index.html\n\
             busybox httpd -p 8080 -h /tmp/www\n\
             echo SERVING\n\
             # The host creates `stop` in the shared run directory when done.\n\
             while [ ! -e stop ]; do sleep 0.2; done\n",
        )
        .timeout(Duration::from_secs(90))
        .spawn();
    assert!(
        running.wait_for_console("SERVING", Duration::from_secs(60)),
        "{}",
        running.console()
    );
    let mut body = String::new();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: vm\r\n\r\n")
        .unwrap();
    stream.read_to_string(&mut body).unwrap();
    assert!(body.contains("hello from the vm"), "{body}");
    std::fs::write(running.dir().join("stop"), "").unwrap();
    let out = running.wait();
    out.assert_success();
}

/// The packages the booted-system tests add to debootstrap's minbase.
const SYSTEM_PACKAGES: &[&str] = &["iproute2", "procps"];

#[test]
fn a_debian_tree_boots_with_systemd_as_init_and_its_agent_runs_commands_in_vm() {
    let Some(vm) = vm::require("system_in_vm") else {
        return;
    };
    let Some(system) = vm.debian("bookworm", SYSTEM_PACKAGES) else {
        return;
    };
    let t0 = Instant::now();
    let mut running = vm
        .scenario("system")
        .system(&system)
        .agent()
        .timeout(Duration::from_secs(180))
        .spawn();
    let booted = running.sh_ok("systemctl is-system-running --wait || true");
    let boot_time = t0.elapsed();
    // Everything started (no unit failed): "running", not "degraded".
    assert_eq!(booted.trim(), "running", "{booted}");
    assert_eq!(
        running.sh_ok("readlink /proc/1/exe").trim(),
        "/usr/lib/systemd/systemd"
    );
    // The kernel's modules are in place and load on demand: a veth pair
    // needs the veth module, which nothing loaded before.
    assert!(!running.sh_ok("cat /proc/modules").contains("veth "));
    running.sh_ok("ip link add t0 type veth peer name t1");
    assert!(running.sh_ok("cat /proc/modules").contains("veth "));
    running.sh_ok("modprobe ip_vs && test -e /proc/net/ip_vs");
    // The run directory is shared both ways, and a failure comes back.
    std::fs::write(running.dir().join("from-host"), "hello").unwrap();
    let e =
        running.sh("cat $TANDEM_VM_DIR/from-host; echo back >$TANDEM_VM_DIR/from-guest; exit 7");
    assert_eq!((e.rc, e.output.as_str()), (7, "hello"));
    assert_eq!(
        std::fs::read_to_string(running.dir().join("from-guest")).unwrap(),
        "back\n"
    );
    // Writes went to the overlay, not to the cached tree.
    running.sh_ok("touch /etc/written-in-the-vm");
    assert!(!system.root().join("etc/written-in-the-vm").exists());
    let out = running.finish();
    out.assert_success();
    eprintln!(
        "booted system: multi-user after {:.1} s, {:.1} s in all",
        boot_time.as_secs_f64(),
        out.elapsed.as_secs_f64()
    );
}
