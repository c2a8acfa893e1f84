//! The `simulator` binary as a user runs it: errors that say what is wrong, and a real publish
//! to RabbitMQ ending with the summary.

use std::process::{Command, Output};

fn simulator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .env_remove("AMQP_URL")
        .output()
        .expect("the simulator runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

const DEVICE: &str = "6f1c2d4e-8a8b-4c5e-9d0f-0123456789ab";

#[test]
fn an_unknown_option_is_refused_with_a_hint() {
    let out = simulator(&["publish", "--devise", DEVICE]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unexpected argument '--devise'"), "{err}");
    assert!(err.contains("--device"), "{err}");
}

#[test]
fn a_bad_csv_line_is_reported_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("meter.csv");
    std::fs::write(&path, "1.0\n1.5\n2,0\n").unwrap();
    let out = simulator(&[
        "publish",
        "--device",
        DEVICE,
        "--csv",
        path.to_str().unwrap(),
        "--amqp-url",
        "amqp://guest:guest@127.0.0.1:1/%2f",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("meter.csv:3: every line must have"), "{err}");
}

#[test]
fn an_unreachable_broker_is_named_without_its_password() {
    let out = simulator(&[
        "publish",
        "--device",
        DEVICE,
        "--count",
        "1",
        "--burst",
        "--amqp-url",
        "amqp://guest:secret@127.0.0.1:1/%2f",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the broker at amqp://guest:***@127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("secret"));
}

#[test]
fn no_devices_is_an_error() {
    let out = simulator(&["publish", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no devices"));
}

#[test]
fn generate_writes_a_csv_the_publisher_accepts() {
    let out = simulator(&["generate", "--profile", "office", "--count", "144"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows = simulator::csv_source::parse(&text).unwrap();
    assert_eq!(rows.len(), 144);
    assert!(rows.windows(2).all(|w| w[1].value_kwh >= w[0].value_kwh));
}

#[test]
fn the_shipped_sample_is_a_week_of_ten_minute_readings() {
    let rows = simulator::csv_source::read(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sensor.csv"
    )))
    .unwrap();
    assert_eq!(rows.len(), 7 * 24 * 6);
}

#[test]
fn publishing_ends_with_a_summary() {
    let prefix = format!("sim-cli-{}", uuid::Uuid::new_v4().simple());
    let out = simulator(&[
        "publish",
        "--device",
        DEVICE,
        "--device",
        "0b7e9c1a-4d2f-4e8b-9a6c-3f5d7e9b1c2a",
        "--profile",
        "factory",
        "--count",
        "50",
        "--rate",
        "2000",
        "--quiet",
        "--amqp-url",
        &amqp_url(),
        "--exchange",
        &format!("{prefix}.x"),
        "--queue",
        &format!("{prefix}.q"),
        "--dead-letter-exchange",
        &format!("{prefix}.dlx"),
        "--dead-letter-queue",
        &format!("{prefix}.dlq"),
    ]);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{summary}{}", stderr(&out));
    assert!(
        summary.starts_with("sent 100 · confirmed 100 · returned 0 · failed 0"),
        "{summary}"
    );
    delete(&prefix);
}

fn delete(prefix: &str) {
    for queue in ["q", "dlq"] {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_queue", &format!("{prefix}.{queue}")])
            .output();
    }
}
