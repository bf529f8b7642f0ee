//! The Bolt server is killed (SIGKILL) in the middle of a replay and started again: the Neo4j
//! sink spools while it is gone, drains when it is back, and the graph ends exact (one PriceBar
//! per closed minute per instrument, none twice).
//!
//! Its own test binary, so no other test is using the server while it is down; a guard starts
//! it again with `scripts/services` even when the test fails.

mod common;

use common::{password, GraphDb};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn services() {
    let ok = Command::new(root().join("scripts/services"))
        .current_dir(root())
        .status()
        .expect("scripts/services runs");
    assert!(ok.success(), "scripts/services brought the servers up");
}

/// Starts the Bolt server again however the test ends.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        services();
    }
}

fn server_pid() -> i32 {
    let f = root().join("build_data/services/arcadedb.pid");
    let pid = std::fs::read_to_string(&f)
        .unwrap_or_else(|_| panic!("{} (start the server with scripts/services)", f.display()));
    pid.trim().parse().unwrap()
}

#[test]
fn a_bolt_server_killed_mid_replay_loses_no_bar_and_duplicates_none() {
    let _guard = Restart;
    let name = format!("tickcore_fault_{}", std::process::id());
    let _db = GraphDb::create(&name);
    let data = std::env::temp_dir().join(format!("tickcore-neo4j-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let events = data.join("events.txt");
    let books = data.join("books.json");
    // About 5 s of paced replay: a generated day compressed 10,000 times.
    let child = Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .args([
            "run",
            "--feed",
            "gen:m7:800k:12",
            "--speed",
            "10000",
            "--sinks",
            "neo4j",
            "--neo4j",
            "bolt://127.0.0.1:7687",
            "--neo4j-user",
            "root",
            "--neo4j-db",
            &name,
            "--neo4j-batch",
            "200",
            "--neo4j-linger-ms",
            "20",
            "--sink-finish-s",
            "90",
            "--json",
            "--events",
            events.to_str().unwrap(),
            "--dump-books",
            books.to_str().unwrap(),
        ])
        .env("TICKCORE_DATA_DIR", &data)
        .env("TICKCORE_NEO4J_PASSWORD", password())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    let pid = server_pid();
    let killed = Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.unwrap().success(), "SIGKILL the Bolt server {pid}");
    std::thread::sleep(Duration::from_millis(1000));
    services();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sink = &s["sinks"][0];
    assert!(
        sink["retries"].as_u64().unwrap() > 0,
        "the outage was seen: {sink}"
    );
    assert_eq!(sink["spool_pending_bytes"], 0, "{sink}");
    let want = common::minute_bars_by_ticker(&events, &books);
    assert!(!want.is_empty());
    assert_eq!(common::price_bars_by_ticker(&name), want);
    let _ = std::fs::remove_dir_all(&data);
}
