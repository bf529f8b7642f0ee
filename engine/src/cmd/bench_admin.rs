//! `tickcore bench --admin-idle N`: the admin endpoint under the load that anything local can
//! put on it while the feed runs. N connections are held open without a request; each is
//! opened again when the endpoint cuts it off at its head timeout. `/metrics` is scraped every
//! [`SCRAPE_EVERY`], and each scrape is timed. The replay's own figures then say what the feed
//! pays for the endpoint beside it, and these say how the endpoint answers.
//!
//! The first scrape waits for the endpoint to start serving (the engine sets up first) and is
//! not timed; a connection refused, or closed with no answer, means the run has ended and the
//! endpoint with it, and both threads stop there.
//!
//! Owns the two client threads. They sleep between steps, on the endpoint's CPU at its nice
//! value: they stand for other local processes, and must not outrank what they load. Never
//! touches the engine: everything goes through the socket.

use crate::error::{Failure, Result};
use hdrhistogram::Histogram;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often `/metrics` is scraped (a Prometheus at 50 Hz; real ones scrape every 1-15 s).
pub const SCRAPE_EVERY: Duration = Duration::from_millis(20);
/// How often the holder looks for connections the endpoint closed.
const HOLD_CHECK: Duration = Duration::from_millis(250);
/// A scrape that takes longer than this counts as failed.
const SCRAPE_PATIENCE: Duration = Duration::from_secs(3);
/// How long the first scrape waits for the endpoint to serve (shards reserve and touch their
/// memory first).
const SETUP_PATIENCE: Duration = Duration::from_secs(60);

/// The running clients.
pub struct AdminLoad {
    stop: Arc<AtomicBool>,
    holder: std::thread::JoinHandle<u64>,
    scraper: std::thread::JoinHandle<Scrapes>,
    idle: usize,
}

/// What the scraper saw.
struct Scrapes {
    latency: Histogram<u64>,
    failed: u64,
    last_error: Option<String>,
}

/// What the load did and saw.
pub struct AdminLoadReport {
    /// Connections held open.
    pub idle: usize,
    /// Held connections opened again after the endpoint closed them.
    pub reopened: u64,
    /// Each answered scrape's time, connect to the end of the body, ns.
    pub latency: Histogram<u64>,
    /// Scrapes that failed (no answer in time, not a 200, refused).
    pub failed: u64,
    /// Why the last one failed.
    pub last_error: Option<String>,
}

impl AdminLoad {
    /// Opens `idle` connections to `addr` and starts scraping it, from threads on `cpu`.
    pub fn start(addr: SocketAddr, idle: usize, cpu: usize) -> Result<AdminLoad> {
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = Arc::clone(&stop);
        let holder = std::thread::Builder::new()
            .name("admin-idle".into())
            .spawn(move || {
                beside(cpu);
                hold(addr, idle, &s1)
            })
            .map_err(|e| Failure::new(format!("cannot start the admin load: {e}")))?;
        let s2 = Arc::clone(&stop);
        let scraper = std::thread::Builder::new()
            .name("admin-scrape".into())
            .spawn(move || {
                beside(cpu);
                scrape(addr, &s2)
            })
            .map_err(|e| Failure::new(format!("cannot start the admin load: {e}")))?;
        Ok(AdminLoad {
            stop,
            holder,
            scraper,
            idle,
        })
    }

    /// Stops both threads and reports.
    pub fn finish(self) -> Result<AdminLoadReport> {
        self.stop.store(true, Ordering::Relaxed);
        let panicked = || Failure::new("an admin load thread panicked (a bug)");
        let reopened = self.holder.join().map_err(|_| panicked())?;
        let s = self.scraper.join().map_err(|_| panicked())?;
        Ok(AdminLoadReport {
            idle: self.idle,
            reopened,
            latency: s.latency,
            failed: s.failed,
            last_error: s.last_error,
        })
    }
}

/// Pins the calling thread to `cpu` at the endpoint's nice value.
fn beside(cpu: usize) {
    crate::runtime::pin(cpu);
    crate::runtime::set_nice(crate::runtime::plan::SHARED_NICE);
}

/// Holds `n` connections open until `stop`, opening each again when the endpoint closes it.
/// Returns how many were opened again.
fn hold(addr: SocketAddr, n: usize, stop: &AtomicBool) -> u64 {
    let open = || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(s)
    };
    let mut held: Vec<Option<TcpStream>> = (0..n).map(|_| open().ok()).collect();
    let mut reopened = 0u64;
    let mut byte = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(HOLD_CHECK);
        for slot in held.iter_mut() {
            let closed = match slot.as_mut().map(|s| s.read(&mut byte)) {
                None | Some(Ok(_)) => true,
                Some(Err(e)) => e.kind() != std::io::ErrorKind::WouldBlock,
            };
            if !closed {
                continue;
            }
            match open() {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return reopened,
                r => *slot = r.ok(),
            }
            reopened += 1;
        }
    }
    reopened
}

/// Scrapes `/metrics` every [`SCRAPE_EVERY`] until `stop`.
fn scrape(addr: SocketAddr, stop: &AtomicBool) -> Scrapes {
    let mut s = Scrapes {
        latency: crate::telemetry::histogram(),
        failed: 0,
        last_error: None,
    };
    // Untimed: the endpoint serves once the engine has set up.
    if get_metrics(addr, SETUP_PATIENCE).is_err() {
        s.failed += 1;
        s.last_error = Some("the endpoint never answered".into());
        return s;
    }
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        match get_metrics(addr, SCRAPE_PATIENCE) {
            Ok(()) => s.latency.saturating_record(t.elapsed().as_nanos() as u64),
            Err(Ended) => break,
            // Reset as the endpoint stopped with the run: its listener went with the
            // connection (seen once in CI, 2026-12-06, as the last of 30 scrapes).
            Err(Failed(_)) if gone(addr) => break,
            Err(Failed(e)) => {
                s.failed += 1;
                s.last_error = Some(e);
            }
        }
        std::thread::sleep(SCRAPE_EVERY.saturating_sub(t.elapsed()));
    }
    s
}

/// Whether the endpoint has stopped: a fresh connection is refused. While the run lasts its
/// listener accepts, so a scrape that failed then still counts as failed.
fn gone(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, SCRAPE_PATIENCE),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Why a scrape got no 200.
enum Miss {
    /// The endpoint is gone: the run has ended.
    Ended,
    /// Anything else: a timeout, a reset, another status.
    Failed(String),
}
use Miss::{Ended, Failed};

/// One `GET /metrics` on a fresh connection, read to its end within `patience`.
fn get_metrics(addr: SocketAddr, patience: Duration) -> std::result::Result<(), Miss> {
    let failed = |e: std::io::Error| Failed(e.to_string());
    let mut c = TcpStream::connect_timeout(&addr, patience).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Ended,
        _ => Failed(e.to_string()),
    })?;
    c.set_read_timeout(Some(patience)).map_err(failed)?;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: tickcore\r\nConnection: close\r\n\r\n")
        .map_err(failed)?;
    let mut body = Vec::with_capacity(64 << 10);
    c.read_to_end(&mut body).map_err(failed)?;
    if body.is_empty() {
        // Closed without a word: the endpoint stopping with the run.
        return Err(Ended);
    }
    if body.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        let head = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        Err(Failed(format!("answered {head:?}")))
    }
}

impl AdminLoadReport {
    /// As JSON (the bench result's `admin`).
    pub fn json(&self) -> serde_json::Value {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1e6;
        serde_json::json!({
            "idle_connections": self.idle,
            "reopened": self.reopened,
            "scrape_every_ms": SCRAPE_EVERY.as_millis() as u64,
            "scrapes": self.latency.len(),
            "failed": self.failed,
            "last_error": self.last_error,
            "metrics_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": self.latency.max() as f64 / 1e6},
        })
    }

    /// The table's line.
    pub fn line(&self) -> String {
        let ms = |v: u64| format!("{:.1} ms", v as f64 / 1e6);
        format!(
            "  admin: {} idle connection(s) held ({} opened again), /metrics every {} ms: p50 {} p99 {} max {}, {} of {} failed{}\n",
            self.idle,
            self.reopened,
            SCRAPE_EVERY.as_millis(),
            ms(self.latency.value_at_quantile(0.5)),
            ms(self.latency.value_at_quantile(0.99)),
            ms(self.latency.max()),
            self.failed,
            self.latency.len() + self.failed,
            self.last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (last: {e})"))
        )
    }
}
