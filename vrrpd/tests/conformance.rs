//! VRRP behaviour as data: every folder under `tests/conformance/` is one
//! case, a configuration (`config.toml`), what the node is told
//! (`input.jsonl`) and everything it does (`expected.jsonl`), replayed
//! against the sans-IO node on a fake clock, with the virtual IPs placed
//! through the reconciler on interfaces held in memory. The expected files
//! are what RFC 5798 (RFC 3768 for v2), or tandem's README where it goes
//! beyond the RFC, says must happen; `TANDEM_BLESS=1 cargo test -p vrrpd
//! --test conformance` rewrites them after a deliberate change (review
//! every line against the RFC). The JSON shapes are described in
//! `tests/conformance/README.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tandem_model::api::VrrpState;
use tandem_model::config::{self, Config};
use vrrpd::binding::{self, Binding};
use vrrpd::fsm::Action;
use vrrpd::node::{InstanceId, Node, Out};
use vrrpd::packet::{Advert, Drop, V2Auth, Version};
use vrrpd::track::{TrackKind, TrackValue};
use vrrpd::vip::{self, Op, Vip};

/// Timer firings one case may cause: a deadline that never advances would
/// otherwise spin forever.
const MAX_FIRINGS: usize = 100_000;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/conformance exists")
        .map(|e| e.expect("a readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn name_of(case: &Path) -> String {
    case.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string()
}

/// The node of one case with everything around it the daemon would have.
struct World {
    base: Instant,
    node: Node,
    bindings: BTreeMap<InstanceId, Binding>,
    /// Interface states as the links would report them; up unless a
    /// `track` event of kind interface said otherwise.
    links: BTreeMap<String, TrackValue>,
    /// The interfaces' addresses, reconciled as the daemon does.
    plane: vip::Memory,
    started: bool,
    lines: Vec<String>,
}

impl World {
    fn new(config: &Config) -> World {
        let mut node = Node::default();
        let mut bindings = BTreeMap::new();
        for cfg in &config.vrrp_instances {
            let (member, mut b) = binding::build(config, cfg);
            let id = node.add(member);
            // unicast_src is the source whatever the interface holds.
            b.src = cfg.unicast_src;
            bindings.insert(id, b);
        }
        let groups: Vec<(String, Vec<String>)> = config
            .vrrp_sync_groups
            .iter()
            .map(|g| (g.name.clone(), g.instances.clone()))
            .collect();
        node.set_groups(&groups);
        let mut ifnames: BTreeSet<String> = BTreeSet::new();
        for b in bindings.values() {
            ifnames.insert(b.cfg.interface.clone());
            ifnames.extend(b.cfg.track_interfaces.iter().map(|t| t.interface.clone()));
            ifnames.extend(b.vips.iter().map(|v| v.ifname.clone()));
        }
        let names: Vec<&str> = ifnames.iter().map(String::as_str).collect();
        let mut plane = vip::Memory::with_interfaces(&names);
        // An address owner's VIPs are the interface's own addresses.
        for b in bindings.values().filter(|b| b.cfg.address_owner) {
            for v in &b.vips {
                if let Some(addrs) = plane.have.get_mut(&v.ifname) {
                    addrs.push((v.addr, v.prefix_len));
                }
            }
        }
        World {
            base: Instant::now(),
            node,
            bindings,
            links: BTreeMap::new(),
            plane,
            started: false,
            lines: Vec::new(),
        }
    }

    fn id(&self, name: &str) -> Result<InstanceId, String> {
        self.node
            .id(name)
            .ok_or_else(|| format!("no instance {name:?} in config.toml"))
    }

    fn name(&self, id: InstanceId) -> String {
        self.node
            .get(id)
            .map_or_else(|| id.to_string(), |m| m.name.clone())
    }

    fn emit(&mut self, at: Duration, fields: &[(&str, Value)]) {
        let mut s = format!("{{\"at_ms\":{}", ms_value(at));
        for (k, v) in fields {
            write!(s, ",{}:{v}", Value::from(*k)).expect("writing to a string");
        }
        s.push('}');
        self.lines.push(s);
    }

    /// Fires every deadline due at or before `until`.
    fn run_timers(&mut self, until: Duration) -> Result<(), String> {
        for _ in 0..MAX_FIRINGS {
            let Some(deadline) = self.node.next_deadline() else {
                return Ok(());
            };
            let at = deadline.saturating_duration_since(self.base);
            if at > until {
                return Ok(());
            }
            let outs = self.node.on_timer(deadline);
            self.execute(at, outs);
            if self.node.next_deadline().is_some_and(|d| d <= deadline) {
                return Err(format!(
                    "a deadline at {} ms does not advance when it fires",
                    ms_value(at)
                ));
            }
        }
        Err(format!("more than {MAX_FIRINGS} timer firings"))
    }

    /// Carries out the node's outputs as the daemon does, printing each.
    fn execute(&mut self, at: Duration, outs: Vec<Out>) {
        for out in outs {
            match out {
                Out::Instance(id, action) => self.act(at, id, action),
                Out::Group { group, to } => {
                    self.emit(at, &[("group", json!(group)), ("state", state(to))]);
                }
            }
        }
    }

    fn act(&mut self, at: Duration, id: InstanceId, action: Action) {
        let name = self.name(id);
        match action {
            Action::SendAdvert { priority } => self.send_advert(at, id, priority),
            Action::AddAddresses | Action::RemoveAddresses => self.sync_vips(at),
            Action::Announce => {
                let Some(b) = self.bindings.get(&id) else {
                    return;
                };
                let vips: Vec<Value> = b.vips.iter().map(|v| json!(v.addr.to_string())).collect();
                let count = b.cfg.announce_count();
                self.emit(
                    at,
                    &[
                        ("instance", json!(name)),
                        ("sent", json!("announce")),
                        ("vips", Value::Array(vips)),
                        ("count", json!(count)),
                    ],
                );
            }
            Action::Transition { from, to, reason } => self.emit(
                at,
                &[
                    ("instance", json!(name)),
                    ("state", state(to)),
                    ("from", state(from)),
                    ("reason", json!(reason)),
                ],
            ),
            Action::Stopped => {
                self.emit(at, &[("instance", json!(name)), ("stopped", json!(true))]);
            }
        }
    }

    /// The advert the daemon would put on the wire, to each destination.
    fn send_advert(&mut self, at: Duration, id: InstanceId, priority: u8) {
        let name = self.name(id);
        let (Some(b), Some(m)) = (self.bindings.get(&id), self.node.get(id)) else {
            return;
        };
        let Some(src) = b.src else {
            self.emit(
                at,
                &[
                    ("instance", json!(name)),
                    ("unsent", json!("advert")),
                    ("priority", json!(priority)),
                    ("reason", json!("no source address")),
                ],
            );
            return;
        };
        let adv = m.inst.advert(priority);
        let mut lines = Vec::new();
        for dst in &b.dests {
            lines.push(vec![
                ("instance", json!(name)),
                ("sent", json!("advert")),
                ("priority", json!(priority)),
                ("src", json!(src.to_string())),
                ("dst", json!(dst.to_string())),
                (
                    "bytes",
                    json!(hex(&adv.encode_authenticated(src, *dst, &b.auth))),
                ),
            ]);
        }
        for l in lines {
            self.emit(at, &l);
        }
    }

    /// The reconciler with every master's VIPs wanted and every
    /// non-owner VIP managed, as the daemon runs it on each address action.
    fn sync_vips(&mut self, at: Duration) {
        let want = binding::masters_vips(&self.node, &self.bindings);
        let managed = binding::managed_vips(self.bindings.values());
        let outcome = futures::executor::block_on(vip::sync(&mut self.plane, &want, &managed));
        for op in &outcome.applied {
            let (what, v) = match op {
                Op::Add(v) => ("add", v),
                Op::Del(v) => ("remove", v),
            };
            self.emit(at, &vip_fields(what, v));
        }
        for (op, why) in &outcome.failed {
            let mut f = vip_fields("failed", op.vip());
            f.push(("reason", json!(why)));
            self.emit(at, &f);
        }
        for v in &outcome.waiting {
            self.emit(at, &vip_fields("waiting", v));
        }
    }

    /// One line of input.
    fn event(&mut self, at: Duration, kind: &str, body: &Value) -> Result<(), String> {
        let now = self.base + at;
        match kind {
            "startup" => {
                let outs = self.startup(now);
                self.execute(at, outs);
            }
            "local_addr" => {
                let id = self.id(str_field(body, "instance")?)?;
                let addr = match body.get("addr") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(ip_value(v)?),
                };
                let outs = self.set_local_addr(now, id, addr);
                self.execute(at, outs);
            }
            "advert" => self.advert(at, body)?,
            "track" => {
                let kind = track_kind(str_field(body, "kind")?)?;
                let name = str_field(body, "name")?.to_string();
                let value = track_value(body.get("value").ok_or("track without value")?)?;
                if kind == TrackKind::Interface {
                    self.links.insert(name.clone(), value);
                }
                let outs = self.node.set_track(now, kind, &name, value);
                self.execute(at, outs);
            }
            "maintenance" => {
                let id = self.id(str_field(body, "instance")?)?;
                let on = body
                    .get("on")
                    .and_then(Value::as_bool)
                    .ok_or("maintenance needs \"on\": true or false")?;
                let outs = self.node.set_maintenance(now, id, on);
                self.execute(at, outs);
            }
            "shutdown" => {
                let handover = body
                    .get("handover")
                    .and_then(Value::as_bool)
                    .ok_or("shutdown needs \"handover\": true or false")?;
                let outs = self.node.shutdown(now, handover);
                self.execute(at, outs);
            }
            other => return Err(format!("unknown event {other:?}")),
        }
        Ok(())
    }

    /// The daemon's start: every link read (local addresses and the
    /// interfaces' state), then the Startup event.
    fn startup(&mut self, now: Instant) -> Vec<Out> {
        let mut outs = Vec::new();
        let ifnames: BTreeSet<String> = self.plane.have.keys().cloned().collect();
        for name in ifnames {
            for id in binding::on_interface(&self.bindings, &name) {
                let src = self.bindings[&id].src;
                outs.extend(self.apply_local_addr(now, id, src));
            }
            let link = self.links.get(&name).copied().unwrap_or(TrackValue::Ok);
            outs.extend(self.node.set_track(now, TrackKind::Interface, &name, link));
        }
        outs.extend(self.node.startup(now));
        self.started = true;
        outs
    }

    fn set_local_addr(&mut self, now: Instant, id: InstanceId, addr: Option<IpAddr>) -> Vec<Out> {
        if let Some(b) = self.bindings.get_mut(&id) {
            b.src = addr;
        }
        if self.started {
            self.apply_local_addr(now, id, addr)
        } else {
            Vec::new()
        }
    }

    /// As the daemon re-resolves a source address: the state machine's
    /// address, and the always-tracked "usable source address".
    fn apply_local_addr(&mut self, now: Instant, id: InstanceId, src: Option<IpAddr>) -> Vec<Out> {
        let b = &self.bindings[&id];
        let tracker = b.address_tracker();
        let link_exists = self.plane.have.contains_key(&b.cfg.interface);
        if let Some(m) = self.node.get_mut(id) {
            m.inst.set_local_addr(src);
        }
        let v = if src.is_some() && link_exists {
            TrackValue::Ok
        } else {
            TrackValue::Failed
        };
        self.node.set_track(now, TrackKind::Address, &tracker, v)
    }

    /// An advert arrives: the receive checks the daemon makes before the
    /// state machine (VRID, then the message as decoded from its bytes),
    /// then the node.
    fn advert(&mut self, at: Duration, body: &Value) -> Result<(), String> {
        let now = self.base + at;
        let name = str_field(body, "instance")?.to_string();
        let id = self.id(&name)?;
        let from = ip_value(body.get("from").ok_or("advert without \"from\"")?)?;
        let b = &self.bindings[&id];
        let p = self.node.get(id).expect("listed").inst.params().clone();
        let version = match body.get("version").and_then(Value::as_u64) {
            None => p.version,
            Some(2) => Version::V2,
            Some(3) => Version::V3,
            Some(n) => return Err(format!("version {n}: 2 or 3")),
        };
        let vrid = match body.get("vrid") {
            None => p.vrid,
            Some(v) => v
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or("vrid: 0-255")?,
        };
        let priority = body
            .get("priority")
            .and_then(Value::as_u64)
            .and_then(|n| u8::try_from(n).ok())
            .ok_or("advert needs \"priority\": 0-255")?;
        let interval = match body.get("interval_ms") {
            None => b.cfg.advert_interval,
            Some(v) => Duration::from_millis(v.as_u64().ok_or("interval_ms: an integer")?),
        };
        let addresses = match body.get("addresses") {
            None => p.addresses.clone(),
            Some(Value::Array(a)) => a.iter().map(ip_value).collect::<Result<_, _>>()?,
            Some(_) => return Err("addresses: a list".into()),
        };
        if vrid != p.vrid {
            self.emit(
                at,
                &[
                    ("instance", json!(name)),
                    ("dropped", json!(Drop::UnknownVrid.as_str())),
                ],
            );
            return Ok(());
        }
        // Multicast to the group, else unicast to us.
        let group = if b.v6 {
            IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12))
        } else {
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18))
        };
        let dst = if b.multicast() {
            group
        } else {
            b.src.unwrap_or(group)
        };
        let sent = Advert {
            version,
            vrid,
            priority,
            interval,
            addresses,
        };
        // The sender's VRRPv2 password, if it has one.
        let their_auth = match body.get("auth_pass") {
            None => V2Auth::None,
            Some(Value::String(p)) => V2Auth::password(p),
            Some(_) => return Err("auth_pass: a string".into()),
        };
        let bytes = sent.encode_authenticated(from, dst, &their_auth);
        let decoded = Advert::decode_authenticated(&bytes, from, dst, &b.auth);
        let result = decoded.and_then(|adv| self.node.on_advert(now, id, from, &adv));
        match result {
            Ok(r) => {
                for m in r.mismatches {
                    self.emit(
                        at,
                        &[("instance", json!(name)), ("mismatch", json!(m.as_str()))],
                    );
                }
                self.execute(at, r.outs);
            }
            Err(d) => self.emit(
                at,
                &[("instance", json!(name)), ("dropped", json!(d.as_str()))],
            ),
        }
        Ok(())
    }
}

fn vip_fields(what: &str, v: &Vip) -> Vec<(&'static str, Value)> {
    vec![
        ("address", json!(what)),
        ("vip", json!(format!("{}/{}", v.addr, v.prefix_len))),
        ("interface", json!(v.ifname)),
    ]
}

fn state(s: VrrpState) -> Value {
    json!(s.to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Milliseconds as JSON: an integer when whole, else exact to the
/// nanosecond.
fn ms_value(d: Duration) -> Value {
    let ns = d.as_nanos();
    if ns % 1_000_000 == 0 {
        json!(ns / 1_000_000)
    } else {
        json!(ns as f64 / 1e6)
    }
}

fn str_field<'a>(body: &'a Value, key: &str) -> Result<&'a str, String> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("needs {key:?}: a string"))
}

fn ip_value(v: &Value) -> Result<IpAddr, String> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{v}: not an IP address"))
}

fn track_kind(s: &str) -> Result<TrackKind, String> {
    Ok(match s {
        "interface" => TrackKind::Interface,
        "address" => TrackKind::Address,
        "file" => TrackKind::File,
        "script" => TrackKind::Script,
        "virtual_server" => TrackKind::VirtualServer,
        _ => {
            return Err(format!(
                "track kind {s:?}: interface, address, file, script or virtual_server"
            ));
        }
    })
}

fn track_value(v: &Value) -> Result<TrackValue, String> {
    match v {
        Value::String(s) if s == "ok" => Ok(TrackValue::Ok),
        Value::String(s) if s == "failed" => Ok(TrackValue::Failed),
        Value::Number(n) => n
            .as_i64()
            .map(TrackValue::Number)
            .ok_or_else(|| format!("{n}: an integer")),
        _ => Err(format!("track value {v}: \"ok\", \"failed\" or an integer")),
    }
}

fn at_of(obj: &Map<String, Value>) -> Result<Duration, String> {
    let ms = obj
        .get("at_ms")
        .and_then(Value::as_f64)
        .filter(|ms| *ms >= 0.0)
        .ok_or("needs \"at_ms\": a time in milliseconds, not negative")?;
    Ok(Duration::from_nanos((ms * 1e6).round() as u64))
}

/// Replays one case; its output lines, or what is wrong with the case.
fn replay(case: &Path) -> Result<Vec<String>, String> {
    let read = |f: &str| std::fs::read_to_string(case.join(f)).map_err(|e| format!("{f}: {e}"));
    let text = read("config.toml")?;
    let config = config::parse(&text, "config.toml").map_err(|e| format!("{e}"))?;
    let mut world = World::new(&config);
    let mut last = Duration::ZERO;
    for (n, line) in read("input.jsonl")?.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at_line = |e: String| format!("input.jsonl:{n}: {e}");
        let v: Value = serde_json::from_str(line).map_err(|e| at_line(e.to_string()))?;
        let Value::Object(mut obj) = v else {
            return Err(at_line("not a JSON object".into()));
        };
        let at = at_of(&obj).map_err(at_line)?;
        if at < last {
            return Err(at_line(format!(
                "at_ms {} is before the previous event",
                ms_value(at)
            )));
        }
        last = at;
        obj.remove("at_ms");
        if obj.len() != 1 {
            return Err(at_line("one event per line besides at_ms".into()));
        }
        let (kind, body) = obj.into_iter().next().expect("one entry");
        world.run_timers(at).map_err(at_line)?;
        if kind == "end" {
            return Ok(world.lines);
        }
        world.event(at, &kind, &body).map_err(at_line)?;
    }
    Ok(world.lines)
}

/// A line diff of `want` and `got`: `-` lines only expected, `+` lines
/// only got, each with its line number in its own file.
fn diff(want: &[&str], got: &[&str]) -> String {
    let (n, m) = (want.len(), got.len());
    // lcs[i][j]: the longest common subsequence of want[i..] and got[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if want[i] == got[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && want[i] == got[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            writeln!(out, "  expected line {:>3}: {}", i + 1, want[i]).expect("a string");
            i += 1;
        } else {
            writeln!(out, "  got      line {:>3}: {}", j + 1, got[j]).expect("a string");
            j += 1;
        }
    }
    out
}

#[test]
fn every_case_replays_to_exactly_its_expected_outputs() {
    let bless = std::env::var_os("TANDEM_BLESS").is_some();
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        let name = name_of(case);
        let got = match replay(case) {
            Ok(lines) => lines,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut text = got.join("\n");
        text.push('\n');
        let expected_path = case.join("expected.jsonl");
        if bless {
            std::fs::write(&expected_path, &text).expect("writing expected.jsonl");
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == text => {}
            Ok(want) => {
                let want: Vec<&str> = want.lines().collect();
                let got: Vec<&str> = got.iter().map(String::as_str).collect();
                failures.push(format!("{name}: the outputs differ\n{}", diff(&want, &got)));
            }
            Err(_) => failures.push(format!(
                "{name}: no expected.jsonl (run with TANDEM_BLESS=1 and review it)\n{text}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn at_least_25_behaviours_are_covered() {
    let n = cases().len();
    assert!(n >= 25, "only {n} conformance cases");
}

#[test]
fn every_case_says_what_it_proves_and_where() {
    let mut missing = Vec::new();
    for case in cases() {
        let readme = std::fs::read_to_string(case.join("README.md")).unwrap_or_default();
        let cites = readme.contains("RFC") || readme.contains("README");
        if readme.trim().is_empty() || !cites {
            missing.push(name_of(&case));
        }
    }
    assert!(
        missing.is_empty(),
        "cases without a README.md citing the RFC section (or tandem's README): {missing:?}"
    );
}

#[test]
fn the_diff_names_the_lines_that_differ() {
    let d = diff(&["a", "b", "c"], &["a", "x", "c", "d"]);
    assert_eq!(
        d,
        "  expected line   2: b\n  got      line   2: x\n  got      line   4: d\n"
    );
}
