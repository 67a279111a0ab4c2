//! Properties of the reconciler over random tables, checked against the
//! in-memory dataplane (which refuses what the kernel refuses: adding
//! what exists, touching what does not).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use ipvsctl::memory::Memory;
use ipvsctl::reconcile::{Dataplane, Op, Options, apply_to, plan, reconcile};
use ipvsctl::types::{
    Dest, DestSettings, Family, Forwarding, Netmask, Protocol, SchedFlags, Service, ServiceKey,
    ServiceSettings, Table, Tunnel, TunnelChecksum, TunnelType,
};

/// A small pool of services, so random tables overlap.
fn key_pool() -> Vec<ServiceKey> {
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    vec![
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: SocketAddr::new(v4, 80),
        },
        ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: SocketAddr::new(v4, 80),
        },
        ServiceKey::Addr {
            protocol: Protocol::Sctp,
            addr: SocketAddr::new(v4, 9),
        },
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: SocketAddr::new(v6, 443),
        },
        ServiceKey::Fwmark {
            family: Family::Ipv4,
            mark: 7,
        },
        ServiceKey::Fwmark {
            family: Family::Ipv6,
            mark: 7,
        },
    ]
}

fn service_settings(family: Family) -> impl Strategy<Value = ServiceSettings> {
    (
        prop::sample::select(vec!["rr", "wrr", "wlc", "sh", "mh"]),
        any::<(bool, bool, bool)>(),
        any::<bool>(),
        prop::option::of(1u32..1000),
        0u8..=32,
    )
        .prop_map(
            move |(sched, (f1, f2, f3), one_packet, persistence, prefix)| ServiceSettings {
                scheduler: sched.to_string(),
                sched_flags: SchedFlags {
                    flag1: f1,
                    flag2: f2,
                    flag3: f3,
                },
                one_packet,
                persistence,
                netmask: match family {
                    Family::Ipv4 => Netmask::from_prefix(family, prefix),
                    Family::Ipv6 => Netmask::V6(prefix.max(1) * 4),
                },
                pe: None,
            },
        )
}

fn dest_settings() -> impl Strategy<Value = DestSettings> {
    (
        prop::sample::select(vec![
            Forwarding::Masq,
            Forwarding::Route,
            Forwarding::Tunnel,
        ]),
        0u32..4,
        prop::option::of((1u32..50, 0u32..50)),
        prop::sample::select(vec![TunnelType::Ipip, TunnelType::Gue, TunnelType::Gre]),
        prop::sample::select(vec![
            TunnelChecksum::None,
            TunnelChecksum::Checksum,
            TunnelChecksum::Remote,
        ]),
    )
        .prop_map(|(forwarding, weight, thresholds, kind, checksum)| {
            let (upper, lower) = thresholds.map_or((0, 0), |(u, l)| (u + l, l));
            DestSettings {
                forwarding,
                weight,
                upper_threshold: upper,
                lower_threshold: lower,
                tunnel: if forwarding == Forwarding::Tunnel {
                    Tunnel {
                        kind,
                        port: if kind == TunnelType::Gue { 6080 } else { 0 },
                        checksum,
                    }
                } else {
                    Tunnel::default()
                },
            }
        })
}

fn service(key: ServiceKey) -> impl Strategy<Value = Service> {
    let family = key.family();
    (
        service_settings(family),
        prop::collection::btree_map(0u8..6, dest_settings(), 0..5),
    )
        .prop_map(move |(settings, dests)| {
            let mut s = Service::new(key, settings);
            s.dests = dests
                .into_iter()
                .map(|(i, d)| {
                    let ip = match family {
                        Family::Ipv4 => IpAddr::V4(Ipv4Addr::new(10, 0, 1, i)),
                        Family::Ipv6 => {
                            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, u16::from(i)))
                        }
                    };
                    Dest::new(SocketAddr::new(ip, key.port()), d)
                })
                .collect();
            s
        })
}

fn table() -> impl Strategy<Value = Table> {
    let services: Vec<_> = key_pool()
        .into_iter()
        .map(|k| prop::option::weighted(0.6, service(k)))
        .collect();
    services.prop_map(|v| Table::new(v.into_iter().flatten().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Applying the plan gives exactly the desired services; the others
    /// stay unless pruned; the kernel's rules are never broken on the way;
    /// and planning again gives nothing.
    #[test]
    fn applying_the_plan_reaches_the_desired_table_and_a_second_plan_is_empty(
        desired in table(),
        current in table(),
        prune in any::<bool>(),
    ) {
        let options = Options { prune, ..Options::default() };
        let mut dp = Memory::new(&current);
        let ops = reconcile(&mut dp, &desired, options.clone()).expect("no operation refused");
        let after = dp.dump().unwrap();
        for svc in &desired.services {
            prop_assert_eq!(after.service(&svc.key), Some(svc));
        }
        for svc in &current.services {
            if desired.service(&svc.key).is_none() {
                if prune {
                    prop_assert!(after.service(&svc.key).is_none());
                } else {
                    prop_assert_eq!(after.service(&svc.key), Some(svc));
                }
            }
        }
        prop_assert!(plan(&desired, &after, options).is_empty());
        // Nothing touches a destination of a service being deleted.
        for op in &ops {
            if op.dest().is_some() {
                let deleted = Op::DelService { key: *op.service() };
                prop_assert!(!ops.contains(&deleted));
            }
        }
        prop_assert_eq!(dp.ops_applied, ops.len());
    }

    /// A service outside the managed scope is never touched, even with
    /// prune: no operation names it and it is the same afterwards. The
    /// desired services are reached and the managed ones it lacks go
    /// when pruning.
    #[test]
    fn a_service_outside_the_managed_scope_is_never_touched_even_with_prune(
        desired in table(),
        current in table(),
        managed in prop::sample::subsequence(key_pool(), 0..=6),
        prune in any::<bool>(),
    ) {
        let managed: BTreeSet<ServiceKey> = managed.into_iter().collect();
        let options = Options { prune, managed: Some(managed.clone()) };
        let mut dp = Memory::new(&current);
        let ops = reconcile(&mut dp, &desired, options.clone()).expect("no operation refused");
        let after = dp.dump().unwrap();
        let owned = |k: &ServiceKey| managed.contains(k) || desired.service(k).is_some();
        for op in &ops {
            prop_assert!(owned(op.service()), "{} is outside the scope", op);
        }
        for svc in &current.services {
            if !owned(&svc.key) {
                prop_assert_eq!(after.service(&svc.key), Some(svc));
            } else if desired.service(&svc.key).is_none() {
                prop_assert_eq!(after.service(&svc.key).is_none(), prune);
            }
        }
        for svc in &desired.services {
            prop_assert_eq!(after.service(&svc.key), Some(svc));
        }
        prop_assert!(plan(&desired, &after, options).is_empty());
    }

    /// With the desired services inside the scope, a scope is the same as
    /// planning against the current table cut down to it.
    #[test]
    fn a_managed_scope_plans_as_the_table_cut_down_to_it(
        desired in table(),
        current in table(),
        extra in prop::sample::subsequence(key_pool(), 0..=6),
        prune in any::<bool>(),
    ) {
        let managed: BTreeSet<ServiceKey> = desired
            .services
            .iter()
            .map(|s| s.key)
            .chain(extra)
            .collect();
        let cut = Table::new(
            current
                .services
                .iter()
                .filter(|s| managed.contains(&s.key))
                .cloned()
                .collect(),
        );
        let scoped = plan(&desired, &current, Options { prune, managed: Some(managed) });
        prop_assert_eq!(scoped, plan(&desired, &cut, Options { prune, managed: None }));
    }

    /// Applying a plan to the table as last read gives what the
    /// dataplane lists afterwards, counters included: a daemon that keeps
    /// the table need not read it back after each change.
    #[test]
    fn the_table_a_plan_leaves_is_known_without_reading_it_back(
        desired in table(),
        current in table(),
        managed in prop::sample::subsequence(key_pool(), 0..=6),
        prune in any::<bool>(),
        conns in 1u32..1000,
    ) {
        let mut current = current;
        for s in &mut current.services {
            for d in &mut s.dests {
                d.counters.active_conns = conns;
            }
        }
        let options = Options { prune, managed: Some(managed.into_iter().collect()) };
        let ops = plan(&desired, &current, options);
        let mut dp = Memory::new(&current);
        dp.apply(&ops).expect("no operation refused");
        let mut known = current.clone();
        apply_to(&mut known, &ops);
        prop_assert_eq!(known, dp.dump().unwrap());
    }

    /// A table against itself is no work at all.
    #[test]
    fn a_table_in_sync_plans_nothing(t in table(), prune in any::<bool>()) {
        let ops = plan(&t, &t, Options { prune, ..Options::default() });
        prop_assert!(ops.is_empty());
    }

    /// Changing one real server's weight is exactly one operation, an
    /// edit of that real server.
    #[test]
    fn a_one_weight_change_is_exactly_one_edit(
        t in table(),
        pick in any::<prop::sample::Index>(),
        bump in 1u32..100,
    ) {
        let dests: Vec<(usize, usize)> = t
            .services
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (0..s.dests.len()).map(move |j| (i, j)))
            .collect();
        prop_assume!(!dests.is_empty());
        let (i, j) = dests[pick.index(dests.len())];
        let mut desired = t.clone();
        desired.services[i].dests[j].settings.weight += bump;
        let ops = plan(&desired, &t, Options::default());
        prop_assert_eq!(ops.len(), 1);
        let is_edit_of_that_dest = matches!(
            &ops[0],
            Op::EditDest { service, addr, settings }
                if *service == t.services[i].key
                    && *addr == t.services[i].dests[j].addr
                    && settings.weight == t.services[i].dests[j].settings.weight + bump
        );
        prop_assert!(is_edit_of_that_dest, "{:?}", ops);
    }
}
