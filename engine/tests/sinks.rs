//! `tickcore run --sinks pg` and `tickcore drain` against the real PostgreSQL on this machine
//! (127.0.0.1:5432, trust auth), each test in a database and a data directory of its own.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn psql(db: &str, sql: &str) -> String {
    let url = format!("{}/{db}", common::pg_server());
    let o = Command::new("psql")
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

/// A database and a data directory for one test; both removed when it ends.
struct Fixture {
    db: String,
    data: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        let db = format!("tickcore_sinks_{tag}_{}", std::process::id());
        psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
        psql("postgres", &format!("CREATE DATABASE {db}"));
        let data =
            std::env::temp_dir().join(format!("tickcore-sinks-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        Fixture { db, data }
    }
    fn url(&self) -> String {
        format!("{}/{}", common::pg_server(), self.db)
    }
    fn tickcore(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tickcore"))
            .args(args)
            .env("TICKCORE_DATA_DIR", &self.data)
            .env_remove("TICKCORE_PG")
            .output()
            .expect("binary runs")
    }
    fn ok(&self, args: &[&str]) -> Output {
        let o = self.tickcore(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }
    fn count(&self, sql: &str) -> i64 {
        psql(&self.db, sql).parse().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &format!("{}/postgres", common::pg_server()),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db),
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

#[test]
fn trades_and_bars_land_exactly_once_even_when_the_feed_is_replayed() {
    let f = Fixture::new("exact");
    std::fs::create_dir_all(&f.data).unwrap();
    let events = f.data.join("events.txt");
    let url = f.url();
    let args = [
        "run",
        "--feed",
        "gen:n100:300k:5",
        "--shards",
        "2",
        "--sinks",
        "pg",
        "--pg",
        &url,
        "--session-date",
        "2026-12-02",
        "--pg-batch",
        "2000",
        "--json",
        "--events",
        events.to_str().unwrap(),
    ];
    let s = json(&f.ok(&args));
    let (n, sum) = common::trades_in_events(&events);
    assert!(n > 1000);
    let sink = &s["sinks"][0];
    assert_eq!(sink["spool_pending_bytes"], 0, "{sink}");
    assert_eq!(f.count("SELECT count(*) FROM tickcore.trades"), n);
    assert_eq!(
        f.count("SELECT sum(match_number) FROM tickcore.trades"),
        sum
    );
    let bars = s["consumer"]["bars"].as_i64().unwrap();
    assert!(bars > 0);
    assert_eq!(f.count("SELECT count(*) FROM tickcore.bars"), bars);
    assert_eq!(
        f.count("SELECT count(*) FROM tickcore.trades WHERE symbol = ''"),
        0,
        "every trade named"
    );
    // The same feed again: no new row.
    let s = json(&f.ok(&args));
    assert_eq!(s["sinks"][0]["rows_new"], 0, "{}", s["sinks"][0]);
    assert_eq!(f.count("SELECT count(*) FROM tickcore.trades"), n);
    assert_eq!(f.count("SELECT count(*) FROM tickcore.bars"), bars);
}

#[test]
fn a_database_url_alone_turns_its_sink_on() {
    let f = Fixture::new("url_alone");
    std::fs::create_dir_all(&f.data).unwrap();
    let url = f.url();
    let args = [
        "run",
        "--feed",
        "gen:f2:40k:3",
        "--pg",
        &url,
        "--session-date",
        "2026-12-02",
        "--json",
    ];
    let s = json(&f.ok(&args));
    assert_eq!(s["sinks"][0]["name"], "pg", "{}", s["sinks"]);
    let trades = s["consumer"]["trades"].as_i64().unwrap();
    assert!(trades > 0);
    assert_eq!(f.count("SELECT count(*) FROM tickcore.trades"), trades);
}

#[test]
fn an_unreachable_database_spools_and_drain_loads_it_later() {
    let f = Fixture::new("spool");
    let dead = "postgres://postgres@127.0.0.1:1/nowhere";
    let o = f.ok(&[
        "run",
        "--feed",
        "gen:m7:200k:2",
        "--sinks",
        "pg",
        "--pg",
        dead,
        "--session-date",
        "2026-12-02",
        "--sink-finish-s",
        "1",
        "--json",
    ]);
    let s = json(&o);
    let sink = &s["sinks"][0];
    assert!(sink["spool_pending_bytes"].as_u64().unwrap() > 0, "{sink}");
    assert!(
        sink["last_error"].as_str().unwrap().contains("connect"),
        "{sink}"
    );
    assert!(sink["retries"].as_u64().unwrap() > 0);
    let trades = s["consumer"]["trades"].as_i64().unwrap();
    // No URL at all: the sink spools only, and says nothing is wrong.
    let o = f.ok(&[
        "run",
        "--feed",
        "gen:m7:200k:2",
        "--sinks",
        "pg",
        "--session-date",
        "2026-12-02",
        "--json",
    ]);
    assert_eq!(json(&o)["sinks"][0]["retries"], 0);
    // Drain both runs' rows (the same feed twice: the second adds nothing).
    let url = f.url();
    let o = f.ok(&["drain", "--pg", &url, "--session-date", "2026-12-02"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("drained"));
    assert_eq!(f.count("SELECT count(*) FROM tickcore.trades"), trades);
    // Nothing is left: a second drain has nothing to do and succeeds.
    f.ok(&["drain", "--pg", &url, "--session-date", "2026-12-02"]);
    // A drain into a dead database fails clearly and keeps the spool.
    f.ok(&[
        "run",
        "--feed",
        "gen:m7:50k:3",
        "--sinks",
        "pg",
        "--session-date",
        "2026-12-02",
    ]);
    let o = f.tickcore(&[
        "drain",
        "--pg",
        dead,
        "--session-date",
        "2026-12-02",
        "--sink-finish-s",
        "1",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("still spooled"));
}

#[test]
fn bad_sink_flags_are_one_clear_error() {
    let f = Fixture::new("flags");
    let o = f.tickcore(&["run", "--sinks", "cassandra"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a sink"));
    let o = f.tickcore(&["drain"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pg"));
    let o = f.tickcore(&["run", "--sinks", "pg", "--pg-batch", "0"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("pg_batch (flag): 0 is outside"));
}

use common::{redis_cli, RedisKeys as Keys};

#[test]
fn redis_holds_each_instruments_final_state_and_its_trades_once() {
    let f = Fixture::new("redis");
    std::fs::create_dir_all(&f.data).unwrap();
    let prefix = format!("tickcore-test-{}:", std::process::id());
    let _keys = Keys(prefix.clone());
    let dump = f.data.join("books.json");
    let events = f.data.join("events.txt");
    let args = [
        "run",
        "--feed",
        "gen:n100:200k:6",
        "--shards",
        "2",
        "--sinks",
        "redis",
        "--redis",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        &prefix,
        "--redis-batch",
        "1000",
        "--redis-stream-cap",
        &STREAM_CAP.to_string(),
        "--json",
        "--dump-books",
        dump.to_str().unwrap(),
        "--depth",
        "1",
        "--events",
        events.to_str().unwrap(),
    ];
    let s = json(&f.ok(&args));
    assert_eq!(s["sinks"][0]["spool_pending_bytes"], 0, "{}", s["sinks"][0]);
    let books = std::fs::read_to_string(&dump).unwrap();
    let checked = common::check_redis_hashes(&prefix, &books);
    let mut stream_lens = Vec::new();
    let mut bars_checked = 0;
    let last = common::last_bars(&events);
    // Every trade event, printable or not (the books count printable ones only).
    let mut trade_events = std::collections::BTreeMap::<u16, u64>::new();
    for l in std::fs::read_to_string(&events).unwrap().lines() {
        if let Some(rest) = l.strip_prefix("T ") {
            let locate = rest.split(' ').nth(1).unwrap().parse().unwrap();
            *trade_events.entry(locate).or_default() += 1;
        }
    }
    assert!(trade_events.values().sum::<u64>() > 1000);
    for line in books.lines() {
        let b: Value = serde_json::from_str(line).unwrap();
        let sym = b["symbol"].as_str().unwrap();
        if b["trades"] == 0 && b["bids"].as_array().unwrap().is_empty() {
            continue;
        }
        let len = redis_cli(&["xlen", &format!("{prefix}trades:{sym}")]);
        // Every trade is an entry, until the cap trims (`MAXLEN ~` trims whole nodes only,
        // so a trimmed stream keeps at least the cap).
        let locate = b["locate"].as_u64().unwrap() as u16;
        let trades = trade_events.get(&locate).copied().unwrap_or(0);
        let n = len.parse::<u64>().unwrap();
        assert!(
            n == trades || (trades > STREAM_CAP && (STREAM_CAP..=trades).contains(&n)),
            "{sym}: {n} stream entries for {trades} trades"
        );
        stream_lens.push(len);
        let h = common::redis_hash(&format!("{prefix}{sym}"));
        for (interval, field) in [(1, "bar_1s"), (60, "bar_1m")] {
            if let Some(want) = last.get(&(locate, interval)) {
                assert_eq!(&common::parse_bar_field(&h[field]), want, "{sym} {field}");
                bars_checked += 1;
            }
        }
    }
    assert!(bars_checked > 50, "{bars_checked} bars checked");
    assert!(checked > 50, "{checked} instruments checked");
    // The same feed again: hashes unchanged, no stream grows.
    f.ok(&args);
    let again: Vec<String> = books
        .lines()
        .filter_map(|l| {
            let b: Value = serde_json::from_str(l).unwrap();
            let sym = b["symbol"].as_str().unwrap().to_string();
            (b["trades"] != 0 || !b["bids"].as_array().unwrap().is_empty())
                .then(|| redis_cli(&["xlen", &format!("{prefix}trades:{sym}")]))
        })
        .collect();
    assert_eq!(again, stream_lens, "a replay adds no stream entry");
}

/// Small enough that the busiest instruments' streams get trimmed.
const STREAM_CAP: u64 = 2_000;

#[test]
fn an_unreachable_redis_spools_and_drain_loads_it() {
    let f = Fixture::new("redisdown");
    let prefix = format!("tickcore-test-down-{}:", std::process::id());
    let _keys = Keys(prefix.clone());
    let o = f.ok(&[
        "run",
        "--feed",
        "gen:m7:100k:2",
        "--sinks",
        "redis",
        "--redis",
        "redis://127.0.0.1:1",
        "--redis-prefix",
        &prefix,
        "--sink-finish-s",
        "1",
        "--json",
    ]);
    let s = json(&o);
    assert!(
        s["sinks"][0]["spool_pending_bytes"].as_u64().unwrap() > 0,
        "{}",
        s["sinks"][0]
    );
    assert!(s["sinks"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("Redis"));
    let o = f.ok(&[
        "drain",
        "--redis",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        &prefix,
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("drained"));
    let h = common::redis_hash(&format!("{prefix}AAPL"));
    assert!(h["trades"].parse::<u64>().unwrap() > 0, "{h:?}");
}

#[test]
fn a_database_that_refuses_the_schema_is_one_clear_message_and_the_run_goes_on() {
    let f = Fixture::new("refuse");
    let role = format!("tickcore_noschema_{}", std::process::id());
    psql("postgres", &format!("DROP ROLE IF EXISTS {role}"));
    psql("postgres", &format!("CREATE ROLE {role} LOGIN"));
    // A role that may connect but not create schemas: the migrations cannot run.
    let url = format!("postgres://{role}@127.0.0.1:5432/{}", f.db);
    let o = f.ok(&[
        "run",
        "--feed",
        "gen:m7:100k:2",
        "--sinks",
        "pg",
        "--pg",
        &url,
        "--session-date",
        "2026-12-02",
        "--sink-finish-s",
        "1",
        "--json",
    ]);
    let s = json(&o);
    let sink = &s["sinks"][0];
    let err = sink["last_error"].as_str().unwrap();
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        sink["spool_pending_bytes"].as_u64().unwrap() > 0,
        "the rows wait in the spool"
    );
    assert_eq!(s["messages"], 100_000, "the replay itself went on");
    let o = f.ok(&[
        "run",
        "--feed",
        "gen:m7:20k:2",
        "--sinks",
        "pg",
        "--pg",
        &url,
        "--session-date",
        "2026-12-02",
        "--sink-finish-s",
        "1",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("sink pg: last error") && text.contains("permission denied"),
        "{text}"
    );
    assert!(text.contains("from an earlier run in the spool"), "{text}");
    f.ok(&["drain", "--pg", &f.url(), "--session-date", "2026-12-02"]);
    psql("postgres", &format!("DROP OWNED BY {role} CASCADE"));
    let _ = Command::new("psql")
        .args([
            &format!("{}/postgres", common::pg_server()),
            "-qc",
            &format!("DROP ROLE IF EXISTS {role}"),
        ])
        .output();
}

#[test]
fn a_wrong_redis_password_is_one_clear_message_and_the_run_goes_on_spooling() {
    let f = Fixture::new("redispw");
    // A user of our own with a password, so a wrong one is refused (the default user has none).
    let user = format!("tickcore-test-{}", std::process::id());
    assert_eq!(
        redis_cli(&[
            "acl",
            "setuser",
            &user,
            "on",
            ">right-password",
            "~*",
            "+@all"
        ]),
        "OK"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .args([
            "run",
            "--feed",
            "gen:m7:50k:2",
            "--sinks",
            "redis",
            "--redis",
            &format!("redis://{user}@127.0.0.1:6379"),
            "--sink-finish-s",
            "1",
        ])
        .env("TICKCORE_DATA_DIR", &f.data)
        .env("TICKCORE_REDIS_PASSWORD", "wrong-password")
        .output()
        .unwrap();
    redis_cli(&["acl", "deluser", &user]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("sink redis: last error"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("WRONGPASS"), "{line}");
    assert!(
        !line.contains("wrong-password"),
        "never print the password: {line}"
    );
    assert!(text.contains("spool"), "{text}");
}

/// A tmpfs mounted for one test (a disk that fills up, or one that is read-only), unmounted
/// however the test ends.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &std::path::Path, opts: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mount -t tmpfs -o {opts} at {}: these tests need root with CAP_SYS_ADMIN, as the \
             project's CI machines have",
            at.display()
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A replay whose database is down and whose spool refuses rows (at its byte limit, on a full
/// disk, in a read-only directory) holds rows in memory up to its bound, then pushes back on
/// the feed until the database comes back; every trade then lands exactly once.
#[rstest::rstest]
#[case::at_its_byte_limit("limit")]
#[case::on_a_full_disk("full")]
#[case::in_a_read_only_directory("ro")]
fn a_replay_waits_while_database_and_spool_refuse_and_loses_nothing(#[case] how: &str) {
    let f = Fixture::new(&format!("refuse{how}"));
    let spool = f.data.join("spool");
    let _mount = match how {
        "full" => Some(Mount::tmpfs(&spool.join("pg"), "size=256k")),
        "ro" => Some(Mount::tmpfs(&spool, "ro,size=64k")),
        _ => None,
    };
    let door = common::Door::shut();
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", door.port, f.db);
    let events = f.data.join("events.txt");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickcore"));
    cmd.args([
        "run",
        "--feed",
        "gen:m7:1M:7",
        "--sinks",
        "pg",
        "--pg",
        &url,
        "--session-date",
        "2026-12-02",
        "--pg-batch",
        "500",
        "--sink-memory-rows",
        "2000",
        "--admin",
        "off",
        "--json",
        "--events",
        events.to_str().unwrap(),
    ])
    .env("TICKCORE_DATA_DIR", &f.data)
    .env_remove("TICKCORE_PG")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    if how == "limit" {
        cmd.env("TICKCORE_SPOOL_MAX_BYTES", "65536");
    }
    let mut child = cmd.spawn().unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = Vec::new();
    for line in std::io::BufRead::lines(err).map_while(Result::ok) {
        let waiting = line.contains("pushing back on the feed");
        said.push(line);
        if waiting {
            break;
        }
    }
    assert!(
        said.iter().any(|l| l.contains("spool")),
        "the spool's refusal is said: {said:?}"
    );
    door.open();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "{said:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = json(&o);
    let sink = &s["sinks"][0];
    assert_eq!(sink["rows_lost"], 0, "{sink}");
    assert!(sink["pushbacks"].as_u64().unwrap() >= 1, "{sink}");
    assert!(sink["spool_refusals"].as_u64().unwrap() >= 1, "{sink}");
    assert_eq!(sink["spool_pending_bytes"], 0, "{sink}");
    let (n, sum) = common::trades_in_events(&events);
    assert_eq!(f.count("SELECT count(*) FROM tickcore.trades"), n);
    assert_eq!(
        f.count("SELECT sum(match_number) FROM tickcore.trades"),
        sum
    );
}
