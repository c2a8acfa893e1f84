//! Consumption history at scale, against the real PostgreSQL (not a timed test: it prints
//! figures for docs/benchmarks.md). 100 devices with a year of 10-minute readings each (about
//! 5.3 million rows) are loaded with UNNEST, their hourly rollups rebuilt, and then the day and
//! month figures are asked for through the server functions, over HTTP, as a browser would.
//!
//! `cargo bench -p server --bench history` (HISTORY_BENCH_DEVICES sets the number of devices).

mod support;

use std::time::{Duration, Instant};

use chrono::{Datelike, TimeZone};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use support::{drop_database, fresh_database};
use uuid::Uuid;

const ADMIN: &str = "bench-admin";
const ADMIN_PASSWORD: &str = "bench-admin-password";
const STEP_MS: i64 = 600_000;
/// Rows per INSERT … SELECT FROM UNNEST.
const LOAD_CHUNK: usize = 50_000;

/// A year of a household register: 0.02 to 0.3 kWh per 10 minutes, more in the evening.
fn register(device: usize, steps: usize) -> impl Iterator<Item = f64> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (device as u64 + 1);
    let mut kwh = 1000.0 + device as f64;
    (0..steps).map(move |i| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let hour = (i / 6) % 24;
        let base = if (17..22).contains(&hour) { 0.15 } else { 0.04 };
        kwh += base + (seed % 150) as f64 / 1000.0;
        (kwh * 1000.0).round() / 1000.0
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn load(db: &DatabaseConnection, devices: &[Uuid], start_ms: i64, steps: usize) -> u64 {
    let mut rows = 0u64;
    let (mut ids, mut times, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let flush = |ids: &mut Vec<Uuid>, times: &mut Vec<i64>, values: &mut Vec<f64>| {
        let statement = Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "INSERT INTO readings (device_id, ts, energy_kwh) \
             SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::float8[])",
            [
                std::mem::take(ids).into(),
                std::mem::take(times).into(),
                std::mem::take(values).into(),
            ],
        );
        async move { db.execute_raw(statement).await.unwrap() }
    };
    for (d, device) in devices.iter().enumerate() {
        for (i, kwh) in register(d, steps).enumerate() {
            ids.push(*device);
            times.push(start_ms + i as i64 * STEP_MS);
            values.push(kwh);
            if ids.len() == LOAD_CHUNK {
                rows += LOAD_CHUNK as u64;
                flush(&mut ids, &mut times, &mut values).await;
            }
        }
    }
    if !ids.is_empty() {
        rows += ids.len() as u64;
        flush(&mut ids, &mut times, &mut values).await;
    }
    rows
}

#[tokio::main]
async fn main() {
    let n_devices: usize = std::env::var("HISTORY_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let zone = chrono_tz::Europe::Bucharest;
    let (url, name) = fresh_database().await;
    let db = server::db::connect_and_migrate(&url).await.unwrap();

    // A year up to the start of today (UTC), every 10 minutes.
    let today = chrono::Utc::now().date_naive();
    let first_day = today - chrono::Days::new(365);
    let start_ms = first_day
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let steps = 365 * 144;
    let mut devices = Vec::with_capacity(n_devices);
    for i in 0..n_devices {
        let id = Uuid::new_v4();
        db.execute_raw(Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "INSERT INTO devices (id, description, address, max_power_kw, owner_id, created_at) \
             VALUES ($1, $2, 'Bench street', 50, NULL, now())",
            [id.into(), format!("Meter {i}").into()],
        ))
        .await
        .unwrap();
        devices.push(id);
    }
    println!("consumption history benchmark, PostgreSQL");

    let loading = Instant::now();
    let rows = load(&db, &devices, start_ms, steps).await;
    let load_secs = loading.elapsed().as_secs_f64();
    println!(
        "load: {rows} readings ({n_devices} devices x a year of 10-minute readings) in \
         {load_secs:.1} s: {:.0} rows/s (INSERT ... SELECT FROM UNNEST, {LOAD_CHUNK} a statement)",
        rows as f64 / load_secs
    );
    db.execute_unprepared("ANALYZE readings").await.unwrap();

    let settings = app::history::ssr::HistorySettings {
        gap_ms: 120 * 60_000,
    };
    let rebuilt = server::history::rebuild(&db, None, settings).await.unwrap();
    let hourly = db
        .query_one_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT COUNT(*) FROM consumption_hourly",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    println!(
        "rebuild-history: {} readings of {} devices into {hourly} hourly rows in {:.1} s: {:.0} readings/s",
        rebuilt.readings,
        rebuilt.devices,
        rebuilt.seconds,
        rebuilt.readings as f64 / rebuilt.seconds
    );
    db.execute_unprepared("ANALYZE consumption_hourly")
        .await
        .unwrap();

    // The server, and an admin signed in over HTTP whose browser is in Bucharest.
    let mut config = server::Config::for_database(url.clone());
    config.admin_username = Some(ADMIN.into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    let app = server::Application::build(config).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop_app, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let session = support::session_cookie(&http, &address, ADMIN, ADMIN_PASSWORD).await;
    let cookies = format!("{session}; tz=Europe%2FBucharest");
    let call = |endpoint: &'static str, args: Vec<(&'static str, String)>| {
        let request = http
            .post(format!("{address}/api/{endpoint}"))
            .header("cookie", cookies.clone())
            .form(&args);
        async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{endpoint}: {}",
                response.status()
            );
            let body: serde_json::Value = response.json().await.unwrap();
            (started.elapsed(), body)
        }
    };

    // Warm the pool and the caches a little, as a running server has them.
    for device in devices.iter().take(5) {
        call("device_day", vec![("id", device.to_string())]).await;
    }

    let mut seed = 42u64;
    let mut pick = move |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let mut days = Vec::with_capacity(300);
    let mut checked = 0;
    for _ in 0..300 {
        let d = pick(n_devices);
        let date = first_day + chrono::Days::new(1 + pick(360) as u64);
        let (took, body) = call(
            "device_day",
            vec![
                ("id", devices[d].to_string()),
                ("date", date.format("%Y-%m-%d").to_string()),
            ],
        )
        .await;
        days.push(took);
        // The oracle for a few: the register's rise over the local day, from the generator.
        if checked < 20 {
            let day_start = zone
                .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
                .earliest()
                .unwrap()
                .timestamp_millis();
            let next = date.succ_opt().unwrap();
            let day_end = zone
                .from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap())
                .earliest()
                .unwrap()
                .timestamp_millis();
            let series: Vec<f64> = register(d, steps).collect();
            let at = |t: i64| series[((t - start_ms) / STEP_MS) as usize];
            let want = at(day_end) - at(day_start);
            let got = body["total_kwh"].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-6,
                "{} on {date}: {got} kWh, not {want}",
                devices[d]
            );
            checked += 1;
        }
    }
    let mut months = Vec::with_capacity(150);
    for _ in 0..150 {
        let d = pick(n_devices);
        let date = first_day + chrono::Days::new(32 + pick(300) as u64);
        let (took, body) = call(
            "device_month",
            vec![
                ("id", devices[d].to_string()),
                ("month", format!("{:04}-{:02}", date.year(), date.month())),
            ],
        )
        .await;
        assert!(body["bars"].as_array().unwrap().len() >= 28);
        months.push(took);
    }
    days.sort();
    months.sort();
    println!(
        "day through the server function ({} calls, 23-25 rollup rows each): p50 {}, p95 {}, max {} (target p95 <= 10 ms)",
        days.len(),
        ms(percentile(&days, 50.0)),
        ms(percentile(&days, 95.0)),
        ms(*days.last().unwrap())
    );
    println!(
        "month through the server function ({} calls, about 744 rollup rows each): p50 {}, p95 {}, max {} (target p95 <= 10 ms)",
        months.len(),
        ms(percentile(&months, 50.0)),
        ms(percentile(&months, 95.0)),
        ms(*months.last().unwrap())
    );
    println!("checked {checked} day totals against the generator's register");
    let _ = stop_app.send(());
    let _ = running.await;
    db.close().await.ok();
    drop_database(&name).await;
}
