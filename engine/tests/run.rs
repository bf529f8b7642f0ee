//! `tickcore run` end to end: the sharded engine gives exactly the single-core books, routes
//! every message once (market-wide ones to every shard), shuts down cleanly mid-replay, and
//! refuses bad configuration with one clear line.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shards/tests/data/ritch-ex20101224.itch50"
);

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickcore-run-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tickcore"));
    // Logs go to a scratch directory, not into the source tree; no affinity.toml is in the
    // test's working directory, so the built-in defaults apply unless a test passes --config.
    c.args(args).env("TICKCORE_DATA_DIR", dir().join("data"));
    c
}

fn tickcore(args: &[&str]) -> Output {
    command(args).output().expect("binary runs")
}

fn ok(args: &[&str]) -> Output {
    let o = tickcore(args);
    assert!(
        o.status.success(),
        "tickcore {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn summary(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).expect("--json prints one JSON object")
}

/// Writes the session for `spec` (`gen:...` or a path) and returns the path to read.
fn file_for(spec: &str, name: &str) -> String {
    let Some(g) = spec.strip_prefix("gen:") else {
        return spec.to_string();
    };
    let f: Vec<&str> = g.split(':').collect();
    let out = dir().join(name);
    let out = out.to_str().unwrap();
    ok(&[
        "gen",
        "--scope",
        f[0],
        "--messages",
        f[1],
        "--seed",
        f[2],
        "--out",
        out,
    ]);
    out.to_string()
}

#[test]
fn sharded_books_equal_single_core_books_byte_for_byte() {
    let feeds = [
        ("gen:f2:100k:3", "f2"),
        ("gen:m7:300k:5", "m7"),
        ("gen:n100:300k:7", "n100"),
        ("gen:v3k:400k:9", "v3k"),
        (FIXTURE, "fixture"),
    ];
    for (spec, name) in feeds {
        let path = file_for(spec, &format!("{name}.itch"));
        let want = ok(&["book", "--input", &path, "--json"]).stdout;
        assert!(!want.is_empty());
        for n in ["1", "2", "3", "4"] {
            let dump = dir().join(format!("{name}-{n}.json"));
            let feed = format!("file:{path}");
            ok(&[
                "run",
                "--feed",
                &feed,
                "--shards",
                n,
                "--dump-books",
                dump.to_str().unwrap(),
            ]);
            let got = std::fs::read(&dump).unwrap();
            assert!(
                got == want,
                "{name} with {n} shards differs from tickcore book --json"
            );
        }
    }
}

/// Both consumer placements: inside the ingress thread (its CPU is the ingress's, the default
/// here) and on a thread of its own (`--adapter-cpus 1`).
#[test]
fn every_message_reaches_its_shard_once_and_events_reach_the_consumer() {
    for placement in [&[][..], &["--adapter-cpus", "1"][..]] {
        let events = dir().join(format!("events-{}.txt", placement.len()));
        let mut args = vec![
            "run",
            "--feed",
            "gen:n100:200k:2",
            "--shards",
            "3",
            "--assign",
            "balanced",
            "--json",
            "--events",
            events.to_str().unwrap(),
        ];
        args.extend_from_slice(placement);
        events_reach_the_consumer(&ok(&args), &events);
    }
}

fn events_reach_the_consumer(o: &Output, events: &std::path::Path) {
    let s = summary(o);
    let total = s["messages"].as_u64().unwrap();
    let broadcast = s["broadcast"].as_u64().unwrap();
    let shards = s["shards"].as_array().unwrap();
    assert_eq!(total, 200_000);
    assert!(broadcast > 0, "system events are market-wide");
    // The rate is over the feed alone: its start-up is reported, not averaged in.
    let (wall, startup) = (
        s["wall_s"].as_f64().unwrap(),
        s["startup_s"].as_f64().unwrap(),
    );
    assert!(
        startup > 0.0 && startup < wall,
        "start-up {startup} s of {wall} s"
    );
    let over_feed = total as f64 / (wall - startup);
    let rate = s["msgs_per_s"].as_f64().unwrap();
    assert!(
        (rate / over_feed - 1.0).abs() < 1e-6,
        "msgs_per_s {rate} is the feed's {over_feed}"
    );
    let applied: u64 = shards.iter().map(|x| x["messages"].as_u64().unwrap()).sum();
    assert_eq!(
        applied,
        total + 2 * broadcast,
        "each message once, market-wide ones on all 3"
    );
    for x in shards {
        assert!(
            x["messages"].as_u64().unwrap() > 40_000,
            "balanced assignment uses every shard"
        );
        assert_eq!(x["bad_batches"], 0);
    }
    let c = &s["consumer"];
    for key in ["trades", "bbos", "bars", "breaks"] {
        let by_shard: u64 = shards.iter().map(|x| x[key].as_u64().unwrap()).sum();
        assert_eq!(
            c[key].as_u64().unwrap(),
            by_shard,
            "{key}: consumer saw every event"
        );
    }
    let lines = std::fs::read_to_string(events).unwrap();
    let kinds = |k: char| lines.lines().filter(|l| l.starts_with(k)).count() as u64;
    assert_eq!(kinds('T'), c["trades"].as_u64().unwrap());
    assert_eq!(kinds('Q'), c["bbos"].as_u64().unwrap());
    assert_eq!(kinds('B'), c["bars"].as_u64().unwrap());
    assert!(c["bars"].as_u64().unwrap() > 0, "trades close bars");
}

#[test]
fn a_query_is_answered_by_the_owning_shard() {
    let o = ok(&[
        "run",
        "--feed",
        "gen:m7:100k:1",
        "--shards",
        "2",
        "--json",
        "--query",
        "AAPL",
        "--query",
        "NOPE",
    ]);
    let s = summary(&o);
    let aapl = &s["snapshots"]["AAPL"];
    assert_eq!(aapl["symbol"], "AAPL");
    assert!(aapl["trades"].as_u64().unwrap() > 0);
    let bid: f64 = aapl["bid"]["px"].as_str().unwrap().parse().unwrap();
    let ask: f64 = aapl["ask"]["px"].as_str().unwrap().parse().unwrap();
    assert!(
        bid > 0.0 && bid < ask,
        "a generated book is never crossed: {bid} / {ask}"
    );
    assert!(!aapl["bids"].as_array().unwrap().is_empty());
    assert_eq!(s["snapshots"]["NOPE"], Value::Null);
    // The same through the human summary.
    let o = ok(&["run", "--feed", "gen:m7:50k:1", "--query", "MSFT"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("MSFT: {"));
}

fn interrupt(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_signal_mid_replay_stops_cleanly_and_loses_nothing_handed_over() {
    // Real-time pacing over a generated day: the replay would take hours.
    let child = command(&[
        "run",
        "--feed",
        "gen:m7:2M:1",
        "--speed",
        "realtime",
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    interrupt(child.id());
    let o = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown never hangs"
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&o);
    assert_eq!(s["stopped"], true);
    let total = s["messages"].as_u64().unwrap();
    assert!(total > 0 && total < 2_000_000, "stopped part way: {total}");
    let handed: Vec<u64> = s["handed_to_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    for (i, sh) in s["shards"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            sh["messages"].as_u64().unwrap(),
            handed[i],
            "shard {i} applied all it got"
        );
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut child = command(&["run", "--feed", "gen:m7:2M:1", "--speed", "realtime"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    interrupt(child.id());
    interrupt(child.id());
    let t = Instant::now();
    let status = child.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    // Either the clean stop won the race (0) or the second signal did (130); never a hang.
    assert!(matches!(status.code(), Some(0) | Some(130)), "{status:?}");
}

#[test]
fn bad_configuration_and_flags_are_one_clear_error() {
    let bad_key = dir().join("bad-key.toml");
    std::fs::write(&bad_key, "shardz = 3\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--config".into(), bad_key.display().to_string()],
            "shardz",
        ),
        (
            vec!["--shard-cpus".into(), "1,64".into()],
            "CPU 64 does not exist",
        ),
        (
            vec!["--shards".into(), "0".into()],
            "shards (flag): 0 is outside",
        ),
        (
            vec!["--config".into(), "/nonexistent/affinity.toml".into()],
            "cannot read",
        ),
        (
            vec!["--feed".into(), "file:/nonexistent.itch".into()],
            "no such file",
        ),
        (vec!["--feed".into(), "tape:x".into()], "is not a feed"),
        (vec!["--speed".into(), "warp".into()], "is not a speed"),
    ];
    for (args, want) in cases {
        let mut all = vec!["run".to_string()];
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let o = tickcore(&refs);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let o = command(&["config"])
        .env("TICKCORE_SHARDS", "x")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("TICKCORE_SHARDS"));
}

#[test]
fn config_shows_each_value_and_its_source() {
    let root_toml = concat!(env!("CARGO_MANIFEST_DIR"), "/../affinity.toml");
    let o = command(&["config", "--config", root_toml, "--feed-buffers", "8"])
        .env("TICKCORE_FEED_BATCH_BYTES", "4096")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let line = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or("")
            .to_string()
    };
    assert!(line("feed_buffers").contains("= 8") && line("feed_buffers").ends_with("# flag"));
    assert!(
        line("feed_batch_bytes").contains("4096") && line("feed_batch_bytes").ends_with("# env")
    );
    assert!(line("feed_cpu").ends_with("# file"), "{text}");
}
