//! The browser entry points: `hydrate` takes over the server-rendered page; `csr` mounts the app
//! from scratch for the Trunk dev loop.

/// Hydration waits for the chunk of the page on screen (see `app::pages`) before it takes over,
/// so `data-hydrated` is set once the page is live, not when the main module starts. A page
/// the server rendered for a signed-in user also needs the header's chunk, loaded first (see
/// `app::ui::preload_signed_in_header`).
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    wasm_bindgen_futures::spawn_local(async {
        if app::ui::signed_in_header_shown() {
            app::ui::preload_signed_in_header().await;
        }
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

/// Room for cargo-leptos's wasm-split to lay out the read-only data (`.rodata`) per module.
///
/// wasm-split gives each output module (the main module, each page's chunk) its own part of the
/// read-only data segment, re-laid out module by module. When padding for alignment makes the
/// re-laid segment even a few bytes longer than the linker's, it gives up and puts the whole
/// segment in the main module ("Overlong segment 0 by 40 after relocation, putting it in main
/// module": wasm_split_cli_support 0.2.3, `emit.rs`): every page's strings and tables, about
/// 54 kB, then travel with the first page. Whether that happens depended on the build, so the
/// first page's size jumped by up to 20 kB (brotli) with changes that added no code.
///
/// This static is kept by the linker (`#[used]`) but referenced by no code, so wasm-split puts it
/// in no module: its bytes are never emitted, and its length is slack that absorbs the padding.
/// The segment is laid out per module (about 165 of them, each aligned to 8 bytes), so the
/// padding stays under 2 KiB; 4 KiB leaves room. Its bytes are not zero so that it stays in
/// `.rodata` rather than `.bss`.
#[cfg(all(feature = "hydrate", target_arch = "wasm32"))]
#[used]
static SPLIT_DATA_SLACK: [u8; 4096] = [0xa5; 4096];
