//! Server side of the live dashboard: the outbox that writers append to, the live position that
//! pages embed, and the queries behind the dashboards and the alert centre.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement};
use tokio::sync::Notify;
use uuid::Uuid;

use super::alerts::AlertRow;
use super::cards::CardCache;
use super::dashboard::DeviceLive;
use super::unread::UnreadCache;
use super::{EpisodeEvent, LiveEvent, ReadingEvent, UNREAD_CAP};
use crate::auth::cache::SessionCache;
use crate::auth::{CurrentUser, Role};
use crate::devices::Device;
use crate::sql::{max_of, Sql};

/// What the outbox's writers and the pages share with the relay and the hub of this server.
#[derive(Clone, Debug, Default)]
pub struct LiveHandle {
    wake: Arc<Notify>,
    seq: Arc<AtomicI64>,
    sessions: Arc<SessionCache>,
    unread: Arc<UnreadCache>,
    cards: Arc<CardCache>,
}

impl LiveHandle {
    /// A handle whose session, unread count and card caches trust an entry for
    /// `cache_lifetime` (zero: no caches).
    pub fn new(cache_lifetime: std::time::Duration) -> Self {
        LiveHandle {
            sessions: Arc::new(SessionCache::new(cache_lifetime)),
            unread: Arc::new(UnreadCache::new(cache_lifetime)),
            cards: Arc::new(CardCache::new(cache_lifetime)),
            ..Default::default()
        }
    }

    /// The unread alert counts this server computed lately; the hub drops the ones its events
    /// may change.
    pub fn unread(&self) -> &UnreadCache {
        &self.unread
    }

    /// The pages of device cards this server read lately; the hub drops the ones its events
    /// and readings may change.
    pub fn cards(&self) -> &CardCache {
        &self.cards
    }

    /// The signed-in sessions this server checked lately; the hub drops the ones whose end it
    /// passes on.
    pub fn sessions(&self) -> &SessionCache {
        &self.sessions
    }

    /// Tells the relay that events were committed: it publishes them at once instead of at its
    /// next poll. Call after the commit.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Completes after the next [`wake`](Self::wake) (or at once if one is pending).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// The last outbox sequence number this server's hub has passed on: a page rendered now
    /// reflects at least the events up to it.
    pub fn seq(&self) -> i64 {
        self.seq.load(Ordering::Acquire)
    }

    pub fn set_seq(&self, seq: i64) {
        self.seq.store(seq, Ordering::Release);
    }
}

/// Held (PostgreSQL) from the moment a transaction numbers its events until it commits, so
/// that numbers are handed out in commit order. SQLite has one writer at a time anyway.
const SEQUENCE_LOCK: i64 = 0x656e_6572_6779_0001;

/// Takes the sequence lock for the rest of the transaction. On SQLite the transaction must
/// hold the write lock already (see [`crate::sql::begin_write`]).
pub async fn lock_sequence(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            format!("SELECT pg_advisory_xact_lock({SEQUENCE_LOCK})"),
        ))
        .await?;
    }
    Ok(())
}

/// An event on its way into the outbox, with whom it is for.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The client it concerns (a device's owner), or the user a private event is for.
    pub user_id: Option<Uuid>,
    /// Private events go to `user_id` only; the others go to `user_id` and every admin.
    pub private: bool,
    pub event: LiveEvent,
}

impl Outgoing {
    /// For the device's owner (if any) and every admin.
    pub fn about_device(owner: Option<Uuid>, event: LiveEvent) -> Self {
        Outgoing {
            user_id: owner,
            private: false,
            event,
        }
    }

    /// For `user` alone.
    pub fn private(user: Uuid, event: LiveEvent) -> Self {
        Outgoing {
            user_id: Some(user),
            private: true,
            event,
        }
    }
}

/// Rows per outbox INSERT.
const APPEND_CHUNK: usize = 500;

/// Appends `events` to the outbox inside the caller's transaction, numbered after the last
/// committed event. Call [`LiveHandle::wake`] after the commit.
pub async fn append(db: &impl ConnectionTrait, events: &[Outgoing]) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    lock_sequence(db).await?;
    append_locked(db, events).await
}

/// [`append`] for a transaction that took [`lock_sequence`] already.
pub async fn append_locked(db: &impl ConnectionTrait, events: &[Outgoing]) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let mut seq = max_of(db, "outbox", "seq").await?;
    let now = Utc::now();
    for chunk in events.chunks(APPEND_CHUNK) {
        let mut sql = Sql::new(backend);
        sql.push("INSERT INTO outbox (seq, kind, user_id, private, payload, created_at) VALUES ");
        for (n, e) in chunk.iter().enumerate() {
            seq += 1;
            let payload = serde_json::to_string(&e.event)
                .map_err(|e| DbErr::Custom(format!("an event could not be serialised: {e}")))?;
            sql.push(if n == 0 { "(" } else { ", (" })
                .param(seq)
                .push(", ")
                .param(e.event.kind())
                .push(", ")
                .param(e.user_id)
                .push(", ")
                .param(e.private)
                .push(", ")
                .param(payload)
                .push(", ")
                .param(now)
                .push(")");
        }
        db.execute_raw(sql.build()).await?;
    }
    Ok(())
}

/// A stable 63-bit hash (FNV-1a) of a session id: enough to tell a user's sessions apart in a
/// [`LiveEvent::SessionEnded`] without writing the id itself anywhere.
pub fn session_hash(session_id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in session_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1) as i64
}

/// Pushes the condition "alert `a` is visible to `user`" (clients: their own).
fn visible_to(sql: &mut Sql, user: &CurrentUser) {
    if user.role == Role::Client {
        sql.push(" AND a.owner_id = ").param(user.id);
    }
}

/// Pushes "alert `a` is unread by `user`".
fn unread_by(sql: &mut Sql, user: &CurrentUser) {
    sql.push(" AND a.seq > COALESCE((SELECT read_through FROM alert_read_marks WHERE user_id = ")
        .param(user.id)
        .push("), 0) AND NOT EXISTS (SELECT 1 FROM alert_reads r WHERE r.user_id = ")
        .param(user.id)
        .push(" AND r.alert_id = a.id)");
}

/// The user's unread alerts, counted up to [`UNREAD_CAP`].
pub async fn unread_count(db: &impl ConnectionTrait, user: &CurrentUser) -> Result<i64, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT COUNT(*) FROM (SELECT 1 FROM alerts a WHERE 1 = 1");
    visible_to(&mut sql, user);
    unread_by(&mut sql, user);
    sql.push(" LIMIT ").param(UNREAD_CAP).push(") AS unread");
    Ok(match db.query_one_raw(sql.build()).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    })
}

/// Adds to each device its latest reading (with the power over the interval it ends) and its
/// open alarm episode. Four index probes per device.
pub async fn with_live_state(
    db: &impl ConnectionTrait,
    devices: Vec<Device>,
) -> Result<Vec<DeviceLive>, DbErr> {
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let ids: Vec<Uuid> = devices.iter().map(|d| d.id).collect();
    let latest = |column: &str, offset: u8| {
        format!(
            "(SELECT {column} FROM readings r WHERE r.device_id = d.id ORDER BY r.ts DESC \
             LIMIT 1 OFFSET {offset})"
        )
    };
    let mut sql = Sql::new(backend);
    sql.push(&format!(
        "SELECT d.id, {}, {}, {}, {}, e.id, e.started_t, e.last_t, e.peaks, e.max_power_kw, \
         e.limit_kw FROM devices d LEFT JOIN episodes e ON e.device_id = d.id AND e.ended_t IS NULL \
         WHERE d.id IN ",
        latest("ts", 0),
        latest("energy_kwh", 0),
        latest("ts", 1),
        latest("energy_kwh", 1),
    ))
    .list(ids);
    let mut state: HashMap<Uuid, (Option<ReadingEvent>, Option<EpisodeEvent>)> = HashMap::new();
    for row in db.query_all_raw(sql.build()).await? {
        let id: Uuid = row.try_get_by_index(0)?;
        let last: Option<i64> = row.try_get_by_index(1)?;
        let reading = match (last, row.try_get_by_index::<Option<f64>>(2)?) {
            (Some(t_ms), Some(energy_kwh)) => {
                let before: Option<(i64, f64)> =
                    match (row.try_get_by_index(3)?, row.try_get_by_index(4)?) {
                        (Some(t), Some(e)) => Some((t, e)),
                        _ => None,
                    };
                Some(reading_after(id, before, t_ms, energy_kwh))
            }
            _ => None,
        };
        let episode = match row.try_get_by_index::<Option<Uuid>>(5)? {
            Some(episode_id) => Some(EpisodeEvent {
                id: episode_id,
                device_id: id,
                device: String::new(),
                started_ms: row.try_get_by_index(6)?,
                last_ms: row.try_get_by_index(7)?,
                peaks: row.try_get_by_index(8)?,
                max_power_kw: row.try_get_by_index(9)?,
                limit_kw: row.try_get_by_index(10)?,
                ended_ms: None,
            }),
            None => None,
        };
        state.insert(id, (reading, episode));
    }
    Ok(devices
        .into_iter()
        .map(|device| {
            let (last, episode) = state.remove(&device.id).unwrap_or_default();
            let episode = episode.map(|e| EpisodeEvent {
                device: device.description.clone(),
                ..e
            });
            DeviceLive {
                device,
                last,
                episode,
            }
        })
        .collect())
}

/// The reading at `t_ms` with the power over the interval from `before` (none after a reset).
pub fn reading_after(
    device_id: Uuid,
    before: Option<(i64, f64)>,
    t_ms: i64,
    energy_kwh: f64,
) -> ReadingEvent {
    let interval = before.filter(|(t, _)| *t < t_ms);
    ReadingEvent {
        device_id,
        t_ms,
        energy_kwh,
        power_kw: interval
            .filter(|(_, e)| *e <= energy_kwh)
            .map(|(t, e)| (energy_kwh - e) / ((t_ms - t) as f64 / 3_600_000.0)),
        interval_ms: interval.map(|(t, _)| t_ms - t),
    }
}

/// Which alerts the alert centre lists.
#[derive(Clone, Copy, Debug)]
pub struct AlertQuery {
    pub page: i64,
    pub per_page: i64,
    pub unread_only: bool,
}

/// A page of the alerts `user` may see, newest first, with their read state, and how many
/// there are in all.
pub async fn list_alerts(
    db: &impl ConnectionTrait,
    user: &CurrentUser,
    query: AlertQuery,
) -> Result<(Vec<AlertRow>, i64), DbErr> {
    let backend = db.get_database_backend();
    let mut count = Sql::new(backend);
    count.push("SELECT COUNT(*) FROM alerts a WHERE 1 = 1");
    visible_to(&mut count, user);
    if query.unread_only {
        unread_by(&mut count, user);
    }
    let total: i64 = match db.query_one_raw(count.build()).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };

    let mut sql = Sql::new(backend);
    sql.push(
        "SELECT a.id, a.device_id, d.description, u.username, u.display_name, a.t1, a.t2, \
         a.power_kw, a.max_power_kw, a.created_at, a.episode_id, CASE WHEN a.seq <= \
         COALESCE((SELECT read_through FROM alert_read_marks WHERE user_id = ",
    )
    .param(user.id)
    .push("), 0) OR EXISTS (SELECT 1 FROM alert_reads r WHERE r.user_id = ")
    .param(user.id)
    .push(
        " AND r.alert_id = a.id) THEN 1 ELSE 0 END FROM alerts a JOIN devices d ON d.id = \
         a.device_id LEFT JOIN users u ON u.id = a.owner_id WHERE 1 = 1",
    );
    visible_to(&mut sql, user);
    if query.unread_only {
        unread_by(&mut sql, user);
    }
    sql.push(" ORDER BY a.seq DESC, a.id LIMIT ")
        .param(query.per_page)
        .push(" OFFSET ")
        .param((query.page - 1).max(0) * query.per_page);
    let mut rows = Vec::new();
    for row in db.query_all_raw(sql.build()).await? {
        let created: DateTime<Utc> = row.try_get_by_index(9)?;
        let owner = match (
            row.try_get_by_index::<Option<String>>(3)?,
            row.try_get_by_index::<Option<String>>(4)?,
        ) {
            (Some(username), Some(name)) => Some(format!("{name} ({username})")),
            _ => None,
        };
        rows.push(AlertRow {
            id: row.try_get_by_index(0)?,
            device_id: row.try_get_by_index(1)?,
            device: row.try_get_by_index(2)?,
            owner,
            t1_ms: row.try_get_by_index(5)?,
            t2_ms: row.try_get_by_index(6)?,
            power_kw: row.try_get_by_index(7)?,
            max_power_kw: row.try_get_by_index(8)?,
            created_ms: created.timestamp_millis(),
            episode_id: row.try_get_by_index(10)?,
            read: row.try_get_by_index::<i32>(11)? != 0,
            when: String::new(),
        });
    }
    Ok((rows, total))
}

/// Marks one alert read for `user`; `false` when the user may not see it (or it is gone).
pub async fn mark_read(
    db: &impl ConnectionTrait,
    user: &CurrentUser,
    alert: Uuid,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let mut sql = Sql::new(backend);
    sql.push("INSERT INTO alert_reads (user_id, alert_id, read_at) SELECT ")
        .param(user.id)
        .push(", a.id, ")
        .param(Utc::now())
        .push(" FROM alerts a WHERE a.id = ")
        .param(alert);
    visible_to(&mut sql, user);
    sql.push(" ON CONFLICT (user_id, alert_id) DO NOTHING");
    db.execute_raw(sql.build()).await?;

    let mut exists = Sql::new(backend);
    exists
        .push("SELECT COUNT(*) FROM alert_reads WHERE user_id = ")
        .param(user.id)
        .push(" AND alert_id = ")
        .param(alert);
    let found: i64 = match db.query_one_raw(exists.build()).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(found > 0)
}

/// Marks every alert `user` may see as read; returns the sequence number read through.
pub async fn mark_all_read(db: &impl ConnectionTrait, user: &CurrentUser) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let mut newest = Sql::new(backend);
    newest.push("SELECT COALESCE(MAX(a.seq), 0) FROM alerts a WHERE 1 = 1");
    visible_to(&mut newest, user);
    let through: i64 = match db.query_one_raw(newest.build()).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    let mut mark = Sql::new(backend);
    mark.push("INSERT INTO alert_read_marks (user_id, read_through) VALUES (")
        .param(user.id)
        .push(", ")
        .param(through)
        .push(") ON CONFLICT (user_id) DO UPDATE SET read_through = ")
        .push(match backend {
            DatabaseBackend::Postgres => "GREATEST(alert_read_marks.read_through, ",
            _ => "MAX(alert_read_marks.read_through, ",
        })
        .push("excluded.read_through)");
    db.execute_raw(mark.build()).await?;
    // Single reads under the mark say nothing more.
    let mut tidy = Sql::new(backend);
    tidy.push("DELETE FROM alert_reads WHERE user_id = ")
        .param(user.id)
        .push(" AND alert_id IN (SELECT id FROM alerts WHERE seq <= ")
        .param(through)
        .push(")");
    db.execute_raw(tidy.build()).await?;
    Ok(through)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_is_over_the_interval_before_the_reading() {
        let id = Uuid::nil();
        // 0.5 kWh in 10 minutes is 3 kW.
        let r = reading_after(id, Some((0, 100.0)), 600_000, 100.5);
        assert!((r.power_kw.unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(r.interval_ms, Some(600_000));
        // A reset has no power; a first reading has no interval.
        assert_eq!(
            reading_after(id, Some((0, 100.0)), 600_000, 2.0).power_kw,
            None
        );
        let first = reading_after(id, None, 600_000, 2.0);
        assert_eq!((first.power_kw, first.interval_ms), (None, None));
    }

    #[test]
    fn session_hashes_are_stable_and_distinct() {
        assert_eq!(session_hash("abc"), session_hash("abc"));
        assert_ne!(session_hash("abc"), session_hash("abd"));
        assert!(session_hash("anything") >= 0);
        // FNV-1a of "a" (0xaf63dc4c8601ec8c), shifted right by one.
        assert_eq!(session_hash("a"), (0xaf63_dc4c_8601_ec8c_u64 >> 1) as i64);
    }
}
