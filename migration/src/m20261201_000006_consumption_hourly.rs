use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000002_create_devices::Devices;

/// Hourly consumption rollups: per device and UTC hour (`hour` is its start, in ms), the energy
/// of the intervals between readings over that hour and how much of the hour they cover. The
/// metering pipeline keeps them in the transaction that stores the readings; `server
/// rebuild-history` recomputes them from the readings.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConsumptionHourly::Table)
                    .if_not_exists()
                    .col(uuid(ConsumptionHourly::DeviceId))
                    .col(big_integer(ConsumptionHourly::Hour))
                    .col(double(ConsumptionHourly::Kwh))
                    .col(big_integer(ConsumptionHourly::CoveredMs))
                    .primary_key(
                        Index::create()
                            .col(ConsumptionHourly::DeviceId)
                            .col(ConsumptionHourly::Hour),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("consumption_hourly_device_fk")
                            .from(ConsumptionHourly::Table, ConsumptionHourly::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConsumptionHourly::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ConsumptionHourly {
    Table,
    DeviceId,
    Hour,
    Kwh,
    CoveredMs,
}
