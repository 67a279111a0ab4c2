//! What the doctor reports: one finding per thing set up wrong, worst
//! first, and an exit status by the worst.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing breaks.
    Info,
    /// Breaks something in some conditions (a failover, one family).
    Warning,
    /// Breaks service now.
    Error,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable, for scripts and the documentation: `nat-forwarding`.
    pub id: String,
    pub severity: Severity,
    /// What is wrong, in a sentence.
    pub what: String,
    /// How the doctor saw it.
    pub seen: String,
    /// What it breaks.
    pub breaks: String,
    /// Commands that fix it, in order.
    pub fix: Vec<String>,
}

/// Worst first, then by id: the order they are shown in.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
}

/// 0 with nothing worse than info, 1 with a warning, 2 with an error.
pub fn exit_status(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.severity).max() {
        Some(Severity::Error) => 2,
        Some(Severity::Warning) => 1,
        _ => 0,
    }
}

/// The findings as a person reads them.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!("{} {}: {}\n", f.severity.label(), f.id, f.what));
        out.push_str(&format!("  seen:   {}\n", f.seen));
        out.push_str(&format!("  breaks: {}\n", f.breaks));
        for (i, c) in f.fix.iter().enumerate() {
            out.push_str(&format!(
                "  {}{c}\n",
                if i == 0 { "fix:    " } else { "        " }
            ));
        }
    }
    out
}

/// What an examination could see, for a line under its findings.
pub fn examined(r: &crate::Report) -> String {
    let nft = if r.nft {
        "nftables read"
    } else {
        "nftables not read (no nft, or no CAP_NET_ADMIN: sudo tandem doctor reads it)"
    };
    let vrrpd = match r.vrrpd_watched_ms {
        Some(ms) => format!("vrrpd watched for {:.1} s", ms as f64 / 1000.0),
        None => "vrrpd not running here".to_string(),
    };
    let arp = match r.probes {
        Some(n) => format!("{n} probes of VIPs and DR real servers"),
        None => "no probes of VIPs or real servers (sudo tandem doctor sends them)".to_string(),
    };
    format!("{nft}; {vrrpd}; {arp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            severity,
            what: String::new(),
            seen: String::new(),
            breaks: String::new(),
            fix: Vec::new(),
        }
    }

    #[test]
    fn the_worst_comes_first_and_sets_the_exit_status() {
        let mut v = vec![
            f("b", Severity::Warning),
            f("a", Severity::Error),
            f("c", Severity::Info),
        ];
        sort(&mut v);
        let ids: Vec<&str> = v.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(exit_status(&v), 2);
        assert_eq!(exit_status(&v[1..]), 1);
        assert_eq!(exit_status(&v[2..]), 0);
        assert_eq!(exit_status(&[]), 0);
    }
}
