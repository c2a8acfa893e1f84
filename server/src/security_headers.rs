//! Headers every answer carries: no content sniffing, no referrer to other sites, no framing
//! (a same-site page that framed the admin's device list could make one click delete a
//! device), a Content-Security-Policy (pages set their own, with the nonce of their inline
//! scripts; everything else gets the strictest one), and HSTS when the site is https.

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};

/// Whether the site is served over https (then browsers are told to keep to it).
#[derive(Clone, Copy)]
pub struct Https(pub bool);

pub async fn add(State(Https(https)): State<Https>, mut request: Request, next: Next) -> Response {
    let nonce = app::csp::PageNonce::default();
    request.extensions_mut().insert(nonce.clone());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // For browsers that predate `frame-ancestors`.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        // A page whose render did not set its policy (seen now and then, on renders that start
        // while another request's burst of bundle files is cut short) still gets the page's
        // policy, with the nonce its scripts carry: the strict one would block them and leave
        // the page dead.
        let html = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
        let page = nonce.0.get().filter(|_| html).and_then(|nonce| {
            tracing::warn!("a page was rendered without its policy; set it from its nonce");
            HeaderValue::from_str(&app::csp::policy_for(nonce)).ok()
        });
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            page.unwrap_or(HeaderValue::from_static(app::csp::STRICT_POLICY)),
        );
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}
