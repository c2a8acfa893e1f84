//! The meter message wire contract (PRODUCT.md): one JSON object per message, at most 4 KiB,
//! `{"timestamp": ms, "sensor_id": uuid, "measurement_value": kWh}` with `device_id` accepted
//! as an alias. Parsing is strict and every refusal has a stable reason code, which travels
//! with the dead-lettered message and labels the rejection metric.

use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// Largest register accepted, kWh (1 TWh). No meter's register reaches it; a value above it is
/// a unit or encoding error. The bound also keeps every interval's power finite (at most
/// 1e9 kWh in 1 ms) and registers exact to the mWh in the peak rule's fixed point.
pub const MAX_REGISTER_KWH: f64 = 1e9;

/// 2000-01-01T00:00:00Z, the default earliest timestamp accepted.
pub const DEFAULT_EARLIEST_MS: i64 = 946_684_800_000;

/// The window a reading's timestamp must fall in, relative to the time it is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBounds {
    /// Readings before this (ms since the epoch) are refused: a meter sending seconds instead of
    /// milliseconds would otherwise be stored as January 1970.
    pub earliest_ms: i64,
    /// Readings further ahead of the clock than this many ms are refused.
    pub max_future_ms: i64,
}

impl Default for TimeBounds {
    fn default() -> Self {
        TimeBounds {
            earliest_ms: DEFAULT_EARLIEST_MS,
            max_future_ms: 5 * 60 * 1000,
        }
    }
}

/// A reading that passed validation (the device's existence is checked against the database
/// later, by the storage step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    pub device_id: Uuid,
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: i64,
    /// The cumulative energy register, kWh.
    pub energy_kwh: f64,
}

/// Why a message can never be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    Oversized { bytes: usize },
    NotUtf8,
    MalformedJson,
    NotAnObject,
    UnknownField(String),
    MissingField(&'static str),
    WrongType(&'static str),
    BothIds,
    NoId,
    BadDeviceId,
    NegativeTimestamp,
    EarlyTimestamp { earliest_ms: i64 },
    FutureTimestamp { ahead_ms: i64 },
    NegativeValue,
    ValueTooLarge,
    UnknownDevice,
}

impl Rejection {
    /// Every code [`Rejection::code`] can return.
    pub const CODES: [&'static str; 16] = [
        "oversized",
        "not_utf8",
        "malformed_json",
        "not_an_object",
        "unknown_field",
        "missing_field",
        "wrong_type",
        "both_ids",
        "no_id",
        "bad_device_id",
        "negative_timestamp",
        "early_timestamp",
        "future_timestamp",
        "negative_value",
        "value_too_large",
        "unknown_device",
    ];

    /// A stable, low-cardinality code (metric label, dead-letter header).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Oversized { .. } => "oversized",
            Rejection::NotUtf8 => "not_utf8",
            Rejection::MalformedJson => "malformed_json",
            Rejection::NotAnObject => "not_an_object",
            Rejection::UnknownField(_) => "unknown_field",
            Rejection::MissingField(_) => "missing_field",
            Rejection::WrongType(_) => "wrong_type",
            Rejection::BothIds => "both_ids",
            Rejection::NoId => "no_id",
            Rejection::BadDeviceId => "bad_device_id",
            Rejection::NegativeTimestamp => "negative_timestamp",
            Rejection::EarlyTimestamp { .. } => "early_timestamp",
            Rejection::FutureTimestamp { .. } => "future_timestamp",
            Rejection::NegativeValue => "negative_value",
            Rejection::ValueTooLarge => "value_too_large",
            Rejection::UnknownDevice => "unknown_device",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Oversized { bytes } => {
                write!(
                    f,
                    "message is {bytes} bytes; at most {MAX_MESSAGE_BYTES} are accepted"
                )
            }
            Rejection::NotUtf8 => f.write_str("message is not UTF-8"),
            Rejection::MalformedJson => f.write_str("message is not valid JSON"),
            Rejection::NotAnObject => f.write_str("message is not a JSON object"),
            // The name is escaped: it comes from the message.
            Rejection::UnknownField(name) => write!(f, "unknown field {:?}", name),
            Rejection::MissingField(name) => write!(f, "missing field {name}"),
            Rejection::WrongType(name) => write!(f, "field {name} has the wrong type"),
            Rejection::BothIds => f.write_str("both sensor_id and device_id are present"),
            Rejection::NoId => f.write_str("neither sensor_id nor device_id is present"),
            Rejection::BadDeviceId => f.write_str("the device id is not a UUID"),
            Rejection::NegativeTimestamp => f.write_str("timestamp is before 1970"),
            Rejection::EarlyTimestamp { earliest_ms } => {
                let earliest = chrono::DateTime::from_timestamp_millis(*earliest_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| earliest_ms.to_string());
                write!(
                    f,
                    "timestamp is before {earliest}, the earliest accepted \
                     (seconds instead of milliseconds?)"
                )
            }
            Rejection::FutureTimestamp { ahead_ms } => {
                write!(f, "timestamp is {ahead_ms} ms in the future")
            }
            Rejection::NegativeValue => f.write_str("measurement_value is negative"),
            Rejection::ValueTooLarge => write!(
                f,
                "measurement_value is above {MAX_REGISTER_KWH:e} kWh, the largest register accepted"
            ),
            Rejection::UnknownDevice => f.write_str("no device has this id"),
        }
    }
}

const FIELDS: [&str; 4] = ["timestamp", "sensor_id", "device_id", "measurement_value"];

/// Parses and validates one message, checked at `now_ms`.
pub fn parse(bytes: &[u8], now_ms: i64, bounds: TimeBounds) -> Result<Reading, Rejection> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::Oversized { bytes: bytes.len() });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Rejection::NotUtf8)?;
    let value: Value = serde_json::from_str(text).map_err(|_| Rejection::MalformedJson)?;
    let Value::Object(object) = value else {
        return Err(Rejection::NotAnObject);
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(Rejection::UnknownField(unknown.clone()));
    }

    let device_id = match (object.get("sensor_id"), object.get("device_id")) {
        (Some(_), Some(_)) => return Err(Rejection::BothIds),
        (None, None) => return Err(Rejection::NoId),
        (Some(id), None) => parse_id(id, "sensor_id")?,
        (None, Some(id)) => parse_id(id, "device_id")?,
    };

    // `as_i64` is `None` for fractions and exponents: milliseconds are whole numbers.
    let timestamp_ms = field(&object, "timestamp")?
        .as_i64()
        .ok_or(Rejection::WrongType("timestamp"))?;
    if timestamp_ms < 0 {
        return Err(Rejection::NegativeTimestamp);
    }
    if timestamp_ms < bounds.earliest_ms {
        return Err(Rejection::EarlyTimestamp {
            earliest_ms: bounds.earliest_ms,
        });
    }
    let ahead_ms = timestamp_ms.saturating_sub(now_ms);
    if ahead_ms > bounds.max_future_ms {
        return Err(Rejection::FutureTimestamp { ahead_ms });
    }

    let energy_kwh = field(&object, "measurement_value")?
        .as_f64()
        .ok_or(Rejection::WrongType("measurement_value"))?;
    // JSON has no NaN or infinity, and serde_json refuses numbers beyond f64 (`1e400`) as
    // malformed, so the value is finite here.
    if energy_kwh < 0.0 {
        return Err(Rejection::NegativeValue);
    }
    if energy_kwh > MAX_REGISTER_KWH {
        return Err(Rejection::ValueTooLarge);
    }
    Ok(Reading {
        device_id,
        timestamp_ms,
        energy_kwh,
    })
}

fn field<'a>(object: &'a Map<String, Value>, name: &'static str) -> Result<&'a Value, Rejection> {
    object.get(name).ok_or(Rejection::MissingField(name))
}

fn parse_id(value: &Value, name: &'static str) -> Result<Uuid, Rejection> {
    let text = value.as_str().ok_or(Rejection::WrongType(name))?;
    Uuid::parse_str(text).map_err(|_| Rejection::BadDeviceId)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;
    const ID: &str = "6f1c2d4e-8a8b-4c5e-9d0f-0123456789ab";

    fn check(text: &str) -> Result<Reading, Rejection> {
        parse(text.as_bytes(), NOW, TimeBounds::default())
    }

    #[test]
    fn the_documented_example_parses() {
        let reading = check(&format!(
            r#"{{"timestamp": {NOW}, "sensor_id": "{ID}", "measurement_value": 1234.567}}"#
        ))
        .unwrap();
        assert_eq!(reading.device_id, Uuid::parse_str(ID).unwrap());
        assert_eq!(reading.timestamp_ms, NOW);
        assert_eq!(reading.energy_kwh, 1234.567);
        let alias = check(&format!(
            r#"{{"timestamp": {NOW}, "device_id": "{ID}", "measurement_value": 0}}"#
        ))
        .unwrap();
        assert_eq!(alias.energy_kwh, 0.0);
    }

    #[test]
    fn every_bad_message_has_its_reason() {
        let ok_rest = format!(r#""timestamp": {NOW}, "measurement_value": 1"#);
        let cases: Vec<(String, &str)> = vec![
            ("x".repeat(MAX_MESSAGE_BYTES + 1), "oversized"),
            ("{".into(), "malformed_json"),
            ("[1,2]".into(), "not_an_object"),
            (
                format!(r#"{{"sensor_id": "{ID}", {ok_rest}, "extra": 1}}"#),
                "unknown_field",
            ),
            (
                format!(r#"{{"sensor_id": "{ID}", "measurement_value": 1}}"#),
                "missing_field",
            ),
            (
                format!(r#"{{"sensor_id": "{ID}", "timestamp": {NOW}}}"#),
                "missing_field",
            ),
            (
                format!(r#"{{"sensor_id": "{ID}", "device_id": "{ID}", {ok_rest}}}"#),
                "both_ids",
            ),
            (format!(r#"{{{ok_rest}}}"#), "no_id"),
            (format!(r#"{{"sensor_id": 42, {ok_rest}}}"#), "wrong_type"),
            (
                format!(r#"{{"sensor_id": "not-a-uuid", {ok_rest}}}"#),
                "bad_device_id",
            ),
            (
                format!(r#"{{"sensor_id": "{ID}", "timestamp": "{NOW}", "measurement_value": 1}}"#),
                "wrong_type",
            ),
            (
                format!(r#"{{"sensor_id": "{ID}", "timestamp": 1.5, "measurement_value": 1}}"#),
                "wrong_type",
            ),
            (
                format!(r#"{{"sensor_id": "{ID}", "timestamp": -1, "measurement_value": 1}}"#),
                "negative_timestamp",
            ),
            (
                // The same instant in seconds: a meter with the wrong unit.
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {}, "measurement_value": 1}}"#,
                    NOW / 1000
                ),
                "early_timestamp",
            ),
            (
                // 1999-12-31T23:59:59.999Z
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": 946684799999, "measurement_value": 1}}"#
                ),
                "early_timestamp",
            ),
            (
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {}, "measurement_value": 1}}"#,
                    NOW + 301_000
                ),
                "future_timestamp",
            ),
            (
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {NOW}, "measurement_value": 1000000000.001}}"#
                ),
                "value_too_large",
            ),
            (
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {NOW}, "measurement_value": 1.7e308}}"#
                ),
                "value_too_large",
            ),
            (
                format!(r#"{{"sensor_id": "{ID}", "timestamp": {NOW}, "measurement_value": "1"}}"#),
                "wrong_type",
            ),
            (
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {NOW}, "measurement_value": null}}"#
                ),
                "wrong_type",
            ),
            (
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {NOW}, "measurement_value": -0.5}}"#
                ),
                "negative_value",
            ),
            (
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {NOW}, "measurement_value": 1e400}}"#
                ),
                "malformed_json",
            ),
        ];
        for (text, code) in cases {
            let got = check(&text).expect_err(&text);
            assert_eq!(got.code(), code, "{text} gave {got}");
        }
        assert_eq!(
            parse(&[0xff, 0xfe], NOW, TimeBounds::default())
                .unwrap_err()
                .code(),
            "not_utf8"
        );
        assert!(Rejection::CODES.contains(&Rejection::UnknownDevice.code()));
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        // 2000-01-01T00:00:00Z exactly, and the largest register.
        let text = format!(
            r#"{{"sensor_id": "{ID}", "timestamp": 946684800000, "measurement_value": 1e9}}"#
        );
        let reading = check(&text).unwrap();
        assert_eq!(reading.energy_kwh, 1e9);
        // The earliest bound is a setting.
        let bounds = TimeBounds {
            earliest_ms: NOW,
            ..TimeBounds::default()
        };
        let early = format!(
            r#"{{"sensor_id": "{ID}", "timestamp": {}, "measurement_value": 1}}"#,
            NOW - 1
        );
        let err = parse(early.as_bytes(), NOW, bounds).unwrap_err();
        assert_eq!(err.code(), "early_timestamp");
        assert!(err.to_string().contains("2026-01-01T00:00:00Z"), "{err}");
    }

    #[test]
    fn accepted_registers_give_finite_power_over_the_shortest_interval() {
        use crate::metering::peak::{interval, Interval, Point};
        // From 0 to the largest register in 1 ms: 3.6e15 kW, finite.
        let from = Point {
            t_ms: NOW,
            e_kwh: 0.0,
        };
        let to = Point {
            t_ms: NOW + 1,
            e_kwh: MAX_REGISTER_KWH,
        };
        match interval(from, to) {
            Some(Interval::Consumption { power_kw, .. }) => {
                assert!(power_kw.is_finite() && power_kw > 3.5e15, "{power_kw}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_timestamp_just_inside_the_future_bound_is_accepted() {
        let text = format!(
            r#"{{"sensor_id": "{ID}", "timestamp": {}, "measurement_value": 1}}"#,
            NOW + 300_000
        );
        assert!(check(&text).is_ok());
    }

    #[test]
    fn reasons_escape_what_came_from_the_message() {
        let text = format!(
            r#"{{"sensor_id": "{ID}", "timestamp": {NOW}, "measurement_value": 1, "a\nb": 1}}"#
        );
        let reason = check(&text).unwrap_err().to_string();
        assert!(!reason.contains('\n'), "{reason}");
    }
}
