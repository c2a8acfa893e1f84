//! Configuration: parsed once in `main` from flags and environment variables, then passed down.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "server",
    version,
    about = "Energy Utility Platform: web app, API and meter consumer",
    long_about = "Energy Utility Platform server.\n\nWith no configuration it uses a SQLite file \
                  (data/energy.db). Every option can also be given as the environment variable \
                  shown beside it.",
    after_help = "Logging: RUST_LOG, a tracing filter (default: info)."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the platform (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Recompute the hourly consumption rollups from the stored readings (all devices, or one).
    RebuildHistory {
        #[arg(long)]
        device: Option<uuid::Uuid>,
    },
    /// Ask the server at LEPTOS_SITE_ADDR for its health (`/healthz`); exit 0 when it is
    /// healthy, 1 when not (a container's HEALTHCHECK).
    Healthcheck,
    /// Create an admin account (the password is read from ADMIN_PASSWORD or standard input).
    CreateAdmin {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: Option<String>,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Database: `postgres://user@host/db`, or `sqlite://path?mode=rwc`. Default: the SQLite file
    /// data/energy.db (created).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
    pub site_addr: SocketAddr,

    /// Origins allowed to send state-changing requests, comma-separated (for example
    /// `https://energy.example.com`). Default: this server's own address.
    #[arg(long, env = "SITE_ORIGINS", value_delimiter = ',')]
    pub site_origins: Vec<String>,

    /// Create this admin at start if no admin exists (with ADMIN_PASSWORD).
    #[arg(long, env = "ADMIN_USERNAME")]
    pub admin_username: Option<String>,

    /// Password of the admin created at start.
    #[arg(long, env = "ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Seed demo accounts and devices, print their (freshly generated) passwords, and run the
    /// built-in meter feed (readings every few seconds, a peak every few minutes).
    #[arg(
        long,
        env = "DEMO",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub demo: bool,

    /// Demo feed: seconds between two readings of each demo meter.
    #[arg(long, env = "DEMO_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub demo_interval_secs: u64,

    /// Demo feed: seconds between two injected peaks (one device at a time, in turn).
    #[arg(long, env = "DEMO_PEAK_EVERY_SECS", default_value_t = 180,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub demo_peak_every_secs: u64,

    /// RabbitMQ to consume meter readings from, as `amqp://user:password@host:5672/%2f`.
    /// Default: an in-process queue (fed by the demo feed).
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    #[command(flatten)]
    pub topology: simulator::Topology,

    /// Unacknowledged deliveries the broker may push to this server at once.
    #[arg(long, env = "AMQP_PREFETCH", default_value_t = 2000,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub amqp_prefetch: u16,

    /// Most meter messages stored per transaction (and acknowledged at once).
    #[arg(long, env = "CONSUMER_BATCH_SIZE", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub consumer_batch_size: u64,

    /// Reverse proxies (addresses or networks, comma-separated: `10.0.0.0/8,::1`) whose
    /// `X-Forwarded-For` names the real client, for the sign-in throttle. Default: none, so the
    /// header is ignored.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_ip_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// When set, `GET /metrics` answers only requests with `Authorization: Bearer <token>`.
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Readings timestamped further ahead than this many seconds are rejected.
    #[arg(long, env = "MAX_FUTURE_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub max_future_secs: u64,

    /// Readings timestamped before this UTC date (or RFC 3339 time) are rejected as
    /// `early_timestamp`: a meter that sends seconds instead of milliseconds lands there.
    #[arg(long, env = "MIN_TIMESTAMP", default_value = "2000-01-01",
          value_parser = parse_min_timestamp)]
    pub min_timestamp: chrono::DateTime<chrono::Utc>,

    /// Fanout exchange that carries live events between server instances (with AMQP_URL).
    #[arg(long, env = "AMQP_EVENTS_EXCHANGE", default_value = "energy.events")]
    pub amqp_events_exchange: String,

    /// Frames a dashboard socket may have waiting; one that falls further behind is told to
    /// reload over HTTP.
    #[arg(long, env = "LIVE_SOCKET_BUFFER", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub live_socket_buffer: u32,

    /// Seconds between pings (and heartbeat frames) on dashboard sockets.
    #[arg(long, env = "LIVE_PING_SECS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub live_ping_secs: u64,

    /// Seconds without an answer after which a dashboard socket is dropped.
    #[arg(long, env = "LIVE_DEAD_AFTER_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub live_dead_after_secs: u64,

    /// Milliseconds between the relay's looks for events no one woke it for (another
    /// instance committed them and stopped before publishing).
    #[arg(long, env = "LIVE_RELAY_POLL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub live_relay_poll_ms: u64,

    /// Hours published live events are kept for browsers catching up; one away for longer
    /// reloads its page's state instead.
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", default_value_t = 168,
          value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub outbox_retention_hours: u64,

    /// Minutes between two readings beyond which the history shows the time between them as
    /// missing data (not as zero, not spread). After a change, `rebuild-history`.
    #[arg(long, env = "HISTORY_GAP_MINUTES", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=10_080))]
    pub history_gap_minutes: u64,

    /// Seconds a stopping server (SIGTERM, Ctrl-C) has to drain: answer the requests in
    /// flight, finish and acknowledge the batch in hand, close sockets with "going away". What
    /// is still running then is dropped (unacknowledged deliveries go back to the queue).
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_timeout_secs: u64,

    /// Test only: fail on purpose (`exit-after-alert-commit`).
    #[arg(long, env = "ENERGY_TEST_FAULT", hide = true, value_parser = parse_fault)]
    pub test_fault: Option<crate::metering::pipeline::Fault>,

    /// Seconds of inactivity after which a login session ends.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_SECS", default_value_t = 30 * 60)]
    pub session_idle_timeout_secs: u64,

    /// Seconds after sign-in after which a session ends, however active.
    #[arg(long, env = "SESSION_ABSOLUTE_TIMEOUT_SECS", default_value_t = 12 * 60 * 60)]
    pub session_absolute_timeout_secs: u64,

    /// Seconds a signed-in session, once checked in the database, is trusted from memory. A
    /// session ended on another instance is refused here as soon as its live event arrives, and
    /// at the latest after this when events cannot travel (the broker is down). The header's
    /// unread count and the dashboard's pages of cards are kept as long, pruned by the live
    /// events and readings this instance hears. 0: check the database on every request.
    #[arg(long, env = "SESSION_CACHE_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub session_cache_secs: u64,

    /// Mark the session cookie `Secure`. Default: on when any site origin is https.
    #[arg(long, env = "COOKIE_SECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub cookie_secure: Option<bool>,

    /// Directory with the built site (`pkg/`, favicon); set by cargo-leptos. Default: `site`
    /// next to the server binary when it holds a `pkg/` (a release bundle), else `target/site`.
    #[arg(long, env = "LEPTOS_SITE_ROOT")]
    pub site_root: Option<String>,

    /// Name of the wasm/js/css bundle in `pkg/`; set by cargo-leptos.
    #[arg(long, env = "LEPTOS_OUTPUT_NAME", default_value = "energy")]
    pub output_name: String,

    /// `DEV` enables cargo-leptos live reload; set by cargo-leptos.
    #[arg(long, env = "LEPTOS_ENV", default_value = "PROD")]
    pub leptos_env: String,

    /// Live-reload port (DEV only); set by cargo-leptos.
    #[arg(long, env = "LEPTOS_RELOAD_PORT", default_value_t = 3001)]
    pub reload_port: u32,
}

/// Where the built site is: `explicit` if given; else `site` next to the binary (`exe`) when it
/// holds `pkg/`, so that a release bundle runs from any directory; else `target/site`, as
/// cargo-leptos lays it out in a checkout.
pub fn resolve_site_root(explicit: Option<&str>, exe: Option<&std::path::Path>) -> String {
    if let Some(root) = explicit {
        return root.to_owned();
    }
    let beside = exe.and_then(|e| e.parent()).map(|dir| dir.join("site"));
    match beside {
        Some(site) if site.join("pkg").is_dir() => site.to_string_lossy().into_owned(),
        _ => "target/site".to_owned(),
    }
}

/// What is wrong with the built site at `site_root`, if anything a visitor would notice.
///
/// The browser bundle is split by route (`cargo leptos build --split`, see `app::pages`); a
/// bundle built without `--split` keeps imports from a placeholder module, so no page would
/// become interactive. Such a bundle has `pkg/<name>.wasm` but no split manifest beside it. No
/// `pkg/` at all is not a problem here: the server still serves every page as HTML (tests run
/// it that way).
pub fn site_problem(site_root: &std::path::Path, output_name: &str) -> Option<String> {
    let pkg = site_root.join("pkg");
    let wasm = pkg.join(format!("{output_name}.wasm"));
    if wasm.is_file() && !pkg.join("__wasm_split_manifest.json").is_file() {
        return Some(format!(
            "{} was built without --split: pages will not become interactive in the browser; \
             build the site with `cargo leptos build --release --split`",
            wasm.display()
        ));
    }
    None
}

impl Config {
    /// The site directory this server serves: see [`resolve_site_root`].
    pub fn site_root(&self) -> String {
        // Without /proc (a chroot), the path the binary was started by, when absolute.
        let exe = std::env::current_exe().ok().or_else(|| {
            std::env::args_os()
                .next()
                .map(std::path::PathBuf::from)
                .filter(|p| p.is_absolute())
        });
        resolve_site_root(self.site_root.as_deref(), exe.as_deref())
    }

    /// Defaults for tests and tools, independent of the environment: an explicit database, a
    /// free loopback port, nothing seeded.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Config {
            database_url: Some(database_url.into()),
            site_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            site_origins: Vec::new(),
            admin_username: None,
            admin_password: None,
            demo: false,
            demo_interval_secs: 10,
            demo_peak_every_secs: 180,
            amqp_url: None,
            topology: simulator::Topology::default(),
            amqp_prefetch: 2000,
            consumer_batch_size: 1000,
            max_future_secs: 300,
            metrics_token: None,
            trusted_proxies: Vec::new(),
            min_timestamp: chrono::DateTime::from_timestamp_millis(
                crate::metering::message::DEFAULT_EARLIEST_MS,
            )
            .expect("2000-01-01 is a time"),
            amqp_events_exchange: "energy.events".into(),
            live_socket_buffer: 512,
            live_ping_secs: 25,
            live_dead_after_secs: 60,
            live_relay_poll_ms: 1000,
            outbox_retention_hours: 168,
            test_fault: None,
            shutdown_timeout_secs: 8,
            history_gap_minutes: 120,
            session_idle_timeout_secs: 30 * 60,
            session_absolute_timeout_secs: 12 * 60 * 60,
            session_cache_secs: 5,
            cookie_secure: None,
            site_root: None,
            output_name: "energy".into(),
            leptos_env: "PROD".into(),
            reload_port: 3001,
        }
    }

    /// The metering part, as the meter service takes it.
    pub fn metering(&self) -> crate::metering::MeteringSettings {
        crate::metering::MeteringSettings {
            amqp_url: self.amqp_url.clone().filter(|url| !url.trim().is_empty()),
            topology: self.topology.clone(),
            prefetch: self.amqp_prefetch,
            batch_size: self.consumer_batch_size as usize,
            time_bounds: crate::metering::message::TimeBounds {
                earliest_ms: self.min_timestamp.timestamp_millis(),
                max_future_ms: self.max_future_secs as i64 * 1000,
            },
            demo: self.demo.then(|| crate::metering::demo::DemoSettings {
                interval: Duration::from_secs(self.demo_interval_secs),
                peak_every: Duration::from_secs(self.demo_peak_every_secs),
            }),
            fault: self.test_fault,
            history_gap: self.history_gap(),
        }
    }

    pub fn history_gap(&self) -> Duration {
        Duration::from_secs(self.history_gap_minutes * 60)
    }

    /// The history part, as pages and queries take it.
    pub fn history(&self) -> app::history::ssr::HistorySettings {
        app::history::ssr::HistorySettings {
            gap_ms: self.history_gap().as_millis() as i64,
        }
    }

    /// The live part, as the live service takes it.
    pub fn live(&self) -> crate::live::LiveSettings {
        crate::live::LiveSettings {
            amqp: self
                .amqp_url
                .clone()
                .filter(|url| !url.trim().is_empty())
                .map(|url| crate::live::bus::AmqpBusSettings {
                    url,
                    exchange: self.amqp_events_exchange.clone(),
                }),
            sockets: crate::live::ws::SocketSettings {
                buffer: self.live_socket_buffer as usize,
                ping_every: Duration::from_secs(self.live_ping_secs),
                dead_after: Duration::from_secs(self.live_dead_after_secs),
                ..Default::default()
            },
            relay: crate::live::relay::RelaySettings {
                poll_every: Duration::from_millis(self.live_relay_poll_ms),
                retention: Duration::from_secs(self.outbox_retention_hours * 3600),
            },
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.session_idle_timeout_secs)
    }

    pub fn absolute_timeout(&self) -> Duration {
        Duration::from_secs(self.session_absolute_timeout_secs)
    }
}

/// An address (`10.0.0.1`, one host) or a network (`10.0.0.0/8`).
fn parse_ip_net(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{value:?} is neither an address nor a network like 10.0.0.0/8"))
}

/// `2000-01-01` (midnight UTC) or a full RFC 3339 time, not before the epoch.
fn parse_min_timestamp(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let time = match chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(date) => date.and_time(chrono::NaiveTime::MIN).and_utc(),
        Err(_) => chrono::DateTime::parse_from_rfc3339(value)
            .map_err(|_| format!("{value:?} is neither a date (2000-01-01) nor an RFC 3339 time"))?
            .to_utc(),
    };
    if time.timestamp_millis() < 0 {
        return Err(format!("{value:?} is before 1970-01-01"));
    }
    Ok(time)
}

fn parse_fault(value: &str) -> Result<crate::metering::pipeline::Fault, String> {
    match value {
        "exit-after-alert-commit" => Ok(crate::metering::pipeline::Fault::ExitAfterAlertCommit),
        other => Err(format!("unknown fault {other:?}")),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_site_is_found_beside_the_binary_unless_named() {
        let dir = std::env::temp_dir().join(format!("energy-site-{}", uuid::Uuid::new_v4()));
        let exe = dir.join("server");
        // No site beside the binary: the checkout's.
        assert_eq!(resolve_site_root(None, Some(&exe)), "target/site");
        std::fs::create_dir_all(dir.join("site/pkg")).unwrap();
        let beside = dir.join("site").to_string_lossy().into_owned();
        assert_eq!(resolve_site_root(None, Some(&exe)), beside);
        assert_eq!(
            resolve_site_root(Some("/srv/site"), Some(&exe)),
            "/srv/site"
        );
        assert_eq!(resolve_site_root(None, None), "target/site");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bundle_built_without_split_is_named_at_start() {
        let site = std::env::temp_dir().join(format!("energy-split-{}", uuid::Uuid::new_v4()));
        // No pkg/ at all (the tests' servers): nothing to say.
        assert_eq!(site_problem(&site, "energy"), None);
        std::fs::create_dir_all(site.join("pkg")).unwrap();
        std::fs::write(site.join("pkg/energy.wasm"), b"\0asm").unwrap();
        let problem = site_problem(&site, "energy").expect("a bundle without a split manifest");
        assert!(
            problem.contains("energy.wasm") && problem.contains("--split"),
            "{problem}"
        );
        std::fs::write(site.join("pkg/__wasm_split_manifest.json"), b"{}").unwrap();
        assert_eq!(site_problem(&site, "energy"), None);
        std::fs::remove_dir_all(&site).unwrap();
    }

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn origins_are_comma_separated() {
        let cli = Cli::parse_from([
            "server",
            "--site-origins",
            "https://a.example,http://b:8080",
        ]);
        assert_eq!(
            cli.config.site_origins,
            ["https://a.example", "http://b:8080"]
        );
    }

    #[test]
    fn the_earliest_timestamp_is_a_date_or_a_time() {
        let earliest = |args: &[&str]| {
            let mut all = vec!["server"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|cli| cli.config.metering().time_bounds.earliest_ms)
        };
        // 2000-01-01T00:00:00Z and 2020-06-01T12:00:00Z, computed by hand.
        assert_eq!(earliest(&[]).unwrap(), 946_684_800_000);
        assert_eq!(
            earliest(&["--min-timestamp", "2020-06-01T14:00:00+02:00"]).unwrap(),
            1_591_012_800_000
        );
        assert_eq!(earliest(&["--min-timestamp", "1970-01-01"]).unwrap(), 0);
        let err = earliest(&["--min-timestamp", "01/01/2000"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither a date"), "{err}");
        let err = earliest(&["--min-timestamp", "1969-12-31"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("before 1970"), "{err}");
    }
}
