//! Which chunks of the split bundle a server-rendered page needs, handed to the server so that
//! it names them in the page's head (`<link rel=preload>`) from a list it keeps.
//!
//! Leptos collects the lazy functions a render calls and, once the page is rendered, makes a
//! `leptos_meta` `<Link>` for every chunk each of them needs, on every request: about 130 for a
//! client's dashboard, some of them twice. That was more work than rendering the page itself
//! (callgrind: 0.73 million instructions per dashboard, against 1.0 million for the rest), and
//! took the dashboard from 5,800 to 4,000 requests a second. Instead, each place that calls a
//! lazy function on the server moves what Leptos noted into the request's [`PreloadSlot`], and
//! the server writes the links (`server::preload`), made once per set of functions.
//!
//! Anything not claimed here stays in Leptos's list and is linked the slow way, so a lazy
//! function called elsewhere is still preloaded.

use std::sync::{Arc, Mutex};

use leptos::prelude::*;

/// The lazy functions this request's render called, by the names the split manifest uses.
/// The server puts one in the request's extensions; [`provide_slot`] makes it the render's.
#[derive(Clone, Debug, Default)]
pub struct PreloadSlot(Arc<Mutex<Vec<&'static str>>>);

impl PreloadSlot {
    /// What the render claimed, each name once, sorted.
    pub fn take(&self) -> Vec<&'static str> {
        let mut names = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// Provides the request's [`PreloadSlot`], if the server made one, to the render. Called on the
/// render's root owner, where the request's parts were just provided.
pub fn provide_slot() {
    let slot = with_context::<http::request::Parts, _>(|parts| {
        parts.extensions.get::<PreloadSlot>().cloned()
    })
    .flatten();
    if let Some(slot) = slot {
        provide_context(slot);
    }
}

/// Moves the lazy functions Leptos has noted for this render so far into the request's slot.
/// Call it right after a lazy function has been called on the server. Without a slot (a server
/// that writes no links itself) Leptos keeps them and links them as it would.
pub fn claim() {
    let Some(slot) = use_context::<PreloadSlot>() else {
        return;
    };
    // `PrefetchLazyFn` is where `#[lazy]` functions note themselves on the server (public, but
    // hidden from Leptos's docs; Leptos 0.8.23).
    if let Some(noted) = use_context::<leptos::PrefetchLazyFn>() {
        if let Some(mut names) = noted.0.try_write_value() {
            slot.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(names.drain());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_moves_what_leptos_noted_into_the_slot() {
        let owner = Owner::new();
        owner.with(|| {
            let noted = leptos::PrefetchLazyFn::default();
            provide_context(noted.clone());
            let slot = PreloadSlot::default();
            provide_context(slot.clone());
            leptos::prefetch_lazy_fn_on_server("page_b");
            leptos::prefetch_lazy_fn_on_server("header_a");
            claim();
            leptos::prefetch_lazy_fn_on_server("page_b");
            claim();
            assert!(
                noted.0.read_value().is_empty(),
                "Leptos has nothing left to link"
            );
            assert_eq!(slot.take(), vec!["header_a", "page_b"]);
            assert_eq!(slot.take(), Vec::<&str>::new(), "taken once");
        });
    }

    #[test]
    fn without_a_slot_leptos_keeps_them() {
        let owner = Owner::new();
        owner.with(|| {
            let noted = leptos::PrefetchLazyFn::default();
            provide_context(noted.clone());
            leptos::prefetch_lazy_fn_on_server("page_b");
            claim();
            assert_eq!(noted.0.read_value().len(), 1);
        });
    }
}
