//! The in-process queue of the embedded default (no `AMQP_URL`): the same validate, store and
//! detect step, with messages that can never be stored kept in the `dead_letters` table. It
//! lives in memory: messages still queued when the process stops are gone, which is why a real
//! deployment uses RabbitMQ.

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dead_letters;
use super::pipeline::{Pipeline, Verdict};

/// The sending side of the in-process queue (cheap to clone).
#[derive(Clone)]
pub struct LocalQueue {
    tx: mpsc::Sender<Vec<u8>>,
}

/// The consuming side.
pub struct LocalReceiver {
    rx: mpsc::Receiver<Vec<u8>>,
}

/// The consumer has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the in-process queue is closed")]
pub struct Closed;

impl LocalQueue {
    /// A queue holding at most `capacity` messages; senders wait when it is full.
    pub fn new(capacity: usize) -> (LocalQueue, LocalReceiver) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (LocalQueue { tx }, LocalReceiver { rx })
    }

    /// Enqueues one message body, waiting while the queue is full.
    pub async fn send(&self, body: Vec<u8>) -> Result<(), Closed> {
        self.tx.send(body).await.map_err(|_| Closed)
    }

    /// Messages waiting.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Consumes until `cancel` fires or every sender is gone.
pub async fn run(
    mut receiver: LocalReceiver,
    queue: LocalQueue,
    pipeline: Arc<Pipeline>,
    batch_size: usize,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = pipeline.metrics().clone();
    metrics.set_connected(true);
    loop {
        let first = tokio::select! {
            m = receiver.rx.recv() => m,
            _ = cancel.cancelled() => return Ok(()),
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut batch = vec![first];
        while batch.len() < batch_size {
            match receiver.rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        metrics.lag_messages.set(queue.depth() as i64);
        let bodies: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let Some(verdicts) = pipeline
            .process_until_done(&bodies, cancel.cancelled())
            .await
        else {
            return Ok(());
        };
        for (body, verdict) in batch.iter().zip(verdicts) {
            if let Verdict::Rejected(rejection) = verdict {
                tracing::warn!(reason = rejection.code(), detail = %rejection, "message rejected");
                let kept = dead_letters::keep_until_done(
                    pipeline.db(),
                    rejection.code(),
                    &rejection.to_string(),
                    body,
                    cancel.cancelled(),
                )
                .await;
                if !kept {
                    return Ok(());
                }
            }
        }
    }
}
