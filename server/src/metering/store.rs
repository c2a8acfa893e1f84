//! Storing a batch of valid readings and detecting the peaks they create, in one transaction:
//! the readings, their alerts, the devices' alarm episodes, and the outbox events that announce
//! them commit together or not at all.
//!
//! Exactly-once rests on constraints and locks, not on the broker: a reading is inserted with
//! `ON CONFLICT (device_id, ts) DO NOTHING`, an alert with `ON CONFLICT (device_id, t1, t2) DO
//! NOTHING`, and the batch first locks its devices' rows (PostgreSQL, in id order, so two
//! consumers never deadlock; SQLite: the write lock, taken at `BEGIN`). Two server instances
//! therefore never look at the same device's neighbours or episode at once, and a reading
//! stored by one is seen by the other.

use std::collections::{BTreeMap, HashMap, HashSet};

use app::history::buckets::{Sample, Share};
use app::history::ssr::{add_to_rollups, rollup_delta};
use app::live::ssr::{append_locked, lock_sequence, reading_after, Outgoing};
use app::live::{AlertEvent, EpisodeEvent, LiveEvent, ReadingEvent};
use app::sql::{begin_write, max_of, Sql};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr};
use serde::Serialize;
use uuid::Uuid;

use super::episodes::{self, Change, Episode, Step};
use super::message::Reading;
use super::peak::{self, Point};

/// Rows per SQLite INSERT statement (three parameters each; PostgreSQL takes arrays).
const INSERT_CHUNK: usize = 1000;
/// Spans per SQLite neighbour query (seven parameters each).
const RANGE_CHUNK: usize = 100;
/// New readings of one device further apart than this are looked up as separate spans, so a
/// very late reading does not pull in all the history between it and today's.
const SPAN_GAP_MS: i64 = 6 * 3_600_000;

/// What became of one reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    New,
    /// Already stored with the same value: a no-op.
    Duplicate,
    /// Already stored with another value: the first value stands.
    Conflict,
    /// No device has this id.
    UnknownDevice,
}

/// A peak alert raised by a batch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewAlert {
    pub id: Uuid,
    pub device_id: Uuid,
    /// The device's owner when the peak was detected.
    pub owner_id: Option<Uuid>,
    pub t1_ms: i64,
    pub t2_ms: i64,
    pub power_kw: f64,
    pub max_power_kw: f64,
    pub created_at: DateTime<Utc>,
    pub episode_id: Option<Uuid>,
}

/// The outcome of a batch: one [`Stored`] per reading, in order, the new alerts, and what the
/// live dashboards are to hear.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub stored: Vec<Stored>,
    pub alerts: Vec<NewAlert>,
    /// The new head reading of each device that has one, with the device's owner.
    pub readings: Vec<(Option<Uuid>, ReadingEvent)>,
    /// Whether outbox events were committed (the relay is to be woken).
    pub announced: bool,
}

#[derive(Clone, Debug)]
struct Device {
    max_power_kw: f64,
    owner_id: Option<Uuid>,
    description: String,
    /// Its open alarm episode.
    open: Option<Episode>,
}

/// Stores `readings` (validated, in arrival order), raises the alerts they create, and keeps
/// the hourly consumption rollups (intervals longer than `gap_ms` are missing data).
pub async fn store_batch(
    db: &DatabaseConnection,
    readings: &[Reading],
    gap_ms: i64,
) -> Result<BatchOutcome, DbErr> {
    if readings.is_empty() {
        return Ok(BatchOutcome::default());
    }
    let backend = db.get_database_backend();

    // The first copy of a (device, timestamp) in the batch is the one offered for storage.
    let mut first: HashMap<(Uuid, i64), usize> = HashMap::with_capacity(readings.len());
    for (i, r) in readings.iter().enumerate() {
        first.entry((r.device_id, r.timestamp_ms)).or_insert(i);
    }
    let mut ids: Vec<Uuid> = readings.iter().map(|r| r.device_id).collect();
    ids.sort_unstable();
    ids.dedup();

    let txn = begin_write(db).await?;
    let devices = devices(&txn, backend, &ids).await?;

    // Insert the first copies whose device exists; RETURNING tells which were new.
    let mut offered: Vec<usize> = first
        .values()
        .copied()
        .filter(|&i| devices.contains_key(&readings[i].device_id))
        .collect();
    offered.sort_unstable();
    let offered_rows: Vec<&Reading> = offered.iter().map(|&i| &readings[i]).collect();
    let inserted = insert_readings(&txn, backend, &offered_rows).await?;

    // The value that stands for each key: the new one, or the one stored before.
    let mut standing: HashMap<(Uuid, i64), f64> = HashMap::with_capacity(offered.len());
    let mut existing_keys = Vec::new();
    for &i in &offered {
        let r = &readings[i];
        let key = (r.device_id, r.timestamp_ms);
        if inserted.contains(&key) {
            standing.insert(key, r.energy_kwh);
        } else {
            existing_keys.push(key);
        }
    }
    for (key, value) in standing_values(&txn, backend, &existing_keys).await? {
        standing.insert(key, value);
    }

    let mut stored = Vec::with_capacity(readings.len());
    for (i, r) in readings.iter().enumerate() {
        let key = (r.device_id, r.timestamp_ms);
        let verdict = if !devices.contains_key(&r.device_id) {
            Stored::UnknownDevice
        } else if first.get(&key) == Some(&i) && inserted.contains(&key) {
            Stored::New
        } else {
            match standing.get(&key) {
                Some(value) if *value == r.energy_kwh => Stored::Duplicate,
                Some(value) => {
                    tracing::warn!(
                        device = %r.device_id,
                        ts = r.timestamp_ms,
                        stored_kwh = *value,
                        offered_kwh = r.energy_kwh,
                        "conflicting reading ignored: the first stored value stands"
                    );
                    Stored::Conflict
                }
                // Deleted between our insert and this read: cannot happen inside the
                // transaction, but a duplicate is the harmless answer.
                None => Stored::Duplicate,
            }
        };
        stored.push(verdict);
    }

    let series = series(&txn, backend, readings, &inserted).await?;
    let mut outcome = raise(&txn, backend, &series, &inserted, &devices, gap_ms).await?;
    txn.commit().await?;
    outcome.stored = stored;
    Ok(outcome)
}

/// The devices among `ids`, with their open episodes. On PostgreSQL their rows are locked for
/// the transaction.
async fn devices(
    db: &impl ConnectionTrait,
    backend: DatabaseBackend,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Device>, DbErr> {
    const COLUMNS: &str = "SELECT d.id, d.max_power_kw, d.owner_id, d.description, e.id, \
        e.started_t, e.last_t, e.peaks, e.max_power_kw, e.limit_kw FROM devices d \
        LEFT JOIN episodes e ON e.device_id = d.id AND e.ended_t IS NULL WHERE d.id ";
    let mut found = HashMap::with_capacity(ids.len());
    let mut statements = Vec::new();
    if backend == DatabaseBackend::Postgres {
        let mut sql = Sql::new(backend);
        sql.push(COLUMNS)
            .push("= ANY(")
            .param(ids.to_vec())
            // Serialises consumers per device; plain foreign-key checks (KEY SHARE) and
            // admin edits are not blocked for long.
            .push(") ORDER BY d.id FOR NO KEY UPDATE OF d");
        statements.push(sql.build());
    } else {
        for chunk in ids.chunks(INSERT_CHUNK) {
            let mut sql = Sql::new(backend);
            sql.push(COLUMNS).push("IN ").list(chunk.iter().copied());
            statements.push(sql.build());
        }
    }
    for statement in statements {
        for row in db.query_all_raw(statement).await? {
            let max_power_kw = row.try_get_by_index(1)?;
            let open = match row.try_get_by_index::<Option<Uuid>>(4)? {
                Some(id) => Some(Episode {
                    id,
                    started_t: row.try_get_by_index(5)?,
                    last_t: row.try_get_by_index(6)?,
                    peaks: row.try_get_by_index(7)?,
                    max_power_kw: row.try_get_by_index(8)?,
                    limit_kw: row.try_get_by_index(9)?,
                    ended_t: None,
                }),
                None => None,
            };
            found.insert(
                row.try_get_by_index::<Uuid>(0)?,
                Device {
                    max_power_kw,
                    owner_id: row.try_get_by_index(2)?,
                    description: row.try_get_by_index(3)?,
                    open,
                },
            );
        }
    }
    Ok(found)
}

/// Inserts readings unless their (device, timestamp) is stored; returns the keys inserted.
async fn insert_readings(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    rows: &[&Reading],
) -> Result<HashSet<(Uuid, i64)>, DbErr> {
    let mut statements = Vec::new();
    if backend == DatabaseBackend::Postgres {
        // Three array parameters instead of three per row: far less to parse and plan.
        let mut sql = Sql::new(backend);
        sql.push("INSERT INTO readings (device_id, ts, energy_kwh) SELECT * FROM UNNEST(")
            .param(rows.iter().map(|r| r.device_id).collect::<Vec<_>>())
            .push("::uuid[], ")
            .param(rows.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>())
            .push("::int8[], ")
            .param(rows.iter().map(|r| r.energy_kwh).collect::<Vec<_>>())
            .push("::float8[]) ON CONFLICT (device_id, ts) DO NOTHING RETURNING device_id, ts");
        statements.push(sql.build());
    } else {
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut sql = Sql::new(backend);
            sql.push("INSERT INTO readings (device_id, ts, energy_kwh) VALUES ");
            for (n, r) in chunk.iter().enumerate() {
                sql.push(if n == 0 { "(" } else { ", (" })
                    .param(r.device_id)
                    .push(", ")
                    .param(r.timestamp_ms)
                    .push(", ")
                    .param(r.energy_kwh)
                    .push(")");
            }
            sql.push(" ON CONFLICT (device_id, ts) DO NOTHING RETURNING device_id, ts");
            statements.push(sql.build());
        }
    }
    let mut inserted = HashSet::with_capacity(rows.len());
    for statement in statements {
        for row in txn.query_all_raw(statement).await? {
            inserted.insert((row.try_get_by_index(0)?, row.try_get_by_index(1)?));
        }
    }
    Ok(inserted)
}

/// The stored values of `keys`.
async fn standing_values(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    keys: &[(Uuid, i64)],
) -> Result<Vec<((Uuid, i64), f64)>, DbErr> {
    let mut statements = Vec::new();
    if backend == DatabaseBackend::Postgres {
        let mut sql = Sql::new(backend);
        sql.push("SELECT r.device_id, r.ts, r.energy_kwh FROM readings r JOIN UNNEST(")
            .param(keys.iter().map(|k| k.0).collect::<Vec<_>>())
            .push("::uuid[], ")
            .param(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .push("::int8[]) AS k(d, t) ON r.device_id = k.d AND r.ts = k.t");
        if !keys.is_empty() {
            statements.push(sql.build());
        }
    } else {
        for chunk in keys.chunks(INSERT_CHUNK / 2) {
            let mut sql = Sql::new(backend);
            sql.push("SELECT device_id, ts, energy_kwh FROM readings WHERE ");
            for (n, (device, ts)) in chunk.iter().enumerate() {
                sql.push(if n == 0 {
                    "(device_id = "
                } else {
                    " OR (device_id = "
                })
                .param(*device)
                .push(" AND ts = ")
                .param(*ts)
                .push(")");
            }
            statements.push(sql.build());
        }
    }
    let mut values = Vec::with_capacity(keys.len());
    for statement in statements {
        for row in txn.query_all_raw(statement).await? {
            values.push((
                (row.try_get_by_index(0)?, row.try_get_by_index(1)?),
                row.try_get_by_index(2)?,
            ));
        }
    }
    Ok(values)
}

/// Per device, the stored readings from the one before `lo` to the one after `hi`.
async fn neighbourhoods(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    spans: &[(Uuid, (i64, i64))],
) -> Result<Vec<(Uuid, Point)>, DbErr> {
    let mut statements = Vec::new();
    if backend == DatabaseBackend::Postgres {
        // Three index probes per device.
        let mut sql = Sql::new(backend);
        sql.push("SELECT s.d, n.ts, n.energy_kwh FROM UNNEST(")
            .param(spans.iter().map(|s| s.0).collect::<Vec<_>>())
            .push("::uuid[], ")
            .param(spans.iter().map(|s| s.1 .0).collect::<Vec<_>>())
            .push("::int8[], ")
            .param(spans.iter().map(|s| s.1 .1).collect::<Vec<_>>())
            .push(
                "::int8[]) AS s(d, lo, hi) CROSS JOIN LATERAL (\
                 (SELECT ts, energy_kwh FROM readings WHERE device_id = s.d AND ts < s.lo \
                  ORDER BY ts DESC LIMIT 1) \
                 UNION ALL (SELECT ts, energy_kwh FROM readings WHERE device_id = s.d \
                  AND ts BETWEEN s.lo AND s.hi) \
                 UNION ALL (SELECT ts, energy_kwh FROM readings WHERE device_id = s.d AND ts > s.hi \
                  ORDER BY ts LIMIT 1)) AS n",
            );
        statements.push(sql.build());
    } else {
        for chunk in spans.chunks(RANGE_CHUNK) {
            let mut sql = Sql::new(backend);
            for (n, (device, (lo, hi))) in chunk.iter().enumerate() {
                if n > 0 {
                    sql.push(" UNION ALL ");
                }
                sql.push("SELECT device_id, ts, energy_kwh FROM readings WHERE device_id = ")
                    .param(*device)
                    .push(" AND ts >= COALESCE((SELECT MAX(ts) FROM readings WHERE device_id = ")
                    .param(*device)
                    .push(" AND ts < ")
                    .param(*lo)
                    .push("), ")
                    .param(*lo)
                    .push(") AND ts <= COALESCE((SELECT MIN(ts) FROM readings WHERE device_id = ")
                    .param(*device)
                    .push(" AND ts > ")
                    .param(*hi)
                    .push("), ")
                    .param(*hi)
                    .push(")");
            }
            statements.push(sql.build());
        }
    }
    let mut points = Vec::new();
    for statement in statements {
        for row in txn.query_all_raw(statement).await? {
            points.push((
                row.try_get_by_index(0)?,
                Point {
                    t_ms: row.try_get_by_index(1)?,
                    e_kwh: row.try_get_by_index(2)?,
                },
            ));
        }
    }
    Ok(points)
}

/// Per device with new readings: its stored readings from the one before its new ones to the
/// one after, in time order.
async fn series(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    readings: &[Reading],
    inserted: &HashSet<(Uuid, i64)>,
) -> Result<BTreeMap<Uuid, Vec<Point>>, DbErr> {
    // Per device, the spans of its new readings (split where they are far apart), each
    // widened to the stored neighbours just outside it.
    let mut new_times: BTreeMap<Uuid, Vec<i64>> = BTreeMap::new();
    for r in readings {
        if inserted.contains(&(r.device_id, r.timestamp_ms)) {
            new_times
                .entry(r.device_id)
                .or_default()
                .push(r.timestamp_ms);
        }
    }
    if new_times.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut spans: Vec<(Uuid, (i64, i64))> = Vec::new();
    for (device, mut times) in new_times {
        times.sort_unstable();
        let mut span = (times[0], times[0]);
        for &t in &times[1..] {
            if t - span.1 > SPAN_GAP_MS {
                spans.push((device, span));
                span = (t, t);
            } else {
                span.1 = t;
            }
        }
        spans.push((device, span));
    }
    let mut points: BTreeMap<Uuid, Vec<Point>> = BTreeMap::new();
    for (device, point) in neighbourhoods(txn, backend, &spans).await? {
        points.entry(device).or_default().push(point);
    }
    for series in points.values_mut() {
        // Spans of one device may share a neighbour.
        series.sort_unstable_by_key(|p| p.t_ms);
        series.dedup_by_key(|p| p.t_ms);
    }
    Ok(points)
}

/// What a batch changed for one device.
struct DeviceChanges {
    device_id: Uuid,
    alerts: Vec<NewAlert>,
    episodes: Vec<(Episode, Change)>,
    head: Option<ReadingEvent>,
    /// What to add to its hourly rollups: hour → share.
    rollup: HashMap<i64, Share>,
}

/// Checks every interval that a new reading starts or ends (a late reading creates two), tracks
/// the devices' episodes, and stores the alerts, the episodes and the events announcing them.
async fn raise(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    series: &BTreeMap<Uuid, Vec<Point>>,
    inserted: &HashSet<(Uuid, i64)>,
    devices: &HashMap<Uuid, Device>,
    gap_ms: i64,
) -> Result<BatchOutcome, DbErr> {
    let now = Utc::now();
    let mut changes = Vec::with_capacity(series.len());
    for (&device_id, points) in series {
        let Some(device) = devices.get(&device_id) else {
            continue;
        };
        changes.push(examine(device_id, device, points, inserted, now, gap_ms));
    }
    let rollup: Vec<(Uuid, i64, Share)> = changes
        .iter_mut()
        .flat_map(|c| {
            let device = c.device_id;
            std::mem::take(&mut c.rollup)
                .into_iter()
                .filter(|(_, share)| share.kwh != 0.0 || share.covered_ms != 0)
                .map(move |(hour, share)| (device, hour, share))
        })
        .collect();
    add_to_rollups(txn, &rollup).await?;
    let mut outcome = BatchOutcome {
        readings: changes
            .iter_mut()
            .filter_map(|c| {
                let owner = devices.get(&c.device_id).and_then(|d| d.owner_id);
                c.head.take().map(|r| (owner, r))
            })
            .collect(),
        ..Default::default()
    };
    let candidates: Vec<NewAlert> = changes.iter().flat_map(|c| c.alerts.clone()).collect();
    let touched: Vec<(Uuid, &Episode, Change)> = changes
        .iter()
        .flat_map(|c| c.episodes.iter().map(|(e, ch)| (c.device_id, e, *ch)))
        .collect();
    if candidates.is_empty() && touched.is_empty() {
        return Ok(outcome);
    }

    // Alerts are numbered in commit order, under the lock the outbox numbering uses too.
    lock_sequence(txn).await?;
    let raised = insert_alerts(txn, backend, &candidates).await?;
    store_episodes(txn, backend, &touched, devices, now).await?;

    let mut events = Vec::with_capacity(raised.len() + touched.len());
    for alert in candidates.into_iter().filter(|a| raised.contains(&a.id)) {
        let device = &devices[&alert.device_id];
        events.push(Outgoing::about_device(
            alert.owner_id,
            LiveEvent::Alert(AlertEvent {
                id: alert.id,
                device_id: alert.device_id,
                device: device.description.clone(),
                t1_ms: alert.t1_ms,
                t2_ms: alert.t2_ms,
                power_kw: alert.power_kw,
                max_power_kw: alert.max_power_kw,
                created_ms: alert.created_at.timestamp_millis(),
                episode_id: alert.episode_id,
            }),
        ));
        outcome.alerts.push(alert);
    }
    for (device_id, episode, change) in touched {
        let device = &devices[&device_id];
        let event = EpisodeEvent {
            id: episode.id,
            device_id,
            device: device.description.clone(),
            started_ms: episode.started_t,
            last_ms: episode.last_t,
            peaks: episode.peaks,
            max_power_kw: episode.max_power_kw,
            limit_kw: episode.limit_kw,
            ended_ms: episode.ended_t,
        };
        let mut announce = |event| events.push(Outgoing::about_device(device.owner_id, event));
        match (change, episode.ended_t) {
            (Change::Started, None) => announce(LiveEvent::EpisodeStarted(event)),
            (Change::Started, Some(_)) => {
                announce(LiveEvent::EpisodeStarted(EpisodeEvent {
                    ended_ms: None,
                    ..event.clone()
                }));
                announce(LiveEvent::EpisodeEnded(event));
            }
            (Change::Changed, None) => announce(LiveEvent::EpisodeUpdated(event)),
            (Change::Changed, Some(_)) => announce(LiveEvent::EpisodeEnded(event)),
        }
    }
    outcome.announced = !events.is_empty();
    append_locked(txn, &events).await?;
    outcome.alerts.sort_by_key(|a| (a.device_id, a.t1_ms));
    Ok(outcome)
}

/// One device's peaks, episode changes, new head reading and rollup changes, from its series.
fn examine(
    device_id: Uuid,
    device: &Device,
    points: &[Point],
    inserted: &HashSet<(Uuid, i64)>,
    now: DateTime<Utc>,
    gap_ms: i64,
) -> DeviceChanges {
    let is_new = |p: &Point| inserted.contains(&(device_id, p.t_ms));
    let sample = |p: &Point| Sample {
        t_ms: p.t_ms,
        kwh: p.e_kwh,
    };
    // The intervals the new readings replace (a late reading splits one in two) and the ones
    // they make.
    let new_times: Vec<i64> = points
        .iter()
        .filter(|p| is_new(p))
        .map(|p| p.t_ms)
        .collect();
    let old: Vec<Point> = points.iter().filter(|p| !is_new(p)).copied().collect();
    let removed = old.windows(2).filter_map(|w| {
        let first_new_after = new_times.partition_point(|t| *t <= w[0].t_ms);
        new_times
            .get(first_new_after)
            .filter(|t| **t < w[1].t_ms)
            .map(|_| (sample(&w[0]), sample(&w[1])))
    });
    let added = points
        .windows(2)
        .filter(|w| is_new(&w[0]) || is_new(&w[1]))
        .map(|w| (sample(&w[0]), sample(&w[1])));
    let rollup = rollup_delta(removed, added, gap_ms);
    let head_before = points.iter().filter(|p| !is_new(p)).map(|p| p.t_ms).max();
    let mut steps = Vec::new();
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if is_new(&a) || is_new(&b) {
            steps.push(Step {
                t1: a.t_ms,
                t2: b.t_ms,
                peak: peak::peak(a, b, device.max_power_kw),
            });
        }
    }
    let tracked = episodes::track(
        device.open.clone(),
        head_before,
        &steps,
        device.max_power_kw,
        Uuid::new_v4,
    );
    let alerts = steps
        .iter()
        .zip(&tracked.step_episode)
        .filter_map(|(step, episode_id)| {
            step.peak.map(|power_kw| NewAlert {
                id: Uuid::new_v4(),
                device_id,
                owner_id: device.owner_id,
                t1_ms: step.t1,
                t2_ms: step.t2,
                power_kw,
                max_power_kw: device.max_power_kw,
                created_at: now,
                episode_id: *episode_id,
            })
        })
        .collect();
    // The head moved if the newest point is new.
    let head = match points {
        [.., before, last] if is_new(last) => Some(reading_after(
            device_id,
            Some((before.t_ms, before.e_kwh)),
            last.t_ms,
            last.e_kwh,
        )),
        [only] if is_new(only) => Some(reading_after(device_id, None, only.t_ms, only.e_kwh)),
        _ => None,
    };
    DeviceChanges {
        device_id,
        alerts,
        episodes: tracked.episodes,
        head,
        rollup,
    }
}

/// Inserts the alerts, numbered after the last one; returns the ids of those that were new.
async fn insert_alerts(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    alerts: &[NewAlert],
) -> Result<HashSet<Uuid>, DbErr> {
    let mut raised = HashSet::with_capacity(alerts.len());
    let mut seq = max_of(txn, "alerts", "seq").await?;
    for chunk in alerts.chunks(INSERT_CHUNK / 10) {
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO alerts (id, device_id, owner_id, t1, t2, power_kw, max_power_kw, \
             created_at, episode_id, seq) VALUES ",
        );
        for (n, a) in chunk.iter().enumerate() {
            seq += 1;
            sql.push(if n == 0 { "(" } else { ", (" })
                .param(a.id)
                .push(", ")
                .param(a.device_id)
                .push(", ")
                .param(a.owner_id)
                .push(", ")
                .param(a.t1_ms)
                .push(", ")
                .param(a.t2_ms)
                .push(", ")
                .param(a.power_kw)
                .push(", ")
                .param(a.max_power_kw)
                .push(", ")
                .param(a.created_at)
                .push(", ")
                .param(a.episode_id)
                .push(", ")
                .param(seq)
                .push(")");
        }
        sql.push(" ON CONFLICT (device_id, t1, t2) DO NOTHING RETURNING id");
        for row in txn.query_all_raw(sql.build()).await? {
            raised.insert(row.try_get_by_index::<Uuid>(0)?);
        }
    }
    Ok(raised)
}

/// Writes the episodes a batch touched: the ones that existed are updated first (an ended one
/// gives up its device's single open slot), then the new ones are inserted.
async fn store_episodes(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    touched: &[(Uuid, &Episode, Change)],
    devices: &HashMap<Uuid, Device>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let changed: Vec<&Episode> = touched
        .iter()
        .filter(|(_, _, c)| *c == Change::Changed)
        .map(|(_, e, _)| *e)
        .collect();
    if !changed.is_empty() {
        if backend == DatabaseBackend::Postgres {
            // Arrays cannot hold NULL here: -1 stands for "still open".
            let mut sql = Sql::new(backend);
            sql.push(
                "UPDATE episodes AS e SET peaks = u.peaks, max_power_kw = u.max, last_t = u.last, \
                 ended_t = NULLIF(u.ended, -1), ended_at = CASE WHEN u.ended < 0 THEN NULL ELSE ",
            )
            .param(now)
            .push(" END FROM UNNEST(")
            .param(changed.iter().map(|e| e.id).collect::<Vec<_>>())
            .push("::uuid[], ")
            .param(changed.iter().map(|e| e.peaks).collect::<Vec<_>>())
            .push("::int4[], ")
            .param(changed.iter().map(|e| e.max_power_kw).collect::<Vec<_>>())
            .push("::float8[], ")
            .param(changed.iter().map(|e| e.last_t).collect::<Vec<_>>())
            .push("::int8[], ")
            .param(
                changed
                    .iter()
                    .map(|e| e.ended_t.unwrap_or(-1))
                    .collect::<Vec<_>>(),
            )
            .push("::int8[]) AS u(id, peaks, max, last, ended) WHERE e.id = u.id");
            txn.execute_raw(sql.build()).await?;
        } else {
            for e in &changed {
                let mut sql = Sql::new(backend);
                sql.push("UPDATE episodes SET peaks = ")
                    .param(e.peaks)
                    .push(", max_power_kw = ")
                    .param(e.max_power_kw)
                    .push(", last_t = ")
                    .param(e.last_t)
                    .push(", ended_t = ")
                    .param(e.ended_t)
                    .push(", ended_at = ")
                    .param(e.ended_t.map(|_| now))
                    .push(" WHERE id = ")
                    .param(e.id);
                txn.execute_raw(sql.build()).await?;
            }
        }
    }
    let started: Vec<(Uuid, &Episode)> = touched
        .iter()
        .filter(|(_, _, c)| *c == Change::Started)
        .map(|(d, e, _)| (*d, *e))
        .collect();
    for chunk in started.chunks(INSERT_CHUNK / 20) {
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO episodes (id, device_id, owner_id, started_t, last_t, peaks, \
             max_power_kw, limit_kw, ended_t, started_at, ended_at) VALUES ",
        );
        for (n, (device_id, e)) in chunk.iter().enumerate() {
            sql.push(if n == 0 { "(" } else { ", (" })
                .param(e.id)
                .push(", ")
                .param(*device_id)
                .push(", ")
                .param(devices.get(device_id).and_then(|d| d.owner_id))
                .push(", ")
                .param(e.started_t)
                .push(", ")
                .param(e.last_t)
                .push(", ")
                .param(e.peaks)
                .push(", ")
                .param(e.max_power_kw)
                .push(", ")
                .param(e.limit_kw)
                .push(", ")
                .param(e.ended_t)
                .push(", ")
                .param(now)
                .push(", ")
                .param(e.ended_t.map(|_| now))
                .push(")");
        }
        txn.execute_raw(sql.build()).await?;
    }
    Ok(())
}
