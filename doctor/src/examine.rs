//! The rules: what the doctor concludes from the facts of one director.
//! Sans IO: [`gather`](crate::gather) reads the facts, this decides.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tandem_model::api::VrrpdStatus;
use tandem_model::config::{Config, Family, Forwarding};

use crate::finding::{Finding, Severity, sort};

/// What the doctor knows of this director.
pub struct Facts {
    /// The configuration, resolved for this director.
    pub config: Config,
    /// Kernel settings read, by their sysctl name (`net.ipv4.ip_forward`);
    /// absent when they could not be read.
    pub sysctl: BTreeMap<String, String>,
    /// The nftables ruleset (`nft -a -j list ruleset`), when nft is there.
    pub nft: Option<Value>,
    /// vrrpd's status twice, `apart` apart; `None` when it does not answer.
    pub vrrpd: Option<(VrrpdStatus, VrrpdStatus)>,
    pub apart: Duration,
    /// Who answered an ARP probe for each IPv4 VIP this director holds
    /// as master.
    pub arp: Vec<ArpAnswers>,
    /// What each IPv4 DR real server answered (see [`crate::dr`]).
    pub dr: Vec<DrAnswers>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrAnswers {
    pub virtual_server: String,
    pub real_server: std::net::Ipv4Addr,
    pub vip: std::net::Ipv4Addr,
    pub forwarding: Forwarding,
    pub answers: crate::dr::Answers,
}

/// The real servers to probe: (virtual server, real server, VIP, how it
/// forwards), each once, IPv4 with an address (a fwmark service has
/// none), direct routing and NAT.
pub fn probe_targets(
    config: &Config,
) -> Vec<(String, std::net::Ipv4Addr, std::net::Ipv4Addr, Forwarding)> {
    let mut out: Vec<(String, std::net::Ipv4Addr, std::net::Ipv4Addr, Forwarding)> = Vec::new();
    for v in &config.virtual_servers {
        let Some(std::net::SocketAddr::V4(vip)) = v.address else {
            continue;
        };
        for r in &v.real_servers {
            let how = r.forwarding.unwrap_or(v.forwarding);
            if let (Forwarding::Dr | Forwarding::Nat, std::net::IpAddr::V4(rs)) =
                (how, r.address.ip)
                && !out
                    .iter()
                    .any(|(_, a, b, f)| *a == rs && b == vip.ip() && *f == how)
            {
                out.push((v.name.clone(), rs, *vip.ip(), how));
            }
        }
    }
    out
}

/// The hardware addresses that answered ARP for one VIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArpAnswers {
    pub instance: String,
    pub interface: String,
    pub vip: std::net::Ipv4Addr,
    /// This director's own: the interface's and the VRID's virtual MAC.
    pub own: Vec<[u8; 6]>,
    pub answered: Vec<[u8; 6]>,
}

/// The sysctls [`examine`] reads: gather reads these.
pub fn sysctls_wanted(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for f in nat_families(config) {
        out.push(forwarding_sysctl(f).to_string());
    }
    out
}

/// Every finding, worst first.
pub fn examine(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    nat_forwarding(facts, &mut out);
    if !facts.config.vrrp_instances.is_empty()
        && let Some(nft) = &facts.nft
    {
        nft_drops_vrrp(nft, &mut out);
    }
    if let (Some(sync), Some(nft)) = (&facts.config.connection_sync, &facts.nft) {
        nft_drops_sync(nft, &sync.instance, &mut out);
    }
    if let Some((before, after)) = &facts.vrrpd {
        other_routers(before, after, facts.apart, &mut out);
    }
    for a in &facts.arp {
        vip_answered_elsewhere(a, &mut out);
    }
    for d in &facts.dr {
        match d.forwarding {
            Forwarding::Dr => dr_vip_missing(d, &mut out),
            Forwarding::Nat => nat_gateway(d, &mut out),
            Forwarding::Tun => {}
        }
    }
    sort(&mut out);
    out
}

fn forwarding_sysctl(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "net.ipv4.ip_forward",
        Family::Ipv6 => "net.ipv6.conf.all.forwarding",
    }
}

/// The families of the virtual servers that forward by NAT.
fn nat_families(config: &Config) -> Vec<Family> {
    let mut out = Vec::new();
    for (f, _) in nat_services(config) {
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Each virtual server that forwards by NAT (or has a real server that
/// does), with its family.
fn nat_services(config: &Config) -> Vec<(Family, &str)> {
    config
        .virtual_servers
        .iter()
        .filter(|v| {
            v.forwarding == Forwarding::Nat
                || v.real_servers
                    .iter()
                    .any(|r| r.forwarding == Some(Forwarding::Nat))
        })
        .map(|v| {
            let family = v.family.unwrap_or(match v.address {
                Some(a) if a.is_ipv6() => Family::Ipv6,
                _ => Family::Ipv4,
            });
            (family, v.name.as_str())
        })
        .collect()
}

/// NAT (ipvsadm -m): the real servers answer through the director, and
/// IPVS rewrites those replies on the FORWARD path, which the kernel
/// takes only with forwarding on; off, every connection stops after the
/// client's first packet reached the real server.
fn nat_forwarding(facts: &Facts, out: &mut Vec<Finding>) {
    let mut seen: Vec<Family> = Vec::new();
    for (family, vs) in nat_services(&facts.config) {
        if seen.contains(&family) {
            continue;
        }
        seen.push(family);
        let key = forwarding_sysctl(family);
        let Some(value) = facts.sysctl.get(key) else {
            continue;
        };
        if value.trim() != "0" {
            continue;
        }
        out.push(Finding {
            id: "nat-forwarding".into(),
            severity: Severity::Error,
            what: format!(
                "forwarding is off, and virtual server {vs} forwards by NAT"
            ),
            seen: format!("{key} = 0"),
            breaks: format!(
                "the real servers' replies reach this director and go no further: every connection to {vs} stops after the client's first packet"
            ),
            fix: vec![
                format!("sysctl -w {key}=1"),
                format!("echo '{key} = 1' > /etc/sysctl.d/60-tandem-nat.conf"),
            ],
        });
    }
}

/// A rule with a drop verdict, in a chain that is not a forward one
/// (what crosses the director is not ours to judge here).
struct DropRule {
    family: String,
    table: String,
    chain: String,
    handle: u64,
    hook: Option<String>,
}

impl DropRule {
    fn seen(&self, what: &str) -> String {
        format!(
            "nft -a list ruleset: {} {} {}{}, rule handle {} drops {what}",
            self.family,
            self.table,
            self.chain,
            self.hook
                .as_ref()
                .map(|h| format!(" (hook {h})"))
                .unwrap_or_default(),
            self.handle
        )
    }

    fn delete(&self) -> String {
        format!(
            "nft delete rule {} {} {} handle {}",
            self.family, self.table, self.chain, self.handle
        )
    }
}

/// The ruleset's drop rules with an expression `matches` accepts.
fn dropping(nft: &Value, matches: impl Fn(&Value) -> bool) -> Vec<DropRule> {
    let items = nft["nftables"].as_array().cloned().unwrap_or_default();
    let hook_of = |family: &str, table: &str, chain: &str| {
        items.iter().find_map(|i| {
            let c = &i["chain"];
            (c["family"] == family && c["table"] == table && c["name"] == chain)
                .then(|| c["hook"].as_str().map(str::to_string))
                .flatten()
        })
    };
    let mut out = Vec::new();
    for item in &items {
        let r = &item["rule"];
        let Some(expr) = r["expr"].as_array() else {
            continue;
        };
        let drops = expr.iter().any(|e| e.get("drop").is_some());
        if !drops || !expr.iter().any(&matches) {
            continue;
        }
        let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let (family, table, chain) = (field("family"), field("table"), field("chain"));
        let hook = hook_of(&family, &table, &chain);
        if hook.as_deref() == Some("forward") {
            continue;
        }
        out.push(DropRule {
            family,
            table,
            chain,
            handle: r["handle"].as_u64().unwrap_or_default(),
            hook,
        });
    }
    out
}

/// A rule that drops VRRP (IP protocol 112) on its way in or out of this
/// director: `meta l4proto 112`, `ip protocol vrrp`, `ip6 nexthdr 112`,
/// or a set holding it.
fn nft_drops_vrrp(nft: &Value, out: &mut Vec<Finding>) {
    for r in dropping(nft, matches_vrrp) {
        out.push(Finding {
            id: "nft-drops-vrrp".into(),
            severity: Severity::Error,
            what: format!(
                "an nftables rule drops VRRP (IP protocol 112) in {} {} {}",
                r.family, r.table, r.chain
            ),
            seen: r.seen("protocol 112"),
            breaks: "adverts do not pass: the directors do not hear each other, and each becomes master of every VIP (ARP for it flips between them)".into(),
            fix: vec![r.delete()],
        });
    }
}

/// IPVS's connection sync: UDP to port 8848 (IP_VS_SYNC_PORT) of
/// 224.0.0.81.
const SYNC_PORT: u64 = 8848;

/// A rule that drops the sync daemon's messages: `udp dport 8848` (or
/// `th dport`), by number, in a set or in a range.
fn nft_drops_sync(nft: &Value, instance: &str, out: &mut Vec<Finding>) {
    for r in dropping(nft, matches_sync_port) {
        out.push(Finding {
            id: "nft-drops-sync".into(),
            severity: Severity::Error,
            what: format!(
                "an nftables rule drops connection sync (UDP {SYNC_PORT}) in {} {} {}",
                r.family, r.table, r.chain
            ),
            seen: r.seen(&format!("UDP port {SYNC_PORT}")),
            breaks: format!(
                "the backup does not learn the master's connections: when {instance} fails over, every established connection through this director breaks"
            ),
            fix: vec![r.delete()],
        });
    }
}

fn matches_sync_port(e: &Value) -> bool {
    let m = &e["match"];
    if m.is_null() || m["op"].as_str().is_some_and(|op| op != "==" && op != "in") {
        return false;
    }
    let p = &m["left"]["payload"];
    let on_port = (p["protocol"] == "udp" || p["protocol"] == "th") && p["field"] == "dport";
    let holds = |v: &Value| {
        v.as_u64() == Some(SYNC_PORT)
            || v["range"].as_array().is_some_and(|r| {
                r.len() == 2 && r[0].as_u64() <= Some(SYNC_PORT) && Some(SYNC_PORT) <= r[1].as_u64()
            })
    };
    let right = &m["right"];
    on_port && (holds(right) || right["set"].as_array().is_some_and(|s| s.iter().any(holds)))
}

/// Adverts for one of our VRIDs that disagree with our instance, arriving
/// while the doctor watched: with other virtual IPs it is another
/// router using the VRID (a foreign router with a higher priority is
/// followed as master and nobody holds our VIPs), with another interval
/// a peer configured differently (RFC 5798 6.4.2 follows the master's).
fn other_routers(
    before: &VrrpdStatus,
    after: &VrrpdStatus,
    apart: Duration,
    out: &mut Vec<Finding>,
) {
    for i in &after.instances {
        let Some(b) = before.instances.iter().find(|b| b.name == i.name) else {
            continue;
        };
        let grew = |what: &str| {
            let n = |s: &tandem_model::api::InstanceStatus| {
                s.counters.mismatches.get(what).copied().unwrap_or(0)
            };
            n(i).saturating_sub(n(b))
        };
        let master = i
            .master
            .as_ref()
            .filter(|m| !m.is_self)
            .map(|m| {
                format!(
                    "; it follows {} (priority {}) as master",
                    m.address, m.priority
                )
            })
            .unwrap_or_default();
        let tcpdump = format!(
            "tcpdump -eni {} -c 5 'ip proto 112 and ip[21] = {}'   # who sends them (the source MAC and address)",
            i.interface, i.vrid
        );
        let secs = apart.as_secs_f64();
        let n = grew("addresses");
        if n > 0 {
            out.push(Finding {
                id: "vrrp-other-router".into(),
                severity: Severity::Error,
                what: format!(
                    "another router advertises VRID {} on {} with other virtual IPs than instance {}",
                    i.vrid, i.interface, i.name
                ),
                seen: format!("vrrpd: {n} such adverts in {secs:.1} s{master}"),
                breaks: format!(
                    "a router with a higher priority is taken for this instance's master, and nobody holds {}; two routers share one virtual MAC",
                    i.virtual_ips.join(", ")
                ),
                fix: vec![
                    tcpdump.clone(),
                    format!(
                        "set vrid of instance {} to one no router on {} uses, then: tandem config apply (a cluster), or systemctl reload tandem-vrrpd",
                        i.name, i.interface
                    ),
                ],
            });
        }
        let n = grew("interval");
        if n > 0 {
            out.push(Finding {
                id: "vrrp-other-interval".into(),
                severity: Severity::Warning,
                what: format!(
                    "a router advertises VRID {} on {} at another interval than instance {} ({} ms)",
                    i.vrid, i.interface, i.name, i.advert_interval_ms
                ),
                seen: format!("vrrpd: {n} such adverts in {secs:.1} s{master}"),
                breaks: "a backup times the master out by the master's interval: failover takes as long as the slowest director's Master_Down_Interval, not this file's".into(),
                fix: vec![
                    tcpdump,
                    "give every director the same advert_interval (one cluster file does it)".into(),
                ],
            });
        }
    }
}

/// A VIP this director holds as master, answered on the segment by
/// another MAC: a DR real server holding it on `lo` whose kernel answers
/// ARP for every local address on every interface (arp_ignore 0, the
/// default), or another director that is master too.
fn vip_answered_elsewhere(a: &ArpAnswers, out: &mut Vec<Finding>) {
    let others: Vec<String> = a
        .answered
        .iter()
        .filter(|m| !a.own.contains(m))
        .map(crate::arp::format_mac)
        .collect();
    if others.is_empty() {
        return;
    }
    out.push(Finding {
        id: "vip-answered-elsewhere".into(),
        severity: Severity::Error,
        what: format!(
            "{} (instance {}, master here) is answered on {} by {} too",
            a.vip,
            a.instance,
            a.interface,
            others.join(", ")
        ),
        seen: format!(
            "an ARP probe for {} on {} was answered by {}",
            a.vip,
            a.interface,
            a.answered
                .iter()
                .map(|m| {
                    let mut s = crate::arp::format_mac(m);
                    if a.own.contains(m) {
                        s.push_str(" (this director)");
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        breaks: format!(
            "the router and the clients send part of the traffic for {} to the other host, by whichever answer they heard last",
            a.vip
        ),
        fix: vec![
            format!("ip neigh | grep -i -e {}   # which host that is", others.join(" -e ")),
            "on that host, a DR real server holding the VIP on lo: sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2".into(),
            "if it is another director, it is master too: run tandem doctor there".into(),
        ],
    });
}

/// A DR real server that answers at its own address but not at the VIP,
/// both sent to its MAC as IPVS's direct routing does: the VIP is not on
/// one of its interfaces (usually `lo`), so it drops every packet the
/// director hands it, while its health checks (to its own address) pass.
fn dr_vip_missing(d: &DrAnswers, out: &mut Vec<Finding>) {
    if !d.answers.own || d.answers.second {
        return;
    }
    let mac = crate::arp::format_mac(&d.answers.mac);
    out.push(Finding {
        id: "dr-vip-missing".into(),
        severity: Severity::Error,
        what: format!(
            "real server {} of virtual server {} (direct routing) does not take packets for {}",
            d.real_server, d.virtual_server, d.vip
        ),
        seen: format!(
            "an ICMP echo to {} in a frame to its MAC {mac} on {} got no answer; one to {} the same way did",
            d.vip, d.answers.device, d.real_server
        ),
        breaks: format!(
            "every connection the scheduler gives {} fails: direct routing hands it packets addressed to {}, and it drops them, while its health checks pass",
            d.real_server, d.vip
        ),
        fix: vec![
            format!("on {}: ip addr add {}/32 dev lo", d.real_server, d.vip),
            format!(
                "on {}: sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2   # so it does not answer ARP for {} (and in /etc/sysctl.d)",
                d.real_server, d.vip
            ),
        ],
    });
}

/// A NAT real server whose reply to a client (a source beyond its
/// segment, the VIP here) does not come back to this director: its
/// route to the clients goes elsewhere, and IPVS never sees the replies
/// it must rewrite.
fn nat_gateway(d: &DrAnswers, out: &mut Vec<Finding>) {
    if !d.answers.own || d.answers.second {
        return;
    }
    let mac = crate::arp::format_mac(&d.answers.mac);
    out.push(Finding {
        id: "nat-gateway".into(),
        severity: Severity::Error,
        what: format!(
            "real server {} of virtual server {} (NAT) does not send its replies through this director",
            d.real_server, d.virtual_server
        ),
        seen: format!(
            "an ICMP echo to {} (MAC {mac}, on {}) from {} got no answer back here; one from {} did",
            d.real_server, d.answers.device, d.vip, d.answers.src
        ),
        breaks: format!(
            "its replies to the clients go to another router, unrewritten: every connection to {}'s VIP through {} hangs",
            d.virtual_server, d.real_server
        ),
        fix: vec![format!(
            "on {}: ip route replace default via {}   # better: a VIP of a VRRP instance on {}, so it follows the master",
            d.real_server, d.answers.src, d.answers.device
        )],
    });
}

/// Whether one expression of a rule matches protocol 112.
fn matches_vrrp(e: &Value) -> bool {
    let m = &e["match"];
    if m.is_null() || m["op"].as_str().is_some_and(|op| op != "==" && op != "in") {
        return false;
    }
    let left = &m["left"];
    let on_protocol = left["meta"]["key"] == "l4proto"
        || (left["payload"]["protocol"] == "ip" && left["payload"]["field"] == "protocol")
        || (left["payload"]["protocol"] == "ip6" && left["payload"]["field"] == "nexthdr");
    let is_vrrp = |v: &Value| v == 112 || v == "vrrp";
    let right = &m["right"];
    on_protocol
        && (is_vrrp(right)
            || right["set"]
                .as_array()
                .is_some_and(|s| s.iter().any(is_vrrp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAT: &str = r#"
[node]
name = "lb1"

[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
forwarding = "nat"

[[virtual_server.real_server]]
address = "10.0.0.11"
"#;

    const VRRP: &str = r#"
[node]
name = "lb1"

[[vrrp_instance]]
name = "web"
interface = "eth0"
vrid = 51
priority = 150
virtual_ips = ["192.0.2.10/24"]
"#;

    fn facts(toml: &str, sysctl: &[(&str, &str)], nft: Option<Value>) -> Facts {
        Facts {
            config: tandem_model::config::parse(toml, "tandem.toml").unwrap(),
            sysctl: sysctl
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nft,
            vrrpd: None,
            apart: Duration::ZERO,
            arp: Vec::new(),
            dr: Vec::new(),
        }
    }

    /// `nft -a -j list ruleset` of an input and an output chain, each
    /// with one rule (as nft 1.0.6 prints them).
    fn ruleset(hook: &str, rule: Value) -> Value {
        serde_json::json!({ "nftables": [
            { "table": { "family": "inet", "name": "fw", "handle": 1 } },
            { "chain": { "family": "inet", "table": "fw", "name": "c", "handle": 1,
                         "type": "filter", "hook": hook, "prio": 0, "policy": "accept" } },
            { "rule": { "family": "inet", "table": "fw", "chain": "c", "handle": 7, "expr": rule } },
        ]})
    }

    #[test]
    fn a_vip_answered_by_another_mac_is_an_error_and_our_own_answers_are_not() {
        let own = [2, 0, 0, 0, 0, 1];
        let vmac = [0, 0, 0x5e, 0, 1, 51];
        let rs = [2, 0, 0, 0, 0, 9];
        let mut f = facts(VRRP, &[], None);
        let answers = |answered: Vec<[u8; 6]>| ArpAnswers {
            instance: "web".into(),
            interface: "eth0".into(),
            vip: std::net::Ipv4Addr::new(192, 0, 2, 10),
            own: vec![own, vmac],
            answered,
        };
        f.arp = vec![answers(vec![vmac, own])];
        assert!(examine(&f).is_empty());
        f.arp = vec![answers(vec![own, rs])];
        let found = examine(&f);
        assert_eq!(ids(&found), ["vip-answered-elsewhere"]);
        assert!(
            found[0].what.contains("02:00:00:00:00:09"),
            "{}",
            found[0].what
        );
        assert!(
            found[0].seen.contains("02:00:00:00:00:01 (this director)"),
            "{}",
            found[0].seen
        );
    }

    #[test]
    fn a_rule_dropping_the_sync_port_is_found_when_connections_are_synced() {
        let synced =
            format!("{VRRP}\n[connection_sync]\ninstance = \"web\"\ninterface = \"eth0\"\n");
        for right in [
            serde_json::json!(8848),
            serde_json::json!({ "set": [53, 8848] }),
            serde_json::json!({ "set": [{ "range": [8000, 9000] }] }),
        ] {
            let rule = serde_json::json!([
                { "match": { "op": "==", "left": { "payload": { "protocol": "udp", "field": "dport" } }, "right": right } },
                { "drop": null }
            ]);
            let f = examine(&facts(&synced, &[], Some(ruleset("input", rule.clone()))));
            assert_eq!(ids(&f), ["nft-drops-sync"], "{right}");
            assert_eq!(f[0].fix, ["nft delete rule inet fw c handle 7"]);
            // Without connection sync it breaks nothing of ours.
            assert!(examine(&facts(VRRP, &[], Some(ruleset("input", rule)))).is_empty());
        }
        let other = serde_json::json!([
            { "match": { "op": "==", "left": { "payload": { "protocol": "udp", "field": "dport" } }, "right": 53 } },
            { "drop": null }
        ]);
        assert!(examine(&facts(&synced, &[], Some(ruleset("input", other)))).is_empty());
    }

    fn ids(f: &[Finding]) -> Vec<&str> {
        f.iter().map(|f| f.id.as_str()).collect()
    }

    #[test]
    fn nat_with_forwarding_off_is_an_error_with_the_sysctl_that_fixes_it() {
        let f = examine(&facts(NAT, &[("net.ipv4.ip_forward", "0")], None));
        assert_eq!(ids(&f), ["nat-forwarding"]);
        assert_eq!(f[0].severity, Severity::Error);
        assert_eq!(f[0].seen, "net.ipv4.ip_forward = 0");
        assert_eq!(f[0].fix[0], "sysctl -w net.ipv4.ip_forward=1");
        assert!(examine(&facts(NAT, &[("net.ipv4.ip_forward", "1")], None)).is_empty());
        // Not read (no such file): nothing is claimed.
        assert!(examine(&facts(NAT, &[], None)).is_empty());
        assert_eq!(
            sysctls_wanted(&facts(NAT, &[], None).config),
            ["net.ipv4.ip_forward"]
        );
    }

    #[test]
    fn direct_routing_needs_no_forwarding() {
        let dr = NAT.replace("forwarding = \"nat\"", "forwarding = \"dr\"");
        assert!(examine(&facts(&dr, &[("net.ipv4.ip_forward", "0")], None)).is_empty());
        assert!(sysctls_wanted(&facts(&dr, &[], None).config).is_empty());
    }

    #[test]
    fn a_rule_dropping_protocol_112_is_found_with_the_command_that_deletes_it() {
        for (left, right) in [
            (
                serde_json::json!({ "meta": { "key": "l4proto" } }),
                serde_json::json!("vrrp"),
            ),
            (
                serde_json::json!({ "meta": { "key": "l4proto" } }),
                serde_json::json!(112),
            ),
            (
                serde_json::json!({ "payload": { "protocol": "ip", "field": "protocol" } }),
                serde_json::json!({ "set": [6, "vrrp"] }),
            ),
            (
                serde_json::json!({ "payload": { "protocol": "ip6", "field": "nexthdr" } }),
                serde_json::json!(112),
            ),
        ] {
            let rule = serde_json::json!([
                { "match": { "op": "==", "left": left, "right": right } },
                { "drop": null }
            ]);
            let f = examine(&facts(VRRP, &[], Some(ruleset("input", rule))));
            assert_eq!(ids(&f), ["nft-drops-vrrp"], "{left} {right}");
            assert_eq!(f[0].fix, ["nft delete rule inet fw c handle 7"]);
        }
    }

    #[test]
    fn rules_that_accept_vrrp_drop_other_protocols_or_forward_are_not_findings() {
        let accept = serde_json::json!([
            { "match": { "op": "==", "left": { "meta": { "key": "l4proto" } }, "right": "vrrp" } },
            { "accept": null }
        ]);
        let other = serde_json::json!([
            { "match": { "op": "==", "left": { "meta": { "key": "l4proto" } }, "right": "tcp" } },
            { "drop": null }
        ]);
        let not = serde_json::json!([
            { "match": { "op": "!=", "left": { "meta": { "key": "l4proto" } }, "right": "vrrp" } },
            { "drop": null }
        ]);
        let drop = serde_json::json!([
            { "match": { "op": "==", "left": { "meta": { "key": "l4proto" } }, "right": "vrrp" } },
            { "drop": null }
        ]);
        for (hook, rule) in [
            ("input", accept),
            ("input", other),
            ("input", not),
            ("forward", drop.clone()),
        ] {
            assert!(examine(&facts(VRRP, &[], Some(ruleset(hook, rule)))).is_empty());
        }
        // No VRRP instance here: VRRP dropped breaks nothing of ours.
        assert!(
            examine(&facts(
                NAT,
                &[("net.ipv4.ip_forward", "1")],
                Some(ruleset("input", drop))
            ))
            .is_empty()
        );
    }
}
