//! The facts of this director, read: kernel settings from `/proc/sys`
//! (of the network namespace the doctor runs in) and the nftables
//! ruleset from `nft`.

use std::collections::BTreeMap;
use std::path::Path;

use tandem_model::config::Config;

use crate::examine::{Facts, sysctls_wanted};

pub fn sysctl(name: &str) -> Option<String> {
    let path = Path::new("/proc/sys").join(name.replace('.', "/"));
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// `nft -a -j list ruleset`; `None` without nft or without the right to
/// read the ruleset.
pub fn nft_ruleset() -> Option<serde_json::Value> {
    let out = std::process::Command::new("nft")
        .args(["-a", "-j", "list", "ruleset"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

pub fn gather(config: Config) -> Facts {
    let sysctl: BTreeMap<String, String> = sysctls_wanted(&config)
        .into_iter()
        .filter_map(|k| sysctl(&k).map(|v| (k, v)))
        .collect();
    Facts {
        nft: nft_ruleset(),
        config,
        sysctl,
    }
}
