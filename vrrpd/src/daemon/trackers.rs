//! The tracked objects that are polled: scripts (each run once at a time,
//! with rise/fall), files (read once a second), and quorum of virtual
//! servers from healthd. Each reports to the loop; the node applies what
//! it means for priority and faults.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tandem_model::config;
use tandem_model::exec::{self, RunAs};
use tokio::task::JoinHandle;
use tracing::{debug, error, info};

use super::Daemon;
use crate::binding::read_track_file;
use crate::input::Input;
use crate::node::Out;
use crate::track::{RiseFall, ScriptResult, TrackKind, TrackValue};

/// A tracked script: its runner and its rise/fall count.
pub(crate) struct ScriptRt {
    rf: RiseFall,
    last: Option<ScriptResult>,
    pub task: JoinHandle<()>,
    cfg: config::TrackScript,
}

impl Daemon {
    pub(crate) fn start_trackers(&mut self) {
        // Scripts every instance refers to, each run once at a time.
        let wanted: Vec<config::TrackScript> = self
            .config
            .track_scripts
            .iter()
            .filter(|s| {
                self.config
                    .vrrp_instances
                    .iter()
                    .any(|i| i.track_scripts.iter().any(|t| t.name == s.name))
            })
            .cloned()
            .collect();
        self.scripts.retain(|name, s| {
            let keep = wanted.contains(&s.cfg);
            if !keep {
                s.task.abort();
                debug!(script = %name, "stopped");
            }
            keep
        });
        for s in wanted {
            if self.scripts.contains_key(&s.name) {
                continue;
            }
            let run_as = match s.user.as_deref().map(RunAs::lookup) {
                Some(Err(e)) => {
                    error!(script = %s.name, "{e}: the script counts as failed");
                    None
                }
                Some(Ok(u)) => Some(u),
                None => None,
            };
            let unusable = s.user.is_some() && run_as.is_none();
            let tx = self.tx.clone();
            let cfg = s.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(cfg.interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let result = if unusable {
                        ScriptResult::CannotRun(format!(
                            "user {} unknown",
                            cfg.user.clone().unwrap_or_default()
                        ))
                    } else {
                        exec::run_script(&cfg.command, run_as, &[], cfg.timeout).await
                    };
                    let msg = Input::Script {
                        name: cfg.name.clone(),
                        result,
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
            });
            self.scripts.insert(
                s.name.clone(),
                ScriptRt {
                    rf: RiseFall::new(s.rise as u32, s.fall as u32, true),
                    last: None,
                    task,
                    cfg: s,
                },
            );
        }
        // Quorum of tracked virtual servers, from healthd.
        if let Some(t) = self.healthd_task.take() {
            t.abort();
        }
        let mut tracked: Vec<String> = self
            .config
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_virtual_servers.iter().map(|t| t.name.clone()))
            .collect();
        tracked.sort();
        tracked.dedup();
        if !tracked.is_empty() {
            self.healthd_task = Some(tokio::spawn(crate::healthd::watch(
                config::socket_in(&self.socket_dir(), "healthd"),
                tracked,
                self.config.node.healthd_grace,
                self.tx.clone(),
            )));
        }
        // Tracked files, polled once a second.
        if let Some(t) = self.files_task.take() {
            t.abort();
        }
        let mut files: Vec<PathBuf> = self
            .config
            .vrrp_instances
            .iter()
            .flat_map(|i| i.track_files.iter().map(|f| f.path.clone()))
            .collect();
        files.sort();
        files.dedup();
        if !files.is_empty() {
            let tx = self.tx.clone();
            self.files_task = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    for path in &files {
                        let value = read_track_file(path);
                        let msg = Input::File {
                            path: path.clone(),
                            value,
                        };
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                }
            }));
        }
    }

    pub(crate) fn on_script(&mut self, name: &str, result: ScriptResult, now: Instant) -> Vec<Out> {
        let Some(s) = self.scripts.get_mut(name) else {
            return Vec::new();
        };
        let changed = s.rf.record(result.success());
        let same_as_before = s.last.as_ref() == Some(&result);
        s.last = Some(result.clone());
        match changed {
            Some(ok) => {
                info!(
                    script = name,
                    "now {} ({result})",
                    if ok { "ok" } else { "failed" }
                );
                let v = if ok {
                    TrackValue::Ok
                } else {
                    TrackValue::Failed
                };
                self.node.set_track(now, TrackKind::Script, name, v)
            }
            None => {
                if !same_as_before {
                    debug!(script = name, "{result}");
                }
                Vec::new()
            }
        }
    }
}
