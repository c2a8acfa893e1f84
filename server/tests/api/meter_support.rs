//! Shared by the metering tests: devices, simulated meter feeds with known peaks, publishing
//! through the simulator library, and the lost/duplicated count.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use app::entities::devices;
use chrono::Utc;
use lapin::{Channel, Connection, ConnectionProperties};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set, Statement};
use server::metering::peak::Point;
use simulator::feed::{Clock, Feed, Limit, Source};
use simulator::profile::{Generator, InjectedPeak, Profile};
use simulator::{MeterMessage, Publisher, PublisherOptions, Stats, Topology};
use uuid::Uuid;

pub const STEP_MS: i64 = 600_000;

/// The last step each running test reached (by test name), for the watchdog's report.
pub static STEPS: std::sync::Mutex<Vec<(String, String, std::time::Instant)>> =
    std::sync::Mutex::new(Vec::new());

/// Notes that the calling test reached `what` (shown if it gets stuck).
pub fn step(what: &str) {
    let Some(test) = std::thread::current().name().map(str::to_owned) else {
        return;
    };
    if test.starts_with("tokio-") {
        return;
    }
    let mut steps = STEPS.lock().unwrap_or_else(|e| e.into_inner());
    steps.retain(|(t, _, _)| *t != test);
    steps.push((test, what.to_owned(), std::time::Instant::now()));
}

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Names of its own for one test.
pub fn topology() -> Topology {
    Topology::with_prefix(&format!("test-{}", Uuid::new_v4().simple()))
}

/// How long a clean-up on the broker may take; a test does not wait longer for one.
const CLEAN_UP: Duration = Duration::from_secs(20);

/// Runs `work` on a channel of a connection of its own, to clean up after a test; gives up
/// (saying so) when the broker does not answer in time.
async fn clean_up<F: std::future::Future<Output = ()>>(
    what: &str,
    work: impl FnOnce(Channel) -> F,
) {
    step(&format!("deleting {what}"));
    let cleaning = async {
        let Ok(connection) =
            Connection::connect(&amqp_url(), ConnectionProperties::default()).await
        else {
            return;
        };
        if let Ok(channel) = connection.create_channel().await {
            work(channel).await;
        }
        let _ = connection.close(200, "bye".into()).await;
    };
    if tokio::time::timeout(CLEAN_UP, cleaning).await.is_err() {
        eprintln!("{what} left behind: the broker did not answer in {CLEAN_UP:?}");
    }
}

/// Deletes a test's queues and exchanges.
pub async fn drop_topology(topology: &Topology) {
    clean_up(&topology.queue, |channel| async move {
        let _ = topology.delete(&channel).await;
    })
    .await;
}

pub async fn create_devices(db: &DatabaseConnection, n: usize, max_power_kw: f64) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = Uuid::new_v4();
        devices::ActiveModel {
            id: Set(id),
            description: Set(format!("Test meter {i}")),
            address: Set("Test street 1".into()),
            max_power_kw: Set(max_power_kw),
            owner_id: Set(None),
            created_at: Set(Utc::now()),
        }
        .insert(db)
        .await
        .expect("insert device");
        ids.push(id);
    }
    ids
}

/// `per_device` readings of every device, ten minutes apart and ending now, from the
/// simulator's household profile at about a third of `max_power_kw`, with a peak of 1.5 times
/// the maximum every seventh interval. Peaks are never adjacent, so any span of several
/// intervals averages below the maximum: the peaks are exactly the injected intervals, in
/// whatever order the readings are processed. Returns the messages in time order and the
/// expected alerts (device, t1, t2), computed from the messages with the peak rule.
pub fn feed(
    devices: &[Uuid],
    per_device: u64,
    max_power_kw: f64,
) -> (Vec<MeterMessage>, BTreeSet<(Uuid, i64, i64)>) {
    let now = Utc::now().timestamp_millis();
    let start_ms = now - now.rem_euclid(STEP_MS) - per_device as i64 * STEP_MS;
    let sources = devices
        .iter()
        .map(|&id| {
            let peaks = (1..per_device as i64)
                .filter(|i| i % 7 == 3)
                .map(|i| InjectedPeak {
                    at_ms: start_ms + (i - 1) * STEP_MS + 1,
                    power_kw: 1.5 * max_power_kw,
                });
            let generator = Generator::new(
                Profile::Household,
                max_power_kw / 4.0,
                id.as_u64_pair().0,
                100.0,
            )
            .with_peaks(peaks);
            (id, Source::Profile(Box::new(generator)))
        })
        .collect();
    let messages: Vec<MeterMessage> = Feed::new(
        sources,
        Clock {
            start_ms,
            step_ms: STEP_MS,
        },
        Limit {
            count_per_device: Some(per_device),
            end_ms: None,
        },
    )
    .collect();
    let expected = expected_peaks(&messages, max_power_kw);
    let injected = devices.len() as u64 * (1..per_device).filter(|i| i % 7 == 3).count() as u64;
    assert_eq!(expected.len() as u64, injected, "the feed has its peaks");
    (messages, expected)
}

/// Peaks of consecutive readings per device: the peak rule written out plainly, apart from
/// the server's fixed-point `peak::peak` (the feeds' peaks are far from the maximum, so a
/// relative tolerance decides the same).
pub fn expected_peaks(messages: &[MeterMessage], max_power_kw: f64) -> BTreeSet<(Uuid, i64, i64)> {
    let mut by_device: HashMap<Uuid, Vec<Point>> = HashMap::new();
    for m in messages {
        by_device.entry(m.sensor_id).or_default().push(Point {
            t_ms: m.timestamp,
            e_kwh: m.measurement_value,
        });
    }
    let mut expected = BTreeSet::new();
    for (device, mut points) in by_device {
        points.sort_by_key(|p| p.t_ms);
        points.dedup_by_key(|p| p.t_ms);
        for w in points.windows(2) {
            let (e1, e2) = (w[0].e_kwh, w[1].e_kwh);
            let hours = (w[1].t_ms - w[0].t_ms) as f64 / 3_600_000.0;
            if e2 >= e1 && (e2 - e1) / hours > max_power_kw * (1.0 + 1e-9) {
                expected.insert((device, w[0].t_ms, w[1].t_ms));
            }
        }
    }
    expected
}

/// The simulator's confirmed publisher on `topology`, riding out a broker restart of up to 2 min.
async fn publisher(topology: &Topology) -> Publisher {
    let mut options = PublisherOptions::new(amqp_url(), topology.clone());
    options.reconnect_for = Duration::from_secs(120);
    Publisher::connect(options)
        .await
        .expect("publisher connects")
}

/// Publishes every body through the simulator's confirmed publisher.
pub async fn publish(topology: &Topology, bodies: impl IntoIterator<Item = Vec<u8>>) -> Stats {
    step("publishing");
    let publishing = async {
        let mut publisher = publisher(topology).await;
        for body in bodies {
            publisher.publish(body).await.expect("publish");
        }
        publisher.close().await.expect("all confirmed")
    };
    tokio::time::timeout(PUBLISHING, publishing)
        .await
        .unwrap_or_else(|_| panic!("publishing took longer than {PUBLISHING:?}"))
}

/// The longest a test's publication may take, a broker restart included.
const PUBLISHING: Duration = Duration::from_secs(300);

/// Publishes every body through one confirmed publisher, `per_second` of them a second (in
/// steps of 10 ms), as a fleet of meters sends them.
pub async fn publish_at_rate(topology: &Topology, bodies: Vec<Vec<u8>>, per_second: u32) -> Stats {
    let mut publisher = publisher(topology).await;
    let per_tick = (per_second as usize / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for chunk in bodies.chunks(per_tick) {
        tick.tick().await;
        for body in chunk {
            publisher.publish(body.clone()).await.expect("publish");
        }
    }
    publisher.close().await.expect("all confirmed")
}

/// The body of a GET, as text.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("the server answers")
        .text()
        .await
        .expect("a text body")
}

pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("count query")
        .expect("a row");
    row.try_get_by_index(0).expect("a count")
}

/// Waits until the table holds `n` rows.
pub async fn wait_for_rows(db: &DatabaseConnection, table: &str, n: i64, within: Duration) {
    step(&format!("waiting for {n} {table}"));
    let started = Instant::now();
    loop {
        let have = count(db, &format!("SELECT COUNT(*) FROM {table}")).await;
        if have >= n {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{table}: {have} rows of {n} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Readings expected but missing or with another value (lost), and rows beyond the expected
/// ones (duplicated).
pub async fn lost_and_duplicated(db: &DatabaseConnection, messages: &[MeterMessage]) -> (u64, u64) {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT device_id, ts, energy_kwh FROM readings",
        ))
        .await
        .expect("readings");
    let mut stored: HashMap<(Uuid, i64), Vec<f64>> = HashMap::new();
    for row in rows {
        let key = (
            row.try_get_by_index::<Uuid>(0).unwrap(),
            row.try_get_by_index::<i64>(1).unwrap(),
        );
        stored
            .entry(key)
            .or_default()
            .push(row.try_get_by_index(2).unwrap());
    }
    let mut expected: HashMap<(Uuid, i64), f64> = HashMap::new();
    for m in messages {
        expected
            .entry((m.sensor_id, m.timestamp))
            .or_insert(m.measurement_value);
    }
    let lost = expected
        .iter()
        .filter(|(key, value)| stored.get(key).is_none_or(|v| v[0] != **value))
        .count() as u64;
    let duplicated = stored
        .iter()
        .map(|(key, values)| {
            if expected.contains_key(key) {
                values.len() as u64 - 1
            } else {
                values.len() as u64
            }
        })
        .sum();
    (lost, duplicated)
}

/// The alerts stored, as (device, t1, t2), with no two alike.
pub async fn stored_alerts(db: &DatabaseConnection) -> BTreeSet<(Uuid, i64, i64)> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT device_id, t1, t2 FROM alerts",
        ))
        .await
        .expect("alerts");
    let n = rows.len();
    let set: BTreeSet<_> = rows
        .into_iter()
        .map(|r| {
            (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
                r.try_get_by_index(2).unwrap(),
            )
        })
        .collect();
    assert_eq!(set.len(), n, "no alert is stored twice");
    set
}

/// The alerts announced in the outbox, as (device, t1, t2), once per announcement.
pub async fn announced_alerts(db: &DatabaseConnection) -> Vec<(Uuid, i64, i64)> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT payload FROM outbox WHERE kind = 'alert' ORDER BY seq",
        ))
        .await
        .expect("outbox");
    rows.into_iter()
        .map(|r| {
            let payload: String = r.try_get_by_index(0).unwrap();
            match serde_json::from_str(&payload).expect("an event") {
                app::live::LiveEvent::Alert(a) => (a.device_id, a.t1_ms, a.t2_ms),
                other => panic!("an alert row holds {other:?}"),
            }
        })
        .collect()
}

/// The server binary, consuming, killed with SIGKILL: nothing is acknowledged on the way out.
pub struct ServerProcess {
    child: std::process::Child,
    pub address: String,
    pub duplicates: u64,
    /// Readings it stored (as of `read_metrics`).
    pub accepted: u64,
    /// Deliveries it got marked as redelivered (as of `read_metrics`).
    pub redelivered: u64,
}

impl ServerProcess {
    pub fn start(database_url: &str, topology: &simulator::Topology, batch: u32) -> Self {
        Self::start_with(database_url, topology, batch, &[])
    }

    /// Starts the server binary with these variables set as well.
    pub fn start_with(
        database_url: &str,
        topology: &simulator::Topology,
        batch: u32,
        extra: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("AMQP_URL", amqp_url())
            .env("AMQP_EXCHANGE", &topology.exchange)
            .env("AMQP_QUEUE", &topology.queue)
            .env("AMQP_DEAD_LETTER_EXCHANGE", &topology.dead_letter_exchange)
            .env("AMQP_DEAD_LETTER_QUEUE", &topology.dead_letter_queue)
            .env("CONSUMER_BATCH_SIZE", batch.to_string())
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .env(
                "AMQP_EVENTS_EXCHANGE",
                format!("{}.events", topology.exchange),
            )
            .envs(extra.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let address = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("Energy Utility Platform listening on ")
                    .map(str::to_owned)
            })
            .expect("the server says where it listens");
        // Keep draining stdout so the child never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            address,
            duplicates: 0,
            accepted: 0,
            redelivered: 0,
        }
    }

    pub async fn read_metrics(&mut self) {
        let asked = reqwest::Client::new()
            .get(format!("{}/metrics", self.address))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if let Ok(r) = asked {
            if let Ok(text) = r.text().await {
                let value = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                };
                self.duplicates = value("energy_readings_duplicate_total");
                self.accepted = value("energy_readings_accepted_total");
                self.redelivered = value("energy_deliveries_redelivered_total");
            }
        }
    }

    /// Its process id (the live benchmark reads its memory from /proc).
    #[allow(dead_code)]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself; its exit code, or `None` after `within`.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// Sends SIGTERM, as a service manager or `docker stop` does: the server drains and exits.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deletes an exchange a test declared.
pub async fn delete_exchange(name: &str) {
    clean_up(name, |channel| async move {
        let _ = channel
            .exchange_delete(
                name.into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    })
    .await;
}

/// A TCP proxy in front of the broker whose connections a test can cut: the broker then sees
/// its clients go away (their unacknowledged deliveries return to the queue) and the clients
/// see their connection fail.
pub struct CutProxy {
    /// An AMQP URL through the proxy.
    pub url: String,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    pub async fn start() -> CutProxy {
        let broker: lapin::uri::AMQPUri = amqp_url().parse().expect("an AMQP URL");
        let upstream = format!("{}:{}", broker.authority.host, broker.authority.port);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let links = links.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            })
        };
        CutProxy {
            url: format!(
                "amqp://{}:{}@127.0.0.1:{port}/%2f",
                broker.authority.userinfo.username, broker.authority.userinfo.password
            ),
            links,
            accept,
        }
    }

    /// Cuts every open connection; returns how many there were.
    pub fn cut(&self) -> usize {
        let links = std::mem::take(&mut *self.links.lock().unwrap());
        let open = links.iter().filter(|l| !l.is_finished()).count();
        for link in links {
            link.abort();
        }
        open
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Messages ready (not delivered) in a queue.
pub async fn ready_messages(queue: &str) -> u32 {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("broker");
    let channel = connection.create_channel().await.expect("channel");
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let ready = channel
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await
        .expect("the queue exists")
        .message_count();
    let _ = connection.close(200, "bye".into()).await;
    ready
}
