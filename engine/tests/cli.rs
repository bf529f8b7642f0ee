//! The `tickcore` binary end to end: outputs other tools parse, and one clear line for every kind
//! of bad input or bad flag, never a panic.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shards/tests/data/ritch-ex20101224.itch50"
);

fn tickcore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickcore"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcore-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn gen(path: &Path, scope: &str, messages: &str, seed: &str) {
    let p = path.to_str().unwrap();
    let o = tickcore(&[
        "gen",
        "--scope",
        scope,
        "--messages",
        messages,
        "--seed",
        seed,
        "--out",
        p,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// One line on stderr, starting `tickcore: error:`, containing `needle`, exit code `code`.
fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    if code == 1 {
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("tickcore: error: "), "{err}");
    }
}

#[test]
fn gen_is_deterministic() {
    let (a, b, c) = (tmp("a.itch"), tmp("b.itch"), tmp("c.itch"));
    gen(&a, "n100", "200k", "5");
    gen(&b, "n100", "200k", "5");
    gen(&c, "n100", "200k", "6");
    let (a, b, c) = (
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        std::fs::read(c).unwrap(),
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn inspect_json_on_the_fixture() {
    let o = tickcore(&["inspect", "--input", FIXTURE, "--json"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"], 12_012);
    assert_eq!(v["bytes"], 465_048);
    assert_eq!(v["instruments"], 3);
    let want = [
        ("S", 6),
        ("R", 3),
        ("H", 3),
        ("A", 4997),
        ("F", 3),
        ("E", 198),
        ("X", 45),
        ("D", 1745),
        ("U", 12),
        ("P", 5000),
    ];
    for (t, n) in want {
        assert_eq!(v["by_type"][t], n, "{t}");
    }
    assert_eq!(v["by_type"].as_object().unwrap().len(), want.len());
    assert!(v["anomalies"]["unknown_ref"].as_u64().unwrap() > 0);
    assert!(v["first_timestamp_ns"].as_u64().unwrap() < v["last_timestamp_ns"].as_u64().unwrap());
}

fn px(v: &Value) -> f64 {
    let s = v.as_str().unwrap();
    let (_, frac) = s.split_once('.').unwrap();
    assert_eq!(frac.len(), 4, "{s}");
    s.parse().unwrap()
}

#[test]
fn book_json_lines_have_the_documented_shape() {
    let f = tmp("m7.itch");
    gen(&f, "m7", "300k", "1");
    let o = tickcore(&[
        "book",
        "--input",
        f.to_str().unwrap(),
        "--json",
        "--depth",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    let mut last_locate = 0;
    for l in &lines {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "symbol", "locate", "bids", "asks", "trades", "volume", "vwap",
        ] {
            assert!(keys.contains(&k), "{k} in {l}");
        }
        let locate = l["locate"].as_u64().unwrap();
        assert!(locate > last_locate, "sorted by locate");
        last_locate = locate;
        let bids: Vec<f64> = l["bids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| px(&x["px"]))
            .collect();
        let asks: Vec<f64> = l["asks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| px(&x["px"]))
            .collect();
        assert!(bids.len() == 3 && asks.len() == 3, "{l}");
        assert!(bids.windows(2).all(|w| w[0] > w[1]), "bids best first");
        assert!(asks.windows(2).all(|w| w[0] < w[1]), "asks best first");
        assert!(bids[0] < asks[0], "generated books never cross");
        assert!(l["trades"].as_u64().unwrap() > 0);
        px(&l["vwap"]);
    }
    let one = tickcore(&[
        "book",
        "--input",
        f.to_str().unwrap(),
        "--json",
        "--symbol",
        "NVDA",
    ]);
    let text = String::from_utf8(one.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("{\"symbol\":\"NVDA\""), "{text}");
    let human = tickcore(&["book", "--input", f.to_str().unwrap(), "--symbol", "AAPL"]);
    assert!(String::from_utf8(human.stdout)
        .unwrap()
        .contains("AAPL (locate 1)"));
}

#[test]
fn bad_files_get_one_line_with_the_offset() {
    let missing = tickcore(&["book", "--input", "/nonexistent/feed.itch"]);
    assert_fails(&missing, 1, "/nonexistent/feed.itch: no such file");

    let empty = tmp("empty.itch");
    std::fs::write(&empty, b"").unwrap();
    assert_fails(
        &tickcore(&["inspect", "--input", empty.to_str().unwrap()]),
        1,
        "file is empty",
    );

    let dir = std::env::temp_dir();
    assert_fails(
        &tickcore(&["inspect", "--input", dir.to_str().unwrap()]),
        1,
        "is a directory",
    );

    let junk = tmp("junk.itch");
    std::fs::write(&junk, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let o = tickcore(&["book", "--input", junk.to_str().unwrap()]);
    assert_fails(&o, 1, "byte offset 0");

    let bytes = std::fs::read(FIXTURE).unwrap();
    let cut = tmp("cut.itch");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let o = tickcore(&["inspect", "--input", cut.to_str().unwrap(), "--json"]);
    assert_fails(&o, 1, "truncated message at byte offset");
    let o = tickcore(&[
        "inspect",
        "--input",
        cut.to_str().unwrap(),
        "--json",
        "--skip-corrupt",
    ]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["messages"], 12_011);
    assert_eq!(v["corrupt"]["truncated_tail"], true);

    let mut flipped = bytes.clone();
    flipped[5_000..5_040].fill(0xEE);
    let bad = tmp("flipped.itch");
    std::fs::write(&bad, &flipped).unwrap();
    assert_fails(
        &tickcore(&["book", "--input", bad.to_str().unwrap()]),
        1,
        "--skip-corrupt",
    );
    let o = tickcore(&[
        "book",
        "--input",
        bad.to_str().unwrap(),
        "--skip-corrupt",
        "--json",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped 1 corrupt region"));

    let o = tickcore(&["book", "--input", FIXTURE, "--symbol", "ZZZZ"]);
    assert_fails(&o, 1, "no instrument with symbol \"ZZZZ\"");
}

#[test]
fn bad_flags_are_usage_errors() {
    assert_fails(
        &tickcore(&["gen", "--scope", "x5"]),
        2,
        "invalid value 'x5'",
    );
    assert_fails(
        &tickcore(&["gen", "--messages", "12x"]),
        2,
        "is not a count",
    );
    assert_fails(
        &tickcore(&["book", "--depth", "many"]),
        2,
        "invalid value 'many' for '--depth",
    );
    assert_fails(&tickcore(&["frobnicate"]), 2, "unrecognized subcommand");
    let o = tickcore(&[
        "gen",
        "--scope",
        "v3k",
        "--messages",
        "1000",
        "--out",
        tmp("x").to_str().unwrap(),
    ]);
    assert_fails(&o, 1, "too few");
}

#[test]
fn help_explains_every_command() {
    let o = tickcore(&["--help"]);
    let text = String::from_utf8(o.stdout).unwrap();
    for c in ["gen", "inspect", "book", "Exit codes"] {
        assert!(text.contains(c), "{c}");
    }
    for c in ["gen", "inspect", "book"] {
        let o = tickcore(&[c, "--help"]);
        assert!(o.status.success());
        assert!(
            String::from_utf8(o.stdout).unwrap().contains("--"),
            "{c} --help lists flags"
        );
    }
}

/// `tickcore config` prints the very plan `tickcore run` launches with the same flags.
#[rstest::rstest]
#[case::default_two_cpus(&[][..])]
#[case::a_spooling_sink_and_no_endpoint(&["--sinks", "redis", "--admin", "off"][..])]
#[case::two_shards_on_one_cpu(&["--shards", "2", "--shard-cpus", "1"][..])]
fn config_prints_the_plan_run_launches(#[case] flags: &[&str]) {
    let data = tmp(&format!("plan-{}", flags.len()));
    let with = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tickcore"))
            .args(args)
            .args(flags)
            .env("TICKCORE_DATA_DIR", &data)
            .env_remove("TICKCORE_PG")
            .env_remove("TICKCORE_REDIS")
            .env_remove("TICKCORE_NEO4J")
            .output()
            .expect("binary runs")
    };
    let mut run_args = vec!["run", "--feed", "gen:f2:5k:1", "--json"];
    if !flags.contains(&"--admin") {
        run_args.extend(["--admin", "127.0.0.1:0"]);
    }
    let o = with(&run_args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ran: Vec<String> = v["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let o = with(&["config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("thread "))
        .map(str::to_string)
        .collect();
    assert_eq!(printed, ran, "{flags:?}");
    assert!(!ran.is_empty());
}
