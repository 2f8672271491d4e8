//! Metrics of a group member.
//!
//! Every measurement is recorded once, where it happens, into the member's [`MemberMetrics`].
//! The member keeps its own registry, which [`MemberMetrics::render_prometheus`] (and the debug
//! endpoint's `/metrics`) writes as Prometheus text, so a member can be scraped without a global
//! recorder. With the `metrics` feature every measurement also goes to the `metrics` facade,
//! under the same name and labels, for whatever recorder the application installed (the demo
//! installs a Prometheus exporter).
//!
//! Every series carries the labels `group` and `client_id`, so the members of one process tell
//! apart; [`Metric::labels`] lists the labels a metric adds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// What a metric is, in Prometheus terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// A current value.
    Gauge,
    /// Observations counted into buckets (seconds).
    Histogram,
}

/// Every metric kgroup records. The README's metrics table lists the same names (a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// Rebalances the member went through.
    Rebalances,
    /// From the start of a rebalance to the member's new assignment.
    RebalanceDuration,
    /// How long the member stayed in a state, observed when it leaves it (the sum is the time
    /// spent in it).
    StateDuration,
    /// The member's state: 1 for the current one, 0 for the others it has been in.
    State,
    /// Group requests answered, by API and outcome (`ok`, an error code's name, `network`,
    /// `timeout`).
    GroupRequests,
    /// From sending a heartbeat to its answer.
    HeartbeatLatency,
    /// From handing a commit to the member to every partition's outcome: what a synchronous
    /// commit waits.
    CommitLatency,
    /// Partition commits by outcome (`committed`, `restamped`, `fenced`, `failed`) and reason.
    PartitionCommits,
    /// Commits that had to wait for a rebalance to finish before they could be stamped.
    DeferredCommits,
    /// Records between the partition's fetch position and its high watermark.
    PartitionLag,
    /// The broker node a partition is fetched from: its leader, or the replica the leader named
    /// for the consumer's `client.rack` (KIP-392).
    PartitionReadReplica,
    /// Bytes of fetched record batches, as they came on the wire (the prefetch buffer holds
    /// them so).
    FetchBytes,
    /// Records fetched, as their batches count them.
    FetchRecords,
    /// Bytes of fetched records waiting to be handed out (bounded by `prefetch.bytes`).
    PrefetchBufferBytes,
}

impl Metric {
    /// All metrics, in the order they are rendered.
    pub const ALL: [Metric; 14] = [
        Metric::Rebalances,
        Metric::RebalanceDuration,
        Metric::StateDuration,
        Metric::State,
        Metric::GroupRequests,
        Metric::HeartbeatLatency,
        Metric::CommitLatency,
        Metric::PartitionCommits,
        Metric::DeferredCommits,
        Metric::PartitionLag,
        Metric::PartitionReadReplica,
        Metric::FetchBytes,
        Metric::FetchRecords,
        Metric::PrefetchBufferBytes,
    ];

    /// The metric's name, with its unit as Prometheus names them.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Rebalances => "kgroup_rebalances_total",
            Metric::RebalanceDuration => "kgroup_rebalance_duration_seconds",
            Metric::StateDuration => "kgroup_state_duration_seconds",
            Metric::State => "kgroup_state",
            Metric::GroupRequests => "kgroup_group_requests_total",
            Metric::HeartbeatLatency => "kgroup_heartbeat_latency_seconds",
            Metric::CommitLatency => "kgroup_commit_latency_seconds",
            Metric::PartitionCommits => "kgroup_partition_commits_total",
            Metric::DeferredCommits => "kgroup_deferred_commits_total",
            Metric::PartitionLag => "kgroup_partition_lag_records",
            Metric::PartitionReadReplica => "kgroup_partition_read_replica",
            Metric::FetchBytes => "kgroup_fetch_bytes_total",
            Metric::FetchRecords => "kgroup_fetch_records_total",
            Metric::PrefetchBufferBytes => "kgroup_prefetch_buffer_bytes",
        }
    }

    /// Counter, gauge or histogram.
    pub fn kind(self) -> MetricKind {
        match self {
            Metric::Rebalances
            | Metric::GroupRequests
            | Metric::PartitionCommits
            | Metric::DeferredCommits
            | Metric::FetchBytes
            | Metric::FetchRecords => MetricKind::Counter,
            Metric::State | Metric::PartitionLag | Metric::PartitionReadReplica | Metric::PrefetchBufferBytes => {
                MetricKind::Gauge
            }
            Metric::RebalanceDuration | Metric::StateDuration | Metric::HeartbeatLatency | Metric::CommitLatency => {
                MetricKind::Histogram
            }
        }
    }

    /// The labels the metric adds to `group` and `client_id`.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Metric::StateDuration | Metric::State => &["state"],
            Metric::GroupRequests => &["api", "outcome"],
            Metric::PartitionCommits => &["outcome", "reason"],
            Metric::PartitionLag | Metric::PartitionReadReplica => &["topic", "partition"],
            _ => &[],
        }
    }

    /// One line on what it measures.
    pub fn help(self) -> &'static str {
        match self {
            Metric::Rebalances => "Rebalances the member went through",
            Metric::RebalanceDuration => "From the start of a rebalance to the member's new assignment",
            Metric::StateDuration => "Time the member stayed in a state, observed when it left it",
            Metric::State => "1 for the member's current state, 0 for states it has left",
            Metric::GroupRequests => "Group requests answered, by API and outcome",
            Metric::HeartbeatLatency => "From sending a heartbeat to its answer",
            Metric::CommitLatency => "From handing a commit to the member to every partition's outcome",
            Metric::PartitionCommits => "Partition commits by outcome and reason",
            Metric::DeferredCommits => "Commits that waited for a rebalance to finish",
            Metric::PartitionLag => "Records between the fetch position and the high watermark",
            Metric::PartitionReadReplica => {
                "Broker node the partition is fetched from: its leader or a replica in client.rack"
            }
            Metric::FetchBytes => "Bytes of fetched record batches, as they came on the wire",
            Metric::FetchRecords => "Records fetched, as their batches count them",
            Metric::PrefetchBufferBytes => "Bytes of fetched records waiting to be handed out",
        }
    }
}

/// Upper bounds of the histogram buckets, in seconds (Prometheus' `le`).
const BUCKETS: [f64; 15] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each bound (not cumulative; rendering sums them).
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Clone)]
enum Value {
    Scalar(f64),
    Histogram(Box<Histogram>),
}

/// A series: the metric and its label values, in the order of [`Metric::labels`].
type SeriesKey = (Metric, Vec<String>);

/// One member's metrics: cheap to clone (the clones share the registry). Its series are bounded
/// by what the member owns: a partition's lag goes when the partition does.
#[derive(Debug, Clone)]
pub struct MemberMetrics {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    group: String,
    client_id: String,
    series: Mutex<BTreeMap<SeriesKey, Value>>,
}

impl MemberMetrics {
    /// Metrics labelled with the member's `group.id` and `client.id`.
    pub fn new(group: &str, client_id: &str) -> Self {
        MemberMetrics {
            shared: Arc::new(Shared {
                group: group.to_owned(),
                client_id: client_id.to_owned(),
                series: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Adds `by` to a counter.
    pub(crate) fn increment(&self, metric: Metric, labels: &[&str], by: u64) {
        debug_assert_eq!(metric.kind(), MetricKind::Counter, "{}", metric.name());
        #[cfg(feature = "metrics")]
        ::metrics::counter!(metric.name(), self.facade_labels(metric, labels)).increment(by);
        let mut series = self.series();
        match series.entry(key(metric, labels)).or_insert(Value::Scalar(0.0)) {
            Value::Scalar(total) => *total += by as f64,
            Value::Histogram(_) => {}
        }
    }

    /// Sets a gauge.
    pub(crate) fn set(&self, metric: Metric, labels: &[&str], value: f64) {
        debug_assert_eq!(metric.kind(), MetricKind::Gauge, "{}", metric.name());
        #[cfg(feature = "metrics")]
        ::metrics::gauge!(metric.name(), self.facade_labels(metric, labels)).set(value);
        self.series().insert(key(metric, labels), Value::Scalar(value));
    }

    /// Drops a gauge's series (a partition the member no longer fetches). The facade has no
    /// removal: its gauge is set to 0, or to -1 for a node id (0 is a node).
    pub(crate) fn remove(&self, metric: Metric, labels: &[&str]) {
        #[cfg(feature = "metrics")]
        {
            let gone = if metric == Metric::PartitionReadReplica { -1.0 } else { 0.0 };
            ::metrics::gauge!(metric.name(), self.facade_labels(metric, labels)).set(gone);
        }
        self.series().remove(&key(metric, labels));
    }

    /// Records a duration into a histogram.
    pub(crate) fn observe(&self, metric: Metric, labels: &[&str], duration: Duration) {
        debug_assert_eq!(metric.kind(), MetricKind::Histogram, "{}", metric.name());
        let seconds = duration.as_secs_f64();
        #[cfg(feature = "metrics")]
        ::metrics::histogram!(metric.name(), self.facade_labels(metric, labels)).record(seconds);
        let mut series = self.series();
        let value = series.entry(key(metric, labels)).or_insert_with(|| Value::Histogram(Box::default()));
        if let Value::Histogram(histogram) = value {
            if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
                histogram.counts[bucket] += 1;
            }
            histogram.count += 1;
            histogram.sum += seconds;
        }
    }

    /// The member's series as Prometheus text (exposition format 0.0.4).
    pub fn render_prometheus(&self) -> String {
        render(&[(None, self)])
    }

    /// A poisoned lock only means a recording panicked half-way: the numbers are still usable.
    fn series(&self) -> MutexGuard<'_, BTreeMap<SeriesKey, Value>> {
        self.shared.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(feature = "metrics")]
    fn facade_labels(&self, metric: Metric, values: &[&str]) -> Vec<::metrics::Label> {
        let base = [("group", &self.shared.group), ("client_id", &self.shared.client_id)];
        base.into_iter()
            .map(|(name, value)| ::metrics::Label::new(name, value.clone()))
            .chain(
                metric.labels().iter().zip(values).map(|(name, value)| ::metrics::Label::new(*name, value.to_string())),
            )
            .collect()
    }
}

fn key(metric: Metric, labels: &[&str]) -> SeriesKey {
    debug_assert_eq!(labels.len(), metric.labels().len(), "{}", metric.name());
    (metric, labels.iter().map(|l| l.to_string()).collect())
}

/// The series of several members (the members of one process) as one Prometheus text: each
/// metric's help and type once, then every member's series of it. Each member's series also
/// carry `member="<label>"`, so two members with the same `group` and `client_id` stay apart.
pub fn render_prometheus(members: &[(&str, &MemberMetrics)]) -> String {
    let labelled: Vec<(Option<&str>, &MemberMetrics)> = members.iter().map(|(l, m)| (Some(*l), *m)).collect();
    render(&labelled)
}

fn render(members: &[(Option<&str>, &MemberMetrics)]) -> String {
    let snapshots: Vec<(String, BTreeMap<SeriesKey, Value>)> = members
        .iter()
        .map(|(label, m)| {
            let mut base =
                format!("group=\"{}\",client_id=\"{}\"", escape(&m.shared.group), escape(&m.shared.client_id));
            if let Some(label) = label {
                let _ = write!(base, ",member=\"{}\"", escape(label));
            }
            (base, m.series().clone())
        })
        .collect();
    let mut out = String::new();
    for metric in Metric::ALL {
        let mut header = false;
        for (base, series) in &snapshots {
            for ((_, values), value) in series.range((metric, Vec::new())..).take_while(|((m, _), _)| *m == metric) {
                if !header {
                    let kind = match metric.kind() {
                        MetricKind::Counter => "counter",
                        MetricKind::Gauge => "gauge",
                        MetricKind::Histogram => "histogram",
                    };
                    let _ = writeln!(out, "# HELP {} {}.", metric.name(), metric.help());
                    let _ = writeln!(out, "# TYPE {} {kind}", metric.name());
                    header = true;
                }
                let mut labels = base.clone();
                for (name, value) in metric.labels().iter().zip(values) {
                    let _ = write!(labels, ",{name}=\"{}\"", escape(value));
                }
                write_series(&mut out, metric.name(), &labels, value);
            }
        }
    }
    out
}

fn write_series(out: &mut String, name: &str, labels: &str, value: &Value) {
    match value {
        Value::Scalar(v) => {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
        Value::Histogram(h) => {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                cumulative += count;
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
    }
}

/// Label values escape backslash, double quote and line feed (the exposition format's rule).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_kind_with_help_type_and_labels() {
        let metrics = MemberMetrics::new("orders", "svc \"a\"");
        metrics.increment(Metric::PartitionCommits, &["committed", "none"], 3);
        metrics.increment(Metric::PartitionCommits, &["committed", "none"], 2);
        metrics.set(Metric::PartitionLag, &["t", "7"], 42.0);
        metrics.observe(Metric::CommitLatency, &[], Duration::from_millis(3));
        metrics.observe(Metric::CommitLatency, &[], Duration::from_secs(100));
        let text = metrics.render_prometheus();
        let base = "group=\"orders\",client_id=\"svc \\\"a\\\"\"";
        assert!(text.contains("# TYPE kgroup_partition_commits_total counter\n"), "{text}");
        assert!(
            text.contains(&format!(
                "kgroup_partition_commits_total{{{base},outcome=\"committed\",reason=\"none\"}} 5\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("kgroup_partition_lag_records{{{base},topic=\"t\",partition=\"7\"}} 42\n")),
            "{text}"
        );
        assert!(text.contains(&format!("kgroup_commit_latency_seconds_bucket{{{base},le=\"0.0025\"}} 0\n")), "{text}");
        assert!(text.contains(&format!("kgroup_commit_latency_seconds_bucket{{{base},le=\"0.005\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("kgroup_commit_latency_seconds_bucket{{{base},le=\"60\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("kgroup_commit_latency_seconds_bucket{{{base},le=\"+Inf\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("kgroup_commit_latency_seconds_count{{{base}}} 2\n")), "{text}");
        assert!(!text.contains("kgroup_rebalances_total"), "metrics never recorded are not rendered: {text}");
        metrics.remove(Metric::PartitionLag, &["t", "7"]);
        assert!(!metrics.render_prometheus().contains("kgroup_partition_lag_records"));
    }

    #[test]
    fn several_members_share_one_header_per_metric() {
        let a = MemberMetrics::new("g", "same");
        let b = MemberMetrics::new("g", "same");
        a.increment(Metric::Rebalances, &[], 1);
        b.increment(Metric::Rebalances, &[], 2);
        let text = render_prometheus(&[("a", &a), ("b", &b)]);
        assert_eq!(text.matches("# TYPE kgroup_rebalances_total counter").count(), 1, "{text}");
        assert!(text.contains("kgroup_rebalances_total{group=\"g\",client_id=\"same\",member=\"a\"} 1\n"), "{text}");
        assert!(text.contains("kgroup_rebalances_total{group=\"g\",client_id=\"same\",member=\"b\"} 2\n"), "{text}");
    }

    #[test]
    fn the_readme_documents_every_metric() {
        let readme = include_str!("../README.md");
        for metric in Metric::ALL {
            assert!(
                readme.contains(&format!("| `{}` |", metric.name())),
                "README's metrics table lacks {}",
                metric.name()
            );
        }
    }

    #[test]
    fn names_are_unique_and_end_in_their_unit() {
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        for metric in Metric::ALL {
            match metric.kind() {
                MetricKind::Counter => assert!(metric.name().ends_with("_total"), "{}", metric.name()),
                MetricKind::Histogram => assert!(metric.name().ends_with("_seconds"), "{}", metric.name()),
                MetricKind::Gauge => {}
            }
        }
    }
}
