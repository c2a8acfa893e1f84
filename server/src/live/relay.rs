//! The relay: publishes committed outbox events to every instance, in sequence order, and
//! moves `relay_cursor` past them once the bus has confirmed them. It runs on every instance;
//! the cursor's row lock lets one publish at a time, so each event is normally published once.
//! An instance that dies after publishing and before moving the cursor makes the next relay
//! publish those events again: the hubs drop what they have seen (by sequence number).
//!
//! Writers wake their own instance's relay after they commit; a poll catches what another
//! instance committed and did not publish (it died in between).

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::live::ssr::LiveHandle;
use app::sql::{begin_write, Sql};
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use super::bus::{PublishError, Publisher, StoredEvent};
use crate::metering::metrics::Metrics;

/// Events per publication.
const BATCH: i64 = 500;

#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// How often to look for events nobody woke this relay for.
    pub poll_every: Duration,
    /// Published events older than this are deleted (a browser away for longer reloads).
    pub retention: Duration,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("{0}")]
    Publish(#[from] PublishError),
}

pub async fn run(
    db: DatabaseConnection,
    publisher: Publisher,
    handle: LiveHandle,
    settings: RelaySettings,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    let mut pruned = Instant::now();
    // Woken by a commit (or just started): there is something to publish, no need to look.
    let mut woken = true;
    loop {
        match relay_once(&db, &publisher, !woken).await {
            Ok(0) => {
                delay = Duration::from_millis(100);
                if pruned.elapsed() > Duration::from_secs(3600) {
                    pruned = Instant::now();
                    if let Err(error) = prune(&db, settings.retention).await {
                        tracing::warn!(%error, "could not delete old outbox events");
                    }
                }
                woken = tokio::select! {
                    _ = handle.woken() => true,
                    _ = tokio::time::sleep(settings.poll_every) => false,
                    _ = cancel.cancelled() => return,
                };
            }
            Ok(n) => {
                metrics.events_published.inc_by(n as u64);
                woken = true;
            }
            Err(error) => {
                woken = false;
                metrics.relay_failures.inc();
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "relay failed; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn published_seq(db: &impl ConnectionTrait, lock: bool) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let sql = if lock && backend == DatabaseBackend::Postgres {
        "SELECT published_seq FROM relay_cursor WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT published_seq FROM relay_cursor WHERE id = 1"
    };
    match db
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
    {
        Some(row) => row.try_get_by_index(0),
        None => Err(DbErr::RecordNotFound("relay_cursor".into())),
    }
}

/// The published position: where a hub that starts now begins.
pub async fn published(db: &DatabaseConnection) -> Result<i64, DbErr> {
    published_seq(db, false).await
}

/// Publishes the next events, if any; returns how many. `look_first`: check without the lock
/// whether there is anything (most polls find nothing).
async fn relay_once(
    db: &DatabaseConnection,
    publisher: &Publisher,
    look_first: bool,
) -> Result<usize, RelayError> {
    if look_first {
        let newest = app::sql::max_of(db, "outbox", "seq").await?;
        if newest <= published_seq(db, false).await? {
            return Ok(0);
        }
    }
    let txn = begin_write(db).await?;
    let from = published_seq(&txn, true).await?;
    let events = events_after(&txn, from, None, BATCH).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        txn.commit().await?;
        return Ok(0);
    };
    let n = events.len();
    publisher.events(events).await?;
    let mut sql = Sql::new(txn.get_database_backend());
    sql.push("UPDATE relay_cursor SET published_seq = ")
        .param(last)
        .push(" WHERE id = 1");
    txn.execute_raw(sql.build()).await?;
    txn.commit().await?;
    Ok(n)
}

/// Outbox events after `after` (and up to `through`, when given), in order, at most `limit`.
pub async fn events_after(
    db: &impl ConnectionTrait,
    after: i64,
    through: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT seq, kind, user_id, private, payload FROM outbox WHERE seq > ")
        .param(after);
    if let Some(through) = through {
        sql.push(" AND seq <= ").param(through);
    }
    sql.push(" ORDER BY seq LIMIT ").param(limit);
    db.query_all_raw(sql.build())
        .await?
        .iter()
        .map(stored_event)
        .collect()
}

/// Deletes published events older than `retention`.
async fn prune(db: &DatabaseConnection, retention: Duration) -> Result<u64, DbErr> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("DELETE FROM outbox WHERE created_at < ")
        .param(cutoff)
        .push(" AND seq <= (SELECT published_seq FROM relay_cursor WHERE id = 1)");
    Ok(db.execute_raw(sql.build()).await?.rows_affected())
}

/// The oldest event still kept, if any.
pub async fn oldest_seq(db: &DatabaseConnection) -> Result<Option<i64>, DbErr> {
    let backend = db.get_database_backend();
    match db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT MIN(seq) FROM outbox",
        ))
        .await?
    {
        Some(row) => row.try_get_by_index(0),
        None => Ok(None),
    }
}

/// The events in (`after`, `through`] that `user` may see, at most `limit`: their own, and for
/// an admin every event about a device. Session ends are for the server alone.
pub async fn visible_after(
    db: &DatabaseConnection,
    user: uuid::Uuid,
    admin: bool,
    after: i64,
    through: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT seq, kind, user_id, private, payload FROM outbox WHERE seq > ")
        .param(after)
        .push(" AND seq <= ")
        .param(through)
        .push(" AND kind <> 'session_ended' AND (user_id = ")
        .param(user);
    if admin {
        sql.push(" OR private = ").param(false);
    }
    sql.push(") ORDER BY seq LIMIT ").param(limit);
    db.query_all_raw(sql.build())
        .await?
        .iter()
        .map(stored_event)
        .collect()
}

fn stored_event(row: &sea_orm::QueryResult) -> Result<StoredEvent, DbErr> {
    Ok(StoredEvent {
        seq: row.try_get_by_index(0)?,
        kind: row.try_get_by_index(1)?,
        user_id: row.try_get_by_index(2)?,
        private: row.try_get_by_index(3)?,
        payload: row.try_get_by_index(4)?,
    })
}
