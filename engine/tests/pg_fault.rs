//! PostgreSQL stops in the middle of a replay and comes back: the PostgreSQL sink spools while
//! it is gone, drains when it is back, and the end state is exact (no row lost, none twice).
//! Then the engine itself is killed (SIGKILL) mid-run, and a second run on the same feed still
//! ends exact.
//!
//! Its own test binary, so no other test is using the server while it is down; a guard starts
//! the server again even when the test fails.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn server() -> String {
    "postgres://postgres@127.0.0.1:5432".into()
}

fn psql(db: &str, sql: &str) -> Option<String> {
    let o = Command::new("psql")
        .args([&format!("{}/{db}", server()), "-Atc", sql])
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn pg_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster (../shared/services.md)")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("one cluster");
    let ok = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            action,
            "-m",
            "fast",
        ])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(ok.success() || action == "start", "pg_ctlcluster {action}");
}

/// Starts the server again however the test ends, and waits until it answers.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        if psql("postgres", "SELECT 1").is_none() {
            let v = std::fs::read_dir("/etc/postgresql")
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            let _ = Command::new("pg_ctlcluster")
                .args([
                    "--skip-systemctl-redirect",
                    &v.file_name().to_string_lossy(),
                    "main",
                    "start",
                ])
                .status();
        }
        let t = Instant::now();
        while psql("postgres", "SELECT 1").is_none() && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn a_database_restart_and_an_engine_kill_lose_nothing_and_duplicate_nothing() {
    let _guard = Restart;
    let db = format!("tickcore_fault_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}")).unwrap();
    psql("postgres", &format!("CREATE DATABASE {db}")).unwrap();
    let data = std::env::temp_dir().join(format!("tickcore-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let events = data.join("events.txt");
    let url = format!("{}/{db}", server());
    // About 6 s of paced replay: a generated day compressed 10,000 times.
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--feed",
            "gen:m7:1M:8",
            "--speed",
            "10000",
            "--sinks",
            "pg",
            "--pg",
            &url,
            "--session-date",
            "2026-12-02",
            "--pg-batch",
            "500",
            "--pg-linger-ms",
            "10",
            "--sink-finish-s",
            "60",
            "--json",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_tickcore"))
            .args(&args)
            .env("TICKCORE_DATA_DIR", &data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = run(&["--events", events.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    pg_ctl("stop");
    std::thread::sleep(Duration::from_millis(2000));
    pg_ctl("start");
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sink = &s["sinks"][0];
    assert!(
        sink["retries"].as_u64().unwrap() > 0,
        "the outage was seen: {sink}"
    );
    assert!(
        sink["spool_drained"].as_u64().unwrap() > 0,
        "rows went through the spool: {sink}"
    );
    assert_eq!(sink["spool_pending_bytes"], 0, "{sink}");
    let (n, sum) = common::trades_in_events(&events);
    let count = |sql: &str| psql(&db, sql).unwrap().parse::<i64>().unwrap();
    assert_eq!(count("SELECT count(*) FROM tickcore.trades"), n);
    assert_eq!(count("SELECT sum(match_number) FROM tickcore.trades"), sum);
    let bars = s["consumer"]["bars"].as_i64().unwrap();
    assert_eq!(count("SELECT count(*) FROM tickcore.bars"), bars);

    // SIGKILL the engine mid-run, then run the same feed again: still exact.
    psql(&db, "TRUNCATE tickcore.trades, tickcore.bars").unwrap();
    let mut victim = run(&[]);
    std::thread::sleep(Duration::from_millis(2500));
    victim.kill().unwrap();
    let _ = victim.wait();
    let o = run(&[]).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(count("SELECT count(*) FROM tickcore.trades"), n);
    assert_eq!(count("SELECT sum(match_number) FROM tickcore.trades"), sum);
    assert_eq!(count("SELECT count(*) FROM tickcore.bars"), bars);
    let _ = psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    let _ = std::fs::remove_dir_all(&data);
}
