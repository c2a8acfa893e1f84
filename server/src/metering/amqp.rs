//! The RabbitMQ consumer. It declares the topology, sets the prefetch, and consumes in batches:
//! a batch is validated, committed, its rejects are dead-lettered (with the reason in a header,
//! confirmed by the broker), and only then is it acknowledged, once, up to its last delivery
//! tag. When the connection drops it reconnects with backoff and sets all of that up again
//! itself rather than through lapin's auto-recovery: an unfinished batch's delivery tags die
//! with their channel anyway, and the broker-restart test checks the topology and prefetch
//! afterwards. Deliveries that were not acknowledged come back and are recognised as
//! duplicates. Dead letters are published on a connection of their own, so that a broker
//! blocking publishers (memory or disk alarm) never stalls the consuming connection's acks.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use simulator::publisher::redact;
use simulator::topology::{is_refusal, Topology, DETAIL_HEADER, REASON_HEADER};
use tokio_util::sync::CancellationToken;

use super::pipeline::{Pipeline, Verdict};

/// How the consumer reaches and reads its queue.
#[derive(Clone, Debug)]
pub struct AmqpSettings {
    pub url: String,
    pub topology: Topology,
    /// Unacknowledged deliveries the broker may push at once.
    pub prefetch: u16,
    /// Most messages per batch (one transaction, one ack).
    pub batch_size: usize,
    /// How long a batch waits to fill once it has its first message.
    pub batch_wait: Duration,
    /// A batch closes early when no further message comes for this long: a lone reading (a
    /// peak on a quiet system) is not held back for the whole `batch_wait`.
    pub batch_idle: Duration,
}

enum Ended {
    /// Cancelled: a clean stop.
    Stopped,
    /// The connection or channel failed: reconnect.
    Lost(String),
    /// The broker refused the topology: reconnecting cannot help.
    Fatal(anyhow::Error),
}

/// Consumes until `cancel` fires. Returns an error only when retrying cannot help.
pub async fn run(
    settings: AmqpSettings,
    pipeline: Arc<Pipeline>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = pipeline.metrics().clone();
    let mut delay = Duration::from_millis(200);
    let mut sessions = 0u64;
    loop {
        let mut acked = false;
        let ended = session(&settings, &pipeline, &cancel, &mut sessions, &mut acked).await;
        if acked {
            // This session made progress: the next failure starts the backoff afresh. One
            // that never acknowledged a batch keeps backing off, so a failure on every batch
            // cannot turn into a fast reconnect loop that spends the deliveries' limit.
            delay = Duration::from_millis(200);
        }
        metrics.queue_connected.store(false, Relaxed);
        match ended {
            Ended::Stopped => return Ok(()),
            Ended::Fatal(error) => return Err(error),
            Ended::Lost(reason) => {
                tracing::warn!(
                    %reason,
                    broker = %redact(&settings.url),
                    retry_in_ms = delay.as_millis() as u64,
                    "broker connection lost; reconnecting"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(()),
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn connect(url: &str, name: &str) -> Result<Connection, Ended> {
    Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
    .map_err(|e| Ended::Lost(format!("cannot connect: {e}")))
}

async fn close(connection: Connection) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        connection.close(200, "consumer stopping".into()),
    )
    .await;
}

async fn session(
    settings: &AmqpSettings,
    pipeline: &Pipeline,
    cancel: &CancellationToken,
    sessions: &mut u64,
    acked: &mut bool,
) -> Ended {
    let connection = match connect(&settings.url, "energy-server").await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let publishing = match connect(&settings.url, "energy-server-dead-letters").await {
        Ok(c) => c,
        Err(e) => {
            close(connection).await;
            return e;
        }
    };
    let ended = consume(
        &connection,
        &publishing,
        settings,
        pipeline,
        cancel,
        sessions,
        acked,
    )
    .await;
    close(connection).await;
    close(publishing).await;
    ended
}

async fn consume(
    connection: &Connection,
    publishing: &Connection,
    settings: &AmqpSettings,
    pipeline: &Pipeline,
    cancel: &CancellationToken,
    sessions: &mut u64,
    acked: &mut bool,
) -> Ended {
    let lost = |what: &str, e: lapin::Error| Ended::Lost(format!("{what}: {e}"));
    let channel = match connection.create_channel().await {
        Ok(c) => c,
        Err(e) => return lost("cannot open a channel", e),
    };
    if let Err(e) = settings.topology.declare(&channel).await {
        return if is_refusal(&e) {
            Ended::Fatal(anyhow::anyhow!(
                "the broker refused the topology (queue {:?}, exchange {:?}): {e}. A queue \
                 declared earlier with other arguments must be deleted or renamed",
                settings.topology.queue,
                settings.topology.exchange
            ))
        } else {
            lost("cannot declare the topology", e)
        };
    }
    if let Err(e) = channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await
    {
        return lost("cannot set the prefetch", e);
    }
    // Dead-lettering publishes with confirms, on its own connection.
    let dead_letters = match publishing.create_channel().await {
        Ok(c) => c,
        Err(e) => return lost("cannot open a channel", e),
    };
    if let Err(e) = dead_letters
        .confirm_select(ConfirmSelectOptions::default())
        .await
    {
        return lost("cannot enable confirms", e);
    }
    let tag = format!("energy-server-{}", uuid::Uuid::new_v4());
    let mut consumer = match channel
        .basic_consume(
            settings.topology.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return lost("cannot consume", e),
    };

    let metrics = pipeline.metrics().clone();
    if *sessions > 0 {
        metrics.reconnects.fetch_add(1, Relaxed);
        tracing::info!(queue = %settings.topology.queue, "consuming again after reconnecting");
    } else {
        tracing::info!(
            queue = %settings.topology.queue,
            prefetch = settings.prefetch,
            batch = settings.batch_size,
            "consuming meter readings"
        );
    }
    *sessions += 1;
    metrics.queue_connected.store(true, Relaxed);

    // The queue depth, for the lag gauge.
    let lag = {
        let channel = dead_letters.clone();
        let queue = settings.topology.queue.clone();
        let metrics = metrics.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = cancel.cancelled() => return,
                }
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                match channel
                    .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                    .await
                {
                    Ok(q) => metrics
                        .lag_messages
                        .store(i64::from(q.message_count()), Relaxed),
                    Err(_) => return,
                }
            }
        })
    };

    let ended = loop {
        let first = tokio::select! {
            next = consumer.next() => next,
            _ = cancel.cancelled() => break Ended::Stopped,
        };
        let mut batch: Vec<Delivery> = Vec::with_capacity(settings.batch_size);
        match first {
            Some(Ok(d)) => batch.push(d),
            Some(Err(e)) => break lost("delivery failed", e),
            None => break Ended::Lost("the broker cancelled the consumer".into()),
        }
        let deadline = tokio::time::Instant::now() + settings.batch_wait;
        let mut failure = None;
        while batch.len() < settings.batch_size {
            let idle = (tokio::time::Instant::now() + settings.batch_idle).min(deadline);
            match tokio::time::timeout_at(idle, consumer.next()).await {
                Ok(Some(Ok(d))) => batch.push(d),
                Ok(Some(Err(e))) => {
                    failure = Some(lost("delivery failed", e));
                    break;
                }
                Ok(None) => {
                    failure = Some(Ended::Lost("the broker cancelled the consumer".into()));
                    break;
                }
                Err(_) => break,
            }
        }
        if let Some(f) = failure {
            // Nothing of this batch was acknowledged: the broker delivers it again.
            break f;
        }
        match handle_batch(&batch, &channel, &dead_letters, settings, pipeline, cancel).await {
            Ok(()) => *acked = true,
            Err(e) => break e,
        }
    };
    lag.abort();
    ended
}

async fn handle_batch(
    batch: &[Delivery],
    channel: &Channel,
    dead_letters: &Channel,
    settings: &AmqpSettings,
    pipeline: &Pipeline,
    cancel: &CancellationToken,
) -> Result<(), Ended> {
    let bodies: Vec<&[u8]> = batch.iter().map(|d| d.data.as_slice()).collect();
    let redelivered = batch.iter().filter(|d| d.redelivered).count() as u64;
    pipeline
        .metrics()
        .redelivered
        .fetch_add(redelivered, std::sync::atomic::Ordering::Relaxed);
    // Retrying a database outage stops when the channel goes (the broker closes it after its
    // consumer timeout): the deliveries are redelivered then, so storing them here is moot.
    let gone = async {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = closed(channel) => {}
        }
    };
    let Some(verdicts) = pipeline.process_until_done(&bodies, gone).await else {
        return Err(if cancel.is_cancelled() {
            Ended::Stopped
        } else {
            Ended::Lost("the channel closed while the database was unavailable".into())
        });
    };

    let mut confirms = Vec::new();
    for (delivery, verdict) in batch.iter().zip(&verdicts) {
        let Verdict::Rejected(rejection) = verdict else {
            continue;
        };
        tracing::warn!(
            reason = rejection.code(),
            detail = %rejection,
            redelivered = delivery.redelivered,
            "message rejected to the dead-letter queue"
        );
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(rejection.code())),
        );
        headers.insert(
            DETAIL_HEADER.into(),
            AMQPValue::LongString(LongString::from(rejection.to_string())),
        );
        headers.insert(
            "x-original-queue".into(),
            AMQPValue::LongString(LongString::from(settings.topology.queue.as_str())),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let properties = match delivery.properties.content_type() {
            Some(ct) => properties.with_content_type(ct.clone()),
            None => properties,
        };
        let confirm = dead_letters
            .basic_publish(
                settings.topology.dead_letter_exchange.as_str().into(),
                delivery.routing_key.clone(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await
            .map_err(|e| Ended::Lost(format!("cannot dead-letter: {e}")))?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        match tokio::time::timeout(Duration::from_secs(30), confirm).await {
            Ok(Ok(c)) if c.is_ack() => {}
            Ok(Ok(_)) => return Err(Ended::Lost("the broker refused a dead letter".into())),
            Ok(Err(e)) => return Err(Ended::Lost(format!("dead letter not confirmed: {e}"))),
            Err(_) => return Err(Ended::Lost("no confirm for a dead letter in 30 s".into())),
        }
    }

    if let Some(last) = batch.last() {
        channel
            .basic_ack(last.delivery_tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|e| Ended::Lost(format!("cannot acknowledge: {e}")))?;
    }
    Ok(())
}

/// Completes when the channel is no longer usable.
async fn closed(channel: &Channel) {
    while channel.status().connected() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
