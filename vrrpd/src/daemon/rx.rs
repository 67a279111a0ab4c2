//! Receiving adverts: RFC 5798 7.1's checks on what a socket brought
//! (IP header, TTL / hop limit 255, version, type, checksum, VRID), then
//! the state machine. Every drop is counted by reason, per instance when
//! the VRID names one, else as unclaimed.

use std::net::IpAddr;
use std::time::Instant;

use tracing::{debug, warn};

use super::{Daemon, wall_clock};
use crate::auth::Context;
use crate::input::PortKey;
use crate::node::{InstanceId, Out};
use crate::packet::{self, Advert, Drop};
use crate::socket::Datagram;

impl Daemon {
    pub(crate) fn count_unclaimed(&mut self, d: Drop) {
        *self
            .unclaimed_drops
            .entry(d.as_str().to_string())
            .or_default() += 1;
    }

    fn count_drop(&mut self, id: InstanceId, d: Drop) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        *b.counters.drops.entry(d.as_str().to_string()).or_default() += 1;
        debug!(instance = %b.cfg.name, "dropped an advert: {d}");
    }

    /// RFC 5798 7.1 receive checks, then the state machine.
    pub(crate) fn on_packet(
        &mut self,
        port: &PortKey,
        datagram: Datagram,
        now: Instant,
    ) -> Vec<Out> {
        let (src, dst, ttl, msg): (IpAddr, IpAddr, u8, Vec<u8>) = match datagram {
            Datagram::V4(bytes) => match packet::parse_ipv4(&bytes) {
                Ok((h, msg)) if h.protocol == packet::IPPROTO_VRRP => {
                    (h.src.into(), h.dst.into(), h.ttl, msg.to_vec())
                }
                Ok(_) => {
                    self.count_unclaimed(Drop::Protocol);
                    return Vec::new();
                }
                Err(d) => {
                    self.count_unclaimed(d);
                    return Vec::new();
                }
            },
            Datagram::V6 {
                src,
                dst,
                hop_limit,
                payload,
            } => (src.into(), dst.into(), hop_limit, payload),
        };
        let Some(&vrid) = msg.get(1) else {
            self.count_unclaimed(Drop::Truncated);
            return Vec::new();
        };
        let Some(i) = self
            .bindings
            .iter()
            .find(|(_, b)| b.port() == *port && b.cfg.vrid() == vrid)
            .map(|(id, _)| *id)
        else {
            // An advert from a peer without a virtual MAC reaches both the
            // interface and our macvlan on it; the macvlan's copy counts.
            let copy = self.bindings.values().any(|b| {
                (b.cfg.interface.as_str(), b.v6) == (port.0.as_str(), port.1)
                    && b.cfg.vrid() == vrid
            });
            if !copy {
                self.count_unclaimed(Drop::UnknownVrid);
            }
            return Vec::new();
        };
        if ttl != packet::VRRP_TTL {
            self.count_drop(i, Drop::Ttl);
            return Vec::new();
        }
        let Some(b) = self.bindings.get(&i) else {
            return Vec::new();
        };
        let auth = b.auth.clone();
        // With auth_hmac, a trailer may follow the message. The IPv4
        // checksum covers the message only, the IPv6 one the whole payload
        // (see `packet::with_trailer`).
        let (body, trailer) = if b.hmac.is_some() {
            packet::split_trailer(&msg, src.is_ipv6())
        } else {
            (&msg[..], None)
        };
        let summed = if src.is_ipv6() { &msg[..] } else { body };
        let adv = match Advert::decode_authenticated(summed, src, dst, &auth) {
            Ok(a) => a,
            Err(d) => {
                self.count_drop(i, d);
                return Vec::new();
            }
        };
        if let Some(h) = self.bindings.get_mut(&i).and_then(|b| b.hmac.as_mut()) {
            // The advert's own version: one other than ours is dropped
            // by the state machine whatever its MAC says.
            let ctx = Context {
                version: adv.version,
                vrid,
                src,
            };
            if let Err(d) = h.verify(&ctx, body, trailer, now, wall_clock()) {
                self.count_drop(i, d);
                return Vec::new();
            }
        }
        match self.node.on_advert(now, i, src, &adv) {
            Ok(r) => {
                let Some(rt) = self.bindings.get_mut(&i) else {
                    return r.outs;
                };
                rt.counters.adverts_received += 1;
                if adv.priority == 0 {
                    rt.counters.priority_zero_received += 1;
                }
                for m in r.mismatches {
                    let n = rt.counters.mismatches.entry(m.as_str().into()).or_default();
                    *n += 1;
                    // Log the first and then every hundredth: a peer with
                    // another config advertises every second.
                    if *n == 1 || *n % 100 == 0 {
                        warn!(
                            instance = %rt.cfg.name,
                            "advert from {src} has another {} than ours (seen {} times): {:?}",
                            m.as_str(), n, adv
                        );
                    }
                }
                r.outs
            }
            Err(d) => {
                self.count_drop(i, d);
                Vec::new()
            }
        }
    }
}
