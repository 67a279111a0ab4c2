//! Every virtual router of this node together, sans IO: the instances'
//! state machines, their trackers, and the sync groups that make
//! instances change state together.
//!
//! A sync group follows keepalived's vrrp_sync_group: when one member
//! becomes MASTER the others do; when a master member falls back to
//! BACKUP the others do; while any member is faulty every member is in
//! FAULT.

use std::net::IpAddr;
use std::time::Instant;

use tandem_model::api::VrrpState;

use crate::fsm::{Action, Instance, Mismatch};
use crate::packet::{Advert, Drop};
use crate::track::{self, TrackKind, TrackValue, Tracker};

pub struct Member {
    pub name: String,
    pub inst: Instance,
    pub trackers: Vec<Tracker>,
    pub group: Option<usize>,
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
    pub members: Vec<usize>,
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
    Instance(usize, Action),
    Group { group: usize, to: VrrpState },
}

pub struct Received {
    pub outs: Vec<Out>,
    pub mismatches: Vec<Mismatch>,
}

#[derive(Default)]
pub struct Node {
    pub members: Vec<Member>,
    pub groups: Vec<Group>,
}

impl Node {
    /// `groups`: (name, member names). Unknown names were refused by
    /// config validation.
    pub fn new(members: Vec<Member>, groups: &[(String, Vec<String>)]) -> Self {
        let mut node = Node {
            members,
            groups: Vec::new(),
        };
        for (name, names) in groups {
            let idx: Vec<usize> = names.iter().filter_map(|n| node.index(n)).collect();
            let g = node.groups.len();
            for &i in &idx {
                node.members[i].group = Some(g);
            }
            node.groups.push(Group {
                name: name.clone(),
                members: idx,
                state: VrrpState::Init,
            });
        }
        node
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.members.iter().position(|m| m.name == name)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.members
            .iter()
            .filter_map(|m| m.inst.next_deadline())
            .min()
    }

    /// Startup event for every instance, after applying the trackers'
    /// initial state.
    pub fn startup(&mut self, now: Instant) -> Vec<Out> {
        let mut outs = self.reevaluate(now);
        for i in 0..self.members.len() {
            let actions = self.members[i].inst.startup(now);
            outs.extend(self.propagate(now, i, actions));
        }
        self.group_events(outs)
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Out> {
        let mut outs = Vec::new();
        for i in 0..self.members.len() {
            if self.members[i]
                .inst
                .next_deadline()
                .is_some_and(|t| t <= now)
            {
                let actions = self.members[i].inst.on_timer(now);
                outs.extend(self.propagate(now, i, actions));
            }
        }
        self.group_events(outs)
    }

    pub fn on_advert(
        &mut self,
        now: Instant,
        i: usize,
        src: IpAddr,
        adv: &Advert,
    ) -> Result<Received, Drop> {
        let r = self.members[i].inst.on_advert(now, src, adv)?;
        let outs = self.propagate(now, i, r.actions);
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
        for m in &mut self.members {
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
        for m in &mut self.members {
            let (_, fault) = track::evaluate(m.inst.params().priority, &m.trackers);
            m.own_fault = fault;
        }
        let mut outs = Vec::new();
        for i in 0..self.members.len() {
            let (priority, _) = track::evaluate(
                self.members[i].inst.params().priority,
                &self.members[i].trackers,
            );
            let fault = self.members[i].own_fault.clone().or_else(|| {
                let g = self.members[i].group?;
                self.groups[g]
                    .members
                    .iter()
                    .find_map(|&j| self.members[j].own_fault.as_ref().map(|f| (j, f)))
                    .map(|(j, f)| {
                        format!(
                            "sync group {}: {} is faulty ({f})",
                            self.groups[g].name, self.members[j].name
                        )
                    })
            });
            let inst = &mut self.members[i].inst;
            let mut actions = inst.set_tracked_priority(now, priority);
            actions.extend(inst.set_fault(now, fault));
            outs.extend(actions.into_iter().map(|a| Out::Instance(i, a)));
        }
        outs
    }

    pub fn set_maintenance(&mut self, now: Instant, i: usize, on: bool) -> Vec<Out> {
        let actions = self.members[i].inst.set_maintenance(now, on);
        let outs = self.propagate(now, i, actions);
        self.group_events(outs)
    }

    pub fn shutdown(&mut self, now: Instant, handover: bool) -> Vec<Out> {
        let mut outs = Vec::new();
        for i in 0..self.members.len() {
            outs.extend(
                self.members[i]
                    .inst
                    .shutdown(now, handover)
                    .into_iter()
                    .map(|a| Out::Instance(i, a)),
            );
        }
        self.group_events(outs)
    }

    /// Wraps one instance's actions and makes its sync group follow a
    /// takeover or a fallback to BACKUP.
    fn propagate(&mut self, now: Instant, i: usize, actions: Vec<Action>) -> Vec<Out> {
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
        let mut outs: Vec<Out> = actions.into_iter().map(|a| Out::Instance(i, a)).collect();
        if let (Some(to), Some(g)) = (follow, self.members[i].group) {
            let why = format!(
                "sync group {}: {} became {to}",
                self.groups[g].name, self.members[i].name
            );
            for j in self.groups[g].members.clone() {
                if j != i {
                    let actions = self.members[j].inst.follow_group(now, to, why.clone());
                    outs.extend(actions.into_iter().map(|a| Out::Instance(j, a)));
                }
            }
        }
        outs
    }

    /// Appends a group event for every group whose state changed.
    fn group_events(&mut self, mut outs: Vec<Out>) -> Vec<Out> {
        for g in 0..self.groups.len() {
            let states: Vec<VrrpState> = self.groups[g]
                .members
                .iter()
                .map(|&i| self.members[i].inst.state())
                .collect();
            let state = group_state(&states);
            if state != self.groups[g].state {
                self.groups[g].state = state;
                outs.push(Out::Group {
                    group: g,
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
