//! Connecting to the database (SQLite by default, PostgreSQL when configured) and migrating it.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

/// The SQLite file used when no `DATABASE_URL` is given.
pub const DEFAULT_SQLITE_PATH: &str = "data/energy.db";

/// The URL to connect to: the configured one, or the default SQLite file (its directory is
/// created).
pub fn resolve_url(configured: Option<&str>) -> anyhow::Result<String> {
    match configured.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                anyhow::bail!(
                    "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got a \
                     URL with another scheme)"
                );
            }
            Ok(url.to_owned())
        }
        None => {
            let path = std::path::Path::new(DEFAULT_SQLITE_PATH);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Ok(format!("sqlite://{DEFAULT_SQLITE_PATH}?mode=rwc"))
        }
    }
}

/// Connects and applies every pending migration.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if url.starts_with("sqlite:") { 8 } else { 16 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::resolve_url;

    #[test]
    fn urls_are_checked() {
        assert!(resolve_url(Some("postgres://u@h/db")).is_ok());
        assert!(resolve_url(Some("sqlite://x.db?mode=rwc")).is_ok());
        assert!(resolve_url(Some("mysql://u@h/db")).is_err());
    }
}
