//! Re-captures the kernel's IPVS netlink traffic behind ipvsctl's golden
//! vectors (ipvsctl/tests/kernel/, checked by ipvsctl/tests/kernel_golden.rs).
//!
//! Run by hand, as root, when the vectors should be made again:
//!
//! ```text
//! cargo run -p tandem-tests --bin tandem-ipvs-capture
//! ```
//!
//! The VM runs ipvsctl/tests/kernel/capture.sh (ipvsadm programming and
//! reading a table that covers every attribute family while dumpcap
//! records the nlmon device); this side splits the capture into netlink
//! messages, gives each to the ipvsadm step that caused it, and rewrites
//! the *.hex files and transcript.txt there. `git diff` shows what moved.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_tests::{vm, workspace_root};

const NLM_F_REQUEST: u16 = 0x1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const GENL_ID_CTRL: u16 = 0x10;
const NETLINK_GENERIC: u16 = 16;
/// `LINKTYPE_NETLINK`: a 16-byte cooked header (as `LINKTYPE_LINUX_SLL`,
/// the netlink protocol in its last two bytes), then the skb's messages.
const LINKTYPE_NETLINK: u32 = 253;
const ARPHRD_NETLINK: u16 = 824;
/// libnl's port ids are the pid plus a socket index above bit 22
/// (`generate_local_port`, libnl lib/socket.c).
const PID_BITS: u32 = (1 << 22) - 1;

fn kernel_dir() -> PathBuf {
    workspace_root().join("ipvsctl/tests/kernel")
}

/// One netlink message, as captured.
#[derive(Clone)]
struct Msg {
    bytes: Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    port: u32,
}

impl Msg {
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    fn genl_cmd(&self) -> u8 {
        self.bytes[16]
    }
}

/// A request and what the kernel answered it.
struct Exchange {
    step: usize,
    request: Msg,
    answers: Vec<Msg>,
}

/// The generic netlink messages of a pcap file from the nlmon device, in
/// capture order.
fn generic_netlink_messages(pcap: &[u8]) -> Vec<Msg> {
    assert!(pcap.len() >= 24, "a pcap file of {} bytes", pcap.len());
    let magic = u32::from_le_bytes(pcap[..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "not a little-endian pcap file (magic {magic:#x}): dumpcap -P writes one"
    );
    let linktype = u32::from_le_bytes(pcap[20..24].try_into().unwrap());
    assert_eq!(linktype, LINKTYPE_NETLINK, "the link type of nlmon0");
    let mut out = Vec::new();
    let mut at = 24;
    while at < pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let orig = u32::from_le_bytes(pcap[at + 12..at + 16].try_into().unwrap()) as usize;
        assert_eq!(incl, orig, "a packet truncated by the snap length");
        let rec = &pcap[at + 16..at + 16 + incl];
        at += 16 + incl;
        let arphrd = u16::from_be_bytes([rec[2], rec[3]]);
        let protocol = u16::from_be_bytes([rec[14], rec[15]]);
        assert_eq!(arphrd, ARPHRD_NETLINK, "the cooked header's hardware type");
        if protocol != NETLINK_GENERIC {
            continue;
        }
        let mut data = &rec[16..];
        while data.len() >= 16 {
            let len = u32::from_ne_bytes(data[..4].try_into().unwrap()) as usize;
            assert!(
                (16..=data.len()).contains(&len),
                "a netlink message of {len} bytes in {}",
                data.len()
            );
            let m = &data[..len];
            out.push(Msg {
                bytes: m.to_vec(),
                kind: u16::from_ne_bytes([m[4], m[5]]),
                flags: u16::from_ne_bytes([m[6], m[7]]),
                seq: u32::from_ne_bytes(m[8..12].try_into().unwrap()),
                port: u32::from_ne_bytes(m[12..16].try_into().unwrap()),
            });
            data = &data[((len + 3) & !3).min(data.len())..];
        }
    }
    out
}

/// A step of capture.sh: its name, pid and command line.
struct Step {
    name: String,
    pid: u32,
    command: String,
}

fn parse_steps(text: &str) -> Vec<Step> {
    text.lines()
        .map(|l| {
            let mut w = l.splitn(4, ' ');
            let name = w.next().unwrap().to_string();
            let pid = w.next().unwrap().parse().unwrap();
            let _rc = w.next().unwrap();
            Step {
                name,
                pid,
                command: w.next().unwrap().to_string(),
            }
        })
        .collect()
}

/// The IPVS family's id, from nlctrl's answer naming it.
fn ipvs_family(msgs: &[Msg]) -> u16 {
    for m in msgs {
        if m.kind != GENL_ID_CTRL || m.flags & NLM_F_REQUEST != 0 || m.bytes.len() < 20 {
            continue;
        }
        let attrs = ipvsctl::netlink::iter_attrs(&m.bytes[20..]).unwrap();
        let named_ipvs = attrs
            .iter()
            .any(|(k, v)| *k == 2 && ipvsctl::netlink::read_string(v) == "IPVS");
        if named_ipvs {
            return ipvsctl::netlink::family_id(&m.bytes[20..]).unwrap();
        }
    }
    panic!("no nlctrl answer for the IPVS family in the capture")
}

fn cmd_name(family: u16, m: &Msg) -> &'static str {
    if m.kind == GENL_ID_CTRL {
        assert_eq!(m.genl_cmd(), 3, "an nlctrl request other than GETFAMILY");
        return "ctrl_getfamily";
    }
    assert_eq!(m.kind, family, "a request to a family other than IPVS");
    use ipvsctl::codec::cmd;
    match m.genl_cmd() {
        cmd::NEW_SERVICE => "new_service",
        cmd::SET_SERVICE => "set_service",
        cmd::DEL_SERVICE => "del_service",
        cmd::GET_SERVICE => "get_service",
        cmd::NEW_DEST => "new_dest",
        cmd::SET_DEST => "set_dest",
        cmd::DEL_DEST => "del_dest",
        cmd::GET_DEST => "get_dest",
        cmd::NEW_DAEMON => "new_daemon",
        cmd::DEL_DAEMON => "del_daemon",
        cmd::GET_DAEMON => "get_daemon",
        cmd::SET_CONFIG => "set_config",
        cmd::GET_CONFIG => "get_config",
        cmd::GET_INFO => "get_info",
        cmd::ZERO => "zero",
        cmd::FLUSH => "flush",
        c => panic!("IPVS command {c}"),
    }
}

/// Each request with its answers, and the step it belongs to.
fn exchanges(msgs: &[Msg], steps: &[Step]) -> Vec<Exchange> {
    let mut out: Vec<Exchange> = Vec::new();
    for m in msgs {
        if m.flags & NLM_F_REQUEST != 0 {
            let step = steps
                .iter()
                .position(|s| s.pid & PID_BITS == m.port & PID_BITS)
                .unwrap_or_else(|| panic!("a request from port {:#x}, no step's", m.port));
            out.push(Exchange {
                step,
                request: m.clone(),
                answers: Vec::new(),
            });
        } else {
            let x = out
                .iter_mut()
                .rev()
                .find(|x| x.request.port == m.port && x.request.seq == m.seq)
                .unwrap_or_else(|| {
                    panic!(
                        "an answer (type {}) to port {:#x} seq {} without its request",
                        m.kind, m.port, m.seq
                    )
                });
            x.answers.push(m.clone());
        }
    }
    out
}

fn hex_file(comment: &[String], bytes: &[u8]) -> String {
    let mut s = String::new();
    for c in comment {
        writeln!(s, "# {c}").unwrap();
    }
    for line in bytes.chunks(16) {
        let words: Vec<String> = line
            .chunks(4)
            .map(|w| w.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        writeln!(s, "{}", words.join(" ")).unwrap();
    }
    s
}

/// Writes one file per message; returns the names written.
fn write_vectors(dir: &Path, family: u16, steps: &[Step], xs: &[Exchange]) -> Vec<String> {
    // The family lookup and GET_INFO start every ipvsadm run: kept once.
    let mut seen_once: BTreeSet<&str> = BTreeSet::new();
    let mut per_step: BTreeMap<usize, Vec<(&'static str, &Exchange)>> = BTreeMap::new();
    for x in xs {
        let name = cmd_name(family, &x.request);
        if matches!(name, "ctrl_getfamily" | "get_info") && !seen_once.insert(name) {
            continue;
        }
        per_step.entry(x.step).or_default().push((name, x));
    }
    let mut written = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let list = per_step
            .get(&i)
            .unwrap_or_else(|| panic!("step {} sent no IPVS request", step.name));
        assert!(
            list.iter()
                .any(|(n, _)| !matches!(*n, "ctrl_getfamily" | "get_info"))
                || step.name == "list_empty",
            "step {} sent only the family lookup and GET_INFO",
            step.name
        );
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (n, _) in list {
            *counts.entry(n).or_default() += 1;
        }
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (n, x) in list {
            let k = index.entry(n).or_default();
            *k += 1;
            let base = if counts[n] > 1 {
                format!("{}.{n}.{k}", step.name)
            } else {
                format!("{}.{n}", step.name)
            };
            let what = if *n == "ctrl_getfamily" {
                "CTRL_CMD_GETFAMILY (nlctrl)".to_string()
            } else {
                format!("IPVS_CMD_{}", n.to_uppercase())
            };
            let mut put = |file: String, role: &str, m: &Msg| {
                let layout = match m.kind {
                    NLMSG_ERROR => {
                        "nlmsghdr + struct nlmsgerr (errno, then the request's header or all of it)"
                    }
                    NLMSG_DONE => "nlmsghdr + the dump's final status",
                    _ => "nlmsghdr + genlmsghdr + attributes",
                };
                let comment = vec![
                    format!("{}    (step {})", step.command, step.name),
                    format!("{what}: {role}"),
                    format!("{layout}, as captured on nlmon0"),
                ];
                fs::write(dir.join(&file), hex_file(&comment, &m.bytes)).unwrap();
                written.push(file);
            };
            put(
                format!("{base}.request.hex"),
                "request, ipvsadm to the kernel",
                &x.request,
            );
            let data: Vec<&Msg> = x
                .answers
                .iter()
                .filter(|m| m.kind != NLMSG_ERROR && m.kind != NLMSG_DONE)
                .collect();
            for (j, m) in data.iter().enumerate() {
                let file = if data.len() == 1 {
                    format!("{base}.reply.hex")
                } else {
                    format!("{base}.reply.{}.hex", j + 1)
                };
                put(file, "reply, the kernel to ipvsadm", m);
            }
            for m in x
                .answers
                .iter()
                .filter(|m| m.kind == NLMSG_ERROR || m.kind == NLMSG_DONE)
            {
                let (suffix, role) = match m.kind {
                    NLMSG_DONE => ("done", "NLMSG_DONE, the end of the dump"),
                    _ if m.u32_at(16) == 0 => ("ack", "NLMSG_ERROR 0, the acknowledgement"),
                    _ => ("error", "NLMSG_ERROR, the request refused"),
                };
                put(format!("{base}.{suffix}.hex"), role, m);
            }
        }
    }
    written
}

fn main() {
    let Some(machine) = vm::require("tandem-ipvs-capture") else {
        eprintln!("tandem-ipvs-capture: this machine cannot boot the test VM");
        std::process::exit(1);
    };
    let dir = kernel_dir();
    let script = dir.join("capture.sh");
    let out = machine
        .scenario("capture_kernel_vectors")
        .modules(&["nlmon", "dummy", "ip_vs_pe_sip"])
        .script(format!(
            "exec /bin/sh {}",
            vm::shell_quote(&script.display().to_string())
        ))
        .timeout(Duration::from_secs(600))
        .run();
    out.assert_success();

    let pcap = fs::read(out.path("capture.pcap")).unwrap();
    let steps = parse_steps(&out.read("steps"));
    let msgs = generic_netlink_messages(&pcap);
    let family = ipvs_family(&msgs);
    let xs = exchanges(&msgs, &steps);
    for old in fs::read_dir(&dir).unwrap().flatten() {
        if old.path().extension().is_some_and(|e| e == "hex") {
            fs::remove_file(old.path()).unwrap();
        }
    }
    let written = write_vectors(&dir, family, &steps, &xs);
    let transcript = format!(
        "# Written by tandem-ipvs-capture (tests/src/bin) from a run of capture.sh.\n\
         # IPVS family id in this run: {family:#x}\n{}\n{}",
        out.read("versions")
            .lines()
            .map(|l| format!("# {l}\n"))
            .collect::<String>(),
        out.read("transcript")
    );
    fs::write(dir.join("transcript.txt"), transcript).unwrap();
    eprintln!(
        "{} messages, {} exchanges, {} files written to {} (IPVS family id {family:#x})",
        msgs.len(),
        xs.len(),
        written.len(),
        dir.display()
    );
}
