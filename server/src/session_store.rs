//! tower-sessions records stored in the application database (both backends), through sea-orm
//! so that the workspace keeps a single sqlx. Deleting a signed-in session (sign-out, a timeout
//! noticed on a request) also announces it, so that its live sockets close on every instance.

use app::auth::ssr::USER_ID;
use app::entities::sessions;
use app::live::ssr::{append, session_hash, LiveHandle, Outgoing};
use app::live::LiveEvent;
use app::sql::{begin_write, Sql};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: DatabaseConnection,
    live: LiveHandle,
}

impl DbSessionStore {
    pub fn new(db: DatabaseConnection, live: LiveHandle) -> Self {
        Self { db, live }
    }

    /// Deletes expired sessions; returns how many.
    pub async fn delete_expired(&self) -> Result<u64, sea_orm::DbErr> {
        let result = sessions::Entity::delete_many()
            .filter(sessions::Column::ExpiresAt.lte(Utc::now()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }
}

fn backend(err: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn to_model(record: &Record) -> session_store::Result<sessions::ActiveModel> {
    let data =
        serde_json::to_string(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
    let user_id = record
        .data
        .get(USER_ID)
        .and_then(|v| serde_json::from_value::<Uuid>(v.clone()).ok());
    let expiry = record.expiry_date;
    let expires_at = DateTime::<Utc>::from_timestamp(expiry.unix_timestamp(), expiry.nanosecond())
        .ok_or_else(|| session_store::Error::Encode("expiry out of range".into()))?;
    Ok(sessions::ActiveModel {
        id: Set(record.id.to_string()),
        user_id: Set(user_id),
        data: Set(data),
        expires_at: Set(expires_at),
    })
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A 128-bit random id practically never collides; if it does, draw another.
        loop {
            let model = to_model(record)?;
            match sessions::Entity::insert(model).exec(&self.db).await {
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ) =>
                {
                    record.id = Id::default();
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    /// Updates a session that a request loaded. Only an update: if the session was deleted
    /// meanwhile (signed out, password reset, account deleted), a request that was in flight
    /// must not bring it back. New sessions go through `create`.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let model = to_model(record)?;
        let updated = sessions::Entity::update_many()
            .set(sessions::ActiveModel {
                user_id: model.user_id,
                data: model.data,
                expires_at: model.expires_at,
                ..Default::default()
            })
            .filter(sessions::Column::Id.eq(record.id.to_string()))
            .exec(&self.db)
            .await
            .map_err(backend)?;
        if updated.rows_affected == 0 {
            tracing::debug!("a session ended while a request was using it; not saved");
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row = sessions::Entity::find_by_id(id.to_string())
            .filter(sessions::Column::ExpiresAt.gt(Utc::now()))
            .one(&self.db)
            .await
            .map_err(backend)?;
        row.map(|row| {
            serde_json::from_str(&row.data).map_err(|e| session_store::Error::Decode(e.to_string()))
        })
        .transpose()
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let id = id.to_string();
        let txn = begin_write(&self.db).await.map_err(backend)?;
        let mut sql = Sql::new(txn.get_database_backend());
        sql.push("DELETE FROM sessions WHERE id = ")
            .param(id.as_str())
            .push(" RETURNING user_id");
        let user = match txn.query_one_raw(sql.build()).await.map_err(backend)? {
            Some(row) => row
                .try_get_by_index::<Option<uuid::Uuid>>(0)
                .map_err(backend)?,
            None => None,
        };
        if let Some(user) = user {
            let ended = LiveEvent::SessionEnded(Some(session_hash(&id)));
            append(&txn, &[Outgoing::private(user, ended)])
                .await
                .map_err(backend)?;
        }
        txn.commit().await.map_err(backend)?;
        self.live.sessions().forget(&id);
        if user.is_some() {
            self.live.wake();
        }
        Ok(())
    }
}
