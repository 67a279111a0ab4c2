//! healthd's checks against real servers that misbehave, on a netns lab:
//! a director (healthd) and real servers on one switch. The host kernel
//! has no IPVS, so these tests watch health, reasons and events; the
//! table itself is proven in the VM tests.
//!
//! With interval 200 ms, timeout 100 ms, rise 2, fall 2, a change must be
//! seen within fall x interval + timeout (0.5 s) of the server changing;
//! the waits allow for a loaded machine.

use std::time::Duration;

use tandem_model::api::HealthState::{Down, Up};
use tandem_tests::cluster::{Healthd, TestServer};
use tandem_tests::netns::{self, Host, Lab};

const T: Duration = Duration::from_secs(10);
/// fall x interval + timeout, with room for scheduling.
const DETECT: Duration = Duration::from_millis(2500);

struct Net {
    lab: Lab,
    lb: Host,
    rs: Vec<Host>,
}

fn net(test: &str, servers: usize) -> Option<Net> {
    let mut lab = netns::lab(test)?;
    let lb = lab.host("lb");
    lab.connect(&lb, "eth0");
    lab.addr(&lb, "eth0", "10.88.0.1/24");
    lab.addr(&lb, "eth0", "fd00:88::1/64");
    let mut rs = Vec::new();
    for i in 1..=servers {
        let h = lab.host(&format!("rs{i}"));
        lab.connect(&h, "eth0");
        lab.addr(&h, "eth0", &format!("10.88.0.{}/24", 10 + i));
        lab.addr(&h, "eth0", &format!("fd00:88::{}/64", 10 + i));
        rs.push(h);
    }
    Some(Net { lab, lb, rs })
}

fn vs(name: &str, port: u16, check: &str, servers: &[&str]) -> String {
    let mut s = format!(
        "[[virtual_server]]\nname = \"{name}\"\naddress = \"192.0.2.10:{port}\"\nforwarding = \"nat\"\n\n[virtual_server.check]\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 2\nfall = 2\n{check}\n"
    );
    for rs in servers {
        s.push_str(&format!(
            "\n[[virtual_server.real_server]]\naddress = \"{rs}\"\n"
        ));
    }
    s
}

#[test]
fn a_refusing_server_is_down_with_connection_refused_and_up_after_rise() {
    let Some(net) = net("hc_refuse", 1) else {
        return;
    };
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs("web", 80, "type = \"http\"", &["10.88.0.11:80"]),
    );
    let (took, reason) = hd.wait_health("web", "10.88.0.11:80", Down, DETECT);
    assert_eq!(reason, "connection refused", "after {took:?}");
    let _server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let (_, reason) = hd.wait_health("web", "10.88.0.11:80", Up, DETECT);
    assert_eq!(reason, "HTTP 200");
    let st = hd.status();
    assert!(
        !st.dataplane.ok,
        "this kernel has no IPVS, and healthd says so: {:?}",
        st.dataplane
    );
}

#[test]
fn a_server_that_hangs_after_accept_times_out() {
    let Some(net) = net("hc_hang", 1) else { return };
    let server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs("web", 80, "type = \"http\"", &["10.88.0.11:80"]),
    );
    hd.wait_health("web", "10.88.0.11:80", Up, T);
    server.set("hang");
    let (_, reason) = hd.wait_health("web", "10.88.0.11:80", Down, DETECT);
    assert_eq!(reason, "timeout after 100ms");
}

#[test]
fn a_500_is_down_with_its_status_and_a_200_brings_it_back() {
    let Some(net) = net("hc_500", 1) else { return };
    let server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs(
            "web",
            80,
            "type = \"http\"\npath = \"/healthz\"\nexpect_status = [200, \"300-399\"]",
            &["10.88.0.11:80"],
        ),
    );
    hd.wait_health("web", "10.88.0.11:80", Up, T);
    server.set("status 503");
    let (_, reason) = hd.wait_health("web", "10.88.0.11:80", Down, DETECT);
    assert_eq!(reason, "HTTP 503");
    server.set("status 302");
    hd.wait_health("web", "10.88.0.11:80", Up, DETECT);
    // The events say what happened and why.
    let events: Vec<tandem_model::api::Event> =
        tandem_tests_block_on(hd.client().get("/events/recent"));
    let health: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            tandem_model::api::EventKind::RealServerHealth { up, reason, .. } => {
                Some(format!("{up} {reason}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        health,
        vec!["true HTTP 200", "false HTTP 503", "true HTTP 302"]
    );
}

fn tandem_tests_block_on<T: serde::de::DeserializeOwned>(
    f: impl std::future::Future<Output = Result<T, tandem_model::control::ClientError>>,
) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
        .unwrap()
}

#[test]
fn a_slow_server_is_down_by_timeout() {
    let Some(net) = net("hc_slow", 1) else { return };
    let server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "slow 300", &[]);
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs("web", 80, "type = \"http\"", &["10.88.0.11:80"]),
    );
    let (_, reason) = hd.wait_health("web", "10.88.0.11:80", Down, DETECT);
    assert_eq!(reason, "timeout after 100ms");
    server.set("slow 20");
    hd.wait_health("web", "10.88.0.11:80", Up, DETECT);
}

#[test]
fn a_flapping_server_follows_its_flaps() {
    let Some(net) = net("hc_flap", 1) else { return };
    let _server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "flap 1500", &[]);
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs("web", 80, "type = \"http\"", &["10.88.0.11:80"]),
    );
    for _ in 0..2 {
        hd.wait_health("web", "10.88.0.11:80", Up, T);
        hd.wait_health("web", "10.88.0.11:80", Down, T);
    }
}

#[test]
fn icmp_dropped_by_the_server_s_firewall_is_down_and_back_when_allowed() {
    let Some(net) = net("hc_icmp", 2) else { return };
    let check = "type = \"icmp\"";
    let mut toml = vs("ping4", 80, check, &["10.88.0.11:80"]);
    toml.push_str(&vs("ping6", 81, check, &[]).replace("192.0.2.10:81", "[2001:db8::10]:81"));
    toml.push_str("\n[[virtual_server.real_server]]\naddress = \"[fd00:88::12]:81\"\n");
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    hd.wait_health("ping4", "10.88.0.11:80", Up, T);
    hd.wait_health("ping6", "[fd00:88::12]:81", Up, T);
    net.lab.drop_protocol(&net.rs[0], 1);
    let (_, reason) = hd.wait_health("ping4", "10.88.0.11:80", Down, DETECT);
    assert_eq!(reason, "no echo reply within 100ms");
    net.lab.undrop(&net.rs[0]);
    hd.wait_health("ping4", "10.88.0.11:80", Up, DETECT);
    assert_eq!(
        hd.real_server("ping6", "[fd00:88::12]:81").health,
        Up,
        "IPv6 unaffected"
    );
}

#[test]
fn https_with_a_self_signed_certificate_passes_only_without_verification() {
    let Some(net) = net("hc_https", 1) else {
        return;
    };
    let _server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:443"], "ok", &["--tls"]);
    let mut toml = vs(
        "loose",
        443,
        "type = \"https\"\ntls_verify = false\nsni = \"test.invalid\"",
        &["10.88.0.11:443"],
    );
    toml.push_str(&vs(
        "strict",
        444,
        "type = \"https\"\nport = 443\nsni = \"test.invalid\"",
        &["10.88.0.11:444"],
    ));
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    let (_, reason) = hd.wait_health("loose", "10.88.0.11:443", Up, T);
    assert_eq!(reason, "HTTP 200");
    let (_, reason) = hd.wait_health("strict", "10.88.0.11:444", Down, T);
    assert!(
        reason.starts_with("TLS: ") && reason.contains("UnknownIssuer"),
        "{reason}"
    );
}

#[test]
fn tcp_send_and_expect_checks_the_answer() {
    let Some(net) = net("hc_tcp", 1) else { return };
    let server = TestServer::start(
        &net.lab,
        &net.rs[0],
        &["10.88.0.11:6379"],
        "+PONG",
        &["--line"],
    );
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs(
            "redis",
            6379,
            "type = \"tcp\"\nsend = \"PING\\r\\n\"\nexpect = \"+PONG\"",
            &["10.88.0.11:6379"],
        ),
    );
    hd.wait_health("redis", "10.88.0.11:6379", Up, T);
    server.set("-ERR loading");
    let (_, reason) = hd.wait_health("redis", "10.88.0.11:6379", Down, DETECT);
    assert_eq!(
        reason,
        "answer \"-ERR loading\\r\\n\" does not start with the expected bytes"
    );
}

#[test]
fn body_rules_check_what_the_page_says() {
    let Some(net) = net("hc_body", 1) else { return };
    let server = TestServer::start(
        &net.lab,
        &net.rs[0],
        &["10.88.0.11:80"],
        "body all good",
        &[],
    );
    let mut toml = vs(
        "contains",
        80,
        "type = \"http\"\nbody_contains = \"good\"",
        &["10.88.0.11:80"],
    );
    toml.push_str(&vs(
        "regex",
        81,
        "type = \"http\"\nport = 80\nbody_regex = \"^all (good|fine)$\"",
        &["10.88.0.11:81"],
    ));
    // keepalived's HTTP_GET digest: the MD5 of "all good".
    toml.push_str(&vs(
        "digest",
        82,
        "type = \"http\"\nport = 80\nbody_md5 = \"%MD5%\"",
        &["10.88.0.11:82"],
    ));
    let toml = toml.replace("%MD5%", "7bc22c8cd42ff8a897538a6fd9851958");
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    hd.wait_health("contains", "10.88.0.11:80", Up, T);
    hd.wait_health("regex", "10.88.0.11:81", Up, T);
    hd.wait_health("digest", "10.88.0.11:82", Up, T);
    server.set("body all bad");
    let (_, reason) = hd.wait_health("contains", "10.88.0.11:80", Down, DETECT);
    assert_eq!(reason, "HTTP 200, body mismatch");
    hd.wait_health("regex", "10.88.0.11:81", Down, DETECT);
    let (_, reason) = hd.wait_health("digest", "10.88.0.11:82", Down, DETECT);
    assert!(
        reason.starts_with("body digest ")
            && reason.ends_with(", expected 7bc22c8cd42ff8a897538a6fd9851958"),
        "{reason}"
    );
}

#[test]
fn a_script_check_gets_the_real_server_and_its_exit_status_decides() {
    let Some(net) = net("hc_script", 1) else {
        return;
    };
    let flag = net.lab.dir().join("ok");
    let script = net.lab.dir().join("check.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$TANDEM_REAL_SERVER\" = 10.88.0.11:80 ] && [ -e {} ]\n",
            flag.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&flag, "").unwrap();
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs(
            "web",
            80,
            &format!("type = \"script\"\ncommand = [\"{}\"]", script.display()),
            &["10.88.0.11:80"],
        ),
    );
    hd.wait_health("web", "10.88.0.11:80", Up, T);
    std::fs::remove_file(&flag).unwrap();
    let (_, reason) = hd.wait_health("web", "10.88.0.11:80", Down, DETECT);
    assert_eq!(reason, "script: exit status 1");
}

#[test]
fn two_virtual_servers_with_the_same_check_share_one_probe() {
    let Some(net) = net("hc_shared", 1) else {
        return;
    };
    let server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:8080"], "ok", &[]);
    let check = "type = \"http\"\nport = 8080";
    let mut toml = vs("a", 80, check, &["10.88.0.11:80"]);
    toml.push_str(&vs("b", 81, check, &["10.88.0.11:81"]));
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    hd.wait_health("a", "10.88.0.11:80", Up, T);
    hd.wait_health("b", "10.88.0.11:81", Up, T);
    let before = server.connections();
    std::thread::sleep(Duration::from_secs(2));
    let per_second = (server.connections() - before) as f64 / 2.0;
    // One probe every 200 ms: 5 a second, not 10.
    assert!(
        (4.0..=6.5).contains(&per_second),
        "{per_second} connections a second"
    );
    let a = hd.real_server("a", "10.88.0.11:80");
    assert!(a.checks > 0 && a.last_check.is_some());
}

#[test]
fn a_drain_sticks_across_a_restart_and_an_unknown_server_is_refused() {
    let Some(net) = net("hc_drain", 1) else {
        return;
    };
    let _server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let mut hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs("web", 80, "type = \"http\"", &["10.88.0.11:80"]),
    );
    let _: serde_json::Value = hd
        .post(
            "/virtual-servers/web/real-servers/10.88.0.11:80/drain",
            &serde_json::json!({}),
        )
        .unwrap();
    assert!(hd.real_server("web", "10.88.0.11:80").drained);
    let st = hd.status();
    assert!(
        !st.virtual_servers[0].quorum_met,
        "a drained server does not count for quorum"
    );
    hd.stop();
    hd.restart(&net.lab);
    assert!(
        hd.real_server("web", "10.88.0.11:80").drained,
        "the drain is kept"
    );
    let err = hd
        .post::<serde_json::Value>(
            "/virtual-servers/web/real-servers/10.9.9.9/drain",
            &serde_json::json!({}),
        )
        .unwrap_err();
    assert!(err.to_string().contains("no real server 10.9.9.9"), "{err}");
    let _: serde_json::Value = hd
        .post(
            "/virtual-servers/web/real-servers/10.88.0.11/enable",
            &serde_json::json!({}),
        )
        .unwrap();
    assert!(!hd.real_server("web", "10.88.0.11:80").drained);
}

#[test]
fn a_drain_that_cannot_be_saved_is_refused_and_changes_nothing() {
    let Some(net) = net("hc_drainsave", 1) else {
        return;
    };
    let _server = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs("web", 80, "type = \"http\"", &["10.88.0.11:80"]),
    );
    // The state directory becomes a plain file: nothing can be saved there
    // (root ignores permissions, not file types).
    let state = hd.dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    std::fs::write(&state, "not a directory").unwrap();
    let err = hd
        .post::<serde_json::Value>(
            "/virtual-servers/web/real-servers/10.88.0.11:80/drain",
            &serde_json::json!({}),
        )
        .unwrap_err();
    match &err {
        tandem_model::control::ClientError::Http {
            status, message, ..
        } => {
            assert_eq!(*status, 500, "{err}");
            assert!(message.contains("cannot keep the drains"), "{message}");
            assert!(message.contains("nothing changed"), "{message}");
        }
        other => panic!("not a refusal: {other}"),
    }
    assert!(
        !hd.real_server("web", "10.88.0.11:80").drained,
        "a drain that would not survive a restart is not applied"
    );
    // Once the directory can be written again, the same drain works.
    std::fs::remove_file(&state).unwrap();
    let _: serde_json::Value = hd
        .post(
            "/virtual-servers/web/real-servers/10.88.0.11:80/drain",
            &serde_json::json!({}),
        )
        .unwrap();
    assert!(hd.real_server("web", "10.88.0.11:80").drained);
    assert!(state.join("healthd-drains.json").exists());
}

#[test]
fn a_reload_keeps_the_state_of_unchanged_servers() {
    let Some(net) = net("hc_reload", 2) else {
        return;
    };
    let _a = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:80"], "ok", &[]);
    let _b = TestServer::start(&net.lab, &net.rs[1], &["10.88.0.12:80"], "ok", &[]);
    let hd = Healthd::start(
        &net.lab,
        &net.lb,
        &vs("web", 80, "type = \"http\"", &["10.88.0.11:80"]),
    );
    hd.wait_health("web", "10.88.0.11:80", Up, T);
    let since = hd.real_server("web", "10.88.0.11:80").since;
    let body = vs(
        "web",
        80,
        "type = \"http\"",
        &["10.88.0.11:80", "10.88.0.12:80"],
    );
    std::fs::write(&hd.config, format!("[node]\nname = \"lb\"\n\n{body}")).unwrap();
    let r: tandem_model::api::ReloadResult = hd.post("/reload", &serde_json::json!({})).unwrap();
    assert_eq!(r.changes, vec!["virtual server web: changed".to_string()]);
    let kept = hd.real_server("web", "10.88.0.11:80");
    assert_eq!(
        (kept.health, kept.since),
        (Up, since),
        "the unchanged server kept its state"
    );
    hd.wait_health("web", "10.88.0.12:80", Up, T);
    std::fs::write(
        &hd.config,
        "[[virtual_server]]\nname = \"web\"\nscheduler = \"nope\"\n",
    )
    .unwrap();
    assert!(
        hd.post::<serde_json::Value>("/reload", &serde_json::json!({}))
            .is_err()
    );
    assert_eq!(
        hd.real_server("web", "10.88.0.11:80").health,
        Up,
        "a refused reload keeps everything"
    );
}

/// Real server `i` answers every ICMP error at once: the kernel's rate
/// limit (net.ipv4.icmp_ratelimit, one a second per peer after a burst)
/// would otherwise keep most port unreachables from checks every 200 ms.
fn icmp_unlimited(net: &Net, i: usize) {
    net.lab
        .exec_ok(&net.rs[i], &["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"]);
}

#[test]
fn dns_checks_see_the_answer_the_response_code_and_silence() {
    let Some(net) = net("hc_dns", 1) else { return };
    icmp_unlimited(&net, 0);
    let dnsmasq = net.lab.spawn(
        &net.rs[0],
        "dnsmasq",
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            "--bind-interfaces",
            "--listen-address=10.88.0.11",
            "--port=53",
            "--address=/www.example.test/192.0.2.80",
        ],
    );
    let check = |name: &str, answer: &str| {
        format!(
            "type = \"dns\"\nport = 53\nquery_name = \"{name}\"\nquery_type = \"A\"\nexpect_answer = \"{answer}\""
        )
    };
    let mut toml = vs(
        "dns-ok",
        53,
        &check("www.example.test", "192.0.2.80"),
        &["10.88.0.11:53"],
    );
    toml.push_str(&vs(
        "dns-wrong",
        54,
        &check("www.example.test", "192.0.2.81"),
        &["10.88.0.11:54"],
    ));
    toml.push_str(&vs(
        "dns-unknown",
        55,
        "type = \"dns\"\nport = 53\nquery_name = \"nobody.test\"",
        &["10.88.0.11:55"],
    ));
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    let (_, reason) = hd.wait_health("dns-ok", "10.88.0.11:53", Up, T);
    assert_eq!(
        reason,
        "DNS NOERROR with 192.0.2.80",
        "{}",
        dnsmasq.output()
    );
    let (_, reason) = hd.wait_health("dns-wrong", "10.88.0.11:54", Down, T);
    assert_eq!(reason, "DNS answer 192.0.2.80, expected 192.0.2.81");
    let (_, reason) = hd.wait_health("dns-unknown", "10.88.0.11:55", Down, T);
    assert!(
        reason.starts_with("DNS ") && reason.ends_with(", expected NOERROR"),
        "{reason}"
    );
    // The server gone: the port answers unreachable.
    dnsmasq.signal(libc::SIGKILL);
    let (_, reason) = hd.wait_health("dns-ok", "10.88.0.11:53", Down, DETECT);
    assert_eq!(reason, "port unreachable (ICMP)");
    // Dropped on the way: silence until the timeout.
    net.lab.drop_protocol(&net.rs[0], 17);
    let r = wait_reason(&hd, "dns-ok", "10.88.0.11:53", "no DNS answer within 100ms");
    assert!(
        r.is_some(),
        "{:?}",
        hd.real_server("dns-ok", "10.88.0.11:53")
    );
}

/// Waits until the last check's reason is `want`.
fn wait_reason(hd: &Healthd, vs: &str, rs: &str, want: &str) -> Option<Duration> {
    netns::wait_until(T, || {
        hd.real_server(vs, rs)
            .last_check
            .is_some_and(|c| c.reason == want)
    })
}

#[test]
fn udp_checks_want_the_expected_reply_or_no_port_unreachable() {
    let Some(net) = net("hc_udp", 1) else { return };
    icmp_unlimited(&net, 0);
    let _echo = net.lab.spawn(
        &net.rs[0],
        "udp-echo",
        &[
            "python3",
            "-c",
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('10.88.0.11', 9999))\nwhile True:\n    d, a = s.recvfrom(2048)\n    s.sendto(b'pong ' + d, a)\n",
        ],
    );
    let mut toml = vs(
        "echo",
        9999,
        "type = \"udp\"\nsend = \"ping\"\nexpect = \"pong ping\"",
        &["10.88.0.11:9999"],
    );
    toml.push_str(&vs(
        "silent",
        9998,
        "type = \"udp\"\nsend = \"ping\"",
        &["10.88.0.11:9998"],
    ));
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    let (_, reason) = hd.wait_health("echo", "10.88.0.11:9999", Up, T);
    assert_eq!(reason, "expected reply");
    // Nothing listens on 9998: the port answers unreachable.
    let (_, reason) = hd.wait_health("silent", "10.88.0.11:9998", Down, T);
    assert_eq!(reason, "port unreachable (ICMP)");
    // With UDP dropped, no unreachable comes back: a check without
    // `expect` passes (keepalived's UDP_CHECK without require_reply), one
    // with `expect` fails.
    net.lab.drop_protocol(&net.rs[0], 17);
    let (_, reason) = hd.wait_health("silent", "10.88.0.11:9998", Up, DETECT);
    assert_eq!(reason, "no port unreachable within 100ms");
    let (_, reason) = hd.wait_health("echo", "10.88.0.11:9999", Down, DETECT);
    assert_eq!(reason, "no reply within 100ms");
    net.lab.undrop(&net.rs[0]);
    hd.wait_health("echo", "10.88.0.11:9999", Up, DETECT);
}

#[test]
fn smtp_checks_want_the_greeting_ehlo_and_starttls_when_asked() {
    let Some(net) = net("hc_smtp", 1) else { return };
    let _plain = TestServer::start(&net.lab, &net.rs[0], &["10.88.0.11:25"], "ok", &["--smtp"]);
    let _tls = TestServer::start(
        &net.lab,
        &net.rs[0],
        &["10.88.0.11:587"],
        "ok",
        &["--smtp", "--tls"],
    );
    let busy = TestServer::start(
        &net.lab,
        &net.rs[0],
        &["10.88.0.11:2525"],
        "status 421",
        &["--smtp"],
    );
    let mut toml = vs(
        "mail",
        25,
        "type = \"smtp\"\nhelo_name = \"lb.example\"",
        &["10.88.0.11:25"],
    );
    toml.push_str(&vs(
        "submission",
        587,
        "type = \"smtp\"\nstarttls = true\ntls_verify = false\nsni = \"test.invalid\"",
        &["10.88.0.11:587"],
    ));
    // A server that offers no STARTTLS fails a check that wants it.
    toml.push_str(&vs(
        "wants-tls",
        26,
        "type = \"smtp\"\nport = 25\nstarttls = true",
        &["10.88.0.11:26"],
    ));
    // Verified against the system's roots, the self-signed certificate fails.
    toml.push_str(&vs(
        "strict",
        588,
        "type = \"smtp\"\nport = 587\nstarttls = true\nsni = \"test.invalid\"",
        &["10.88.0.11:588"],
    ));
    toml.push_str(&vs("busy", 2525, "type = \"smtp\"", &["10.88.0.11:2525"]));
    let hd = Healthd::start(&net.lab, &net.lb, &toml);
    let (_, reason) = hd.wait_health("mail", "10.88.0.11:25", Up, T);
    assert_eq!(reason, "SMTP 250");
    let (_, reason) = hd.wait_health("submission", "10.88.0.11:587", Up, T);
    assert_eq!(reason, "SMTP 250 after STARTTLS");
    let (_, reason) = hd.wait_health("wants-tls", "10.88.0.11:26", Down, T);
    assert_eq!(reason, "SMTP: STARTTLS not offered");
    let (_, reason) = hd.wait_health("strict", "10.88.0.11:588", Down, T);
    assert!(
        reason.starts_with("TLS: ") && reason.contains("UnknownIssuer"),
        "{reason}"
    );
    let (_, reason) = hd.wait_health("busy", "10.88.0.11:2525", Down, T);
    assert_eq!(reason, "SMTP greeting 421 mx.test not today");
    // The busy server recovers.
    busy.set("ok");
    hd.wait_health("busy", "10.88.0.11:2525", Up, DETECT);
}
