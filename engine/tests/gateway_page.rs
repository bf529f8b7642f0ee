//! The gateway's live page in a real headless Chromium (Debian's package; `scripts/services`
//! installs it): after a replay, the best bid and ask the page shows must equal the engine's
//! final book, and a screenshot goes to `build_data/screenshots/` for people to look at.
//!
//! Chromium is driven over the DevTools protocol (a WebSocket, read with the same client crate
//! the gateway's tests use): evaluate a read of the page's DOM until it shows the final book,
//! then capture the screen.

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tickcore-page-{}", std::process::id()))
}

fn tickcore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tickcore"));
    c.env("TICKCORE_DATA_DIR", data_dir())
        .env_remove("TICKCORE_WS_TOKEN");
    c
}

/// Kills the process when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the engine on `input` with the gateway on a free port; its address. The feed waits
/// for one subscriber (the test's own, once the page is up) and takes 4 s, so the page sees
/// trades live whatever the machine's load.
fn engine(input: &std::path::Path) -> (Killed, String) {
    let mut child = tickcore()
        .args([
            "run",
            "--speed",
            "50000/s",
            "--ws-wait-clients",
            "1",
            "--ws",
            "127.0.0.1:0",
            "--admin",
            "off",
        ])
        .args(["--linger-s", "120", "--feed"])
        .arg(format!("file:{}", input.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the engine names its gateway").unwrap();
        if let Some(rest) = line.split("WebSocket gateway on ws://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Killed(child), addr)
}

/// Starts headless Chromium on `url` with DevTools on a free port; the port.
fn chromium(url: &str, profile: &std::path::Path) -> (Killed, u16) {
    let child = Killed(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,860",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium runs (scripts/services installs Debian's package)"),
    );
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok())
        {
            return (child, port);
        }
        assert!(
            Instant::now() < deadline,
            "Chromium opened no DevTools port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The DevTools WebSocket of the page Chromium opened.
fn page_target(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http_get(&format!("127.0.0.1:{port}"), "/json/list");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("[]");
        let targets: Vec<Value> = serde_json::from_str(body).unwrap_or_default();
        if let Some(t) = targets.iter().find(|t| t["type"] == "page") {
            return t["webSocketDebuggerUrl"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no page target: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools call: its result.
async fn call(ws: &mut Ws, id: u64, method: &str, params: Value) -> Value {
    let m = json!({"id": id, "method": method, "params": params});
    ws.send(Message::text(m.to_string())).await.unwrap();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("DevTools answers")
            .unwrap()
            .unwrap();
        let Message::Text(t) = f else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["id"] == id {
            return v["result"].clone();
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_live_page_shows_the_engines_final_book_in_a_real_browser() {
    std::fs::create_dir_all(data_dir()).unwrap();
    let input = data_dir().join("page.itch50");
    let o = tickcore()
        .args([
            "gen",
            "--scope",
            "m7",
            "--messages",
            "200k",
            "--seed",
            "21",
            "--out",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = tickcore()
        .args(["book", "--json", "--depth", "1", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let first: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    let symbol = first["symbol"].as_str().unwrap().to_string();
    let want = (
        first["bids"][0]["px"].as_str().unwrap().to_string(),
        first["asks"][0]["px"].as_str().unwrap().to_string(),
    );

    let (_engine, addr) = engine(&input);
    let page = http_get(&addr, "/");
    assert!(page.contains("tickcore live book"), "GET / serves the page");
    let profile = data_dir().join("chromium-profile");
    let (_browser, port) = chromium(&format!("http://{addr}/?symbol={symbol}"), &profile);
    let (mut ws, _) = tokio_tungstenite::connect_async(page_target(port))
        .await
        .unwrap();
    let read = "JSON.stringify({state: document.body.dataset.state, \
                bid: document.getElementById('best-bid').textContent, \
                ask: document.getElementById('best-ask').textContent, \
                rows: document.querySelectorAll('#ladder tbody tr').length, \
                trades: document.querySelectorAll('#trades tbody tr').length, \
                status: document.getElementById('status').textContent})";
    // The page is connected and waiting for the feed to name its instruments: start the feed.
    let mut id = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        id += 1;
        let args = json!({"expression": read, "returnByValue": true});
        let r = call(&mut ws, id, "Runtime.evaluate", args).await;
        if r["result"]["value"]
            .as_str()
            .unwrap_or("")
            .contains("no symbols in the feed yet")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the page never connected: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut starter, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    let all = json!({"op":"subscribe","channels":["bbo"],"symbols":["*"]});
    starter.send(Message::text(all.to_string())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let shown = loop {
        id += 1;
        let r = call(
            &mut ws,
            id,
            "Runtime.evaluate",
            json!({"expression": read, "returnByValue": true}),
        )
        .await;
        let v: Value =
            serde_json::from_str(r["result"]["value"].as_str().unwrap_or("{}")).unwrap_or_default();
        let got = (
            v["bid"].as_str().unwrap_or("").to_string(),
            v["ask"].as_str().unwrap_or("").to_string(),
        );
        if got == want && v["state"] == "live" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows {v}, the engine's final book {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        shown["rows"].as_u64().unwrap() >= 3,
        "the ladder has levels: {shown}"
    );
    assert!(
        shown["trades"].as_u64().unwrap() >= 1,
        "trades are listed: {shown}"
    );
    id += 1;
    let shot = call(
        &mut ws,
        id,
        "Page.captureScreenshot",
        json!({"format": "png"}),
    )
    .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build_data/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("live-page.png"), png).unwrap();
}

/// A plain HTTP/1.1 GET over a TCP socket: the whole answer, read up to its Content-Length
/// (Chromium's DevTools server neither answers HTTP/1.0 nor closes after an answer).
fn http_get(addr: &str, path: &str) -> String {
    // A server still starting may reset the connection: the caller retries on an empty answer.
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|n| body.len() >= n) {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}
