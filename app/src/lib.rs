//! The Energy Utility Platform's web app: wire types, server functions and pages, shared by the
//! server (feature `ssr`) and the browser (`hydrate`, or `csr` for the Trunk dev loop).

pub mod accounts;
pub mod auth;
pub mod codec;
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
pub mod preload;
#[cfg(feature = "ssr")]
pub mod sql;
#[cfg(feature = "ssr")]
pub mod state;

use leptos::prelude::*;
use leptos::tachys::view::iterators::StaticVec;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    any_nested_route::{AnyNestedRoute, IntoAnyNestedRoute},
    components::{Redirect, RouteChildren, Router, Routes, RoutesProps},
    path, ChooseView, NestedRoute, PossibleRouteMatch, SsrMode,
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
                // In the shell, which only the server renders, rather than as `leptos_meta`
                // components in `App`: those would be hydrated, and their code sent to every
                // visitor, for two tags that never change.
                <link rel="stylesheet" id="leptos" href="/pkg/energy.css"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
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
    use leptos_router::ChooseView;

    macro_rules! lazy_pages {
        ($($route:ident => $view:ident, $preload:ident: $page:path;)*) => {
            /// A page whose code is in a chunk of its own. One type for every such page, so
            /// that the router's code for a route's view (choosing it, preloading it) exists
            /// once in the first module rather than once per page.
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub enum Page {
                $($route,)*
            }

            impl ChooseView for Page {
                async fn choose(self) -> AnyView {
                    let view = match self {
                        $(Page::$route => $view().await,)*
                    };
                    // The server names the page's chunks in its head (`crate::preload`).
                    #[cfg(feature = "ssr")]
                    crate::preload::claim();
                    view
                }

                // The router awaits this before it hydrates the page: without it, the page's
                // chunk is still on its way when hydration reaches it, which fails.
                // `#[leptos::lazy]` names the loader `__preload_<function>`.
                async fn preload(&self) {
                    #[cfg(feature = "hydrate")]
                    match self {
                        $(Page::$route => $preload().await,)*
                    }
                }
            }

            $(
                #[cfg(not(feature = "csr"))]
                #[leptos::lazy]
                fn $view() -> AnyView {
                    use $page as PageView;
                    view! { <PageView/> }.into_any()
                }

                #[cfg(feature = "csr")]
                async fn $view() -> AnyView {
                    use $page as PageView;
                    view! { <PageView/> }.into_any()
                }
            )*
        };
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

/// Every route of the app.
///
/// The routes are type-erased (`AnyNestedRoute`) and kept in one list rather than written as
/// `<Route>` children: a tuple of 16 routes makes the router's matching and view code generic
/// over an `EitherOf16` of every route's types, instantiated in the first wasm module every
/// visitor loads; erased, that code exists once and each route adds only its own matcher (and
/// the split pages share one view type, [`pages::Page`]).
fn routes() -> StaticVec<AnyNestedRoute> {
    fn route<Segments, View>(path: Segments, view: View) -> AnyNestedRoute
    where
        Segments: PossibleRouteMatch + Clone + Send + Sync + 'static,
        View: ChooseView + Clone + Send + Sync + 'static,
    {
        // Every route waits for its data on the server (`SsrMode::Async`), so the first HTML
        // is complete even without JavaScript.
        NestedRoute::new(path, view)
            .ssr_mode(SsrMode::Async)
            .into_any_nested_route()
    }
    use pages::Page;
    vec![
        route(path!("/"), HomeRedirect),
        route(path!("/login"), LoginPage),
        route(path!("/account"), Page::MyAccount),
        route(
            path!("/admin"),
            || view! { <Redirect path="/admin/accounts"/> },
        ),
        route(path!("/admin/accounts"), Page::Accounts),
        route(path!("/admin/accounts/new"), Page::NewAccount),
        route(path!("/admin/accounts/:id"), Page::Account),
        route(path!("/admin/devices"), Page::Devices),
        route(path!("/admin/devices/new"), Page::NewDevice),
        route(path!("/admin/devices/:id"), Page::Device),
        route(path!("/admin/live"), Page::AdminLive),
        route(path!("/admin/dead-letters"), Page::DeadLetters),
        route(path!("/dashboard"), Page::Dashboard),
        route(path!("/alerts"), Page::Alerts),
        route(path!("/devices/:id/day"), Page::Day),
        route(path!("/devices/:id/month"), Page::Month),
    ]
    .into()
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let auth = Auth::provide();
    Live::provide(auth);
    view! {
        <Title formatter=|text: String| {
            if text.is_empty() { "Energy Utility".to_string() } else { format!("{text} · Energy Utility") }
        }/>
        <Router>
            <Header/>
            <main class="container">
                {Routes(
                    RoutesProps::builder()
                        .fallback(NotFound)
                        .children(RouteChildren::to_children(routes))
                        .build(),
                )}
            </main>
            <Toasts/>
        </Router>
    }
}
