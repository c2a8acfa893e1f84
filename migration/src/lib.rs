//! Schema migrations for the energy platform, shared by the server (run at start-up) and the
//! `migration` CLI. One file per change; a landed migration is never edited.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_users;
mod m20261127_000002_create_devices;
mod m20261127_000003_create_sessions;
mod m20261127_000004_create_readings_alerts;
mod m20261201_000005_live_events;
mod m20261201_000006_consumption_hourly;
mod m20261202_000007_dead_letter_counts;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_users::Migration),
            Box::new(m20261127_000002_create_devices::Migration),
            Box::new(m20261127_000003_create_sessions::Migration),
            Box::new(m20261127_000004_create_readings_alerts::Migration),
            Box::new(m20261201_000005_live_events::Migration),
            Box::new(m20261201_000006_consumption_hourly::Migration),
            Box::new(m20261202_000007_dead_letter_counts::Migration),
        ]
    }
}
