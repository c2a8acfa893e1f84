//! The meter message as it travels (PRODUCT.md, "Meter message").

use uuid::Uuid;

/// One reading of one meter: `{"timestamp": ms, "sensor_id": uuid, "measurement_value": kWh}`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeterMessage {
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp: i64,
    pub sensor_id: Uuid,
    /// The cumulative energy register, kWh.
    pub measurement_value: f64,
}

impl MeterMessage {
    /// The JSON body. Rust prints floats without exponents, and the generator never makes a
    /// non-finite value, so the result is always a valid message.
    pub fn to_json(&self) -> Vec<u8> {
        format!(
            r#"{{"timestamp":{},"sensor_id":"{}","measurement_value":{}}}"#,
            self.timestamp, self.sensor_id, self.measurement_value
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_shape() {
        let id = Uuid::parse_str("6f1c2d4e-8a8b-4c5e-9d0f-0123456789ab").unwrap();
        let m = MeterMessage {
            timestamp: 1_767_225_600_000,
            sensor_id: id,
            measurement_value: 1234.567,
        };
        let v: serde_json::Value = serde_json::from_slice(&m.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "timestamp": 1_767_225_600_000_i64,
                "sensor_id": "6f1c2d4e-8a8b-4c5e-9d0f-0123456789ab",
                "measurement_value": 1234.567
            })
        );
        // Large and tiny values stay plain decimals.
        let big = MeterMessage {
            measurement_value: 1e21,
            ..m
        };
        assert!(serde_json::from_slice::<serde_json::Value>(&big.to_json()).is_ok());
    }
}
