//! Cross-site request forgery defence: a state-changing request from a browser must come from
//! one of the site's own origins.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The origins (`scheme://host[:port]`, no trailing slash) the site is served from.
#[derive(Clone, Debug)]
pub struct AllowedOrigins(Arc<Vec<String>>);

impl AllowedOrigins {
    pub fn new(origins: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(
            origins
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .filter(|o| !o.is_empty())
                .collect(),
        ))
    }

    pub fn contains(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        self.0.contains(&origin)
    }

    pub fn any_https(&self) -> bool {
        self.0.iter().any(|o| o.starts_with("https://"))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// Whether a request with these headers may change state. Browsers always send `Origin` on
/// cross-origin and on POST requests, and `Sec-Fetch-Site` on every request; a request with
/// neither comes from a non-browser client, which cannot carry a victim's cookies.
pub fn is_allowed(
    allowed: &AllowedOrigins,
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
) -> bool {
    match origin {
        Some("null") => false,
        Some(origin) => allowed.contains(origin),
        None => !matches!(sec_fetch_site, Some("cross-site") | Some("same-site")),
    }
}

pub async fn check_origin(
    State(allowed): State<AllowedOrigins>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if !safe {
        let headers = request.headers();
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if !is_allowed(&allowed, origin, site) {
            tracing::warn!(
                origin = origin.unwrap_or("-").escape_debug().to_string(),
                path = %request.uri().path(),
                "cross-origin request refused"
            );
            return (
                StatusCode::FORBIDDEN,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                Body::from(
                    "Cross-origin request refused: this origin is not allowed to change data here.",
                ),
            )
                .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rules() {
        let allowed = AllowedOrigins::new(["http://127.0.0.1:3000/".to_string()]);
        assert!(is_allowed(
            &allowed,
            Some("http://127.0.0.1:3000"),
            Some("same-origin")
        ));
        assert!(is_allowed(&allowed, Some("HTTP://127.0.0.1:3000"), None));
        assert!(!is_allowed(
            &allowed,
            Some("http://evil.example"),
            Some("cross-site")
        ));
        assert!(!is_allowed(&allowed, Some("null"), None));
        assert!(!is_allowed(&allowed, None, Some("cross-site")));
        assert!(is_allowed(&allowed, None, None));
        assert!(is_allowed(&allowed, None, Some("same-origin")));
    }
}
