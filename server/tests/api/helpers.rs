//! Spawns the real application per test, on a fresh SQLite file or a fresh PostgreSQL database,
//! and talks to it over HTTP.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{header, redirect, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::Value;
use server::{Application, Config};
use uuid::Uuid;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "client-password-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn postgres_url_for(name: &str) -> String {
    let admin = postgres_admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    format!("{base}/{name}")
}

pub struct TestApp {
    pub address: String,
    pub db: DatabaseConnection,
    /// The database URL, for a second instance on the same database.
    pub database_url: String,
    pub metering: server::metering::Metering,
    pub hub: std::sync::Arc<server::live::hub::Hub>,
    sqlite_file: Option<PathBuf>,
    postgres_db: Option<String>,
    /// Dropped last, so that it also watches the clean-up.
    _watchdog: Watchdog,
}

/// How long one test may run before the whole run is ended as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(600);

/// Ends the test run when the test that started it is still running after a limit: a wait
/// without an end then fails fast, naming the test, its last step and (when gdb is there)
/// every thread's stack, instead of running into CI's time limit.
struct Watchdog(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

impl Watchdog {
    fn start(limit: Duration) -> Self {
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                Watchdog::report(&test, limit);
                std::process::abort();
            }
        });
        Watchdog(done)
    }

    /// Straight to the process's stderr: the test harness captures `eprintln!`, and loses
    /// what it captured when the process aborts.
    fn report(test: &str, limit: Duration) {
        use std::io::Write;
        let steps = crate::meter_support::STEPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut err = std::io::stderr();
        let _ = writeln!(
            err,
            "\n{test} is still running after {limit:?}: it is stuck; ending the run"
        );
        for (t, what, at) in steps {
            let _ = writeln!(err, "  {t}: last step {what:?}, {:?} ago", at.elapsed());
        }
        let (ran, text) = backtraces();
        let _ = writeln!(err, "gdb ({ran}):");
        for line in text.lines().take(2_000) {
            let _ = writeln!(err, "{line}");
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// A fresh database for `backend`: its URL, and what to remove afterwards.
async fn fresh_database(backend: Backend) -> (String, Option<PathBuf>, Option<String>) {
    match backend {
        Backend::Sqlite => {
            let path = std::env::temp_dir().join(format!("energy-test-{}.db", Uuid::new_v4()));
            (
                format!("sqlite://{}?mode=rwc", path.display()),
                Some(path),
                None,
            )
        }
        Backend::Postgres => {
            let name = format!("energy_test_{}", Uuid::new_v4().simple());
            let admin = Database::connect(postgres_admin_url())
                .await
                .expect("PostgreSQL must be running for the integration tests");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            admin.close().await.ok();
            (postgres_url_for(&name), None, Some(name))
        }
    }
}

/// Spawns the app after `configure` has adjusted its configuration.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    let watchdog = Watchdog::start(STUCK_AFTER);
    let (url, sqlite_file, postgres_db) = fresh_database(backend).await;
    let mut config = Config::for_database(url.clone());
    // Instances of other tests must not hear this one's live events.
    config.amqp_events_exchange = format!("test-{}.events", Uuid::new_v4().simple());
    config.admin_username = Some(ADMIN.into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    configure(&mut config);
    let (address, db, metering, hub) = start(config).await;
    TestApp {
        address,
        db,
        database_url: url,
        metering,
        hub,
        sqlite_file,
        postgres_db,
        _watchdog: watchdog,
    }
}

/// One running instance's address, database, metering handle and live hub.
pub type Started = (
    String,
    DatabaseConnection,
    server::metering::Metering,
    std::sync::Arc<server::live::hub::Hub>,
);

/// Builds and starts one instance; it runs until the test ends.
pub async fn start(config: Config) -> Started {
    crate::meter_support::step("starting an instance");
    let app = tokio::time::timeout(Duration::from_secs(60), Application::build(config))
        .await
        .expect("the application builds within 60 s")
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let metering = app.metering().clone();
    let hub = app.hub().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    (address, db, metering, hub)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        crate::meter_support::step("dropping the test app");
        if let Some(path) = self.sqlite_file.take() {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
        if let Some(name) = self.postgres_db.take() {
            // The app's pool is still open: FORCE ends its connections.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// The answer to a server function call.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The application error in the body, by variant name (`"Unauthorized"`, `"Validation"`...).
    pub fn error_kind(&self) -> Option<String> {
        match &self.body {
            Value::String(s) => Some(s.clone()),
            Value::Object(map) if map.len() == 1 => map.keys().next().cloned(),
            _ => None,
        }
    }

    /// The messages of a validation error, by field.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.body["Validation"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(self.status.is_success(), "expected success, got {self:?}");
        self.body
    }
}

/// One browser-like user agent: its own cookie jar, redirects not followed.
#[derive(Clone)]
pub struct Agent {
    pub http: reqwest::Client,
    pub address: String,
}

impl TestApp {
    pub fn agent(&self) -> Agent {
        Agent {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(redirect::Policy::none())
                // Every request has a deadline: a server that never answers fails the test.
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("client"),
            address: self.address.clone(),
        }
    }

    /// A signed-in agent; panics if the credentials are refused.
    pub async fn login(&self, username: &str, password: &str) -> Agent {
        let agent = self.agent();
        let reply = agent
            .call("login", &[("username", username), ("password", password)])
            .await;
        assert!(
            reply.status.is_success(),
            "login of {username} failed: {reply:?}"
        );
        agent
    }

    /// A signed-in agent and its session cookie (`energy_session=…`), for a WebSocket.
    pub async fn login_cookie(&self, username: &str, password: &str) -> (Agent, String) {
        let agent = self.agent();
        let reply = agent
            .call("login", &[("username", username), ("password", password)])
            .await;
        let cookie = agent
            .session_cookie(&reply)
            .unwrap_or_else(|| panic!("login of {username} set no cookie: {reply:?}"));
        (agent, cookie)
    }

    pub async fn admin(&self) -> Agent {
        self.login(ADMIN, ADMIN_PASSWORD).await
    }

    /// Creates a client account through the admin API; returns its id.
    pub async fn create_client(&self, admin: &Agent, username: &str) -> Uuid {
        let body = admin
            .call(
                "create_account",
                &[
                    ("username", username),
                    ("display_name", &format!("{username} display")),
                    ("password", PASSWORD),
                ],
            )
            .await
            .ok();
        body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("account id")
    }

    /// Creates a device through the admin API, assigned to `owner` if given; returns its id.
    pub async fn create_device(
        &self,
        admin: &Agent,
        description: &str,
        owner: Option<Uuid>,
    ) -> Uuid {
        let owner = owner.map(|o| o.to_string()).unwrap_or_default();
        let body = admin
            .call(
                "create_device",
                &[
                    ("description", description),
                    ("address", "1 Test Street"),
                    ("max_power_kw", "3.5"),
                    ("owner_id", &owner),
                ],
            )
            .await
            .ok();
        body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("device id")
    }
}

impl Agent {
    /// Renames a device (an admin's call), with a test address and a 3.5 kW maximum.
    pub async fn rename_device(&self, device: Uuid, name: &str) -> Reply {
        let id = device.to_string();
        let fields = [
            ("id", id.as_str()),
            ("description", name),
            ("address", "1 Test Street"),
            ("max_power_kw", "3.5"),
        ];
        self.call("update_device", &fields).await
    }

    /// Calls the server function at `/api/{endpoint}` with form-encoded arguments.
    pub async fn call(&self, endpoint: &str, args: &[(&str, &str)]) -> Reply {
        self.call_with(endpoint, args, &[]).await
    }

    pub async fn call_with(
        &self,
        endpoint: &str,
        args: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        crate::meter_support::step(&format!("calling {endpoint}"));
        let mut request = self
            .http
            .post(format!("{}/api/{endpoint}", self.address))
            .form(args);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GETs a page as a browser navigation would (Accept: text/html).
    pub async fn page(&self, path: &str) -> (StatusCode, header::HeaderMap, String) {
        crate::meter_support::step(&format!("loading {path}"));
        let response = self
            .http
            .get(format!("{}{path}", self.address))
            .header(header::ACCEPT, "text/html")
            .send()
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}\n{}", stuck_threads()));
        let status = response.status();
        let headers = response.headers().clone();
        match response.text().await {
            Ok(body) => (status, headers, body),
            Err(error) => panic!("body of {path}: {error}\n{}", stuck_threads()),
        }
    }

    /// The signed-in user's username, or `None` when anonymous.
    pub async fn whoami(&self) -> Option<String> {
        let body = self.call("get_current_user", &[]).await.ok();
        body["username"].as_str().map(str::to_owned)
    }

    /// The value of the session cookie this agent would send.
    pub fn session_cookie(&self, set_cookie_from: &Reply) -> Option<String> {
        set_cookie_from
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("energy_session="))
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
    }
}

/// Runs each named `async fn name(backend: Backend)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Raises one alert on `device` (a maximum of 3.5 kW or less) through the embedded queue: 1 kWh
/// in ten minutes is 6 kW. Returns the alert's id.
pub async fn raise_alert(app: &TestApp, device: Uuid) -> Uuid {
    let now = chrono::Utc::now().timestamp_millis();
    let start =
        now - now.rem_euclid(crate::meter_support::STEP_MS) - 3 * crate::meter_support::STEP_MS;
    let queue = app.metering.local.as_ref().expect("the embedded queue");
    for (i, kwh) in [100.0, 101.0].into_iter().enumerate() {
        let body = simulator::MeterMessage {
            timestamp: start + i as i64 * crate::meter_support::STEP_MS,
            sensor_id: device,
            measurement_value: kwh,
        }
        .to_json();
        queue.send(body).await.expect("queued");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut sql = app::sql::Sql::new(app.db.get_database_backend());
        sql.push("SELECT id FROM alerts WHERE device_id = ")
            .param(device);
        if let Some(row) = app.db.query_one_raw(sql.build()).await.expect("a query") {
            return row.try_get_by_index(0).expect("an id");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no alert on {device} after 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every thread's stack in this process, from gdb (written to a file: a pipe could fill while
/// every thread here is stopped), and how running gdb went.
fn backtraces() -> (String, String) {
    let file = std::env::temp_dir().join(format!("stuck-{}.txt", std::process::id()));
    let command = format!(
        "gdb -p {} -batch -nx -ex 'thread apply all bt 40' > {} 2>&1",
        std::process::id(),
        file.display()
    );
    let ran = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .status();
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    (format!("{ran:?}"), text)
}

/// Where this process's threads are, for a page that never finished. A deadlock shows as a
/// thread waiting on a lock; every thread idle means a future that is never woken.
fn stuck_threads() -> String {
    let (ran, text) = backtraces();
    let wanted: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("Thread")
                || [
                    "reactive_graph",
                    "leptos",
                    "tachys",
                    "RwLock",
                    "Mutex",
                    "futex",
                ]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    format!("gdb ({ran}):\n{}", wanted.join("\n"))
}
