//! The owner of the configuration file on this director: it takes
//! changes from the web UI and the CLI and makes them the cluster's (every
//! reachable director checks, then all take it or none keeps it), answers
//! the other directors, and catches up with them.
//!
//! Sync never touches VRRP or IPVS itself: a director's daemons only ever
//! reload a file this owner wrote after checking it, and a sync channel
//! that is down only makes the cluster "not in sync".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_model::api::{EventKind, now_millis};
use tandem_model::config;
use tandem_model::control::EventLog;
use tandem_model::sync::{
    ActionNodeResult, ActionRequest, ActionResult, ApplyRequest, ApplyResult, ClusterStatus,
    ConfigVersion, Conflict, NodeOutcome, NodeResult, PeerView, Relation, SyncCounters, SyncState,
    TheirVersion,
};

use crate::identity::{self, Identity};
use crate::ledger::{Ledger, content_digest, short, well_formed};
use crate::local::{Local, Refusal};
use crate::peer::{self, Incoming, Service};
use crate::store::Pending;
use crate::wire::{Answer, HeadAnswer, Request};

/// A prepared change not committed within this long is dropped: its
/// coordinator is gone, and the version comes back by catch-up if it
/// was taken elsewhere.
/// Longer than a coordinator can take between its prepare and its commit
/// (a prepare round, two reloads of its own and their undo).
const PREPARED_FOR: Duration = Duration::from_secs(120);

/// Events per director in the timeline.
const TIMELINE: usize = 200;

/// How often each director is asked for its version.
pub const ROUND: Duration = Duration::from_secs(1);

struct Peer {
    address: SocketAddr,
    asked: bool,
    view: PeerView,
    lineage: Vec<String>,
}

struct Prepared {
    version: ConfigVersion,
    lineage: Vec<String>,
    text: String,
    from: String,
    made: Instant,
    until: Instant,
}

struct State {
    ledger: Ledger,
    nodes: Vec<String>,
    peers: BTreeMap<String, Peer>,
    prepared: Option<Prepared>,
    conflict: Option<Conflict>,
    /// The lineages of the conflict's other versions, by version id.
    their_lineages: BTreeMap<String, Vec<String>>,
    refusing: Option<String>,
    edited_by_hand: bool,
    counters: SyncCounters,
    reported: Option<(SyncState, String)>,
    /// A round has asked every director and acted on the answers.
    settled: bool,
    /// This director's sync address: its connections come from it, as the
    /// others accept connections only from the directors' addresses.
    source: Option<std::net::IpAddr>,
}

pub struct Owner {
    local: Local,
    identity: Identity,
    events: EventLog,
    state: Mutex<State>,
    /// One change at a time: an edit here, a commit from another
    /// director, or a catch-up.
    change: tokio::sync::Mutex<()>,
    /// The version this start finished taking (see [`Owner::take`]).
    recovered: Option<ConfigVersion>,
}

/// Drops the hold on `name`'s prepared change when `name`, asked at
/// `asked` (after the prepare arrived), says it is in no change: it
/// restarted, or ended the change without a commit reaching here.
/// Holding on would refuse every change and every catch-up until the
/// hold expired; what it took comes back by catch-up.
fn drop_idle_hold(st: &mut State, name: &str, h: &HeadAnswer, asked: Instant) -> bool {
    let idle = h.node == name
        && h.changing == Some(false)
        && st
            .prepared
            .as_ref()
            .is_some_and(|p| p.from == name && p.made < asked);
    if idle && let Some(p) = st.prepared.take() {
        tracing::info!(
            version = short(&p.version.id),
            "{name} is in no change: its prepared version {} is dropped here",
            short(&p.version.id)
        );
    }
    idle
}

/// A change recorded before its file was written and not finished (the
/// last run stopped between the file and the ledger): when the file is
/// that version and the ledger admits it, it becomes the head; in every
/// other case the record goes (the file was not written, or was put
/// back after a refusal). Returns the version finished.
fn finish_pending(
    local: &Local,
    ledger: &mut Ledger,
    text: &str,
) -> Result<Option<ConfigVersion>, OwnerError> {
    let Some(p) = local.store.load_pending() else {
        return Ok(None);
    };
    let finish = content_digest(text) == p.version.content
        && well_formed(&p.version, &p.text)
        && ledger.admits(&p.version, &p.lineage).is_ok();
    let done = if finish {
        local
            .store
            .keep(&p.version, &p.text)
            .map_err(OwnerError::Store)?;
        ledger.advance(p.version.clone(), p.lineage);
        local.store.save_ledger(ledger).map_err(OwnerError::Store)?;
        Some(p.version)
    } else {
        None
    };
    local.store.save_pending(None).map_err(OwnerError::Store)?;
    Ok(done)
}

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot keep the history: {0}")]
    Store(std::io::Error),
}

/// The other directors of a version of the file, and where they listen.
/// The other directors of a version of the file, where they listen, and
/// this director's own address (the source of its connections).
type Topology = (
    Vec<String>,
    BTreeMap<String, SocketAddr>,
    Option<std::net::IpAddr>,
);

fn topology(text: &str, origin: &str, me: &str) -> Result<Topology, String> {
    let mine = config::parse_as(text, origin, Some(me)).map_err(|e| e.to_string())?;
    let Some(cluster) = mine.cluster.clone().filter(|c| c.synchronised()) else {
        return Err(format!(
            "{origin} is not a synchronised cluster file: it needs [cluster] nodes and address"
        ));
    };
    let mut peers = BTreeMap::new();
    for n in cluster.nodes.iter().filter(|n| *n != me) {
        let theirs = config::parse_as(text, origin, Some(n)).map_err(|e| e.to_string())?;
        if let Some(a) = theirs.cluster.and_then(|c| c.address) {
            peers.insert(n.clone(), SocketAddr::new(a, cluster.port));
        }
    }
    Ok((cluster.nodes, peers, cluster.address))
}

impl Owner {
    /// Opens the ledger (or adopts the file on disk as generation 0 when
    /// this director never synchronised).
    pub fn open(local: Local, identity: Identity, events: EventLog) -> Result<Owner, OwnerError> {
        let me = local.me.clone();
        let origin = local.store.config_path().display().to_string();
        let text = local
            .store
            .read_config()
            .map_err(|cause| OwnerError::Read {
                path: origin.clone(),
                cause,
            })?;
        let mut ledger = match local.store.load_ledger().map_err(OwnerError::Store)? {
            Some(l) => l,
            None => {
                let l = Ledger::adopt(&text, &me, now_millis());
                local
                    .store
                    .keep(&l.head, &text)
                    .map_err(OwnerError::Store)?;
                local.store.save_ledger(&l).map_err(OwnerError::Store)?;
                l
            }
        };
        let recovered = finish_pending(&local, &mut ledger, &text)?;
        // The nodes and addresses come from the version held, which was
        // checked when it was taken; a hand-edited file may not even parse.
        let held = local
            .store
            .text(&ledger.head.id)
            .unwrap_or_else(|| text.clone());
        let (nodes, addrs, source) = topology(&held, &origin, &me).map_err(OwnerError::Invalid)?;
        let edited_by_hand = content_digest(&text) != ledger.head.content;
        let conflict = local.store.load_conflict();
        let owner = Owner {
            state: Mutex::new(State {
                ledger,
                peers: peers_of(&nodes, &addrs, BTreeMap::new()),
                nodes,
                prepared: None,
                conflict,
                their_lineages: BTreeMap::new(),
                refusing: None,
                edited_by_hand,
                counters: SyncCounters::default(),
                reported: None,
                settled: false,
                source,
            }),
            local,
            identity,
            events,
            change: tokio::sync::Mutex::new(()),
            recovered,
        };
        Ok(owner)
    }

    /// After a start that finished a change cut off in the last run: the
    /// daemons read the file again (their reload may not have happened).
    pub async fn finish_recovery(&self) {
        if let Some(v) = &self.recovered {
            tracing::info!(
                version = short(&v.id),
                "finished taking version {}, which the last run wrote to the file and stopped before recording",
                short(&v.id)
            );
            self.local.reload_daemons().await;
        }
    }

    pub fn me(&self) -> &str {
        &self.local.me
    }

    fn origin(&self) -> String {
        self.local.store.config_path().display().to_string()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The text of the version held.
    fn head_text(&self, head: &ConfigVersion) -> String {
        self.local
            .store
            .text(&head.id)
            .or_else(|| self.local.store.read_config().ok())
            .unwrap_or_default()
    }

    // ----- the status ------------------------------------------------

    pub fn status(&self) -> ClusterStatus {
        let st = self.st();
        let (state, detail) = assess(&st, self.me());
        ClusterStatus {
            node: self.me().to_string(),
            nodes: st.nodes.clone(),
            state,
            detail,
            version: st.ledger.head.clone(),
            ready: st.settled,
            conflict: st.conflict.clone(),
            refusing: st.refusing.clone(),
            peers: st.peers.values().map(|p| p.view.clone()).collect(),
            history: self.local.store.history(),
            counters: st.counters.clone(),
        }
    }

    pub fn version_text(&self, id: &str) -> Option<(ConfigVersion, String)> {
        Some((self.local.store.version(id)?, self.local.store.text(id)?))
    }

    /// Publishes a sync state change as an event, once per change.
    fn report(&self) {
        let mut st = self.st();
        let now = assess(&st, self.me());
        if st.reported.as_ref() != Some(&now) {
            let first = st.reported.is_none();
            st.reported = Some(now.clone());
            drop(st);
            if !first || now.0 != SyncState::CatchingUp {
                tracing::info!(state = now.0.label(), "{}", now.1);
                self.events.publish(EventKind::ClusterSync {
                    state: now.0.label().to_string(),
                    detail: now.1,
                });
            }
        }
    }

    fn applied_event(&self, v: &ConfigVersion, how: &str) {
        tracing::info!(
            generation = v.generation,
            version = short(&v.id),
            how,
            "configuration taken"
        );
        self.events.publish(EventKind::ConfigVersion {
            generation: v.generation,
            version: v.id.clone(),
            author: v.author.clone(),
            made_on: v.node.clone(),
            how: how.to_string(),
        });
    }

    /// After a version was taken: the history, the ledger, the nodes.
    /// Writes `text` as version `v` (daemons reloaded) and makes it the
    /// head. The step is recorded first: a crash between the file and
    /// the ledger is finished at the next start ([`Owner::open`]) instead
    /// of leaving a file that looks edited by hand.
    async fn take(
        &self,
        v: &ConfigVersion,
        lineage: &[String],
        text: &str,
        previous: &str,
    ) -> Result<(), Refusal> {
        let step = Pending {
            version: v.clone(),
            lineage: lineage.to_vec(),
            text: text.to_string(),
        };
        self.local.store.save_pending(Some(&step)).map_err(|e| {
            Refusal::new(format!(
                "cannot record the change in the state directory: {e}"
            ))
        })?;
        let r = self.local.take(text, previous).await;
        if r.is_ok() {
            self.advance(v.clone(), lineage.to_vec(), text);
        }
        if let Err(e) = self.local.store.save_pending(None) {
            tracing::warn!("cannot clear the change recorded in the state directory: {e}");
        }
        r
    }

    fn advance(&self, v: ConfigVersion, lineage: Vec<String>, text: &str) {
        if let Err(e) = self.local.store.keep(&v, text) {
            tracing::warn!("cannot keep version {} in the history: {e}", short(&v.id));
        }
        let mut st = self.st();
        st.ledger.advance(v, lineage);
        st.edited_by_hand = false;
        if let Err(e) = self.local.store.save_ledger(&st.ledger) {
            tracing::warn!("cannot save the ledger: {e}");
        }
        if let Ok((nodes, addrs, source)) = topology(text, &self.origin(), self.me()) {
            st.source = source;
            let old = std::mem::take(&mut st.peers);
            st.peers = peers_of(&nodes, &addrs, old);
            st.nodes = nodes;
        }
    }

    // ----- a change made here ----------------------------------------

    /// Makes `req.text` the cluster's file: every reachable director
    /// checks it, then all take it, or none keeps it.
    pub async fn apply(self: &Arc<Self>, req: ApplyRequest) -> ApplyResult {
        let _one = self.change.lock().await;
        self.check_hold().await;
        let me = self.me().to_string();
        let refused = |error: String| ApplyResult {
            applied: false,
            version: None,
            error,
            nodes: Vec::new(),
        };
        let (before, also) = {
            let mut st = self.st();
            if let Some(p) = st.prepared.as_ref().filter(|p| p.until > Instant::now()) {
                return refused(format!(
                    "{me} is taking a change from {} right now: try again in a moment",
                    p.from
                ));
            }
            st.prepared = None;
            if let Some(base) = &req.base
                && *base != st.ledger.head.id
            {
                return refused(format!(
                    "the file changed since this edit began: version {} (generation {}, by {} on {}) is current; reload and edit again",
                    st.ledger.head.short(),
                    st.ledger.head.generation,
                    st.ledger.head.author,
                    st.ledger.head.node
                ));
            }
            let also: Vec<(ConfigVersion, Vec<String>)> = match (&st.conflict, req.resolve) {
                (Some(_), false) => {
                    return refused(
                        "the cluster's configuration is in conflict: resolve it first (tandem config resolve, or the web UI's configuration page)".into(),
                    );
                }
                (None, true) => return refused("there is no conflict to resolve".into()),
                (Some(c), true) => c
                    .theirs
                    .iter()
                    .map(|t| {
                        let l = st
                            .their_lineages
                            .get(&t.version.id)
                            .cloned()
                            .unwrap_or_else(|| vec![t.version.id.clone()]);
                        (t.version.clone(), l)
                    })
                    .collect(),
                (None, false) => Vec::new(),
            };
            if !req.resolve && content_digest(&req.text) == st.ledger.head.content {
                let on_disk = self.local.store.read_config().ok();
                if on_disk.as_deref() == Some(req.text.as_str()) {
                    return refused(format!(
                        "nothing to apply: the file is version {} (generation {}) already",
                        st.ledger.head.short(),
                        st.ledger.head.generation
                    ));
                }
            }
            (st.ledger.clone(), also)
        };
        let previous = self.head_text(&before.head);
        let (version, lineage) = before.next(
            &req.text,
            &req.author,
            &me,
            now_millis(),
            &req.comment,
            &also,
        );
        tracing::info!(
            version = short(&version.id),
            generation = version.generation,
            author = %req.author,
            "a change for the cluster"
        );
        if let Err(r) = self.local.validate(&req.text) {
            self.st().counters.changes_refused += 1;
            return ApplyResult {
                applied: false,
                version: Some(version),
                error: String::new(),
                nodes: vec![refused_by(&me, r)],
            };
        }
        let peers = self.peer_list();
        // 1. Every reachable director checks it against its own view.
        let prepare = Request::Prepare {
            version: version.clone(),
            lineage: lineage.clone(),
            text: req.text.clone(),
        };
        let answers = self.ask_all(&peers, &prepare).await;
        let mut nodes = Vec::new();
        let (ready, refusals) = sort_answers(answers, "a prepare", &mut nodes, |a| {
            matches!(a, Answer::Prepared)
        });
        if refusals {
            self.release(&ready, &version.id, &mut nodes).await;
            nodes.insert(0, released(&me));
            self.st().counters.changes_refused += 1;
            return ApplyResult {
                applied: false,
                version: Some(version),
                error: String::new(),
                nodes,
            };
        }
        // 2. This director takes it; then every one that is ready. A hand
        // edit it replaces is kept, not lost.
        let mut note = String::new();
        if let Ok(disk) = self.local.store.read_config()
            && disk != previous
            && disk != req.text
        {
            match self.local.store.keep_hand_edit(&disk, now_millis()) {
                Ok(p) => {
                    note = format!(
                        "the hand edit that was in the file is kept as {}",
                        p.display()
                    )
                }
                Err(e) => {
                    return ApplyResult {
                        applied: false,
                        version: Some(version),
                        error: format!(
                            "the file here was edited by hand, and that edit cannot be kept: {e}"
                        ),
                        nodes: Vec::new(),
                    };
                }
            }
        }
        if let Err(r) = self.take(&version, &lineage, &req.text, &previous).await {
            self.release(&ready, &version.id, &mut nodes).await;
            nodes.insert(0, refused_by(&me, r));
            self.st().counters.changes_refused += 1;
            return ApplyResult {
                applied: false,
                version: Some(version),
                error: String::new(),
                nodes,
            };
        }
        let commit = Request::Commit {
            id: version.id.clone(),
        };
        let answers = self.ask_all(&ready, &commit).await;
        // One that did not answer may have taken it or not: either way it
        // catches up (or is caught up) by comparing versions next round.
        let (took, failed) = sort_answers(answers, "a commit", &mut nodes, |a| {
            matches!(a, Answer::Committed)
        });
        if failed {
            // 3. One could not keep it: none keeps it. The undo is a new
            // version with the previous text, made on top of the refused
            // one, never a rewind: a director that took the refused version
            // and was not reached now still ends up at the undo (it is
            // ahead of everything), not the other way round.
            let (undo, undo_lineage) = {
                let st = self.st();
                st.ledger.next(
                    &previous,
                    &req.author,
                    &me,
                    now_millis(),
                    &format!(
                        "undoes version {}: a director could not keep it",
                        version.short()
                    ),
                    &[],
                )
            };
            let restore = Request::Restore {
                version: undo.clone(),
                lineage: undo_lineage.clone(),
                text: previous.clone(),
            };
            for (name, _, a) in self.ask_all(&took, &restore).await {
                nodes.push(match a {
                    Ok(Answer::Restored) => NodeResult {
                        node: name,
                        outcome: NodeOutcome::Restored,
                        message: String::new(),
                        diagnostics: Vec::new(),
                    },
                    Ok(Answer::Refused {
                        message,
                        diagnostics,
                    }) => NodeResult {
                        node: name,
                        outcome: NodeOutcome::Refused,
                        message: format!("could not put the previous version back: {message}"),
                        diagnostics,
                    },
                    Ok(other) => refused_by(
                        &name,
                        Refusal::new(format!("answered {other:?} to a restore")),
                    ),
                    Err(e) => NodeResult {
                        node: name,
                        outcome: NodeOutcome::Unreachable,
                        message: format!("{e}; it takes the previous version back when it returns"),
                        diagnostics: Vec::new(),
                    },
                });
            }
            let here = match self.take(&undo, &undo_lineage, &previous, &req.text).await {
                Ok(()) => {
                    self.applied_event(&undo, "restored");
                    NodeResult {
                        node: me.clone(),
                        outcome: NodeOutcome::Restored,
                        message: String::new(),
                        diagnostics: Vec::new(),
                    }
                }
                Err(r) => NodeResult {
                    node: me.clone(),
                    outcome: NodeOutcome::Refused,
                    message: format!("could not put the previous version back: {}", r.summary()),
                    diagnostics: r.diagnostics,
                },
            };
            nodes.insert(0, here);
            self.st().counters.changes_refused += 1;
            return ApplyResult {
                applied: false,
                version: Some(version),
                error: String::new(),
                nodes,
            };
        }
        for (name, _) in &took {
            nodes.push(NodeResult {
                node: name.clone(),
                outcome: NodeOutcome::Applied,
                message: String::new(),
                diagnostics: Vec::new(),
            });
        }
        nodes.insert(
            0,
            NodeResult {
                node: me.clone(),
                outcome: NodeOutcome::Applied,
                message: note,
                diagnostics: Vec::new(),
            },
        );
        {
            let mut st = self.st();
            st.counters.changes_applied += 1;
            if req.resolve {
                st.conflict = None;
                st.their_lineages.clear();
                let _ = self.local.store.save_conflict(None);
            }
            st.refusing = None;
            // The directors that took it are at this version now.
            for (name, _) in &took {
                if let Some(p) = st.peers.get_mut(name) {
                    p.view.version = Some(version.clone());
                    p.view.relation = Some(Relation::Same);
                }
            }
        }
        self.applied_event(&version, "applied");
        self.report();
        nodes.sort_by_key(|n| self.node_order(&n.node));
        ApplyResult {
            applied: true,
            version: Some(version),
            error: String::new(),
            nodes,
        }
    }

    /// Before refusing a change for a hold on another director's, asks
    /// that director whether its change is still under way (see
    /// [`drop_idle_hold`]).
    async fn check_hold(&self) {
        let held = {
            let st = self.st();
            st.prepared
                .as_ref()
                .filter(|p| p.until > Instant::now())
                .and_then(|p| Some((p.from.clone(), st.peers.get(&p.from)?.address)))
        };
        let Some((from, address)) = held else {
            return;
        };
        let asked = Instant::now();
        let answers = self
            .ask_all(&[(from.clone(), address)], &Request::Head)
            .await;
        if let Some((_, _, Ok(Answer::Head(h)))) = answers.first() {
            drop_idle_hold(&mut self.st(), &from, h, asked);
        }
    }

    fn node_order(&self, n: &str) -> usize {
        self.st()
            .nodes
            .iter()
            .position(|x| x == n)
            .unwrap_or(usize::MAX)
    }

    fn peer_list(&self) -> Vec<(String, SocketAddr)> {
        self.st()
            .peers
            .iter()
            .map(|(n, p)| (n.clone(), p.address))
            .collect()
    }

    async fn ask_all(
        &self,
        peers: &[(String, SocketAddr)],
        req: &Request,
    ) -> Vec<(String, SocketAddr, Result<Answer, String>)> {
        let tls = self.identity.client.clone();
        let source = self.st().source;
        let calls = peers.iter().map(|(name, addr)| {
            let tls = tls.clone();
            async move {
                let a = peer::call(&tls, source, name, *addr, req).await;
                (name.clone(), *addr, a)
            }
        });
        futures::future::join_all(calls).await
    }

    async fn release(&self, ready: &[(String, SocketAddr)], id: &str, nodes: &mut Vec<NodeResult>) {
        let req = Request::Release { id: id.to_string() };
        for (name, _, a) in self.ask_all(ready, &req).await {
            let mut r = released(&name);
            // One that did not hear the release drops the change when its
            // hold expires; it never took it.
            if let Err(e) = a {
                r.message = format!("did not hear the release ({e}); its hold expires");
            }
            nodes.push(r);
        }
    }

    /// `tandem config discard`: a file edited by hand goes back to the
    /// version held.
    pub async fn discard(&self) -> Result<ConfigVersion, String> {
        let _one = self.change.lock().await;
        let head = self.st().ledger.head.clone();
        let text = self
            .local
            .store
            .text(&head.id)
            .ok_or_else(|| format!("version {} is not in the history", head.short()))?;
        let on_disk = self.local.store.read_config().unwrap_or_default();
        self.local
            .take(&text, &on_disk)
            .await
            .map_err(|r| r.summary())?;
        self.st().edited_by_hand = false;
        self.applied_event(&head, "restored");
        self.report();
        Ok(head)
    }

    // ----- an action for the whole cluster ---------------------------

    pub async fn act(self: &Arc<Self>, req: ActionRequest) -> ActionResult {
        use tandem_model::sync::Action;
        let me = self.me().to_string();
        let mut nodes = Vec::new();
        let targets: Vec<(String, Option<SocketAddr>)> = match &req.action {
            Action::Maintenance { node, .. } => {
                if *node == me {
                    vec![(me.clone(), None)]
                } else {
                    match self.st().peers.get(node) {
                        Some(p) => vec![(node.clone(), Some(p.address))],
                        None => {
                            return ActionResult {
                                done: false,
                                nodes: vec![ActionNodeResult {
                                    node: node.clone(),
                                    ok: false,
                                    message: format!("{node} is not a director of this cluster"),
                                }],
                            };
                        }
                    }
                }
            }
            _ => {
                let mut all = vec![(me.clone(), None)];
                all.extend(self.peer_list().into_iter().map(|(n, a)| (n, Some(a))));
                all
            }
        };
        let remote: Vec<(String, SocketAddr)> = targets
            .iter()
            .filter_map(|(n, a)| a.map(|a| (n.clone(), a)))
            .collect();
        let ask = Request::Act {
            action: req.action.clone(),
            author: req.author.clone(),
        };
        let (here, there) = tokio::join!(
            async {
                if targets.iter().any(|(_, a)| a.is_none()) {
                    Some(self.act_here(&req.action, &req.author).await)
                } else {
                    None
                }
            },
            self.ask_all(&remote, &ask)
        );
        if let Some(r) = here {
            nodes.push(ActionNodeResult {
                node: me.clone(),
                ok: r.is_ok(),
                message: r.unwrap_or_else(|e| e),
            });
        }
        for (name, _, a) in there {
            nodes.push(match a {
                Ok(Answer::Acted { ok, message }) => ActionNodeResult {
                    node: name,
                    ok,
                    message,
                },
                Ok(other) => ActionNodeResult {
                    node: name,
                    ok: false,
                    message: format!("answered {other:?}"),
                },
                Err(e) => ActionNodeResult {
                    node: name,
                    ok: false,
                    message: e,
                },
            });
        }
        ActionResult {
            done: nodes.iter().all(|n| n.ok),
            nodes,
        }
    }

    // ----- the timeline ---------------------------------------------

    /// This director's events that say what happened to the service:
    /// transitions, health, quorum, versions, sync, actions, reloads.
    async fn events_here(&self) -> Vec<tandem_model::api::Event> {
        let mut all = self.events.recent(0);
        all.extend(self.local.events().await);
        all.retain(|e| {
            !matches!(
                e.kind,
                EventKind::DaemonStarted { .. } | EventKind::DaemonStopping
            ) || e.daemon != "clusterd"
        });
        all.sort_by_key(|e| e.at);
        let keep = all.len().saturating_sub(TIMELINE);
        all.drain(..keep);
        all
    }

    /// Every reachable director's recent events, newest first: the
    /// cluster's timeline.
    pub async fn timeline(&self) -> Vec<tandem_model::api::Event> {
        let peers = self.peer_list();
        let (mut all, there) =
            tokio::join!(self.events_here(), self.ask_all(&peers, &Request::Events));
        for (name, _, a) in there {
            if let Ok(Answer::Events { events }) = a {
                // Each director speaks for itself only.
                all.extend(events.into_iter().filter(|e| e.node == name));
            }
        }
        all.sort_by(|a, b| b.at.cmp(&a.at).then(a.node.cmp(&b.node)));
        all.truncate(TIMELINE);
        all
    }

    // ----- catching up ----------------------------------------------

    /// One round: ask every director for its version; take a newer one,
    /// record a conflict, notice a hand edit.
    pub async fn round(self: &Arc<Self>) {
        let peers = self.peer_list();
        let asked = Instant::now();
        let answers = self.ask_all(&peers, &Request::Head).await;
        let now = now_millis();
        {
            let mut st = self.st();
            let ledger = st.ledger.clone();
            for (name, _, a) in &answers {
                if let Ok(Answer::Head(h)) = a {
                    drop_idle_hold(&mut st, name, h, asked);
                }
                let Some(p) = st.peers.get_mut(name) else {
                    continue;
                };
                p.asked = true;
                match a {
                    Ok(Answer::Head(h))
                        if h.node == *name
                            && tandem_model::sync::is_id(&h.version.id)
                            && h.lineage.iter().all(|l| tandem_model::sync::is_id(l)) =>
                    {
                        p.view.reachable = true;
                        p.view.last_seen = Some(now);
                        p.view.error = None;
                        p.view.relation = Some(ledger.relation(&h.version, &h.lineage));
                        p.view.version = Some(h.version.clone());
                        p.view.state = Some(h.state);
                        p.view.vrrpd = h.vrrpd.clone();
                        p.view.healthd = h.healthd.clone();
                        p.lineage = h.lineage.clone();
                    }
                    Ok(other) => {
                        p.view.reachable = false;
                        p.view.error = Some(format!("answered {other:?} to a question"));
                    }
                    Err(e) => {
                        p.view.reachable = false;
                        p.view.error = Some(e.clone());
                    }
                }
            }
        }
        if let Ok(_one) = self.change.try_lock() {
            self.settle().await;
            let mut st = self.st();
            // Ready once every director was asked and none that answered is
            // still ahead (one whose version this director refuses is loud
            // enough; waiting would not change it).
            let behind = st
                .peers
                .values()
                .any(|p| p.view.reachable && p.view.relation == Some(Relation::Ahead));
            st.settled = st.peers.values().all(|p| p.asked) && (!behind || st.refusing.is_some());
        }
        self.report();
    }

    /// What the answers of the round call for, under the change lock.
    async fn settle(self: &Arc<Self>) {
        let on_disk = self.local.store.read_config().ok();
        let (ahead, diverged, held) = {
            let mut st = self.st();
            if st
                .prepared
                .as_ref()
                .is_some_and(|p| p.until > Instant::now())
            {
                return;
            }
            st.prepared = None;
            st.edited_by_hand = on_disk
                .as_deref()
                .is_some_and(|t| content_digest(t) != st.ledger.head.content);
            let reachable = st.peers.iter().filter(|(_, p)| p.view.reachable);
            let mut ahead: Option<(String, SocketAddr, ConfigVersion, Vec<String>)> = None;
            let mut diverged = Vec::new();
            for (name, p) in reachable {
                let Some(v) = p.view.version.clone() else {
                    continue;
                };
                match p.view.relation {
                    Some(Relation::Ahead)
                        if ahead.as_ref().is_none_or(|a| v.generation > a.2.generation) =>
                    {
                        ahead = Some((name.clone(), p.address, v, p.lineage.clone()));
                    }
                    Some(Relation::Diverged) => {
                        diverged.push((name.clone(), p.address, v, p.lineage.clone()))
                    }
                    _ => {}
                }
            }
            if ahead.is_none() {
                st.refusing = None;
            }
            (ahead, diverged, st.ledger.head.clone())
        };
        if let Some((name, addr, v, lineage)) = ahead {
            // The relations were computed against the version before: the
            // next round looks at conflicts with the new one.
            self.catch_up(&name, addr, v, lineage, &held).await;
            return;
        }
        self.record_conflict(diverged).await;
    }

    async fn fetch(
        &self,
        name: &str,
        addr: SocketAddr,
        v: &ConfigVersion,
    ) -> Result<String, String> {
        let source = self.st().source;
        match peer::call(
            &self.identity.client,
            source,
            name,
            addr,
            &Request::Fetch { id: v.id.clone() },
        )
        .await?
        {
            Answer::Text { version, text } if version == *v && well_formed(v, &text) => Ok(text),
            Answer::Text { .. } => Err(format!(
                "{name} sent a text that is not version {}",
                v.short()
            )),
            other => Err(format!("{name} answered {other:?} to a fetch")),
        }
    }

    async fn catch_up(
        self: &Arc<Self>,
        name: &str,
        addr: SocketAddr,
        v: ConfigVersion,
        lineage: Vec<String>,
        held: &ConfigVersion,
    ) {
        if self.st().edited_by_hand {
            self.st().refusing = Some(format!(
                "{name} has version {} (generation {}), but the file here was edited by hand: `tandem config apply` makes the edit the cluster's, `tandem config discard` drops it",
                v.short(),
                v.generation
            ));
            return;
        }
        let text = match self.fetch(name, addr, &v).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("catching up with {name}: {e}");
                return;
            }
        };
        if let Err(r) = self.local.validate(&text) {
            self.st().refusing = Some(format!(
                "version {} from {name}: {}",
                v.short(),
                r.summary()
            ));
            return;
        }
        let previous = self.head_text(held);
        if let Err(r) = self.take(&v, &lineage, &text, &previous).await {
            self.st().refusing = Some(format!(
                "version {} from {name}: {}",
                v.short(),
                r.summary()
            ));
            return;
        }
        {
            let mut st = self.st();
            st.refusing = None;
            self.settle_conflict(&mut st);
            if let Some(p) = st.peers.get_mut(name) {
                p.view.relation = Some(Relation::Same);
            }
        }
        self.applied_event(&v, "caught up");
    }

    async fn record_conflict(
        &self,
        diverged: Vec<(String, SocketAddr, ConfigVersion, Vec<String>)>,
    ) {
        if diverged.is_empty() {
            let mut st = self.st();
            // Only a version that descends from both sides ends a
            // conflict; a side that is merely out of reach does not.
            let all_answered = st.peers.values().all(|p| p.view.reachable);
            if st.conflict.is_some() && all_answered {
                let theirs_gone = st.conflict.as_ref().is_some_and(|c| {
                    c.theirs.iter().all(|t| {
                        st.peers
                            .get(&t.node)
                            .is_some_and(|p| p.view.relation != Some(Relation::Diverged))
                    })
                });
                if theirs_gone {
                    st.conflict = None;
                    st.their_lineages.clear();
                    let _ = self.local.store.save_conflict(None);
                }
            }
            return;
        }
        let mine = self.st().ledger.head.clone();
        let my_text = self.head_text(&mine);
        let mut theirs = Vec::new();
        let mut lineages = BTreeMap::new();
        for (name, addr, v, lineage) in diverged {
            let known = self
                .st()
                .conflict
                .as_ref()
                .and_then(|c| c.theirs.iter().find(|t| t.version.id == v.id).cloned());
            let t = match known {
                Some(t) => t,
                None => match self.fetch(&name, addr, &v).await {
                    Ok(text) => {
                        let _ = self.local.store.keep(&v, &text);
                        TheirVersion {
                            node: name.clone(),
                            diff: unified(&my_text, &text, &mine, &v, &name, self.me()),
                            version: v.clone(),
                        }
                    }
                    Err(e) => {
                        tracing::warn!("conflict with {name}: {e}");
                        continue;
                    }
                },
            };
            lineages.insert(v.id.clone(), lineage);
            theirs.push(t);
        }
        if theirs.is_empty() {
            return;
        }
        let c = Conflict { mine, theirs };
        let mut st = self.st();
        if st.conflict.as_ref() != Some(&c) {
            tracing::warn!("configuration conflict: {} side(s)", c.theirs.len() + 1);
            let _ = self.local.store.save_conflict(Some(&c));
            st.conflict = Some(c);
        }
        st.their_lineages = lineages;
    }
}

fn peers_of(
    nodes: &[String],
    addrs: &BTreeMap<String, SocketAddr>,
    mut old: BTreeMap<String, Peer>,
) -> BTreeMap<String, Peer> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let Some(a) = addrs.get(n) else {
            continue;
        };
        let p = match old.remove(n) {
            Some(mut p) if p.address == *a => {
                p.view.address = a.to_string();
                p
            }
            _ => Peer {
                address: *a,
                asked: false,
                lineage: Vec::new(),
                view: PeerView {
                    name: n.clone(),
                    address: a.to_string(),
                    reachable: false,
                    last_seen: None,
                    error: None,
                    version: None,
                    relation: None,
                    state: None,
                    vrrpd: None,
                    healthd: None,
                },
            },
        };
        out.insert(n.clone(), p);
    }
    out
}

/// The state and the sentence for the banner.
fn assess(st: &State, me: &str) -> (SyncState, String) {
    assess_with(st, me, true)
}

/// As [`assess`]; without `with_peers`, only what is wrong here (what
/// another director is told: a state that echoed back would never end).
fn assess_with(st: &State, me: &str, with_peers: bool) -> (SyncState, String) {
    let head = &st.ledger.head;
    if let Some(c) = &st.conflict {
        let sides: Vec<String> = c
            .theirs
            .iter()
            .map(|t| {
                format!(
                    "{} has version {} (generation {})",
                    t.node,
                    t.version.short(),
                    t.version.generation
                )
            })
            .collect();
        return (
            SyncState::Conflict,
            format!(
                "{me} has version {} (generation {}), {}: changes were made on both sides of a partition. Nothing was overwritten; choose a version (tandem config resolve) to end it",
                head.short(),
                head.generation,
                sides.join(", ")
            ),
        );
    }
    if st.edited_by_hand {
        return (
            SyncState::EditedByHand,
            format!(
                "the file on {me} is not version {}: it was edited by hand. `tandem config apply` makes the edit the cluster's; `tandem config discard` puts version {} back",
                head.short(),
                head.short()
            ),
        );
    }
    if let Some(r) = &st.refusing {
        return (SyncState::Refusing, format!("{me} refuses {r}"));
    }
    // What is wrong on another director is wrong for the cluster: every
    // director's UI says so, not only that one's.
    for (n, p) in st.peers.iter().filter(|(_, p)| p.view.reachable) {
        match p.view.state {
            Some(s @ (SyncState::EditedByHand | SyncState::Refusing | SyncState::Conflict))
                if with_peers =>
            {
                return (
                    s,
                    format!(
                        "{n}: {}: see its status (tandem cluster status there)",
                        s.label()
                    ),
                );
            }
            _ => {}
        }
    }
    let not_asked: Vec<&str> = st
        .peers
        .iter()
        .filter(|(_, p)| !p.asked)
        .map(|(n, _)| n.as_str())
        .collect();
    if !not_asked.is_empty() {
        return (
            SyncState::CatchingUp,
            format!("asking {} for its version", not_asked.join(", ")),
        );
    }
    let diverged: Vec<&str> = st
        .peers
        .iter()
        .filter(|(_, p)| p.view.reachable && p.view.relation == Some(Relation::Diverged))
        .map(|(n, _)| n.as_str())
        .collect();
    if !diverged.is_empty() {
        return (
            SyncState::Conflict,
            format!(
                "{} has a version that neither descends from nor precedes {me}'s: fetching it to show the conflict",
                diverged.join(", ")
            ),
        );
    }
    let moving: Vec<String> = st
        .peers
        .iter()
        .filter(|(_, p)| p.view.reachable)
        .filter_map(|(n, p)| match p.view.relation {
            Some(Relation::Ahead) => Some(format!("{n} is ahead")),
            Some(Relation::Behind) => Some(format!("{n} is catching up")),
            _ => None,
        })
        .collect();
    if !moving.is_empty() {
        return (SyncState::CatchingUp, moving.join(", "));
    }
    let down: Vec<String> = st
        .peers
        .iter()
        .filter(|(_, p)| !p.view.reachable)
        .map(|(n, p)| match &p.view.error {
            Some(e) => format!("{n} ({e})"),
            None => n.clone(),
        })
        .collect();
    if !down.is_empty() {
        return (
            SyncState::PeersUnreachable,
            format!(
                "no answer from {}: it takes version {} when it returns; VRRP and IPVS are unaffected",
                down.join(", "),
                head.short()
            ),
        );
    }
    (
        SyncState::InSync,
        format!(
            "every director has version {} (generation {})",
            head.short(),
            head.generation
        ),
    )
}

/// A round of answers: the directors that gave the answer wanted, a
/// result in `nodes` for each of the others, and whether one refused (as
/// opposed to not answering).
fn sort_answers(
    answers: Vec<(String, SocketAddr, Result<Answer, String>)>,
    what: &str,
    nodes: &mut Vec<NodeResult>,
    wanted: impl Fn(&Answer) -> bool,
) -> (Vec<(String, SocketAddr)>, bool) {
    let mut yes = Vec::new();
    let mut refused = false;
    for (name, addr, a) in answers {
        match a {
            Ok(a) if wanted(&a) => yes.push((name, addr)),
            Ok(Answer::Refused {
                message,
                diagnostics,
            }) => {
                refused = true;
                nodes.push(NodeResult {
                    node: name,
                    outcome: NodeOutcome::Refused,
                    message,
                    diagnostics,
                });
            }
            Ok(other) => {
                refused = true;
                nodes.push(refused_by(
                    &name,
                    Refusal::new(format!("answered {other:?} to {what}")),
                ));
            }
            Err(e) => nodes.push(NodeResult {
                node: name,
                outcome: NodeOutcome::Unreachable,
                message: e,
                diagnostics: Vec::new(),
            }),
        }
    }
    (yes, refused)
}

fn refused_by(node: &str, r: Refusal) -> NodeResult {
    NodeResult {
        node: node.to_string(),
        outcome: NodeOutcome::Refused,
        message: r.message,
        diagnostics: r.diagnostics,
    }
}

fn released(node: &str) -> NodeResult {
    NodeResult {
        node: node.to_string(),
        outcome: NodeOutcome::Released,
        message: String::new(),
        diagnostics: Vec::new(),
    }
}

/// A unified diff from our version to theirs, headed with both.
pub fn unified(
    mine: &str,
    theirs: &str,
    mv: &ConfigVersion,
    tv: &ConfigVersion,
    their_node: &str,
    me: &str,
) -> String {
    similar::TextDiff::from_lines(mine, theirs)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{me} version {} (generation {})", mv.short(), mv.generation),
            &format!(
                "{their_node} version {} (generation {})",
                tv.short(),
                tv.generation
            ),
        )
        .to_string()
}

// ----- answering the other directors ----------------------------------

impl Service for Owner {
    fn admits(&self, from: std::net::IpAddr) -> bool {
        let from = match from {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(from, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.st().peers.values().any(|p| p.address.ip() == from)
    }

    fn peer_of(&self, cert: &rustls::pki_types::CertificateDer<'_>) -> Option<String> {
        let st = self.st();
        st.nodes
            .iter()
            .filter(|n| *n != self.me())
            .find(|n| identity::is_for(cert, n))
            .cloned()
    }

    fn count(&self, what: Incoming) {
        let mut st = self.st();
        match what {
            Incoming::TlsRefused(why) => {
                st.counters.refused_tls += 1;
                tracing::warn!("sync channel: TLS refused: {why}");
            }
            Incoming::Stranger(from) => {
                st.counters.refused_peers += 1;
                tracing::warn!(
                    "sync channel: refused a connection from {from}: not a director's address"
                );
            }
            Incoming::NotAPeer(names) => {
                st.counters.refused_peers += 1;
                tracing::warn!(
                    "sync channel: refused a certificate for {:?}: not another node of this cluster",
                    names
                );
            }
            Incoming::BadMessage(why) => {
                st.counters.bad_messages += 1;
                tracing::warn!("sync channel: {why}");
            }
        }
    }

    async fn handle(self: Arc<Self>, from: String, req: Request) -> Answer {
        tracing::debug!(from = %from, "sync request");
        match req {
            Request::Head => {
                let (vrrpd, healthd) = self.local.statuses().await;
                // apply() holds the change lock from its prepare to its
                // last commit answer: free means no change of ours is
                // under way (a commit or a catch-up here holds it too,
                // which only says "changing" for longer).
                let changing = Some(self.change.try_lock().is_err());
                let st = self.st();
                let (state, _) = assess_with(&st, self.me(), false);
                Answer::Head(Box::new(HeadAnswer {
                    node: self.me().to_string(),
                    version: st.ledger.head.clone(),
                    lineage: st.ledger.lineage.clone(),
                    state,
                    vrrpd,
                    healthd,
                    changing,
                }))
            }
            Request::Fetch { id } => match self.version_text(&id) {
                Some((version, text)) => Answer::Text { version, text },
                None => Answer::Refused {
                    message: format!("{} does not have version {}", self.me(), short(&id)),
                    diagnostics: Vec::new(),
                },
            },
            Request::Prepare {
                version,
                lineage,
                text,
            } => {
                self.check_hold().await;
                self.prepare(from, version, lineage, text)
            }
            Request::Commit { id } => self.commit(&from, &id).await,
            Request::Release { id } => {
                let mut st = self.st();
                if st
                    .prepared
                    .as_ref()
                    .is_some_and(|p| p.version.id == id && p.from == from)
                {
                    st.prepared = None;
                }
                Answer::Released
            }
            Request::Restore {
                version,
                lineage,
                text,
            } => self.restore(&from, version, lineage, text).await,
            Request::Events => Answer::Events {
                events: self.events_here().await,
            },
            Request::Act { action, author } => {
                let author = format!("{author} (from {from})");
                match self.act_here(&action, &author).await {
                    Ok(m) => Answer::Acted {
                        ok: true,
                        message: m,
                    },
                    Err(e) => Answer::Acted {
                        ok: false,
                        message: e,
                    },
                }
            }
        }
    }
}

impl Owner {
    /// Whether the file on disk is not the version held, now (not as of
    /// the last round: an edit a moment ago must not be overwritten).
    fn edited_now(&self) -> bool {
        let head = self.st().ledger.head.content.clone();
        self.local
            .store
            .read_config()
            .is_ok_and(|t| content_digest(&t) != head)
    }

    /// A conflict ends when the version held descends from every side of
    /// it; any other new version leaves it standing.
    fn settle_conflict(&self, st: &mut State) {
        let settled = st.conflict.as_ref().is_some_and(|c| {
            c.theirs
                .iter()
                .all(|t| st.ledger.lineage.contains(&t.version.id))
        });
        if settled {
            st.conflict = None;
            st.their_lineages.clear();
            let _ = self.local.store.save_conflict(None);
        }
    }

    /// An action on this director's daemons, in its event log with who
    /// asked.
    async fn act_here(
        &self,
        action: &tandem_model::sync::Action,
        author: &str,
    ) -> Result<String, String> {
        use tandem_model::sync::Action;
        let r = self.local.act(action).await;
        let (name, target) = match action {
            Action::Drain {
                virtual_server,
                real_server,
            } => ("drain", format!("{virtual_server}/{real_server}")),
            Action::Enable {
                virtual_server,
                real_server,
            } => ("enable", format!("{virtual_server}/{real_server}")),
            Action::Maintenance { instance, on, .. } => (
                if *on {
                    "maintenance on"
                } else {
                    "maintenance off"
                },
                instance.clone(),
            ),
        };
        if r.is_ok() {
            self.events.publish(EventKind::Action {
                action: name.to_string(),
                target,
                user: Some(author.to_string()),
            });
        }
        r
    }

    fn stale(&self, message: String) -> Answer {
        self.st().counters.stale_messages += 1;
        tracing::warn!("sync channel: {message}");
        Answer::Refused {
            message,
            diagnostics: Vec::new(),
        }
    }

    fn prepare(
        &self,
        from: String,
        version: ConfigVersion,
        lineage: Vec<String>,
        text: String,
    ) -> Answer {
        let me = self.me().to_string();
        if !well_formed(&version, &text) {
            self.st().counters.bad_messages += 1;
            return Answer::Refused {
                message: format!("{me}: the version's id does not match its content"),
                diagnostics: Vec::new(),
            };
        }
        let Ok(_one) = self.change.try_lock() else {
            return Answer::Refused {
                message: format!("{me} is busy with another change: try again in a moment"),
                diagnostics: Vec::new(),
            };
        };
        {
            let st = self.st();
            if let Some(p) = st
                .prepared
                .as_ref()
                .filter(|p| p.until > Instant::now() && p.from != from)
            {
                return Answer::Refused {
                    message: format!(
                        "{me} is taking a change from {} right now: try again in a moment",
                        p.from
                    ),
                    diagnostics: Vec::new(),
                };
            }
            if let Some(c) = &st.conflict
                && !c.theirs.iter().all(|t| lineage.contains(&t.version.id))
            {
                return Answer::Refused {
                    message: format!(
                        "{me} is in a conflict this change does not resolve: resolve it first (tandem config resolve)"
                    ),
                    diagnostics: Vec::new(),
                };
            }
            if let Err(why) = st.ledger.admits(&version, &lineage) {
                drop(st);
                return self.stale(format!("{me} refuses it: {why}"));
            }
        }
        if self.edited_now() {
            return Answer::Refused {
                message: format!(
                    "the file on {me} was edited by hand and not applied: apply or discard that edit there first"
                ),
                diagnostics: Vec::new(),
            };
        }
        if let Err(r) = self.local.validate(&text) {
            return Answer::Refused {
                message: r.message,
                diagnostics: r.diagnostics,
            };
        }
        self.st().prepared = Some(Prepared {
            version,
            lineage,
            text,
            from,
            made: Instant::now(),
            until: Instant::now() + PREPARED_FOR,
        });
        Answer::Prepared
    }

    async fn commit(&self, from: &str, id: &str) -> Answer {
        let _one = self.change.lock().await;
        if self.st().ledger.head.id == id {
            // Taken already (by catching up after the hold expired).
            return Answer::Committed;
        }
        if self.edited_now() {
            return Answer::Refused {
                message: format!(
                    "the file on {} was edited by hand and not applied: apply or discard that edit there first",
                    self.me()
                ),
                diagnostics: Vec::new(),
            };
        }
        let prepared = {
            let mut st = self.st();
            match st.prepared.take() {
                Some(p) if p.version.id == id && p.from == from && p.until > Instant::now() => p,
                other => {
                    st.prepared = other;
                    drop(st);
                    return self.stale(format!(
                        "a commit of version {} from {from} that this director did not prepare (a replay?)",
                        short(id)
                    ));
                }
            }
        };
        let held = self.st().ledger.head.clone();
        let previous = self.head_text(&held);
        match self
            .take(
                &prepared.version,
                &prepared.lineage,
                &prepared.text,
                &previous,
            )
            .await
        {
            Ok(()) => {
                let v = prepared.version.clone();
                {
                    let mut st = self.st();
                    st.counters.changes_applied += 1;
                    st.refusing = None;
                    self.settle_conflict(&mut st);
                    if let Some(p) = st.peers.get_mut(from) {
                        p.view.version = Some(v.clone());
                        p.view.relation = Some(Relation::Same);
                    }
                }
                self.applied_event(&v, "applied");
                self.report();
                Answer::Committed
            }
            Err(r) => {
                self.st().counters.changes_refused += 1;
                Answer::Refused {
                    message: r.message,
                    diagnostics: r.diagnostics,
                }
            }
        }
    }

    /// The coordinator's undo of a version this director took: a new
    /// version with the previous text, on top of it.
    async fn restore(
        &self,
        from: &str,
        version: ConfigVersion,
        lineage: Vec<String>,
        text: String,
    ) -> Answer {
        if !well_formed(&version, &text) {
            self.st().counters.bad_messages += 1;
            return Answer::Refused {
                message: format!("{}: the version's id does not match its content", self.me()),
                diagnostics: Vec::new(),
            };
        }
        let _one = self.change.lock().await;
        let (admitted, held) = {
            let st = self.st();
            (st.ledger.admits(&version, &lineage), st.ledger.head.clone())
        };
        if let Err(why) = admitted {
            return self.stale(format!("a restore from {from}: {why}"));
        }
        let current = self.head_text(&held);
        match self.take(&version, &lineage, &text, &current).await {
            Ok(()) => {
                self.applied_event(&version, "restored");
                Answer::Restored
            }
            Err(r) => Answer::Refused {
                message: r.message,
                diagnostics: r.diagnostics,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// A director whose file is `text`, its ledger adopting it.
    fn director(dir: &std::path::Path, text: &str) -> (Local, Ledger) {
        let config = dir.join("tandem.toml");
        std::fs::write(&config, text).unwrap();
        let store = Store::open(&config, &dir.join("state")).unwrap();
        let ledger = Ledger::adopt(text, "lb1", 1);
        store.keep(&ledger.head, text).unwrap();
        store.save_ledger(&ledger).unwrap();
        (Local::new("lb1", store, dir), ledger)
    }

    /// The step of [`Owner::take`] up to the file, as a run that stopped
    /// right after writing it left things.
    fn cut_off_after_the_file(local: &Local, ledger: &Ledger, text: &str) -> ConfigVersion {
        let (v, lineage) = ledger.next(text, "root", "lb1", 2, "", &[]);
        let step = Pending {
            version: v.clone(),
            lineage,
            text: text.to_string(),
        };
        local.store.save_pending(Some(&step)).unwrap();
        local.store.write_config(text).unwrap();
        v
    }

    #[test]
    fn a_change_cut_off_between_the_file_and_the_ledger_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (local, ledger) = director(dir.path(), "# a\n");
        let v = cut_off_after_the_file(&local, &ledger, "# b\n");
        let mut held = local.store.load_ledger().unwrap().unwrap();
        assert_eq!(held.head, ledger.head, "the ledger was not reached");
        let done = finish_pending(&local, &mut held, "# b\n").unwrap();
        assert_eq!(done.as_ref(), Some(&v));
        assert_eq!(held.head, v);
        assert_eq!(local.store.load_ledger().unwrap().unwrap().head, v);
        assert_eq!(local.store.text(&v.id).as_deref(), Some("# b\n"));
        assert_eq!(local.store.load_pending(), None);
    }

    #[test]
    fn a_change_recorded_whose_file_was_not_written_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (local, ledger) = director(dir.path(), "# a\n");
        cut_off_after_the_file(&local, &ledger, "# b\n");
        // Put back (a daemon refused it) or never written: the old file.
        local.store.write_config("# a\n").unwrap();
        let mut held = local.store.load_ledger().unwrap().unwrap();
        assert_eq!(finish_pending(&local, &mut held, "# a\n").unwrap(), None);
        assert_eq!(held.head, ledger.head);
        assert_eq!(local.store.load_pending(), None);
    }

    #[test]
    fn a_file_edited_by_hand_after_a_cut_off_change_is_not_taken_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (local, ledger) = director(dir.path(), "# a\n");
        cut_off_after_the_file(&local, &ledger, "# b\n");
        let mut held = local.store.load_ledger().unwrap().unwrap();
        assert_eq!(finish_pending(&local, &mut held, "# c\n").unwrap(), None);
        assert_eq!(held.head, ledger.head, "shown as the hand edit it is");
    }
}
