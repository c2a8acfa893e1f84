use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Set, TransactionTrait,
};
use uuid::Uuid;

use super::{Device, Owner, OwnerFilter, PER_PAGE};
use crate::auth::Role;
use crate::entities::{devices, users};
use crate::error::AppError;
use crate::live::ssr::{append, Outgoing};
use crate::live::{DeviceEvent, LiveEvent};
use crate::sql::begin_write;
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
        created_at: crate::time::rfc3339(device.created_at),
    }
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: OwnerFilter,
    page: i64,
) -> Result<Page<Device>, AppError> {
    list_page(db, filter, page, PER_PAGE).await
}

/// One page of `per_page` devices, by description.
pub async fn list_page<C: ConnectionTrait>(
    db: &C,
    filter: OwnerFilter,
    page: i64,
    per_page: i64,
) -> Result<Page<Device>, AppError> {
    let page = crate::validate::page(Some(page))?;
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
        .paginate(db, per_page as u64);
    let rows = paginator.fetch_page((page - 1) as u64).await?;
    // A first page that is not full holds them all: no count to ask for (a client's dashboard).
    let total = if page == 1 && (rows.len() as i64) < per_page {
        rows.len() as i64
    } else {
        paginator.num_items().await? as i64
    };
    Ok(Page {
        items: rows.into_iter().map(|(d, u)| to_device(d, u)).collect(),
        total,
        page,
        per_page,
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

pub async fn create<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    db: &C,
    description: &str,
    address: &str,
    max_power_kw: &str,
    owner_id: &str,
    meter_id: &str,
) -> Result<Device, AppError> {
    let mut fields = Fields::default();
    let values = check_fields(&mut fields, description, address, max_power_kw);
    let id = match meter_id.trim() {
        "" => Some(Uuid::new_v4()),
        other => fields.check("meter_id", validate::meter_id(other)),
    };
    let owner = match owner_id.trim() {
        "" => None,
        other => fields.check(
            "owner_id",
            Uuid::parse_str(other).map_err(|_| "Not a valid client id.".to_string()),
        ),
    };
    fields.finish()?;
    let (values, id) = values.zip(id).ok_or(AppError::Internal)?;
    let owner = match owner {
        Some(id) => Some(client(db, id, "owner_id").await?),
        None => None,
    };
    let taken = || AppError::field("meter_id", "A device with this meter id already exists.");
    let txn = begin_write(db).await?;
    if devices::Entity::find_by_id(id).one(&txn).await?.is_some() {
        return Err(taken());
    }
    let model = devices::ActiveModel {
        id: Set(id),
        description: Set(values.description),
        address: Set(values.address),
        max_power_kw: Set(values.max_power_kw),
        owner_id: Set(owner),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await;
    let model = match model {
        Ok(model) => model,
        Err(error) => {
            drop(txn);
            // Another admin registered the same meter meanwhile.
            if devices::Entity::find_by_id(id).one(db).await?.is_some() {
                return Err(taken());
            }
            return Err(error.into());
        }
    };
    let event = device_event(&model);
    append(
        &txn,
        &[Outgoing::about_device(
            model.owner_id,
            if model.owner_id.is_some() {
                LiveEvent::DeviceAssigned(event)
            } else {
                LiveEvent::DeviceChanged(event)
            },
        )],
    )
    .await?;
    txn.commit().await?;
    tracing::info!(device = %model.id, "device created");
    get(db, model.id).await
}

fn device_event(model: &devices::Model) -> DeviceEvent {
    DeviceEvent {
        device_id: model.id,
        description: model.description.clone(),
        owner_id: model.owner_id,
    }
}

pub async fn update<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
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
    let txn = begin_write(db).await?;
    let existing = devices::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut model: devices::ActiveModel = existing.into();
    model.description = Set(values.description);
    model.address = Set(values.address);
    model.max_power_kw = Set(values.max_power_kw);
    let model = model.update(&txn).await?;
    append(
        &txn,
        &[Outgoing::about_device(
            model.owner_id,
            LiveEvent::DeviceChanged(device_event(&model)),
        )],
    )
    .await?;
    txn.commit().await?;
    get(db, id).await
}

pub async fn set_owner<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    db: &C,
    id: Uuid,
    owner: Option<Uuid>,
) -> Result<Device, AppError> {
    let owner = match owner {
        Some(owner) => Some(client(db, owner, "client_id").await?),
        None => None,
    };
    let txn = begin_write(db).await?;
    let existing = devices::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound)?;
    let before = existing.owner_id;
    let mut model: devices::ActiveModel = existing.into();
    model.owner_id = Set(owner);
    let model = model.update(&txn).await?;
    append(&txn, &ownership_events(&model, before)).await?;
    txn.commit().await?;
    tracing::info!(device = %id, owner = ?owner, "device assignment changed");
    get(db, id).await
}

/// What a change of owner from `before` tells the old owner and the new one (and the admins).
fn ownership_events(model: &devices::Model, before: Option<Uuid>) -> Vec<Outgoing> {
    if before == model.owner_id {
        return Vec::new();
    }
    let mut events = Vec::new();
    if let Some(old) = before {
        events.push(Outgoing::about_device(
            Some(old),
            LiveEvent::DeviceUnassigned(device_event(model)),
        ));
    }
    if model.owner_id.is_some() {
        events.push(Outgoing::about_device(
            model.owner_id,
            LiveEvent::DeviceAssigned(device_event(model)),
        ));
    }
    events
}

pub async fn delete<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    db: &C,
    id: Uuid,
) -> Result<(), AppError> {
    let txn = begin_write(db).await?;
    let existing = devices::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound)?;
    devices::Entity::delete_by_id(id).exec(&txn).await?;
    append(
        &txn,
        &[Outgoing::about_device(
            existing.owner_id,
            LiveEvent::DeviceDeleted(device_event(&existing)),
        )],
    )
    .await?;
    txn.commit().await?;
    tracing::info!(device = %id, "device deleted");
    Ok(())
}
