//! Carrying out a reload: the new file read and validated (a refused one
//! changes nothing), then [`crate::reload::plan`]'s steps applied to the
//! running node, its bindings, links, sockets, trackers and addresses.

use std::time::Instant;

use tandem_model::api::{ApiError, EventKind, ReloadResult, now_millis};
use tandem_model::config::{self, Config, ConfigError};
use tracing::{info, warn};

use super::addresses::Keep;
use super::{Daemon, groups};
use crate::auth::{self, Auth};
use crate::binding::{self, Binding, params, trackers};
use crate::input::{Input, PortKey};
use crate::node::{InstanceId, Out};
use crate::reload::{self, Change};

impl Daemon {
    /// Parses the file on a blocking thread (the loop keeps sending
    /// adverts meanwhile); the result comes back as `Input::Parsed`.
    pub(super) fn parse(&self) {
        let path = self.opts.config.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let parsed = config::load(&path);
            let _ = tx.blocking_send(Input::Parsed(Box::new(parsed)));
        });
    }

    /// Carries out [`reload::plan`]: an unchanged instance is not touched
    /// (no flap); a changed one is reconfigured in place when it stays the
    /// same virtual router, replaced otherwise.
    pub(super) async fn reload(
        &mut self,
        now: Instant,
        parsed: Result<Config, ConfigError>,
    ) -> (Result<ReloadResult, ApiError>, Vec<Out>) {
        let new = match parsed {
            Ok(c) => c,
            Err(e) => return (Err(self.refuse_reload(e)), Vec::new()),
        };
        // Keys are read before anything changes: a key file that cannot
        // be used refuses the whole reload.
        let mut auths = match auth::for_config(&new) {
            Ok(a) => a,
            Err(e) => return (Err(self.refuse_keys(&e.to_string())), Vec::new()),
        };
        let plan = reload::plan(&self.config, &new);

        // What goes away, or changes identity, stops first.
        let stopping: Vec<InstanceId> = plan.stopping().filter_map(|n| self.node.id(n)).collect();
        let outs = self.node.shutdown_some(now, &stopping, false);
        self.execute(outs, now).await;
        for id in stopping {
            self.node.remove(id);
            self.bindings.remove(&id);
        }

        let mut outs = Vec::new();
        let mut started = Vec::new();
        for step in &plan.steps {
            let Some(cfg) = new.vrrp_instance(&step.instance) else {
                continue;
            };
            match &step.change {
                Change::Unchanged | Change::Remove | Change::Replace => {}
                Change::Add => {
                    let (member, mut b) = binding::build(&new, cfg);
                    b.hmac = auths.remove(&cfg.name);
                    let id = self.node.add(member);
                    self.bindings.insert(id, b);
                    started.push(id);
                }
                Change::Reconfigure(_) => {
                    let Some(id) = self.node.id(&cfg.name) else {
                        continue;
                    };
                    let (Some(old), Some(member)) =
                        (self.bindings.remove(&id), self.node.get_mut(id))
                    else {
                        continue;
                    };
                    let mut fresh = Binding::new(cfg);
                    fresh.counters = old.counters;
                    fresh.last_transition = old.last_transition;
                    fresh.src = old.src;
                    fresh.ip_id = old.ip_id;
                    fresh.hmac = carry_auth(old.hmac, auths.remove(&cfg.name));
                    let known = member.trackers.clone();
                    member.trackers = trackers(&new, &fresh, &|k, n| {
                        known
                            .iter()
                            .find(|t| t.kind == k && t.name == n)
                            .map(|t| t.value)
                    });
                    let actions = member.inst.reconfigure(now, params(cfg));
                    outs.extend(actions.into_iter().map(|a| Out::Instance(id, a)));
                    self.bindings.insert(id, fresh);
                }
            }
        }
        // Instances the plan leaves alone still take new keys: a rotation
        // edits the key file, not this one.
        for b in self.bindings.values_mut() {
            if let Some(a) = auths.remove(&b.cfg.name) {
                b.hmac = carry_auth(b.hmac.take(), Some(a));
            }
        }
        self.config = new;
        self.node.set_groups(&groups(&self.config));
        if plan.touches_kernel() {
            // Sockets, links and trackers for what is new.
            for name in self.interfaces() {
                outs.extend(self.refresh_link(&name, now).await);
            }
            let open: Vec<PortKey> = self.ports.keys().cloned().collect();
            for key in open {
                if !self.bindings.values().any(|b| b.uses(&key)) {
                    if let Some(p) = self.ports.remove(&key) {
                        p.close();
                    }
                }
            }
            self.refilter_ports();
            // Also when no instance on an interface wants one any more:
            // the macvlans a removed or changed instance used go.
            self.sync_vmacs().await;
        }
        self.start_trackers();
        outs.extend(self.node.start(now, &started));
        if plan.touches_kernel() {
            // A master whose list changed: the new addresses first, then
            // the dropped ones go; the rest stay as they are.
            self.sync_vips(Keep::Masters).await;
        }

        self.info.config_loaded_at = now_millis();
        self.info.node = self.config.node_name();
        self.events.set_node(&self.info.node);
        let changes = plan.changes();
        let unchanged = plan.unchanged();
        info!(
            "reloaded: {} change(s), {unchanged} unchanged",
            changes.len()
        );
        self.events.publish(EventKind::Reloaded {
            changes: changes.clone(),
        });
        (Ok(ReloadResult { changes, unchanged }), outs)
    }

    fn refuse_keys(&self, e: &str) -> ApiError {
        let error = format!("{e}; running configuration kept");
        warn!("reload refused: {error}");
        self.events.publish(EventKind::ReloadRefused {
            error: error.clone(),
        });
        ApiError {
            error,
            diagnostics: Vec::new(),
        }
    }

    fn refuse_reload(&self, e: ConfigError) -> ApiError {
        let refused = tandem_model::control::refused_reload(&self.opts.config, &e);
        warn!("reload refused: {e}");
        self.events.publish(EventKind::ReloadRefused {
            error: refused.error.clone(),
        });
        refused
    }
}

/// The authentication a kept instance goes on with: the new keys and
/// settings, the old one's sequence and what it accepted.
fn carry_auth(old: Option<Auth>, new: Option<Auth>) -> Option<Auth> {
    match (old, new) {
        (Some(mut o), Some(n)) => {
            o.reconfigure(n);
            Some(o)
        }
        (_, n) => n,
    }
}
