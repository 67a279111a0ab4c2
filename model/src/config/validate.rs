//! Semantic validation: everything serde cannot say about a well-formed
//! file. Every rule runs; all findings come back at once, each with the
//! path of the offending value, the value, and what is allowed.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::diagnostic::{Finding, Seg};
use super::value::format_duration;
use super::{
    AntiReplay, Check, CheckOverride, CheckType, Config, Family, Forwarding, Protocol, SCHEDULERS,
    SyncGroup, TrackScript, Tunnel, TunnelType, VirtualServer, VrrpInstance, WebUi,
};

/// Priority adjustments from tracking stay inside the range a backup can
/// hold (keepalived allows -253..253 as well).
const WEIGHT_RANGE: std::ops::RangeInclusive<i64> = -253..=253;

type LineOf<'a> = &'a dyn Fn(&[Seg]) -> usize;

struct V<'a> {
    findings: Vec<Finding>,
    line_of: LineOf<'a>,
}

impl V<'_> {
    fn err(&mut self, path: Vec<Seg>, message: impl Into<String>) {
        self.findings.push(Finding {
            path,
            message: message.into(),
        });
    }
}

/// Path builder: `p!["vrrp_instance", i, "priority"]`.
macro_rules! p {
    ($($seg:expr),* $(,)?) => { vec![$(Seg::from($seg)),*] };
}

impl From<&'static str> for Seg {
    fn from(k: &'static str) -> Self {
        Seg::Key(k)
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

pub(crate) fn validate(config: &Config, line_of: LineOf<'_>) -> Vec<Finding> {
    let mut v = V {
        findings: Vec::new(),
        line_of,
    };
    node(&mut v, config);
    for (i, script) in config.track_scripts.iter().enumerate() {
        track_script(&mut v, i, script);
    }
    unique_names(
        &mut v,
        "track_script",
        config.track_scripts.iter().map(|s| s.name.as_str()),
    );
    for (i, inst) in config.vrrp_instances.iter().enumerate() {
        vrrp_instance(&mut v, config, i, inst);
    }
    unique_names(
        &mut v,
        "vrrp_instance",
        config.vrrp_instances.iter().map(|s| s.name.as_str()),
    );
    vrrp_cross(&mut v, config);
    for (i, g) in config.vrrp_sync_groups.iter().enumerate() {
        sync_group(&mut v, config, i, g);
    }
    unique_names(
        &mut v,
        "vrrp_sync_group",
        config.vrrp_sync_groups.iter().map(|s| s.name.as_str()),
    );
    for (i, vs) in config.virtual_servers.iter().enumerate() {
        virtual_server(&mut v, i, vs);
    }
    unique_names(
        &mut v,
        "virtual_server",
        config.virtual_servers.iter().map(|s| s.name.as_str()),
    );
    virtual_server_keys(&mut v, config);
    if let Some(cs) = &config.connection_sync {
        if config.vrrp_instance(&cs.instance).is_none() {
            let known = names(config.vrrp_instances.iter().map(|s| &s.name));
            v.err(
                p!["connection_sync", "instance"],
                format!("connection_sync follows instance \"{}\", which does not exist; defined: {known}", cs.instance),
            );
        }
        if let Err(why) = check_ifname(&cs.interface) {
            v.err(
                p!["connection_sync", "interface"],
                format!("interface \"{}\" {why}", cs.interface),
            );
        }
        if let Some(id) = cs.sync_id {
            if !(0..=255).contains(&id) {
                v.err(
                    p!["connection_sync", "sync_id"],
                    format!("sync_id {id} is out of range: allowed 0-255"),
                );
            }
        }
    }
    webui(&mut v, &config.webui);
    v.findings
}

fn node(v: &mut V<'_>, config: &Config) {
    if let Some(name) = &config.node.name {
        if let Err(why) = check_name(name) {
            v.err(p!["node", "name"], format!("node name \"{name}\" {why}"));
        }
    }
    for (key, dir) in [
        ("socket_dir", &config.node.socket_dir),
        ("state_dir", &config.node.state_dir),
    ] {
        if !dir.is_absolute() {
            v.err(
                p!["node", key],
                format!("{key} \"{}\" must be an absolute path", dir.display()),
            );
        }
    }
}

/// Names appear in URLs, file names, notify arguments and metrics labels.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 64 {
        return Err("is longer than 64 characters".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "has '{c}': use letters, digits, '-', '_' and '.' only"
        ));
    }
    Ok(())
}

/// Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/' or
/// whitespace (net/core/dev.c dev_valid_name).
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > 15 {
        return Err(format!(
            "is {} bytes long: Linux interface names have at most 15",
            name.len()
        ));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err("is not a valid Linux interface name".into());
    }
    Ok(())
}

fn unique_names<'a>(v: &mut V<'_>, table: &'static str, names: impl Iterator<Item = &'a str>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if let Some(&first) = seen.get(name) {
            let line = (v.line_of)(&[Seg::Key(table), Seg::Index(first)]);
            v.err(
                p![table, i, "name"],
                format!(
                    "duplicate {table} name \"{name}\": the {table} at line {line} has it already; names must be unique"
                ),
            );
        } else {
            seen.insert(name, i);
        }
    }
}

fn family_name(is_v4: bool) -> &'static str {
    if is_v4 { "IPv4" } else { "IPv6" }
}

fn check_weight(v: &mut V<'_>, path: Vec<Seg>, weight: Option<i64>) {
    if let Some(w) = weight {
        if !WEIGHT_RANGE.contains(&w) {
            v.err(
                path,
                format!("weight {w} is out of range: allowed -253 to 253 (added to the priority)"),
            );
        }
    }
}

fn vrrp_instance(v: &mut V<'_>, config: &Config, i: usize, inst: &VrrpInstance) {
    const T: &str = "vrrp_instance";
    if let Err(why) = check_name(&inst.name) {
        v.err(
            p![T, i, "name"],
            format!("instance name \"{}\" {why}", inst.name),
        );
    }
    if let Err(why) = check_ifname(&inst.interface) {
        v.err(
            p![T, i, "interface"],
            format!("interface \"{}\" {why}", inst.interface),
        );
    }
    if !(1..=255).contains(&inst.vrid) {
        v.err(
            p![T, i, "vrid"],
            format!("vrid {} is out of range: allowed 1-255", inst.vrid),
        );
    }
    match (inst.priority, inst.address_owner) {
        (Some(255), false) => v.err(
            p![T, i, "priority"],
            "priority 255 is reserved for the address owner (RFC 5798 5.2.4): use 1-254, or set address_owner = true if this node owns every virtual IP as a real address",
        ),
        (Some(p), false) if !(1..=254).contains(&p) => v.err(
            p![T, i, "priority"],
            format!("priority {p} is out of range: allowed 1-254 (255 only for an address owner)"),
        ),
        (Some(p), true) if p != 255 => v.err(
            p![T, i, "priority"],
            format!("priority {p} with address_owner = true: an address owner always has priority 255 (RFC 5798 5.2.4); remove priority or set it to 255"),
        ),
        _ => {}
    }
    let version_ok = matches!(inst.version, 2 | 3);
    if !version_ok {
        v.err(
            p![T, i, "version"],
            format!(
                "version {} is not a VRRP version: allowed 3 (RFC 5798) or 2 (RFC 3768)",
                inst.version
            ),
        );
    }
    let ai = inst.advert_interval;
    if inst.version == 2 && (ai.subsec_nanos() != 0 || !(1..=255).contains(&ai.as_secs())) {
        v.err(
            p![T, i, "advert_interval"],
            format!(
                "advert_interval \"{}\" is not valid for VRRPv2: allowed whole seconds 1s-255s (RFC 3768 5.3.7)",
                format_duration(ai)
            ),
        );
    }
    if inst.version == 3
        && (ai.as_nanos() % 10_000_000 != 0
            || ai < Duration::from_millis(10)
            || ai > Duration::from_millis(40_950))
    {
        v.err(
            p![T, i, "advert_interval"],
            format!(
                "advert_interval \"{}\" is not valid for VRRPv3: allowed 10ms to 40.95s in steps of 10ms (RFC 5798 5.2.7: centiseconds in 12 bits)",
                format_duration(ai)
            ),
        );
    }
    if let Some(pass) = &inst.auth_pass {
        if inst.version != 2 {
            v.err(
                p![T, i, "auth_pass"],
                "auth_pass is for VRRPv2 only: RFC 5798 removed authentication from VRRPv3; set version = 2 (as the keepalived peer it matches) or remove auth_pass",
            );
        } else if pass.is_empty() || pass.len() > 8 {
            v.err(
                p![T, i, "auth_pass"],
                format!(
                    "auth_pass is {} bytes: allowed 1-8 (RFC 2338 5.3.7 carries 8 octets; keepalived cuts a longer one to its first 8, so write those)",
                    pass.len()
                ),
            );
        }
    }
    if let Some(h) = &inst.auth_hmac {
        if inst.auth_pass.is_some() {
            v.err(
                p![T, i, "auth_hmac"],
                "auth_hmac and auth_pass exclude each other (an authenticated VRRPv2 advert has Auth Type 0, as keepalived sends it): remove auth_pass",
            );
        }
        match (&h.key_file, &h.key_credential) {
            (None, None) | (Some(_), Some(_)) => v.err(
                p![T, i, "auth_hmac"],
                "auth_hmac needs exactly one of key_file (a file of \"<id> hex:<key>\" lines) or key_credential (a systemd credential in that format): keys are never written in this file",
            ),
            (_, Some(c)) if c.is_empty() || c.contains('/') => v.err(
                p![T, i, "auth_hmac", "key_credential"],
                format!("key_credential \"{c}\" is not a credential name: a name without '/', as LoadCredential= gives it"),
            ),
            _ => {}
        }
        if !(1..=255).contains(&h.active_key) {
            v.err(
                p![T, i, "auth_hmac", "active_key"],
                format!(
                    "active_key {} is out of range: allowed 1-255 (the key id is one octet)",
                    h.active_key
                ),
            );
        }
        if let Some(w) = h.time_window {
            if h.anti_replay == AntiReplay::Monotonic {
                v.err(
                    p![T, i, "auth_hmac", "time_window"],
                    "time_window is for anti_replay = \"time\": monotonic sequence numbers have no window",
                );
            } else if w < Duration::from_secs(1)
                || w > Duration::from_secs(300)
                || w.subsec_nanos() != 0
            {
                v.err(
                    p![T, i, "auth_hmac", "time_window"],
                    format!(
                        "time_window \"{}\" is not valid: allowed 1s-300s in whole seconds (keepalived's range)",
                        format_duration(w)
                    ),
                );
            }
        }
    }
    if inst.preempt_delay > Duration::from_secs(1000) {
        v.err(
            p![T, i, "preempt_delay"],
            format!(
                "preempt_delay \"{}\" is too long: allowed 0s-1000s",
                format_duration(inst.preempt_delay)
            ),
        );
    }
    if !inst.accept && !inst.address_owner {
        // A director must take the packets for its VIPs: IPVS serves them
        // from the local input path. Dropping them would need a packet
        // filter vrrpd does not install.
        v.err(
            p![T, i, "accept"],
            "accept = false is not supported: a tandem master always accepts packets addressed to its virtual IPs (IPVS serves them); remove the key",
        );
    }
    if !inst.preempt && !inst.preempt_delay.is_zero() {
        v.err(
            p![T, i, "preempt_delay"],
            "preempt_delay has no effect with preempt = false: remove one of them",
        );
    }

    // Virtual IPs: one family per instance (RFC 5798 5.2.9: an advert
    // carries addresses of its own IP version only).
    let Some(first) = inst.virtual_ips.first() else {
        v.err(
            p![T, i, "virtual_ips"],
            "virtual_ips is empty: an instance floats at least one address",
        );
        return;
    };
    let is_v4 = first.address.is_ipv4();
    if inst.version == 2 && !is_v4 {
        v.err(
            p![T, i, "version"],
            "VRRPv2 is IPv4 only (RFC 3768): use version = 3 for an IPv6 instance",
        );
    }
    if inst.virtual_ips.len() > 255 {
        v.err(
            p![T, i, "virtual_ips"],
            format!(
                "{} virtual IPs: an advert carries at most 255 (Count IPvX Addr is 8 bits)",
                inst.virtual_ips.len()
            ),
        );
    }
    let mut seen = BTreeSet::new();
    for (j, vip) in inst.virtual_ips.iter().enumerate() {
        let path = || p![T, i, "virtual_ips", j];
        let a = vip.address;
        if a.is_ipv4() != is_v4 {
            v.err(
                path(),
                format!(
                    "{a} is {} but this instance is {} (its first virtual IP is {}): an instance carries one address family; add a second instance, same vrid, for the other",
                    family_name(a.is_ipv4()),
                    family_name(is_v4),
                    first.address
                ),
            );
        }
        if a.addr.is_unspecified() || a.addr.is_multicast() || a.addr.is_loopback() {
            v.err(
                path(),
                format!("{a} cannot be a virtual IP: it is not a unicast address"),
            );
        }
        if !seen.insert(a.addr) {
            v.err(
                path(),
                format!("{} is listed twice in this instance", a.addr),
            );
        }
        let ifname = vip.interface.as_deref().unwrap_or(&inst.interface);
        if let Some(ifn) = &vip.interface {
            if let Err(why) = check_ifname(ifn) {
                v.err(path(), format!("interface \"{ifn}\" {why}"));
            }
        }
        if let Some(label) = &vip.label {
            if !a.is_ipv4() {
                v.err(
                    path(),
                    format!("label \"{label}\": Linux labels IPv4 addresses only"),
                );
            } else if !label.starts_with(ifname) || label.len() > 15 {
                v.err(
                    path(),
                    format!(
                        "label \"{label}\" must start with the interface name \"{ifname}\" and be at most 15 bytes, as the kernel requires"
                    ),
                );
            }
        }
    }

    // Unicast.
    if let Some(src) = inst.unicast_src {
        if src.is_ipv4() != is_v4 {
            v.err(
                p![T, i, "unicast_src"],
                format!(
                    "unicast_src {src} is {} but this instance is {}",
                    family_name(src.is_ipv4()),
                    family_name(is_v4)
                ),
            );
        }
    }
    let mut peers = BTreeSet::new();
    for (j, peer) in inst.unicast_peers.iter().enumerate() {
        let path = || p![T, i, "unicast_peers", j];
        if peer.is_ipv4() != is_v4 {
            v.err(
                path(),
                format!(
                    "unicast peer {peer} is {} but this instance is {}",
                    family_name(peer.is_ipv4()),
                    family_name(is_v4)
                ),
            );
        } else if peer.is_multicast() || peer.is_unspecified() {
            v.err(
                path(),
                format!("unicast peer {peer} is not a unicast address"),
            );
        }
        if Some(*peer) == inst.unicast_src {
            v.err(
                path(),
                format!("unicast peer {peer} is this node's own unicast_src"),
            );
        }
        if !peers.insert(*peer) {
            v.err(path(), format!("unicast peer {peer} is listed twice"));
        }
    }

    // Tracking.
    for (j, t) in inst.track_interfaces.iter().enumerate() {
        if let Err(why) = check_ifname(&t.interface) {
            v.err(
                p![T, i, "track_interfaces", j],
                format!("tracked interface \"{}\" {why}", t.interface),
            );
        }
        check_weight(v, p![T, i, "track_interfaces", j], t.weight);
    }
    for (j, t) in inst.track_files.iter().enumerate() {
        if !t.path.is_absolute() {
            v.err(
                p![T, i, "track_files", j],
                format!(
                    "tracked file \"{}\" must be an absolute path",
                    t.path.display()
                ),
            );
        }
        check_weight(v, p![T, i, "track_files", j], t.weight);
    }
    for (j, t) in inst.track_scripts.iter().enumerate() {
        if config.track_script(&t.name).is_none() {
            let known = names(config.track_scripts.iter().map(|s| &s.name));
            v.err(
                p![T, i, "track_scripts", j],
                format!("track_scripts names \"{}\", but no [[track_script]] has that name; defined: {known}", t.name),
            );
        }
        check_weight(v, p![T, i, "track_scripts", j], t.weight);
    }
    for (j, t) in inst.track_virtual_servers.iter().enumerate() {
        if config.virtual_server(&t.name).is_none() {
            let known = names(config.virtual_servers.iter().map(|s| &s.name));
            v.err(
                p![T, i, "track_virtual_servers", j],
                format!("track_virtual_servers names \"{}\", but no [[virtual_server]] has that name; defined: {known}", t.name),
            );
        }
        check_weight(v, p![T, i, "track_virtual_servers", j], t.weight);
    }
    if let Some(n) = &inst.notify {
        if !n.is_absolute() {
            v.err(
                p![T, i, "notify"],
                format!(
                    "notify \"{}\" must be an absolute path (it runs without a shell)",
                    n.display()
                ),
            );
        }
    }
    if !(0..=100).contains(&inst.announce_count) {
        v.err(
            p![T, i, "announce_count"],
            format!(
                "announce_count {} is out of range: allowed 0-100",
                inst.announce_count
            ),
        );
    }
    if inst.announce_interval > Duration::from_secs(10) {
        v.err(
            p![T, i, "announce_interval"],
            format!(
                "announce_interval \"{}\" is too long: allowed 0s-10s",
                format_duration(inst.announce_interval)
            ),
        );
    }
    if let Some(vm) = &inst.vmac_interface {
        if !inst.use_vmac {
            v.err(
                p![T, i, "vmac_interface"],
                "vmac_interface has no effect without use_vmac = true",
            );
        } else if let Err(why) = check_ifname(vm) {
            v.err(
                p![T, i, "vmac_interface"],
                format!("vmac_interface \"{vm}\" {why}"),
            );
        }
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<String> = it.map(|n| format!("\"{n}\"")).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// Rules across instances: a virtual router is (interface, family, vrid);
/// a VIP floats in one instance only; a virtual-MAC macvlan serves one
/// instance.
fn vrrp_cross(v: &mut V<'_>, config: &Config) {
    let mut routers: HashMap<(&str, bool, i64), usize> = HashMap::new();
    let mut vips: HashMap<IpAddr, usize> = HashMap::new();
    let mut vmacs: HashMap<String, usize> = HashMap::new();
    for (i, inst) in config.vrrp_instances.iter().enumerate() {
        let Some(first) = inst.virtual_ips.first() else {
            continue;
        };
        let is_v4 = first.address.is_ipv4();
        if inst.use_vmac {
            let name = inst
                .vmac_interface
                .clone()
                .unwrap_or_else(|| format!("vrrp.{}", inst.vrid));
            if let Some(&other) = vmacs.get(&name) {
                let o = &config.vrrp_instances[other];
                v.err(
                    p!["vrrp_instance", i, "use_vmac"],
                    format!(
                        "instance \"{}\" already puts its virtual MAC on macvlan {name}: set vmac_interface to another name for one of them",
                        o.name
                    ),
                );
            } else {
                vmacs.insert(name, i);
            }
        }
        let key = (inst.interface.as_str(), is_v4, inst.vrid);
        if let Some(&other) = routers.get(&key) {
            let line = (v.line_of)(&[Seg::Key("vrrp_instance"), Seg::Index(other)]);
            v.err(
                p!["vrrp_instance", i, "vrid"],
                format!(
                    "vrid {} is already used on {} for {} by instance \"{}\" (line {line}): interface, family and vrid name a virtual router",
                    inst.vrid, inst.interface, family_name(is_v4), config.vrrp_instances[other].name
                ),
            );
        } else {
            routers.insert(key, i);
        }
        for (j, vip) in inst.virtual_ips.iter().enumerate() {
            match vips.get(&vip.address.addr) {
                Some(&other) if other != i => v.err(
                    p!["vrrp_instance", i, "virtual_ips", j],
                    format!(
                        "{} is also a virtual IP of instance \"{}\": one address floats with one instance",
                        vip.address.addr, config.vrrp_instances[other].name
                    ),
                ),
                _ => {
                    vips.insert(vip.address.addr, i);
                }
            }
        }
    }
}

fn sync_group(v: &mut V<'_>, config: &Config, i: usize, g: &SyncGroup) {
    const T: &str = "vrrp_sync_group";
    if let Err(why) = check_name(&g.name) {
        v.err(
            p![T, i, "name"],
            format!("sync group name \"{}\" {why}", g.name),
        );
    }
    if g.instances.len() < 2 {
        v.err(
            p![T, i, "instances"],
            "a sync group needs at least two instances (one instance is already in sync with itself)",
        );
    }
    let mut seen = BTreeSet::new();
    for (j, name) in g.instances.iter().enumerate() {
        if config.vrrp_instance(name).is_none() {
            let known = names(config.vrrp_instances.iter().map(|s| &s.name));
            v.err(
                p![T, i, "instances", j],
                format!(
                    "sync group names instance \"{name}\", which does not exist; defined: {known}"
                ),
            );
        }
        if !seen.insert(name) {
            v.err(
                p![T, i, "instances", j],
                format!("instance \"{name}\" is listed twice"),
            );
        }
        if let Some(other) = config.vrrp_sync_groups[..i]
            .iter()
            .find(|o| o.instances.contains(name))
        {
            v.err(
                p![T, i, "instances", j],
                format!("instance \"{name}\" is already in sync group \"{}\": an instance belongs to one group", other.name),
            );
        }
    }
}

fn track_script(v: &mut V<'_>, i: usize, s: &TrackScript) {
    const T: &str = "track_script";
    if let Err(why) = check_name(&s.name) {
        v.err(
            p![T, i, "name"],
            format!("track_script name \"{}\" {why}", s.name),
        );
    }
    check_command(v, p![T, i, "command"], &s.command);
    check_timing(v, p![T, i], s.interval, s.timeout);
    check_rise_fall(v, p![T, i, "rise"], "rise", s.rise);
    check_rise_fall(v, p![T, i, "fall"], "fall", s.fall);
    check_weight(v, p![T, i, "weight"], s.weight);
    if let Some(u) = &s.user {
        if u.is_empty() {
            v.err(p![T, i, "user"], "user is empty");
        }
    }
}

fn check_command(v: &mut V<'_>, path: Vec<Seg>, command: &[String]) {
    match command.first() {
        None => v.err(path, "command is empty: give the program and its arguments, e.g. [\"/usr/local/bin/check\", \"--quiet\"]"),
        Some(prog) if !prog.starts_with('/') => v.err(
            path,
            format!("command runs \"{prog}\" without a shell or PATH: give its absolute path"),
        ),
        _ => {}
    }
}

fn check_rise_fall(v: &mut V<'_>, path: Vec<Seg>, key: &str, n: i64) {
    if !(1..=1000).contains(&n) {
        v.err(path, format!("{key} {n} is out of range: allowed 1-1000"));
    }
}

/// interval > 0 and timeout < interval, or probes of one target overlap.
/// `at` is the table holding both keys.
fn check_timing(v: &mut V<'_>, at: Vec<Seg>, interval: Duration, timeout: Duration) {
    let path = |key: &'static str| {
        let mut p = at.clone();
        p.push(Seg::Key(key));
        p
    };
    if interval < Duration::from_millis(10) {
        v.err(
            path("interval"),
            format!(
                "interval \"{}\" is too short: at least 10ms",
                format_duration(interval)
            ),
        );
    }
    if timeout.is_zero() {
        v.err(
            path("timeout"),
            "timeout \"0s\" is too short: give the probe some time",
        );
    } else if timeout >= interval {
        v.err(
            path("timeout"),
            format!(
                "timeout \"{}\" must be shorter than interval \"{}\", or probes of one target would overlap",
                format_duration(timeout),
                format_duration(interval)
            ),
        );
    }
}

fn vs_family_is_v4(vs: &VirtualServer) -> bool {
    vs.family() == Family::Ipv4
}

fn virtual_server(v: &mut V<'_>, i: usize, vs: &VirtualServer) {
    const T: &str = "virtual_server";
    if let Err(why) = check_name(&vs.name) {
        v.err(
            p![T, i, "name"],
            format!("virtual server name \"{}\" {why}", vs.name),
        );
    }
    match (vs.address, vs.fwmark) {
        (None, None) => v.err(
            p![T, i],
            "a virtual server needs an address (\"192.0.2.10:80\") or a fwmark",
        ),
        (Some(_), Some(_)) => v.err(
            p![T, i, "fwmark"],
            "a virtual server has an address or a fwmark, not both",
        ),
        (None, Some(m)) if !(1..=u32::MAX as i64).contains(&m) => v.err(
            p![T, i, "fwmark"],
            format!("fwmark {m} is out of range: allowed 1-4294967295"),
        ),
        _ => {}
    }
    if vs.address.is_some() && vs.family.is_some() {
        v.err(
            p![T, i, "family"],
            "family is only for fwmark services: an address already has one",
        );
    }
    if let Some(a) = vs.address {
        if a.ip().is_unspecified() || a.ip().is_multicast() {
            v.err(p![T, i, "address"], format!("{a} is not a unicast address"));
        }
        if a.port() == 0 && vs.persistence.is_zero() {
            v.err(
                p![T, i, "address"],
                format!("{a}: port 0 (every port) needs persistence, as in ipvsadm"),
            );
        }
    }
    if let Some(ss) = vs.slow_start {
        if ss < Duration::from_secs(1) || ss > Duration::from_secs(3600) {
            v.err(
                p![T, i, "slow_start"],
                format!(
                    "slow_start {} is out of range: allowed 1s to 1h (weights move once a second)",
                    super::format_duration(ss)
                ),
            );
        }
    }
    if !SCHEDULERS.contains(&vs.scheduler.as_str()) {
        v.err(
            p![T, i, "scheduler"],
            format!(
                "unknown scheduler \"{}\": the kernel has {}",
                vs.scheduler,
                SCHEDULERS.join(", ")
            ),
        );
    }
    let mut flags = BTreeSet::new();
    for (j, f) in vs.scheduler_flags.iter().enumerate() {
        if !matches!(vs.scheduler.as_str(), "sh" | "mh") {
            v.err(
                p![T, i, "scheduler_flags", j],
                format!(
                    "scheduler_flags apply to the sh and mh schedulers, not \"{}\"",
                    vs.scheduler
                ),
            );
            break;
        }
        if !matches!(f.as_str(), "fallback" | "port") {
            v.err(
                p![T, i, "scheduler_flags", j],
                format!("unknown scheduler flag \"{f}\": allowed \"fallback\", \"port\""),
            );
        }
        if !flags.insert(f) {
            v.err(
                p![T, i, "scheduler_flags", j],
                format!("flag \"{f}\" is listed twice"),
            );
        }
    }
    if vs.persistence.subsec_nanos() != 0 || vs.persistence.as_secs() > u64::from(u32::MAX) {
        v.err(
            p![T, i, "persistence"],
            format!(
                "persistence \"{}\" must be whole seconds (the kernel counts seconds)",
                format_duration(vs.persistence)
            ),
        );
    }
    if let Some(pfx) = vs.persistence_prefix {
        let max = if vs_family_is_v4(vs) { 32 } else { 128 };
        if vs.persistence.is_zero() {
            v.err(
                p![T, i, "persistence_prefix"],
                "persistence_prefix has no effect without persistence",
            );
        } else if !(0..=max).contains(&pfx) {
            v.err(
                p![T, i, "persistence_prefix"],
                format!("persistence_prefix {pfx} is out of range: allowed 0-{max}"),
            );
        }
    }
    if vs.one_packet && vs.protocol != Protocol::Udp {
        v.err(
            p![T, i, "one_packet"],
            "one_packet schedules each datagram on its own: it applies to UDP services only",
        );
    }
    let n = vs.real_servers.len() as i64;
    if vs.quorum < 0 {
        v.err(
            p![T, i, "quorum"],
            format!("quorum {} is out of range: at least 0", vs.quorum),
        );
    } else if vs.quorum > n && n > 0 {
        v.err(
            p![T, i, "quorum"],
            format!(
                "quorum {} can never be met: this virtual server has {n} real server{}",
                vs.quorum,
                if n == 1 { "" } else { "s" }
            ),
        );
    }
    if vs.quorum_hysteresis < 0 || (vs.quorum_hysteresis > 0 && vs.quorum_hysteresis >= vs.quorum) {
        v.err(
            p![T, i, "quorum_hysteresis"],
            format!(
                "quorum_hysteresis {} is out of range: allowed 0 to quorum - 1 ({})",
                vs.quorum_hysteresis,
                (vs.quorum - 1).max(0)
            ),
        );
    }
    if let Some(sorry) = vs.sorry_server {
        if sorry.ip.is_ipv4() != vs_family_is_v4(vs) {
            v.err(
                p![T, i, "sorry_server"],
                format!(
                    "sorry_server {sorry} is {} but the virtual server is {}",
                    family_name(sorry.ip.is_ipv4()),
                    family_name(vs_family_is_v4(vs))
                ),
            );
        }
    }
    if let Some(t) = &vs.tunnel {
        tunnel(v, p![T, i, "tunnel"], t, vs.forwarding);
    }
    if let Some(check) = &vs.check {
        check_table(v, i, check);
    }

    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (j, rs) in vs.real_servers.iter().enumerate() {
        let path = |key: &'static str| p![T, i, "real_server", j, key];
        let addr = rs.address.with_default_port(vs.port());
        if addr.is_ipv4() != vs_family_is_v4(vs) {
            v.err(
                path("address"),
                format!(
                    "real server {} is {} but the virtual server is {}",
                    rs.address,
                    family_name(addr.is_ipv4()),
                    family_name(vs_family_is_v4(vs))
                ),
            );
        }
        if let Some(&first) = seen.get(&addr) {
            let line = (v.line_of)(&[
                Seg::Key(T),
                Seg::Index(i),
                Seg::Key("real_server"),
                Seg::Index(first),
            ]);
            v.err(
                path("address"),
                format!("real server {addr} is listed twice in this virtual server (also at line {line})"),
            );
        } else {
            seen.insert(addr, j);
        }
        if !(0..=65535).contains(&rs.weight) {
            v.err(
                path("weight"),
                format!("weight {} is out of range: allowed 0-65535", rs.weight),
            );
        }
        let fwd = rs.forwarding.unwrap_or(vs.forwarding);
        if matches!(fwd, Forwarding::Dr | Forwarding::Tun)
            && vs.address.is_some()
            && rs.address.port.is_some_and(|p| p != vs.port())
        {
            v.err(
                path("address"),
                format!(
                    "real server {}: {} forwarding passes packets unchanged, so the real server must use the service port {}",
                    rs.address,
                    if fwd == Forwarding::Dr { "DR" } else { "TUN" },
                    vs.port()
                ),
            );
        }
        for (key, val) in [
            ("upper_threshold", rs.upper_threshold),
            ("lower_threshold", rs.lower_threshold),
        ] {
            if !(0..=u32::MAX as i64).contains(&val) {
                v.err(
                    path(key),
                    format!("{key} {val} is out of range: allowed 0-4294967295"),
                );
            }
        }
        if rs.lower_threshold > 0
            && (rs.upper_threshold == 0 || rs.lower_threshold >= rs.upper_threshold)
        {
            v.err(
                path("lower_threshold"),
                format!(
                    "lower_threshold {} needs an upper_threshold above it (upper_threshold is {})",
                    rs.lower_threshold, rs.upper_threshold
                ),
            );
        }
        if let Some(t) = &rs.tunnel {
            tunnel(v, path("tunnel"), t, fwd);
        }
        if let Some(o) = &rs.check {
            check_override(v, i, j, vs, o);
        }
    }
}

/// Two virtual servers on one IPVS service would fight over it.
fn virtual_server_keys(v: &mut V<'_>, config: &Config) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, vs) in config.virtual_servers.iter().enumerate() {
        let key = match (vs.address, vs.fwmark) {
            (Some(a), _) => format!("{:?} {a}", vs.protocol).to_lowercase(),
            (None, Some(m)) => format!("fwmark {m} {:?}", vs.family()).to_lowercase(),
            (None, None) => continue,
        };
        if let Some(&other) = seen.get(&key) {
            v.err(
                p![
                    "virtual_server",
                    i,
                    if vs.address.is_some() {
                        "address"
                    } else {
                        "fwmark"
                    }
                ],
                format!(
                    "virtual server \"{}\" is the same IPVS service ({key}) as \"{}\"",
                    vs.name, config.virtual_servers[other].name
                ),
            );
        } else {
            seen.insert(key, i);
        }
    }
}

fn tunnel(v: &mut V<'_>, path: Vec<Seg>, t: &Tunnel, fwd: Forwarding) {
    if fwd != Forwarding::Tun {
        v.err(path.clone(), "tunnel applies to forwarding = \"tun\" only");
        return;
    }
    match (t.kind, t.port) {
        (TunnelType::Gue, None) => v.err(
            path.clone(),
            "a GUE tunnel needs its UDP port: tunnel = { type = \"gue\", port = 6080 }",
        ),
        (TunnelType::Gue, Some(p)) if !(1..=65535).contains(&p) => v.err(
            path.clone(),
            format!("tunnel port {p} is out of range: allowed 1-65535"),
        ),
        (TunnelType::Ipip | TunnelType::Gre, Some(_)) => {
            v.err(path.clone(), "tunnel port applies to GUE only")
        }
        _ => {}
    }
    if let Some(c) = &t.checksum {
        if t.kind == TunnelType::Ipip {
            v.err(path.clone(), "tunnel checksum applies to GUE and GRE only");
        } else if !matches!(c.as_str(), "none" | "checksum" | "remote") {
            v.err(
                path,
                format!(
                    "unknown tunnel checksum \"{c}\": allowed \"none\", \"checksum\", \"remote\""
                ),
            );
        }
    }
}

/// Which optional keys each check type reads.
fn applies(kind: CheckType, key: &str) -> bool {
    use CheckType::*;
    match key {
        "port" | "address" | "source" => kind != Script && !(kind == Icmp && key == "port"),
        "send" | "expect" => matches!(kind, Tcp | Udp),
        "query_name" | "query_type" | "expect_rcode" | "expect_answer" => kind == Dns,
        "path" | "host" | "expect_status" | "body_contains" | "body_regex" | "body_md5"
        | "keepalive" => matches!(kind, Http | Https),
        "sni" | "tls_verify" => matches!(kind, Https | Smtp),
        "helo_name" | "starttls" => kind == Smtp,
        "command" | "user" => kind == Script,
        _ => true,
    }
}

fn kind_name(kind: CheckType) -> &'static str {
    match kind {
        CheckType::Icmp => "icmp",
        CheckType::Tcp => "tcp",
        CheckType::Udp => "udp",
        CheckType::Dns => "dns",
        CheckType::Smtp => "smtp",
        CheckType::Http => "http",
        CheckType::Https => "https",
        CheckType::Script => "script",
    }
}

fn check_table(v: &mut V<'_>, i: usize, c: &Check) {
    const T: &str = "virtual_server";
    let path = |key: &'static str| p![T, i, "check", key];
    let set: [(&'static str, bool); 22] = [
        ("port", c.port.is_some()),
        ("address", c.address.is_some()),
        ("source", c.source.is_some()),
        ("send", c.send.is_some()),
        ("expect", c.expect.is_some()),
        ("query_name", c.query_name.is_some()),
        ("query_type", c.query_type.is_some()),
        ("expect_rcode", c.expect_rcode.is_some()),
        ("expect_answer", c.expect_answer.is_some()),
        ("path", c.path.is_some()),
        ("host", c.host.is_some()),
        ("expect_status", !c.expect_status.is_empty()),
        ("body_contains", c.body_contains.is_some()),
        ("body_regex", c.body_regex.is_some()),
        ("body_md5", c.body_md5.is_some()),
        ("keepalive", c.keepalive),
        ("helo_name", c.helo_name.is_some()),
        ("starttls", c.starttls),
        ("sni", c.sni.is_some()),
        ("tls_verify", c.tls_verify.is_some()),
        ("command", !c.command.is_empty()),
        ("user", c.user.is_some()),
    ];
    for (key, present) in set {
        if present && !applies(c.kind, key) {
            v.err(
                path(key),
                format!("`{key}` does not apply to a {} check", kind_name(c.kind)),
            );
        }
    }
    check_timing(v, p![T, i, "check"], c.interval, c.timeout);
    check_rise_fall(v, path("rise"), "rise", c.rise);
    check_rise_fall(v, path("fall"), "fall", c.fall);
    if let Some(port) = c.port {
        if !(1..=65535).contains(&port) {
            v.err(
                path("port"),
                format!("port {port} is out of range: allowed 1-65535"),
            );
        }
    }
    if let (Some(a), Some(s)) = (c.address, c.source) {
        if a.is_ipv4() != s.is_ipv4() {
            v.err(
                path("source"),
                format!("source {s} and check address {a} are of different families"),
            );
        }
    }
    if let Some(pth) = &c.path {
        if !pth.starts_with('/') {
            v.err(path("path"), format!("path \"{pth}\" must start with '/'"));
        }
    }
    for (j, s) in c.expect_status.iter().enumerate() {
        if let super::StatusMatch::Code(code) = s {
            if !(100..=599).contains(code) {
                v.err(
                    p![T, i, "check", "expect_status", j],
                    format!("status {code} is not an HTTP status: allowed 100-599"),
                );
            }
        }
    }
    let body_rules = [
        c.body_contains.is_some(),
        c.body_regex.is_some(),
        c.body_md5.is_some(),
    ];
    if body_rules.iter().filter(|b| **b).count() > 1 {
        v.err(
            path("body_contains"),
            "give one of body_contains, body_regex and body_md5, not several",
        );
    }
    if let Some(re) = &c.body_regex {
        if let Err(e) = regex::Regex::new(re) {
            let why = e.to_string().lines().last().unwrap_or_default().to_string();
            v.err(
                path("body_regex"),
                format!("body_regex does not compile: {why}"),
            );
        }
    }
    if let Some(md5) = &c.body_md5 {
        if md5.len() != 32 || !md5.chars().all(|ch| ch.is_ascii_hexdigit()) {
            v.err(
                path("body_md5"),
                format!("body_md5 \"{md5}\" is not an MD5 digest: 32 hexadecimal digits"),
            );
        }
    }
    if c.kind == CheckType::Script {
        check_command(v, path("command"), &c.command);
    }
    if c.kind == CheckType::Smtp && !c.starttls {
        for (key, set) in [
            ("sni", c.sni.is_some()),
            ("tls_verify", c.tls_verify.is_some()),
        ] {
            if set {
                v.err(
                    path(key),
                    format!("`{key}` applies to an smtp check with starttls = true only"),
                );
            }
        }
    }
    if let Some(h) = &c.helo_name {
        if h.is_empty() || h.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            v.err(
                path("helo_name"),
                format!("helo_name \"{h}\" must be one word: a domain name or an address literal"),
            );
        }
    }
    if let Some(t) = &c.query_type {
        if !DNS_TYPES.contains(&t.to_ascii_uppercase().as_str()) {
            v.err(
                path("query_type"),
                format!(
                    "unknown DNS record type \"{t}\": allowed {}",
                    DNS_TYPES.join(", ")
                ),
            );
        }
    }
    if let Some(r) = &c.expect_rcode {
        if !DNS_RCODES.contains(&r.to_ascii_uppercase().as_str()) {
            v.err(
                path("expect_rcode"),
                format!(
                    "unknown DNS response code \"{r}\": allowed {}",
                    DNS_RCODES.join(", ")
                ),
            );
        }
    }
    if let Some(n) = &c.query_name {
        if n.is_empty() || n.len() > 253 || n.split('.').any(|l| l.len() > 63) {
            v.err(
                path("query_name"),
                format!("\"{n}\" is not a DNS name (at most 253 characters, labels of at most 63)"),
            );
        }
    }
}

/// The record types a dns check may ask for.
pub const DNS_TYPES: &[&str] = &[
    "A", "AAAA", "CAA", "CNAME", "DNSKEY", "DS", "MX", "NS", "PTR", "SOA", "SRV", "TXT",
];
/// The response codes a dns check may expect (RFC 1035 4.1.1, RFC 2136).
pub const DNS_RCODES: &[&str] = &[
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

fn check_override(v: &mut V<'_>, i: usize, j: usize, vs: &VirtualServer, o: &CheckOverride) {
    const T: &str = "virtual_server";
    let path = |key: &'static str| p![T, i, "real_server", j, "check", key];
    let Some(base) = &vs.check else {
        v.err(
            p![T, i, "real_server", j, "check"],
            "this real server overrides a check, but its virtual server has no [virtual_server.check]",
        );
        return;
    };
    let interval = o.interval.unwrap_or(base.interval);
    let timeout = o.timeout.unwrap_or(base.timeout);
    if o.interval.is_some() || o.timeout.is_some() {
        check_timing(v, p![T, i, "real_server", j, "check"], interval, timeout);
    }
    if let Some(r) = o.rise {
        check_rise_fall(v, path("rise"), "rise", r);
    }
    if let Some(f) = o.fall {
        check_rise_fall(v, path("fall"), "fall", f);
    }
    for (key, present) in [
        ("port", o.port.is_some()),
        ("address", o.address.is_some()),
        ("source", o.source.is_some()),
    ] {
        if present && !applies(base.kind, key) {
            v.err(
                path(key),
                format!("`{key}` does not apply to a {} check", kind_name(base.kind)),
            );
        }
    }
    if let Some(port) = o.port {
        if !(1..=65535).contains(&port) {
            v.err(
                path("port"),
                format!("port {port} is out of range: allowed 1-65535"),
            );
        }
    }
}

fn webui(v: &mut V<'_>, w: &WebUi) {
    const T: &str = "webui";
    match (&w.tls_cert, &w.tls_key) {
        (Some(_), None) => v.err(p![T, "tls_cert"], "tls_cert needs tls_key as well"),
        (None, Some(_)) => v.err(p![T, "tls_key"], "tls_key needs tls_cert as well"),
        _ => {}
    }
    if w.session_timeout < Duration::from_secs(60) {
        v.err(
            p![T, "session_timeout"],
            format!(
                "session_timeout \"{}\" is too short: at least 1m",
                format_duration(w.session_timeout)
            ),
        );
    }
    if let Some(why) = w.plain_http_refusal(w.listen) {
        v.err(p![T, "listen"], why);
    }
    if !w.listen.ip().is_loopback() && w.users.is_empty() {
        v.err(
            p![T, "listen"],
            format!(
                "listen {} is reachable from other hosts but no [[webui.user]] is defined: add users (with argon2 password hashes) or listen on 127.0.0.1",
                w.listen
            ),
        );
    }
    let mut seen = BTreeSet::new();
    for (j, u) in w.users.iter().enumerate() {
        if let Err(why) = check_name(&u.name) {
            v.err(
                p![T, "user", j, "name"],
                format!("user name \"{}\" {why}", u.name),
            );
        }
        if !seen.insert(&u.name) {
            v.err(
                p![T, "user", j, "name"],
                format!("user \"{}\" is defined twice", u.name),
            );
        }
        if !u.password_hash.starts_with("$argon2") {
            // Never echo what was written: it may be a plain password.
            v.err(
                p![T, "user", j, "password_hash"],
                "password_hash is not an argon2 PHC string ($argon2id$v=19$...): make one with `tandem-webui hash-password`",
            );
        }
    }
}
