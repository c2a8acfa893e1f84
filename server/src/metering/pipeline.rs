//! One step for every queue: validate a batch of message bodies, store it, detect peaks, count,
//! and tell the live path what was committed. Queue loops only move bytes and acks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};

use super::message::{self, Reading, Rejection, TimeBounds};
use super::metrics::Metrics;
use super::store::{self, NewAlert, Stored};
use crate::live::LiveSink;

/// What became of one message.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Stored,
    Duplicate,
    Conflict,
    /// Can never be stored: dead-letter it with this reason.
    Rejected(Rejection),
}

/// What became of a batch.
#[derive(Debug)]
pub struct Processed {
    /// One per message, in order.
    pub verdicts: Vec<Verdict>,
    /// The alerts it raised.
    pub alerts: Vec<NewAlert>,
}

/// What a process that dies on purpose does, for the tests that prove nothing is lost then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Exit (code 86) right after committing a batch that raised alerts, before the relay is
    /// told: the alerts are stored and their events unpublished.
    ExitAfterAlertCommit,
}

/// The validate → store → detect → notify step, shared by the AMQP and in-process consumers.
pub struct Pipeline {
    db: DatabaseConnection,
    metrics: Arc<Metrics>,
    live: Option<LiveSink>,
    bounds: TimeBounds,
    fault: Option<Fault>,
    /// Intervals longer than this are missing data in the consumption rollups.
    history_gap: Duration,
}

impl Pipeline {
    /// `live`: where committed events and readings go (`None`: nowhere, for tests of storage).
    pub fn new(
        db: DatabaseConnection,
        metrics: Arc<Metrics>,
        live: Option<LiveSink>,
        bounds: TimeBounds,
    ) -> Self {
        Pipeline {
            db,
            metrics,
            live,
            bounds,
            fault: None,
            history_gap: Duration::from_secs(120 * 60),
        }
    }

    pub fn with_history_gap(mut self, gap: Duration) -> Self {
        self.history_gap = gap;
        self
    }

    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Processes a batch. `Err` is a transient failure (the database): nothing of the batch
    /// may be acknowledged, and the whole batch is to be tried again.
    pub async fn process(&self, bodies: &[&[u8]]) -> Result<Processed, DbErr> {
        let started = Instant::now();
        let now_ms = Utc::now().timestamp_millis();
        let parsed: Vec<Result<Reading, Rejection>> = bodies
            .iter()
            .map(|b| message::parse(b, now_ms, self.bounds))
            .collect();
        let readings: Vec<Reading> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
        let outcome =
            store::store_batch(&self.db, &readings, self.history_gap.as_millis() as i64).await?;

        let mut stored = outcome.stored.into_iter();
        let mut verdicts = Vec::with_capacity(bodies.len());
        let (mut new, mut duplicates, mut conflicts) = (0, 0, 0);
        for p in parsed {
            let verdict = match p {
                Err(rejection) => Verdict::Rejected(rejection),
                Ok(_) => match stored.next() {
                    Some(Stored::New) => {
                        new += 1;
                        Verdict::Stored
                    }
                    Some(Stored::Duplicate) => {
                        duplicates += 1;
                        Verdict::Duplicate
                    }
                    Some(Stored::Conflict) => {
                        conflicts += 1;
                        Verdict::Conflict
                    }
                    Some(Stored::UnknownDevice) | None => {
                        Verdict::Rejected(Rejection::UnknownDevice)
                    }
                },
            };
            if let Verdict::Rejected(r) = &verdict {
                self.metrics.reject(r.code());
            }
            verdicts.push(verdict);
        }
        self.metrics.accepted.inc_by(new);
        self.metrics.duplicates.inc_by(duplicates);
        self.metrics.conflicts.inc_by(conflicts);
        self.metrics.peaks.inc_by(outcome.alerts.len() as u64);
        for alert in &outcome.alerts {
            tracing::info!(
                device = %alert.device_id,
                t1 = alert.t1_ms,
                t2 = alert.t2_ms,
                power_kw = alert.power_kw,
                max_power_kw = alert.max_power_kw,
                "peak detected"
            );
        }
        if self.fault == Some(Fault::ExitAfterAlertCommit) && !outcome.alerts.is_empty() {
            tracing::error!("test fault: exiting after an alert commit, before the relay");
            std::process::exit(86);
        }
        if let Some(live) = &self.live {
            live.committed(outcome.announced, outcome.readings);
        }
        self.metrics.observe_batch(bodies.len(), started.elapsed());
        Ok(Processed {
            verdicts,
            alerts: outcome.alerts,
        })
    }

    /// Processes a batch, retrying transient failures with backoff until it succeeds or
    /// `cancelled` completes (then `None`: nothing was acknowledged).
    pub async fn process_until_done(
        &self,
        bodies: &[&[u8]],
        cancelled: impl std::future::Future<Output = ()>,
    ) -> Option<Vec<Verdict>> {
        tokio::pin!(cancelled);
        let mut delay = Duration::from_millis(100);
        loop {
            match self.process(bodies).await {
                Ok(processed) => return Some(processed.verdicts),
                Err(error) => {
                    self.metrics.transient_failures.inc();
                    tracing::warn!(
                        %error,
                        retry_in_ms = delay.as_millis() as u64,
                        messages = bodies.len(),
                        "could not store a batch; it stays unacknowledged and is tried again"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = &mut cancelled => return None,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
