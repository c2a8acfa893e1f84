//! RabbitMQ restarted under a running pipeline. A test binary of its own: restarting the broker
//! would disturb other tests, and cargo runs test binaries one after another.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "api/meter_support.rs"]
mod meter_support;

use std::process::Command;
use std::time::Duration;

use helpers::{spawn_app_with, Backend};
use meter_support::*;
use simulator::MeterMessage;

fn rabbitmqctl(args: &[&str]) {
    let status = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .expect("rabbitmqctl runs (the broker must be local)");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_survive_a_broker_restart() {
    let topology = topology();
    let app = {
        let topology = topology.clone();
        spawn_app_with(Backend::Postgres, move |c| {
            c.amqp_url = Some(amqp_url());
            c.topology = topology;
        })
        .await
    };
    let max = 5.0;
    let devices = create_devices(&app.db, 10, max).await;
    let (messages, expected) = feed(&devices, 1_200, max);
    let publisher = {
        let topology = topology.clone();
        // Paced, so the restart lands mid-stream for publisher and consumer alike.
        let bodies: Vec<Vec<u8>> = messages.iter().map(MeterMessage::to_json).collect();
        tokio::spawn(async move {
            let mut options = simulator::PublisherOptions::new(amqp_url(), topology);
            options.reconnect_for = Duration::from_secs(120);
            let mut publisher = simulator::Publisher::connect(options).await.unwrap();
            for chunk in bodies.chunks(500) {
                for body in chunk {
                    publisher.publish(body.clone()).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            publisher.close().await.unwrap()
        })
    };
    wait_for_rows(&app.db, "readings", 2_500, Duration::from_secs(60)).await;
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);

    let stats = publisher.await.unwrap();
    wait_for_rows(&app.db, "readings", 12_000, Duration::from_secs(180)).await;
    let (lost, duplicated) = lost_and_duplicated(&app.db, &messages).await;
    let reconnects = app.metering.metrics.reconnects.get();
    println!(
        "broker restart: 12000 readings, lost = {lost}, duplicated = {duplicated}, \
         publisher retried = {}, publisher reconnects = {}, consumer reconnects = {reconnects}",
        stats.retried, stats.reconnects
    );
    assert_eq!(stats.confirmed, 12_000, "{stats:?}");
    assert_eq!((lost, duplicated), (0, 0));
    assert!(reconnects >= 1, "the consumer reconnected");
    assert!(stats.reconnects >= 1, "the publisher reconnected");
    assert_eq!(stored_alerts(&app.db).await, expected);

    // The new channel has its prefetch again (lapin's own recovery would not re-apply it).
    let consumers = Command::new("rabbitmqctl")
        .args(["-q", "list_consumers", "queue_name", "prefetch_count"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&consumers.stdout);
    let prefetch: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{}\t", topology.queue)))
        .collect();
    assert_eq!(prefetch, ["2000"], "{listing}");

    let body = get_text(&format!("{}/healthz", app.address)).await;
    assert!(body.contains("\"queue\":\"ok\""), "{body}");
    drop_topology(&topology).await;
}
