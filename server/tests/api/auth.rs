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
    session_id_is_rotated_at_login,
    logout_ends_the_session_server_side,
    session_cookie_is_http_only_and_same_site_lax,
    session_cookie_is_secure_when_the_site_is_https,
    idle_sessions_end,
    sessions_end_at_the_absolute_timeout,
    deleting_an_account_ends_its_sessions,
    password_reset_ends_the_accounts_sessions,
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
    let reply = app
        .agent()
        .call("login", &with_next("//evil.example/"))
        .await;
    assert_eq!(reply.location(), Some("/admin/accounts"));
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
