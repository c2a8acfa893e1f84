//! The live path on this machine, against the real PostgreSQL and RabbitMQ (not a timed test: it
//! prints figures for docs/benchmarks.md).
//!
//! (1) Latency from publishing a reading (the simulator's publisher) to the alert's frame at the
//!     owner's WebSocket, while 1,000 other readings a second flow; p50 and p99.
//! (2) 10,000 authenticated sockets on one server process: its memory, and the time for one
//!     alert to reach every socket that should get it (the owner's 10 tabs and 1,000 admin
//!     sockets); p50 and p95.
//!
//! `cargo bench -p server --bench live` (LIVE_BENCH_SOCKETS sets the size of (2)).

#[allow(dead_code)]
#[path = "../tests/api/meter_support.rs"]
mod meter_support;

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::auth::ssr::{AUTH_AT, SEEN_AT, USER_ID};
use app::entities::users;
use app::live::{Frame, LiveEvent};
use chrono::Utc;
use futures_util::StreamExt;
use meter_support::*;
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use simulator::{MeterMessage, Publisher, PublisherOptions, Topology};
use support::{drop_database, fresh_database};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tower_sessions::session::{Id, Record};
use tower_sessions::SessionStore;
use uuid::Uuid;

const ADMIN: &str = "bench-admin";
const ADMIN_PASSWORD: &str = "bench-admin-password";
const MAX_KW: f64 = 5.0;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn publisher(topology: &Topology) -> Publisher {
    let mut options = PublisherOptions::new(amqp_url(), topology.clone());
    options.window = 64;
    Publisher::connect(options)
        .await
        .expect("publisher connects")
}

/// What a socket saw of one alert: which socket, the alert's device, when it arrived, when the
/// server detected it and when it arrived by the wall clock (ms).
type Heard = (usize, Uuid, Instant, i64, i64);

/// A socket that reports each alert it receives.
async fn listen(
    address: &str,
    cookie: &str,
    index: usize,
    report: mpsc::UnboundedSender<Heard>,
) -> anyhow::Result<()> {
    let host = address.trim_start_matches("http://");
    let mut request = format!("ws://{host}/ws").into_client_request()?;
    request.headers_mut().insert("cookie", cookie.parse()?);
    request
        .headers_mut()
        .insert("origin", address.trim_end_matches('/').parse()?);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut stream, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Text(text) = message {
                if let Ok(Frame {
                    event: LiveEvent::Alert(alert),
                    ..
                }) = serde_json::from_str::<Frame>(text.as_str())
                {
                    let _ = report.send((
                        index,
                        alert.device_id,
                        Instant::now(),
                        alert.created_ms,
                        Utc::now().timestamp_millis(),
                    ));
                }
            }
        }
    });
    Ok(())
}

/// (1) Publish-to-frame latency under 1,000 readings a second of other traffic.
/// Per probe: publish to frame, publish to detection (committed), detection to frame.
struct Latencies {
    total: Vec<Duration>,
    to_detection: Vec<Duration>,
    to_frame: Vec<Duration>,
}

async fn latency(probes: usize) -> (Latencies, u64) {
    let (url, name) = fresh_database().await;
    let topology = topology();
    let events = format!("{}.events", topology.exchange);
    let mut config = server::Config::for_database(url);
    config.amqp_url = Some(amqp_url());
    config.topology = topology.clone();
    config.amqp_events_exchange = events.clone();
    config.admin_username = Some(ADMIN.into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    let app = server::Application::build(config).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let metering = app.metering().clone();
    let (stop_app, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let attach_deadline = Instant::now() + Duration::from_secs(60);
    while !metering.metrics.connected() {
        assert!(
            Instant::now() < attach_deadline,
            "the consumer did not attach in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The probe's owner signs in over HTTP, like a browser.
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let call = |endpoint: &str, args: &[(&str, &str)]| {
        http.post(format!("{address}/api/{endpoint}"))
            .form(args)
            .send()
    };
    call(
        "login",
        &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
    )
    .await
    .unwrap();
    let created: serde_json::Value = call(
        "create_account",
        &[
            ("username", "probe-owner"),
            ("display_name", "Probe owner"),
            ("password", "probe-owner-password"),
        ],
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let owner: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let probe = create_devices(&db, 1, MAX_KW).await[0];
    db.execute_unprepared(&format!(
        "UPDATE devices SET owner_id = '{owner}' WHERE id = '{probe}'"
    ))
    .await
    .unwrap();
    let background = create_devices(&db, 100, MAX_KW).await;
    let client = reqwest::Client::builder().build().unwrap();
    let cookie =
        support::session_cookie(&client, &address, "probe-owner", "probe-owner-password").await;
    let (report, mut reports) = mpsc::unbounded_channel();
    listen(&address, &cookie, 0, report).await.unwrap();

    // 1,000 readings a second: 100 devices, each a reading every 100 ms of wall time (one
    // minute of meter time each), spread evenly: ten every 10 ms, as independent meters are.
    let start_ms = Utc::now().timestamp_millis() - 90 * 86_400_000;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let topology = topology.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut publisher = publisher(&topology).await;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut slot = 0usize;
            let mut sent = 0u64;
            while !stop.load(Relaxed) {
                tick.tick().await;
                let step = (slot / 10) as i64;
                let first = (slot % 10) * 10;
                for (i, device) in background.iter().enumerate().skip(first).take(10) {
                    let body = MeterMessage {
                        timestamp: start_ms + step * 60_000,
                        sensor_id: *device,
                        measurement_value: 100.0 + step as f64 * 0.01 + i as f64,
                    }
                    .to_json();
                    publisher.publish(body).await.unwrap();
                    sent += 1;
                }
                slot += 1;
            }
            publisher.close().await.unwrap();
            sent
        })
    };

    // The probe: every interval a peak (1 kWh a minute is 60 kW), ten a second.
    let mut probe_publisher = publisher(&topology).await;
    let mut latencies = Latencies {
        total: Vec::with_capacity(probes),
        to_detection: Vec::with_capacity(probes),
        to_frame: Vec::with_capacity(probes),
    };
    let first = MeterMessage {
        timestamp: start_ms,
        sensor_id: probe,
        measurement_value: 0.0,
    };
    probe_publisher.publish(first.to_json()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while reports.try_recv().is_ok() {}
    for k in 1..=probes as i64 {
        let body = MeterMessage {
            timestamp: start_ms + k * 60_000,
            sensor_id: probe,
            measurement_value: k as f64,
        }
        .to_json();
        let sent = Instant::now();
        let sent_ms = Utc::now().timestamp_millis();
        probe_publisher.publish(body).await.unwrap();
        let deadline = sent + Duration::from_secs(10);
        match tokio::time::timeout_at(deadline.into(), reports.recv()).await {
            Ok(Some((_, _, at, detected_ms, heard_ms))) => {
                let millis = |ms: i64| Duration::from_millis(ms.max(0) as u64);
                latencies.total.push(at - sent);
                latencies.to_detection.push(millis(detected_ms - sent_ms));
                latencies.to_frame.push(millis(heard_ms - detected_ms));
            }
            _ => panic!(
                "probe {k}: no alert within 10 s ({} received before)",
                latencies.total.len()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Relaxed);
    let sent = load.await.unwrap();
    let text = metering.metrics.render();
    let figure = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let batches = figure("energy_batch_processing_seconds_count");
    let slow = |le: &str| {
        batches
            - figure(&format!(
                "energy_batch_processing_seconds_bucket{{le=\"{le}\"}}"
            ))
    };
    println!(
        "    consumer batches slower than 10 ms: {:.0}, than 25 ms: {:.0}, than 100 ms: {:.0}",
        slow("0.01"),
        slow("0.025"),
        slow("0.1")
    );
    println!(
        "    consumer: {batches:.0} batches, {:.1} ms each on average, {:.1} messages each",
        1000.0 * figure("energy_batch_processing_seconds_sum") / batches.max(1.0),
        figure("energy_batch_messages_total") / batches.max(1.0)
    );
    probe_publisher.close().await.unwrap();
    let _ = stop_app.send(());
    let _ = running.await;
    drop_topology(&topology).await;
    delete_exchange(&events).await;
    drop_database(&name).await;
    latencies.total.sort();
    latencies.to_detection.sort();
    latencies.to_frame.sort();
    (latencies, sent)
}

/// The resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// (2) Many sockets on one server process.
async fn many_sockets(sockets: usize, rounds: usize) {
    let (url, name) = fresh_database().await;
    let topology = topology();
    let db = server::db::connect_and_migrate(&url).await.unwrap();
    let store = server::session_store::DbSessionStore::new(db.clone(), Default::default());

    // A tenth of the sockets are one admin's; the rest, ten tabs per client.
    let admin_sockets = sockets / 10;
    let clients = (sockets - admin_sockets) / 10;
    let user = |role: &str, n: usize| users::ActiveModel {
        id: Set(Uuid::new_v4()),
        username: Set(format!("{role}-{n}")),
        display_name: Set(format!("{role} {n}")),
        role: Set(role.into()),
        // No one signs in with a password here: sessions are made below.
        password_hash: Set("-".into()),
        created_at: Set(Utc::now()),
    };
    let admin = user("admin", 0);
    let admin_id = *admin.id.as_ref();
    users::Entity::insert(admin).exec(&db).await.unwrap();
    let mut client_ids = Vec::with_capacity(clients);
    for chunk in (0..clients).collect::<Vec<_>>().chunks(500) {
        let models: Vec<_> = chunk.iter().map(|&n| user("client", n)).collect();
        client_ids.extend(models.iter().map(|m| *m.id.as_ref()));
        users::Entity::insert_many(models).exec(&db).await.unwrap();
    }
    let devices = create_devices(&db, clients, MAX_KW).await;
    for (device, owner) in devices.iter().zip(&client_ids) {
        db.execute_unprepared(&format!(
            "UPDATE devices SET owner_id = '{owner}' WHERE id = '{device}'"
        ))
        .await
        .unwrap();
    }
    let now = Utc::now().timestamp();
    let mut cookies: Vec<(String, Option<usize>)> = Vec::with_capacity(sockets);
    let owners: Vec<(Uuid, Option<usize>)> = (0..admin_sockets)
        .map(|_| (admin_id, None))
        .chain(
            client_ids
                .iter()
                .enumerate()
                .flat_map(|(i, id)| std::iter::repeat_n((*id, Some(i)), 10)),
        )
        .collect();
    for (user_id, client) in owners {
        let mut record = Record {
            id: Id(rand::random()),
            data: HashMap::from([
                (USER_ID.to_owned(), serde_json::json!(user_id)),
                (AUTH_AT.to_owned(), serde_json::json!(now)),
                (SEEN_AT.to_owned(), serde_json::json!(now)),
            ]),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(2),
        };
        store.create(&mut record).await.unwrap();
        cookies.push((format!("energy_session={}", record.id), client));
    }

    let mut child = ServerProcess::start(&url, &topology, 1000);
    let address = child.address.clone();
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mib(pid);

    // Baselines: every device's first reading, so the next one makes an interval.
    let start_ms = Utc::now().timestamp_millis() - 86_400_000;
    let mut publisher = publisher(&topology).await;
    for device in &devices {
        let body = MeterMessage {
            timestamp: start_ms,
            sensor_id: *device,
            measurement_value: 10.0,
        }
        .to_json();
        publisher.publish(body).await.unwrap();
    }

    let (report, mut reports) = mpsc::unbounded_channel();
    let connecting = Instant::now();
    let mut opened = 0;
    for chunk in cookies.chunks(200) {
        let attempts = chunk
            .iter()
            .enumerate()
            .map(|(i, (cookie, _))| listen(&address, cookie, opened + i, report.clone()));
        for result in futures_util::future::join_all(attempts).await {
            result.expect("a socket opens");
        }
        opened += chunk.len();
    }
    let connect_secs = connecting.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_mib(pid);
    let metrics = reqwest::get(format!("{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open_now = metrics
        .lines()
        .find_map(|l| l.strip_prefix("energy_ws_connections "))
        .unwrap_or("?")
        .to_owned();
    while reports.try_recv().is_ok() {}

    // Each round: one client's device peaks; its 10 tabs and every admin socket must hear it.
    let mut fanout = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let client = (round * 37) % clients;
        let device = devices[client];
        let expected = 10 + admin_sockets;
        let body = MeterMessage {
            timestamp: start_ms + 600_000,
            sensor_id: device,
            measurement_value: 20.0,
        }
        .to_json();
        let sent = Instant::now();
        publisher.publish(body).await.unwrap();
        let mut heard = 0;
        let mut last = sent;
        let deadline = sent + Duration::from_secs(30);
        while heard < expected {
            match tokio::time::timeout_at(deadline.into(), reports.recv()).await {
                Ok(Some((socket, alert_device, at, _, _))) => {
                    assert_eq!(alert_device, device, "socket {socket} heard another device");
                    let owner_tab = cookies[socket].1 == Some(client);
                    let admin = cookies[socket].1.is_none();
                    assert!(
                        owner_tab || admin,
                        "socket {socket} is not the owner's or an admin's"
                    );
                    heard += 1;
                    last = at;
                }
                _ => panic!("round {round}: {heard} of {expected} sockets heard the alert in 30 s"),
            }
        }
        fanout.push(last - sent);
        // Nothing more is to come for this alert: anything left is a duplicate.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let extra = std::iter::from_fn(|| reports.try_recv().ok()).count();
        assert_eq!(
            extra, 0,
            "round {round}: {extra} frames beyond one per socket"
        );
    }
    let after = rss_mib(pid);
    publisher.close().await.unwrap();
    fanout.sort();
    println!(
        "(2) {sockets} sockets ({admin_sockets} of an admin, {} clients x 10 tabs) opened in \
         {connect_secs:.1} s; server reports {open_now} open",
        clients
    );
    println!(
        "    server RSS: {idle:.0} MiB idle, {loaded:.0} MiB with the sockets, {after:.0} MiB \
         after {rounds} alerts (target <= 500 MB)"
    );
    println!(
        "    one alert to all {} sockets that should get it: p50 {}, p95 {}, max {} \
         (target p95 <= 500 ms)",
        10 + admin_sockets,
        ms(percentile(&fanout, 50.0)),
        ms(percentile(&fanout, 95.0)),
        ms(*fanout.last().unwrap_or(&Duration::ZERO)),
    );
    child.kill();
    drop_topology(&topology).await;
    delete_exchange(&format!("{}.events", topology.exchange)).await;
    db.close().await.ok();
    drop_database(&name).await;
}

#[tokio::main]
async fn main() {
    let sockets: usize = std::env::var("LIVE_BENCH_SOCKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!("live path benchmark");
    let (latencies, background) = latency(600).await;
    let total = &latencies.total;
    println!(
        "(1) publish -> alert frame at the owner's socket, {} probes under {background} other \
         readings (1,000/s): p50 {}, p99 {}, max {} (target p99 <= 20 ms)",
        total.len(),
        ms(percentile(total, 50.0)),
        ms(percentile(total, 99.0)),
        ms(*total.last().unwrap_or(&Duration::ZERO)),
    );
    println!(
        "    of which publish -> committed: p50 {}, p99 {}; committed -> frame: p50 {}, p99 {} \
         (wall clock, 1 ms resolution)",
        ms(percentile(&latencies.to_detection, 50.0)),
        ms(percentile(&latencies.to_detection, 99.0)),
        ms(percentile(&latencies.to_frame, 50.0)),
        ms(percentile(&latencies.to_frame, 99.0)),
    );
    many_sockets(sockets, 30).await;
}
