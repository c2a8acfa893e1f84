//! Shared by the benchmarks: a PostgreSQL database of their own, and a signed-in session.
//! Not every benchmark uses every helper.
#![allow(dead_code)]

use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new, empty database: its URL and its name (for [`drop_database`]).
pub async fn fresh_database() -> (String, String) {
    let name = format!("energy_bench_{}", Uuid::new_v4().simple());
    let admin = Database::connect(postgres_admin_url()).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let base = postgres_admin_url();
    let base = base.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
    (format!("{base}/{name}"), name)
}

pub async fn drop_database(name: &str) {
    let admin = Database::connect(postgres_admin_url()).await.unwrap();
    let _ = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

/// Signs in at `address` (`http://host:port`); the session cookie (`energy_session=…`).
pub async fn session_cookie(
    http: &reqwest::Client,
    address: &str,
    username: &str,
    password: &str,
) -> String {
    let login = http
        .post(format!("{address}/api/login"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("energy_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no session cookie for {username}: {}", login.status()))
}
