use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use super::{Account, ClientOption, PER_PAGE};
use crate::auth::ssr::{end_sessions_of, hash_password, insert_user, username_conflict};
use crate::auth::{CurrentUser, Role};
use crate::entities::{devices, users};
use crate::error::AppError;
use crate::live::ssr::{append, Outgoing};
use crate::live::{DeviceEvent, LiveEvent};
use crate::ui::Page;
use crate::validate::{self, Fields};

fn lower(column: users::Column) -> Expr {
    Expr::expr(Func::lower(Expr::col(column)))
}

/// `%q%` in lower case, with LIKE's wildcards in `q` escaped by `\\` so they match literally.
fn contains_text(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn contains_pattern(q: &str) -> LikeExpr {
    LikeExpr::new(contains_text(q)).escape('\\')
}

async fn device_counts<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, i64>, AppError> {
    #[derive(FromQueryResult)]
    struct Row {
        owner_id: Uuid,
        n: i64,
    }
    let rows = devices::Entity::find()
        .select_only()
        .column(devices::Column::OwnerId)
        .column_as(devices::Column::Id.count(), "n")
        .filter(devices::Column::OwnerId.is_in(ids.iter().copied()))
        .group_by(devices::Column::OwnerId)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| (r.owner_id, r.n)).collect())
}

fn to_account(user: users::Model, device_count: i64) -> Account {
    Account {
        id: user.id,
        role: Role::parse(&user.role).unwrap_or(Role::Client),
        username: user.username,
        display_name: user.display_name,
        created_at: crate::time::rfc3339(user.created_at),
        device_count,
    }
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    q: &str,
    role: Option<Role>,
    page: i64,
) -> Result<Page<Account>, AppError> {
    let page = crate::validate::page(Some(page))?;
    let mut query = users::Entity::find();
    if let Some(role) = role {
        query = query.filter(users::Column::Role.eq(role.as_str()));
    }
    let q = q.trim();
    if !q.is_empty() {
        query = query.filter(
            Condition::any()
                .add(lower(users::Column::Username).like(contains_pattern(q)))
                .add(lower(users::Column::DisplayName).like(contains_pattern(q))),
        );
    }
    let paginator = query
        .order_by_asc(lower(users::Column::Username))
        .paginate(db, PER_PAGE as u64);
    let total = paginator.num_items().await? as i64;
    let users = paginator.fetch_page((page - 1) as u64).await?;
    let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
    let counts = device_counts(db, &ids).await?;
    let items = users
        .into_iter()
        .map(|u| {
            let n = counts.get(&u.id).copied().unwrap_or(0);
            to_account(u, n)
        })
        .collect();
    Ok(Page {
        items,
        total,
        page,
        per_page: PER_PAGE,
    })
}

pub async fn get<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Account, AppError> {
    let user = users::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AppError::NotFound)?;
    let n = device_counts(db, &[id])
        .await?
        .get(&id)
        .copied()
        .unwrap_or(0);
    Ok(to_account(user, n))
}

pub async fn create<C: ConnectionTrait>(
    db: &C,
    username: &str,
    display_name: &str,
    password: &str,
    role: Role,
) -> Result<Account, AppError> {
    let mut fields = Fields::default();
    let username = fields.check("username", validate::username(username));
    let display_name = fields.check("display_name", validate::display_name(display_name));
    let password = fields.check("password", validate::password(password));
    fields.finish()?;
    let (Some(username), Some(display_name), Some(password)) = (username, display_name, password)
    else {
        return Err(AppError::Internal);
    };
    let user = insert_user(db, &username, &display_name, role, &password).await?;
    tracing::info!(account = %user.id, role = role.as_str(), "account created");
    Ok(to_account(user, 0))
}

pub async fn update<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    db: &C,
    id: Uuid,
    username: &str,
    display_name: &str,
    password: &str,
) -> Result<Account, AppError> {
    let mut fields = Fields::default();
    let username = fields.check("username", validate::username(username));
    let display_name = fields.check("display_name", validate::display_name(display_name));
    let password = if password.is_empty() {
        None
    } else {
        fields.check("password", validate::password(password))
    };
    fields.finish()?;
    let (Some(username), Some(display_name)) = (username, display_name) else {
        return Err(AppError::Internal);
    };
    let new_hash = match password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };

    let txn = crate::sql::begin_write(db).await?;
    let existing = users::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut model: users::ActiveModel = existing.into();
    model.username = Set(username);
    model.display_name = Set(display_name);
    let reset = new_hash.is_some();
    if let Some(hash) = new_hash {
        model.password_hash = Set(hash);
    }
    model.update(&txn).await.map_err(username_conflict)?;
    if reset {
        end_sessions_of(&txn, id).await?;
    }
    txn.commit().await?;
    tracing::info!(account = %id, password_reset = reset, "account updated");
    get(db, id).await
}

pub async fn delete<C: ConnectionTrait + TransactionTrait<Transaction = DatabaseTransaction>>(
    db: &C,
    acting: &CurrentUser,
    id: Uuid,
) -> Result<(), AppError> {
    if acting.id == id {
        return Err(AppError::Conflict(
            "You cannot delete your own account.".into(),
        ));
    }
    let txn = crate::sql::begin_write(db).await?;
    let target = users::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or(AppError::NotFound)?;
    if target.role == Role::Admin.as_str() {
        // Row locks (PostgreSQL) keep two admins from deleting each other at the same time.
        let admins = users::Entity::find()
            .filter(users::Column::Role.eq(Role::Admin.as_str()))
            .lock_exclusive()
            .all(&txn)
            .await?;
        if admins.len() <= 1 {
            return Err(AppError::Conflict(
                "The last admin cannot be deleted.".into(),
            ));
        }
    }
    let owned = devices::Entity::find()
        .filter(devices::Column::OwnerId.eq(id))
        .all(&txn)
        .await?;
    devices::Entity::update_many()
        .col_expr(devices::Column::OwnerId, Expr::value(Option::<Uuid>::None))
        .filter(devices::Column::OwnerId.eq(id))
        .exec(&txn)
        .await?;
    let unassigned: Vec<Outgoing> = owned
        .into_iter()
        .map(|d| {
            Outgoing::about_device(
                Some(id),
                LiveEvent::DeviceUnassigned(DeviceEvent {
                    device_id: d.id,
                    description: d.description,
                    owner_id: None,
                }),
            )
        })
        .collect();
    append(&txn, &unassigned).await?;
    end_sessions_of(&txn, id).await?;
    users::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    tracing::info!(account = %id, by = %acting.id, at = %Utc::now(), "account deleted");
    Ok(())
}

pub async fn client_options<C: ConnectionTrait>(db: &C) -> Result<Vec<ClientOption>, AppError> {
    let clients = users::Entity::find()
        .filter(users::Column::Role.eq(Role::Client.as_str()))
        .order_by_asc(lower(users::Column::DisplayName))
        .all(db)
        .await?;
    Ok(clients
        .into_iter()
        .map(|u| ClientOption {
            id: u.id,
            label: format!("{} ({})", u.display_name, u.username),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::contains_text;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(contains_text("50%_Off"), "%50\\%\\_off%");
        assert_eq!(contains_text("a\\b"), "%a\\\\b%");
    }
}
