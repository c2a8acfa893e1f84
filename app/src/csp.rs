//! The Content-Security-Policy of pages. Leptos puts a fresh nonce on the inline scripts it
//! writes (hydration, resources); the policy allows those and the site's own files, nothing
//! else: no other origin's scripts, no inline event handlers, no framing.

use leptos::prelude::*;

/// The policy of a rendered page whose inline scripts carry `nonce`.
///
/// `style-src` allows inline styles: the gauges and charts size their bars with `style`
/// attributes, and a style cannot run code. `connect-src 'self'` covers the dashboard's
/// WebSocket on the same host.
/// Under `cargo leptos watch`, `live_reload` is the port of its reload socket.
pub fn page_policy(nonce: &str, live_reload: Option<u16>) -> String {
    let reload = live_reload
        .map(|port| format!(" ws://*:{port}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'{reload}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// For every other answer (API, files, errors): nothing may run or load, nothing may frame it.
pub const STRICT_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The policy of a page rendered with `nonce` by this process (with the live-reload socket under
/// `cargo leptos watch`).
pub fn policy_for(nonce: &str) -> String {
    // The environment is read once per process, not once per page.
    static LIVE_RELOAD: std::sync::OnceLock<Option<u16>> = std::sync::OnceLock::new();
    let live_reload = *LIVE_RELOAD.get_or_init(|| {
        std::env::var_os("LEPTOS_WATCH").map(|_| {
            std::env::var("LEPTOS_RELOAD_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(3001)
        })
    });
    page_policy(nonce, live_reload)
}

/// Sets the page's policy on the response being rendered, with this response's nonce.
pub fn set_page_policy() {
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    if let Ok(value) = http::HeaderValue::from_str(&policy_for(&nonce)) {
        response.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// Where the server's outermost layer keeps the nonce of the page it is answering, so that it
/// can set the page's policy itself when the render did not (see `note_page_nonce`).
#[derive(Clone, Debug, Default)]
pub struct PageNonce(pub std::sync::Arc<std::sync::OnceLock<String>>);

/// Notes this render's nonce in the request's [`PageNonce`], if the server put one there. Called
/// first thing in every render, on the render's root owner, where the request's contexts were
/// just provided.
pub fn note_page_nonce() {
    // `with_context` borrows the request's parts; `use_context` would clone its headers and
    // extensions on every render.
    if let Some(nonce) = leptos::nonce::use_nonce() {
        with_context::<http::request::Parts, _>(|parts| {
            if let Some(slot) = parts.extensions.get::<PageNonce>() {
                let _ = slot.0.set(nonce.to_string());
            }
        });
    }
}
