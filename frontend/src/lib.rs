//! The browser entry points: `hydrate` takes over the server-rendered page; `csr` mounts the app
//! from scratch for the Trunk dev loop.

/// Hydration waits for the chunk of the page on screen (see `app::pages`) before it takes over,
/// so `data-hydrated` is set once the page is live, not when the main module starts.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    wasm_bindgen_futures::spawn_local(async {
        let body = leptos::prelude::document()
            .body()
            .expect("the page has a <body>");
        let owner = leptos::mount::hydrate_from_async(body, app::App).await;
        owner.forget();
        mark_interactive();
    });
}

#[cfg(feature = "csr")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
    mark_interactive();
}

/// Sets `data-hydrated` on `<body>`, so tests can tell a live page from server HTML alone, and
/// tells the server the browser's time zone for the next pages.
#[cfg(any(feature = "hydrate", feature = "csr"))]
fn mark_interactive() {
    app::time::remember_zone();
    if let Some(body) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.body())
    {
        let _ = body.set_attribute("data-hydrated", "");
    }
}
