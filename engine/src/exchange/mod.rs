//! `tickcore exchange`: a MoldUDP64 exchange on loopback (or multicast), so tests and
//! benchmarks run the whole live path with faults injected.
//!
//! Owns the sending loop (packing, pacing, heartbeats, end of session and its linger), the
//! per-line faults ([`faults`]), the session's history ([`history`]) and the re-request server
//! ([`rerequest`]). Shares only the wire codec (`shards::mold`) and endpoint setup
//! ([`crate::net`]) with the receiver; never runs inside an engine.

pub mod faults;
pub mod history;
pub mod rerequest;

use crate::net::Endpoint;
use crate::runtime::ingress::Speed;
use faults::{Fate, Faults, LineCounts, LineFaults};
use history::History;
use shards::mold::{self, PacketWriter, Session};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the exchange runs.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// Line A, and B if given.
    pub lines: Vec<Endpoint>,
    /// Where the re-request server listens.
    pub rerequest: SocketAddr,
    /// The session name.
    pub session: Session,
    /// Pacing.
    pub speed: Speed,
    /// Faults on the lines.
    pub faults: Faults,
    /// Seed of the faults.
    pub seed: u64,
    /// How long end of session is repeated (and re-requests answered) after the last message.
    pub linger: Duration,
    /// Largest payload per datagram.
    pub max_payload: usize,
    /// Heartbeat period while a line is idle.
    pub heartbeat: Duration,
    /// When message 1 is due (default: at once). The live benchmark sets it, so that the
    /// receiver in the same process knows every message's send time.
    pub start: Option<Instant>,
    /// Where the live benchmark wants each message's send time (engine clock ns, at
    /// `seq - 1`), to count e2e from the exchange.
    pub sent_ns: Option<Arc<[std::sync::atomic::AtomicU64]>>,
}

/// What the exchange did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExchangeReport {
    /// Session name.
    pub session: String,
    /// Messages in the session.
    pub messages: u64,
    /// Data packets packed (before faults).
    pub packets: u64,
    /// Messages the lines never carried (the silenced range).
    pub silenced: u64,
    /// Per line.
    pub lines: Vec<LineCounts>,
    /// The re-request server.
    pub server: rerequest::ServerReport,
    /// Failed sends (a full socket buffer, an unreachable route).
    pub send_errors: u64,
    /// Seconds from the first packet to end of session.
    pub send_s: f64,
    /// Whether a signal cut the session short.
    pub stopped: bool,
}

struct Line {
    sock: UdpSocket,
    to: SocketAddr,
    faults: LineFaults,
    held: Vec<u8>,
    last_send: Instant,
}

impl Line {
    fn send(&mut self, d: &[u8], errors: &mut u64) {
        if self.sock.send_to(d, self.to).is_err() {
            *errors += 1;
        }
        self.faults.counts.sent += 1;
        self.last_send = Instant::now();
    }

    /// Sends a data packet through the line's faults.
    fn data(&mut self, d: &[u8], errors: &mut u64) {
        match self.faults.fate() {
            Fate::Dead | Fate::Drop => {}
            Fate::Send => {
                self.send(d, errors);
                self.release(errors);
            }
            Fate::Duplicate => {
                self.send(d, errors);
                self.send(d, errors);
                self.release(errors);
            }
            Fate::Reorder => {
                self.release(errors);
                self.held.extend_from_slice(d);
            }
        }
    }

    /// Sends the packet held back for reordering, if any.
    fn release(&mut self, errors: &mut u64) {
        if !self.held.is_empty() {
            let h = std::mem::take(&mut self.held);
            self.send(&h, errors);
            self.held = h;
            self.held.clear();
        }
    }

    fn control(&mut self, d: &[u8], errors: &mut u64) {
        if !self.faults.dead() {
            self.send(d, errors);
        }
    }
}

/// Serves `history` as `cfg` says until the session has ended and lingered, or `stop` is set.
/// `progress(messages_sent)` is called now and then for the operator.
pub fn run(
    cfg: &ExchangeConfig,
    history: Arc<History>,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64),
) -> std::io::Result<ExchangeReport> {
    let server_sock = UdpSocket::bind(cfg.rerequest)?;
    server_sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let server_stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (h, s, st, mp) = (
            Arc::clone(&history),
            cfg.session,
            Arc::clone(&server_stop),
            cfg.max_payload,
        );
        std::thread::Builder::new()
            .name("rerequest".into())
            .spawn(move || rerequest::serve(server_sock, h, s, mp, st))?
    };
    let mut lines = Vec::new();
    for (i, ep) in cfg.lines.iter().enumerate() {
        let sock = crate::net::sender(Some(ep))?;
        sock.set_nonblocking(false)?;
        lines.push(Line {
            sock,
            to: SocketAddr::V4(ep.addr),
            faults: LineFaults::new(i, cfg.faults, cfg.seed),
            held: Vec::with_capacity(mold::MAX_DATAGRAM),
            last_send: Instant::now(),
        });
    }
    let mut r = ExchangeReport {
        session: cfg.session.name(),
        messages: history.len(),
        ..Default::default()
    };
    let start = Instant::now();
    send_session(cfg, &history, &mut lines, &mut r, stop, &mut progress);
    r.send_s = start.elapsed().as_secs_f64();
    linger(cfg, &history, &mut lines, &mut r, stop);
    server_stop.store(true, Ordering::Relaxed);
    r.server = server.join().unwrap_or_default();
    r.lines = lines.iter().map(|l| l.faults.counts).collect();
    r.stopped = stop.load(Ordering::Relaxed);
    Ok(r)
}

/// When each message is due.
struct Schedule {
    speed: Speed,
    t0: Instant,
    ts0: Option<u64>,
}

impl Schedule {
    fn due(&mut self, h: &History, seq: u64) -> Option<Instant> {
        match self.speed {
            Speed::Max => None,
            Speed::Rate(r) => Some(self.t0 + Duration::from_secs_f64((seq - 1) as f64 / r)),
            Speed::Times(f) => {
                let ts = h.timestamp(seq)?;
                let ts0 = *self.ts0.get_or_insert(ts);
                Some(self.t0 + Duration::from_nanos((ts.saturating_sub(ts0) as f64 / f) as u64))
            }
        }
    }

    /// Messages from `seq` due by `now`, at most `cap`.
    fn due_count(&mut self, h: &History, seq: u64, now: Instant, cap: u64) -> u64 {
        let mut n = 0;
        while n < cap && seq + n <= h.len() && self.due(h, seq + n).is_none_or(|d| d <= now) {
            n += 1;
        }
        n.max(1)
    }
}

fn send_session(
    cfg: &ExchangeConfig,
    h: &History,
    lines: &mut [Line],
    r: &mut ExchangeReport,
    stop: &AtomicBool,
    progress: &mut impl FnMut(u64),
) {
    let mut w = PacketWriter::new(cfg.session, cfg.max_payload);
    let t0 = cfg.start.unwrap_or_else(Instant::now);
    wait_until(t0, stop, || {});
    let mut sched = Schedule {
        speed: cfg.speed,
        t0,
        ts0: None,
    };
    let mut seq = 1u64;
    let mut hb = [0u8; mold::HEADER_LEN];
    let mut next_progress = 1u64 << 16;
    while seq <= h.len() && !stop.load(Ordering::Relaxed) {
        if let Some(due) = sched.due(h, seq) {
            wait_until(due, stop, || heartbeats(cfg, lines, seq, &mut hb, r));
        }
        // A message is at most 50 bytes: a full packet holds at least 27.
        let cap = sched.due_count(h, seq, Instant::now(), 256);
        let n = h.pack(&mut w, seq, cap);
        if h.silenced(seq) {
            r.silenced += n;
        } else {
            r.packets += 1;
            if let Some(t) = &cfg.sent_ns {
                let now = crate::runtime::clock::now_ns();
                for s in seq..seq + n {
                    t[(s - 1) as usize].store(now, Ordering::Relaxed);
                }
            }
            let d = w.finish();
            for l in lines.iter_mut() {
                l.data(d, &mut r.send_errors);
            }
        }
        seq += n;
        if seq >= next_progress {
            progress(seq - 1);
            next_progress += 1 << 16;
        }
    }
    for l in lines.iter_mut() {
        l.release(&mut r.send_errors);
    }
    progress(seq - 1);
}

/// Heartbeats every line idle for the heartbeat period, with the next sequence number.
fn heartbeats(
    cfg: &ExchangeConfig,
    lines: &mut [Line],
    next: u64,
    hb: &mut [u8; mold::HEADER_LEN],
    r: &mut ExchangeReport,
) {
    for l in lines.iter_mut() {
        if l.last_send.elapsed() >= cfg.heartbeat && !l.faults.dead() {
            l.faults.counts.heartbeats += 1;
            l.control(mold::heartbeat(hb, cfg.session, next), &mut r.send_errors);
        }
    }
}

fn wait_until(due: Instant, stop: &AtomicBool, mut idle: impl FnMut()) {
    loop {
        let now = Instant::now();
        if now >= due || stop.load(Ordering::Relaxed) {
            return;
        }
        idle();
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep((left - Duration::from_micros(100)).min(Duration::from_millis(50)));
        } else {
            // A receiver may share this CPU (the live benchmark on a small machine): let it
            // run while this waits.
            std::thread::yield_now();
        }
    }
}

/// End of session at once, then every heartbeat period until the linger is over.
fn linger(
    cfg: &ExchangeConfig,
    h: &History,
    lines: &mut [Line],
    r: &mut ExchangeReport,
    stop: &AtomicBool,
) {
    let until = Instant::now() + cfg.linger;
    let mut b = [0u8; mold::HEADER_LEN];
    let end = h.len() + 1;
    loop {
        for l in lines.iter_mut() {
            if !l.faults.dead() {
                l.faults.counts.ends += 1;
            }
            l.control(
                mold::end_of_session(&mut b, cfg.session, end),
                &mut r.send_errors,
            );
        }
        let next = Instant::now() + cfg.heartbeat;
        if next > until || stop.load(Ordering::Relaxed) {
            wait_until(until, stop, || {});
            return;
        }
        wait_until(next, stop, || {});
    }
}
