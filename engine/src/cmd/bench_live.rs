//! `tickcore bench --live`: an exchange simulator on a thread of this process serves the
//! generated session over MoldUDP64 on loopback, and the engine receives it.
//!
//! Owns the pairing: free loopback ports, the shared start time (the receiver sets it as it
//! starts pumping, the exchange waits for it), so each message's send time is known to the
//! receiver and e2e counts from the exchange, not from arrival.

use crate::cli::BenchArgs;
use crate::error::{Failure, Result};
use crate::exchange::{self, faults::Faults, history::History, ExchangeConfig, ExchangeReport};
use crate::live::source::{LiveConfig, LiveReport, MoldSource, Paced};
use crate::net::Endpoint;
use crate::runtime::clock;
use crate::runtime::ingress::Speed;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A CPU for the exchange thread: one the feed and the shards do not use; else the feed's
/// CPU, with a note. The feed's thread yields whenever nothing has arrived, so the exchange
/// beside it gets the CPU exactly when there is nothing to receive; a shard spins instead.
fn exchange_cpu(cfg: &crate::config::Config) -> usize {
    let used: Vec<usize> = std::iter::once(cfg.feed_cpu.value)
        .chain((0..cfg.shards.value).map(|i| cfg.shard_cpu(i)))
        .collect();
    let n = crate::config::machine_cpus();
    match (0..n).rev().find(|c| !used.contains(c)) {
        Some(c) => c,
        None => {
            eprintln!(
                "tickcore bench: no CPU is free for the exchange: it shares CPU {} with the feed's thread and its waits show in e2e (give it one: --shard-cpus via TICKCORE_SHARD_CPUS=0 on a 2-CPU machine, then --exchange-cpu 1)",
                cfg.feed_cpu.value
            );
            cfg.feed_cpu.value
        }
    }
}

/// The exchange thread and what the receiver needs to meet it.
pub struct LiveBench {
    cfg: LiveConfig,
    exchange: std::thread::JoinHandle<std::io::Result<ExchangeReport>>,
    stop: Arc<AtomicBool>,
}

fn free_port() -> Result<u16> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| Failure::new(format!("bench --live: no free loopback port: {e}")))
}

impl LiveBench {
    /// Starts the exchange thread; it sends once the receiver sets the start time.
    pub fn start(
        a: &BenchArgs,
        offered: Option<f64>,
        bytes: Vec<u8>,
        cfg: &crate::config::Config,
    ) -> Result<LiveBench> {
        let cpu = a.exchange_cpu.unwrap_or_else(|| exchange_cpu(cfg));
        let lines = (0..a.live_lines)
            .map(|_| free_port().map(Endpoint::loopback))
            .collect::<Result<Vec<_>>>()?;
        let rerequest = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()?).into();
        let start_ns = Arc::new(AtomicU64::new(0));
        let history = History::new(bytes, None).map_err(|e| Failure::new(e.to_string()))?;
        let sent_ns: Arc<[AtomicU64]> = (0..history.len()).map(|_| AtomicU64::new(0)).collect();
        let x = ExchangeConfig {
            lines: lines.clone(),
            rerequest,
            session: shards::mold::Session::parse("BENCH").map_err(Failure::new)?,
            speed: offered.map_or(Speed::Max, Speed::Rate),
            faults: Faults {
                drop: a.drop,
                ..Faults::default()
            },
            seed: a.seed,
            linger: std::time::Duration::from_secs(2),
            max_payload: shards::mold::DEFAULT_MAX_PAYLOAD,
            heartbeat: std::time::Duration::from_secs(1),
            start: None,
            sent_ns: Some(Arc::clone(&sent_ns)),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (go, st) = (Arc::clone(&start_ns), Arc::clone(&stop));
        let exchange = std::thread::Builder::new()
            .name("exchange".into())
            .spawn(move || {
                crate::runtime::pin(cpu);
                let mut x = x;
                while go.load(Ordering::Acquire) == 0 && !st.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                x.start = Some(clock::instant_at(go.load(Ordering::Acquire)));
                exchange::run(&x, Arc::new(history), &st, |_| {})
            })
            .map_err(|e| Failure::new(format!("cannot start the exchange thread: {e}")))?;
        let cfg = LiveConfig {
            lines,
            rerequest,
            arbiter: Default::default(),
            rcvbuf: 64 << 20,
            capture: a.live_capture.then(|| {
                let dir = crate::paths::bench();
                let _ = std::fs::create_dir_all(&dir);
                dir.join("live-capture.pcap")
            }),
            resume_capture: false,
            paced: Some(Paced { start_ns, sent_ns }),
        };
        Ok(LiveBench {
            cfg,
            exchange,
            stop,
        })
    }

    /// The receiver, bound now.
    pub fn source(&self) -> Result<MoldSource> {
        MoldSource::open(self.cfg.clone()).map_err(Failure::new)
    }

    /// Stops the exchange (its linger) and returns both sides' reports.
    pub fn finish(self, m: &MoldSource) -> Result<(Option<LiveReport>, ExchangeReport)> {
        self.stop.store(true, Ordering::Relaxed);
        let ex = self
            .exchange
            .join()
            .map_err(|_| Failure::new("the exchange thread panicked (a bug)"))?
            .map_err(|e| Failure::new(format!("bench --live: the exchange failed: {e}")))?;
        Ok((m.report(), ex))
    }
}
