//! The live dashboard: the events the server pushes over the WebSocket at `/ws`, the browser's
//! live state built from them, and the pieces of the page that show it (connection state,
//! unread badge, peak toasts, device cards, the alert centre).
//!
//! Durable events (alerts, episodes, device changes, read state, session ends) are written to
//! the `outbox` table in the transaction that causes them and carry its sequence number; a
//! browser that reconnects says the last number it saw and the server replays what it missed.
//! Readings are not kept there: they are superseded by the next one and carry `seq` 0.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod alerts;
#[cfg(feature = "ssr")]
pub mod cards;
pub mod dashboard;
mod socket;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod state;
#[cfg(feature = "ssr")]
pub mod unread;

pub use alerts::AlertsPage;
pub use dashboard::{AdminLivePage, DashboardPage};
pub use state::{ConnectionBadge, Live, Toasts, UnreadBadge};

/// One message to a browser: an event, and for durable events its outbox sequence number
/// (0 for readings, heartbeats and other events that are not kept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub seq: i64,
    pub event: LiveEvent,
}

/// What happened. Serialised as `{"kind": {...}}` (or `"kind"` for the ones without data).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveEvent {
    /// Sent after the replay that follows a (re)connect: the socket is now at this number.
    Hello(i64),
    /// New readings at the head of their devices' series.
    Readings(Vec<ReadingEvent>),
    /// A peak interval was stored.
    Alert(AlertEvent),
    /// A device's first peak after normal operation.
    EpisodeStarted(EpisodeEvent),
    /// An episode grew: more peak intervals, perhaps a higher power.
    EpisodeUpdated(EpisodeEvent),
    /// Power fell back to the maximum or below.
    EpisodeEnded(EpisodeEvent),
    DeviceAssigned(DeviceEvent),
    DeviceUnassigned(DeviceEvent),
    DeviceChanged(DeviceEvent),
    DeviceDeleted(DeviceEvent),
    /// The user read alerts (in this tab or another): the new unread count.
    AlertsRead(AlertsRead),
    /// A login session ended (a hash of its id; `None`: all of the user's sessions). The server
    /// closes the matching sockets; browsers never receive this event.
    SessionEnded(Option<i64>),
    /// This socket fell behind and frames were dropped: reload the state over HTTP.
    Resync,
    /// Sent every few seconds so that the browser can tell a live connection from a dead one.
    Heartbeat,
}

impl LiveEvent {
    /// A short name, stored beside the event in the outbox.
    pub fn kind(&self) -> &'static str {
        match self {
            LiveEvent::Hello(_) => "hello",
            LiveEvent::Readings(_) => "readings",
            LiveEvent::Alert(_) => "alert",
            LiveEvent::EpisodeStarted(_) => "episode_started",
            LiveEvent::EpisodeUpdated(_) => "episode_updated",
            LiveEvent::EpisodeEnded(_) => "episode_ended",
            LiveEvent::DeviceAssigned(_) => "device_assigned",
            LiveEvent::DeviceUnassigned(_) => "device_unassigned",
            LiveEvent::DeviceChanged(_) => "device_changed",
            LiveEvent::DeviceDeleted(_) => "device_deleted",
            LiveEvent::AlertsRead(_) => "alerts_read",
            LiveEvent::SessionEnded(_) => "session_ended",
            LiveEvent::Resync => "resync",
            LiveEvent::Heartbeat => "heartbeat",
        }
    }
}

/// The latest reading of a device and the power over the interval it ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadingEvent {
    pub device_id: Uuid,
    /// Milliseconds since the epoch.
    pub t_ms: i64,
    /// The cumulative register, kWh.
    pub energy_kwh: f64,
    /// Average power since the previous reading; `None` for the first reading or after a reset.
    pub power_kw: Option<f64>,
    /// Length of that interval, so the dashboard can tell when data stops coming.
    pub interval_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub id: Uuid,
    pub device_id: Uuid,
    /// The device's description when the alert was raised.
    pub device: String,
    pub t1_ms: i64,
    pub t2_ms: i64,
    pub power_kw: f64,
    pub max_power_kw: f64,
    pub created_ms: i64,
    pub episode_id: Option<Uuid>,
}

/// An alarm episode: consecutive peak intervals of one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeEvent {
    pub id: Uuid,
    pub device_id: Uuid,
    pub device: String,
    /// Start of the first peak interval.
    pub started_ms: i64,
    /// End of the latest peak interval.
    pub last_ms: i64,
    pub peaks: i32,
    pub max_power_kw: f64,
    /// The device's maximum when the episode started.
    pub limit_kw: f64,
    /// End of the first interval back at or under the maximum.
    pub ended_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceEvent {
    pub device_id: Uuid,
    pub description: String,
    pub owner_id: Option<Uuid>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertsRead {
    /// Alerts marked read one by one.
    pub ids: Vec<Uuid>,
    /// Everything up to this alert sequence number was marked read.
    pub through_seq: Option<i64>,
    pub unread: i64,
}

/// Most unread alerts counted; the badge shows "999+" beyond.
pub const UNREAD_CAP: i64 = 1000;

/// What a page needs before the socket connects: the unread count and the outbox position the
/// page's state reflects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveSummary {
    pub unread: i64,
    pub seq: i64,
}

/// The signed-in user's unread alert count and the live position, for the header; `None` for
/// an anonymous visitor.
#[leptos::server(prefix = "/api", endpoint = "get_live_summary")]
pub async fn get_live_summary() -> Result<Option<LiveSummary>, crate::error::AppError> {
    let Some(user) = crate::auth::ssr::optional_user().await? else {
        return Ok(None);
    };
    let state = crate::state::state()?;
    // The position first: the count then reflects at least the events up to it.
    let seq = state.live.seq();
    let counts = state.live.unread();
    let now = std::time::Instant::now();
    let unread = match counts.get(user.id, now) {
        Some(unread) => unread,
        None => {
            let ticket = counts.ticket();
            let unread = ssr::unread_count(&state.db, &user).await?;
            let admin = user.role == crate::auth::Role::Admin;
            counts.put(ticket, user.id, admin, unread, now);
            unread
        }
    };
    Ok(Some(LiveSummary { unread, seq }))
}

/// How long after its last reading a device counts as silent: three of its intervals, at least
/// a minute and at most six hours; half an hour when the interval is not known yet.
pub fn stale_after_ms(interval_ms: Option<i64>) -> i64 {
    match interval_ms {
        Some(i) if i > 0 => (3 * i).clamp(60_000, 6 * 3_600_000),
        _ => 30 * 60_000,
    }
}

/// A power for people: kW with at most three decimals and thousands separated.
pub fn format_kw(kw: f64) -> String {
    format!(
        "{} kW",
        format_number(
            kw,
            match kw.abs() {
                a if a >= 100.0 => 1,
                a if a >= 1.0 => 2,
                // Small limits are set to the watt.
                _ => 3,
            }
        )
    )
}

/// `value` rounded to `decimals`, with a thin space between thousands and trailing zeros cut.
pub fn format_number(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f.trim_end_matches('0')),
        None => (text.as_str(), ""),
    };
    let mut grouped = String::with_capacity(int.len() + int.len() / 3 + 4);
    for (n, c) in int.chars().enumerate() {
        if n > 0 && (int.len() - n) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 && text.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        "−"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(now_ms: i64, t_ms: i64) -> String {
    let secs = (now_ms - t_ms).max(0) / 1000;
    match secs {
        0..=44 => "just now".into(),
        45..=3_599 => format!("{} min ago", (secs + 30) / 60),
        3_600..=86_399 => format!("{} h ago", secs / 3_600),
        _ => {
            let days = secs / 86_400;
            if days == 1 {
                "1 day ago".into()
            } else {
                format!("{days} days ago")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_a_stable_wire_form() {
        let frame = Frame {
            seq: 7,
            event: LiveEvent::Resync,
        };
        assert_eq!(
            serde_json::to_string(&frame).unwrap(),
            r#"{"seq":7,"event":"resync"}"#
        );
        let hello: Frame = serde_json::from_str(r#"{"seq":0,"event":{"hello":42}}"#).unwrap();
        assert_eq!(hello.event, LiveEvent::Hello(42));
    }

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(format_number(1234567.891, 2), "1\u{202f}234\u{202f}567.89");
        assert_eq!(format_number(7.5, 2), "7.5");
        assert_eq!(format_number(3.0, 2), "3");
        assert_eq!(format_number(0.004, 2), "0");
        assert_eq!(format_number(-12.25, 1), "−12.2");
        assert_eq!(format_number(999.96, 1), "1\u{202f}000");
        assert_eq!(format_kw(4.5), "4.5 kW");
        assert_eq!(format_kw(1500.0), "1\u{202f}500 kW");
        assert_eq!(format_kw(0.005), "0.005 kW");
        assert_eq!(format_number(f64::NAN, 2), "–");
    }

    #[test]
    fn silence_is_judged_by_the_devices_own_interval() {
        assert_eq!(stale_after_ms(Some(600_000)), 1_800_000);
        assert_eq!(stale_after_ms(Some(10_000)), 60_000);
        assert_eq!(stale_after_ms(Some(24 * 3_600_000)), 6 * 3_600_000);
        assert_eq!(stale_after_ms(None), 1_800_000);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(100_000, 90_000), "just now");
        assert_eq!(ago(10 * 60_000, 0), "10 min ago");
        assert_eq!(ago(3 * 3_600_000 + 5, 0), "3 h ago");
        assert_eq!(ago(86_400_000, 0), "1 day ago");
        assert_eq!(ago(0, 5_000), "just now");
    }
}
