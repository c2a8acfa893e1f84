//! Consumption history: a device's energy per hour of a day and per day of a month, in the
//! viewer's time zone, from the cumulative register (resets, gaps and daylight-saving days
//! handled; see [`buckets`] and [`calendar`]). The pages show it as charts; a CSV has the same
//! numbers.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod buckets;
#[cfg(feature = "ssr")]
pub mod calendar;
mod chart;
mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

pub use pages::{DayPage, MonthPage};

/// How much of a bar's time the readings cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    Full,
    /// Some of it; the figure is what was measured.
    Partial,
    /// None of it (a gap in the readings).
    Missing,
    /// It has not happened yet.
    Future,
}

impl Coverage {
    pub fn name(self) -> &'static str {
        match self {
            Coverage::Full => "full",
            Coverage::Partial => "partial",
            Coverage::Missing => "missing",
            Coverage::Future => "future",
        }
    }
}

/// One bar: an hour of a day, or a day of a month.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Where it begins, ms since the epoch.
    pub start_ms: i64,
    /// "14:00", or the day of the month.
    pub label: String,
    /// "14:00–15:00 EEST", or "Tue 3 March".
    pub title: String,
    pub kwh: f64,
    pub coverage: Coverage,
    /// A peak interval overlaps it.
    pub peak: bool,
    /// The day view of this bar (month bars only).
    pub href: Option<String>,
}

/// A device's consumption over one day or one month.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub device_id: Uuid,
    pub device: String,
    pub max_power_kw: f64,
    /// "2026-03-29" or "2026-03".
    pub period: String,
    /// "Sunday 29 March 2026" or "March 2026".
    pub heading: String,
    pub time_zone: String,
    pub bars: Vec<Bar>,
    pub total_kwh: f64,
    /// Some past bar is partial or missing.
    pub incomplete: bool,
    pub previous: String,
    pub next: String,
    /// The period holds the present moment (its chart grows as readings arrive).
    pub current: bool,
}

/// The hourly consumption of a device on a date (YYYY-MM-DD; today when absent), in the
/// viewer's time zone. Admins see any device; clients only their own.
#[leptos::server(prefix = "/api", endpoint = "device_day")]
pub async fn device_day(id: String, date: Option<String>) -> Result<History, AppError> {
    let device = ssr::visible_device(&id).await?;
    let zone = crate::time::viewer_zone().await;
    let state = crate::state::state()?;
    let now = ssr::now_ms();
    let date = ssr::parse_date(date.as_deref(), zone, now)?;
    ssr::day(&state.db, &device, date, zone, state.history, now).await
}

/// The daily consumption of a device in a month (YYYY-MM; this month when absent).
#[leptos::server(prefix = "/api", endpoint = "device_month")]
pub async fn device_month(id: String, month: Option<String>) -> Result<History, AppError> {
    let device = ssr::visible_device(&id).await?;
    let zone = crate::time::viewer_zone().await;
    let state = crate::state::state()?;
    let now = ssr::now_ms();
    let month = ssr::parse_month(month.as_deref(), zone, now)?;
    ssr::month(&state.db, &device, month, zone, state.history, now).await
}
