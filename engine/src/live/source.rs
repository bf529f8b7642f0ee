//! The live source: receives MoldUDP64 on the feed core from one or two lines and the
//! re-request socket, arbitrates, recovers gaps, and hands the ingress each message once, in
//! sequence order, stamped with when its datagram arrived.
//!
//! Owns the sockets (bound before the feed starts, so a taken port is one error line) and the
//! receive loop. Never blocks: every receive is `MSG_DONTWAIT`, requests are nonblocking sends,
//! operator lines go through tracing's non-blocking writer.

use super::arbiter::{
    Arbiter, ArbiterConfig, LineStats, Malformed, Outlet, Recovery, ANSWERS, LINE_NAMES,
};
use super::capture::Capture;
use super::recv::RecvBatch;
use crate::net::{Endpoint, RcvBuf};
use crate::runtime::clock;
use crate::runtime::ingress::{Fed, Source};
use shards::itch::{FrameError, WalkStats};
use shards::mold::{self, Request, Session};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Datagrams taken per `recvmmsg` call.
const BATCH: usize = 64;
/// Clock-driven work (request timers, liveness) runs at least this often while data flows.
const TICK_NS: u64 = 50_000;
/// Counters reach `/metrics` this often.
const PUBLISH_NS: u64 = 10_000_000;

/// How to receive.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Line A, and B if given.
    pub lines: Vec<Endpoint>,
    /// The re-request server.
    pub rerequest: SocketAddr,
    /// Arbitration and recovery tuning.
    pub arbiter: ArbiterConfig,
    /// Receive buffer to ask for, per line, in bytes.
    pub rcvbuf: usize,
    /// Write what is applied here, as pcap.
    pub capture: Option<std::path::PathBuf>,
    /// A recovery: `capture` holds what the killed run applied. It is fed to the arbiter
    /// before the lines are heard (what it holds past the checkpoint is not asked of the
    /// exchange again) and appended to.
    pub resume_capture: bool,
    /// Set by the live benchmark: messages are sent on this schedule, so each is stamped with
    /// its send time rather than its arrival (e2e then starts at the exchange).
    pub paced: Option<Paced>,
}

impl LiveConfig {
    /// One line on loopback `port`, default tuning, no capture: what tests and benchmarks use.
    pub fn loopback(port: u16, rerequest: SocketAddr, rcvbuf: usize) -> LiveConfig {
        LiveConfig {
            lines: vec![Endpoint::loopback(port)],
            rerequest,
            arbiter: ArbiterConfig::default(),
            rcvbuf,
            capture: None,
            resume_capture: false,
            paced: None,
        }
    }
}

/// What a benchmark's exchange in the same process tells its receiver: when to start, and
/// when it sent each message, so e2e counts from the exchange's send.
#[derive(Debug, Clone)]
pub struct Paced {
    /// When message 1 is due (engine clock ns); the receiver sets it as it starts, the
    /// exchange waits for it.
    pub start_ns: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Engine clock ns at which message `seq` left the exchange, at `seq - 1` (0: not yet).
    pub sent_ns: std::sync::Arc<[std::sync::atomic::AtomicU64]>,
}

/// What the live feed did, for the summary, JSON and bench.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveReport {
    /// The session followed last.
    pub session: Option<String>,
    /// Messages handed to the ingress.
    pub applied: u64,
    /// Whether end of session was reached with every message in (or declared lost).
    pub ended: bool,
    /// Per line: A, B (if any), and the re-request answers.
    pub lines: Vec<(String, LineStats)>,
    /// Malformed datagrams by kind.
    pub malformed: Malformed,
    /// Gap recovery.
    pub recovery: Recovery,
    /// Gap fill time p50 / p99 / max, microseconds (`None` without gaps filled).
    pub fill_us: Option<[f64; 3]>,
    /// The receive buffer each line got.
    pub rcvbuf: Vec<RcvBuf>,
    /// UDP datagrams the kernel dropped for a full receive buffer during the run, host-wide
    /// (`UdpRcvbufErrors`), apart from losses on the lines.
    pub kernel_drops: Option<u64>,
    /// Datagrams written to the capture.
    pub captured: Option<u64>,
    /// Datagrams the capture writer had no room for (never silently: also logged).
    pub capture_overflow: u64,
    /// Re-requests the socket refused to send.
    pub request_send_errors: u64,
    /// Messages a recovery took from the killed run's capture before hearing the lines.
    pub from_capture: u64,
    /// Seconds from the process's start until the receiver was first live: it had heard the
    /// lines, held every message they had sent (none missing, none held, its sockets empty)
    /// and had handed them all to the ingress. For a recovery, the time to be live again.
    pub live_again_s: Option<f64>,
    /// The sequence number it had applied through at that moment.
    pub live_again_seq: Option<u64>,
}

/// A MoldUDP64 feed on one or two lines.
pub struct MoldSource {
    cfg: LiveConfig,
    lines: Vec<UdpSocket>,
    requests: UdpSocket,
    rcvbuf: Vec<RcvBuf>,
    capture: Mutex<Option<Capture>>,
    report: Mutex<Option<LiveReport>>,
    gauges: std::sync::Arc<super::gauges::LiveGauges>,
    /// The session followed now, as bytes 0-7 and 8-9 (0: none yet), for checkpoints.
    following: [std::sync::atomic::AtomicU64; 2],
}

impl MoldSource {
    /// Binds every socket now; an error names the address.
    pub fn open(cfg: LiveConfig) -> Result<MoldSource, String> {
        let mut lines = Vec::new();
        let mut rcvbuf = Vec::new();
        for ep in &cfg.lines {
            let (s, got) = crate::net::bind_receiver(ep, cfg.rcvbuf).map_err(|e| {
                format!("cannot receive on {ep}: {e} (is another receiver on that port?)")
            })?;
            lines.push(s);
            rcvbuf.push(got);
        }
        let requests = crate::net::sender(None)
            .map_err(|e| format!("cannot open the re-request socket: {e}"))?;
        let mut arbiter = cfg.arbiter;
        arbiter.lines = cfg.lines.len();
        let mut cfg = cfg;
        let capture = match &cfg.capture {
            Some(p) if cfg.resume_capture => {
                Some(resume_or_start(p, &cfg.lines).map(|(c, resumed)| {
                    cfg.resume_capture = resumed;
                    c
                })?)
            }
            Some(p) => Some(
                Capture::start(p, &cfg.lines)
                    .map_err(|e| format!("--capture {}: cannot write: {e}", p.display()))?,
            ),
            None => None,
        };
        Ok(MoldSource {
            capture: Mutex::new(capture),
            gauges: Default::default(),
            cfg: LiveConfig { arbiter, ..cfg },
            lines,
            requests,
            rcvbuf,
            report: Mutex::new(None),
            following: Default::default(),
        })
    }

    /// Its counters, for the control core's `/metrics`.
    pub fn gauges(&self) -> std::sync::Arc<super::gauges::LiveGauges> {
        std::sync::Arc::clone(&self.gauges)
    }

    /// The report, once the feed has ended.
    pub fn report(&self) -> Option<LiveReport> {
        self.report.lock().ok().and_then(|mut r| r.take())
    }
}

/// Feeds the datagrams of the capture at `path` to the arbiter as if line A had sent them,
/// passing over those wholly before where the arbiter starts (what the checkpoint holds)
/// without parsing their blocks; returns the messages that applied. A capture that cannot be
/// read is said, and its range is re-requested instead. (A tail torn by the kill was cut, and
/// said, when the capture was resumed.)
fn replay_capture<O: Outlet>(path: &std::path::Path, arb: &mut Arbiter, out: &mut O) -> u64 {
    let t0 = clock::now_ns();
    let src = match super::replay::PcapSource::open(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("recover: {e}; re-requesting what it held instead");
            return 0;
        }
    };
    let before = arb.applied();
    let (mut passed, mut fed) = (0u64, 0u64);
    for d in src.in_sequence() {
        if mold::claimed(d).is_some_and(|(_, end)| end <= arb.next()) {
            passed += 1;
            continue;
        }
        arb.datagram(0, d, clock::now_ns(), out);
        fed += 1;
    }
    let n = arb.applied() - before;
    tracing::info!(
        "recover: {n} messages from the capture {} in {:.2} s ({passed} datagrams before the \
         checkpoint passed over, {fed} fed), before hearing the lines",
        path.display(),
        (clock::now_ns() - t0) as f64 / 1e9
    );
    n
}

/// A recovery's capture, appended to; or, when the file cannot be (not one this program
/// wrote, unreadable), moved aside with a line saying so and started anew: false then, and
/// what it held is asked of the exchange instead.
fn resume_or_start(p: &std::path::Path, lines: &[Endpoint]) -> Result<(Capture, bool), String> {
    match Capture::resume(p, lines) {
        Ok((c, cut)) => {
            if let Some(cut) = cut {
                tracing::warn!(
                    "recover: the capture {} was cut short ({cut}); it is used up to there",
                    p.display()
                );
            }
            return Ok((c, true));
        }
        Err(e) => {
            let mut aside = p.as_os_str().to_owned();
            aside.push(".unusable");
            let aside = std::path::PathBuf::from(aside);
            let moved = std::fs::rename(p, &aside).is_ok();
            tracing::warn!(
                "recover: cannot replay and append to the capture: {e}; {}a new capture \
                 starts and what it held is asked of the exchange",
                if moved {
                    format!("moved to {}; ", aside.display())
                } else {
                    String::new()
                }
            );
        }
    }
    Capture::start(p, lines)
        .map(|c| (c, false))
        .map_err(|e| format!("--capture {}: cannot write: {e}", p.display()))
}

/// When the receiver was first live: the moment a recovery is measured by.
#[derive(Default)]
struct Live {
    /// A line (not the capture, not the answers) has been heard.
    heard: bool,
    /// Engine clock ns (since the process started) and the sequence number applied through.
    at: Option<(u64, u64)>,
}

impl Live {
    /// Called on a turn whose sockets were all empty: live if the lines have been heard and
    /// nothing they sent is missing or held. Said once, with the time since the start.
    fn check(&mut self, arb: &Arbiter, now: u64, gauges: &super::gauges::LiveGauges) {
        if self.at.is_some() || !self.heard || !arb.caught_up() {
            return;
        }
        let through = arb.next() - 1;
        self.at = Some((now, through));
        gauges.live_again(now);
        tracing::info!(
            "live feed: live {:.2} s after start: every message the lines have sent is in, \
             through {through}",
            now as f64 / 1e9
        );
    }

    /// Called as the receive loop ends: a receiver whose sockets never ran empty (a loaded
    /// machine, lines that never paused) is live at the latest when the whole session is in.
    /// Without this a recovery that did catch up reported no time (CI, 2026-12-07: a killed
    /// run's restart that heard 24,235 packets without an empty turn).
    fn at_end(&mut self, arb: &Arbiter, now: u64, gauges: &super::gauges::LiveGauges) {
        if arb.done() {
            self.check(arb, now, gauges);
        }
    }
}

/// The arbiter's outlet on the feed core.
struct Out<'a, F: FnMut(Fed<'_>)> {
    each: F,
    stamp: u64,
    requests: &'a UdpSocket,
    to: SocketAddr,
    buf: [u8; mold::HEADER_LEN],
    send_errors: u64,
    capture: Option<&'a mut Capture>,
    session: Session,
    /// Where the session followed is published (the ingress reads it for checkpoints).
    following: &'a [std::sync::atomic::AtomicU64; 2],
    /// When each message left a benchmark's exchange.
    sent_ns: Option<&'a [std::sync::atomic::AtomicU64]>,
}

impl<F: FnMut(Fed<'_>)> Outlet for Out<'_, F> {
    #[inline]
    fn message(&mut self, seq: u64, m: &[u8]) {
        if let Some(c) = self.capture.as_deref_mut() {
            c.message(self.session, seq, m);
        }
        let stamp = match self.sent_ns.and_then(|t| t.get((seq - 1) as usize)) {
            Some(t) => match t.load(Ordering::Relaxed) {
                0 => self.stamp,
                sent => sent,
            },
            None => self.stamp,
        };
        (self.each)(Fed::Message(m, stamp));
    }

    fn request(&mut self, r: Request) {
        if self
            .requests
            .send_to(mold::request(&mut self.buf, r), self.to)
            .is_err()
        {
            self.send_errors += 1;
        }
    }

    fn lost(&mut self, from: u64, to: u64) {
        tracing::error!(
            "live feed: messages {from} to {} ({} messages) are lost: the re-request server did not answer; books of the instruments they touched may be wrong until the next clean state",
            to - 1,
            to - from
        );
    }

    fn notice(&mut self, what: std::fmt::Arguments<'_>) {
        tracing::warn!("live feed: {what}");
    }

    fn session(&mut self, s: Session) {
        self.session = s;
        let (head, tail) = s.0.split_at(8);
        let tail = u64::from(u16::from_le_bytes([tail[0], tail[1]]));
        let head = u64::from_le_bytes(head.try_into().expect("8 bytes"));
        self.following[0].store(head, Ordering::Relaxed);
        self.following[1].store(tail, Ordering::Relaxed);
    }
}

impl Source for MoldSource {
    fn describe(&self) -> String {
        let lines: Vec<String> = self.cfg.lines.iter().map(|l| l.to_string()).collect();
        format!(
            "MoldUDP64 {} (re-requests to {})",
            lines.join(" + "),
            self.cfg.rerequest
        )
    }

    fn whole(&self) -> Option<&[u8]> {
        None
    }

    fn resumes_after(&self) -> u64 {
        self.cfg.arbiter.start.max(1) - 1
    }

    fn session(&self) -> Option<[u8; 10]> {
        let head = self.following[0].load(Ordering::Relaxed);
        if head == 0 {
            return None;
        }
        let tail = self.following[1].load(Ordering::Relaxed) as u16;
        let mut s = [0u8; 10];
        s[..8].copy_from_slice(&head.to_le_bytes());
        s[8..].copy_from_slice(&tail.to_le_bytes());
        Some(s)
    }

    fn pump(&self, stop: &AtomicBool, each: impl FnMut(Fed<'_>)) -> Result<WalkStats, FrameError> {
        let drops_before = crate::net::udp_rcvbuf_errors();
        if let Some(p) = &self.cfg.paced {
            p.start_ns
                .store(clock::now_ns() + 2_000_000, Ordering::Release);
        }
        let mut capture = self.capture.lock().ok().and_then(|mut c| c.take());
        let mut arb = Arbiter::new(self.cfg.arbiter);
        let mut batch = RecvBatch::new(BATCH);
        let mut out = Out {
            each,
            stamp: 0,
            requests: &self.requests,
            to: self.cfg.rerequest,
            buf: [0; mold::HEADER_LEN],
            send_errors: 0,
            capture: capture.as_mut(),
            session: Session([b' '; mold::SESSION_LEN]),
            following: &self.following,
            sent_ns: self.cfg.paced.as_ref().map(|p| &p.sent_ns[..]),
        };
        let fds: Vec<(usize, i32)> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.as_raw_fd()))
            .chain([(ANSWERS, self.requests.as_raw_fd())])
            .collect();
        // The capture already holds what it replays: it is not written again.
        let from_capture = match (&self.cfg.capture, self.cfg.resume_capture) {
            (Some(p), true) => {
                let kept = out.capture.take();
                let n = replay_capture(p, &mut arb, &mut out);
                out.capture = kept;
                n
            }
            _ => 0,
        };
        let mut next_tick = 0u64;
        let mut next_publish = 0u64;
        let mut turn = 0u32;
        let mut live = Live::default();
        while !stop.load(Ordering::Relaxed) && !arb.done() {
            let mut got = 0;
            turn = turn.wrapping_add(1);
            for &(line, fd) in &fds {
                // The answers' socket is read while a gap is open, and every 16th turn
                // otherwise (a late answer, a stray datagram): not a syscall per turn for a
                // socket that is almost always empty.
                if line == ANSWERS && arb.gaps_open() == 0 && turn % 16 != 0 {
                    continue;
                }
                let n = batch.recv(fd).unwrap_or(0);
                if n == 0 {
                    continue;
                }
                let now = clock::now_ns();
                out.stamp = now;
                for i in 0..n {
                    arb.datagram(line, batch.datagram(i), now, &mut out);
                }
                got += n;
                live.heard |= line != ANSWERS;
            }
            let now = clock::now_ns();
            if got == 0 {
                live.check(&arb, now, &self.gauges);
            }
            if got == 0 || now >= next_tick {
                arb.tick(now, &mut out);
                next_tick = now + TICK_NS;
                if now >= next_publish {
                    self.gauges.publish(&arb);
                    next_publish = now + PUBLISH_NS;
                }
            }
            if got == 0 {
                if let Some(c) = out.capture.as_deref_mut() {
                    c.idle();
                }
                (out.each)(Fed::Idle);
            } else {
                (out.each)(Fed::Drained);
            }
            // A core sharing this CPU (a shard, on a small machine) gets it now, to apply what
            // was just handed over or while nothing arrives, rather than at the scheduler's
            // next tick. Costs under a microsecond when nothing else is runnable.
            std::thread::yield_now();
        }
        live.at_end(&arb, clock::now_ns(), &self.gauges);
        self.gauges.publish(&arb);
        let send_errors = out.send_errors;
        drop(out);
        let overflow = capture.as_ref().map_or(0, |c| c.overflow);
        if overflow > 0 {
            tracing::error!(
                "live feed: {overflow} datagrams not captured: the capture writer fell behind"
            );
        }
        let captured = match capture.map(|c| c.finish(arb.done())) {
            Some(Ok(n)) => Some(n),
            Some(Err(e)) => {
                tracing::error!("live feed: the capture failed: {e}");
                None
            }
            None => None,
        };
        let q = |p: f64| arb.fill_ns.value_at_quantile(p) as f64 / 1e3;
        let r = LiveReport {
            session: arb.session().map(|s| s.name()),
            applied: arb.applied(),
            ended: arb.done(),
            lines: (0..self.lines.len())
                .chain([ANSWERS])
                .map(|i| (LINE_NAMES[i].to_string(), arb.lines[i]))
                .collect(),
            malformed: arb.malformed,
            recovery: arb.recovery.clone(),
            fill_us: (!arb.fill_ns.is_empty())
                .then(|| [q(0.5), q(0.99), arb.fill_ns.max() as f64 / 1e3]),
            rcvbuf: self.rcvbuf.clone(),
            kernel_drops: drops_before
                .and_then(|b| crate::net::udp_rcvbuf_errors().map(|a| a.saturating_sub(b))),
            captured,
            capture_overflow: overflow,
            request_send_errors: send_errors,
            from_capture,
            live_again_s: live.at.map(|(ns, _)| ns as f64 / 1e9),
            live_again_seq: live.at.map(|(_, seq)| seq),
        };
        if let Ok(mut slot) = self.report.lock() {
            *slot = Some(r);
        }
        Ok(WalkStats {
            frames: arb.applied(),
            ..WalkStats::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::arbiter::Outlet;

    struct Quiet;

    impl Outlet for Quiet {
        fn message(&mut self, _: u64, _: &[u8]) {}
        fn request(&mut self, _: Request) {}
        fn lost(&mut self, _: u64, _: u64) {}
        fn notice(&mut self, _: std::fmt::Arguments<'_>) {}
        fn session(&mut self, _: Session) {}
    }

    /// A whole session heard on line A with no turn in between: it was never seen idle.
    fn heard_whole_session() -> Arbiter {
        let bytes = shards::synth::generate(&shards::synth::GenConfig {
            scope: shards::synth::Scope::M7,
            messages: 500,
            seed: 3,
            profile: shards::synth::Profile::Realistic,
        })
        .unwrap();
        let session = Session::parse("LIVE").unwrap();
        let (packets, _) = mold::pack_session(&bytes, session, mold::DEFAULT_MAX_PAYLOAD).unwrap();
        let mut arb = Arbiter::new(ArbiterConfig::default());
        for p in &packets {
            arb.datagram(0, p, 1, &mut Quiet);
        }
        arb
    }

    #[test]
    fn a_receiver_never_seen_idle_is_live_when_the_session_ends() {
        let arb = heard_whole_session();
        assert!(arb.done(), "the whole session is in");
        let gauges = crate::live::gauges::LiveGauges::default();
        let mut live = Live {
            heard: true,
            at: None,
        };
        live.at_end(&arb, 7, &gauges);
        assert_eq!(live.at, Some((7, arb.next() - 1)));
    }

    #[test]
    fn a_receiver_that_heard_only_its_capture_is_not_called_live() {
        let arb = heard_whole_session();
        let gauges = crate::live::gauges::LiveGauges::default();
        let mut live = Live::default();
        live.at_end(&arb, 7, &gauges);
        assert_eq!(live.at, None, "the lines were never heard");
    }
}
