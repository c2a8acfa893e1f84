//! sea-orm entities: server-only, never compiled into the browser bundle.

pub mod dead_letters;
pub mod devices;
pub mod sessions;
pub mod users;
