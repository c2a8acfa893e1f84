//! Counters of the metering pipeline, served as Prometheus text at `GET /metrics`. Plain atomics:
//! the hot path adds to a few counters per batch, never per label lookup.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use super::message::Rejection;

const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The pipeline's counters and gauges.
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub conflicts: AtomicU64,
    pub peaks: AtomicU64,
    pub transient_failures: AtomicU64,
    pub reconnects: AtomicU64,
    /// Deliveries the broker marked as redelivered (returned unacknowledged before).
    pub redelivered: AtomicU64,
    /// Messages waiting in the queue, as last seen.
    pub lag_messages: AtomicI64,
    /// Whether the consumer is attached to its queue.
    pub queue_connected: AtomicBool,
    /// `amqp` or `in-process`.
    pub queue_kind: &'static str,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    bucket_counts: [AtomicU64; BUCKETS.len() + 1],
    batch_micros: AtomicU64,
    batches: AtomicU64,
    batch_messages: AtomicU64,
    /// Open dashboard WebSockets.
    pub ws_connections: AtomicI64,
    /// WebSocket handshakes refused (no session, foreign origin).
    pub ws_refused: AtomicU64,
    pub ws_frames: AtomicU64,
    /// Sockets that fell behind and were told to reload over HTTP.
    pub ws_resyncs: AtomicU64,
    /// Sockets closed because the peer stopped answering pings or could not take a frame.
    pub ws_dropped: AtomicU64,
    /// Outbox events the relay published to the instances.
    pub events_published: AtomicU64,
    pub relay_failures: AtomicU64,
    /// Events this instance's hub read from the database to fill a gap in what it received.
    pub events_filled: AtomicU64,
    /// Connections to the broker's event exchange after the first.
    pub bus_reconnects: AtomicU64,
    /// Reading updates not passed on because the event bus was unavailable or full.
    pub readings_dropped: AtomicU64,
    /// Messages this instance took from the dead-letter queue into the `dead_letters` table.
    pub dead_letters_kept: AtomicU64,
    /// Readings the broker dead-lettered on its own (delivery limit) that this instance took
    /// from the dead-letter queue and stored after all.
    pub dead_letters_recovered: AtomicU64,
    /// Dead letters an admin sent through the pipeline again.
    pub dead_letters_replayed: AtomicU64,
}

impl Metrics {
    pub fn new(queue_kind: &'static str) -> Self {
        Metrics {
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            peaks: AtomicU64::new(0),
            transient_failures: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            lag_messages: AtomicI64::new(0),
            queue_connected: AtomicBool::new(false),
            queue_kind,
            rejected: Mutex::new(Rejection::CODES.iter().map(|c| (*c, 0)).collect()),
            bucket_counts: Default::default(),
            batch_micros: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_messages: AtomicU64::new(0),
            ws_connections: AtomicI64::new(0),
            ws_refused: AtomicU64::new(0),
            ws_frames: AtomicU64::new(0),
            ws_resyncs: AtomicU64::new(0),
            ws_dropped: AtomicU64::new(0),
            events_published: AtomicU64::new(0),
            relay_failures: AtomicU64::new(0),
            events_filled: AtomicU64::new(0),
            bus_reconnects: AtomicU64::new(0),
            readings_dropped: AtomicU64::new(0),
            dead_letters_kept: AtomicU64::new(0),
            dead_letters_recovered: AtomicU64::new(0),
            dead_letters_replayed: AtomicU64::new(0),
        }
    }

    pub fn reject(&self, code: &'static str) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry(code).or_default() += 1;
        }
    }

    pub fn rejected(&self, code: &str) -> u64 {
        self.rejected
            .lock()
            .ok()
            .and_then(|m| m.get(code).copied())
            .unwrap_or(0)
    }

    /// Records one processed batch.
    pub fn observe_batch(&self, messages: usize, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.bucket_counts[bucket].fetch_add(1, Relaxed);
        self.batch_micros
            .fetch_add(took.as_micros() as u64, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.batch_messages.fetch_add(messages as u64, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        };
        counter(
            &mut out,
            "energy_readings_accepted_total",
            "Readings stored.",
            self.accepted.load(Relaxed),
        );
        counter(
            &mut out,
            "energy_deliveries_redelivered_total",
            "Deliveries the broker sent again after they were returned unacknowledged.",
            self.redelivered.load(Relaxed),
        );
        counter(
            &mut out,
            "energy_readings_duplicate_total",
            "Readings for a (device, timestamp) already stored with the same value (redeliveries included).",
            self.duplicates.load(Relaxed),
        );
        counter(
            &mut out,
            "energy_readings_conflict_total",
            "Readings for a (device, timestamp) already stored with another value; the first value stands.",
            self.conflicts.load(Relaxed),
        );
        counter(
            &mut out,
            "energy_peaks_detected_total",
            "Peak alerts raised.",
            self.peaks.load(Relaxed),
        );
        counter(
            &mut out,
            "energy_batch_retries_total",
            "Batches retried after a transient failure (database unavailable).",
            self.transient_failures.load(Relaxed),
        );
        counter(
            &mut out,
            "energy_broker_reconnects_total",
            "Connections to the broker after the first.",
            self.reconnects.load(Relaxed),
        );
        let _ = write!(
            out,
            "# HELP energy_messages_rejected_total Messages that can never be stored, by reason (dead-lettered).\n\
             # TYPE energy_messages_rejected_total counter\n"
        );
        if let Ok(map) = self.rejected.lock() {
            for (code, n) in map.iter() {
                let _ = writeln!(
                    out,
                    "energy_messages_rejected_total{{reason=\"{code}\"}} {n}"
                );
            }
        }
        let _ = write!(
            out,
            "# HELP energy_consumer_lag_messages Messages waiting in the queue.\n\
             # TYPE energy_consumer_lag_messages gauge\n\
             energy_consumer_lag_messages{{queue=\"{}\"}} {}\n",
            self.queue_kind,
            self.lag_messages.load(Relaxed)
        );
        let _ = write!(
            out,
            "# HELP energy_consumer_connected Whether the consumer is attached to its queue.\n\
             # TYPE energy_consumer_connected gauge\n\
             energy_consumer_connected{{queue=\"{}\"}} {}\n",
            self.queue_kind,
            u8::from(self.queue_connected.load(Relaxed))
        );
        let _ = write!(
            out,
            "# HELP energy_batch_processing_seconds Time to validate, store and check one batch of messages.\n\
             # TYPE energy_batch_processing_seconds histogram\n"
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.bucket_counts[i].load(Relaxed);
            let _ = writeln!(
                out,
                "energy_batch_processing_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.bucket_counts[BUCKETS.len()].load(Relaxed);
        let _ = write!(
            out,
            "energy_batch_processing_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             energy_batch_processing_seconds_sum {}\n\
             energy_batch_processing_seconds_count {}\n",
            self.batch_micros.load(Relaxed) as f64 / 1e6,
            self.batches.load(Relaxed)
        );
        counter(
            &mut out,
            "energy_batch_messages_total",
            "Messages in processed batches.",
            self.batch_messages.load(Relaxed),
        );
        let _ = write!(
            out,
            "# HELP energy_ws_connections Open dashboard WebSockets.\n\
             # TYPE energy_ws_connections gauge\n\
             energy_ws_connections {}\n",
            self.ws_connections.load(Relaxed)
        );
        for (name, help, value) in [
            (
                "energy_ws_refused_total",
                "WebSocket handshakes refused (no session or a foreign origin).",
                &self.ws_refused,
            ),
            (
                "energy_ws_frames_total",
                "Frames sent to dashboard WebSockets.",
                &self.ws_frames,
            ),
            (
                "energy_ws_resyncs_total",
                "Sockets that fell behind and were told to reload over HTTP.",
                &self.ws_resyncs,
            ),
            (
                "energy_ws_dropped_total",
                "Sockets closed because the peer stopped answering or could not take a frame.",
                &self.ws_dropped,
            ),
            (
                "energy_events_published_total",
                "Outbox events the relay published to the server instances.",
                &self.events_published,
            ),
            (
                "energy_relay_failures_total",
                "Relay rounds that failed (database or broker) and were tried again.",
                &self.relay_failures,
            ),
            (
                "energy_events_filled_total",
                "Events read from the outbox to fill a gap in what this instance received.",
                &self.events_filled,
            ),
            (
                "energy_event_bus_reconnects_total",
                "Connections to the event exchange after the first.",
                &self.bus_reconnects,
            ),
            (
                "energy_readings_dropped_total",
                "Live reading updates not passed on because the event bus was unavailable or full.",
                &self.readings_dropped,
            ),
            (
                "energy_dead_letters_drained_total",
                "Messages taken from the dead-letter queue with a reason into the dead_letters \
                 table (those the broker dead-lettered without one are tried again first: see \
                 energy_dead_letters_recovered_total).",
                &self.dead_letters_kept,
            ),
            (
                "energy_dead_letters_recovered_total",
                "Readings the broker dead-lettered at the delivery limit, stored from the \
                 dead-letter queue after all.",
                &self.dead_letters_recovered,
            ),
            (
                "energy_dead_letters_replayed_total",
                "Dead letters (distinct bodies) an admin sent through the pipeline again.",
                &self.dead_letters_replayed,
            ),
        ] {
            counter(&mut out, name, help, value.load(Relaxed));
        }
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
    let mut text = exposition.metrics.render();
    text.push_str(&dead_letter_gauge(
        super::dead_letters::counts_by_reason(&exposition.db).await,
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The dead letters kept by reason (all instances: read from the table at each scrape). When
/// the database does not answer, the gauge is left out rather than shown as zero.
fn dead_letter_gauge(counts: Result<Vec<(String, i64)>, sea_orm::DbErr>) -> String {
    let name = "energy_dead_letters";
    let mut out = format!(
        "# HELP {name} Dead letters kept in the database, repeats counted, by reason.\n\
         # TYPE {name} gauge\n"
    );
    match counts {
        Ok(counts) => {
            for (reason, n) in counts {
                let reason = reason
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot count the dead letters for /metrics");
            let _ = writeln!(out, "# {name} unavailable: the database did not answer");
        }
    }
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
        let text = dead_letter_gauge(Ok(vec![
            ("unknown_device".into(), 3),
            ("odd\"reason".into(), 1),
        ]));
        assert!(text.contains("# TYPE energy_dead_letters gauge\n"));
        assert!(text.contains("energy_dead_letters{reason=\"unknown_device\"} 3\n"));
        assert!(text.contains("energy_dead_letters{reason=\"odd\\\"reason\"} 1\n"));
        let text = dead_letter_gauge(Err(sea_orm::DbErr::Custom("down".into())));
        assert!(!text.contains("energy_dead_letters{"), "{text}");
    }

    #[test]
    fn the_exposition_has_every_series() {
        let m = Metrics::new("amqp");
        m.accepted.fetch_add(3, Relaxed);
        m.reject("unknown_device");
        m.observe_batch(10, Duration::from_millis(3));
        m.observe_batch(10, Duration::from_secs(9));
        let text = m.render();
        assert!(text.contains("energy_readings_accepted_total 3\n"));
        assert!(text.contains("energy_messages_rejected_total{reason=\"unknown_device\"} 1\n"));
        assert!(text.contains("energy_messages_rejected_total{reason=\"oversized\"} 0\n"));
        assert!(text.contains("energy_batch_processing_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("energy_batch_processing_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("energy_batch_processing_seconds_count 2\n"));
        assert!(text.contains("energy_consumer_lag_messages{queue=\"amqp\"} 0\n"));
        m.ws_connections.fetch_add(2, Relaxed);
        let text = m.render();
        assert!(text.contains("energy_ws_connections 2\n"));
        assert!(
            text.contains("# TYPE energy_ws_resyncs_total counter\nenergy_ws_resyncs_total 0\n")
        );
    }
}
