//! The built-in meter feed of demo mode: every device in the database gets a synthetic meter
//! (the simulator's generator) that reports every few seconds in real time, and one device in
//! turn draws 1.6 times its maximum now and then, so the one-command start shows readings and
//! peak alerts flowing through the same pipeline as real meters.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use simulator::profile::{Generator, InjectedPeak, Profile};
use simulator::{MeterMessage, Publisher};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::local::LocalQueue;

/// Where the demo meters send.
pub enum DemoSink {
    Local(LocalQueue),
    Amqp(Box<Publisher>),
}

/// How often the demo meters report and how often one of them peaks.
#[derive(Clone, Copy, Debug)]
pub struct DemoSettings {
    pub interval: Duration,
    pub peak_every: Duration,
}

struct Meter {
    generator: Generator,
    max_power_kw: f64,
    last_ms: i64,
}

/// Runs the feed until `cancel` fires. Failures to send are logged and retried next tick.
pub async fn run(
    db: DatabaseConnection,
    mut sink: DemoSink,
    settings: DemoSettings,
    cancel: CancellationToken,
) {
    let interval_ms = settings.interval.as_millis().max(1) as i64;
    let mut meters: HashMap<Uuid, Meter> = HashMap::new();
    let mut tick = tokio::time::interval(settings.interval);
    let mut last_refresh: Option<tokio::time::Instant> = None;
    let mut last_peak = tokio::time::Instant::now();
    let mut turn = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if last_refresh.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            match devices(&db).await {
                Ok(list) => {
                    meters.retain(|id, _| list.iter().any(|(d, _, _)| d == id));
                    for (id, max_power_kw, last) in list {
                        let meter = meters
                            .entry(id)
                            .or_insert_with(|| new_meter(id, max_power_kw, last));
                        meter.max_power_kw = max_power_kw;
                    }
                    last_refresh = Some(tokio::time::Instant::now());
                }
                Err(error) => tracing::warn!(%error, "demo feed: cannot list devices"),
            }
        }
        if meters.is_empty() {
            continue;
        }
        let now_ms = Utc::now().timestamp_millis();
        let t = now_ms - now_ms.rem_euclid(interval_ms);
        if last_peak.elapsed() >= settings.peak_every {
            let mut ids: Vec<&Uuid> = meters.keys().collect();
            ids.sort();
            let id = *ids[turn % ids.len()];
            turn += 1;
            if let Some(meter) = meters.get_mut(&id) {
                meter.generator.add_peak(InjectedPeak {
                    at_ms: t - 1,
                    power_kw: meter.max_power_kw * 1.6,
                });
                last_peak = tokio::time::Instant::now();
            }
        }
        let mut messages = Vec::new();
        for (id, meter) in meters.iter_mut() {
            if t <= meter.last_ms {
                continue;
            }
            let value = meter.generator.advance(meter.last_ms, t);
            meter.last_ms = t;
            messages.push(MeterMessage {
                timestamp: t,
                sensor_id: *id,
                measurement_value: value,
            });
        }
        if let Err(error) = send(&mut sink, &messages).await {
            tracing::warn!(%error, "demo feed: cannot send readings");
        }
    }
}

async fn send(sink: &mut DemoSink, messages: &[MeterMessage]) -> anyhow::Result<()> {
    match sink {
        DemoSink::Local(queue) => {
            for m in messages {
                queue.send(m.to_json()).await?;
            }
        }
        DemoSink::Amqp(publisher) => {
            let before = publisher.stats();
            for m in messages {
                publisher.publish(m.to_json()).await?;
            }
            let after = publisher.flush().await?;
            let undelivered = (after.failed + after.returned) - (before.failed + before.returned);
            if undelivered > 0 {
                anyhow::bail!("{undelivered} readings were returned or refused by the broker");
            }
        }
    }
    Ok(())
}

fn new_meter(id: Uuid, max_power_kw: f64, last: Option<(i64, f64)>) -> Meter {
    let profile = match id.as_u64_pair().1 % 3 {
        0 => Profile::Household,
        1 => Profile::Office,
        _ => Profile::Factory,
    };
    let (last_ms, start_kwh) = last.unwrap_or((Utc::now().timestamp_millis() - 10_000, 0.0));
    Meter {
        // The typical load stays well under the maximum, so only injected peaks alert.
        generator: Generator::new(profile, max_power_kw * 0.35, id.as_u64_pair().0, start_kwh)
            .with_resolution(1e-6),
        max_power_kw,
        last_ms,
    }
}

/// Every device with its maximum and its latest reading, so a restarted feed continues the
/// register instead of looking like a meter reset.
async fn devices(db: &DatabaseConnection) -> Result<Vec<(Uuid, f64, Option<(i64, f64)>)>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT d.id, d.max_power_kw, r.ts, r.energy_kwh FROM devices d \
             LEFT JOIN readings r ON r.device_id = d.id AND r.ts = \
             (SELECT MAX(ts) FROM readings WHERE device_id = d.id)",
        ))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let ts: Option<i64> = row.try_get_by_index(2)?;
        let e: Option<f64> = row.try_get_by_index(3)?;
        out.push((
            row.try_get_by_index(0)?,
            row.try_get_by_index(1)?,
            ts.zip(e),
        ));
    }
    Ok(out)
}
