use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;
use super::m20261127_000002_create_devices::Devices;

/// Meter readings, peak alerts, and the messages the in-process queue could not accept.
///
/// A reading is stored once per (device, timestamp): the primary key is what makes a redelivered
/// message a no-op. An alert is stored once per (device, t1, t2), which keeps detection
/// exactly-once when several consumers race. Timestamps are milliseconds since the Unix epoch,
/// as on the wire. Deleting a device deletes its readings and alerts.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Readings::Table)
                    .if_not_exists()
                    .col(uuid(Readings::DeviceId))
                    .col(big_integer(Readings::Ts))
                    .col(double(Readings::EnergyKwh))
                    .primary_key(Index::create().col(Readings::DeviceId).col(Readings::Ts))
                    .foreign_key(
                        ForeignKey::create()
                            .name("readings_device_fk")
                            .from(Readings::Table, Readings::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alerts::Table)
                    .if_not_exists()
                    .col(uuid(Alerts::Id).primary_key())
                    .col(uuid(Alerts::DeviceId))
                    .col(uuid_null(Alerts::OwnerId))
                    .col(big_integer(Alerts::T1))
                    .col(big_integer(Alerts::T2))
                    .col(double(Alerts::PowerKw))
                    .col(double(Alerts::MaxPowerKw))
                    .col(timestamp_with_time_zone(Alerts::CreatedAt))
                    .col(timestamp_with_time_zone_null(Alerts::ReadAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("alerts_device_fk")
                            .from(Alerts::Table, Alerts::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("alerts_owner_fk")
                            .from(Alerts::Table, Alerts::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alerts_interval_key")
                    .table(Alerts::Table)
                    .col(Alerts::DeviceId)
                    .col(Alerts::T1)
                    .col(Alerts::T2)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alerts_owner_created_idx")
                    .table(Alerts::Table)
                    .col(Alerts::OwnerId)
                    .col(Alerts::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeadLetters::Table)
                    .if_not_exists()
                    .col(uuid(DeadLetters::Id).primary_key())
                    .col(string_len(DeadLetters::Reason, 64))
                    .col(text(DeadLetters::Detail))
                    .col(blob(DeadLetters::Payload))
                    .col(timestamp_with_time_zone(DeadLetters::ReceivedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeadLetters::Table.into_iden(),
            Alerts::Table.into_iden(),
            Readings::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Readings {
    Table,
    DeviceId,
    Ts,
    EnergyKwh,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    DeviceId,
    OwnerId,
    T1,
    T2,
    PowerKw,
    MaxPowerKw,
    CreatedAt,
    ReadAt,
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Id,
    Reason,
    Detail,
    Payload,
    ReceivedAt,
}
