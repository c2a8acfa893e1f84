//! Metered devices: admins create, edit, assign and delete them; clients see their own.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;
use crate::ui::Page;

mod pages;
#[cfg(feature = "ssr")]
pub mod ssr;

pub use pages::{DevicePage, DevicesPage, NewDevicePage, OwnerFilterForm};

/// Rows per page in the device list.
pub const PER_PAGE: i64 = 25;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Owner {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Also the meter's `sensor_id`.
    pub id: Uuid,
    pub description: String,
    pub address: String,
    pub max_power_kw: f64,
    pub owner: Option<Owner>,
    /// When it was created: RFC 3339, UTC (`2026-12-01T14:05:00Z`).
    pub created_at: String,
}

/// Which devices the admin list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerFilter {
    All,
    Unassigned,
    Client(Uuid),
}

impl OwnerFilter {
    /// `all` (or empty), `unassigned`, or a client's id.
    pub fn parse(value: &str) -> Result<OwnerFilter, AppError> {
        match value.trim() {
            "" | "all" => Ok(OwnerFilter::All),
            "unassigned" => Ok(OwnerFilter::Unassigned),
            other => crate::validate::uuid(other, "owner").map(OwnerFilter::Client),
        }
    }
}

#[server(prefix = "/api", endpoint = "list_devices")]
pub async fn list_devices(
    owner: Option<String>,
    page: Option<i64>,
) -> Result<Page<Device>, AppError> {
    crate::auth::ssr::require_admin().await?;
    let filter = OwnerFilter::parse(owner.as_deref().unwrap_or(""))?;
    ssr::list(&crate::state::db()?, filter, page.unwrap_or(1)).await
}

/// One device: any for an admin, only their own for a client (another's is `NotFound`).
#[server(prefix = "/api", endpoint = "get_device")]
pub async fn get_device(id: String) -> Result<Device, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let device = ssr::get(&crate::state::db()?, id).await?;
    let visible = user.role == crate::auth::Role::Admin
        || device.owner.as_ref().is_some_and(|o| o.id == user.id);
    if visible {
        Ok(device)
    } else {
        Err(AppError::NotFound)
    }
}

/// The signed-in user's own devices.
#[server(prefix = "/api", endpoint = "list_my_devices")]
pub async fn list_my_devices() -> Result<Vec<Device>, AppError> {
    let user = crate::auth::ssr::current_user().await?;
    ssr::owned_by(&crate::state::db()?, user.id).await
}

/// Creates a device (optionally assigned at once) and opens its page. `meter_id` is the id its
/// meter sends as `sensor_id`; left out or blank, a new one is made.
#[server(prefix = "/api", endpoint = "create_device")]
pub async fn create_device(
    description: String,
    address: String,
    max_power_kw: String,
    owner_id: Option<String>,
    meter_id: Option<String>,
) -> Result<Device, AppError> {
    crate::auth::ssr::require_admin().await?;
    let state = crate::state::state()?;
    let device = ssr::create(
        &state.db,
        &description,
        &address,
        &max_power_kw,
        owner_id.as_deref().unwrap_or(""),
        meter_id.as_deref().unwrap_or(""),
    )
    .await?;
    state.live.wake();
    leptos_axum::redirect(&format!("/admin/devices/{}?created=1", device.id));
    Ok(device)
}

#[server(prefix = "/api", endpoint = "update_device")]
pub async fn update_device(
    id: String,
    description: String,
    address: String,
    max_power_kw: String,
) -> Result<Device, AppError> {
    crate::auth::ssr::require_admin().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let state = crate::state::state()?;
    let device = ssr::update(&state.db, id, &description, &address, &max_power_kw).await?;
    state.live.wake();
    Ok(device)
}

/// Assigns the device to a client.
#[server(prefix = "/api", endpoint = "assign_device")]
pub async fn assign_device(id: String, client_id: String) -> Result<Device, AppError> {
    crate::auth::ssr::require_admin().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let client_id = crate::validate::uuid(&client_id, "client_id")?;
    let state = crate::state::state()?;
    let device = ssr::set_owner(&state.db, id, Some(client_id)).await?;
    state.live.wake();
    Ok(device)
}

#[server(prefix = "/api", endpoint = "unassign_device")]
pub async fn unassign_device(id: String) -> Result<Device, AppError> {
    crate::auth::ssr::require_admin().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let state = crate::state::state()?;
    let device = ssr::set_owner(&state.db, id, None).await?;
    state.live.wake();
    Ok(device)
}

#[server(prefix = "/api", endpoint = "delete_device")]
pub async fn delete_device(id: String) -> Result<(), AppError> {
    crate::auth::ssr::require_admin().await?;
    let id = crate::validate::uuid(&id, "id")?;
    let state = crate::state::state()?;
    ssr::delete(&state.db, id).await?;
    state.live.wake();
    leptos_axum::redirect("/admin/devices?deleted=1");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_filter_parses() {
        assert_eq!(OwnerFilter::parse("").unwrap(), OwnerFilter::All);
        assert_eq!(
            OwnerFilter::parse("unassigned").unwrap(),
            OwnerFilter::Unassigned
        );
        let id = Uuid::new_v4();
        assert_eq!(
            OwnerFilter::parse(&id.to_string()).unwrap(),
            OwnerFilter::Client(id)
        );
        assert!(matches!(
            OwnerFilter::parse("bogus"),
            Err(AppError::Validation(_))
        ));
    }
}
