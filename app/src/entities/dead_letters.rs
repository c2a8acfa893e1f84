use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub reason: String,
    pub detail: String,
    pub payload: Vec<u8>,
    /// First seen.
    pub received_at: DateTimeUtc,
    /// How many times this body was dead-lettered for this reason.
    pub count: i64,
    /// Last seen (absent on rows kept before counting began).
    pub last_seen_at: Option<DateTimeUtc>,
    pub digest: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
