//! The table tandem.toml asks for: its `[[virtual_server]]` tables as
//! IPVS services, every real server included. Pure: filtering real
//! servers by health happens before (the caller passes the virtual
//! servers it wants, with the real servers it wants).

use std::net::SocketAddr;

use tandem_model::config::{self, Config, RealServer, VirtualServer};

use crate::types::{
    Dest, DestSettings, Family, Forwarding, Netmask, Protocol, SchedFlags, Service, ServiceKey,
    ServiceSettings, Table, Tunnel, TunnelChecksum, TunnelType,
};

/// A value the configuration model allows but IPVS cannot hold. The
/// model's validation rejects all of these first; this is the
/// conversion's own guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("virtual server \"{name}\": {message}")]
pub struct DesiredError {
    pub name: String,
    pub message: String,
}

/// Every virtual server of the configuration.
pub fn table(config: &Config) -> Result<Table, DesiredError> {
    let services = config
        .virtual_servers
        .iter()
        .map(service)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table::new(services))
}

/// The service a virtual server names (no destinations).
pub fn key(vs: &VirtualServer) -> Result<ServiceKey, DesiredError> {
    let err = |message: String| DesiredError {
        name: vs.name.clone(),
        message,
    };
    match (vs.address, vs.fwmark) {
        (Some(addr), None) => Ok(ServiceKey::Addr {
            protocol: match vs.protocol {
                config::Protocol::Tcp => Protocol::Tcp,
                config::Protocol::Udp => Protocol::Udp,
                config::Protocol::Sctp => Protocol::Sctp,
            },
            addr,
        }),
        (None, Some(mark)) => Ok(ServiceKey::Fwmark {
            family: family(vs.family()),
            mark: u32::try_from(mark)
                .ok()
                .filter(|m| *m != 0)
                .ok_or_else(|| err(format!("fwmark {mark} is out of range")))?,
        }),
        _ => Err(err("needs an address or a fwmark, not both".into())),
    }
}

fn family(f: config::Family) -> Family {
    match f {
        config::Family::Ipv4 => Family::Ipv4,
        config::Family::Ipv6 => Family::Ipv6,
    }
}

fn forwarding(f: config::Forwarding) -> Forwarding {
    match f {
        config::Forwarding::Nat => Forwarding::Masq,
        config::Forwarding::Dr => Forwarding::Route,
        config::Forwarding::Tun => Forwarding::Tunnel,
    }
}

fn tunnel(t: &config::Tunnel) -> Tunnel {
    Tunnel {
        kind: match t.kind {
            config::TunnelType::Ipip => TunnelType::Ipip,
            config::TunnelType::Gue => TunnelType::Gue,
            config::TunnelType::Gre => TunnelType::Gre,
        },
        port: t
            .port
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_default(),
        checksum: match t.checksum.as_deref() {
            Some("checksum") => TunnelChecksum::Checksum,
            Some("remote") => TunnelChecksum::Remote,
            _ => TunnelChecksum::None,
        },
    }
}

/// The service's settings from a virtual server.
pub fn settings(vs: &VirtualServer) -> Result<ServiceSettings, DesiredError> {
    let err = |message: String| DesiredError {
        name: vs.name.clone(),
        message,
    };
    let fam = family(vs.family());
    let mut flags = SchedFlags::default();
    for f in &vs.scheduler_flags {
        match f.as_str() {
            "fallback" => flags.flag1 = true,
            "port" => flags.flag2 = true,
            other => return Err(err(format!("unknown scheduler flag \"{other}\""))),
        }
    }
    let persistence = match vs.persistence.as_secs() {
        0 => None,
        s => Some(u32::try_from(s).map_err(|_| err("persistence is too long".into()))?),
    };
    let netmask = match vs.persistence_prefix {
        Some(p) => Netmask::from_prefix(
            fam,
            u8::try_from(p).map_err(|_| err(format!("prefix {p} is out of range")))?,
        ),
        None => Netmask::full(fam),
    };
    Ok(ServiceSettings {
        scheduler: vs.scheduler.clone(),
        sched_flags: flags,
        one_packet: vs.one_packet,
        persistence,
        netmask,
        pe: None,
    })
}

/// One real server of `vs` as a destination: without a port it takes
/// the service's; without its own forwarding or tunnel, the virtual
/// server's.
pub fn dest(vs: &VirtualServer, rs: &RealServer) -> Result<Dest, DesiredError> {
    let err = |message: String| DesiredError {
        name: vs.name.clone(),
        message,
    };
    let addr: SocketAddr = rs.address.with_default_port(vs.port());
    let fwd = forwarding(rs.forwarding.unwrap_or(vs.forwarding));
    let u32_of = |what: &str, v: i64| {
        u32::try_from(v).map_err(|_| err(format!("real server {addr}: {what} {v} is out of range")))
    };
    let tun = match (fwd, rs.tunnel.as_ref().or(vs.tunnel.as_ref())) {
        (Forwarding::Tunnel, Some(t)) => tunnel(t),
        _ => Tunnel::default(),
    };
    Ok(Dest::new(
        addr,
        DestSettings {
            forwarding: fwd,
            weight: u32_of("weight", rs.weight)?,
            upper_threshold: u32_of("upper_threshold", rs.upper_threshold)?,
            lower_threshold: u32_of("lower_threshold", rs.lower_threshold)?,
            tunnel: tun,
        },
    ))
}

/// A virtual server with all of its real servers.
pub fn service(vs: &VirtualServer) -> Result<Service, DesiredError> {
    let mut svc = Service::new(key(vs)?, settings(vs)?);
    svc.dests = vs
        .real_servers
        .iter()
        .map(|rs| dest(vs, rs))
        .collect::<Result<_, _>>()?;
    svc.sort();
    Ok(svc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn config(text: &str) -> Config {
        tandem_model::config::parse(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_real_server_without_a_port_takes_the_services() {
        let c = config(
            r#"
[[virtual_server]]
name = "web"
address = "192.0.2.10:80"
scheduler = "wrr"
forwarding = "dr"
[[virtual_server.real_server]]
address = "10.0.0.11"
weight = 3
[[virtual_server.real_server]]
address = "10.0.0.12"
forwarding = "tun"
upper_threshold = 10
lower_threshold = 5
"#,
        );
        let t = table(&c).unwrap();
        let s = &t.services[0];
        assert_eq!(s.key, ServiceKey::tcp("192.0.2.10:80".parse().unwrap()));
        assert_eq!(s.settings.scheduler, "wrr");
        assert_eq!(s.dests[0].addr, "10.0.0.11:80".parse().unwrap());
        assert_eq!(s.dests[0].settings, DestSettings::new(Forwarding::Route, 3));
        let d = s.dests[1].settings;
        assert_eq!(d.forwarding, Forwarding::Tunnel);
        assert_eq!((d.upper_threshold, d.lower_threshold), (10, 5));
    }

    #[test]
    fn fwmark_persistence_and_scheduler_flags_carry_over() {
        let c = config(
            r#"
[[virtual_server]]
name = "mail"
fwmark = 7
family = "ipv6"
scheduler = "sh"
scheduler_flags = ["fallback", "port"]
persistence = "5m"
persistence_prefix = 64
forwarding = "nat"
[[virtual_server.real_server]]
address = "2001:db8::31"
"#,
        );
        let s = &table(&c).unwrap().services[0];
        assert_eq!(
            s.key,
            ServiceKey::Fwmark {
                family: Family::Ipv6,
                mark: 7
            }
        );
        assert_eq!(s.settings.persistence, Some(300));
        assert_eq!(s.settings.netmask, Netmask::V6(64));
        assert!(s.settings.sched_flags.flag1 && s.settings.sched_flags.flag2);
        // A firewall-mark service's real servers have port 0.
        assert_eq!(s.dests[0].addr, "[2001:db8::31]:0".parse().unwrap());
        assert_eq!(s.dests[0].settings.forwarding, Forwarding::Masq);
    }

    #[test]
    fn the_virtual_servers_tunnel_applies_to_tunnel_real_servers() {
        let c = config(
            r#"
[[virtual_server]]
name = "dns"
address = "192.0.2.10:53"
protocol = "udp"
scheduler = "rr"
forwarding = "tun"
one_packet = true
persistence = "30s"
persistence_prefix = 24
tunnel = { type = "gue", port = 6080, checksum = "remote" }
[[virtual_server.real_server]]
address = "10.0.1.21"
[[virtual_server.real_server]]
address = "10.0.1.22"
tunnel = { type = "gre", checksum = "checksum" }
"#,
        );
        let s = &table(&c).unwrap().services[0];
        assert!(s.settings.one_packet);
        assert_eq!(
            s.settings.netmask,
            Netmask::V4(Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!(
            s.dests[0].settings.tunnel,
            Tunnel {
                kind: TunnelType::Gue,
                port: 6080,
                checksum: TunnelChecksum::Remote
            }
        );
        assert_eq!(s.dests[1].settings.tunnel.kind, TunnelType::Gre);
        assert_eq!(
            s.dests[1].settings.tunnel.checksum,
            TunnelChecksum::Checksum
        );
    }

    #[test]
    fn the_shipped_example_converts() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/tandem.example.toml"
        );
        let c = tandem_model::config::load(std::path::Path::new(path)).unwrap();
        let t = table(&c).unwrap();
        assert_eq!(t.services.len(), c.virtual_servers.len());
    }
}
