//! Storing a batch of valid readings and detecting the peaks they create, in one transaction.
//!
//! Exactly-once rests on constraints and locks, not on the broker: a reading is inserted with
//! `ON CONFLICT (device_id, ts) DO NOTHING`, an alert with `ON CONFLICT (device_id, t1, t2) DO
//! NOTHING`, and on PostgreSQL the batch first locks its devices' rows (in id order, so two
//! consumers never deadlock). Two server instances therefore never look at the same device's
//! neighbours at once, and a reading stored by one is seen by the other. On SQLite the single
//! writer lock gives the same.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement, TransactionTrait, Value,
};
use serde::Serialize;
use uuid::Uuid;

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

/// A peak alert raised by a batch (the notification stream carries these).
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
}

/// The outcome of a batch: one [`Stored`] per reading, in order, and the new alerts.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub stored: Vec<Stored>,
    pub alerts: Vec<NewAlert>,
}

#[derive(Clone, Copy, Debug)]
struct Device {
    max_power_kw: f64,
    owner_id: Option<Uuid>,
}

/// Parameters and SQL text built together, with the backend's placeholder style.
pub(super) struct Sql {
    backend: DatabaseBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(super) fn new(backend: DatabaseBackend) -> Self {
        Sql {
            backend,
            text: String::with_capacity(256),
            values: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub(super) fn param(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DatabaseBackend::Postgres => {
                let n = self.values.len();
                self.text.push('$');
                self.text.push_str(&n.to_string());
            }
            _ => self.text.push('?'),
        }
        self
    }

    pub(super) fn build(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// Stores `readings` (validated, in arrival order) and raises the alerts they create.
pub async fn store_batch(
    db: &DatabaseConnection,
    readings: &[Reading],
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

    let sqlite_devices = match backend {
        DatabaseBackend::Postgres => None,
        _ => Some(devices(db, backend, &ids).await?),
    };
    let txn = db.begin().await?;
    let devices = match sqlite_devices {
        Some(d) => d,
        None => devices(&txn, backend, &ids).await?,
    };

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

    let alerts = detect(&txn, backend, readings, &inserted, &devices).await?;
    txn.commit().await?;
    Ok(BatchOutcome { stored, alerts })
}

/// The devices among `ids`. On PostgreSQL their rows are locked for the transaction.
async fn devices(
    db: &impl ConnectionTrait,
    backend: DatabaseBackend,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Device>, DbErr> {
    let mut found = HashMap::with_capacity(ids.len());
    let mut statements = Vec::new();
    if backend == DatabaseBackend::Postgres {
        let mut sql = Sql::new(backend);
        sql.push("SELECT id, max_power_kw, owner_id FROM devices WHERE id = ANY(")
            .param(ids.to_vec())
            // Serialises consumers per device; plain foreign-key checks (KEY SHARE) and
            // admin edits are not blocked for long.
            .push(") ORDER BY id FOR NO KEY UPDATE");
        statements.push(sql.build());
    } else {
        for chunk in ids.chunks(INSERT_CHUNK) {
            let mut sql = Sql::new(backend);
            sql.push("SELECT id, max_power_kw, owner_id FROM devices WHERE id IN (");
            for (n, id) in chunk.iter().enumerate() {
                if n > 0 {
                    sql.push(", ");
                }
                sql.param(*id);
            }
            sql.push(")");
            statements.push(sql.build());
        }
    }
    for statement in statements {
        for row in db.query_all_raw(statement).await? {
            found.insert(
                row.try_get_by_index::<Uuid>(0)?,
                Device {
                    max_power_kw: row.try_get_by_index(1)?,
                    owner_id: row.try_get_by_index(2)?,
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

/// Checks every interval that a new reading starts or ends (a late reading creates two) and
/// inserts the peaks among them.
async fn detect(
    txn: &impl ConnectionTrait,
    backend: DatabaseBackend,
    readings: &[Reading],
    inserted: &HashSet<(Uuid, i64)>,
    devices: &HashMap<Uuid, Device>,
) -> Result<Vec<NewAlert>, DbErr> {
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
        return Ok(Vec::new());
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
    let mut points: HashMap<Uuid, Vec<Point>> = HashMap::new();
    for (device, point) in neighbourhoods(txn, backend, &spans).await? {
        points.entry(device).or_default().push(point);
    }

    let now = Utc::now();
    let mut candidates = Vec::new();
    for (device_id, mut series) in points {
        let Some(device) = devices.get(&device_id) else {
            continue;
        };
        // Spans of one device may share a neighbour.
        series.sort_unstable_by_key(|p| p.t_ms);
        series.dedup_by_key(|p| p.t_ms);
        for pair in series.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let touches_new =
                inserted.contains(&(device_id, a.t_ms)) || inserted.contains(&(device_id, b.t_ms));
            if !touches_new {
                continue;
            }
            if let Some(power_kw) = peak::peak(a, b, device.max_power_kw) {
                candidates.push(NewAlert {
                    id: Uuid::new_v4(),
                    device_id,
                    owner_id: device.owner_id,
                    t1_ms: a.t_ms,
                    t2_ms: b.t_ms,
                    power_kw,
                    max_power_kw: device.max_power_kw,
                    created_at: now,
                });
            }
        }
    }
    if candidates.is_empty() {
        return Ok(candidates);
    }

    let mut raised = HashSet::new();
    for chunk in candidates.chunks(INSERT_CHUNK / 4) {
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO alerts (id, device_id, owner_id, t1, t2, power_kw, max_power_kw, \
             created_at) VALUES ",
        );
        for (n, a) in chunk.iter().enumerate() {
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
                .push(")");
        }
        sql.push(" ON CONFLICT (device_id, t1, t2) DO NOTHING RETURNING id");
        for row in txn.query_all_raw(sql.build()).await? {
            raised.insert(row.try_get_by_index::<Uuid>(0)?);
        }
    }
    candidates.retain(|a| raised.contains(&a.id));
    candidates.sort_by_key(|a| (a.device_id, a.t1_ms));
    Ok(candidates)
}
