//! The live dashboard's WebSocket: who may open it, who hears what, catching up after a
//! reconnect, slow and silent peers, sessions that end, and (on PostgreSQL and RabbitMQ) two
//! instances and a crash between commit and publication.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use app::live::LiveEvent;
use sea_orm::{ConnectionTrait, Statement};
use simulator::MeterMessage;
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with, start, Backend, TestApp, PASSWORD};
use crate::meter_support::*;
use crate::ws_client::{changed, connect, open, origin_of, reconnect};

crate::on_both_backends!(
    the_handshake_needs_a_session_and_one_of_the_sites_origins,
    each_client_hears_its_own_devices_once_and_admins_hear_all,
    unassigning_a_device_stops_its_events_at_once,
    signing_out_or_a_password_reset_closes_that_sessions_sockets,
    a_reconnecting_socket_replays_exactly_what_it_missed,
);

const WAIT: Duration = Duration::from_secs(20);
/// The maximum of devices made by `TestApp::create_device`.
const MAX_KW: f64 = 3.5;

/// Meter messages for `device`, ten minutes apart from `start_ms`, with these register values.
fn messages(device: Uuid, start_ms: i64, registers: &[f64]) -> Vec<Vec<u8>> {
    registers
        .iter()
        .enumerate()
        .map(|(i, &kwh)| {
            MeterMessage {
                timestamp: start_ms + i as i64 * STEP_MS,
                sensor_id: device,
                measurement_value: kwh,
            }
            .to_json()
        })
        .collect()
}

/// A test app on PostgreSQL and the deployment's event exchange that consumes another queue
/// than `topology`'s (returned, to drop), so that only server processes take the meters'
/// readings; its relay looks for unpublished events every `relay_poll_ms`.
async fn app_consuming_elsewhere(
    topology: &simulator::Topology,
    events: &str,
    relay_poll_ms: u64,
) -> (TestApp, simulator::Topology) {
    let other = simulator::Topology::with_prefix(&format!("{}-other", topology.exchange));
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.amqp_url = Some(amqp_url());
        c.topology = other.clone();
        c.amqp_events_exchange = events.to_owned();
        c.live_relay_poll_ms = relay_poll_ms;
    })
    .await;
    (app, other)
}

/// A start time on a ten-minute boundary, `hours` back.
fn hours_ago(hours: i64) -> i64 {
    let now = chrono::Utc::now().timestamp_millis();
    now - now.rem_euclid(STEP_MS) - hours * 3_600_000
}

/// Feeds bodies to the embedded queue.
async fn feed_local(app: &TestApp, bodies: Vec<Vec<u8>>) {
    let queue = app.metering.local.as_ref().expect("the embedded queue");
    for body in bodies {
        queue.send(body).await.expect("queued");
    }
}

async fn rename(app: &TestApp, admin: &crate::helpers::Agent, device: Uuid, name: &str) {
    let _ = app;
    admin.rename_device(device, name).await.ok();
}

async fn the_handshake_needs_a_session_and_one_of_the_sites_origins(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_client(&admin, "alice").await;
    let (_, cookie) = app.login_cookie("alice", PASSWORD).await;
    let own = origin_of(&app.address);

    let anonymous = connect(&app.address, None, Some(&own), None).await;
    assert_eq!(anonymous.err().map(|r| r.0), Some(401), "no session");
    let forged = connect(
        &app.address,
        Some("energy_session=forged"),
        Some(&own),
        None,
    )
    .await;
    assert_eq!(forged.err().map(|r| r.0), Some(401), "an unknown session");
    let foreign = connect(
        &app.address,
        Some(&cookie),
        Some("http://evil.example"),
        None,
    )
    .await;
    assert_eq!(foreign.err().map(|r| r.0), Some(403), "a foreign origin");
    let bad_after = connect(&app.address, Some(&cookie), Some(&own), Some(-5)).await;
    assert_eq!(
        bad_after.err().map(|r| r.0),
        Some(400),
        "a negative position"
    );

    let mut socket = connect(&app.address, Some(&cookie), Some(&own), None)
        .await
        .expect("a signed-in socket from the site's origin opens");
    socket
        .until(WAIT, "hello", |f| matches!(f.event, LiveEvent::Hello(_)))
        .await;
    assert_eq!(app.metering.metrics.ws_refused.get(), 3);
    assert_eq!(app.hub.sockets(), 1);

    // Frames from the browser are not taken: the socket says so and closes.
    socket.send_text("hello server").await;
    assert_eq!(socket.until_closed(WAIT).await, 1003);
}

async fn each_client_hears_its_own_devices_once_and_admins_hear_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let bob = app.create_client(&admin, "bob").await;
    let alices = app.create_device(&admin, "Alice's pump", Some(alice)).await;
    let bobs = app.create_device(&admin, "Bob's oven", Some(bob)).await;
    let (_, alice_cookie) = app.login_cookie("alice", PASSWORD).await;
    let (_, bob_cookie) = app.login_cookie("bob", PASSWORD).await;
    let (_, admin_cookie) = app
        .login_cookie(crate::helpers::ADMIN, crate::helpers::ADMIN_PASSWORD)
        .await;
    let mut alice_socket = open(&app.address, &alice_cookie, None).await;
    let mut alice_tab = open(&app.address, &alice_cookie, None).await;
    let mut bob_socket = open(&app.address, &bob_cookie, None).await;
    let mut admin_socket = open(&app.address, &admin_cookie, None).await;

    // Alice's meter: 0.2 kWh a step (1.2 kW), then 1 kWh in ten minutes (6 kW over 3.5 kW),
    // then normal again: one peak, one episode. Bob's: normal throughout.
    let start = hours_ago(2);
    feed_local(
        &app,
        messages(alices, start, &[10.0, 10.2, 10.4, 11.4, 11.6]),
    )
    .await;
    feed_local(&app, messages(bobs, start, &[5.0, 5.1, 5.2])).await;
    wait_for_rows(&app.db, "readings", 8, WAIT).await;
    wait_for_rows(&app.db, "alerts", 1, WAIT).await;

    // A marker after everything: renaming each device announces it after the alert.
    rename(&app, &admin, alices, "Alice's heat pump").await;
    rename(&app, &admin, bobs, "Bob's big oven").await;
    for socket in [&mut alice_socket, &mut alice_tab] {
        socket.until(WAIT, "alice's marker", changed(alices)).await;
        assert_eq!(socket.alert_ids().len(), 1, "{:?}", socket.kinds());
        assert!(socket.reading_devices().contains(&alices));
        assert!(
            !socket.reading_devices().contains(&bobs),
            "bob's readings reached alice"
        );
        let episode = socket
            .seen
            .iter()
            .find_map(|f| match &f.event {
                LiveEvent::EpisodeStarted(e) => Some(e.clone()),
                _ => None,
            })
            .expect("the episode started");
        // The oracle: 1 kWh in 10 minutes is 6 kW.
        assert!((episode.max_power_kw - 6.0).abs() < 1e-9, "{episode:?}");
        assert_eq!(
            (episode.limit_kw, episode.device.as_str()),
            (MAX_KW, "Alice's pump")
        );
    }
    bob_socket.until(WAIT, "bob's marker", changed(bobs)).await;
    assert!(
        bob_socket.alert_ids().is_empty(),
        "{:?}",
        bob_socket.kinds()
    );
    assert!(!bob_socket.reading_devices().contains(&alices));
    assert!(!bob_socket.seen.iter().any(|f| changed(alices)(f)));

    admin_socket
        .until(WAIT, "bob's marker", changed(bobs))
        .await;
    assert_eq!(admin_socket.alert_ids(), alice_socket.alert_ids());
    let heard: BTreeSet<Uuid> = admin_socket.reading_devices().into_iter().collect();
    assert_eq!(heard, BTreeSet::from([alices, bobs]));

    // The same readings again (a meter resending): nothing new for anyone.
    feed_local(
        &app,
        messages(alices, start, &[10.0, 10.2, 10.4, 11.4, 11.6]),
    )
    .await;
    rename(&app, &admin, alices, "Alice's pump again").await;
    alice_socket
        .until(WAIT, "the second marker", changed(alices))
        .await;
    assert_eq!(
        alice_socket.alert_ids().len(),
        1,
        "{:?}",
        alice_socket.kinds()
    );
}

async fn unassigning_a_device_stops_its_events_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let taken = app.create_device(&admin, "Taken away", Some(alice)).await;
    let kept = app.create_device(&admin, "Kept", Some(alice)).await;
    let (_, alice_cookie) = app.login_cookie("alice", PASSWORD).await;
    let (_, admin_cookie) = app
        .login_cookie(crate::helpers::ADMIN, crate::helpers::ADMIN_PASSWORD)
        .await;
    let mut alice_socket = open(&app.address, &alice_cookie, None).await;
    let mut admin_socket = open(&app.address, &admin_cookie, None).await;

    let start = hours_ago(3);
    feed_local(&app, messages(taken, start, &[1.0])).await;
    alice_socket
        .until(WAIT, "the reading while assigned", |f| {
            matches!(&f.event, LiveEvent::Readings(r) if r.iter().any(|r| r.device_id == taken))
        })
        .await;

    admin
        .call("unassign_device", &[("id", &taken.to_string())])
        .await
        .ok();
    alice_socket
        .until(
            WAIT,
            "the unassignment",
            |f| matches!(&f.event, LiveEvent::DeviceUnassigned(d) if d.device_id == taken),
        )
        .await;
    let before = alice_socket.seen.len();

    // A reading of the device that is no longer hers, then one of hers: the admin hears the
    // first (so it was dispatched) before alice hears the second; alice never hears the first.
    feed_local(&app, messages(taken, start + STEP_MS, &[1.1])).await;
    admin_socket
        .until(WAIT, "the unassigned device's reading", |f| {
            matches!(&f.event, LiveEvent::Readings(r) if r.iter().any(|r| r.device_id == taken && r.energy_kwh == 1.1))
        })
        .await;
    feed_local(&app, messages(kept, start, &[2.0])).await;
    alice_socket
        .until(
            WAIT,
            "her other device's reading",
            |f| matches!(&f.event, LiveEvent::Readings(r) if r.iter().any(|r| r.device_id == kept)),
        )
        .await;
    let after: Vec<_> = alice_socket.seen[before..].to_vec();
    assert!(
        !after.iter().any(
            |f| matches!(&f.event, LiveEvent::Readings(r) if r.iter().any(|r| r.device_id == taken))
        ),
        "a reading of an unassigned device reached its former owner: {after:?}"
    );
}

async fn signing_out_or_a_password_reset_closes_that_sessions_sockets(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let device = app.create_device(&admin, "Pump", Some(alice)).await;
    let (laptop, laptop_cookie) = app.login_cookie("alice", PASSWORD).await;
    let (_, phone_cookie) = app.login_cookie("alice", PASSWORD).await;
    let mut laptop_socket = open(&app.address, &laptop_cookie, None).await;
    let mut phone_socket = open(&app.address, &phone_cookie, None).await;

    // Signing out on the laptop closes the laptop's socket, and only that one.
    laptop.call("logout", &[]).await;
    assert_eq!(laptop_socket.until_closed(WAIT).await, 4001);
    rename(&app, &admin, device, "Marker").await;
    phone_socket
        .until(WAIT, "the marker on the phone", changed(device))
        .await;
    let refused = connect(
        &app.address,
        Some(&laptop_cookie),
        Some(&origin_of(&app.address)),
        None,
    )
    .await;
    assert_eq!(
        refused.err().map(|r| r.0),
        Some(401),
        "the old cookie opens nothing"
    );

    // A password reset by an admin ends every session of the account.
    admin
        .call(
            "update_account",
            &[
                ("id", &alice.to_string()),
                ("username", "alice"),
                ("display_name", "Alice"),
                ("password", "a-new-password-1"),
            ],
        )
        .await
        .ok();
    assert_eq!(phone_socket.until_closed(WAIT).await, 4001);
    assert_eq!(app.hub.sockets(), 0);
}

async fn a_reconnecting_socket_replays_exactly_what_it_missed(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let device = app.create_device(&admin, "Pump", Some(alice)).await;
    let (_, cookie) = app.login_cookie("alice", PASSWORD).await;
    let socket = open(&app.address, &cookie, None).await;
    let position = socket.position();
    socket.close().await;

    // Three peaks while the browser is away: 1 kWh steps (6 kW) between 0.1 kWh steps.
    let start = hours_ago(4);
    feed_local(
        &app,
        messages(device, start, &[1.0, 1.1, 2.1, 2.2, 3.2, 3.3, 4.3, 4.4]),
    )
    .await;
    wait_for_rows(&app.db, "alerts", 3, WAIT).await;
    rename(&app, &admin, device, "Marker").await;

    let mut back = reconnect(&app.address, &cookie, Some(position)).await;
    // The replay comes before the hello; the marker may be in it or come after.
    back.until(WAIT, "hello", |f| matches!(f.event, LiveEvent::Hello(_)))
        .await;
    if !back.seen.iter().any(changed(device)) {
        back.until(WAIT, "the marker", changed(device)).await;
    }
    let ids = back.alert_ids();
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (3, 3), "{:?}", back.kinds());
    // Replayed before the hello, in order.
    let hello = back
        .seen
        .iter()
        .position(|f| matches!(f.event, LiveEvent::Hello(_)))
        .expect("a hello");
    let replayed: Vec<i64> = back.seen[..hello].iter().map(|f| f.seq).collect();
    assert!(replayed.windows(2).all(|w| w[0] < w[1]), "{replayed:?}");
    assert!(replayed.iter().all(|&s| s > position));
    let position = back.position();
    back.close().await;

    // Nothing happened since: a reconnect replays nothing.
    let mut again = reconnect(&app.address, &cookie, Some(position)).await;
    let hello = again
        .until(WAIT, "hello", |f| matches!(f.event, LiveEvent::Hello(_)))
        .await;
    assert_eq!(hello.event, LiveEvent::Hello(position));
    assert_eq!(again.seen.len(), 1, "{:?}", again.kinds());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_socket_is_told_to_reload_and_holds_up_no_one() {
    // Room for the relay's largest burst (500 events) several times over.
    let app = spawn_app_with(Backend::Sqlite, |c| c.live_socket_buffer = 2000).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let device = app.create_device(&admin, "Pump", Some(alice)).await;
    let (_, cookie) = app.login_cookie("alice", PASSWORD).await;
    let mut stalled = crate::ws_client::open_with_small_window(&app.address, &cookie).await;
    // The reader reads all along, as a browser does (a reader that only starts reading after
    // the feed is a stalled socket too, and rightly told to reload).
    let mut reader = open(&app.address, &cookie, None).await;
    let reading = tokio::spawn(async move {
        reader
            .until(Duration::from_secs(240), "the marker", changed(device))
            .await;
        (reader, Instant::now())
    });

    // 10,000 intervals, every other one a peak: 5,000 alerts and 10,000 episode events, far
    // more than the stalled socket's connection and queue hold.
    let registers: Vec<f64> = (0..=10_000)
        .map(|i| (i / 2) as f64 * 1.1 + (i % 2) as f64 * 0.1)
        .collect();
    feed_local(&app, messages(device, hours_ago(1_700), &registers)).await;
    wait_for_rows(&app.db, "alerts", 5_000, Duration::from_secs(120)).await;
    rename(&app, &admin, device, "Marker").await;
    let sent = Instant::now();
    let (reader, marked) = reading.await.expect("the reader read to the marker");
    assert_eq!(
        reader.alert_ids().len(),
        5_000,
        "the reading socket got everything"
    );
    println!(
        "reader had every alert {:?} after the marker was sent; resyncs: {}",
        marked.saturating_duration_since(sent),
        app.metering.metrics.ws_resyncs.get()
    );

    // The stalled one, read at last: it was told to reload.
    stalled
        .until(Duration::from_secs(30), "a resync", |f| {
            f.event == LiveEvent::Resync
        })
        .await;
    assert!(app.metering.metrics.ws_resyncs.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closes_when_its_session_expires_unused() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.session_idle_timeout_secs = 2).await;
    let admin = app.admin().await;
    app.create_client(&admin, "alice").await;
    let (_, cookie) = app.login_cookie("alice", PASSWORD).await;
    let mut socket = open(&app.address, &cookie, None).await;
    let opened = Instant::now();
    // The socket does not keep the session alive: no request uses it, so it ends.
    assert_eq!(socket.until_closed(Duration::from_secs(10)).await, 4001);
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "closed before the session could have expired: {:?}",
        opened.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_is_dropped() {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.live_ping_secs = 1;
        c.live_dead_after_secs = 2;
    })
    .await;
    let admin = app.admin().await;
    app.create_client(&admin, "alice").await;
    let (_, cookie) = app.login_cookie("alice", PASSWORD).await;
    let mut answering = open(&app.address, &cookie, None).await;
    // Never read: never answers a ping.
    let _silent = reconnect(&app.address, &cookie, None).await;
    let deadline = Instant::now() + WAIT;
    while app.metering.metrics.ws_dropped.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the silent peer is still there: {} sockets",
            app.hub.sockets()
        );
        // Reading keeps this one answering pings.
        answering.pump(Duration::from_millis(200)).await;
    }
    assert_eq!(app.hub.sockets(), 1, "the answering socket stays");
}

/// Two instances on one PostgreSQL database and one RabbitMQ: a peak consumed by either
/// reaches its owner's socket on the other, once, and no one else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peak_consumed_by_either_instance_reaches_its_owner_on_the_other_once() {
    let topology = topology();
    let events = format!("{}.events", topology.exchange);
    let configure = |c: &mut server::Config| {
        c.amqp_url = Some(amqp_url());
        c.topology = topology.clone();
        c.amqp_events_exchange = events.clone();
        // Small windows, so that both instances take part.
        c.amqp_prefetch = 10;
        c.consumer_batch_size = 5;
    };
    let first = spawn_app_with(Backend::Postgres, configure).await;
    let mut config = server::Config::for_database(first.database_url.clone());
    configure(&mut config);
    let (second_address, _, second, second_hub) = start(config).await;

    let admin = first.admin().await;
    let alice = first.create_client(&admin, "alice").await;
    let bob = first.create_client(&admin, "bob").await;
    let alices = first
        .create_device(&admin, "Alice's pump", Some(alice))
        .await;
    let bobs = first.create_device(&admin, "Bob's oven", Some(bob)).await;
    let (_, alice_cookie) = first.login_cookie("alice", PASSWORD).await;
    let (_, bob_cookie) = first.login_cookie("bob", PASSWORD).await;
    let (_, admin_cookie) = first
        .login_cookie(crate::helpers::ADMIN, crate::helpers::ADMIN_PASSWORD)
        .await;
    let mut alice_socket = open(&second_address, &alice_cookie, None).await;
    let mut bob_socket = open(&second_address, &bob_cookie, None).await;
    let mut admin_socket = open(&first.address, &admin_cookie, None).await;
    assert_eq!((first.hub.sockets(), second_hub.sockets()), (1, 2));

    // Alice: 300 intervals, every third a peak (1 kWh, 6 kW); Bob: normal.
    let start = hours_ago(60);
    let registers: Vec<f64> = (0..=300)
        .map(|i| (i / 3) as f64 * 1.2 + (i % 3) as f64 * 0.1)
        .collect();
    let mut bodies = messages(alices, start, &registers);
    bodies.extend(messages(bobs, start, &vec![1.0; 100]));
    let stats = publish(&topology, bodies).await;
    assert_eq!(stats.confirmed, 401);
    wait_for_rows(&first.db, "readings", 301 + 1, Duration::from_secs(60)).await;
    wait_for_rows(&first.db, "alerts", 100, Duration::from_secs(60)).await;
    let (a, b) = (
        first.metering.metrics.peaks.get(),
        second.metrics.peaks.get(),
    );
    println!("peaks raised by the first instance: {a}, by the second: {b}");
    assert!(a > 0 && b > 0, "both instances raised peaks ({a}, {b})");

    rename(&first, &admin, alices, "Marker").await;
    rename(&first, &admin, bobs, "Marker").await;
    alice_socket
        .until(WAIT, "alice's marker", changed(alices))
        .await;
    bob_socket.until(WAIT, "bob's marker", changed(bobs)).await;
    admin_socket
        .until(WAIT, "bob's marker", changed(bobs))
        .await;

    let stored: BTreeSet<Uuid> = {
        let rows = first
            .db
            .query_all_raw(Statement::from_string(
                first.db.get_database_backend(),
                "SELECT id FROM alerts",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect()
    };
    for (who, socket) in [("alice", &alice_socket), ("the admin", &admin_socket)] {
        let ids = socket.alert_ids();
        let unique: BTreeSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "{who} heard an alert twice");
        assert_eq!(unique, stored, "{who} heard every alert");
    }
    assert!(bob_socket.alert_ids().is_empty());
    assert!(!bob_socket.reading_devices().contains(&alices));
    drop_topology(&topology).await;
    delete_exchange(&events).await;
    crate::meter_support::step("the end of the test body");
}

/// The server process dies right after committing an alert and before publishing it: after a
/// restart, the alert reaches the owner's socket, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_committed_just_before_a_crash_is_announced_after_the_restart() {
    let topology = topology();
    let events = format!("{}.events", topology.exchange);
    // This instance serves the sockets and consumes another queue: only the process under test
    // consumes the meter's readings. It polls the outbox rarely, so that the restarted process
    // is what publishes the alert.
    let (app, other) = app_consuming_elsewhere(&topology, &events, 600_000).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let device = app.create_device(&admin, "Pump", Some(alice)).await;
    let (_, cookie) = app.login_cookie("alice", PASSWORD).await;
    let mut socket = open(&app.address, &cookie, None).await;

    let extra = [
        ("AMQP_EVENTS_EXCHANGE", events.as_str()),
        ("ENERGY_TEST_FAULT", "exit-after-alert-commit"),
    ];
    let mut doomed = ServerProcess::start_with(&app.database_url, &topology, 10, &extra);
    let start = hours_ago(5);
    publish(&topology, messages(device, start, &[1.0, 1.1, 2.1])).await;
    let status = doomed.wait_exit(WAIT);
    assert_eq!(status, Some(86), "the process died at the fault point");

    // The alert is stored and its event is in the outbox, unpublished.
    wait_for_rows(&app.db, "alerts", 1, WAIT).await;
    let published = count(&app.db, "SELECT published_seq FROM relay_cursor").await;
    let announced = count(
        &app.db,
        "SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE kind = 'alert'",
    )
    .await;
    assert!(
        announced > published,
        "announced {announced}, published {published}"
    );

    let _restarted = ServerProcess::start_with(
        &app.database_url,
        &topology,
        10,
        &[("AMQP_EVENTS_EXCHANGE", events.as_str())],
    );
    socket
        .until(WAIT, "the alert", |f| {
            matches!(f.event, LiveEvent::Alert(_))
        })
        .await;
    rename(&app, &admin, device, "Marker").await;
    socket.until(WAIT, "the marker", changed(device)).await;
    assert_eq!(socket.alert_ids().len(), 1, "{:?}", socket.kinds());
    drop_topology(&topology).await;
    drop_topology(&other).await;
    delete_exchange(&events).await;
}

/// Two instances share PostgreSQL and RabbitMQ while the simulator's publisher sends 1,000
/// readings a second; each instance in turn gets SIGTERM (as `docker stop` or systemd sends it)
/// and is started again. The signed-in client's socket is on the instance that stops each time:
/// it is closed with "going away", reconnects to the other instance from where it was, and
/// hears every alert once. Nothing is lost or stored twice, and every peak is alerted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_the_owner_misses_no_alert() {
    const DRAIN_SECS: u64 = 10;
    let topology = topology();
    let events = format!("{}.events", topology.exchange);
    // The test app holds the database and answers the admin; it consumes another queue, so
    // only the two server processes take the meters' readings.
    let (app, other) = app_consuming_elsewhere(&topology, &events, 1_000).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let max = 5.0;
    let devices = create_devices(&app.db, 20, max).await;
    app.db
        .execute_unprepared(&format!("UPDATE devices SET owner_id = '{alice}'"))
        .await
        .unwrap();
    // 18 s of readings at 1,000/s: both stops land well inside it, even on a loaded machine.
    let (messages, expected) = feed(&devices, 900, max);
    let total = messages.len() as i64;
    assert_eq!(total, 18_000);
    let (_, cookie) = app.login_cookie("alice", PASSWORD).await;

    let drain = DRAIN_SECS.to_string();
    let extra = [
        ("AMQP_EVENTS_EXCHANGE", events.as_str()),
        ("SHUTDOWN_TIMEOUT_SECS", drain.as_str()),
    ];
    let start = || ServerProcess::start_with(&app.database_url, &topology, 100, &extra);
    let mut instances = [start(), start()];
    let mut socket = open(&instances[0].address, &cookie, None).await;

    let bodies: Vec<Vec<u8>> = messages.iter().map(MeterMessage::to_json).collect();
    let publishing = tokio::spawn({
        let topology = topology.clone();
        async move { publish_at_rate(&topology, bodies, 1_000).await }
    });

    let mut drains = Vec::new();
    for (stopping, other_one) in [(0, 1), (1, 0)] {
        let before = 2_000 + stopping as i64 * 4_000;
        wait_for_rows(&app.db, "readings", before, Duration::from_secs(60)).await;
        // The stop lands while readings are still to be stored.
        let stored = count(&app.db, "SELECT COUNT(*) FROM readings").await;
        assert!(
            stored < total,
            "the restart came after the feed ({stored} stored)"
        );
        // Both instances take part: the one stopping has readings of its own in hand.
        instances[stopping].read_metrics().await;
        assert!(
            instances[stopping].accepted > 0,
            "instance {stopping} consumed nothing"
        );
        let signalled = Instant::now();
        instances[stopping].terminate();
        let code = socket.until_closed(WAIT).await;
        assert_eq!(code, 1001, "the socket is closed with \"going away\"");
        let position = socket.position();
        let exit = instances[stopping].wait_exit(Duration::from_secs(DRAIN_SECS + 5));
        let took = signalled.elapsed();
        assert_eq!(
            exit,
            Some(0),
            "instance {stopping} exits cleanly within the bound"
        );
        drains.push(took);
        // As the browser does: reconnect (behind a proxy, to whichever instance is up) from
        // the last event it has.
        let mut moved = reconnect(&instances[other_one].address, &cookie, Some(position)).await;
        moved.seen = std::mem::take(&mut socket.seen);
        socket = moved;
        instances[stopping] = start();
    }

    let stats = tokio::time::timeout(Duration::from_secs(120), publishing)
        .await
        .expect("the feed ends")
        .unwrap();
    assert_eq!(stats.confirmed, 18_000, "{stats:?}");
    wait_for_rows(&app.db, "readings", total, Duration::from_secs(120)).await;
    let (lost, duplicated) = lost_and_duplicated(&app.db, &messages).await;
    let stored = stored_alerts(&app.db).await;
    let announced = announced_alerts(&app.db).await;
    // A marker after everything: once it arrives, every earlier event has been delivered.
    rename(&app, &admin, devices[0], "Marker").await;
    socket.until(WAIT, "the marker", changed(devices[0])).await;
    let heard = socket.alert_ids();
    let unique: BTreeSet<Uuid> = heard.iter().copied().collect();
    println!(
        "rolling restart at 1,000 readings/s: {total} readings, lost = {lost}, duplicated = \
         {duplicated}, alerts = {} (expected {}), announced = {}, heard = {} ({} distinct), \
         drains took {:?}",
        stored.len(),
        expected.len(),
        announced.len(),
        heard.len(),
        unique.len(),
        drains
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(stored, expected, "every peak alerted");
    let announced_once: BTreeSet<_> = announced.iter().copied().collect();
    assert_eq!(
        announced.len(),
        announced_once.len(),
        "an alert announced twice"
    );
    assert_eq!(announced_once, expected, "every alert announced");
    assert_eq!(heard.len(), unique.len(), "the owner heard an alert twice");
    assert_eq!(unique.len(), expected.len(), "the owner missed an alert");
    drop(instances);
    drop_topology(&topology).await;
    drop_topology(&other).await;
    delete_exchange(&events).await;
}
