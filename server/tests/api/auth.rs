use std::time::Duration;

use reqwest::header;

use crate::helpers::{spawn_app, spawn_app_with, Backend, ADMIN, ADMIN_PASSWORD, PASSWORD};

crate::on_both_backends!(
    first_admin_comes_from_configuration,
    each_role_lands_on_its_home_page,
    login_follows_next_only_when_it_is_a_local_path,
    failed_login_says_the_same_whether_or_not_the_user_exists,
    usernames_sign_in_ignoring_case,
    repeated_failures_are_slowed_down_per_account,
    repeated_failures_are_slowed_down_per_client_address,
    a_guesser_does_not_lock_the_owner_out_from_another_address,
    forwarded_addresses_are_ignored_unless_the_proxy_is_trusted,
    concurrent_wrong_passwords_reach_the_hash_only_as_often_as_allowed,
    a_request_in_flight_does_not_bring_back_an_ended_session,
    session_id_is_rotated_at_login,
    logout_ends_the_session_server_side,
    session_cookie_is_http_only_and_same_site_lax,
    session_cookie_is_secure_when_the_site_is_https,
    idle_sessions_end,
    sessions_end_at_the_absolute_timeout,
    deleting_an_account_ends_its_sessions,
    password_reset_ends_the_accounts_sessions,
    a_user_changes_their_own_password_and_their_other_sessions_end,
);

async fn first_admin_comes_from_configuration(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    assert_eq!(admin.whoami().await.as_deref(), Some(ADMIN));
    let bad = server::bootstrap::create_admin(&app.db, "second-admin", "Second", "short").await;
    let err = bad.expect_err("short password refused").to_string();
    assert!(err.contains("password"), "{err}");
}

async fn each_role_lands_on_its_home_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_client(&admin, "carol").await;
    let reply = app
        .agent()
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(reply.location(), Some("/admin/accounts"));
    let reply = app
        .agent()
        .call("login", &[("username", "carol"), ("password", PASSWORD)])
        .await;
    assert_eq!(reply.location(), Some("/dashboard"));
}

async fn login_follows_next_only_when_it_is_a_local_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let creds = [("username", ADMIN), ("password", ADMIN_PASSWORD)];
    let with_next = |next: &'static str| {
        let mut args = creds.to_vec();
        args.push(("next", next));
        args
    };
    let reply = app
        .agent()
        .call("login", &with_next("/admin/devices?page=2"))
        .await;
    assert_eq!(reply.location(), Some("/admin/devices?page=2"));
    let reply = app
        .agent()
        .call("login", &with_next("https://evil.example/"))
        .await;
    assert_eq!(reply.location(), Some("/admin/accounts"));
    // Known open-redirect bypasses: each must fall back to the role's home page, with an answer
    // (a newline used to make the server drop the connection without one).
    for next in [
        "//evil.example/",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "/\\/evil.example",
        "/\t\\evil.example",
        " //evil.example",
        "\t//evil.example",
        "/\u{0}/evil.example",
        "/\u{7f}/evil.example",
        "https:/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/",
        "",
    ] {
        let reply = app.agent().call("login", &with_next(next)).await;
        assert_eq!(reply.location(), Some("/admin/accounts"), "next={next:?}");
    }
}

async fn failed_login_says_the_same_whether_or_not_the_user_exists(backend: Backend) {
    let app = spawn_app(backend).await;
    let wrong_password = app
        .agent()
        .call(
            "login",
            &[("username", ADMIN), ("password", "not-the-password")],
        )
        .await;
    let unknown_user = app
        .agent()
        .call(
            "login",
            &[
                ("username", "nobody-here"),
                ("password", "not-the-password"),
            ],
        )
        .await;
    assert_eq!(wrong_password.status, 401);
    assert_eq!(wrong_password.status, unknown_user.status);
    assert_eq!(wrong_password.body, unknown_user.body);
    assert_eq!(
        wrong_password.error_kind().as_deref(),
        Some("InvalidCredentials")
    );

    let empty = app
        .agent()
        .call("login", &[("username", ""), ("password", "")])
        .await;
    assert_eq!(empty.status, 422);
    let fields: Vec<_> = empty.field_errors().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["username", "password"]);
}

async fn usernames_sign_in_ignoring_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.login("ADMIN", ADMIN_PASSWORD).await;
    assert_eq!(admin.whoami().await.as_deref(), Some(ADMIN));
}

async fn repeated_failures_are_slowed_down_per_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent();
    for _ in 0..5 {
        let reply = agent
            .call("login", &[("username", ADMIN), ("password", "guess-guess")])
            .await;
        assert_eq!(reply.error_kind().as_deref(), Some("InvalidCredentials"));
    }
    // Even the right password waits now, and so does any other agent for this account.
    let reply = app
        .agent()
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert_eq!(reply.error_kind().as_deref(), Some("TooManyAttempts"));
    // After the wait, the right password works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = app
        .agent()
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert!(reply.status.is_success(), "{reply:?}");
}

async fn repeated_failures_are_slowed_down_per_client_address(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..20 {
        let user = format!("guess-{i}");
        let reply = app
            .agent()
            .call(
                "login",
                &[("username", user.as_str()), ("password", "guess-guess")],
            )
            .await;
        assert_eq!(reply.status, 401);
    }
    let reply = app
        .agent()
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(reply.status, 429, "{reply:?}");
}

async fn session_id_is_rotated_at_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_client(&admin, "dave").await;

    let agent = app.agent();
    let first = agent
        .call("login", &[("username", "dave"), ("password", PASSWORD)])
        .await;
    let first_cookie = agent.session_cookie(&first).expect("session cookie set");
    let second = agent
        .call("login", &[("username", "dave"), ("password", PASSWORD)])
        .await;
    let second_cookie = agent.session_cookie(&second).expect("session cookie set");
    assert_ne!(first_cookie, second_cookie);

    // The id from before the second login no longer identifies anyone.
    let replay = reqwest::Client::new()
        .post(format!("{}/api/get_current_user", app.address))
        .header(header::COOKIE, first_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.text().await.unwrap(), "null");
    assert_eq!(agent.whoami().await.as_deref(), Some("dave"));
}

async fn logout_ends_the_session_server_side(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent();
    let login = agent
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    let cookie = agent.session_cookie(&login).expect("cookie");
    let logout = agent.call("logout", &[]).await;
    assert!(logout.status.is_success());
    assert_eq!(logout.location(), Some("/login"));
    assert_eq!(agent.whoami().await, None);

    let replay = reqwest::Client::new()
        .post(format!("{}/api/list_accounts", app.address))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    use sea_orm::{EntityTrait, PaginatorTrait};
    let stored = app::entities::sessions::Entity::find()
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(
        stored, 0,
        "the session record is deleted, not just the cookie"
    );
}

async fn session_cookie_is_http_only_and_same_site_lax(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent();
    let login = agent
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    let set_cookie = login
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("energy_session="))
        .expect("session cookie")
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(
        !set_cookie.contains("Secure"),
        "plain http on loopback: {set_cookie}"
    );
}

async fn session_cookie_is_secure_when_the_site_is_https(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.site_origins = vec!["https://energy.example".into()];
    })
    .await;
    let login = app
        .agent()
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    let set_cookie = login
        .headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
}

async fn idle_sessions_end(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.session_idle_timeout_secs = 1).await;
    let agent = app.agent();
    let login = agent
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await;
    let cookie = agent.session_cookie(&login).expect("cookie");
    let whoami = || async {
        // Sent by hand: the server, not the cookie's max-age, must end the session.
        reqwest::Client::new()
            .post(format!("{}/api/get_current_user", app.address))
            .header(header::COOKIE, cookie.clone())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(whoami().await.contains(ADMIN));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(whoami().await, "null");
}

async fn sessions_end_at_the_absolute_timeout(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.session_absolute_timeout_secs = 2).await;
    let admin = app.admin().await;
    // Activity does not extend the absolute lifetime.
    for _ in 0..3 {
        assert_eq!(admin.whoami().await.as_deref(), Some(ADMIN));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(admin.whoami().await, None);
}

async fn deleting_an_account_ends_its_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let erin = app.create_client(&admin, "erin").await;
    let erin_agent = app.login("erin", PASSWORD).await;
    assert_eq!(erin_agent.whoami().await.as_deref(), Some("erin"));
    admin
        .call("delete_account", &[("id", &erin.to_string())])
        .await
        .ok();
    assert_eq!(erin_agent.call("list_my_devices", &[]).await.status, 401);
}

async fn password_reset_ends_the_accounts_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let id = app.create_client(&admin, "frank").await;
    let frank = app.login("frank", PASSWORD).await;
    admin
        .call(
            "update_account",
            &[
                ("id", &id.to_string()),
                ("username", "frank"),
                ("display_name", "Frank"),
                ("password", "brand-new-password"),
            ],
        )
        .await
        .ok();
    assert_eq!(frank.whoami().await, None);
    let again = app.login("frank", "brand-new-password").await;
    assert_eq!(again.whoami().await.as_deref(), Some("frank"));
    // An empty password field leaves the password alone.
    admin
        .call(
            "update_account",
            &[
                ("id", &id.to_string()),
                ("username", "frank"),
                ("display_name", "Frank F."),
                ("password", ""),
            ],
        )
        .await
        .ok();
    assert_eq!(again.whoami().await.as_deref(), Some("frank"));
}

/// An app behind a reverse proxy on 127.0.0.1, so that each request can say which client it
/// is from.
async fn behind_a_proxy(backend: Backend) -> crate::helpers::TestApp {
    spawn_app_with(backend, |c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
}

async fn login_from(
    app: &crate::helpers::TestApp,
    address: &str,
    username: &str,
    password: &str,
) -> crate::helpers::Reply {
    app.agent()
        .call_with(
            "login",
            &[("username", username), ("password", password)],
            &[("x-forwarded-for", address)],
        )
        .await
}

async fn a_guesser_does_not_lock_the_owner_out_from_another_address(backend: Backend) {
    let app = behind_a_proxy(backend).await;
    let admin = app.admin().await;
    app.create_client(&admin, "alice").await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let reply = login_from(&app, "203.0.113.66", "ALICE ", "guess-guess").await;
        if reply.status == 429 {
            let retry_after: u64 = reply.headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=900).contains(&retry_after), "{retry_after}");
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);
    // The owner, from home, signs in at once (that the guesser stays held back after it is a
    // unit test of the throttle, free of timing).
    let reply = login_from(&app, "198.51.100.20", "alice", PASSWORD).await;
    assert!(
        reply.status.is_redirection() || reply.status.is_success(),
        "{reply:?}"
    );
}

async fn forwarded_addresses_are_ignored_unless_the_proxy_is_trusted(backend: Backend) {
    let app = spawn_app(backend).await;
    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for i in 0..7 {
            // A new made-up address every time: without a trusted proxy, it changes nothing.
            let reply = login_from(&app, &format!("203.0.113.{i}"), ADMIN, "guess-guess").await;
            statuses.push(reply.status.as_u16());
        }
        statuses
    };
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
}

async fn concurrent_wrong_passwords_reach_the_hash_only_as_often_as_allowed(backend: Backend) {
    let app = spawn_app(backend).await;
    let agents: Vec<_> = (0..50).map(|_| app.agent()).collect();
    let replies = futures_util::future::join_all(
        agents
            .iter()
            .map(|agent| agent.call("login", &[("username", ADMIN), ("password", "guess-guess")])),
    )
    .await;
    let checked = replies.iter().filter(|r| r.status == 401).count();
    let throttled = replies.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + throttled, 50, "{replies:?}");
    // 5 free failures: at most 5 wrong passwords reach the password check.
    assert!((1..=5).contains(&checked), "{checked} reached the hash");
}

/// A request loads its session, the user signs out (or their password is reset) elsewhere, and
/// then the request saves the session it loaded (its idle clock moved): the session stays ended.
async fn a_request_in_flight_does_not_bring_back_an_ended_session(backend: Backend) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::SessionStore;
    let app = spawn_app(backend).await;
    let admin = app::entities::users::Entity::find()
        .filter(app::entities::users::Column::Username.eq(ADMIN))
        .one(&app.db)
        .await
        .unwrap()
        .expect("the admin exists");
    let store = server::session_store::DbSessionStore::new(app.db.clone(), Default::default());
    let mut record = Record {
        id: Id::default(),
        data: [(
            app::auth::ssr::USER_ID.to_string(),
            serde_json::json!(admin.id),
        )]
        .into_iter()
        .collect(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.unwrap();
    let in_flight = store.load(&record.id).await.unwrap().expect("stored");

    store.delete(&record.id).await.unwrap();
    store.save(&in_flight).await.unwrap();

    assert!(
        store.load(&record.id).await.unwrap().is_none(),
        "the session came back"
    );
    let left = app::entities::sessions::Entity::find()
        .filter(app::entities::sessions::Column::UserId.eq(admin.id))
        .all(&app.db)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

async fn a_user_changes_their_own_password_and_their_other_sessions_end(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_client(&admin, "mia").await;
    let here = app.login("mia", PASSWORD).await;
    let elsewhere = app.login("mia", PASSWORD).await;
    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        let here = here.clone();
        async move {
            here.call(
                "change_password",
                &[("current", current), ("new", new), ("confirm", confirm)],
            )
            .await
        }
    };
    let field = |reply: crate::helpers::Reply| {
        assert_eq!(
            reply.status,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "{reply:?}"
        );
        reply.field_errors()
    };
    let new = "mia-new-password";
    assert_eq!(
        field(change("", new, new).await),
        [(
            "current".to_string(),
            "Enter your current password.".to_string()
        )]
    );
    assert_eq!(
        field(change(PASSWORD, "short", "short").await),
        [(
            "new".to_string(),
            "Password must be at least 8 characters.".to_string()
        )]
    );
    assert_eq!(
        field(change(PASSWORD, new, "mia-new-passwort").await),
        [(
            "confirm".to_string(),
            "The two new passwords differ.".to_string()
        )]
    );
    assert_eq!(
        field(change(PASSWORD, PASSWORD, PASSWORD).await),
        [(
            "new".to_string(),
            "Choose a password other than your current one.".to_string()
        )]
    );
    assert_eq!(
        field(change("not-my-password", new, new).await),
        [(
            "current".to_string(),
            "This is not your current password.".to_string()
        )]
    );
    // Nothing changed so far: both sessions go on, the old password still works.
    assert_eq!(elsewhere.whoami().await.as_deref(), Some("mia"));
    app.login("mia", PASSWORD).await;

    let done = change(PASSWORD, new, new).await;
    assert!(done.status.is_success(), "{done:?}");
    assert_eq!(
        here.whoami().await.as_deref(),
        Some("mia"),
        "this session goes on"
    );
    assert_eq!(elsewhere.whoami().await, None, "the other session ended");
    let old = app
        .agent()
        .call("login", &[("username", "mia"), ("password", PASSWORD)])
        .await;
    assert_eq!(old.error_kind().as_deref(), Some("InvalidCredentials"));
    app.login("mia", new).await;

    // Anonymous callers are asked to sign in; guessing the current password is throttled.
    let anonymous = app
        .agent()
        .call(
            "change_password",
            &[
                ("current", new),
                ("new", "x-password-2"),
                ("confirm", "x-password-2"),
            ],
        )
        .await;
    assert_eq!(anonymous.status, reqwest::StatusCode::UNAUTHORIZED);
    let mut throttled = None;
    for attempt in 0..10 {
        let reply = change("a-wrong-guess", "x-password-2", "x-password-2").await;
        if reply.status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(attempt);
            break;
        }
        assert_eq!(reply.status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert!(
        matches!(throttled, Some(1..=6)),
        "wrong current passwords were not throttled: {throttled:?}"
    );
}
