//! The VRRP state machine, driven by a fake clock: RFC 5798 section 6.4
//! and the operator behaviour tandem adds on top.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tandem_model::api::VrrpState::{self, *};
use vrrpd::fsm::{Action, Instance, Mismatch, Params};
use vrrpd::node::{Member, Node, Out};
use vrrpd::packet::{Advert, Drop, Version};
use vrrpd::track::{TrackKind, TrackValue, Tracker};

const S: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn params(priority: u8) -> Params {
    Params {
        version: Version::V3,
        vrid: 51,
        priority,
        advert_interval: S,
        preempt: true,
        preempt_delay: Duration::ZERO,
        addresses: vec![ip("192.0.2.10")],
        announce_repeat_after: 5 * S,
        announce_refresh: Duration::ZERO,
    }
}

fn instance(priority: u8) -> Instance {
    let mut i = Instance::new(params(priority));
    i.set_local_addr(Some(ip("10.0.0.1")));
    i
}

fn advert(priority: u8) -> Advert {
    Advert {
        version: Version::V3,
        vrid: 51,
        priority,
        interval: S,
        addresses: vec![ip("192.0.2.10")],
    }
}

const PEER: &str = "10.0.0.2";

fn states(actions: &[Action]) -> Vec<VrrpState> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

fn sends(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAdvert { priority } => Some(*priority),
            _ => None,
        })
        .collect()
}

/// Runs timers from `from` to `to` in 10 ms steps, collecting actions.
fn run(i: &mut Instance, from: Instant, to: Instant) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        if i.next_deadline().is_some_and(|d| d <= now) {
            out.extend(i.on_timer(now).into_iter().map(|a| (now - from, a)));
        }
        now += ms(10);
    }
    out
}

#[test]
fn a_lone_router_becomes_master_after_master_down_interval() {
    let t0 = Instant::now();
    let mut i = instance(100);
    assert_eq!(states(&i.startup(t0)), vec![Backup]);
    // RFC 5798 6.1: 3 x 1 s + (256 - 100) / 256 s.
    assert_eq!(
        i.master_down_interval(),
        ms(3609) + Duration::from_micros(375)
    );
    assert!(i.on_timer(t0 + ms(3600)).is_empty());
    let a = i.on_timer(t0 + ms(3610));
    assert_eq!(states(&a), vec![Master]);
    assert_eq!(
        a[1..],
        [
            Action::AddAddresses,
            Action::SendAdvert { priority: 100 },
            Action::Announce
        ]
    );
}

#[test]
fn backup_takes_over_within_master_down_interval_of_the_last_advert() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.startup(t0);
    for n in 0..5 {
        i.on_advert(t0 + n * S, ip(PEER), &advert(150)).unwrap();
    }
    let taken = run(&mut i, t0 + 4 * S, t0 + 10 * S);
    let (when, _) = taken
        .iter()
        .find(|(_, a)| matches!(a, Action::Transition { to: Master, .. }))
        .expect("takes over");
    assert!(
        *when >= ms(3609) && *when <= ms(3620),
        "took over {when:?} after the last advert"
    );
}

#[test]
fn an_address_owner_is_master_at_once_and_drops_adverts() {
    let t0 = Instant::now();
    let mut i = instance(255);
    let a = i.startup(t0);
    assert_eq!(states(&a), vec![Master]);
    assert_eq!(sends(&a), vec![255]);
    assert_eq!(i.on_advert(t0, ip(PEER), &advert(254)), Err(Drop::Owner));
}

#[test]
fn master_advertises_every_interval() {
    let t0 = Instant::now();
    let mut i = instance(255);
    i.startup(t0);
    let sent: Vec<Duration> = run(&mut i, t0, t0 + ms(3500))
        .into_iter()
        .filter(|(_, a)| matches!(a, Action::SendAdvert { .. }))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(sent, vec![S, 2 * S, 3 * S]);
}

#[test]
fn master_yields_to_a_higher_priority_and_drops_the_addresses() {
    let t0 = Instant::now();
    let mut i = instance(255 - 155);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    assert_eq!(i.state(), Master);
    let r = i.on_advert(t0 + 5 * S, ip(PEER), &advert(200)).unwrap();
    assert_eq!(states(&r.actions), vec![Backup]);
    assert!(r.actions.contains(&Action::RemoveAddresses));
    assert_eq!(i.master_seen().unwrap().address, ip(PEER));
    // One last advert: the winner, if it was a master too, re-announces.
    assert_eq!(sends(&r.actions), vec![100]);
}

#[test]
fn on_equal_priority_the_higher_address_wins() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    // Lower address, same priority: we stay master.
    let r = i
        .on_advert(t0 + 5 * S, ip("10.0.0.0"), &advert(100))
        .unwrap();
    assert_eq!(i.state(), Master);
    assert!(states(&r.actions).is_empty());
    // Higher address: we yield.
    i.on_advert(t0 + 6 * S, ip(PEER), &advert(100)).unwrap();
    assert_eq!(i.state(), Backup);
}

#[test]
fn priority_zero_makes_the_backup_take_over_after_skew_time() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.startup(t0);
    i.on_advert(t0, ip(PEER), &advert(150)).unwrap();
    i.on_advert(t0 + ms(500), ip(PEER), &advert(0)).unwrap();
    assert!(i.on_timer(t0 + ms(500) + ms(600)).is_empty());
    let a = i.on_timer(t0 + ms(500) + ms(610));
    assert_eq!(
        states(&a),
        vec![Master],
        "skew time is 609.4 ms at priority 100"
    );
}

#[test]
fn a_higher_backup_preempts_a_lower_master_after_master_down_interval() {
    let t0 = Instant::now();
    let mut i = instance(200);
    i.startup(t0);
    // The lower master's adverts are discarded: the timer runs out.
    for n in 0..4 {
        i.on_advert(t0 + n * S, ip(PEER), &advert(100)).unwrap();
    }
    let mdi = i.master_down_interval();
    let a = i.on_timer(t0 + mdi);
    assert_eq!(states(&a), vec![Master]);
}

#[test]
fn without_preempt_a_lower_master_keeps_its_place() {
    let t0 = Instant::now();
    let mut p = params(200);
    p.preempt = false;
    let mut i = Instance::new(p);
    i.set_local_addr(Some(ip("10.0.0.1")));
    i.startup(t0);
    for n in 0..10 {
        i.on_advert(t0 + n * S, ip(PEER), &advert(100)).unwrap();
        assert!(states(&i.on_timer(t0 + n * S + ms(900))).is_empty());
    }
    assert_eq!(i.state(), Backup);
}

#[test]
fn preempt_delay_tolerates_a_lower_master_until_it_has_passed() {
    let t0 = Instant::now();
    let mut p = params(200);
    p.preempt_delay = 10 * S;
    let mut i = Instance::new(p);
    i.set_local_addr(Some(ip("10.0.0.1")));
    i.startup(t0);
    let mut took_over = None;
    for n in 0..20 {
        let now = t0 + n * S;
        if i.state() == Backup {
            i.on_advert(now, ip(PEER), &advert(100)).unwrap();
        }
        if !states(&i.on_timer(now + ms(999))).is_empty() && took_over.is_none() {
            took_over = Some(n);
        }
    }
    let n = took_over.expect("preempts in the end");
    assert!(
        (12..=14).contains(&n),
        "took over at {n} s, expected after the 10 s delay + MDI"
    );
}

#[test]
fn shutdown_of_a_master_sends_priority_zero_and_removes_the_addresses() {
    let t0 = Instant::now();
    let mut i = instance(255);
    i.startup(t0);
    let a = i.shutdown(t0 + S, false);
    assert_eq!(sends(&a), vec![0]);
    assert!(a.contains(&Action::RemoveAddresses));
    assert_eq!(states(&a), vec![Stop]);
    assert_eq!(a.last(), Some(&Action::Stopped));
}

#[test]
fn a_handover_keeps_the_addresses_until_the_new_master_is_heard() {
    let t0 = Instant::now();
    let mut i = instance(150);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    assert_eq!(i.state(), Master);
    let a = i.shutdown(t0 + 5 * S, true);
    assert_eq!(a, vec![Action::SendAdvert { priority: 0 }]);
    // No adverts while handing over: a backup without preempt must not be
    // held back by them.
    assert!(run(&mut i, t0 + 5 * S, t0 + 5 * S + ms(900)).is_empty());
    let r = i
        .on_advert(t0 + 5 * S + ms(700), ip(PEER), &advert(100))
        .unwrap();
    assert!(r.actions.contains(&Action::RemoveAddresses));
    assert_eq!(states(&r.actions), vec![Stop]);
    assert_eq!(r.actions.last(), Some(&Action::Stopped));
}

#[test]
fn a_fault_during_a_shutdown_handover_ends_the_stop() {
    let t0 = Instant::now();
    let mut i = instance(150);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    assert_eq!(i.state(), Master);
    i.shutdown(t0 + 5 * S, true);
    // The interface goes away while the backup has not been heard yet.
    let a = i.set_fault(t0 + 5 * S + ms(100), Some("interface eth0 is gone".into()));
    assert!(a.contains(&Action::RemoveAddresses), "{a:?}");
    assert_eq!(states(&a), vec![Fault, Stop]);
    assert_eq!(a.last(), Some(&Action::Stopped));
    assert_eq!(i.next_deadline(), None);
    // Its return does not restart a stopped instance.
    assert!(i.set_fault(t0 + 6 * S, None).is_empty());
}

#[test]
fn a_handover_with_no_backup_gives_up_the_addresses_at_its_deadline() {
    let t0 = Instant::now();
    let mut i = instance(255);
    i.startup(t0);
    i.shutdown(t0, true);
    let a = run(&mut i, t0, t0 + 5 * S);
    let (when, _) = a
        .iter()
        .find(|(_, a)| *a == Action::Stopped)
        .expect("stops");
    assert!(*when > 4 * S && *when < 5 * S, "{when:?}");
    assert!(a.iter().any(|(_, a)| *a == Action::RemoveAddresses));
}

#[test]
fn maintenance_hands_over_and_then_never_preempts() {
    let t0 = Instant::now();
    let mut i = instance(200);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    let a = i.set_maintenance(t0 + 5 * S, true);
    assert_eq!(sends(&a), vec![0]);
    assert_eq!(i.state(), Master, "keeps serving until the peer is heard");
    let r = i
        .on_advert(t0 + 5 * S + ms(600), ip(PEER), &advert(100))
        .unwrap();
    assert_eq!(states(&r.actions), vec![Backup]);
    assert_eq!(i.priority(), 1);
    // The peer keeps advertising: we never preempt it.
    for n in 6..20 {
        i.on_advert(t0 + n * S, ip(PEER), &advert(100)).unwrap();
        assert!(states(&i.on_timer(t0 + n * S + ms(990))).is_empty());
    }
    // Leaving maintenance restores the priority: preemption resumes.
    i.set_maintenance(t0 + 20 * S, false);
    assert_eq!(i.priority(), 200);
}

#[test]
fn maintenance_with_no_peer_keeps_serving_at_the_lowest_priority() {
    let t0 = Instant::now();
    let mut i = instance(200);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    i.set_maintenance(t0 + 5 * S, true);
    let a = run(&mut i, t0 + 5 * S, t0 + 11 * S);
    assert_eq!(i.state(), Master);
    assert!(
        a.iter()
            .any(|(_, a)| *a == Action::SendAdvert { priority: 1 })
    );
    assert!(!a.iter().any(|(_, a)| *a == Action::RemoveAddresses));
}

#[test]
fn a_fault_makes_the_master_resign_and_clearing_it_restarts_as_backup() {
    let t0 = Instant::now();
    let mut i = instance(255);
    i.startup(t0);
    let a = i.set_fault(t0 + S, Some("interface eth0 is down".into()));
    assert_eq!(sends(&a), vec![0]);
    assert!(a.contains(&Action::RemoveAddresses));
    assert_eq!(states(&a), vec![Fault]);
    assert_eq!(i.next_deadline(), None, "a faulty instance is silent");
    let a = i.set_fault(t0 + 2 * S, None);
    assert_eq!(
        states(&a),
        vec![Master],
        "an owner goes straight back to master"
    );
}

#[test]
fn a_fault_present_at_startup_keeps_the_instance_in_fault() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.set_fault(t0, Some("script chk failed".into()));
    assert_eq!(states(&i.startup(t0)), vec![Fault]);
    assert_eq!(states(&i.set_fault(t0 + S, None)), vec![Backup]);
}

#[test]
fn adopted_addresses_stay_through_backup_into_a_takeover() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.adopt_addresses();
    assert!(i.holds_addresses(), "kept from before the startup");
    assert_eq!(states(&i.startup(t0)), vec![Backup]);
    assert!(
        i.holds_addresses(),
        "a backup that heard no master keeps them"
    );
    // A resigning master (priority 0) is no master to follow.
    let a = i.on_advert(t0 + S, ip(PEER), &advert(0)).unwrap().actions;
    assert!(!a.contains(&Action::RemoveAddresses));
    let a = i.on_timer(t0 + S + i.skew_time());
    assert_eq!(states(&a), vec![Master]);
    assert!(i.holds_addresses());
}

#[test]
fn adopted_addresses_go_when_a_master_to_follow_is_heard() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.adopt_addresses();
    i.startup(t0);
    let a = i.on_advert(t0 + S, ip(PEER), &advert(150)).unwrap().actions;
    assert_eq!(a, vec![Action::RemoveAddresses]);
    assert!(!i.holds_addresses());
    assert_eq!(i.state(), Backup);
    // Only once: the next advert has nothing left to remove.
    let a = i
        .on_advert(t0 + 2 * S, ip(PEER), &advert(150))
        .unwrap()
        .actions;
    assert!(a.is_empty());
}

#[test]
fn adopted_addresses_stay_while_a_lower_master_is_preempted() {
    let t0 = Instant::now();
    let mut i = instance(150);
    i.adopt_addresses();
    i.startup(t0);
    // A lower master is discarded: this backup takes over at
    // Master_Down_Interval, and its addresses never leave.
    let a = i.on_advert(t0 + S, ip(PEER), &advert(100)).unwrap().actions;
    assert!(a.is_empty());
    assert!(i.holds_addresses());
    let down = i.master_down_interval();
    let a = i.on_timer(t0 + down);
    assert_eq!(states(&a), vec![Master]);
}

#[test]
fn adopted_addresses_go_with_a_fault_or_a_stop() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.adopt_addresses();
    i.startup(t0);
    i.set_fault(t0 + S, Some("interface eth0 is down".into()));
    assert!(!i.holds_addresses());
    let mut i = instance(100);
    i.adopt_addresses();
    i.startup(t0);
    assert_eq!(states(&i.shutdown(t0 + S, true)), vec![Stop]);
    assert!(!i.holds_addresses());
    let mut i = instance(100);
    i.set_fault(t0, Some("script chk failed".into()));
    i.adopt_addresses();
    assert_eq!(states(&i.startup(t0)), vec![Fault]);
    assert!(!i.holds_addresses());
}

#[test]
fn an_address_owner_adopts_nothing_it_does_not_own_already() {
    let t0 = Instant::now();
    let mut i = instance(255);
    i.adopt_addresses();
    assert!(
        !i.holds_addresses(),
        "an owner's addresses are the interface's own"
    );
    i.startup(t0);
    assert!(i.holds_addresses(), "as master");
}

#[test]
fn after_a_split_brain_the_surviving_master_re_announces() {
    let t0 = Instant::now();
    let mut i = instance(200);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    let r = i.on_advert(t0 + 5 * S, ip(PEER), &advert(100)).unwrap();
    assert_eq!(i.state(), Master);
    assert!(r.actions.contains(&Action::Announce));
    assert_eq!(
        sends(&r.actions),
        vec![200],
        "tells the other master at once"
    );
    // Rate-limited to one per advert interval.
    let r = i
        .on_advert(t0 + 5 * S + ms(100), ip(PEER), &advert(100))
        .unwrap();
    assert!(r.actions.is_empty());
}

#[test]
fn announcements_repeat_after_the_delay_and_then_refresh() {
    let t0 = Instant::now();
    let mut p = params(255);
    p.announce_refresh = 30 * S;
    let mut i = Instance::new(p);
    i.startup(t0);
    let when: Vec<Duration> = run(&mut i, t0, t0 + 70 * S)
        .into_iter()
        .filter(|(_, a)| *a == Action::Announce)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(when, vec![5 * S, 35 * S, 65 * S]);
}

#[test]
fn vrrpv2_drops_an_advert_with_another_interval_and_v3_learns_it() {
    let t0 = Instant::now();
    let mut p = params(100);
    p.version = Version::V2;
    let mut v2 = Instance::new(p);
    v2.startup(t0);
    let mut adv = advert(150);
    adv.version = Version::V2;
    adv.interval = 2 * S;
    assert_eq!(
        v2.on_advert(t0, ip(PEER), &adv).unwrap_err(),
        Drop::Interval
    );

    let mut v3 = instance(100);
    v3.startup(t0);
    let mut adv = advert(150);
    adv.interval = ms(100);
    let r = v3.on_advert(t0, ip(PEER), &adv).unwrap();
    assert_eq!(r.mismatches, vec![Mismatch::Interval]);
    assert_eq!(v3.master_adver_interval(), ms(100));
    assert!(v3.master_down_interval() < ms(400));
}

#[test]
fn an_advert_with_other_addresses_is_accepted_and_flagged() {
    let t0 = Instant::now();
    let mut i = instance(100);
    i.startup(t0);
    let mut adv = advert(150);
    adv.addresses = vec![ip("192.0.2.99")];
    let r = i.on_advert(t0, ip(PEER), &adv).unwrap();
    assert_eq!(r.mismatches, vec![Mismatch::Addresses]);
    assert_eq!(i.master_seen().unwrap().priority, 150);
}

#[test]
fn a_lowered_master_advertises_its_new_priority_at_once() {
    let t0 = Instant::now();
    let mut i = instance(200);
    i.startup(t0);
    i.on_timer(t0 + 4 * S);
    assert_eq!(sends(&i.set_tracked_priority(t0 + 5 * S, 120)), vec![120]);
    assert!(i.set_tracked_priority(t0 + 6 * S, 120).is_empty());
}

fn node_with_group() -> Node {
    let members = ["a", "b"]
        .iter()
        .map(|n| {
            Member::new(
                n,
                instance(100),
                vec![Tracker::new(
                    TrackKind::Script,
                    &format!("chk-{n}"),
                    None,
                    TrackValue::Ok,
                )],
            )
        })
        .collect();
    Node::new(members, &[("g".into(), vec!["a".into(), "b".into()])])
}

fn node_states(node: &Node) -> Vec<VrrpState> {
    node.members().map(|(_, m)| m.inst.state()).collect()
}

#[test]
fn a_sync_group_takes_over_together() {
    let t0 = Instant::now();
    let mut node = node_with_group();
    node.startup(t0);
    // b hears a master; a does not: a takes over, and b with it.
    let (a, b) = (node.id("a").unwrap(), node.id("b").unwrap());
    node.on_advert(t0 + S, b, ip(PEER), &advert(150)).unwrap();
    let outs = node.on_timer(t0 + ms(3610));
    assert_eq!(node_states(&node), vec![Master, Master]);
    assert!(outs.contains(&Out::Group {
        group: "g".into(),
        to: Master
    }));
    // A higher master for a: both fall back.
    node.on_advert(t0 + 5 * S, a, ip(PEER), &advert(200))
        .unwrap();
    assert_eq!(node_states(&node), vec![Backup, Backup]);
}

#[test]
fn a_fault_in_one_sync_group_member_faults_all_until_it_clears() {
    let t0 = Instant::now();
    let mut node = node_with_group();
    node.startup(t0);
    node.on_timer(t0 + ms(3610));
    assert_eq!(node_states(&node), vec![Master, Master]);
    let outs = node.set_track(t0 + 5 * S, TrackKind::Script, "chk-a", TrackValue::Failed);
    assert_eq!(node_states(&node), vec![Fault, Fault]);
    assert!(outs.contains(&Out::Group {
        group: "g".into(),
        to: Fault
    }));
    node.set_track(t0 + 6 * S, TrackKind::Script, "chk-a", TrackValue::Ok);
    assert_eq!(node_states(&node), vec![Backup, Backup]);
}

#[test]
fn a_weighted_tracker_lowers_the_priority_without_fault() {
    let t0 = Instant::now();
    let mut node = Node::new(
        vec![Member::new(
            "a",
            instance(150),
            vec![Tracker::new(
                TrackKind::Interface,
                "eth1",
                Some(-60),
                TrackValue::Ok,
            )],
        )],
        &[],
    );
    node.startup(t0);
    node.set_track(t0 + S, TrackKind::Interface, "eth1", TrackValue::Failed);
    let a = node.get(node.id("a").unwrap()).unwrap();
    assert_eq!(a.inst.priority(), 90);
    assert_eq!(a.inst.state(), Backup);
}
