//! `tickcore run --sinks neo4j` against a real Bolt server (ArcadeDB, started by
//! `scripts/services`), in a database of its own created and dropped through the server's HTTP
//! API. `TICKCORE_TEST_NEO4J_PASSWORD` is the root password (default `tickcore-test`).

mod common;

use common::{cypher, http, password, GraphDb};
use serde_json::Value;
use std::process::Command;

#[test]
fn one_price_bar_per_closed_minute_per_instrument_and_a_replay_adds_none() {
    let name = format!("tickcore_test_{}", std::process::id());
    let _db = GraphDb::create(&name);
    let data = std::env::temp_dir().join(format!("tickcore-neo4j-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let events = data.join("events.txt");
    let books_path = data.join("books.json");
    let args = [
        "run",
        "--feed",
        "gen:m7:200k:4",
        "--shards",
        "2",
        "--sinks",
        "neo4j",
        "--neo4j",
        "bolt://127.0.0.1:7687",
        "--neo4j-user",
        "root",
        "--neo4j-db",
        &name,
        "--json",
        "--events",
        events.to_str().unwrap(),
        "--dump-books",
        books_path.to_str().unwrap(),
    ];
    let run = || {
        let o = Command::new(env!("CARGO_BIN_EXE_tickcore"))
            .args(args)
            .env("TICKCORE_DATA_DIR", &data)
            .env("TICKCORE_NEO4J_PASSWORD", password())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s: Value = serde_json::from_slice(&o.stdout).unwrap();
        let sink = &s["sinks"][0];
        assert_eq!(sink["spool_pending_bytes"], 0, "{sink}");
        assert_eq!(sink["last_error"], Value::Null, "{sink}");
    };
    run();
    let want = common::minute_bars_by_ticker(&events, &books_path);
    assert!(!want.is_empty());
    assert_eq!(common::price_bars_by_ticker(&name), want);
    let books = std::fs::read_to_string(&books_path).unwrap();
    let stocks = cypher(&name, "MATCH (s:Stock) RETURN s.ticker AS t, s.trades AS n");
    for s in &stocks {
        let t = s["t"].as_str().unwrap();
        let line = books
            .lines()
            .find(|l| l.contains(&format!("\"symbol\":\"{t}\"")))
            .unwrap();
        let b: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            s["n"], b["trades"],
            "{t}: the day's summary is the final one"
        );
    }
    // A replay of the same feed: still one node per minute.
    run();
    assert_eq!(common::price_bars_by_ticker(&name), want);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_wrong_password_is_one_clear_message_and_the_run_goes_on_spooling() {
    // A user of its own: the server locks out a user after failed logins, and root is shared.
    let user = format!("tickcore_pw_{}", std::process::id());
    let create = serde_json::json!({"command": format!(
        "create user {{\"name\":\"{user}\",\"password\":\"right-password\",\"databases\":{{\"test\":\"admin\"}}}}"
    )});
    http("server", &create.to_string());
    let data = std::env::temp_dir().join(format!("tickcore-neo4j-pw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let o = Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .args([
            "run",
            "--feed",
            "gen:m7:50k:4",
            "--sinks",
            "neo4j",
            "--neo4j",
            "bolt://127.0.0.1:7687",
            "--neo4j-user",
            &user,
            "--sink-finish-s",
            "1",
        ])
        .env("TICKCORE_DATA_DIR", &data)
        .env("TICKCORE_NEO4J_PASSWORD", "not-the-password")
        .output()
        .unwrap();
    let drop_user = serde_json::json!({"command": format!("drop user {user}")});
    http("server", &drop_user.to_string());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("sink neo4j: last error"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("refused the login"), "{line}");
    assert!(
        !line.contains("not-the-password"),
        "never print the password: {line}"
    );
    assert!(text.contains("50,000") || text.contains("50000"), "{text}");
    let _ = std::fs::remove_dir_all(&data);
}
