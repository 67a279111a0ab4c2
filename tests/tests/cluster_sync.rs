//! The cluster file kept in sync by tandem-clusterd between directors in
//! network namespaces: edits reach every director or none, a returning
//! director catches up before it may preempt, a partition's two edits
//! are a conflict until an administrator resolves it, and the channel
//! refuses whoever is not a director of this cluster.

use std::time::{Duration, Instant};

use tandem_cluster::identity::Identity;
use tandem_cluster::wire::{Answer, Request};
use tandem_model::api::{EventKind, VrrpState};
use tandem_model::sync::{Relation, SyncState};
use tandem_tests::cluster::{Net, net};
use tandem_tests::netns::wait_until;
use tandem_tests::sync::{Director, block_on, cluster_head, directors, in_netns};

const T: Duration = Duration::from_secs(20);

fn instance(priorities: &str, vips: &[&str], interface: &str) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("\"{v}\"")).collect();
    format!(
        "[[vrrp_instance]]\nname = \"web\"\ninterface = {interface}\nvrid = 51\npriority = {priorities}\nvirtual_ips = [{}]\nadvert_interval = \"200ms\"\n",
        vips.join(", ")
    )
}

fn priorities(n: usize) -> String {
    let v: Vec<String> = (1..=n)
        .map(|i| format!("lb{i} = {}", 160 - 10 * i))
        .collect();
    format!("{{ {} }}", v.join(", "))
}

/// Every director up with clusterd and vrrpd, in sync.
fn up(net: &Net, text: &str) -> Vec<Director> {
    let mut ds = directors(net, text);
    for d in &mut ds {
        d.start_clusterd(&net.lab);
    }
    for d in &mut ds {
        d.start_vrrpd(&net.lab);
    }
    wait_in_sync(&ds);
    ds
}

fn wait_in_sync(ds: &[Director]) {
    let ok = wait_until(T, || {
        ds.iter().all(|d| d.status().state == SyncState::InSync)
    });
    assert!(
        ok.is_some(),
        "not in sync: {:#?}\n{}",
        ds.iter()
            .map(|d| (d.host.name.clone(), d.status().detail))
            .collect::<Vec<_>>(),
        ds.iter().map(Director::logs).collect::<String>()
    );
}

fn write_new(net: &Net, name: &str, text: &str) -> String {
    let p = net.lab.dir().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn vips_of(d: &Director) -> Vec<String> {
    d.vrrpd_status()
        .instances
        .iter()
        .find(|i| i.name == "web")
        .map(|i| i.virtual_ips.iter().map(|v| v.to_string()).collect())
        .unwrap_or_default()
}

fn an_edit_on_lb1_reaches_every_director(n: usize, test: &str) {
    let Some(net) = net(test, n) else {
        return;
    };
    let head = cluster_head(&net.lab, n);
    let before = format!(
        "{head}{}",
        instance(&priorities(n), &["10.77.0.100/24"], "\"eth0\"")
    );
    let ds = up(&net, &before);
    let after = format!(
        "{head}{}",
        instance(
            &priorities(n),
            &["10.77.0.100/24", "10.77.0.101/24"],
            "\"eth0\""
        )
    );
    let file = write_new(&net, "new.toml", &after);
    let start = Instant::now();
    let (ok, out) = ds[0].tandem(
        &net.lab,
        &["config", "apply", &file, "--comment", "a second VIP"],
    );
    assert!(
        ok,
        "apply failed: {out}\n{}",
        ds.iter().map(Director::logs).collect::<String>()
    );
    // Taken by all or none: when the command returns, every file is it.
    for d in &ds {
        assert_eq!(d.file(), after, "the file on {}", d.host.name);
    }
    let reloaded = wait_until(
        Duration::from_secs(2).saturating_sub(start.elapsed()),
        || ds.iter().all(|d| vips_of(d).len() == 2),
    );
    assert!(
        reloaded.is_some(),
        "not every vrrpd runs the new file within 2 s: {:?}",
        ds.iter().map(vips_of).collect::<Vec<_>>()
    );
    let v = ds[0].status().version;
    assert_eq!(v.comment, "a second VIP");
    assert_eq!(v.node, "lb1");
    for d in &ds[1..] {
        assert_eq!(d.status().version, v, "the version on {}", d.host.name);
        assert!(
            d.clusterd_events().iter().any(|e| matches!(&e.kind,
                EventKind::ConfigVersion { version, how, .. } if *version == v.id && how == "applied")),
            "{} has no event for the version",
            d.host.name
        );
        assert!(out.contains(&format!("{}: applied", d.host.name)), "{out}");
    }
    wait_in_sync(&ds);
    // The previous version is kept in the history on every director.
    for d in &ds {
        let h = d.status().history;
        assert!(h.len() >= 2 && h[0].id == v.id, "{}: {h:?}", d.host.name);
    }
}

#[test]
fn an_edit_on_lb1_is_on_both_directors_of_a_pair_and_reloaded() {
    an_edit_on_lb1_reaches_every_director(2, "sync-pair");
}

#[test]
fn an_edit_on_lb1_is_on_all_three_directors_and_reloaded() {
    an_edit_on_lb1_reaches_every_director(3, "sync-three");
}

#[test]
fn a_director_that_refuses_the_file_changes_nothing_anywhere() {
    let Some(net) = net("sync-refuse", 2) else {
        return;
    };
    let head = cluster_head(&net.lab, 2);
    let before = format!(
        "{head}{}",
        instance(&priorities(2), &["10.77.0.100/24"], "\"eth0\"")
    );
    let ds = up(&net, &before);
    let v0 = ds[0].status().version;
    // Good for lb1, and valid as a file: but lb2 has no eth9.
    let after = format!(
        "{head}{}",
        instance(
            &priorities(2),
            &["10.77.0.100/24", "10.77.0.101/24"],
            "{ lb1 = \"eth0\", lb2 = \"eth9\" }"
        )
    );
    let file = write_new(&net, "new.toml", &after);
    let (ok, out) = ds[0].tandem(&net.lab, &["config", "apply", &file]);
    assert!(!ok, "a file lb2 cannot run was applied: {out}");
    let line = after.lines().position(|l| l.contains("eth9")).unwrap() + 1;
    assert!(out.contains("lb2: refused"), "{out}");
    assert!(
        out.contains(&format!("tandem.toml:{line}:")) && out.contains("\"eth9\""),
        "the refusal names lb2's line {line}: {out}"
    );
    assert!(out.contains("lb1: ready, released"), "{out}");
    for d in &ds {
        assert_eq!(d.file(), before, "the file on {} changed", d.host.name);
        assert_eq!(d.status().version.id, v0.id);
        assert_eq!(vips_of(d).len(), 1);
    }
}

#[test]
fn a_returning_director_has_the_new_file_before_it_becomes_master() {
    let Some(net) = net("sync-return", 2) else {
        return;
    };
    let head = cluster_head(&net.lab, 2);
    // lb2 is the preferred master.
    let prio = "{ lb1 = 100, lb2 = 150 }";
    let before = format!("{head}{}", instance(prio, &["10.77.0.100/24"], "\"eth0\""));
    let mut ds = up(&net, &before);
    assert!(wait_until(T, || ds[1].vrrp_state("web") == Some(VrrpState::Master)).is_some());
    // lb2 goes away entirely.
    ds[1].stop_vrrpd();
    ds[1].stop_clusterd();
    assert!(wait_until(T, || ds[0].vrrp_state("web") == Some(VrrpState::Master)).is_some());
    let after = format!(
        "{head}{}",
        instance(prio, &["10.77.0.100/24", "10.77.0.101/24"], "\"eth0\"")
    );
    let file = write_new(&net, "new.toml", &after);
    let (ok, out) = ds[0].tandem(&net.lab, &["config", "apply", &file]);
    assert!(ok && out.contains("lb2: unreachable"), "{out}");
    assert_eq!(
        ds[1].file(),
        before,
        "lb2 is down: its file cannot have changed"
    );
    // lb2 returns. Its vrrpd starts first, as after a crash loop; it must
    // wait for its clusterd to catch up before it may preempt.
    ds[1].spawn_vrrpd(&net.lab);
    std::thread::sleep(Duration::from_millis(500));
    ds[1].start_clusterd(&net.lab);
    let master = wait_until(T, || ds[1].vrrp_state("web") == Some(VrrpState::Master));
    assert!(
        master.is_some(),
        "lb2 did not take over again:\n{}",
        ds[1].logs()
    );
    assert_eq!(ds[1].file(), after);
    let caught_up = ds[1]
        .clusterd_events()
        .into_iter()
        .find(|e| matches!(&e.kind, EventKind::ConfigVersion { how, .. } if how == "caught up"))
        .unwrap_or_else(|| panic!("no catch-up event on lb2:\n{}", ds[1].logs()));
    let vrrp = ds[1].vrrpd_events();
    let became_master = vrrp
        .iter()
        .find(|e| {
            matches!(
                &e.kind,
                EventKind::VrrpTransition {
                    to: VrrpState::Master,
                    ..
                }
            )
        })
        .expect("a transition to master on lb2");
    let started = vrrp
        .iter()
        .find(|e| matches!(&e.kind, EventKind::DaemonStarted { .. }))
        .expect("vrrpd's start event");
    assert!(
        caught_up.at <= started.at && started.at <= became_master.at,
        "lb2 caught up at {}, vrrpd started at {} and became master at {}",
        caught_up.at,
        started.at,
        became_master.at
    );
    // And it became master with the new file: both VIPs.
    assert_eq!(vips_of(&ds[1]).len(), 2);
}

#[test]
fn edits_on_both_sides_of_a_partition_are_a_conflict_until_an_admin_resolves_it() {
    let Some(net) = net("sync-conflict", 2) else {
        return;
    };
    let head = cluster_head(&net.lab, 2);
    let base = format!(
        "{head}{}",
        instance(&priorities(2), &["10.77.0.100/24"], "\"eth0\"")
    );
    let ds = up(&net, &base);
    net.lab.isolate(&net.directors[0], "eth0", true);
    net.lab.isolate(&net.directors[1], "eth0", true);
    let a = format!(
        "{head}{}",
        instance(
            &priorities(2),
            &["10.77.0.100/24", "10.77.0.101/24"],
            "\"eth0\""
        )
    );
    let b = format!(
        "{head}{}",
        instance(
            &priorities(2),
            &["10.77.0.100/24", "10.77.0.102/24"],
            "\"eth0\""
        )
    );
    let fa = write_new(&net, "a.toml", &a);
    let fb = write_new(&net, "b.toml", &b);
    let (ok, out) = ds[0].tandem(&net.lab, &["config", "apply", &fa]);
    assert!(ok && out.contains("lb2: unreachable"), "{out}");
    let (ok, out) = ds[1].tandem(&net.lab, &["config", "apply", &fb]);
    assert!(ok && out.contains("lb1: unreachable"), "{out}");
    net.lab.isolate(&net.directors[0], "eth0", false);
    net.lab.isolate(&net.directors[1], "eth0", false);
    let conflict = wait_until(T, || {
        ds.iter().all(|d| d.status().state == SyncState::Conflict)
    });
    assert!(
        conflict.is_some(),
        "{}",
        ds.iter().map(Director::logs).collect::<String>()
    );
    // Nobody overwrote anybody; each side shows the other's diff.
    assert_eq!(ds[0].file(), a);
    assert_eq!(ds[1].file(), b);
    let c1 = ds[0].status().conflict.unwrap();
    assert_eq!(c1.theirs[0].node, "lb2");
    assert!(
        c1.theirs[0]
            .diff
            .contains("+virtual_ips = [\"10.77.0.100/24\", \"10.77.0.102/24\"]"),
        "{}",
        c1.theirs[0].diff
    );
    let (ok, out) = ds[0].tandem(&net.lab, &["cluster", "status"]);
    assert!(
        !ok && out.contains("CONFLICT") && out.contains("10.77.0.102"),
        "{out}"
    );
    // An ordinary edit does not slip past the conflict.
    let (ok, out) = ds[0].tandem(&net.lab, &["config", "apply", &fb]);
    assert!(!ok && out.contains("resolve it first"), "{out}");
    // The admin keeps lb1's version, from lb2.
    let (ok, out) = ds[1].tandem(&net.lab, &["config", "resolve", "--take", "lb1"]);
    assert!(
        ok,
        "{out}\n{}",
        ds.iter().map(Director::logs).collect::<String>()
    );
    wait_in_sync(&ds);
    assert_eq!(ds[0].file(), a);
    assert_eq!(ds[1].file(), a);
    let v = ds[0].status().version;
    assert_eq!(
        v.parents.len(),
        2,
        "the resolution descends from both sides"
    );
    // lb2's own edit is still in its history.
    assert!(
        ds[1]
            .status()
            .history
            .iter()
            .any(|h| h.content == tandem_cluster::ledger::content_digest(&b))
    );
}

#[test]
fn the_sync_channel_refuses_strangers_altered_and_replayed_bytes_and_vrrp_does_not_notice() {
    let Some(net) = net("sync-hostile", 2) else {
        return;
    };
    let head = cluster_head(&net.lab, 2);
    let text = format!(
        "{head}{}",
        instance(&priorities(2), &["10.77.0.100/24"], "\"eth0\"")
    );
    let ds = up(&net, &text);
    assert!(wait_until(T, || ds[0].vrrp_state("web") == Some(VrrpState::Master)).is_some());
    let transitions = |d: &Director| {
        d.vrrpd_events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::VrrpTransition { .. }))
            .count()
    };
    let (t1, t2) = (transitions(&ds[0]), transitions(&ds[1]));
    let lb1 = "10.77.0.1:7780".parse().unwrap();

    // 1. A stranger that claims to be lb2, with a certificate of its own
    // authority: from an address that is not a director's it is cut off
    // before TLS; from lb2's own box, the handshake fails.
    let rogue_dir = net.lab.dir().join("rogue");
    tandem_cluster::identity::init(&rogue_dir, "lb2").unwrap();
    let rogue = Identity::load(&rogue_dir).unwrap().client;
    let r = rogue.clone();
    let got = in_netns(&net.client, move || {
        block_on(tandem_cluster::peer::call(
            &r,
            None,
            "lb1",
            lb1,
            &Request::Head,
        ))
    });
    assert!(got.is_err(), "a stranger got an answer: {got:?}");
    let got = in_netns(&net.directors[1], move || {
        block_on(tandem_cluster::peer::call(
            &rogue,
            None,
            "lb1",
            lb1,
            &Request::Head,
        ))
    });
    assert!(got.is_err(), "a stranger got an answer: {got:?}");

    // 2. lb2's real identity through a proxy on lb2's box that flips one
    // byte.
    let lb2_id = Identity::load(&ds[1].dir.join("identity")).unwrap().client;
    let tls = lb2_id.clone();
    let got = in_netns(&net.directors[1], move || {
        block_on(async move {
            let proxy = Proxy::start(lb1, Mode::FlipAfter(10)).await;
            tandem_cluster::peer::call(&tls, None, "lb1", proxy.addr, &Request::Head).await
        })
    });
    assert!(got.is_err(), "an altered exchange was answered: {got:?}");

    // 3. A recorded exchange replayed byte for byte.
    let tls = lb2_id.clone();
    in_netns(&net.directors[1], move || {
        block_on(async move {
            let proxy = Proxy::start(lb1, Mode::Record).await;
            let first =
                tandem_cluster::peer::call(&tls, None, "lb1", proxy.addr, &Request::Head).await;
            assert!(matches!(first, Ok(Answer::Head(_))), "{first:?}");
            let recorded = proxy.recorded().await;
            // The server's fresh random makes the old client flight wrong:
            // the handshake fails (counted below), nothing is answered.
            replay(lb1, &recorded).await;
        })
    });

    // 4. A commit of a change lb1 never prepared, with lb2's identity.
    let tls = lb2_id.clone();
    let id = "0".repeat(64);
    let got = in_netns(&net.directors[1], move || {
        block_on(tandem_cluster::peer::call(
            &tls,
            None,
            "lb1",
            lb1,
            &Request::Commit { id },
        ))
    });
    assert!(matches!(got, Ok(Answer::Refused { .. })), "{got:?}");

    let k = wait_until(T, || {
        let k = ds[0].status().counters;
        k.refused_peers >= 1 && k.refused_tls >= 3 && k.stale_messages >= 1
    });
    assert!(k.is_some(), "counters: {:?}", ds[0].status().counters);
    // VRRP did not notice, and the pair is still in sync.
    assert_eq!((transitions(&ds[0]), transitions(&ds[1])), (t1, t2));
    assert_eq!(ds[0].vrrp_state("web"), Some(VrrpState::Master));
    let peer = ds[0]
        .status()
        .peers
        .into_iter()
        .find(|p| p.name == "lb2")
        .unwrap();
    assert_eq!(peer.relation, Some(Relation::Same));
}

// ----- a man in the middle ----------------------------------------------

enum Mode {
    /// Flip the byte this far into what the client sends after its first
    /// flight.
    FlipAfter(usize),
    /// Pass everything; keep what the client sent.
    Record,
}

struct Proxy {
    addr: std::net::SocketAddr,
    recorded: tokio::sync::oneshot::Receiver<Vec<u8>>,
}

impl Proxy {
    async fn start(to: std::net::SocketAddr, mode: Mode) -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, recorded) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (client, _) = l.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(to).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let back = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            });
            let mut seen = Vec::new();
            let mut first = 0usize;
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if first == 0 {
                    first = n;
                }
                let at = seen.len();
                seen.extend_from_slice(&buf[..n]);
                if let Mode::FlipAfter(k) = mode {
                    let target = first + k;
                    if (at..at + n).contains(&target) {
                        buf[target - at] ^= 0x01;
                    }
                }
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = sw.shutdown().await;
            let _ = back.await;
            let _ = tx.send(seen);
        });
        Proxy { addr, recorded }
    }

    async fn recorded(self) -> Vec<u8> {
        self.recorded.await.unwrap()
    }
}

/// Sends `bytes` to `to` as a new connection; returns what came back.
async fn replay(to: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

#[test]
fn a_hand_edit_is_shown_everywhere_and_spreads_only_through_tandem_config_apply() {
    let Some(net) = net("sync-hand", 2) else {
        return;
    };
    let head = cluster_head(&net.lab, 2);
    let base = format!(
        "{head}{}",
        instance(&priorities(2), &["10.77.0.100/24"], "\"eth0\"")
    );
    let ds = up(&net, &base);
    let edited = format!(
        "{head}{}",
        instance(
            &priorities(2),
            &["10.77.0.100/24", "10.77.0.103/24"],
            "\"eth0\""
        )
    );
    std::fs::write(&ds[0].config, &edited).unwrap();
    let shown = wait_until(T, || {
        ds[0].status().state == SyncState::EditedByHand
            && ds[1].status().state == SyncState::EditedByHand
    });
    assert!(
        shown.is_some(),
        "{:?} / {:?}",
        ds[0].status().detail,
        ds[1].status().detail
    );
    assert!(
        ds[1].status().detail.contains("lb1"),
        "lb2 says where: {}",
        ds[1].status().detail
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ds[1].file(),
        base,
        "a hand edit is not propagated by itself"
    );
    // The documented command takes it, for everyone.
    let (ok, out) = ds[0].tandem(&net.lab, &["config", "apply"]);
    assert!(ok, "{out}");
    assert_eq!(ds[1].file(), edited);
    wait_in_sync(&ds);
    assert!(vips_of(&ds[1]).len() == 2);
    // A hand edit can also be dropped.
    std::fs::write(&ds[1].config, "# oops\n").unwrap();
    assert!(wait_until(T, || ds[1].status().state == SyncState::EditedByHand).is_some());
    // The file no longer says where the sockets are: the operator says.
    let dir = ds[1].dir.display().to_string();
    let (ok, out) = ds[1].tandem(&net.lab, &["--socket-dir", &dir, "config", "discard"]);
    assert!(ok, "{out}");
    assert_eq!(ds[1].file(), edited);
    wait_in_sync(&ds);
}
