//! The metering pipeline: meter message → validate → store → detect → notify.
//!
//! [`message`], [`peak`] and [`episodes`] are pure; [`store`] holds the transaction that stores
//! a batch and raises its alerts and episodes; [`pipeline`] glues them, counts, and hands what
//! was committed to the live path; [`amqp`] and [`local`] are the two queues that feed it;
//! [`demo`] is the built-in meter feed.

pub mod amqp;
pub mod dead_letters;
pub mod demo;
pub mod episodes;
pub mod local;
pub mod message;
pub mod metrics;
pub mod peak;
pub mod pipeline;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use simulator::{Publisher, PublisherOptions, Topology};
use tokio_util::sync::CancellationToken;

use self::amqp::AmqpSettings;
use self::demo::{DemoSettings, DemoSink};
use self::local::{LocalQueue, LocalReceiver};
use self::metrics::Metrics;
use self::pipeline::{Fault, Pipeline};
use crate::live::LiveSink;

/// The metering part of the configuration.
#[derive(Clone, Debug)]
pub struct MeteringSettings {
    /// RabbitMQ, or the in-process queue when `None`.
    pub amqp_url: Option<String>,
    pub topology: Topology,
    pub prefetch: u16,
    pub batch_size: usize,
    /// Readings outside this window are refused.
    pub time_bounds: message::TimeBounds,
    /// The built-in demo feed, when on.
    pub demo: Option<DemoSettings>,
    /// A failure to act out, in tests.
    pub fault: Option<Fault>,
    /// Intervals between readings longer than this are missing data in the history.
    pub history_gap: Duration,
}

enum Input {
    Amqp(AmqpSettings),
    Local(LocalReceiver),
}

/// The consumer (and the demo feed) of one server, ready to run.
pub struct MeterService {
    pipeline: Arc<Pipeline>,
    input: Input,
    local: Option<LocalQueue>,
    settings: MeteringSettings,
}

/// What the rest of the server sees of metering.
#[derive(Clone)]
pub struct Metering {
    pub metrics: Arc<Metrics>,
    /// The in-process queue, when there is no broker.
    pub local: Option<LocalQueue>,
}

impl MeterService {
    /// The server's metrics, labelled with the kind of queue these settings use.
    pub fn metrics_for(settings: &MeteringSettings) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::new(if settings.amqp_url.is_some() {
            "amqp"
        } else {
            "in-process"
        }));
        // The in-process queue is usable from the start; the broker once connected.
        metrics.set_connected(settings.amqp_url.is_none());
        metrics
    }

    pub fn new(
        db: DatabaseConnection,
        settings: MeteringSettings,
        metrics: Arc<Metrics>,
        live: LiveSink,
    ) -> (MeterService, Metering) {
        let pipeline = Arc::new(
            Pipeline::new(db, metrics.clone(), Some(live), settings.time_bounds)
                .with_fault(settings.fault)
                .with_history_gap(settings.history_gap),
        );
        let (input, local) = match &settings.amqp_url {
            Some(url) => (
                Input::Amqp(AmqpSettings {
                    url: url.clone(),
                    topology: settings.topology.clone(),
                    prefetch: settings.prefetch,
                    batch_size: settings.batch_size.max(1),
                    batch_wait: Duration::from_millis(5),
                    batch_idle: Duration::from_millis(1),
                }),
                None,
            ),
            None => {
                let (queue, receiver) = LocalQueue::new(10_000);
                (Input::Local(receiver), Some(queue))
            }
        };
        let handle = Metering {
            metrics,
            local: local.clone(),
        };
        (
            MeterService {
                pipeline,
                input,
                local,
                settings,
            },
            handle,
        )
    }

    /// Sends dead letters through this service's pipeline again, for the admin page.
    pub fn replay(&self) -> Arc<dyn app::dead_letters::ssr::Replay> {
        Arc::new(dead_letters::PipelineReplay::new(self.pipeline.clone()))
    }

    /// Consumes (and runs the demo feed) until `cancel` fires. An error means the consumer
    /// cannot go on (for example, the broker refuses the topology).
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let MeterService {
            pipeline,
            input,
            local,
            settings,
        } = self;
        // The feed connects in its own task: a slow broker must not hold up the consumer.
        let feed = settings.demo.map(|demo| {
            let db = pipeline.db().clone();
            let local = local.clone();
            let amqp = settings
                .amqp_url
                .clone()
                .map(|url| (url, settings.topology.clone()));
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let sink = match (local, amqp) {
                    (Some(queue), _) => DemoSink::Local(queue),
                    (None, Some((url, topology))) => {
                        let mut options = PublisherOptions::new(url, topology);
                        options.connection_name = "energy-server-demo-feed".into();
                        options.connect_for = Duration::from_secs(60);
                        options.reconnect_for = Duration::from_secs(3600);
                        match Publisher::connect(options).await {
                            Ok(p) => DemoSink::Amqp(Box::new(p)),
                            Err(error) => {
                                tracing::warn!(%error, "demo feed not started");
                                return;
                            }
                        }
                    }
                    (None, None) => return,
                };
                demo::run(db, sink, demo, cancel).await
            })
        });
        let result = match input {
            Input::Amqp(amqp) => amqp::run(amqp, pipeline, cancel.clone()).await,
            Input::Local(receiver) => {
                let Some(queue) = local else {
                    anyhow::bail!("the in-process queue has no sender");
                };
                local::run(
                    receiver,
                    queue,
                    pipeline,
                    settings.batch_size,
                    cancel.clone(),
                )
                .await
            }
        };
        cancel.cancel();
        if let Some(mut feed) = feed {
            // A feed stuck publishing to an unreachable broker must not hold up the stop.
            if tokio::time::timeout(Duration::from_secs(2), &mut feed)
                .await
                .is_err()
            {
                feed.abort();
            }
        }
        result
    }
}
