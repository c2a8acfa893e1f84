//! The `dead_letters` table: messages that can never be stored, kept with their reason so that
//! an operator can see them. Both queues end here: the in-process queue writes its rejects
//! directly, and with RabbitMQ every instance drains the dead-letter queue into it
//! ([`super::amqp`]). The same body dead-lettered again for the same reason counts on its row
//! (`count`, `last_seen_at`) instead of adding one.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use sha2::{Digest, Sha256};

use app::sql::Sql;

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
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    // An insert that fails for good would be taken for an outage and retried forever, holding
    // its message: the reason column holds 64 characters (a header set by someone else may be
    // longer), and PostgreSQL text cannot hold NUL (which such a header may carry).
    let reason = match reason.char_indices().nth(REASON_CHARS) {
        Some((end, _)) => &reason[..end],
        None => reason,
    };
    let reason = reason.replace('\0', "\u{fffd}");
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

/// Dead letters kept, counted with their repeats, by reason (sorted by reason).
pub async fn counts_by_reason(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT reason, CAST(SUM(count) AS BIGINT) AS n FROM dead_letters GROUP BY reason ORDER BY reason");
    let rows = db.query_all_raw(sql.build()).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "reason")?, row.try_get("", "n")?)))
        .collect()
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
        keep(&db, &long, "field \"a\0b\"", b"x", Utc::now())
            .await
            .unwrap();
        keep(&db, &long, "field \"a\0b\"", b"x", Utc::now())
            .await
            .unwrap();
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
        let detail: String = row.try_get_by_index(1).unwrap();
        assert_eq!(detail, "field \"a\u{fffd}b\"");
        assert_eq!(row.try_get_by_index::<i64>(2).unwrap(), 2);
    }
}
