//! `/metrics` in the Prometheus text format (version 0.0.4), sans IO: the
//! daemons' status documents in, text out.
//!
//! A daemon that is not running gives `tandem_<daemon>_up 0` and none of
//! its series (absent rather than stale values).

use std::fmt::Write;

use tandem_model::api::{
    HealthState, HealthdStatus, InstanceCounters, InstanceStatus, LatencyHistogram,
    RealServerStatus, VrrpState, VrrpdStatus,
};

/// A series per instance: name, help, value.
type Series<T> = (&'static str, &'static str, fn(&T) -> u64);
/// A series per real server: name, type, help, value (absent when none).
type RsSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&RealServerStatus) -> Option<u64>,
);

const VRRP_STATES: [VrrpState; 5] = [
    VrrpState::Init,
    VrrpState::Backup,
    VrrpState::Master,
    VrrpState::Fault,
    VrrpState::Stop,
];
const HEALTH_STATES: [HealthState; 3] = [HealthState::Up, HealthState::Down, HealthState::Unknown];

/// Appends a label value escaped as the format wants (backslash, quote,
/// newline), without allocating.
fn push_escaped(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// One metric family at a time: HELP and TYPE once, then its samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(k);
                self.text.push_str("=\"");
                push_escaped(&mut self.text, v);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// Renders every metric. `None` for a daemon that did not answer.
pub fn render(vrrpd: Option<&VrrpdStatus>, healthd: Option<&HealthdStatus>) -> String {
    render_with(vrrpd, healthd, true)
}

/// As [`render`]; without the per-real-server series unless
/// `real_servers` (the per-virtual-server ones stay).
pub fn render_with(
    vrrpd: Option<&VrrpdStatus>,
    healthd: Option<&HealthdStatus>,
    real_servers: bool,
) -> String {
    let per_rs = if real_servers { 1500 } else { 0 };
    let mut o = Out {
        text: String::with_capacity(
            4096 + healthd.map_or(0, |h| {
                h.virtual_servers
                    .iter()
                    .map(|v| 200 + v.real_servers.len() * per_rs)
                    .sum::<usize>()
            }),
        ),
    };
    o.family(
        "tandem_vrrpd_up",
        "gauge",
        "1 when vrrpd answers on its control socket.",
    );
    o.sample("tandem_vrrpd_up", &[], u8::from(vrrpd.is_some()));
    o.family(
        "tandem_healthd_up",
        "gauge",
        "1 when healthd answers on its control socket.",
    );
    o.sample("tandem_healthd_up", &[], u8::from(healthd.is_some()));
    if let Some(v) = vrrpd {
        vrrp(&mut o, v);
    }
    if let Some(h) = healthd {
        health(&mut o, h, real_servers);
    }
    o.text
}

fn vrrp(o: &mut Out, v: &VrrpdStatus) {
    let is = &v.instances;
    o.family(
        "tandem_vrrp_state",
        "gauge",
        "1 for the state each VRRP instance is in, 0 for the others.",
    );
    for i in is {
        for s in VRRP_STATES {
            let state = s.to_string();
            o.sample(
                "tandem_vrrp_state",
                &[("instance", &i.name), ("state", &state)],
                u8::from(i.state == s),
            );
        }
    }
    let gauges: [Series<InstanceStatus>; 3] = [
        (
            "tandem_vrrp_priority",
            "Effective priority (after tracking and maintenance).",
            |i| i.effective_priority.into(),
        ),
        (
            "tandem_vrrp_configured_priority",
            "Priority as configured.",
            |i| i.configured_priority.into(),
        ),
        (
            "tandem_vrrp_maintenance",
            "1 while the instance is in maintenance (handed over).",
            |i| i.maintenance.into(),
        ),
    ];
    for (name, help, f) in gauges {
        o.family(name, "gauge", help);
        for i in is {
            o.sample(name, &[("instance", &i.name)], f(i));
        }
    }
    let counters: [Series<InstanceCounters>; 7] = [
        (
            "tandem_vrrp_transitions_total",
            "State transitions (any kind) since vrrpd started.",
            |c| c.transitions,
        ),
        (
            "tandem_vrrp_became_master_total",
            "Transitions to MASTER.",
            |c| c.became_master,
        ),
        ("tandem_vrrp_adverts_sent_total", "Adverts sent.", |c| {
            c.adverts_sent
        }),
        (
            "tandem_vrrp_adverts_received_total",
            "Adverts received and accepted.",
            |c| c.adverts_received,
        ),
        (
            "tandem_vrrp_priority_zero_sent_total",
            "Priority-0 adverts sent (handing over).",
            |c| c.priority_zero_sent,
        ),
        (
            "tandem_vrrp_priority_zero_received_total",
            "Priority-0 adverts received (the master handing over).",
            |c| c.priority_zero_received,
        ),
        (
            "tandem_vrrp_announcements_sent_total",
            "Gratuitous ARPs and unsolicited neighbour advertisements sent.",
            |c| c.announcements_sent,
        ),
    ];
    for (name, help, f) in counters {
        o.family(name, "counter", help);
        for i in is {
            o.sample(name, &[("instance", &i.name)], f(&i.counters));
        }
    }
    o.family(
        "tandem_vrrp_drops_total",
        "counter",
        "Received packets dropped, by reason.",
    );
    for i in is {
        for (reason, n) in &i.counters.drops {
            o.sample(
                "tandem_vrrp_drops_total",
                &[("instance", &i.name), ("reason", reason)],
                n,
            );
        }
    }
    o.family(
        "tandem_vrrp_mismatches_total",
        "counter",
        "Adverts accepted despite a mismatch (address list, interval), by kind.",
    );
    for i in is {
        for (kind, n) in &i.counters.mismatches {
            o.sample(
                "tandem_vrrp_mismatches_total",
                &[("instance", &i.name), ("kind", kind)],
                n,
            );
        }
    }
    o.family(
        "tandem_vrrp_unclaimed_drops_total",
        "counter",
        "Received packets no instance could claim, by reason.",
    );
    for (reason, n) in &v.unclaimed_drops {
        o.sample(
            "tandem_vrrp_unclaimed_drops_total",
            &[("reason", reason)],
            n,
        );
    }
    o.family(
        "tandem_vrrp_loop_late_total",
        "counter",
        "Times vrrpd's loop ran more than 200 ms late (adverts and timers waited): woke late, or held by one input's work.",
    );
    for (kind, n) in [
        ("wakeup", v.lateness.late_wakeups),
        ("held", v.lateness.held_loop),
    ] {
        o.sample("tandem_vrrp_loop_late_total", &[("kind", kind)], n);
    }
    o.family(
        "tandem_vrrp_loop_worst_late_seconds",
        "gauge",
        "The latest vrrpd's loop has run since it started.",
    );
    o.sample(
        "tandem_vrrp_loop_worst_late_seconds",
        &[],
        v.lateness.worst_ms as f64 / 1000.0,
    );
}

fn health(o: &mut Out, h: &HealthdStatus, real_servers: bool) {
    let vss = &h.virtual_servers;
    o.family(
        "tandem_virtual_server_quorum_met",
        "gauge",
        "1 while enough real servers are up.",
    );
    for v in vss {
        o.sample(
            "tandem_virtual_server_quorum_met",
            &[("virtual_server", &v.name)],
            u8::from(v.quorum_met),
        );
    }
    o.family(
        "tandem_virtual_server_real_servers_up",
        "gauge",
        "Real servers counted as up (not drained).",
    );
    for v in vss {
        o.sample(
            "tandem_virtual_server_real_servers_up",
            &[("virtual_server", &v.name)],
            v.up,
        );
    }
    if real_servers {
        real_server_series(o, vss);
    }
    o.family(
        "tandem_check_latency_seconds",
        "histogram",
        "Latency of every check of the virtual server's real servers.",
    );
    for v in vss {
        let mut sum: Option<LatencyHistogram> = None;
        for h in v
            .real_servers
            .iter()
            .filter_map(|r| r.check_latency.as_ref())
        {
            match sum.as_mut() {
                None => sum = Some(h.clone()),
                Some(s) if s.le_ms == h.le_ms => {
                    s.counts
                        .iter_mut()
                        .zip(&h.counts)
                        .for_each(|(a, b)| *a += b);
                    s.count += h.count;
                    s.sum_ms += h.sum_ms;
                }
                // Buckets differ (a healthd of another version): skip
                // rather than add counts of different bounds.
                Some(_) => {}
            }
        }
        let Some(hist) = sum else { continue };
        for (le, c) in hist.le_ms.iter().zip(&hist.counts) {
            let le = seconds(*le);
            o.sample(
                "tandem_check_latency_seconds_bucket",
                &[("virtual_server", &v.name), ("le", &le)],
                c,
            );
        }
        o.sample(
            "tandem_check_latency_seconds_bucket",
            &[("virtual_server", &v.name), ("le", "+Inf")],
            hist.count,
        );
        o.sample(
            "tandem_check_latency_seconds_sum",
            &[("virtual_server", &v.name)],
            seconds(hist.sum_ms),
        );
        o.sample(
            "tandem_check_latency_seconds_count",
            &[("virtual_server", &v.name)],
            hist.count,
        );
    }
}

/// The series per real server: about 15 each, so 37,000 real servers
/// make half a million; `/metrics?real_servers=off` leaves them out.
fn real_server_series(o: &mut Out, vss: &[tandem_model::api::VirtualServerStatus]) {
    o.family(
        "tandem_real_server_health",
        "gauge",
        "1 for the health state each real server is in, 0 for the others.",
    );
    for v in vss {
        for r in &v.real_servers {
            for s in HEALTH_STATES {
                let state = s.to_string();
                o.sample(
                    "tandem_real_server_health",
                    &[
                        ("virtual_server", &v.name),
                        ("real_server", &r.address),
                        ("state", &state),
                    ],
                    u8::from(r.health == s),
                );
            }
        }
    }
    let gauges: [RsSeries; 11] = [
        (
            "tandem_real_server_weight",
            "gauge",
            "Configured weight.",
            |r| Some(r.weight.into()),
        ),
        (
            "tandem_real_server_kernel_weight",
            "gauge",
            "Weight in the kernel's IPVS table (absent when not in it).",
            |r| r.kernel_weight.map(u64::from),
        ),
        (
            "tandem_real_server_drained",
            "gauge",
            "1 while drained by an operator.",
            |r| Some(r.drained.into()),
        ),
        (
            "tandem_real_server_slow_start",
            "gauge",
            "1 while its weight ramps up after it came back (slow_start).",
            |r| Some(r.slow_start_until.is_some().into()),
        ),
        (
            "tandem_real_server_active_connections",
            "gauge",
            "Active connections (IPVS).",
            |r| Some(r.active_conns.into()),
        ),
        (
            "tandem_real_server_inactive_connections",
            "gauge",
            "Inactive connections (IPVS).",
            |r| Some(r.inactive_conns.into()),
        ),
        (
            "tandem_real_server_connections_total",
            "counter",
            "Connections scheduled to the server (IPVS).",
            |r| r.stats.map(|s| s.conns),
        ),
        (
            "tandem_real_server_in_bytes_total",
            "counter",
            "Bytes from clients to the server (IPVS).",
            |r| r.stats.map(|s| s.inbytes),
        ),
        (
            "tandem_real_server_out_bytes_total",
            "counter",
            "Bytes from the server to clients (IPVS, NAT only).",
            |r| r.stats.map(|s| s.outbytes),
        ),
        (
            "tandem_real_server_connections_per_second",
            "gauge",
            "Connection rate as IPVS estimates it.",
            |r| r.stats.map(|s| s.cps),
        ),
        (
            "tandem_real_server_checks_total",
            "counter",
            "Checks run against the server.",
            |r| Some(r.checks),
        ),
    ];
    for (name, kind, help, f) in gauges {
        o.family(name, kind, help);
        for v in vss {
            for r in &v.real_servers {
                if let Some(x) = f(r) {
                    o.sample(
                        name,
                        &[("virtual_server", &v.name), ("real_server", &r.address)],
                        x,
                    );
                }
            }
        }
    }
    o.family(
        "tandem_real_server_bytes_per_second",
        "gauge",
        "Byte rate as IPVS estimates it, by direction.",
    );
    for v in vss {
        for r in &v.real_servers {
            if let Some(s) = r.stats {
                for (dir, x) in [("in", s.inbps), ("out", s.outbps)] {
                    o.sample(
                        "tandem_real_server_bytes_per_second",
                        &[
                            ("virtual_server", &v.name),
                            ("real_server", &r.address),
                            ("direction", dir),
                        ],
                        x,
                    );
                }
            }
        }
    }
    o.family(
        "tandem_real_server_check_failures_total",
        "counter",
        "Checks that failed.",
    );
    for v in vss {
        for r in &v.real_servers {
            o.sample(
                "tandem_real_server_check_failures_total",
                &[("virtual_server", &v.name), ("real_server", &r.address)],
                r.failures,
            );
        }
    }
    o.family(
        "tandem_real_server_last_check_latency_seconds",
        "gauge",
        "How long the last check took.",
    );
    for v in vss {
        for r in &v.real_servers {
            if let Some(c) = &r.last_check {
                o.sample(
                    "tandem_real_server_last_check_latency_seconds",
                    &[("virtual_server", &v.name), ("real_server", &r.address)],
                    seconds(c.latency_ms),
                );
            }
        }
    }
}

/// Milliseconds as seconds, exactly (no float rounding: 0.001, 2.5).
fn seconds(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        s.to_string()
    } else {
        format!("{s}.{}", format!("{frac:03}").trim_end_matches('0'))
    }
}

/// The web UI's own listener: connections open and refused by reason,
/// heads that timed out, TLS handshakes refused, password checks and the
/// logins turned away while too many were being checked.
pub fn render_webui(
    conns: &tandem_model::serve::StatsSnapshot,
    handshakes: &tandem_model::serve::StatsSnapshot,
    passwords: &crate::auth::GateSnapshot,
) -> String {
    let mut o = Out {
        text: String::with_capacity(2048),
    };
    o.family(
        "tandem_webui_connections_open",
        "gauge",
        "Connections the web UI is serving now.",
    );
    o.sample("tandem_webui_connections_open", &[], conns.open);
    o.family(
        "tandem_webui_connections_accepted_total",
        "counter",
        "Connections admitted.",
    );
    o.sample(
        "tandem_webui_connections_accepted_total",
        &[],
        conns.accepted,
    );
    o.family(
        "tandem_webui_connections_refused_total",
        "counter",
        "Connections closed at once: too many open (full), too many from one address (peer), TLS handshakes likewise.",
    );
    for (reason, n) in [
        ("full", conns.refused_full),
        ("peer", conns.refused_peer),
        ("handshake_full", handshakes.refused_full),
        ("handshake_peer", handshakes.refused_peer),
    ] {
        o.sample(
            "tandem_webui_connections_refused_total",
            &[("reason", reason)],
            n,
        );
    }
    o.family(
        "tandem_webui_header_timeouts_total",
        "counter",
        "Connections closed because a request's head did not arrive in time.",
    );
    o.sample(
        "tandem_webui_header_timeouts_total",
        &[],
        conns.header_timeouts,
    );
    o.family(
        "tandem_webui_password_checks_total",
        "counter",
        "Password checks run (login form and basic auth).",
    );
    o.sample("tandem_webui_password_checks_total", &[], passwords.checks);
    o.family(
        "tandem_webui_logins_busy_total",
        "counter",
        "Logins answered 503 because too many checks were running and waiting.",
    );
    o.sample("tandem_webui_logins_busy_total", &[], passwords.refused);
    o.text
}

/// The cluster's series, for a director of a synchronised cluster:
/// `None` when clusterd does not answer.
pub fn render_cluster(st: Option<&tandem_model::sync::ClusterStatus>) -> String {
    use tandem_model::sync::{Relation, SyncState};
    let mut o = Out {
        text: String::with_capacity(2048),
    };
    o.family(
        "tandem_clusterd_up",
        "gauge",
        "1 when tandem-clusterd answers on its control socket.",
    );
    o.sample("tandem_clusterd_up", &[], u8::from(st.is_some()));
    let Some(st) = st else {
        return o.text;
    };
    o.family(
        "tandem_cluster_in_sync",
        "gauge",
        "1 when every director answered and has this director's version.",
    );
    o.sample("tandem_cluster_in_sync", &[], u8::from(st.state.in_sync()));
    o.family(
        "tandem_cluster_state",
        "gauge",
        "1 for the sync state this director is in, 0 for the others.",
    );
    for s in [
        SyncState::InSync,
        SyncState::CatchingUp,
        SyncState::PeersUnreachable,
        SyncState::Refusing,
        SyncState::Conflict,
        SyncState::EditedByHand,
    ] {
        let name = serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        o.sample(
            "tandem_cluster_state",
            &[("state", &name)],
            u8::from(st.state == s),
        );
    }
    o.family(
        "tandem_cluster_generation",
        "gauge",
        "Generation of the configuration version this director holds.",
    );
    o.sample("tandem_cluster_generation", &[], st.version.generation);
    o.family(
        "tandem_cluster_peer_reachable",
        "gauge",
        "1 when the other director answered the last time it was asked.",
    );
    for p in &st.peers {
        o.sample(
            "tandem_cluster_peer_reachable",
            &[("peer", &p.name)],
            u8::from(p.reachable),
        );
    }
    o.family(
        "tandem_cluster_peer_same_version",
        "gauge",
        "1 when the other director has this director's version.",
    );
    for p in &st.peers {
        o.sample(
            "tandem_cluster_peer_same_version",
            &[("peer", &p.name)],
            u8::from(p.reachable && p.relation == Some(Relation::Same)),
        );
    }
    let k = &st.counters;
    o.family(
        "tandem_cluster_refused_total",
        "counter",
        "Connections and requests the sync channel refused, by reason.",
    );
    for (reason, n) in [
        ("tls", k.refused_tls),
        ("unknown_peer", k.refused_peers),
        ("malformed", k.bad_messages),
        ("stale", k.stale_messages),
    ] {
        o.sample("tandem_cluster_refused_total", &[("reason", reason)], n);
    }
    o.family(
        "tandem_cluster_changes_total",
        "counter",
        "Configuration changes this director took part in, by result.",
    );
    o.sample(
        "tandem_cluster_changes_total",
        &[("result", "applied")],
        k.changes_applied,
    );
    o.sample(
        "tandem_cluster_changes_total",
        &[("result", "refused")],
        k.changes_refused,
    );
    o.text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_out_of_sync_says_so_and_which_peer() {
        use tandem_model::sync::*;
        let v = ConfigVersion {
            generation: 7,
            id: "ab".repeat(32),
            content: "cd".repeat(32),
            parents: Vec::new(),
            author: "ada".into(),
            node: "lb1".into(),
            at: 0,
            comment: String::new(),
        };
        let st = ClusterStatus {
            node: "lb1".into(),
            nodes: vec!["lb1".into(), "lb2".into()],
            state: SyncState::PeersUnreachable,
            detail: String::new(),
            version: v,
            ready: true,
            conflict: None,
            refusing: None,
            peers: vec![PeerView {
                name: "lb2".into(),
                address: "10.0.0.2:7780".into(),
                reachable: false,
                last_seen: None,
                error: Some("no answer".into()),
                version: None,
                relation: None,
                state: None,
                vrrpd: None,
                healthd: None,
            }],
            history: Vec::new(),
            counters: SyncCounters {
                refused_tls: 3,
                ..Default::default()
            },
        };
        let text = render_cluster(Some(&st));
        for line in [
            "tandem_clusterd_up 1",
            "tandem_cluster_in_sync 0",
            "tandem_cluster_state{state=\"peers_unreachable\"} 1",
            "tandem_cluster_state{state=\"in_sync\"} 0",
            "tandem_cluster_generation 7",
            "tandem_cluster_peer_reachable{peer=\"lb2\"} 0",
            "tandem_cluster_refused_total{reason=\"tls\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert_eq!(
            render_cluster(None).lines().last(),
            Some("tandem_clusterd_up 0")
        );
    }

    #[test]
    fn label_values_are_escaped_and_seconds_exact() {
        let mut out = String::new();
        push_escaped(&mut out, "a\\b\"c\nd");
        assert_eq!(out, "a\\\\b\\\"c\\nd");
        assert_eq!(seconds(1), "0.001");
        assert_eq!(seconds(2500), "2.5");
        assert_eq!(seconds(5000), "5");
    }

    #[test]
    fn a_daemon_that_does_not_answer_is_down_with_no_series() {
        let text = render(None, None);
        assert_eq!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            ["tandem_vrrpd_up 0", "tandem_healthd_up 0"]
        );
    }
}
