//! The RabbitMQ consumer. It declares the topology, sets the prefetch, and consumes in batches:
//! a batch is validated, committed, its rejects are dead-lettered (with the reason in a header,
//! confirmed by the broker), and only then is it acknowledged, once, up to its last delivery
//! tag. When the connection drops it reconnects with backoff and sets all of that up again
//! itself rather than through lapin's auto-recovery: an unfinished batch's delivery tags die
//! with their channel anyway, and the broker-restart test checks the topology and prefetch
//! afterwards. Deliveries that were not acknowledged come back and are recognised as
//! duplicates. Dead letters are published on a connection of their own, so that a broker
//! blocking publishers (memory or disk alarm) never stalls the consuming connection's acks.
//! Each session also drains the dead-letter queue into the `dead_letters` table, where admins
//! see them; readings the broker itself dead-lettered at the delivery limit are stored after
//! all on the way (see [`drain`]).

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};
use simulator::publisher::redact;
use simulator::topology::{header_text, is_refusal, Topology, DETAIL_HEADER, REASON_HEADER};
use tokio_util::sync::CancellationToken;

use super::dead_letters::{self, DELIVERY_LIMIT};
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
        metrics.set_connected(false);
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
    simulator::publisher::connect(url, name)
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
    pipeline: &Arc<Pipeline>,
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
    pipeline: &Arc<Pipeline>,
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
    let mut drain = match start_drain(connection, settings, pipeline, cancel).await {
        Ok(task) => task,
        Err(e) => return lost("cannot consume the dead-letter queue", e),
    };

    let metrics = pipeline.metrics().clone();
    if *sessions > 0 {
        metrics.reconnects.inc();
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
    metrics.set_connected(true);

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
                    Ok(q) => {
                        metrics.lag_messages.set(i64::from(q.message_count()));
                    }
                    Err(_) => return,
                }
            }
        })
    };

    let ended = loop {
        let first = tokio::select! {
            next = consumer.next() => next,
            _ = cancel.cancelled() => break Ended::Stopped,
            ended = &mut drain => break match ended {
                _ if cancel.is_cancelled() => Ended::Stopped,
                Ok(reason) => Ended::Lost(reason),
                Err(e) => Ended::Lost(format!("the dead-letter drain stopped: {e}")),
            },
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
    drain.abort();
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
    pipeline.metrics().redelivered.inc_by(redelivered);
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

/// Consumes the dead-letter queue into the `dead_letters` table, on a channel of its own.
async fn start_drain(
    connection: &Connection,
    settings: &AmqpSettings,
    pipeline: &Arc<Pipeline>,
    cancel: &CancellationToken,
) -> Result<tokio::task::JoinHandle<String>, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(DRAIN_PREFETCH, BasicQosOptions::default())
        .await?;
    let tag = format!("energy-server-dead-letters-{}", uuid::Uuid::new_v4());
    let consumer = channel
        .basic_consume(
            settings.topology.dead_letter_queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(tokio::spawn(drain(
        consumer,
        channel,
        Arc::clone(pipeline),
        cancel.clone(),
    )))
}

/// Dead letters the drain holds unacknowledged at once.
const DRAIN_PREFETCH: u16 = 20;

/// Takes each dead letter into the table and acknowledges it after the commit. A message with
/// our reason header was rejected by a consumer: it is kept as it is. One without was
/// dead-lettered by the broker itself, at the delivery limit: every lost consumer session
/// (a crash, or a database outage longer than the broker's consumer timeout) returns its
/// unacknowledged deliveries and counts towards that limit, so a valid reading can end up here.
/// It gets one more try through the pipeline (stored once, or rejected with its real reason),
/// and is kept as `delivery_limit` only if that try panics. Returns why it stopped.
async fn drain(
    mut consumer: lapin::Consumer,
    channel: Channel,
    pipeline: Arc<Pipeline>,
    cancel: CancellationToken,
) -> String {
    let metrics = pipeline.metrics().clone();
    loop {
        let delivery = tokio::select! {
            next = consumer.next() => next,
            _ = cancel.cancelled() => return "stopping".into(),
        };
        let delivery = match delivery {
            Some(Ok(d)) => d,
            Some(Err(e)) => return format!("dead-letter delivery failed: {e}"),
            None => return "the broker cancelled the dead-letter consumer".into(),
        };
        let reason = header_text(&delivery.properties, REASON_HEADER);
        let kept = match reason {
            Some(reason) => {
                let detail = header_text(&delivery.properties, DETAIL_HEADER).unwrap_or_default();
                let gone = gone(&cancel, &channel);
                dead_letters::keep_until_done(pipeline.db(), &reason, &detail, &delivery.data, gone)
                    .await
            }
            None => retry_dead_lettered(&pipeline, delivery.data.clone(), &cancel, &channel).await,
        };
        if !kept {
            return "the dead-letter channel closed while the database was unavailable".into();
        }
        metrics.dead_letters_kept.inc();
        if let Err(e) = channel
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await
        {
            return format!("cannot acknowledge a dead letter: {e}");
        }
    }
}

/// A reading the broker dead-lettered, tried once more. `false` when `gone` completed first.
async fn retry_dead_lettered(
    pipeline: &Arc<Pipeline>,
    body: Vec<u8>,
    cancel: &CancellationToken,
    channel: &Channel,
) -> bool {
    // Its own task, so that a message which panics the pipeline is kept instead of taking the
    // drain down with it (the dead-letter queue has no delivery limit to stop a crash loop).
    let attempt = {
        let (pipeline, body) = (Arc::clone(pipeline), body.clone());
        let gone = gone(cancel, channel);
        tokio::spawn(async move { pipeline.process_until_done(&[&body], gone).await })
    };
    let metrics = pipeline.metrics();
    match attempt.await {
        Ok(None) => false,
        Ok(Some(verdicts)) => match verdicts.into_iter().next() {
            Some(Verdict::Rejected(rejection)) => {
                let detail = rejection.to_string();
                let gone = gone(cancel, channel);
                dead_letters::keep_until_done(pipeline.db(), rejection.code(), &detail, &body, gone)
                    .await
            }
            Some(Verdict::Stored) => {
                metrics.dead_letters_recovered.inc();
                tracing::info!("a reading dead-lettered at the delivery limit is stored");
                true
            }
            _ => true,
        },
        Err(e) => {
            let detail = format!(
                "the broker dead-lettered it at the delivery limit and trying it again failed: {e}"
            );
            tracing::error!(%detail, "a dead letter cannot be processed");
            let gone = gone(cancel, channel);
            dead_letters::keep_until_done(pipeline.db(), DELIVERY_LIMIT, &detail, &body, gone).await
        }
    }
}

/// Completes when retrying is moot: the server stops, or the channel went (its deliveries come
/// back).
fn gone(
    cancel: &CancellationToken,
    channel: &Channel,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (cancel, channel) = (cancel.clone(), channel.clone());
    async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = closed(&channel) => {}
        }
    }
}

/// Completes when the channel is no longer usable.
async fn closed(channel: &Channel) {
    while channel.status().connected() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
