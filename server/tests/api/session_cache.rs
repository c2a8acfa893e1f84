//! Sessions trusted from memory (`SESSION_CACHE_SECS`): a session ended on one instance is
//! refused there at once and by another instance as soon as its live event arrives; when no
//! event can say so, within the cache's lifetime.

use std::time::{Duration, Instant};

use reqwest::header;
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{spawn_app_with, start, Backend, PASSWORD};
use crate::meter_support::{amqp_url, drop_topology, topology};

/// Far longer than any wait below: a refusal seen within a wait came from the event.
const LONG_LIFETIME: u64 = 300;
/// What an event may take from one instance to the other before the test fails.
const EVENT_DEADLINE: Duration = Duration::from_secs(5);

/// The user `cookie` is signed in as on `address`: (username, display name), or `None`.
async fn who(address: &str, cookie: &str) -> Option<(String, String)> {
    let response = reqwest::Client::new()
        .post(format!("{address}/api/get_current_user"))
        .header(header::COOKIE, cookie)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200, "get_current_user failed");
    let body: serde_json::Value = response.json().await.expect("a JSON answer");
    if body.is_null() {
        return None;
    }
    let field = |name: &str| {
        body[name]
            .as_str()
            .unwrap_or_else(|| panic!("a user without {name}: {body}"))
            .to_owned()
    };
    Some((field("username"), field("display_name")))
}

/// Asks `address` until `cookie` is refused; returns how long that took, or fails after
/// `deadline` with the number of answers that still let it in.
async fn refused_within(address: &str, cookie: &str, deadline: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut accepted = 0;
    while who(address, cookie).await.is_some() {
        accepted += 1;
        assert!(
            start.elapsed() < deadline,
            "{what}: still signed in after {:?} ({accepted} answers let it in)",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Changes a display name behind the server's back (no live event): a page that still shows
/// the old name was served from memory.
async fn rename_in_database(db: &sea_orm::DatabaseConnection, username: &str, name: &str) {
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "UPDATE users SET display_name = $1 WHERE username = $2"
            }
            _ => "UPDATE users SET display_name = ? WHERE username = ?",
        },
        [name.into(), username.into()],
    ))
    .await
    .expect("renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_on_one_instance_is_refused_by_the_other_when_its_event_arrives() {
    let topology = topology();
    let events = format!("{}.events", topology.exchange);
    let configure = |c: &mut server::Config| {
        c.amqp_url = Some(amqp_url());
        c.topology = topology.clone();
        c.amqp_events_exchange = events.clone();
        c.session_cache_secs = LONG_LIFETIME;
    };
    let first = spawn_app_with(Backend::Postgres, configure).await;
    let mut config = server::Config::for_database(first.database_url.clone());
    configure(&mut config);
    let (second, ..) = start(config).await;

    let admin = first.admin().await;
    let carol = first.create_client(&admin, "carol").await;
    let (signed_out, signed_out_cookie) = first.login_cookie("carol", PASSWORD).await;
    let (_, reset_cookie) = first.login_cookie("carol", PASSWORD).await;
    for cookie in [&signed_out_cookie, &reset_cookie] {
        for address in [&first.address, &second] {
            assert_eq!(
                who(address, cookie).await,
                Some(("carol".into(), "carol display".into()))
            );
        }
    }
    // Both instances now answer from memory: a change the database alone knows is not seen.
    rename_in_database(&first.db, "carol", "Carol Renamed").await;
    for address in [&first.address, &second] {
        assert_eq!(
            who(address, &reset_cookie)
                .await
                .map(|(_, name)| name)
                .as_deref(),
            Some("carol display"),
            "{address} did not answer from its session cache"
        );
    }

    // Signing out on the first: refused there at once, on the second when the event arrives.
    assert!(signed_out.call("logout", &[]).await.status.is_success());
    assert_eq!(who(&first.address, &signed_out_cookie).await, None);
    let sign_out = refused_within(&second, &signed_out_cookie, EVENT_DEADLINE, "sign-out").await;
    // The other session of the same user is untouched by that end.
    assert!(who(&second, &reset_cookie).await.is_some());

    // An admin's password reset ends every session of the account (one event for them all).
    admin
        .call(
            "update_account",
            &[
                ("id", &carol.to_string()),
                ("username", "carol"),
                ("display_name", "Carol"),
                ("password", "another-password-1"),
            ],
        )
        .await
        .ok();
    assert_eq!(who(&first.address, &reset_cookie).await, None);
    let reset = refused_within(&second, &reset_cookie, EVENT_DEADLINE, "password reset").await;
    println!(
        "a session ended on one instance was refused by the other after: sign-out {sign_out:?}, \
         password reset {reset:?} (cache lifetime {LONG_LIFETIME} s)"
    );
    drop_topology(&topology).await;
}

/// An end no event announces (here a row deleted by hand) is seen within the lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_event_an_ended_session_is_refused_within_the_cache_lifetime() {
    let lifetime = Duration::from_secs(3);
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.session_cache_secs = lifetime.as_secs();
    })
    .await;
    let admin = app.admin().await;
    app.create_client(&admin, "dave").await;
    let (_, cookie) = app.login_cookie("dave", PASSWORD).await;
    assert!(who(&app.address, &cookie).await.is_some());
    app.db
        .execute_unprepared("DELETE FROM sessions WHERE user_id IS NOT NULL")
        .await
        .expect("deleted");
    let deleted = Instant::now();
    // The window this setting allows: the entry is still trusted.
    assert!(
        who(&app.address, &cookie).await.is_some(),
        "the session was not held in memory"
    );
    let took = refused_within(
        &app.address,
        &cookie,
        lifetime + Duration::from_secs(1),
        "a deleted session",
    )
    .await;
    println!(
        "a session deleted without an event was refused {:?} later (lifetime {lifetime:?})",
        deleted.elapsed().max(took)
    );

    // With the cache off, the same deletion is refused on the next request.
    let app = spawn_app_with(Backend::Sqlite, |c| c.session_cache_secs = 0).await;
    let admin = app.admin().await;
    app.create_client(&admin, "erin").await;
    let (_, cookie) = app.login_cookie("erin", PASSWORD).await;
    assert!(who(&app.address, &cookie).await.is_some());
    app.db
        .execute_unprepared("DELETE FROM sessions WHERE user_id IS NOT NULL")
        .await
        .expect("deleted");
    assert_eq!(who(&app.address, &cookie).await, None);
}

/// The header's unread count, as `agent` gets it.
async fn unread(agent: &crate::helpers::Agent) -> i64 {
    let body = agent.call("get_live_summary", &[]).await.ok();
    body["unread"].as_i64().expect("a signed-in summary")
}

/// Asks `ask` until it answers `expected`; fails after `deadline` with the last answer.
async fn becomes<T: PartialEq + std::fmt::Debug, F: std::future::Future<Output = T>>(
    deadline: Duration,
    what: &str,
    expected: T,
    ask: impl Fn() -> F,
) {
    let start = Instant::now();
    loop {
        let seen = ask().await;
        if seen == expected {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: still {seen:?}, not {expected:?}, after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asks until the unread count is `expected`; fails after the deadline with the last count.
async fn unread_becomes(agent: &crate::helpers::Agent, expected: i64, what: &str) {
    becomes(EVENT_DEADLINE, what, expected, || unread(agent)).await;
}

/// An alert or a read, which the live events announce, shows at once in the header for the
/// owner and the admins, although the count is kept in memory (shown last: a change the
/// database alone knows is not seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unread_count_in_memory_follows_alerts_and_reads() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.session_cache_secs = LONG_LIFETIME).await;
    let admin = app.admin().await;
    let frank = app.create_client(&admin, "frank").await;
    let device = app.create_device(&admin, "Frank's kiln", Some(frank)).await;
    let client = app.login("frank", PASSWORD).await;
    assert_eq!((unread(&client).await, unread(&admin).await), (0, 0));

    let first = crate::helpers::raise_alert(&app, device).await;
    unread_becomes(&client, 1, "an alert on the client's device").await;
    unread_becomes(&admin, 1, "an alert, for an admin").await;

    // Reading it is the client's alone: the admin's count stays.
    client
        .call("mark_alerts_read", &[("id", &first.to_string())])
        .await
        .ok();
    unread_becomes(&client, 0, "the client read the alert").await;
    assert_eq!(unread(&admin).await, 1);

    // Alerts deleted behind the server's back (no event): the admin's count comes from memory.
    app.db
        .execute_unprepared("DELETE FROM alerts")
        .await
        .expect("deleted");
    assert_eq!(unread(&admin).await, 1, "the count was not held in memory");
}

/// The cards a dashboard shows (a client's own, or an admin's view of every device): the
/// description and the last reading's time of each.
async fn cards(agent: &crate::helpers::Agent) -> Vec<(String, Option<i64>)> {
    let body = agent.call("list_live_devices", &[("owner", "")]).await.ok();
    body["devices"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of cards: {body}"))
        .iter()
        .map(|card| {
            (
                card["device"]["description"]
                    .as_str()
                    .expect("a description")
                    .to_owned(),
                card["last"]["t_ms"].as_i64(),
            )
        })
        .collect()
}

/// What a change may take to show on the cards before the test fails: far less than the
/// cache's lifetime, and room enough for a loaded machine.
const CARDS_DEADLINE: Duration = Duration::from_secs(30);

/// Asks until the cards are `expected`; fails after the deadline with the last ones seen.
async fn cards_become(
    agent: &crate::helpers::Agent,
    expected: &[(String, Option<i64>)],
    what: &str,
) {
    becomes(CARDS_DEADLINE, what, expected.to_vec(), || cards(agent)).await;
}

/// A reading, which the hub passes on, and a device change, which an event announces, show at
/// once on the client's dashboard and the admins' view, although the pages of cards are kept in
/// memory (shown last: a change the database alone knows is not seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cards_in_memory_follow_readings_and_device_changes() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.session_cache_secs = LONG_LIFETIME).await;
    let admin = app.admin().await;
    let gina = app.create_client(&admin, "gina").await;
    let device = app.create_device(&admin, "Gina's pump", Some(gina)).await;
    let client = app.login("gina", PASSWORD).await;
    let named = |name: &str, last: Option<i64>| vec![(name.to_owned(), last)];
    assert_eq!(cards(&client).await, named("Gina's pump", None));
    assert_eq!(cards(&admin).await, named("Gina's pump", None));

    // A first reading, ten minutes ago: no alert, no event, only the reading passed on.
    let now = chrono::Utc::now().timestamp_millis();
    let step = crate::meter_support::STEP_MS;
    let t = now - now.rem_euclid(step) - step;
    let body = simulator::MeterMessage {
        timestamp: t,
        sensor_id: device,
        measurement_value: 12.5,
    }
    .to_json();
    let queue = app.metering.local.as_ref().expect("the embedded queue");
    queue.send(body).await.expect("queued");
    crate::meter_support::wait_for_rows(&app.db, "readings", 1, Duration::from_secs(60)).await;
    let stored = Instant::now();
    cards_become(
        &client,
        &named("Gina's pump", Some(t)),
        "a reading, for its owner",
    )
    .await;
    cards_become(
        &admin,
        &named("Gina's pump", Some(t)),
        "a reading, for an admin",
    )
    .await;
    println!(
        "a stored reading showed on both dashboards after {:?}",
        stored.elapsed()
    );

    let renamed = admin.rename_device(device, "Gina's heat pump").await;
    assert!(renamed.status.is_success(), "{renamed:?}");
    cards_become(&client, &named("Gina's heat pump", Some(t)), "a rename").await;
    cards_become(
        &admin,
        &named("Gina's heat pump", Some(t)),
        "a rename, for an admin",
    )
    .await;

    // Once the hub has passed every event on (nothing left to prune the cards), renamed behind
    // the server's back (no event): the cards come from memory.
    let newest = crate::meter_support::count(&app.db, "SELECT MAX(seq) FROM outbox").await;
    becomes(CARDS_DEADLINE, "the hub's position", newest, || async {
        app.hub.last_seq()
    })
    .await;
    cards_become(
        &client,
        &named("Gina's heat pump", Some(t)),
        "the cards, kept",
    )
    .await;
    app.db
        .execute_unprepared("UPDATE devices SET description = 'Hidden'")
        .await
        .expect("renamed");
    assert_eq!(
        cards(&client).await,
        named("Gina's heat pump", Some(t)),
        "the cards were not held in memory"
    );
}
