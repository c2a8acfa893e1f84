//! The Energy Utility Platform's web app: wire types, server functions and pages, shared by the
//! server (feature `ssr`) and the browser (`hydrate`, or `csr` for the Trunk dev loop).

pub mod accounts;
pub mod auth;
pub mod dead_letters;
pub mod devices;
pub mod error;
pub mod history;
pub mod live;
pub mod time;
pub mod ui;
pub mod validate;

#[cfg(feature = "ssr")]
pub mod csp;
#[cfg(feature = "ssr")]
pub mod entities;
#[cfg(feature = "ssr")]
pub mod memo;
#[cfg(feature = "ssr")]
pub mod sql;
#[cfg(feature = "ssr")]
pub mod state;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Link, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, Lazy, SsrMode,
};

use crate::auth::{Auth, HomeRedirect, LoginPage};
use crate::live::{Live, Toasts};
use crate::ui::{Header, NotFound};

/// The HTML document the server renders around [`App`].
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    csp::set_page_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The pages that are not part of the first wasm module.
///
/// The sign-in page, the home redirect and "not found" are in the module every visitor loads;
/// every other page is a route of its own that `cargo leptos build --split` cuts out into a
/// chunk the browser fetches when the page is first shown (the server names the chunks of the
/// page it renders as preloads, so a signed-in first load fetches them beside the main module).
/// The first page a visitor sees, sign-in, downloads only what it needs.
///
/// A hydrate build must be split: without `--split` the module keeps imports from a placeholder
/// module and does not start. The Trunk build (`csr`) has no splitter, so there the same pages
/// are plain async functions in one module.
pub mod pages {
    use leptos::prelude::*;
    use leptos_router::LazyRoute;

    macro_rules! lazy_pages {
        ($($route:ident => $view:ident, $preload:ident: $page:path;)*) => {$(
            pub struct $route;

            impl LazyRoute for $route {
                fn data() -> Self {
                    $route
                }

                async fn view(_: Self) -> AnyView {
                    $view().await
                }

                // The router awaits this before it hydrates the page: without it, the page's
                // chunk is still on its way when hydration reaches it, which fails.
                // `#[leptos::lazy]` names the loader `__preload_<function>`.
                #[cfg(feature = "hydrate")]
                async fn preload() {
                    $preload().await
                }
            }

            #[cfg(not(feature = "csr"))]
            #[leptos::lazy]
            fn $view() -> AnyView {
                use $page as Page;
                view! { <Page/> }.into_any()
            }

            #[cfg(feature = "csr")]
            async fn $view() -> AnyView {
                use $page as Page;
                view! { <Page/> }.into_any()
            }
        )*};
    }

    lazy_pages! {
        MyAccount => my_account_page, __preload_my_account_page: crate::auth::MyAccountPage;
        Accounts => accounts_page, __preload_accounts_page: crate::accounts::AccountsPage;
        NewAccount => new_account_page, __preload_new_account_page: crate::accounts::NewAccountPage;
        Account => account_page, __preload_account_page: crate::accounts::AccountPage;
        Devices => devices_page, __preload_devices_page: crate::devices::DevicesPage;
        NewDevice => new_device_page, __preload_new_device_page: crate::devices::NewDevicePage;
        Device => device_page, __preload_device_page: crate::devices::DevicePage;
        AdminLive => admin_live_page, __preload_admin_live_page: crate::live::AdminLivePage;
        DeadLetters => dead_letters_page, __preload_dead_letters_page:
            crate::dead_letters::DeadLettersPage;
        Dashboard => dashboard_page, __preload_dashboard_page: crate::live::DashboardPage;
        Alerts => alerts_page, __preload_alerts_page: crate::live::AlertsPage;
        Day => day_page, __preload_day_page: crate::history::DayPage;
        Month => month_page, __preload_month_page: crate::history::MonthPage;
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let auth = Auth::provide();
    Live::provide(auth);
    view! {
        <Stylesheet id="leptos" href="/pkg/energy.css"/>
        // Every route waits for its data on the server (`SsrMode::Async`), so the first HTML is
        // complete even without JavaScript.
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg"/>
        <Title formatter=|text: String| {
            if text.is_empty() { "Energy Utility".to_string() } else { format!("{text} · Energy Utility") }
        }/>
        <Router>
            <Header/>
            <main class="container">
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=HomeRedirect ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/account") view={Lazy::<pages::MyAccount>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view=|| view! { <leptos_router::components::Redirect path="/admin/accounts"/> } ssr=SsrMode::Async/>
                    <Route path=path!("/admin/accounts") view={Lazy::<pages::Accounts>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/accounts/new") view={Lazy::<pages::NewAccount>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/accounts/:id") view={Lazy::<pages::Account>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/devices") view={Lazy::<pages::Devices>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/devices/new") view={Lazy::<pages::NewDevice>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/devices/:id") view={Lazy::<pages::Device>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/live") view={Lazy::<pages::AdminLive>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/admin/dead-letters") view={Lazy::<pages::DeadLetters>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/dashboard") view={Lazy::<pages::Dashboard>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/alerts") view={Lazy::<pages::Alerts>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/devices/:id/day") view={Lazy::<pages::Day>::new()} ssr=SsrMode::Async/>
                    <Route path=path!("/devices/:id/month") view={Lazy::<pages::Month>::new()} ssr=SsrMode::Async/>
                </Routes>
            </main>
            <Toasts/>
        </Router>
    }
}
