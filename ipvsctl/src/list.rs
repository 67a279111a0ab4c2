//! The table as text, laid out like `ipvsadm -L -n` (and its `--stats`
//! and `--rate` variants), so an operator reads it the way they already
//! read ipvsadm's.

use std::fmt::Write as _;

use crate::types::{Info, Service, ServiceKey, Stats, Table};

/// Which columns to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Columns {
    /// Forwarding, weight, active and inactive connections.
    #[default]
    Connections,
    /// Totals: connections, packets and bytes in and out.
    Stats,
    /// Rates: connections, packets and bytes per second.
    Rate,
}

fn service_label(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { protocol, addr } => format!("{:<4} {addr}", protocol.label()),
        ServiceKey::Fwmark { .. } => format!("{:<4} {}", "FWM", &key.to_string()[4..]),
    }
}

/// `rr`, `sh (sh-fallback,sh-port) ops`, `lc persistent 60 mask 64`.
fn service_flags(svc: &Service) -> String {
    let s = &svc.settings;
    let mut out = s.scheduler.clone();
    if !s.sched_flags.is_empty() {
        let _ = write!(out, " ({})", s.sched_flags.names(&s.scheduler).join(","));
    }
    if let Some(t) = s.persistence {
        let _ = write!(out, " persistent {t}");
        if !s.netmask.is_full() {
            let _ = write!(out, " mask {}", s.netmask);
        }
    }
    if let Some(pe) = &s.pe {
        let _ = write!(out, " pe {pe}");
    }
    if s.one_packet {
        out.push_str(" ops");
    }
    out
}

fn numbers(out: &mut String, label: &str, s: &Stats, columns: Columns) {
    let v = match columns {
        Columns::Stats => [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes],
        _ => [s.cps, s.inpps, s.outpps, s.inbps, s.outbps],
    };
    let _ = writeln!(
        out,
        "{label:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
        v[0], v[1], v[2], v[3], v[4]
    );
}

/// The listing; `info` gives the header line when known.
pub fn render(table: &Table, info: Option<&Info>, columns: Columns) -> String {
    let mut out = String::new();
    if let Some(i) = info {
        let _ = writeln!(
            out,
            "IP Virtual Server version {} (size={})",
            i.version_string(),
            i.conn_table_size
        );
    }
    match columns {
        Columns::Connections => {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
        }
        Columns::Stats => {
            out.push_str(
                "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
            );
            out.push_str("  -> RemoteAddress:Port\n");
        }
        Columns::Rate => {
            out.push_str(
                "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n",
            );
            out.push_str("  -> RemoteAddress:Port\n");
        }
    }
    for svc in &table.services {
        match columns {
            Columns::Connections => {
                let _ = writeln!(out, "{} {}", service_label(&svc.key), service_flags(svc));
            }
            _ => numbers(&mut out, &service_label(&svc.key), &svc.stats, columns),
        }
        for d in &svc.dests {
            match columns {
                Columns::Connections => {
                    let _ = writeln!(
                        out,
                        "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                        d.addr.to_string(),
                        d.settings.forwarding.label(),
                        d.settings.weight,
                        d.counters.active_conns,
                        d.counters.inactive_conns
                    );
                }
                _ => numbers(
                    &mut out,
                    &format!("  -> {}", d.addr),
                    &d.counters.stats,
                    columns,
                ),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::save::parse_table;

    #[test]
    fn the_listing_reads_like_ipvsadm_ln() {
        let t = parse_table(
            "-A -u 10.0.0.1:53 -s sh -o -b sh-fallback,sh-port\n\
             -a -u 10.0.0.1:53 -r 10.0.0.4:53 -g -w 2\n\
             -A -f 7 -s wlc -p 300 -M 255.255.255.0\n\
             -A -f 8 -6 -s nq\n",
        )
        .unwrap();
        let info = Info {
            version: 0x010201,
            conn_table_size: 4096,
        };
        let text = render(&t, Some(&info), Columns::Connections);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(lines[0], "IP Virtual Server version 1.2.1 (size=4096)");
        assert!(
            lines.contains(&"UDP  10.0.0.1:53 sh (sh-fallback,sh-port) ops"),
            "{text}"
        );
        assert!(
            lines.contains(&"  -> 10.0.0.4:53                  Route   2      0          0"),
            "{text}"
        );
        assert!(
            lines.contains(&"FWM  7 wlc persistent 300 mask 255.255.255.0"),
            "{text}"
        );
        assert!(lines.contains(&"FWM  8 IPv6 nq"), "{text}");
    }
}
