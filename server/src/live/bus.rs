//! How events travel between server instances. With RabbitMQ: a fanout exchange that every
//! instance binds an exclusive, server-named queue to; the relay publishes outbox events with
//! confirms, the pipeline publishes reading updates without. In embedded mode: an in-process
//! channel to this instance's hub. Either way the hub receives [`HubInput`]s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::live::ReadingEvent;
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use serde::{Deserialize, Serialize};
use simulator::publisher::redact;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metering::metrics::Metrics;

/// An outbox row on its way to the hubs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub seq: i64,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub private: bool,
    /// The event's JSON, as stored.
    pub payload: String,
}

/// A reading update and the owner of its device when it was stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutedReading {
    pub owner: Option<Uuid>,
    pub reading: ReadingEvent,
}

/// One message on the bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BusMessage {
    /// Consecutive outbox events, in sequence order.
    Events(Vec<StoredEvent>),
    Readings(Vec<RoutedReading>),
}

/// What the hub receives.
#[derive(Debug)]
pub enum HubInput {
    Message(BusMessage),
    /// The bus was (re)connected or messages were lost: whatever was published meanwhile must
    /// be read from the outbox.
    Resubscribed,
}

/// Why a publication failed (the relay tries again later).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the event bus is not connected")]
    Disconnected,
    #[error("the broker did not confirm the events: {0}")]
    Unconfirmed(String),
}

/// The sending side, shared by the relay and the pipeline.
#[derive(Clone)]
pub enum Publisher {
    Local(mpsc::Sender<HubInput>),
    Amqp(Arc<AmqpPublisher>),
}

/// Reading updates are dropped rather than queued beyond this.
const HUB_INPUT: usize = 4096;

impl Publisher {
    /// Publishes outbox events and waits until the broker (or the local hub) has them.
    pub async fn events(&self, events: Vec<StoredEvent>) -> Result<(), PublishError> {
        let message = BusMessage::Events(events);
        match self {
            Publisher::Local(tx) => tx
                .send(HubInput::Message(message))
                .await
                .map_err(|_| PublishError::Disconnected),
            Publisher::Amqp(amqp) => amqp.publish(&message, true).await,
        }
    }

    /// Passes reading updates on if the bus can take them now; they are dropped otherwise
    /// (the next reading supersedes them).
    pub fn readings(&self, readings: Vec<RoutedReading>, metrics: &Metrics) {
        if readings.is_empty() {
            return;
        }
        let message = BusMessage::Readings(readings);
        let sent = match self {
            Publisher::Local(tx) => tx.try_send(HubInput::Message(message)).is_ok(),
            Publisher::Amqp(amqp) => amqp.publish_unconfirmed(&message),
        };
        if !sent {
            metrics.readings_dropped.inc();
        }
    }
}

/// An in-process bus: the publisher and the hub's input. The hub starts by reading what was
/// committed and not yet published before (as it does on every broker connection).
pub fn local() -> (Publisher, mpsc::Receiver<HubInput>) {
    let (tx, rx) = mpsc::channel(HUB_INPUT);
    let _ = tx.try_send(HubInput::Resubscribed);
    (Publisher::Local(tx), rx)
}

/// Publishing on the current broker connection, if there is one.
pub struct AmqpPublisher {
    exchange: String,
    channel: Mutex<Option<Channel>>,
}

impl AmqpPublisher {
    fn current(&self) -> Option<Channel> {
        self.channel
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .filter(|c| c.status().connected())
    }

    async fn publish(&self, message: &BusMessage, confirm: bool) -> Result<(), PublishError> {
        let channel = self.current().ok_or(PublishError::Disconnected)?;
        let body = serde_json::to_vec(message)
            .map_err(|e| PublishError::Unconfirmed(format!("cannot encode: {e}")))?;
        let pending = channel
            .basic_publish(
                self.exchange.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await
            .map_err(|e| PublishError::Unconfirmed(e.to_string()))?;
        if !confirm {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_secs(10), pending).await {
            Ok(Ok(c)) if c.is_ack() => Ok(()),
            Ok(Ok(_)) => Err(PublishError::Unconfirmed("nack".into())),
            Ok(Err(e)) => Err(PublishError::Unconfirmed(e.to_string())),
            Err(_) => Err(PublishError::Unconfirmed("no confirm in 10 s".into())),
        }
    }

    /// Starts a publication without waiting for it; `false` when there is no connection.
    fn publish_unconfirmed(self: &Arc<Self>, message: &BusMessage) -> bool {
        if self.current().is_none() {
            return false;
        }
        let this = self.clone();
        let message = message.clone();
        tokio::spawn(async move {
            let _ = this.publish(&message, false).await;
        });
        true
    }
}

/// Where the bus lives on the broker.
#[derive(Clone, Debug)]
pub struct AmqpBusSettings {
    pub url: String,
    pub exchange: String,
}

/// Connects to the broker's event exchange in the background (and again whenever the
/// connection drops) and feeds what arrives to the hub.
pub fn amqp(
    settings: AmqpBusSettings,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> (Publisher, mpsc::Receiver<HubInput>) {
    let (tx, rx) = mpsc::channel(HUB_INPUT);
    let publisher = Arc::new(AmqpPublisher {
        exchange: settings.exchange.clone(),
        channel: Mutex::new(None),
    });
    tokio::spawn(run_amqp(settings, publisher.clone(), tx, metrics, cancel));
    (Publisher::Amqp(publisher), rx)
}

async fn run_amqp(
    settings: AmqpBusSettings,
    publisher: Arc<AmqpPublisher>,
    hub: mpsc::Sender<HubInput>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut delay = Duration::from_millis(200);
    let mut sessions = 0u64;
    loop {
        let ended = tokio::select! {
            ended = session(&settings, &publisher, &hub, &metrics, &mut sessions) => ended,
            _ = cancel.cancelled() => return,
        };
        if let Ok(mut c) = publisher.channel.lock() {
            *c = None;
        }
        if hub.is_closed() {
            return;
        }
        if sessions > 0 {
            delay = Duration::from_millis(200);
        }
        tracing::warn!(
            reason = %ended,
            broker = %redact(&settings.url),
            retry_in_ms = delay.as_millis() as u64,
            "event bus disconnected; reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// One connection's life; returns why it ended.
async fn session(
    settings: &AmqpBusSettings,
    publisher: &AmqpPublisher,
    hub: &mpsc::Sender<HubInput>,
    metrics: &Metrics,
    sessions: &mut u64,
) -> String {
    let connection =
        match simulator::publisher::connect(&settings.url, "energy-server-events").await {
            Ok(c) => c,
            Err(e) => return format!("cannot connect: {e}"),
        };
    let ended = consume(&connection, settings, publisher, hub, metrics, sessions).await;
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        connection.close(200, "event bus stopping".into()),
    )
    .await;
    ended
}

async fn consume(
    connection: &Connection,
    settings: &AmqpBusSettings,
    publisher: &AmqpPublisher,
    hub: &mpsc::Sender<HubInput>,
    metrics: &Metrics,
    sessions: &mut u64,
) -> String {
    let setup = async {
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                settings.exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().as_str().into(),
                settings.exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                "energy-server-events".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let publishing = connection.create_channel().await?;
        publishing
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok::<_, lapin::Error>((consumer, publishing))
    };
    let (mut consumer, publishing) = match setup.await {
        Ok(pair) => pair,
        Err(e) => return format!("cannot set up the event exchange: {e}"),
    };
    if let Ok(mut c) = publisher.channel.lock() {
        *c = Some(publishing);
    }
    if *sessions > 0 {
        metrics.bus_reconnects.inc();
    }
    *sessions += 1;
    // Whatever was published while this instance was not bound is in the outbox.
    if hub.send(HubInput::Resubscribed).await.is_err() {
        return "the hub stopped".into();
    }
    tracing::info!(exchange = %settings.exchange, "event bus connected");
    loop {
        match consumer.next().await {
            Some(Ok(delivery)) => match serde_json::from_slice::<BusMessage>(&delivery.data) {
                Ok(message) => {
                    if hub.send(HubInput::Message(message)).await.is_err() {
                        return "the hub stopped".into();
                    }
                }
                Err(error) => {
                    // Not ours (another version, another application): drop it, but say so.
                    tracing::warn!(%error, "an event on the bus was not understood");
                }
            },
            Some(Err(e)) => return format!("delivery failed: {e}"),
            None => return "the broker cancelled the consumer".into(),
        }
    }
}
