//! Helpers shared by the integration tests that read what `tickcore run --events` wrote.
#![allow(dead_code)] // each test binary uses some of these helpers

/// Trades and the sum of their match numbers, from an event file (`T` lines; the match number
/// is the fifth field).
pub fn trades_in_events(events: &std::path::Path) -> (i64, i64) {
    let text = std::fs::read_to_string(events).unwrap();
    let m: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with('T'))
        .map(|l| l.split(' ').nth(4).unwrap().parse().unwrap())
        .collect();
    (m.len() as i64, m.iter().sum())
}

/// Runs `redis-cli` with `args`; its output, trimmed.
pub fn redis_cli(args: &[&str]) -> String {
    let o = std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A Redis hash as field -> value.
pub fn redis_hash(key: &str) -> std::collections::HashMap<String, String> {
    let out = redis_cli(&["hgetall", key]);
    let v: Vec<&str> = out.lines().collect();
    v.chunks(2)
        .map(|c| (c[0].to_string(), c.get(1).unwrap_or(&"").to_string()))
        .collect()
}

/// Deletes every Redis key under its prefix when dropped.
pub struct RedisKeys(pub String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let keys = redis_cli(&["--scan", "--pattern", &format!("{}*", self.0)]);
        for k in keys.lines() {
            redis_cli(&["del", k]);
        }
    }
}

/// Checks each instrument's Redis hash under `prefix` against the final books that
/// `--dump-books PATH --depth 1` wrote; returns how many instruments were checked.
pub fn check_redis_hashes(prefix: &str, books: &str) -> usize {
    let mut checked = 0;
    for line in books.lines() {
        let b: serde_json::Value = serde_json::from_str(line).unwrap();
        let sym = b["symbol"].as_str().unwrap();
        if b["trades"] == 0 && b["bids"].as_array().unwrap().is_empty() {
            continue;
        }
        let h = redis_hash(&format!("{prefix}{sym}"));
        assert_eq!(h["trades"], b["trades"].to_string(), "{sym}");
        assert_eq!(h["volume"], b["volume"].to_string(), "{sym}");
        assert_eq!(h["vwap"], b["vwap"].as_str().unwrap_or(""), "{sym}");
        if let Some(top) = b["bids"].as_array().unwrap().first() {
            assert_eq!(h["bid_px"], top["px"].as_str().unwrap(), "{sym}");
            assert_eq!(h["bid_qty"], top["qty"].to_string(), "{sym}");
        }
        if let Some(top) = b["asks"].as_array().unwrap().first() {
            assert_eq!(h["ask_px"], top["px"].as_str().unwrap(), "{sym}");
        }
        checked += 1;
    }
    checked
}

/// The last closed bar of each (locate, interval) in an event file (`B shard locate interval
/// start open high low close volume trades`), as `[start, open, high, low, close, volume,
/// trades]`.
pub fn last_bars(events: &std::path::Path) -> std::collections::BTreeMap<(u16, u32), Vec<u64>> {
    let text = std::fs::read_to_string(events).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with("B ")) {
        let f: Vec<u64> = l.split(' ').skip(2).map(|x| x.parse().unwrap()).collect();
        out.insert((f[0] as u16, f[1] as u32), f[2..].to_vec());
    }
    out
}

/// A hash's `bar_1s`/`bar_1m` field (`start open high low close volume vwap trades`, prices as
/// four-decimal strings) in the form [`last_bars`] gives (vwap left out).
pub fn parse_bar_field(v: &str) -> Vec<u64> {
    let f: Vec<u64> = v
        .split(' ')
        .map(|x| x.replace('.', "").parse().unwrap())
        .collect();
    vec![f[0], f[1], f[2], f[3], f[4], f[5], f[7]]
}

/// The Bolt server's root password (`TICKCORE_TEST_NEO4J_PASSWORD`, default `tickcore-test`).
pub fn password() -> String {
    std::env::var("TICKCORE_TEST_NEO4J_PASSWORD").unwrap_or_else(|_| "tickcore-test".into())
}

/// POSTs `body` to the Bolt server's HTTP API (`/api/v1/{path}`) as root.
pub fn http(path: &str, body: &str) -> serde_json::Value {
    let o = std::process::Command::new("curl")
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

/// Runs a Cypher query in `db` through the HTTP API; its result rows.
pub fn cypher(db: &str, q: &str) -> Vec<serde_json::Value> {
    let body = serde_json::json!({"language": "cypher", "command": q}).to_string();
    let v = http(&format!("command/{db}"), &body);
    v["result"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{q}: {v}"))
}

/// A database of the Bolt server for one test: created now, dropped when this drops.
pub struct GraphDb(pub String);

impl GraphDb {
    /// Creates `name`.
    pub fn create(name: &str) -> GraphDb {
        http(
            "server",
            &format!("{{\"command\":\"create database {name}\"}}"),
        );
        GraphDb(name.to_string())
    }
}

impl Drop for GraphDb {
    fn drop(&mut self) {
        let _ = http(
            "server",
            &format!("{{\"command\":\"drop database {}\"}}", self.0),
        );
    }
}

/// Closed 1-minute bars per ticker, from an event file and the books `--dump-books` wrote.
pub fn minute_bars_by_ticker(
    events: &std::path::Path,
    books: &std::path::Path,
) -> std::collections::BTreeMap<String, i64> {
    let text = std::fs::read_to_string(events).unwrap();
    let mut per_locate = std::collections::BTreeMap::<u16, i64>::new();
    for l in text.lines().filter(|l| l.starts_with("B ")) {
        let f: Vec<&str> = l.split(' ').collect();
        if f[3] == "60" {
            *per_locate.entry(f[2].parse().unwrap()).or_default() += 1;
        }
    }
    let books = std::fs::read_to_string(books).unwrap();
    let ticker_of: std::collections::HashMap<u16, String> = books
        .lines()
        .map(|l| {
            let b: serde_json::Value = serde_json::from_str(l).unwrap();
            let locate = b["locate"].as_u64().unwrap() as u16;
            (locate, b["symbol"].as_str().unwrap().to_string())
        })
        .collect();
    per_locate
        .into_iter()
        .map(|(l, n)| (ticker_of[&l].clone(), n))
        .collect()
}

/// PriceBar nodes per ticker in the graph database `db`.
pub fn price_bars_by_ticker(db: &str) -> std::collections::BTreeMap<String, i64> {
    let q = "MATCH (s:Stock)-[:HAS_PRICE]->(b:PriceBar) RETURN s.ticker AS t, count(b) AS n";
    cypher(db, q)
        .into_iter()
        .map(|r| {
            (
                r["t"].as_str().unwrap().to_string(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// `psql -Atc SQL` against database `db` of the local PostgreSQL; its trimmed output.
pub fn psql(db: &str, sql: &str) -> String {
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let o = std::process::Command::new("psql")
        .args([&url, "-Atc", sql])
        .output()
        .expect("psql runs");
    assert!(
        o.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A PostgreSQL database of one test's own, created now and dropped when it goes.
pub struct TestDb(pub String);

impl TestDb {
    /// `tickcore_<tag>_<pid>`, new and empty.
    pub fn new(tag: &str) -> TestDb {
        let db = format!("tickcore_{tag}_{}", std::process::id());
        psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
        psql("postgres", &format!("CREATE DATABASE {db}"));
        TestDb(db)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }

    /// A count or sum the database answers.
    pub fn number(&self, sql: &str) -> i64 {
        psql(&self.0, sql).parse().expect("a number")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                "postgres://postgres@127.0.0.1:5432/postgres",
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
            ])
            .output();
    }
}

/// Marks of the checkpoint sets under `data/checkpoints` with every one of `shards` files.
pub fn whole_checkpoints(data: &std::path::Path, shards: usize) -> Vec<String> {
    let names: Vec<String> = std::fs::read_dir(data.join("checkpoints"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tkc"))
                .collect()
        })
        .unwrap_or_default();
    let mut marks: Vec<String> = names.iter().map(|n| n[5..21].to_string()).collect();
    marks.sort();
    marks.dedup();
    marks.retain(|m| names.iter().filter(|n| n.contains(m.as_str())).count() == shards);
    marks
}

/// One past the newest sequence number a `--capture` file holds in whole records (1 when it
/// holds none): a recovery replays from it what is past its checkpoint's mark.
pub fn capture_reach(cap: &std::path::Path) -> u64 {
    tickcore::live::replay::PcapSource::open(cap).map_or(1, |c| {
        c.datagrams()
            .filter_map(shards::mold::claimed)
            .map(|(_, end)| end)
            .max()
            .unwrap_or(1)
    })
}

/// Whether a recovery under `data` can start from a checkpoint: a whole set of `shards` files
/// is on disk at or before every one of `sinks`' durable marks (a set past a sink's mark is
/// rightly passed over, and each shard keeps only its newest three).
pub fn recoverable(data: &std::path::Path, shards: usize, sinks: &[&str]) -> bool {
    let bound = sinks
        .iter()
        .map(|s| durable_mark(data, s))
        .try_fold(u64::MAX, |low, m| Some(low.min(m?)));
    bound.is_some_and(|b| {
        whole_checkpoints(data, shards)
            .iter()
            .any(|m| m.parse::<u64>().is_ok_and(|m| m <= b))
    })
}

/// The PostgreSQL server the sink tests use: `TICKCORE_TEST_PG`, or this machine's.
pub fn pg_server() -> String {
    std::env::var("TICKCORE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A door in front of PostgreSQL (at `TICKCORE_TEST_PG`'s host and port, 127.0.0.1:5432 by
/// default): shut, it takes each connection and hangs up at once (the database looks down);
/// open, it carries each one through to the server; closing it again also cuts the
/// connections it carried.
pub struct Door {
    /// The port to connect to instead of the server's.
    pub port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    carried: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Door {
    /// A door, shut.
    pub fn shut() -> Door {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let carried = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_open, keep) = (
            std::sync::Arc::clone(&open),
            std::sync::Arc::clone(&carried),
        );
        let target = pg_server().rsplit('@').next().unwrap().to_string();
        std::thread::spawn(move || {
            for c in l.incoming().map_while(Result::ok) {
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                if let Ok(s) = std::net::TcpStream::connect(&target) {
                    keep.lock().unwrap().push(c.try_clone().unwrap());
                    splice(c, s);
                }
            }
        });
        Door {
            port,
            open,
            carried,
        }
    }

    /// Lets connections through from now on.
    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Refuses connections from now on, and cuts those it carried.
    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.carried.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn splice(a: std::net::TcpStream, b: std::net::TcpStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let pipe = |from: std::net::TcpStream, to: std::net::TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut &from, &mut &to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        })
    };
    pipe(a, b);
    pipe(b2, a2);
}

/// The durable mark `data/spool/<sink>/durable-mark` holds, if any.
pub fn durable_mark(data: &std::path::Path, sink: &str) -> Option<u64> {
    std::fs::read_to_string(data.join(format!("spool/{sink}/durable-mark")))
        .ok()
        .and_then(|m| m.trim().parse::<u64>().ok())
}
