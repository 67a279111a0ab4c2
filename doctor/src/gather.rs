//! The facts of this director, read: kernel settings from `/proc/sys`
//! (of the network namespace the doctor runs in), the nftables ruleset
//! from `nft`, vrrpd's status (twice) from its socket.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tandem_model::api::VrrpdStatus;
use tandem_model::config::{self, Config};
use tandem_model::control::Client;

use crate::examine::{ArpAnswers, DrAnswers, Facts, probe_targets, sysctls_wanted};
use tandem_model::config::Forwarding;

/// How long an ARP probe waits for answers, and the most VIPs probed.
const ARP_WAIT: Duration = Duration::from_millis(300);
const ARP_MAX: usize = 64;

/// How long a DR real server has to answer, and the most probed.
const DR_WAIT: Duration = Duration::from_millis(500);
const DR_MAX: usize = 64;

/// Probes every IPv4 DR and NAT real server (see [`crate::dr`]); one
/// whose MAC cannot be learnt is left out (health checks say it is
/// unreachable).
fn probe_real_servers(config: &Config) -> Vec<DrAnswers> {
    probe_targets(config)
        .into_iter()
        .take(DR_MAX)
        .filter_map(|(vs, rs, vip, forwarding)| {
            let second = match forwarding {
                Forwarding::Nat => crate::dr::Second::FromVip(vip),
                _ => crate::dr::Second::ToVip(vip),
            };
            let answers = crate::dr::probe(rs, second, DR_WAIT).ok()??;
            Some(DrAnswers {
                virtual_server: vs,
                real_server: rs,
                vip,
                forwarding,
                answers,
            })
        })
        .collect()
}

/// Probes every IPv4 VIP of the instances master here (the ones this
/// director answers for).
fn probe_vips(status: &VrrpdStatus) -> Vec<ArpAnswers> {
    let mut out = Vec::new();
    for i in &status.instances {
        if i.state != tandem_model::api::VrrpState::Master {
            continue;
        }
        let Ok((_, mac)) = crate::link::interface(&i.interface) else {
            continue;
        };
        // RFC 5798 7.3: the VRID's virtual MAC, with a virtual MAC set.
        let own = vec![mac, [0x00, 0x00, 0x5e, 0x00, 0x01, i.vrid]];
        for v in &i.virtual_ips {
            let Ok(vip) = v.split('/').next().unwrap_or_default().parse() else {
                continue;
            };
            if out.len() >= ARP_MAX {
                return out;
            }
            if let Ok(answered) = crate::arp::who_answers(&i.interface, vip, ARP_WAIT) {
                out.push(ArpAnswers {
                    instance: i.name.clone(),
                    interface: i.interface.clone(),
                    vip,
                    own: own.clone(),
                    answered,
                });
            }
        }
    }
    out
}

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

/// How long between vrrpd's two samples: three adverts of the slowest
/// instance and a little, so a router that sends is heard.
pub fn sampling(config: &Config) -> Duration {
    config
        .vrrp_instances
        .iter()
        .map(|i| i.advert_interval * 3 + Duration::from_millis(200))
        .max()
        .unwrap_or_default()
}

/// vrrpd's status, then again after `apart`; `None` when it does not
/// answer (not running here, or no instance).
pub async fn vrrpd_samples(config: &Config, apart: Duration) -> Option<(VrrpdStatus, VrrpdStatus)> {
    if config.vrrp_instances.is_empty() {
        return None;
    }
    let c = Client::new(config::socket_in(&config.node.socket_dir, "vrrpd"));
    let before = c.get::<VrrpdStatus>("/status").await.ok()?;
    tokio::time::sleep(apart).await;
    let after = c.get::<VrrpdStatus>("/status").await.ok()?;
    Some((before, after))
}

pub async fn gather(config: Config, what: crate::Examine) -> Facts {
    let sysctl: BTreeMap<String, String> = sysctls_wanted(&config)
        .into_iter()
        .filter_map(|k| sysctl(&k).map(|v| (k, v)))
        .collect();
    let apart = sampling(&config);
    let vrrpd = vrrpd_samples(&config, apart).await;
    let arp = match &vrrpd {
        Some((_, now)) if what.probes => probe_vips(now),
        _ => Vec::new(),
    };
    let dr = if what.probes {
        probe_real_servers(&config)
    } else {
        Vec::new()
    };
    Facts {
        nft: if what.nft { nft_ruleset() } else { None },
        config,
        sysctl,
        vrrpd,
        apart,
        arp,
        dr,
    }
}
