//! Calendar days and hours in a viewer's IANA time zone, as UTC instants: where each local hour
//! (or day) of a date (or month) begins. A day has 23, 24 or 25 hours across daylight-saving
//! changes; in zones whose offset is not a whole number of hours the local hours do not fall on
//! UTC hours (the hourly rollups cannot serve those: see [`on_utc_hours`]).

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike};
use chrono_tz::Tz;

use super::buckets::HOUR_MS;

/// The first instant of a local date (midnight, or the first time after it when midnight does
/// not exist that day), in ms.
pub fn day_start(date: NaiveDate, zone: Tz) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match zone.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) => t.timestamp_millis(),
        chrono::LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
        // Skipped by a forward change: the day begins when the clocks do.
        chrono::LocalResult::None => {
            let utc_guess = zone
                .offset_from_utc_datetime(&midnight)
                .fix()
                .local_minus_utc();
            let naive_utc = midnight - chrono::Duration::seconds(i64::from(utc_guess));
            let mut t = naive_utc.and_utc().timestamp_millis();
            // Walk forward to the first instant whose local date is `date`.
            while local(t, zone).date_naive() < date {
                t += 15 * 60_000;
            }
            t
        }
    }
}

/// The local date-time of an instant.
pub fn local(t_ms: i64, zone: Tz) -> DateTime<Tz> {
    let utc = DateTime::from_timestamp_millis(t_ms).unwrap_or_default();
    zone.from_utc_datetime(&utc.naive_utc())
}

/// Where each local hour of `date` begins, and (last) where the day ends.
pub fn hour_edges(date: NaiveDate, zone: Tz) -> Vec<i64> {
    let start = day_start(date, zone);
    let end = day_start(date.succ_opt().unwrap_or(date), zone);
    let mut edges = vec![start];
    let mut t = start;
    loop {
        let here = local(t, zone);
        let into_hour = i64::from(here.minute()) * 60_000
            + i64::from(here.second()) * 1000
            + i64::from(here.timestamp_subsec_millis());
        let next = t + HOUR_MS - into_hour;
        if next >= end {
            break;
        }
        edges.push(next);
        t = next;
    }
    edges.push(end);
    edges
}

/// Where each local day of a month begins, and (last) where the month ends.
pub fn day_edges(year: i32, month: u32, zone: Tz) -> Vec<i64> {
    let Some(first) = NaiveDate::from_ymd_opt(year, month, 1) else {
        return Vec::new();
    };
    let mut edges = Vec::with_capacity(32);
    let mut date = first;
    while date.month() == month {
        edges.push(day_start(date, zone));
        match date.succ_opt() {
            Some(next) => date = next,
            None => break,
        }
    }
    edges.push(day_start(date, zone));
    edges
}

/// Whether every edge is on a UTC hour, so that hourly rollups add up to these buckets.
pub fn on_utc_hours(edges: &[i64]) -> bool {
    edges.iter().all(|e| e.rem_euclid(HOUR_MS) == 0)
}

/// The first day of the month after (`step` 1) or before (-1) `year`-`month`.
pub fn add_months(year: i32, month: u32, step: i32) -> (i32, u32) {
    let index = year * 12 + month as i32 - 1 + step;
    (index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{Asia::Kolkata, Europe::Bucharest, UTC};

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn hours(edges: &[i64]) -> usize {
        edges.len() - 1
    }

    #[test]
    fn an_ordinary_day_has_24_hours_from_local_midnight() {
        let edges = hour_edges(date(2026, 6, 15), Bucharest);
        assert_eq!(hours(&edges), 24);
        // Midnight in Bucharest in summer is 21:00 UTC the day before.
        assert_eq!(local(edges[0], UTC).hour(), 21);
        assert!(edges.windows(2).all(|w| w[1] - w[0] == HOUR_MS));
        assert!(on_utc_hours(&edges));
    }

    #[test]
    fn the_spring_day_has_23_hours_and_the_autumn_day_25() {
        // 2026-03-29: 03:00 EET becomes 04:00 EEST.
        let spring = hour_edges(date(2026, 3, 29), Bucharest);
        assert_eq!(hours(&spring), 23);
        let labels: Vec<u32> = spring[..23]
            .iter()
            .map(|&t| local(t, Bucharest).hour())
            .collect();
        assert_eq!(&labels[..4], [0, 1, 2, 4]);
        // 2026-10-25: 04:00 EEST becomes 03:00 EET; the hour from 03:00 comes twice.
        let autumn = hour_edges(date(2026, 10, 25), Bucharest);
        assert_eq!(hours(&autumn), 25);
        let labels: Vec<u32> = autumn[..25]
            .iter()
            .map(|&t| local(t, Bucharest).hour())
            .collect();
        assert_eq!(&labels[..6], [0, 1, 2, 3, 3, 4]);
        assert!(on_utc_hours(&spring) && on_utc_hours(&autumn));
    }

    #[test]
    fn half_hour_zones_do_not_fall_on_utc_hours() {
        let edges = hour_edges(date(2026, 6, 15), Kolkata);
        assert_eq!(hours(&edges), 24);
        assert!(!on_utc_hours(&edges));
    }

    #[test]
    fn months_have_their_days_and_step_across_years() {
        let march = day_edges(2026, 3, Bucharest);
        assert_eq!(march.len() - 1, 31);
        // The 29th is 23 hours long.
        assert_eq!(march[29] - march[28], 23 * HOUR_MS);
        assert_eq!(day_edges(2028, 2, UTC).len() - 1, 29);
        assert_eq!(add_months(2026, 12, 1), (2027, 1));
        assert_eq!(add_months(2026, 1, -1), (2025, 12));
    }
}
