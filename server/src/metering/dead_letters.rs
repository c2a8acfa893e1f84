//! The `dead_letters` table: messages that can never be stored, kept with their reason so that
//! an operator can see them. Both queues end here: the in-process queue writes its rejects
//! directly, and with RabbitMQ every instance drains the dead-letter queue into it
//! ([`super::amqp`]). The same body dead-lettered again for the same reason counts on its row
//! (`count`, `last_seen_at`) instead of adding one. An admin replays them ([`PipelineReplay`])
//! once the cause is fixed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbErr};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use app::dead_letters::ssr::{Replay, ReplayFuture, Selection};
use app::dead_letters::{ReplayReport, REPLAY_MAX};
use app::error::AppError;
use app::sql::Sql;

use super::pipeline::{Pipeline, Verdict};

/// Reason given to a message the broker dead-lettered on its own (delivery limit reached) whose
/// second try, from the dead-letter queue, did not finish either.
pub const DELIVERY_LIMIT: &str = "delivery_limit";

/// The longest reason the table keeps.
const REASON_CHARS: usize = 64;

/// Keeps one dead letter, or counts it again when its body was kept for the same reason.
pub async fn keep(
    db: &impl ConnectionTrait,
    reason: &str,
    detail: &str,
    payload: &[u8],
) -> Result<(), DbErr> {
    let at = Utc::now();
    // An insert that fails for good would be taken for an outage and retried forever, holding
    // its message: the reason column holds 64 characters (a header set by someone else may be
    // longer), and PostgreSQL text cannot hold NUL (which such a header may carry).
    // Control characters (NUL above all) and edge spaces would also make a reason the admin
    // page cannot name in a link.
    let reason: String = reason
        .trim()
        .chars()
        .take(REASON_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    let detail = detail.replace('\0', "\u{fffd}");
    let mut hash = Sha256::new();
    hash.update(reason.as_bytes());
    hash.update([0]);
    hash.update(payload);
    let digest = format!("{:x}", hash.finalize());
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "INSERT INTO dead_letters (id, reason, detail, payload, received_at, count, \
         last_seen_at, digest) VALUES (",
    )
    .param(uuid::Uuid::new_v4())
    .push(", ")
    .param(reason.as_str())
    .push(", ")
    .param(detail)
    .push(", ")
    .param(payload.to_vec())
    .push(", ")
    .param(at)
    .push(", 1, ")
    .param(at)
    .push(", ")
    .param(digest)
    .push(
        ") ON CONFLICT (digest) DO UPDATE SET count = dead_letters.count + 1, \
         detail = excluded.detail, last_seen_at = excluded.last_seen_at",
    );
    db.execute_raw(sql.build()).await?;
    Ok(())
}

/// Keeps a dead letter, retrying while the database is unavailable; `false` when `stop`
/// completed first (nothing was kept: the message must not be acknowledged).
pub async fn keep_until_done(
    db: &impl ConnectionTrait,
    reason: &str,
    detail: &str,
    body: &[u8],
    stop: impl std::future::Future<Output = ()>,
) -> bool {
    tokio::pin!(stop);
    let mut delay = Duration::from_millis(100);
    loop {
        match keep(db, reason, detail, body).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(%error, "cannot keep a dead letter; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut stop => return false,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Messages the pipeline takes per replayed batch.
const REPLAY_BATCH: usize = 200;

/// Replays dead letters through this server's metering pipeline: validated again, stored once,
/// peaks detected and announced as for any reading. What the pipeline took (stored now, stored
/// before, or in conflict with a stored reading) leaves the table; what it refuses again stays,
/// under its new reason when that changed.
pub struct PipelineReplay {
    pipeline: Arc<Pipeline>,
}

impl PipelineReplay {
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        PipelineReplay { pipeline }
    }

    async fn run(&self, reason: &str, selection: Selection) -> Result<ReplayReport, DbErr> {
        let db = self.pipeline.db();
        let mut ticked = match selection {
            Selection::Ids(ids) => Some(ids.into_iter()),
            Selection::All => None,
        };
        let mut report = ReplayReport::default();
        let mut refused = BTreeMap::<String, i64>::new();
        // Letters refused again for this reason stay, and they come first in the table's order:
        // "all" reads on past them, so that one click reaches every letter of the reason.
        let mut stayed = 0usize;
        loop {
            let mut sql = Sql::new(db.get_database_backend());
            sql.push("SELECT id, payload FROM dead_letters WHERE reason = ")
                .param(reason);
            match &mut ticked {
                Some(ids) => {
                    let chunk: Vec<Uuid> = ids.by_ref().take(REPLAY_BATCH).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    sql.push(" AND id IN ")
                        .list(chunk)
                        .push(" ORDER BY received_at, id");
                }
                None => {
                    if report.replayed as usize >= REPLAY_MAX {
                        break;
                    }
                    sql.push(" ORDER BY received_at, id LIMIT ")
                        .push(&REPLAY_BATCH.to_string())
                        .push(" OFFSET ")
                        .push(&stayed.to_string());
                }
            }
            let rows = db.query_all_raw(sql.build()).await?;
            let letters = rows
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get::<Uuid>("", "id")?,
                        row.try_get::<Vec<u8>>("", "payload")?,
                    ))
                })
                .collect::<Result<Vec<_>, DbErr>>()?;
            if letters.is_empty() {
                if ticked.is_some() {
                    continue;
                }
                break;
            }
            let bodies: Vec<&[u8]> = letters.iter().map(|(_, body)| body.as_slice()).collect();
            let processed = self.pipeline.process(&bodies).await?;
            let mut taken = Vec::new();
            for ((id, body), verdict) in letters.iter().zip(processed.verdicts) {
                match verdict {
                    Verdict::Stored => report.stored += 1,
                    Verdict::Duplicate => report.already_stored += 1,
                    Verdict::Conflict => report.conflicts += 1,
                    Verdict::Rejected(rejection) => {
                        *refused.entry(rejection.code().to_owned()).or_default() += 1;
                        if rejection.code() == reason {
                            stayed += 1;
                            continue;
                        }
                        // Kept under the new reason before the old row goes: a failure in
                        // between leaves it twice, never nowhere.
                        keep(db, rejection.code(), &rejection.to_string(), body).await?;
                    }
                }
                taken.push(*id);
            }
            report.replayed += letters.len() as i64;
            if !taken.is_empty() {
                let mut sql = Sql::new(db.get_database_backend());
                sql.push("DELETE FROM dead_letters WHERE id IN ")
                    .list(taken);
                db.execute_raw(sql.build()).await?;
            }
        }
        self.pipeline
            .metrics()
            .dead_letters_replayed
            .inc_by(report.replayed as u64);
        report.refused = refused.into_iter().collect();
        let mut sql = Sql::new(db.get_database_backend());
        sql.push(
            "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) AS n FROM dead_letters WHERE reason = ",
        )
        .param(reason);
        report.left = match db.query_one_raw(sql.build()).await? {
            Some(row) => row.try_get("", "n")?,
            None => 0,
        };
        tracing::info!(
            reason,
            replayed = report.replayed,
            stored = report.stored,
            already_stored = report.already_stored,
            conflicts = report.conflicts,
            left = report.left,
            "dead letters replayed"
        );
        Ok(report)
    }
}

impl Replay for PipelineReplay {
    fn replay<'a>(&'a self, reason: &'a str, selection: Selection) -> ReplayFuture<'a> {
        Box::pin(async move {
            self.run(reason, selection).await.map_err(|error| {
                tracing::error!(%error, reason, "replaying dead letters failed");
                AppError::Conflict(
                    "The database did not answer; nothing more was replayed. Try again shortly."
                        .into(),
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{Database, Statement};

    #[tokio::test]
    async fn reasons_too_long_and_nul_characters_are_mended_not_refused() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared(
            "CREATE TABLE dead_letters (id TEXT, reason VARCHAR(64), detail TEXT, payload BLOB, \
             received_at TEXT, count BIGINT NOT NULL DEFAULT 1, last_seen_at TEXT, \
             digest VARCHAR(64) UNIQUE)",
        )
        .await
        .unwrap();
        let long = "é".repeat(70);
        keep(&db, &long, "field \"a\0b\"", b"x").await.unwrap();
        keep(&db, &long, "field \"a\0b\"", b"x").await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT reason, detail, count FROM dead_letters",
            ))
            .await
            .unwrap()
            .unwrap();
        let reason: String = row.try_get_by_index(0).unwrap();
        assert_eq!(reason, "é".repeat(64));
        keep(&db, " odd\treason\n", "", b"y").await.unwrap();
        let odd = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT reason FROM dead_letters WHERE payload = x'79'",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            odd.try_get_by_index::<String>(0).unwrap(),
            "odd\u{fffd}reason"
        );
        let detail: String = row.try_get_by_index(1).unwrap();
        assert_eq!(detail, "field \"a\u{fffd}b\"");
        assert_eq!(row.try_get_by_index::<i64>(2).unwrap(), 2);
    }
}
