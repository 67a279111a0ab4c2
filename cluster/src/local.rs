//! This director's side of a change: checking a file against its own
//! view (the file is good for this node, the interfaces it names exist
//! here), and taking it (write, reload vrrpd and healthd, and put the
//! previous file back when a daemon refuses). Also the daemons' status
//! and the actions the cluster asks of them.

use std::path::Path;
use std::time::Duration;

use tandem_model::api::{HealthdStatus, ReloadResult, VrrpdStatus};
use tandem_model::config::{self, Config, ConfigError, Diagnostic};
use tandem_model::control::{Client, ClientError};
use tandem_model::sync::Action;

use crate::store::Store;

/// A reload re-reads and applies the whole file.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why this director does not take a file.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub message: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Refusal {
    pub fn new(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            diagnostics: Vec::new(),
        }
    }

    /// One line, with the first located finding.
    pub fn summary(&self) -> String {
        match self.diagnostics.first() {
            Some(d) if self.diagnostics.len() == 1 => format!("{}: {d}", self.message),
            Some(d) => format!(
                "{}: {d} (and {} more)",
                self.message,
                self.diagnostics.len() - 1
            ),
            None => self.message.clone(),
        }
    }
}

pub struct Local {
    pub me: String,
    pub store: Store,
    vrrpd: Client,
    healthd: Client,
}

enum Reload {
    Done,
    NotRunning,
    Refused(Refusal),
}

impl Local {
    pub fn new(me: &str, store: Store, socket_dir: &Path) -> Local {
        Local {
            me: me.to_string(),
            store,
            vrrpd: Client::new(config::socket_in(socket_dir, "vrrpd")),
            healthd: Client::new(config::socket_in(socket_dir, "healthd")),
        }
    }

    fn origin(&self) -> String {
        self.store.config_path().display().to_string()
    }

    /// The file as this director would run it, or why it would not.
    pub fn validate(&self, text: &str) -> Result<Config, Refusal> {
        let origin = self.origin();
        let c = config::parse_as(text, &origin, Some(&self.me)).map_err(|e| match e {
            ConfigError::Invalid(d) => Refusal {
                message: format!("the file is not valid for {}", self.me),
                diagnostics: d.0,
            },
            other => Refusal::new(other.to_string()),
        })?;
        let missing = config::host_findings(text, &origin, Some(&self.me), &interface_exists);
        if !missing.is_empty() {
            return Err(Refusal {
                message: format!("the file does not fit {}", self.me),
                diagnostics: missing,
            });
        }
        Ok(c)
    }

    /// Writes `text` and reloads the daemons; when one refuses, `previous`
    /// is written back and the daemons that took `text` reload again.
    pub async fn take(&self, text: &str, previous: &str) -> Result<(), Refusal> {
        self.store
            .write_config(text)
            .map_err(|e| Refusal::new(format!("cannot write {}: {e}", self.origin())))?;
        let mut reloaded = Vec::new();
        for (name, c) in [("vrrpd", &self.vrrpd), ("healthd", &self.healthd)] {
            match reload(c).await {
                Reload::Done => reloaded.push(c),
                Reload::NotRunning => {}
                Reload::Refused(mut r) => {
                    r.message = format!("{name} on {} refused it: {}", self.me, r.message);
                    if let Err(e) = self.store.write_config(previous) {
                        r.message.push_str(&format!(
                            "; and the previous file could not be put back: {e}"
                        ));
                    }
                    // The one that refused too: one that timed out may have
                    // taken it after all.
                    reloaded.push(c);
                    for c in reloaded {
                        let _ = reload(c).await;
                    }
                    return Err(r);
                }
            }
        }
        Ok(())
    }

    /// Asks the daemons to read the file again (after a start that
    /// finished a change the last run was cut off in, before or after
    /// their reload).
    pub async fn reload_daemons(&self) {
        for (name, c) in [("vrrpd", &self.vrrpd), ("healthd", &self.healthd)] {
            if let Reload::Refused(r) = reload(c).await {
                tracing::warn!("{name} did not reload the file: {}", r.message);
            }
        }
    }

    pub async fn statuses(&self) -> (Option<VrrpdStatus>, Option<HealthdStatus>) {
        let v = tokio::time::timeout(STATUS_TIMEOUT, self.vrrpd.get::<VrrpdStatus>("/status"));
        let h = tokio::time::timeout(STATUS_TIMEOUT, self.healthd.get::<HealthdStatus>("/status"));
        let (v, h) = tokio::join!(v, h);
        (v.ok().and_then(Result::ok), h.ok().and_then(Result::ok))
    }

    /// The daemons' recent events (those still held), newest last.
    pub async fn events(&self) -> Vec<tandem_model::api::Event> {
        let v = tokio::time::timeout(
            STATUS_TIMEOUT,
            self.vrrpd
                .get::<Vec<tandem_model::api::Event>>("/events/recent"),
        );
        let h = tokio::time::timeout(
            STATUS_TIMEOUT,
            self.healthd
                .get::<Vec<tandem_model::api::Event>>("/events/recent"),
        );
        let (v, h) = tokio::join!(v, h);
        let mut out: Vec<tandem_model::api::Event> =
            v.ok().and_then(Result::ok).unwrap_or_default();
        out.extend(h.ok().and_then(Result::ok).unwrap_or_default());
        out
    }

    /// An action on this director's daemons; `Ok` carries what it did.
    pub async fn act(&self, action: &Action) -> Result<String, String> {
        let (client, path, body) = match action {
            Action::Drain {
                virtual_server,
                real_server,
            }
            | Action::Enable {
                virtual_server,
                real_server,
            } => (
                &self.healthd,
                format!(
                    "/virtual-servers/{}/real-servers/{}/{}",
                    segment(virtual_server),
                    segment(real_server),
                    if matches!(action, Action::Drain { .. }) {
                        "drain"
                    } else {
                        "enable"
                    }
                ),
                serde_json::json!({}),
            ),
            Action::Maintenance { instance, on, .. } => (
                &self.vrrpd,
                format!("/instances/{}/maintenance", segment(instance)),
                serde_json::json!({ "on": on }),
            ),
        };
        match tokio::time::timeout(
            RELOAD_TIMEOUT,
            client.post::<_, serde_json::Value>(&path, &body),
        )
        .await
        {
            Ok(Ok(_)) => Ok("done".into()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", RELOAD_TIMEOUT.as_secs())),
        }
    }
}

async fn reload(c: &Client) -> Reload {
    match tokio::time::timeout(
        RELOAD_TIMEOUT,
        c.post::<_, ReloadResult>("/reload", &serde_json::json!({})),
    )
    .await
    {
        Ok(Ok(_)) => Reload::Done,
        // Not running: it reads the file when it starts.
        Ok(Err(ClientError::Connect { .. })) => Reload::NotRunning,
        Ok(Err(ClientError::Http { message, body, .. })) => Reload::Refused(Refusal {
            message,
            diagnostics: body.map(|b| b.diagnostics).unwrap_or_default(),
        }),
        Ok(Err(e)) => Reload::Refused(Refusal::new(e.to_string())),
        Err(_) => Reload::Refused(Refusal::new(format!(
            "no answer to the reload within {} s",
            RELOAD_TIMEOUT.as_secs()
        ))),
    }
}

/// Whether this network namespace has an interface of that name.
fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Percent-encodes what is not safe in one path segment (a real server
/// is "10.0.0.1:80" or "[2001:db8::1]:80").
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
