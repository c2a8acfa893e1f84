//! The broker topology both sides declare, so that either the server or the simulator may start
//! first: a durable direct exchange, a quorum queue with a dead-letter exchange and an explicit
//! delivery limit, and the dead-letter queue behind it.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// Names and limits of the exchanges and queues. Every field is a flag and an environment
/// variable of both the server and the simulator.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Exchange meters publish readings to (durable, direct).
    #[arg(long, env = "AMQP_EXCHANGE", default_value = "energy.readings")]
    pub exchange: String,

    /// Routing key of readings.
    #[arg(long, env = "AMQP_ROUTING_KEY", default_value = "reading")]
    pub routing_key: String,

    /// Queue the server consumes (durable quorum queue).
    #[arg(long, env = "AMQP_QUEUE", default_value = "energy.readings")]
    pub queue: String,

    /// Exchange that takes messages which can never be stored (durable, fanout).
    #[arg(
        long,
        env = "AMQP_DEAD_LETTER_EXCHANGE",
        default_value = "energy.readings.dead-letter"
    )]
    pub dead_letter_exchange: String,

    /// Queue that keeps dead-lettered messages for inspection (durable quorum queue).
    #[arg(
        long,
        env = "AMQP_DEAD_LETTER_QUEUE",
        default_value = "energy.readings.dead-letter"
    )]
    pub dead_letter_queue: String,

    /// Deliveries after which the broker dead-letters a message that keeps failing (for example
    /// one that crashes its consumer every time).
    #[arg(long, env = "AMQP_DELIVERY_LIMIT", default_value_t = 20)]
    pub delivery_limit: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            exchange: "energy.readings".into(),
            routing_key: "reading".into(),
            queue: "energy.readings".into(),
            dead_letter_exchange: "energy.readings.dead-letter".into(),
            dead_letter_queue: "energy.readings.dead-letter".into(),
            delivery_limit: 20,
        }
    }
}

/// Header that carries the reason code of a dead-lettered message.
pub const REASON_HEADER: &str = "x-rejection-reason";
/// Header that carries the human-readable reason of a dead-lettered message.
pub const DETAIL_HEADER: &str = "x-rejection-detail";

impl Topology {
    /// A topology whose every name starts with `prefix` (tests run side by side with their own).
    pub fn with_prefix(prefix: &str) -> Self {
        Topology {
            exchange: format!("{prefix}.readings"),
            routing_key: "reading".into(),
            queue: format!("{prefix}.readings"),
            dead_letter_exchange: format!("{prefix}.dead-letter"),
            dead_letter_queue: format!("{prefix}.dead-letter"),
            delivery_limit: 20,
        }
    }

    /// Declares everything (idempotent). Fails when a queue exists with other arguments, with a
    /// message that says which one.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.dead_letter_exchange.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await?;

        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), long_string("quorum"));
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                dead_args,
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue.as_str().into(),
                self.dead_letter_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions::durable(),
                self.queue_arguments(),
            )
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    /// Deletes both queues (and what is in them) and both exchanges: teardown of a test's or
    /// a trial's own topology.
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for queue in [&self.queue, &self.dead_letter_queue] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [&self.exchange, &self.dead_letter_exchange] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    fn queue_arguments(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        args
    }
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// Whether the broker refused a declaration: a queue or exchange exists with other arguments
/// (PRECONDITION_FAILED), or the user may not declare it (ACCESS_REFUSED). Retrying cannot help.
pub fn is_refusal(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => matches!(
            e.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED | AMQPSoftError::ACCESSREFUSED)
        ),
        _ => false,
    }
}

/// The text of a string header, if the message has it.
pub fn header_text(properties: &lapin::BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
