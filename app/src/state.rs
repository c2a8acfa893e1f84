//! The server's shared state, as server functions see it. Built by the `server` crate and handed
//! to Leptos as context; tests build their own.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use leptos::prelude::*;
use sea_orm::DatabaseConnection;

use crate::auth::throttle::LoginThrottle;
use crate::error::AppError;

/// Session lifetime rules.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    pub absolute_timeout: Duration,
}

#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub leptos_options: LeptosOptions,
    pub sessions: SessionSettings,
    pub throttle: Arc<LoginThrottle>,
    /// Peers whose `X-Forwarded-For` names the real client (reverse proxies).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// A real argon2id hash of a random password: verifying against it when the username does
    /// not exist makes a failed login take the same time either way.
    pub dummy_hash: Arc<str>,
    /// This server's live position and the relay's wake-up call.
    pub live: crate::live::ssr::LiveHandle,
    pub history: crate::history::ssr::HistorySettings,
    /// Sends dead letters through the metering pipeline again.
    pub replay: Arc<dyn crate::dead_letters::ssr::Replay>,
}

/// The state provided to this request's server function or page render.
pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        AppError::Internal
    })
}

/// The database connection of this request's state.
pub fn db() -> Result<DatabaseConnection, AppError> {
    Ok(state()?.db)
}
