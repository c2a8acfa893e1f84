//! Small pieces every page uses: header, error and empty states, field messages, paging.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::auth::{use_auth, Logout, Role};
use crate::error::AppError;
use crate::live::{ConnectionBadge, UnreadBadge};
use leptos::server_fn::ServerFn;
use serde::{Deserialize, Serialize};

/// Percent-encodes a query-string component.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Sets the HTTP status of the page being rendered on the server (no-op in the browser).
pub fn set_page_status(_status: u16) {
    #[cfg(feature = "ssr")]
    if let (Some(options), Ok(status)) = (
        use_context::<leptos_axum::ResponseOptions>(),
        http::StatusCode::from_u16(_status),
    ) {
        options.set_status(status);
    }
}

#[component]
pub fn Header() -> impl IntoView {
    let auth = use_auth();
    let live = crate::live::state::use_live();
    let summary = expect_context::<crate::live::state::Summary>();
    view! {
        <header class="topbar">
            <a class="brand" href="/">
                <span class="logo" aria-hidden="true">"⚡"</span>
                " Energy Utility"
            </a>
            <Transition>
                {move || Suspend::new(async move {
                    let user = auth.user.await.ok().flatten()?;
                    if let Ok(Some(summary)) = summary.0.await {
                        live.adopt(&summary);
                    }
                    let header = signed_in_header(user, auth).await;
                    // The server names the header's chunks in the page's head.
                    #[cfg(feature = "ssr")]
                    crate::preload::claim();
                    Some(header)
                })}
            </Transition>
        </header>
    }
}

/// Whether the page on screen came from the server with the signed-in header: the browser then
/// loads that header's chunk ([`preload_signed_in_header`]) before it hydrates the page.
#[cfg(target_arch = "wasm32")]
pub fn signed_in_header_shown() -> bool {
    document()
        .query_selector("header .whoami")
        .ok()
        .flatten()
        .is_some()
}

/// Loads the chunk of [`signed_in_header`] (nothing to load in a build that is not split).
///
/// Hydration must not wait for it: a `Suspend` whose future is not ready when hydration reaches
/// it renders its fallback over the server's HTML, and the page breaks. So the browser loads it
/// first when the server's page shows a signed-in header; the function is then ready at once.
pub async fn preload_signed_in_header() {
    #[cfg(all(feature = "hydrate", not(feature = "csr")))]
    __preload_signed_in_header().await;
}

/// The header's part for a signed-in user: navigation, connection and unread badges, the
/// account link and sign-out. A chunk of its own (`#[lazy]`), as only signed-in pages show it.
#[cfg(not(feature = "csr"))]
#[leptos::lazy]
fn signed_in_header(user: crate::auth::CurrentUser, auth: crate::auth::Auth) -> AnyView {
    signed_in_header_view(user, auth)
}

#[cfg(feature = "csr")]
async fn signed_in_header(user: crate::auth::CurrentUser, auth: crate::auth::Auth) -> AnyView {
    signed_in_header_view(user, auth)
}

fn signed_in_header_view(user: crate::auth::CurrentUser, auth: crate::auth::Auth) -> AnyView {
    // The router's `<A>` marks the current section (`aria-current`), which the style sheet shows.
    let links = match user.role {
        Role::Admin => view! {
            <A href="/admin/live">"Live"</A>
            <A href="/admin/accounts">"Accounts"</A>
            <A href="/admin/devices">"Devices"</A>
            <A href="/admin/dead-letters">"Dead letters"</A>
        }
        .into_any(),
        Role::Client => view! { <A href="/dashboard">"My devices"</A> }.into_any(),
    };
    view! {
        <nav class="mainnav" aria-label="Main">{links}</nav>
        <div class="whoami">
            <ConnectionBadge/>
            <UnreadBadge/>
            <a href="/account" class="user-name" title="Your account">
                {user.display_name.clone()}
            </a>
            <span class="badge">{user.role.as_str()}</span>
            // A plain form (see `LoginPage` on why not `ActionForm`).
            <form
                action=Logout::url()
                method="post"
                on:submit=move |ev: leptos::ev::SubmitEvent| {
                    ev.prevent_default();
                    auth.logout.dispatch(Logout {});
                }
            >
                <button type="submit" class="link">"Sign out"</button>
            </form>
        </div>
    }
    .into_any()
}

/// A failed request, in words the user can act on.
#[component]
pub fn ErrorBox(error: AppError) -> impl IntoView {
    let hint = match &error {
        AppError::Unauthorized => Some(view! { <a href="/login">"Sign in"</a> }),
        _ => None,
    };
    // A list or page has no fields to highlight: say what was wrong.
    let message = match &error {
        AppError::Validation(errors) if !errors.is_empty() => errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => error.to_string(),
    };
    view! {
        <div class="form-error" role="alert">
            <span>{message}</span>
            " "
            {hint}
        </div>
    }
}

/// The visible input a field's message is about: by its name (a list's inputs: `name[]`).
#[cfg(target_arch = "wasm32")]
fn field_input(field: &str) -> Option<web_sys::Element> {
    let selector = format!("[name=\"{field}\"]:not([type=hidden]), [name=\"{field}[]\"]");
    document().query_selector(&selector).ok().flatten()
}

/// The message for one form field, taken from the form's last error. In the browser it also
/// marks the field (`aria-invalid`, styled) while the message stands, and points the field at
/// the message (`aria-describedby`).
#[component]
pub fn FieldMessage(error: Signal<Option<AppError>>, field: &'static str) -> impl IntoView {
    let message =
        Memo::new(move |_| error.with(|e| e.as_ref().and_then(|e| e.field_message(field))));
    #[cfg(target_arch = "wasm32")]
    Effect::new(move |_| {
        let invalid = message.with(Option::is_some);
        if let Some(input) = field_input(field) {
            if invalid {
                let _ = input.set_attribute("aria-invalid", "true");
                let _ = input.set_attribute("aria-describedby", &format!("{field}-error"));
            } else {
                let _ = input.remove_attribute("aria-invalid");
                let _ = input.remove_attribute("aria-describedby");
            }
        }
    });
    move || {
        message.get().map(|message| {
            view! {
                <p class="field-error" id=format!("{field}-error") data-field=field>
                    {message}
                </p>
            }
        })
    }
}

/// The form-level message for errors that are not about one field. In the browser, a form
/// refused for its fields puts the focus on the first field named.
#[component]
pub fn FormMessage(error: Signal<Option<AppError>>) -> impl IntoView {
    #[cfg(target_arch = "wasm32")]
    Effect::new(move |_| {
        use wasm_bindgen::JsCast;
        error.with(|e| {
            let Some(AppError::Validation(fields)) = e else {
                return;
            };
            let first = fields.iter().find_map(|f| field_input(&f.field));
            if let Some(input) = first.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
                let _ = input.focus();
            }
        })
    });
    move || {
        error.get().map(|e| {
            view! {
                <p class="form-error" role="alert">
                    {e.to_string()}
                </p>
            }
        })
    }
}

#[component]
pub fn NotAllowed() -> impl IntoView {
    set_page_status(403);
    view! {
        <section class="card narrow">
            <h1>"Not allowed"</h1>
            <p>"Your account does not have access to this page."</p>
            <p><a href="/">"Go to your home page"</a></p>
        </section>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    set_page_status(404);
    view! {
        <section class="card narrow">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address."</p>
            <p><a href="/">"Go to your home page"</a></p>
        </section>
    }
}

/// The `?page=` of this URL: 1 when absent or not a number, and within the pages a list can
/// have (a number past a list's end then says so; the server functions refuse the rest).
pub fn use_page_query() -> Memo<i64> {
    let query = leptos_router::hooks::use_query_map();
    Memo::new(move |_| {
        query
            .read()
            .get("page")
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(1)
            .clamp(1, crate::validate::PAGE_MAX)
    })
}

/// One page of a list, with what a pager needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

impl<T> Page<T> {
    pub fn pages(&self) -> i64 {
        ((self.total + self.per_page - 1) / self.per_page).max(1)
    }
}

/// Previous / next links for a paged list; `href` is the link to page 1 with `{page}` where the
/// number goes (one shape of component for every list, not one per list).
#[component]
pub fn Pager(page: i64, pages: i64, total: i64, href: String) -> impl IntoView {
    let link = |p: i64| href.replace("{page}", &p.to_string());
    let prev = (page > 1).then(|| link(page - 1));
    let next = (page < pages).then(|| link(page + 1));
    view! {
        <nav class="pager" aria-label="Pages">
            {prev.map(|h| view! { <A href=h>"← Previous"</A> })}
            <span class="muted">{format!("Page {page} of {} · {total} in all", pages.max(1))}</span>
            {next.map(|h| view! { <A href=h>"Next →"</A> })}
        </nav>
    }
}

/// What a list says for a page number past its end, with the way back to its last page.
#[component]
pub fn PastTheEnd(pages: i64, href: String) -> impl IntoView {
    let pages = pages.max(1);
    let last = href.replace("{page}", &pages.to_string());
    let count = if pages == 1 {
        "1 page".to_string()
    } else {
        format!("{pages} pages")
    };
    view! {
        <p class="empty">
            {format!("This page is past the end of the list, which has {count}. ")}
            <A href=last>"Go to the last page"</A>
        </p>
    }
}

/// A device or account id, with a button that copies it to the clipboard.
#[component]
pub fn CopyId(id: String) -> impl IntoView {
    let status = RwSignal::new(None::<&'static str>);
    let value = id.clone();
    let copy = move |_| {
        #[cfg(target_arch = "wasm32")]
        {
            let value = value.clone();
            leptos::task::spawn_local(async move {
                let result = match web_sys::window() {
                    Some(window) => {
                        let promise = window.navigator().clipboard().write_text(&value);
                        wasm_bindgen_futures::JsFuture::from(promise).await.is_ok()
                    }
                    None => false,
                };
                status.set(Some(if result {
                    "Copied"
                } else {
                    "Copy failed: select the id and copy it"
                }));
            });
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = &value;
    };
    view! {
        <span class="copy-id">
            <code class="uuid" data-testid="device-id">{id}</code>
            <button type="button" class="small" on:click=copy>"Copy"</button>
            <span class="muted copy-status" aria-live="polite">{move || status.get()}</span>
        </span>
    }
}
