//! The web UI and the control sockets when a client misbehaves: hundreds
//! of half-sent requests (slowloris), a body that never ends or never
//! comes, bodies beyond the cap, malformed JSON, paths that climb out,
//! a burst of parallel logins. The daemon stays up, serves everyone else,
//! and its memory stays bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tandem_model::api::VrrpState::Master;
use tandem_tests::binary;
use tandem_tests::cluster::{Net, Vrrpd, instance, net};
use tandem_tests::netns::{Host, Proc};
use tandem_tests::sync::in_netns;

const T: Duration = Duration::from_secs(10);
const UI: &str = "10.77.0.1:8080";

/// A request over a new connection from `host`, read to the end (the
/// request says `Connection: close`); the status and the whole answer.
fn http(host: &Host, request: String) -> (u16, String) {
    in_netns(host, move || {
        let addr: SocketAddr = UI.parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(request.as_bytes()).expect("send");
        read_answer(&mut s)
    })
}

fn read_answer(s: &mut impl Read) -> (u16, String) {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    answer(&out)
}

/// The status of an HTTP answer (0 when there is none) and its text.
fn answer(bytes: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Sends `head` (announcing a 64 MiB body) and then the body, from
/// another thread through `writer` (a clone of `s`), while it reads the
/// answer: the server refuses it once the cap is passed, long before
/// its end.
fn oversized<S: Read, W: Write + Send + 'static>(
    s: &mut S,
    mut writer: W,
    head: String,
) -> (u16, String) {
    std::thread::spawn(move || {
        writer.write_all(head.as_bytes()).expect("the head");
        let mib = vec![b'x'; 1 << 20];
        // It stops at the server's close.
        for _ in 0..64 {
            if writer.write_all(&mib).is_err() {
                break;
            }
        }
    });
    let mut out = vec![0u8; 4096];
    let n = s.read(&mut out).unwrap_or(0);
    answer(&out[..n])
}

fn get(path: &str, auth: Option<&str>) -> String {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: lb1\r\n{auth}Connection: close\r\n\r\n")
}

fn post(path: &str, auth: &str, ty: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: lb1\r\nAuthorization: Basic {auth}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// The process's resident set now and at its peak, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// How many of `conns` are still open: a read that times out is open,
/// an end of file or a reset is closed.
fn still_open<S: Read>(conns: &mut [S], set_timeout: impl Fn(&S)) -> usize {
    conns
        .iter_mut()
        .map(|c| {
            set_timeout(c);
            let mut b = [0u8; 256];
            match c.read(&mut b) {
                // An answer before the end: the next look sees the end.
                Ok(n) => n > 0,
                Err(e) => matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .filter(|open| *open)
        .count()
}

/// The web UI on lb1, with an admin, beside a vrrpd whose socket it reads.
struct Lab {
    net: Net,
    mallory: Host,
    vrrpd: Vrrpd,
    webui: Proc,
    admin: String,
}

fn lab(test: &str) -> Option<Lab> {
    let mut net = net(test, 1)?;
    let mallory = net.lab.host("mallory");
    net.lab.connect(&mallory, "eth0");
    net.lab.addr(&mallory, "eth0", "10.77.0.66/24");
    let hash = webui::auth::hash_password("s3cret").unwrap();
    let toml = format!(
        "{}\n[webui]\nlisten = \"{UI}\"\nplain_http = true\n\n[[webui.user]]\nname = \"ada\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n",
        instance(
            "web",
            51,
            150,
            &["10.77.0.100/24"],
            "advert_interval = \"100ms\""
        )
    );
    let vrrpd = Vrrpd::start(&net.lab, &net.directors[0], &toml);
    vrrpd.wait_state("web", Master, T);
    let bin = binary("tandem-webui");
    let mut cmd = net.lab.command(
        &net.directors[0],
        &[
            bin.to_str().unwrap(),
            "--config",
            vrrpd.config.to_str().unwrap(),
            "--socket-dir",
            vrrpd.dir.to_str().unwrap(),
            "--listen",
            UI,
        ],
    );
    cmd.env("NO_COLOR", "1");
    let mut webui = net.lab.spawn_cmd(&net.directors[0], "webui", cmd);
    webui.wait_for_output("listening on", T);
    Some(Lab {
        net,
        mallory,
        vrrpd,
        webui,
        admin: basic("ada", "s3cret"),
    })
}

impl Lab {
    /// The admin, from the client, is served and quickly.
    #[track_caller]
    fn admin_is_served(&self, when: &str) {
        let started = Instant::now();
        let (status, text) = http(&self.net.client, get("/api/v1/whoami", Some(&self.admin)));
        assert_eq!(status, 200, "{when}: the admin got {text}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{when}: the admin waited {:?}",
            started.elapsed()
        );
    }

    fn metric(&self, name: &str) -> u64 {
        let (_, text) = http(&self.net.client, get("/metrics", Some(&self.admin)));
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }
}

#[test]
fn slow_and_endless_clients_take_only_their_share_of_the_web_ui() {
    let Some(mut lab) = lab("uihostile") else {
        return;
    };
    lab.admin_is_served("before");

    // A body announced and never sent, to a handler that reads it (an
    // admin's basic credentials get it past the CSRF check).
    let started = Instant::now();
    let head = format!(
        "POST /api/v1/config/validate HTTP/1.1\r\nHost: lb1\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"text\": \"",
        lab.admin
    );
    let mut stalled_body: TcpStream = in_netns(&lab.mallory, move || {
        let mut s = TcpStream::connect(UI).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s
    });
    // 200 connections that send half a request and then a header line
    // now and then (slowloris), from one address.
    let mut slow: Vec<TcpStream> = in_netns(&lab.mallory, || {
        (0..200)
            .filter_map(|_| {
                let mut s = TcpStream::connect(UI).ok()?;
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: lb1\r\n");
                Some(s)
            })
            .collect()
    });
    assert_eq!(slow.len(), 200, "mallory could not even connect");
    std::thread::sleep(Duration::from_secs(1));
    let timeout = |s: &TcpStream| {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    };
    let open = still_open(&mut slow, timeout);
    // Its share is 32 at once (one of them the stalled body's); the rest
    // were closed at once.
    assert!(open <= 32, "{open} slow connections from one address held");
    lab.admin_is_served("while mallory holds its share");
    for s in slow.iter_mut() {
        let _ = s.write_all(b"X-Slow: 1\r\n");
    }

    // Beyond the body cap (4 MiB): refused, the connection not read to
    // its end; malformed JSON and form bodies: a clear 4xx.
    let head = format!(
        "POST /api/v1/config/validate HTTP/1.1\r\nHost: lb1\r\nAuthorization: Basic {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        lab.admin,
        64 << 20
    );
    let (status, text) = in_netns(&lab.net.client, move || {
        let mut s = TcpStream::connect(UI).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let w = s.try_clone().unwrap();
        oversized(&mut s, w, head)
    });
    assert_eq!(status, 413, "a 64 MiB body: {text}");
    for body in [
        "{",
        "{\"on\": tru}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "{\"on\": \"\u{0}\"}",
        "\u{feff}{\"on\": true}",
    ] {
        let (status, text) = http(
            &lab.net.client,
            post(
                "/api/v1/instances/web/maintenance",
                &lab.admin,
                "application/json",
                body,
            ),
        );
        assert!(
            (400..500).contains(&status),
            "{body:?} answered {status}: {text}"
        );
    }
    // Paths that climb out of /static or anywhere else find nothing.
    for path in [
        "/static/../../../../etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/....//....//etc/passwd",
        "//etc/passwd",
        "/config/backups/..%2f..%2f..%2fetc%2fpasswd",
        "/static/style.css%00.js",
    ] {
        let (status, text) = http(&lab.net.client, get(path, Some(&lab.admin)));
        assert!(
            !text.contains("root:x:0:0") && (400..500).contains(&status),
            "{path} answered {status}:\n{text}"
        );
    }
    assert!(lab.vrrpd.instance("web").state == Master);

    // The heads that never end are closed within the header timeout
    // (10 s), the stalled body within the body timeout (30 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && still_open(&mut slow, timeout) > 0 {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        still_open(&mut slow, timeout),
        0,
        "slow heads outlived the header timeout"
    );
    // The server ends it (an answer, then the end): a read that timed
    // out here would be an error.
    stalled_body
        .set_read_timeout(Some(Duration::from_secs(25)))
        .unwrap();
    let mut answer = Vec::new();
    let ended = stalled_body.read_to_end(&mut answer);
    assert!(
        ended.is_ok(),
        "a body that never came still held its connection: {ended:?}"
    );
    // Not before the body timeout (30 s): it was waited for, then given up.
    assert!(
        started.elapsed() > Duration::from_secs(25),
        "the stalled body was answered after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&answer)
    );
    assert!(
        lab.webui.alive(),
        "the web UI died:\n{}",
        lab.webui.output()
    );
    lab.admin_is_served("after");
    assert!(lab.metric("tandem_webui_connections_refused_total{reason=\"peer\"}") >= 150);
    assert!(lab.metric("tandem_webui_header_timeouts_total") >= 30);
}

#[test]
fn a_burst_of_parallel_logins_is_answered_within_bounded_memory() {
    let Some(mut lab) = lab("loginburst") else {
        return;
    };
    lab.admin_is_served("before");
    let pid = lab.webui.pid();
    let (_, before) = memory(pid);
    // The login form's session and token, as a browser gets them.
    let (_, page) = http(&lab.mallory, get("/login", None));
    let cookie = page
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie:\n{page}"))
        .to_string();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token:\n{page}"))
        .to_string();
    // 300 logins at once, each with a new name, half by the form and
    // half by basic auth: every one passes the rate limiter (no failure
    // is known yet) and asks for an argon2 check.
    let answers: Vec<u16> = in_netns(&lab.mallory, move || {
        let threads: Vec<_> = (0..300)
            .map(|i| {
                let (cookie, csrf) = (cookie.clone(), csrf.clone());
                std::thread::spawn(move || {
                    let body = format!("name=user{i}&password=guess{i}&csrf={csrf}");
                    let Ok(mut s) = TcpStream::connect(UI) else {
                        return 0;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    let req = if i % 2 == 0 {
                        format!(
                            "POST /login HTTP/1.1\r\nHost: lb1\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        get("/api/v1/whoami", Some(&basic(&format!("user{i}"), "guess")))
                    };
                    if s.write_all(req.as_bytes()).is_err() {
                        return 0;
                    }
                    read_answer(&mut s).0
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let (_, peak) = memory(pid);
    assert!(
        lab.webui.alive(),
        "the web UI died:\n{}",
        lab.webui.output()
    );
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for a in &answers {
        *seen.entry(*a).or_default() += 1;
    }
    eprintln!(
        "answers {seen:?}, {} password checks",
        lab.metric("tandem_webui_password_checks_total")
    );
    let answered = answers.iter().filter(|s| **s != 0).count();
    // One address's share of connections is 32: the others were closed
    // unanswered. Every admitted one got an answer: wrong password,
    // rate limited, or busy.
    assert!(
        answered >= 32,
        "only {answered} logins answered: {answers:?}"
    );
    assert!(
        answers
            .iter()
            .all(|s| matches!(s, 0 | 401 | 403 | 429 | 503)),
        "{answers:?}"
    );
    eprintln!("web UI peak RSS: {before} KiB before, {peak} KiB after {answered} parallel logins");
    // Two checkers (one per core here), each with its 19 MiB of argon2
    // blocks, on top of what it had; not one more per login.
    assert!(
        peak < before + 64 * 1024,
        "peak RSS grew from {before} to {peak} KiB"
    );
    // The admin, from elsewhere, is neither locked out nor kept waiting.
    lab.admin_is_served("after the burst");
}

#[test]
fn a_control_socket_outlasts_slow_and_malformed_clients_and_vrrp_keeps_its_schedule() {
    let Some(lab) = lab("ctlhostile") else {
        return;
    };
    let socket = lab.vrrpd.socket();
    let pid = lab.vrrpd.pid();
    let (_, before) = memory(pid);
    let sent_before = lab.vrrpd.instance("web").counters.adverts_sent;
    let started = Instant::now();
    // 300 half-sent requests: 128 are served at once, the rest closed.
    let mut slow: Vec<UnixStream> = (0..300)
        .filter_map(|_| {
            let mut s = UnixStream::connect(&socket).ok()?;
            let _ = s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n");
            Some(s)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let timeout = |s: &UnixStream| {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    };
    let open = still_open(&mut slow, timeout);
    assert!(open <= 128, "{open} slow connections held");
    // Malformed and oversized requests on fresh connections, once the
    // slow ones have been closed by the header timeout.
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && still_open(&mut slow, timeout) > 0 {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(still_open(&mut slow, timeout), 0);
    let ask = |req: &[u8]| {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let _ = s.write_all(req);
        read_answer(&mut s)
    };
    let head = format!(
        "POST /instances/web/maintenance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        64 << 20
    );
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let w = s.try_clone().unwrap();
    let (status, text) = oversized(&mut s, w, head);
    assert_eq!(status, 413, "a 64 MiB body: {text}");
    for body in ["{", "{\"on\": 3}", "nul", "\u{0}\u{1}"] {
        let req = format!(
            "POST /instances/web/maintenance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, text) = ask(req.as_bytes());
        assert!((400..500).contains(&status), "{body:?}: {text}");
    }
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET /status HTTP/9.9\r\n\r\n",
        b"GET /../../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let (_, text) = ask(garbage);
        assert!(!text.contains("root:x:0:0"), "{text}");
    }

    let mut vrrpd = lab.vrrpd;
    assert!(vrrpd.alive(), "vrrpd died:\n{}", vrrpd.log());
    let after = vrrpd.instance("web");
    assert_eq!(after.state, Master);
    // Adverts every 100 ms all along: the socket's clients took nothing
    // from the VRRP loop.
    let due = (started.elapsed().as_millis() / 100) as u64;
    let sent = after.counters.adverts_sent - sent_before;
    assert!(
        sent * 10 >= due * 9,
        "{sent} adverts sent of {due} due during the attack"
    );
    let (_, peak) = memory(pid);
    eprintln!("vrrpd peak RSS: {before} KiB before, {peak} KiB after");
    assert!(
        peak < before + 64 * 1024,
        "vrrpd's peak RSS grew from {before} to {peak} KiB"
    );
}
