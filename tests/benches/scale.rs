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

use std::collections::BTreeSet;
use std::fmt::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use healthd::dataplane::{SyncRequest, sync_once};
use healthd::engine::Engine;
use ipvsctl::memory::Memory;
use ipvsctl::types::Table;
use tandem_model::api::HealthdStatus;
use tandem_model::config::{self, Config};
use tandem_tests::fake::{self, FakeDaemons};
use tandem_tests::webui::WebUi;

/// The file: `vss` virtual servers sharing `rss` real servers as evenly
/// as they go (#2318: 16 or 17 each), NAT, TCP checks every 10 s, and
/// `extra` more real servers, one each for the first virtual servers.
/// `weight_of(n)` gives real server n's weight.
fn config_text(vss: usize, rss: usize, extra: usize, weight_of: &dyn Fn(usize) -> u32) -> String {
    let mut s = String::with_capacity(rss * 80);
    let mut next = 0;
    for v in 0..vss {
        let per = rss / vss + usize::from(v < rss % vss);
        let mine: Vec<usize> = (next..next + per)
            .chain((v < extra).then_some(rss + v))
            .collect();
        next += per;
        let _ = write!(
            s,
            "[[virtual_server]]\nname = \"vs{v}\"\naddress = \"10.{}.{}.1:80\"\nscheduler = \"wlc\"\nforwarding = \"nat\"\n\
             [virtual_server.check]\ntype = \"tcp\"\ninterval = \"10s\"\ntimeout = \"3s\"\n",
            100 + v / 250,
            v % 250
        );
        for n in mine {
            let _ = write!(
                s,
                "[[virtual_server.real_server]]\naddress = \"10.{}.{}.{}:8080\"\nweight = {}\n",
                200 + n / 62500,
                (n / 250) % 250,
                n % 250 + 1,
                weight_of(n)
            );
        }
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
        );
        let synced = sync_once(&mut self.memory, &req).expect("the memory dataplane takes it");
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
    let (c, parse): (Config, _) = timed(|| config::parse(&text, "scale.toml").expect("valid"));
    let _ = writeln!(report, "  parse and validate          {:>10}", ms(parse));
    let (engine, build) = timed(|| {
        Engine::new(&c, Instant::now(), &Table::default(), BTreeSet::new())
            .expect("the engine takes it")
    });
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
    };
    let (ops, first) = timed(|| hd.sync());
    let _ = writeln!(
        report,
        "  program from empty          {:>10}  ({ops} operations)",
        ms(first)
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
        ("/virtual-servers?q=10.200.100.7", false),
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
