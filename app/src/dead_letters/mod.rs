//! Dead letters, for admins: the meter messages that could not be stored, grouped by reason, and
//! their replay through the metering pipeline once the cause is fixed (the classic case: a meter
//! that sent before its device was registered).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::ui::Page;

mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

pub use pages::DeadLettersPage;

/// Messages per page of one reason's list.
pub const PER_PAGE: i64 = 25;
/// The most messages one "Replay selected" may name.
pub const SELECT_MAX: usize = 500;
/// The most dead letters one "Replay all" sends through the pipeline (those refused again
/// included); the rest wait for the next one.
pub const REPLAY_MAX: usize = 50_000;
/// The longest part of a body a list shows.
pub const BODY_SHOWN: usize = 2_000;

/// The dead letters of one reason, counted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReasonGroup {
    pub reason: String,
    /// Distinct bodies kept.
    pub letters: i64,
    /// Messages, repeats included.
    pub messages: i64,
    /// When the latest of them arrived: RFC 3339, UTC.
    pub last_seen: String,
}

/// One dead letter as the admin page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: uuid::Uuid,
    pub reason: String,
    pub detail: String,
    /// The body as text (invalid UTF-8 replaced), cut after [`BODY_SHOWN`] characters.
    pub body: String,
    /// The body's full size.
    pub bytes: i64,
    /// Times this body arrived for this reason.
    pub count: i64,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Dead letters (distinct bodies) sent through the pipeline.
    pub replayed: i64,
    /// Stored now (their dead letters are gone).
    pub stored: i64,
    /// Already stored before (gone too: nothing is stored twice).
    pub already_stored: i64,
    /// A different reading was already stored for the same meter and time (gone: the stored
    /// one stands, as for any conflicting reading).
    pub conflicts: i64,
    /// Still refused, by reason: these stay (under their new reason when it changed).
    pub refused: Vec<(String, i64)>,
    /// Messages of this reason left after the replay.
    pub left: i64,
}

impl ReplayReport {
    /// One sentence for the page.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} stored", self.stored)];
        if self.already_stored > 0 {
            parts.push(format!("{} already stored", self.already_stored));
        }
        if self.conflicts > 0 {
            parts.push(format!(
                "{} conflicting with a stored reading",
                self.conflicts
            ));
        }
        for (reason, n) in &self.refused {
            parts.push(format!("{n} still refused ({})", reason_label(reason)));
        }
        let noun = if self.replayed == 1 {
            "dead letter"
        } else {
            "dead letters"
        };
        format!("Replayed {} {noun}: {}.", self.replayed, parts.join(", "))
    }
}

/// A reason code in words, for people.
pub fn reason_label(code: &str) -> &'static str {
    match code {
        "unknown_device" => "no device has this meter id",
        "delivery_limit" => "returned to the broker too often (for example during an outage)",
        "malformed_json" => "not JSON",
        "not_utf8" => "not UTF-8 text",
        "oversized" => "larger than 4 KiB",
        "not_an_object" => "not a JSON object",
        "unknown_field" => "a field the format does not have",
        "missing_field" => "a required field is missing",
        "wrong_type" => "a field of the wrong type",
        "both_ids" => "both sensor_id and device_id",
        "no_id" => "no sensor_id",
        "bad_device_id" => "the meter id is not a UUID",
        "negative_timestamp" | "early_timestamp" => {
            "timestamp too early (seconds for milliseconds?)"
        }
        "future_timestamp" => "timestamp in the future",
        "negative_value" => "negative register",
        "value_too_large" => "register too large",
        _ => "other",
    }
}

/// Dead letters by reason, the reason seen last first.
#[server(prefix = "/api", endpoint = "dead_letter_groups")]
pub async fn dead_letter_groups() -> Result<Vec<ReasonGroup>, AppError> {
    crate::auth::ssr::require_admin().await?;
    ssr::groups(&crate::state::db()?).await
}

/// One page of a reason's dead letters, newest first.
#[server(prefix = "/api", endpoint = "list_dead_letters")]
pub async fn list_dead_letters(
    reason: String,
    page: Option<i64>,
) -> Result<Page<DeadLetter>, AppError> {
    crate::auth::ssr::require_admin().await?;
    let reason = ssr::check_reason(&reason)?;
    ssr::list(&crate::state::db()?, &reason, page.unwrap_or(1)).await
}

/// Sends dead letters of `reason` through the pipeline again: the ones ticked (`scope`
/// `selected`, their ids in `ids`), or all of them (`scope` `all`, up to [`REPLAY_MAX`]).
#[server(prefix = "/api", endpoint = "replay_dead_letters")]
pub async fn replay_dead_letters(
    reason: String,
    scope: String,
    ids: Option<Vec<String>>,
) -> Result<ReplayReport, AppError> {
    crate::auth::ssr::require_admin().await?;
    let reason = ssr::check_reason(&reason)?;
    let selection = ssr::selection(&scope, ids.unwrap_or_default())?;
    let state = crate::state::state()?;
    state.replay.replay(&reason, selection).await
}
