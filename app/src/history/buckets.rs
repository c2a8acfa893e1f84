//! Consumption from a cumulative register, spread over time buckets (hours, days).
//!
//! The energy of an interval between two consecutive readings is the register's rise; it is
//! spread over the interval in proportion to time, so a pair that straddles an hour boundary
//! gives each hour its share. A falling register is a reset or a new meter: the interval counts
//! nothing (the energy after it counts from the new base) but its time is covered. An interval
//! longer than the gap limit is missing data: it counts nothing and covers nothing, so the
//! hours under it show as missing rather than as zero or as an average.

/// One reading: milliseconds since the epoch and the register in kWh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t_ms: i64,
    pub kwh: f64,
}

/// What intervals give one bucket: energy, and how much of its time they cover.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Share {
    pub kwh: f64,
    pub covered_ms: i64,
}

impl Share {
    pub fn add(&mut self, other: Share) {
        self.kwh += other.kwh;
        self.covered_ms += other.covered_ms;
    }

    pub fn negated(self) -> Share {
        Share {
            kwh: -self.kwh,
            covered_ms: -self.covered_ms,
        }
    }
}

pub const HOUR_MS: i64 = 3_600_000;

/// The UTC hour a time falls in: its start.
pub fn utc_hour(t_ms: i64) -> i64 {
    t_ms - t_ms.rem_euclid(HOUR_MS)
}

/// Spreads the interval from `a` to `b` over buckets; `bucket(t)` gives the start and end of
/// the bucket holding `t`. Yields (bucket start, share) in time order; nothing for a missing
/// interval (longer than `gap_ms`) or one that is not an interval (`b` not after `a`).
pub fn spread(
    a: Sample,
    b: Sample,
    gap_ms: i64,
    bucket: impl Fn(i64) -> (i64, i64),
) -> Vec<(i64, Share)> {
    let length = b.t_ms - a.t_ms;
    if length <= 0 || length > gap_ms {
        return Vec::new();
    }
    let energy = (b.kwh - a.kwh).max(0.0);
    let mut shares = Vec::with_capacity(2);
    let mut t = a.t_ms;
    while t < b.t_ms {
        let (start, end) = bucket(t);
        let until = end.min(b.t_ms);
        let covered_ms = until - t;
        shares.push((
            start,
            Share {
                kwh: energy * covered_ms as f64 / length as f64,
                covered_ms,
            },
        ));
        t = until;
    }
    shares
}

/// [`spread`] over UTC hours.
pub fn spread_hourly(a: Sample, b: Sample, gap_ms: i64) -> Vec<(i64, Share)> {
    spread(a, b, gap_ms, |t| {
        let start = utc_hour(t);
        (start, start + HOUR_MS)
    })
}

/// The bucket of `t` among `edges` (sorted bucket starts, the last one the end of the last
/// bucket); times outside fall in an open bucket before or after.
pub fn bucket_among(edges: &[i64], t: i64) -> (i64, i64) {
    match edges.binary_search(&t) {
        Ok(i) if i + 1 < edges.len() => (edges[i], edges[i + 1]),
        Ok(i) => (edges[i], i64::MAX),
        Err(0) => (i64::MIN, edges.first().copied().unwrap_or(i64::MAX)),
        Err(i) if i < edges.len() => (edges[i - 1], edges[i]),
        Err(i) => (edges[i - 1], i64::MAX),
    }
}

/// Totals per bucket for a series of readings (in time order) over the buckets `edges` define
/// (see [`bucket_among`]): one share per bucket, in order.
pub fn totals(series: &[Sample], edges: &[i64], gap_ms: i64) -> Vec<Share> {
    let mut out = vec![Share::default(); edges.len().saturating_sub(1)];
    for pair in series.windows(2) {
        for (start, share) in spread(pair[0], pair[1], gap_ms, |t| bucket_among(edges, t)) {
            if let Ok(i) = edges.binary_search(&start) {
                if let Some(slot) = out.get_mut(i) {
                    slot.add(share);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const GAP: i64 = 120 * MIN;

    fn s(minutes: i64, kwh: f64) -> Sample {
        Sample {
            t_ms: minutes * MIN,
            kwh,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_pair_across_an_hour_boundary_is_split_in_proportion_to_time() {
        // 00:50 to 01:10, 2 kWh: 10 minutes in each hour, 1 kWh each.
        let shares = spread_hourly(s(50, 10.0), s(70, 12.0), GAP);
        assert_eq!(shares.len(), 2);
        assert_eq!((shares[0].0, shares[1].0), (0, HOUR_MS));
        assert!(close(shares[0].1.kwh, 1.0) && close(shares[1].1.kwh, 1.0));
        assert_eq!(
            (shares[0].1.covered_ms, shares[1].1.covered_ms),
            (10 * MIN, 10 * MIN)
        );
        // 00:45 to 01:00 ends exactly on the boundary: all of it in the first hour.
        let on_edge = spread_hourly(s(45, 1.0), s(60, 1.5), GAP);
        assert_eq!(on_edge.len(), 1);
        assert!(close(on_edge[0].1.kwh, 0.5));
    }

    #[test]
    fn a_reset_counts_nothing_but_covers_its_time() {
        let shares = spread_hourly(s(0, 500.0), s(10, 2.0), GAP);
        assert_eq!(
            shares,
            [(
                0,
                Share {
                    kwh: 0.0,
                    covered_ms: 10 * MIN
                }
            )]
        );
    }

    #[test]
    fn a_gap_longer_than_the_limit_is_missing_not_zero() {
        assert!(spread_hourly(s(0, 1.0), s(121, 9.0), GAP).is_empty());
        assert_eq!(spread_hourly(s(0, 1.0), s(120, 9.0), GAP).len(), 2);
        assert!(spread_hourly(s(5, 1.0), s(5, 2.0), GAP).is_empty());
    }

    #[test]
    fn buckets_among_edges() {
        let edges = [0, 10, 20];
        assert_eq!(bucket_among(&edges, 0), (0, 10));
        assert_eq!(bucket_among(&edges, 15), (10, 20));
        assert_eq!(bucket_among(&edges, 20), (20, i64::MAX));
        assert_eq!(bucket_among(&edges, -5), (i64::MIN, 0));
        assert_eq!(bucket_among(&edges, 25), (20, i64::MAX));
    }

    #[test]
    fn totals_sum_each_buckets_shares() {
        // Readings every 30 minutes from 23:00 (the day before) to 02:00, 1 kWh each step,
        // over the buckets [00:00, 01:00), [01:00, 02:00).
        let series: Vec<Sample> = (0..=6).map(|i| s(-60 + 30 * i, i as f64)).collect();
        let out = totals(&series, &[0, 60 * MIN, 120 * MIN], GAP);
        assert_eq!(out.len(), 2);
        assert!(close(out[0].kwh, 2.0) && close(out[1].kwh, 2.0));
        assert_eq!(out[0].covered_ms, HOUR_MS);
    }
}
