//! The versions of the cluster's configuration, and how two directors'
//! versions relate. Sans IO: plain values in, decisions out.
//!
//! A version names its generation, its parents and its content, so a
//! version made on one side of a partition can never be mistaken for one
//! made on the other, even with the same generation. Each director keeps
//! its *lineage*: the ids of its current version and of the versions it
//! descends from, newest first. Comparing one director's current version
//! with another's lineage says who is ahead, or that neither is: a
//! conflict, which only an administrator resolves.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tandem_model::api::UnixMillis;
use tandem_model::sync::{ConfigVersion, Relation};

/// How many ancestors a lineage keeps. Far more versions than a
/// partition produces; an older common ancestor reads as a conflict,
/// which is the safe side.
pub const LINEAGE: usize = 256;

/// Hex SHA-256 of a file's bytes.
pub fn content_digest(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of a version. A file a director adopted before it ever synced
/// (generation 0, no parents) is named by its content alone, so two
/// directors that were given the same file agree without talking.
pub fn version_id(generation: u64, parents: &[String], content: &str) -> String {
    if generation == 0 && parents.is_empty() {
        return content.to_string();
    }
    let mut h = Sha256::new();
    h.update(format!("tandem-config-version\n{generation}\n").as_bytes());
    for p in parents {
        h.update(p.as_bytes());
        h.update(b"\n");
    }
    h.update(content.as_bytes());
    hex(&h.finalize())
}

/// True when `v`'s id is what its generation, parents and content make:
/// a version whose id was altered, or whose content is not `text`, is
/// refused.
pub fn well_formed(v: &ConfigVersion, text: &str) -> bool {
    v.content == content_digest(text) && v.id == version_id(v.generation, &v.parents, &v.content)
}

/// A director's current version and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub head: ConfigVersion,
    /// `head.id` first, then its ancestors as this director knows them.
    pub lineage: Vec<String>,
}

impl Ledger {
    /// The ledger of a director that never synchronised: the file it has
    /// is generation 0.
    pub fn adopt(text: &str, node: &str, at: UnixMillis) -> Ledger {
        let content = content_digest(text);
        let head = ConfigVersion {
            generation: 0,
            id: version_id(0, &[], &content),
            content,
            parents: Vec::new(),
            author: String::new(),
            node: node.to_string(),
            at,
            comment: String::new(),
        };
        Ledger {
            lineage: vec![head.id.clone()],
            head,
        }
    }

    /// How `their` version (with its lineage) relates to ours.
    pub fn relation(&self, their: &ConfigVersion, their_lineage: &[String]) -> Relation {
        let mine = &self.head;
        if mine.id == their.id {
            return Relation::Same;
        }
        if their_lineage.contains(&mine.id) {
            return Relation::Ahead;
        }
        if self.lineage.contains(&their.id) {
            return Relation::Behind;
        }
        // Same bytes reached on two paths: nothing to lose either way, so
        // both sides settle on the same one without asking anybody.
        if mine.content == their.content {
            return if (their.generation, &their.id) > (mine.generation, &mine.id) {
                Relation::Ahead
            } else {
                Relation::Behind
            };
        }
        // A director that never synced holds a file nobody chose for the
        // cluster: it takes the cluster's (its own stays in the history).
        match (mine.generation, their.generation) {
            (0, g) if g > 0 => Relation::Ahead,
            (g, 0) if g > 0 => Relation::Behind,
            _ => Relation::Diverged,
        }
    }

    /// A new version of `text` made here, on top of the current one and,
    /// when it resolves a conflict, of the other sides' versions.
    pub fn next(
        &self,
        text: &str,
        author: &str,
        node: &str,
        at: UnixMillis,
        comment: &str,
        also: &[(ConfigVersion, Vec<String>)],
    ) -> (ConfigVersion, Vec<String>) {
        let content = content_digest(text);
        let mut parents = vec![self.head.id.clone()];
        let mut generation = self.head.generation;
        for (v, _) in also {
            if !parents.contains(&v.id) {
                parents.push(v.id.clone());
            }
            generation = generation.max(v.generation);
        }
        generation += 1;
        let id = version_id(generation, &parents, &content);
        let mut lineage = vec![id.clone()];
        let mut sources: Vec<&[String]> = vec![&self.lineage];
        for (_, l) in also {
            sources.push(l);
        }
        merge_into(&mut lineage, &sources);
        (
            ConfigVersion {
                generation,
                id,
                content,
                parents,
                author: author.to_string(),
                node: node.to_string(),
                at,
                comment: comment.to_string(),
            },
            lineage,
        )
    }

    /// Whether this director may take `v` (offered with its lineage) as
    /// its next version: only one that is ahead of the version here.
    pub fn admits(&self, v: &ConfigVersion, lineage: &[String]) -> Result<(), String> {
        if lineage.first() != Some(&v.id) {
            return Err("the lineage does not start with the version offered".into());
        }
        match self.relation(v, lineage) {
            Relation::Ahead => Ok(()),
            Relation::Same => Err(format!("version {} is already current", short(&v.id))),
            Relation::Behind => Err(format!(
                "version {} is older than version {} here",
                short(&v.id),
                short(&self.head.id)
            )),
            Relation::Diverged => Err(format!(
                "version {} is not built on version {} that this director has",
                short(&v.id),
                short(&self.head.id)
            )),
        }
    }

    /// Takes `v` as the current version.
    pub fn advance(&mut self, v: ConfigVersion, lineage: Vec<String>) {
        let mut l = lineage;
        l.truncate(LINEAGE);
        self.lineage = l;
        self.head = v;
    }
}

/// Appends to `out` the ids of `sources`, newest first in turn, each once.
fn merge_into(out: &mut Vec<String>, sources: &[&[String]]) {
    let longest = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    for i in 0..longest {
        for s in sources {
            if let Some(id) = s.get(i)
                && !out.contains(id)
            {
                out.push(id.clone());
            }
        }
        if out.len() >= LINEAGE {
            break;
        }
    }
    out.truncate(LINEAGE);
}

pub use tandem_model::sync::short;

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(l: &mut Ledger, text: &str, node: &str) -> ConfigVersion {
        let (v, lineage) = l.next(text, "admin", node, 1, "", &[]);
        l.advance(v.clone(), lineage);
        v
    }

    #[test]
    fn directors_given_the_same_file_agree_without_talking() {
        let a = Ledger::adopt("x = 1\n", "lb1", 1);
        let b = Ledger::adopt("x = 1\n", "lb2", 2);
        assert_eq!(a.relation(&b.head, &b.lineage), Relation::Same);
    }

    #[test]
    fn an_edit_puts_its_director_ahead_and_the_other_takes_it() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let b = a.clone();
        let v = edit(&mut a, "x = 2\n", "lb1");
        assert_eq!(b.relation(&a.head, &a.lineage), Relation::Ahead);
        assert_eq!(a.relation(&b.head, &b.lineage), Relation::Behind);
        assert_eq!(b.admits(&v, &a.lineage), Ok(()));
    }

    #[test]
    fn a_director_that_missed_several_edits_catches_up_in_one_step() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let b = a.clone();
        for i in 2..10 {
            edit(&mut a, &format!("x = {i}\n"), "lb1");
        }
        assert_eq!(b.relation(&a.head, &a.lineage), Relation::Ahead);
        assert_eq!(b.admits(&a.head, &a.lineage), Ok(()));
    }

    #[test]
    fn edits_on_both_sides_of_a_partition_are_a_conflict() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let mut b = a.clone();
        let va = edit(&mut a, "x = 2\n", "lb1");
        edit(&mut b, "x = 3\n", "lb2");
        assert_eq!(a.relation(&b.head, &b.lineage), Relation::Diverged);
        assert_eq!(b.relation(&a.head, &a.lineage), Relation::Diverged);
        // Neither may push over the other.
        assert!(b.admits(&va, &a.lineage).is_err());
    }

    #[test]
    fn the_same_generation_on_both_sides_is_still_told_apart() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let mut b = a.clone();
        let va = edit(&mut a, "x = 2\n", "lb1");
        let vb = edit(&mut b, "x = 3\n", "lb2");
        assert_eq!(va.generation, vb.generation);
        assert_ne!(va.id, vb.id);
    }

    #[test]
    fn a_resolution_descends_from_both_sides_and_both_take_it() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let mut b = a.clone();
        edit(&mut a, "x = 2\n", "lb1");
        edit(&mut b, "x = 3\n", "lb2");
        let (r, lineage) = a.next(
            "x = 3\n",
            "admin",
            "lb1",
            5,
            "",
            &[(b.head.clone(), b.lineage.clone())],
        );
        assert_eq!(r.parents.len(), 2);
        assert_eq!(a.admits(&r, &lineage), Ok(()));
        assert_eq!(b.admits(&r, &lineage), Ok(()));
        a.advance(r.clone(), lineage.clone());
        b.advance(r, lineage);
        assert_eq!(a.relation(&b.head, &b.lineage), Relation::Same);
    }

    #[test]
    fn the_same_edit_on_both_sides_settles_without_a_conflict() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let mut b = a.clone();
        // The very same edit is the very same version.
        let (va, _) = a.next("x = 2\n", "admin", "lb1", 1, "", &[]);
        let (vb, _) = b.next("x = 2\n", "admin", "lb2", 2, "", &[]);
        assert_eq!(va.id, vb.id);
        // The same bytes reached by different paths.
        edit(&mut a, "x = 2\n", "lb1");
        edit(&mut a, "x = 3\n", "lb1");
        edit(&mut b, "x = 3\n", "lb2");
        let ab = a.relation(&b.head, &b.lineage);
        let ba = b.relation(&a.head, &a.lineage);
        assert_ne!(ab, Relation::Diverged);
        assert_ne!(ab, ba, "exactly one side takes the other's");
    }

    #[test]
    fn a_director_that_never_synced_takes_the_clusters_version() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        edit(&mut a, "x = 2\n", "lb1");
        let fresh = Ledger::adopt("something else\n", "lb3", 9);
        assert_eq!(fresh.relation(&a.head, &a.lineage), Relation::Ahead);
        assert_eq!(a.relation(&fresh.head, &fresh.lineage), Relation::Behind);
        // Two different files nobody synced: a conflict, not a guess.
        let other = Ledger::adopt("y = 1\n", "lb2", 1);
        let first = Ledger::adopt("x = 1\n", "lb1", 1);
        assert_eq!(
            first.relation(&other.head, &other.lineage),
            Relation::Diverged
        );
    }

    #[test]
    fn a_replayed_or_older_version_is_not_admitted() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let mut b = a.clone();
        let v2 = edit(&mut a, "x = 2\n", "lb1");
        let l2 = a.lineage.clone();
        b.advance(v2.clone(), l2.clone());
        let v3 = edit(&mut a, "x = 3\n", "lb1");
        b.advance(v3, a.lineage.clone());
        assert!(b.admits(&v2, &l2).is_err(), "the older version is refused");
    }

    #[test]
    fn an_altered_version_is_not_well_formed() {
        let mut a = Ledger::adopt("x = 1\n", "lb1", 1);
        let v = edit(&mut a, "x = 2\n", "lb1");
        assert!(well_formed(&v, "x = 2\n"));
        assert!(!well_formed(&v, "x = 3\n"));
        let mut bumped = v.clone();
        bumped.generation += 1;
        assert!(!well_formed(&bumped, "x = 2\n"));
    }
}
