//! CSV replay. Two forms, as the assignment's `sensor.csv` and as exported from real meters:
//! one cumulative kWh value per line (timestamps come from the simulated clock), or
//! `timestamp,value` per line (timestamp as integer milliseconds or RFC 3339). Blank lines,
//! `#` comments and a header line are skipped.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};

/// One row: its own timestamp (in the two-column form) and the register value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub timestamp_ms: Option<i64>,
    pub value_kwh: f64,
}

/// A bad CSV file, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: no readings in the file")]
    Empty { path: PathBuf },
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<Row>, CsvError> {
    let text = std::fs::read_to_string(path).map_err(|source| CsvError::Io {
        path: path.to_owned(),
        source,
    })?;
    let rows = parse(&text).map_err(|(line, message)| CsvError::Line {
        path: path.to_owned(),
        line,
        message,
    })?;
    if rows.is_empty() {
        return Err(CsvError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(rows)
}

/// Parses CSV text; an error carries its 1-based line number.
pub fn parse(text: &str) -> Result<Vec<Row>, (usize, String)> {
    let mut rows = Vec::new();
    let mut two_columns = None;
    let mut last_timestamp: Option<i64> = None;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if rows.is_empty() && two_columns.is_none() && is_header(&fields) {
            continue;
        }
        let row = match fields.as_slice() {
            [value] => Row {
                timestamp_ms: None,
                value_kwh: value_of(value).map_err(|m| (line_no, m))?,
            },
            [timestamp, value] => Row {
                timestamp_ms: Some(timestamp_of(timestamp).map_err(|m| (line_no, m))?),
                value_kwh: value_of(value).map_err(|m| (line_no, m))?,
            },
            _ => {
                return Err((
                    line_no,
                    format!(
                        "expected `value` or `timestamp,value`, found {} fields",
                        fields.len()
                    ),
                ))
            }
        };
        let has_timestamp = row.timestamp_ms.is_some();
        match two_columns {
            None => two_columns = Some(has_timestamp),
            Some(expected) if expected != has_timestamp => {
                return Err((
                    line_no,
                    "every line must have the same number of fields as the first".into(),
                ))
            }
            Some(_) => {}
        }
        if let (Some(t), Some(previous)) = (row.timestamp_ms, last_timestamp) {
            if t <= previous {
                return Err((line_no, "timestamps must increase from line to line".into()));
            }
        }
        last_timestamp = row.timestamp_ms.or(last_timestamp);
        rows.push(row);
    }
    Ok(rows)
}

fn is_header(fields: &[&str]) -> bool {
    // Words, not numbers ("NaN" and "inf" parse as numbers and are bad values, not a header).
    fields.iter().all(|f| {
        f.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && f.parse::<f64>().is_err()
    })
}

fn value_of(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "{text:?} is not a meter reading (finite, at least 0)"
        ));
    }
    Ok(value)
}

fn timestamp_of(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return if ms >= 0 {
            Ok(ms)
        } else {
            Err(format!("{text:?} is before 1970"))
        };
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.timestamp_millis());
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S") {
        return Ok(at.and_utc().timestamp_millis());
    }
    Err(format!(
        "{text:?} is not a timestamp (integer milliseconds or RFC 3339, such as \
         2026-01-01T00:00:00Z)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_line_is_the_assignment_format() {
        let rows = parse("0.0\n0.25\n\n# note\n0.5\n").unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.timestamp_ms.is_none()));
        assert_eq!(rows[2].value_kwh, 0.5);
    }

    #[test]
    fn two_columns_take_milliseconds_or_rfc3339_and_a_header() {
        let rows =
            parse("timestamp,measurement_value\n1767225600000,1.5\n2026-01-01T00:10:00Z,1.75\n")
                .unwrap();
        assert_eq!(rows[0].timestamp_ms, Some(1_767_225_600_000));
        assert_eq!(rows[1].timestamp_ms, Some(1_767_226_200_000));
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        assert_eq!(parse("1\n2\nabc\n").unwrap_err().0, 3);
        assert_eq!(parse("1\n-2\n").unwrap_err().0, 2);
        assert_eq!(parse("1,2,3\n").unwrap_err().0, 1);
        assert_eq!(parse("1\n5,2\n").unwrap_err().0, 2);
        assert_eq!(parse("10,1\n10,2\n").unwrap_err().0, 2);
        assert_eq!(parse("yesterday,1\n").unwrap_err().0, 1);
        assert_eq!(parse("NaN\n").unwrap_err().0, 1);
    }

    #[test]
    fn a_file_error_names_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("sim-csv-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.csv");
        std::fs::write(&path, "1\n2\nx\n").unwrap();
        let message = read(&path).unwrap_err().to_string();
        assert!(
            message.ends_with("bad.csv:3: \"x\" is not a number"),
            "{message}"
        );
        assert!(read(&dir.join("missing.csv"))
            .unwrap_err()
            .to_string()
            .starts_with("cannot read"));
        std::fs::write(&path, "# only a comment\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("no readings"));
    }
}
