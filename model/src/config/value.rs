//! Value types of the configuration file that are written as strings:
//! durations, addresses with optional ports, virtual IPs with a prefix.
//!
//! Each parses from its short string form; the ones that take options also
//! accept an inline table (`{ address = "...", label = "..." }`).

use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Parses "100ms", "2s", "1m30s", "1.5s", "0".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint = || {
        format!(
            "\"{text}\" is not a duration: write a number and a unit (ms, s, m, h), like \"1s\", \"100ms\" or \"1m30s\""
        )
    };
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(hint());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(hint)?;
        if num_len == 0 {
            return Err(hint());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| hint())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale_ms = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(hint()),
        };
        rest = &rest[unit_len..];
        let ms = number * scale_ms;
        if !ms.is_finite() || ms > 1e12 {
            return Err(format!("\"{text}\" is too long a duration"));
        }
        // Sub-millisecond precision is meaningless for every timer here;
        // round so "0.1s" is exactly 100 ms.
        total += Duration::from_micros((ms * 1000.0).round() as u64);
    }
    Ok(total)
}

/// Formats a duration the way the config file writes it: "1s", "100ms",
/// "1m30s", "1.5s".
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms % 1000 != 0 {
        return if ms > 1000 && ms % 100 == 0 {
            format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
        } else {
            format!("{ms}ms")
        };
    }
    let secs = ms / 1000;
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        _ => format!("{secs}s"),
    }
}

/// `#[serde(with = "duration")]` for `std::time::Duration` fields.
pub mod duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"1s\" or \"100ms\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "a duration needs a unit and quotes: write \"{v}s\" or \"{v}ms\", not {v}"
            )))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            self.visit_i64(v as i64)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "a duration needs a unit and quotes: write \"{v}s\", not {v}"
            )))
        }
    }

    /// `#[serde(with = "duration::option")]` for `Option<Duration>`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// An IP address with an optional port: "10.0.0.1", "10.0.0.1:8080",
/// "2001:db8::1", "[2001:db8::1]:8080".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl HostPort {
    /// The socket address, taking `default_port` when none was written.
    pub fn with_default_port(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(default_port))
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(HostPort { ip, port: None });
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(HostPort {
                ip: sa.ip(),
                port: Some(sa.port()),
            });
        }
        Err(format!(
            "\"{s}\" is not an address: write \"10.0.0.1\", \"10.0.0.1:80\" or \"[2001:db8::1]:80\""
        ))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (ip, None) => write!(f, "{ip}"),
            (ip, Some(port)) => write!(f, "{}", SocketAddr::new(ip, port)),
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor::<HostPort>::new(
            "an address such as \"10.0.0.1:80\"",
        ))
    }
}

/// An address with a prefix length: "192.0.2.10/24". Without a prefix, a
/// host route is meant (/32 or /128), as keepalived does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "\"{s}\" is not an address with a prefix: write \"192.0.2.10/24\" or \"2001:db8::10/64\""
            )
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(p) => {
                let n: u8 = p.parse().map_err(|_| bad())?;
                if n > max {
                    return Err(format!(
                        "\"{s}\": prefix length {n} is too long for an {} address (at most {max})",
                        if addr.is_ipv4() { "IPv4" } else { "IPv6" }
                    ));
                }
                n
            }
        };
        Ok(Cidr { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FromStrVisitor::<Cidr>::new(
            "an address with a prefix such as \"192.0.2.10/24\"",
        ))
    }
}

/// A virtual IP of a VRRP instance: `"192.0.2.10/24"` or
/// `{ address = "192.0.2.10/24", label = "eth0:web", interface = "eth1" }`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualIpFull {
    pub address: Cidr,
    /// IPv4 address label (`ip addr ... label eth0:web`); must start with
    /// the interface name, as the kernel requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Put the address on another interface than the instance's (the
    /// advert still goes out of the instance's interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

/// See [`VirtualIpFull`].
pub type VirtualIp = VirtualIpFull;

impl FromStr for VirtualIpFull {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(VirtualIpFull {
            address: s.parse()?,
            label: None,
            interface: None,
        })
    }
}

/// Deserializes a value written either as its short string form (parsed
/// with `FromStr`) or as an inline table (`Full`).
pub(crate) fn string_or_table<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String> + Deserialize<'de>,
{
    struct V<T>(&'static str, PhantomData<T>);

    impl<'de, T> Visitor<'de> for V<T>
    where
        T: FromStr<Err = String> + Deserialize<'de>,
    {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }

        fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }

    d.deserialize_any(V(expecting, PhantomData))
}

/// Deserializes a `Vec` whose items are each a string or an inline table.
macro_rules! string_or_table_vec {
    ($modname:ident, $ty:ty, $expecting:expr) => {
        pub mod $modname {
            use super::*;

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<$ty>, D::Error> {
                struct Item($ty);
                impl<'de> Deserialize<'de> for Item {
                    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                        string_or_table::<D, $ty>(d, $expecting).map(Item)
                    }
                }
                let items: Vec<Item> = Vec::deserialize(d)?;
                Ok(items.into_iter().map(|i| i.0).collect())
            }
        }
    };
}

string_or_table_vec!(
    virtual_ips,
    VirtualIpFull,
    "an address like \"192.0.2.10/24\" or a table { address = ..., label = ... }"
);
string_or_table_vec!(
    track_interfaces,
    crate::config::TrackInterface,
    "an interface name or a table { interface = ..., weight = ... }"
);
string_or_table_vec!(
    track_refs,
    crate::config::TrackRef,
    "a name or a table { name = ..., weight = ... }"
);

struct FromStrVisitor<T>(&'static str, PhantomData<T>);

impl<T> FromStrVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        FromStrVisitor(expecting, PhantomData)
    }
}

impl<T: FromStr<Err = String>> Visitor<'_> for FromStrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

/// The VRRP multicast groups (RFC 5798 5.1.1.2 and 5.1.2.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_written_form() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "1", "s", "1x", "1s2", "-1s", "1..2s", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn durations_format_back_to_what_parses() {
        for ms in [
            0u64, 10, 100, 999, 1000, 1500, 2000, 60_000, 90_000, 3_600_000, 40_950,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms} ms");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn host_port_takes_either_form() {
        let hp: HostPort = "10.0.0.1:80".parse().unwrap();
        assert_eq!(hp.port, Some(80));
        let hp: HostPort = "2001:db8::1".parse().unwrap();
        assert_eq!(hp.port, None);
        let hp: HostPort = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(hp.to_string(), "[2001:db8::1]:443");
        assert!("10.0.0.1:99999".parse::<HostPort>().is_err());
        assert!("host:80".parse::<HostPort>().is_err());
    }

    #[test]
    fn cidr_without_prefix_is_a_host_address() {
        let c: Cidr = "192.0.2.1".parse().unwrap();
        assert_eq!(c.prefix_len, 32);
        let c: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(c.prefix_len, 128);
        assert!("192.0.2.1/33".parse::<Cidr>().is_err());
        assert!("192.0.2.1/".parse::<Cidr>().is_err());
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| {
        format!("\"{s}\" is not an IP address: write \"192.0.2.1\" or \"2001:db8::1\"")
    })
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(
            "\"{s}\" is not an address with a port: write \"192.0.2.10:80\" or \"[2001:db8::10]:80\""
        )
    })
}

struct ParseVisitor<T>(&'static str, fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).map_err(E::custom)
    }
}

/// Deserializers for std address types with messages that show the value
/// and the accepted forms (std's say only "invalid IP address syntax").
macro_rules! parsed {
    ($modname:ident, $ty:ty, $parse:expr, $expecting:expr) => {
        pub mod $modname {
            use super::*;

            struct One($ty);
            impl<'de> Deserialize<'de> for One {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    d.deserialize_str(ParseVisitor($expecting, $parse)).map(One)
                }
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                One::deserialize(d).map(|o| o.0)
            }

            pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
                One::deserialize(d).map(|o| Some(o.0))
            }

            pub fn vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<$ty>, D::Error> {
                let items: Vec<One> = Vec::deserialize(d)?;
                Ok(items.into_iter().map(|o| o.0).collect())
            }
        }
    };
}

parsed!(ip, IpAddr, parse_ip, "an IP address such as \"192.0.2.1\"");
parsed!(
    socket_addr,
    SocketAddr,
    parse_socket_addr,
    "an address with a port such as \"192.0.2.10:80\""
);
