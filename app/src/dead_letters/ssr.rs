use std::future::Future;
use std::pin::Pin;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{DeadLetter, ReasonGroup, ReplayReport, BODY_SHOWN, PER_PAGE, SELECT_MAX};
use crate::entities::dead_letters;
use crate::error::AppError;
use crate::sql::Sql;
use crate::ui::Page;

/// Which dead letters of a reason to replay.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    /// These (those of another reason, or gone, are left out).
    Ids(Vec<Uuid>),
    /// All of the reason, oldest first, up to [`super::REPLAY_MAX`].
    All,
}

pub type ReplayFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ReplayReport, AppError>> + Send + 'a>>;

/// Replays dead letters through the metering pipeline: the server provides it (the pipeline
/// lives there), and it removes what the pipeline took.
pub trait Replay: Send + Sync {
    fn replay<'a>(&'a self, reason: &'a str, selection: Selection) -> ReplayFuture<'a>;
}

/// A reason as the table keeps it (at most 64 characters, not empty).
pub fn check_reason(reason: &str) -> Result<String, AppError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 64 || reason.chars().any(char::is_control) {
        return Err(AppError::field("reason", "Choose a reason from the list."));
    }
    Ok(reason.to_owned())
}

/// `scope` and ticked `ids` as a [`Selection`].
pub fn selection(scope: &str, ids: Vec<String>) -> Result<Selection, AppError> {
    match scope {
        "all" => Ok(Selection::All),
        "selected" => {
            if ids.is_empty() {
                return Err(AppError::field(
                    "ids",
                    "Tick at least one message to replay, or replay them all.",
                ));
            }
            if ids.len() > SELECT_MAX {
                return Err(AppError::field(
                    "ids",
                    format!("Replay at most {SELECT_MAX} ticked messages at once."),
                ));
            }
            ids.iter()
                .map(|id| crate::validate::uuid(id, "ids"))
                .collect::<Result<Vec<_>, _>>()
                .map(Selection::Ids)
        }
        _ => Err(AppError::field(
            "scope",
            "Replay the ticked messages or all of them.",
        )),
    }
}

pub async fn groups(db: &impl ConnectionTrait) -> Result<Vec<ReasonGroup>, AppError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "SELECT reason, CAST(COUNT(*) AS BIGINT) AS letters, CAST(SUM(count) AS BIGINT) AS messages, \
         MAX(COALESCE(last_seen_at, received_at)) AS last_seen \
         FROM dead_letters GROUP BY reason",
    );
    let rows = db.query_all_raw(sql.build()).await?;
    let mut groups = rows
        .iter()
        .map(|row| {
            let last_seen: chrono::DateTime<chrono::Utc> = row.try_get("", "last_seen")?;
            Ok((
                last_seen,
                ReasonGroup {
                    reason: row.try_get("", "reason")?,
                    letters: row.try_get("", "letters")?,
                    messages: row.try_get("", "messages")?,
                    last_seen: crate::time::rfc3339(last_seen),
                },
            ))
        })
        .collect::<Result<Vec<_>, sea_orm::DbErr>>()?;
    groups.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.reason.cmp(&b.1.reason)));
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

pub async fn list(
    db: &impl ConnectionTrait,
    reason: &str,
    page: i64,
) -> Result<Page<DeadLetter>, AppError> {
    let page = crate::validate::page(Some(page))?;
    let paginator = dead_letters::Entity::find()
        .filter(dead_letters::Column::Reason.eq(reason))
        .order_by_desc(dead_letters::Column::ReceivedAt)
        .order_by_desc(dead_letters::Column::Id)
        .paginate(db, PER_PAGE as u64);
    let total = paginator.num_items().await? as i64;
    let rows = paginator.fetch_page((page - 1) as u64).await?;
    Ok(Page {
        items: rows.into_iter().map(to_letter).collect(),
        total,
        page,
        per_page: PER_PAGE,
    })
}

fn to_letter(row: dead_letters::Model) -> DeadLetter {
    let text = String::from_utf8_lossy(&row.payload);
    let body = match text.char_indices().nth(BODY_SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.into_owned(),
    };
    DeadLetter {
        id: row.id,
        reason: row.reason,
        detail: row.detail,
        body,
        bytes: row.payload.len() as i64,
        count: row.count,
        first_seen: crate::time::rfc3339(row.received_at),
        last_seen: crate::time::rfc3339(row.last_seen_at.unwrap_or(row.received_at)),
    }
}
