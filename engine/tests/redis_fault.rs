//! Redis restarts in the middle of a replay. This Redis keeps nothing on disk, so it comes back
//! empty: the sink must spool while it is gone, then write every instrument's state again, so
//! that at the end each hash still equals the instrument's final state.
//!
//! Its own test binary, so no other test is using the server while it is down; a guard starts
//! the server again (with the command in `../shared/services.md`) even when the test fails.

mod common;

use common::{redis_cli, RedisKeys};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn up() -> bool {
    redis_cli(&["ping"]) == "PONG"
}

fn start_redis() {
    let _ = std::fs::create_dir_all("/var/lib/redis");
    let _ = std::fs::create_dir_all("/var/log/redis");
    let _ = Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ])
        .status();
    let t = Instant::now();
    while !up() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts Redis again however the test ends.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        if !up() {
            start_redis();
        }
    }
}

#[test]
fn a_redis_restart_mid_replay_leaves_every_hash_at_its_final_state() {
    let _guard = Restart;
    assert!(
        up(),
        "Redis answers on 127.0.0.1:6379 (run scripts/services)"
    );
    let prefix = format!("tickcore-test-restart-{}:", std::process::id());
    let _keys = RedisKeys(prefix.clone());
    let data = std::env::temp_dir().join(format!("tickcore-redis-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let dump = data.join("books.json");
    // About 5 s of paced replay: a generated day compressed 10,000 times.
    let child = Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .args([
            "run",
            "--feed",
            "gen:n100:800k:9",
            "--speed",
            "10000",
            "--sinks",
            "redis",
            "--redis",
            "redis://127.0.0.1:6379",
            "--redis-prefix",
            &prefix,
            "--redis-batch",
            "500",
            "--redis-linger-ms",
            "10",
            "--sink-finish-s",
            "60",
            "--json",
            "--dump-books",
            dump.to_str().unwrap(),
            "--depth",
            "1",
        ])
        .env("TICKCORE_DATA_DIR", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Restart once the sink has written (the session is generated first).
    let t = Instant::now();
    while redis_cli(&["--scan", "--pattern", &format!("{prefix}*")]).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the sink never wrote"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    redis_cli(&["shutdown", "nosave"]);
    std::thread::sleep(Duration::from_millis(1500));
    start_redis();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sink = &s["sinks"][0];
    assert!(
        sink["retries"].as_u64().unwrap() > 0,
        "the outage was seen: {sink}"
    );
    assert_eq!(
        sink["restores"], 1,
        "the empty server was found once: {sink}"
    );
    assert_eq!(sink["spool_pending_bytes"], 0, "{sink}");
    let books = std::fs::read_to_string(&dump).unwrap();
    assert!(common::check_redis_hashes(&prefix, &books) > 50);
    let _ = std::fs::remove_dir_all(&data);
}
