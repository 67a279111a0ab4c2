//! healthd drives kernel IPVS, in the test VM: the table follows health,
//! the sorry server covers a lost quorum, inhibit keeps an open
//! connection alive, a restart adopts the table without touching it, and
//! a server back up climbs to its weight under slow start.
//!
//! Each test runs its body inside a VM (`vm::inside()`), with a netns lab
//! there: a director running healthd (its own IPVS), real servers and a
//! client on one switch, NAT forwarding.

use std::time::Duration;

use tandem_model::api::HealthState::{Down, Up};
use tandem_tests::cluster::{Healthd, TestServer};
use tandem_tests::netns::{self, Host, Lab, wait_until};
use tandem_tests::vm;

const T: Duration = Duration::from_secs(20);

struct Net {
    lab: Lab,
    lb: Host,
    client: Host,
    rs: Vec<Host>,
}

/// Director 10.88.0.1 with the VIP 10.88.0.100, real servers
/// 10.88.0.11.., client 10.88.0.200. NAT: the real servers answer the
/// client through the director.
fn net(servers: usize) -> Net {
    let mut lab = netns::lab("healthd_vm").expect("netns in the VM");
    let lb = lab.host("lb");
    lab.connect(&lb, "eth0");
    lab.addr(&lb, "eth0", "10.88.0.1/24");
    lab.addr(&lb, "eth0", "10.88.0.100/24");
    lab.exec_ok(&lb, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let client = lab.host("client");
    lab.connect(&client, "eth0");
    lab.addr(&client, "eth0", "10.88.0.200/24");
    let mut rs = Vec::new();
    for i in 1..=servers {
        let h = lab.host(&format!("rs{i}"));
        lab.connect(&h, "eth0");
        lab.addr(&h, "eth0", &format!("10.88.0.{}/24", 10 + i));
        lab.exec_ok(
            &h,
            &["ip", "route", "add", "10.88.0.200/32", "via", "10.88.0.1"],
        );
        rs.push(h);
    }
    Net {
        lab,
        lb,
        client,
        rs,
    }
}

/// (address, weight) of every destination of the one service, as
/// ipvsadm -Ln lists them in the director.
fn table(net: &Net) -> Vec<(String, u32)> {
    let out = net.lab.exec_ok(&net.lb, &["ipvsadm", "-Ln"]);
    out.lines()
        .filter(|l| l.trim_start().starts_with("-> ") && !l.contains("RemoteAddress"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_string(), f[3].parse().unwrap())
        })
        .collect()
}

#[track_caller]
fn wait_table(net: &Net, want: &[(&str, u32)]) {
    let want: Vec<(String, u32)> = want.iter().map(|(a, w)| (a.to_string(), *w)).collect();
    if wait_until(T, || table(net) == want).is_none() {
        panic!("the table is {:?}, expected {want:?}", table(net));
    }
}

fn web(extra: &str, servers: &[&str]) -> String {
    let mut s = format!(
        "[[virtual_server]]\nname = \"web\"\naddress = \"10.88.0.100:80\"\nscheduler = \"rr\"\nforwarding = \"nat\"\n{extra}\n\
         [virtual_server.check]\ntype = \"http\"\ninterval = \"300ms\"\ntimeout = \"200ms\"\nrise = 1\nfall = 2\n"
    );
    for rs in servers {
        s.push_str(&format!(
            "\n[[virtual_server.real_server]]\naddress = \"{rs}\"\n"
        ));
    }
    s
}

fn curl(net: &Net) -> String {
    let out = net.lab.exec(
        &net.client,
        &["curl", "-s", "-m", "2", "http://10.88.0.100/"],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_ipvs_table_follows_health_and_the_sorry_server_covers_a_lost_quorum() {
    if vm::booted_outside(&["tandem-healthd", "tandem-testserver"], |s| s) {
        return;
    }
    let net = net(3);
    let _a = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let mut b = TestServer::start(&net.lab, &net.rs[1], &["10.88.0.12:80"], "ok", &[]);
    let _sorry = TestServer::start(&net.lab, &net.rs[2], &["10.88.0.13:80"], "body sorry", &[]);
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &web(
            "quorum = 2\nsorry_server = \"10.88.0.13:80\"\ninitial_state = \"down\"",
            &["10.88.0.11:80", "10.88.0.12:80"],
        ),
    );
    wait_table(&net, &[("10.88.0.11:80", 1), ("10.88.0.12:80", 1)]);
    let served: Vec<String> = (0..4).map(|_| curl(&net)).collect();
    assert!(
        served.contains(&"ok rs1".to_string()) && served.contains(&"ok rs2".to_string()),
        "{served:?}"
    );

    // rs2 dies: it leaves the table, and below quorum the sorry server joins.
    b.kill();
    hd.wait_health("web", "10.88.0.12:80", Down, T);
    wait_table(&net, &[("10.88.0.11:80", 1), ("10.88.0.13:80", 1)]);
    let st = hd.status();
    assert!(st.virtual_servers[0].sorry_active && !st.virtual_servers[0].quorum_met);
    assert!(st.dataplane.ok, "{:?}", st.dataplane);

    // It comes back: in again, the sorry server out.
    let _b = TestServer::start(&net.lab, &net.rs[1], &["10.88.0.12:80"], "ok", &[]);
    hd.wait_health("web", "10.88.0.12:80", Up, T);
    wait_table(&net, &[("10.88.0.11:80", 1), ("10.88.0.12:80", 1)]);
    assert!(curl(&net).starts_with("ok rs"));
}

/// An echo server on port 9000 (the virtual service's port); the HTTP
/// check goes to port 80.
fn echo_server(lab: &Lab, host: &Host) -> netns::Proc {
    let script = r#"
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 9000))
s.listen(16)
print('listening', flush=True)
def serve(c):
    f = c.makefile('rwb')
    for line in f:
        f.write(line)
        f.flush()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
    let mut p = lab.spawn(host, "echo", &["python3", "-c", script]);
    p.wait_for_output("listening", Duration::from_secs(10));
    p
}

#[test]
fn inhibit_on_failure_keeps_an_open_connection_alive() {
    if vm::booted_outside(&["tandem-healthd", "tandem-testserver"], |s| s) {
        return;
    }
    let net = net(1);
    let _echo = echo_server(&net.lab, &net.rs[0]);
    let http = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let toml = web(
        "inhibit_on_failure = true\nquorum = 0",
        &["10.88.0.11:9000"],
    )
    .replace("10.88.0.100:80", "10.88.0.100:9000")
    .replace("rise = 1", "rise = 1\nport = 80");
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    wait_table(&net, &[("10.88.0.11:9000", 1)]);

    // A connection through the VIP, from the client's namespace.
    let conn = net.lab.spawn(
        &net.client,
        "conn",
        &[
            "python3",
            "-c",
            r#"
import socket, time
c = socket.create_connection(('10.88.0.100', 9000))
f = c.makefile('rwb')
f.write(b'one\n'); f.flush(); print('got', f.readline().decode().strip(), flush=True)
time.sleep(3)
f.write(b'two\n'); f.flush(); print('got', f.readline().decode().strip(), flush=True)
"#,
        ],
    );
    let mut conn = conn;
    conn.wait_for_output("got one", T);
    // The server fails its check: weight 0, the connection goes on.
    http.set("status 500");
    hd.wait_health("web", "10.88.0.11:9000", Down, T);
    wait_table(&net, &[("10.88.0.11:9000", 0)]);
    conn.wait_for_output("got two", T);
}

#[test]
fn a_restarted_healthd_adopts_the_table_without_an_operation() {
    if vm::booted_outside(&["tandem-healthd", "tandem-testserver"], |s| s) {
        return;
    }
    let net = net(2);
    let _a = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let _b = TestServer::start(&net.lab, &net.rs[1], &["10.88.0.12:80"], "ok", &[]);
    let body = web(
        "initial_state = \"down\"",
        &["10.88.0.11:80", "10.88.0.12:80"],
    );
    let mut hd = Healthd::start(&net.lab, &net.lb, &body);
    wait_table(&net, &[("10.88.0.11:80", 1), ("10.88.0.12:80", 1)]);
    hd.stop();
    // Stopped: the table stays as it was, traffic flows.
    assert_eq!(table(&net).len(), 2);
    assert!(curl(&net).starts_with("ok rs"));
    hd.restart(&net.lab);
    // initial_state = "down" would pull both servers until checked; the
    // restart adopts them instead: not one netlink operation.
    std::thread::sleep(Duration::from_secs(2));
    let st = hd.status();
    assert!(st.dataplane.ok, "{:?}", st.dataplane);
    assert_eq!(
        st.dataplane.operations,
        0,
        "the restart changed the table:\n{}",
        hd.log()
    );
    assert_eq!(
        table(&net),
        vec![
            ("10.88.0.11:80".to_string(), 1),
            ("10.88.0.12:80".to_string(), 1)
        ]
    );
}

#[test]
fn a_server_back_up_under_slow_start_climbs_to_its_weight_in_steps() {
    if vm::booted_outside(&["tandem-healthd", "tandem-testserver"], |s| s) {
        return;
    }
    let net = net(2);
    let _a = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let mut b = TestServer::start(&net.lab, &net.rs[1], &["10.88.0.12:80"], "ok", &[]);
    let conf = "[[virtual_server]]\nname = \"web\"\naddress = \"10.88.0.100:80\"\nscheduler = \"wlc\"\nforwarding = \"nat\"\nslow_start = \"4s\"\n\n\
         [virtual_server.check]\ntype = \"http\"\ninterval = \"300ms\"\ntimeout = \"200ms\"\nrise = 1\nfall = 2\n\n\
         [[virtual_server.real_server]]\naddress = \"10.88.0.11:80\"\nweight = 8\n\n\
         [[virtual_server.real_server]]\naddress = \"10.88.0.12:80\"\nweight = 8\n";
    let hd = Healthd::start(&net.lab, &net.lb, conf);
    // Counted up before their first check (initial_state "up"): in at
    // their weight at once, not ramped.
    wait_table(&net, &[("10.88.0.11:80", 8), ("10.88.0.12:80", 8)]);
    b.kill();
    hd.wait_health("web", "10.88.0.12:80", Down, T);
    wait_table(&net, &[("10.88.0.11:80", 8)]);
    let _b = TestServer::start(&net.lab, &net.rs[1], &["10.88.0.12:80"], "ok", &[]);
    // The kernel's weight of rs2, read every 100 ms until it is whole.
    let mut seen: Vec<u32> = Vec::new();
    let full = wait_until(T, || {
        let w = table(&net)
            .into_iter()
            .find(|(a, _)| a == "10.88.0.12:80")
            .map(|(_, w)| w);
        if let Some(w) = w {
            if seen.last() != Some(&w) {
                seen.push(w);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        w == Some(8)
    });
    assert!(full.is_some(), "rs2 never reached weight 8: {seen:?}");
    eprintln!("rs2's weights on its way back: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the weight went down on the way up: {seen:?}"
    );
    // 4 s at one step a second: at least three steps below 8.
    assert!(
        seen.len() >= 4 && seen[0] <= 2,
        "rs2 came back at {seen:?}, not in steps from 1"
    );
    let st = hd.real_server("web", "10.88.0.12:80");
    assert_eq!(st.slow_start_until, None, "the ramp is over: {st:?}");
}
