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
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_reads_naturally() {
        assert_eq!(ago(10_000, 6_000), "4s ago");
        assert_eq!(ago(200_000, 8_000), "3m12s ago");
        assert_eq!(ago(8_000_000, 0), "2h13m ago");
        assert_eq!(ago(0, 5_000), "0s ago");
    }
}
