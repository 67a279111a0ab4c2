//! Change propagation in a pair: an edit made on lb1 until it is served,
//! tandem against keepalived in the same run on the same netns topology.
//!
//! - tandem: the new file handed to lb1's tandem-clusterd (what `tandem
//!   config apply` and the web UI do); it is checked on both directors,
//!   written and reloaded on both, and the master holds the new VIP.
//! - keepalived (which has no sync: operators copy the file and reload each
//!   box): the file written on both, SIGHUP to both, until the master holds
//!   the new VIP. A copy here is a local write; over ssh it would cost more.
//!
//! Each edit adds one more VIP; `TANDEM_BENCH_RUNS` edits (50). Prints
//! p50 and p99 of both and their ratio; the target is p99 under 1 s.
//!
//! Run as root: `cargo bench -p tandem-tests --bench cluster_sync`.

use std::time::{Duration, Instant};

use tandem_model::control::Client;
use tandem_model::sync::{ApplyRequest, ApplyResult};
use tandem_tests::cluster::{Keepalived, has_addr, keepalived_instance, net};
use tandem_tests::netns::wait_until;
use tandem_tests::sync::{block_on, cluster_head, directors};

fn runs() -> usize {
    std::env::var("TANDEM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn vips(n: usize) -> Vec<String> {
    (0..=n).map(|i| format!("10.77.0.{}/24", 100 + i)).collect()
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn tandem(edits: usize) -> Vec<Duration> {
    let net = net("bench-sync", 2).expect("root and network namespaces");
    let head = cluster_head(&net.lab, 2);
    let text = |n: usize| {
        let v: Vec<String> = vips(n).iter().map(|v| format!("\"{v}\"")).collect();
        format!(
            "{head}[[vrrp_instance]]\nname = \"web\"\ninterface = \"eth0\"\nvrid = 51\npriority = {{ lb1 = 150, lb2 = 100 }}\nvirtual_ips = [{}]\n",
            v.join(", ")
        )
    };
    let mut ds = directors(&net, &text(0));
    for d in &mut ds {
        d.start_clusterd(&net.lab);
        d.start_vrrpd(&net.lab);
    }
    assert!(
        wait_until(Duration::from_secs(20), || has_addr(
            &net.lab,
            &net.directors[0],
            "eth0",
            "10.77.0.100"
        ))
        .is_some()
    );
    let c = Client::new(ds[0].dir.join("clusterd.sock"));
    let mut out = Vec::new();
    for n in 1..=edits {
        let t = text(n);
        let new_vip = format!("10.77.0.{}", 100 + n);
        let start = Instant::now();
        let r: ApplyResult = block_on(c.post(
            "/config",
            &ApplyRequest {
                text: t.clone(),
                author: "bench".into(),
                comment: String::new(),
                base: None,
                resolve: false,
            },
        ))
        .expect("clusterd answers");
        assert!(r.applied, "{}", r.render());
        wait_until(Duration::from_secs(10), || {
            has_addr(&net.lab, &net.directors[0], "eth0", &new_vip)
        })
        .expect("the master holds the new VIP");
        out.push(start.elapsed());
        assert_eq!(ds[1].file(), t);
    }
    out
}

fn keepalived(edits: usize) -> Vec<Duration> {
    let net = net("bench-sync-ka", 2).expect("root and network namespaces");
    let conf = |prio: u8, n: usize| {
        let v = vips(n);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        keepalived_instance("web", 51, prio, 3, "1", &v, "")
    };
    let ka = [
        Keepalived::start(&net.lab, &net.directors[0], &conf(150, 0)),
        Keepalived::start(&net.lab, &net.directors[1], &conf(100, 0)),
    ];
    assert!(
        wait_until(Duration::from_secs(20), || has_addr(
            &net.lab,
            &net.directors[0],
            "eth0",
            "10.77.0.100"
        ))
        .is_some(),
        "{}",
        ka[0].log()
    );
    let mut out = Vec::new();
    for n in 1..=edits {
        let new_vip = format!("10.77.0.{}", 100 + n);
        let start = Instant::now();
        for (k, prio) in ka.iter().zip([150, 100]) {
            std::fs::write(k.conf_path(), conf(prio, n)).unwrap();
            k.reload();
        }
        wait_until(Duration::from_secs(10), || {
            has_addr(&net.lab, &net.directors[0], "eth0", &new_vip)
        })
        .unwrap_or_else(|| panic!("keepalived did not take the edit:\n{}", ka[0].log()));
        out.push(start.elapsed());
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let edits = runs();
    let t = tandem(edits);
    let k = keepalived(edits);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "change propagation in a pair, {edits} edits (each adds a VIP), until the master serves it:"
    );
    println!("{:<42} {:>9} {:>9}", "", "p50", "p99");
    for (name, v) in [
        (
            "tandem (apply on lb1: checked, written, reloaded on both)",
            &t,
        ),
        ("keepalived (file written on both, SIGHUP to both)", &k),
    ] {
        println!(
            "{name:<42}\n{:<42} {:>7.1} ms {:>7.1} ms",
            "",
            ms(percentile(v.clone(), 0.5)),
            ms(percentile(v.clone(), 0.99))
        );
    }
    let (t99, k99) = (percentile(t.clone(), 0.99), percentile(k.clone(), 0.99));
    println!(
        "ratio tandem / keepalived: p50 {:.2}, p99 {:.2}; target p99 < 1000 ms: {}",
        ms(percentile(t, 0.5)) / ms(percentile(k, 0.5)),
        ms(t99) / ms(k99),
        if t99 < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}
