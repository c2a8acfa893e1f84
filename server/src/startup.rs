//! Building and running the application: database, sessions, routes and middleware.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::auth::throttle::LoginThrottle;
use app::state::{AppState, SessionSettings};
use app::{shell, App};
use axum::{
    extract::Request,
    http::{header, HeaderValue},
    middleware::{self, Next},
    response::Response,
    routing::get,
    Router,
};
use leptos::config::{Env, LeptosOptions};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{compression::CompressionLayer, trace::TraceLayer};
use tower_sessions::{cookie::SameSite, session::Expiry, SessionManagerLayer};

use crate::bootstrap::{self, DemoLogin};
use crate::config::Config;
use crate::live::hub::Hub;
use crate::live::ws::{self, WsContext};
use crate::live::LiveService;
use crate::metering::{MeterService, Metering};
use crate::origin::{self, AllowedOrigins};
use crate::session_store::DbSessionStore;
use crate::{api_status, db, guards, health, security_headers};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    store: DbSessionStore,
    origins: AllowedOrigins,
    demo_logins: Vec<DemoLogin>,
    meter: MeterService,
    metering: Metering,
    live: LiveService,
    /// Stops the live path and the consumer; cancelled when the server stops.
    cancel: CancellationToken,
    /// How long a stop may take (`SHUTDOWN_TIMEOUT_SECS`).
    drain: Duration,
}

/// Which half of the server ended first.
#[derive(Debug, thiserror::Error)]
pub enum Stopped {
    #[error("the web server failed: {0}")]
    Web(std::io::Error),
    #[error("the meter consumer stopped: {0:#}")]
    Consumer(anyhow::Error),
}

impl Application {
    /// Connects and migrates the database, creates the configured accounts, and binds the
    /// listener (port 0 picks a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config
            .metrics_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            anyhow::bail!("METRICS_TOKEN is set but empty: set a token, or unset it");
        }
        let url = db::resolve_url(config.database_url.as_deref())?;
        let db = db::connect_and_migrate(&url).await?;
        let demo_logins = if config.demo {
            bootstrap::seed_demo(&db).await?
        } else {
            Vec::new()
        };
        bootstrap::ensure_admin(
            &db,
            config.admin_username.as_deref(),
            config.admin_password.as_deref(),
        )
        .await?;

        let listener = TcpListener::bind(config.site_addr).await?;
        let addr = listener.local_addr()?;
        let origins = AllowedOrigins::new(if config.site_origins.is_empty() {
            default_origins(addr)
        } else {
            config.site_origins.clone()
        });
        let leptos_options = LeptosOptions::builder()
            .output_name(config.output_name.as_str())
            .site_root(config.site_root())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .reload_port(config.reload_port)
            .env(if config.leptos_env.eq_ignore_ascii_case("dev") {
                Env::DEV
            } else {
                Env::PROD
            })
            .build();
        if let Some(problem) = crate::config::site_problem(
            std::path::Path::new(leptos_options.site_root.as_ref()),
            &config.output_name,
        ) {
            tracing::error!("{problem}");
        }
        let dummy_hash = app::auth::ssr::hash_password(uuid::Uuid::new_v4().to_string())
            .await?
            .into();
        let live_handle =
            app::live::ssr::LiveHandle::new(Duration::from_secs(config.session_cache_secs));
        let cancel = CancellationToken::new();
        let metering_settings = config.metering();
        let metrics = MeterService::metrics_for(&metering_settings);
        let live = LiveService::build(
            db.clone(),
            live_handle.clone(),
            config.live(),
            metrics.clone(),
            cancel.clone(),
        )
        .await?;
        let (meter, metering) =
            MeterService::new(db.clone(), metering_settings, metrics, live.sink());
        let state = AppState {
            history: config.history(),
            live: live_handle.clone(),
            db: db.clone(),
            leptos_options,
            sessions: SessionSettings {
                idle_timeout: config.idle_timeout(),
                absolute_timeout: config.absolute_timeout(),
            },
            throttle: Arc::new(LoginThrottle::default()),
            trusted_proxies: config.trusted_proxies.clone().into(),
            dummy_hash,
            replay: meter.replay(),
        };
        let store = DbSessionStore::new(db.clone(), live_handle);
        let secure = config.cookie_secure.unwrap_or_else(|| origins.any_https());
        let ws = Arc::new(WsContext {
            hub: live.hub().clone(),
            db,
            sessions: state.sessions.clone(),
            store: store.clone(),
            origins: origins.clone(),
            settings: config.live().sockets,
            shutdown: cancel.clone(),
        });
        let router = router(
            state.clone(),
            store.clone(),
            origins.clone(),
            &config,
            secure,
            metering.clone(),
            ws,
        );
        Ok(Self {
            listener,
            router,
            state,
            store,
            origins,
            demo_logins,
            meter,
            metering,
            live,
            cancel,
            drain: Duration::from_secs(config.shutdown_timeout_secs),
        })
    }

    /// This instance's live hub (its open sockets).
    pub fn hub(&self) -> &Arc<Hub> {
        self.live.hub()
    }

    /// The metering pipeline's counters, notification stream and (embedded mode) queue.
    pub fn metering(&self) -> &Metering {
        &self.metering
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn origins(&self) -> &[String] {
        self.origins.as_slice()
    }

    /// The demo accounts' passwords for this run (empty unless `DEMO` is on).
    pub fn demo_logins(&self) -> &[DemoLogin] {
        &self.demo_logins
    }

    /// Serves the web app and runs the meter consumer and the live path side by side until
    /// `shutdown` completes (`Ok`) or one of them ends on its own (`Err` says which). Expired
    /// sessions are swept meanwhile.
    ///
    /// A stop drains within `SHUTDOWN_TIMEOUT_SECS`: the listener closes, the consumer takes no
    /// new delivery and acknowledges the batch in hand once it is stored, open sockets are
    /// closed with "going away" (1001: browsers reconnect, elsewhere behind a proxy), requests
    /// in flight are answered. Whatever is still running at the deadline is dropped and said in
    /// the log; deliveries not acknowledged by then go back to the queue.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Stopped> {
        let store = self.store.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(300));
            loop {
                tick.tick().await;
                match store.delete_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(n, "expired sessions deleted"),
                    Err(e) => tracing::warn!(error = %e, "could not delete expired sessions"),
                }
            }
        });
        let cancel = self.cancel;
        let web_cancel = cancel.clone();
        // Whether the stop was asked for (a signal), rather than forced by a part that ended.
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut web = tokio::spawn({
            let asked = asked.clone();
            axum::serve(
                self.listener,
                self.router
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown => asked.store(true, std::sync::atomic::Ordering::SeqCst),
                    _ = web_cancel.cancelled() => {}
                }
                // The consumer, the live path and upgraded sockets (not the web server's to
                // wait for) stop now too.
                web_cancel.cancel();
            })
            .into_future()
        });
        let mut live = tokio::spawn(self.live.run(cancel.clone()));
        let mut consumer = tokio::spawn(self.meter.run(cancel.clone()));
        // The consumer cancels the others when it ends, so its own end is looked at first.
        let mut consumer_ended = None;
        let mut web_failed = None;
        tokio::select! {
            biased;
            ended = &mut consumer => consumer_ended = Some(ended),
            served = &mut web => web_failed = Some(served),
            _ = cancel.cancelled() => {}
        }
        cancel.cancel();
        sweeper.abort();
        let deadline = tokio::time::Instant::now() + self.drain;
        let started = std::time::Instant::now();
        let mut late = Vec::new();
        if consumer_ended.is_none() {
            match tokio::time::timeout_at(deadline, &mut consumer).await {
                Ok(ended) => consumer_ended = Some(ended),
                Err(_) => {
                    consumer.abort();
                    late.push(
                        "the meter consumer (its unacknowledged deliveries go back to the queue)",
                    );
                }
            }
        }
        if web_failed.is_none()
            && !web.is_finished()
            && tokio::time::timeout_at(deadline, &mut web).await.is_err()
        {
            web.abort();
            late.push("HTTP requests in flight");
        }
        if !live.is_finished() && tokio::time::timeout_at(deadline, &mut live).await.is_err() {
            live.abort();
            late.push("the live path");
        }
        if late.is_empty() {
            tracing::info!(took_ms = started.elapsed().as_millis() as u64, "drained");
        } else {
            tracing::warn!(
                timeout_secs = self.drain.as_secs(),
                "stopped at the drain deadline with {} still running",
                late.join(", ")
            );
        }
        let asked = asked.load(std::sync::atomic::Ordering::SeqCst);
        // A stop that was asked for is a clean exit unless the consumer failed on its way out;
        // one that was not is the failure of whichever part ended.
        match (web_failed, consumer_ended) {
            (Some(Ok(Err(e))), _) => Err(Stopped::Web(e)),
            (Some(Err(join)), _) => Err(Stopped::Web(std::io::Error::other(join.to_string()))),
            (_, Some(Ok(Err(e)))) => Err(Stopped::Consumer(e)),
            (_, Some(Err(join))) => Err(Stopped::Consumer(anyhow::anyhow!("it panicked: {join}"))),
            _ if asked => Ok(()),
            _ => Err(Stopped::Consumer(anyhow::anyhow!(
                "it ended without an error or a stop"
            ))),
        }
    }
}

/// Without `SITE_ORIGINS`, the site is its own origin; on loopback both spellings of it count.
fn default_origins(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut origins = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        origins.push(format!("http://localhost:{port}"));
        origins.push(format!("http://127.0.0.1:{port}"));
    }
    origins
}

/// The app's routes, listed once per process. Leptos lists them by rendering the app with every
/// resource held pending, and the switch that holds them is one flag for the whole process: a
/// page rendered by another server in the same process meanwhile (the test suite runs several)
/// would wait forever for its data. Listing once, with every later caller waiting for that list,
/// means no page can render while the switch is on.
fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

fn router(
    state: AppState,
    store: DbSessionStore,
    origins: AllowedOrigins,
    config: &Config,
    secure: bool,
    metering: Metering,
    ws: Arc<WsContext>,
) -> Router {
    let routes = route_list();
    // File names without hashes (`hash-files` is not set: the split loader's name is fixed).
    let site_root = std::path::Path::new(state.leptos_options.site_root.as_ref());
    let preloads =
        match crate::preload::Preloads::load(site_root, &state.leptos_options.site_pkg_dir) {
            Ok(preloads) => preloads.map(Arc::new),
            Err(e) => {
                tracing::error!("{e:#}; pages are served without preloading their chunks");
                None
            }
        };
    let context = {
        let state = state.clone();
        move || {
            provide_context(state.clone());
            provide_context(app::auth::ssr::RequestUser::default());
            app::csp::note_page_nonce();
            app::preload::provide_slot();
        }
    };
    let shell = {
        let options = state.leptos_options.clone();
        move || shell(options.clone())
    };
    let csv = crate::history::CsvContext {
        db: state.db.clone(),
        sessions: state.sessions.clone(),
        history: state.history,
    };
    let sessions = SessionManagerLayer::new(store)
        .with_name("energy_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            config.session_idle_timeout_secs as i64,
        )));
    Router::new()
        .route_service(
            "/healthz",
            get(health::healthz).with_state(health::Probe {
                db: state.db.clone(),
                metering: metering.clone(),
            }),
        )
        .route_service(
            "/metrics",
            get(crate::metering::metrics::serve).with_state(crate::metering::metrics::Exposition {
                metrics: metering.metrics.clone(),
                db: state.db.clone(),
                token: config
                    .metrics_token
                    .as_deref()
                    .map(|t| std::sync::Arc::from(t.trim())),
            }),
        )
        .route_service("/ws", get(ws::handler).with_state(ws))
        .route_service(
            "/devices/{id}/day.csv",
            get(crate::history::day_csv).with_state(csv.clone()),
        )
        .route_service(
            "/devices/{id}/month.csv",
            get(crate::history::month_csv).with_state(csv),
        )
        // The bundle is served straight from disk. Leptos's fallback served each file inside a
        // reactive owner of its own running this app's context; with the bundle split by route
        // a signed-in first load fetches about 70 files. With this, pages that rendered without
        // their policy while such a burst was cut short went from about 1 in 15 to 1 in 60 in a
        // browser loop; `security_headers::add` covers the rest.
        .nest_service(
            "/pkg",
            tower_http::services::ServeDir::new(
                std::path::Path::new(state.leptos_options.site_root.as_ref()).join("pkg"),
            )
            .precompressed_gzip()
            .precompressed_br(),
        )
        .leptos_routes_with_context(&state, routes, context.clone(), shell)
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, shell_fn))
        // Inside the compression layer: it adds to the page's HTML as rendered.
        .layer(middleware::from_fn_with_state(
            preloads,
            crate::preload::add,
        ))
        .layer(middleware::from_fn(api_status::map_error_status))
        .layer(middleware::from_fn(no_store_for_pages))
        .layer(sessions)
        .layer(middleware::from_fn(guards::limit_api_bodies))
        .layer(middleware::from_fn_with_state(
            origins,
            origin::check_origin,
        ))
        // The wasm bundle shrinks to about a third with brotli.
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn(guards::catch_panics))
        .layer(middleware::from_fn_with_state(
            security_headers::Https(secure),
            security_headers::add,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

fn shell_fn(options: LeptosOptions) -> impl leptos::IntoView {
    shell(options)
}

/// Pages and API answers are private to the signed-in user: nothing but the static bundle may
/// be cached, so the back button after sign-out shows nothing private.
async fn no_store_for_pages(request: Request, next: Next) -> Response {
    let is_static = {
        let path = request.uri().path();
        path.starts_with("/pkg/") || path == "/favicon.svg" || path == "/favicon.ico"
    };
    let mut response = next.run(request).await;
    if !is_static {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
