//! Publishing meter messages reliably: persistent, `mandatory`, with publisher confirms and a
//! bounded window of unconfirmed messages. A message is counted as confirmed only when the
//! broker acknowledged it and did not return it. Unconfirmed messages (nack, lost connection,
//! confirm timeout) are sent again after reconnecting, so a message may reach the queue twice;
//! the consumer stores each (device, timestamp) once. Returned (unroutable) messages are
//! failures, never counted as sent successfully.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use lapin::{Confirmation, PublisherConfirm};

use crate::topology::Topology;

/// How to reach the broker and how patient to be.
#[derive(Clone, Debug)]
pub struct PublisherOptions {
    pub url: String,
    pub topology: Topology,
    /// Most messages awaiting their confirm at once.
    pub window: usize,
    /// How long one confirm may take before the connection is presumed dead.
    pub confirm_timeout: Duration,
    /// How long to keep trying to connect the first time before giving up (a wrong URL
    /// should fail fast).
    pub connect_for: Duration,
    /// How long to keep trying to reconnect after losing a working connection.
    pub reconnect_for: Duration,
    /// Sends of one message the broker refused (nack) before it counts as failed; resends
    /// after a lost connection do not count.
    pub max_attempts: u32,
    /// Shown in the broker's connection list.
    pub connection_name: String,
}

impl PublisherOptions {
    pub fn new(url: impl Into<String>, topology: Topology) -> Self {
        PublisherOptions {
            url: url.into(),
            topology,
            window: 2048,
            confirm_timeout: Duration::from_secs(15),
            connect_for: Duration::from_secs(5),
            reconnect_for: Duration::from_secs(60),
            max_attempts: 10,
            connection_name: "energy-simulator".into(),
        }
    }
}

/// What happened to the messages handed to [`Publisher::publish`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages handed to the publisher.
    pub sent: u64,
    /// Acknowledged by the broker and routed to a queue.
    pub confirmed: u64,
    /// Acknowledged but unroutable (no queue bound): failures.
    pub returned: u64,
    /// Given up on after `max_attempts` refusals.
    pub failed: u64,
    /// Sends repeated because a confirm did not arrive or was negative.
    pub retried: u64,
    /// Connections made after the first.
    pub reconnects: u64,
}

impl Stats {
    /// Messages whose fate is still open.
    pub fn outstanding(&self) -> u64 {
        self.sent - self.confirmed - self.returned - self.failed
    }
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot reach the broker at {url} (gave up after {secs} s): {source}")]
    Unreachable {
        url: String,
        secs: u64,
        source: lapin::Error,
    },
    #[error("the broker refused the topology (exchange {exchange:?}, queue {queue:?}): {source}")]
    Topology {
        exchange: String,
        queue: String,
        source: lapin::Error,
    },
}

struct Pending {
    body: Arc<[u8]>,
    attempt: u32,
    confirm: PublisherConfirm,
}

/// A confirmed-delivery publisher with its own reconnect loop.
pub struct Publisher {
    options: PublisherOptions,
    connection: Option<Connection>,
    channel: Option<Channel>,
    outbox: VecDeque<(Arc<[u8]>, u32)>,
    pending: VecDeque<Pending>,
    stats: Stats,
    connected_once: bool,
}

impl Publisher {
    /// Connects, declares the topology and turns on confirms.
    pub async fn connect(options: PublisherOptions) -> Result<Self, PublishError> {
        let mut publisher = Publisher {
            options,
            connection: None,
            channel: None,
            outbox: VecDeque::new(),
            pending: VecDeque::new(),
            stats: Stats::default(),
            connected_once: false,
        };
        publisher.channel().await?;
        Ok(publisher)
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Publishes one message body. Returns once it is on its way; at most `window` messages are
    /// unconfirmed at any time, so this waits for confirms when the window is full.
    pub async fn publish(&mut self, body: Vec<u8>) -> Result<(), PublishError> {
        self.stats.sent += 1;
        self.outbox.push_back((body.into(), 1));
        self.pump().await
    }

    /// Waits until every message handed over is confirmed, returned or failed.
    pub async fn flush(&mut self) -> Result<Stats, PublishError> {
        loop {
            self.pump().await?;
            if self.pending.is_empty() && self.outbox.is_empty() {
                return Ok(self.stats);
            }
            self.settle_one().await?;
        }
    }

    /// Flushes and closes the connection.
    pub async fn close(mut self) -> Result<Stats, PublishError> {
        let stats = self.flush().await?;
        if let Some(connection) = self.connection.take() {
            let _ = connection.close(200, "done".into()).await;
        }
        Ok(stats)
    }

    async fn pump(&mut self) -> Result<(), PublishError> {
        while let Some((body, attempt)) = self.outbox.pop_front() {
            while self.pending.len() >= self.options.window.max(1) {
                self.settle_one().await?;
            }
            let channel = self.channel().await?;
            let sent = channel
                .basic_publish(
                    self.options.topology.exchange.as_str().into(),
                    self.options.topology.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    properties(),
                )
                .await;
            match sent {
                Ok(confirm) => self.pending.push_back(Pending {
                    body,
                    attempt,
                    confirm,
                }),
                Err(error) => {
                    tracing::warn!(%error, "publish failed; reconnecting");
                    self.outbox.push_front((body, attempt));
                    self.lost_connection();
                }
            }
        }
        Ok(())
    }

    async fn settle_one(&mut self) -> Result<(), PublishError> {
        let Some(pending) = self.pending.pop_front() else {
            return Ok(());
        };
        match tokio::time::timeout(self.options.confirm_timeout, pending.confirm).await {
            Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => {
                self.stats.confirmed += 1
            }
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                self.stats.returned += 1;
                tracing::warn!(
                    reply = %returned.reply_text,
                    exchange = %self.options.topology.exchange,
                    routing_key = %self.options.topology.routing_key,
                    "the broker returned a message: no queue is bound for it"
                );
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                // The broker could not take it (an internal error): wait a little, then send
                // it again, up to `max_attempts` times.
                tracing::warn!(
                    attempt = pending.attempt,
                    "the broker refused a message (nack)"
                );
                tokio::time::sleep(Duration::from_millis(100) * pending.attempt).await;
                if pending.attempt >= self.options.max_attempts {
                    self.stats.failed += 1;
                    tracing::error!(attempts = pending.attempt, "giving up on a message");
                } else {
                    self.resend(pending.body, pending.attempt + 1);
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "no confirm: connection lost");
                self.resend(pending.body, pending.attempt);
                self.lost_connection();
            }
            Err(_) => {
                tracing::warn!("no confirm in time: presuming the connection dead");
                self.resend(pending.body, pending.attempt);
                self.lost_connection();
            }
        }
        Ok(())
    }

    fn resend(&mut self, body: Arc<[u8]>, attempt: u32) {
        self.stats.retried += 1;
        self.outbox.push_back((body, attempt));
    }

    /// Every message still awaiting a confirm has an unknown fate: send it again. A lost
    /// connection is not the message's fault, so it does not count as an attempt; the
    /// reconnect deadline bounds how long this goes on.
    fn lost_connection(&mut self) {
        let pending: Vec<Pending> = self.pending.drain(..).collect();
        for p in pending {
            self.resend(p.body, p.attempt);
        }
        self.channel = None;
        if let Some(connection) = self.connection.take() {
            tokio::spawn(async move {
                let _ = connection.close(200, "reconnecting".into()).await;
            });
        }
    }

    async fn channel(&mut self) -> Result<Channel, PublishError> {
        if let Some(channel) = &self.channel {
            if channel.status().connected() {
                return Ok(channel.clone());
            }
            self.lost_connection();
        }
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.open().await {
                Ok((connection, channel)) => {
                    if self.connected_once {
                        self.stats.reconnects += 1;
                        tracing::info!("reconnected to the broker");
                    }
                    self.connected_once = true;
                    self.connection = Some(connection);
                    self.channel = Some(channel.clone());
                    return Ok(channel);
                }
                Err(Opened::Refused(source)) => {
                    return Err(PublishError::Topology {
                        exchange: self.options.topology.exchange.clone(),
                        queue: self.options.topology.queue.clone(),
                        source,
                    })
                }
                Err(Opened::Unreachable(source)) => {
                    let patience = if self.connected_once {
                        self.options.reconnect_for
                    } else {
                        self.options.connect_for
                    };
                    if started.elapsed() >= patience {
                        return Err(PublishError::Unreachable {
                            url: redact(&self.options.url),
                            secs: started.elapsed().as_secs(),
                            source,
                        });
                    }
                    tracing::warn!(error = %source, retry_in_ms = delay.as_millis() as u64, "broker unreachable");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), Opened> {
        let connection = connect(&self.options.url, &self.options.connection_name)
            .await
            .map_err(Opened::Unreachable)?;
        let channel = connection
            .create_channel()
            .await
            .map_err(Opened::Unreachable)?;
        if let Err(error) = self.options.topology.declare(&channel).await {
            let refused = crate::topology::is_refusal(&error);
            let _ = connection.close(200, "bye".into()).await;
            return Err(if refused {
                Opened::Refused(error)
            } else {
                Opened::Unreachable(error)
            });
        }
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(Opened::Unreachable)?;
        Ok((connection, channel))
    }
}

enum Opened {
    Unreachable(lapin::Error),
    Refused(lapin::Error),
}

fn properties() -> BasicProperties {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_timestamp(now)
}

/// How long a broker may take to accept a connection and finish the AMQP handshake. A broker
/// that takes the TCP connection but never answers (one out of file descriptors does that)
/// would otherwise hold the caller for good: lapin sets no deadline of its own. An attempt given
/// up on keeps its lapin I/O thread and socket until the broker answers or closes it (a broker
/// that frees descriptors takes the waiting connections then), so a broker silent for hours
/// costs a thread and a socket per attempt meanwhile.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects within [`CONNECT_TIMEOUT`], under a name the broker's management view shows.
pub async fn connect(url: &str, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the broker did not answer within {CONNECT_TIMEOUT:?}"),
        )
        .into()),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host:5672"), "amqp://host:5672");
    }
}
