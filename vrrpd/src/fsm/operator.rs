//! What tandem adds to RFC 5798 on top of the state machine, as an
//! operator expects from keepalived: priority from tracked objects, FAULT,
//! the maintenance handover (priority 0 first, the addresses kept until the
//! new master is heard), following a sync group, and a reload applied in
//! place without a transition.

use std::time::{Duration, Instant};

use tandem_model::api::VrrpState;

use super::{Action, Instance, Params, Release};
use crate::packet::Version;

impl Instance {
    /// A new priority from tracking.
    pub fn set_tracked_priority(&mut self, now: Instant, priority: u8) -> Vec<Action> {
        let before = self.priority();
        self.tracked_priority = priority;
        let after = self.priority();
        if self.state == VrrpState::Master && before != after && self.releasing.is_none() {
            // Tell the backups now, not at the next tick: a lowered master
            // is preempted one Master_Down_Interval sooner.
            self.adver_timer = Some(now + self.params.advert_interval);
            return vec![Action::SendAdvert { priority: after }];
        }
        Vec::new()
    }

    /// A tracked object without weight failed (`Some(why)`) or every one is
    /// fine again (`None`).
    pub fn set_fault(&mut self, now: Instant, fault: Option<String>) -> Vec<Action> {
        let was = self.fault.take();
        self.fault = fault;
        match (&was, &self.fault) {
            (None, Some(why)) => {
                let why = why.clone();
                let mut out = Vec::new();
                if self.state == VrrpState::Master {
                    // Let a backup take over after Skew_Time, not
                    // Master_Down_Interval.
                    out.push(Action::SendAdvert { priority: 0 });
                    out.push(Action::RemoveAddresses);
                }
                if matches!(self.state, VrrpState::Master | VrrpState::Backup) {
                    self.clear_timers();
                    out.push(self.transition(VrrpState::Fault, why));
                    if self.stopping {
                        // A fault during a shutdown handover (the interface
                        // went away): there is nothing left to hand over and
                        // no deadline that would end it, so the stop is done.
                        out.push(self.transition(
                            VrrpState::Stop,
                            "shutdown: the handover ended by a fault",
                        ));
                        out.push(Action::Stopped);
                    }
                }
                out
            }
            (Some(_), None) if self.state == VrrpState::Fault => {
                self.enter_running(now, "fault cleared")
            }
            _ => Vec::new(),
        }
    }

    /// Maintenance on: hand over to a backup and stay below everyone.
    /// Maintenance off: back to the configured priority.
    pub fn set_maintenance(&mut self, now: Instant, on: bool) -> Vec<Action> {
        if on == self.maintenance {
            return Vec::new();
        }
        self.maintenance = on;
        if on && self.state == VrrpState::Master {
            return self.release(now, Release::Maintenance);
        }
        if !on && self.state == VrrpState::Master {
            self.releasing = None;
            self.adver_timer = Some(now + self.params.advert_interval);
            return vec![Action::SendAdvert {
                priority: self.priority(),
            }];
        }
        Vec::new()
    }

    pub(super) fn release(&mut self, now: Instant, why: Release) -> Vec<Action> {
        // A backup takes over after its Skew_Time; one that missed the
        // priority-0 advert after its Master_Down_Interval, at most
        // 4 x Advertisement_Interval. Keep the addresses until then.
        let deadline = now + 4 * self.params.advert_interval + Duration::from_millis(100);
        self.releasing = Some((why, deadline));
        self.adver_timer = None;
        self.announce_timer = None;
        vec![Action::SendAdvert { priority: 0 }]
    }

    /// RFC 5798 6.4.3 Shutdown: a master sends priority 0. With `handover`
    /// it keeps the addresses until the new master is heard (or a deadline
    /// passes), so no packet falls between the two.
    pub fn shutdown(&mut self, now: Instant, handover: bool) -> Vec<Action> {
        self.stopping = true;
        match self.state {
            VrrpState::Master if handover => {
                if self.releasing.is_some() {
                    // Already handing over (maintenance): finish as shutdown.
                    let deadline = self.releasing.map_or(now, |(_, t)| t);
                    self.releasing = Some((Release::Shutdown, deadline));
                    return Vec::new();
                }
                self.release(now, Release::Shutdown)
            }
            VrrpState::Master => {
                self.clear_timers();
                vec![
                    Action::SendAdvert { priority: 0 },
                    Action::RemoveAddresses,
                    self.transition(VrrpState::Stop, "shutdown"),
                    Action::Stopped,
                ]
            }
            VrrpState::Stop => vec![Action::Stopped],
            _ => {
                self.clear_timers();
                vec![
                    self.transition(VrrpState::Stop, "shutdown"),
                    Action::Stopped,
                ]
            }
        }
    }

    /// A sync group peer took over or fell back: follow it (as
    /// keepalived's vrrp_sync_group; faults reach group members through
    /// [`set_fault`](Self::set_fault)).
    pub fn follow_group(&mut self, now: Instant, to: VrrpState, why: String) -> Vec<Action> {
        if self.stopping || self.fault.is_some() {
            return Vec::new();
        }
        match (self.state, to) {
            (VrrpState::Backup, VrrpState::Master) => self.become_master(now, why),
            (VrrpState::Master, VrrpState::Backup) if self.releasing.is_none() => {
                self.become_backup(now, why)
            }
            _ => Vec::new(),
        }
    }

    /// Applies new parameters in place (a reload): addresses, priority,
    /// timers and preemption change without a state change. The daemon
    /// adds and removes individual addresses itself.
    pub fn reconfigure(&mut self, now: Instant, params: Params) -> Vec<Action> {
        let old_priority = self.priority();
        let interval_changed = params.advert_interval != self.params.advert_interval;
        if params.priority != self.params.priority {
            self.tracked_priority = params.priority;
        }
        self.params = params;
        let mut out = Vec::new();
        if self.state == VrrpState::Master {
            if interval_changed {
                self.master_adver_interval = self.params.advert_interval;
                self.adver_timer = Some(now + self.params.advert_interval);
            }
            if self.priority() != old_priority || interval_changed {
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
            }
        }
        if self.state == VrrpState::Backup && self.params.version == Version::V2 {
            self.master_adver_interval = self.params.advert_interval;
        }
        out
    }
}
