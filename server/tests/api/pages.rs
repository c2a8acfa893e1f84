use reqwest::{header, StatusCode};

use crate::helpers::{spawn_app, Backend, PASSWORD};

crate::on_both_backends!(
    anonymous_visitors_are_sent_to_login,
    a_client_gets_a_not_allowed_page_in_the_admin_area,
    the_dashboard_html_lists_the_clients_devices_before_any_script_runs,
    private_pages_are_not_cached,
    responses_are_compressed_for_clients_that_accept_it,
    unknown_pages_are_404,
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
    app.create_device(&admin, "Quinn's boiler", Some(quinn))
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

    let (status, _, html) = admin.page("/admin/devices").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("sauna"));
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
