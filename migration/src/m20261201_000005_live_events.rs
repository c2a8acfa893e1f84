use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;
use super::m20261127_000002_create_devices::Devices;

/// The live dashboard's storage: the event outbox, alarm episodes, and per-user read state.
///
/// - `outbox` is the durable event log. Every event a browser must not miss (an alert, an
///   episode starting, growing or ending, a device changing hands, a session ending) is
///   written here in the same transaction as the change it reports. Its `seq` is assigned
///   under a lock held until commit (PostgreSQL: an advisory lock; SQLite: the write lock), so
///   sequence order is commit order: whoever sees `seq` N committed sees every smaller one too.
///   `relay_cursor` says up to which `seq` the relay has published to the instances.
/// - `episodes`: consecutive peak intervals of one device; at most one per device is open
///   (`ended_t` NULL, a unique partial index). `alerts.episode_id` ties each alert to its
///   episode.
/// - `alerts.seq` numbers alerts in commit order (as `outbox.seq`), so read state can be a
///   watermark (`alert_read_marks`) plus single reads after it (`alert_reads`), per user.
///   Existing alerts are numbered by creation time. `alerts.read_at` (one read state for
///   everyone) gives way to that and is dropped.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(big_integer(Outbox::Seq).primary_key())
                    .col(string_len(Outbox::Kind, 32))
                    .col(uuid_null(Outbox::UserId))
                    .col(boolean(Outbox::Private))
                    .col(text(Outbox::Payload))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_user_seq_idx")
                    .table(Outbox::Table)
                    .col(Outbox::UserId)
                    .col(Outbox::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RelayCursor::Table)
                    .if_not_exists()
                    .col(integer(RelayCursor::Id).primary_key())
                    .col(big_integer(RelayCursor::PublishedSeq))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(RelayCursor::Table)
                    .columns([RelayCursor::Id, RelayCursor::PublishedSeq])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Episodes::Table)
                    .if_not_exists()
                    .col(uuid(Episodes::Id).primary_key())
                    .col(uuid(Episodes::DeviceId))
                    .col(uuid_null(Episodes::OwnerId))
                    .col(big_integer(Episodes::StartedT))
                    .col(big_integer(Episodes::LastT))
                    .col(integer(Episodes::Peaks))
                    .col(double(Episodes::MaxPowerKw))
                    .col(double(Episodes::LimitKw))
                    .col(big_integer_null(Episodes::EndedT))
                    .col(timestamp_with_time_zone(Episodes::StartedAt))
                    .col(timestamp_with_time_zone_null(Episodes::EndedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("episodes_device_fk")
                            .from(Episodes::Table, Episodes::DeviceId)
                            .to(Devices::Table, Devices::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("episodes_owner_fk")
                            .from(Episodes::Table, Episodes::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("episodes_device_started_idx")
                    .table(Episodes::Table)
                    .col(Episodes::DeviceId)
                    .col(Episodes::StartedT)
                    .to_owned(),
            )
            .await?;
        // sea-query has no partial indexes; this statement reads the same on both backends.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX episodes_open_key ON episodes (device_id) \
                 WHERE ended_t IS NULL",
            )
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table(Alerts::Table)
                    .add_column(uuid_null(Alerts::EpisodeId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alerts::Table)
                    .add_column(big_integer_null(Alerts::Seq))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE alerts SET seq = numbered.n FROM \
                 (SELECT id, ROW_NUMBER() OVER (ORDER BY created_at, id) AS n FROM alerts) \
                 AS numbered WHERE numbered.id = alerts.id",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alerts::Table)
                    .drop_column(Alerts::ReadAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alerts_seq_idx")
                    .table(Alerts::Table)
                    .col(Alerts::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alerts_owner_seq_idx")
                    .table(Alerts::Table)
                    .col(Alerts::OwnerId)
                    .col(Alerts::Seq)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AlertReads::Table)
                    .if_not_exists()
                    .col(uuid(AlertReads::UserId))
                    .col(uuid(AlertReads::AlertId))
                    .col(timestamp_with_time_zone(AlertReads::ReadAt))
                    .primary_key(
                        Index::create()
                            .col(AlertReads::UserId)
                            .col(AlertReads::AlertId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("alert_reads_user_fk")
                            .from(AlertReads::Table, AlertReads::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("alert_reads_alert_fk")
                            .from(AlertReads::Table, AlertReads::AlertId)
                            .to(Alerts::Table, Alerts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertReadMarks::Table)
                    .if_not_exists()
                    .col(uuid(AlertReadMarks::UserId).primary_key())
                    .col(big_integer(AlertReadMarks::ReadThrough))
                    .foreign_key(
                        ForeignKey::create()
                            .name("alert_read_marks_user_fk")
                            .from(AlertReadMarks::Table, AlertReadMarks::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AlertReadMarks::Table.into_iden(),
            AlertReads::Table.into_iden(),
            Episodes::Table.into_iden(),
            RelayCursor::Table.into_iden(),
            Outbox::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for index in ["alerts_seq_idx", "alerts_owner_seq_idx"] {
            manager
                .drop_index(Index::drop().name(index).table(Alerts::Table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Alerts::Table)
                    .add_column(timestamp_with_time_zone_null(Alerts::ReadAt))
                    .to_owned(),
            )
            .await?;
        for column in [Alerts::Seq, Alerts::EpisodeId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alerts::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Seq,
    Kind,
    UserId,
    Private,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RelayCursor {
    Table,
    Id,
    PublishedSeq,
}

#[derive(DeriveIden)]
enum Episodes {
    Table,
    Id,
    DeviceId,
    OwnerId,
    StartedT,
    LastT,
    Peaks,
    MaxPowerKw,
    LimitKw,
    EndedT,
    StartedAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    OwnerId,
    EpisodeId,
    Seq,
    ReadAt,
}

#[derive(DeriveIden)]
enum AlertReads {
    Table,
    UserId,
    AlertId,
    ReadAt,
}

#[derive(DeriveIden)]
enum AlertReadMarks {
    Table,
    UserId,
    ReadThrough,
}
