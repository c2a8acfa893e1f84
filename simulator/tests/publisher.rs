//! The confirmed publisher against a real RabbitMQ.

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use simulator::{Publisher, PublisherOptions, Topology};

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn delete(topology: &Topology) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    topology.delete(&channel).await.unwrap();
    let _ = connection.close(200, "bye".into()).await;
}

#[tokio::test]
async fn confirmed_messages_are_counted_once_each() {
    let topology = Topology::with_prefix(&format!("sim-{}", uuid::Uuid::new_v4().simple()));
    let mut publisher = Publisher::connect(PublisherOptions::new(amqp_url(), topology.clone()))
        .await
        .unwrap();
    for i in 0..5000 {
        publisher
            .publish(format!("{{\"n\":{i}}}").into_bytes())
            .await
            .unwrap();
    }
    let stats = publisher.close().await.unwrap();
    assert_eq!(
        (stats.sent, stats.confirmed, stats.returned, stats.failed),
        (5000, 5000, 0, 0)
    );
    assert_eq!(stats.outstanding(), 0);
    delete(&topology).await;
}

#[tokio::test]
async fn unroutable_messages_are_returned_not_confirmed() {
    let topology = Topology::with_prefix(&format!("sim-{}", uuid::Uuid::new_v4().simple()));
    let mut publisher = Publisher::connect(PublisherOptions::new(amqp_url(), topology.clone()))
        .await
        .unwrap();
    // Someone deletes the queue behind the exchange: nothing routes any more.
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(
            topology.queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        publisher.publish(b"{}".to_vec()).await.unwrap();
    }
    let stats = publisher.close().await.unwrap();
    assert_eq!((stats.sent, stats.confirmed, stats.returned), (3, 0, 3));
    let _ = connection.close(200, "bye".into()).await;
    delete(&topology).await;
}

#[tokio::test]
async fn a_queue_declared_with_other_arguments_is_a_clear_error() {
    let topology = Topology::with_prefix(&format!("sim-{}", uuid::Uuid::new_v4().simple()));
    let first = Publisher::connect(PublisherOptions::new(amqp_url(), topology.clone()))
        .await
        .unwrap();
    first.close().await.unwrap();
    let other = Topology {
        delivery_limit: 3,
        ..topology.clone()
    };
    let error = match Publisher::connect(PublisherOptions::new(amqp_url(), other)).await {
        Ok(_) => panic!("the broker accepted other arguments"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.starts_with("the broker refused the topology"),
        "{error}"
    );
    assert!(
        error.contains("PRECONDITION_FAILED") || error.contains("inequivalent"),
        "{error}"
    );
    delete(&topology).await;
}
