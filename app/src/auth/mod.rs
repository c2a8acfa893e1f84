//! Accounts' identity: who is signed in, signing in and out, and the role gate around pages.

use leptos::prelude::*;
use leptos_router::{components::Redirect, hooks::use_location, hooks::use_query_map};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;
use crate::ui::{ErrorBox, FieldMessage, NotAllowed};

mod account;
#[cfg(feature = "ssr")]
pub mod cache;
#[cfg(feature = "ssr")]
pub mod ssr;
#[cfg(feature = "ssr")]
pub mod throttle;

pub use account::MyAccountPage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Client => "client",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "admin" => Some(Role::Admin),
            "client" => Some(Role::Client),
            _ => None,
        }
    }

    /// Where this role lands after signing in.
    pub fn home(self) -> &'static str {
        match self {
            Role::Admin => "/admin/accounts",
            Role::Client => "/dashboard",
        }
    }
}

/// The signed-in user, as the browser sees them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrentUser {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
}

/// Signs in and redirects to `next` (a local path) or the role's home page.
#[server(prefix = "/api", endpoint = "login")]
pub async fn login(
    username: String,
    password: String,
    next: Option<String>,
) -> Result<(), AppError> {
    let user = ssr::sign_in(&username, &password).await?;
    let target = next
        .filter(|n| ssr::is_local_path(n))
        .unwrap_or_else(|| user.role.home().to_owned());
    leptos_axum::redirect(&target);
    Ok(())
}

/// Ends the session server-side and clears the cookie.
#[server(prefix = "/api", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    ssr::sign_out().await?;
    leptos_axum::redirect("/login");
    Ok(())
}

/// Changes the signed-in user's own password (`current`, then `new` twice); their other
/// sessions end, this one goes on.
#[server(prefix = "/api", endpoint = "change_password")]
pub async fn change_password(
    current: String,
    new: String,
    confirm: String,
) -> Result<(), AppError> {
    ssr::change_password(&current, &new, &confirm).await
}

/// The signed-in user, or `None` for an anonymous visitor.
#[server(prefix = "/api", endpoint = "get_current_user")]
pub async fn get_current_user() -> Result<Option<CurrentUser>, AppError> {
    ssr::optional_user().await
}

/// Sign-in state shared by every page: the user, and the actions that change it.
#[derive(Clone, Copy)]
pub struct Auth {
    pub user: Resource<Result<Option<CurrentUser>, AppError>, crate::codec::Json>,
    pub login: ServerAction<Login>,
    pub logout: ServerAction<Logout>,
}

impl Auth {
    pub fn provide() -> Auth {
        let login = ServerAction::<Login>::new();
        let logout = ServerAction::<Logout>::new();
        let user = crate::codec::resource(
            move || (login.version().get(), logout.version().get()),
            |_| get_current_user(),
        );
        let auth = Auth {
            user,
            login,
            logout,
        };
        provide_context(auth);
        auth
    }
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

/// Renders `children` only for a signed-in user of `role` (any role when `None`); sends an
/// anonymous visitor to the login page and shows "not allowed" to a user of another role.
///
/// While rendering on the server, `Suspense` walks its children several times (to find what
/// they load), and builds them anew each time: a resource made inside `children` is fetched,
/// and sent with the page, that many times. Pages therefore make their resources themselves,
/// outside `Gate`, and pass them in.
#[component]
pub fn Gate(#[prop(optional)] role: Option<Role>, children: ChildrenFn) -> impl IntoView {
    let auth = use_auth();
    let location = use_location();
    let children = StoredValue::new(children);
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match auth.user.await {
                    Ok(Some(user)) if role.is_none_or(|r| r == user.role) => {
                        children.read_value()().into_any()
                    }
                    Ok(Some(_)) => view! { <NotAllowed/> }.into_any(),
                    Ok(None) => {
                        let here = location.pathname.get_untracked();
                        let search = location.search.get_untracked();
                        let next = if search.is_empty() { here } else { format!("{here}?{search}") };
                        let path = format!("/login?next={}", crate::ui::encode_component(&next));
                        view! { <Redirect path/> }.into_any()
                    }
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// Redirects a signed-in visitor to their home page, and anyone else to the login page.
#[component]
pub fn HomeRedirect() -> impl IntoView {
    let auth = use_auth();
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                let path = match auth.user.await {
                    Ok(Some(user)) => user.role.home(),
                    _ => "/login",
                };
                view! { <Redirect path/> }
            })}
        </Suspense>
    }
}

/// The sign-in form. A plain HTML form that posts to the `login` server function, so it works
/// before the wasm has loaded (or without it); once hydrated, submitting dispatches the action
/// instead. It is not an `ActionForm`: that decodes the form's fields with `serde_qs`, which
/// would put a query-string parser in the first module every visitor downloads, for three
/// fields the page can read itself.
#[component]
pub fn LoginPage() -> impl IntoView {
    use leptos::server_fn::ServerFn;
    let auth = use_auth();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let error = Signal::derive(move || auth.login.value().get().and_then(Result::err));
    let pending = auth.login.pending();
    let username = NodeRef::<leptos::html::Input>::new();
    let password = NodeRef::<leptos::html::Input>::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let value = |input: NodeRef<leptos::html::Input>| {
            input.get_untracked().map(|i| i.value()).unwrap_or_default()
        };
        let next = query.read_untracked().get("next").filter(|n| !n.is_empty());
        auth.login.dispatch(Login {
            username: value(username),
            password: value(password),
            next,
        });
    };
    view! {
        <section class="card narrow">
            <h1>"Sign in"</h1>
            <p class="muted">"Energy Utility Platform: accounts, meters and consumption."</p>
            <form action=Login::url() method="post" on:submit=submit>
                <input type="hidden" name="next" value=next/>
                <label for="login-username">"Username"</label>
                <input
                    id="login-username"
                    name="username"
                    autocomplete="username"
                    required
                    node_ref=username
                />
                <FieldMessage error field="username"/>
                <label for="login-password">"Password"</label>
                <input
                    id="login-password"
                    name="password"
                    type="password"
                    autocomplete="current-password"
                    required
                    node_ref=password
                />
                <FieldMessage error field="password"/>
                {move || {
                    error
                        .get()
                        .filter(|e| !matches!(e, AppError::Validation(_)))
                        .map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })
                }}
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
        </section>
    }
}
