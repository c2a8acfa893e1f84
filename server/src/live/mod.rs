//! The live path: committed outbox events and reading updates travel to every server instance
//! (a RabbitMQ fanout exchange, or in process), where each instance's hub hands them to the
//! dashboard WebSockets that may see them.
//!
//! `relay` publishes the outbox, `bus` carries it, `hub` dispatches, `ws` serves the sockets.

pub mod bus;
pub mod hub;
pub mod relay;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use app::live::ssr::LiveHandle;
use app::live::ReadingEvent;
use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::bus::{AmqpBusSettings, HubInput, Publisher, RoutedReading};
use self::hub::Hub;
use self::relay::RelaySettings;
use self::ws::SocketSettings;
use crate::metering::metrics::Metrics;

/// The live part of the configuration.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    /// The broker's event exchange, or `None` for the in-process bus.
    pub amqp: Option<AmqpBusSettings>,
    pub sockets: SocketSettings,
    pub relay: RelaySettings,
}

/// What the metering pipeline tells the live path after a commit.
#[derive(Clone)]
pub struct LiveSink {
    handle: LiveHandle,
    publisher: Publisher,
    metrics: Arc<Metrics>,
}

impl LiveSink {
    /// `announced`: outbox events were committed (the relay publishes them now). `readings`:
    /// the devices' new head readings, passed on as they are, without a guarantee.
    pub fn committed(&self, announced: bool, readings: Vec<(Option<Uuid>, ReadingEvent)>) {
        if announced {
            self.handle.wake();
        }
        self.publisher.readings(
            readings
                .into_iter()
                .map(|(owner, reading)| RoutedReading { owner, reading })
                .collect(),
            &self.metrics,
        );
    }
}

/// The live path of one server, ready to run.
pub struct LiveService {
    db: DatabaseConnection,
    handle: LiveHandle,
    publisher: Publisher,
    input: mpsc::Receiver<HubInput>,
    hub: Arc<Hub>,
    settings: LiveSettings,
    metrics: Arc<Metrics>,
}

impl LiveService {
    /// Sets up the bus (a broker connection is made in the background, until `cancel`) and the
    /// hub, which starts at the relay's published position.
    pub async fn build(
        db: DatabaseConnection,
        handle: LiveHandle,
        settings: LiveSettings,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> anyhow::Result<LiveService> {
        let (publisher, input) = match &settings.amqp {
            Some(amqp) => bus::amqp(amqp.clone(), metrics.clone(), cancel),
            None => bus::local(),
        };
        let start = relay::published(&db).await?;
        let hub = Arc::new(Hub::new(
            db.clone(),
            handle.clone(),
            metrics.clone(),
            settings.sockets.buffer,
            start,
        ));
        Ok(LiveService {
            db,
            handle,
            publisher,
            input,
            hub,
            settings,
            metrics,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn sink(&self) -> LiveSink {
        LiveSink {
            handle: self.handle.clone(),
            publisher: self.publisher.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Relays and dispatches until `cancel`; then every socket is closed ("going away").
    pub async fn run(self, cancel: CancellationToken) {
        let LiveService {
            db,
            handle,
            publisher,
            input,
            hub,
            settings,
            metrics,
        } = self;
        let relay = tokio::spawn(relay::run(
            db,
            publisher,
            handle,
            settings.relay,
            metrics,
            cancel.clone(),
        ));
        hub.run(input, cancel).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), relay).await;
    }
}
