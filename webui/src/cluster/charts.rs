//! Connections/s and bytes/s per virtual server and director over the
//! last hour, as the cluster page draws them: samples of the kernel's rate
//! estimates (IPVS `cps`, `inbps + outbps`) every ten seconds, and the
//! polyline of a small SVG chart. Sans IO: samples in, points out.

use std::collections::{BTreeMap, VecDeque};

use tandem_model::api::HealthdStatus;

use crate::format::si;
use crate::state::AppState;

pub const WINDOW_MS: u64 = 3_600_000;
pub const EVERY_MS: u64 = 10_000;
pub const WIDTH: u64 = 180;
pub const HEIGHT: u64 = 32;

/// (at, connections/s, bytes/s).
pub type Sample = (u64, u64, u64);

#[derive(Default)]
pub struct Samples {
    /// By (director, virtual server).
    series: BTreeMap<(String, String), VecDeque<Sample>>,
    last: Option<u64>,
}

impl Samples {
    /// True when a sample is due.
    pub fn due(&self, now: u64) -> bool {
        self.last.is_none_or(|l| now >= l + EVERY_MS)
    }

    /// Takes one director's rates at `now`.
    pub fn record(&mut self, node: &str, h: &HealthdStatus, now: u64) {
        for vs in &h.virtual_servers {
            let Some(s) = &vs.stats else { continue };
            let q = self
                .series
                .entry((node.to_string(), vs.name.clone()))
                .or_default();
            q.push_back((now, s.cps, s.inbps.saturating_add(s.outbps)));
            while q.front().is_some_and(|(t, _, _)| *t + WINDOW_MS < now) {
                q.pop_front();
            }
        }
    }

    /// A round of samples is complete.
    pub fn taken(&mut self, now: u64) {
        self.last = Some(now);
    }

    pub fn virtual_servers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.series.keys().map(|(_, vs)| vs.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn get(&self, node: &str, vs: &str) -> Option<&VecDeque<Sample>> {
        self.series.get(&(node.to_string(), vs.to_string()))
    }
}

/// One chart: its polyline and the numbers beside it.
pub struct Sparkline {
    pub points: String,
    pub latest: String,
    pub peak: String,
}

/// The polyline of `(at, value)` over the hour before `now`, in a
/// WIDTH x HEIGHT box (y grows downwards); scaled to the peak.
pub fn polyline(values: &[(u64, u64)], now: u64) -> String {
    let start = now.saturating_sub(WINDOW_MS);
    let shown: Vec<&(u64, u64)> = values.iter().filter(|(t, _)| *t >= start).collect();
    let peak = shown.iter().map(|v| v.1).max().unwrap_or(0).max(1);
    shown
        .iter()
        .map(|(t, v)| {
            let x = (t - start) * WIDTH / WINDOW_MS;
            let y = HEIGHT - v * HEIGHT / peak;
            format!("{x},{y}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn sparkline(values: &[(u64, u64)], now: u64, unit: &str) -> Sparkline {
    Sparkline {
        points: polyline(values, now),
        latest: values
            .last()
            .map_or("-".into(), |v| format!("{}{unit}", si(v.1))),
        peak: format!(
            "{}{unit}",
            si(values.iter().map(|v| v.1).max().unwrap_or(0))
        ),
    }
}

pub struct ChartRow {
    pub virtual_server: String,
    /// Per director, in the page's order: (connections/s, bytes/s).
    pub cells: Vec<(Sparkline, Sparkline)>,
}

pub fn rows(app: &AppState, names: &[String], now: u64) -> Vec<ChartRow> {
    let s = app.samples.lock().unwrap();
    s.virtual_servers()
        .into_iter()
        .map(|vs| ChartRow {
            cells: names
                .iter()
                .map(|n| {
                    let q: Vec<(u64, u64, u64)> = s
                        .get(n, &vs)
                        .map(|q| q.iter().copied().collect())
                        .unwrap_or_default();
                    let cps: Vec<(u64, u64)> = q.iter().map(|(t, c, _)| (*t, *c)).collect();
                    let bps: Vec<(u64, u64)> = q.iter().map(|(t, _, b)| (*t, *b)).collect();
                    (sparkline(&cps, now, "/s"), sparkline(&bps, now, "B/s"))
                })
                .collect(),
            virtual_server: vs,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_spans_the_hour_and_scales_to_the_peak() {
        let now = 10 * WINDOW_MS;
        let pts = polyline(
            &[(now - WINDOW_MS, 0), (now - WINDOW_MS / 2, 50), (now, 100)],
            now,
        );
        assert_eq!(
            pts,
            format!("0,{HEIGHT} {},{} {WIDTH},0", WIDTH / 2, HEIGHT / 2)
        );
    }

    #[test]
    fn samples_older_than_the_hour_are_dropped() {
        let mut s = Samples::default();
        let h = |cps| HealthdStatus {
            daemon: tandem_model::api::DaemonInfo {
                daemon: "healthd".into(),
                version: String::new(),
                node: String::new(),
                pid: 0,
                started_at: 0,
                config_path: String::new(),
                config_loaded_at: 0,
            },
            dataplane: Default::default(),
            virtual_servers: vec![tandem_model::api::VirtualServerStatus {
                name: "web".into(),
                service: String::new(),
                scheduler: String::new(),
                forwarding: String::new(),
                check: None,
                quorum: 0,
                up: 0,
                quorum_met: true,
                sorry_server: None,
                sorry_active: false,
                stats: Some(tandem_model::api::IpvsStats {
                    cps,
                    ..Default::default()
                }),
                real_servers: Vec::new(),
            }],
        };
        assert!(s.due(0));
        s.record("lb1", &h(1), 0);
        s.taken(0);
        assert!(!s.due(EVERY_MS - 1) && s.due(EVERY_MS));
        s.record("lb1", &h(2), WINDOW_MS + EVERY_MS);
        let q = s.get("lb1", "web").unwrap();
        assert_eq!(q.iter().map(|v| v.1).collect::<Vec<_>>(), [2]);
    }
}
