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

/// Asks until the unread count is `expected`; fails after `deadline` with the last count seen.
async fn unread_becomes(agent: &crate::helpers::Agent, expected: i64, what: &str) {
    let start = Instant::now();
    loop {
        let seen = unread(agent).await;
        if seen == expected {
            return;
        }
        assert!(
            start.elapsed() < EVENT_DEADLINE,
            "{what}: the header still counts {seen} unread, not {expected}, after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
