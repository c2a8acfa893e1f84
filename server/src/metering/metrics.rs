//! Counters of the metering pipeline and the live path, served at `GET /metrics` in the
//! OpenMetrics text format by the Prometheus project's `prometheus-client` crate, with the
//! standard `process_*` metrics beside them. Each server keeps its own registry (tests run several
//! in one process); the hot path adds to a few atomic counters per batch.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::{text, EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::message::Rejection;

const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The OpenMetrics media type `GET /metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `reason` label. Reasons read from the database may hold any character, and the encoder
/// writes label values as given, so quotes, backslashes and line breaks are escaped here.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Escaped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn reason(code: &str) -> ReasonLabel {
    ReasonLabel {
        reason: Escaped(code.to_owned()),
    }
}

/// The pipeline's counters and gauges.
pub struct Metrics {
    pub accepted: Counter,
    pub duplicates: Counter,
    pub conflicts: Counter,
    pub peaks: Counter,
    pub transient_failures: Counter,
    pub reconnects: Counter,
    /// Deliveries the broker marked as redelivered (returned unacknowledged before).
    pub redelivered: Counter,
    /// Messages waiting in the queue, as last seen.
    pub lag_messages: Gauge,
    /// Whether the consumer is attached to its queue (1) or not (0).
    pub queue_connected: Gauge,
    /// `amqp` or `in-process`.
    pub queue_kind: &'static str,
    rejected: Family<ReasonLabel, Counter>,
    batch_seconds: Histogram,
    batch_messages: Counter,
    /// Open dashboard WebSockets.
    pub ws_connections: Gauge,
    /// WebSocket handshakes refused (no session, foreign origin).
    pub ws_refused: Counter,
    pub ws_frames: Counter,
    /// Sockets that fell behind and were told to reload over HTTP.
    pub ws_resyncs: Counter,
    /// Sockets closed because the peer stopped answering pings or could not take a frame.
    pub ws_dropped: Counter,
    /// Outbox events the relay published to the instances.
    pub events_published: Counter,
    pub relay_failures: Counter,
    /// Events this instance's hub read from the database to fill a gap in what it received.
    pub events_filled: Counter,
    /// Connections to the broker's event exchange after the first.
    pub bus_reconnects: Counter,
    /// Reading updates not passed on because the event bus was unavailable or full.
    pub readings_dropped: Counter,
    /// Messages this instance took from the dead-letter queue into the `dead_letters` table.
    pub dead_letters_kept: Counter,
    /// Readings the broker dead-lettered on its own (delivery limit) that this instance took
    /// from the dead-letter queue and stored after all.
    pub dead_letters_recovered: Counter,
    /// Dead letters an admin sent through the pipeline again.
    pub dead_letters_replayed: Counter,
    registry: Registry,
}

impl Metrics {
    pub fn new(queue_kind: &'static str) -> Self {
        let m = Metrics {
            accepted: Counter::default(),
            duplicates: Counter::default(),
            conflicts: Counter::default(),
            peaks: Counter::default(),
            transient_failures: Counter::default(),
            reconnects: Counter::default(),
            redelivered: Counter::default(),
            lag_messages: Gauge::default(),
            queue_connected: Gauge::default(),
            queue_kind,
            rejected: Family::default(),
            batch_seconds: Histogram::new(BUCKETS),
            batch_messages: Counter::default(),
            ws_connections: Gauge::default(),
            ws_refused: Counter::default(),
            ws_frames: Counter::default(),
            ws_resyncs: Counter::default(),
            ws_dropped: Counter::default(),
            events_published: Counter::default(),
            relay_failures: Counter::default(),
            events_filled: Counter::default(),
            bus_reconnects: Counter::default(),
            readings_dropped: Counter::default(),
            dead_letters_kept: Counter::default(),
            dead_letters_recovered: Counter::default(),
            dead_letters_replayed: Counter::default(),
            registry: Registry::default(),
        };
        for code in Rejection::CODES {
            drop(m.rejected.get_or_create(&reason(code)));
        }
        m.registered()
    }

    /// Registers every series under its exposition name (the encoder adds a counter's `_total`,
    /// and the registry ends each help text with a full stop).
    fn registered(mut self) -> Self {
        let counters = [
            (
                "energy_readings_accepted",
                "Readings stored",
                &self.accepted,
            ),
            (
                "energy_deliveries_redelivered",
                "Deliveries the broker sent again after they were returned unacknowledged",
                &self.redelivered,
            ),
            (
                "energy_readings_duplicate",
                "Readings for a (device, timestamp) already stored with the same value \
                 (redeliveries included)",
                &self.duplicates,
            ),
            (
                "energy_readings_conflict",
                "Readings for a (device, timestamp) already stored with another value; the \
                 first value stands",
                &self.conflicts,
            ),
            ("energy_peaks_detected", "Peak alerts raised", &self.peaks),
            (
                "energy_batch_retries",
                "Batches retried after a transient failure (database unavailable)",
                &self.transient_failures,
            ),
            (
                "energy_broker_reconnects",
                "Connections to the broker after the first",
                &self.reconnects,
            ),
            (
                "energy_batch_messages",
                "Messages in processed batches",
                &self.batch_messages,
            ),
            (
                "energy_ws_refused",
                "WebSocket handshakes refused (no session or a foreign origin)",
                &self.ws_refused,
            ),
            (
                "energy_ws_frames",
                "Frames sent to dashboard WebSockets",
                &self.ws_frames,
            ),
            (
                "energy_ws_resyncs",
                "Sockets that fell behind and were told to reload over HTTP",
                &self.ws_resyncs,
            ),
            (
                "energy_ws_dropped",
                "Sockets closed because the peer stopped answering or could not take a frame",
                &self.ws_dropped,
            ),
            (
                "energy_events_published",
                "Outbox events the relay published to the server instances",
                &self.events_published,
            ),
            (
                "energy_relay_failures",
                "Relay rounds that failed (database or broker) and were tried again",
                &self.relay_failures,
            ),
            (
                "energy_events_filled",
                "Events read from the outbox to fill a gap in what this instance received",
                &self.events_filled,
            ),
            (
                "energy_event_bus_reconnects",
                "Connections to the event exchange after the first",
                &self.bus_reconnects,
            ),
            (
                "energy_readings_dropped",
                "Live reading updates not passed on because the event bus was unavailable or full",
                &self.readings_dropped,
            ),
            (
                "energy_dead_letters_drained",
                "Messages taken from the dead-letter queue with a reason into the dead_letters \
                 table (those the broker dead-lettered without one are tried again first: see \
                 energy_dead_letters_recovered_total)",
                &self.dead_letters_kept,
            ),
            (
                "energy_dead_letters_recovered",
                "Readings the broker dead-lettered at the delivery limit, stored from the \
                 dead-letter queue after all",
                &self.dead_letters_recovered,
            ),
            (
                "energy_dead_letters_replayed",
                "Dead letters (distinct bodies) an admin sent through the pipeline again",
                &self.dead_letters_replayed,
            ),
        ];
        let r = &mut self.registry;
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "energy_messages_rejected",
            "Messages that can never be stored, by reason (dead-lettered)",
            self.rejected.clone(),
        );
        r.register(
            "energy_batch_processing_seconds",
            "Time to validate, store and check one batch of messages",
            self.batch_seconds.clone(),
        );
        r.register(
            "energy_ws_connections",
            "Open dashboard WebSockets",
            self.ws_connections.clone(),
        );
        let queue = r.sub_registry_with_label(("queue".into(), self.queue_kind.into()));
        queue.register(
            "energy_consumer_lag_messages",
            "Messages waiting in the queue",
            self.lag_messages.clone(),
        );
        queue.register(
            "energy_consumer_connected",
            "Whether the consumer is attached to its queue",
            self.queue_connected.clone(),
        );
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...
        if let Err(error) =
            kubert_prometheus_process::register(r.sub_registry_with_prefix("process"))
        {
            tracing::warn!(%error, "process metrics are not available");
        }
        self
    }

    pub fn reject(&self, code: &'static str) {
        self.rejected.get_or_create(&reason(code)).inc();
    }

    pub fn rejected(&self, code: &str) -> u64 {
        self.rejected.get(&reason(code)).map_or(0, |c| c.get())
    }

    /// Whether the consumer is attached to its queue.
    pub fn connected(&self) -> bool {
        self.queue_connected.get() == 1
    }

    pub fn set_connected(&self, connected: bool) {
        self.queue_connected.set(i64::from(connected));
    }

    /// Records one processed batch.
    pub fn observe_batch(&self, messages: usize, took: Duration) {
        self.batch_seconds.observe(took.as_secs_f64());
        self.batch_messages.inc_by(messages as u64);
    }

    /// The registry's series in the OpenMetrics text format, without the closing `# EOF`.
    fn encode(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = text::encode_registry(out, &self.registry);
    }

    /// This instance's series alone, as a complete exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        self.encode(&mut out);
        let _ = text::encode_eof(&mut out);
        out
    }
}

/// What `GET /metrics` shows, and to whom.
#[derive(Clone)]
pub struct Exposition {
    pub metrics: std::sync::Arc<Metrics>,
    /// For the dead letters kept, which every instance shares.
    pub db: sea_orm::DatabaseConnection,
    /// When set, a scrape must send `Authorization: Bearer <token>`.
    pub token: Option<std::sync::Arc<str>>,
}

/// `GET /metrics`.
pub async fn serve(
    axum::extract::State(exposition): axum::extract::State<Exposition>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    if let Some(token) = &exposition.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .unwrap_or_default();
        if !same_secret(sent.trim().as_bytes(), token.as_bytes()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")],
                "a bearer token is required (METRICS_TOKEN)\n",
            )
                .into_response();
        }
    }
    // The admin page's groups: messages (repeats counted) by reason.
    let counts = app::dead_letters::ssr::groups(&exposition.db)
        .await
        .map(|groups| groups.into_iter().map(|g| (g.reason, g.messages)).collect());
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        exposition_text(&exposition.metrics, counts),
    )
        .into_response()
}

/// The whole exposition: this instance's series, then the dead letters kept by reason (all
/// instances: read from the table at each scrape). When the database does not answer, that
/// gauge is left out rather than shown as zero.
fn exposition_text(
    metrics: &Metrics,
    dead_letters: Result<Vec<(String, i64)>, app::error::AppError>,
) -> String {
    let mut out = String::with_capacity(8192);
    metrics.encode(&mut out);
    match dead_letters {
        Ok(counts) => {
            let family = Family::<ReasonLabel, Gauge>::default();
            for (code, n) in counts {
                family.get_or_create(&reason(&code)).set(n);
            }
            let mut registry = Registry::default();
            registry.register(
                "energy_dead_letters",
                "Dead letters kept in the database, repeats counted, by reason",
                family,
            );
            let _ = text::encode_registry(&mut out, &registry);
        }
        Err(error) => {
            tracing::warn!(?error, "cannot count the dead letters for /metrics");
        }
    }
    let _ = text::encode_eof(&mut out);
    out
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_exactly() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn dead_letters_are_a_gauge_by_reason_and_absent_when_unknown() {
        let m = Metrics::new("amqp");
        let text = exposition_text(
            &m,
            Ok(vec![
                ("unknown_device".into(), 3),
                ("odd\"re\\ason\n".into(), 1),
            ]),
        );
        assert!(
            text.contains("# TYPE energy_dead_letters gauge\n"),
            "{text}"
        );
        assert!(text.contains("energy_dead_letters{reason=\"unknown_device\"} 3\n"));
        assert!(text.contains("energy_dead_letters{reason=\"odd\\\"re\\\\ason\\n\"} 1\n"));
        assert!(text.ends_with("# EOF\n"));
        let text = exposition_text(&m, Err(app::error::AppError::Internal));
        assert!(!text.contains("energy_dead_letters{"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    /// The expected lines are written out by hand in the exposition format, so a change of
    /// name, label or bucket shows here.
    #[test]
    fn the_exposition_has_every_series() {
        let m = Metrics::new("amqp");
        m.accepted.inc_by(3);
        m.reject("unknown_device");
        m.observe_batch(10, Duration::from_millis(3));
        m.observe_batch(10, Duration::from_secs(9));
        m.ws_connections.inc();
        m.ws_connections.inc();
        m.set_connected(true);
        let text = exposition_text(&m, Ok(vec![]));
        for line in [
            "# TYPE energy_readings_accepted counter\n",
            "energy_readings_accepted_total 3\n",
            "# HELP energy_readings_accepted Readings stored.\n",
            "energy_messages_rejected_total{reason=\"unknown_device\"} 1\n",
            "energy_messages_rejected_total{reason=\"oversized\"} 0\n",
            "# TYPE energy_batch_processing_seconds histogram\n",
            "energy_batch_processing_seconds_bucket{le=\"0.0025\"} 0\n",
            "energy_batch_processing_seconds_bucket{le=\"0.005\"} 1\n",
            "energy_batch_processing_seconds_bucket{le=\"5.0\"} 1\n",
            "energy_batch_processing_seconds_bucket{le=\"+Inf\"} 2\n",
            "energy_batch_processing_seconds_count 2\n",
            "energy_batch_messages_total 20\n",
            "energy_consumer_lag_messages{queue=\"amqp\"} 0\n",
            "energy_consumer_connected{queue=\"amqp\"} 1\n",
            "energy_ws_connections 2\n",
            "# TYPE energy_ws_resyncs counter\nenergy_ws_resyncs_total 0\n",
            "energy_dead_letters_replayed_total 0\n",
            "# TYPE process_resident_memory_bytes gauge\n",
            "# TYPE process_cpu_seconds counter\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("energy_batch_processing_seconds_sum "))
            .and_then(|v| v.parse().ok())
            .expect("a histogram sum");
        assert!((sum - 9.003).abs() < 1e-9, "{sum}");
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse().ok())
            .expect("the resident memory");
        assert!(rss > 1e6, "a test process uses more than 1 MB: {rss}");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
