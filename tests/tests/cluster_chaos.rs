//! The cluster under chaos, in network namespaces: three directors, each
//! with tandem-clusterd and vrrpd, and a web UI over lb2's sockets, while
//! a seeded schedule changes the file from every director and from the
//! web UI, kills clusterd (a peer, or the director coordinating the
//! change) in the middle of a change, cuts a director off and edits on
//! one or both sides, restarts a director while the others change the
//! file, and sends files that one director or all refuse and edits based
//! on a version that is no longer current.
//!
//! After each step, once the cluster settles: one version on every
//! director (same id, same bytes), every vrrpd running it, lb1 alone
//! master. And nothing lost: no version leaves a director's history,
//! every director that said it applied a version still holds it, and
//! every acknowledged version is an ancestor of the current one (an undo
//! or a resolution descends from what it replaces; nothing is rewound).
//! A refused change leaves every version and every file as they were.
//!
//! `TANDEM_CHAOS_SEED` replays a schedule (every run prints its seed);
//! `TANDEM_CHAOS_STEPS` sets its length (12 by default: every kind of
//! fault once, then four drawn).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use tandem_cluster::ledger::content_digest;
use tandem_model::api::{VrrpState, VrrpdStatus};
use tandem_model::sync::{ApplyRequest, ApplyResult, ClusterStatus, NodeOutcome, SyncState};
use tandem_tests::chaos::{Memory, Rng};
use tandem_tests::cluster::{Net, net};
use tandem_tests::netns::wait_until;
use tandem_tests::sync::{Director, block_on, cluster_head, directors};
use tandem_tests::webui::WebUi;

const N: usize = 3;
/// A change reaching every director, a returning one catching up
/// (clusterd asks every second) and its vrrpd starting after it.
const SETTLE: Duration = Duration::from_secs(30);
const KINDS: u64 = 8;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A change made on one director.
    Apply { on: usize },
    /// A change on one director while another's clusterd is killed
    /// with SIGKILL some milliseconds into it.
    KillPeerDuringApply {
        on: usize,
        victim: usize,
        after_ms: u64,
    },
    /// A change whose coordinator's clusterd is killed some
    /// milliseconds into it, and started again.
    KillCoordinatorDuringApply { on: usize, after_ms: u64 },
    /// One director cut off; a change on another; the cut healed.
    EditWhileCutOff { away: usize, on: usize },
    /// One director cut off; a change on each side: a conflict,
    /// resolved from `from` by taking one side.
    ConflictThenResolve {
        away: usize,
        on: usize,
        take_away: bool,
        from: usize,
    },
    /// A file refused: by every director (`everywhere`) or by one that
    /// lacks its interface.
    Refused { on: usize, everywhere: bool },
    /// A change through the web UI's API, then one based on the version
    /// it replaced (refused).
    WebUiEditThenStale,
    /// One director's daemons stopped; a change elsewhere; the director
    /// started again (clusterd first, its vrrpd waiting for it).
    RestartDirector { which: usize, on: usize },
}

fn other(rng: &mut Rng, not: usize) -> usize {
    (not + 1 + rng.below(N as u64 - 1) as usize) % N
}

fn fault(kind: u64, rng: &mut Rng) -> Fault {
    let d = rng.below(N as u64) as usize;
    match kind {
        0 => Fault::Apply { on: d },
        1 => Fault::KillPeerDuringApply {
            on: d,
            victim: other(rng, d),
            after_ms: rng.below(45),
        },
        2 => Fault::KillCoordinatorDuringApply {
            on: d,
            after_ms: rng.below(45),
        },
        3 => Fault::EditWhileCutOff {
            away: d,
            on: other(rng, d),
        },
        4 => Fault::ConflictThenResolve {
            away: d,
            on: other(rng, d),
            take_away: rng.below(2) == 0,
            from: rng.below(N as u64) as usize,
        },
        5 => Fault::Refused {
            on: d,
            everywhere: rng.below(2) == 0,
        },
        6 => Fault::WebUiEditThenStale,
        _ => Fault::RestartDirector {
            which: d,
            on: other(rng, d),
        },
    }
}

fn name(i: usize) -> String {
    format!("lb{}", i + 1)
}

/// A version that was acknowledged: applied, by these directors.
struct Acked {
    id: String,
    what: String,
    nodes: Vec<String>,
}

struct Soak {
    net: Net,
    ds: Vec<Director>,
    head: String,
    edits: u32,
    acked: Vec<Acked>,
    /// Every version id each director's history ever showed.
    seen: Vec<BTreeSet<String>>,
    journal: String,
    /// Restarts that finished a change cut off mid-write.
    recovered: u32,
}

/// The VIPs a file gives instance "web".
fn vips_in(text: &str) -> BTreeSet<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("virtual_ips = ["))
        .map(|l| {
            l.trim_end_matches(']')
                .split(',')
                .map(|v| {
                    v.trim()
                        .trim_matches('"')
                        .trim_end_matches("/24")
                        .to_string()
                })
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn instance(vips: &[String], interface: &str) -> String {
    let vips: Vec<String> = vips.iter().map(|v| format!("\"{v}/24\"")).collect();
    format!(
        "[[vrrp_instance]]\nname = \"web\"\ninterface = {interface}\nvrid = 51\npriority = {{ lb1 = 150, lb2 = 140, lb3 = 130 }}\nvirtual_ips = [{}]\nadvert_interval = \"200ms\"\n",
        vips.join(", ")
    )
}

fn users() -> String {
    format!(
        "[[webui.user]]\nname = \"ada\"\npassword_hash = \"{}\"\nrole = \"admin\"\n",
        webui::auth::hash_password("admin-pw").unwrap()
    )
}

impl Soak {
    /// A new file: a comment naming the edit (so every edit is a new
    /// content) and one to four VIPs drawn.
    fn edit(&mut self, rng: &mut Rng, interface: &str) -> String {
        self.edits += 1;
        let mut vips = vec!["10.77.0.100".to_string()];
        for k in 101..104 {
            if rng.below(2) == 0 {
                vips.push(format!("10.77.0.{k}"));
            }
        }
        format!(
            "# edit {}\n{}{}\n{}",
            self.edits,
            self.head,
            instance(&vips, interface),
            users()
        )
    }

    fn apply(&self, on: usize, text: &str, comment: &str) -> Result<ApplyResult, String> {
        let req = ApplyRequest {
            text: text.to_string(),
            author: "chaos".into(),
            comment: comment.to_string(),
            base: None,
            resolve: false,
        };
        block_on(
            self.ds[on]
                .clusterd_client()
                .post::<_, ApplyResult>("/config", &req),
        )
        .map_err(|e| e.to_string())
    }

    /// A change on `on` while director `victim`'s clusterd is killed
    /// with SIGKILL `after_ms` into it (`victim` may be `on`).
    fn apply_killing(
        &self,
        on: usize,
        text: &str,
        comment: &str,
        victim: usize,
        after_ms: u64,
    ) -> Result<ApplyResult, String> {
        let pid = self.ds[victim].clusterd_pid().expect("a clusterd");
        std::thread::scope(|s| {
            let t = s.spawn(|| self.apply(on, text, comment));
            std::thread::sleep(Duration::from_millis(after_ms));
            // SAFETY: a signal to a child process of this test.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            t.join().unwrap()
        })
    }

    /// Records an applied change; returns whether it was.
    fn ack(&mut self, r: &ApplyResult, what: &str) -> bool {
        if !r.applied {
            return false;
        }
        let v = r
            .version
            .as_ref()
            .expect("an applied change names its version");
        let nodes: Vec<String> = r
            .nodes
            .iter()
            .filter(|n| n.outcome == NodeOutcome::Applied)
            .map(|n| n.node.clone())
            .collect();
        let _ = writeln!(
            self.journal,
            "         {what}: {} applied on {nodes:?}",
            v.short()
        );
        self.acked.push(Acked {
            id: v.id.clone(),
            what: what.to_string(),
            nodes,
        });
        true
    }

    fn must_apply(&mut self, on: usize, text: &str, what: &str) -> ApplyResult {
        let r = self
            .apply(on, text, what)
            .unwrap_or_else(|e| panic!("{what} on {}: {e}\n{}", name(on), self.logs()));
        assert!(
            self.ack(&r, what),
            "{what} on {} was not applied:\n{}\n{}\n{}",
            name(on),
            r.render(),
            self.journal,
            self.logs()
        );
        r
    }

    fn statuses(&self) -> Result<Vec<ClusterStatus>, String> {
        self.ds
            .iter()
            .map(|d| {
                block_on(d.clusterd_client().get::<ClusterStatus>("/status"))
                    .map_err(|e| format!("{}'s clusterd: {e}", d.host.name))
            })
            .collect()
    }

    /// One version everywhere, run by every vrrpd, lb1 alone master.
    fn settled(&self) -> Result<Vec<ClusterStatus>, String> {
        let sts = self.statuses()?;
        for st in &sts {
            if st.state != SyncState::InSync {
                return Err(format!("{} is {:?}: {}", st.node, st.state, st.detail));
            }
        }
        let v = &sts[0].version;
        for st in &sts[1..] {
            if st.version.id != v.id {
                return Err(format!(
                    "lb1 holds {}, {} holds {}",
                    v.short(),
                    st.node,
                    st.version.short()
                ));
            }
        }
        let file = self.ds[0].file();
        if content_digest(&file) != v.content {
            return Err(format!("lb1's file is not version {}", v.short()));
        }
        let want = vips_in(&file);
        for (i, d) in self.ds.iter().enumerate() {
            if d.file() != file {
                return Err(format!("{}'s file differs from lb1's", name(i)));
            }
            let st: VrrpdStatus = block_on(d.vrrpd_client().get("/status"))
                .map_err(|e| format!("{}'s vrrpd: {e}", name(i)))?;
            let inst = st
                .instances
                .iter()
                .find(|x| x.name == "web")
                .ok_or_else(|| format!("{}'s vrrpd has no instance web", name(i)))?;
            let runs: BTreeSet<String> = inst
                .virtual_ips
                .iter()
                .map(|a| a.to_string().trim_end_matches("/24").to_string())
                .collect();
            if runs != want {
                return Err(format!(
                    "{}'s vrrpd runs VIPs {runs:?}, the file says {want:?}",
                    name(i)
                ));
            }
            let role = if i == 0 {
                VrrpState::Master
            } else {
                VrrpState::Backup
            };
            if inst.state != role {
                return Err(format!("{} is {}, want {role}", name(i), inst.state));
            }
        }
        Ok(sts)
    }

    fn wait_settled(&self, step: usize, fault: Fault, seed: u64) -> Vec<ClusterStatus> {
        let mut last = Err(String::new());
        let took = wait_until(SETTLE, || {
            last = self.settled();
            if last.is_err() {
                std::thread::sleep(Duration::from_millis(200));
            }
            last.is_ok()
        });
        match (took, last) {
            (Some(_), Ok(sts)) => sts,
            (_, r) => panic!(
                "step {step} ({fault:?}, seed {seed}): not settled after {SETTLE:?}: {:?}\n{}\n{}",
                r.err(),
                self.journal,
                self.logs()
            ),
        }
    }

    /// No version left a history; each director that applied an
    /// acknowledged version holds it; each is an ancestor of the head.
    fn nothing_lost(&mut self, sts: &[ClusterStatus]) -> Result<(), String> {
        let mut parents: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, st) in sts.iter().enumerate() {
            let ids: BTreeSet<String> = st.history.iter().map(|h| h.id.clone()).collect();
            if st.history.len() < tandem_cluster::store::KEEP {
                if let Some(gone) = self.seen[i].difference(&ids).next() {
                    return Err(format!("{}: version {gone} left its history", st.node));
                }
            }
            for a in &self.acked {
                if a.nodes.contains(&st.node) && !ids.contains(&a.id) {
                    return Err(format!(
                        "{} applied {} ({}) and no longer holds it",
                        st.node, a.id, a.what
                    ));
                }
            }
            self.seen[i].extend(ids);
            for h in &st.history {
                parents.insert(h.id.clone(), h.parents.clone());
            }
        }
        let head = &sts[0].version;
        let mut ancestors = BTreeSet::new();
        let mut todo = vec![head.id.clone()];
        while let Some(id) = todo.pop() {
            if ancestors.insert(id.clone()) {
                todo.extend(parents.get(&id).cloned().unwrap_or_default());
            }
        }
        for a in &self.acked {
            if !ancestors.contains(&a.id) {
                return Err(format!(
                    "{} ({}) is not an ancestor of the current version {}: it was rewound",
                    a.id,
                    a.what,
                    head.short()
                ));
            }
        }
        Ok(())
    }

    /// Every director's version and file, to show a refusal moved none.
    fn snapshot(&self) -> Vec<(String, String)> {
        self.statuses()
            .expect("every clusterd answers")
            .into_iter()
            .zip(&self.ds)
            .map(|(st, d)| (st.version.id, d.file()))
            .collect()
    }

    /// Cuts director `away` off from the others (both ways, at every
    /// director); the rest of the segment still reaches it.
    fn cut_off(&self, away: usize, on: bool) {
        for (i, h) in self.net.directors.iter().enumerate() {
            if !on {
                self.net.lab.undrop(h);
                continue;
            }
            let peers: Vec<String> = (0..N)
                .filter(|&j| if i == away { j != away } else { j == away })
                .map(|j| format!("10.77.0.{}", j + 1))
                .collect();
            let set = peers.join(", ");
            self.net.lab.nft(
                h,
                &format!(
                    "table inet tandem_test {{\n\
                     chain in {{ type filter hook input priority -300; ip saddr {{ {set} }} drop; }}\n\
                     chain out {{ type filter hook output priority -300; ip daddr {{ {set} }} drop; }}\n\
                     }}\n"
                ),
            );
        }
    }

    fn logs(&self) -> String {
        self.ds.iter().map(Director::logs).collect()
    }
}

/// One HTTP/1.1 request to the web UI, basic auth; the status and body.
fn http(ui: &WebUi, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, String) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("ada:admin-pw");
    let host = ui.url.trim_start_matches("http://").trim_end_matches('/');
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(host).expect("the web UI");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // A chunked answer: the JSON sits between the chunk sizes.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a <= b => body[a..=b].to_string(),
        _ => body.to_string(),
    };
    (status, body)
}

#[test]
fn a_cluster_under_a_seeded_schedule_of_faults_keeps_one_version_and_loses_none() {
    let seed = Rng::seed_from_env();
    let steps = Rng::steps_from_env(12);
    let Some(net) = net("cluster-chaos", N) else {
        return;
    };
    eprintln!("cluster chaos: TANDEM_CHAOS_SEED={seed} TANDEM_CHAOS_STEPS={steps}");
    let mut rng = Rng(seed);
    let head = cluster_head(&net.lab, N);
    let first = format!(
        "{head}{}\n{}",
        instance(&["10.77.0.100".to_string()], "\"eth0\""),
        users()
    );
    let mut ds = directors(&net, &first);
    for d in &mut ds {
        d.start_clusterd(&net.lab);
    }
    for d in &mut ds {
        d.start_vrrpd(&net.lab);
    }
    let ui = WebUi::start(&ds[1].config, &ds[1].dir);
    let mut soak = Soak {
        net,
        ds,
        head,
        edits: 0,
        acked: Vec::new(),
        seen: vec![BTreeSet::new(); N],
        journal: String::new(),
        recovered: 0,
    };
    let kinds = rng.kinds(KINDS, steps);
    let faults: Vec<Fault> = kinds.into_iter().map(|k| fault(k, &mut rng)).collect();
    let sts = soak.wait_settled(0, faults[0], seed);
    soak.nothing_lost(&sts).unwrap();
    let mut memory = Memory::default();
    let started = Instant::now();

    for (step, &fault) in faults.iter().enumerate() {
        let _ = writeln!(
            soak.journal,
            "{:6.1}s step {step}: {fault:?}",
            started.elapsed().as_secs_f64()
        );
        eprintln!("cluster chaos step {step}: {fault:?}");
        match fault {
            Fault::Apply { on } => {
                let text = soak.edit(&mut rng, "\"eth0\"");
                soak.must_apply(on, &text, &format!("step {step}"));
            }
            Fault::KillPeerDuringApply {
                on,
                victim,
                after_ms,
            } => {
                let text = soak.edit(&mut rng, "\"eth0\"");
                let r = soak.apply_killing(on, &text, &format!("step {step}"), victim, after_ms);
                // A director that dies takes nothing with it: the others
                // take the change and it catches up when it returns.
                let r = r.unwrap_or_else(|e| panic!("step {step}: {e}\n{}", soak.logs()));
                assert!(
                    soak.ack(&r, &format!("step {step}")),
                    "step {step}: a change failed because {} died during it:\n{}\n{}",
                    name(victim),
                    r.render(),
                    soak.logs()
                );
                soak.ds[victim].kill_clusterd();
                std::thread::sleep(rng.ms(200, 2000));
                soak.ds[victim].start_clusterd(&soak.net.lab);
            }
            Fault::KillCoordinatorDuringApply { on, after_ms } => {
                let text = soak.edit(&mut rng, "\"eth0\"");
                let r = soak.apply_killing(on, &text, &format!("step {step}"), on, after_ms);
                // Applied before the kill: acknowledged. Cut off by it:
                // taken by all or by none, and no director holds the
                // others back.
                match r {
                    Ok(r) => {
                        soak.ack(&r, &format!("step {step}"));
                    }
                    Err(e) => {
                        let _ = writeln!(soak.journal, "         the apply ended with: {e}");
                    }
                }
                soak.ds[on].kill_clusterd();
                std::thread::sleep(rng.ms(200, 2000));
                soak.ds[on].start_clusterd(&soak.net.lab);
                if soak.ds[on]
                    .clusterd_log()
                    .contains("finished taking version")
                {
                    soak.recovered += 1;
                    let _ = writeln!(
                        soak.journal,
                        "         {} finished at its start the version it had written",
                        name(on)
                    );
                }
                // The cluster takes a change again right away.
                let sts = soak.wait_settled(step, fault, seed);
                soak.nothing_lost(&sts)
                    .unwrap_or_else(|e| panic!("step {step}: {e}\n{}", soak.journal));
                let next = soak.edit(&mut rng, "\"eth0\"");
                soak.must_apply(other(&mut rng, on), &next, &format!("step {step}, after"));
            }
            Fault::EditWhileCutOff { away, on } => {
                soak.cut_off(away, true);
                let text = soak.edit(&mut rng, "\"eth0\"");
                let r = soak.must_apply(on, &text, &format!("step {step}"));
                assert!(
                    r.nodes
                        .iter()
                        .any(|n| n.node == name(away) && n.outcome == NodeOutcome::Unreachable),
                    "step {step}: {} cut off, yet:\n{}",
                    name(away),
                    r.render()
                );
                std::thread::sleep(rng.ms(500, 3000));
                soak.cut_off(away, false);
            }
            Fault::ConflictThenResolve {
                away,
                on,
                take_away,
                from,
            } => {
                soak.cut_off(away, true);
                let a = soak.edit(&mut rng, "\"eth0\"");
                soak.must_apply(away, &a, &format!("step {step}, cut off"));
                let b = soak.edit(&mut rng, "\"eth0\"");
                soak.must_apply(on, &b, &format!("step {step}, the rest"));
                soak.cut_off(away, false);
                let conflict = wait_until(SETTLE, || {
                    soak.statuses()
                        .is_ok_and(|sts| sts.iter().all(|s| s.state == SyncState::Conflict))
                });
                assert!(
                    conflict.is_some(),
                    "step {step}: no conflict everywhere: {:?}\n{}",
                    soak.statuses().map(|s| s
                        .into_iter()
                        .map(|s| (s.node, s.state, s.detail))
                        .collect::<Vec<_>>()),
                    soak.logs()
                );
                let take = name(if take_away { away } else { on });
                let (ok, out) =
                    soak.ds[from].tandem(&soak.net.lab, &["config", "resolve", "--take", &take]);
                assert!(
                    ok,
                    "step {step}: resolve on {}: {out}\n{}",
                    name(from),
                    soak.logs()
                );
                let _ = writeln!(
                    soak.journal,
                    "         resolved on {} taking {take}",
                    name(from)
                );
            }
            Fault::Refused { on, everywhere } => {
                let before = soak.snapshot();
                let text = if everywhere {
                    format!(
                        "{}[[vrrp_instance]]\nname = 7\n",
                        soak.edit(&mut rng, "\"eth0\"")
                    )
                } else {
                    // Valid as a file, but one director has no eth9.
                    let odd = rng.below(N as u64) as usize;
                    let per: Vec<String> = (0..N)
                        .map(|i| {
                            format!(
                                "{} = \"{}\"",
                                name(i),
                                if i == odd { "eth9" } else { "eth0" }
                            )
                        })
                        .collect();
                    soak.edit(&mut rng, &format!("{{ {} }}", per.join(", ")))
                };
                let r = soak
                    .apply(on, &text, &format!("step {step}"))
                    .unwrap_or_else(|e| panic!("step {step}: {e}"));
                assert!(
                    !r.applied,
                    "step {step}: a refused file was applied:\n{}",
                    r.render()
                );
                assert_eq!(
                    soak.snapshot(),
                    before,
                    "step {step}: a refused change moved a version or a file:\n{}",
                    r.render()
                );
            }
            Fault::WebUiEditThenStale => {
                let (status, body) = http(&ui, "GET", "/api/v1/config", None);
                assert_eq!(status, 200, "{body}");
                let cur: serde_json::Value = serde_json::from_str(&body).unwrap();
                let base = cur["version"].as_str().unwrap().to_string();
                let text = soak.edit(&mut rng, "\"eth0\"");
                let (status, body) = http(
                    &ui,
                    "POST",
                    "/api/v1/config",
                    Some(&serde_json::json!({ "text": text, "base_version": base })),
                );
                assert_eq!(
                    status,
                    200,
                    "step {step}: the web UI's change: {body}\n{}",
                    ui.log()
                );
                let r: ApplyResult = serde_json::from_str(&body).unwrap();
                assert!(soak.ack(&r, &format!("step {step}, web UI")), "{body}");
                // The same base again: someone changed the file since.
                let before = soak.snapshot();
                let stale = soak.edit(&mut rng, "\"eth0\"");
                let (status, body) = http(
                    &ui,
                    "POST",
                    "/api/v1/config",
                    Some(&serde_json::json!({ "text": stale, "base_version": base })),
                );
                assert_eq!(status, 409, "step {step}: a stale edit: {body}");
                assert_eq!(
                    soak.snapshot(),
                    before,
                    "step {step}: a stale edit moved something"
                );
            }
            Fault::RestartDirector { which, on } => {
                soak.ds[which].stop_vrrpd();
                soak.ds[which].stop_clusterd();
                let text = soak.edit(&mut rng, "\"eth0\"");
                soak.must_apply(on, &text, &format!("step {step}, {} away", name(which)));
                std::thread::sleep(rng.ms(200, 2000));
                let lab = &soak.net.lab;
                soak.ds[which].start_clusterd(lab);
                soak.ds[which].start_vrrpd(lab);
            }
        }
        let sts = soak.wait_settled(step, fault, seed);
        soak.nothing_lost(&sts).unwrap_or_else(|e| {
            panic!(
                "step {step} ({fault:?}, seed {seed}): {e}\n{}",
                soak.journal
            )
        });
        for (i, d) in soak.ds.iter().enumerate() {
            if let Some(pid) = d.clusterd_pid() {
                memory.look(format!("{} clusterd", name(i)), pid);
            }
        }
    }
    let dropped: usize = soak
        .ds
        .iter()
        .map(|d| d.clusterd_log().matches("is in no change").count())
        .sum();
    eprintln!(
        "cluster chaos: seed {seed}, {steps} faults in {:.0}s, {} versions acknowledged, none lost; {} changes finished at a restart, {dropped} holds of a killed coordinator dropped\n{}",
        started.elapsed().as_secs_f64(),
        soak.acked.len(),
        soak.recovered,
        soak.journal
    );
    memory.assert_flat(seed);
}
