//! The peak rule (PRODUCT.md). For consecutive readings (t1, E1), (t2, E2) of one device,
//! P = (E2 - E1) / (t2 - t1) in kW with t in hours; the interval is a peak when P exceeds the
//! device's maximum. A falling register (E2 < E1) is a meter reset or replacement: no
//! consumption and no alert, and E2 is the new base.
//!
//! The comparison is made in fixed point, so that a power exactly at the maximum is never a
//! peak whatever the decimals of the registers: registers count in mWh (10^-6 kWh) and the
//! maximum in mW, and `P > max` becomes `ΔE[mWh] · 3,600,000 > max[mW] · Δt[ms]` in integers.
//! In floating point, 1.0 → 1.1 kWh in 10 minutes is 0.6000000000000005 kW, above a 0.6 kW
//! maximum; in mWh it is 100,000 · 3,600,000 = 600,000 · 600,000, not above. Registers are at
//! most `message::MAX_REGISTER_KWH` (10^15 mWh), which f64 holds exactly.

/// One stored reading: milliseconds since the epoch and the cumulative register in kWh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub t_ms: i64,
    pub e_kwh: f64,
}

const MS_PER_HOUR: f64 = 3_600_000.0;

/// What an interval between two consecutive readings means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Interval {
    /// Energy used in the interval and the average power.
    Consumption { kwh: f64, power_kw: f64 },
    /// The register went down: nothing is counted.
    Reset,
}

/// Classifies the interval from `a` to `b`; `None` unless `a` is strictly earlier.
pub fn interval(a: Point, b: Point) -> Option<Interval> {
    if b.t_ms <= a.t_ms {
        return None;
    }
    if b.e_kwh < a.e_kwh {
        return Some(Interval::Reset);
    }
    let kwh = b.e_kwh - a.e_kwh;
    let hours = (b.t_ms - a.t_ms) as f64 / MS_PER_HOUR;
    Some(Interval::Consumption {
        kwh,
        power_kw: kwh / hours,
    })
}

/// The power of the interval `a` to `b` if it is a peak for a device of `max_kw`.
pub fn peak(a: Point, b: Point, max_kw: f64) -> Option<f64> {
    match interval(a, b)? {
        Interval::Consumption { power_kw, .. } if above(a, b, max_kw) => Some(power_kw),
        _ => None,
    }
}

/// `P > max_kw` in fixed point (see the module's documentation); `a` is strictly earlier.
fn above(a: Point, b: Point, max_kw: f64) -> bool {
    // `as` saturates, so absurd inputs compare as huge rather than wrap.
    let mwh = |kwh: f64| (kwh * 1e6).round() as i128;
    let energy_mwh = mwh(b.e_kwh) - mwh(a.e_kwh);
    let max_mw = (max_kw * 1e6).round() as i128;
    let duration_ms = i128::from(b.t_ms - a.t_ms);
    energy_mwh.saturating_mul(3_600_000) > max_mw.saturating_mul(duration_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(minutes: i64, e: f64) -> Point {
        Point {
            t_ms: minutes * 60_000,
            e_kwh: e,
        }
    }

    #[test]
    fn power_is_energy_over_hours() {
        // 1 kWh in 10 minutes is 6 kW.
        let i = interval(p(0, 100.0), p(10, 101.0)).unwrap();
        match i {
            Interval::Consumption { kwh, power_kw } => {
                assert!((kwh - 1.0).abs() < 1e-12);
                assert!((power_kw - 6.0).abs() < 1e-9);
            }
            Interval::Reset => panic!("not a reset"),
        }
        assert_eq!(
            peak(p(0, 100.0), p(10, 101.0), 5.0).map(|x| x.round()),
            Some(6.0)
        );
        assert_eq!(peak(p(0, 100.0), p(10, 101.0), 6.5), None);
    }

    #[test]
    fn exactly_the_maximum_is_not_a_peak() {
        assert_eq!(peak(p(0, 0.0), p(60, 4.0), 4.0), None);
    }

    /// Decimal registers whose power is exactly the maximum, by hand: each step is `kwh` in
    /// `minutes`, so the power is kwh · 60 / minutes, written out as the maximum. Floating
    /// point puts several of these a hair above the maximum; none may alert, and one more
    /// watt-hour in the same time must.
    #[test]
    fn decimal_steps_at_exactly_the_maximum_are_not_peaks() {
        // (register before, register after, minutes, maximum kW)
        let cases: &[(f64, f64, i64, f64)] = &[
            (1.0, 1.1, 10, 0.6),
            (0.1, 0.2, 10, 0.6),
            (0.7, 0.8, 1, 6.0),
            (12_345.678, 12_345.778, 10, 0.6),
            (99_999.9, 100_000.2, 15, 1.2),
            (0.3, 0.6, 30, 0.6),
            (1.15, 1.45, 6, 3.0),
            (987_654_321.001, 987_654_321.004, 1, 0.18),
            (2.675, 2.68, 3, 0.1),
        ];
        for &(e1, e2, minutes, max) in cases {
            assert_eq!(
                peak(p(0, e1), p(minutes, e2), max),
                None,
                "{e1} -> {e2} in {minutes} min against {max} kW"
            );
            assert!(
                peak(p(0, e1), p(minutes, e2 + 0.001), max).is_some(),
                "{e1} -> {e2} + 1 Wh in {minutes} min against {max} kW"
            );
        }
        // The case the probe found: in floating point it is above the maximum.
        let float_power = (1.1 - 1.0) / (10.0 / 60.0);
        assert!(float_power > 0.6, "{float_power}");
    }

    #[test]
    fn absurd_maxima_do_not_overflow() {
        assert_eq!(peak(p(0, 0.0), p(10, 1e9), 1e300), None);
        assert!(peak(p(0, 0.0), p(10, 1e9), 0.0).is_some());
        assert_eq!(peak(p(0, 5.0), p(10, 5.0), 0.0), None);
    }

    #[test]
    fn a_falling_register_is_a_reset_not_a_peak() {
        assert_eq!(interval(p(0, 500.0), p(10, 2.0)), Some(Interval::Reset));
        assert_eq!(peak(p(0, 500.0), p(10, 2.0), 0.001), None);
        // The new value is the new base for the next interval.
        assert!(peak(p(10, 2.0), p(20, 3.0), 5.0).is_some());
    }

    #[test]
    fn equal_or_reversed_times_are_not_intervals() {
        assert_eq!(interval(p(5, 1.0), p(5, 2.0)), None);
        assert_eq!(interval(p(6, 1.0), p(5, 2.0)), None);
    }

    /// Splitting an interval with a reading on the straight line between its ends never makes a
    /// peak appear or disappear.
    #[test]
    fn splitting_on_the_line_keeps_the_verdict() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..10_000 {
            let t1 = (next() % 1_000_000) as i64;
            let dt = 2 + (next() % 10_000_000) as i64;
            let e1 = (next() % 1_000_000) as f64 / 100.0;
            let de = (next() % 100_000) as f64 / 1000.0;
            let max = 0.1 + (next() % 100_000) as f64 / 1000.0;
            let whole = peak(
                Point {
                    t_ms: t1,
                    e_kwh: e1,
                },
                Point {
                    t_ms: t1 + dt,
                    e_kwh: e1 + de,
                },
                max,
            );
            let mid_t = t1 + dt / 2;
            let mid_e = e1 + de * ((mid_t - t1) as f64 / dt as f64);
            let a = peak(
                Point {
                    t_ms: t1,
                    e_kwh: e1,
                },
                Point {
                    t_ms: mid_t,
                    e_kwh: mid_e,
                },
                max,
            );
            let b = peak(
                Point {
                    t_ms: mid_t,
                    e_kwh: mid_e,
                },
                Point {
                    t_ms: t1 + dt,
                    e_kwh: e1 + de,
                },
                max,
            );
            // Within the rule's resolution (1 mWh over either half) either verdict is right.
            let power = de / (dt as f64 / MS_PER_HOUR);
            let margin_kwh = (power - max).abs() * (dt as f64 / 2.0 / MS_PER_HOUR);
            if margin_kwh > 1e-6 {
                assert_eq!(
                    whole.is_some(),
                    a.is_some() || b.is_some(),
                    "t1={t1} dt={dt} e1={e1} de={de} max={max}"
                );
            }
        }
    }
}
