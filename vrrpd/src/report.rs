//! vrrpd's status as a table for a terminal (`tandem-vrrpd status`).

use std::fmt::Write;

use tandem_model::api::{UnixMillis, VrrpdStatus};

/// "4s ago", "3m12s ago", "2h5m ago".
pub fn ago(now: UnixMillis, then: UnixMillis) -> String {
    let s = now.saturating_sub(then) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m{}s ago", s / 60, s % 60),
        _ => format!("{}h{}m ago", s / 3600, (s % 3600) / 60),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i + 1 == r.len() {
                    s.clone()
                } else {
                    format!("{s:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The status as an operator reads it.
pub fn render(st: &VrrpdStatus, now: UnixMillis) -> String {
    let d = &st.daemon;
    let mut out = format!(
        "{}: vrrpd {} (pid {}), up {}, config {} loaded {}\n\n",
        d.node,
        d.version,
        d.pid,
        ago(now, d.started_at).trim_end_matches(" ago"),
        d.config_path,
        ago(now, d.config_loaded_at)
    );
    if st.instances.is_empty() {
        out.push_str("no VRRP instance configured\n");
        out.push_str(&lateness(st));
        return out;
    }
    let mut rows = vec![
        [
            "INSTANCE",
            "IF",
            "VRID",
            "STATE",
            "PRIO",
            "MASTER",
            "VIPS",
            "LAST TRANSITION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for i in &st.instances {
        let prio = if i.effective_priority == i.configured_priority {
            i.configured_priority.to_string()
        } else {
            format!("{} (of {})", i.effective_priority, i.configured_priority)
        };
        let master = match &i.master {
            Some(m) if m.is_self => "this node".to_string(),
            Some(m) => format!("{} prio {}", m.address, m.priority),
            None => "-".into(),
        };
        let state = if i.maintenance {
            format!("{} (maintenance)", i.state)
        } else {
            i.state.to_string()
        };
        let last = match &i.last_transition {
            Some(t) => format!("{}->{} {}: {}", t.from, t.to, ago(now, t.at), t.reason),
            None => "-".into(),
        };
        rows.push(vec![
            i.name.clone(),
            i.interface.clone(),
            format!("{}{}", i.vrid, if i.version == 2 { " v2" } else { "" }),
            state,
            prio,
            master,
            i.virtual_ips.join(" "),
            last,
        ]);
    }
    out.push_str(&table(&rows));
    let mut notes = String::new();
    for i in &st.instances {
        for t in i.tracking.iter().filter(|t| !t.ok) {
            let effect = if t.faults {
                "fault".to_string()
            } else {
                format!("priority {:+}", t.delta)
            };
            let _ = writeln!(
                notes,
                "  {}: {} {} is failing ({effect})",
                i.name, t.kind, t.name
            );
        }
        let drops: u64 = i.counters.drops.values().sum();
        if drops > 0 {
            let _ = writeln!(
                notes,
                "  {}: {drops} advert(s) dropped: {:?}",
                i.name, i.counters.drops
            );
        }
        for (what, n) in &i.counters.mismatches {
            let _ = writeln!(
                notes,
                "  {}: {n} advert(s) with another {what} than configured",
                i.name
            );
        }
    }
    for g in &st.sync_groups {
        let _ = writeln!(
            notes,
            "  sync group {} ({}): {}",
            g.name,
            g.instances.join(", "),
            g.state
        );
    }
    if !st.unclaimed_drops.is_empty() {
        let _ = writeln!(
            notes,
            "  packets no instance claimed: {:?}",
            st.unclaimed_drops
        );
    }
    notes.push_str(&lateness(st));
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

/// A line when the loop ran late: the director is starved or
/// overloaded, and its adverts and timers waited.
fn lateness(st: &VrrpdStatus) -> String {
    let late = &st.lateness;
    let n = late.late_wakeups + late.held_loop;
    if n == 0 {
        return String::new();
    }
    format!(
        "  the loop ran late {n} time(s) ({} woke late, {} held by its own work; worst {} ms): adverts and timers waited, see the log\n",
        late.late_wakeups, late.held_loop, late.worst_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_ran_late_is_said_only_when_it_did() {
        let mut st = VrrpdStatus {
            daemon: tandem_model::api::DaemonInfo {
                daemon: "vrrpd".into(),
                version: "0".into(),
                node: "lb1".into(),
                pid: 1,
                started_at: 0,
                config_path: "/etc/tandem/tandem.toml".into(),
                config_loaded_at: 0,
            },
            instances: Vec::new(),
            sync_groups: Vec::new(),
            unclaimed_drops: Default::default(),
            lateness: Default::default(),
        };
        assert!(!render(&st, 0).contains("ran late"));
        st.lateness = tandem_model::api::LoopLateness {
            late_wakeups: 2,
            held_loop: 1,
            worst_ms: 640,
        };
        assert!(
            render(&st, 0).contains(
                "the loop ran late 3 time(s) (2 woke late, 1 held by its own work; worst 640 ms)"
            ),
            "{}",
            render(&st, 0)
        );
    }

    #[test]
    fn ago_reads_naturally() {
        assert_eq!(ago(10_000, 6_000), "4s ago");
        assert_eq!(ago(200_000, 8_000), "3m12s ago");
        assert_eq!(ago(8_000_000, 0), "2h13m ago");
        assert_eq!(ago(0, 5_000), "0s ago");
    }
}
