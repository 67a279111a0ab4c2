//! keepalived.conf's blocks as a tandem configuration, and a report of
//! every keyword that was not carried over or whose meaning shifts.
//!
//! The rules come from keepalived 2.2's documented behaviour
//! (`keepalived.conf(5)`); where tandem says the same thing another way,
//! the report says how (a checker's `retry` becomes `fall`), and where it
//! cannot say it at all, the keyword is named with its place and the
//! reason, never dropped in silence.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::tree::Node;
use crate::{Finding, Pos};

/// What happened to one keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Not in the output: unsupported, no equivalent, or dropped on
    /// purpose (mail alerts).
    NotCarried,
    /// In the output, with a meaning that differs a little.
    Shifted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub at: Pos,
    pub keyword: String,
    pub kind: Kind,
    pub why: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::NotCarried => "not carried",
            Kind::Shifted => "shifted",
        };
        write!(f, "{}: {kind}: {}: {}", self.at, self.keyword, self.why)
    }
}

/// The result: the TOML and what the report says of it.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub notes: Vec<Note>,
}

impl Imported {
    /// Whether every keyword was carried over (shifts allowed).
    pub fn complete(&self) -> bool {
        self.notes.iter().all(|n| n.kind == Kind::Shifted)
    }
}

/// Dropped on purpose: tandem tells operators through events, notify
/// scripts and metrics, not mail.
const MAIL: &[&str] = &[
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_helo_name",
    "smtp_connect_timeout",
    "smtp_alert",
    "smtp_alert_vrrp",
    "smtp_alert_checker",
    "email_faults",
];
const MAIL_WHY: &str =
    "tandem sends no mail: follow the events stream, a notify script or the metrics instead";

/// `virtual_ipaddress` options that take no value.
const FLAGS: &[&str] = &["no_track", "home", "nodad", "noprefixroute", "autojoin"];

/// keepalived's defaults where tandem's differ (keepalived.conf(5)).
const KEEPALIVED_VRRP_VERSION: i64 = 2;
const KEEPALIVED_DELAY_LOOP_S: f64 = 60.0;
const KEEPALIVED_CONNECT_TIMEOUT_S: f64 = 5.0;
const KEEPALIVED_RETRY: i64 = 1;
/// The checkers tandem carries (one kind per virtual server).
const CHECKERS: &[&str] = &[
    "HTTP_GET",
    "SSL_GET",
    "TCP_CHECK",
    "MISC_CHECK",
    "PING_CHECK",
    "DNS_CHECK",
    "UDP_CHECK",
    "SMTP_CHECK",
];

pub fn import(nodes: &[Node], findings: &[Finding]) -> Imported {
    let mut cx = Cx::default();
    for f in findings {
        cx.notes.push(Note {
            at: f.at.clone(),
            keyword: "(file)".into(),
            kind: Kind::NotCarried,
            why: f.message.clone(),
        });
    }
    // Definitions first: keepalived reads the whole file before it runs
    // anything, so an instance may name a script defined after it.
    for n in nodes {
        match n.keyword.as_str() {
            "global_defs" => cx.globals(n),
            "vrrp_script" => cx.script(n),
            "vrrp_track_file" => cx.track_file_def(n),
            "virtual_server_group" => {
                if let Some(name) = n.args.first() {
                    cx.vs_groups.insert(name.text.clone(), n.clone());
                }
            }
            _ => {}
        }
    }
    for n in nodes {
        match n.keyword.as_str() {
            "global_defs" | "vrrp_script" | "vrrp_track_file" | "virtual_server_group" => {}
            "vrrp_instance" => cx.instance(n),
            "vrrp_sync_group" => cx.sync_group(n),
            "virtual_server" => cx.virtual_server(n),
            "static_ipaddress" | "static_routes" | "static_rules" => cx.not(
                n,
                "tandem leaves addresses and routes other than the VIPs to the system's network configuration",
            ),
            _ => cx.not(n, "no equivalent in tandem"),
        }
    }
    cx.finish()
}

#[derive(Default)]
struct Cx {
    notes: Vec<Note>,
    node_name: Option<String>,
    vrrp_version: Option<i64>,
    script_user: Option<String>,
    /// Instance defaults from global_defs: tandem key -> value.
    announce: BTreeMap<&'static str, String>,
    /// `[connection_sync]`, its instance and where it was said.
    sync: Option<(String, String, Node)>,
    scripts: Vec<String>,
    script_names: Vec<String>,
    track_files: BTreeMap<String, (String, Option<i64>)>,
    vs_groups: BTreeMap<String, Node>,
    groups_used: Vec<String>,
    instances: Vec<String>,
    /// Sync groups: where, name, members, notify (written once the
    /// carried instances are known).
    groups: Vec<(Node, String, Vec<String>, Option<String>)>,
    instance_names: Vec<String>,
    servers: Vec<String>,
    server_names: Vec<String>,
}

impl Cx {
    fn note(&mut self, n: &Node, kind: Kind, why: &str) {
        self.notes.push(Note {
            at: n.at.clone(),
            keyword: n.keyword.clone(),
            kind,
            why: why.to_string(),
        });
    }

    fn not(&mut self, n: &Node, why: &str) {
        self.note(n, Kind::NotCarried, why);
    }

    fn shift(&mut self, n: &Node, why: &str) {
        self.note(n, Kind::Shifted, why);
    }

    /// The one argument a keyword needs, or a note that it had none.
    fn arg<'a>(&mut self, n: &'a Node) -> Option<&'a str> {
        match n.args.first() {
            Some(t) => Some(t.text.as_str()),
            None => {
                self.not(n, "needs a value");
                None
            }
        }
    }

    fn int(&mut self, n: &Node) -> Option<i64> {
        let v = self.arg(n)?;
        match v.parse() {
            Ok(i) => Some(i),
            Err(_) => {
                self.not(n, &format!("{v:?} is not a whole number"));
                None
            }
        }
    }

    /// `key = N` into `out`, from a keyword's whole-number value.
    fn int_key(&mut self, n: &Node, out: &mut String, key: &str) {
        if let Some(v) = self.int(n) {
            let _ = writeln!(out, "{key} = {v}");
        }
    }

    fn seconds(&mut self, n: &Node) -> Option<f64> {
        let v = self.arg(n)?;
        match v.parse::<f64>() {
            Ok(s) if s >= 0.0 && s.is_finite() => Some(s),
            _ => {
                self.not(n, &format!("{v:?} is not a number of seconds"));
                None
            }
        }
    }

    /// A keyword's hexadecimal bytes (UDP_CHECK's `payload`,
    /// `require_reply`) as the text tandem's `send` / `expect` hold: bytes
    /// that are not UTF-8 cannot be written in TOML and are not carried.
    fn hex_text(&mut self, n: &Node) -> Option<String> {
        let v = self.arg(n)?.to_string();
        let hex = v.trim_start_matches("0x");
        let bytes: Option<Vec<u8>> = (hex.len() % 2 == 0)
            .then(|| {
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|b| u8::from_str_radix(b, 16).ok())
                    })
                    .collect()
            })
            .flatten();
        match bytes.map(String::from_utf8) {
            Some(Ok(text)) => Some(text),
            Some(Err(_)) => {
                self.not(
                    n,
                    "bytes that are not UTF-8 text: tandem's udp check sends and expects text",
                );
                None
            }
            None => {
                self.not(n, &format!("{v:?} is not hexadecimal bytes"));
                None
            }
        }
    }

    fn addr(&mut self, n: &Node, v: &str) -> Option<IpAddr> {
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.not(n, &format!("{v:?} is not an IP address"));
                None
            }
        }
    }

    fn globals(&mut self, g: &Node) {
        for n in g.children.iter().flatten() {
            let k = n.keyword.as_str();
            match k {
                // lvs_id: router_id's older name.
                "router_id" | "lvs_id" => self.node_name = self.arg(n).map(str::to_string),
                "vrrp_version" => self.vrrp_version = self.int(n),
                "script_user" => {
                    self.script_user = self.arg(n).map(str::to_string);
                    if n.args.len() > 1 {
                        self.shift(n, "tandem runs scripts as the user with that user's own group");
                    }
                }
                "vrrp_garp_master_delay" => self.announce_default(n, "announce_repeat_after", true),
                "vrrp_garp_master_repeat" => self.announce_default(n, "announce_count", false),
                "vrrp_garp_master_refresh" => self.announce_default(n, "announce_refresh", true),
                "vrrp_garp_interval" | "vrrp_gna_interval" => {
                    self.announce_default(n, "announce_interval", true)
                }
                "lvs_sync_daemon" => {
                    // lvs_sync_daemon IFACE INSTANCE [id N] [maxlen ...]
                    let w = n.words();
                    if w.len() < 2 {
                        self.not(n, "needs an interface and a VRRP instance");
                        continue;
                    }
                    let mut s = format!(
                        "[connection_sync]\ninstance = {}\ninterface = {}\n",
                        q(w[1]),
                        q(w[0])
                    );
                    let mut i = 2;
                    while i < w.len() {
                        match (w[i], w.get(i + 1)) {
                            ("id", Some(id)) => {
                                let _ = writeln!(s, "sync_id = {id}");
                            }
                            (other, _) => self.not(
                                n,
                                &format!("{other}: tandem's sync daemon uses the kernel's defaults"),
                            ),
                        }
                        i += 2;
                    }
                    self.sync = Some((s, w[1].to_string(), n.clone()));
                }
                "lvs_sync_daemon_interface" => self.not(
                    n,
                    "the old form without an instance: write lvs_sync_daemon IFACE INSTANCE",
                ),
                "enable_script_security" => self.shift(
                    n,
                    "tandem runs scripts without a shell and as the configured user, without keepalived's check of the script's ownership",
                ),
                "vrrp_strict" => self.not(
                    n,
                    "tandem adds no firewall rules; it always checks TTL 255, the checksum and the advert interval, and keeps VRRPv2 authentication and unicast available",
                ),
                k if MAIL.contains(&k) => self.not(n, MAIL_WHY),
                _ => self.not(n, "no equivalent in tandem"),
            }
        }
    }

    fn announce_default(&mut self, n: &Node, key: &'static str, duration: bool) {
        if let Some(v) = self.announce_value(n, duration) {
            self.announce.insert(key, v);
        }
    }

    /// A GARP/NA setting's value as TOML: seconds as a duration, or a count.
    fn announce_value(&mut self, n: &Node, duration: bool) -> Option<String> {
        if duration {
            self.seconds(n).map(|s| q(&dur(s)))
        } else {
            self.int(n).map(|i| i.to_string())
        }
    }

    fn script(&mut self, s: &Node) {
        let Some(name) = s.args.first().map(|t| t.text.clone()) else {
            return self.not(s, "needs a name");
        };
        let name = self.name(s, &name);
        let (mut command, mut interval, mut timeout) = (None, 1.0, None);
        let (mut weight, mut rise, mut fall, mut user) = (None, 1, 1, self.script_user.clone());
        for n in s.children.iter().flatten() {
            match n.keyword.as_str() {
                "script" => command = self.arg(n).map(split_command),
                "interval" => interval = self.seconds(n).unwrap_or(interval),
                "timeout" => timeout = self.seconds(n),
                "weight" => {
                    weight = self.int(n);
                    if n.args.get(1).is_some_and(|t| t.text == "reverse") {
                        self.not(n, "reverse: tandem has no reversed weight");
                    }
                }
                "rise" => rise = self.int(n).unwrap_or(rise),
                "fall" => fall = self.int(n).unwrap_or(fall),
                "user" => {
                    user = self.arg(n).map(str::to_string);
                    if n.args.len() > 1 {
                        self.shift(n, "tandem runs it with the user's own group");
                    }
                }
                "init_fail" => self.shift(
                    n,
                    "tandem counts a script as failed until its first result anyway",
                ),
                _ => self.not(n, "no equivalent in tandem's track_script"),
            }
        }
        let Some(command) = command else {
            return self.not(s, "has no script: not carried");
        };
        if let Err(why) = runnable(&command) {
            return self.not(
                s,
                &format!("{why}: not carried, and instances tracking it are told so"),
            );
        }
        // keepalived lets a script run for its whole interval; tandem
        // needs it done before the next one starts.
        let timeout = match timeout {
            Some(t) if t < interval => t,
            given => {
                let t = interval * 0.9;
                let why = match given {
                    Some(g) => format!(
                        "timeout {} is not shorter than interval {}: written as {}",
                        dur(g),
                        dur(interval),
                        dur(t)
                    ),
                    None => format!(
                        "keepalived's timeout is the interval ({}); tandem's must be shorter: {}",
                        dur(interval),
                        dur(t)
                    ),
                };
                self.shift(s, &why);
                t
            }
        };
        let mut out = format!(
            "[[track_script]]\nname = {}\ncommand = {}\ninterval = {}\ntimeout = {}\nrise = {rise}\nfall = {fall}\n",
            q(&name),
            list(&command),
            q(&dur(interval)),
            q(&dur(timeout)),
        );
        if let Some(w) = weight.filter(|w| *w != 0) {
            let _ = writeln!(out, "weight = {w}");
        }
        if let Some(u) = user {
            let _ = writeln!(out, "user = {}", q(&u));
        }
        self.scripts.push(out);
        self.script_names.push(name);
    }

    fn track_file_def(&mut self, f: &Node) {
        let Some(name) = f.args.first().map(|t| t.text.clone()) else {
            return self.not(f, "needs a name");
        };
        let (mut path, mut weight) = (None, None);
        for n in f.children.iter().flatten() {
            match n.keyword.as_str() {
                "file" => path = self.arg(n).map(str::to_string),
                "weight" => weight = self.int(n),
                "init_file" => self.not(
                    n,
                    "tandem does not create the file: create it before vrrpd starts",
                ),
                _ => self.not(n, "no equivalent in tandem's track_files"),
            }
        }
        match path {
            Some(p) => {
                self.track_files.insert(name, (p, weight));
            }
            None => self.not(f, "has no file: not carried"),
        }
    }

    /// A name tandem accepts (letters, digits, `-`, `_`, `.`).
    fn name(&mut self, n: &Node, raw: &str) -> String {
        let clean: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean != raw {
            self.shift(n, &format!("the name {raw:?} is written as {clean:?}"));
        }
        clean
    }

    fn instance(&mut self, inst: &Node) {
        let Some(raw) = inst.args.first().map(|t| t.text.clone()) else {
            return self.not(inst, "needs a name");
        };
        let name = self.name(inst, &raw);
        let mut keys: Vec<String> = Vec::new();
        let mut version = self.vrrp_version.unwrap_or(KEEPALIVED_VRRP_VERSION);
        let (mut interface, mut vrid, mut advert) = (None, None, 1.0);
        let mut vips: Vec<String> = Vec::new();
        let mut family: Option<bool> = None;
        let mut auth: Option<Node> = None;
        let mut announce = self.announce.clone();
        let push = |keys: &mut Vec<String>, k: &str, v: String| keys.push(format!("{k} = {v}"));
        for n in inst.children.iter().flatten() {
            let k = n.keyword.as_str();
            match k {
                "interface" => interface = self.arg(n).map(str::to_string),
                "virtual_router_id" => vrid = self.int(n),
                "version" => version = self.int(n).unwrap_or(version),
                "priority" => match self.int(n) {
                    Some(255) => push(&mut keys, "address_owner", "true".into()),
                    Some(p) => push(&mut keys, "priority", p.to_string()),
                    None => {}
                },
                "advert_int" => advert = self.seconds(n).unwrap_or(advert),
                "state" => {
                    if n.args.first().is_some_and(|t| t.text == "MASTER") {
                        self.shift(
                            n,
                            "tandem starts every instance as BACKUP and the priority elects the master (RFC 5798 6.4.1); a MASTER with the highest priority takes over after Master_Down_Interval",
                        );
                    }
                }
                "nopreempt" => push(&mut keys, "preempt", "false".into()),
                "preempt_delay" => {
                    if let Some(s) = self.seconds(n) {
                        push(&mut keys, "preempt_delay", q(&dur(s)));
                    }
                }
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                    if k == "virtual_ipaddress_excluded" {
                        self.shift(
                            n,
                            "tandem has no excluded list: these VIPs are in the adverts too (keepalived and tandem peers accept that)",
                        );
                    }
                    for a in n.children.iter().flatten() {
                        if let Some(v) = self.vip(a, &mut family) {
                            vips.push(v);
                        }
                    }
                }
                "unicast_src_ip" => {
                    if let Some(a) = self.arg(n).and_then(|v| self.addr(n, v)) {
                        push(&mut keys, "unicast_src", q(&a.to_string()));
                    }
                }
                "unicast_peer" => {
                    let mut peers = Vec::new();
                    for p in n.children.iter().flatten() {
                        if let Some(a) = self.addr(p, &p.keyword) {
                            peers.push(a.to_string());
                        }
                        if !p.args.is_empty() {
                            self.not(p, "per-peer options (min_ttl, max_ttl): tandem requires TTL 255");
                        }
                    }
                    if !peers.is_empty() {
                        push(&mut keys, "unicast_peers", list(&peers));
                    }
                }
                "track_interface" => {
                    let items = self.weighted(n, "interface", |_, s| Some(s.to_string()));
                    if !items.is_empty() {
                        push(&mut keys, "track_interfaces", format!("[{}]", items.join(", ")));
                    }
                }
                "track_script" => {
                    let known = self.script_names.clone();
                    let items = self.weighted(n, "name", |cx, s| {
                        let clean: String = s
                            .chars()
                            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
                            .collect();
                        if known.contains(&clean) {
                            Some(clean)
                        } else {
                            cx.notes.push(Note {
                                at: n.at.clone(),
                                keyword: s.to_string(),
                                kind: Kind::NotCarried,
                                why: "no vrrp_script of that name was carried".into(),
                            });
                            None
                        }
                    });
                    if !items.is_empty() {
                        push(&mut keys, "track_scripts", format!("[{}]", items.join(", ")));
                    }
                }
                "track_file" => {
                    let mut items = Vec::new();
                    for f in n.children.iter().flatten() {
                        let Some((path, w)) = self.track_files.get(&f.keyword).cloned() else {
                            self.not(f, "no vrrp_track_file of that name was carried");
                            continue;
                        };
                        let w = match f.words().as_slice() {
                            ["weight", w] => w.parse().ok().or_else(|| w_none(self, f)),
                            [] => w,
                            _ => {
                                self.not(f, "only `weight N` is understood here");
                                w
                            }
                        };
                        items.push(match w {
                            Some(w) => format!("{{ path = {}, weight = {w} }}", q(&path)),
                            None => format!("{{ path = {} }}", q(&path)),
                        });
                    }
                    if !items.is_empty() {
                        push(&mut keys, "track_files", format!("[{}]", items.join(", ")));
                    }
                }
                "notify" => {
                    if let Some(p) = self.arg(n) {
                        push(&mut keys, "notify", q(p));
                    }
                }
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop"
                | "notify_deleted" | "notify_master_rx_lower_pri" => self.not(
                    n,
                    "tandem runs one notify script with keepalived's arguments (INSTANCE name STATE priority): point `notify` at a script that dispatches on the state",
                ),
                "authentication" => auth = Some(n.clone()),
                "use_vmac" => {
                    push(&mut keys, "use_vmac", "true".into());
                    if let Some(i) = n.args.first() {
                        push(&mut keys, "vmac_interface", q(&i.text));
                    }
                }
                "vmac_xmit_base" => self.shift(
                    n,
                    "tandem sends adverts from the virtual MAC's interface, as RFC 5798 7.3 has them",
                ),
                "garp_master_delay" => self.announce_key(n, &mut announce, "announce_repeat_after", true),
                "garp_master_repeat" => self.announce_key(n, &mut announce, "announce_count", false),
                "garp_master_refresh" => self.announce_key(n, &mut announce, "announce_refresh", true),
                "garp_interval" | "gna_interval" => {
                    self.announce_key(n, &mut announce, "announce_interval", true)
                }
                "dont_track_primary" => self.not(
                    n,
                    "tandem always tracks the instance's own interface: a down interface is FAULT",
                ),
                k if MAIL.contains(&k) => self.not(n, MAIL_WHY),
                _ => self.not(n, "no equivalent in tandem"),
            }
        }
        let (Some(interface), Some(vrid)) = (interface, vrid) else {
            return self.not(
                inst,
                "needs interface and virtual_router_id: the instance is not carried",
            );
        };
        if vips.is_empty() {
            return self.not(
                inst,
                "no virtual IP was carried: the instance is not carried",
            );
        }
        if let Some(n) = auth {
            self.authentication(&n, version, &mut keys);
        }
        if family == Some(true) && version == 2 {
            self.shift(inst, "VRRPv2 has no IPv6: written as version 3");
            version = 3;
        }
        let mut out = format!(
            "[[vrrp_instance]]\nname = {}\ninterface = {}\nvrid = {vrid}\nversion = {version}\nadvert_interval = {}\n",
            q(&name),
            q(&interface),
            q(&dur(advert))
        );
        let _ = writeln!(out, "virtual_ips = [{}]", vips.join(", "));
        for k in keys {
            let _ = writeln!(out, "{k}");
        }
        for (k, v) in announce {
            let _ = writeln!(out, "{k} = {v}");
        }
        self.instances.push(out);
        self.instance_names.push(name);
    }

    fn announce_key(
        &mut self,
        n: &Node,
        announce: &mut BTreeMap<&'static str, String>,
        key: &'static str,
        duration: bool,
    ) {
        if let Some(v) = self.announce_value(n, duration) {
            announce.insert(key, v);
        }
    }

    fn authentication(&mut self, a: &Node, version: i64, keys: &mut Vec<String>) {
        let (mut kind, mut pass) = (None, None);
        for n in a.children.iter().flatten() {
            match n.keyword.as_str() {
                "auth_type" => kind = self.arg(n).map(str::to_string),
                "auth_pass" => pass = self.arg(n).map(str::to_string),
                _ => self.not(n, "no equivalent in tandem"),
            }
        }
        match (kind.as_deref(), pass) {
            (Some("PASS"), Some(p)) if version == 2 => {
                // RFC 3768 5.3.6: eight octets; keepalived cuts a longer
                // password to them.
                let cut: String = p.chars().take(8).collect();
                if cut.len() < p.len() {
                    self.shift(a, "auth_pass is longer than 8 characters: keepalived and tandem use the first 8");
                }
                keys.push(format!("auth_pass = {}", q(&cut)));
            }
            (Some("PASS"), Some(_)) => self.not(
                a,
                "VRRPv3 has no authentication (RFC 5798 9); keepalived ignores it too. For authenticated adverts see auth_hmac",
            ),
            (Some("AH"), _) => self.not(
                a,
                "auth_type AH (IPsec AH, RFC 2338) is unsupported: use PASS for a mixed pair, or auth_hmac between tandem and keepalived 2.4",
            ),
            _ => self.not(a, "needs auth_type PASS and auth_pass"),
        }
    }

    /// One `virtual_ipaddress` line: `ADDR[/LEN] [dev IF] [label L] ...`.
    fn vip(&mut self, a: &Node, family: &mut Option<bool>) -> Option<String> {
        let text = a.keyword.as_str();
        let (ip, len) = text.split_once('/').unwrap_or((text, ""));
        let addr = self.addr(a, ip)?;
        if !len.is_empty() && len.parse::<u8>().is_err() {
            self.not(a, &format!("prefix {len:?} is not a number"));
            return None;
        }
        if addr.is_loopback() || addr.is_multicast() || addr.is_unspecified() {
            self.not(a, "not a unicast address another director could take over");
            return None;
        }
        let v6 = addr.is_ipv6();
        if family.is_some_and(|f| f != v6) {
            self.not(
                a,
                "another address family than the instance's first VIP: tandem needs a second instance (the same vrid) for it",
            );
            return None;
        }
        *family = Some(v6);
        let mut fields = vec![format!("address = {}", q(text))];
        let w = a.words();
        let mut i = 0;
        while i < w.len() {
            match (w[i], w.get(i + 1)) {
                ("dev", Some(d)) => fields.push(format!("interface = {}", q(d))),
                ("label", Some(l)) => fields.push(format!("label = {}", q(l))),
                (opt, _) => {
                    self.notes.push(Note {
                        at: a.at.clone(),
                        keyword: format!("{text} {opt}"),
                        kind: Kind::NotCarried,
                        why: "tandem adds VIPs with their prefix, interface and label only".into(),
                    });
                    // Flags stand alone; the rest take a value.
                    if FLAGS.contains(&opt) {
                        i += 1;
                        continue;
                    }
                }
            }
            i += 2;
        }
        Some(if fields.len() == 1 {
            q(text)
        } else {
            format!("{{ {} }}", fields.join(", "))
        })
    }

    /// `track_interface` / `track_script` items: `NAME [weight W]`.
    fn weighted(
        &mut self,
        block: &Node,
        key: &str,
        resolve: impl Fn(&mut Cx, &str) -> Option<String>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for n in block.children.iter().flatten() {
            let Some(name) = resolve(self, &n.keyword) else {
                continue;
            };
            let weight = match n.words().as_slice() {
                [] => None,
                ["weight", w, rest @ ..] => {
                    if !rest.is_empty() {
                        self.not(n, "reverse: tandem has no reversed weight");
                    }
                    w.parse::<i64>().ok()
                }
                _ => {
                    self.not(n, "only `weight N` is understood here");
                    None
                }
            };
            out.push(match weight.filter(|w| *w != 0) {
                Some(w) => format!("{{ {key} = {}, weight = {w} }}", q(&name)),
                None => q(&name),
            });
        }
        out
    }

    fn sync_group(&mut self, g: &Node) {
        let Some(raw) = g.args.first().map(|t| t.text.clone()) else {
            return self.not(g, "needs a name");
        };
        let name = self.name(g, &raw);
        let mut members = Vec::new();
        let mut notify = None;
        for n in g.children.iter().flatten() {
            match n.keyword.as_str() {
                "group" => {
                    for m in n.children.iter().flatten() {
                        members.push(m.keyword.clone());
                        for extra in &m.args {
                            members.push(extra.text.clone());
                        }
                    }
                }
                "notify" => notify = self.arg(n).map(str::to_string),
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => self.not(
                    n,
                    "tandem runs one notify script (GROUP name STATE 0): point `notify` at a script that dispatches on the state",
                ),
                "global_tracking" | "sync_group_tracking_weight" => self.shift(
                    n,
                    "tandem applies each instance's own tracking; the group changes state together",
                ),
                k if MAIL.contains(&k) => self.not(n, MAIL_WHY),
                // The older form, members straight in the block:
                // keepalived 2.2.7 says "Unknown keyword" to each.
                _ if n.children.is_none() => self.not(
                    n,
                    "a member outside `group { }`: keepalived 2.2 does not read it either (Unknown keyword)",
                ),
                _ => self.not(n, "no equivalent in tandem"),
            }
        }
        let members: Vec<String> = members.iter().map(|m| self.name(g, m)).collect();
        self.groups.push((g.clone(), name, members, notify));
    }

    fn virtual_server(&mut self, vs: &Node) {
        let w = vs.words();
        match w.as_slice() {
            ["group", name] => {
                let Some(group) = self.vs_groups.get(*name).cloned() else {
                    return self.not(vs, &format!("no virtual_server_group {name:?}"));
                };
                self.groups_used.push(name.to_string());
                self.shift(
                    vs,
                    "tandem has no virtual server groups: one virtual server per member, each with these real servers and checks",
                );
                for m in group.children.iter().flatten() {
                    match (m.keyword.as_str(), m.words().as_slice()) {
                        ("fwmark", [mark]) => self.one_vs(vs, Head::Fwmark(mark.to_string())),
                        (range, [port]) => {
                            for ip in expand_range(range) {
                                self.one_vs(vs, Head::Address(ip, port.to_string()));
                            }
                        }
                        _ => self.not(
                            m,
                            "a group member is `IP PORT`, `IP-LAST PORT` or `fwmark N`",
                        ),
                    }
                }
            }
            ["fwmark", mark] => self.one_vs(vs, Head::Fwmark(mark.to_string())),
            [ip, port] => self.one_vs(vs, Head::Address(ip.to_string(), port.to_string())),
            _ => self.not(vs, "needs `IP PORT`, `fwmark N` or `group NAME`"),
        }
    }

    fn one_vs(&mut self, vs: &Node, head: Head) {
        let (name, mut out) = match &head {
            Head::Address(ip, port) => {
                let Some(a) = self.addr(vs, ip) else { return };
                let Ok(p) = port.parse::<u16>() else {
                    return self.not(vs, &format!("port {port:?} is not a number"));
                };
                let sa = std::net::SocketAddr::new(a, p);
                (
                    format!("vs_{}_{p}", a.to_string().replace(':', "-")),
                    format!("address = {}\n", q(&sa.to_string())),
                )
            }
            Head::Fwmark(mark) => {
                let v6 = vs
                    .children
                    .iter()
                    .flatten()
                    .any(|n| n.keyword == "ip_family" && n.words() == ["inet6"]);
                (
                    format!("vs_fwmark_{mark}"),
                    format!(
                        "fwmark = {mark}\nfamily = {}\n",
                        q(if v6 { "ipv6" } else { "ipv4" })
                    ),
                )
            }
        };
        let mut name = name;
        if self.server_names.contains(&name) {
            name = format!("{name}_{}", self.server_names.len());
        }
        let mut interval = KEEPALIVED_DELAY_LOOP_S;
        let mut vs_port: Option<u16> = None;
        if let Head::Address(_, p) = &head {
            vs_port = p.parse().ok();
        }
        let mut host = None;
        let mut forwarding = "nat".to_string();
        // keepalived 2.2.7 without `protocol`: "no protocol set -
        // defaulting to UDP" (measured with `keepalived -t`).
        let mut protocol = "udp".to_string();
        let mut protocol_set = false;
        let mut reals: Vec<&Node> = Vec::new();
        let mut inhibit = false;
        let mut keys = String::new();
        for n in vs.children.iter().flatten() {
            match n.keyword.as_str() {
                "delay_loop" => interval = self.seconds(n).unwrap_or(interval),
                "lb_algo" | "lvs_sched" => {
                    if let Some(s) = self.arg(n) {
                        let _ = writeln!(keys, "scheduler = {}", q(&s.to_lowercase()));
                    }
                }
                "lb_kind" | "lvs_method" => {
                    if let Some(m) = self.arg(n) {
                        forwarding = m.to_lowercase();
                    }
                }
                "protocol" => {
                    if let Some(p) = self.arg(n) {
                        protocol = p.to_lowercase();
                        protocol_set = true;
                    }
                }
                "persistence_timeout" => {
                    if let Some(s) = self.int(n) {
                        let _ = writeln!(keys, "persistence = {}", q(&format!("{s}s")));
                    }
                }
                "persistence_granularity" => {
                    if let Some(m) = self.arg(n) {
                        match prefix_len(m) {
                            Some(l) => {
                                let _ = writeln!(keys, "persistence_prefix = {l}");
                            }
                            None => self.not(n, &format!("{m:?} is not a netmask or prefix length")),
                        }
                    }
                }
                "sorry_server" => match n.words().as_slice() {
                    [ip, port] => match ip.parse::<IpAddr>() {
                        Ok(a) => {
                            let p: u16 = port.parse().unwrap_or(0);
                            let _ = writeln!(
                                keys,
                                "sorry_server = {}",
                                q(&std::net::SocketAddr::new(a, p).to_string())
                            );
                        }
                        Err(_) => self.not(n, &format!("{ip:?} is not an IP address")),
                    },
                    _ => self.not(n, "needs IP PORT"),
                },
                "quorum" => self.int_key(n, &mut keys, "quorum"),
                "hysteresis" => self.int_key(n, &mut keys, "quorum_hysteresis"),
                "inhibit_on_failure" => inhibit = true,
                "alpha" => {
                    let _ = writeln!(keys, "initial_state = \"down\"");
                }
                "ops" => {
                    let _ = writeln!(keys, "one_packet = true");
                }
                "virtualhost" => host = self.arg(n).map(str::to_string),
                "ip_family" => {}
                "real_server" => reals.push(n),
                "quorum_up" | "quorum_down" => self.not(
                    n,
                    "tandem tells vrrpd of a lost quorum instead (track_virtual_servers); events and metrics show it",
                ),
                "ha_suspend" => self.not(
                    n,
                    "tandem checks on every director, so a backup's table is ready at takeover",
                ),
                k if MAIL.contains(&k) => self.not(n, MAIL_WHY),
                _ => self.not(n, "no equivalent in tandem"),
            }
        }
        if !protocol_set && matches!(head, Head::Address(..)) {
            self.shift(
                vs,
                "no protocol: keepalived 2.2 then uses UDP (it says so at start-up), and so does this import; add `protocol TCP` if TCP was meant",
            );
        }
        // A fwmark service matches marked packets of any protocol.
        if protocol_set || matches!(head, Head::Address(..)) {
            let _ = writeln!(out, "protocol = {}", q(&protocol));
        }
        let _ = writeln!(out, "forwarding = {}", q(&forwarding));
        out.push_str(&keys);
        // Checks: tandem has one per virtual server, overridable per real
        // server in port, address, source, timing and counts.
        let mut check: Option<Probe> = None;
        let mut servers = String::new();
        let mut inhibited = 0;
        let count = reals.len();
        for rs in reals {
            let (rs_text, probe, rs_inhibit) =
                self.real_server(rs, vs_port, &forwarding, interval, host.as_deref());
            inhibited += usize::from(rs_inhibit);
            let mut rs_text = rs_text;
            if let Some((p, notes)) = probe {
                match &check {
                    None => {
                        check = Some(p);
                        self.notes.extend(notes);
                    }
                    Some(c) if c.same_kind(&p) => {
                        self.notes.extend(notes);
                        let o = c.overrides(&p);
                        if !o.is_empty() {
                            let _ = writeln!(rs_text, "check = {{ {} }}", o.join(", "));
                        }
                    }
                    Some(c) => {
                        // The real server is carried; its checker is not.
                        let at = rs
                            .children
                            .iter()
                            .flatten()
                            .find(|n| CHECKERS.contains(&n.keyword.as_str()))
                            .unwrap_or(rs);
                        self.not(
                            at,
                            &format!(
                                "this real server's check ({}) differs from the first real server's ({}): tandem has one kind of check per virtual server, and this real server gets that one",
                                p.describe(),
                                c.describe()
                            ),
                        );
                    }
                }
            }
            servers.push_str("\n[[virtual_server.real_server]]\n");
            servers.push_str(&rs_text);
        }
        if inhibit || inhibited > 0 {
            if !inhibit && inhibited < count {
                self.shift(
                    vs,
                    &format!(
                        "inhibit_on_failure is set on {inhibited} of {count} real servers; tandem sets it per virtual server, so it now applies to all of them"
                    ),
                );
            }
            out.push_str("inhibit_on_failure = true\n");
        }
        if let Some(c) = &check {
            out.push_str("\n[virtual_server.check]\n");
            out.push_str(&c.toml());
        }
        out.push_str(&servers);
        self.servers
            .push(format!("[[virtual_server]]\nname = {}\n{out}", q(&name)));
        self.server_names.push(name);
    }

    /// One real server: its table, its probe, and whether it asked for
    /// inhibit_on_failure.
    fn real_server(
        &mut self,
        rs: &Node,
        vs_port: Option<u16>,
        forwarding: &str,
        interval: f64,
        host: Option<&str>,
    ) -> (String, Option<(Probe, Vec<Note>)>, bool) {
        let w = rs.words();
        let mut out = String::new();
        let Some(ip) = w.first().and_then(|ip| self.addr(rs, ip)) else {
            return (out, None, false);
        };
        let mut port: Option<u16> = w.get(1).and_then(|p| p.parse().ok());
        let written_port = port;
        if vs_port.is_none() && port.is_some() {
            // A fwmark service has no port: keepalived clears it too.
            self.shift(rs, "a fwmark service's real server takes the packet's port: the port is left out, as keepalived does");
            port = None;
        }
        // DR and TUN cannot change the port: the service's is implied.
        let address = match port {
            Some(p) if Some(p) != vs_port || forwarding == "nat" => {
                std::net::SocketAddr::new(ip, p).to_string()
            }
            _ => ip.to_string(),
        };
        let _ = writeln!(out, "address = {}", q(&address));
        let mut probe: Option<(Probe, Vec<Note>)> = None;
        let mut inhibit = false;
        for n in rs.children.iter().flatten() {
            match n.keyword.as_str() {
                "weight" => self.int_key(n, &mut out, "weight"),
                "inhibit_on_failure" => inhibit = true,
                "uthreshold" => self.int_key(n, &mut out, "upper_threshold"),
                "lthreshold" => self.int_key(n, &mut out, "lower_threshold"),
                "lvs_method" | "lb_kind" => {
                    if let Some(m) = self.arg(n) {
                        let _ = writeln!(out, "forwarding = {}", q(&m.to_lowercase()));
                    }
                }
                "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK" | "PING_CHECK"
                | "DNS_CHECK" | "UDP_CHECK" | "SMTP_CHECK" => {
                    if probe.is_some() {
                        self.not(
                            n,
                            "a second checker: tandem runs one check per real server (keepalived needs all to pass)",
                        );
                        continue;
                    }
                    // The probe's shifts are told only if its check is
                    // the one written.
                    let before = self.notes.len();
                    let p = self.probe(n, interval, host);
                    let notes = self.notes.split_off(before);
                    if p.is_none() {
                        // Why it was not carried.
                        self.notes.extend(notes);
                        continue;
                    }
                    probe = p.map(|mut p| {
                        // A fwmark service has no port of its own: the
                        // check goes to the port the real server was
                        // written with.
                        if vs_port.is_none() && p.port.is_none() && matches!(p.kind, "tcp" | "udp" | "dns" | "smtp" | "http" | "https") {
                            p.port = written_port.map(i64::from);
                        }
                        (p, notes)
                    });
                }
                "BFD_CHECK" | "FILE_CHECK" => self.not(
                    n,
                    "tandem has icmp, tcp, udp, dns, smtp, http, https and script checks: write this one as a script check",
                ),
                "notify_up" | "notify_down" => self.not(
                    n,
                    "tandem reports every real server change on its events stream and in metrics, not through a script",
                ),
                k if MAIL.contains(&k) => self.not(n, MAIL_WHY),
                _ => self.not(n, "no equivalent in tandem"),
            }
        }
        (out, probe, inhibit)
    }

    fn probe(&mut self, c: &Node, interval: f64, host: Option<&str>) -> Option<Probe> {
        let mut p = Probe {
            kind: match c.keyword.as_str() {
                "HTTP_GET" => "http",
                "SSL_GET" => "https",
                "TCP_CHECK" => "tcp",
                "MISC_CHECK" => "script",
                "DNS_CHECK" => "dns",
                "UDP_CHECK" => "udp",
                "SMTP_CHECK" => "smtp",
                _ => "icmp",
            },
            interval,
            timeout: KEEPALIVED_CONNECT_TIMEOUT_S,
            // keepalived's MISC_CHECK sets its own default: no retry
            // (check_misc.c, `default_retry = 0`).
            retry: match c.keyword.as_str() {
                "MISC_CHECK" => 0,
                // check_dns.h: DNS_DEFAULT_RETRY.
                "DNS_CHECK" => 3,
                _ => KEEPALIVED_RETRY,
            },
            host: host.map(str::to_string),
            // keepalived's script_user runs MISC_CHECK scripts too.
            user: (c.keyword == "MISC_CHECK")
                .then(|| self.script_user.clone())
                .flatten(),
            ..Probe::default()
        };
        let mut retry_at = None;
        let mut timeout_set = false;
        for n in c.children.iter().flatten() {
            match n.keyword.as_str() {
                "connect_port" => p.port = self.int(n),
                "connect_ip" => p.address = self.arg(n).and_then(|v| self.addr(n, v)),
                "bindto" => p.source = self.arg(n).and_then(|v| self.addr(n, v)),
                "connect_timeout" | "misc_timeout" => {
                    p.timeout = self.seconds(n).unwrap_or(p.timeout);
                    timeout_set = true;
                }
                "retry" | "nb_get_retry" => {
                    p.retry = self.int(n).unwrap_or(p.retry);
                    retry_at = Some(n.clone());
                }
                "delay_before_retry" => {}
                "delay_loop" => p.interval = self.seconds(n).unwrap_or(p.interval),
                "url" => {
                    if p.path.is_some() {
                        self.not(n, "a second url: tandem checks one path per virtual server");
                        continue;
                    }
                    for u in n.children.iter().flatten() {
                        match u.keyword.as_str() {
                            "path" => p.path = self.arg(u).map(str::to_string),
                            "digest" => p.digest = self.arg(u).map(|d| d.to_lowercase()),
                            "status_code" => p.status = u.words().iter().map(|s| s.to_string()).collect(),
                            "virtualhost" => p.host = self.arg(u).map(str::to_string),
                            _ => self.not(u, "no equivalent in tandem's http check"),
                        }
                    }
                }
                "virtualhost" => p.host = self.arg(n).map(str::to_string),
                "enable_sni" => p.sni = true,
                "misc_path" => p.command = self.arg(n).map(split_command).unwrap_or_default(),
                "user" => p.user = self.arg(n).map(str::to_string),
                "misc_dynamic" => self.not(
                    n,
                    "tandem does not set weights from a script's exit status; the script passes (0) or fails",
                ),
                "http_protocol" => self.shift(n, "tandem's http check speaks HTTP/1.1"),
                "helo_name" if p.kind == "smtp" => p.helo = self.arg(n).map(str::to_string),
                "host" if p.kind == "smtp" => self.not(
                    n,
                    "SMTP_CHECK's host blocks (keepalived 1.x) check other addresses: give each its own real server",
                ),
                "type" if p.kind == "dns" => p.query_type = self.arg(n).map(str::to_uppercase),
                "name" if p.kind == "dns" => p.query_name = self.arg(n).map(str::to_string),
                "payload" if p.kind == "udp" => p.send = self.hex_text(n),
                "require_reply" if p.kind == "udp" => {
                    // With bytes: the reply must start with them; without,
                    // any reply will do.
                    p.expect = match n.words().first() {
                        Some(_) => self.hex_text(n),
                        None => Some(String::new()),
                    };
                }
                "min_reply_length" | "max_reply_length" if p.kind == "udp" => self.not(
                    n,
                    "tandem compares the start of a reply with `expect`, not its length",
                ),
                "warmup" => self.not(n, "no equivalent in tandem"),
                _ => self.not(n, "no equivalent in tandem"),
            }
        }
        if p.kind == "script" && !timeout_set {
            // A script without misc_timeout may run for the whole
            // delay_loop in keepalived (check_misc.c).
            p.timeout = p.interval;
        }
        if p.kind == "script" && p.command.is_empty() {
            self.not(c, "MISC_CHECK without misc_path: not carried");
            return None;
        }
        if p.kind == "script" {
            if let Err(why) = runnable(&p.command) {
                self.not(c, &format!("{why}: not carried"));
                return None;
            }
        }
        // Without retries both take a server down at its first failure
        // and back up at its first success: nothing shifts.
        if p.retry > 0 {
            let retry_node = retry_at.unwrap_or_else(|| c.clone());
            self.shift(
                &retry_node,
                &format!(
                    "retry {}: keepalived takes a server down after {} failed attempts delay_before_retry apart, tandem after fall = {} failed checks interval apart; and back up at the first success (rise = 1)",
                    p.retry,
                    p.retry + 1,
                    p.retry + 1
                ),
            );
        }
        if p.timeout >= p.interval {
            self.shift(
                c,
                &format!(
                    "{} {} is not shorter than the interval {}: written as {}",
                    if p.kind == "script" {
                        "the script's timeout (misc_timeout, by default delay_loop)"
                    } else {
                        "connect_timeout"
                    },
                    dur(p.timeout),
                    dur(p.interval),
                    dur(p.interval * 0.9)
                ),
            );
            p.timeout = p.interval * 0.9;
        }
        if p.kind == "https" {
            self.shift(
                c,
                "SSL_GET does not verify the certificate: written with tls_verify = false",
            );
        }
        Some(p)
    }

    fn finish(mut self) -> Imported {
        let unused: Vec<Node> = self
            .vs_groups
            .iter()
            .filter(|(name, _)| !self.groups_used.contains(*name))
            .map(|(_, n)| n.clone())
            .collect();
        for g in unused {
            self.not(&g, "no virtual_server uses this group: nothing to carry");
        }
        // Groups and the sync daemon name instances: only carried ones.
        let mut groups = Vec::new();
        for (g, name, members, notify) in std::mem::take(&mut self.groups) {
            let (kept, gone): (Vec<String>, Vec<String>) = members
                .into_iter()
                .partition(|m| self.instance_names.contains(m));
            if !gone.is_empty() {
                self.not(
                    &g,
                    &format!(
                        "instances not carried are left out of the group: {}",
                        gone.join(", ")
                    ),
                );
            }
            if kept.len() < 2 {
                self.not(&g, "a sync group needs at least two instances: not carried");
                continue;
            }
            let mut out = format!(
                "[[vrrp_sync_group]]\nname = {}\ninstances = {}\n",
                q(&name),
                list(&kept)
            );
            if let Some(n) = notify {
                let _ = writeln!(out, "notify = {}", q(&n));
            }
            groups.push(out);
        }
        let mut sync = None;
        if let Some((text, instance, at)) = self.sync.take() {
            if self.instance_names.contains(&instance) {
                sync = Some(text);
            } else {
                self.not(&at, &format!("its instance {instance} was not carried"));
            }
        }
        let mut toml =
            String::from("# Imported from keepalived.conf by `tandem import keepalived`.\n\n");
        if let Some(n) = &self.node_name {
            let _ = write!(toml, "[node]\nname = {}\n\n", q(n));
        }
        for part in self
            .scripts
            .iter()
            .chain(&self.instances)
            .chain(&groups)
            .chain(&self.servers)
            .chain(&sync)
        {
            toml.push_str(part);
            toml.push('\n');
        }
        let mut notes = self.notes;
        // A group's members share one body: its notes once.
        notes.sort_by(|a, b| (&a.at, &a.keyword, &a.why).cmp(&(&b.at, &b.keyword, &b.why)));
        notes.dedup();
        Imported { toml, notes }
    }
}

fn w_none(cx: &mut Cx, f: &Node) -> Option<i64> {
    cx.not(f, "weight is not a whole number");
    None
}

enum Head {
    Address(String, String),
    Fwmark(String),
}

/// A real server's checker, as tandem's check keys.
#[derive(Clone, Debug, Default, PartialEq)]
struct Probe {
    kind: &'static str,
    interval: f64,
    timeout: f64,
    retry: i64,
    port: Option<i64>,
    address: Option<IpAddr>,
    source: Option<IpAddr>,
    path: Option<String>,
    digest: Option<String>,
    status: Vec<String>,
    host: Option<String>,
    sni: bool,
    command: Vec<String>,
    user: Option<String>,
    query_type: Option<String>,
    query_name: Option<String>,
    send: Option<String>,
    expect: Option<String>,
    helo: Option<String>,
}

impl Probe {
    /// The same check but for what a real server may override.
    fn same_kind(&self, o: &Probe) -> bool {
        (
            self.kind,
            &self.path,
            &self.digest,
            &self.status,
            &self.host,
            self.sni,
            &self.command,
            &self.user,
            (
                &self.query_type,
                &self.query_name,
                &self.send,
                &self.expect,
                &self.helo,
            ),
        ) == (
            o.kind,
            &o.path,
            &o.digest,
            &o.status,
            &o.host,
            o.sni,
            &o.command,
            &o.user,
            (&o.query_type, &o.query_name, &o.send, &o.expect, &o.helo),
        )
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => format!("{} {p}", self.kind),
            None => self.kind.to_string(),
        }
    }

    /// What `o` sets differently from the virtual server's check.
    fn overrides(&self, o: &Probe) -> Vec<String> {
        let mut v = Vec::new();
        if o.interval != self.interval {
            v.push(format!("interval = {}", q(&dur(o.interval))));
        }
        if o.timeout != self.timeout {
            v.push(format!("timeout = {}", q(&dur(o.timeout))));
        }
        if o.retry != self.retry {
            v.push(format!("fall = {}", o.retry + 1));
        }
        if o.port != self.port {
            if let Some(p) = o.port {
                v.push(format!("port = {p}"));
            }
        }
        if o.address != self.address {
            if let Some(a) = o.address {
                v.push(format!("address = {}", q(&a.to_string())));
            }
        }
        if o.source != self.source {
            if let Some(a) = o.source {
                v.push(format!("source = {}", q(&a.to_string())));
            }
        }
        v
    }

    fn toml(&self) -> String {
        let mut s = format!(
            "type = {}\ninterval = {}\ntimeout = {}\nrise = 1\nfall = {}\n",
            q(self.kind),
            q(&dur(self.interval)),
            q(&dur(self.timeout)),
            self.retry + 1
        );
        if let Some(p) = self.port {
            let _ = writeln!(s, "port = {p}");
        }
        if let Some(a) = self.address {
            let _ = writeln!(s, "address = {}", q(&a.to_string()));
        }
        if let Some(a) = self.source {
            let _ = writeln!(s, "source = {}", q(&a.to_string()));
        }
        if let Some(p) = &self.path {
            let _ = writeln!(s, "path = {}", q(p));
        }
        for (key, value) in [
            ("query_name", &self.query_name),
            ("query_type", &self.query_type),
            ("send", &self.send),
            ("expect", &self.expect),
            ("helo_name", &self.helo),
        ] {
            if let Some(v) = value {
                let _ = writeln!(s, "{key} = {}", q(v));
            }
        }
        if let Some(h) = &self.host {
            if matches!(self.kind, "http" | "https") {
                let _ = writeln!(s, "host = {}", q(h));
            }
        }
        if !self.status.is_empty() {
            let codes: Vec<String> = self
                .status
                .iter()
                .map(|c| match c.parse::<i64>() {
                    Ok(n) => n.to_string(),
                    Err(_) => q(c),
                })
                .collect();
            let _ = writeln!(s, "expect_status = [{}]", codes.join(", "));
        }
        if let Some(d) = &self.digest {
            let _ = writeln!(s, "body_md5 = {}", q(d));
        }
        if self.kind == "https" {
            s.push_str("tls_verify = false\n");
            if self.sni {
                if let Some(h) = &self.host {
                    let _ = writeln!(s, "sni = {}", q(h));
                }
            }
        }
        if !self.command.is_empty() {
            let _ = writeln!(s, "command = {}", list(&self.command));
        }
        if let Some(u) = &self.user {
            let _ = writeln!(s, "user = {}", q(u));
        }
        s
    }
}

/// keepalived's seconds as a tandem duration.
fn dur(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as u64;
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

/// keepalived's `script` and `misc_path`: words split on white space,
/// `'...'` and `"..."` keeping theirs (keepalived 2 runs them without a
/// shell).
fn split_command(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// tandem runs a script's words without a shell or a PATH search: the
/// program must be an absolute path, and shell syntax has no meaning.
fn runnable(command: &[String]) -> Result<(), String> {
    let prog = command.first().map(String::as_str).unwrap_or("");
    if prog.starts_with('<')
        || prog.starts_with('>')
        || command
            .iter()
            .any(|w| ["|", "&&", "||", ";"].contains(&w.as_str()))
    {
        return Err(format!(
            "{:?} is shell syntax; tandem runs programs without a shell (wrap it in a script)",
            command.join(" ")
        ));
    }
    if !prog.starts_with('/') {
        return Err(format!(
            "{prog:?} is not an absolute path; tandem searches no PATH"
        ));
    }
    Ok(())
}

/// `255.255.255.0` or `24` as a prefix length.
fn prefix_len(m: &str) -> Option<u8> {
    if let Ok(n) = m.parse::<u8>() {
        return Some(n);
    }
    let a: std::net::Ipv4Addr = m.parse().ok()?;
    let bits = u32::from(a);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// `10.0.0.1-3` as `10.0.0.1 10.0.0.2 10.0.0.3` (keepalived's group
/// ranges vary the last part); anything else as itself.
fn expand_range(s: &str) -> Vec<String> {
    if let Some((first, last)) = s.rsplit_once('-') {
        if let (Ok(a), Ok(end)) = (first.parse::<std::net::Ipv4Addr>(), last.parse::<u8>()) {
            let o = a.octets();
            return (o[3]..=end.max(o[3]))
                .map(|x| std::net::Ipv4Addr::new(o[0], o[1], o[2], x).to_string())
                .collect();
        }
    }
    vec![s.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_become_the_shortest_tandem_duration() {
        assert_eq!(dur(1.0), "1s");
        assert_eq!(dur(0.05), "50ms");
        assert_eq!(dur(2.5), "2500ms");
    }

    #[test]
    fn a_netmask_or_a_length_is_a_prefix_and_a_broken_mask_is_not() {
        assert_eq!(prefix_len("255.255.255.0"), Some(24));
        assert_eq!(prefix_len("255.255.255.255"), Some(32));
        assert_eq!(prefix_len("16"), Some(16));
        assert_eq!(prefix_len("255.0.255.0"), None);
    }

    #[test]
    fn a_group_range_varies_the_last_octet() {
        assert_eq!(
            expand_range("10.0.0.1-3"),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(expand_range("10.0.0.7"), ["10.0.0.7"]);
    }

    #[test]
    fn a_script_line_splits_into_words_and_quotes_keep_theirs() {
        assert_eq!(
            split_command("/bin/check 'a b' \"c d\" '' e"),
            ["/bin/check", "a b", "c d", "", "e"]
        );
    }

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(q("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
