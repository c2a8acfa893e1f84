use sea_orm_migration::prelude::*;

/// `DATABASE_URL=... cargo run -p migration -- up` (see `--help` for `down`, `status`, `fresh`).
#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
