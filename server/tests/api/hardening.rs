//! Bad input gets a clear answer, never a hang, a dropped connection or a 500.

use std::time::Duration;

use reqwest::{header, StatusCode};

use crate::helpers::{spawn_app, spawn_app_with, Agent, Backend, ADMIN, ADMIN_PASSWORD};

crate::on_both_backends!(
    out_of_range_page_numbers_get_a_clear_answer_on_every_list,
    bodies_too_large_or_not_utf8_get_4xx,
    a_page_past_the_end_of_a_list_says_so,
);

/// Page numbers past any list: as arguments to the list functions and in page URLs.
async fn out_of_range_page_numbers_get_a_clear_answer_on_every_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let huge = [
        "922337203685477580",
        &i64::MAX.to_string(),
        "1000001",
        "0",
        "-1",
        &i64::MIN.to_string(),
    ];
    for endpoint in [
        "list_accounts",
        "list_devices",
        "list_alerts",
        "list_live_devices",
    ] {
        for page in huge {
            let reply = admin.call(endpoint, &[("page", page)]).await;
            assert_eq!(
                (
                    reply.status,
                    reply.field_errors().first().map(|(f, _)| f.clone())
                ),
                (StatusCode::UNPROCESSABLE_ENTITY, Some("page".to_string())),
                "{endpoint} page={page}: {reply:?}"
            );
        }
        // Not a 64-bit number at all: the arguments cannot be read.
        let reply = admin
            .call(endpoint, &[("page", "99999999999999999999")])
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{endpoint}: {reply:?}"
        );
        assert_eq!(reply.error_kind().as_deref(), Some("BadRequest"));
    }
    // In a page's URL, a number outside the pages a list can have is taken as the nearest one:
    // past the end, the list says so; below 1, it is page 1.
    // (The device list's page past its end: `a_page_past_the_end_of_a_list_says_so`.)
    for path in ["/admin/accounts?role=all"] {
        for page in [huge[0], huge[5]] {
            let url = format!("{path}&page={page}");
            let (status, _, html) = answered_within(&admin, &url, Duration::from_secs(10)).await;
            assert_eq!(status, StatusCode::OK, "{url}");
            let below_one = page.starts_with('-') || page == "0";
            let expected = if below_one {
                "Page 1 of 1"
            } else {
                "past the end of the list"
            };
            assert!(html.contains(expected), "{url}: {html}");
        }
    }
}

async fn a_page_past_the_end_of_a_list_says_so(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_device(&admin, "Only device", None).await;
    for path in ["/admin/devices?page=3", "/admin/accounts?role=all&page=3"] {
        let (status, _, html) = admin.page(path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("This page is past the end of the list, which has 1 page."),
            "{path}: {html}"
        );
        assert!(!html.contains("No devices match"), "{path}");
        assert!(!html.contains("No accounts here yet"), "{path}");
    }
}

async fn answered_within(
    agent: &Agent,
    path: &str,
    deadline: Duration,
) -> (StatusCode, header::HeaderMap, String) {
    tokio::time::timeout(deadline, agent.page(path))
        .await
        .unwrap_or_else(|_| panic!("{path} got no answer within {deadline:?}"))
}

async fn bodies_too_large_or_not_utf8_get_4xx(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, cookie) = app.login_cookie(ADMIN, ADMIN_PASSWORD).await;
    // A connection of its own for each: after a 413 the server may close the connection.
    let post = |body: Vec<u8>| {
        reqwest::Client::new()
            .post(format!("{}/api/create_device", admin.address))
            .header(header::COOKIE, cookie.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };

    // 3 MB of form.
    let mut big = b"description=Meter&address=Street+1&max_power_kw=1&x=".to_vec();
    big.resize(3 * 1024 * 1024, b'a');
    let response = post(big)
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["BadRequest"]
            .as_str()
            .unwrap()
            .contains("larger than 2 MiB"),
        "{body}"
    );

    // Raw bytes that are not UTF-8 in a field.
    let mut bad = b"description=Meter".to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(b"&address=Street+1&max_power_kw=1");
    let response = post(bad).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["BadRequest"].as_str().unwrap().contains("utf-8"),
        "{body}"
    );

    // Nothing was stored by either.
    let total = admin.call("list_devices", &[]).await.ok()["total"].clone();
    assert_eq!(total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_bearer_token() {
    let token = "s3cret-scrape-token";
    let app = spawn_app_with(Backend::Sqlite, |c| c.metrics_token = Some(token.into())).await;
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", app.address);
    for sent in [
        None,
        Some("Bearer wrong"),
        Some(token),
        Some("Basic czNjcmV0"),
    ] {
        let mut request = http.get(&url);
        if let Some(value) = sent {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{sent:?}");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"metrics\""
        );
        assert!(!response.text().await.unwrap().contains("energy_"));
    }
    let response = http.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("energy_readings_accepted_total"));
}

/// Resident memory of a process, and its peak so far, in KiB (from /proc).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Each password check takes argon2id's 19 MiB: 200 sign-ins at once must queue for the
/// hashing slots, not take 200 × 19 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sign_ins_stay_within_a_memory_bound() {
    use crate::meter_support::{drop_topology, topology, ServerProcess};
    let app = spawn_app(Backend::Postgres).await;
    let topology = topology();
    let server = ServerProcess::start_with(
        &app.database_url,
        &topology,
        100,
        &[("TRUSTED_PROXIES", "127.0.0.1")],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // Warm up: one check, so that the first hash's allocation is in the baseline.
    let sign_in = |i: usize| {
        http.post(format!("{}/api/login", server.address))
            .header("x-forwarded-for", format!("198.51.{}.{}", i / 250, i % 250))
            .form(&[
                ("username", format!("nobody-{i}")),
                ("password", "not-the-password".to_string()),
            ])
            .send()
    };
    assert_eq!(
        sign_in(10_000).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let (before, _) = memory_kib(server.id());
    let started = std::time::Instant::now();
    let replies = futures_util::future::join_all((0..200).map(sign_in)).await;
    let took = started.elapsed();
    let statuses: Vec<u16> = replies
        .into_iter()
        .map(|r| r.expect("an answer").status().as_u16())
        .collect();
    let (after, peak) = memory_kib(server.id());
    println!(
        "200 concurrent sign-ins in {:.1} s: server RSS {} MiB before, peak {} MiB, {} MiB after",
        took.as_secs_f64(),
        before / 1024,
        peak / 1024,
        after / 1024
    );
    // Unknown users are checked against a hash all the same: every one reached argon2.
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    // One slot per core of this machine (the server's too): that many hashes' memory at a
    // time, 19 MiB each, and some slack; not 200 of them (3.8 GiB).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let bound_mib = 19 * cores + 62;
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib <= bound_mib,
        "the peak grew by {grown_mib} MiB (bound {bound_mib} MiB for {cores} cores)"
    );
    drop(server);
    drop_topology(&topology).await;
}
