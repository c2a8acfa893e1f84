//! Names the split bundle's chunks a page needs as `<link rel=preload>` in the page's head, so
//! that the browser fetches them beside the main module rather than one after another once it
//! runs. The render says which lazy functions it called (`app::preload`); the split manifest
//! (`__wasm_split_manifest.json`, written by `cargo leptos build --split`) says which chunks
//! each needs; the links for a set of functions are made once and kept.
//!
//! This replaces Leptos's own linking, which built every link anew on every request and was the
//! larger part of a signed-in page's cost (see `app::preload`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use futures_lite::StreamExt;

use app::preload::PreloadSlot;

/// The chunks of each lazy function, and the links made so far by set of functions.
#[derive(Debug)]
pub struct Preloads {
    /// `/pkg`, where the chunks are served.
    pkg: String,
    chunks: HashMap<String, Vec<String>>,
    made: RwLock<HashMap<Vec<&'static str>, Bytes>>,
}

/// The split loader's module, preloaded with the chunks (as Leptos does); its file name when file
/// names carry no hash (`hash-files` off, as here).
const LOADER: &str = "__wasm_split.______________________.js";

impl Preloads {
    /// Reads the manifest of the site at `site_root`. `None` without one (a build that is not
    /// split, or no site at all): then there is nothing to preload.
    pub fn load(site_root: &Path, pkg_dir: &str) -> anyhow::Result<Option<Preloads>> {
        let path = site_root.join(pkg_dir).join("__wasm_split_manifest.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        let chunks = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not a split manifest: {e}", path.display()))?;
        Ok(Some(Preloads::new(&format!("/{pkg_dir}"), chunks)))
    }

    pub fn new(pkg: &str, chunks: HashMap<String, Vec<String>>) -> Preloads {
        Preloads {
            pkg: pkg.to_owned(),
            chunks,
            made: RwLock::default(),
        }
    }

    /// The links for lazy functions `names` (sorted, each once): every chunk once. Empty when
    /// the manifest knows none of them.
    pub fn links(&self, names: Vec<&'static str>) -> Bytes {
        if let Some(links) = self
            .made
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&names)
        {
            return links.clone();
        }
        let mut chunks: Vec<&str> = names
            .iter()
            .filter_map(|name| self.chunks.get(*name))
            .flatten()
            .map(String::as_str)
            .collect();
        chunks.sort_unstable();
        chunks.dedup();
        let mut html = String::new();
        for chunk in &chunks {
            // `crossorigin`: the loader fetches with `fetch()`, in CORS mode; a preload is used
            // only by a request in the same mode.
            html.push_str(&format!(
                r#"<link rel="preload" href="{}/{chunk}.wasm" as="fetch" type="application/wasm" crossorigin>"#,
                self.pkg
            ));
        }
        if !chunks.is_empty() {
            html.push_str(&format!(
                r#"<link rel="modulepreload" href="{}/{LOADER}" crossorigin>"#,
                self.pkg
            ));
        }
        let links = Bytes::from(html);
        self.made
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(names, links.clone());
        links
    }
}

/// `html` with `links` put just before its `</head>`; `None` if it has no `</head>`.
pub fn insert_before_head_end(html: &[u8], links: &[u8]) -> Option<Bytes> {
    const END: &[u8] = b"</head>";
    let at = html.windows(END.len()).position(|w| w == END)?;
    let mut out = Vec::with_capacity(html.len() + links.len());
    out.extend_from_slice(&html[..at]);
    out.extend_from_slice(links);
    out.extend_from_slice(&html[at..]);
    Some(Bytes::from(out))
}

/// Gives every request a [`PreloadSlot`] for its render, and adds the links for what the render
/// put in it to the head of the page. Leptos renders a page's document (head and body) in its
/// first chunk.
pub async fn add(
    State(preloads): State<Option<Arc<Preloads>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = PreloadSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    let names = slot.take();
    let Some(preloads) = preloads.filter(|_| !names.is_empty()) else {
        return response;
    };
    let links = preloads.links(names);
    if links.is_empty() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut stream = body.into_data_stream();
    let first = match stream.next().await {
        Some(Ok(first)) => first,
        Some(Err(e)) => {
            tracing::warn!("a page's body failed before its head: {e}");
            return Response::from_parts(parts, Body::empty());
        }
        None => return Response::from_parts(parts, Body::empty()),
    };
    let first = match insert_before_head_end(&first, &links) {
        Some(with_links) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            with_links
        }
        None => {
            tracing::debug!("a page's first chunk has no </head>: its chunks are not preloaded");
            first
        }
    };
    let body = futures_lite::stream::once(Ok(first)).chain(stream);
    Response::from_parts(parts, Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Preloads {
        Preloads::new(
            "/pkg",
            HashMap::from([
                (
                    "page".to_owned(),
                    vec!["chunk_2".to_owned(), "chunk_1".to_owned()],
                ),
                (
                    "header".to_owned(),
                    vec!["chunk_1".to_owned(), "chunk_3".to_owned()],
                ),
            ]),
        )
    }

    const LOADER_LINK: &str = r#"<link rel="modulepreload" href="/pkg/__wasm_split.______________________.js" crossorigin>"#;

    fn chunk_link(n: u32) -> String {
        format!(
            r#"<link rel="preload" href="/pkg/chunk_{n}.wasm" as="fetch" type="application/wasm" crossorigin>"#
        )
    }

    #[test]
    fn every_chunk_of_the_functions_is_linked_once_with_the_loader() {
        let preloads = manifest();
        let links = preloads.links(vec!["header", "page"]);
        let expected = format!(
            "{}{}{}{LOADER_LINK}",
            chunk_link(1),
            chunk_link(2),
            chunk_link(3)
        );
        assert_eq!(std::str::from_utf8(&links).unwrap(), expected);
        // Kept: the second request gets the same bytes without making them again.
        assert_eq!(preloads.links(vec!["header", "page"]), links);
        assert_eq!(preloads.made.read().unwrap().len(), 1);
        let page_only = format!("{}{}{LOADER_LINK}", chunk_link(1), chunk_link(2));
        assert_eq!(preloads.links(vec!["page"]), page_only.as_bytes());
    }

    #[test]
    fn functions_the_manifest_does_not_know_get_no_links() {
        assert!(manifest().links(vec!["elsewhere"]).is_empty());
    }

    #[test]
    fn the_links_go_at_the_end_of_the_head() {
        let html = b"<html><head><title>t</title></head><body>x</body></html>";
        let out = insert_before_head_end(html, b"<link>").unwrap();
        assert_eq!(
            &out[..],
            b"<html><head><title>t</title><link></head><body>x</body></html>"
        );
        assert_eq!(insert_before_head_end(b"<p>no head</p>", b"<link>"), None);
    }

    #[tokio::test]
    async fn the_middleware_adds_what_the_render_claimed_and_keeps_the_rest_of_the_body() {
        use axum::{routing::get, Router};
        use tower::ServiceExt;

        let preloads = Some(Arc::new(manifest()));
        let app = Router::new()
            .route(
                "/page",
                get(|request: Request| async move {
                    // What a render does: claims the lazy functions it called.
                    let slot = request.extensions().get::<PreloadSlot>().unwrap().clone();
                    let owner = leptos::prelude::Owner::new();
                    owner.with(|| {
                        let noted = leptos::PrefetchLazyFn::default();
                        leptos::prelude::provide_context(noted);
                        leptos::prelude::provide_context(slot);
                        leptos::prefetch_lazy_fn_on_server("page");
                        app::preload::claim();
                    });
                    let chunks = vec![
                        Ok::<_, std::io::Error>(Bytes::from_static(b"<html><head></head><body>")),
                        Ok(Bytes::from_static(b"rest</body></html>")),
                    ];
                    Body::from_stream(futures_lite::stream::iter(chunks))
                }),
            )
            .route("/api", get(|| async { "no render" }))
            .layer(axum::middleware::from_fn_with_state(preloads, add));

        let body = |response: Response| async move {
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            String::from_utf8(bytes.unwrap().to_vec()).unwrap()
        };
        let page = app
            .clone()
            .oneshot(Request::get("/page").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let expected = format!(
            "<html><head>{}{}{LOADER_LINK}</head><body>rest</body></html>",
            chunk_link(1),
            chunk_link(2)
        );
        assert_eq!(body(page).await, expected);
        let api = app
            .oneshot(Request::get("/api").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(body(api).await, "no render");
    }
}
