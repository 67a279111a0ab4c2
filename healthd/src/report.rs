//! healthd's status as a table for a terminal (`tandem-healthd status`).

use tandem_model::api::{HealthdStatus, UnixMillis};

fn ago(now: UnixMillis, then: UnixMillis) -> String {
    if then == 0 {
        return "-".into();
    }
    let s = now.saturating_sub(then) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn render(st: &HealthdStatus, now: UnixMillis) -> String {
    let d = &st.daemon;
    let mut out = format!(
        "{}: healthd {} (pid {}), config {}\nIPVS: {}\n",
        d.node,
        d.version,
        d.pid,
        d.config_path,
        match (&st.dataplane.ok, &st.dataplane.error) {
            (true, _) => format!(
                "in sync ({} operations since start)",
                st.dataplane.operations
            ),
            (false, Some(e)) => format!("NOT PROGRAMMED: {e}"),
            (false, None) => "not synced yet".into(),
        }
    );
    if let Some(sync) = &st.dataplane.connection_sync {
        out.push_str(&format!("connection sync: {sync}\n"));
    }
    for vs in &st.virtual_servers {
        out.push_str(&format!(
            "\n{} {} {} {}: {} of {} up, quorum {} {}{}\n",
            vs.name,
            vs.service,
            vs.scheduler,
            vs.forwarding,
            vs.up,
            vs.real_servers.len(),
            vs.quorum,
            if vs.quorum_met { "met" } else { "LOST" },
            if vs.sorry_active {
                format!(
                    ", sorry server {} in use",
                    vs.sorry_server.clone().unwrap_or_default()
                )
            } else {
                String::new()
            }
        ));
        if let Some(c) = &vs.check {
            out.push_str(&format!("  check: {c}\n"));
        }
        let mut rows = vec![
            [
                "REAL SERVER",
                "HEALTH",
                "FOR",
                "WEIGHT",
                "CONNS",
                "LAST CHECK",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for rs in &vs.real_servers {
            let weight = match rs.kernel_weight {
                Some(w) if w == rs.weight => w.to_string(),
                Some(w) => format!("{w} (of {})", rs.weight),
                None => format!("- (of {})", rs.weight),
            };
            let health = if rs.drained {
                format!("{} (drained)", rs.health)
            } else {
                rs.health.to_string()
            };
            let last = rs.last_check.as_ref().map_or_else(
                || rs.reason.clone(),
                |c| {
                    format!(
                        "{} in {} ms, {} ago",
                        c.reason,
                        c.latency_ms,
                        ago(now, c.at)
                    )
                },
            );
            rows.push(vec![
                rs.address.clone(),
                health,
                ago(now, rs.since),
                weight,
                format!("{}/{}", rs.active_conns, rs.inactive_conns),
                last,
            ]);
        }
        let widths: Vec<usize> = (0..6)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        for r in rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if i == 5 {
                        s.clone()
                    } else {
                        format!("{s:<w$}", w = widths[i])
                    }
                })
                .collect();
            out.push_str("  ");
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}
