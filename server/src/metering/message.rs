//! The meter message wire contract (PRODUCT.md): one JSON object per message, at most 4 KiB,
//! `{"timestamp": ms, "sensor_id": uuid, "measurement_value": kWh}` with `device_id` accepted
//! as an alias. Parsing is strict and every refusal has a stable reason code, which travels
//! with the dead-lettered message and labels the rejection metric.

use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest message accepted, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

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
    FutureTimestamp { ahead_ms: i64 },
    NonFiniteValue,
    NegativeValue,
    UnknownDevice,
}

impl Rejection {
    /// Every code [`Rejection::code`] can return.
    pub const CODES: [&'static str; 15] = [
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
        "future_timestamp",
        "non_finite_value",
        "negative_value",
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
            Rejection::FutureTimestamp { .. } => "future_timestamp",
            Rejection::NonFiniteValue => "non_finite_value",
            Rejection::NegativeValue => "negative_value",
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
            Rejection::FutureTimestamp { ahead_ms } => {
                write!(f, "timestamp is {ahead_ms} ms in the future")
            }
            Rejection::NonFiniteValue => f.write_str("measurement_value is not a finite number"),
            Rejection::NegativeValue => f.write_str("measurement_value is negative"),
            Rejection::UnknownDevice => f.write_str("no device has this id"),
        }
    }
}

const FIELDS: [&str; 4] = ["timestamp", "sensor_id", "device_id", "measurement_value"];

/// Parses and validates one message. `now_ms` and `max_future_ms` bound the timestamp.
pub fn parse(bytes: &[u8], now_ms: i64, max_future_ms: i64) -> Result<Reading, Rejection> {
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
    let ahead_ms = timestamp_ms.saturating_sub(now_ms);
    if ahead_ms > max_future_ms {
        return Err(Rejection::FutureTimestamp { ahead_ms });
    }

    let energy_kwh = field(&object, "measurement_value")?
        .as_f64()
        .ok_or(Rejection::WrongType("measurement_value"))?;
    if !energy_kwh.is_finite() {
        return Err(Rejection::NonFiniteValue);
    }
    if energy_kwh < 0.0 {
        return Err(Rejection::NegativeValue);
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
        parse(text.as_bytes(), NOW, 5 * 60 * 1000)
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
                format!(
                    r#"{{"sensor_id": "{ID}", "timestamp": {}, "measurement_value": 1}}"#,
                    NOW + 301_000
                ),
                "future_timestamp",
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
        assert_eq!(parse(&[0xff, 0xfe], NOW, 0).unwrap_err().code(), "not_utf8");
        assert!(Rejection::CODES.contains(&Rejection::UnknownDevice.code()));
        assert!(Rejection::CODES.contains(&Rejection::NonFiniteValue.code()));
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
