use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};

use crate::helpers::{spawn_app, Backend};

crate::on_both_backends!(health_is_ok_while_the_database_answers);

/// `server healthcheck` (a container's HEALTHCHECK): healthy against a running server, and a
/// clear "unhealthy" with exit 1 when nothing listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_asks_a_running_server() {
    let app = spawn_app(Backend::Sqlite).await;
    let run = |addr: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("healthcheck")
            .env_clear()
            .env("LEPTOS_SITE_ADDR", addr)
            .output()
            .expect("the binary runs")
    };
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    // An unspecified address (what a container listens on) means this host.
    let up = tokio::task::spawn_blocking(move || run(format!("0.0.0.0:{port}")))
        .await
        .unwrap();
    assert!(up.status.success(), "{up:?}");
    assert_eq!(String::from_utf8_lossy(&up.stdout), "healthy\n");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = free.local_addr().unwrap().to_string();
    drop(free);
    let down = tokio::task::spawn_blocking(move || run(closed))
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(said.contains("unhealthy: cannot connect"), "{said}");
}

async fn health_is_ok_while_the_database_answers(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
}

/// PostgreSQL can be taken away under a running app; the health check must notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_when_the_database_is_gone() {
    let app = spawn_app(Backend::Postgres).await;
    let name: String = {
        let row = app
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT current_database() AS name",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "name").unwrap()
    };
    let admin = Database::connect(
        std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .await
    .unwrap();
    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
    let response = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["database"], "unreachable");
    // What `server healthcheck` makes of it.
    let addr = app.address.trim_start_matches("http://").parse().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        server::health::check(addr, std::time::Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(
        said.contains("503") && said.contains("unreachable"),
        "{said}"
    );
}
