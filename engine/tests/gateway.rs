//! The WebSocket gateway end to end: a real `tickcore run --ws` process, real WebSocket clients
//! on loopback. A subscriber's copy of the book, rebuilt from a snapshot and updates, must equal
//! `tickcore book` at the end; a client that does not read is cut off without anyone else
//! noticing; every bad frame gets a typed error and the connection stays open.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

fn tickcore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tickcore"));
    c.env("TICKCORE_DATA_DIR", data_dir())
        .env_remove("TICKCORE_WS_TOKEN")
        .env_remove("TICKCORE_ADMIN_TOKEN");
    c
}

fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tickcore-gateway-{}", std::process::id()))
}

/// A generated session file, made once per name.
fn session(name: &str, messages: &str, seed: &str) -> PathBuf {
    let p = data_dir().join(format!("{name}.itch50"));
    if !p.exists() {
        std::fs::create_dir_all(data_dir()).unwrap();
        let tmp = p.with_extension("tmp");
        let o = tickcore()
            .args([
                "gen",
                "--scope",
                "m7",
                "--messages",
                messages,
                "--seed",
                seed,
                "--out",
            ])
            .arg(&tmp)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(&tmp, &p).unwrap();
    }
    p
}

/// `tickcore book --json --depth 10`: symbol -> the book line.
fn final_books(input: &Path) -> HashMap<String, Value> {
    let o = tickcore()
        .args(["book", "--json", "--depth", "10", "--input"])
        .arg(input)
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["symbol"].as_str().unwrap().to_string(), v))
        .collect()
}

/// A running engine with its gateway's address.
struct Engine {
    child: Option<Child>,
    addr: String,
}

impl Engine {
    /// Starts `tickcore run ARGS --ws 127.0.0.1:0 --json` and waits for its gateway line.
    fn start(args: &[String]) -> Engine {
        Self::start_with(args, &[])
    }

    fn start_with(args: &[String], env: &[(&str, &str)]) -> Engine {
        let mut c = tickcore();
        c.arg("run")
            .args(args)
            .args(["--ws", "127.0.0.1:0", "--admin", "off", "--json"])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the engine names its gateway's address");
            if let Some(rest) = line.split("WebSocket gateway on ws://").nth(1) {
                break rest.split('/').next().unwrap().to_string();
            }
        };
        Engine {
            child: Some(child),
            addr,
        }
    }

    /// Waits for the run to end; its JSON summary.
    fn finish(mut self) -> Value {
        let o = self.child.take().unwrap().wait_with_output().unwrap();
        assert!(o.status.success(), "the run failed");
        serde_json::from_slice(&o.stdout).expect("a JSON summary")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .expect("the gateway accepts a WebSocket")
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next frame as JSON (heartbeats skipped unless `beats`); `None` once the server closed.
async fn recv(ws: &mut Ws, beats: bool) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a frame within a minute")?;
        match m {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("frames are JSON");
                if beats || v["type"] != "heartbeat" {
                    return Some(v);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A client's copy of one symbol, rebuilt from frames, with every check a client would make.
#[derive(Default)]
struct Copy {
    bids: Vec<(String, u64)>,
    asks: Vec<(String, u64)>,
    seqs: HashMap<String, u64>,
    bbo: Option<Value>,
    trades: Vec<u64>,
}

fn px(s: &str) -> u64 {
    let (i, f) = s.split_once('.').unwrap();
    i.parse::<u64>().unwrap() * 10_000 + f.parse::<u64>().unwrap()
}

impl Copy {
    fn take(&mut self, f: &Value) {
        let channel = f["channel"].as_str().unwrap().to_string();
        // A stream's first frame sets where it stands; then its number goes up by exactly one,
        // or, on a frame that says it folds updates, by more.
        let seq = f["seq"].as_u64().unwrap();
        if let Some(last) = self.seqs.insert(channel.clone(), seq) {
            match f["conflated"].as_bool() {
                Some(true) => assert!(seq > last + 1, "{channel}: a fold skips: {f}"),
                _ => assert_eq!(seq, last + 1, "{channel}: seq goes up by exactly one: {f}"),
            }
        }
        match f["type"].as_str().unwrap() {
            "snapshot" | "update" => self.depth(f),
            "bbo" => self.bbo = Some(f.clone()),
            "trade" => self.trades.push(f["match"].as_u64().unwrap()),
            t => panic!("unexpected frame type {t}: {f}"),
        }
    }

    fn depth(&mut self, f: &Value) {
        if f["type"] == "snapshot" {
            self.bids.clear();
            self.asks.clear();
        }
        for (side, key, desc) in [
            (&mut self.bids, "bids", true),
            (&mut self.asks, "asks", false),
        ] {
            for l in f[key].as_array().unwrap() {
                let (p, q) = (l[0].as_str().unwrap().to_string(), l[1].as_u64().unwrap());
                side.retain(|(x, _)| *x != p);
                if q > 0 {
                    side.push((p, q));
                }
            }
            side.sort_by_key(|(p, _)| px(p));
            if desc {
                side.reverse();
            }
        }
        let text = |s: &[(String, u64)]| {
            s.iter()
                .map(|(p, q)| format!("{p}:{q}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let crc = crc32fast::hash(format!("{}|{}", text(&self.bids), text(&self.asks)).as_bytes());
        assert_eq!(
            f["crc32"].as_u64(),
            Some(crc as u64),
            "the copy checks out: {f}"
        );
    }
}

fn levels(book: &Value, side: &str) -> Vec<(String, u64)> {
    book[side]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["px"].as_str().unwrap().to_string(),
                l["qty"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The trades of `locate` in an event file, by match number, in order.
fn trades_of(events: &Path, locate: u64) -> Vec<u64> {
    std::fs::read_to_string(events)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("T "))
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .filter(|f| f[2].parse::<u64>().unwrap() == locate)
        .map(|f| f[4].parse().unwrap())
        .collect()
}

/// Whitespace-separated arguments.
fn args(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// Subscribes to trades, bbo and depth:10 of every symbol (`*`); reads until the server closes.
/// With `arrived`, says once when every copy's depth equals its final book.
async fn follow(
    addr: &str,
    arrived: Option<(&HashMap<String, Value>, tokio::sync::oneshot::Sender<()>)>,
) -> HashMap<String, Copy> {
    follow_channels(addr, &["trades", "bbo", "depth:10"], arrived).await
}

/// Subscribes to `channels` of every symbol; reads until the server closes.
async fn follow_channels(
    addr: &str,
    channels: &[&str],
    mut arrived: Option<(&HashMap<String, Value>, tokio::sync::oneshot::Sender<()>)>,
) -> HashMap<String, Copy> {
    let mut ws = connect(addr).await;
    let sub = json!({"op":"subscribe","id":7,"channels":channels,"symbols":["*"]});
    send(&mut ws, sub).await;
    let ack = recv(&mut ws, false).await.unwrap();
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_u64()),
        (Some("ack"), Some(7)),
        "{ack}"
    );
    for c in channels {
        assert_eq!(ack["subscription"][c], json!(["*"]), "{ack}");
    }
    let mut copies: HashMap<String, Copy> = HashMap::new();
    while let Some(f) = recv(&mut ws, false).await {
        // Every frame but a heartbeat names its symbol; anything else (an error: this client
        // cut off as slow) fails here, saying what came.
        let Some(sym) = f["symbol"].as_str().map(str::to_string) else {
            panic!("the following client got a frame with no symbol: {f}");
        };
        copies.entry(sym).or_default().take(&f);
        if arrived
            .as_ref()
            .is_some_and(|(b, _)| at_the_end(&copies, b))
        {
            let _ = arrived.take().unwrap().1.send(());
        }
    }
    copies
}

/// Whether every copy's depth equals its final book.
fn at_the_end(copies: &HashMap<String, Copy>, books: &HashMap<String, Value>) -> bool {
    books.iter().all(|(sym, b)| match copies.get(sym) {
        Some(c) => c.bids == levels(b, "bids") && c.asks == levels(b, "asks"),
        None => b["bids"].as_array().unwrap().is_empty(),
    })
}

/// The listed symbols, once the feed has named them. Asks 16 times a second, under the
/// connection's request limit (20 a second): asked every 20 ms, a loaded machine that took over
/// a second to list them had the asking refused (a test failed so, 2026-12-07).
async fn symbols(addr: &str, want: usize) -> Vec<String> {
    let mut ws = connect(addr).await;
    loop {
        send(&mut ws, json!({"op":"list","id":1})).await;
        let f = recv(&mut ws, false).await.unwrap();
        let s: Vec<String> = serde_json::from_value(f["symbols"].clone())
            .unwrap_or_else(|e| panic!("expected the list of symbols, got {f} ({e})"));
        if s.len() >= want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// Every copy equals its final book and holds every trade of its instrument exactly once, in
/// order (the client subscribed before the feed started: `--ws-wait-clients`).
fn check_against_book(
    copies: &HashMap<String, Copy>,
    books: &HashMap<String, Value>,
    events: &Path,
) {
    check_trades_and_bbo(copies, books, events);
    for (sym, c) in copies {
        let b = &books[sym];
        assert_eq!(
            c.bids,
            levels(b, "bids"),
            "{sym}: bids equal `tickcore book`"
        );
        assert_eq!(
            c.asks,
            levels(b, "asks"),
            "{sym}: asks equal `tickcore book`"
        );
    }
}

/// Every copy's last BBO is its final book's top, and it holds every trade of its instrument
/// exactly once, in order.
fn check_trades_and_bbo(
    copies: &HashMap<String, Copy>,
    books: &HashMap<String, Value>,
    events: &Path,
) {
    let quoted = books
        .values()
        .filter(|b| !b["bids"].as_array().unwrap().is_empty());
    assert_eq!(
        copies.len(),
        quoted.count(),
        "a copy of every quoted instrument"
    );
    for (sym, c) in copies {
        let b = &books[sym];
        let bbo = c.bbo.as_ref().expect("a BBO arrived");
        assert_eq!(
            bbo["bid"]["px"].as_str(),
            b["bids"][0]["px"].as_str(),
            "{sym}"
        );
        assert_eq!(
            bbo["ask"]["qty"].as_u64(),
            b["asks"][0]["qty"].as_u64(),
            "{sym}"
        );
        let all = trades_of(events, b["locate"].as_u64().unwrap());
        assert!(!all.is_empty(), "{sym}: the session trades it");
        assert!(
            c.trades == all,
            "{sym}: every trade exactly once, in order ({} received, {} in the run's events)",
            c.trades.len(),
            all.len()
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_subscriber_rebuilds_the_final_book_from_a_snapshot_and_updates() {
    let input = session("follow", "300k", "11");
    let books = final_books(&input);
    let events = data_dir().join("follow.events");
    let mut a = args("--speed 300000/s --linger-s 1 --ws-wait-clients 3");
    a.extend([
        format!("--feed=file:{}", input.display()),
        format!("--events={}", events.display()),
    ]);
    let engine = Engine::start(&a);
    // Two clients of every symbol's trades and BBO alone: the gateway serves them shared runs
    // of the log (`gateway::runs`), and both must still get every trade once and the last BBO.
    let (copies, plain, plain2) = tokio::join!(
        follow(&engine.addr, None),
        follow_channels(&engine.addr, &["trades", "bbo"], None),
        follow_channels(&engine.addr, &["trades", "bbo"], None)
    );
    let summary = tokio::task::spawn_blocking(move || engine.finish())
        .await
        .unwrap();
    check_against_book(&copies, &books, &events);
    check_trades_and_bbo(&plain, &books, &events);
    check_trades_and_bbo(&plain2, &books, &events);
    let g = &summary["gateway"];
    assert_eq!(
        (g["slow_closed"].as_u64(), g["errors"].as_u64()),
        (Some(0), Some(0)),
        "{g}"
    );
    assert!(g["frames"].as_u64().unwrap() > 100, "{g}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_does_not_read_is_cut_off_and_no_one_else_notices() {
    let input = session("slow", "300k", "12");
    let books = final_books(&input);
    let events = data_dir().join("slow.events");
    // 4,096 frames: the reader that does not read overflows them (20k trades and bars, past
    // about 1,400 frames in the kernel's buffers), while the one that reads rides out 0.4 s
    // without a turn (1,024 cut it off in CI once, while builds ran beside it).
    let mut a = args("--speed 300000/s --linger-s 3 --ws-queue-frames 4096 --ws-wait-clients 2");
    a.extend([
        format!("--feed=file:{}", input.display()),
        format!("--events={}", events.display()),
    ]);
    let engine = Engine::start(&a);
    // A socket with a tiny receive window, so the server's writes stall at once.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let sa: std::net::SocketAddr = engine.addr.parse().unwrap();
    sock.connect(&sa.into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(sock.into()).unwrap();
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let url = format!("ws://{}/", engine.addr);
    let (mut slow, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let all =
        json!({"op":"subscribe","channels":["trades","bbo","bars","depth:10"],"symbols":["*"]});
    send(&mut slow, all).await;
    // It reads only once the other client has the final books: by then it has long overflowed.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let late = async {
        rx.await.expect("the other client reached the final books");
        let mut last = None;
        while let Some(f) = recv(&mut slow, false).await {
            last = Some(f);
        }
        last
    };
    let (copies, last) = tokio::join!(follow(&engine.addr, Some((&books, tx))), late);
    let summary = tokio::task::spawn_blocking(move || engine.finish())
        .await
        .unwrap();
    check_against_book(&copies, &books, &events);
    let g = &summary["gateway"];
    assert_eq!(g["slow_closed"].as_u64(), Some(1), "{g}");
    assert!(
        g["conflated"].as_u64().unwrap() > 0,
        "updates conflated before the cut: {g}"
    );
    // What it did receive ends with the reason (the close follows it).
    let last = last.expect("the slow client got frames before the cut");
    let got = (last["type"].as_str(), last["code"].as_str());
    assert_eq!(got, (Some("error"), Some("slow_consumer")), "{last}");
}

/// A short paced replay, its gateway lingering `linger` seconds, with `more` arguments.
fn short_run(linger: u32, more: &str) -> Engine {
    let a = args(&format!(
        "--feed gen:m7:20k:3 --speed 10000/s --linger-s {linger} {more}"
    ));
    Engine::start(&a)
}

#[rstest::rstest]
#[case::not_json(Message::text("{\"op\":"), "bad_json")]
#[case::unknown_op(Message::text(r#"{"op":"buy","id":3}"#), "unknown_op")]
#[case::missing_symbols(
    Message::text(r#"{"op":"subscribe","channels":["bbo"]}"#),
    "bad_request"
)]
#[case::unknown_channel(
    Message::text(r#"{"op":"subscribe","channels":["news"],"symbols":["*"]}"#),
    "unknown_channel"
)]
#[case::unknown_symbol(
    Message::text(r#"{"op":"subscribe","channels":["bbo"],"symbols":["NOPE"]}"#),
    "unknown_symbol"
)]
#[case::binary(Message::binary(vec![1u8, 2, 3]), "binary_frame")]
#[tokio::test(flavor = "current_thread")]
async fn a_bad_frame_gets_a_typed_error_and_the_connection_stays_open(
    #[case] bad: Message,
    #[case] code: &str,
) {
    let engine = short_run(1, "");
    let mut ws = connect(&engine.addr).await;
    symbols(&engine.addr, 7).await;
    ws.send(bad).await.unwrap();
    let e = recv(&mut ws, false).await.unwrap();
    let got = (e["type"].as_str(), e["code"].as_str());
    assert_eq!(got, (Some("error"), Some(code)), "{e}");
    assert!(!e["msg"].as_str().unwrap().is_empty());
    if code == "unknown_symbol" {
        assert_eq!(
            e["known"].as_array().unwrap().len(),
            7,
            "lists what exists: {e}"
        );
    }
    send(&mut ws, json!({"op":"ping","id":9})).await;
    let p = recv(&mut ws, false).await.unwrap();
    assert_eq!(
        (p["type"].as_str(), p["id"].as_u64()),
        (Some("pong"), Some(9)),
        "still open"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversized_frame_gets_its_reason_and_a_1009_close() {
    let engine = short_run(1, "");
    let mut ws = connect(&engine.addr).await;
    ws.send(Message::text("x".repeat(100_000))).await.unwrap();
    let e = recv(&mut ws, false).await.unwrap();
    assert_eq!(e["code"], "too_large", "{e}");
    let close = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap();
    match close {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(u16::from(f.code), 1009),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

/// Control frames from a client are answered on the socket the data frames use: a WebSocket
/// ping gets its pong (with the same payload) between whole frames, and a close the client
/// begins gets its close back.
#[tokio::test(flavor = "current_thread")]
async fn a_ping_gets_its_pong_and_a_close_its_close() {
    let engine = short_run(1, "");
    let mut ws = connect(&engine.addr).await;
    symbols(&engine.addr, 7).await;
    send(
        &mut ws,
        json!({"op":"subscribe","id":1,"channels":["trades","bbo"],"symbols":["*"]}),
    )
    .await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s");
        match m {
            Some(Ok(Message::Pong(p))) => break p,
            Some(Ok(Message::Text(t))) => {
                serde_json::from_str::<Value>(t.as_str()).expect("whole JSON frames around it");
            }
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"are you there");
    ws.close(None).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the close answered within 10 s");
    assert!(
        matches!(end, Some(Ok(Message::Close(_)))),
        "the close echoed: {end:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn naming_more_symbols_than_the_limit_is_refused() {
    let engine = short_run(1, "--ws-symbols 2");
    let all = symbols(&engine.addr, 7).await;
    let mut ws = connect(&engine.addr).await;
    send(
        &mut ws,
        json!({"op":"subscribe","id":1,"channels":["bbo"],"symbols":&all[..3]}),
    )
    .await;
    let e = recv(&mut ws, false).await.unwrap();
    let got = (e["code"].as_str(), e["id"].as_u64());
    assert_eq!(got, (Some("too_many_symbols"), Some(1)), "{e}");
    send(
        &mut ws,
        json!({"op":"subscribe","id":2,"channels":["bbo"],"symbols":&all[..2]}),
    )
    .await;
    let a = recv(&mut ws, false).await.unwrap();
    assert_eq!(
        (a["type"].as_str(), a["id"].as_u64()),
        (Some("ack"), Some(2)),
        "{a}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_idle_connection_gets_a_heartbeat_every_second() {
    let engine = short_run(4, "");
    let mut ws = connect(&engine.addr).await;
    let started = std::time::Instant::now();
    let f = recv(&mut ws, true).await.unwrap();
    assert_eq!(f["type"], "heartbeat", "{f}");
    let g = recv(&mut ws, true).await.unwrap();
    assert_eq!(g["type"], "heartbeat", "{g}");
    assert!(g["ts"].as_u64() >= f["ts"].as_u64());
    // Two beats take about two seconds; a generous bound that still fails on a flood.
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn with_a_token_set_a_client_must_send_it() {
    let a = args("--feed gen:m7:20k:3 --speed 10000/s --linger-s 2");
    let engine = Engine::start_with(&a, &[("TICKCORE_WS_TOKEN", "s3cret")]);
    for query in ["", "?token=guess"] {
        let url = format!("ws://{}/{query}", engine.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => panic!("{query}: expected 401, got {other:?}"),
        }
    }
    let url = format!("ws://{}/?token=s3cret", engine.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the token lets it in");
    send(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(recv(&mut ws, false).await.unwrap()["type"], "pong");
}
