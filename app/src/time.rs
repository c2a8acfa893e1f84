//! Times for people, in the viewer's IANA time zone. The browser says which zone it is in (the
//! `tz` cookie, set when a page comes alive); the server writes times in it, so that the HTML
//! reads right before any script runs.

/// "2026-12-01 14:05 UTC" from an RFC 3339 UTC time ("2026-12-01T14:05:09Z"); the browser
/// needs no date library for it.
pub fn minute_utc(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(clock)) => format!("{date} {clock} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// The cookie that carries the browser's time zone.
pub const ZONE_COOKIE: &str = "tz";

/// Remembers the browser's time zone in the [`ZONE_COOKIE`] for a year.
#[cfg(target_arch = "wasm32")]
pub fn remember_zone() {
    use wasm_bindgen::JsCast;
    let options = js_sys::Intl::DateTimeFormat::new(&js_sys::Array::new(), &js_sys::Object::new())
        .resolved_options();
    let Some(zone) = js_sys::Reflect::get(&options, &"timeZone".into())
        .ok()
        .and_then(|z| z.as_string())
    else {
        return;
    };
    let document = leptos::prelude::document();
    if let Ok(html) = document.dyn_into::<web_sys::HtmlDocument>() {
        let _ = html.set_cookie(&format!(
            "{ZONE_COOKIE}={}; path=/; max-age=31536000; samesite=lax",
            crate::ui::encode_component(&zone)
        ));
    }
}

#[cfg(feature = "ssr")]
pub use server::*;

#[cfg(feature = "ssr")]
mod server {
    use chrono::{DateTime, TimeZone};
    use chrono_tz::Tz;

    use super::ZONE_COOKIE;

    /// The zone named in a `Cookie` header, if it is a known IANA zone.
    pub fn zone_from_cookies(header: &str) -> Option<Tz> {
        header.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            if name != ZONE_COOKIE {
                return None;
            }
            value.replace("%2F", "/").replace("%2f", "/").parse().ok()
        })
    }

    /// The zone of the browser making this request, UTC when it has not said.
    pub async fn viewer_zone() -> Tz {
        let headers = leptos_axum::extract::<http::HeaderMap>().await.ok();
        headers
            .as_ref()
            .and_then(|h| h.get(http::header::COOKIE))
            .and_then(|v| v.to_str().ok())
            .and_then(zone_from_cookies)
            .unwrap_or(Tz::UTC)
    }

    /// RFC 3339 in UTC to the second, as times cross to the browser.
    pub fn rfc3339(t: DateTime<chrono::Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn local(ms: i64, zone: Tz) -> Option<DateTime<Tz>> {
        DateTime::from_timestamp_millis(ms).map(|t| zone.from_utc_datetime(&t.naive_utc()))
    }

    /// "2026-12-01 13:40–13:50", or both dates when the span crosses midnight; with seconds
    /// when either end is not on a whole minute.
    pub fn span(t1_ms: i64, t2_ms: i64, zone: Tz) -> String {
        let clock = if t1_ms % 60_000 == 0 && t2_ms % 60_000 == 0 {
            "%H:%M"
        } else {
            "%H:%M:%S"
        };
        match (local(t1_ms, zone), local(t2_ms, zone)) {
            (Some(a), Some(b)) if a.date_naive() == b.date_naive() => format!(
                "{} {}–{}",
                a.format("%Y-%m-%d"),
                a.format(clock),
                b.format(clock)
            ),
            (Some(a), Some(b)) => format!(
                "{} {} – {} {}",
                a.format("%Y-%m-%d"),
                a.format(clock),
                b.format("%Y-%m-%d"),
                b.format(clock)
            ),
            _ => "–".into(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn utc_times_cross_as_text() {
            let t = DateTime::from_timestamp_millis(1_782_902_409_500).unwrap();
            assert_eq!(rfc3339(t), "2026-07-01T10:40:09Z");
            assert_eq!(
                super::super::minute_utc(&rfc3339(t)),
                "2026-07-01 10:40 UTC"
            );
            assert_eq!(super::super::minute_utc("garbled"), "garbled");
        }

        #[test]
        fn the_zone_comes_from_its_cookie() {
            assert_eq!(
                zone_from_cookies("energy_session=x; tz=Europe%2FBucharest"),
                Some(chrono_tz::Europe::Bucharest)
            );
            assert_eq!(zone_from_cookies("tz=Mars/Olympus"), None);
            assert_eq!(zone_from_cookies("atz=UTC"), None);
        }

        #[test]
        fn spans_are_local() {
            // 2026-07-01 10:40 UTC is 13:40 in Bucharest (summer time, UTC+3).
            let t1 = 1_782_902_400_000;
            assert_eq!(
                span(t1, t1 + 600_000, chrono_tz::Europe::Bucharest),
                "2026-07-01 13:40–13:50"
            );
            assert_eq!(
                span(t1, t1 + 14 * 3_600_000, chrono_tz::UTC),
                "2026-07-01 10:40 – 2026-07-02 00:40"
            );
            assert_eq!(
                span(t1 + 5_000, t1 + 10_000, chrono_tz::UTC),
                "2026-07-01 10:40:05–10:40:10"
            );
        }
    }
}
