//! Every virtual router of this node together, sans IO: the instances'
//! state machines, their trackers, and the sync groups that make
//! instances change state together.
//!
//! A sync group follows keepalived's vrrp_sync_group: when one member
//! becomes MASTER the others do; when a master member falls back to
//! BACKUP the others do; while any member is faulty every member is in
//! FAULT.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use tandem_model::api::VrrpState;

use crate::fsm::{Action, Instance, Mismatch};
use crate::packet::{Advert, Drop};
use crate::track::{self, TrackKind, TrackValue, Tracker};

/// An instance of this node, for as long as it runs: a reload keeps the
/// id of an instance it keeps, so nothing is kept aligned by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(u32);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

pub struct Member {
    pub name: String,
    pub inst: Instance,
    pub trackers: Vec<Tracker>,
    /// The sync group, by its index in [`Node::groups`].
    group: Option<usize>,
    /// This member's own fault from its trackers (the instance also holds
    /// faults of its group peers).
    own_fault: Option<String>,
}

impl Member {
    pub fn new(name: &str, inst: Instance, trackers: Vec<Tracker>) -> Self {
        Member {
            name: name.to_string(),
            inst,
            trackers,
            group: None,
            own_fault: None,
        }
    }
}

pub struct Group {
    pub name: String,
    pub members: Vec<InstanceId>,
    state: VrrpState,
}

impl Group {
    pub fn state(&self) -> VrrpState {
        self.state
    }
}

/// An action of one instance, or a sync group's change of state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    Instance(InstanceId, Action),
    Group { group: String, to: VrrpState },
}

pub struct Received {
    pub outs: Vec<Out>,
    pub mismatches: Vec<Mismatch>,
}

#[derive(Default)]
pub struct Node {
    members: BTreeMap<InstanceId, Member>,
    groups: Vec<Group>,
    next_id: u32,
}

impl Node {
    /// A node of `members`; `groups`: (name, member names). Unknown names
    /// were refused by config validation.
    pub fn new(members: Vec<Member>, groups: &[(String, Vec<String>)]) -> Self {
        let mut node = Node::default();
        for m in members {
            node.add(m);
        }
        node.set_groups(groups);
        node
    }

    /// Adds an instance (not started: see [`start`](Self::start)).
    pub fn add(&mut self, member: Member) -> InstanceId {
        let id = InstanceId(self.next_id);
        self.next_id += 1;
        self.members.insert(id, member);
        id
    }

    /// Takes an instance out; its group forgets it at the next
    /// [`set_groups`](Self::set_groups).
    pub fn remove(&mut self, id: InstanceId) -> Option<Member> {
        let m = self.members.remove(&id)?;
        for g in &mut self.groups {
            g.members.retain(|&x| x != id);
        }
        Some(m)
    }

    /// Replaces the sync groups. A group that keeps its name and members
    /// keeps its state: a reload does not announce it again.
    pub fn set_groups(&mut self, groups: &[(String, Vec<String>)]) {
        let old = std::mem::take(&mut self.groups);
        for m in self.members.values_mut() {
            m.group = None;
        }
        for (name, names) in groups {
            let ids: Vec<InstanceId> = names.iter().filter_map(|n| self.id(n)).collect();
            let g = self.groups.len();
            for id in &ids {
                if let Some(m) = self.members.get_mut(id) {
                    m.group = Some(g);
                }
            }
            let state = old
                .iter()
                .find(|o| o.name == *name && o.members == ids)
                .map_or(VrrpState::Init, |o| o.state);
            self.groups.push(Group {
                name: name.clone(),
                members: ids,
                state,
            });
        }
    }

    pub fn id(&self, name: &str) -> Option<InstanceId> {
        self.members
            .iter()
            .find(|(_, m)| m.name == name)
            .map(|(id, _)| *id)
    }

    pub fn get(&self, id: InstanceId) -> Option<&Member> {
        self.members.get(&id)
    }

    pub fn get_mut(&mut self, id: InstanceId) -> Option<&mut Member> {
        self.members.get_mut(&id)
    }

    /// Every instance, oldest first.
    pub fn members(&self) -> impl Iterator<Item = (InstanceId, &Member)> {
        self.members.iter().map(|(id, m)| (*id, m))
    }

    pub fn ids(&self) -> Vec<InstanceId> {
        self.members.keys().copied().collect()
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The sync group `id` belongs to.
    pub fn group_of(&self, id: InstanceId) -> Option<&Group> {
        self.members
            .get(&id)
            .and_then(|m| m.group)
            .map(|g| &self.groups[g])
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .values()
            .filter_map(|m| m.inst.next_deadline())
            .min()
    }

    /// Startup event for every instance, after applying the trackers'
    /// initial state.
    pub fn startup(&mut self, now: Instant) -> Vec<Out> {
        let ids = self.ids();
        self.start(now, &ids)
    }

    /// Startup event for the instances `ids` (new ones after a reload),
    /// after applying the trackers' current state.
    pub fn start(&mut self, now: Instant, ids: &[InstanceId]) -> Vec<Out> {
        let mut outs = self.reevaluate(now);
        for &id in ids {
            let Some(m) = self.members.get_mut(&id) else {
                continue;
            };
            let actions = m.inst.startup(now);
            outs.extend(self.propagate(now, id, actions));
        }
        self.group_events(outs)
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Out> {
        let mut outs = Vec::new();
        for id in self.ids() {
            let inst = &mut self.members.get_mut(&id).expect("listed").inst;
            if inst.next_deadline().is_some_and(|t| t <= now) {
                let actions = inst.on_timer(now);
                outs.extend(self.propagate(now, id, actions));
            }
        }
        self.group_events(outs)
    }

    pub fn on_advert(
        &mut self,
        now: Instant,
        id: InstanceId,
        src: IpAddr,
        adv: &Advert,
    ) -> Result<Received, Drop> {
        let Some(m) = self.members.get_mut(&id) else {
            return Err(Drop::UnknownVrid);
        };
        let r = m.inst.on_advert(now, src, adv)?;
        let outs = self.propagate(now, id, r.actions);
        Ok(Received {
            outs: self.group_events(outs),
            mismatches: r.mismatches,
        })
    }

    /// A tracked object changed: every instance tracking it re-evaluates.
    pub fn set_track(
        &mut self,
        now: Instant,
        kind: TrackKind,
        name: &str,
        value: TrackValue,
    ) -> Vec<Out> {
        let mut touched = false;
        for m in self.members.values_mut() {
            for t in m
                .trackers
                .iter_mut()
                .filter(|t| t.kind == kind && t.name == name)
            {
                touched |= t.value != value;
                t.value = value;
            }
        }
        if !touched {
            return Vec::new();
        }
        let outs = self.reevaluate(now);
        self.group_events(outs)
    }

    /// Recomputes every member's priority and fault from its trackers and
    /// its group.
    fn reevaluate(&mut self, now: Instant) -> Vec<Out> {
        for m in self.members.values_mut() {
            let (_, fault) = track::evaluate(m.inst.params().priority, &m.trackers);
            m.own_fault = fault;
        }
        let mut outs = Vec::new();
        for id in self.ids() {
            let m = &self.members[&id];
            let (priority, _) = track::evaluate(m.inst.params().priority, &m.trackers);
            let fault = m.own_fault.clone().or_else(|| {
                let g = &self.groups[m.group?];
                g.members
                    .iter()
                    .find_map(|j| {
                        let peer = self.members.get(j)?;
                        peer.own_fault.as_ref().map(|f| (peer, f))
                    })
                    .map(|(peer, f)| {
                        format!("sync group {}: {} is faulty ({f})", g.name, peer.name)
                    })
            });
            let inst = &mut self.members.get_mut(&id).expect("listed").inst;
            let mut actions = inst.set_tracked_priority(now, priority);
            actions.extend(inst.set_fault(now, fault));
            outs.extend(actions.into_iter().map(|a| Out::Instance(id, a)));
        }
        outs
    }

    pub fn set_maintenance(&mut self, now: Instant, id: InstanceId, on: bool) -> Vec<Out> {
        let Some(m) = self.members.get_mut(&id) else {
            return Vec::new();
        };
        let actions = m.inst.set_maintenance(now, on);
        let outs = self.propagate(now, id, actions);
        self.group_events(outs)
    }

    /// RFC 5798 6.4.3 Shutdown of every instance (`handover`: keep the
    /// addresses until a new master is heard).
    pub fn shutdown(&mut self, now: Instant, handover: bool) -> Vec<Out> {
        let ids = self.ids();
        self.shutdown_some(now, &ids, handover)
    }

    /// Shutdown of the instances `ids` (a reload removing them).
    pub fn shutdown_some(&mut self, now: Instant, ids: &[InstanceId], handover: bool) -> Vec<Out> {
        let mut outs = Vec::new();
        for &id in ids {
            if let Some(m) = self.members.get_mut(&id) {
                outs.extend(
                    m.inst
                        .shutdown(now, handover)
                        .into_iter()
                        .map(|a| Out::Instance(id, a)),
                );
            }
        }
        self.group_events(outs)
    }

    /// Wraps one instance's actions and makes its sync group follow a
    /// takeover or a fallback to BACKUP.
    fn propagate(&mut self, now: Instant, id: InstanceId, actions: Vec<Action>) -> Vec<Out> {
        let mut follow = None;
        for a in &actions {
            if let Action::Transition { from, to, .. } = a {
                let takes_over = *from == VrrpState::Backup && *to == VrrpState::Master;
                let falls_back = *from == VrrpState::Master && *to == VrrpState::Backup;
                if takes_over || falls_back {
                    follow = Some(*to);
                }
            }
        }
        let mut outs: Vec<Out> = actions.into_iter().map(|a| Out::Instance(id, a)).collect();
        let Some(m) = self.members.get(&id) else {
            return outs;
        };
        if let (Some(to), Some(g)) = (follow, m.group) {
            let why = format!("sync group {}: {} became {to}", self.groups[g].name, m.name);
            for j in self.groups[g].members.clone() {
                if j == id {
                    continue;
                }
                if let Some(peer) = self.members.get_mut(&j) {
                    let actions = peer.inst.follow_group(now, to, why.clone());
                    outs.extend(actions.into_iter().map(|a| Out::Instance(j, a)));
                }
            }
        }
        outs
    }

    /// Appends a group event for every group whose state changed.
    fn group_events(&mut self, mut outs: Vec<Out>) -> Vec<Out> {
        for g in &mut self.groups {
            let states: Vec<VrrpState> = g
                .members
                .iter()
                .filter_map(|id| self.members.get(id))
                .map(|m| m.inst.state())
                .collect();
            let state = group_state(&states);
            if state != g.state {
                g.state = state;
                outs.push(Out::Group {
                    group: g.name.clone(),
                    to: state,
                });
            }
        }
        outs
    }
}

fn group_state(states: &[VrrpState]) -> VrrpState {
    if states.contains(&VrrpState::Fault) {
        VrrpState::Fault
    } else if states.iter().all(|s| *s == VrrpState::Stop) && !states.is_empty() {
        VrrpState::Stop
    } else if states.iter().all(|s| *s == VrrpState::Master) && !states.is_empty() {
        VrrpState::Master
    } else if states.contains(&VrrpState::Init) {
        VrrpState::Init
    } else {
        VrrpState::Backup
    }
}
