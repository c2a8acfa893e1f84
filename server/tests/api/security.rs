use std::collections::BTreeSet;

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;

use crate::helpers::{spawn_app, Agent, Backend, TestApp, ADMIN, PASSWORD};

crate::on_both_backends!(
    every_server_function_is_in_the_authorization_matrix_and_behaves_as_it_says,
    client_cannot_read_or_change_another_clients_device,
    state_changes_from_another_origin_are_refused,
    database_errors_reach_the_browser_only_as_a_generic_message,
    every_server_function_answers_hostile_arguments_with_a_4xx_json_error,
);

/// What a caller of a given role gets from a server function.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Allowed,
    Unauthorized,
    Forbidden,
    /// A failed login: the function is public, the credentials are wrong.
    BadCredentials,
    /// Let through to its checks, which refused the arguments (a wrong current password).
    Checked,
}
use Expect::*;

/// Fixtures the matrix rows refer to.
struct World {
    own_device: String,
    /// An alert on `own_device`.
    alert: String,
    spare_device: String,
    client: String,
    spare_client: String,
    spare_account: String,
}

impl World {
    async fn new(app: &TestApp, admin: &Agent) -> World {
        let client = app.create_client(admin, "matrix-client").await;
        let spare_client = app.create_client(admin, "matrix-spare").await;
        let own_device = app.create_device(admin, "Own device", Some(client)).await;
        let spare_device = app.create_device(admin, "Spare device", None).await;
        let alert = crate::helpers::raise_alert(app, own_device).await;
        World {
            alert: alert.to_string(),
            own_device: own_device.to_string(),
            spare_device: spare_device.to_string(),
            client: client.to_string(),
            spare_client: spare_client.to_string(),
            spare_account: String::new(),
        }
    }
}

/// A server function, arguments that succeed for an allowed caller, and the outcome for an
/// anonymous visitor, a client, and an admin.
type Row = (&'static str, Vec<(&'static str, String)>, [Expect; 3]);

/// Every server function's row.
fn matrix(w: &World) -> Vec<Row> {
    let s = |v: &str| v.to_string();
    vec![
        (
            "login",
            vec![("username", s(ADMIN)), ("password", s("wrong-password"))],
            [BadCredentials; 3],
        ),
        ("logout", vec![], [Allowed; 3]),
        ("get_current_user", vec![], [Allowed; 3]),
        (
            "change_password",
            vec![
                ("current", s("not-the-password")),
                ("new", s("a-new-password-1")),
                ("confirm", s("a-new-password-1")),
            ],
            [Unauthorized, Checked, Checked],
        ),
        (
            "list_accounts",
            vec![("q", s("matrix"))],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "get_account",
            vec![("id", w.client.clone())],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "create_account",
            vec![
                ("username", s("matrix-new")),
                ("display_name", s("New")),
                ("password", s(PASSWORD)),
            ],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "update_account",
            vec![
                ("id", w.spare_client.clone()),
                ("username", s("matrix-spare")),
                ("display_name", s("Renamed")),
            ],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "delete_account",
            vec![("id", w.spare_account.clone())],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "list_client_options",
            vec![],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "list_devices",
            vec![("owner", s("all"))],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "get_device",
            vec![("id", w.own_device.clone())],
            [Unauthorized, Allowed, Allowed],
        ),
        ("list_my_devices", vec![], [Unauthorized, Allowed, Allowed]),
        (
            "create_device",
            vec![
                ("description", s("New")),
                ("address", s("Somewhere")),
                ("max_power_kw", s("2")),
            ],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "update_device",
            vec![
                ("id", w.spare_device.clone()),
                ("description", s("Renamed")),
                ("address", s("Elsewhere")),
                ("max_power_kw", s("4")),
            ],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "assign_device",
            vec![
                ("id", w.spare_device.clone()),
                ("client_id", w.spare_client.clone()),
            ],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "unassign_device",
            vec![("id", w.spare_device.clone())],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "delete_device",
            vec![("id", w.spare_device.clone())],
            [Unauthorized, Forbidden, Allowed],
        ),
        // Anonymous visitors get `null`: the header asks on every page.
        ("get_live_summary", vec![], [Allowed; 3]),
        (
            "list_live_devices",
            vec![("owner", s("all"))],
            [Unauthorized, Allowed, Allowed],
        ),
        ("list_alerts", vec![], [Unauthorized, Allowed, Allowed]),
        (
            "device_day",
            vec![("id", w.own_device.clone())],
            [Unauthorized, Allowed, Allowed],
        ),
        (
            "device_month",
            vec![("id", w.own_device.clone())],
            [Unauthorized, Allowed, Allowed],
        ),
        (
            "mark_alerts_read",
            vec![("id", w.alert.clone())],
            [Unauthorized, Allowed, Allowed],
        ),
        (
            "dead_letter_groups",
            vec![],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "list_dead_letters",
            vec![("reason", s("unknown_device"))],
            [Unauthorized, Forbidden, Allowed],
        ),
        (
            "replay_dead_letters",
            vec![("reason", s("unknown_device")), ("scope", s("all"))],
            [Unauthorized, Forbidden, Allowed],
        ),
    ]
}

async fn every_server_function_is_in_the_authorization_matrix_and_behaves_as_it_says(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let mut world = World::new(&app, &admin).await;

    let registered: BTreeSet<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.trim_start_matches("/api/").to_string())
        .collect();
    let listed: BTreeSet<String> = matrix(&world)
        .iter()
        .map(|(name, ..)| name.to_string())
        .collect();
    assert_eq!(
        registered, listed,
        "every server function must be in the authorization matrix (and only those)"
    );

    for (name, _, expected) in matrix(&world) {
        // Fresh identities per row, so that logout or deletions in one row affect no other.
        if name == "delete_account" {
            world.spare_account = app.create_client(&admin, "matrix-doomed").await.to_string();
        }
        let row = matrix(&world)
            .into_iter()
            .find(|(n, ..)| *n == name)
            .expect("row");
        let args: Vec<(&str, &str)> = row.1.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let callers = [
            app.agent(),
            app.login("matrix-client", PASSWORD).await,
            app.admin().await,
        ];
        for (caller, (role, expect)) in callers
            .iter()
            .zip(["anonymous", "client", "admin"].into_iter().zip(expected))
        {
            let reply = caller.call(name, &args).await;
            let outcome = match (reply.status, reply.error_kind().as_deref()) {
                (s, _) if s.is_success() => Allowed,
                (StatusCode::UNAUTHORIZED, Some("Unauthorized")) => Unauthorized,
                (StatusCode::FORBIDDEN, Some("Forbidden")) => Forbidden,
                (StatusCode::UNAUTHORIZED, Some("InvalidCredentials")) => BadCredentials,
                (StatusCode::UNPROCESSABLE_ENTITY, Some("Validation")) => Checked,
                _ => panic!("{name} as {role}: unexpected {reply:?}"),
            };
            assert_eq!(outcome, expect, "{name} as {role}: {reply:?}");
        }
    }
}

/// Optional arguments the matrix rows leave out, by server function.
const OPTIONAL: &[(&str, &[&str])] = &[
    ("login", &["next"]),
    ("list_accounts", &["role", "page"]),
    ("create_account", &["role"]),
    ("update_account", &["password"]),
    ("list_devices", &["page"]),
    ("create_device", &["owner_id", "meter_id"]),
    ("list_live_devices", &["page"]),
    ("list_alerts", &["page", "unread"]),
    ("device_day", &["date"]),
    ("device_month", &["month"]),
    ("list_dead_letters", &["page"]),
    ("replay_dead_letters", &["ids[]"]),
];

/// Values no form sends: numbers out of every range, not numbers, empty, huge, control and
/// direction characters, markup, SQL, paths, impossible dates and zones.
fn hostile_values() -> Vec<String> {
    let mut values: Vec<String> = [
        "",
        " ",
        "-1",
        "0",
        "1.5",
        "-9223372036854775808",
        "9223372036854775807",
        "922337203685477580",
        "18446744073709551616",
        "1e309",
        "-1e-309",
        "NaN",
        "inf",
        "true",
        "null",
        "[]",
        "{}",
        "\0",
        "a\u{0}b",
        "\u{202e}gnp.exe",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "../../../../etc/passwd",
        "00000000-0000-0000-0000-000000000000",
        "2026-02-30",
        "9999-12-31",
        "-0001-01-01",
        "2026-13",
        "Europe/Nowhere",
    ]
    .map(String::from)
    .to_vec();
    values.push("x".repeat(70_000));
    values.push("é".repeat(5_000));
    values.push("9".repeat(400));
    values
}

/// What a hostile request sends.
enum Body<'a> {
    Form(&'a [(&'a str, &'a str)]),
    /// A content type and bytes.
    Raw(&'a str, Vec<u8>),
}

/// POSTs `body` to a server function: (status, body text).
async fn post(agent: &Agent, name: &str, body: Body<'_>) -> (StatusCode, String) {
    let request = agent.http.post(format!("{}/api/{name}", agent.address));
    let request = match body {
        Body::Form(form) => request.form(form),
        Body::Raw(content_type, bytes) => request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes),
    };
    let response = request.send().await.expect("request sent");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// Drives every server function (the matrix's list, checked complete by the matrix test) with
/// each of its arguments replaced in turn by a hostile value, repeated, or left out, and with
/// bodies that are not a form: every answer is a success or a 4xx with a JSON error, never a
/// 5xx (a panic in a handler is a 500), and every request is answered.
async fn every_server_function_answers_hostile_arguments_with_a_4xx_json_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let world = World::new(&app, &admin).await;
    let hostile = hostile_values();
    let mut rows = matrix(&world);
    // Wrong passwords feed the login throttle: these go last, so that it locks no one out of
    // the rows before.
    rows.sort_by_key(|(name, ..)| matches!(*name, "login" | "change_password"));
    // An admin session per function, all signed in before the hostile sign-ins start: a
    // sign-out or a deletion in one row ends no other row's.
    let mut callers = Vec::new();
    for _ in &rows {
        callers.push(app.admin().await);
    }
    let (mut requests, mut bad) = (0, Vec::new());
    for ((name, args, _), caller) in rows.into_iter().zip(callers) {
        let optional = OPTIONAL
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&[][..], |(_, o)| *o);
        let names: Vec<&str> = args
            .iter()
            .map(|(k, _)| *k)
            .chain(optional.iter().copied())
            .collect();
        let mut cases: Vec<Vec<(&str, String)>> = vec![Vec::new()];
        for arg in &names {
            let others = || args.iter().filter(|(k, _)| k != arg).cloned();
            for value in &hostile {
                cases.push(others().chain([(*arg, value.clone())]).collect());
            }
            cases.push(
                others()
                    .chain([(*arg, "1".into()), (*arg, "2".into())])
                    .collect(),
            );
        }
        for case in cases {
            let form: Vec<(&str, &str)> = case.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, text) = post(&caller, name, Body::Form(&form)).await;
            requests += 1;
            if !acceptable(status, &text) {
                let shown: Vec<(&str, String)> = case
                    .iter()
                    .map(|(k, v)| (*k, v.chars().take(40).collect()))
                    .collect();
                bad.push(format!("{name} {shown:?}: {status} {text:.200}"));
            }
        }
        for (content_type, body) in [
            (
                "application/x-www-form-urlencoded",
                vec![0xff, 0xfe, b'=', 0x80],
            ),
            (
                "application/x-www-form-urlencoded",
                b"a=%ff%fe&=&&==&[=]".to_vec(),
            ),
            ("application/json", br#"{"id":[1,2],"page":{}}"#.to_vec()),
            ("text/plain", b"hello".to_vec()),
            ("multipart/form-data; boundary=x", b"--x\r\n".to_vec()),
        ] {
            let (status, text) = post(&caller, name, Body::Raw(content_type, body)).await;
            requests += 1;
            if !acceptable(status, &text) {
                bad.push(format!("{name} raw {content_type}: {status} {text:.200}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {requests} answers were not a success or a 4xx JSON error:\n{}",
        bad.len(),
        bad.join("\n")
    );
    // 27 functions, most with one to four arguments, 33 variants each, and 5 raw bodies.
    assert!(requests > 1_500, "only {requests} requests were made");
}

/// A success, or a client error whose body is JSON (the error the browser shows).
fn acceptable(status: StatusCode, text: &str) -> bool {
    status.is_success()
        || (status.is_client_error() && serde_json::from_str::<serde_json::Value>(text).is_ok())
}

async fn client_cannot_read_or_change_another_clients_device(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let alice = app.create_client(&admin, "alice").await;
    let bob = app.create_client(&admin, "bob").await;
    let alices = app
        .create_device(&admin, "Alice's heat pump", Some(alice))
        .await;
    let bobs = app.create_device(&admin, "Bob's oven", Some(bob)).await;
    let alice_agent = app.login("alice", PASSWORD).await;

    let own = alice_agent
        .call("get_device", &[("id", &alices.to_string())])
        .await;
    assert_eq!(own.ok()["description"], "Alice's heat pump");

    // Another client's device looks exactly like one that does not exist.
    let other = alice_agent
        .call("get_device", &[("id", &bobs.to_string())])
        .await;
    assert_eq!(
        (other.status, other.error_kind().as_deref()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
    let missing = alice_agent
        .call("get_device", &[("id", &uuid::Uuid::new_v4().to_string())])
        .await;
    assert_eq!(missing.body, other.body);

    // The live list shows a client their own devices, whatever owner they ask for.
    for owner in ["all", "unassigned", &bob.to_string()] {
        let live = alice_agent
            .call("list_live_devices", &[("owner", owner)])
            .await
            .ok();
        let ids: Vec<&str> = live["devices"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|d| d["device"]["id"].as_str())
            .collect();
        assert_eq!(ids, [alices.to_string()], "owner={owner}");
    }

    let bobs_id = bobs.to_string();
    let alice_id = alice.to_string();
    let attempts: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "update_device",
            vec![
                ("id", &bobs_id),
                ("description", "Mine now"),
                ("address", "x"),
                ("max_power_kw", "1"),
            ],
        ),
        (
            "assign_device",
            vec![("id", &bobs_id), ("client_id", &alice_id)],
        ),
        ("unassign_device", vec![("id", &bobs_id)]),
        ("delete_device", vec![("id", &bobs_id)]),
    ];
    for (name, args) in attempts {
        let reply = alice_agent.call(name, &args).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{name}: {reply:?}");
    }
    let mine = alice_agent.call("list_my_devices", &[]).await.ok();
    let descriptions: Vec<_> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["description"].clone())
        .collect();
    assert_eq!(descriptions, ["Alice's heat pump"]);

    let still_bobs = admin.call("get_device", &[("id", &bobs_id)]).await.ok();
    assert_eq!(still_bobs["description"], "Bob's oven");
    assert_eq!(still_bobs["owner"]["username"], "bob");
}

async fn state_changes_from_another_origin_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let args = [
        ("username", "mallory"),
        ("display_name", "Mallory"),
        ("password", PASSWORD),
    ];

    let forged = admin
        .call_with(
            "create_account",
            &args,
            &[
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let no_origin_cross_site = admin
        .call_with("create_account", &args, &[("Sec-Fetch-Site", "cross-site")])
        .await;
    assert_eq!(no_origin_cross_site.status, StatusCode::FORBIDDEN);
    let listed = admin.call("list_accounts", &[("q", "mallory")]).await.ok();
    assert_eq!(listed["total"], 0, "nothing was created");

    let own_origin = app.address.clone();
    let same_site = admin
        .call_with(
            "create_account",
            &args,
            &[("Origin", &own_origin), ("Sec-Fetch-Site", "same-origin")],
        )
        .await;
    assert!(same_site.status.is_success(), "{same_site:?}");
}

async fn database_errors_reach_the_browser_only_as_a_generic_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_device(&admin, "Doomed table", None).await;
    // Break the schema underneath the running app.
    app.db
        .execute_unprepared("ALTER TABLE devices RENAME TO devices_gone")
        .await
        .unwrap();
    let reply = admin.call("list_devices", &[]).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.error_kind().as_deref(), Some("Internal"));
    let text = reply.body.to_string().to_lowercase();
    for leak in ["devices", "sql", "table", "relation", "select"] {
        assert!(!text.contains(leak), "error body leaks {leak:?}: {text}");
    }
}
