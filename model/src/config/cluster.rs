//! One file for the whole cluster: the same bytes on every director, with
//! the values that differ per director written in it, keyed by node name:
//!
//! ```toml
//! [cluster]
//! nodes = ["lb1", "lb2"]
//!
//! [[vrrp_instance]]
//! name = "web"
//! priority = { lb1 = 150, lb2 = 100 }
//! unicast_src = { lb1 = "10.0.0.1", lb2 = "10.0.0.2" }
//! interface = { lb1 = "eth0", "*" = "ens3" }   # "*": every other node
//! ```
//!
//! Any value may be such a table: one whose keys are node names (or `"*"`
//! for the nodes it does not name). Before the file is read as a tandem
//! configuration it is resolved for one node, every per-node table
//! replaced by that node's value with its own location in the text, so a
//! finding for one node points at that node's value. A file is good only
//! when it is good for every node it names.
//!
//! A director learns its own name from outside the file, which is the
//! same everywhere: `TANDEM_NODE`, else the file `node` beside the
//! configuration (one line), else the host name.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// `[cluster]`: the directors this file describes, and how they keep it
/// in sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Node names, in the order the cluster shows them.
    pub nodes: Vec<String>,
    /// The address this director's sync channel listens on and the other
    /// directors reach it at (a per-node table). Without it the file is
    /// shared by hand and nothing synchronises it.
    #[serde(
        default,
        deserialize_with = "super::value::ip::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub address: Option<std::net::IpAddr>,
    /// TCP port of the sync channel (mutual TLS).
    #[serde(default = "default_port")]
    pub port: u16,
    /// How long vrrpd waits at start for tandem-clusterd to catch up with
    /// the other directors, so a returning director never takes the VIPs
    /// with a stale file. When it runs out, vrrpd starts anyway, loudly.
    #[serde(default = "default_catch_up", with = "super::value::duration")]
    pub catch_up: std::time::Duration,
    /// Where the cluster identity (CA certificate, this node's certificate
    /// and key) lives.
    #[serde(default = "default_identity_dir")]
    pub identity_dir: std::path::PathBuf,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            nodes: Vec::new(),
            address: None,
            port: default_port(),
            catch_up: default_catch_up(),
            identity_dir: default_identity_dir(),
        }
    }
}

impl Cluster {
    /// True when the directors keep this file in sync over the peer
    /// channel (tandem-clusterd owns the file).
    pub fn synchronised(&self) -> bool {
        self.address.is_some()
    }
}

/// The sync channel's TCP port when `[cluster] port` is absent.
pub const DEFAULT_PORT: u16 = 7780;
/// Where `tandem cluster init|join` put the identity by default.
pub const DEFAULT_IDENTITY_DIR: &str = "/etc/tandem/cluster";

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_catch_up() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

fn default_identity_dir() -> std::path::PathBuf {
    DEFAULT_IDENTITY_DIR.into()
}

/// The key of a per-node table that stands for every node it does not
/// name.
pub const EVERY_OTHER: &str = "*";

/// A problem with the cluster part of the file, located by byte span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub span: Range<usize>,
    pub message: String,
}

/// The node names `[cluster] nodes` lists, with the span of each, or
/// `None` for a single-director file.
pub(crate) fn nodes(root: &DeTable<'_>) -> Option<Vec<(String, Range<usize>)>> {
    let cluster = root.get("cluster")?;
    let DeValue::Table(t) = cluster.get_ref() else {
        return Some(Vec::new());
    };
    let Some(nodes) = t.get("nodes") else {
        return Some(Vec::new());
    };
    let DeValue::Array(a) = nodes.get_ref() else {
        return Some(Vec::new());
    };
    Some(
        a.iter()
            .filter_map(|v| match v.get_ref() {
                DeValue::String(s) => Some((s.to_string(), v.span())),
                _ => None,
            })
            .collect(),
    )
}

/// Keys of the small tables tandem's configuration takes as values
/// (`{ address = ..., label = ... }`, `{ interface = ..., weight = ... }`):
/// a node named like one would turn such a table into a per-node value.
const INLINE_KEYS: &[&str] = &[
    "address",
    "label",
    "interface",
    "weight",
    "name",
    "path",
    "role",
    "type",
    "port",
];

/// Checks the node list itself: names a host could have, each once, none
/// that is also a key of the tables the configuration takes as values.
pub(crate) fn check_nodes(
    root: &DeTable<'_>,
    nodes: &[(String, Range<usize>)],
    whole: Range<usize>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if nodes.is_empty() {
        out.push(Problem {
            span: root.get("cluster").map_or(whole, |c| c.span()),
            message: "[cluster] nodes is empty: name every director of the cluster, e.g. nodes = [\"lb1\", \"lb2\"]".into(),
        });
    }
    let mut seen = BTreeSet::new();
    for (n, span) in nodes {
        let valid = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            out.push(Problem {
                span: span.clone(),
                message: format!(
                    "node name \"{n}\" is not a host name: allowed letters, digits, - . _, at most 63"
                ),
            });
        } else if !seen.insert(n.as_str()) {
            out.push(Problem {
                span: span.clone(),
                message: format!("node \"{n}\" is listed twice"),
            });
        } else if INLINE_KEYS.contains(&n.as_str()) || n == EVERY_OTHER {
            out.push(Problem {
                span: span.clone(),
                message: format!(
                    "node name \"{n}\" is also a key of tandem's configuration: a table with it would read as a per-node value; rename the node"
                ),
            });
        }
    }
    out
}

/// Replaces every per-node table in `root` by `node`'s value. A table is
/// per-node when one of its keys is a node name or `"*"`; its other keys
/// are problems, and so is a missing value for `node`.
pub(crate) fn resolve(
    root: &mut DeTable<'_>,
    nodes: &BTreeSet<String>,
    node: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (k, v) in root.iter_mut() {
        // The node list is the same for everyone; the rest of [cluster]
        // (each director's sync address, ...) may be per node.
        if k.get_ref() == "cluster" {
            if let DeValue::Table(t) = v.get_mut() {
                for (ck, cv) in t.iter_mut() {
                    if ck.get_ref() != "nodes" {
                        resolve_value(ck.get_ref(), cv, nodes, node, &mut problems);
                    }
                }
            }
            continue;
        }
        resolve_value(k.get_ref(), v, nodes, node, &mut problems);
    }
    problems
}

fn is_per_node(t: &DeTable<'_>, nodes: &BTreeSet<String>) -> bool {
    !t.is_empty()
        && t.iter()
            .any(|(k, _)| k.get_ref() == EVERY_OTHER || nodes.contains(k.get_ref().as_ref()))
}

fn resolve_value(
    key: &str,
    v: &mut Spanned<DeValue<'_>>,
    nodes: &BTreeSet<String>,
    node: &str,
    problems: &mut Vec<Problem>,
) {
    let span = v.span();
    match v.get_mut() {
        DeValue::Table(t) if is_per_node(t, nodes) => {
            for (k, _) in t.iter() {
                let name = k.get_ref();
                if name != EVERY_OTHER && !nodes.contains(name.as_ref()) {
                    problems.push(Problem {
                        span: k.span(),
                        message: format!(
                            "{key}: \"{name}\" is not a node of [cluster] nodes ({}); a per-node value is keyed by node names and \"*\"",
                            nodes.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
            let chosen = t
                .iter()
                .find(|(k, _)| k.get_ref() == node)
                .or_else(|| t.iter().find(|(k, _)| k.get_ref() == EVERY_OTHER))
                .map(|(_, v)| v.clone());
            match chosen {
                // A per-node value is resolved no further: a table inside
                // it is an ordinary table.
                Some(c) => *v = c,
                None => problems.push(Problem {
                    span,
                    message: format!(
                        "{key} has no value for node {node}: add {node} = ... or a default \"*\" = ..."
                    ),
                }),
            }
        }
        DeValue::Table(t) => {
            for (k, inner) in t.iter_mut() {
                resolve_value(k.get_ref(), inner, nodes, node, problems);
            }
        }
        DeValue::Array(a) => {
            for inner in a.iter_mut() {
                resolve_value(key, inner, nodes, node, problems);
            }
        }
        _ => {}
    }
}

/// This director's name, for a cluster file at `config_path`:
/// `TANDEM_NODE`, else the first line of `node` beside the file, else the
/// host name.
pub fn identity(config_path: &Path) -> Option<String> {
    if let Some(n) = std::env::var_os("TANDEM_NODE") {
        let n = n.to_string_lossy().trim().to_string();
        if !n.is_empty() {
            return Some(n);
        }
    }
    let beside = config_path.parent().unwrap_or(Path::new(".")).join("node");
    if let Ok(s) = std::fs::read_to_string(&beside) {
        if let Some(line) = s.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Some(line.to_string());
        }
    }
    super::nix_hostname()
}

#[cfg(test)]
mod tests {
    use crate::config::{self, parse_as};

    const FILE: &str = r#"
[cluster]
nodes = ["lb1", "lb2", "lb3"]

[[vrrp_instance]]
name = "web"
interface = { lb1 = "eth0", "*" = "ens3" }
vrid = 51
priority = { lb1 = 150, lb2 = 100, lb3 = 50 }
unicast_src = { lb1 = "10.0.0.1", lb2 = "10.0.0.2", lb3 = "10.0.0.3" }
unicast_peers = { lb1 = ["10.0.0.2", "10.0.0.3"], lb2 = ["10.0.0.1", "10.0.0.3"], lb3 = ["10.0.0.1", "10.0.0.2"] }
virtual_ips = [{ address = "192.0.2.10/24", label = { lb1 = "eth0:web", "*" = "ens3:web" } }]
"#;

    #[test]
    fn each_node_reads_its_own_values_from_the_one_file() {
        for (node, prio, iface, src) in [
            ("lb1", 150, "eth0", "10.0.0.1"),
            ("lb2", 100, "ens3", "10.0.0.2"),
            ("lb3", 50, "ens3", "10.0.0.3"),
        ] {
            let c = parse_as(FILE, "t.toml", Some(node)).unwrap_or_else(|e| panic!("{e}"));
            let i = &c.vrrp_instances[0];
            assert_eq!(
                (i.priority(), i.interface.as_str()),
                (prio, iface),
                "{node}"
            );
            assert_eq!(i.unicast_src.unwrap().to_string(), src);
            assert!(!i.unicast_peers.contains(&i.unicast_src.unwrap()));
            assert_eq!(c.node_name(), node);
            // A per-node value inside an ordinary table.
            assert_eq!(
                i.virtual_ips[0].label.as_deref(),
                Some(format!("{iface}:web").as_str())
            );
        }
        assert_eq!(
            config::parse(FILE, "t.toml").unwrap().node_name(),
            "lb1",
            "without a name, the first node"
        );
    }

    const SYNCED: &str = r#"[cluster]
nodes = ["lb1", "lb2"]
address = { lb1 = "10.0.0.1", lb2 = "10.0.0.2" }

[[vrrp_instance]]
name = "web"
interface = { lb1 = "eth0", lb2 = "ens3" }
vrid = 51
virtual_ips = ["192.0.2.10/24"]
"#;

    #[test]
    fn each_director_reads_its_own_sync_address() {
        for (node, addr) in [("lb1", "10.0.0.1"), ("lb2", "10.0.0.2")] {
            let c = parse_as(SYNCED, "t.toml", Some(node)).unwrap();
            let cl = c.cluster.unwrap();
            assert!(cl.synchronised());
            assert_eq!(cl.address.unwrap().to_string(), addr);
            assert_eq!(cl.nodes, ["lb1", "lb2"]);
            assert_eq!(cl.port, super::DEFAULT_PORT);
        }
    }

    #[test]
    fn a_sync_address_for_some_directors_only_is_refused() {
        let text = SYNCED.replace(
            "address = { lb1 = \"10.0.0.1\", lb2 = \"10.0.0.2\" }",
            "address = { lb1 = \"10.0.0.1\", lb2 = \"10.0.0.1\" }",
        );
        let e = parse_as(&text, "t.toml", Some("lb1")).unwrap_err();
        assert!(e.to_string().contains("given to both lb1 and lb2"), "{e}");
    }

    #[test]
    fn a_missing_interface_is_found_on_the_director_that_lacks_it_at_its_value() {
        let has = |n: &str| n == "eth0";
        assert!(config::host_findings(SYNCED, "t.toml", Some("lb1"), &has).is_empty());
        let d = config::host_findings(SYNCED, "t.toml", Some("lb2"), &has);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((d[0].line, d[0].column), (7, 35), "{}", d[0]);
        assert!(
            d[0].message.contains("\"ens3\"") && d[0].message.contains("on lb2"),
            "{}",
            d[0]
        );
    }

    #[test]
    fn a_director_the_cluster_does_not_name_is_refused() {
        let e = parse_as(FILE, "t.toml", Some("lb9")).unwrap_err();
        assert!(e.to_string().contains("this director is \"lb9\""), "{e}");
    }

    #[test]
    fn a_file_without_a_cluster_reads_as_before() {
        let text = "[node]\nname = \"solo\"\n\n[[vrrp_instance]]\nname = \"web\"\ninterface = \"eth0\"\nvrid = 51\nvirtual_ips = [\"192.0.2.10/24\"]\n";
        let c = parse_as(text, "t.toml", Some("whoever")).unwrap();
        assert_eq!(c.node_name(), "solo");
        assert!(c.cluster.is_none());
    }

    #[test]
    fn a_director_knows_its_name_from_the_file_beside_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node"), "\nlb2\n").unwrap();
        std::fs::write(dir.path().join("tandem.toml"), FILE).unwrap();
        // TANDEM_NODE would win; the test suite does not set it.
        if std::env::var_os("TANDEM_NODE").is_none() {
            let c = config::load(&dir.path().join("tandem.toml")).unwrap();
            assert_eq!(c.node_name(), "lb2");
            assert_eq!(c.vrrp_instances[0].priority(), 100);
        }
    }
}
