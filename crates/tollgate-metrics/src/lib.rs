//! Metrics on the side of a connection's life.
//!
//! One process-wide registry ([`metrics()`]) of the families Tollgate
//! reports, each a set of series keyed by label values. Recording is an
//! atomic add on a series found once per call (a read lock and a map probe);
//! nothing on the connection path waits for a scrape. [`Metrics::render`]
//! writes the Prometheus text exposition format (0.0.4), and callers append
//! values only known at scrape time (store sizes, dropped log lines) with a
//! [`Writer`].
//!
//! Names follow Prometheus conventions: `_total` for counters, base units
//! (seconds, bytes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Every family Tollgate records.
pub struct Metrics {
    /// Connection attempts by listener and connectionStatus code
    /// (`Success`, `ClientCertCrlHit`, … without the `Failed:` prefix).
    pub connections: Family<Counter>,
    /// Open connections (handshaking or serving) by listener.
    pub active_connections: Family<Gauge>,
    /// TLS handshake duration of successful handshakes, by listener.
    pub handshake_seconds: Family<Histogram>,
    /// Connection function duration (wall, instantiate + call), by function.
    pub function_seconds: Family<Histogram>,
    /// Function calls that ended in an error, by function and error kind.
    pub function_errors: Family<Counter>,
    /// Deliberate denies by function.
    pub function_denies: Family<Counter>,
    /// Calls answered by replaying an earlier call's outcome, by function.
    pub function_replays: Family<Counter>,
    /// Established connections closed because a re-check denied them, by
    /// listener and reason (`kvs`: a store write; `reload`: new CRLs, trust or
    /// function).
    pub revoked_connections: Family<Counter>,
    /// Origin request duration (to response headers), by listener.
    pub origin_seconds: Family<Histogram>,
    /// Responses sent for proxied requests, by listener and status code.
    pub origin_responses: Family<Counter>,
    /// Reloads by what was reloaded (`config`, `function`, `kvs`) and result
    /// (`ok`, `failed`).
    pub reloads: Family<Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            connections: Family::new(
                "tollgate_connections_total",
                "Connection attempts by listener and connectionStatus code.",
                &["listener", "status"],
            ),
            active_connections: Family::new(
                "tollgate_active_connections",
                "Open client connections by listener.",
                &["listener"],
            ),
            handshake_seconds: Family::new(
                "tollgate_handshake_duration_seconds",
                "TLS handshake duration of completed handshakes.",
                &["listener"],
            ),
            function_seconds: Family::new(
                "tollgate_function_duration_seconds",
                "Connection function duration (instantiate and call).",
                &["function"],
            ),
            function_errors: Family::new(
                "tollgate_function_errors_total",
                "Connection function calls that ended in an error, by kind.",
                &["function", "kind"],
            ),
            function_denies: Family::new(
                "tollgate_function_denies_total",
                "Connections a function denied.",
                &["function"],
            ),
            function_replays: Family::new(
                "tollgate_function_replays_total",
                "Function calls answered by replaying an earlier call with the same answers.",
                &["function"],
            ),
            revoked_connections: Family::new(
                "tollgate_rechecked_connections_closed_total",
                "Established connections closed because a re-check denied them.",
                &["listener", "reason"],
            ),
            origin_seconds: Family::new(
                "tollgate_origin_request_duration_seconds",
                "Time from sending a request to the origin to its response headers.",
                &["listener"],
            ),
            origin_responses: Family::new(
                "tollgate_origin_responses_total",
                "Responses to proxied requests by status code.",
                &["listener", "status"],
            ),
            reloads: Family::new(
                "tollgate_reloads_total",
                "Reloads and changes applied to the running proxy, by what and result.",
                &["what", "result"],
            ),
        }
    }

    /// The registry as Prometheus text.
    pub fn render(&self) -> String {
        let mut w = Writer::default();
        self.connections.render(&mut w);
        self.active_connections.render(&mut w);
        self.handshake_seconds.render(&mut w);
        self.function_seconds.render(&mut w);
        self.function_errors.render(&mut w);
        self.function_denies.render(&mut w);
        self.function_replays.render(&mut w);
        self.revoked_connections.render(&mut w);
        self.origin_seconds.render(&mut w);
        self.origin_responses.render(&mut w);
        self.reloads.render(&mut w);
        w.out
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of histogram buckets: 50 µs to 10 s, which covers
/// a function call and a slow origin alike.
pub const BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A distribution of durations in [`BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is +Inf.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS.partition_point(|&b| b < secs);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of observations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed))
    }
}

/// A series with its label values.
type Labelled<T> = (Vec<String>, Arc<T>);

/// A metric family: one series per set of label values.
pub struct Family<T> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: RwLock<BTreeMap<Box<str>, Labelled<T>>>,
}

/// Label values joined into one map key (a separator no label value uses
/// in practice; values are escaped on output, not here).
fn key(values: &[&str]) -> String {
    values.join("\u{1f}")
}

impl<T: Default + Series> Family<T> {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Family {
            name,
            help,
            labels,
            series: RwLock::new(BTreeMap::new()),
        }
    }

    /// The series for these label values (as many as the family's labels),
    /// created at zero on first use. Keep the handle when recording often.
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let k = key(values);
        if let Some((_, s)) = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(k.as_str())
        {
            return s.clone();
        }
        let mut map = self.series.write().unwrap_or_else(|p| p.into_inner());
        map.entry(k.into_boxed_str())
            .or_insert_with(|| {
                (
                    values.iter().map(|v| (*v).to_owned()).collect(),
                    Arc::new(T::default()),
                )
            })
            .1
            .clone()
    }

    /// The series for these label values if it exists.
    pub fn get(&self, values: &[&str]) -> Option<Arc<T>> {
        self.series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key(values).as_str())
            .map(|(_, s)| s.clone())
    }

    fn render(&self, w: &mut Writer) {
        w.family(self.name, self.help, T::KIND);
        let map = self.series.read().unwrap_or_else(|p| p.into_inner());
        for (values, series) in map.values() {
            let labels: Vec<(&str, &str)> = self
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            series.render(self.name, &labels, w);
        }
    }
}

/// How a kind of series writes itself.
pub trait Series {
    const KIND: &'static str;
    fn render(&self, name: &str, labels: &[(&str, &str)], w: &mut Writer);
}

impl Series for Counter {
    const KIND: &'static str = "counter";
    fn render(&self, name: &str, labels: &[(&str, &str)], w: &mut Writer) {
        w.sample(name, labels, self.get() as f64);
    }
}

impl Series for Gauge {
    const KIND: &'static str = "gauge";
    fn render(&self, name: &str, labels: &[(&str, &str)], w: &mut Writer) {
        w.sample(name, labels, self.get() as f64);
    }
}

impl Series for Histogram {
    const KIND: &'static str = "histogram";
    fn render(&self, name: &str, labels: &[(&str, &str)], w: &mut Writer) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = match BUCKETS.get(i) {
                Some(b) => b.to_string(),
                None => "+Inf".to_owned(),
            };
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", &le));
            w.sample(&bucket, &with_le, cumulative as f64);
        }
        w.sample(&format!("{name}_sum"), labels, self.sum().as_secs_f64());
        w.sample(&format!("{name}_count"), labels, cumulative as f64);
    }
}

/// Prometheus text output.
#[derive(Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line; label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// Appends what was written to `out`.
    pub fn finish_into(self, out: &mut String) {
        out.push_str(&self.out);
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let m = Metrics::new();
        m.connections.with(&["edge", "Success"]).add(3);
        m.connections.with(&["edge", "ClientCertCrlHit"]).inc();
        m.active_connections.with(&["edge"]).inc();
        let h = m.function_seconds.with(&["revocation"]);
        h.observe(Duration::from_micros(40));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        m.reloads.with(&["kvs", "ok"]).inc();
        let text = m.render();
        assert!(text.contains("# TYPE tollgate_connections_total counter\n"));
        assert!(
            text.contains("tollgate_connections_total{listener=\"edge\",status=\"Success\"} 3\n")
        );
        assert!(text.contains(
            "tollgate_connections_total{listener=\"edge\",status=\"ClientCertCrlHit\"} 1\n"
        ));
        assert!(text.contains("tollgate_active_connections{listener=\"edge\"} 1\n"));
        assert!(text.contains(
            "tollgate_function_duration_seconds_bucket{function=\"revocation\",le=\"0.00005\"} 1\n"
        ));
        assert!(text.contains(
            "tollgate_function_duration_seconds_bucket{function=\"revocation\",le=\"0.005\"} 2\n"
        ));
        assert!(text.contains(
            "tollgate_function_duration_seconds_bucket{function=\"revocation\",le=\"10\"} 2\n"
        ));
        assert!(text.contains(
            "tollgate_function_duration_seconds_bucket{function=\"revocation\",le=\"+Inf\"} 3\n"
        ));
        assert!(
            text.contains("tollgate_function_duration_seconds_count{function=\"revocation\"} 3\n")
        );
        assert!(text.contains(
            "tollgate_function_duration_seconds_sum{function=\"revocation\"} 60.00304\n"
        ));
        assert!(text.contains("tollgate_reloads_total{what=\"kvs\",result=\"ok\"} 1\n"));
    }

    #[test]
    fn the_same_labels_give_the_same_series_and_values_are_escaped() {
        let m = Metrics::new();
        let a = m.function_denies.with(&["f\"1\\\n"]);
        a.inc();
        m.function_denies.with(&["f\"1\\\n"]).inc();
        assert_eq!(a.get(), 2);
        assert!(m.function_denies.get(&["other"]).is_none());
        let text = m.render();
        assert!(
            text.contains("tollgate_function_denies_total{function=\"f\\\"1\\\\\\n\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn gauges_go_down() {
        let g = Gauge::default();
        g.inc();
        g.inc();
        g.dec();
        assert_eq!(g.get(), 1);
        g.set(-4);
        assert_eq!(g.get(), -4);
    }
}
