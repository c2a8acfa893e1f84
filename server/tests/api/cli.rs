use std::process::Command;

use uuid::Uuid;

/// Runs the real server binary with a fresh SQLite file and the given arguments.
fn server(db: &std::path::Path, args: &[&str], password: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--database-url")
        .arg(format!("sqlite://{}?mode=rwc", db.display()))
        .args(args);
    if let Some(password) = password {
        command.env("ADMIN_PASSWORD", password);
    }
    command.output().expect("server binary runs")
}

#[test]
fn create_admin_command_creates_an_admin_once_and_checks_the_password() {
    let db = std::env::temp_dir().join(format!("energy-cli-{}.db", Uuid::new_v4()));
    let ok = server(
        &db,
        &["create-admin", "--username", "ops"],
        Some("long-enough-pw"),
    );
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Created admin ops"));

    let again = server(
        &db,
        &["create-admin", "--username", "OPS"],
        Some("long-enough-pw"),
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already taken"),
        "{again:?}"
    );

    let short = server(&db, &["create-admin", "--username", "ops2"], Some("short"));
    assert!(!short.status.success());
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("at least 8 characters"),
        "{short:?}"
    );

    let migrate = server(&db, &["migrate"], None);
    assert!(migrate.status.success(), "{migrate:?}");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .env_clear()
        .args(["--database-url", "mysql://nope/db", "migrate"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL must start with"));
    let output = Command::new(env!("CARGO_BIN_EXE_server"))
        .env_clear()
        .args(["--site-addr", "not-an-address"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value"));
}
