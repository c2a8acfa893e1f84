//! The consumption history outside the pages: rebuilding the hourly rollups from the readings
//! (`server rebuild-history`), and the CSV of a day or a month
//! (`GET /devices/{id}/day.csv?date=…`, `GET /devices/{id}/month.csv?month=…`).

use std::time::Instant;

use app::auth::ssr::{check_session, SessionCheck};
use app::auth::Role;
use app::history::ssr::{self as queries, HistorySettings};
use app::history::{Coverage, History};
use app::sql::{begin_write, Sql};
use app::state::SessionSettings;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr};
use serde::Deserialize;
use tower_sessions::Session;
use uuid::Uuid;

/// What a rebuild did.
#[derive(Debug)]
pub struct Rebuilt {
    pub devices: u64,
    pub readings: u64,
    pub seconds: f64,
}

/// Recomputes the hourly rollups of `device` (or of every device) from its readings, one
/// device per transaction. On PostgreSQL the device's row is locked meanwhile, so the consumer
/// neither adds to a half-built rollup nor loses its additions.
pub async fn rebuild(
    db: &DatabaseConnection,
    device: Option<Uuid>,
    settings: HistorySettings,
) -> Result<Rebuilt, DbErr> {
    let started = Instant::now();
    let backend = db.get_database_backend();
    let ids: Vec<Uuid> = match device {
        Some(id) => vec![id],
        None => db
            .query_all_raw(sea_orm::Statement::from_string(
                backend,
                "SELECT id FROM devices ORDER BY id",
            ))
            .await?
            .iter()
            .map(|r| r.try_get_by_index(0))
            .collect::<Result<_, _>>()?,
    };
    let mut readings = 0;
    for id in &ids {
        let txn = begin_write(db).await?;
        if backend == DatabaseBackend::Postgres {
            let mut sql = Sql::new(backend);
            sql.push("SELECT id FROM devices WHERE id = ")
                .param(*id)
                .push(" FOR UPDATE");
            txn.query_one_raw(sql.build()).await?;
        }
        readings += queries::rebuild_device(&txn, *id, settings).await?;
        txn.commit().await?;
    }
    Ok(Rebuilt {
        devices: ids.len() as u64,
        readings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the CSV endpoint needs.
#[derive(Clone)]
pub struct CsvContext {
    pub db: DatabaseConnection,
    pub sessions: SessionSettings,
    pub history: HistorySettings,
}

#[derive(Deserialize)]
pub struct PeriodQuery {
    date: Option<String>,
    month: Option<String>,
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `GET /devices/{id}/day.csv?date=…`: a day's hours, as CSV.
pub async fn day_csv(
    State(ctx): State<CsvContext>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(period): Query<PeriodQuery>,
) -> Response {
    csv(ctx, session, headers, id, period, true).await
}

/// `GET /devices/{id}/month.csv?month=…`: a month's days, as CSV.
pub async fn month_csv(
    State(ctx): State<CsvContext>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(period): Query<PeriodQuery>,
) -> Response {
    csv(ctx, session, headers, id, period, false).await
}

/// The figures of the chart, as CSV.
async fn csv(
    ctx: CsvContext,
    session: Session,
    headers: HeaderMap,
    id: String,
    period: PeriodQuery,
    hourly: bool,
) -> Response {
    let now = Utc::now();
    let user = match check_session(&ctx.db, &session, &ctx.sessions, now.timestamp()).await {
        Ok(SessionCheck::SignedIn(user, _)) => user,
        Ok(_) => {
            return plain(
                StatusCode::UNAUTHORIZED,
                "Sign in to download figures.".into(),
            )
        }
        Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal".into()),
    };
    let not_found = || plain(StatusCode::NOT_FOUND, "Not found.".into());
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found();
    };
    let device = match app::devices::ssr::get(&ctx.db, id).await {
        Ok(device) => device,
        Err(_) => return not_found(),
    };
    let visible = Role::parse(&user.role) == Some(Role::Admin)
        || device.owner.as_ref().is_some_and(|o| o.id == user.id);
    if !visible {
        return not_found();
    }
    let zone = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(app::time::zone_from_cookies)
        .unwrap_or(chrono_tz::UTC);
    let now_ms = now.timestamp_millis();
    let history = if hourly {
        match queries::parse_date(period.date.as_deref(), zone, now_ms) {
            Ok(date) => queries::day(&ctx.db, &device, date, zone, ctx.history, now_ms).await,
            Err(e) => Err(e),
        }
    } else {
        match queries::parse_month(period.month.as_deref(), zone, now_ms) {
            Ok(month) => queries::month(&ctx.db, &device, month, zone, ctx.history, now_ms).await,
            Err(e) => Err(e),
        }
    };
    match history {
        Ok(history) => match to_csv(&history, zone, hourly) {
            Ok(body) => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!(
                            "attachment; filename=\"energy-{}-{}.csv\"",
                            history.device_id, history.period
                        ),
                    ),
                ],
                body,
            )
                .into_response(),
            Err(error) => {
                tracing::error!(%error, "cannot write a CSV");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal".into())
            }
        },
        Err(app::error::AppError::Validation(errors)) => plain(
            StatusCode::UNPROCESSABLE_ENTITY,
            errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal".into()),
    }
}

/// One row per bar that has begun: when (local, and UTC), kWh, and flags.
pub fn to_csv(history: &History, zone: chrono_tz::Tz, hourly: bool) -> Result<String, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["period", "start_utc", "kwh", "partial", "no_data", "peak"])?;
    for bar in history
        .bars
        .iter()
        .filter(|b| b.coverage != Coverage::Future)
    {
        let start = chrono::DateTime::from_timestamp_millis(bar.start_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let local = app::history::calendar::local(bar.start_ms, zone);
        let period = if hourly {
            local.format("%Y-%m-%d %H:%M %Z").to_string()
        } else {
            local.format("%Y-%m-%d").to_string()
        };
        out.write_record([
            period.as_str(),
            start.as_str(),
            &format!("{:.3}", bar.kwh),
            if bar.coverage == Coverage::Partial {
                "true"
            } else {
                "false"
            },
            if bar.coverage == Coverage::Missing {
                "true"
            } else {
                "false"
            },
            if bar.peak { "true" } else { "false" },
        ])?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
