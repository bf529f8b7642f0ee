//! `tickcore run --sinks neo4j` against a real Bolt server (ArcadeDB, started by
//! `scripts/services`), in a database of its own created and dropped through the server's HTTP
//! API. `TICKCORE_TEST_NEO4J_PASSWORD` is the root password (default `tickcore-test`).

use serde_json::Value;
use std::process::Command;

fn password() -> String {
    std::env::var("TICKCORE_TEST_NEO4J_PASSWORD").unwrap_or_else(|_| "tickcore-test".into())
}

fn http(path: &str, body: &str) -> Value {
    let o = Command::new("curl")
        .args(["-s", "-u", &format!("root:{}", password()), "-X", "POST"])
        .arg(format!("http://127.0.0.1:2480/api/v1/{path}"))
        .args(["-d", body])
        .output()
        .expect("curl runs");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "the Bolt server's HTTP API does not answer on 127.0.0.1:2480 (run scripts/services): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn cypher(db: &str, q: &str) -> Vec<Value> {
    let body = serde_json::json!({"language": "cypher", "command": q}).to_string();
    let v = http(&format!("command/{db}"), &body);
    v["result"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{q}: {v}"))
}

struct Db(String);

impl Drop for Db {
    fn drop(&mut self) {
        let _ = http(
            "server",
            &format!("{{\"command\":\"drop database {}\"}}", self.0),
        );
    }
}

#[test]
fn one_price_bar_per_closed_minute_per_instrument_and_a_replay_adds_none() {
    let name = format!("tickcore_test_{}", std::process::id());
    let db = Db(name.clone());
    http(
        "server",
        &format!("{{\"command\":\"create database {}\"}}", db.0),
    );
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
        assert_eq!(s["sinks"][0]["spool_pending_bytes"], 0, "{}", s["sinks"][0]);
        assert_eq!(
            s["sinks"][0]["last_error"],
            Value::Null,
            "{}",
            s["sinks"][0]
        );
    };
    run();
    // Closed 1-minute bars per instrument, from the events the consumer saw.
    let text = std::fs::read_to_string(&events).unwrap();
    let mut want = std::collections::BTreeMap::<u16, i64>::new();
    for l in text.lines().filter(|l| l.starts_with("B ")) {
        let f: Vec<&str> = l.split(' ').collect();
        if f[3] == "60" {
            *want.entry(f[2].parse().unwrap()).or_default() += 1;
        }
    }
    let books = std::fs::read_to_string(data.join("books.json")).unwrap();
    let ticker_of: std::collections::HashMap<u16, String> = books
        .lines()
        .map(|l| {
            let b: Value = serde_json::from_str(l).unwrap();
            (
                b["locate"].as_u64().unwrap() as u16,
                b["symbol"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let got = || {
        cypher(
            &name,
            "MATCH (s:Stock)-[:HAS_PRICE]->(b:PriceBar) RETURN s.ticker AS t, count(b) AS n",
        )
        .into_iter()
        .map(|r| {
            (
                r["t"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect::<std::collections::BTreeMap<_, _>>()
    };
    let want: std::collections::BTreeMap<String, i64> = want
        .into_iter()
        .map(|(l, n)| (ticker_of[&l].clone(), n))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got(), want);
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
    assert_eq!(got(), want);
    let _ = std::fs::remove_dir_all(&data);
}
