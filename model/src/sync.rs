//! The cluster's configuration as tandem-clusterd keeps it: versions,
//! the state of the sync between directors, and the documents its
//! control socket and `GET /api/v1/cluster` speak.

use serde::{Deserialize, Serialize};

use crate::api::{HealthdStatus, UnixMillis, VrrpdStatus};
use crate::config::Diagnostic;

/// One version of the cluster's configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// 0 for a file a director had before it ever synchronised; then one
    /// more than the newest version it was made from.
    pub generation: u64,
    /// Names the version: its generation, parents and content together.
    pub id: String,
    /// Hex SHA-256 of the file's bytes.
    pub content: String,
    /// The version(s) it was made from: one for an edit, two or more for
    /// the resolution of a conflict.
    #[serde(default)]
    pub parents: Vec<String>,
    /// Who made it: a web UI user, `root` for the CLI, empty for a file a
    /// director adopted as it found it.
    pub author: String,
    /// The director it was made on.
    pub node: String,
    pub at: UnixMillis,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

impl ConfigVersion {
    /// The first 12 characters of the id, as the UI and the CLI show it.
    pub fn short(&self) -> &str {
        short(&self.id)
    }
}

/// The first 12 characters of a version id (whole characters: an id
/// from the network may be anything).
pub fn short(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(i, _)| &id[..i])
}

/// A version id as tandem makes them: 64 lowercase hex digits.
pub fn is_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How this director's configuration stands with the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Every director answered and has this version.
    InSync,
    /// A director has a newer version that this one is fetching, or has
    /// not been asked yet since the start.
    CatchingUp,
    /// Some director does not answer: the others agree.
    PeersUnreachable,
    /// A director has a version this one cannot take (its file does not
    /// fit this director): shown with the reason until an edit fixes it.
    Refusing,
    /// Two directors made changes the other does not have (a partition):
    /// an administrator chooses.
    Conflict,
    /// The file on disk is not the version this director holds: edited
    /// by hand without `tandem config apply`.
    EditedByHand,
}

impl SyncState {
    pub fn in_sync(self) -> bool {
        self == SyncState::InSync
    }

    pub fn label(self) -> &'static str {
        match self {
            SyncState::InSync => "in sync",
            SyncState::CatchingUp => "catching up",
            SyncState::PeersUnreachable => "not in sync: a director does not answer",
            SyncState::Refusing => "not in sync: this director refuses a version",
            SyncState::Conflict => "conflict",
            SyncState::EditedByHand => "not in sync: the file was edited by hand",
        }
    }
}

/// How another director's version relates to this one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Same,
    /// It has this version and newer ones.
    Ahead,
    /// It has an older version (it catches up).
    Behind,
    /// Neither has the other's version: a conflict.
    Diverged,
}

/// Another director as this one sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub name: String,
    pub address: String,
    /// Answered the last time it was asked.
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<UnixMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ConfigVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<Relation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SyncState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrpd: Option<VrrpdStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthd: Option<HealthdStatus>,
}

/// A conflict: this director's version and the one(s) it cannot take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub mine: ConfigVersion,
    /// The other side's versions, each with the director it came from.
    pub theirs: Vec<TheirVersion>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TheirVersion {
    pub node: String,
    pub version: ConfigVersion,
    /// A unified diff from this director's version to it.
    pub diff: String,
}

/// What the sync channel refused, since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCounters {
    /// Connections TLS refused: no certificate, one from another
    /// cluster, or bytes altered or replayed on the way.
    pub refused_tls: u64,
    /// A good certificate for a name that is not a node of this cluster.
    pub refused_peers: u64,
    /// Requests that were not well-formed.
    pub bad_messages: u64,
    /// Well-formed requests that did not fit this director's state: a
    /// change built on a version it does not have, a commit of a change
    /// it never prepared (a replay).
    pub stale_messages: u64,
    pub changes_applied: u64,
    pub changes_refused: u64,
}

/// This director's view of the cluster, `GET /v1/cluster`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node: String,
    pub nodes: Vec<String>,
    pub state: SyncState,
    /// A sentence for the banner: what is wrong and what to do.
    pub detail: String,
    pub version: ConfigVersion,
    /// The sync has asked every director once since the start: vrrpd may
    /// begin.
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<Conflict>,
    /// Why this director refuses a version another one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusing: Option<String>,
    pub peers: Vec<PeerView>,
    /// Newest first.
    pub history: Vec<ConfigVersion>,
    pub counters: SyncCounters,
}

impl ClusterStatus {
    /// The version director `node` holds in the conflict: this
    /// director's own, one of the other side's, or this side's when
    /// `node` stands with this director (three directors split two and
    /// one). `None` when there is no conflict or `node` is on no side.
    pub fn side_of(&self, node: &str) -> Option<&ConfigVersion> {
        let c = self.conflict.as_ref()?;
        if node == self.node {
            return Some(&c.mine);
        }
        if let Some(t) = c.theirs.iter().find(|t| t.node == node) {
            return Some(&t.version);
        }
        self.peers
            .iter()
            .find(|p| p.name == node)
            .and_then(|p| p.version.as_ref())
            .filter(|v| v.id == c.mine.id)
            .map(|_| &c.mine)
    }

    /// The sides of a conflict, for a message: `lb1, lb3 (version …);
    /// lb2 (version …)`.
    pub fn sides(&self) -> String {
        let Some(c) = &self.conflict else {
            return String::new();
        };
        let mut by: Vec<(String, Vec<String>)> = Vec::new();
        let mut add =
            |v: &ConfigVersion, node: &str| match by.iter_mut().find(|(id, _)| *id == v.id) {
                Some((_, nodes)) => nodes.push(node.to_string()),
                None => by.push((v.id.clone(), vec![node.to_string()])),
            };
        add(&c.mine, &self.node);
        for p in &self.peers {
            if p.version.as_ref().is_some_and(|v| v.id == c.mine.id) {
                add(&c.mine, &p.name);
            }
        }
        for t in &c.theirs {
            add(&t.version, &t.node);
        }
        by.iter()
            .map(|(id, nodes)| format!("{} (version {})", nodes.join(", "), short(id)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `POST /v1/config`: a new version of the file, for the whole cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub text: String,
    pub author: String,
    #[serde(default)]
    pub comment: String,
    /// The version the edit was made on; a change based on an older one
    /// is refused (someone else changed the file meanwhile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Resolves the conflict: the new version descends from every side.
    #[serde(default)]
    pub resolve: bool,
}

/// What one director did with a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOutcome {
    /// Written and reloaded.
    Applied,
    /// Validated and ready, then released because another refused.
    Released,
    /// Refused it: nothing changed there.
    Refused,
    /// Took it, then put the previous version back because another
    /// director could not keep it.
    Restored,
    /// Did not answer: it catches up when it returns.
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeResult {
    pub node: String,
    pub outcome: NodeOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// The answer to a change: applied everywhere reachable, or nowhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ConfigVersion>,
    /// Why it was refused before any director was asked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub nodes: Vec<NodeResult>,
}

impl ApplyResult {
    /// One line per director, as the CLI prints and the UI shows.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.error.is_empty() {
            out.push_str(&self.error);
            out.push('\n');
        }
        if let Some(v) = &self.version {
            out.push_str(&format!(
                "version {} (generation {}): {}\n",
                v.short(),
                v.generation,
                if self.applied {
                    "applied"
                } else {
                    "not applied"
                }
            ));
        }
        for n in &self.nodes {
            let outcome = match n.outcome {
                NodeOutcome::Applied => "applied",
                NodeOutcome::Released => "ready, released (another director refused)",
                NodeOutcome::Refused => "refused",
                NodeOutcome::Restored => "restored the previous version",
                NodeOutcome::Unreachable => "unreachable (catches up when it returns)",
            };
            out.push_str(&format!("{}: {outcome}", n.node));
            if !n.message.is_empty() {
                out.push_str(&format!(": {}", n.message));
            }
            out.push('\n');
            for d in &n.diagnostics {
                out.push_str(&format!("  {d}\n"));
            }
        }
        out
    }
}

/// A cluster-wide action, `POST /v1/actions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Drain {
        virtual_server: String,
        real_server: String,
    },
    Enable {
        virtual_server: String,
        real_server: String,
    },
    /// Maintenance of an instance on one director (it hands over).
    Maintenance {
        instance: String,
        on: bool,
        node: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    #[serde(flatten)]
    pub action: Action,
    pub author: String,
}

/// Each director's answer to an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionResult {
    pub done: bool,
    pub nodes: Vec<ActionNodeResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionNodeResult {
    pub node: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(id: char) -> ConfigVersion {
        ConfigVersion {
            generation: 2,
            id: id.to_string().repeat(64),
            content: String::new(),
            parents: Vec::new(),
            author: "root".into(),
            node: String::new(),
            at: 0,
            comment: String::new(),
        }
    }

    fn peer(name: &str, v: &ConfigVersion) -> PeerView {
        PeerView {
            name: name.into(),
            address: String::new(),
            reachable: true,
            last_seen: None,
            error: None,
            version: Some(v.clone()),
            relation: None,
            state: None,
            vrrpd: None,
            healthd: None,
        }
    }

    /// lb3 and lb1 made one version, lb2 another, cut off from both.
    fn split_two_and_one() -> ClusterStatus {
        let (ours, theirs) = (version('a'), version('b'));
        ClusterStatus {
            node: "lb3".into(),
            nodes: vec!["lb1".into(), "lb2".into(), "lb3".into()],
            state: SyncState::Conflict,
            detail: String::new(),
            version: ours.clone(),
            ready: true,
            conflict: Some(Conflict {
                mine: ours.clone(),
                theirs: vec![TheirVersion {
                    node: "lb2".into(),
                    version: theirs.clone(),
                    diff: String::new(),
                }],
            }),
            refusing: None,
            peers: vec![peer("lb1", &ours), peer("lb2", &theirs)],
            history: Vec::new(),
            counters: SyncCounters::default(),
        }
    }

    #[test]
    fn a_director_on_this_side_of_a_conflict_holds_this_sides_version() {
        let st = split_two_and_one();
        let a = &st.conflict.as_ref().unwrap().mine;
        assert_eq!(st.side_of("lb3"), Some(a));
        assert_eq!(st.side_of("lb1"), Some(a), "lb1 stands with lb3");
        assert_eq!(st.side_of("lb2").map(|v| &v.id[..1]), Some("b"));
        assert_eq!(st.side_of("lb9"), None);
        assert_eq!(
            st.sides(),
            "lb3, lb1 (version aaaaaaaaaaaa); lb2 (version bbbbbbbbbbbb)"
        );
    }
}
