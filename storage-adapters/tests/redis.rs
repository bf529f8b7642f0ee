//! The Redis sink across a server restart, against a private `redis-server` this test starts on
//! a port of its own (so the shared server on 6379 is never disturbed). Like the machine's Redis
//! it keeps nothing on disk: a restart comes back empty, and the sink must write every
//! instrument's hash again, including instruments that change no more after the restart.

use shards::events::{InstrumentState, Quote};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use storage_adapters::adapter::{Connect, Sink};
use storage_adapters::redis::RedisConnect;
use storage_adapters::rows::{RowBatch, StateRow};

/// A private Redis server, killed when dropped.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start(port: u16) -> Server {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let s = Server { port, child };
        let t = Instant::now();
        while s.cli(&["ping"]) != "PONG" {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }
    fn cli(&self, args: &[&str]) -> String {
        let o = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state(locate: u16, symbol: &[u8; 8], trades: u64) -> StateRow {
    StateRow {
        symbol: *symbol,
        state: InstrumentState {
            locate,
            timestamp: 34_200_000_000_000 + trades,
            bid: Quote {
                price: 1_000_000,
                shares: 100,
                orders: 1,
            },
            ask: Quote {
                price: 1_000_100,
                shares: 200,
                orders: 2,
            },
            last_price: 1_000_000,
            last_shares: 10,
            trades,
            volume: trades * 10,
            notional: trades as u128 * 10 * 1_000_000,
            pad: [0; 10],
        },
    }
}

fn batch(states: Vec<StateRow>) -> RowBatch {
    RowBatch {
        states,
        ..Default::default()
    }
}

#[test]
fn a_restarted_empty_server_gets_every_hash_back() {
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let connect = RedisConnect {
        url: format!("redis://127.0.0.1:{port}"),
        password: None,
        prefix: "t:".into(),
        stream_cap: 100,
        memory: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = Server::start(port);
    rt.block_on(async {
        let mut sink = connect.connect().await.unwrap();
        let first = batch(vec![state(1, b"AAPL    ", 5), state(2, b"MSFT    ", 7)]);
        sink.write(&first).await.unwrap();
    });
    assert_eq!(server.cli(&["hget", "t:MSFT", "trades"]), "7");
    drop(server);
    let server = Server::start(port);
    assert_eq!(
        server.cli(&["exists", "t:MSFT"]),
        "0",
        "the restart emptied it"
    );
    rt.block_on(async {
        // Only AAPL changes after the restart; MSFT must come back from the sink's memory.
        let mut sink = connect.connect().await.unwrap();
        sink.write(&batch(vec![state(1, b"AAPL    ", 6)]))
            .await
            .unwrap();
    });
    assert_eq!(server.cli(&["hget", "t:MSFT", "trades"]), "7");
    assert_eq!(server.cli(&["hget", "t:AAPL", "trades"]), "6");
    assert_eq!(connect.restores(), 1);
    // Reconnecting to the same server is not a restart.
    rt.block_on(async { connect.connect().await.unwrap() });
    assert_eq!(connect.restores(), 1);
}
