//! Outputs rendered from the daemons' status documents (the pages'
//! fragments, the metrics text), kept while the documents stay the same.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tandem_model::api::{HealthdStatus, VrrpdStatus};

/// An `Arc` compared by identity: the same status document, not an equal one.
pub struct Same<T>(pub Arc<T>);

impl<T> PartialEq for Same<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Generations of the status documents a render was made from.
pub type Generations = (u64, u64);

/// Renders kept per memo (variants: admin or not, filter and page).
const MEMO_VARIANTS: usize = 16;

struct Rendered<S, V> {
    snapshot: S,
    generations: Generations,
    variant: V,
    output: Bytes,
}

/// The last outputs rendered from status documents, so many requests
/// (browsers refreshing, a scraper, a load test) render a thousand real
/// servers once per status fetch rather than once each. One entry per
/// variant (an admin's and a viewer's view differ by their buttons).
pub struct Memo<S, V> {
    entries: Mutex<Vec<Rendered<S, V>>>,
    rendering: tokio::sync::Mutex<()>,
}

impl<S: PartialEq, V: PartialEq> Default for Memo<S, V> {
    fn default() -> Self {
        Memo {
            entries: Mutex::new(Vec::new()),
            rendering: tokio::sync::Mutex::new(()),
        }
    }
}

impl<S: PartialEq, V: PartialEq> Memo<S, V> {
    fn find(&self, f: impl Fn(&Rendered<S, V>) -> bool) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap();
        entries.iter().find(|e| f(e)).map(|e| e.output.clone())
    }

    /// The output for `snapshot`, rendered once. While another request
    /// renders a newer snapshot of the same generations (it is only older
    /// by the cache's time to live, nothing happened), the previous output
    /// is served rather than waited for; after an event, never.
    pub async fn get_or<B: Into<Bytes>>(
        &self,
        snapshot: S,
        generations: Generations,
        variant: V,
        render: impl FnOnce() -> B,
    ) -> Bytes {
        if let Some(b) = self.find(|e| e.snapshot == snapshot && e.variant == variant) {
            return b;
        }
        let _one = match self.rendering.try_lock() {
            Ok(g) => g,
            Err(_) => {
                let same =
                    |e: &Rendered<S, V>| e.generations == generations && e.variant == variant;
                if let Some(b) = self.find(same) {
                    return b;
                }
                let g = self.rendering.lock().await;
                if let Some(b) = self.find(|e| e.snapshot == snapshot && e.variant == variant) {
                    return b;
                }
                g
            }
        };
        let output: Bytes = render().into();
        let mut entries = self.entries.lock().unwrap();
        entries.retain(|e| e.variant != variant);
        // One entry per variant in use; searches and pages make variants
        // without end, so the oldest go.
        if entries.len() >= MEMO_VARIANTS {
            entries.remove(0);
        }
        entries.push(Rendered {
            snapshot,
            generations,
            variant,
            output: output.clone(),
        });
        output
    }
}

/// Rendered outputs kept per status document.
#[derive(Default)]
pub struct Renders {
    /// Keyed by whether the viewer is an admin.
    pub instances: Memo<Same<VrrpdStatus>, bool>,
    /// By admin or not, and the search, filter and page shown.
    pub virtual_servers: Memo<Same<HealthdStatus>, (bool, crate::pages::VsFilter)>,
    /// By whether the series per real server are in.
    pub metrics: Memo<MetricsKey, bool>,
}

pub type MetricsKey = (Option<Same<VrrpdStatus>>, Option<Same<HealthdStatus>>);

/// A rendered fragment as the `&str` a template includes.
pub fn html(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}
