//! The other directors this node hears, as the overview page and the JSON
//! API list them.

use std::collections::BTreeMap;

use tandem_model::api::{UnixMillis, VrrpdStatus};

use crate::format::ago;

pub struct PeerView {
    pub address: String,
    pub instances: String,
    pub priority: String,
    pub last_seen: String,
}

/// The other directors this node hears: the masters it sees that are not
/// itself, with the instances they are master of.
pub fn peers(s: &VrrpdStatus, now: UnixMillis) -> Vec<PeerView> {
    let mut by_addr: BTreeMap<String, (Vec<String>, Vec<u8>, UnixMillis)> = BTreeMap::new();
    for i in &s.instances {
        if let Some(m) = i.master.as_ref().filter(|m| !m.is_self) {
            let e = by_addr.entry(m.address.to_string()).or_default();
            e.0.push(i.name.clone());
            e.1.push(m.priority);
            e.2 = e.2.max(m.last_seen);
        }
    }
    by_addr
        .into_iter()
        .map(|(address, (names, prios, seen))| PeerView {
            address,
            instances: names.join(", "),
            priority: prios
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            last_seen: ago(now, seen),
        })
        .collect()
}
