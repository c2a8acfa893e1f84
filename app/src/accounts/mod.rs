//! Accounts: admins manage client (and admin) accounts. Wire types and server functions; the
//! pages are in `pages`, the queries in `ssr`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Role;
use crate::error::AppError;
use crate::ui::Page;

mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

pub use pages::{AccountPage, AccountsPage, NewAccountPage};

/// Rows per page in the accounts list.
pub const PER_PAGE: i64 = 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// When it was created: RFC 3339, UTC (`2026-12-01T14:05:00Z`).
    pub created_at: String,
    pub device_count: i64,
}

/// A client as offered in pickers (assigning a device, filtering the device list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientOption {
    pub id: Uuid,
    pub label: String,
}

/// Accounts matching `q` (username or display name, any case), by role (`client`, `admin`, or
/// anything else for all), a page at a time.
#[server(prefix = "/api", endpoint = "list_accounts")]
pub async fn list_accounts(
    q: Option<String>,
    role: Option<String>,
    page: Option<i64>,
) -> Result<Page<Account>, AppError> {
    crate::auth::ssr::require_admin().await?;
    let role = role.as_deref().and_then(Role::parse);
    let q = crate::validate::search(q.as_deref().unwrap_or(""), "q")?;
    ssr::list(&crate::state::db()?, &q, role, page.unwrap_or(1)).await
}

#[server(prefix = "/api", endpoint = "get_account")]
pub async fn get_account(id: String) -> Result<Account, AppError> {
    crate::auth::ssr::require_admin().await?;
    let id = crate::validate::uuid(&id, "id")?;
    ssr::get(&crate::state::db()?, id).await
}

/// Creates an account and opens its page.
#[server(prefix = "/api", endpoint = "create_account")]
pub async fn create_account(
    username: String,
    display_name: String,
    password: String,
    role: Option<String>,
) -> Result<Account, AppError> {
    crate::auth::ssr::require_admin().await?;
    let role = match role.as_deref().unwrap_or("client") {
        "" | "client" => Role::Client,
        "admin" => Role::Admin,
        _ => return Err(AppError::field("role", "Choose client or admin.")),
    };
    let account = ssr::create(
        &crate::state::db()?,
        &username,
        &display_name,
        &password,
        role,
    )
    .await?;
    leptos_axum::redirect(&format!("/admin/accounts/{}?created=1", account.id));
    Ok(account)
}

/// Changes username and display name; a non-empty `password` resets the password and ends the
/// account's sessions.
#[server(prefix = "/api", endpoint = "update_account")]
pub async fn update_account(
    id: String,
    username: String,
    display_name: String,
    password: Option<String>,
) -> Result<Account, AppError> {
    crate::auth::ssr::require_admin().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let state = crate::state::state()?;
    let account = ssr::update(
        &state.db,
        id,
        &username,
        &display_name,
        password.as_deref().unwrap_or(""),
    )
    .await;
    // Whatever the answer (the change may be committed and the read after it failed): this
    // server shows the new name (or refuses the reset sessions) at once; other servers when
    // the reset's event reaches them, or a rename within their session cache's lifetime.
    state.live.sessions().ended(id, None);
    // Admins' cards name the owner (a rename has no event: others within the same lifetime).
    state.live.cards().all_changed();
    state.live.wake();
    account
}

/// Deletes an account: its devices become unassigned and its sessions end. An admin cannot
/// delete themselves or the last admin.
#[server(prefix = "/api", endpoint = "delete_account")]
pub async fn delete_account(id: String) -> Result<(), AppError> {
    let admin = crate::auth::ssr::require_admin().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let state = crate::state::state()?;
    let deleted = ssr::delete(&state.db, &admin, id).await;
    state.live.sessions().ended(id, None);
    state.live.wake();
    deleted?;
    leptos_axum::redirect("/admin/accounts?deleted=1");
    Ok(())
}

/// Every client, for pickers.
#[server(prefix = "/api", endpoint = "list_client_options")]
pub async fn list_client_options() -> Result<Vec<ClientOption>, AppError> {
    crate::auth::ssr::require_admin().await?;
    ssr::client_options(&crate::state::db()?).await
}
