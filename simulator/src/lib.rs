//! The smart meter simulator as a library: message format, broker topology, CSV replay,
//! synthetic load profiles and a confirmed publisher. The `simulator` binary is a CLI over
//! these; the server reuses the topology and, in demo mode, the generator.

pub mod csv_source;
pub mod feed;
pub mod message;
pub mod profile;
pub mod publisher;
pub mod topology;

pub use message::MeterMessage;
pub use publisher::{PublishError, Publisher, PublisherOptions, Stats};
pub use topology::Topology;
