//! The Energy Utility Platform server as a library: `main` is a thin wrapper, and integration
//! tests build the same [`startup::Application`] on a port of their own.

pub mod api_status;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod guards;
pub mod health;
pub mod history;
pub mod live;
pub mod metering;
pub mod origin;
pub mod preload;
pub mod security_headers;
pub mod session_store;
pub mod startup;

pub use config::{Cli, Command, Config};
pub use startup::Application;
