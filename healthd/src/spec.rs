//! What to probe for each real server, from the configuration, sans IO.
//!
//! A [`ProbeSpec`] is everything that makes a probe what it is: two real
//! servers (of two virtual servers) with equal specs share one probe and
//! its results; rise and fall stay per real server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tandem_model::config::{CheckType, RealServer, StatusMatch, VirtualServer};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Body {
    Any,
    Contains(String),
    Regex(String),
    /// Lower-case hex MD5 of the body, as keepalived's HTTP_GET digest.
    Md5(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Http {
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    /// Some for HTTPS: the server name to send (SNI) and whether to verify
    /// the certificate against the system's roots.
    pub tls: Option<Tls>,
    pub host: Option<String>,
    pub path: String,
    pub statuses: Vec<StatusMatch>,
    pub body: Body,
    pub keepalive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dns {
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
    /// Fully qualified ("example.com.").
    pub name: String,
    /// Upper case: "A", "SOA".
    pub qtype: String,
    /// Upper case: "NOERROR".
    pub rcode: String,
    pub answer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tls {
    pub sni: Option<String>,
    pub verify: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Icmp {
        target: IpAddr,
        source: Option<IpAddr>,
    },
    Tcp {
        target: SocketAddr,
        source: Option<IpAddr>,
        send: Option<String>,
        expect: Option<String>,
    },
    Udp {
        target: SocketAddr,
        source: Option<IpAddr>,
        send: String,
        /// None: up unless an ICMP port unreachable comes back.
        expect: Option<String>,
    },
    Dns(Dns),
    Smtp {
        target: SocketAddr,
        source: Option<IpAddr>,
        /// None: the local address as a literal.
        helo: Option<String>,
        /// Some: STARTTLS, with this SNI and verification.
        tls: Option<Tls>,
    },
    Http(Http),
    Script {
        argv: Vec<String>,
        user: Option<String>,
        /// The real server the script is about (in its environment).
        real_server: SocketAddr,
        virtual_server: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    pub kind: Kind,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Rise and fall of one real server's check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub rise: u32,
    pub fall: u32,
}

/// The default accepted statuses when none are configured: 2xx.
pub const DEFAULT_STATUSES: [StatusMatch; 1] = [StatusMatch::Range(200, 299)];

/// The probe of real server `rs` of `vs`, with per-server overrides; none
/// when the virtual server has no check.
pub fn probe_for(vs: &VirtualServer, rs: &RealServer) -> Option<(ProbeSpec, Thresholds)> {
    let c = vs.check.as_ref()?;
    let o = rs.check.clone().unwrap_or_default();
    let addr = rs.address.with_default_port(vs.port());
    let ip = o.address.or(c.address).unwrap_or(addr.ip());
    let port = o.port.or(c.port).map_or(addr.port(), |p| p as u16);
    let target = SocketAddr::new(ip, port);
    let source = o.source.or(c.source);
    let kind = match c.kind {
        CheckType::Icmp => Kind::Icmp { target: ip, source },
        CheckType::Tcp => Kind::Tcp {
            target,
            source,
            send: c.send.clone(),
            expect: c.expect.clone(),
        },
        CheckType::Udp => Kind::Udp {
            target,
            source,
            send: c.send.clone().unwrap_or_default(),
            expect: c.expect.clone(),
        },
        CheckType::Dns => Kind::Dns(Dns {
            target,
            source,
            name: {
                let n = c.query_name.clone().unwrap_or_else(|| ".".into());
                if n.ends_with('.') { n } else { format!("{n}.") }
            },
            qtype: c
                .query_type
                .as_deref()
                .unwrap_or("SOA")
                .to_ascii_uppercase(),
            rcode: c
                .expect_rcode
                .as_deref()
                .unwrap_or("NOERROR")
                .to_ascii_uppercase(),
            answer: c.expect_answer.clone(),
        }),
        CheckType::Smtp => Kind::Smtp {
            target,
            source,
            helo: c.helo_name.clone(),
            tls: c.starttls.then(|| Tls {
                sni: c.sni.clone(),
                verify: c.tls_verify.unwrap_or(true),
            }),
        },
        CheckType::Http | CheckType::Https => Kind::Http(Http {
            target,
            source,
            tls: (c.kind == CheckType::Https).then(|| Tls {
                sni: c.sni.clone().or_else(|| c.host.clone()),
                verify: c.tls_verify.unwrap_or(true),
            }),
            host: c.host.clone(),
            path: c.path.clone().unwrap_or_else(|| "/".into()),
            statuses: if c.expect_status.is_empty() {
                DEFAULT_STATUSES.to_vec()
            } else {
                c.expect_status.clone()
            },
            body: match (&c.body_contains, &c.body_regex, &c.body_md5) {
                (Some(s), _, _) => Body::Contains(s.clone()),
                (_, Some(r), _) => Body::Regex(r.clone()),
                (_, _, Some(m)) => Body::Md5(m.to_ascii_lowercase()),
                _ => Body::Any,
            },
            keepalive: c.keepalive,
        }),
        CheckType::Script => Kind::Script {
            argv: c.command.clone(),
            user: c.user.clone(),
            real_server: addr,
            virtual_server: vs.name.clone(),
        },
    };
    let spec = ProbeSpec {
        kind,
        interval: o.interval.unwrap_or(c.interval),
        timeout: o.timeout.unwrap_or(c.timeout),
    };
    let th = Thresholds {
        rise: o.rise.unwrap_or(c.rise) as u32,
        fall: o.fall.unwrap_or(c.fall) as u32,
    };
    Some((spec, th))
}

impl ProbeSpec {
    /// "http GET /healthz every 2s" for status pages.
    pub fn describe(&self) -> String {
        let every = tandem_model::config::format_duration(self.interval);
        match &self.kind {
            Kind::Icmp { .. } => format!("icmp echo every {every}"),
            Kind::Tcp { send: Some(_), .. } => format!("tcp connect and exchange every {every}"),
            Kind::Tcp { .. } => format!("tcp connect every {every}"),
            Kind::Udp {
                expect: Some(_), ..
            } => format!("udp exchange every {every}"),
            Kind::Udp { .. } => format!("udp datagram (no port unreachable) every {every}"),
            Kind::Dns(d) => format!("dns {} {} every {every}", d.qtype, d.name),
            Kind::Smtp { tls: Some(_), .. } => format!("smtp EHLO and STARTTLS every {every}"),
            Kind::Smtp { .. } => format!("smtp EHLO every {every}"),
            Kind::Http(h) => format!(
                "{} GET {} every {every}",
                if h.tls.is_some() { "https" } else { "http" },
                h.path
            ),
            Kind::Script { argv, .. } => format!("script {} every {every}", argv[0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_model::config;

    fn cfg(text: &str) -> config::Config {
        config::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn identical_checks_of_one_server_in_two_services_are_one_probe() {
        let c = cfg(r#"
[[virtual_server]]
name = "a"
address = "192.0.2.10:80"
[virtual_server.check]
type = "http"
path = "/healthz"
port = 8080
[[virtual_server.real_server]]
address = "10.0.0.11"

[[virtual_server]]
name = "b"
address = "192.0.2.11:80"
[virtual_server.check]
type = "http"
path = "/healthz"
port = 8080
rise = 5
[[virtual_server.real_server]]
address = "10.0.0.11"
"#);
        let (a, ta) =
            probe_for(&c.virtual_servers[0], &c.virtual_servers[0].real_servers[0]).unwrap();
        let (b, tb) =
            probe_for(&c.virtual_servers[1], &c.virtual_servers[1].real_servers[0]).unwrap();
        assert_eq!(a, b, "one probe for both");
        assert_ne!(ta, tb, "rise stays per real server");
    }

    #[test]
    fn a_real_server_overrides_the_check_s_timing_and_port() {
        let c = cfg(r#"
[[virtual_server]]
name = "a"
address = "192.0.2.10:443"
[virtual_server.check]
type = "https"
host = "www.example.com"
tls_verify = false
[[virtual_server.real_server]]
address = "10.0.0.11"
check = { interval = "5s", timeout = "2s", port = 8443, fall = 1 }
"#);
        let (p, t) =
            probe_for(&c.virtual_servers[0], &c.virtual_servers[0].real_servers[0]).unwrap();
        assert_eq!(p.interval, Duration::from_secs(5));
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert_eq!(t, Thresholds { rise: 2, fall: 1 });
        let Kind::Http(h) = p.kind else { panic!() };
        assert_eq!(h.target, "10.0.0.11:8443".parse().unwrap());
        assert_eq!(
            h.tls,
            Some(Tls {
                sni: Some("www.example.com".into()),
                verify: false
            })
        );
        assert_eq!(h.statuses, DEFAULT_STATUSES.to_vec());
    }
}
