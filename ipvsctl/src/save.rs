//! ipvsadm's rule format, both ways: what `ipvsadm -S -n` prints and
//! `ipvsadm -R` reads.
//!
//! ```text
//! -A -t 10.0.0.1:80 -s rr
//! -a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1
//! -A -u 10.0.0.1:53 -s sh -o -b sh-fallback,sh-port
//! -a -u 10.0.0.1:53 -r 10.0.0.5:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-nocsum
//! -A -f 7 -s wlc -p 300 -M 255.255.255.0
//! -A -t [2001:db8::1]:443 -s lc -p 60 -M 64
//! ```
//!
//! The option order is ipvsadm 1.31's (`print_service_entry` in its
//! ipvsadm.c). One difference: ipvsadm 1.31 does not print thresholds,
//! so a save of its own loses them; this module prints `-x`/`-y` when
//! they are set (ipvsadm -R reads them), so nothing is lost through
//! `ipvsctl save`.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::reconcile::Op;
use crate::types::{
    DestSettings, Family, Forwarding, Netmask, Protocol, ServiceKey, ServiceSettings, Table,
    Tunnel, TunnelChecksum, TunnelType,
};

/// ipvsadm's defaults (`DEF_SCHED`, the `-p` timeout without a value).
pub const DEFAULT_SCHEDULER: &str = "wlc";
pub const DEFAULT_PERSISTENCE: u32 = 360;

/// One line of a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Op(Op),
    /// `-C`: delete every service.
    Clear,
}

/// A line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// `-t 10.0.0.1:80`, `-f 7 -6`.
pub fn service_spec(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Addr { protocol, addr } => {
            let opt = match protocol {
                Protocol::Tcp => "-t",
                Protocol::Udp => "-u",
                Protocol::Sctp => "--sctp-service",
            };
            format!("{opt} {addr}")
        }
        ServiceKey::Fwmark { family, mark } => match family {
            Family::Ipv4 => format!("-f {mark}"),
            Family::Ipv6 => format!("-f {mark} -6"),
        },
    }
}

fn service_options(out: &mut String, s: &ServiceSettings) {
    let _ = write!(out, " -s {}", s.scheduler);
    if let Some(t) = s.persistence {
        let _ = write!(out, " -p {t}");
        if !s.netmask.is_full() {
            let _ = write!(out, " -M {}", s.netmask);
        }
    }
    if let Some(pe) = &s.pe {
        let _ = write!(out, " --pe {pe}");
    }
    if s.one_packet {
        out.push_str(" -o");
    }
    if !s.sched_flags.is_empty() {
        let _ = write!(out, " -b {}", s.sched_flags.names(&s.scheduler).join(","));
    }
}

fn forwarding_option(f: Forwarding) -> &'static str {
    match f {
        Forwarding::Masq => "-m",
        Forwarding::Tunnel => "-i",
        // ipvsadm prints a local or bypass destination as gatewaying too.
        Forwarding::Route | Forwarding::Local | Forwarding::Bypass => "-g",
    }
}

fn dest_options(out: &mut String, d: &DestSettings) {
    let _ = write!(out, " {} -w {}", forwarding_option(d.forwarding), d.weight);
    if d.upper_threshold != 0 {
        let _ = write!(out, " -x {}", d.upper_threshold);
    }
    if d.lower_threshold != 0 {
        let _ = write!(out, " -y {}", d.lower_threshold);
    }
    if d.forwarding == Forwarding::Tunnel {
        let t = d.tunnel;
        let _ = write!(out, " --tun-type {}", t.kind.name());
        if t.kind == TunnelType::Gue {
            let _ = write!(out, " --tun-port {}", t.port);
        }
        if t.kind != TunnelType::Ipip {
            out.push_str(match t.checksum {
                TunnelChecksum::None => " --tun-nocsum",
                TunnelChecksum::Checksum => " --tun-csum",
                TunnelChecksum::Remote => " --tun-remcsum",
            });
        }
    }
}

/// One operation as an ipvsadm command line (`-A`, `-E`, `-D`, `-a`,
/// `-e`, `-d`).
pub fn op_line(op: &Op) -> String {
    let mut out = String::new();
    match op {
        Op::AddService { key, settings } | Op::EditService { key, settings } => {
            let c = if matches!(op, Op::AddService { .. }) {
                "-A"
            } else {
                "-E"
            };
            let _ = write!(out, "{c} {}", service_spec(key));
            service_options(&mut out, settings);
        }
        Op::DelService { key } => {
            let _ = write!(out, "-D {}", service_spec(key));
        }
        Op::AddDest {
            service,
            addr,
            settings,
        }
        | Op::EditDest {
            service,
            addr,
            settings,
        } => {
            let c = if matches!(op, Op::AddDest { .. }) {
                "-a"
            } else {
                "-e"
            };
            let _ = write!(out, "{c} {} -r {addr}", service_spec(service));
            dest_options(&mut out, settings);
        }
        Op::DelDest { service, addr } => {
            let _ = write!(out, "-d {} -r {addr}", service_spec(service));
        }
    }
    out
}

/// The table as `ipvsadm -S -n` prints it: each service, then its
/// destinations.
pub fn render(table: &Table) -> String {
    let mut out = String::new();
    for svc in &table.services {
        out.push_str(&op_line(&Op::AddService {
            key: svc.key,
            settings: svc.settings.clone(),
        }));
        out.push('\n');
        for d in &svc.dests {
            out.push_str(&op_line(&Op::AddDest {
                service: svc.key,
                addr: d.addr,
                settings: d.settings,
            }));
            out.push('\n');
        }
    }
    out
}

/// The commands of a rule file, in order. Blank lines and `#` comments
/// are skipped.
pub fn parse(text: &str) -> Result<Vec<Command>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(cmd) = parse_line(line, i + 1)? {
            out.push(cmd);
        }
    }
    Ok(out)
}

/// The table a rule file builds from an empty one (what `ipvsadm -R`
/// leaves after `ipvsadm -C`).
pub fn parse_table(text: &str) -> Result<Table, ParseError> {
    let mut mem = crate::memory::Memory::default();
    for (i, line) in text.lines().enumerate() {
        let Some(cmd) = parse_line(line, i + 1)? else {
            continue;
        };
        match cmd {
            Command::Clear => mem = crate::memory::Memory::default(),
            Command::Op(op) => {
                use crate::reconcile::Dataplane;
                mem.apply(std::slice::from_ref(&op))
                    .map_err(|e| ParseError {
                        line: i + 1,
                        column: 1,
                        message: e.to_string(),
                    })?;
            }
        }
    }
    Ok(mem.table())
}

struct Token<'a> {
    text: &'a str,
    column: usize,
}

fn tokens(line: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push(Token {
                    text: &line[s..i],
                    column: line[..s].chars().count() + 1,
                });
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(Token {
            text: &line[s..],
            column: line[..s].chars().count() + 1,
        });
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    AddService,
    EditService,
    DelService,
    AddDest,
    EditDest,
    DelDest,
    Clear,
}

fn parse_line(line: &str, lineno: usize) -> Result<Option<Command>, ParseError> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let toks = tokens(line);
    let err = |column: usize, message: String| ParseError {
        line: lineno,
        column,
        message,
    };
    let mut verb: Option<(Verb, usize)> = None;
    let mut svc: Option<(&str, &str, usize)> = None; // option, value, column
    let mut ipv6 = false;
    let mut scheduler: Option<String> = None;
    let mut persistence: Option<u32> = None;
    let mut netmask: Option<(&str, usize)> = None;
    let mut pe: Option<String> = None;
    let mut one_packet = false;
    let mut sched_flags = crate::types::SchedFlags::default();
    let mut real: Option<(&str, usize)> = None;
    let mut forwarding: Option<Forwarding> = None;
    let mut weight: Option<u32> = None;
    let mut upper = 0u32;
    let mut lower = 0u32;
    let mut tunnel = Tunnel::default();

    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        // `--long=value` is the same as `--long value`.
        let (opt, inline) = match t.text.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o, Some(v)),
            _ => (t.text, None),
        };
        let mut value = |what: &str| -> Result<(&str, usize), ParseError> {
            if let Some(v) = inline {
                return Ok((v, t.column + opt.len() + 1));
            }
            i += 1;
            toks.get(i)
                .map(|v| (v.text, v.column))
                .ok_or_else(|| err(t.column, format!("{opt} needs {what}")))
        };
        let number = |(v, col): (&str, usize), what: &str| -> Result<u32, ParseError> {
            v.parse::<u32>()
                .map_err(|_| err(col, format!("\"{v}\" is not {what}")))
        };
        let mut set_verb = |v: Verb| -> Result<(), ParseError> {
            if verb.is_some() {
                return Err(err(t.column, format!("a second command {opt} on one line")));
            }
            verb = Some((v, t.column));
            Ok(())
        };
        match opt {
            "-A" | "--add-service" => set_verb(Verb::AddService)?,
            "-E" | "--edit-service" => set_verb(Verb::EditService)?,
            "-D" | "--delete-service" => set_verb(Verb::DelService)?,
            "-a" | "--add-server" => set_verb(Verb::AddDest)?,
            "-e" | "--edit-server" => set_verb(Verb::EditDest)?,
            "-d" | "--delete-server" => set_verb(Verb::DelDest)?,
            "-C" | "--clear" => set_verb(Verb::Clear)?,
            "-t" | "--tcp-service" | "-u" | "--udp-service" | "--sctp-service" | "-f"
            | "--fwmark-service" => {
                if svc.is_some() {
                    return Err(err(t.column, "a second service on one line".into()));
                }
                let (v, col) = value("a service address")?;
                svc = Some((opt, v, col));
            }
            "-6" | "--ipv6" => ipv6 = true,
            "-s" | "--scheduler" => {
                let (v, col) = value("a scheduler name")?;
                if v.is_empty() || v.len() > crate::codec::NAME_MAX {
                    return Err(err(col, format!("\"{v}\" is not a scheduler name")));
                }
                scheduler = Some(v.to_string());
            }
            "-p" | "--persistent" => {
                // The timeout is optional: a number right after, or 360.
                let timeout = match inline {
                    Some(v) => number((v, t.column + opt.len() + 1), "a timeout in seconds")?,
                    None => match toks.get(i + 1) {
                        Some(n) if n.text.chars().all(|c| c.is_ascii_digit()) => {
                            i += 1;
                            number((n.text, n.column), "a timeout in seconds")?
                        }
                        _ => DEFAULT_PERSISTENCE,
                    },
                };
                persistence = Some(timeout);
            }
            "-M" | "--netmask" => netmask = Some(value("a netmask")?),
            "--pe" => {
                let (v, col) = value("a persistence engine")?;
                if v.is_empty() || v.len() > crate::codec::NAME_MAX {
                    return Err(err(col, format!("\"{v}\" is not an engine name")));
                }
                pe = Some(v.to_string());
            }
            "-o" | "--ops" => one_packet = true,
            "-b" | "--sched-flags" => {
                let (v, col) = value("scheduler flags")?;
                for f in v.split(',') {
                    sched_flags.set_by_name(f).map_err(|m| err(col, m))?;
                }
            }
            "-r" | "--real-server" => real = Some(value("a real server address")?),
            "-g" | "--gatewaying" => forwarding = Some(Forwarding::Route),
            "-i" | "--ipip" => forwarding = Some(Forwarding::Tunnel),
            "-m" | "--masquerading" => forwarding = Some(Forwarding::Masq),
            "-w" | "--weight" => {
                let w = number(value("a weight")?, "a weight (0-2147483647)")?;
                if w > i32::MAX as u32 {
                    return Err(err(t.column, format!("weight {w} is out of range")));
                }
                weight = Some(w);
            }
            "-x" | "--u-threshold" => upper = number(value("a threshold")?, "a threshold")?,
            "-y" | "--l-threshold" => lower = number(value("a threshold")?, "a threshold")?,
            "--tun-type" => {
                let (v, col) = value("a tunnel type")?;
                tunnel.kind = match v {
                    "ipip" => TunnelType::Ipip,
                    "gue" => TunnelType::Gue,
                    "gre" => TunnelType::Gre,
                    _ => {
                        return Err(err(
                            col,
                            format!("unknown tunnel type \"{v}\": allowed ipip, gue, gre"),
                        ));
                    }
                };
            }
            "--tun-port" => {
                let (v, col) = value("a port")?;
                tunnel.port = v
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err(col, format!("\"{v}\" is not a port (1-65535)")))?;
            }
            "--tun-nocsum" => tunnel.checksum = TunnelChecksum::None,
            "--tun-csum" => tunnel.checksum = TunnelChecksum::Checksum,
            "--tun-remcsum" => tunnel.checksum = TunnelChecksum::Remote,
            // Output switches ipvsadm accepts anywhere; meaningless here.
            "-n" | "--numeric" => {}
            _ => return Err(err(t.column, format!("unknown option \"{}\"", t.text))),
        }
        i += 1;
    }

    let (verb, verb_col) =
        verb.ok_or_else(|| err(1, "no command (-A, -E, -D, -a, -e, -d or -C)".into()))?;
    if verb == Verb::Clear {
        return Ok(Some(Command::Clear));
    }
    let (kind, value, col) =
        svc.ok_or_else(|| err(verb_col, "no service (-t, -u, --sctp-service or -f)".into()))?;
    let key = match kind {
        "-f" | "--fwmark-service" => {
            let mark = value
                .parse::<u32>()
                .ok()
                .filter(|m| *m != 0)
                .ok_or_else(|| err(col, format!("\"{value}\" is not a firewall mark")))?;
            ServiceKey::Fwmark {
                family: if ipv6 { Family::Ipv6 } else { Family::Ipv4 },
                mark,
            }
        }
        _ => {
            let protocol = match kind {
                "-t" | "--tcp-service" => Protocol::Tcp,
                "-u" | "--udp-service" => Protocol::Udp,
                _ => Protocol::Sctp,
            };
            let addr = parse_addr(value, None).map_err(|m| err(col, m))?;
            ServiceKey::Addr { protocol, addr }
        }
    };
    let family = key.family();

    match verb {
        Verb::AddService | Verb::EditService => {
            let netmask = match netmask {
                None => Netmask::full(family),
                Some((v, c)) => parse_netmask(v, family).map_err(|m| err(c, m))?,
            };
            let settings = ServiceSettings {
                scheduler: scheduler.unwrap_or_else(|| DEFAULT_SCHEDULER.to_string()),
                sched_flags,
                one_packet,
                persistence,
                netmask,
                pe,
            };
            Ok(Some(Command::Op(if verb == Verb::AddService {
                Op::AddService { key, settings }
            } else {
                Op::EditService { key, settings }
            })))
        }
        Verb::DelService => Ok(Some(Command::Op(Op::DelService { key }))),
        Verb::AddDest | Verb::EditDest | Verb::DelDest => {
            let (r, rcol) =
                real.ok_or_else(|| err(verb_col, "no real server (-r ADDRESS[:PORT])".into()))?;
            let addr = parse_addr(r, Some(key.port())).map_err(|m| err(rcol, m))?;
            if verb == Verb::DelDest {
                return Ok(Some(Command::Op(Op::DelDest { service: key, addr })));
            }
            // ipvsadm's defaults: gatewaying, weight 1.
            let forwarding = forwarding.unwrap_or(Forwarding::Route);
            let settings = DestSettings {
                forwarding,
                weight: weight.unwrap_or(1),
                upper_threshold: upper,
                lower_threshold: lower,
                tunnel: if forwarding == Forwarding::Tunnel {
                    tunnel
                } else {
                    Tunnel::default()
                },
            };
            Ok(Some(Command::Op(if verb == Verb::AddDest {
                Op::AddDest {
                    service: key,
                    addr,
                    settings,
                }
            } else {
                Op::EditDest {
                    service: key,
                    addr,
                    settings,
                }
            })))
        }
        Verb::Clear => unreachable!("returned above"),
    }
}

/// `10.0.0.1:80`, `[2001:db8::1]:80`, or without a port when `default`
/// gives one (a real server takes its service's port).
fn parse_addr(s: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = default_port {
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
    }
    Err(format!(
        "\"{s}\" is not an address: write 10.0.0.1:80 or [2001:db8::1]:80 (numeric, as ipvsadm -S -n prints)"
    ))
}

fn parse_netmask(s: &str, family: Family) -> Result<Netmask, String> {
    match family {
        Family::Ipv4 => {
            if let Ok(m) = s.parse::<Ipv4Addr>() {
                return Ok(Netmask::V4(m));
            }
            match s.parse::<u8>() {
                Ok(p) if p <= 32 => Ok(Netmask::from_prefix(family, p)),
                _ => Err(format!(
                    "\"{s}\" is not an IPv4 netmask (255.255.255.0 or 24)"
                )),
            }
        }
        Family::Ipv6 => match s.parse::<u8>() {
            Ok(p) if (1..=128).contains(&p) => Ok(Netmask::V6(p)),
            _ => Err(format!("\"{s}\" is not an IPv6 prefix length (1-128)")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Dest, SchedFlags, Service};

    /// What ipvsadm 1.31 printed for a table made with every option
    /// (captured with `ipvsadm -S -n` in the test VM).
    const IPVSADM_SAVE: &str = "\
-A -t 10.0.0.1:0 -s rr -p 360
-A -t 10.0.0.1:80 -s rr
-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.0.0.3:8080 -m -w 3
-A -t 10.0.0.1:81 -s dh -p 10 --pe sip
-A -u 10.0.0.1:53 -s sh -o -b sh-fallback,sh-port
-a -u 10.0.0.1:53 -r 10.0.0.4:53 -g -w 2
-a -u 10.0.0.1:53 -r 10.0.0.5:53 -i -w 2 --tun-type gue --tun-port 6080 --tun-nocsum
-a -u 10.0.0.1:53 -r 10.0.0.6:53 -i -w 1 --tun-type gue --tun-port 6081 --tun-csum
-a -u 10.0.0.1:53 -r 10.0.0.8:53 -i -w 1 --tun-type ipip
-A --sctp-service 10.0.0.1:9 -s mh -b mh-fallback,mh-port
-A -t [2001:db8::1]:443 -s lc -p 60 -M 64
-a -t [2001:db8::1]:443 -r [2001:db8::2]:443 -m -w 1
-A -f 7 -s wlc -p 300 -M 255.255.255.0
-a -f 7 -r 10.0.0.9:0 -g -w 1
-A -f 8 -6 -s nq
";

    fn sorted_lines(s: &str) -> Vec<String> {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    #[test]
    fn ipvsadm_s_output_parses_and_renders_back_line_for_line() {
        let table = parse_table(IPVSADM_SAVE).unwrap();
        assert_eq!(table.services.len(), 8);
        assert_eq!(sorted_lines(&render(&table)), sorted_lines(IPVSADM_SAVE));
    }

    #[test]
    fn every_setting_is_read() {
        let table = parse_table(IPVSADM_SAVE).unwrap();
        let udp = table.service(&"udp:10.0.0.1:53".parse().unwrap()).unwrap();
        assert_eq!(udp.settings.scheduler, "sh");
        assert!(udp.settings.one_packet);
        assert_eq!(
            udp.settings.sched_flags,
            SchedFlags {
                flag1: true,
                flag2: true,
                flag3: false
            }
        );
        let gue = udp.dest("10.0.0.5:53".parse().unwrap()).unwrap();
        assert_eq!(
            gue.settings.tunnel,
            Tunnel {
                kind: TunnelType::Gue,
                port: 6080,
                checksum: TunnelChecksum::None
            }
        );
        let fw = table.service(&"fwmark:7".parse().unwrap()).unwrap();
        assert_eq!(fw.settings.persistence, Some(300));
        assert_eq!(fw.settings.netmask, Netmask::from_prefix(Family::Ipv4, 24));
        let v6 = table
            .service(&"tcp:[2001:db8::1]:443".parse().unwrap())
            .unwrap();
        assert_eq!(v6.settings.netmask, Netmask::V6(64));
        let pe = table.service(&"tcp:10.0.0.1:81".parse().unwrap()).unwrap();
        assert_eq!(pe.settings.pe.as_deref(), Some("sip"));
    }

    #[test]
    fn thresholds_are_saved_although_ipvsadm_does_not() {
        let key: ServiceKey = "tcp:10.0.0.1:80".parse().unwrap();
        let mut svc = Service::new(key, ServiceSettings::new(Family::Ipv4, "wrr"));
        let mut d = DestSettings::new(Forwarding::Masq, 3);
        d.upper_threshold = 100;
        d.lower_threshold = 50;
        svc.dests
            .push(Dest::new("10.0.0.3:8080".parse().unwrap(), d));
        let text = render(&Table::new(vec![svc.clone()]));
        assert!(
            text.contains("-r 10.0.0.3:8080 -m -w 3 -x 100 -y 50"),
            "{text}"
        );
        assert_eq!(parse_table(&text).unwrap(), Table::new(vec![svc]));
    }

    #[test]
    fn ipvsadm_defaults_apply_to_what_is_left_out() {
        let t = parse_table("-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r 10.0.0.2\n").unwrap();
        let s = &t.services[0];
        assert_eq!(s.settings.scheduler, "wlc");
        assert_eq!(s.dests[0].addr, "10.0.0.2:80".parse().unwrap());
        assert_eq!(s.dests[0].settings, DestSettings::new(Forwarding::Route, 1));
    }

    #[test]
    fn a_bare_persistent_flag_means_360_seconds_and_long_options_take_equals() {
        let cmds = parse("--add-service --tcp-service=10.0.0.1:443 -p --scheduler=sh").unwrap();
        match &cmds[0] {
            Command::Op(Op::AddService { settings, .. }) => {
                assert_eq!(settings.persistence, Some(360));
                assert_eq!(settings.scheduler, "sh");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_line_and_column() {
        let e = parse("-A -t 10.0.0.1:80 -s rr\n\n-a -t 10.0.0.1:80 -r nowhere -m\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 22));
        assert!(e.message.contains("\"nowhere\" is not an address"), "{e}");
        let e = parse("-A -t 10.0.0.1:80 --frobnicate").unwrap_err();
        assert_eq!((e.line, e.column), (1, 19));
        assert_eq!(
            e.to_string(),
            "line 1, column 19: unknown option \"--frobnicate\""
        );
        let e = parse("-a -t 10.0.0.1:80 -r 10.0.0.2 -w").unwrap_err();
        assert!(e.message.contains("-w needs a weight"), "{e}");
    }

    #[test]
    fn clear_comments_and_deletions_are_commands() {
        let cmds = parse("# saved\n-C\n-D -f 7\n-d -t 10.0.0.1:80 -r 10.0.0.2:80\n").unwrap();
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0], Command::Clear);
        assert_eq!(
            op_line(match &cmds[2] {
                Command::Op(op) => op,
                _ => unreachable!(),
            }),
            "-d -t 10.0.0.1:80 -r 10.0.0.2:80"
        );
    }
}
