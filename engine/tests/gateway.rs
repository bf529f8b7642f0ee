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
    fn start(args: &[&str]) -> Engine {
        Self::start_with(args, &[])
    }

    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Engine {
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
        let seq = f["seq"].as_u64().unwrap();
        let last = self.seqs.insert(channel.clone(), seq).unwrap_or(0);
        assert_eq!(seq, last + 1, "{channel}: seq goes up by exactly one: {f}");
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

/// Subscribes to trades, bbo and depth:10 of `symbols`; reads until the server closes.
async fn follow(addr: &str, symbols: &[String]) -> HashMap<String, Copy> {
    let mut ws = connect(addr).await;
    let sub =
        json!({"op":"subscribe","id":7,"channels":["trades","bbo","depth:10"],"symbols":symbols});
    send(&mut ws, sub).await;
    let ack = recv(&mut ws, false).await.unwrap();
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_u64()),
        (Some("ack"), Some(7)),
        "{ack}"
    );
    assert_eq!(
        ack["subscription"]["depth:10"].as_array().unwrap().len(),
        symbols.len()
    );
    let mut copies: HashMap<String, Copy> = HashMap::new();
    while let Some(f) = recv(&mut ws, false).await {
        let sym = f["symbol"].as_str().unwrap().to_string();
        copies.entry(sym).or_default().take(&f);
    }
    copies
}

/// The listed symbols, once the feed has named them.
async fn symbols(addr: &str, want: usize) -> Vec<String> {
    let mut ws = connect(addr).await;
    loop {
        send(&mut ws, json!({"op":"list","id":1})).await;
        let f = recv(&mut ws, false).await.unwrap();
        let s: Vec<String> = serde_json::from_value(f["symbols"].clone()).unwrap();
        if s.len() >= want {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn check_against_book(
    copies: &HashMap<String, Copy>,
    books: &HashMap<String, Value>,
    events: &Path,
) {
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
        assert!(!c.trades.is_empty(), "{sym}: trades arrived");
        assert!(
            all.ends_with(&c.trades),
            "{sym}: the trades received are every trade from the subscription on, in order \
             ({} of {})",
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
    let feed = format!("file:{}", input.display());
    let ev = events.display().to_string();
    let engine = Engine::start(&[
        "--feed",
        &feed,
        "--speed",
        "300000/s",
        "--events",
        &ev,
        "--linger-s",
        "1",
    ]);
    let syms: Vec<String> = symbols(&engine.addr, 7).await.into_iter().take(2).collect();
    let copies = follow(&engine.addr, &syms).await;
    assert_eq!(copies.len(), 2);
    let summary = tokio::task::spawn_blocking(move || engine.finish())
        .await
        .unwrap();
    check_against_book(&copies, &books, &events);
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
    let feed = format!("file:{}", input.display());
    let ev = events.display().to_string();
    let engine = Engine::start(&[
        "--feed",
        &feed,
        "--speed",
        "300000/s",
        "--events",
        &ev,
        "--linger-s",
        "1",
        "--ws-queue-frames",
        "64",
    ]);
    let syms = symbols(&engine.addr, 7).await;
    // A socket with a tiny receive window, so the server's writes stall at once.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let sa: std::net::SocketAddr = engine.addr.parse().unwrap();
    sock.connect(&sa.into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(sock.into()).unwrap();
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (mut slow, _) = tokio_tungstenite::client_async(format!("ws://{}/", engine.addr), tcp)
        .await
        .unwrap();
    let all =
        json!({"op":"subscribe","channels":["trades","bbo","bars","depth:10"],"symbols":["*"]});
    send(&mut slow, all).await;
    let copies = follow(&engine.addr, &syms[..1]).await;
    let summary = tokio::task::spawn_blocking(move || engine.finish())
        .await
        .unwrap();
    check_against_book(&copies, &books, &events);
    assert_eq!(
        summary["gateway"]["slow_closed"].as_u64(),
        Some(1),
        "{}",
        summary["gateway"]
    );
    // What it did receive ends with the reason, then the close.
    let mut last = None;
    while let Some(f) = recv(&mut slow, false).await {
        last = Some(f);
    }
    let last = last.expect("the slow client got frames before the cut");
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("error"), Some("slow_consumer")),
        "{last}"
    );
    drop(slow);
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
    let engine = Engine::start(&[
        "--feed",
        "gen:m7:20k:3",
        "--speed",
        "10000/s",
        "--linger-s",
        "1",
    ]);
    let mut ws = connect(&engine.addr).await;
    symbols(&engine.addr, 7).await;
    ws.send(bad).await.unwrap();
    let e = recv(&mut ws, false).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some(code)),
        "{e}"
    );
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
async fn an_idle_connection_gets_a_heartbeat_every_second() {
    let engine = Engine::start(&[
        "--feed",
        "gen:m7:20k:3",
        "--speed",
        "10000/s",
        "--linger-s",
        "4",
    ]);
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
    let engine = Engine::start_with(
        &[
            "--feed",
            "gen:m7:20k:3",
            "--speed",
            "10000/s",
            "--linger-s",
            "2",
        ],
        &[("TICKCORE_WS_TOKEN", "s3cret")],
    );
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/", engine.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/?token=s3cret", engine.addr))
            .await
            .expect("the token lets it in");
    send(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(recv(&mut ws, false).await.unwrap()["type"], "pong");
}
