//! The codec against bytes a real kernel exchanged with ipvsadm: the
//! golden vectors in tests/kernel/ (its README says how they were
//! captured: Linux 6.1, ipvsadm 1.31, the kernel's nlmon device).
//!
//! - Every reply the kernel sent decodes to the value written out here.
//! - Every request ipvsadm sent is, byte for byte, what the codec encodes
//!   for the same command, once the header fields that belong to the run
//!   are normalised and the attributes ipvsadm sends but the kernel does
//!   not read are set aside (each normalisation below says why).
//! - Every attribute the kernel sent is read by the decoder or listed
//!   here as ignored, with the reason; changing an attribute's value
//!   shows which.
//! - The acknowledgements, errors and ends of dumps classify as such.
//!
//! Attribute numbers are spelled out from include/uapi/linux/ip_vs.h
//! rather than taken from the codec, so that the two can disagree.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, SocketAddr};

use ipvsctl::codec::{self, cmd};
use ipvsctl::netlink::{self, Attrs, Reply};
use ipvsctl::reconcile::Op;
use ipvsctl::types::{
    Dest, DestCounters, DestSettings, Family, Forwarding, Info, Netmask, SchedFlags, Service,
    ServiceKey, ServiceSettings, Stats, SyncDaemon, SyncRole, Timeouts, Tunnel, TunnelChecksum,
    TunnelType,
};

// ---------------------------------------------------------------------
// The files.

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kernel");

/// A message's bytes: the file's hex, `#` lines and whitespace aside.
fn load(name: &str) -> Vec<u8> {
    let path = format!("{DIR}/{name}.hex");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(hex.len() % 2 == 0, "{path}: an odd number of hex digits");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert!(bytes.len() >= 16, "{path}: shorter than a nlmsghdr");
    assert_eq!(
        u32_at(&bytes, 0) as usize,
        bytes.len(),
        "{path}: nlmsg_len is not the file's length"
    );
    bytes
}

/// The files of one role (`request`, `reply`, `ack`, `error`, `done`),
/// without `.hex`.
fn files(role: &str) -> BTreeSet<String> {
    fs::read_dir(DIR)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".hex")?.to_string();
            stem.split('.').any(|part| part == role).then_some(stem)
        })
        .collect()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

// nlmsghdr fields, and the genlmsghdr after it.
fn nlmsg_type(m: &[u8]) -> u16 {
    u16_at(m, 4)
}
fn nlmsg_flags(m: &[u8]) -> u16 {
    u16_at(m, 6)
}
fn nlmsg_seq(m: &[u8]) -> u32 {
    u32_at(m, 8)
}
fn genl_cmd(m: &[u8]) -> u8 {
    m[16]
}
fn genl_attrs(m: &[u8]) -> &[u8] {
    &m[20..]
}

/// Bytes as the files show them, for readable assertion failures.
fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for line in b.chunks(16) {
        for w in line.chunks(4) {
            for x in w {
                write!(s, "{x:02x}").unwrap();
            }
            s.push(' ');
        }
        s.push('\n');
    }
    s
}

// ---------------------------------------------------------------------
// Numbers from include/uapi/linux/netlink.h, genetlink.h and ip_vs.h.

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_TYPE_MASK: u16 = 0x3fff;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
/// `IPVS_CMD_SET_INFO`: the command of GET_INFO's answer.
const IPVS_CMD_SET_INFO: u8 = 14;

const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const CMD_ATTR_DAEMON: u16 = 3;
const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const CMD_ATTR_TIMEOUT_UDP: u16 = 6;

const SVC_AF: u16 = 1;
const SVC_PROTOCOL: u16 = 2;
const SVC_ADDR: u16 = 3;
const SVC_PORT: u16 = 4;
const SVC_FWMARK: u16 = 5;

const DEST_ADDR: u16 = 1;
const DEST_PORT: u16 = 2;
const DEST_ADDR_FAMILY: u16 = 11;

const DAEMON_STATE: u16 = 1;

// ---------------------------------------------------------------------
// Header fields of the run.

/// The id nlctrl gave the IPVS family when ip_vs registered in the
/// capture's boot (assigned at registration, so it may differ in any
/// other run).
fn ipvs_family() -> u16 {
    netlink::family_id(genl_attrs(&load("list_empty.ctrl_getfamily.reply"))).unwrap()
}

/// A request as ipvsadm sent it, its port id zeroed: libnl writes the
/// socket's port id (pid + socket index) in `nlmsg_pid`, the codec's
/// framing writes 0, and the kernel reads neither: it answers the port id
/// of the socket that sent (`NETLINK_CB(skb).portid`).
fn sent(name: &str) -> Vec<u8> {
    let mut m = load(name);
    m[12..16].fill(0);
    m
}

/// The codec's attributes for a command, framed with `netlink::put_request`
/// as ipvsadm's request was: the same family id (this run's), sequence
/// number (libnl seeds it from the clock) and flags. Flags are the
/// client's choice, not the codec's: libnl's `nl_send_auto` asks an ACK of
/// every request, dumps included (the kernel sends none for a dump:
/// `netlink_rcv_skb` skips it after `netlink_dump_start`), where
/// `ipvsctl::Kernel` asks none of a dump and one per batch of changes.
fn framed_like(sent: &[u8], cmd: u8, attrs: &[u8]) -> Vec<u8> {
    assert_eq!(nlmsg_type(sent), ipvs_family(), "not an IPVS request");
    let flags = nlmsg_flags(sent);
    assert!(
        flags == NLM_F_REQUEST | NLM_F_ACK || flags == NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
        "ipvsadm's flags {flags:#x}"
    );
    let mut out = Vec::new();
    netlink::put_request(
        &mut out,
        nlmsg_type(sent),
        flags,
        nlmsg_seq(sent),
        cmd,
        codec::FAMILY_VERSION,
        attrs,
    );
    out
}

// ---------------------------------------------------------------------
// What ipvsadm sends and the codec does not.

/// What a normalisation does to one attribute (its type, flag bits
/// masked, and value): keeps it, changes its value, or drops it (`None`).
type Edit = dyn Fn(u16, &[u8]) -> Option<Vec<u8>>;

/// The attributes of `buf`, with their type's flag bits, rewritten: at
/// the end of `path` (nested types) `f` keeps, changes or drops each
/// attribute; elsewhere they stay as they are.
fn rewrite_attrs(buf: &[u8], path: &[u16], f: &Edit) -> Vec<u8> {
    let mut out = Attrs::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let len = u16_at(rest, 0) as usize;
        let raw = u16_at(rest, 2);
        let value = &rest[4..len];
        let kind = raw & NLA_TYPE_MASK;
        match path.split_first() {
            Some((&p, inner)) if kind == p => {
                out.bytes(raw, &rewrite_attrs(value, inner, f));
            }
            Some(_) => {
                out.bytes(raw, value);
            }
            None => {
                if let Some(v) = f(kind, value) {
                    out.bytes(raw, &v);
                }
            }
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    out.into_bytes()
}

fn rewrite(m: &[u8], path: &[u16], f: &Edit) -> Vec<u8> {
    let mut out = m[..20].to_vec();
    out.extend_from_slice(&rewrite_attrs(genl_attrs(m), path, f));
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_ne_bytes());
    out
}

type Normalise = fn(&[u8]) -> Vec<u8>;

/// ipvsadm's service reduced to what names it. For every command but
/// NEW_SERVICE and SET_SERVICE the kernel reads only af + protocol, addr,
/// port, or af + fwmark (`ip_vs_genl_parse_service` with `full_entry`
/// false, from `ip_vs_genl_set_cmd` and `ip_vs_genl_get_cmd` in
/// net/netfilter/ipvs/ip_vs_ctl.c); ipvsadm's libipvs writes the whole
/// service there too (`ipvs_nl_fill_service_attr` from `ipvs_del_service`,
/// `ipvs_zero_service`, `ipvs_add_dest`, `ipvs_update_dest`,
/// `ipvs_del_dest`, and in 1.31 `ipvs_get_service`), scheduler "" and
/// netmask 0 where it has none. The codec sends the key.
fn service_key_only(m: &[u8]) -> Vec<u8> {
    rewrite(m, &[CMD_ATTR_SERVICE], &|k, v| {
        matches!(k, SVC_AF | SVC_PROTOCOL | SVC_ADDR | SVC_PORT | SVC_FWMARK).then(|| v.to_vec())
    })
}

/// ipvsadm's destination reduced to what names it, for DEL_DEST: the
/// kernel reads addr, port and addr family (`ip_vs_genl_parse_dest` with
/// `full_entry` false); ipvsadm's `ipvs_del_dest` writes the whole
/// destination (`ipvs_nl_fill_dest_attr`).
fn dest_key_only(m: &[u8]) -> Vec<u8> {
    rewrite(m, &[CMD_ATTR_DEST], &|k, v| {
        matches!(k, DEST_ADDR | DEST_PORT | DEST_ADDR_FAMILY).then(|| v.to_vec())
    })
}

/// An IPv4 real server's 16-byte address with the 12 bytes after its 4
/// zeroed. ipvsadm leaves there whatever its `nf_inet_addr` held before
/// (in `add_dest_tun_v4_in_v6`, the end of the IPv6 virtual address,
/// `::1`); the kernel keeps the 4 bytes
/// (`ip_vs_addr_copy` in `ip_vs_new_dest`) and answers zeros after them
/// (`list_udp_v6.get_dest.reply`). The codec writes zeros.
fn ipv4_dest_addr_tail_zeroed(m: &[u8]) -> Vec<u8> {
    rewrite(m, &[CMD_ATTR_DEST], &|k, v| {
        let mut v = v.to_vec();
        if k == DEST_ADDR {
            v[4..].fill(0);
        }
        Some(v)
    })
}

/// ipvsadm's timeouts without those it sends as 0. `ipvsadm --set` sends
/// all three, 0 for each it leaves as it is (libipvs `ipvs_set_timeout`);
/// the kernel changes only those that are not 0 (`ip_vs_set_timeout`;
/// `timeout_get` reads 900 30 300 after `--set 0 30 0`). The codec sends
/// only the timeouts given.
fn zero_timeouts_dropped(m: &[u8]) -> Vec<u8> {
    rewrite(m, &[], &|k, v| {
        let timeout = matches!(
            k,
            CMD_ATTR_TIMEOUT_TCP | CMD_ATTR_TIMEOUT_TCP_FIN | CMD_ATTR_TIMEOUT_UDP
        );
        (!(timeout && v == [0; 4])).then(|| v.to_vec())
    })
}

/// DEL_DAEMON reduced to the daemon's state: `ip_vs_genl_del_daemon`
/// reads `IPVS_DAEMON_ATTR_STATE` alone; ipvsadm's `ipvs_stop_daemon`
/// writes an empty interface name and sync id 0 besides.
fn daemon_state_only(m: &[u8]) -> Vec<u8> {
    rewrite(m, &[CMD_ATTR_DAEMON], &|k, v| {
        (k == DAEMON_STATE).then(|| v.to_vec())
    })
}

// ---------------------------------------------------------------------
// The table capture.sh programs, as typed values.

fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn service(k: &str, scheduler: &str, set: impl FnOnce(&mut ServiceSettings)) -> Service {
    let k = key(k);
    let mut settings = ServiceSettings::new(k.family(), scheduler);
    set(&mut settings);
    Service::new(k, settings)
}

/// `-A -t 10.0.0.1:80 -s wrr`
fn tcp_v4_wrr() -> Service {
    service("tcp:10.0.0.1:80", "wrr", |_| {})
}

/// `-E -t 10.0.0.1:80 -s wlc -p 30`
fn tcp_v4_edited() -> Service {
    service("tcp:10.0.0.1:80", "wlc", |s| s.persistence = Some(30))
}

/// `-A -u 10.0.0.1:53 -s sh -b sh-fallback,sh-port -o`
fn udp_v4_sh() -> Service {
    service("udp:10.0.0.1:53", "sh", |s| {
        s.sched_flags = SchedFlags {
            flag1: true,
            flag2: true,
            flag3: false,
        };
        s.one_packet = true;
    })
}

/// `-A --sctp-service 10.0.0.1:9 -s rr`
fn sctp_v4_rr() -> Service {
    service("sctp:10.0.0.1:9", "rr", |_| {})
}

/// `-A -t 10.0.0.1:443 -s rr -p 360 -M 255.255.255.0`
fn tcp_v4_persistent() -> Service {
    service("tcp:10.0.0.1:443", "rr", |s| {
        s.persistence = Some(360);
        s.netmask = Netmask::V4("255.255.255.0".parse().unwrap());
    })
}

/// `-A -u 10.0.0.1:5060 -s rr -p 60 --pe sip`
fn udp_v4_pe_sip() -> Service {
    service("udp:10.0.0.1:5060", "rr", |s| {
        s.persistence = Some(60);
        s.pe = Some("sip".into());
    })
}

/// `-A -f 7 -s wrr -p 300 -M 255.255.0.0`
fn fwmark_v4() -> Service {
    service("fwmark:7", "wrr", |s| {
        s.persistence = Some(300);
        s.netmask = Netmask::V4("255.255.0.0".parse().unwrap());
    })
}

/// `-A -t [2001:db8::1]:443 -s sh -b sh-port -p 60 -M 64`
fn tcp_v6_sh() -> Service {
    service("tcp:[2001:db8::1]:443", "sh", |s| {
        s.sched_flags.flag2 = true;
        s.persistence = Some(60);
        s.netmask = Netmask::V6(64);
    })
}

/// `-A -u [2001:db8::1]:53 -s rr -o`
fn udp_v6_ops() -> Service {
    service("udp:[2001:db8::1]:53", "rr", |s| s.one_packet = true)
}

/// `-A -f 8 -6 -s rr -p 120 -M 48`
fn fwmark_v6() -> Service {
    service("fwmark:8:ipv6", "rr", |s| {
        s.persistence = Some(120);
        s.netmask = Netmask::V6(48);
    })
}

fn dest(a: &str, forwarding: Forwarding, weight: u32, set: impl FnOnce(&mut DestSettings)) -> Dest {
    let mut settings = DestSettings::new(forwarding, weight);
    set(&mut settings);
    Dest::new(addr(a), settings)
}

/// `-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 3 -x 100 -y 50`
fn nat_thresholds() -> Dest {
    dest("10.0.0.2:8080", Forwarding::Masq, 3, |d| {
        d.upper_threshold = 100;
        d.lower_threshold = 50;
    })
}

/// `-e -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 5 -x 200 -y 100`
fn nat_edited() -> Dest {
    dest("10.0.0.2:8080", Forwarding::Masq, 5, |d| {
        d.upper_threshold = 200;
        d.lower_threshold = 100;
    })
}

/// `-a -t 10.0.0.1:80 -r 10.0.0.3:80 -g -w 1`
fn dr() -> Dest {
    dest("10.0.0.3:80", Forwarding::Route, 1, |_| {})
}

/// `-a -t 10.0.0.1:443 -r 10.0.1.2:8443 -m -w 1`
fn nat_rs() -> Dest {
    dest("10.0.1.2:8443", Forwarding::Masq, 1, |_| {})
}

fn tunnel(kind: TunnelType, port: u16, checksum: TunnelChecksum) -> Tunnel {
    Tunnel {
        kind,
        port,
        checksum,
    }
}

/// `-a -u 10.0.0.1:53 -r 10.0.0.5:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-csum`
fn tun_gue_csum() -> Dest {
    dest("10.0.0.5:53", Forwarding::Tunnel, 2, |d| {
        d.tunnel = tunnel(TunnelType::Gue, 6080, TunnelChecksum::Checksum);
    })
}

/// `-a -u 10.0.0.1:53 -r 10.0.0.6:53 -i -w 1 --tun-type gue --tun-port 6081 --tun-remcsum`
fn tun_gue_remcsum() -> Dest {
    dest("10.0.0.6:53", Forwarding::Tunnel, 1, |d| {
        d.tunnel = tunnel(TunnelType::Gue, 6081, TunnelChecksum::Remote);
    })
}

/// `-a -u 10.0.0.1:53 -r 10.0.0.7:53 -i -w 1 --tun-type gre --tun-csum`
fn tun_gre_csum() -> Dest {
    dest("10.0.0.7:53", Forwarding::Tunnel, 1, |d| {
        d.tunnel = tunnel(TunnelType::Gre, 0, TunnelChecksum::Checksum);
    })
}

/// `-a -u 10.0.0.1:53 -r 10.0.0.8:53 -i -w 0 --tun-type ipip`
fn tun_ipip_weight0() -> Dest {
    dest("10.0.0.8:53", Forwarding::Tunnel, 0, |_| {})
}

/// `-a --sctp-service 10.0.0.1:9 -r 10.0.0.12:9 -g -w 7 -x 10`
fn sctp_dr() -> Dest {
    dest("10.0.0.12:9", Forwarding::Route, 7, |d| {
        d.upper_threshold = 10
    })
}

/// `-a -u 10.0.0.1:5060 -r 10.0.0.14:5060 -m -w 1`
fn nat_pe_sip() -> Dest {
    dest("10.0.0.14:5060", Forwarding::Masq, 1, |_| {})
}

/// `-a -f 7 -r 10.0.0.9:0 -g -w 1`
fn fwmark_v4_dr() -> Dest {
    dest("10.0.0.9:0", Forwarding::Route, 1, |_| {})
}

/// `-a -t [2001:db8::1]:443 -r [2001:db8::2]:8443 -m -w 65535`
fn nat_v6() -> Dest {
    dest("[2001:db8::2]:8443", Forwarding::Masq, 65535, |_| {})
}

/// `-a -u [2001:db8::1]:53 -r 10.0.0.13:53 -i -w 1 --tun-type ipip`
fn tun_v4_in_v6() -> Dest {
    dest("10.0.0.13:53", Forwarding::Tunnel, 1, |_| {})
}

/// `-a -f 8 -6 -r [2001:db8::5]:0 -g -w 4`
fn fwmark_v6_dr() -> Dest {
    dest("[2001:db8::5]:0", Forwarding::Route, 4, |_| {})
}

/// What two connections through `tcp:10.0.0.1:443` left, as ipvsadm
/// printed the same replies (transcript.txt): `-Ln --stats --exact` the
/// totals, `-Ln --rate --exact` the rates. The three listings ran with
/// no traffic between them, and their replies carry the same counters.
fn traffic() -> Stats {
    Stats {
        conns: 2,
        inpkts: 9,
        outpkts: 8,
        inbytes: 495,
        outbytes: 2432,
        cps: 0,
        inpps: 1,
        outpps: 1,
        inbps: 46,
        outbps: 228,
    }
}

/// The real server's connections then, as `-Ln --persistent-conn`
/// printed them: the one kept open, the one closed, and the persistence
/// template. `-Z` zeroes the counters, not these.
fn rs_counters(stats: Stats) -> DestCounters {
    DestCounters {
        active_conns: 1,
        inactive_conns: 1,
        persistent_conns: 1,
        stats,
    }
}

fn with_stats(mut s: Service, stats: Stats) -> Service {
    s.stats = stats;
    s
}

fn with_counters(mut d: Dest, counters: DestCounters) -> Dest {
    d.counters = counters;
    d
}

fn daemon(role: SyncRole, sync_id: u32) -> SyncDaemon {
    SyncDaemon {
        role,
        interface: "sync0".into(),
        sync_id,
        max_len: None,
        group: None,
        port: None,
        ttl: None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `--start-daemon backup --mcast-interface sync0 --syncid 6
/// --sync-maxlen 1400 --mcast-group 224.0.0.99 --mcast-port 9000
/// --mcast-ttl 3`
fn backup_with_options() -> SyncDaemon {
    SyncDaemon {
        max_len: Some(1400),
        group: Some(ip("224.0.0.99")),
        port: Some(9000),
        ttl: Some(3),
        ..daemon(SyncRole::Backup, 6)
    }
}

/// A daemon started without options, as the kernel reports it: its
/// defaults filled in (`start_sync_thread`: group 224.0.0.81, port 8848,
/// TTL 1, the interface's MTU less the headers; `ipvsadm -L --daemon`
/// printed them).
fn with_defaults(d: SyncDaemon, max_len: u16, group: &str) -> SyncDaemon {
    SyncDaemon {
        max_len: Some(max_len),
        group: Some(ip(group)),
        port: d.port.or(Some(8848)),
        ttl: d.ttl.or(Some(1)),
        ..d
    }
}

// ---------------------------------------------------------------------
// Replies: every one the kernel sent, and what it says.

enum Value {
    Info(Info),
    Timeouts(Timeouts),
    Daemon(SyncDaemon),
    Service(Service),
    /// A destination, and its service's family.
    Dest(Family, Dest),
}

/// Every reply file (but nlctrl's, checked on its own) with its value,
/// dump entries in the order the kernel sent them: a service's
/// destinations newest first (`__ip_vs_update_dest` adds at the head of
/// `svc->destinations`). The one dump of all services comes in hash
/// order and is checked as a set (`list_all_dumps_every_service`).
fn replies() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut put = |name: &str, v: Value| out.push((name.to_string(), v));

    put(
        "list_empty.get_info.reply",
        // "IP Virtual Server version 1.2.1 (size=4096)"
        Value::Info(Info {
            version: 0x01_02_01,
            conn_table_size: 4096,
        }),
    );
    put(
        "timeout_get_default.get_config.reply",
        Value::Timeouts(Timeouts {
            tcp: Some(900),
            tcp_fin: Some(120),
            udp: Some(300),
        }),
    );
    put(
        "timeout_get.get_config.reply",
        Value::Timeouts(Timeouts {
            tcp: Some(900),
            tcp_fin: Some(30),
            udp: Some(300),
        }),
    );
    // The master before the backup (`ip_vs_genl_dump_daemons`).
    let master = with_defaults(daemon(SyncRole::Master, 5), 1472, "224.0.0.81");
    put("daemon_list.get_daemon.reply.1", Value::Daemon(master));
    put(
        "daemon_list.get_daemon.reply.2",
        Value::Daemon(backup_with_options()),
    );
    // An IPv6 group: the sync message's room shrinks by the IPv6 header.
    let mut master_v6 = daemon(SyncRole::Master, 7);
    master_v6.group = Some(ip("ff02::99"));
    put(
        "daemon_list_v6.get_daemon.reply.1",
        Value::Daemon(with_defaults(master_v6, 1452, "ff02::99")),
    );
    put(
        "daemon_list_v6.get_daemon.reply.2",
        Value::Daemon(backup_with_options()),
    );

    let v4 = Family::Ipv4;
    let v6 = Family::Ipv6;
    // One service per step, then its destinations.
    let steps: Vec<(&str, Service, Family, Vec<Dest>)> = vec![
        (
            "list_tcp_v4_wrr",
            tcp_v4_wrr(),
            v4,
            vec![dr(), nat_thresholds()],
        ),
        (
            "list_udp_v4_sh",
            udp_v4_sh(),
            v4,
            vec![
                tun_ipip_weight0(),
                tun_gre_csum(),
                tun_gue_remcsum(),
                tun_gue_csum(),
            ],
        ),
        ("list_sctp_v4", sctp_v4_rr(), v4, vec![sctp_dr()]),
        (
            "list_tcp_v4_persistent",
            tcp_v4_persistent(),
            v4,
            vec![nat_rs()],
        ),
        (
            "list_udp_v4_pe_sip",
            udp_v4_pe_sip(),
            v4,
            vec![nat_pe_sip()],
        ),
        ("list_fwmark_v4", fwmark_v4(), v4, vec![fwmark_v4_dr()]),
        ("list_tcp_v6", tcp_v6_sh(), v6, vec![nat_v6()]),
        ("list_udp_v6", udp_v6_ops(), v6, vec![tun_v4_in_v6()]),
        ("list_fwmark_v6", fwmark_v6(), v6, vec![fwmark_v6_dr()]),
        (
            "list_tcp_v4_edited",
            tcp_v4_edited(),
            v4,
            vec![dr(), nat_edited()],
        ),
        (
            "list_tcp_v4_stats",
            with_stats(tcp_v4_persistent(), traffic()),
            v4,
            vec![with_counters(nat_rs(), rs_counters(traffic()))],
        ),
        (
            "list_tcp_v4_rate",
            with_stats(tcp_v4_persistent(), traffic()),
            v4,
            vec![with_counters(nat_rs(), rs_counters(traffic()))],
        ),
        (
            "list_tcp_v4_conns",
            with_stats(tcp_v4_persistent(), traffic()),
            v4,
            vec![with_counters(nat_rs(), rs_counters(traffic()))],
        ),
        (
            "list_tcp_v4_zeroed",
            tcp_v4_persistent(),
            v4,
            vec![with_counters(nat_rs(), rs_counters(Stats::default()))],
        ),
    ];
    for (step, svc, family, dests) in steps {
        put(&format!("{step}.get_service.reply"), Value::Service(svc));
        push_dests(&mut put, &format!("{step}.get_dest"), family, dests);
    }
    // `ipvsadm -Ln`: a destinations dump per service, in ipvsadm's order.
    for (k, family, dests) in list_all_dests() {
        push_dests(&mut put, &format!("list_all.get_dest.{k}"), family, dests);
    }
    out
}

fn push_dests(put: &mut impl FnMut(&str, Value), base: &str, family: Family, dests: Vec<Dest>) {
    let n = dests.len();
    for (i, d) in dests.into_iter().enumerate() {
        let name = if n == 1 {
            format!("{base}.reply")
        } else {
            format!("{base}.reply.{}", i + 1)
        };
        put(&name, Value::Dest(family, d));
    }
}

/// The services of the table before the edits.
fn table() -> Vec<Service> {
    vec![
        tcp_v4_wrr(),
        udp_v4_sh(),
        sctp_v4_rr(),
        tcp_v4_persistent(),
        udp_v4_pe_sip(),
        fwmark_v4(),
        tcp_v6_sh(),
        udp_v6_ops(),
        fwmark_v6(),
    ]
}

/// `ipvsadm -Ln` asks for each service's destinations in its sorted
/// order: `list_all.get_dest.<k>`, the service, its destinations.
fn list_all_dests() -> Vec<(usize, Family, Vec<Dest>)> {
    let v4 = Family::Ipv4;
    let v6 = Family::Ipv6;
    vec![
        (1, v4, vec![dr(), nat_thresholds()]),
        (2, v4, vec![nat_rs()]),
        (
            3,
            v4,
            vec![
                tun_ipip_weight0(),
                tun_gre_csum(),
                tun_gue_remcsum(),
                tun_gue_csum(),
            ],
        ),
        (4, v4, vec![nat_pe_sip()]),
        (5, v4, vec![sctp_dr()]),
        (6, v6, vec![nat_v6()]),
        (7, v6, vec![tun_v4_in_v6()]),
        (8, v4, vec![fwmark_v4_dr()]),
        (9, v6, vec![fwmark_v6_dr()]),
    ]
}

fn list_all_keys() -> Vec<ServiceKey> {
    [
        "tcp:10.0.0.1:80",
        "tcp:10.0.0.1:443",
        "udp:10.0.0.1:53",
        "udp:10.0.0.1:5060",
        "sctp:10.0.0.1:9",
        "tcp:[2001:db8::1]:443",
        "udp:[2001:db8::1]:53",
        "fwmark:7",
        "fwmark:8:ipv6",
    ]
    .iter()
    .map(|k| key(k))
    .collect()
}

/// A reply's attributes; `cmd` is the command the kernel answers with.
fn data(name: &str, cmd: u8) -> Vec<u8> {
    let m = load(name);
    assert_eq!(nlmsg_type(&m), ipvs_family(), "{name}: not an IPVS message");
    assert_eq!(genl_cmd(&m), cmd, "{name}: the reply's command");
    genl_attrs(&m).to_vec()
}

#[test]
fn every_reply_decodes_to_the_value_the_commands_set() {
    for (name, value) in replies() {
        let reply_cmd = match value {
            Value::Info(_) => IPVS_CMD_SET_INFO,
            Value::Timeouts(_) => cmd::SET_CONFIG,
            Value::Daemon(_) => cmd::NEW_DAEMON,
            Value::Service(_) => cmd::NEW_SERVICE,
            Value::Dest(..) => cmd::NEW_DEST,
        };
        let attrs = data(&name, reply_cmd);
        match value {
            Value::Info(want) => {
                assert_eq!(codec::decode_info(&attrs).unwrap(), want, "{name}");
                assert_eq!(want.version_string(), "1.2.1");
            }
            Value::Timeouts(want) => {
                assert_eq!(codec::decode_timeouts(&attrs).unwrap(), want, "{name}")
            }
            Value::Daemon(want) => {
                assert_eq!(codec::decode_daemon(&attrs).unwrap(), want, "{name}")
            }
            Value::Service(want) => {
                assert_eq!(codec::decode_service(&attrs).unwrap(), want, "{name}")
            }
            Value::Dest(family, want) => {
                assert_eq!(codec::decode_dest(&attrs, family).unwrap(), want, "{name}")
            }
        }
    }
}

#[test]
fn list_all_dumps_every_service() {
    let names: Vec<String> = files("reply")
        .into_iter()
        .filter(|n| n.starts_with("list_all.get_service.reply."))
        .collect();
    let mut got: Vec<Service> = names
        .iter()
        .map(|n| codec::decode_service(&data(n, cmd::NEW_SERVICE)).unwrap())
        .collect();
    got.sort_by_key(|s| s.key);
    let mut want = table();
    want.sort_by_key(|s| s.key);
    assert_eq!(got, want);
}

#[test]
fn nlctrl_names_the_family_id_ipvsadm_then_used() {
    let reply = load("list_empty.ctrl_getfamily.reply");
    assert_eq!(nlmsg_type(&reply), GENL_ID_CTRL);
    let id = netlink::family_id(genl_attrs(&reply)).unwrap();
    // libnl read the same answer: every IPVS request carries its id.
    for name in files("request") {
        let m = load(&name);
        if nlmsg_type(&m) != GENL_ID_CTRL {
            assert_eq!(nlmsg_type(&m), id, "{name}");
        }
    }
}

#[test]
fn every_reply_the_kernel_sent_has_its_value_here() {
    let mut have: BTreeSet<String> = replies().into_iter().map(|(n, _)| n).collect();
    have.insert("list_empty.ctrl_getfamily.reply".into());
    let dumped: BTreeSet<String> = files("reply")
        .into_iter()
        .filter(|n| n.starts_with("list_all.get_service.reply."))
        .collect();
    assert_eq!(dumped.len(), table().len());
    have.extend(dumped);
    assert_eq!(files("reply"), have);
}

// ---------------------------------------------------------------------
// Requests: the codec's bytes are ipvsadm's.

struct Case {
    name: String,
    cmd: u8,
    attrs: Vec<u8>,
    normalise: Vec<Normalise>,
}

fn case(name: &str, cmd: u8, attrs: Vec<u8>, normalise: &[Normalise]) -> Case {
    Case {
        name: name.to_string(),
        cmd,
        attrs,
        normalise: normalise.to_vec(),
    }
}

fn op(o: &Op) -> (u8, Vec<u8>) {
    codec::encode_op(o)
}

fn add_service(s: Service) -> (u8, Vec<u8>) {
    op(&Op::AddService {
        key: s.key,
        settings: s.settings,
    })
}

fn add_dest(service: &str, d: Dest) -> (u8, Vec<u8>) {
    op(&Op::AddDest {
        service: key(service),
        addr: d.addr,
        settings: d.settings,
    })
}

/// Every request ipvsadm sent but the family lookup (checked on its own),
/// with the codec's attributes for the same command.
fn requests() -> Vec<Case> {
    let mut out = Vec::new();
    let mut encoded = |name: &str, (cmd, attrs): (u8, Vec<u8>), n: &[Normalise]| {
        out.push(case(name, cmd, attrs, n));
    };

    // Services.
    for (step, s) in [
        ("add_service_tcp_v4_wrr", tcp_v4_wrr()),
        ("add_service_udp_v4_sh_flags_ops", udp_v4_sh()),
        ("add_service_sctp_v4_rr", sctp_v4_rr()),
        ("add_service_tcp_v4_persistent", tcp_v4_persistent()),
        ("add_service_udp_v4_pe_sip", udp_v4_pe_sip()),
        ("add_service_fwmark_v4", fwmark_v4()),
        ("add_service_tcp_v6_sh_persistent", tcp_v6_sh()),
        ("add_service_udp_v6_ops", udp_v6_ops()),
        ("add_service_fwmark_v6", fwmark_v6()),
        ("add_service_exists", tcp_v4_wrr()),
    ] {
        encoded(&format!("{step}.new_service.request"), add_service(s), &[]);
    }
    let edited = tcp_v4_edited();
    encoded(
        "edit_service_tcp_v4.set_service.request",
        op(&Op::EditService {
            key: edited.key,
            settings: edited.settings,
        }),
        &[],
    );
    for (step, k) in [
        ("del_service", "tcp:10.0.0.1:80"),
        ("del_service_fwmark_v6", "fwmark:8:ipv6"),
    ] {
        encoded(
            &format!("{step}.del_service.request"),
            op(&Op::DelService { key: key(k) }),
            &[service_key_only],
        );
    }

    // Destinations.
    for (step, svc, d) in [
        (
            "add_dest_nat_thresholds",
            "tcp:10.0.0.1:80",
            nat_thresholds(),
        ),
        ("add_dest_dr", "tcp:10.0.0.1:80", dr()),
        ("add_dest_nat_rs", "tcp:10.0.0.1:443", nat_rs()),
        ("add_dest_tun_gue_csum", "udp:10.0.0.1:53", tun_gue_csum()),
        (
            "add_dest_tun_gue_remcsum",
            "udp:10.0.0.1:53",
            tun_gue_remcsum(),
        ),
        ("add_dest_tun_gre_csum", "udp:10.0.0.1:53", tun_gre_csum()),
        (
            "add_dest_tun_ipip_weight0",
            "udp:10.0.0.1:53",
            tun_ipip_weight0(),
        ),
        ("add_dest_sctp_dr_threshold", "sctp:10.0.0.1:9", sctp_dr()),
        ("add_dest_nat_pe_sip", "udp:10.0.0.1:5060", nat_pe_sip()),
        ("add_dest_fwmark_v4_dr", "fwmark:7", fwmark_v4_dr()),
        ("add_dest_nat_v6", "tcp:[2001:db8::1]:443", nat_v6()),
        ("add_dest_fwmark_v6_dr", "fwmark:8:ipv6", fwmark_v6_dr()),
    ] {
        encoded(
            &format!("{step}.new_dest.request"),
            add_dest(svc, d),
            &[service_key_only],
        );
    }
    encoded(
        "add_dest_tun_v4_in_v6.new_dest.request",
        add_dest("udp:[2001:db8::1]:53", tun_v4_in_v6()),
        &[service_key_only, ipv4_dest_addr_tail_zeroed],
    );
    let d = nat_edited();
    encoded(
        "edit_dest_nat.set_dest.request",
        op(&Op::EditDest {
            service: key("tcp:10.0.0.1:80"),
            addr: d.addr,
            settings: d.settings,
        }),
        &[service_key_only],
    );
    for (step, svc, a) in [
        ("del_dest", "tcp:10.0.0.1:80", "10.0.0.3:80"),
        ("del_dest_v6", "tcp:[2001:db8::1]:443", "[2001:db8::2]:8443"),
    ] {
        encoded(
            &format!("{step}.del_dest.request"),
            op(&Op::DelDest {
                service: key(svc),
                addr: addr(a),
            }),
            &[service_key_only, dest_key_only],
        );
    }

    // Reads. A dump of everything, GET_INFO, GET_CONFIG and GET_DAEMON
    // carry no attributes (`Kernel` sends them so).
    for name in [
        "list_empty.get_info.request",
        "list_empty.get_service.request",
        "list_all.get_service.request",
        "timeout_get_default.get_config.request",
        "timeout_get.get_config.request",
        "daemon_list.get_daemon.request",
        "daemon_list_v6.get_daemon.request",
    ] {
        let cmd = match name.split('.').nth(1).unwrap() {
            "get_info" => cmd::GET_INFO,
            "get_service" => cmd::GET_SERVICE,
            "get_config" => cmd::GET_CONFIG,
            _ => cmd::GET_DAEMON,
        };
        encoded(name, (cmd, Vec::new()), &[]);
    }
    // One service, and its destinations (`Kernel::service`,
    // `Kernel::fill_dests`).
    for (step, k) in [
        ("list_tcp_v4_wrr", "tcp:10.0.0.1:80"),
        ("list_udp_v4_sh", "udp:10.0.0.1:53"),
        ("list_sctp_v4", "sctp:10.0.0.1:9"),
        ("list_tcp_v4_persistent", "tcp:10.0.0.1:443"),
        ("list_udp_v4_pe_sip", "udp:10.0.0.1:5060"),
        ("list_fwmark_v4", "fwmark:7"),
        ("list_tcp_v6", "tcp:[2001:db8::1]:443"),
        ("list_udp_v6", "udp:[2001:db8::1]:53"),
        ("list_fwmark_v6", "fwmark:8:ipv6"),
        ("list_tcp_v4_edited", "tcp:10.0.0.1:80"),
        ("list_tcp_v4_stats", "tcp:10.0.0.1:443"),
        ("list_tcp_v4_rate", "tcp:10.0.0.1:443"),
        ("list_tcp_v4_conns", "tcp:10.0.0.1:443"),
        ("list_tcp_v4_zeroed", "tcp:10.0.0.1:443"),
    ] {
        let attrs = codec::dests_request(&key(k));
        encoded(
            &format!("{step}.get_service.request"),
            (cmd::GET_SERVICE, attrs.clone()),
            &[service_key_only],
        );
        encoded(
            &format!("{step}.get_dest.request"),
            (cmd::GET_DEST, attrs),
            &[],
        );
    }
    encoded(
        "list_missing.get_service.request",
        (
            cmd::GET_SERVICE,
            codec::dests_request(&key("tcp:10.9.9.9:1")),
        ),
        &[service_key_only],
    );
    for (i, k) in list_all_keys().iter().enumerate() {
        encoded(
            &format!("list_all.get_dest.{}.request", i + 1),
            (cmd::GET_DEST, codec::dests_request(k)),
            &[],
        );
    }

    // Counters, timeouts, flush.
    let rs_service = key("tcp:10.0.0.1:443");
    encoded(
        "zero_service.zero.request",
        (cmd::ZERO, codec::zero_request(Some(&rs_service))),
        &[service_key_only],
    );
    encoded(
        "zero_all.zero.request",
        (cmd::ZERO, codec::zero_request(None)),
        &[],
    );
    encoded(
        "timeout_set_all.set_config.request",
        (
            cmd::SET_CONFIG,
            codec::timeouts_request(&Timeouts {
                tcp: Some(900),
                tcp_fin: Some(60),
                udp: Some(300),
            }),
        ),
        &[],
    );
    encoded(
        "timeout_set_fin_only.set_config.request",
        (
            cmd::SET_CONFIG,
            codec::timeouts_request(&Timeouts {
                tcp: None,
                tcp_fin: Some(30),
                udp: None,
            }),
        ),
        &[zero_timeouts_dropped],
    );
    encoded("flush.flush.request", (cmd::FLUSH, Vec::new()), &[]);

    // Sync daemons.
    let mut master_v6 = daemon(SyncRole::Master, 7);
    master_v6.group = Some(ip("ff02::99"));
    for (step, d) in [
        ("daemon_start_master", daemon(SyncRole::Master, 5)),
        ("daemon_start_backup_options", backup_with_options()),
        ("daemon_start_master_v6", master_v6),
    ] {
        encoded(
            &format!("{step}.new_daemon.request"),
            (cmd::NEW_DAEMON, codec::daemon_start_request(&d)),
            &[],
        );
    }
    for (step, role) in [
        ("daemon_stop_master", SyncRole::Master),
        ("daemon_stop_master_v6", SyncRole::Master),
        ("daemon_stop_backup", SyncRole::Backup),
    ] {
        encoded(
            &format!("{step}.del_daemon.request"),
            (cmd::DEL_DAEMON, codec::daemon_stop_request(role)),
            &[daemon_state_only],
        );
    }
    out
}

#[track_caller]
fn check_requests(cmds: &[u8]) {
    let cases: Vec<Case> = requests()
        .into_iter()
        .filter(|c| cmds.contains(&c.cmd))
        .collect();
    assert!(!cases.is_empty());
    for c in cases {
        let mut theirs = sent(&c.name);
        assert_eq!(genl_cmd(&theirs), c.cmd, "{}: the command", c.name);
        for n in &c.normalise {
            theirs = n(&theirs);
        }
        let ours = framed_like(&theirs, c.cmd, &c.attrs);
        assert_eq!(
            hex(&ours),
            hex(&theirs),
            "{}: the codec's bytes (left), ipvsadm's (right)",
            c.name
        );
    }
}

#[test]
fn service_requests_are_the_bytes_ipvsadm_sent() {
    check_requests(&[cmd::NEW_SERVICE, cmd::SET_SERVICE, cmd::DEL_SERVICE]);
}

#[test]
fn destination_requests_are_the_bytes_ipvsadm_sent() {
    check_requests(&[cmd::NEW_DEST, cmd::SET_DEST, cmd::DEL_DEST]);
}

#[test]
fn reads_ask_what_ipvsadm_asked() {
    check_requests(&[
        cmd::GET_SERVICE,
        cmd::GET_DEST,
        cmd::GET_INFO,
        cmd::GET_CONFIG,
        cmd::GET_DAEMON,
    ]);
}

#[test]
fn zero_timeout_and_flush_requests_are_the_bytes_ipvsadm_sent() {
    check_requests(&[cmd::ZERO, cmd::SET_CONFIG, cmd::FLUSH]);
}

#[test]
fn sync_daemon_requests_are_the_bytes_ipvsadm_sent() {
    check_requests(&[cmd::NEW_DAEMON, cmd::DEL_DAEMON]);
}

#[test]
fn the_family_lookup_is_the_one_libnl_sent() {
    let theirs = sent("list_empty.ctrl_getfamily.request");
    assert_eq!(genl_cmd(&theirs), CTRL_CMD_GETFAMILY);
    let mut ours = Vec::new();
    netlink::get_family_request(
        &mut ours,
        nlmsg_seq(&theirs),
        codec::FAMILY_NAME,
        nlmsg_flags(&theirs),
    );
    assert_eq!(hex(&ours), hex(&theirs));
}

#[test]
fn every_request_ipvsadm_sent_is_compared() {
    let mut have: BTreeSet<String> = requests().into_iter().map(|c| c.name).collect();
    have.insert("list_empty.ctrl_getfamily.request".into());
    assert_eq!(files("request"), have);
}

// ---------------------------------------------------------------------
// Every attribute the kernel sent is read or deliberately ignored.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Use {
    /// The decoder reads it: a changed value changes what it decodes (in
    /// at least one reply: a tunnel parameter matters only to tunnels).
    Read,
    /// Nested attributes, each listed in their own table.
    Nest(&'static [(u16, &'static str, Use)]),
    /// The decoder leaves it, for this reason: a changed value changes
    /// nothing it decodes, in any reply.
    Ignored(&'static str),
}

use Use::{Ignored, Nest, Read};

const PAD: Use = Ignored("alignment padding of the u64s");
/// The 32-bit counters a kernel sends beside the 64-bit ones hold the
/// same values, wrapping (`ip_vs_genl_fill_stats` fills both from the
/// same `ip_vs_kstats`); the decoder reads them only from a kernel
/// before 4.1, which sends no `*_STATS64`.
const SUPERSEDED: Use = Ignored("superseded by the STATS64 beside it");

const STATS: &[(u16, &str, Use)] = &[
    (1, "IPVS_STATS_ATTR_CONNS", Read),
    (2, "IPVS_STATS_ATTR_INPKTS", Read),
    (3, "IPVS_STATS_ATTR_OUTPKTS", Read),
    (4, "IPVS_STATS_ATTR_INBYTES", Read),
    (5, "IPVS_STATS_ATTR_OUTBYTES", Read),
    (6, "IPVS_STATS_ATTR_CPS", Read),
    (7, "IPVS_STATS_ATTR_INPPS", Read),
    (8, "IPVS_STATS_ATTR_OUTPPS", Read),
    (9, "IPVS_STATS_ATTR_INBPS", Read),
    (10, "IPVS_STATS_ATTR_OUTBPS", Read),
    (11, "IPVS_STATS_ATTR_PAD", PAD),
];

const STATS32: &[(u16, &str, Use)] = &[
    (1, "IPVS_STATS_ATTR_CONNS", SUPERSEDED),
    (2, "IPVS_STATS_ATTR_INPKTS", SUPERSEDED),
    (3, "IPVS_STATS_ATTR_OUTPKTS", SUPERSEDED),
    (4, "IPVS_STATS_ATTR_INBYTES", SUPERSEDED),
    (5, "IPVS_STATS_ATTR_OUTBYTES", SUPERSEDED),
    (6, "IPVS_STATS_ATTR_CPS", SUPERSEDED),
    (7, "IPVS_STATS_ATTR_INPPS", SUPERSEDED),
    (8, "IPVS_STATS_ATTR_OUTPPS", SUPERSEDED),
    (9, "IPVS_STATS_ATTR_INBPS", SUPERSEDED),
    (10, "IPVS_STATS_ATTR_OUTBPS", SUPERSEDED),
    (11, "IPVS_STATS_ATTR_PAD", PAD),
];

const SERVICE: &[(u16, &str, Use)] = &[
    (1, "IPVS_SVC_ATTR_AF", Read),
    (2, "IPVS_SVC_ATTR_PROTOCOL", Read),
    (3, "IPVS_SVC_ATTR_ADDR", Read),
    (4, "IPVS_SVC_ATTR_PORT", Read),
    (5, "IPVS_SVC_ATTR_FWMARK", Read),
    (6, "IPVS_SVC_ATTR_SCHED_NAME", Read),
    (7, "IPVS_SVC_ATTR_FLAGS", Read),
    (8, "IPVS_SVC_ATTR_TIMEOUT", Read),
    (9, "IPVS_SVC_ATTR_NETMASK", Read),
    (10, "IPVS_SVC_ATTR_STATS", Nest(STATS32)),
    (11, "IPVS_SVC_ATTR_PE_NAME", Read),
    (12, "IPVS_SVC_ATTR_STATS64", Nest(STATS)),
];

const DEST: &[(u16, &str, Use)] = &[
    (1, "IPVS_DEST_ATTR_ADDR", Read),
    (2, "IPVS_DEST_ATTR_PORT", Read),
    (3, "IPVS_DEST_ATTR_FWD_METHOD", Read),
    (4, "IPVS_DEST_ATTR_WEIGHT", Read),
    (5, "IPVS_DEST_ATTR_U_THRESH", Read),
    (6, "IPVS_DEST_ATTR_L_THRESH", Read),
    (7, "IPVS_DEST_ATTR_ACTIVE_CONNS", Read),
    (8, "IPVS_DEST_ATTR_INACT_CONNS", Read),
    (9, "IPVS_DEST_ATTR_PERSIST_CONNS", Read),
    (10, "IPVS_DEST_ATTR_STATS", Nest(STATS32)),
    (11, "IPVS_DEST_ATTR_ADDR_FAMILY", Read),
    (12, "IPVS_DEST_ATTR_STATS64", Nest(STATS)),
    (13, "IPVS_DEST_ATTR_TUN_TYPE", Read),
    (14, "IPVS_DEST_ATTR_TUN_PORT", Read),
    (15, "IPVS_DEST_ATTR_TUN_FLAGS", Read),
];

const DAEMON: &[(u16, &str, Use)] = &[
    (1, "IPVS_DAEMON_ATTR_STATE", Read),
    (2, "IPVS_DAEMON_ATTR_MCAST_IFN", Read),
    (3, "IPVS_DAEMON_ATTR_SYNC_ID", Read),
    (4, "IPVS_DAEMON_ATTR_SYNC_MAXLEN", Read),
    (5, "IPVS_DAEMON_ATTR_MCAST_GROUP", Read),
    (6, "IPVS_DAEMON_ATTR_MCAST_GROUP6", Read),
    (7, "IPVS_DAEMON_ATTR_MCAST_PORT", Read),
    (8, "IPVS_DAEMON_ATTR_MCAST_TTL", Read),
];

/// What a reply carries at its top level, by its command: the kernel
/// answers GET_SERVICE with NEW_SERVICE, GET_DEST with NEW_DEST,
/// GET_DAEMON with NEW_DAEMON, GET_CONFIG with SET_CONFIG and GET_INFO
/// with SET_INFO (`ip_vs_genl_get_cmd`, the dump functions).
fn top_level(cmd: u8) -> &'static [(u16, &'static str, Use)] {
    match cmd {
        cmd::NEW_SERVICE => &[(1, "IPVS_CMD_ATTR_SERVICE", Nest(SERVICE))],
        cmd::NEW_DEST => &[(2, "IPVS_CMD_ATTR_DEST", Nest(DEST))],
        cmd::NEW_DAEMON => &[(3, "IPVS_CMD_ATTR_DAEMON", Nest(DAEMON))],
        cmd::SET_CONFIG => &[
            (4, "IPVS_CMD_ATTR_TIMEOUT_TCP", Read),
            (5, "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", Read),
            (6, "IPVS_CMD_ATTR_TIMEOUT_UDP", Read),
        ],
        IPVS_CMD_SET_INFO => &[
            (1, "IPVS_INFO_ATTR_VERSION", Read),
            (2, "IPVS_INFO_ATTR_CONN_TAB_SIZE", Read),
        ],
        c => panic!("a reply to command {c}"),
    }
}

/// nlctrl's answer: the codec needs the id alone (it asked by name).
const CTRL: &[(u16, &str, Use)] = &[
    (1, "CTRL_ATTR_FAMILY_ID", Read),
    (2, "CTRL_ATTR_FAMILY_NAME", Ignored("the name asked for")),
    (
        3,
        "CTRL_ATTR_VERSION",
        Ignored("requests say version 1, IPVS_GENL_VERSION"),
    ),
    (4, "CTRL_ATTR_HDRSIZE", Ignored("IPVS has no family header")),
    (
        5,
        "CTRL_ATTR_MAXATTR",
        Ignored("the codec knows IPVS's attributes"),
    ),
    (
        6,
        "CTRL_ATTR_OPS",
        Ignored("the codec knows IPVS's commands"),
    ),
    (7, "CTRL_ATTR_MCAST_GROUPS", Ignored("IPVS has none")),
];

/// The decoded value of a reply, as text (errors included).
fn decoded(cmd: u8, family: u16, attrs: &[u8]) -> String {
    if family == GENL_ID_CTRL {
        return format!("{:?}", netlink::family_id(attrs));
    }
    match cmd {
        cmd::NEW_SERVICE => format!("{:?}", codec::decode_service(attrs)),
        cmd::NEW_DEST => format!("{:?}", codec::decode_dest(attrs, Family::Ipv4)),
        cmd::NEW_DAEMON => format!("{:?}", codec::decode_daemon(attrs)),
        cmd::SET_CONFIG => format!("{:?}", codec::decode_timeouts(attrs)),
        IPVS_CMD_SET_INFO => format!("{:?}", codec::decode_info(attrs)),
        c => panic!("a reply to command {c}"),
    }
}

/// Each attribute's path (types from the top) and value range in `buf`.
fn leaves(
    buf: &[u8],
    base: usize,
    table: &'static [(u16, &'static str, Use)],
    path: &mut Vec<&'static str>,
    out: &mut Vec<(Vec<&'static str>, Use, std::ops::Range<usize>)>,
    unknown: &mut Vec<String>,
) {
    let mut at = 0;
    while at < buf.len() {
        let len = u16_at(buf, at) as usize;
        let kind = u16_at(buf, at + 2) & NLA_TYPE_MASK;
        let value = at + 4..at + len;
        match table.iter().find(|(k, ..)| *k == kind) {
            None => unknown.push(format!("{} / attribute {kind}", path.join(" / "))),
            Some((_, name, Nest(inner))) => {
                path.push(name);
                leaves(
                    &buf[value.clone()],
                    base + value.start,
                    inner,
                    path,
                    out,
                    unknown,
                );
                path.pop();
            }
            Some((_, name, u)) => {
                let mut p = path.clone();
                p.push(name);
                out.push((p, *u, base + value.start..base + value.end));
            }
        }
        at += (len + 3) & !3;
    }
}

#[test]
fn every_attribute_the_kernel_sent_is_read_or_ignored_for_a_reason() {
    // For each attribute: whether changing it changed a decoded value.
    let mut changed: std::collections::BTreeMap<Vec<&str>, (Use, bool)> = Default::default();
    let mut unknown = Vec::new();
    for name in files("reply") {
        let m = load(&name);
        let (family, cmd) = (nlmsg_type(&m), genl_cmd(&m));
        let table = if family == GENL_ID_CTRL {
            CTRL
        } else {
            top_level(cmd)
        };
        let mut found = Vec::new();
        let before = unknown.len();
        leaves(
            genl_attrs(&m),
            20,
            table,
            &mut Vec::new(),
            &mut found,
            &mut unknown,
        );
        for u in &mut unknown[before..] {
            *u = format!("{name}: {u}");
        }
        let original = decoded(cmd, family, genl_attrs(&m));
        for (path, u, range) in found {
            // The value's first byte flipped (an empty value, padding,
            // has nothing to change).
            let mut changed_msg = m.clone();
            let differs = !range.is_empty() && {
                changed_msg[range.start] ^= 0x01;
                decoded(cmd, family, genl_attrs(&changed_msg)) != original
            };
            let entry = changed.entry(path).or_insert((u, false));
            entry.1 |= differs;
        }
    }
    assert!(
        unknown.is_empty(),
        "attributes the kernel sent that the codec neither reads nor lists as ignored:\n{}",
        unknown.join("\n")
    );
    let mut wrong = Vec::new();
    for (path, (u, differs)) in &changed {
        match (u, differs) {
            (Read, false) => wrong.push(format!(
                "{}: listed as read, but changing it never changed a decoded value",
                path.join(" / ")
            )),
            (Ignored(why), true) => wrong.push(format!(
                "{}: listed as ignored ({why}), but changing it changed a decoded value",
                path.join(" / ")
            )),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // And the capture has every attribute the decoder reads.
    let mut readable = BTreeSet::new();
    for table in [
        CTRL,
        top_level(cmd::NEW_SERVICE),
        top_level(cmd::NEW_DEST),
        top_level(cmd::NEW_DAEMON),
        top_level(cmd::SET_CONFIG),
        top_level(IPVS_CMD_SET_INFO),
    ] {
        read_paths(table, &mut Vec::new(), &mut readable);
    }
    let seen: BTreeSet<Vec<&str>> = changed.into_keys().collect();
    let missing: Vec<String> = readable.difference(&seen).map(|p| p.join(" / ")).collect();
    assert!(missing.is_empty(), "no reply carries {missing:?}");
}

fn read_paths(
    table: &'static [(u16, &'static str, Use)],
    path: &mut Vec<&'static str>,
    out: &mut BTreeSet<Vec<&'static str>>,
) {
    for (_, name, u) in table {
        path.push(name);
        match u {
            Read => {
                out.insert(path.clone());
            }
            Nest(inner) => read_paths(inner, path, out),
            Ignored(_) => {}
        }
        path.pop();
    }
}

// ---------------------------------------------------------------------
// Acknowledgements, errors, ends of dumps.

#[test]
fn acknowledgements_errors_and_dump_ends_classify_as_what_they_are() {
    let errors = [
        // A second `-A` of the same service (`ip_vs_add_service`).
        ("add_service_exists.new_service.error", libc::EEXIST),
        // A service that is not there (`ip_vs_genl_get_cmd`).
        ("list_missing.get_service.error", libc::ESRCH),
    ];
    assert_eq!(
        files("error"),
        errors.iter().map(|(n, _)| n.to_string()).collect()
    );
    for (name, errno) in errors {
        let m = load(name);
        let msgs = netlink::messages(&m).unwrap();
        assert_eq!(msgs.len(), 1, "{name}");
        // ipvsadm sets neither NETLINK_CAP_ACK nor NETLINK_EXT_ACK: the
        // whole request comes back, and no text.
        let request = load(&name.replace(".error", ".request"));
        assert_eq!(&m[20..], &request[..], "{name}: the request echoed");
        assert_eq!(
            netlink::classify(&msgs[0]).unwrap(),
            Reply::Error {
                errno,
                message: None
            },
            "{name}"
        );
    }
    for name in files("ack") {
        let m = load(&name);
        let msgs = netlink::messages(&m).unwrap();
        assert_eq!(netlink::classify(&msgs[0]).unwrap(), Reply::Ack, "{name}");
    }
    for name in files("done") {
        let m = load(&name);
        let msgs = netlink::messages(&m).unwrap();
        assert_eq!(netlink::classify(&msgs[0]).unwrap(), Reply::Done, "{name}");
    }
    assert!(files("ack").len() > 40 && files("done").len() > 20);
}

#[test]
fn a_dump_read_as_one_datagram_splits_into_its_messages() {
    // The kernel packs a dump's entries into datagrams of whole,
    // 4-aligned messages, the end of the dump last.
    let names = [
        "list_udp_v4_sh.get_dest.reply.1",
        "list_udp_v4_sh.get_dest.reply.2",
        "list_udp_v4_sh.get_dest.reply.3",
        "list_udp_v4_sh.get_dest.reply.4",
        "list_udp_v4_sh.get_dest.done",
    ];
    let datagram: Vec<u8> = names.iter().flat_map(|n| load(n)).collect();
    let msgs = netlink::messages(&datagram).unwrap();
    assert_eq!(msgs.len(), names.len());
    let request = load("list_udp_v4_sh.get_dest.request");
    let mut dests = Vec::new();
    for m in &msgs {
        assert_eq!(m.seq, nlmsg_seq(&request));
        match netlink::classify(m).unwrap() {
            Reply::Data { cmd, attrs } => {
                assert_eq!(cmd, cmd::NEW_DEST);
                dests.push(codec::decode_dest(attrs, Family::Ipv4).unwrap().addr);
            }
            Reply::Done => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        dests,
        ["10.0.0.8:53", "10.0.0.7:53", "10.0.0.6:53", "10.0.0.5:53"].map(addr)
    );
}
