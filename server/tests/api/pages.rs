use reqwest::{header, StatusCode};

use crate::helpers::{spawn_app, Backend, PASSWORD};

crate::on_both_backends!(
    anonymous_visitors_are_sent_to_login,
    a_client_gets_a_not_allowed_page_in_the_admin_area,
    the_dashboard_html_lists_the_clients_devices_before_any_script_runs,
    private_pages_are_not_cached,
    responses_are_compressed_for_clients_that_accept_it,
    unknown_pages_are_404,
    every_answer_carries_the_security_headers,
);

async fn anonymous_visitors_are_sent_to_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, headers, _) = app.agent().page("/admin/devices").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        headers.get(header::LOCATION).unwrap(),
        "/login?next=/admin/devices"
    );
    let (status, _, html) = app.agent().page("/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sign in"));
}

async fn a_client_gets_a_not_allowed_page_in_the_admin_area(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    app.create_client(&admin, "pia").await;
    let pia = app.login("pia", PASSWORD).await;
    let (status, _, html) = pia.page("/admin/accounts").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("Not allowed"), "{html}");
    assert!(
        !html.contains("pia display</td>"),
        "no account data on the page"
    );
}

async fn the_dashboard_html_lists_the_clients_devices_before_any_script_runs(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let quinn = app.create_client(&admin, "quinn").await;
    let rex = app.create_client(&admin, "rex").await;
    let boiler = app
        .create_device(&admin, "Quinn's boiler", Some(quinn))
        .await;
    app.create_device(&admin, "Rex's sauna", Some(rex)).await;
    let agent = app.login("quinn", PASSWORD).await;
    let (status, _, html) = agent.page("/dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Quinn&#x27;s boiler") || html.contains("Quinn's boiler"),
        "{html}"
    );
    assert!(
        !html.contains("Rex"),
        "another client's device leaked into the page"
    );

    // The device list was fetched once for this page: each fetch during the render is sent
    // along with the page for hydration (as JSON, its `per_page` once per list).
    let lists = html.matches("per_page").count();
    assert_eq!(
        lists, 1,
        "the device list was fetched {lists} times for one page"
    );
    // So were the alerts and the history, on theirs.
    for (path, key) in [
        ("/alerts".to_owned(), "time_zone"),
        (format!("/devices/{boiler}/day"), "total_kwh"),
        (format!("/devices/{boiler}/month"), "total_kwh"),
    ] {
        let (status, _, html) = agent.page(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let fetched = html.matches(key).count();
        assert_eq!(fetched, 1, "{path}: fetched {fetched} times for one page");
    }

    let (status, _, html) = admin.page("/admin/devices").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("sauna"));
    let (status, _, html) = admin.page("/admin/live").await;
    assert_eq!(status, StatusCode::OK);
    let lists = html.matches("per_page").count();
    assert_eq!(
        lists, 1,
        "the live list was fetched {lists} times for one page"
    );
}

async fn private_pages_are_not_cached(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin().await;
    let (_, headers, _) = admin.page("/admin/accounts").await;
    assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
}

async fn unknown_pages_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, _, html) = app.agent().page("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Page not found"));
}

async fn responses_are_compressed_for_clients_that_accept_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = reqwest::Client::new()
        .get(format!("{}/login", app.address))
        .header(header::ACCEPT, "text/html")
        .header(header::ACCEPT_ENCODING, "br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(header::CONTENT_ENCODING).unwrap(),
        "br"
    );
}

async fn every_answer_carries_the_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let agent = app.agent();
    let (status, headers, html) = agent.page("/login").await;
    assert_eq!(status, StatusCode::OK);
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    // The page's inline scripts carry the nonce its policy names, and nothing else runs.
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {policy}"));
    assert!(nonce.len() >= 16, "{nonce}");
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "{html}");
    for directive in [
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    let scripts = policy
        .split(';')
        .find(|d| d.trim().starts_with("script-src"))
        .unwrap_or_else(|| panic!("no script-src in {policy}"));
    assert!(
        !scripts.contains("'unsafe-inline'") && !scripts.contains("'unsafe-eval'"),
        "{scripts}"
    );
    // A fresh nonce for every page.
    let (_, again, _) = agent.page("/login").await;
    assert_ne!(again[header::CONTENT_SECURITY_POLICY], policy);

    let api = agent.call("get_current_user", &[]).await.headers;
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap()
        .headers()
        .clone();
    let (_, missing, _) = agent.page("/no/such/page").await;
    for (what, headers) in [
        ("page", &headers),
        ("api", &api),
        ("metrics", &metrics),
        ("404", &missing),
    ] {
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin", "{what}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{what}");
        assert!(
            headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'"),
            "{what}"
        );
        // Plain http here: no HSTS.
        assert!(
            !headers.contains_key(header::STRICT_TRANSPORT_SECURITY),
            "{what}"
        );
    }
    assert_eq!(
        api[header::CONTENT_SECURITY_POLICY],
        "default-src 'none'; frame-ancestors 'none'"
    );

    let https = crate::helpers::spawn_app_with(backend, |c| {
        c.site_origins = vec!["https://energy.example".into()];
    })
    .await;
    let (_, headers, _) = https.agent().page("/login").await;
    assert_eq!(
        headers[header::STRICT_TRANSPORT_SECURITY],
        "max-age=31536000"
    );
}

/// Leptos lists an app's routes by rendering it with every resource held pending, through one
/// flag for the whole process. A server starting beside others (as in this test suite) must not
/// leave their pages waiting forever for their data; CI saw `/admin/accounts`, `/admin/devices`
/// and `/dashboard` stall that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_while_other_servers_start_in_the_same_process() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;
    use std::time::Duration;

    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin().await;
    let starting = Arc::new(AtomicBool::new(true));
    let (loaded, stalled) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let loaders: Vec<_> = (0..3)
        .map(|_| {
            let (admin, starting) = (admin.clone(), starting.clone());
            let (loaded, stalled) = (loaded.clone(), stalled.clone());
            tokio::spawn(async move {
                while starting.load(Relaxed) {
                    match tokio::time::timeout(
                        Duration::from_secs(10),
                        admin.page("/admin/accounts"),
                    )
                    .await
                    {
                        Ok((status, _, html)) => {
                            assert_eq!(status, StatusCode::OK);
                            assert!(html.contains("Search accounts"), "{html}");
                            loaded.fetch_add(1, Relaxed);
                        }
                        Err(_) => {
                            stalled.fetch_add(1, Relaxed);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let mut started = Vec::new();
    for _ in 0..8 {
        started.push(spawn_app(Backend::Sqlite).await);
    }
    starting.store(false, Relaxed);
    for loader in loaders {
        loader.await.unwrap();
    }
    let (loaded, stalled) = (loaded.load(Relaxed), stalled.load(Relaxed));
    println!("pages while 8 servers started: {loaded} loaded, {stalled} stalled past 10 s");
    assert_eq!(
        stalled, 0,
        "{stalled} page loads never finished ({loaded} did)"
    );
    assert!(
        loaded >= 8,
        "only {loaded} pages loaded while the servers started"
    );
}
