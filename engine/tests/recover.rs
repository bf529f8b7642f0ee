//! Restart mid-session: a replay checkpoints as it goes, is SIGKILLed at a point chosen by a
//! printed seed, and `run --recover` finishes it; the books equal `tickcore book --json` on the
//! same file byte for byte. A damaged newest checkpoint is passed over (and said), and with
//! none whole the run starts from the beginning (and says so). Real processes, real files.

use rstest::rstest;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One session and its reference books, shared by every case of this binary.
fn session() -> &'static (PathBuf, String) {
    static S: OnceLock<(PathBuf, String)> = OnceLock::new();
    S.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("tickcore-recover-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("session.itch50");
        let fs = f.to_str().unwrap();
        ok(
            &d,
            &[
                "gen",
                "--scope",
                "n100",
                "--messages",
                "1M",
                "--seed",
                "8",
                "--out",
                fs,
            ],
        );
        let books = ok(&d, &["book", "--input", fs, "--json", "--depth", "0"]);
        (f, String::from_utf8(books.stdout).unwrap())
    })
}

fn dir(case: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickcore-recover-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn command(d: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tickcore"));
    c.args(args).env("TICKCORE_DATA_DIR", d.join("data"));
    c
}

fn ok(d: &Path, args: &[&str]) -> Output {
    let o = command(d, args).output().expect("binary runs");
    assert!(
        o.status.success(),
        "tickcore {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn checkpoints(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d.join("data/checkpoints"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tkc"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Marks of the checkpoint sets whole on disk now (both shards' files there).
fn whole_sets(d: &Path) -> Vec<String> {
    common::whole_checkpoints(&d.join("data"), 2)
}

/// `run --recover` to the end of the file: its books, and what it said on stderr.
fn recover(d: &Path) -> (String, String) {
    recover_with(d, &[])
}

fn recover_with(d: &Path, extra: &[&str]) -> (String, String) {
    let (file, _) = session();
    let books = d.join("books.json");
    let feed = format!("file:{}", file.display());
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--feed",
        &feed,
        "--shards",
        "2",
        "--admin",
        "off",
        "--recover",
        "--checkpoint-every-s",
        "600",
        "--dump-books",
        books.to_str().unwrap(),
        "--depth",
        "0",
    ]);
    let o = ok(d, &args);
    (
        std::fs::read_to_string(books).unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A paced replay that checkpoints every minute of feed time, killed once `sets` whole
/// checkpoint sets have been on disk (each shard keeps its newest three).
fn killed_after(d: &Path, sets: usize) {
    killed_after_with(d, sets, &[], &[]);
}

/// As [`killed_after`], with `extra` flags, and once each of `sinks` has recorded a durable
/// mark too (before that a recovery rightly starts from the beginning).
fn killed_after_with(d: &Path, sets: usize, extra: &[&str], sinks: &[&str]) {
    let (file, _) = session();
    let feed = format!("file:{}", file.display());
    let mut args = vec!["run"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--feed",
        &feed,
        "--shards",
        "2",
        "--admin",
        "off",
        "--speed",
        "400000/s",
        "--checkpoint-every-s",
        "60",
    ]);
    let mut child = command(d, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        seen.extend(whole_sets(d));
        if seen.len() >= sets && common::recoverable(&d.join("data"), 2, sinks) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {sets} checkpoints were on disk: {:?}",
            checkpoints(d)
        );
        assert!(Instant::now() < until, "no {sets} checkpoints within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[rstest]
#[case(1)]
#[case(2)]
#[case(3)]
#[case(4)]
#[case(5)]
#[case(6)]
#[case(7)]
#[case(8)]
#[case(9)]
#[case(10)]
fn a_replay_killed_mid_session_recovers_to_the_file_books(#[case] seed: u64) {
    // The kill point: after 1 to 10 whole checkpoint sets.
    let sets = 1 + (seed * 7919 % 10) as usize;
    let d = dir(&format!("kill{seed}"));
    eprintln!("seed {seed}: SIGKILL after {sets} checkpoint set(s)");
    killed_after(&d, sets);
    let (books, said) = recover(&d);
    assert!(
        said.contains("recover: starting after message"),
        "seed {seed}: {said}"
    );
    assert!(
        books == session().1,
        "seed {seed}: recovered books differ from book --json"
    );
}

#[rstest]
#[case::flipped_byte("flip")]
#[case::truncated("cut")]
#[case::a_shard_file_missing("missing")]
#[case::whole_but_would_not_restore("twice")]
fn a_damaged_newest_checkpoint_is_passed_over_and_said(#[case] how: &str) {
    let d = dir(how);
    killed_after(&d, 3);
    let files = checkpoints(&d);
    let newest = d.join("data/checkpoints").join(files.last().unwrap());
    match how {
        "flip" => {
            let mut b = std::fs::read(&newest).unwrap();
            b[100] ^= 0x40;
            std::fs::write(&newest, b).unwrap();
        }
        "cut" => {
            let b = std::fs::read(&newest).unwrap();
            std::fs::write(&newest, &b[..b.len() / 3]).unwrap();
        }
        "twice" => {
            // Checksummed and decodable, but an order listed twice: restoring it would fail
            // after the messages it holds were skipped.
            let mut s = shards::checkpoint::decode(&std::fs::read(&newest).unwrap()).unwrap();
            let o = *s
                .books
                .orders
                .first()
                .expect("live orders at the checkpoint");
            s.books.orders.push(o);
            std::fs::write(&newest, shards::checkpoint::encode(&s)).unwrap();
        }
        _ => std::fs::remove_file(&newest).unwrap(),
    }
    let (books, said) = recover(&d);
    assert!(said.contains("passed over the checkpoint"), "{how}: {said}");
    if how == "twice" {
        assert!(said.contains("would not restore"), "{how}: {said}");
    }
    assert!(
        said.contains("recover: starting after message"),
        "{how}: {said}"
    );
    assert!(books == session().1, "{how}: books differ from book --json");
}

#[test]
fn with_no_whole_checkpoint_recovery_starts_from_the_beginning_and_says_so() {
    let d = dir("none");
    std::fs::create_dir_all(d.join("data/checkpoints")).unwrap();
    std::fs::write(
        d.join("data/checkpoints/ckpt-0000000000001024-shard0of2.tkc"),
        b"not a checkpoint",
    )
    .unwrap();
    let (books, said) = recover(&d);
    assert!(said.contains("no whole checkpoint"), "{said}");
    assert!(books == session().1);
}

#[test]
fn put_checkpoint_on_the_admin_endpoint_writes_one_per_shard() {
    let d = dir("put");
    let (file, _) = session();
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut child = command(
        &d,
        &[
            "run",
            "--feed",
            &format!("file:{}", file.display()),
            "--shards",
            "2",
            "--admin",
            &admin,
            "--speed",
            "100000/s",
            "--recover",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let err = std::io::BufReader::new(child.stderr.take().unwrap());
    for l in err.lines().map_while(Result::ok) {
        if l.contains("admin endpoint on") {
            break;
        }
    }
    let reply = put(&admin, "/checkpoint");
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    let until = Instant::now() + Duration::from_secs(30);
    while whole_sets(&d).is_empty() {
        assert!(
            Instant::now() < until,
            "no checkpoint 30 s after PUT /checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn put(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

mod common;

/// Trades of the whole session (count, match-number sum), from one clean run's event file.
fn session_trades() -> &'static (i64, i64) {
    static T: OnceLock<(i64, i64)> = OnceLock::new();
    T.get_or_init(|| {
        let d = dir("trades");
        let events = d.join("events.txt");
        let feed = format!("file:{}", session().0.display());
        let ev = events.to_str().unwrap();
        ok(
            &d,
            &["run", "--feed", &feed, "--admin", "off", "--events", ev],
        );
        common::trades_in_events(&events)
    })
}

/// Killed with PostgreSQL attached, recovered: the books are exact and every trade is in
/// PostgreSQL exactly once (rows the killed run held only in memory come again: no checkpoint
/// past the sink's durable mark is used).
#[rstest]
#[case(11)]
#[case(12)]
#[case(13)]
fn a_killed_replay_with_postgres_recovers_with_every_trade_exactly_once(#[case] seed: u64) {
    let sets = 1 + (seed * 7919 % 6) as usize;
    eprintln!("seed {seed}: SIGKILL after {sets} checkpoint set(s)");
    let d = dir(&format!("pg{seed}"));
    let db = common::TestDb::new(&format!("recover_s{seed}"));
    let url = db.url();
    let pg = ["--pg", url.as_str(), "--session-date", "2026-12-06"];
    killed_after_with(&d, sets, &pg, &["pg"]);
    let (books, said) = recover_with(&d, &pg);
    assert!(books == session().1, "seed {seed}: books differ: {said}");
    assert!(
        said.contains("durable up to message"),
        "seed {seed}: {said}"
    );
    assert!(
        said.contains("recover: starting after message"),
        "seed {seed}: a checkpoint is used: {said}"
    );
    let (n, sum) = *session_trades();
    let count = db.number("SELECT count(*) FROM tickcore.trades");
    assert_eq!(count, n, "seed {seed}: {said}");
    let got = db.number("SELECT sum(match_number) FROM tickcore.trades");
    assert_eq!(got, sum, "seed {seed}");
}

/// A sink that lags more checkpoints than a shard keeps (its database cut off and its spool
/// at its byte limit, so its durable mark stops) still leaves a set a recovery can start from:
/// shards keep the newest set at or before the lowest sink's mark. Before, they kept only the
/// newest three, and the recovery started from the beginning.
#[test]
fn a_sink_lagging_more_checkpoints_than_kept_leaves_one_to_recover_from() {
    let d = dir("lag");
    let db = common::TestDb::new("recover_lag");
    let door = common::Door::shut();
    door.open();
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", door.port, db.0);
    let pg = ["--pg", url.as_str(), "--session-date", "2026-12-06"];
    let (file, _) = session();
    let feed = format!("file:{}", file.display());
    let mut args = pg.to_vec();
    args.extend_from_slice(&["--feed", &feed, "--shards", "2", "--admin", "off"]);
    args.extend_from_slice(&["--speed", "200000/s", "--checkpoint-every-s", "60"]);
    let mut child = command(&d, &["run"])
        .args(&args)
        .env("TICKCORE_SPOOL_MAX_BYTES", "262144")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let data = d.join("data");
    let until = Instant::now() + Duration::from_secs(60);
    let (mut cut, mut seen) = (false, std::collections::BTreeSet::new());
    loop {
        let mark = common::durable_mark(&data, "pg");
        if !cut && mark.is_some() {
            door.close();
            cut = true;
        }
        seen.extend(common::whole_checkpoints(&data, 2));
        let newer = seen
            .iter()
            .filter(|m| m.parse::<u64>().unwrap() > mark.unwrap_or(u64::MAX))
            .count();
        if newer > 4 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the sink lagged 5 checkpoints (mark {mark:?}): {:?}",
            checkpoints(&d)
        );
        assert!(
            Instant::now() < until,
            "the sink never lagged 5 checkpoints"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        common::recoverable(&data, 2, &["pg"]),
        "a set at or before the sink's mark {:?} is kept: {:?}",
        common::durable_mark(&data, "pg"),
        checkpoints(&d)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    door.open();
    let (books, said) = recover_with(&d, &pg);
    assert!(said.contains("recover: starting after message"), "{said}");
    assert!(books == session().1, "books differ: {said}");
    let (n, sum) = *session_trades();
    assert_eq!(
        db.number("SELECT count(*) FROM tickcore.trades"),
        n,
        "{said}"
    );
    assert_eq!(
        db.number("SELECT sum(match_number) FROM tickcore.trades"),
        sum
    );
}

/// A run without --recover starts a new history: an earlier run's checkpoints would otherwise
/// be taken for its own by a later --recover.
#[test]
fn a_run_without_recover_removes_an_earlier_runs_checkpoints_and_says_so() {
    let d = dir("fresh");
    let old = d.join("data/checkpoints/ckpt-0000000000001024-shard0of1.tkc");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, b"an earlier run's").unwrap();
    let o = ok(&d, &["run", "--feed", "gen:f2:10k:1", "--admin", "off"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("removed 1 checkpoint file(s)"), "{said}");
    assert!(!old.exists());
}
