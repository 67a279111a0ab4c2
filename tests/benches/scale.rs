//! One pair at keepalived's breaking point (keepalived issue #2318):
//! 2,284 virtual servers with 37,298 real servers, TCP checks every 10 s.
//!
//! What healthd does with that configuration, sans IO and over the
//! in-memory dataplane (the kernel's rules, no kernel), each step timed:
//! parse and validate the file, build the engine, program the table from
//! empty, then three reloads (nothing changed, one weight changed, 1,000
//! real servers added) with the IPVS operations each one plans, and the
//! status document at that size. The same steps in the daemon add only
//! the netlink round trips of the operations counted here.
//!
//! Then the operator's side at that size: tandem-webui (release) in front
//! of a fake healthd holding that status, each page asked for 40 times
//! in a row (the cache as a busy browser finds it): the virtual servers
//! page (first page, a search, the problems filter), the JSON API paged,
//! and /metrics with and without the per-real-server series.
//!
//! Run: `cargo bench -p tandem-tests --bench scale`
//! (`TANDEM_SCALE=VS,RS` for another size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use healthd::dataplane::{SyncRequest, sync_once};
use healthd::engine::Engine;
use ipvsctl::memory::Memory;
use ipvsctl::types::Table;
use tandem_model::api::HealthdStatus;
use tandem_model::config::{self, Config};
use tandem_tests::fake::{self, FakeDaemons};
use tandem_tests::webui::WebUi;
use tandem_tests::{binary, vm};

/// The system allocator, counting the bytes live: what each of healthd's
/// structures holds at this size, apart from the allocator's own
/// overhead and the process's pages.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed through to the system allocator as it
// came; only a counter is kept besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr came from alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

/// Where real server `n` is: its address (127.0.0.0/8, all local, so one
/// listener answers every one of them) and the virtual server it is in.
fn rs_addr(n: usize) -> String {
    format!("127.{}.{}.{}", 1 + n / 62500, (n / 250) % 250, n % 250 + 1)
}

fn vs_addr(v: usize) -> String {
    format!("10.{}.{}.1", 100 + v / 250, v % 250)
}

/// The real servers of each virtual server: `rss` shared as evenly as
/// they go (#2318: 16 or 17 each), then `extra` more, one each for the
/// first virtual servers.
fn layout(vss: usize, rss: usize, extra: usize) -> Vec<Vec<usize>> {
    let mut next = 0;
    (0..vss)
        .map(|v| {
            let per = rss / vss + usize::from(v < rss % vss);
            let mine = (next..next + per)
                .chain((v < extra).then_some(rss + v))
                .collect();
            next += per;
            mine
        })
        .collect()
}

/// The file: direct routing on port 8000, TCP checks every 10 s;
/// `weight_of(n)` gives real server n's weight.
fn config_text(vss: usize, rss: usize, extra: usize, weight_of: &dyn Fn(usize) -> u32) -> String {
    let mut s = String::with_capacity(rss * 80);
    for (v, mine) in layout(vss, rss, extra).into_iter().enumerate() {
        let _ = write!(
            s,
            "[[virtual_server]]\nname = \"vs{v}\"\naddress = \"{}:8000\"\nscheduler = \"wlc\"\nforwarding = \"dr\"\n\
             [virtual_server.check]\ntype = \"tcp\"\ninterval = \"10s\"\ntimeout = \"3s\"\n",
            vs_addr(v)
        );
        for n in mine {
            let _ = write!(
                s,
                "[[virtual_server.real_server]]\naddress = \"{}\"\nweight = {}\n",
                rs_addr(n),
                weight_of(n)
            );
        }
    }
    s
}

/// The same as keepalived.conf: TCP_CHECK every 10 s (delay_loop), 3 s
/// connect timeout, retry 1 (keepalived's fall).
fn keepalived_text(
    vss: usize,
    rss: usize,
    extra: usize,
    weight_of: &dyn Fn(usize) -> u32,
) -> String {
    let mut s = String::from("global_defs {\n  router_id scale\n}\n");
    for (v, mine) in layout(vss, rss, extra).into_iter().enumerate() {
        let _ = write!(
            s,
            "virtual_server {} 8000 {{\n  delay_loop 10\n  lb_algo wlc\n  lb_kind DR\n  protocol TCP\n",
            vs_addr(v)
        );
        for n in mine {
            let _ = write!(
                s,
                "  real_server {} 8000 {{\n    weight {}\n    TCP_CHECK {{\n      connect_timeout 3\n      retry 1\n    }}\n  }}\n",
                rs_addr(n),
                weight_of(n)
            );
        }
        s.push_str("}\n");
    }
    s
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

struct Healthd {
    engine: Engine,
    memory: Memory,
    table: Table,
    known: Option<Table>,
}

impl Healthd {
    /// One sync as the daemon's IPVS thread does it; the operations.
    fn sync(&mut self) -> usize {
        let req = SyncRequest::new(
            &mut self.engine,
            Instant::now(),
            &self.table,
            &BTreeSet::new(),
            None,
            false,
        );
        let synced = sync_once(&mut self.memory, &req, &mut self.known)
            .expect("the memory dataplane takes it");
        self.table = synced.table;
        synced.operations
    }

    /// A reload as the daemon does it: parse, move the engine, sync.
    fn reload(&mut self, text: &str) -> Reload {
        let (c, parse) = timed(|| config::parse(text, "scale.toml").expect("the file is valid"));
        let (changes, engine) = timed(|| {
            self.engine
                .reload(&c, Instant::now(), &self.table)
                .expect("the engine takes it")
        });
        let (ops, sync) = timed(|| self.sync());
        Reload {
            changes: changes.len(),
            ops,
            parse,
            engine,
            sync,
        }
    }
}

struct Reload {
    changes: usize,
    ops: usize,
    parse: Duration,
    engine: Duration,
    sync: Duration,
}

fn main() {
    let (vss, rss) = std::env::var("TANDEM_SCALE")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once(',')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((2284, 37_298));
    let text = config_text(vss, rss, 0, &|_| 1);
    let mut report = format!(
        "scale: {vss} virtual servers, {rss} real servers, TCP checks every 10 s ({} KiB of TOML)\n",
        text.len() / 1024
    );
    let before = live_mib();
    let (c, parse): (Config, _) = timed(|| config::parse(&text, "scale.toml").expect("valid"));
    let config_mib = live_mib() - before;
    let _ = writeln!(report, "  parse and validate          {:>10}", ms(parse));
    let before = live_mib();
    let (engine, build) = timed(|| {
        Engine::new(&c, Instant::now(), &Table::default(), BTreeSet::new())
            .expect("the engine takes it")
    });
    let engine_mib = live_mib() - before;
    let _ = writeln!(
        report,
        "  build the engine            {:>10}  ({} probes)",
        ms(build),
        engine.probes()
    );
    // Every real server starts as its virtual server's initial state (up
    // by default), so the first sync programs the whole table.
    let mut hd = Healthd {
        engine,
        memory: Memory::new(&Table::default()),
        table: Table::default(),
        known: None,
    };
    let before = live_mib();
    let (ops, first) = timed(|| hd.sync());
    // The daemon holds the table twice (its own and its IPVS thread's);
    // the in-memory dataplane here holds a third, the kernel's.
    let tables_mib = live_mib() - before;
    let _ = writeln!(
        report,
        "  program from empty          {:>10}  ({ops} operations)",
        ms(first)
    );
    let _ = writeln!(
        report,
        "  heap held: configuration {config_mib:.1} MiB, engine {engine_mib:.1} MiB, \
         the table three times (healthd, its IPVS thread, the dataplane) {tables_mib:.1} MiB"
    );
    let weight = |n| if n == rss / 2 { 5 } else { 1 };
    let extra = 1000.min(vss);
    for (what, text) in [
        ("reload, nothing changed", text.clone()),
        (
            "reload, one weight changed",
            config_text(vss, rss, 0, &weight),
        ),
        ("reload, 1,000 added", config_text(vss, rss, extra, &weight)),
    ] {
        let r = hd.reload(&text);
        let _ = writeln!(
            report,
            "  {what:<27} {:>10}  ({} virtual servers changed, {} operations; parse {}, engine {}, sync {})",
            ms(r.parse + r.engine + r.sync),
            r.changes,
            r.ops,
            ms(r.parse),
            ms(r.engine),
            ms(r.sync),
        );
    }
    let anchor = (Instant::now(), tandem_model::api::now_millis());
    let (status, t) = timed(|| serde_json::to_vec(&hd.engine.status(anchor, &hd.table)).unwrap());
    let _ = writeln!(
        report,
        "  status document             {:>10}  ({} KiB)",
        ms(t),
        status.len() / 1024
    );
    print!("{report}");
    let healthd = HealthdStatus {
        virtual_servers: hd.engine.status(anchor, &hd.table),
        ..fake::healthd_status(0, 0)
    };
    web(healthd);
    if std::env::var("TANDEM_SCALE_VM").as_deref() == Ok("off") {
        println!("in the VM: not run (TANDEM_SCALE_VM=off)");
        return;
    }
    if let Some(figures) = in_vm(vss, rss) {
        vm_report(&figures);
    }
}

/// One daemon's figures in the VM; None where it did not get there
/// within the bound.
#[derive(Default, Debug)]
struct VmFigures {
    full_ms: Option<u64>,
    cpu_pct: f64,
    rss_kib: u64,
    one_ms: Option<u64>,
    one_ops: Option<u64>,
    none_ms: Option<u64>,
    none_ops: Option<u64>,
    more_ms: Option<u64>,
    more_ops: Option<u64>,
}

/// How long a step may take in the VM before it counts as not done.
const VM_BOUND_S: u64 = 300;
/// The CPU window at steady state.
const VM_WINDOW_S: u64 = 30;

/// tandem-healthd and keepalived's checker (`keepalived --check`), one
/// after the other in one boot, on the same table: real servers are
/// addresses of 127.0.0.0/8 in one namespace, served by one listener,
/// so direct routing takes them as they are. Each: start until the
/// kernel holds every real server, CPU and RSS at steady state, then
/// three reloads timed until the kernel shows them (one weight changed,
/// nothing changed, 1,000 added). tandem's operations are its own log
/// lines, one per netlink operation.
fn in_vm(vss: usize, rss: usize) -> Option<(VmFigures, VmFigures)> {
    let machine = vm::require("scale_vs_keepalived")?;
    let healthd = binary("tandem-healthd");
    let server = binary("tandem-testserver");
    let changed = rss / 2;
    let weight = move |n| if n == changed { 5 } else { 1 };
    let extra = 1000.min(vss);
    let (vs_of_changed, _) = layout(vss, rss, 0)
        .into_iter()
        .enumerate()
        .find(|(_, m)| m.contains(&changed))
        .expect("every real server is somewhere");
    let script = format!(
        r#"set -e
ip netns add b
ip -n b link set lo up
ip netns exec b sysctl -qw net.ipv4.ip_local_port_range="1024 65001" net.core.somaxconn=8192
mkdir -p /run/bench
cp $PWD/*.toml $PWD/*.conf /run/bench/
echo ok > /run/bench/mode
ip netns exec b {server} --listen 0.0.0.0:8000 --mode-file /run/bench/mode >/dev/null 2>&1 &
sleep 1
now() {{ date +%s%N; }}
dests() {{ ip netns exec b cat /proc/net/ip_vs | grep -c -- '->' || true; }}
weight() {{ ip netns exec b ipvsadm -Ln -t {vs}:8000 2>/dev/null | awk '$2 == "{rs}:8000" {{ print $4 }}'; }}
# Prints the milliseconds since $3 until "$1" holds, or - past $2 s.
wait_for() {{
  local deadline=$(( $(date +%s) + $2 ))
  until eval "$1"; do
    if [ $(date +%s) -ge $deadline ]; then echo -; return; fi
    sleep 0.2
  done
  echo $(( ($(now) - $3) / 1000000 ))
}}
cpu() {{ t=0; for p in "$@"; do for f in /proc/$p/task/*/schedstat; do read a rest < $f; t=$((t+a)); done; done; echo $t; }}
rss() {{ t=0; for p in "$@"; do r=$(awk '/VmRSS/ {{ print $2 }}' /proc/$p/status); t=$((t+r)); done; echo $t; }}
ops() {{ grep -c 'ipvs: ' /run/bench/healthd.log || true; }}
reload() {{ curl -s --unix-socket /run/bench/healthd.sock -X POST http://healthd/reload > /dev/null; }}

cp /run/bench/base.toml /run/bench/h.toml
t0=$(now)
ip netns exec b {healthd} -c /run/bench/h.toml --socket-dir /run/bench --state-dir /run/bench/st --log info > /run/bench/healthd.log 2>&1 &
HP=$!
full=$(wait_for '[ "$(dests)" -ge {n} ]' {bound} $t0)
sleep 20
c0=$(cpu $HP); sleep {window}; c1=$(cpu $HP); r=$(rss $HP)
o0=$(ops); cp /run/bench/one.toml /run/bench/h.toml; t0=$(now); reload
one=$(wait_for '[ "$(weight)" = 5 ]' {bound} $t0); sleep 5; o1=$(ops)
t0=$(now); reload; none=$(( ($(now) - t0) / 1000000 )); sleep 5; o2=$(ops)
cp /run/bench/more.toml /run/bench/h.toml; t0=$(now); reload
more=$(wait_for '[ "$(dests)" -ge {n2} ]' {bound} $t0); sleep 5; o3=$(ops)
echo "tandem $full $c0 $c1 $r $one $((o1 - o0)) $none $((o2 - o1)) $more $((o3 - o2))" > $TANDEM_VM_DIR/result
kill $HP; wait $HP || true
ip netns exec b ipvsadm -C

cp /run/bench/base.conf /run/bench/k.conf
t0=$(now)
ip netns exec b keepalived --dont-fork --log-console --check --use-file /run/bench/k.conf --pid /run/bench/k.pid --checkers_pid /run/bench/c.pid > /run/bench/keepalived.log 2>&1 &
KP=$!
full=$(wait_for '[ "$(dests)" -ge {n} ]' {bound} $t0)
sleep 20
CP=$(cat /run/bench/c.pid)
c0=$(cpu $KP $CP); sleep {window}; c1=$(cpu $KP $CP); r=$(rss $KP $CP)
cp /run/bench/one.conf /run/bench/k.conf; t0=$(now); kill -HUP $KP
one=$(wait_for '[ "$(weight)" = 5 ]' {bound} $t0)
cp /run/bench/more.conf /run/bench/k.conf; t0=$(now); kill -HUP $KP
more=$(wait_for '[ "$(dests)" -ge {n2} ]' {bound} $t0)
echo "keepalived $full $c0 $c1 $r $one - - - $more -" >> $TANDEM_VM_DIR/result
kill $KP; wait $KP || true
tail -5 /run/bench/healthd.log > $TANDEM_VM_DIR/healthd.log
tail -20 /run/bench/keepalived.log > $TANDEM_VM_DIR/keepalived.log
"#,
        server = server.display(),
        healthd = healthd.display(),
        vs = vs_addr(vs_of_changed),
        rs = rs_addr(changed),
        n = rss,
        n2 = rss + extra,
        bound = VM_BOUND_S,
        window = VM_WINDOW_S,
    );
    let out = machine
        .scenario("scale_vs_keepalived")
        .memory_mib(2048)
        .file("base.toml", config_text(vss, rss, 0, &|_| 1))
        .file("one.toml", config_text(vss, rss, 0, &weight))
        .file("more.toml", config_text(vss, rss, extra, &weight))
        .file("base.conf", keepalived_text(vss, rss, 0, &|_| 1))
        .file("one.conf", keepalived_text(vss, rss, 0, &weight))
        .file("more.conf", keepalived_text(vss, rss, extra, &weight))
        .script(script)
        .timeout(Duration::from_secs(300 + 7 * VM_BOUND_S + 2 * VM_WINDOW_S))
        .run();
    out.assert_success();
    let result = out.read("result");
    let parse = |who: &str| {
        let line = result.lines().find(|l| l.starts_with(who))?;
        let f: Vec<Option<u64>> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().ok())
            .collect();
        let at = |i: usize| f.get(i).copied().flatten();
        Some(VmFigures {
            full_ms: at(0),
            cpu_pct: (at(2)? - at(1)?) as f64 / 1e9 / VM_WINDOW_S as f64 * 100.0,
            rss_kib: at(3)?,
            one_ms: at(4),
            one_ops: at(5),
            none_ms: at(6),
            none_ops: at(7),
            more_ms: at(8),
            more_ops: at(9),
        })
    };
    match (parse("tandem"), parse("keepalived")) {
        (Some(t), Some(k)) => Some((t, k)),
        _ => panic!("the VM run gave no figures:\n{result}\n{out}"),
    }
}

fn vm_report((t, k): &(VmFigures, VmFigures)) {
    let ms = |v: Option<u64>| v.map_or(format!("over {VM_BOUND_S} s"), |v| format!("{v} ms"));
    let n = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let f = |v: Option<u64>| v.map(|v| v as f64);
    println!("in the VM (TCG, one CPU), tandem-healthd vs keepalived --check, same table:");
    println!(
        "  {:<52} {:>12} {:>12} {:>6}",
        "", "tandem", "keepalived", "ratio"
    );
    for (what, a, b) in [
        (
            "start until the kernel has every real server",
            t.full_ms,
            k.full_ms,
        ),
        (
            "reload, one weight changed, until the kernel has it",
            t.one_ms,
            k.one_ms,
        ),
        (
            "reload, 1,000 added, until the kernel has them",
            t.more_ms,
            k.more_ms,
        ),
    ] {
        println!(
            "  {what:<52} {:>12} {:>12} {:>6}",
            ms(a),
            ms(b),
            ratio(f(a), f(b))
        );
    }
    println!(
        "  {:<52} {:>11.1}% {:>11.1}% {:>6}",
        "CPU at steady state",
        t.cpu_pct,
        k.cpu_pct,
        ratio(Some(t.cpu_pct), Some(k.cpu_pct))
    );
    println!(
        "  {:<52} {:>8} MiB {:>8} MiB {:>6}",
        "RSS at steady state",
        t.rss_kib / 1024,
        k.rss_kib / 1024,
        ratio(Some(t.rss_kib as f64), Some(k.rss_kib as f64))
    );
    println!(
        "  tandem's IPVS operations: one weight changed {}, nothing changed {} (reload answered in {}), 1,000 added {}",
        n(t.one_ops),
        n(t.none_ops),
        ms(t.none_ms),
        n(t.more_ops)
    );
}

/// The web UI's answers at this size: p50 and p99 of 40 requests each
/// (after one that fills the cache, timed apart) and the size.
fn web(healthd: HealthdStatus) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let _fakes = FakeDaemons::start(&run, fake::vrrpd_status(1), healthd);
    let config = dir.path().join("tandem.toml");
    let hash = webui::auth::hash_password("bench-pw").unwrap();
    std::fs::write(
        &config,
        format!(
            "[[webui.user]]\nname = \"bench\"\npassword_hash = \"{hash}\"\nrole = \"viewer\"\n"
        ),
    )
    .unwrap();
    let ui = WebUi::start(&config, &run);
    println!("web UI (p50 / p99 of 40 requests after the first):");
    for (path, gzip) in [
        ("/virtual-servers", false),
        ("/virtual-servers?q=127.1.100.7", false),
        ("/virtual-servers?problems=on&page=3", false),
        ("/api/v1/virtual-servers?per_page=25&page=10", false),
        ("/metrics", true),
        ("/metrics?real_servers=off", true),
    ] {
        let url = format!("{}{path}", ui.url);
        let ask = || {
            let mut c = Command::new("curl");
            c.args(["-s", "-o", "/dev/null", "-u", "bench:bench-pw"])
                .args(["-w", "%{http_code} %{time_total} %{size_download}"]);
            if gzip {
                c.args(["-H", "Accept-Encoding: gzip"]);
            }
            let out = c.arg(&url).output().expect("curl runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut f = text.split_whitespace();
            let code = f.next().unwrap_or_default().to_string();
            let secs: f64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            let size: usize = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            (code, secs * 1000.0, size)
        };
        let (code, first, size) = ask();
        assert_eq!(code, "200", "{path}");
        let mut times: Vec<f64> = (0..40).map(|_| ask().1).collect();
        times.sort_by(f64::total_cmp);
        println!(
            "  {path:<45} {:>7.1} / {:>7.1} ms  (first {first:.0} ms; {} KiB{})",
            times[19],
            times[39],
            size / 1024,
            if gzip { " gzip" } else { "" }
        );
    }
}
