use reqwest::StatusCode;

use crate::helpers::{spawn_app, Backend, ADMIN, ADMIN_PASSWORD, PASSWORD};

crate::on_both_backends!(
    admin_creates_a_client_who_then_sees_only_their_devices,
    usernames_are_unique_ignoring_case,
    invalid_account_input_gets_a_message_per_field,
    admin_cannot_delete_themselves_but_can_delete_another_admin,
    two_admins_deleting_each_other_at_once_leave_an_admin,
    deleting_a_client_unassigns_their_devices,
    accounts_are_searched_and_paged,
    unknown_and_malformed_account_ids_are_told_apart,
);

async fn admin_creates_a_client_who_then_sees_only_their_devices(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let gina = app.create_client(&admin, "gina").await;
    let hugo = app.create_client(&admin, "hugo").await;
    let device = app.create_device(&admin, "Gina's meter", None).await;
    app.create_device(&admin, "Hugo's meter", Some(hugo)).await;
    let assigned = admin
        .call(
            "assign_device",
            &[
                ("id", &device.to_string()),
                ("client_id", &gina.to_string()),
            ],
        )
        .await
        .ok();
    assert_eq!(assigned["owner"]["username"], "gina");

    let gina_agent = app.login("gina", PASSWORD).await;
    let mine = gina_agent.call("list_my_devices", &[]).await.ok();
    let names: Vec<_> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["description"].clone())
        .collect();
    assert_eq!(names, ["Gina's meter"]);

    let account = admin
        .call("get_account", &[("id", &gina.to_string())])
        .await
        .ok();
    assert_eq!(account["device_count"], 1);
    assert_eq!(account["role"], "client");
}

async fn usernames_are_unique_ignoring_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_client(&admin, "ivy").await;
    let reply = admin
        .call(
            "create_account",
            &[
                ("username", "IVY"),
                ("display_name", "Other Ivy"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reply.field_errors(),
        [(
            "username".to_string(),
            "This username is already taken.".to_string()
        )]
    );
    // Renaming onto an existing name is refused the same way, and changes nothing.
    let jack = app.create_client(&admin, "jack").await;
    let reply = admin
        .call(
            "update_account",
            &[
                ("id", &jack.to_string()),
                ("username", "Ivy"),
                ("display_name", "Jack"),
            ],
        )
        .await;
    assert_eq!(reply.field_errors()[0].0, "username");
    let still = admin
        .call("get_account", &[("id", &jack.to_string())])
        .await
        .ok();
    assert_eq!(still["username"], "jack");
}

async fn invalid_account_input_gets_a_message_per_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let reply = admin
        .call(
            "create_account",
            &[
                ("username", "x y"),
                ("display_name", "   "),
                ("password", "short"),
                ("role", "client"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = reply.field_errors().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["username", "display_name", "password"]);

    let long = "n".repeat(101);
    let reply = admin
        .call(
            "create_account",
            &[
                ("username", "kim"),
                ("display_name", &long),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(reply.field_errors()[0].0, "display_name");

    let reply = admin
        .call(
            "create_account",
            &[
                ("username", "kim"),
                ("display_name", "Kim"),
                ("password", PASSWORD),
                ("role", "root"),
            ],
        )
        .await;
    assert_eq!(reply.field_errors()[0].0, "role");

    // A missing argument is a clear bad request, not a server error.
    let reply = admin.call("create_account", &[("username", "kim")]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.error_kind().as_deref(), Some("BadRequest"));

    let listed = admin.call("list_accounts", &[("q", "kim")]).await.ok();
    assert_eq!(listed["total"], 0);
}

async fn admin_cannot_delete_themselves_but_can_delete_another_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let me = admin.call("get_current_user", &[]).await.ok();
    let my_id = me["id"].as_str().unwrap().to_owned();
    let reply = admin.call("delete_account", &[("id", &my_id)]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(reply.body["Conflict"]
        .as_str()
        .unwrap()
        .contains("your own account"));

    let other = admin
        .call(
            "create_account",
            &[
                ("username", "ops"),
                ("display_name", "Ops"),
                ("password", PASSWORD),
                ("role", "admin"),
            ],
        )
        .await
        .ok();
    assert_eq!(other["role"], "admin");
    let ops = app.login("ops", PASSWORD).await;
    assert_eq!(ops.call("list_accounts", &[]).await.status, StatusCode::OK);
    admin
        .call("delete_account", &[("id", other["id"].as_str().unwrap())])
        .await
        .ok();
    assert_eq!(
        ops.call("list_accounts", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(admin.whoami().await.as_deref(), Some(ADMIN));
}

async fn two_admins_deleting_each_other_at_once_leave_an_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.admin().await;
    let second_id = first
        .call(
            "create_account",
            &[
                ("username", "second"),
                ("display_name", "Second"),
                ("password", PASSWORD),
                ("role", "admin"),
            ],
        )
        .await
        .ok()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first_id = first.call("get_current_user", &[]).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = app.login("second", PASSWORD).await;
    let first_args = [("id", second_id.as_str())];
    let second_args = [("id", first_id.as_str())];
    let (a, b) = tokio::join!(
        first.call("delete_account", &first_args),
        second.call("delete_account", &second_args),
    );
    let succeeded = [&a, &b].iter().filter(|r| r.status.is_success()).count();
    assert!(succeeded <= 1, "both admins deleted: {a:?} {b:?}");
    let fresh = app.agent();
    let first_in = fresh
        .call(
            "login",
            &[("username", ADMIN), ("password", ADMIN_PASSWORD)],
        )
        .await
        .status
        .is_success();
    let second_in = app
        .agent()
        .call("login", &[("username", "second"), ("password", PASSWORD)])
        .await
        .status
        .is_success();
    assert!(first_in || second_in, "no admin left");
}

async fn deleting_a_client_unassigns_their_devices(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let lee = app.create_client(&admin, "lee").await;
    let device = app.create_device(&admin, "Lee's meter", Some(lee)).await;
    admin
        .call("delete_account", &[("id", &lee.to_string())])
        .await
        .ok();
    let device = admin
        .call("get_device", &[("id", &device.to_string())])
        .await
        .ok();
    assert!(device["owner"].is_null(), "{device}");
    let unassigned = admin
        .call("list_devices", &[("owner", "unassigned")])
        .await
        .ok();
    assert_eq!(unassigned["total"], 1);
    let gone = admin.call("get_account", &[("id", &lee.to_string())]).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

async fn accounts_are_searched_and_paged(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    for i in 0..23 {
        app.create_client(&admin, &format!("meter-user-{i:02}"))
            .await;
    }
    app.create_client(&admin, "odd_one").await;
    let first = admin
        .call("list_accounts", &[("q", "METER-user"), ("page", "1")])
        .await
        .ok();
    assert_eq!(first["total"], 23);
    assert_eq!(first["items"].as_array().unwrap().len(), 20);
    assert_eq!(first["items"][0]["username"], "meter-user-00");
    let second = admin
        .call("list_accounts", &[("q", "meter-user"), ("page", "2")])
        .await
        .ok();
    assert_eq!(second["items"].as_array().unwrap().len(), 3);
    assert_eq!(second["items"][2]["username"], "meter-user-22");

    // LIKE wildcards in the query are taken literally.
    let underscore = admin.call("list_accounts", &[("q", "_")]).await.ok();
    assert_eq!(underscore["total"], 1);
    assert_eq!(underscore["items"][0]["username"], "odd_one");

    let admins = admin.call("list_accounts", &[("role", "admin")]).await.ok();
    assert_eq!(admins["total"], 1);
    let everyone = admin.call("list_accounts", &[("role", "all")]).await.ok();
    assert_eq!(everyone["total"], 25);
}

async fn unknown_and_malformed_account_ids_are_told_apart(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let unknown = admin
        .call("get_account", &[("id", &uuid::Uuid::new_v4().to_string())])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = admin.call("get_account", &[("id", "not-a-uuid")]).await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.field_errors()[0].0, "id");
}
