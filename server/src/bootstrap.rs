//! Accounts that exist before anyone can sign in: the first admin (from configuration or the
//! `create-admin` command) and the demo accounts.

use app::auth::{ssr::insert_user, Role};
use app::entities::{devices, users};
use app::error::AppError;
use app::validate;
use chrono::Utc;
use rand::{distr::Alphanumeric, Rng};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    Set,
};
use uuid::Uuid;

/// Why an admin could not be created.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    App(String),
}

impl From<AppError> for BootstrapError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Validation(errors) => {
                let first = errors.into_iter().next();
                BootstrapError::Invalid {
                    field: first.as_ref().map(|e| e.field.clone()).unwrap_or_default(),
                    message: first.map(|e| e.message).unwrap_or_default(),
                }
            }
            other => BootstrapError::App(other.to_string()),
        }
    }
}

pub async fn admin_count(db: &DatabaseConnection) -> Result<u64, sea_orm::DbErr> {
    users::Entity::find()
        .filter(users::Column::Role.eq(Role::Admin.as_str()))
        .count(db)
        .await
}

/// Creates an admin account after checking the same rules as the admin area.
pub async fn create_admin(
    db: &DatabaseConnection,
    username: &str,
    display_name: &str,
    password: &str,
) -> Result<users::Model, BootstrapError> {
    let invalid = |field: &str, message: String| BootstrapError::Invalid {
        field: field.into(),
        message,
    };
    let username = validate::username(username).map_err(|m| invalid("username", m))?;
    let display_name =
        validate::display_name(display_name).map_err(|m| invalid("display name", m))?;
    let password = validate::password(password).map_err(|m| invalid("password", m))?;
    Ok(insert_user(db, &username, &display_name, Role::Admin, &password).await?)
}

/// Creates the configured admin when no admin exists yet.
pub async fn ensure_admin(
    db: &DatabaseConnection,
    username: Option<&str>,
    password: Option<&str>,
) -> anyhow::Result<()> {
    if admin_count(db).await? > 0 {
        return Ok(());
    }
    match (username, password) {
        (Some(username), Some(password)) => {
            let admin = create_admin(db, username, "Administrator", password)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot create the admin from ADMIN_USERNAME/ADMIN_PASSWORD: {e}"
                    )
                })?;
            tracing::info!(admin = %admin.username, "created the first admin");
        }
        (Some(_), None) | (None, Some(_)) => {
            anyhow::bail!("set both ADMIN_USERNAME and ADMIN_PASSWORD to create the first admin")
        }
        (None, None) => tracing::warn!(
            "no admin account exists: set ADMIN_USERNAME and ADMIN_PASSWORD, run `server \
             create-admin --username NAME`, or start with DEMO=1"
        ),
    }
    Ok(())
}

fn random_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

/// A demo account and the password it has for this run.
pub struct DemoLogin {
    pub username: &'static str,
    pub role: Role,
    pub password: String,
}

const DEMO_ACCOUNTS: [(&str, &str, Role); 3] = [
    ("demo-admin", "Demo Administrator", Role::Admin),
    ("alice", "Alice Popescu", Role::Client),
    ("bob", "Bob Ionescu", Role::Client),
];

const DEMO_DEVICES: [(&str, &str, f64, usize); 4] = [
    ("Heat pump", "Str. Memorandumului 28, Cluj-Napoca", 6.0, 1),
    ("Main meter", "Str. Memorandumului 28, Cluj-Napoca", 11.0, 1),
    ("Bakery oven", "Piata Unirii 3, Cluj-Napoca", 25.0, 2),
    ("Spare meter", "Depot, Str. Fabricii 1, Cluj-Napoca", 5.0, 0),
];

/// Makes sure the demo accounts and devices exist and gives the accounts fresh random passwords,
/// which are returned so they can be printed.
pub async fn seed_demo(db: &DatabaseConnection) -> anyhow::Result<Vec<DemoLogin>> {
    let mut logins = Vec::new();
    let mut ids = Vec::new();
    for (username, display_name, role) in DEMO_ACCOUNTS {
        let password = random_password();
        let user = match app::auth::ssr::find_by_username(db, username).await? {
            Some(user) => {
                let hash = app::auth::ssr::hash_password(password.clone()).await?;
                let mut model: users::ActiveModel = user.into();
                model.password_hash = Set(hash);
                model.update(db).await?
            }
            None => insert_user(db, username, display_name, role, &password).await?,
        };
        ids.push(user.id);
        logins.push(DemoLogin {
            username,
            role,
            password,
        });
    }
    let demo_clients = &ids[1..];
    let existing = devices::Entity::find()
        .filter(devices::Column::OwnerId.is_in(demo_clients.iter().copied()))
        .count(db)
        .await?;
    if existing == 0 {
        for (description, address, max_power_kw, owner) in DEMO_DEVICES {
            devices::ActiveModel {
                id: Set(Uuid::new_v4()),
                description: Set(description.into()),
                address: Set(address.into()),
                max_power_kw: Set(max_power_kw),
                owner_id: Set((owner > 0).then(|| ids[owner])),
                created_at: Set(Utc::now()),
            }
            .insert(db)
            .await?;
        }
    }
    Ok(logins)
}
