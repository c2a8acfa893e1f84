//! Input rules shared by forms and server functions. Each returns the cleaned value or a
//! message meant for the person who typed the input.

use crate::error::{AppError, FieldError};

pub const USERNAME_MAX: usize = 64;
pub const DISPLAY_NAME_MAX: usize = 100;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const TEXT_MAX: usize = 200;
/// Larger than any single metered connection on a distribution network (100 MW).
pub const MAX_POWER_LIMIT_KW: f64 = 100_000.0;
/// One watt: the precision of a maximum power, and the smallest one.
pub const MIN_POWER_LIMIT_KW: f64 = 0.001;

/// Usernames are ASCII letters, digits and `. _ - @`, so that case-insensitive uniqueness means
/// the same thing on every database.
pub fn username(input: &str) -> Result<String, String> {
    let value = input.trim();
    if value.is_empty() {
        return Err("Username is required.".into());
    }
    if value.len() < 3 {
        return Err("Username must be at least 3 characters.".into());
    }
    if value.len() > USERNAME_MAX {
        return Err(format!(
            "Username must be at most {USERNAME_MAX} characters."
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err("Username may contain only letters, digits and . _ - @".into());
    }
    Ok(value.to_owned())
}

pub fn display_name(input: &str) -> Result<String, String> {
    required_text(input, "Display name", DISPLAY_NAME_MAX)
}

pub fn description(input: &str) -> Result<String, String> {
    required_text(input, "Description", TEXT_MAX)
}

pub fn address(input: &str) -> Result<String, String> {
    required_text(input, "Address", TEXT_MAX)
}

fn required_text(input: &str, label: &str, max: usize) -> Result<String, String> {
    let value = input.trim();
    if value.is_empty() {
        return Err(format!("{label} is required."));
    }
    if value.chars().count() > max {
        return Err(format!("{label} must be at most {max} characters."));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{label} must not contain control characters."));
    }
    Ok(value.to_owned())
}

/// Passwords are taken as typed (no trimming): length is counted in characters.
pub fn password(input: &str) -> Result<String, String> {
    let len = input.chars().count();
    if len < PASSWORD_MIN {
        return Err(format!(
            "Password must be at least {PASSWORD_MIN} characters."
        ));
    }
    if len > PASSWORD_MAX {
        return Err(format!(
            "Password must be at most {PASSWORD_MAX} characters."
        ));
    }
    Ok(input.to_owned())
}

/// `max_power_kw` arrives as text from a form: a plain decimal number of kW from 0.001 to
/// 100,000 with at most three decimals (one watt), written with a decimal point or a decimal
/// comma ("7,5", as people write it in Romania).
pub fn max_power_kw(input: &str) -> Result<f64, String> {
    let value = input.trim();
    if value.is_empty() {
        return Err("Maximum power is required.".into());
    }
    let not_a_number =
        || "Maximum power must be a number of kW, for example 7.5 or 7,5.".to_string();
    let out_of_range = || "Maximum power must be from 0.001 to 100 000 kW.".to_string();
    // A negative number is a number, only out of range.
    let (negative, value) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let (whole, decimals) = match value.split_once(['.', ',']) {
        Some((whole, decimals)) => (whole, decimals),
        None => (value, ""),
    };
    // Digits only: no sign, exponent, thousands separator, second separator, `inf` or `NaN`.
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(decimals) || (whole.is_empty() && decimals.is_empty()) {
        return Err(not_a_number());
    }
    if decimals.len() > 3 {
        return Err("Maximum power has at most three decimals (one watt).".into());
    }
    let parsed: f64 = format!("{whole}.{decimals}0")
        .parse()
        .map_err(|_| not_a_number())?;
    if negative || !(MIN_POWER_LIMIT_KW..=MAX_POWER_LIMIT_KW).contains(&parsed) {
        return Err(out_of_range());
    }
    Ok(parsed)
}

/// An id typed or passed in a URL; `field` names it in the error.
pub fn uuid(input: &str, field: &str) -> Result<uuid::Uuid, AppError> {
    uuid::Uuid::parse_str(input.trim()).map_err(|_| AppError::field(field, "Not a valid id."))
}

/// A meter's id as it sends it (`sensor_id`): a UUID, not the nil one.
pub fn meter_id(input: &str) -> Result<uuid::Uuid, String> {
    match uuid::Uuid::parse_str(input.trim()) {
        Ok(id) if !id.is_nil() => Ok(id),
        _ => Err(
            "Not a meter id: a UUID such as 7c9e6679-7425-40de-944b-e07fc1f90ae7, as the meter \
             sends it."
                .into(),
        ),
    }
}

/// The longest search text a list takes.
pub const SEARCH_MAX: usize = 100;

/// Search text for a list: at most [`SEARCH_MAX`] characters, none of them control characters.
pub fn search(input: &str, field: &str) -> Result<String, AppError> {
    let value = input.trim();
    if value.chars().count() > SEARCH_MAX {
        return Err(AppError::field(
            field,
            format!("Search for at most {SEARCH_MAX} characters."),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::field(
            field,
            "Search text cannot hold control characters.",
        ));
    }
    Ok(value.to_owned())
}

/// Most pages a list can be asked for: far beyond any real list, far below where offsets
/// overflow.
pub const PAGE_MAX: i64 = 1_000_000;

/// A page number from a query string or a form: 1 when absent.
pub fn page(input: Option<i64>) -> Result<i64, AppError> {
    match input.unwrap_or(1) {
        p @ 1..=PAGE_MAX => Ok(p),
        _ => Err(AppError::field(
            "page",
            format!("Page must be a whole number from 1 to {PAGE_MAX}."),
        )),
    }
}

/// Collects field errors so a form can show all of them at once.
#[derive(Default)]
pub struct Fields(Vec<FieldError>);

impl Fields {
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    /// `Err` with every collected message, or `Ok` if there were none.
    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rules() {
        assert_eq!(username("  Alice.B  ").unwrap(), "Alice.B");
        assert!(username("").is_err());
        assert!(username("ab").is_err());
        assert!(username("has space").is_err());
        assert!(username("ünïcode").is_err());
        assert!(username(&"a".repeat(USERNAME_MAX + 1)).is_err());
        assert!(username("meter-ops@utility.example").is_ok());
    }

    #[test]
    fn password_allows_64_and_refuses_short() {
        assert!(password("short").is_err());
        assert!(password("12345678").is_ok());
        assert!(password(&"p".repeat(64)).is_ok());
        assert!(password(&"p".repeat(PASSWORD_MAX + 1)).is_err());
        assert_eq!(password(" spaced out ").unwrap(), " spaced out ");
    }

    #[test]
    fn max_power_is_a_plain_decimal_in_range() {
        for (input, kw) in [
            (" 3.5 ", 3.5),
            ("7,5", 7.5),
            ("0,001", 0.001),
            ("0.6", 0.6),
            ("100000", 100_000.0),
            ("100000,000", 100_000.0),
            ("12.", 12.0),
            (".25", 0.25),
            ("0012.340", 12.34),
        ] {
            assert_eq!(max_power_kw(input), Ok(kw), "{input:?}");
        }
        for bad in [
            "",
            "abc",
            "0",
            "0.0009",
            "-1",
            "+1",
            "NaN",
            "inf",
            "-inf",
            "1e300",
            "1e-300",
            "1e3",
            "100000.001",
            "1.0005",
            "1,000.5",
            "1.000,5",
            "1 000",
            ".",
            ",",
            "1..2",
            "١٢",
        ] {
            assert!(max_power_kw(bad).is_err(), "{bad:?} accepted");
        }
        assert!(max_power_kw("1.2345")
            .unwrap_err()
            .contains("three decimals"));
        assert!(max_power_kw("0").unwrap_err().contains("0.001"));
        assert!(max_power_kw("-3").unwrap_err().contains("0.001"));
        assert!(max_power_kw("--3").unwrap_err().contains("for example"));
    }

    #[test]
    fn text_fields_are_trimmed_and_bounded() {
        assert_eq!(description("  Heat pump ").unwrap(), "Heat pump");
        assert!(description("   ").is_err());
        assert!(address(&"x".repeat(TEXT_MAX + 1)).is_err());
        assert!(address(&"é".repeat(TEXT_MAX)).is_ok());
        assert!(display_name("tab\there").is_err());
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(page(None).unwrap(), 1);
        assert_eq!(page(Some(3)).unwrap(), 3);
        for bad in [0, -1, PAGE_MAX + 1, i64::MAX, i64::MIN] {
            assert!(page(Some(bad)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn fields_collects_every_message() {
        let mut fields = Fields::default();
        assert!(fields.check("a", username("")).is_none());
        assert!(fields.check("b", max_power_kw("x")).is_none());
        assert_eq!(fields.check("c", address("ok")).as_deref(), Some("ok"));
        match fields.finish() {
            Err(AppError::Validation(errors)) => assert_eq!(errors.len(), 2),
            other => panic!("unexpected {other:?}"),
        }
    }
}
