use sea_orm_migration::{prelude::*, schema::*};

/// Dead letters counted rather than repeated: the same body dead-lettered again for the same
/// reason (a meter that keeps sending before its device exists) raises `count` and
/// `last_seen_at` of one row, found by `digest` (SHA-256 of reason and body). Rows kept before
/// this migration have no digest and count 1. One column per statement: SQLite alters one at a
/// time.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(DeadLetters::Table)
                    .add_column(big_integer(DeadLetters::Count).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DeadLetters::Table)
                    .add_column(timestamp_with_time_zone_null(DeadLetters::LastSeenAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DeadLetters::Table)
                    .add_column(string_len_null(DeadLetters::Digest, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dead_letters_digest")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::Digest)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dead_letters_reason_seen")
                    .table(DeadLetters::Table)
                    .col(DeadLetters::Reason)
                    .col(DeadLetters::ReceivedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for index in ["dead_letters_reason_seen", "dead_letters_digest"] {
            manager
                .drop_index(
                    Index::drop()
                        .name(index)
                        .table(DeadLetters::Table)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            DeadLetters::Digest,
            DeadLetters::LastSeenAt,
            DeadLetters::Count,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(DeadLetters::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum DeadLetters {
    Table,
    Reason,
    ReceivedAt,
    Count,
    LastSeenAt,
    Digest,
}
