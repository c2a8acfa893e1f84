//! Consumption history on both backends: rollups kept at ingest match readings sent in any
//! order, a rebuild, and a plain recomputation; the day and month figures and the CSV; who may
//! see them.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use simulator::MeterMessage;
use uuid::Uuid;

use crate::helpers::{spawn_app, Backend, TestApp, PASSWORD};
use crate::meter_support::*;

crate::on_both_backends!(
    rollups_from_shuffled_and_repeated_readings_equal_those_in_order_and_a_rebuild,
    a_day_and_a_month_show_the_readings_hours_and_days,
    only_the_owner_and_admins_see_a_devices_history,
);

const HOUR: i64 = 3_600_000;
const GAP_MS: i64 = 120 * 60_000;

/// A meter's readings over four days: irregular steps of 5 to 15 minutes, a reset, and a
/// three-hour silence (longer than the gap limit).
fn readings(start_ms: i64) -> Vec<(i64, f64)> {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    let (mut t, mut kwh) = (start_ms, 1000.0);
    while t < start_ms + 4 * 24 * HOUR {
        out.push((t, (kwh * 1000.0f64).round() / 1000.0));
        let step = (5 + next() % 11) as i64 * 60_000;
        t += step;
        kwh += (next() % 400) as f64 / 1000.0;
        if out.len() == 200 {
            kwh = 3.0; // a new meter
        }
        if out.len() == 400 {
            t += 3 * HOUR; // silence
        }
    }
    out
}

fn bodies(device: Uuid, readings: &[(i64, f64)]) -> Vec<Vec<u8>> {
    readings
        .iter()
        .map(|&(t, kwh)| {
            MeterMessage {
                timestamp: t,
                sensor_id: device,
                measurement_value: kwh,
            }
            .to_json()
        })
        .collect()
}

/// The oracle: each interval no longer than the limit spreads its rise (none after a fall)
/// evenly over its time; hour → (kWh, covered ms).
fn hourly_oracle(readings: &[(i64, f64)]) -> BTreeMap<i64, (f64, i64)> {
    let mut sorted = readings.to_vec();
    sorted.sort_by_key(|r| r.0);
    sorted.dedup_by_key(|r| r.0);
    let mut out: BTreeMap<i64, (f64, i64)> = BTreeMap::new();
    for w in sorted.windows(2) {
        let ((t1, e1), (t2, e2)) = (w[0], w[1]);
        if t2 - t1 > GAP_MS {
            continue;
        }
        let rise = if e2 >= e1 { e2 - e1 } else { 0.0 };
        let mut hour = t1 - t1.rem_euclid(HOUR);
        while hour < t2 {
            let overlap = (hour + HOUR).min(t2) - hour.max(t1);
            let slot = out.entry(hour).or_default();
            slot.0 += rise * overlap as f64 / (t2 - t1) as f64;
            slot.1 += overlap;
            hour += HOUR;
        }
    }
    out
}

async fn rollups(app: &TestApp, device: Uuid) -> BTreeMap<i64, (f64, i64)> {
    let mut sql = app::sql::Sql::new(app.db.get_database_backend());
    sql.push("SELECT hour, kwh, covered_ms FROM consumption_hourly WHERE device_id = ")
        .param(device);
    app.db
        .query_all_raw(sql.build())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get_by_index::<i64>(0).unwrap(),
                (
                    r.try_get_by_index::<f64>(1).unwrap(),
                    r.try_get_by_index::<i64>(2).unwrap(),
                ),
            )
        })
        // Rows a late reading emptied again carry nothing.
        .filter(|(_, (kwh, covered))| kwh.abs() > 1e-9 || *covered != 0)
        .collect()
}

#[track_caller]
fn assert_same(what: &str, got: &BTreeMap<i64, (f64, i64)>, want: &BTreeMap<i64, (f64, i64)>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: the same hours"
    );
    for (hour, (kwh, covered)) in want {
        let (g_kwh, g_covered) = got[hour];
        assert!(
            (g_kwh - kwh).abs() < 1e-6,
            "{what}, hour {hour}: {g_kwh} kWh, not {kwh}"
        );
        assert_eq!(g_covered, *covered, "{what}, hour {hour}: covered");
    }
}

async fn feed(app: &TestApp, bodies: Vec<Vec<u8>>) {
    let queue = app.metering.local.as_ref().expect("the embedded queue");
    for body in bodies {
        queue.send(body).await.expect("queued");
    }
}

/// Messages the pipeline has taken (stored or found stored).
fn processed(app: &TestApp) -> u64 {
    let m = &app.metering.metrics;
    m.accepted.get() + m.duplicates.get() + m.conflicts.get()
}

/// Feeds `bodies` ten at a time, each ten a batch of its own: most readings then arrive after
/// their neighbours are stored, and every one of them corrects the rollups.
async fn feed_in_small_batches(app: &TestApp, bodies: Vec<Vec<u8>>) {
    for chunk in bodies.chunks(10) {
        let before = processed(app);
        feed(app, chunk.to_vec()).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while processed(app) < before + chunk.len() as u64 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {} processed",
                processed(app) - before,
                chunk.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn rollups_from_shuffled_and_repeated_readings_equal_those_in_order_and_a_rebuild(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let devices = create_devices(&app.db, 2, 50.0).await;
    let (in_order, shuffled) = (devices[0], devices[1]);
    let start = chrono::Utc::now().timestamp_millis() / HOUR * HOUR - 6 * 24 * HOUR;
    let data = readings(start);
    let n = data.len() as i64;

    feed(&app, bodies(in_order, &data)).await;
    // The same readings for the other meter: shuffled, a fifth of them twice.
    let mut mixed = data.clone();
    mixed.extend(data.iter().step_by(5).copied());
    let mut seed = 7u64;
    for i in (1..mixed.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        mixed.swap(i, (seed >> 33) as usize % (i + 1));
    }
    wait_for_rows(&app.db, "readings", n, Duration::from_secs(60)).await;
    feed_in_small_batches(&app, bodies(shuffled, &mixed)).await;
    let mut sql = app::sql::Sql::new(app.db.get_database_backend());
    sql.push("SELECT COUNT(*) FROM readings WHERE device_id = ")
        .param(shuffled);
    let row = app.db.query_one_raw(sql.build()).await.unwrap().unwrap();
    assert_eq!(
        row.try_get_by_index::<i64>(0).unwrap(),
        n,
        "stored once each"
    );

    let oracle = hourly_oracle(&data);
    let ordered = rollups(&app, in_order).await;
    assert_same("in order", &ordered, &oracle);
    assert_same(
        "shuffled and repeated",
        &rollups(&app, shuffled).await,
        &oracle,
    );

    let settings = app::history::ssr::HistorySettings { gap_ms: GAP_MS };
    let rebuilt = server::history::rebuild(&app.db, None, settings)
        .await
        .expect("rebuilds");
    assert_eq!((rebuilt.devices, rebuilt.readings), (2, 2 * n as u64));
    assert_same("rebuilt", &rollups(&app, in_order).await, &oracle);
    assert_same("rebuilt too", &rollups(&app, shuffled).await, &oracle);
}

async fn a_day_and_a_month_show_the_readings_hours_and_days(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let device = app.create_device(&admin, "Pump", Some(alice)).await;
    // 2026-06-15 in Bucharest (UTC+3): readings every 10 minutes from 20:00 UTC on the 14th to
    // 22:00 UTC on the 15th, 0.1 kWh each, none between 09:00 and 12:00 UTC (a gap).
    let from = 1_781_467_200_000; // 2026-06-14T20:00:00Z
    let (gap_from, gap_to) = (from + 13 * HOUR, from + 16 * HOUR); // 09:00 to 12:00 UTC
    let mut data = Vec::new();
    let mut kwh = 50.0;
    for i in 0..=(26 * 6) {
        let t = from + i * 600_000;
        kwh += 0.1;
        if t <= gap_from || t >= gap_to {
            data.push((t, (kwh * 10.0f64).round() / 10.0));
        }
    }
    feed(&app, bodies(device, &data)).await;
    wait_for_rows(
        &app.db,
        "readings",
        data.len() as i64,
        Duration::from_secs(30),
    )
    .await;
    // The browser says its zone in a cookie, beside the session's.
    let (alice_agent, session) = app.login_cookie("alice", PASSWORD).await;
    let cookies = format!("{session}; tz=Europe%2FBucharest");
    let day = alice_agent
        .call_with(
            "device_day",
            &[("id", &device.to_string()), ("date", "2026-06-15")],
            &[("cookie", &cookies)],
        )
        .await
        .ok();
    let bars = day["bars"].as_array().expect("bars");
    assert_eq!(bars.len(), 24);
    assert_eq!(day["time_zone"], "Europe/Bucharest");
    // Local 00:00 is 21:00 UTC on the 14th: a full hour of six intervals.
    assert_eq!(bars[0]["label"], "00");
    assert!(
        (bars[0]["kwh"].as_f64().unwrap() - 0.6).abs() < 1e-9,
        "{}",
        bars[0]
    );
    assert_eq!(bars[0]["coverage"], "full");
    // 12:00–15:00 local is the gap: missing, not zero.
    for bar in &bars[12..15] {
        assert_eq!(bar["coverage"], "missing", "{bar}");
    }
    // The day: 21 full hours of 0.6 kWh; the three missing hours count nothing.
    assert!(
        (day["total_kwh"].as_f64().unwrap() - 21.0 * 0.6).abs() < 1e-6,
        "{day}"
    );
    assert_eq!(day["incomplete"], true);

    let month = alice_agent
        .call_with(
            "device_month",
            &[("id", &device.to_string()), ("month", "2026-06")],
            &[("cookie", &cookies)],
        )
        .await
        .ok();
    let days = month["bars"].as_array().expect("bars");
    assert_eq!(days.len(), 30);
    assert!((days[14]["kwh"].as_f64().unwrap() - 21.0 * 0.6).abs() < 1e-6);
    assert_eq!(days[14]["coverage"], "partial");
    assert_eq!(
        days[14]["href"],
        format!("/devices/{device}/day?date=2026-06-15")
    );
    assert_eq!(days[0]["coverage"], "missing");

    // The CSV has the same figures: a header and one row per hour.
    let csv = alice_agent
        .http
        .get(format!(
            "{}/devices/{device}/day.csv?date=2026-06-15",
            app.address
        ))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("2026-06-15.csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "period,start_utc,kwh,partial,no_data,peak");
    assert_eq!(lines.len(), 25);
    assert_eq!(
        lines[1],
        "2026-06-15 00:00 EEST,2026-06-14T21:00:00Z,0.600,false,false,false"
    );
    assert!(
        lines[13].ends_with(",0.000,false,true,false"),
        "{}",
        lines[13]
    );

    // Bad dates get a clear answer.
    let bad = alice_agent
        .call(
            "device_day",
            &[("id", &device.to_string()), ("date", "2026-02-30")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.field_errors()[0].0, "date");
}

async fn only_the_owner_and_admins_see_a_devices_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    app.create_client(&admin, "bob").await;
    let device = app.create_device(&admin, "Pump", Some(alice)).await;
    let bob = app.login("bob", PASSWORD).await;
    let id = device.to_string();
    for name in ["device_day", "device_month"] {
        let reply = bob.call(name, &[("id", &id)]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{name}: {reply:?}");
        assert_eq!(reply.error_kind().as_deref(), Some("NotFound"));
        assert!(admin.call(name, &[("id", &id)]).await.status.is_success());
        let anonymous = app.agent().call(name, &[("id", &id)]).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    }
    for file in ["day.csv", "month.csv"] {
        let url = format!("{}/devices/{id}/{file}", app.address);
        let as_bob = bob.http.get(&url).send().await.unwrap();
        assert_eq!(as_bob.status(), StatusCode::NOT_FOUND, "{file}");
        let anonymous = app.agent().http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{file}");
        let as_admin = admin.http.get(&url).send().await.unwrap();
        assert_eq!(as_admin.status(), StatusCode::OK, "{file}");
    }
}
