//! What vrrpd says about itself in `GET /status`: every instance with
//! its state, master, counters and trackers, in the order of the file.

use std::time::Instant;

use tandem_model::api::{
    InstanceStatus, MasterSeen, SyncGroupStatus, TrackStatus, VrrpState, VrrpdStatus, now_millis,
};
use tandem_model::config::Family;

use super::Daemon;
use crate::node::InstanceId;

impl Daemon {
    pub(crate) fn instance_status(&self, id: InstanceId) -> Option<InstanceStatus> {
        let rt = self.bindings.get(&id)?;
        let m = self.node.get(id)?;
        let inst = &m.inst;
        let now = Instant::now();
        let unix = |t: Instant| {
            now_millis().saturating_sub(now.saturating_duration_since(t).as_millis() as u64)
        };
        Some(InstanceStatus {
            name: rt.cfg.name.clone(),
            interface: rt.cfg.interface.clone(),
            vrid: rt.cfg.vrid(),
            family: if rt.v6 { Family::Ipv6 } else { Family::Ipv4 },
            version: rt.cfg.version(),
            state: inst.state(),
            configured_priority: rt.cfg.priority(),
            effective_priority: inst.priority(),
            advert_interval_ms: rt.cfg.advert_interval.as_millis() as u64,
            virtual_ips: rt
                .vips
                .iter()
                .map(|v| format!("{}/{}", v.addr, v.prefix_len))
                .collect(),
            master: inst.master_seen().map(|m| MasterSeen {
                address: m.address,
                priority: m.priority,
                advert_interval_ms: m.interval.as_millis() as u64,
                is_self: Some(m.address) == rt.src && inst.state() == VrrpState::Master,
                last_seen: unix(m.at),
            }),
            last_transition: rt.last_transition.clone(),
            counters: rt.counters.clone(),
            tracking: m
                .trackers
                .iter()
                .map(|t| TrackStatus {
                    kind: t.kind.to_string(),
                    name: t.name.clone(),
                    ok: t.ok(),
                    delta: t.delta(),
                    faults: t.weight.is_none(),
                })
                .collect(),
            maintenance: inst.maintenance(),
            sync_group: self.node.group_of(id).map(|g| g.name.clone()),
        })
    }

    pub fn status(&self) -> VrrpdStatus {
        VrrpdStatus {
            daemon: self.info.clone(),
            instances: self
                .in_config_order()
                .into_iter()
                .filter_map(|id| self.instance_status(id))
                .collect(),
            sync_groups: self
                .node
                .groups()
                .iter()
                .map(|g| SyncGroupStatus {
                    name: g.name.clone(),
                    instances: g
                        .members
                        .iter()
                        .filter_map(|&id| self.node.get(id))
                        .map(|m| m.name.clone())
                        .collect(),
                    state: g.state(),
                })
                .collect(),
            unclaimed_drops: self.unclaimed_drops.clone(),
            lateness: self.lateness.counts(),
        }
    }

    /// The instances in the order the configuration lists them.
    pub(crate) fn in_config_order(&self) -> Vec<InstanceId> {
        self.config
            .vrrp_instances
            .iter()
            .filter_map(|c| self.node.id(&c.name))
            .collect()
    }
}
