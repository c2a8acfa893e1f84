//! Pages per second, anonymous and signed in (not a timed test: it prints figures for
//! docs/benchmarks.md). The release server binary runs in demo mode on a SQLite file of its own
//! (its demo feed adds a reading per device every 10 s); 32 keep-alive connections ask for the
//! sign-in page, then for a client's dashboard with that client's session, for
//! `PAGES_BENCH_SECS` (5) each. The load comes from this process (reqwest) on the same cores, so
//! the figures are lower than wrk's; their ratio is the point. With the release build's split
//! site in `target/site` (CI builds it first), pages carry their chunk links as users get them.
//!
//! `cargo bench -p server --bench pages`

mod support;

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 32;

struct Server {
    child: std::process::Child,
    address: String,
    /// (username, password) of the demo accounts, as the server printed them.
    logins: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The split site of `cargo leptos build --release --split`, if there is one: with it, pages name
/// their chunks in their head as users get them (106 on a client's dashboard).
fn split_site() -> Option<std::path::PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let site = target.join("site");
    site.join("pkg/__wasm_split_manifest.json")
        .is_file()
        .then_some(site)
}

fn start(database: &str, site: Option<&std::path::Path>) -> Server {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_server"));
    command.env_clear();
    if let Some(site) = site {
        command.env("LEPTOS_SITE_ROOT", site);
    }
    let mut child = command
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database)
        .env("DEMO", "1")
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    let mut logins = Vec::new();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(url) = line.strip_prefix("Energy Utility Platform listening on ") {
            address = Some(url.to_owned());
        }
        // "  client alice        password …"
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [_, username, "password", password] = words[..] {
            logins.push((username.to_owned(), password.to_owned()));
        }
        if line.starts_with("Sign in at") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        address: address.expect("the server says where it listens"),
        logins,
    }
}

/// Asks for `path` over `CONNECTIONS` connections for `during`; requests per second and the
/// 50th and 99th percentile latency. Every answer must be 200.
async fn hammer(address: &str, path: &str, cookie: Option<&str>, during: Duration) -> String {
    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let url = format!("{address}{path}");
        let cookie = cookie.map(str::to_owned);
        let (done, failures) = (done.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !done.load(Relaxed) {
                let started = Instant::now();
                let mut request = http.get(&url).header("accept", "text/html");
                if let Some(cookie) = &cookie {
                    request = request.header("cookie", cookie);
                }
                match request.send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        latencies.push(started.elapsed());
                    }
                    _ => {
                        failures.fetch_add(1, Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(during).await;
    done.store(true, Relaxed);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(failures.load(Relaxed), 0, "{path}: answers other than 200");
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    format!(
        "{:>6.0} req/s, p50 {:.1} ms, p99 {:.1} ms ({} requests)",
        latencies.len() as f64 / secs,
        at(0.50).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        latencies.len()
    )
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("PAGES_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let during = Duration::from_secs(secs);
    let dir = std::env::temp_dir().join(format!("energy-pages-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite://{}/energy.db?mode=rwc", dir.display());
    let site = split_site();
    let server = start(&database, site.as_deref());
    let (username, password) = server
        .logins
        .iter()
        .find(|(u, _)| u == "alice")
        .cloned()
        .expect("the demo client alice");
    let cookie = support::session_cookie(
        &reqwest::Client::new(),
        &server.address,
        &username,
        &password,
    )
    .await;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "pages, release server on SQLite, {CONNECTIONS} connections, {secs} s each, {cores} cores \
         shared with the load generator:"
    );
    match &site {
        Some(site) => {
            // The page measured is the one users get: with its chunks named in its head.
            let page = reqwest::Client::new()
                .get(format!("{}/dashboard", server.address))
                .header("cookie", &cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let head = page.split("</head>").next().unwrap_or_default();
            let links = head
                .matches(r#"type="application/wasm" crossorigin>"#)
                .count();
            assert!(
                links > 0,
                "the dashboard names none of its chunks in its head"
            );
            println!(
                "  site {} (split): the dashboard's head names {links} chunks",
                site.display()
            );
        }
        None => println!(
            "  no split site (cargo leptos build --release --split): pages carry no chunk links"
        ),
    }
    let anonymous = hammer(&server.address, "/login", None, during).await;
    println!("  /login, anonymous:              {anonymous}");
    let signed_in = hammer(&server.address, "/dashboard", Some(&cookie), during).await;
    println!("  /dashboard, a signed-in client: {signed_in}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
