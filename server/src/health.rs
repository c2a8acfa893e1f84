//! `GET /healthz`: 200 when the database answers and the meter queue is usable, else 503.

use std::time::Duration;

use axum::{extract::State, http::StatusCode, Json};
use sea_orm::DatabaseConnection;
use serde_json::{json, Value};

use crate::metering::Metering;

/// What the health check looks at.
#[derive(Clone)]
pub struct Probe {
    pub db: DatabaseConnection,
    pub metering: Metering,
}

pub async fn healthz(State(probe): State<Probe>) -> (StatusCode, Json<Value>) {
    let database_ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), probe.db.ping()).await,
        Ok(Ok(()))
    );
    let metrics = &probe.metering.metrics;
    let queue_ok = metrics.connected();
    let body = json!({
        "status": if database_ok && queue_ok { "ok" } else { "unavailable" },
        "database": if database_ok { "ok" } else { "unreachable" },
        "queue": if queue_ok { "ok" } else { "disconnected" },
        "queue_kind": metrics.queue_kind,
    });
    let status = if database_ok && queue_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
