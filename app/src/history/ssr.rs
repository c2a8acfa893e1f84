//! Server side of the history: the hourly rollups (kept by the metering pipeline in the same
//! transaction as the readings), the day and month figures built from them, and a rebuild from
//! the raw readings.
//!
//! `consumption_hourly` holds, per device and UTC hour, the energy of the intervals over that
//! hour and how much of it they cover. A day reads its 23 to 25 rows, a month about 744. In a
//! time zone whose offset is not a whole number of hours the local hours do not fall on UTC
//! hours, and the figures come from the raw readings instead (the same arithmetic).

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr};
use uuid::Uuid;

use super::buckets::{spread_hourly, totals, Sample, Share};
use super::calendar::{add_months, day_edges, hour_edges, local, on_utc_hours};
use super::{Bar, Coverage, History};
use crate::auth::Role;
use crate::devices::Device;
use crate::error::AppError;
use crate::sql::Sql;

/// The device `id` if the signed-in user may see it: any for an admin, only their own for a
/// client (another's is `NotFound`, like one that does not exist).
pub async fn visible_device(id: &str) -> Result<Device, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    let id = crate::validate::uuid(id, "id")?;
    let device = crate::devices::ssr::get(&crate::state::db()?, id).await?;
    let visible =
        user.role == Role::Admin || device.owner.as_ref().is_some_and(|o| o.id == user.id);
    if visible {
        Ok(device)
    } else {
        Err(AppError::NotFound)
    }
}

/// A date the user picked (YYYY-MM-DD), or today in `zone`.
pub fn parse_date(input: Option<&str>, zone: Tz, now_ms: i64) -> Result<NaiveDate, AppError> {
    match input.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(local(now_ms, zone).date_naive()),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .filter(|d| (2000..=2100).contains(&d.year()))
            .ok_or_else(|| {
                AppError::field("date", "Pick a date between 2000-01-01 and 2100-12-31.")
            }),
    }
}

/// A month the user picked (YYYY-MM), or this month in `zone`.
pub fn parse_month(input: Option<&str>, zone: Tz, now_ms: i64) -> Result<(i32, u32), AppError> {
    match input.map(str::trim).filter(|m| !m.is_empty()) {
        None => {
            let today = local(now_ms, zone).date_naive();
            Ok((today.year(), today.month()))
        }
        Some(text) => NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
            .ok()
            .filter(|d| (2000..=2100).contains(&d.year()) && text.len() == 7)
            .map(|d| (d.year(), d.month()))
            .ok_or_else(|| AppError::field("month", "Pick a month between 2000-01 and 2100-12.")),
    }
}

/// The settings the figures depend on.
#[derive(Clone, Copy, Debug)]
pub struct HistorySettings {
    /// Intervals between readings longer than this are missing data.
    pub gap_ms: i64,
}

/// Hourly rollup rows of a device in [from, to): hour start → share.
async fn rollups(
    db: &impl ConnectionTrait,
    device: Uuid,
    from: i64,
    to: i64,
) -> Result<HashMap<i64, Share>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT hour, kwh, covered_ms FROM consumption_hourly WHERE device_id = ")
        .param(device)
        .push(" AND hour >= ")
        .param(from)
        .push(" AND hour < ")
        .param(to);
    let mut out = HashMap::new();
    for row in db.query_all_raw(sql.build()).await? {
        out.insert(
            row.try_get_by_index::<i64>(0)?,
            Share {
                kwh: row.try_get_by_index(1)?,
                covered_ms: row.try_get_by_index(2)?,
            },
        );
    }
    Ok(out)
}

/// A device's readings in [from, to], in time order.
pub async fn readings(
    db: &impl ConnectionTrait,
    device: Uuid,
    from: i64,
    to: i64,
) -> Result<Vec<Sample>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT ts, energy_kwh FROM readings WHERE device_id = ")
        .param(device)
        .push(" AND ts >= ")
        .param(from)
        .push(" AND ts <= ")
        .param(to)
        .push(" ORDER BY ts");
    db.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| {
            Ok(Sample {
                t_ms: row.try_get_by_index(0)?,
                kwh: row.try_get_by_index(1)?,
            })
        })
        .collect()
}

/// The share of each bucket between consecutive `edges`: from the rollups when the edges are
/// on UTC hours, else from the readings.
async fn shares(
    db: &impl ConnectionTrait,
    device: Uuid,
    edges: &[i64],
    settings: HistorySettings,
) -> Result<Vec<Share>, DbErr> {
    let (from, to) = (edges[0], edges[edges.len() - 1]);
    if on_utc_hours(edges) {
        let rows = rollups(db, device, from, to).await?;
        let mut out = vec![Share::default(); edges.len() - 1];
        for (hour, share) in rows {
            let i = edges.partition_point(|e| *e <= hour).saturating_sub(1);
            if let Some(slot) = out.get_mut(i) {
                slot.add(share);
            }
        }
        Ok(out)
    } else {
        // Any interval over [from, to] no longer than the gap limit has both ends in here.
        let series = readings(db, device, from - settings.gap_ms, to + settings.gap_ms).await?;
        Ok(totals(&series, edges, settings.gap_ms))
    }
}

/// The peak intervals of a device overlapping [from, to).
async fn peaks(
    db: &impl ConnectionTrait,
    device: Uuid,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, i64)>, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("SELECT t1, t2 FROM alerts WHERE device_id = ")
        .param(device)
        .push(" AND t2 > ")
        .param(from)
        .push(" AND t1 < ")
        .param(to);
    db.query_all_raw(sql.build())
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

/// How much of [start, end) the share covers, judged at `now`: a bucket in progress is
/// partial until it is over.
fn coverage(share: Share, start: i64, end: i64, now_ms: i64) -> Coverage {
    if start >= now_ms {
        Coverage::Future
    } else if share.covered_ms <= 0 {
        Coverage::Missing
    } else if end > now_ms || share.covered_ms < end - start {
        Coverage::Partial
    } else {
        Coverage::Full
    }
}

/// The bars for buckets between `edges`, with the total and whether a past bar lacks data.
fn bars(
    edges: &[i64],
    shares: &[Share],
    peak_spans: &[(i64, i64)],
    now_ms: i64,
    mut label: impl FnMut(usize, i64, i64) -> (String, String, Option<String>),
) -> (Vec<Bar>, f64, bool) {
    let mut bars = Vec::with_capacity(shares.len());
    let (mut total, mut incomplete) = (0.0, false);
    for (i, share) in shares.iter().enumerate() {
        let (start, end) = (edges[i], edges[i + 1]);
        let coverage = coverage(*share, start, end, now_ms);
        if end <= now_ms && coverage != Coverage::Full {
            incomplete = true;
        }
        total += share.kwh;
        let (label, title, href) = label(i, start, end);
        bars.push(Bar {
            start_ms: start,
            label,
            title,
            kwh: share.kwh,
            coverage,
            peak: peak_spans.iter().any(|(t1, t2)| *t1 < end && *t2 > start),
            href,
        });
    }
    (bars, total, incomplete)
}

/// A device's consumption per local hour of a date.
pub async fn day(
    db: &impl ConnectionTrait,
    device: &Device,
    date: NaiveDate,
    zone: Tz,
    settings: HistorySettings,
    now_ms: i64,
) -> Result<History, AppError> {
    let edges = hour_edges(date, zone);
    let shares = shares(db, device.id, &edges, settings).await?;
    let (from, to) = (edges[0], edges[edges.len() - 1]);
    let peak_spans = peaks(db, device.id, from, to).await?;
    let mut seen = std::collections::HashSet::new();
    let (bars, total, incomplete) = bars(&edges, &shares, &peak_spans, now_ms, |_, start, end| {
        let (a, b) = (local(start, zone), local(end, zone));
        let hour = a.format("%H").to_string();
        // The hour that comes twice when the clocks go back is marked the second time.
        let label = if seen.insert(hour.clone()) {
            hour
        } else {
            format!("{hour}′")
        };
        let title = format!(
            "{}–{} {}",
            a.format("%H:%M"),
            b.format("%H:%M"),
            a.format("%Z")
        );
        (label, title, None)
    });
    Ok(History {
        device_id: device.id,
        device: device.description.clone(),
        max_power_kw: device.max_power_kw,
        period: date.format("%Y-%m-%d").to_string(),
        heading: date.format("%A %-d %B %Y").to_string(),
        time_zone: zone.name().to_owned(),
        bars,
        total_kwh: total,
        incomplete,
        previous: date
            .pred_opt()
            .unwrap_or(date)
            .format("%Y-%m-%d")
            .to_string(),
        next: date
            .succ_opt()
            .unwrap_or(date)
            .format("%Y-%m-%d")
            .to_string(),
        current: from <= now_ms && now_ms < to,
    })
}

/// A device's consumption per local day of a month.
pub async fn month(
    db: &impl ConnectionTrait,
    device: &Device,
    (year, month): (i32, u32),
    zone: Tz,
    settings: HistorySettings,
    now_ms: i64,
) -> Result<History, AppError> {
    let edges = day_edges(year, month, zone);
    if edges.len() < 2 {
        return Err(AppError::field("month", "No such month."));
    }
    let shares = shares(db, device.id, &edges, settings).await?;
    let (from, to) = (edges[0], edges[edges.len() - 1]);
    let peak_spans = peaks(db, device.id, from, to).await?;
    let first = NaiveDate::from_ymd_opt(year, month, 1).ok_or(AppError::Internal)?;
    let id = device.id;
    let (bars, total, incomplete) = bars(&edges, &shares, &peak_spans, now_ms, |i, _, _| {
        let date = first + chrono::Days::new(i as u64);
        let href = format!("/devices/{id}/day?date={}", date.format("%Y-%m-%d"));
        (
            date.day().to_string(),
            date.format("%a %-d %B").to_string(),
            Some(href),
        )
    });
    let (py, pm) = add_months(year, month, -1);
    let (ny, nm) = add_months(year, month, 1);
    Ok(History {
        device_id: device.id,
        device: device.description.clone(),
        max_power_kw: device.max_power_kw,
        period: first.format("%Y-%m").to_string(),
        heading: first.format("%B %Y").to_string(),
        time_zone: zone.name().to_owned(),
        bars,
        total_kwh: total,
        incomplete,
        previous: format!("{py:04}-{pm:02}"),
        next: format!("{ny:04}-{nm:02}"),
        current: from <= now_ms && now_ms < to,
    })
}

/// The changes to hourly rollups that replacing intervals of a device makes: `removed` pairs of
/// readings that are no longer consecutive, `added` ones that now are.
pub fn rollup_delta(
    removed: impl IntoIterator<Item = (Sample, Sample)>,
    added: impl IntoIterator<Item = (Sample, Sample)>,
    gap_ms: i64,
) -> HashMap<i64, Share> {
    let mut delta: HashMap<i64, Share> = HashMap::new();
    for (a, b) in removed {
        for (hour, share) in spread_hourly(a, b, gap_ms) {
            delta.entry(hour).or_default().add(share.negated());
        }
    }
    for (a, b) in added {
        for (hour, share) in spread_hourly(a, b, gap_ms) {
            delta.entry(hour).or_default().add(share);
        }
    }
    delta
}

/// Rows per rollup statement on SQLite (four parameters each; PostgreSQL takes arrays).
const ROLLUP_CHUNK: usize = 2000;

/// Adds `delta` to the hourly rollups: (device, hour) → share to add.
pub async fn add_to_rollups(
    db: &impl ConnectionTrait,
    delta: &[(Uuid, i64, Share)],
) -> Result<(), DbErr> {
    if delta.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    const UPSERT: &str = " ON CONFLICT (device_id, hour) DO UPDATE SET \
        kwh = consumption_hourly.kwh + excluded.kwh, \
        covered_ms = consumption_hourly.covered_ms + excluded.covered_ms";
    if backend == DatabaseBackend::Postgres {
        let mut sql = Sql::new(backend);
        sql.push("INSERT INTO consumption_hourly (device_id, hour, kwh, covered_ms) SELECT * FROM UNNEST(")
            .param(delta.iter().map(|d| d.0).collect::<Vec<_>>())
            .push("::uuid[], ")
            .param(delta.iter().map(|d| d.1).collect::<Vec<_>>())
            .push("::int8[], ")
            .param(delta.iter().map(|d| d.2.kwh).collect::<Vec<_>>())
            .push("::float8[], ")
            .param(delta.iter().map(|d| d.2.covered_ms).collect::<Vec<_>>())
            .push("::int8[])")
            .push(UPSERT);
        db.execute_raw(sql.build()).await?;
    } else {
        for chunk in delta.chunks(ROLLUP_CHUNK) {
            let mut sql = Sql::new(backend);
            sql.push("INSERT INTO consumption_hourly (device_id, hour, kwh, covered_ms) VALUES ");
            for (n, (device, hour, share)) in chunk.iter().enumerate() {
                sql.push(if n == 0 { "(" } else { ", (" })
                    .param(*device)
                    .push(", ")
                    .param(*hour)
                    .push(", ")
                    .param(share.kwh)
                    .push(", ")
                    .param(share.covered_ms)
                    .push(")");
            }
            sql.push(UPSERT);
            db.execute_raw(sql.build()).await?;
        }
    }
    Ok(())
}

/// Readings read at a time when rebuilding.
const REBUILD_PAGE: i64 = 50_000;

/// Recomputes a device's hourly rollups from its readings, inside the caller's transaction;
/// returns how many readings it read.
pub async fn rebuild_device(
    db: &impl ConnectionTrait,
    device: Uuid,
    settings: HistorySettings,
) -> Result<u64, DbErr> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push("DELETE FROM consumption_hourly WHERE device_id = ")
        .param(device);
    db.execute_raw(sql.build()).await?;
    let mut hours: HashMap<i64, Share> = HashMap::new();
    let mut previous: Option<Sample> = None;
    let mut after = i64::MIN;
    let mut read = 0u64;
    loop {
        let mut sql = Sql::new(db.get_database_backend());
        sql.push("SELECT ts, energy_kwh FROM readings WHERE device_id = ")
            .param(device)
            .push(" AND ts > ")
            .param(after)
            .push(" ORDER BY ts LIMIT ")
            .param(REBUILD_PAGE);
        let rows = db.query_all_raw(sql.build()).await?;
        let n = rows.len();
        for row in rows {
            let sample = Sample {
                t_ms: row.try_get_by_index(0)?,
                kwh: row.try_get_by_index(1)?,
            };
            if let Some(before) = previous {
                for (hour, share) in spread_hourly(before, sample, settings.gap_ms) {
                    hours.entry(hour).or_default().add(share);
                }
            }
            previous = Some(sample);
            after = sample.t_ms;
        }
        read += n as u64;
        if (n as i64) < REBUILD_PAGE {
            break;
        }
    }
    let mut rows: Vec<(Uuid, i64, Share)> =
        hours.into_iter().map(|(h, s)| (device, h, s)).collect();
    rows.sort_by_key(|r| r.1);
    for chunk in rows.chunks(ROLLUP_CHUNK * 10) {
        add_to_rollups(db, chunk).await?;
    }
    Ok(read)
}

/// The present, as the history sees it.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_months_are_checked() {
        let zone = chrono_tz::Europe::Bucharest;
        // 2026-07-01 00:30 in Bucharest is still 2026-06-30 in UTC.
        let now = 1_782_855_000_000;
        assert_eq!(
            parse_date(None, zone, now).unwrap(),
            NaiveDate::from_ymd_opt(2026, 7, 1).unwrap()
        );
        assert!(parse_date(Some("2026-02-30"), zone, now).is_err());
        assert!(parse_date(Some("1970-01-01"), zone, now).is_err());
        assert!(parse_date(Some("yesterday"), zone, now).is_err());
        assert_eq!(parse_month(Some("2026-10"), zone, now).unwrap(), (2026, 10));
        assert!(parse_month(Some("2026-13"), zone, now).is_err());
        assert!(parse_month(Some("2026-1"), zone, now).is_err());
        assert_eq!(parse_month(None, zone, now).unwrap(), (2026, 7));
    }

    use crate::history::buckets::HOUR_MS;
    use chrono_tz::Europe::Bucharest;

    const MIN: i64 = 60_000;
    const GAP: i64 = 120 * MIN;

    /// Readings every 10 minutes, 0.1 kWh apart (0.6 kWh an hour), from 2 h before the local
    /// day to 2 h after it; `edit` may change or drop them (by minutes from the day's start).
    fn day_series(
        date: NaiveDate,
        edit: impl Fn(i64, f64) -> Option<f64>,
    ) -> (Vec<i64>, Vec<Sample>) {
        let edges = hour_edges(date, Bucharest);
        let (start, end) = (edges[0], edges[edges.len() - 1]);
        let mut series = Vec::new();
        let mut t = start - 2 * HOUR_MS;
        let mut kwh = 100.0;
        while t <= end + 2 * HOUR_MS {
            if let Some(value) = edit((t - start) / MIN, kwh) {
                series.push(Sample {
                    t_ms: t,
                    kwh: value,
                });
            }
            t += 10 * MIN;
            kwh += 0.1;
        }
        (edges, series)
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn sum(shares: &[Share]) -> f64 {
        shares.iter().map(|s| s.kwh).sum()
    }

    #[test]
    fn an_ordinary_day_has_24_hours_of_its_own_energy() {
        let (edges, series) = day_series(date(2026, 6, 15), |_, kwh| Some(kwh));
        let hours = totals(&series, &edges, GAP);
        assert_eq!(hours.len(), 24);
        for h in &hours {
            assert!((h.kwh - 0.6).abs() < 1e-9, "{h:?}");
            assert_eq!(h.covered_ms, HOUR_MS);
        }
        assert!((sum(&hours) - 14.4).abs() < 1e-9);
    }

    #[test]
    fn the_daylight_saving_days_have_23_and_25_bars() {
        let (edges, series) = day_series(date(2026, 3, 29), |_, kwh| Some(kwh));
        let spring = totals(&series, &edges, GAP);
        assert_eq!(spring.len(), 23);
        assert!((sum(&spring) - 23.0 * 0.6).abs() < 1e-9);
        let (edges, series) = day_series(date(2026, 10, 25), |_, kwh| Some(kwh));
        let autumn = totals(&series, &edges, GAP);
        assert_eq!(autumn.len(), 25);
        assert!((sum(&autumn) - 25.0 * 0.6).abs() < 1e-9);
    }

    #[test]
    fn a_reset_mid_day_counts_nothing_and_the_new_base_counts_on() {
        // At 12:10 a new meter reads 5.0 and climbs 0.1 every 10 minutes from there.
        let (edges, series) = day_series(date(2026, 6, 15), |m, kwh| {
            Some(if m >= 12 * 60 + 10 {
                5.0 + (kwh - 100.0 - 0.1 * ((12 * 60 + 10 + 120) / 10) as f64)
            } else {
                kwh
            })
        });
        let hours = totals(&series, &edges, GAP);
        // Hour 12: the reset interval 12:00–12:10 (nothing, but covered), then five of 0.1:
        // 0.5 kWh, and the whole hour covered.
        assert!((hours[12].kwh - 0.5).abs() < 1e-9, "{:?}", hours[12]);
        assert_eq!(hours[12].covered_ms, HOUR_MS);
        assert!((hours[13].kwh - 0.6).abs() < 1e-9);
        assert!((sum(&hours) - (14.4 - 0.1)).abs() < 1e-9);
    }

    #[test]
    fn a_gap_longer_than_the_limit_is_missing_not_zero_or_smeared() {
        // Nothing between 14:00 and 17:00: one 3-hour interval, over the 2-hour limit.
        let (edges, series) = day_series(date(2026, 6, 15), |m, kwh| {
            (!(14 * 60 + 1..17 * 60).contains(&m)).then_some(kwh)
        });
        let hours = totals(&series, &edges, GAP);
        for h in &hours[14..17] {
            assert_eq!(*h, Share::default());
        }
        assert!((hours[13].kwh - 0.6).abs() < 1e-9 && (hours[17].kwh - 0.6).abs() < 1e-9);
        // The 1.8 kWh of the gap is in no hour.
        assert!((sum(&hours) - (14.4 - 1.8)).abs() < 1e-9);
    }

    #[test]
    fn readings_on_the_hour_and_at_midnight_start_their_hour() {
        let (edges, series) = day_series(date(2026, 6, 15), |_, kwh| Some(kwh));
        // There are readings at 00:00 (midnight) and at every full hour; each hour gets its
        // six intervals and no more, so the day before gets (23:50, 00:00) and this day not.
        assert!(series.iter().any(|s| s.t_ms == edges[0]));
        let with_day_before = [edges[0] - HOUR_MS]
            .into_iter()
            .chain(edges.iter().copied())
            .collect::<Vec<_>>();
        let hours = totals(&series, &with_day_before, GAP);
        assert!(
            (hours[0].kwh - 0.6).abs() < 1e-9,
            "the last hour before midnight"
        );
        assert!((hours[1].kwh - 0.6).abs() < 1e-9, "the first hour after");
    }

    #[test]
    fn late_readings_give_the_same_hours_as_readings_in_order() {
        let (edges, series) = day_series(date(2026, 6, 15), |_, kwh| Some(kwh));
        let in_order = totals(&series, &edges, GAP);
        // Every third reading comes late: first the hours of the others, then each late one
        // is placed between its neighbours and the rollups corrected.
        let mut stored: Vec<Sample> = series
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 1)
            .map(|(_, s)| *s)
            .collect();
        let mut hours: HashMap<i64, Share> = HashMap::new();
        for pair in stored.windows(2) {
            for (h, s) in spread_hourly(pair[0], pair[1], GAP) {
                hours.entry(h).or_default().add(s);
            }
        }
        for late in series.iter().skip(1).step_by(3) {
            let at = stored.partition_point(|s| s.t_ms < late.t_ms);
            let (before, after) = (stored[at - 1], stored[at]);
            for (h, s) in rollup_delta([(before, after)], [(before, *late), (*late, after)], GAP) {
                hours.entry(h).or_default().add(s);
            }
            stored.insert(at, *late);
        }
        for (i, expected) in in_order.iter().enumerate() {
            let got = hours.get(&edges[i]).copied().unwrap_or_default();
            assert!(
                (got.kwh - expected.kwh).abs() < 1e-9,
                "hour {i}: {got:?} {expected:?}"
            );
            assert_eq!(got.covered_ms, expected.covered_ms);
        }
    }

    #[test]
    fn a_late_reading_moves_energy_between_hours_and_keeps_the_sum() {
        let s = |min: i64, kwh: f64| Sample {
            t_ms: min * 60_000,
            kwh,
        };
        let gap = 120 * 60_000;
        // 00:50 → 01:10 with 2 kWh, then a late reading at 01:00 with 1.8 kWh: the first hour
        // now has 1.8 kWh and the second 0.2 (instead of 1 and 1).
        let delta = rollup_delta(
            [(s(50, 10.0), s(70, 12.0))],
            [(s(50, 10.0), s(60, 11.8)), (s(60, 11.8), s(70, 12.0))],
            gap,
        );
        assert!((delta[&0].kwh - 0.8).abs() < 1e-9);
        assert!((delta[&3_600_000].kwh + 0.8).abs() < 1e-9);
        assert_eq!((delta[&0].covered_ms, delta[&3_600_000].covered_ms), (0, 0));
    }
}
