//! The metering pipeline end to end: the simulator library publishes to a real RabbitMQ, the
//! server consumes into a real database (PostgreSQL or SQLite), and the tests count what was
//! stored, dead-lettered and alerted. Every test has queue and exchange names of its own.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};
use server::metering::message::{Rejection, TimeBounds};
use server::metering::metrics::Metrics;
use server::metering::pipeline::{Pipeline, Verdict};
use server::metering::store::NewAlert;
use simulator::MeterMessage;
use uuid::Uuid;

use crate::helpers::{postgres_admin_url, spawn_app, spawn_app_with, start, Backend, TestApp};
use crate::meter_support::*;

async fn spawn_consumer(backend: Backend, topology: &simulator::Topology) -> TestApp {
    let topology = topology.clone();
    spawn_app_with(backend, move |c| {
        c.amqp_url = Some(amqp_url());
        c.topology = topology;
    })
    .await
}

crate::on_both_backends!(
    simulator_readings_are_stored_once_with_exactly_the_expected_peaks,
    late_readings_resets_and_conflicts_follow_the_peak_rule,
);

async fn simulator_readings_are_stored_once_with_exactly_the_expected_peaks(backend: Backend) {
    let topology = topology();
    let app = spawn_consumer(backend, &topology).await;
    let max = 6.0;
    let devices = create_devices(&app.db, 4, max).await;
    let (messages, expected) = feed(&devices, 250, max);

    // Every reading once, then 100 of them again (a meter resending), then 5 conflicting
    // copies: a different value for a stored (device, timestamp).
    let mut bodies: Vec<Vec<u8>> = messages.iter().map(MeterMessage::to_json).collect();
    bodies.extend(messages.iter().step_by(10).map(MeterMessage::to_json));
    bodies.extend(messages.iter().skip(3).step_by(200).map(|m| {
        MeterMessage {
            measurement_value: m.measurement_value + 1.0,
            ..*m
        }
        .to_json()
    }));
    let stats = publish(&topology, bodies).await;
    assert_eq!(stats.confirmed, 1105, "{stats:?}");
    assert_eq!(stats.returned + stats.failed, 0);

    wait_for_rows(&app.db, "readings", 1000, Duration::from_secs(60)).await;
    let metrics = &app.metering.metrics;
    for _ in 0..100 {
        if metrics.accepted.get() + metrics.duplicates.get() + metrics.conflicts.get() >= 1105 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lost_and_duplicated(&app.db, &messages).await, (0, 0));
    assert_eq!(metrics.accepted.get(), 1000);
    assert_eq!(metrics.duplicates.get(), 100);
    assert_eq!(metrics.conflicts.get(), 5);

    let alerts = stored_alerts(&app.db).await;
    assert_eq!(alerts, expected);
    let announced = announced_alerts(&app.db).await;
    assert_eq!(announced.len(), expected.len(), "each alert announced once");
    assert_eq!(
        announced.into_iter().collect::<BTreeSet<_>>(),
        expected,
        "each new alert is announced in the outbox"
    );

    let scrape = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap();
    assert_eq!(
        scrape.headers()[reqwest::header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = scrape.text().await.unwrap();
    assert!(
        text.contains("energy_readings_accepted_total 1000\n"),
        "{text}"
    );
    assert!(text.contains("energy_readings_conflict_total 5\n"));
    assert!(text.contains(&format!("energy_peaks_detected_total {}\n", expected.len())));
    assert!(text.contains("energy_consumer_connected{queue=\"amqp\"} 1\n"));
    // The process metrics every Prometheus client exports, and the format's closing line.
    let resident: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no process_resident_memory_bytes in\n{text}"));
    assert!(resident > 1e6, "{resident}");
    assert!(text.contains("\nprocess_open_fds "), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    drop_topology(&topology).await;
}

/// Bad messages, each with the reason the dead-letter header must carry.
fn catalogue(device: Uuid, now: i64) -> Vec<(Vec<u8>, &'static str)> {
    let ok = |rest: &str| format!(r#"{{"sensor_id":"{device}",{rest}}}"#).into_bytes();
    vec![
        (vec![b' '; 5000], "oversized"),
        (vec![0xff, 0xfe, 0x00], "not_utf8"),
        (b"{\"timestamp\":".to_vec(), "malformed_json"),
        (Vec::new(), "malformed_json"),
        (b"NaN".to_vec(), "malformed_json"),
        (b"[1,2,3]".to_vec(), "not_an_object"),
        (
            ok(&format!(r#""timestamp":{now},"measurement_value":1,"extra":true"#)),
            "unknown_field",
        ),
        (ok(r#""measurement_value":1"#), "missing_field"),
        (ok(&format!(r#""timestamp":{now}"#)), "missing_field"),
        (
            format!(r#"{{"sensor_id":"{device}","device_id":"{device}","timestamp":{now},"measurement_value":1}}"#)
                .into_bytes(),
            "both_ids",
        ),
        (
            format!(r#"{{"timestamp":{now},"measurement_value":1}}"#).into_bytes(),
            "no_id",
        ),
        (
            format!(r#"{{"sensor_id":12,"timestamp":{now},"measurement_value":1}}"#).into_bytes(),
            "wrong_type",
        ),
        (
            ok(&format!(r#""timestamp":"{now}","measurement_value":1"#)),
            "wrong_type",
        ),
        (
            ok(&format!(r#""timestamp":{now}.5,"measurement_value":1"#)),
            "wrong_type",
        ),
        (
            ok(&format!(r#""timestamp":{now},"measurement_value":"12""#)),
            "wrong_type",
        ),
        (
            format!(r#"{{"sensor_id":"meter-7","timestamp":{now},"measurement_value":1}}"#)
                .into_bytes(),
            "bad_device_id",
        ),
        (
            ok(r#""timestamp":-5,"measurement_value":1"#),
            "negative_timestamp",
        ),
        (
            // Seconds instead of milliseconds.
            ok(&format!(r#""timestamp":{},"measurement_value":1"#, now / 1000)),
            "early_timestamp",
        ),
        (
            ok(&format!(r#""timestamp":{now},"measurement_value":2e9"#)),
            "value_too_large",
        ),
        (
            ok(&format!(r#""timestamp":{},"measurement_value":1"#, now + 3_600_000)),
            "future_timestamp",
        ),
        (
            ok(&format!(r#""timestamp":{now},"measurement_value":-3.5"#)),
            "negative_value",
        ),
        (
            ok(&format!(r#""timestamp":{now},"measurement_value":1e999"#)),
            "malformed_json",
        ),
        (
            format!(
                r#"{{"sensor_id":"{}","timestamp":{now},"measurement_value":1}}"#,
                Uuid::new_v4()
            )
            .into_bytes(),
            "unknown_device",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_with_their_reason_and_block_nothing() {
    let topology = topology();
    let app = spawn_consumer(Backend::Postgres, &topology).await;
    let max = 6.0;
    let devices = create_devices(&app.db, 2, max).await;
    let (messages, _) = feed(&devices, 100, max);
    let now = chrono::Utc::now().timestamp_millis();
    let bad = catalogue(devices[0], now);
    assert!(bad.len() >= 17);

    // A bad message after every ninth good one.
    let mut bodies = Vec::new();
    let mut bad_iter = bad.iter();
    for (i, m) in messages.iter().enumerate() {
        bodies.push(m.to_json());
        if i % 9 == 0 {
            if let Some((body, _)) = bad_iter.next() {
                bodies.push(body.clone());
            }
        }
    }
    for (body, _) in bad_iter {
        bodies.push(body.clone());
    }
    let stats = publish(&topology, bodies).await;
    assert_eq!(stats.confirmed as usize, messages.len() + bad.len());

    wait_for_rows(
        &app.db,
        "readings",
        messages.len() as i64,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(lost_and_duplicated(&app.db, &messages).await, (0, 0));

    // Every instance drains the dead-letter queue into the table; read it back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let kept = loop {
        let kept = dead_letter_rows(&app.db).await;
        let n: i64 = kept.iter().map(|(_, _, count)| count).sum();
        if n as usize >= bad.len() {
            break kept;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {n} dead letters of {} in the table",
            bad.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut reasons: Vec<String> = kept
        .iter()
        .flat_map(|(reason, _, count)| std::iter::repeat_n(reason.clone(), *count as usize))
        .collect();
    let mut want: Vec<String> = bad.iter().map(|(_, r)| r.to_string()).collect();
    want.sort();
    reasons.sort();
    assert_eq!(reasons, want);
    for (body, reason) in &bad {
        assert!(
            kept.iter().any(|(r, b, _)| r == reason && b == body),
            "the dead letter keeps its body ({reason})"
        );
    }
    assert_eq!(
        app.metering.metrics.dead_letters_kept.get() as usize,
        bad.len()
    );
    // /metrics shows them by reason: the table's counts, worked out here from the catalogue.
    let text = get_text(&format!("{}/metrics", app.address)).await;
    let mut by_reason = std::collections::BTreeMap::<&str, usize>::new();
    for (_, reason) in &bad {
        *by_reason.entry(reason).or_default() += 1;
    }
    for (reason, n) in by_reason {
        let line = format!("energy_dead_letters{{reason=\"{reason}\"}} {n}\n");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    assert_eq!(app.metering.metrics.rejected("unknown_device"), 1);
    assert_eq!(app.metering.metrics.rejected("wrong_type"), 4);
    drop_topology(&topology).await;
}

/// The edge cases of the peak rule, through the same step the consumers use.
async fn late_readings_resets_and_conflicts_follow_the_peak_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    let device = create_devices(&app.db, 1, 6.0).await[0];
    let pipeline = Pipeline::new(
        app.db.clone(),
        Arc::new(Metrics::new("test")),
        None,
        TimeBounds::default(),
    );
    let base = chrono::Utc::now().timestamp_millis() - 24 * 3_600_000;
    let at = |minutes: i64| base + minutes * 60_000;
    let msg = |minutes: i64, kwh: f64| {
        MeterMessage {
            timestamp: at(minutes),
            sensor_id: device,
            measurement_value: kwh,
        }
        .to_json()
    };
    // Each call gives the verdicts, and keeps the alerts raised for `raised` to take.
    let raised_by = std::sync::Mutex::new(Vec::new());
    let process = |bodies: Vec<Vec<u8>>| {
        let (pipeline, raised_by) = (&pipeline, &raised_by);
        async move {
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let processed = pipeline.process(&refs).await.unwrap();
            raised_by.lock().unwrap().extend(processed.alerts);
            processed.verdicts
        }
    };
    let raised = |raised_by: &std::sync::Mutex<Vec<NewAlert>>| -> Vec<(i64, i64)> {
        std::mem::take(&mut *raised_by.lock().unwrap())
            .into_iter()
            .map(|a| ((a.t1_ms - base) / 60_000, (a.t2_ms - base) / 60_000))
            .collect()
    };

    // 3 kWh in 20 minutes is 9 kW: a peak over a 6 kW maximum.
    assert_eq!(
        process(vec![msg(0, 100.0), msg(20, 103.0)]).await,
        [Verdict::Stored, Verdict::Stored]
    );
    assert_eq!(raised(&raised_by), [(0, 20)]);

    // A late reading splits it: both halves are checked, the old alert stays.
    assert_eq!(process(vec![msg(10, 102.5)]).await, [Verdict::Stored]);
    assert_eq!(raised(&raised_by), [(0, 10)]);
    // (0,10): 15 kW, a peak; (10,20): 3 kW, not.

    // Exactly the maximum is no peak: 1 kWh in 10 minutes is 6 kW.
    process(vec![msg(30, 104.0)]).await;
    assert_eq!(raised(&raised_by), Vec::<(i64, i64)>::new());

    // A falling register is a reset: no alert, and the new value is the base.
    process(vec![msg(40, 0.5)]).await;
    assert!(raised(&raised_by).is_empty());
    process(vec![msg(50, 2.0)]).await;
    assert_eq!(raised(&raised_by), [(40, 50)]);

    // The same reading again is a no-op; another value for it is a conflict, and the first
    // value stands. Copies inside one batch are judged the same way.
    assert_eq!(
        process(vec![
            msg(50, 2.0),
            msg(50, 9.0),
            msg(60, 2.1),
            msg(60, 2.1),
            msg(60, 7.0)
        ])
        .await,
        [
            Verdict::Duplicate,
            Verdict::Conflict,
            Verdict::Stored,
            Verdict::Duplicate,
            Verdict::Conflict
        ]
    );
    assert!(raised(&raised_by).is_empty());
    assert_eq!(
        count(&app.db, "SELECT COUNT(*) FROM readings").await,
        7,
        "0, 10, 20, 30, 40, 50, 60"
    );
    let stored_60: f64 = {
        let row = app
            .db
            .query_one_raw(Statement::from_sql_and_values(
                app.db.get_database_backend(),
                match backend {
                    Backend::Postgres => "SELECT energy_kwh FROM readings WHERE ts = $1",
                    Backend::Sqlite => "SELECT energy_kwh FROM readings WHERE ts = ?",
                },
                [at(60).into()],
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index(0).unwrap()
    };
    assert_eq!(stored_60, 2.1);

    // An unknown device is rejected, the rest of its batch is stored.
    let stranger = MeterMessage {
        timestamp: at(70),
        sensor_id: Uuid::new_v4(),
        measurement_value: 1.0,
    }
    .to_json();
    assert_eq!(
        process(vec![stranger, msg(70, 2.2)]).await,
        [Verdict::Rejected(Rejection::UnknownDevice), Verdict::Stored]
    );

    // Very late readings (ten hours back) in the same batch as a current one: each part of
    // the batch is placed between its own neighbours.
    // (-600,-590): 10 kWh in 10 minutes, a peak; (-590,0): 40 kWh in 590 minutes, not;
    // (70,80): 1.1 kWh in 10 minutes, 6.6 kW, a peak.
    assert_eq!(
        process(vec![msg(-600, 50.0), msg(-590, 60.0), msg(80, 3.3)]).await,
        [Verdict::Stored, Verdict::Stored, Verdict::Stored]
    );
    let mut late = raised(&raised_by);
    late.sort();
    assert_eq!(late, [(-600, -590), (70, 80)]);

    let history: BTreeSet<(i64, i64)> = stored_alerts(&app.db)
        .await
        .into_iter()
        .map(|(_, t1, t2)| ((t1 - base) / 60_000, (t2 - base) / 60_000))
        .collect();
    assert_eq!(
        history,
        BTreeSet::from([(0, 20), (0, 10), (40, 50), (-600, -590), (70, 80)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_instances_raise_each_peak_exactly_once() {
    let topology = topology();
    let first = spawn_consumer(Backend::Postgres, &topology).await;
    let mut config = server::Config::for_database(first.database_url.clone());
    config.amqp_url = Some(amqp_url());
    config.topology = topology.clone();
    let (_, _, second, _) = start(config).await;

    let max = 5.0;
    let devices = create_devices(&first.db, 20, max).await;
    let (messages, expected) = feed(&devices, 500, max);
    let stats = publish(&topology, messages.iter().map(MeterMessage::to_json)).await;
    assert_eq!(stats.confirmed, 10_000);

    wait_for_rows(&first.db, "readings", 10_000, Duration::from_secs(120)).await;
    let (lost, duplicated) = lost_and_duplicated(&first.db, &messages).await;
    println!("two instances: 10000 readings, lost = {lost}, duplicated = {duplicated}");
    assert_eq!((lost, duplicated), (0, 0));

    let alerts = stored_alerts(&first.db).await;
    assert_eq!(alerts, expected);
    let mut notified = announced_alerts(&first.db).await;
    let (a, b) = (
        first.metering.metrics.accepted.get(),
        second.metrics.accepted.get(),
    );
    println!("instance readings: {a} + {b}; peaks: {}", notified.len());
    assert!(a > 0 && b > 0, "both instances consumed ({a}, {b})");
    notified.sort();
    let unique: BTreeSet<_> = notified.iter().copied().collect();
    assert_eq!(notified.len(), unique.len(), "no alert is notified twice");
    assert_eq!(unique, expected);
    drop_topology(&topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_the_database_being_unavailable() {
    let topology = topology();
    let app = spawn_consumer(Backend::Postgres, &topology).await;
    let name = current_database(&app).await;
    let max = 5.0;
    let devices = create_devices(&app.db, 10, max).await;
    let (messages, expected) = feed(&devices, 1_200, max);
    let publisher = {
        let topology = topology.clone();
        let bodies: Vec<Vec<u8>> = messages.iter().map(MeterMessage::to_json).collect();
        tokio::spawn(async move { publish(&topology, bodies).await })
    };
    wait_for_rows(&app.db, "readings", 2_000, Duration::from_secs(60)).await;

    // Refuse new connections and end the app's for five seconds.
    database_accepts_connections(&name, false).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    database_accepts_connections(&name, true).await;

    let stats = publisher.await.unwrap();
    assert_eq!(stats.confirmed, 12_000);
    wait_for_rows(&app.db, "readings", 12_000, Duration::from_secs(120)).await;
    let (lost, duplicated) = lost_and_duplicated(&app.db, &messages).await;
    let retries = app.metering.metrics.transient_failures.get();
    println!(
        "database outage: 12000 readings, lost = {lost}, duplicated = {duplicated}, batches retried = {retries}"
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert!(retries > 0, "the outage was noticed");
    assert_eq!(stored_alerts(&app.db).await, expected);
    drop_topology(&topology).await;
}

/// The quorum queue counts every return of an unacknowledged delivery towards its delivery
/// limit, failures or not. With the database down, each lost consumer session returns the
/// readings it held; past the limit the broker dead-letters them, valid as they are. The
/// server's dead-letter drain must store them once the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_dead_lettered_at_the_delivery_limit_are_stored_after_all() {
    let mut topology = topology();
    topology.delivery_limit = 3;
    let proxy = CutProxy::start().await;
    let app = {
        let (topology, url) = (topology.clone(), proxy.url.clone());
        spawn_app_with(Backend::Postgres, move |c| {
            c.amqp_url = Some(url);
            c.topology = topology;
        })
        .await
    };
    let name = current_database(&app).await;
    let max = 5.0;
    let devices = create_devices(&app.db, 2, max).await;
    let (messages, expected) = feed(&devices, 60, max);
    let metrics = app.metering.metrics.clone();

    database_accepts_connections(&name, false).await;
    let stats = publish(&topology, messages.iter().map(MeterMessage::to_json)).await;
    assert_eq!(stats.confirmed as usize, messages.len());
    // Each time a new session holds the readings (none ready; the first session tried to store
    // them, later ones saw them come back), cut its connection: the broker takes them back. One
    // return more than the limit, and the broker dead-letters them.
    let sessions = topology.delivery_limit as u64 + 1;
    let mut redelivered_before = 0;
    for cut in 0..sessions {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ready = ready_messages(&topology.queue).await;
            let redelivered = metrics.redelivered.get();
            let tried = metrics.transient_failures.get();
            let holds = if cut == 0 {
                tried > 0
            } else {
                redelivered > redelivered_before
            };
            if ready == 0 && holds {
                redelivered_before = redelivered;
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cut {cut}: {ready} readings ready, {redelivered} redelivered, {tried} tries"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(proxy.cut() > 0, "cut {cut}: the consumer had no connection");
    }
    // The database comes back only once the last cut session has ended (a session that is
    // still retrying could store its batch and only then find its channel gone) and the broker
    // has dead-lettered the readings.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reconnects = metrics.reconnects.get();
        let dead = ready_messages(&topology.dead_letter_queue).await;
        if reconnects >= sessions && dead > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{reconnects} reconnects, {dead} dead letters waiting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    database_accepts_connections(&name, true).await;

    wait_for_rows(
        &app.db,
        "readings",
        messages.len() as i64,
        Duration::from_secs(120),
    )
    .await;
    let (lost, duplicated) = lost_and_duplicated(&app.db, &messages).await;
    let recovered = metrics.dead_letters_recovered.get();
    let reconnects = metrics.reconnects.get();
    println!(
        "delivery limit {}: {} readings, sessions dropped = {sessions}, reconnects = {reconnects}, \
         recovered from the dead-letter queue = {recovered}, lost = {lost}, duplicated = {duplicated}",
        topology.delivery_limit,
        messages.len()
    );
    // The fault happened: the sessions were lost and the broker dead-lettered valid readings.
    assert!(reconnects >= sessions, "only {reconnects} reconnects");
    assert!(recovered > 0, "the broker dead-lettered nothing");
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(stored_alerts(&app.db).await, expected);
    assert_eq!(
        dead_letter_rows(&app.db).await.len(),
        0,
        "a valid reading was kept as a dead letter"
    );
    drop_topology(&topology).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_the_consumer_being_killed_before_it_acks() {
    let topology = topology();
    // The database and devices come from a test app that consumes nothing (no broker).
    let app = spawn_app(Backend::Postgres).await;
    let max = 5.0;
    let devices = create_devices(&app.db, 10, max).await;
    let (messages, expected) = feed(&devices, 1_200, max);
    let stats = publish(&topology, messages.iter().map(MeterMessage::to_json)).await;
    assert_eq!(stats.confirmed, 12_000);

    let mut redelivered_duplicates = 0;
    let mut redelivered = 0;
    for stop_at in [3_000, 7_000] {
        let mut child = ServerProcess::start(&app.database_url, &topology, 200);
        wait_for_rows(&app.db, "readings", stop_at, Duration::from_secs(60)).await;
        child.read_metrics().await;
        child.kill();
        redelivered_duplicates += child.duplicates;
        redelivered += child.redelivered;
    }
    let mut last = ServerProcess::start(&app.database_url, &topology, 200);
    wait_for_rows(&app.db, "readings", 12_000, Duration::from_secs(120)).await;
    last.read_metrics().await;
    redelivered_duplicates += last.duplicates;
    redelivered += last.redelivered;
    let (lost, duplicated) = lost_and_duplicated(&app.db, &messages).await;
    println!(
        "consumer killed twice: 12000 readings, lost = {lost}, duplicated = {duplicated}, \
         redelivered = {redelivered}, of which already stored = {redelivered_duplicates}"
    );
    // The kills landed while deliveries were unacknowledged: the broker sent them again.
    assert!(redelivered > 0, "no kill landed before an ack");
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(stored_alerts(&app.db).await, expected);
    last.kill();
    drop_topology(&topology).await;
}

#[tokio::test]
async fn the_embedded_queue_stores_readings_and_keeps_dead_letters() {
    let app = spawn_app(Backend::Sqlite).await;
    let queue = app
        .metering
        .local
        .clone()
        .expect("no AMQP_URL: in-process queue");
    let devices = create_devices(&app.db, 2, 6.0).await;
    let (messages, expected) = feed(&devices, 60, 6.0);
    for m in &messages {
        queue.send(m.to_json()).await.unwrap();
    }
    queue.send(b"{\"oops\":1}".to_vec()).await.unwrap();
    queue.send(b"{\"oops\":1}".to_vec()).await.unwrap();
    wait_for_rows(&app.db, "readings", 120, Duration::from_secs(30)).await;
    wait_for_rows(&app.db, "dead_letters", 1, Duration::from_secs(30)).await;
    // The same body again for the same reason counts on the row it has.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = dead_letter_rows(&app.db).await;
        if rows.iter().map(|(_, _, n)| n).sum::<i64>() >= 2 {
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(rows[0].2, 2);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lost_and_duplicated(&app.db, &messages).await, (0, 0));
    assert_eq!(stored_alerts(&app.db).await, expected);
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT reason, detail FROM dead_letters",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "unknown_field");
    assert!(row.try_get_by_index::<String>(1).unwrap().contains("oops"));
}

#[tokio::test]
async fn demo_mode_feeds_readings_and_raises_peaks() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.demo = true;
        c.demo_interval_secs = 1;
        c.demo_peak_every_secs = 2;
    })
    .await;
    wait_for_rows(&app.db, "readings", 8, Duration::from_secs(20)).await;
    wait_for_rows(&app.db, "alerts", 1, Duration::from_secs(20)).await;
    let body: serde_json::Value = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["queue"], "ok");
    assert_eq!(body["queue_kind"], "in-process");
}

#[tokio::test]
async fn health_is_503_while_the_broker_is_unreachable() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.amqp_url = Some("amqp://guest:guest@127.0.0.1:1/%2f".into());
        c.topology = topology();
    })
    .await;
    let response = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["queue"], "disconnected");
}

/// A broker that takes TCP connections and never says a word (one out of file descriptors does
/// that): each connection attempt is given up after the connect deadline and made again, rather
/// than waited on for good, and health says the queue is down meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_is_given_up_on_and_tried_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
    let taking = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            taking.lock().unwrap().push(std::time::Instant::now());
            held.push(socket);
        }
    });
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.amqp_url = Some(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
        c.topology = topology();
    })
    .await;

    let limit = simulator::publisher::CONNECT_TIMEOUT;
    let deadline = std::time::Instant::now() + limit * 2 + Duration::from_secs(15);
    let (first, retried) = loop {
        let times = accepted.lock().unwrap().clone();
        let first = times.first().copied();
        let retried = first.and_then(|f| {
            times
                .iter()
                .find(|t| t.duration_since(f) >= Duration::from_secs(3))
                .map(|t| t.duration_since(f))
        });
        if let (Some(first), Some(retried)) = (first, retried) {
            break (first, retried);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no second attempt: {} connections taken",
            times.len()
        );
        let health = reqwest::get(format!("{}/healthz", app.address))
            .await
            .unwrap();
        assert_eq!(health.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "a silent broker: {} connections at first, tried again after {retried:?}",
        accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.duration_since(first) < Duration::from_secs(3))
            .count()
    );
    // It waited for the handshake (no spinning) and gave up within the deadline and its backoff.
    assert!(
        retried >= limit - Duration::from_secs(1) && retried <= limit + Duration::from_secs(10),
        "tried again after {retried:?}, the deadline being {limit:?}"
    );
}

/// Lets the test database take connections again, or refuses new ones and ends those open.
async fn database_accepts_connections(name: &str, allowed: bool) {
    let admin = Database::connect(postgres_admin_url()).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allowed}"
        ))
        .await
        .unwrap();
    if !allowed {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ))
            .await
            .unwrap();
    }
    let _ = admin.close().await;
}

/// The `dead_letters` table: (reason, body, count) of each row.
async fn dead_letter_rows(db: &sea_orm::DatabaseConnection) -> Vec<(String, Vec<u8>, i64)> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT reason, payload, count FROM dead_letters",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.try_get_by_index(0).unwrap(),
            row.try_get_by_index(1).unwrap(),
            row.try_get_by_index(2).unwrap(),
        )
    })
    .collect()
}

async fn current_database(app: &TestApp) -> String {
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT current_database()",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

/// A queue declared earlier with other arguments is a fault the consumer cannot mend: the
/// server stops with an error (exit 1: a service manager shows it and restarts), rather than
/// looking like a clean stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_the_consumer_cannot_use_stops_the_server_with_an_error() {
    use lapin::options::QueueDeclareOptions;
    let topology = topology();
    let app = spawn_app(Backend::Postgres).await;
    let connection = lapin::Connection::connect(&amqp_url(), Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // A classic queue where the server wants a quorum queue.
    channel
        .queue_declare(
            topology.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut server = ServerProcess::start(&app.database_url, &topology, 10);
    let code = server.wait_exit(Duration::from_secs(30));
    assert_eq!(code, Some(1), "the server's exit code");
    drop_topology(&topology).await;
}
