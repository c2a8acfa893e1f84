use reqwest::StatusCode;

use crate::helpers::{spawn_app, Backend};

crate::on_both_backends!(
    devices_are_filtered_by_owner,
    invalid_device_input_gets_a_message_per_field_and_changes_nothing,
    devices_are_assigned_only_to_existing_clients,
    a_deleted_device_is_gone,
);

async fn devices_are_filtered_by_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let mia = app.create_client(&admin, "mia").await;
    let ned = app.create_client(&admin, "ned").await;
    app.create_device(&admin, "A mia", Some(mia)).await;
    app.create_device(&admin, "B mia", Some(mia)).await;
    app.create_device(&admin, "C ned", Some(ned)).await;
    app.create_device(&admin, "D nobody", None).await;
    let descriptions = |v: serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["description"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = admin.call("list_devices", &[("owner", "all")]).await.ok();
    assert_eq!(descriptions(all), ["A mia", "B mia", "C ned", "D nobody"]);
    let unassigned = admin
        .call("list_devices", &[("owner", "unassigned")])
        .await
        .ok();
    assert_eq!(descriptions(unassigned), ["D nobody"]);
    let mias = admin
        .call("list_devices", &[("owner", &mia.to_string())])
        .await
        .ok();
    assert_eq!(descriptions(mias), ["A mia", "B mia"]);
    let bad = admin.call("list_devices", &[("owner", "someone")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn invalid_device_input_gets_a_message_per_field_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    for (power, expected) in [
        ("", "Maximum power is required."),
        (
            "abc",
            "Maximum power must be a number of kW, for example 7.5 or 7,5.",
        ),
        ("0", "Maximum power must be from 0.001 to 100 000 kW."),
        ("-2", "Maximum power must be from 0.001 to 100 000 kW."),
        (
            "100000.5",
            "Maximum power must be from 0.001 to 100 000 kW.",
        ),
        (
            "NaN",
            "Maximum power must be a number of kW, for example 7.5 or 7,5.",
        ),
        (
            "inf",
            "Maximum power must be a number of kW, for example 7.5 or 7,5.",
        ),
        (
            "1e-300",
            "Maximum power must be a number of kW, for example 7.5 or 7,5.",
        ),
        (
            "0.0005",
            "Maximum power has at most three decimals (one watt).",
        ),
    ] {
        let reply = admin
            .call(
                "create_device",
                &[
                    ("description", "Meter"),
                    ("address", "Street 1"),
                    ("max_power_kw", power),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            reply.field_errors(),
            [("max_power_kw".to_string(), expected.to_string())],
            "for {power:?}"
        );
    }
    let reply = admin
        .call(
            "create_device",
            &[
                ("description", ""),
                ("address", &"a".repeat(201)),
                ("max_power_kw", "1"),
            ],
        )
        .await;
    let fields: Vec<_> = reply.field_errors().into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["description", "address"]);

    let id = app.create_device(&admin, "Kept", None).await;
    let reply = admin
        .call(
            "update_device",
            &[
                ("id", &id.to_string()),
                ("description", "Changed"),
                ("address", "x"),
                ("max_power_kw", "-1"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    let device = admin
        .call("get_device", &[("id", &id.to_string())])
        .await
        .ok();
    assert_eq!(device["description"], "Kept");
    assert_eq!(device["max_power_kw"], 3.5);

    // A decimal comma is a decimal point.
    let reply = admin
        .call(
            "update_device",
            &[
                ("id", &id.to_string()),
                ("description", "Kept"),
                ("address", "x"),
                ("max_power_kw", "7,25"),
            ],
        )
        .await;
    assert_eq!(reply.ok()["max_power_kw"], 7.25);
    let total = admin.call("list_devices", &[]).await.ok()["total"].clone();
    assert_eq!(total, 1);
}

async fn devices_are_assigned_only_to_existing_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let device = app.create_device(&admin, "Meter", None).await.to_string();
    let admin_id = admin.call("get_current_user", &[]).await.ok()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let to_admin = admin
        .call(
            "assign_device",
            &[("id", &device), ("client_id", &admin_id)],
        )
        .await;
    assert_eq!(
        to_admin.field_errors(),
        [(
            "client_id".to_string(),
            "Devices can only be assigned to clients.".to_string()
        )]
    );
    let to_nobody = admin
        .call(
            "assign_device",
            &[
                ("id", &device),
                ("client_id", &uuid::Uuid::new_v4().to_string()),
            ],
        )
        .await;
    assert_eq!(to_nobody.field_errors()[0].1, "No such client.");
    let unknown_device = admin
        .call(
            "unassign_device",
            &[("id", &uuid::Uuid::new_v4().to_string())],
        )
        .await;
    assert_eq!(unknown_device.status, StatusCode::NOT_FOUND);

    let olga = app.create_client(&admin, "olga").await.to_string();
    admin
        .call("assign_device", &[("id", &device), ("client_id", &olga)])
        .await
        .ok();
    let unassigned = admin.call("unassign_device", &[("id", &device)]).await.ok();
    assert!(unassigned["owner"].is_null());
}

async fn a_deleted_device_is_gone(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let id = app
        .create_device(&admin, "Old meter", None)
        .await
        .to_string();
    let reply = admin.call("delete_device", &[("id", &id)]).await;
    assert_eq!(reply.location(), Some("/admin/devices?deleted=1"));
    assert_eq!(
        admin.call("get_device", &[("id", &id)]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.call("delete_device", &[("id", &id)]).await.status,
        StatusCode::NOT_FOUND
    );
}
