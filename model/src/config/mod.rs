//! The appliance's one configuration file, `/etc/tandem/tandem.toml`.
//!
//! Every daemon reads the whole file (so cross references are checked the
//! same way everywhere) and acts on its own sections. [`load`] parses,
//! deserializes and validates; any problem comes back as [`ConfigError`]
//! with every finding located at `file:line:column`.
//!
//! Each key is documented in the shipped example, `packaging/tandem.toml`,
//! and in the README.

pub mod cluster;
mod diagnostic;
mod validate;
pub mod value;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cluster::Cluster;
pub use diagnostic::{Diagnostic, Diagnostics};
pub use value::{Cidr, HostPort, VirtualIp, format_duration, parse_duration};

use value::duration;

/// Where the file lives on an installed director.
pub const DEFAULT_PATH: &str = "/etc/tandem/tandem.toml";
/// Where the daemons put their control sockets by default.
pub const DEFAULT_SOCKET_DIR: &str = "/run/tandem";
/// Where daemons keep state that must outlive a restart.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tandem";

/// Schedulers the Linux kernel ships (net/netfilter/ipvs/ip_vs_*.c).
pub const SCHEDULERS: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "sh", "sed", "nq", "dh", "lblc", "lblcr", "fo", "ovf", "mh", "twos",
];

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node: Node,
    /// The directors of a cluster file (see [`cluster`]); `None` for a
    /// file of one director.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Cluster>,
    /// The node this configuration was resolved for, in a cluster file.
    #[serde(skip)]
    pub this_node: Option<String>,
    #[serde(
        default,
        rename = "vrrp_instance",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vrrp_instances: Vec<VrrpInstance>,
    #[serde(
        default,
        rename = "vrrp_sync_group",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vrrp_sync_groups: Vec<SyncGroup>,
    #[serde(
        default,
        rename = "track_script",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub track_scripts: Vec<TrackScript>,
    #[serde(
        default,
        rename = "virtual_server",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub virtual_servers: Vec<VirtualServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_sync: Option<ConnectionSync>,
    #[serde(default)]
    pub webui: WebUi,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// This director's name in status, events and the peers' view; the
    /// host name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Directory of the daemons' control sockets.
    #[serde(default = "default_socket_dir")]
    pub socket_dir: PathBuf,
    /// Directory of state kept across restarts (operator drains).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How long vrrpd keeps the last quorum healthd published when healthd
    /// stops answering (a restart), before it counts every tracked virtual
    /// server as failed.
    #[serde(default = "default_healthd_grace", with = "duration")]
    pub healthd_grace: Duration,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            name: None,
            socket_dir: default_socket_dir(),
            state_dir: default_state_dir(),
            healthd_grace: default_healthd_grace(),
        }
    }
}

fn default_socket_dir() -> PathBuf {
    DEFAULT_SOCKET_DIR.into()
}

fn default_state_dir() -> PathBuf {
    DEFAULT_STATE_DIR.into()
}

fn default_healthd_grace() -> Duration {
    Duration::from_secs(10)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstance {
    pub name: String,
    /// Interface the adverts go out of and (by default) the VIPs go on.
    pub interface: String,
    /// Virtual router id, 1-255; with the address family and the interface
    /// it names the virtual router.
    pub vrid: i64,
    /// 1-254 (100 when absent); 255 only with `address_owner = true`,
    /// which is also its default there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// This node owns the virtual IPs as real addresses (RFC 5798 priority
    /// 255): it is master whenever it is up.
    #[serde(default)]
    pub address_owner: bool,
    /// 3 (RFC 5798) or 2 (RFC 3768, IPv4 only) for peers that speak v2.
    #[serde(default = "default_version")]
    pub version: i64,
    #[serde(default = "default_advert_interval", with = "duration")]
    pub advert_interval: Duration,
    #[serde(default = "yes")]
    pub preempt: bool,
    #[serde(default, with = "duration")]
    pub preempt_delay: Duration,
    /// RFC 5798 Accept_Mode: a non-owner master accepts packets addressed
    /// to the VIPs. A load balancer needs them, hence the default.
    #[serde(default = "yes")]
    pub accept: bool,
    #[serde(deserialize_with = "value::virtual_ips::deserialize")]
    pub virtual_ips: Vec<VirtualIp>,
    /// Source of unicast adverts; the interface's first address of the
    /// instance's family when absent.
    #[serde(
        default,
        deserialize_with = "value::ip::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub unicast_src: Option<IpAddr>,
    /// Peers to send adverts to by unicast; empty means multicast.
    #[serde(
        default,
        deserialize_with = "value::ip::vec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub unicast_peers: Vec<IpAddr>,
    #[serde(
        default,
        deserialize_with = "value::track_interfaces::deserialize",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub track_interfaces: Vec<TrackInterface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_files: Vec<TrackFile>,
    #[serde(
        default,
        deserialize_with = "value::track_refs::deserialize",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub track_scripts: Vec<TrackRef>,
    #[serde(
        default,
        deserialize_with = "value::track_refs::deserialize",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub track_virtual_servers: Vec<TrackRef>,
    /// Program run on every transition with keepalived's arguments:
    /// `INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<PathBuf>,
    /// Gratuitous ARPs / unsolicited NAs per VIP in each burst on takeover.
    #[serde(default = "default_announce_count")]
    pub announce_count: i64,
    /// Spacing between the packets of one burst.
    #[serde(default, with = "duration")]
    pub announce_interval: Duration,
    /// A second burst this long after takeover; "0s" for none.
    #[serde(default = "default_announce_repeat", with = "duration")]
    pub announce_repeat_after: Duration,
    /// While master, announce again this often; "0s" for never.
    #[serde(default, with = "duration")]
    pub announce_refresh: Duration,
    /// VRRPv2 simple password (RFC 2338 5.3.6, keepalived's `auth_type
    /// PASS`), 1-8 bytes. It travels in clear text in every advert: it keeps
    /// virtual routers that share a segment and a VRID apart, it does not
    /// stop an attacker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_pass: Option<String>,
    /// Authenticated adverts: an HMAC-SHA256 trailer with a sequence
    /// number against replay, on the wire as keepalived 2.4.3's
    /// `auth_hmac` (draft-cassen-vrrp-auth-hmac).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_hmac: Option<AuthHmac>,
    /// Use the RFC virtual MAC 00:00:5e:00:01:VRID (IPv6: 00:00:5e:00:02:VRID)
    /// on a macvlan interface instead of the interface's own MAC.
    #[serde(default)]
    pub use_vmac: bool,
    /// Name of that macvlan interface; `vrrp.<vrid>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmac_interface: Option<String>,
}

/// `[vrrp_instance.auth_hmac]`. The keys themselves never live in this
/// file: it names a key file, or a systemd credential holding one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthHmac {
    /// A file of keys, one `<id> hex:<64-128 hex digits>` per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name of a systemd credential (`LoadCredential=` /
    /// `SetCredentialEncrypted=`) in that format, read from
    /// `$CREDENTIALS_DIRECTORY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_credential: Option<String>,
    /// The key id adverts are signed with, 1-255; received adverts may
    /// use any key of the file, so keys rotate without a gap.
    pub active_key: i64,
    #[serde(default)]
    pub anti_replay: AntiReplay,
    /// How far the sender's clock may be from ours when we first hear it
    /// (time anti-replay only); 3 advert intervals, at least 5 s, when
    /// absent, as keepalived.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub time_window: Option<Duration>,
    #[serde(default)]
    pub mode: AuthMode,
}

/// keepalived's `anti_replay`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AntiReplay {
    /// Sequence numbers are the sender's time; a first advert must be
    /// within `time_window` of our clock.
    #[default]
    Time,
    /// Sequence numbers only rise; no window.
    Monotonic,
}

/// keepalived's `mode`: how to move a running pair onto authentication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Sign every advert; drop any without a valid trailer.
    #[default]
    Enforce,
    /// Sign every advert; accept one without a trailer, drop one whose
    /// trailer fails.
    Permissive,
    /// Sign nothing; accept one without a trailer, drop one whose trailer
    /// fails.
    ReceiveOnly,
}

impl AuthHmac {
    /// The window a first advert's time must fall in.
    pub fn window(&self, advert_interval: Duration) -> Duration {
        self.time_window
            .unwrap_or_else(|| Duration::from_secs((3 * advert_interval.as_secs()).clamp(5, 300)))
    }
}

fn narrow(n: i64) -> u8 {
    u8::try_from(n.clamp(0, 255)).unwrap_or(u8::MAX)
}

fn default_version() -> i64 {
    3
}
fn default_advert_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_announce_count() -> i64 {
    5
}
fn default_announce_repeat() -> Duration {
    Duration::from_secs(5)
}
fn yes() -> bool {
    true
}

/// The protocol's own widths, for a validated instance. The file keeps
/// what was written (an `i64`), so that validation can name a value out of
/// range with all the other findings at once; past validation these are
/// in range (out of range reads as the nearest bound, never a panic).
impl VrrpInstance {
    /// The configured priority: as written, else 255 for an address owner
    /// and 100 for everyone else.
    pub fn priority(&self) -> u8 {
        narrow(
            self.priority
                .unwrap_or(if self.address_owner { 255 } else { 100 }),
        )
    }

    /// RFC 5798 5.2.3: 1-255.
    pub fn vrid(&self) -> u8 {
        narrow(self.vrid)
    }

    /// 2 or 3.
    pub fn version(&self) -> u8 {
        narrow(self.version)
    }

    /// Announcements per VIP in a burst (0-100).
    pub fn announce_count(&self) -> usize {
        usize::try_from(self.announce_count.max(0)).unwrap_or(0)
    }

    /// The instance's address family, taken from its first virtual IP.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_ips
            .first()
            .is_some_and(|v| !v.address.is_ipv4())
    }
}

/// A tracked interface: `"eth1"` or `{ interface = "eth1", weight = -20 }`.
/// Without a weight, the interface going down puts the instance in FAULT;
/// with one, its priority moves by the weight instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackInterface {
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

impl std::str::FromStr for TrackInterface {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(TrackInterface {
            interface: s.to_string(),
            weight: None,
        })
    }
}

/// A reference to a `[[track_script]]` or a `[[virtual_server]]` by name,
/// with an optional weight: `"web-http"` or `{ name = "web-http", weight = -50 }`.
/// Without a weight a failure means FAULT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

impl std::str::FromStr for TrackRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(TrackRef {
            name: s.to_string(),
            weight: None,
        })
    }
}

/// A file whose content (an integer) steers the priority, as keepalived's
/// `track_file`: with a weight, priority moves by value x weight; without
/// one, a non-zero value means FAULT. A missing file reads as 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackFile {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
}

/// A program run periodically (no shell) whose exit status steers the
/// priority of the instances that track it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackScript {
    pub name: String,
    /// argv: the program and its arguments, run without a shell.
    pub command: Vec<String>,
    #[serde(default = "default_script_interval", with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_script_timeout", with = "duration")]
    pub timeout: Duration,
    /// Default weight for instances that track it without their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    #[serde(default = "one")]
    pub rise: i64,
    #[serde(default = "one")]
    pub fall: i64,
    /// Run as this user (the daemon's own when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

fn default_script_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_script_timeout() -> Duration {
    Duration::from_secs(1)
}
fn one() -> i64 {
    1
}

/// Instances that change state together: when one becomes master, backup
/// or faulty, all do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncGroup {
    pub name: String,
    pub instances: Vec<String>,
    /// Program run on each group transition with
    /// `GROUP <name> <MASTER|BACKUP|FAULT|STOP> 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<PathBuf>,
}

/// IPVS connection synchronisation (the kernel's sync daemon, keepalived's
/// lvs_sync_daemon): the director that is master for `instance` sends its
/// connection table, the others receive it, so established connections
/// survive a failover. healthd starts and stops the daemons (it owns
/// IPVS), following vrrpd's state of the instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSync {
    /// The VRRP instance whose state decides master or backup.
    pub instance: String,
    /// Interface the sync messages go out of and come in on.
    pub interface: String,
    /// Sync id (0-255); the instance's vrid when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// How IPVS hands a packet to a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Direct routing (ipvsadm -g): rewrite the MAC only.
    Dr,
    /// IP-in-IP (or GUE/GRE) tunnelling (ipvsadm -i).
    Tun,
    /// Masquerading (ipvsadm -m): rewrite the destination address.
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelType {
    Ipip,
    Gue,
    Gre,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    #[default]
    Up,
    Down,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    pub name: String,
    /// VIP:port; absent for a firewall-mark service.
    #[serde(
        default,
        deserialize_with = "value::socket_addr::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<SocketAddr>,
    /// Firewall mark (1-4294967295) instead of an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<i64>,
    /// Address family of a firewall-mark service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<Family>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    #[serde(default = "default_scheduler")]
    pub scheduler: String,
    /// sh / mh options: "fallback", "port".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scheduler_flags: Vec<String>,
    /// Default forwarding of the real servers.
    #[serde(default = "default_forwarding")]
    pub forwarding: Forwarding,
    /// Client affinity timeout; "0s" for none.
    #[serde(default, with = "duration")]
    pub persistence: Duration,
    /// Prefix length that groups clients for persistence (IPv4: 0-32,
    /// IPv6: 0-128); a single client when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_prefix: Option<i64>,
    /// Schedule every UDP datagram on its own (ipvsadm --ops).
    #[serde(default)]
    pub one_packet: bool,
    /// Fewer healthy real servers than this and the sorry server takes the
    /// traffic, and trackers of this virtual server see it as failed.
    #[serde(default = "one")]
    pub quorum: i64,
    /// Quorum is lost below quorum - hysteresis and regained at
    /// quorum + hysteresis.
    #[serde(default)]
    pub quorum_hysteresis: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<HostPort>,
    /// A failed real server keeps its entry with weight 0 (established
    /// connections drain) instead of leaving the table.
    #[serde(default)]
    pub inhibit_on_failure: bool,
    /// A real server leaving the table goes to weight 0 first and is
    /// deleted once its connections are gone or after this long.
    #[serde(default = "default_drain_timeout", with = "duration")]
    pub drain_timeout: Duration,
    /// A real server that comes up (or is enabled after a drain) gets its
    /// weight step by step over this long, from 1 to the full weight, so
    /// a least-connection scheduler does not send it every new client at
    /// once (HAProxy's `slowstart`). None: the full weight at once.
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub slow_start: Option<Duration>,
    /// What a real server is taken to be before its first check result.
    #[serde(default)]
    pub initial_state: InitialState,
    /// Tunnel encapsulation for `forwarding = "tun"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    #[serde(default, rename = "real_server")]
    pub real_servers: Vec<RealServer>,
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}
fn default_scheduler() -> String {
    "wlc".into()
}
fn default_forwarding() -> Forwarding {
    Forwarding::Nat
}

impl VirtualServer {
    pub fn family(&self) -> Family {
        match (self.address, self.family) {
            (Some(SocketAddr::V6(_)), _) => Family::Ipv6,
            (Some(SocketAddr::V4(_)), _) => Family::Ipv4,
            (None, Some(f)) => f,
            (None, None) => Family::Ipv4,
        }
    }

    /// The service port (0 for firewall-mark services).
    pub fn port(&self) -> u16 {
        self.address.map_or(0, |a| a.port())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    #[serde(rename = "type")]
    pub kind: TunnelType,
    /// UDP port of GUE encapsulation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// GUE/GRE checksum: "none", "checksum" or "remote".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// IP or IP:port; without a port the service's port. DR and TUN cannot
    /// change the port.
    pub address: HostPort,
    #[serde(default = "one")]
    pub weight: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<Forwarding>,
    /// Stop sending new connections above this many (0: no limit).
    #[serde(default)]
    pub upper_threshold: i64,
    /// Resume below this many (0: no limit).
    #[serde(default)]
    pub lower_threshold: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// Overrides of the virtual server's check for this real server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckOverride>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    Icmp,
    Tcp,
    /// A datagram; up on the expected reply, or (without `expect`) when no
    /// ICMP port unreachable came back within the timeout.
    Udp,
    /// A DNS query over UDP: up on the expected response code (and answer).
    Dns,
    /// SMTP: the 220 banner, 250 to EHLO, optionally STARTTLS and EHLO
    /// again inside TLS.
    Smtp,
    Http,
    Https,
    Script,
}

/// How the real servers of a virtual server are checked. One table for all
/// check types; keys that do not apply to the type are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(rename = "type")]
    pub kind: CheckType,
    #[serde(default = "default_check_interval", with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_check_timeout", with = "duration")]
    pub timeout: Duration,
    /// Consecutive successes that bring a server UP.
    #[serde(default = "default_rise")]
    pub rise: i64,
    /// Consecutive failures that take it DOWN.
    #[serde(default = "default_fall")]
    pub fall: i64,
    /// Check another port than the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Check another address than the real server's.
    #[serde(
        default,
        deserialize_with = "value::ip::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<IpAddr>,
    /// Source address of the probes.
    #[serde(
        default,
        deserialize_with = "value::ip::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<IpAddr>,
    // tcp, udp
    /// Bytes to send after connecting (tcp), or the datagram (udp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Bytes the answer must start with (tcp, udp; "" for any reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    // dns
    /// The name asked for ("." by default, as keepalived's DNS_CHECK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_name: Option<String>,
    /// The record type asked for (SOA by default, as keepalived's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    /// The response code that passes (NOERROR by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_rcode: Option<String>,
    /// An answer record's data that must be among the answers
    /// ("192.0.2.53", "10 mail.example.com.").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_answer: Option<String>,
    // http, https
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Accepted statuses: codes (200) and ranges ("200-299").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<StatusMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// MD5 of the body, hex, as keepalived's HTTP_GET `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_md5: Option<String>,
    /// Keep the connection open between checks (off: every check proves a
    /// fresh connection).
    #[serde(default)]
    pub keepalive: bool,
    // smtp
    /// The name sent with EHLO; the director's address as a literal
    /// ("[192.0.2.1]", RFC 5321 4.1.3) by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo_name: Option<String>,
    /// Upgrade with STARTTLS (RFC 3207) and say EHLO again inside TLS.
    #[serde(default)]
    pub starttls: bool,
    // https, smtp with starttls
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    // script
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_rise() -> i64 {
    2
}
fn default_fall() -> i64 {
    3
}

/// Per-real-server overrides of the virtual server's check.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckOverride {
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rise: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fall: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(
        default,
        deserialize_with = "value::ip::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<IpAddr>,
    #[serde(
        default,
        deserialize_with = "value::ip::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub source: Option<IpAddr>,
}

/// An accepted HTTP status: `200` or `"200-299"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusMatch {
    /// Range-checked by validation (100-599).
    Code(i64),
    Range(u16, u16),
}

impl StatusMatch {
    pub fn matches(&self, status: u16) -> bool {
        match *self {
            StatusMatch::Code(c) => c == i64::from(status),
            StatusMatch::Range(lo, hi) => (lo..=hi).contains(&status),
        }
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(c) => write!(f, "{c}"),
            StatusMatch::Range(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

impl Serialize for StatusMatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StatusMatch::Code(c) => s.serialize_i64(*c),
            StatusMatch::Range(..) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusMatch;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a status code like 200 or a range like \"200-299\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusMatch, E> {
                Ok(StatusMatch::Code(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusMatch, E> {
                Ok(StatusMatch::Code(v.min(i64::MAX as u64) as i64))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StatusMatch, E> {
                let bad = || {
                    E::custom(format!(
                        "\"{s}\" is not a status range: write \"200-299\" (or a single code like 200)"
                    ))
                };
                let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
                let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
                let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
                if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                    return Err(bad());
                }
                Ok(StatusMatch::Range(lo, hi))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebUi {
    /// Off by default on a fresh install only through the unit; when the
    /// daemon runs it listens here.
    #[serde(
        default = "default_webui_listen",
        deserialize_with = "value::socket_addr::deserialize"
    )]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM) and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(default = "default_session_timeout", with = "duration")]
    pub session_timeout: Duration,
    /// Serve plain HTTP beyond loopback although users log in: their
    /// passwords and session cookies then cross the network in clear.
    /// Without it such a listen is refused (use `tls_cert`/`tls_key`).
    #[serde(default)]
    pub plain_http: bool,
    #[serde(default, rename = "user", skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<WebUser>,
}

impl WebUi {
    /// Why listening on `listen` would send logins in clear text, unless
    /// the operator said so (`plain_http`): reachable from other hosts,
    /// users who log in, no TLS.
    pub fn plain_http_refusal(&self, listen: SocketAddr) -> Option<String> {
        let tls = self.tls_cert.is_some() && self.tls_key.is_some();
        (!listen.ip().is_loopback() && !self.users.is_empty() && !tls && !self.plain_http).then(|| {
            format!(
                "listen {listen} is reachable from other hosts over plain HTTP: passwords and session cookies would cross the network in clear; set tls_cert and tls_key, or plain_http = true to accept that"
            )
        })
    }
}

impl Default for WebUi {
    fn default() -> Self {
        WebUi {
            listen: default_webui_listen(),
            tls_cert: None,
            tls_key: None,
            session_timeout: default_session_timeout(),
            plain_http: false,
            users: Vec::new(),
        }
    }
}

fn default_webui_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(8 * 3600)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees everything, changes nothing.
    Viewer,
    /// Drains, hands over, edits the configuration.
    Admin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebUser {
    pub name: String,
    /// An argon2 PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
    pub role: Role,
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is part of the message and not also a `source()`: a
    // chain printer (anyhow's `{:#}`) would say it twice.
    #[error("cannot read {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl ConfigError {
    /// The located findings, when the file was read.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            ConfigError::Invalid(d) => Some(d),
            ConfigError::Io { .. } => None,
        }
    }
}

/// Reads, parses and validates the file at `path`; a cluster file is
/// resolved for this director ([`cluster::identity`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    parse_as(
        &text,
        &path.display().to_string(),
        cluster::identity(path).as_deref(),
    )
}

/// Parses and validates `text`; `origin` names the file in diagnostics. A
/// cluster file is checked for every node and resolved for the first.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_as(text, origin, None)
}

/// As [`parse`], resolving a cluster file for the node `me` (which must be
/// one of its nodes). A cluster file is good only when it is good for
/// every node: the findings of all come back at once, each marked with
/// the nodes it is for unless it is for all.
pub fn parse_as(text: &str, origin: &str, me: Option<&str>) -> Result<Config, ConfigError> {
    let source = diagnostic::Source::new(origin, text);
    let spans = match toml::de::DeTable::parse(text) {
        Ok(table) => table,
        Err(e) => return Err(ConfigError::Invalid(source.toml_error(&e))),
    };
    let Some(nodes) = cluster::nodes(spans.get_ref()) else {
        // Parsed again only to locate findings: a good file of 37,000
        // real servers is not copied.
        let again = || {
            toml::de::DeTable::parse(text)
                .unwrap_or_else(|_| toml::Spanned::new(0..0, Default::default()))
        };
        return parse_one(&source, spans, &again, false);
    };
    let located = |problems: Vec<cluster::Problem>| {
        let mut d: Vec<Diagnostic> = problems
            .into_iter()
            .map(|p| source.diagnostic(p.span, p.message))
            .collect();
        d.sort_by_key(|d| d.span.start);
        ConfigError::Invalid(Diagnostics(d))
    };
    let problems = cluster::check_nodes(spans.get_ref(), &nodes, spans.span());
    if !problems.is_empty() {
        return Err(located(problems));
    }
    let names: BTreeSet<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
    if let Some(me) = me.filter(|m| !names.contains(*m)) {
        let span = spans
            .get_ref()
            .get("cluster")
            .map_or(spans.span(), |c| c.span());
        return Err(located(vec![cluster::Problem {
            span,
            message: format!(
                "this director is \"{me}\" (from TANDEM_NODE, the file node beside the configuration, or the host name), and [cluster] nodes does not name it: add it, or name this director as one of {}",
                nodes
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }]));
    }
    // Every node's findings, merged: one that every node shares is said
    // once; one for some nodes only says which.
    let mut findings: BTreeMap<(usize, usize, String), (Diagnostic, Vec<String>)> = BTreeMap::new();
    let mut resolved = Vec::new();
    for (n, _) in &nodes {
        let mut table = spans.clone();
        let problems = cluster::resolve(table.get_mut(), &names, n);
        let again = || {
            let mut t = spans.clone();
            cluster::resolve(t.get_mut(), &names, n);
            t
        };
        let result = if problems.is_empty() {
            parse_one(&source, table, &again, true)
        } else {
            Err(located(problems))
        };
        match result {
            Ok(mut c) => {
                c.this_node = Some(n.clone());
                resolved.push(c);
            }
            Err(ConfigError::Invalid(d)) => {
                for d in d.0 {
                    let key = (d.span.start, d.span.end, d.message.clone());
                    findings
                        .entry(key)
                        .or_insert((d, Vec::new()))
                        .1
                        .push(n.clone());
                }
            }
            Err(e) => return Err(e),
        }
    }
    if !findings.is_empty() {
        let mut out: Vec<Diagnostic> = findings
            .into_values()
            .map(|(mut d, for_nodes)| {
                let says_which =
                    for_nodes.len() == 1 && d.message.contains(&format!("node {}", for_nodes[0]));
                if for_nodes.len() < nodes.len() && !says_which {
                    d.message = format!("{} (for {})", d.message, for_nodes.join(", "));
                }
                d
            })
            .collect();
        out.sort_by_key(|d| d.span.start);
        return Err(ConfigError::Invalid(Diagnostics(out)));
    }
    let problems = cluster_channel(&resolved);
    if !problems.is_empty() {
        let span = spans
            .get_ref()
            .get("cluster")
            .map_or(spans.span(), |c| c.span());
        return Err(located(
            problems
                .into_iter()
                .map(|message| cluster::Problem {
                    span: span.clone(),
                    message,
                })
                .collect(),
        ));
    }
    let i = me
        .and_then(|m| {
            resolved
                .iter()
                .position(|c| c.this_node.as_deref() == Some(m))
        })
        .unwrap_or(0);
    Ok(resolved.swap_remove(i))
}

/// The sync channel is all or nothing: every node has an address (each
/// its own), or none has.
fn cluster_channel(resolved: &[Config]) -> Vec<String> {
    let with: Vec<(&str, IpAddr)> = resolved
        .iter()
        .filter_map(|c| {
            let a = c.cluster.as_ref()?.address?;
            Some((c.this_node.as_deref().unwrap_or_default(), a))
        })
        .collect();
    let mut out = Vec::new();
    if !with.is_empty() && with.len() < resolved.len() {
        let missing: Vec<&str> = resolved
            .iter()
            .filter_map(|c| c.this_node.as_deref())
            .filter(|n| !with.iter().any(|(w, _)| w == n))
            .collect();
        out.push(format!(
            "[cluster] address names no address for {}: the directors keep the file in sync only when each has one, e.g. address = {{ lb1 = \"10.0.0.1\", lb2 = \"10.0.0.2\" }}",
            missing.join(", ")
        ));
    }
    let mut seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (n, a) in &with {
        if let Some(other) = seen.insert(*a, n) {
            out.push(format!(
                "[cluster] address {a} is given to both {other} and {n}: each director needs its own"
            ));
        }
    }
    out
}

/// What only the director itself can check about the file: that the
/// interfaces its view of the file names exist here. `exists` answers for
/// one interface name. Each finding is located at this node's value.
pub fn host_findings(
    text: &str,
    origin: &str,
    me: Option<&str>,
    exists: &dyn Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    use diagnostic::{Finding, Seg};
    let source = diagnostic::Source::new(origin, text);
    let Ok(mut spans) = toml::de::DeTable::parse(text) else {
        return Vec::new();
    };
    if let (Some(nodes), Some(me)) = (cluster::nodes(spans.get_ref()), me) {
        let names: BTreeSet<String> = nodes.into_iter().map(|(n, _)| n).collect();
        if !cluster::resolve(spans.get_mut(), &names, me).is_empty() {
            return Vec::new();
        }
    }
    let Ok(config) = Config::deserialize(toml::de::Deserializer::from(spans.clone())) else {
        return Vec::new();
    };
    let node = me.map_or_else(String::new, |m| format!(" on {m}"));
    let mut findings = Vec::new();
    let mut missing = |path: Vec<Seg>, name: &str, what: &str| {
        if !exists(name) {
            findings.push(Finding {
                path,
                message: format!("interface \"{name}\" ({what}) does not exist{node}"),
            });
        }
    };
    for (i, inst) in config.vrrp_instances.iter().enumerate() {
        missing(
            vec![
                Seg::Key("vrrp_instance"),
                Seg::Index(i),
                Seg::Key("interface"),
            ],
            &inst.interface,
            "the instance's interface",
        );
        for (j, t) in inst.track_interfaces.iter().enumerate() {
            missing(
                vec![
                    Seg::Key("vrrp_instance"),
                    Seg::Index(i),
                    Seg::Key("track_interfaces"),
                    Seg::Index(j),
                ],
                &t.interface,
                "tracked",
            );
        }
    }
    source.locate(&spans, findings).0
}

/// Deserializes and validates one node's view of the file. `spans` is
/// consumed; `again` makes the same tree anew, to locate findings.
fn parse_one<'a>(
    source: &diagnostic::Source<'_>,
    spans: toml::Spanned<toml::de::DeTable<'a>>,
    again: &dyn Fn() -> toml::Spanned<toml::de::DeTable<'a>>,
    in_cluster: bool,
) -> Result<Config, ConfigError> {
    let config: Config = match Config::deserialize(toml::de::Deserializer::from(spans)) {
        Ok(c) => c,
        Err(e) => return Err(ConfigError::Invalid(source.toml_error(&e))),
    };
    let spans = std::cell::OnceCell::new();
    let spans = || spans.get_or_init(again);
    let mut findings = validate::validate(&config, &|path| source.line_of(spans(), path));
    if in_cluster && config.node.name.is_some() {
        findings.push(diagnostic::Finding {
            path: vec![diagnostic::Seg::Key("node"), diagnostic::Seg::Key("name")],
            message: "a cluster file is the same on every director: remove [node] name (a director knows its name from TANDEM_NODE, the file node beside the configuration, or its host name)".into(),
        });
    }
    if findings.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(source.locate(spans(), findings)))
    }
}

impl Config {
    /// This node's name: the node a cluster file was resolved for, else
    /// `[node] name`, else the host name.
    pub fn node_name(&self) -> String {
        self.this_node
            .clone()
            .or_else(|| self.node.name.clone())
            .unwrap_or_else(|| nix_hostname().unwrap_or_else(|| "tandem".to_string()))
    }

    pub fn virtual_server(&self, name: &str) -> Option<&VirtualServer> {
        self.virtual_servers.iter().find(|v| v.name == name)
    }

    pub fn vrrp_instance(&self, name: &str) -> Option<&VrrpInstance> {
        self.vrrp_instances.iter().find(|v| v.name == name)
    }

    pub fn track_script(&self, name: &str) -> Option<&TrackScript> {
        self.track_scripts.iter().find(|v| v.name == name)
    }

    /// What `--check` says about a valid file besides OK: settings that
    /// work but may not do what an operator hopes.
    pub fn notes(&self) -> Vec<String> {
        let passwords = self
            .vrrp_instances
            .iter()
            .filter(|i| i.auth_pass.is_some())
            .map(|i| {
                format!(
                    "instance {}: auth_pass protects against misconfiguration (another virtual router with VRID {} on the segment), not attackers: the password is sent in clear text in every advert",
                    i.name, i.vrid
                )
            });
        // These schedulers never read a weight (the kernel's ip_vs_rr,
        // ip_vs_lc, ip_vs_dh): a ramp of weights changes nothing.
        let ramps = self
            .virtual_servers
            .iter()
            .filter(|v| v.slow_start.is_some() && matches!(v.scheduler.as_str(), "rr" | "lc" | "dh"))
            .map(|v| {
                format!(
                    "virtual server {}: slow_start has no effect with scheduler {}, which ignores weights (use wrr, wlc, sed, ...)",
                    v.name, v.scheduler
                )
            });
        passwords.chain(ramps).collect()
    }

    /// Path of a daemon's control socket: `<socket_dir>/<daemon>.sock`.
    pub fn socket_path(&self, daemon: &str) -> PathBuf {
        socket_in(&self.node.socket_dir, daemon)
    }
}

/// A daemon's control socket in `dir` (the configured `socket_dir`, or
/// one given on the command line): `<dir>/<daemon>.sock`.
pub fn socket_in(dir: &Path, daemon: &str) -> PathBuf {
    dir.join(format!("{daemon}.sock"))
}

pub(crate) fn nix_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// What `--check CONFIG` does in every daemon: validate, print the result,
/// and give the exit status (0 clean, 1 refused).
pub fn run_check(path: &Path) -> std::process::ExitCode {
    // Every node of a cluster file, whichever machine checks it.
    let checked = std::fs::read_to_string(path)
        .map_err(|cause| ConfigError::Io {
            path: path.to_path_buf(),
            cause,
        })
        .and_then(|text| parse(&text, &path.display().to_string()));
    match checked {
        Ok(c) => {
            for note in c.notes() {
                println!("{}: note: {note}", path.display());
            }
            if let Some(cl) = &c.cluster {
                println!(
                    "{}: good for every node of the cluster: {}",
                    path.display(),
                    cl.nodes.join(", ")
                );
            }
            println!(
                "{}: OK ({} VRRP instance{}, {} virtual server{})",
                path.display(),
                c.vrrp_instances.len(),
                if c.vrrp_instances.len() == 1 { "" } else { "s" },
                c.virtual_servers.len(),
                if c.virtual_servers.len() == 1 {
                    ""
                } else {
                    "s"
                },
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
