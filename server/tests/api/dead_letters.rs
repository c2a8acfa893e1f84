//! The admin's dead letters: listed by reason, and replayed through the pipeline once the cause
//! is fixed (a meter that sent before its device was registered).

use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{spawn_app, Agent, Backend, TestApp, PASSWORD};

crate::on_both_backends!(
    an_unregistered_meters_readings_are_stored_by_replay_once_its_device_exists,
    a_new_device_takes_the_meter_id_the_admin_enters,
);

fn reading(meter: Uuid, ms: i64, kwh: f64) -> Vec<u8> {
    format!(r#"{{"timestamp":{ms},"sensor_id":"{meter}","measurement_value":{kwh}}}"#).into_bytes()
}

/// (reason, distinct bodies, messages) of every group the admin sees.
async fn groups(admin: &Agent) -> Vec<(String, i64, i64)> {
    let body = admin.call("dead_letter_groups", &[]).await.ok();
    let mut groups: Vec<(String, i64, i64)> = body
        .as_array()
        .expect("a list of groups")
        .iter()
        .map(|g| {
            (
                g["reason"].as_str().unwrap().to_owned(),
                g["letters"].as_i64().unwrap(),
                g["messages"].as_i64().unwrap(),
            )
        })
        .collect();
    groups.sort();
    groups
}

async fn readings_of(app: &TestApp, device: Uuid) -> usize {
    let rows = app
        .db
        .query_all_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT device_id FROM readings",
        ))
        .await
        .unwrap();
    rows.iter()
        .filter(|row| row.try_get_by_index::<Uuid>(0).unwrap() == device)
        .count()
}

async fn replay(admin: &Agent, args: &[(&str, &str)]) -> Value {
    admin.call("replay_dead_letters", args).await.ok()
}

async fn an_unregistered_meters_readings_are_stored_by_replay_once_its_device_exists(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let mia = app.create_client(&admin, "mia").await;
    let queue = app.metering.local.clone().expect("the in-process queue");
    let meter = Uuid::new_v4();
    // Three readings 10 minutes apart, 20 minutes ago; the first sent twice. Before them, 250
    // readings of a meter that stays unknown: "replay all" must read on past them (more than
    // one batch of them, refused again and staying) to reach the three.
    let t0 = (chrono::Utc::now().timestamp_millis() / 600_000 - 3) * 600_000;
    let stranger = Uuid::new_v4();
    for n in 0..250 {
        queue
            .send(reading(
                stranger,
                t0 - 3_600_000 + n * 1_000,
                1.0 + n as f64,
            ))
            .await
            .unwrap();
    }
    let sent = [
        reading(meter, t0, 1.0),
        reading(meter, t0 + 600_000, 1.5),
        reading(meter, t0 + 1_200_000, 2.5),
    ];
    for body in sent.iter().chain([&sent[0]]) {
        queue.send(body.clone()).await.unwrap();
    }
    queue.send(b"{\"timestamp\": 1".to_vec()).await.unwrap();

    let want = vec![
        ("malformed_json".to_string(), 1, 1),
        ("unknown_device".to_string(), 253, 254),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = groups(&admin).await;
        if seen == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters by reason: {seen:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Only admins see or replay them.
    let client = app.login("mia", PASSWORD).await;
    assert_eq!(
        client.call("dead_letter_groups", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let refused = client
        .call(
            "replay_dead_letters",
            &[("reason", "unknown_device"), ("scope", "all")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // The list shows each body as sent, with how often it came.
    let list = admin
        .call("list_dead_letters", &[("reason", "unknown_device")])
        .await
        .ok();
    assert_eq!(list["total"], 253);
    let items = list["items"].as_array().unwrap();
    let by_body = |body: &[u8]| {
        let text = std::str::from_utf8(body).unwrap();
        items
            .iter()
            .find(|l| l["body"] == text)
            .unwrap_or_else(|| panic!("{text} not listed in {items:?}"))
            .clone()
    };
    assert_eq!(by_body(&sent[0])["count"], 2);
    assert_eq!(by_body(&sent[1])["count"], 1);
    let second = by_body(&sent[1])["id"].as_str().unwrap().to_owned();

    // Replayed before the device exists: refused again for the same reason, nothing lost.
    let report = replay(&admin, &[("reason", "unknown_device"), ("scope", "all")]).await;
    assert_eq!(report["replayed"], 253);
    assert_eq!(report["stored"], 0);
    assert_eq!(
        report["refused"],
        serde_json::json!([["unknown_device", 253]])
    );
    assert_eq!(report["left"], 254);

    // Bad selections get a clear answer.
    let none = admin
        .call(
            "replay_dead_letters",
            &[("reason", "unknown_device"), ("scope", "selected")],
        )
        .await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(none.field_errors()[0].0, "ids");
    let bad_id = admin
        .call(
            "replay_dead_letters",
            &[
                ("reason", "unknown_device"),
                ("scope", "selected"),
                ("ids[]", "not-an-id"),
            ],
        )
        .await;
    assert_eq!(bad_id.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_scope = admin
        .call(
            "replay_dead_letters",
            &[("reason", "unknown_device"), ("scope", "everything")],
        )
        .await;
    assert_eq!(bad_scope.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The admin registers the meter; its first reading then arrives again, live.
    let created = admin
        .call(
            "create_device",
            &[
                ("description", "Late meter"),
                ("address", "1 Test Street"),
                ("max_power_kw", "2"),
                ("owner_id", &mia.to_string()),
                ("meter_id", &meter.to_string()),
            ],
        )
        .await
        .ok();
    assert_eq!(created["id"], meter.to_string());
    queue.send(sent[0].clone()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while readings_of(&app, meter).await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the live reading was not stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // One ticked letter: stored.
    let report = replay(
        &admin,
        &[
            ("reason", "unknown_device"),
            ("scope", "selected"),
            ("ids[]", &second),
        ],
    )
    .await;
    assert_eq!(report["replayed"], 1, "{report}");
    assert_eq!(report["stored"], 1, "{report}");
    assert_eq!(report["left"], 253, "{report}");
    assert_eq!(readings_of(&app, meter).await, 2);

    // The rest: the stranger's 250 stay; the first reading is stored already (not twice), the
    // third is new.
    let report = replay(&admin, &[("reason", "unknown_device"), ("scope", "all")]).await;
    assert_eq!(report["replayed"], 252, "{report}");
    assert_eq!(report["stored"], 1, "{report}");
    assert_eq!(report["already_stored"], 1, "{report}");
    assert_eq!(
        report["refused"],
        serde_json::json!([["unknown_device", 250]]),
        "{report}"
    );
    assert_eq!(report["left"], 250, "{report}");
    assert_eq!(readings_of(&app, meter).await, 3);
    assert_eq!(
        groups(&admin).await,
        vec![
            ("malformed_json".to_string(), 1, 1),
            ("unknown_device".to_string(), 250, 250)
        ]
    );
    assert_eq!(
        app.metering.metrics.dead_letters_replayed.get(),
        253 + 1 + 252
    );

    // The replayed readings raised their peaks for the owner: 0.5 kWh and then 1 kWh in 10
    // minutes are 3 kW and 6 kW against a 2 kW maximum.
    let listed = client.call("list_alerts", &[]).await.ok();
    let mut powers: Vec<f64> = listed["items"]
        .as_array()
        .expect("alerts")
        .iter()
        .inspect(|a| assert_eq!(a["device_id"], meter.to_string(), "{listed}"))
        .map(|a| a["power_kw"].as_f64().unwrap())
        .collect();
    powers.sort_by(f64::total_cmp);
    assert_eq!(powers.len(), 2, "{listed}");
    assert!(
        (powers[0] - 3.0).abs() < 1e-9 && (powers[1] - 6.0).abs() < 1e-9,
        "{powers:?}"
    );

    // A malformed message replayed stays where it is, under its reason.
    let report = replay(&admin, &[("reason", "malformed_json"), ("scope", "all")]).await;
    assert_eq!(
        report["refused"],
        serde_json::json!([["malformed_json", 1]])
    );
    assert_eq!(report["left"], 1);
}

async fn a_new_device_takes_the_meter_id_the_admin_enters(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let create = |meter_id: String| {
        let admin = admin.clone();
        async move {
            admin
                .call(
                    "create_device",
                    &[
                        ("description", "Meter"),
                        ("address", "1 Test Street"),
                        ("max_power_kw", "5"),
                        ("meter_id", &meter_id),
                    ],
                )
                .await
        }
    };
    for bad in [
        "abc",
        "00000000-0000-0000-0000-000000000000",
        "7c9e6679-7425",
    ] {
        let reply = create(bad.into()).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(reply.field_errors()[0].0, "meter_id", "{bad}");
    }
    let meter = Uuid::new_v4();
    let device = create(format!(" {} ", meter.to_string().to_uppercase()))
        .await
        .ok();
    assert_eq!(device["id"], meter.to_string());
    let again = create(meter.to_string()).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        again.field_errors(),
        vec![(
            "meter_id".to_string(),
            "A device with this meter id already exists.".to_string()
        )]
    );
    let blank = create(String::new()).await.ok();
    let made: Uuid = blank["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(made, meter);
    let listed = admin.call("list_devices", &[]).await.ok();
    assert_eq!(listed["total"], 2, "the refused ones created nothing");
}
