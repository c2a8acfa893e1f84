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
                  shown beside it."
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

    /// Seed demo accounts and devices, and print their (freshly generated) passwords.
    #[arg(
        long,
        env = "DEMO",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub demo: bool,

    /// Seconds of inactivity after which a login session ends.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_SECS", default_value_t = 30 * 60)]
    pub session_idle_timeout_secs: u64,

    /// Seconds after sign-in after which a session ends, however active.
    #[arg(long, env = "SESSION_ABSOLUTE_TIMEOUT_SECS", default_value_t = 12 * 60 * 60)]
    pub session_absolute_timeout_secs: u64,

    /// Mark the session cookie `Secure`. Default: on when any site origin is https.
    #[arg(long, env = "COOKIE_SECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub cookie_secure: Option<bool>,

    /// Directory with the built site (`pkg/`, favicon); set by cargo-leptos.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,

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

impl Config {
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
            session_idle_timeout_secs: 30 * 60,
            session_absolute_timeout_secs: 12 * 60 * 60,
            cookie_secure: None,
            site_root: "target/site".into(),
            output_name: "energy".into(),
            leptos_env: "PROD".into(),
            reload_port: 3001,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.session_idle_timeout_secs)
    }

    pub fn absolute_timeout(&self) -> Duration {
        Duration::from_secs(self.session_absolute_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
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
}
