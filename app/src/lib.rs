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
    path, SsrMode,
};

use crate::accounts::{AccountPage, AccountsPage, NewAccountPage};
use crate::auth::{Auth, HomeRedirect, LoginPage, MyAccountPage};
use crate::dead_letters::DeadLettersPage;
use crate::devices::{DevicePage, DevicesPage, NewDevicePage};
use crate::history::{DayPage, MonthPage};
use crate::live::{AdminLivePage, AlertsPage, DashboardPage, Live, Toasts};
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
                    <Route path=path!("/account") view=MyAccountPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view=|| view! { <leptos_router::components::Redirect path="/admin/accounts"/> } ssr=SsrMode::Async/>
                    <Route path=path!("/admin/accounts") view=AccountsPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/accounts/new") view=NewAccountPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/accounts/:id") view=AccountPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/devices") view=DevicesPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/devices/new") view=NewDevicePage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/devices/:id") view=DevicePage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/live") view=AdminLivePage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/dead-letters") view=DeadLettersPage ssr=SsrMode::Async/>
                    <Route path=path!("/dashboard") view=DashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/alerts") view=AlertsPage ssr=SsrMode::Async/>
                    <Route path=path!("/devices/:id/day") view=DayPage ssr=SsrMode::Async/>
                    <Route path=path!("/devices/:id/month") view=MonthPage ssr=SsrMode::Async/>
                </Routes>
            </main>
            <Toasts/>
        </Router>
    }
}
