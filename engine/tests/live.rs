//! The live feed end to end, on loopback with real sockets and real processes: `tickcore
//! exchange` serves a session over MoldUDP64 with faults, `tickcore run --feed mold:` receives
//! it, and the books must equal `tickcore book --json` on the same file byte for byte. Where a
//! case needs a datagram no exchange would send (malformed ones, heartbeat-only stretches), the
//! test sends it itself through a real socket.

mod common;

use rstest::rstest;
use serde_json::Value;
use shards::mold::{self, Session};
use std::io::BufRead;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn dir(case: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tickcore-live-{}-{case}", std::process::id()));
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
        "tickcore {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A UDP port free on loopback now (the kernel's pick; released before use).
fn port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP address free on loopback now, for the admin endpoint (released before use).
fn admin_addr() -> String {
    let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    t.local_addr().unwrap().to_string()
}

/// A generated m7 session in `d`, and its reference books.
fn session(d: &Path, messages: &str, seed: &str) -> (String, String) {
    let f = d.join("session.itch50");
    let f = f.to_str().unwrap().to_string();
    ok(
        d,
        &[
            "gen",
            "--scope",
            "m7",
            "--messages",
            messages,
            "--seed",
            seed,
            "--out",
            &f,
        ],
    );
    let books = ok(d, &["book", "--input", &f, "--json", "--depth", "0"]);
    (f, String::from_utf8(books.stdout).unwrap())
}

/// A running `tickcore run --feed mold:`, started and ready to receive.
struct Receiver {
    child: Child,
    books: PathBuf,
    stderr: mpsc::Receiver<String>,
}

impl Receiver {
    fn start(d: &Path, lines: &str, rerequest: &str, extra: &[&str]) -> Receiver {
        let books = d.join("live-books.json");
        let feed = format!("mold:{lines}");
        let admin = if extra.contains(&"--admin") {
            vec![]
        } else {
            vec!["--admin", "off"]
        };
        let mut args = vec!["run", "--feed", &feed, "--rerequest", rerequest];
        args.extend(admin);
        args.extend_from_slice(&[
            "--json",
            "--depth",
            "0",
            "--dump-books",
            books.to_str().unwrap(),
        ]);
        args.extend_from_slice(extra);
        let mut child = command(d, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let r = Receiver {
            child,
            books,
            stderr: rx,
        };
        r.wait_for("live feed ready");
        r
    }

    fn wait_for(&self, what: &str) {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            match self.stderr.recv_timeout(Duration::from_secs(1)) {
                Ok(l) if l.contains(what) => return,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("the receiver never said `{what}`");
    }

    /// Waits for the run to end by itself (end of session), and returns its summary.
    fn finish(self) -> (Value, String) {
        let (status, v, books, rest) = self.end();
        assert!(status.success(), "run failed: {}", rest.join("\n"));
        (v, books)
    }

    /// Waits for the run to end, however it ends: its exit status, summary, books and the
    /// stderr lines not yet read. A run still going after 120 s is stopped with SIGINT, so
    /// that the failure shows what it was waiting for (its summary and what it said).
    fn end(mut self) -> (std::process::ExitStatus, Value, String, Vec<String>) {
        if let Some(status) = self.exit_within(Duration::from_secs(120)) {
            return self.collect(status);
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let summary = match self.exit_within(Duration::from_secs(20)) {
            Some(status) => {
                let (_, v, _, said) = self.collect(status);
                format!("{v:#}\nit said:\n{}", said.join("\n"))
            }
            None => {
                let _ = self.child.kill();
                let said: Vec<String> = self.stderr.try_iter().collect();
                format!(
                    "nothing (it ignored SIGINT too); it said:\n{}",
                    said.join("\n")
                )
            }
        };
        panic!(
            "the run did not end at end of session within 120 s; stopped, its summary: {summary}"
        );
    }

    /// The run's exit status, if it exits within `limit`.
    fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What an exited run left: its status, summary, books and the stderr lines not yet read.
    fn collect(
        &mut self,
        status: std::process::ExitStatus,
    ) -> (std::process::ExitStatus, Value, String, Vec<String>) {
        let mut out = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out).unwrap();
        // The reader thread sees the pipe close once the process is gone: wait for its last
        // lines, but not past a few seconds.
        let mut rest = Vec::new();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            rest.push(l);
        }
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|_| panic!("no --json summary: {}", rest.join("\n")));
        let books = std::fs::read_to_string(&self.books)
            .unwrap_or_else(|e| panic!("no books at {}: {e}", self.books.display()));
        (status, v, books, rest)
    }
}

/// `tickcore exchange` serving `input` on `lines`, answering re-requests on `rerequest`.
fn exchange_args<'a>(input: &'a str, lines: &'a str, rerequest: &'a str) -> Vec<&'a str> {
    vec![
        "exchange",
        "--input",
        input,
        "--lines",
        lines,
        "--rerequest",
        rerequest,
    ]
}

fn exchange(d: &Path, input: &str, lines: &str, rerequest: &str, extra: &[&str]) -> Value {
    let mut args = exchange_args(input, lines, rerequest);
    args.extend_from_slice(&["--linger-s", "2", "--json"]);
    args.extend_from_slice(extra);
    let o = ok(d, &args);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An exchange process serving `input` at 50k messages/s for a run to be killed and
/// recovered against, answering re-requests 20 s past the end.
fn exchange_process(d: &Path, input: &str, lines: &str, rerequest: &str, extra: &[&str]) -> Child {
    let mut args = exchange_args(input, lines, rerequest);
    args.extend_from_slice(&["--speed", "50000/s", "--linger-s", "20"]);
    args.extend_from_slice(extra);
    command(d, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The killed run started again with `--recover`, followed to the end of the session: its
/// summary and books. The exchange is stopped after.
fn recovered(
    d: &Path,
    lines: &str,
    rerequest: &str,
    args: &[&str],
    mut ex: Child,
) -> (Value, String) {
    let mut again = args.to_vec();
    again.push("--recover");
    let r = Receiver::start(d, lines, rerequest, &again).finish();
    let _ = ex.kill();
    let _ = ex.wait();
    r
}

fn lines(n: usize) -> String {
    (0..n)
        .map(|_| format!("udp://127.0.0.1:{}", port()))
        .collect::<Vec<_>>()
        .join(",")
}

fn live(v: &Value) -> &Value {
    &v["live"]
}

#[rstest]
#[case::one_line_clean("one", 1, &[])]
#[case::two_lines_no_drop("ab0", 2, &["--reorder", "1", "--dup", "1"])]
#[case::two_lines_1pct_drop("ab1", 2, &["--drop", "1", "--reorder", "1", "--dup", "1"])]
#[case::two_lines_5pct_drop("ab5", 2, &["--drop", "5", "--reorder", "1", "--dup", "1", "--seed", "9"])]
#[case::one_line_5pct_drop("one5", 1, &["--drop", "5", "--reorder", "2", "--dup", "2", "--seed", "4"])]
#[case::line_a_killed_halfway("killa", 2, &["--kill-line", "A@2500", "--drop", "1"])]
fn live_books_equal_the_file_books(#[case] name: &str, #[case] n: usize, #[case] faults: &[&str]) {
    let d = dir(name);
    let (file, reference) = session(&d, "200k", "5");
    let (l, rr) = (lines(n), format!("127.0.0.1:{}", port()));
    let rx = Receiver::start(&d, &l, &rr, &[]);
    let sent = exchange(&d, &file, &l, &rr, faults);
    let (v, books) = rx.finish();
    assert!(
        books == reference,
        "{name}: live books differ from book --json"
    );
    let lv = live(&v);
    assert_eq!(lv["applied"], 200_000, "{name}");
    assert_eq!(lv["ended"], true);
    assert_eq!(lv["recovery"]["lost_messages"], 0, "{name}: {lv}");
    let dropped: u64 = sent["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["dropped"].as_u64().unwrap())
        .sum();
    if n == 1 && dropped > 0 {
        assert!(lv["recovery"]["rerequests"].as_u64().unwrap() > 0, "{lv}");
    }
    if name == "killa" {
        let b = &lv["lines"][1][1];
        assert!(
            b["first"].as_u64().unwrap() > 0,
            "line B carried the rest: {lv}"
        );
        assert!(sent["lines"][0]["packets"].as_u64().unwrap() <= 2500);
    }
}

/// The re-request server never answers a range the lines never carried: exactly that range
/// is reported lost, and the books equal those of the file without it.
#[test]
fn a_silenced_range_is_reported_lost_and_everything_else_is_exact() {
    let d = dir("silence");
    let (file, _) = session(&d, "100k", "6");
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let admin = admin_addr();
    let rx = Receiver::start(
        &d,
        &l,
        &rr,
        &[
            "--retry-ms",
            "5",
            "--max-retries",
            "4",
            "--admin",
            &admin,
            "--admin-linger-s",
            "2",
        ],
    );
    // Paced over 2 s, with the silenced range early: the run is still live long after the
    // loss is declared, whatever the machine's load.
    let ex = {
        let (d, file, l, rr) = (d.clone(), file.clone(), l.clone(), rr.clone());
        std::thread::spawn(move || {
            exchange(
                &d,
                &file,
                &l,
                &rr,
                &["--silence", "5000-5999", "--speed", "50000/s"],
            )
        })
    };
    // A snapshot says its book cannot be vouched for.
    let until = Instant::now() + Duration::from_secs(60);
    let snap: Value = loop {
        let s = get(&admin, "/snapshot/AAPL").and_then(|b| serde_json::from_str::<Value>(&b).ok());
        if let Some(s) = s.filter(|s| s["feed"]["lost_messages"] == 1000) {
            break s;
        }
        assert!(Instant::now() < until, "no snapshot reported the loss");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(snap["feed"]["reliable"], false);
    assert_eq!(snap["feed"]["first_lost_seq"], 5000);
    ex.join().unwrap();
    let (v, books) = rx.finish();
    let rec = &live(&v)["recovery"];
    assert_eq!(rec["lost_messages"], 1000, "{rec}");
    assert_eq!(rec["lost_ranges"], serde_json::json!([[5000, 6000]]));
    assert_eq!(live(&v)["applied"], 99_000);
    // The reference: the same file without messages 5000..=5999.
    let bytes = std::fs::read(&file).unwrap();
    let mut cut = Vec::new();
    let mut seq = 0u64;
    shards::itch::walk(&bytes, false, |_, m| {
        seq += 1;
        if !(5000..=5999).contains(&seq) {
            cut.extend_from_slice(&(m.len() as u16).to_be_bytes());
            cut.extend_from_slice(m);
        }
    })
    .unwrap();
    let cut_file = d.join("cut.itch50");
    std::fs::write(&cut_file, cut).unwrap();
    let want = ok(
        &d,
        &[
            "book",
            "--input",
            cut_file.to_str().unwrap(),
            "--json",
            "--depth",
            "0",
        ],
    );
    assert!(
        books.as_bytes() == want.stdout,
        "books outside the lost range differ"
    );
}

/// The test's own sender: the session's messages packed into MoldUDP64 datagrams.
struct Sender {
    sock: UdpSocket,
    to: String,
    packets: Vec<Vec<u8>>,
    session: Session,
    next: u64,
}

impl Sender {
    fn new(file: &str, to: &str, session: &str) -> Sender {
        let bytes = std::fs::read(file).unwrap();
        let session = Session::parse(session).unwrap();
        let (mut packets, n) = mold::pack_session(&bytes, session, 1400).unwrap();
        packets.pop(); // the test sends its own end of session
        let seq = n + 1;
        Sender {
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            to: to.to_string(),
            packets,
            session,
            next: seq,
        }
    }

    fn send(&self, d: &[u8]) {
        self.sock.send_to(d, &self.to).unwrap();
    }

    fn end(&self) {
        self.send(mold::end_of_session(&mut [0; 20], self.session, self.next));
    }
}

/// Every malformed kind, sent on the line among good packets: each is counted under its own
/// name and the books are still exact.
#[test]
fn malformed_datagrams_are_counted_by_kind_and_change_nothing() {
    let d = dir("malformed");
    let (file, reference) = session(&d, "20k", "7");
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let rx = Receiver::start(&d, &l, &rr, &["--session", "S1"]);
    let s = Sender::new(&file, l.strip_prefix("udp://").unwrap(), "S1");
    let good = s.packets[1].clone();
    let mut bad: Vec<Vec<u8>> = Vec::new();
    bad.push(good[..12].to_vec()); // short header
    let mut x = good.clone();
    x[20] = 0xFF; // first block's length runs past the end
    bad.push(x);
    let mut x = good.clone();
    x[19] = x[19].wrapping_add(1); // count says one more than the blocks
    bad.push(x);
    let mut x = good.clone();
    x[0] = b'#'; // session field not alphanumeric
    bad.push(x);
    let other = Session::parse("S2").unwrap();
    let mut x = good.clone();
    x[..10].copy_from_slice(&other.0); // another session
    bad.push(x);
    let mut x = good.clone();
    x[10..18].copy_from_slice(&(1u64 << 40).to_be_bytes()); // far beyond the window
    bad.push(x);
    s.send(&s.packets[0]);
    for (i, p) in s.packets[1..].iter().enumerate() {
        if let Some(b) = bad.get(i) {
            s.send(b);
        }
        s.send(p);
    }
    s.end();
    let (v, books) = rx.finish();
    assert!(books == reference, "books changed by malformed datagrams");
    let m = &live(&v)["malformed"];
    for k in [
        "short_header",
        "block_past_end",
        "count_mismatch",
        "bad_session",
        "far_sequence",
    ] {
        assert_eq!(m[k], 1, "{k}: {m}");
    }
    assert_eq!(live(&v)["lines"][0][1]["other_session"], 1);
    assert_eq!(live(&v)["lines"][0][1]["malformed"], 5);
}

/// A stretch of heartbeats only keeps the line alive (no gap, no silence); a heartbeat that
/// runs ahead reveals a lost tail, which is asked for and filled; end of session ends the run.
#[test]
fn heartbeats_keep_a_quiet_line_and_reveal_a_lost_tail() {
    let d = dir("heartbeat");
    let (file, reference) = session(&d, "20k", "8");
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let server = UdpSocket::bind(&rr).unwrap();
    let rx = Receiver::start(&d, &l, &rr, &["--liveness-ms", "3000"]);
    let s = Sender::new(&file, l.strip_prefix("udp://").unwrap(), "S1");
    let last = s.packets.len() - 1;
    for p in &s.packets[..last] {
        s.send(p);
    }
    let tail_seq = mold::parse(&s.packets[last]).unwrap().seq;
    for _ in 0..5 {
        s.send(mold::heartbeat(&mut [0; 20], s.session, tail_seq));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The last packet is "lost": the heartbeat says it exists.
    s.send(mold::heartbeat(&mut [0; 20], s.session, s.next));
    let mut buf = [0u8; 64];
    server
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("a re-request for the tail");
    let req = mold::parse_request(&buf[..n]).unwrap();
    assert_eq!(req.seq, tail_seq);
    server.send_to(&s.packets[last], from).unwrap();
    s.end();
    let (v, books) = rx.finish();
    assert!(books == reference);
    let lv = live(&v);
    assert_eq!(lv["lines"][0][1]["silences"], 0, "{lv}");
    assert_eq!(lv["recovery"]["gaps"], 1, "{lv}");
    assert_eq!(lv["recovery"]["filled"], 1);
}

/// The locked session dies mid-way and the exchange comes back under a new name: the run
/// follows it and ends at its end of session.
#[test]
fn a_restarted_exchange_with_a_new_session_name_is_followed() {
    let d = dir("restart");
    let (file, _) = session(&d, "20k", "9");
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let rx = Receiver::start(&d, &l, &rr, &["--liveness-ms", "300"]);
    let s = Sender::new(&file, l.strip_prefix("udp://").unwrap(), "DAYONE");
    let sent: u64 = s.packets[..10]
        .iter()
        .map(|p| {
            s.send(p);
            mold::parse(p).unwrap().count()
        })
        .sum();
    // The receiver has read DAYONE before DAYTWO starts: read together, late, DAYTWO would
    // be followed only once the exchange no longer answers for it (a loaded machine, 22:36).
    rx.wait_for("locked onto session DAYONE");
    let out = exchange(
        &d,
        &file,
        &l,
        &rr,
        &["--session", "DAYTWO", "--speed", "40000/s"],
    );
    assert_eq!(out["session"], "DAYTWO");
    let (v, _) = rx.finish();
    let lv = live(&v);
    assert_eq!(lv["session"], "DAYTWO", "{lv}");
    assert_eq!(lv["recovery"]["session_changes"], 1);
    assert_eq!(lv["applied"].as_u64().unwrap(), sent + 20_000, "{lv}");
    assert_eq!(lv["ended"], true);
}

/// A capture of a live run replays to the same books.
#[test]
fn a_capture_replays_to_the_live_books() {
    let d = dir("capture");
    let (file, reference) = session(&d, "100k", "10");
    let (l, rr) = (lines(2), format!("127.0.0.1:{}", port()));
    let cap = d.join("live.pcap");
    let rx = Receiver::start(&d, &l, &rr, &["--capture", cap.to_str().unwrap()]);
    exchange(&d, &file, &l, &rr, &["--drop", "2", "--reorder", "1"]);
    let (v, books) = rx.finish();
    assert!(books == reference);
    assert!(live(&v)["captured"].as_u64().unwrap() > 0);
    let again = d.join("replayed.json");
    let feed = format!("pcap:{}", cap.display());
    ok(
        &d,
        &[
            "run",
            "--feed",
            &feed,
            "--admin",
            "off",
            "--depth",
            "0",
            "--dump-books",
            again.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read_to_string(&again).unwrap() == books);
}

#[rstest]
#[case::bad_scheme(&["run", "--feed", "mold:tcp://127.0.0.1:1"], "not a udp:// address")]
#[case::three_lines(&["run", "--feed", "mold:udp://127.0.0.1:1,udp://127.0.0.1:2,udp://127.0.0.1:3"], "give one or two")]
#[case::bad_session(&["run", "--session", "no spaces"], "not a MoldUDP64 session")]
#[case::exchange_needs_input(&["exchange", "--lines", "udp://127.0.0.1:1"], "--input")]
#[case::bad_drop(&["exchange", "--gen", "f2:100", "--lines", "udp://127.0.0.1:1", "--drop", "150"], "percentage")]
#[case::bad_kill(&["exchange", "--gen", "f2:100", "--lines", "udp://127.0.0.1:1", "--kill-line", "B@3"], "A@N")]
#[case::bad_silence(&["exchange", "--gen", "f2:100", "--lines", "udp://127.0.0.1:1", "--silence", "9-3"], "FROM-TO")]
fn bad_live_flags_are_one_clear_line(#[case] args: &[&str], #[case] says: &str) {
    let d = dir("flags");
    let o = command(&d, args).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(says), "{args:?}: {err}");
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let d = dir("inuse");
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let feed = format!("mold:udp://{}", taken.local_addr().unwrap());
    let o = command(&d, &["run", "--feed", &feed, "--admin", "off"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot receive on") && err.lines().count() == 1,
        "{err}"
    );
}

fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut s = String::new();
    c.read_to_string(&mut s).ok()?;
    s.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn metric(text: &str, name: &str, line: Option<&str>) -> Option<f64> {
    metric_of(text, name, line.map(|l| ("line", l)))
}

/// A sample's value, of the series with `label` when one is given.
fn metric_of(text: &str, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => Some(v),
            prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// The live counters reach `/metrics`: per line and for recovery, as a scraper reads them.
#[test]
fn live_counters_are_on_the_metrics_page() {
    let d = dir("metrics");
    let (file, _) = session(&d, "50k", "11");
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let admin = admin_addr();
    let rx = Receiver::start(&d, &l, &rr, &["--admin", &admin, "--admin-linger-s", "30"]);
    exchange(&d, &file, &l, &rr, &["--drop", "3", "--seed", "2"]);
    // The feed has ended once every message is applied; the endpoint lingers for the scrape.
    let until = Instant::now() + Duration::from_secs(60);
    let text = loop {
        if let Some(t) = get(&admin, "/metrics") {
            if metric(&t, "tickcore_live_applied_total", None) == Some(50_000.0) {
                break t;
            }
        }
        assert!(
            Instant::now() < until,
            "applied never reached 50,000 on /metrics"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metric(&text, "tickcore_live_rerequests_total", None).unwrap() > 0.0);
    assert!(metric(&text, "tickcore_live_packets_total", Some("A")).unwrap() > 1000.0);
    assert_eq!(
        metric(&text, "tickcore_live_lost_messages_total", None),
        Some(0.0)
    );
    assert!(metric(&text, "tickcore_live_gap_fill_p99_ns", None).unwrap() > 0.0);
    let mut child = rx.child;
    let _ = child.kill();
    let _ = child.wait();
}

/// A signal stops a live run that is waiting for data: it drains and prints its summary.
#[test]
fn a_signal_stops_a_waiting_live_run_with_its_summary() {
    let d = dir("signal");
    let (l, rr) = (lines(2), format!("127.0.0.1:{}", port()));
    let rx = Receiver::start(&d, &l, &rr, &[]);
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(rx.child.id() as i32, libc::SIGINT) };
    let (v, _) = rx.finish();
    assert_eq!(v["stopped"], true);
    assert_eq!(live(&v)["ended"], false);
    assert_eq!(live(&v)["applied"], 0);
}

/// A live feed cannot wait for a sink: with the database down and the spool at its byte limit,
/// rows past the memory bound are dropped, counted per sink on /metrics, said in one loud line,
/// and the run exits with status 3. The books are untouched by it.
#[test]
fn a_sink_with_nowhere_to_keep_rows_counts_them_lost_on_a_live_feed_and_exits_3() {
    let d = dir("lost");
    let (file, reference) = session(&d, "200k", "5");
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let admin = admin_addr();
    let rx = Receiver::start(
        &d,
        &l,
        &rr,
        &[
            "--admin",
            &admin,
            "--linger-s",
            "30",
            "--sinks",
            "pg",
            "--pg",
            "postgres://postgres@127.0.0.1:1/nowhere",
            "--spool-max-bytes",
            "8192",
            "--sink-memory-rows",
            "500",
            "--pg-batch",
            "100",
            "--sink-finish-s",
            "1",
        ],
    );
    exchange(&d, &file, &l, &rr, &[]);
    rx.wait_for("LOSING ROWS");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let lost = get(&admin, "/metrics")
            .and_then(|t| metric_of(&t, "tickcore_sink_lost_rows_total", Some(("sink", "pg"))));
        if lost.is_some_and(|v| v > 0.0) {
            break;
        }
        assert!(Instant::now() < until, "/metrics never counted lost rows");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child process (ends the linger).
    unsafe { libc::kill(rx.child.id() as i32, libc::SIGTERM) };
    let (status, v, books, rest) = rx.end();
    assert_eq!(status.code(), Some(3), "{}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.contains("rows lost by sink: pg")),
        "{}",
        rest.join("\n")
    );
    let sink = &v["sinks"][0];
    let (lost, rows_in) = (
        sink["rows_lost"].as_u64().unwrap(),
        sink["rows_in"].as_u64().unwrap(),
    );
    assert!(lost > 0 && lost <= rows_in, "{sink}");
    assert!(sink["spool_refusals"].as_u64().unwrap() > 0, "{sink}");
    assert_eq!(sink["pushbacks"], 0, "a live feed never waits: {sink}");
    assert_eq!(live(&v)["applied"], 200_000);
    assert!(books == reference, "live books differ from book --json");
}

/// A live run with PostgreSQL and Redis SIGKILLed mid-session (after a seeded number of
/// checkpoints, the seed printed) against an exchange dropping 1% of packets, and started again
/// with --recover: it resumes after its newest checkpoint, re-requests what it missed while
/// down, follows the line to the end of the session; its books equal the file's, PostgreSQL
/// holds every trade of the file exactly once, and every Redis hash the final state.
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
fn a_live_run_killed_mid_session_recovers_to_the_file_books(#[case] seed: u64) {
    let d = dir(&format!("recover{seed}"));
    let (file, reference) = session(&d, "200k", "5");
    let events = d.join("events.txt");
    ok(
        &d,
        &[
            "run",
            "--feed",
            &format!("file:{file}"),
            "--admin",
            "off",
            "--events",
            events.to_str().unwrap(),
        ],
    );
    let (trades, match_sum) = common::trades_in_events(&events);
    let db = common::TestDb::new(&format!("live_recover{seed}"));
    let url = db.url();
    let prefix = format!("tickcore-test-recover{seed}-{}:", std::process::id());
    let _keys = common::RedisKeys(prefix.clone());
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let cap = d.join("capture.pcap");
    let every = [
        "--capture",
        cap.to_str().unwrap(),
        "--checkpoint-every-s",
        "300",
        "--shards",
        "2",
        "--pg",
        &url,
        "--session-date",
        "2026-12-06",
        "--redis",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        &prefix,
    ];
    let rx = Receiver::start(&d, &l, &rr, &every);
    let seed_text = seed.to_string();
    let ex = exchange_process(&d, &file, &l, &rr, &["--drop", "1", "--seed", &seed_text]);
    let sets = 1 + (seed * 7919 % 4) as usize;
    eprintln!("seed {seed}: SIGKILL after {sets} checkpoint set(s)");
    let until = Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeSet::new();
    let mut child = rx.child;
    // The kill also waits until a kept checkpoint set is at or before both sinks' durable
    // marks: without one, a recovery rightly starts from the beginning (rows after a sink's
    // mark may be gone with the process, and each shard keeps only its newest three sets).
    // And until the capture on disk holds a message past the newest set: the capture trails
    // the books by its writer's pass (a killed run's capture short of its checkpoint is
    // correct, the exchange is asked for the rest, but this test is about replaying it).
    let data = d.join("data");
    loop {
        // The sets are listed after `recoverable` looked: the newest it could pick is among them.
        let recoverable = common::recoverable(&data, 2, &["pg", "redis"]);
        let marks = common::whole_checkpoints(&data, 2);
        let newest = marks.iter().filter_map(|m| m.parse::<u64>().ok()).max();
        if seen.len() >= sets
            && recoverable
            && newest.is_some_and(|m| common::capture_reach(&cap) > m + 1)
        {
            break;
        }
        seen.extend(marks);
        assert!(
            Instant::now() < until,
            "seed {seed}: no {sets} checkpoints, one recoverable and the capture past the \
             newest, in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (v, books) = recovered(&d, &l, &rr, &every, ex);
    assert!(
        books == reference,
        "seed {seed}: recovered live books differ from book --json"
    );
    let resumed = v["checkpoints"]["resumed_after"].as_u64().unwrap();
    assert!(
        resumed > 0,
        "seed {seed}: resumed from a checkpoint: {}",
        v["checkpoints"]
    );
    assert_eq!(live(&v)["applied"].as_u64().unwrap(), 200_000 - resumed);
    // Its checkpoints carry the session their sequence numbers count (the recovered run
    // locks onto it).
    let newest = common::whole_checkpoints(&d.join("data"), 2).pop().unwrap();
    let f = d.join(format!("data/checkpoints/ckpt-{newest}-shard0of2.tkc"));
    let state = shards::checkpoint::decode(&std::fs::read(f).unwrap()).unwrap();
    let kept = String::from_utf8_lossy(&state.session).trim().to_string();
    assert_eq!(live(&v)["session"], kept.as_str(), "seed {seed}");
    let from_capture = live(&v)["from_capture"].as_u64().unwrap();
    eprintln!("seed {seed}: resumed after {resumed}, {from_capture} messages from the capture");
    assert!(
        from_capture > 0,
        "seed {seed}: the killed run's capture is replayed first"
    );
    let count = db.number("SELECT count(*) FROM tickcore.trades");
    assert_eq!(count, trades, "seed {seed}: trades in PostgreSQL");
    let sum = db.number("SELECT sum(match_number) FROM tickcore.trades");
    assert_eq!(sum, match_sum, "seed {seed}");
    assert!(
        common::check_redis_hashes(&prefix, &books) > 0,
        "seed {seed}: Redis hashes"
    );
    assert_eq!(live(&v)["ended"], true);
    assert_eq!(live(&v)["recovery"]["lost_messages"], 0, "{}", live(&v));
    assert!(
        live(&v)["live_again_s"].as_f64().is_some_and(|t| t > 0.0),
        "seed {seed}: the time to be live again is reported: {}",
        live(&v)
    );
}

/// A live run killed before it took any checkpoint, its capture cut mid-record by the kill as
/// it may be, recovers from the capture alone: replayed from its start up to its last whole
/// record and appended to, the rest asked of the exchange; the books equal the file's.
#[test]
fn a_live_run_killed_before_any_checkpoint_recovers_from_its_capture_alone() {
    let d = dir("capture_alone");
    let (file, reference) = session(&d, "200k", "6");
    let (l, rr) = (lines(1), format!("127.0.0.1:{}", port()));
    let cap = d.join("capture.pcap");
    let every = [
        "--capture",
        cap.to_str().unwrap(),
        "--checkpoint-every-s",
        "0",
    ];
    let rx = Receiver::start(&d, &l, &rr, &every);
    let ex = exchange_process(&d, &file, &l, &rr, &[]);
    let until = Instant::now() + Duration::from_secs(60);
    let mut child = rx.child;
    // Killed once the capture holds a good part of the session (it reaches the kernel
    // whenever the feed pauses).
    while std::fs::metadata(&cap).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(Instant::now() < until, "the capture never grew");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let len = std::fs::metadata(&cap).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&cap).unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let (v, books) = recovered(&d, &l, &rr, &every, ex);
    assert!(
        books == reference,
        "recovered live books differ from book --json"
    );
    let lv = live(&v);
    assert!(lv["from_capture"].as_u64().unwrap() > 0, "{lv}");
    assert_eq!(lv["applied"], 200_000, "{lv}");
    assert_eq!(lv["recovery"]["lost_messages"], 0, "{lv}");
    assert!(lv["live_again_s"].as_f64().is_some(), "{lv}");
    // The capture was appended to: it replays whole to the same books.
    let replay = ok(
        &d,
        &[
            "run",
            "--feed",
            &format!("pcap:{}", cap.display()),
            "--admin",
            "off",
            "--depth",
            "0",
            "--dump-books",
            d.join("replayed.json").to_str().unwrap(),
        ],
    );
    assert!(replay.status.success());
    let replayed = std::fs::read_to_string(d.join("replayed.json")).unwrap();
    assert!(
        replayed == reference,
        "the appended capture replays to the file's books"
    );
}
