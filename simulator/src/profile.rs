//! Synthetic load profiles: a daily shape per kind of consumer, plus noise, plus optional
//! injected peaks, integrated into a cumulative energy register as a real meter keeps it.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MS_PER_HOUR: f64 = 3_600_000.0;

/// The kind of consumer a synthetic meter behaves like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Low at night, a morning bump, the largest load in the evening.
    Household,
    /// Working hours on weekdays, a low base otherwise.
    Office,
    /// Two shifts on weekdays with a night base load, less at weekends.
    Factory,
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "household" => Ok(Profile::Household),
            "office" => Ok(Profile::Office),
            "factory" => Ok(Profile::Factory),
            other => Err(format!(
                "unknown profile {other:?}: use household, office or factory"
            )),
        }
    }
}

fn bump(hour: f64, centre: f64, width: f64) -> f64 {
    let d = (hour - centre) / width;
    (-d * d).exp()
}

impl Profile {
    /// Average power as a fraction of the nominal load, at an hour of the day (UTC) on a
    /// weekday (0 = Monday).
    pub fn shape(self, hour: f64, weekday: u32) -> f64 {
        let weekend = weekday >= 5;
        match self {
            Profile::Household => {
                0.25 + 0.45 * bump(hour, 7.5, 1.2)
                    + 0.9 * bump(hour, 19.5, 2.0)
                    + if weekend {
                        0.25 * bump(hour, 13.0, 3.0)
                    } else {
                        0.0
                    }
            }
            Profile::Office => {
                if weekend {
                    0.12
                } else {
                    0.12 + 0.85 * bump(hour, 10.5, 2.2) + 0.8 * bump(hour, 15.0, 2.2)
                }
            }
            Profile::Factory => {
                let shifts = if (6.0..22.0).contains(&hour) {
                    0.9
                } else {
                    0.45
                };
                let dip = 0.2 * bump(hour, 12.5, 0.5);
                if weekend {
                    0.3
                } else {
                    shifts - dip
                }
            }
        }
    }
}

/// A peak forced into the load: the interval that contains `at_ms` draws `power_kw`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InjectedPeak {
    pub at_ms: i64,
    pub power_kw: f64,
}

/// Turns a profile into register values. Deterministic for a given seed.
pub struct Generator {
    profile: Profile,
    nominal_kw: f64,
    noise: f64,
    resolution_kwh: f64,
    register_kwh: f64,
    peaks: Vec<InjectedPeak>,
    rng: StdRng,
}

impl Generator {
    /// A meter of `nominal_kw` typical load whose register starts at `start_kwh`. The register
    /// is kept to whole Wh, as on real meters.
    pub fn new(profile: Profile, nominal_kw: f64, seed: u64, start_kwh: f64) -> Self {
        Generator {
            profile,
            nominal_kw: nominal_kw.max(0.0),
            noise: 0.08,
            resolution_kwh: 0.001,
            register_kwh: start_kwh.max(0.0),
            peaks: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Adds peaks to inject.
    pub fn with_peaks(mut self, peaks: impl IntoIterator<Item = InjectedPeak>) -> Self {
        self.peaks.extend(peaks);
        self
    }

    /// Adds one peak to inject.
    pub fn add_peak(&mut self, peak: InjectedPeak) {
        self.peaks.push(peak);
    }

    /// Sets the register's resolution in kWh (short demo steps need finer than 1 Wh).
    pub fn with_resolution(mut self, kwh: f64) -> Self {
        self.resolution_kwh = kwh.max(f64::MIN_POSITIVE);
        self
    }

    /// Sets the relative noise on the load (0 gives the bare shape).
    pub fn with_noise(mut self, noise: f64) -> Self {
        self.noise = noise.clamp(0.0, 1.0);
        self
    }

    pub fn register_kwh(&self) -> f64 {
        self.register_kwh
    }

    /// The average power drawn from `from_ms` to `to_ms`: an injected peak if one falls in the
    /// interval, else the profile at the interval's middle with noise.
    pub fn power_kw(&mut self, from_ms: i64, to_ms: i64) -> f64 {
        if let Some(peak) = self
            .peaks
            .iter()
            .find(|p| p.at_ms >= from_ms && p.at_ms < to_ms)
        {
            return peak.power_kw;
        }
        let middle = from_ms + (to_ms - from_ms) / 2;
        let at = DateTime::<Utc>::from_timestamp_millis(middle).unwrap_or_default();
        let hour = f64::from(at.hour()) + f64::from(at.minute()) / 60.0;
        let weekday = at.weekday().num_days_from_monday();
        let jitter = 1.0 + self.noise * (self.rng.random::<f64>() * 2.0 - 1.0);
        (self.profile.shape(hour, weekday) * self.nominal_kw * jitter).max(0.0)
    }

    /// Advances the register over `from_ms..to_ms` and returns its value at `to_ms`.
    pub fn advance(&mut self, from_ms: i64, to_ms: i64) -> f64 {
        // Peaks already behind are of no further use.
        self.peaks.retain(|p| p.at_ms >= from_ms);
        if to_ms > from_ms {
            let hours = (to_ms - from_ms) as f64 / MS_PER_HOUR;
            self.register_kwh += self.power_kw(from_ms, to_ms) * hours;
        }
        // Dividing by a whole number keeps 0.118 printing as 0.118, not 0.11800000000000001.
        let steps_per_kwh = (1.0 / self.resolution_kwh).round().max(1.0);
        (self.register_kwh * steps_per_kwh).round() / steps_per_kwh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 3_600_000;
    const STEP: i64 = 600_000;
    // Monday 2026-01-05 00:00 UTC.
    const MONDAY: i64 = 1_767_571_200_000;

    #[test]
    fn the_register_never_goes_down_and_is_reproducible() {
        let run = || {
            let mut g = Generator::new(Profile::Household, 2.0, 7, 100.0);
            (0..144)
                .map(|i| g.advance(MONDAY + i * STEP, MONDAY + (i + 1) * STEP))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert!(a.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(a, run());
        // A day of a 2 kW-nominal household is a few tens of kWh.
        let day = a[143] - 100.0;
        // Whole Wh, printed as such.
        assert!(a.iter().all(|v| v.to_string().len() <= 12), "{a:?}");
        assert!((10.0..60.0).contains(&day), "{day}");
    }

    #[test]
    fn shapes_follow_the_working_week() {
        assert!(Profile::Office.shape(11.0, 0) > 4.0 * Profile::Office.shape(11.0, 6));
        assert!(Profile::Household.shape(19.5, 2) > 2.0 * Profile::Household.shape(3.0, 2));
        assert!(Profile::Factory.shape(10.0, 1) > Profile::Factory.shape(2.0, 1));
    }

    #[test]
    fn an_injected_peak_draws_its_power_in_its_interval_only() {
        let mut g = Generator::new(Profile::Office, 1.0, 1, 0.0)
            .with_noise(0.0)
            .with_resolution(1e-9)
            .with_peaks([InjectedPeak {
                at_ms: MONDAY + DAY / 2 + 1,
                power_kw: 30.0,
            }]);
        let before = g.advance(MONDAY, MONDAY + DAY / 2);
        let after = g.advance(MONDAY + DAY / 2, MONDAY + DAY / 2 + STEP);
        let power = (after - before) / (STEP as f64 / MS_PER_HOUR);
        assert!((power - 30.0).abs() < 1e-6, "{power}");
        let next = g.advance(MONDAY + DAY / 2 + STEP, MONDAY + DAY / 2 + 2 * STEP);
        assert!((next - after) / (STEP as f64 / MS_PER_HOUR) < 3.0);
    }

    #[test]
    fn profiles_parse_case_insensitively() {
        assert_eq!("Office".parse::<Profile>(), Ok(Profile::Office));
        assert!("nuclear".parse::<Profile>().is_err());
    }
}
