//! `GET /healthz`: 200 when the database answers and the meter queue is usable, else 503; and
//! `server healthcheck`, which asks it (a container image without a shell or curl runs that).

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

/// Asks a running server's `/healthz` at `addr` (an unspecified address means this host); `Ok`
/// when it answers 200, else what went wrong. Plain HTTP/1.0 over one connection, so that the
/// check needs nothing but the binary.
pub fn check(addr: std::net::SocketAddr, within: Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let mut stream = std::net::TcpStream::connect_timeout(&addr, within)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(within));
    let _ = stream.set_write_timeout(Some(within));
    write!(
        stream,
        "GET /healthz HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot ask {addr}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer from {addr}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        Err(format!("{addr} answered {status:?}: {body}"))
    }
}
