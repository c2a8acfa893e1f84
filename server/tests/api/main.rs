//! Integration tests: the real application on a real database (SQLite and PostgreSQL), driven
//! over HTTP like a browser or API client would.

mod helpers;
mod meter_support;
mod ws_client;

mod accounts;
mod auth;
mod cli;
mod dead_letters;
mod devices;
mod hardening;
mod health;
mod history;
mod live;
mod metering;
mod pages;
mod security;
mod session_cache;
