use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use uuid::Uuid;

use super::{Device, Owner, OwnerFilter, PER_PAGE};
use crate::auth::Role;
use crate::entities::{devices, users};
use crate::error::AppError;
use crate::ui::Page;
use crate::validate::{self, Fields};

fn to_device(device: devices::Model, owner: Option<users::Model>) -> Device {
    Device {
        id: device.id,
        description: device.description,
        address: device.address,
        max_power_kw: device.max_power_kw,
        owner: owner.map(|u| Owner {
            id: u.id,
            username: u.username,
            display_name: u.display_name,
        }),
        created_at: device.created_at,
    }
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: OwnerFilter,
    page: i64,
) -> Result<Page<Device>, AppError> {
    let page = Ord::max(page, 1);
    let query = match filter {
        OwnerFilter::All => devices::Entity::find(),
        OwnerFilter::Unassigned => {
            devices::Entity::find().filter(devices::Column::OwnerId.is_null())
        }
        OwnerFilter::Client(id) => devices::Entity::find().filter(devices::Column::OwnerId.eq(id)),
    };
    let paginator = query
        .order_by_asc(devices::Column::Description)
        .order_by_asc(devices::Column::Id)
        .find_also_related(users::Entity)
        .paginate(db, PER_PAGE as u64);
    let total = paginator.num_items().await? as i64;
    let rows = paginator.fetch_page((page - 1) as u64).await?;
    Ok(Page {
        items: rows.into_iter().map(|(d, u)| to_device(d, u)).collect(),
        total,
        page,
        per_page: PER_PAGE,
    })
}

pub async fn get<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Device, AppError> {
    let (device, owner) = devices::Entity::find_by_id(id)
        .find_also_related(users::Entity)
        .one(db)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(to_device(device, owner))
}

pub async fn owned_by<C: ConnectionTrait>(db: &C, owner: Uuid) -> Result<Vec<Device>, AppError> {
    let rows = devices::Entity::find()
        .filter(devices::Column::OwnerId.eq(owner))
        .order_by_asc(devices::Column::Description)
        .find_also_related(users::Entity)
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|(d, u)| to_device(d, u)).collect())
}

/// The client `id` names, or a field error for `field`.
async fn client<C: ConnectionTrait>(db: &C, id: Uuid, field: &str) -> Result<Uuid, AppError> {
    match users::Entity::find_by_id(id).one(db).await? {
        Some(user) if user.role == Role::Client.as_str() => Ok(user.id),
        Some(_) => Err(AppError::field(
            field,
            "Devices can only be assigned to clients.",
        )),
        None => Err(AppError::field(field, "No such client.")),
    }
}

struct DeviceFields {
    description: String,
    address: String,
    max_power_kw: f64,
}

fn check_fields(
    fields: &mut Fields,
    description: &str,
    address: &str,
    max_power_kw: &str,
) -> Option<DeviceFields> {
    let description = fields.check("description", validate::description(description));
    let address = fields.check("address", validate::address(address));
    let max_power_kw = fields.check("max_power_kw", validate::max_power_kw(max_power_kw));
    Some(DeviceFields {
        description: description?,
        address: address?,
        max_power_kw: max_power_kw?,
    })
}

pub async fn create<C: ConnectionTrait>(
    db: &C,
    description: &str,
    address: &str,
    max_power_kw: &str,
    owner_id: &str,
) -> Result<Device, AppError> {
    let mut fields = Fields::default();
    let values = check_fields(&mut fields, description, address, max_power_kw);
    let owner = match owner_id.trim() {
        "" => None,
        other => fields.check(
            "owner_id",
            Uuid::parse_str(other).map_err(|_| "Not a valid client id.".to_string()),
        ),
    };
    fields.finish()?;
    let values = values.ok_or(AppError::Internal)?;
    let owner = match owner {
        Some(id) => Some(client(db, id, "owner_id").await?),
        None => None,
    };
    let model = devices::ActiveModel {
        id: Set(Uuid::new_v4()),
        description: Set(values.description),
        address: Set(values.address),
        max_power_kw: Set(values.max_power_kw),
        owner_id: Set(owner),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    tracing::info!(device = %model.id, "device created");
    get(db, model.id).await
}

pub async fn update<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    description: &str,
    address: &str,
    max_power_kw: &str,
) -> Result<Device, AppError> {
    let mut fields = Fields::default();
    let values = check_fields(&mut fields, description, address, max_power_kw);
    fields.finish()?;
    let values = values.ok_or(AppError::Internal)?;
    let existing = devices::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut model: devices::ActiveModel = existing.into();
    model.description = Set(values.description);
    model.address = Set(values.address);
    model.max_power_kw = Set(values.max_power_kw);
    model.update(db).await?;
    get(db, id).await
}

pub async fn set_owner<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    owner: Option<Uuid>,
) -> Result<Device, AppError> {
    let owner = match owner {
        Some(owner) => Some(client(db, owner, "client_id").await?),
        None => None,
    };
    let existing = devices::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut model: devices::ActiveModel = existing.into();
    model.owner_id = Set(owner);
    model.update(db).await?;
    tracing::info!(device = %id, owner = ?owner, "device assignment changed");
    get(db, id).await
}

pub async fn delete<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), AppError> {
    let result = devices::Entity::delete_by_id(id).exec(db).await?;
    if result.rows_affected == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(device = %id, "device deleted");
    Ok(())
}
