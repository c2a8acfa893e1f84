use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .if_not_exists()
                    .col(uuid(Devices::Id).primary_key())
                    .col(string_len(Devices::Description, 200))
                    .col(string_len(Devices::Address, 200))
                    .col(double(Devices::MaxPowerKw).check(Expr::col(Devices::MaxPowerKw).gt(0.0)))
                    .col(uuid_null(Devices::OwnerId))
                    .col(timestamp_with_time_zone(Devices::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("devices_owner_fk")
                            .from(Devices::Table, Devices::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("devices_owner_idx")
                    .table(Devices::Table)
                    .col(Devices::OwnerId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Devices::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub enum Devices {
    Table,
    Id,
    Description,
    Address,
    MaxPowerKw,
    OwnerId,
    CreatedAt,
}
