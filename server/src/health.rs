//! `GET /healthz`: 200 when the database answers, 503 when it does not.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};

pub async fn healthz(State(db): State<DatabaseConnection>) -> (StatusCode, Json<Value>) {
    let database_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), db.ping()).await,
        Ok(Ok(()))
    );
    if database_ok {
        (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok"})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": "unreachable"})),
        )
    }
}
