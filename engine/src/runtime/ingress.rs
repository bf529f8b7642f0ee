//! Feed ingress: reads messages from a [`Source`], routes each to the shard that owns its stock
//! locate (market-wide messages, locate 0, to every shard), and batches them per shard.
//!
//! Owns the routing table, the per-shard outbound batch and the pacing clock. Never decodes more
//! than the two header fields it routes and paces by; never drops: a full link makes it wait.
//! A live UDP source (MoldUDP64) plugs in as another [`Source`] without touching shards.

use super::batch::{self, Buf, FeedBatch};
use super::clock;
use super::ring::{Producer, Sender};
use crate::config::Assign;
use crate::telemetry::offcpu::OffCpu;
use crate::telemetry::{Reporter, Stage};
use shards::itch::{walk, FrameError, WalkStats};
use std::sync::atomic::{AtomicBool, Ordering};

/// Where messages come from.
pub trait Source {
    /// Shown in the summary.
    fn describe(&self) -> String;
    /// Calls `each` with every message in feed order, until the end or until `stop` is set
    /// (checked at least every few thousand messages), and with [`Fed::Idle`] whenever a live
    /// source has nothing to hand over (the ingress then sends what it holds).
    fn pump(&self, stop: &AtomicBool, each: impl FnMut(Fed<'_>)) -> Result<WalkStats, FrameError>;
    /// The whole input when it is known up front (files, generated sessions), for `balanced`
    /// assignment; `None` for live sources.
    fn whole(&self) -> Option<&[u8]>;
    /// Messages of the feed before the first one this source hands over (a live source that
    /// resumes after a checkpoint); 0 for sources that start at the beginning.
    fn resumes_after(&self) -> u64 {
        0
    }
    /// The session the feed is now (MoldUDP64), for checkpoints; `None` for files.
    fn session(&self) -> Option<[u8; 10]> {
        None
    }
}

/// What a source hands the ingress.
#[derive(Debug, Clone, Copy)]
pub enum Fed<'a> {
    /// The next message, and when it reached this process (engine clock ns; 0: unknown, stamp
    /// it when its batch starts).
    Message(&'a [u8], u64),
    /// Nothing arrived: send every batch now, and give the roles sharing the thread a turn.
    Idle,
    /// A burst has been handed over and more may be waiting: send each batch whose shard is
    /// idle (a busy shard takes a bigger batch when it is done).
    Drained,
}

/// A feed held in memory or mapped from a file.
pub struct BytesSource<'a> {
    /// Shown in the summary.
    pub name: String,
    /// BinaryFILE frames.
    pub bytes: &'a [u8],
    /// Resynchronise over corrupt framing instead of stopping.
    pub skip_corrupt: bool,
}

/// On a rate schedule, while the ingress is ahead of the schedule, a batch leaves at once when
/// its shard is idle (every buffer back), else once its first message has waited this long
/// (or when it is full): Disruptor-style smart batching. A busy shard gets bigger batches, an
/// idle one gets each message as it comes. Until 2026-12-05 every batch lingered 2.5 us,
/// which was most of the e2e median.
const RATE_LINGER_NS: u64 = 2_500;

/// Messages between looks for an idle shard while the ingress is behind its rate schedule.
const CATCH_UP_CHECK: u64 = 32;

/// Messages between checks of the stop flag.
const STOP_EVERY: u64 = 4096;

impl Source for BytesSource<'_> {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn pump(
        &self,
        stop: &AtomicBool,
        mut each: impl FnMut(Fed<'_>),
    ) -> Result<WalkStats, FrameError> {
        // The walk has no early exit, so a stop cuts the input at the next frame boundary the
        // walk reaches: check the flag in chunks and finish the walk over an empty remainder.
        let mut n = 0u64;
        let mut stopped = false;
        walk(self.bytes, self.skip_corrupt, |_, m| {
            if stopped {
                return;
            }
            n += 1;
            if n % STOP_EVERY == 0 && stop.load(Ordering::Relaxed) {
                stopped = true;
            }
            each(Fed::Message(m, 0));
        })
    }

    fn whole(&self) -> Option<&[u8]> {
        Some(self.bytes)
    }
}

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the shards take it.
    Max,
    /// `factor` times real time, by the ITCH timestamps (1.0 = real time).
    Times(f64),
    /// Open loop: message i is due `i / rate` seconds after the first, whatever the engine
    /// does; a batch is stamped with its first message's due time, so falling behind the
    /// schedule shows up as latency (no coordinated omission).
    Rate(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;
    fn from_str(s: &str) -> Result<Speed, String> {
        match s {
            "max" => Ok(Speed::Max),
            "realtime" => Ok(Speed::Times(1.0)),
            _ => match s.strip_suffix("/s").map(str::parse::<f64>) {
                Some(Ok(r)) if r >= 1.0 && r.is_finite() => Ok(Speed::Rate(r)),
                Some(_) => Err(format!(
                    "`{s}` is not a rate: write messages per second, e.g. 1000000/s"
                )),
                None => match s.parse::<f64>() {
                    Ok(f) if f > 0.0 && f.is_finite() => Ok(Speed::Times(f)),
                    _ => Err(format!(
                        "`{s}` is not a speed: use max, realtime, a factor such as 10 or 0.5, \
                         or a rate such as 1000000/s"
                    )),
                },
            },
        }
    }
}

/// Shard of every locate.
#[derive(Clone)]
pub struct Routes {
    shard_of: Box<[u16]>,
    shards: usize,
}

const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

impl Routes {
    /// Routes for `shards` shards, by `assign`; `whole` is the input for `balanced`.
    pub fn new(shards: usize, assign: Assign, whole: Option<&[u8]>) -> Routes {
        let mut shard_of = vec![0u16; 1 << 16].into_boxed_slice();
        match (assign, whole) {
            (Assign::Balanced, Some(bytes)) if shards > 1 => {
                let mut count = vec![0u64; 1 << 16];
                let _ = walk(bytes, true, |_, m| {
                    if m.len() >= 3 {
                        count[u16::from_be_bytes([m[1], m[2]]) as usize] += 1;
                    }
                });
                // Longest first onto the least loaded shard (LPT), ties by locate: deterministic.
                let mut order: Vec<usize> = (1..1 << 16).filter(|&l| count[l] > 0).collect();
                order.sort_by_key(|&l| (std::cmp::Reverse(count[l]), l));
                let mut load = vec![0u64; shards];
                for l in order {
                    let s = (0..shards).min_by_key(|&s| (load[s], s)).unwrap_or(0);
                    load[s] += count[l];
                    shard_of[l] = s as u16;
                }
            }
            _ => {
                for (l, s) in shard_of.iter_mut().enumerate() {
                    let h = (l as u64).wrapping_mul(FIB) >> 32;
                    *s = (h % shards as u64) as u16;
                }
            }
        }
        Routes { shard_of, shards }
    }

    /// The shard owning `locate`.
    #[inline(always)]
    pub fn shard(&self, locate: u16) -> usize {
        self.shard_of[locate as usize] as usize
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }
}

/// What the ingress reports to the control core while it runs.
pub struct IngressTelemetry {
    /// Its stage histograms.
    pub reporter: Reporter,
    /// Every stock directory entry, as it is read (how control names locates for snapshots).
    pub directory: Producer<([u8; 8], u16)>,
    /// Record the ingress stage (off: `tickcore bench --no-histograms`).
    pub measure: bool,
    /// Record the thread's time off its CPU (`telemetry::offcpu`): only when no shard shares
    /// the CPU, whose turns would otherwise count as the machine's.
    pub off_cpu: bool,
}

/// One shard's outbound batch.
struct Outbound {
    link: Sender<Buf>,
    frames: Vec<u8>,
    messages: u32,
    first_ns: u64,
    /// Due time of the latest message on a rate schedule (0: read the clock when sending).
    last_ns: u64,
    seq: u64,
    sent_messages: u64,
    /// The feed's session, sent with a checkpoint mark.
    session: [u8; 10],
}

/// What the ingress did.
#[derive(Debug, Clone, Default)]
pub struct IngressReport {
    /// Messages read from the source.
    pub messages: u64,
    /// Market-wide messages (sent to every shard).
    pub broadcast: u64,
    /// Messages handed to each shard.
    pub per_shard: Vec<u64>,
    /// Feed batches sent to each shard.
    pub batches: Vec<u64>,
    /// The walk's statistics (bytes, corrupt regions).
    pub walk: WalkStats,
    /// A framing error that ended the feed early.
    pub error: Option<FrameError>,
    /// Whether a stop request cut the feed short.
    pub stopped: bool,
    /// Symbol of every locate seen in a stock directory message.
    pub directory: Vec<([u8; 8], u16)>,
    /// Directory entries the control core's ring had no room for (it then cannot name them).
    pub directory_overflow: u64,
    /// Checkpoint marks sent (each to every shard).
    pub checkpoints: u64,
    /// Messages skipped because a recovery's checkpoint already held them.
    pub skipped: u64,
    /// Messages of the feed before the source's first (a live source resuming after a
    /// checkpoint).
    pub resumed_after: u64,
    /// Its time off its CPU while it ran, when it recorded it.
    pub off_cpu: Option<crate::telemetry::offcpu::Record>,
    /// CPU time its thread ran while it walked the feed, ns, with the roles that take turns
    /// inside it: what is left of its CPU for a thread beside it (the gateway on 2 CPUs).
    pub cpu_ns: u64,
}

/// Where the ingress sends: which shard owns each locate, a link to each shard, and the bytes
/// of frames a batch holds at most.
pub struct Outlets<'a> {
    /// Locate -> shard.
    pub routes: &'a Routes,
    /// One link per shard, in shard order.
    pub links: Vec<Sender<Buf>>,
    /// Bytes of frames that close a batch.
    pub batch_bytes: usize,
}

/// How the ingress paces the feed and waits for it.
#[derive(Debug, Clone, Copy)]
pub struct Pacing<'a> {
    /// The replay's speed.
    pub speed: Speed,
    /// No busy thread shares its CPU (threads that sleep may), so its waits make no system
    /// call (see [`Pacer::waited_until`]).
    pub own_cpu: bool,
    /// Set while the ingress waits ahead of its rate schedule, for the roles that share its
    /// thread: the CPU it then spends spinning is spare (the consumer may hand it to a gateway
    /// that fell behind, `gateway::intake::Turns`). Never set while it is behind or at `max`:
    /// that CPU is the feed's.
    pub ahead: &'a std::cell::Cell<bool>,
}

/// Runs the ingress over `source` until it ends or `stop` is set; every shard then gets a
/// last batch, so everything handed over is applied.
///
/// `idle` is work of other roles that share this thread's CPU (the event consumer and the
/// control core, on a small machine); it runs when the ingress would otherwise wait (ahead of the schedule, or
/// every buffer of a link in flight) and after each batch sent, and returns whether it did
/// anything. Pass `|| false` when the ingress has its CPU to itself.
pub fn run(
    source: &impl Source,
    outlets: Outlets<'_>,
    pacing: Pacing,
    stop: &AtomicBool,
    mut tel: IngressTelemetry,
    mut marks: crate::checkpoint::marks::Marks,
    idle: &mut dyn FnMut() -> bool,
) -> IngressReport {
    let Outlets {
        routes,
        links,
        batch_bytes,
    } = outlets;
    let Pacing {
        speed,
        own_cpu,
        ahead,
    } = pacing;
    let mut out: Vec<Outbound> = links
        .into_iter()
        .map(|link| Outbound {
            link,
            frames: {
                let mut f = vec![0u8; batch_bytes + 2 + 64];
                shards::book::pages::prefault(&mut f);
                f.clear();
                f
            },
            messages: 0,
            first_ns: 0,
            last_ns: 0,
            seq: 0,
            sent_messages: 0,
            session: [b' '; 10],
        })
        .collect();
    let mut r = IngressReport {
        per_shard: vec![0; out.len()],
        batches: vec![0; out.len()],
        ..Default::default()
    };
    let mut pace = Pacer::new(speed, !own_cpu);
    let measure = tel.measure;
    // Checkpoint marks count the feed's messages from its start, whatever the source skipped.
    let base = source.resumes_after();
    marks.skip = marks.skip.saturating_sub(base);
    r.resumed_after = base;
    let rep = &mut tel.reporter;
    if tel.off_cpu {
        rep.off_cpu.begin();
    }
    let cpu_at_start = clock::thread_cpu_ns();
    let walked = source.pump(stop, |fed| {
        let (m, stamp) = match fed {
            Fed::Message(m, stamp) => (m, stamp),
            Fed::Idle => {
                flush_all(&mut out, rep, measure, idle);
                idle();
                return;
            }
            Fed::Drained => {
                flush_to_idle_shards(&mut out, rep, measure, idle);
                return;
            }
        };
        r.messages += 1;
        let locate = if m.len() >= 3 {
            u16::from_be_bytes([m[1], m[2]])
        } else {
            0
        };
        if m[0] == b'R' && m.len() >= 19 {
            let mut sym = [0u8; 8];
            sym.copy_from_slice(&m[11..19]);
            r.directory.push((sym, locate));
            if tel.directory.try_push((sym, locate)).is_err() {
                r.directory_overflow += 1;
            }
        }
        if r.messages <= marks.skip {
            // A recovery's checkpoint holds it (its directory entry still names the locate).
            r.skipped += 1;
            return;
        }
        // The message's stamp: its due time on a rate schedule, when a live source received
        // it, else read lazily (once a batch).
        let mut due = stamp;
        if let Speed::Rate(rate) = speed {
            due = pace.due_at(r.messages - 1 - r.skipped, rate);
            let now = clock::now_ns();
            rep.off_cpu.tick(now);
            if due > now {
                // Ahead of the schedule: send to an idle shard now, to a busy one what has
                // waited long enough (it takes the batch when it is done anyway), then wait.
                for o in out.iter_mut() {
                    if o.messages > 0
                        && (o.link.consumer_idle()
                            || now.saturating_sub(o.first_ns) >= RATE_LINGER_NS)
                    {
                        flush(o, false, 0, rep, measure, idle);
                    }
                }
                // A batch held for a busy shard leaves the moment the shard turns idle, not
                // when the next message is due (a message interval later).
                ahead.set(true);
                while !pace.waited_until(due, stop, idle, &mut rep.off_cpu, holds(&out)) {
                    flush_to_idle_shards(&mut out, rep, measure, idle);
                    out.iter().for_each(|o| o.link.keep_warm());
                }
                ahead.set(false);
            }
        } else if let Some(ts) = pace
            .enabled()
            .then(|| shards::itch::field::timestamp(m))
            .flatten()
        {
            if pace.ahead(ts) {
                flush_all(&mut out, rep, measure, idle);
                pace.wait(ts, stop, idle);
                rep.off_cpu.rested();
            }
        }
        if locate == 0 {
            r.broadcast += 1;
            for o in out.iter_mut() {
                push(o, m, batch_bytes, due, rep, measure, idle);
            }
        } else {
            push(
                &mut out[routes.shard(locate)],
                m,
                batch_bytes,
                due,
                rep,
                measure,
                idle,
            );
        }
        rep.current.items += 1;
        if marks.due(base + r.messages, || shards::itch::field::timestamp(m)) {
            // Every shard checkpoints after the same message: each gets a mark, with or
            // without frames.
            let session = source.session().unwrap_or([b' '; 10]);
            for o in out.iter_mut() {
                o.session = session;
                flush(o, false, base + r.messages, rep, measure, idle);
            }
        }
        if let Speed::Rate(rate) = speed {
            // The next message is not due yet: an idle shard takes what is here now rather
            // than when the next one is read (a microsecond later at 1M/s). Behind the
            // schedule (after the ingress lost its CPU), an idle shard is fed every
            // CATCH_UP_CHECK messages, so it applies the backlog while the ingress reads it
            // instead of after.
            let behind = pace.due_at(r.messages - r.skipped, rate) <= clock::now_ns();
            if !behind || r.messages % CATCH_UP_CHECK == 0 {
                flush_to_idle_shards(&mut out, rep, measure, idle);
            }
        }
    });
    match walked {
        Ok(w) => r.walk = w,
        Err(e) => r.error = Some(e),
    }
    r.stopped = stop.load(Ordering::Relaxed);
    r.checkpoints = marks.taken;
    for (i, o) in out.iter_mut().enumerate() {
        flush(o, true, 0, rep, measure, idle);
        r.per_shard[i] = o.sent_messages;
        r.batches[i] = o.seq;
    }
    r.off_cpu = rep.off_cpu.finish();
    r.cpu_ns = clock::thread_cpu_ns().saturating_sub(cpu_at_start);
    rep.flush_with(std::time::Duration::from_millis(200), idle);
    r
}

/// Appends `m` to its shard's batch; `due` is its stamp on a rate schedule (0: read the clock).
#[inline(always)]
fn push(
    o: &mut Outbound,
    m: &[u8],
    batch_bytes: usize,
    due: u64,
    rep: &mut Reporter,
    measure: bool,
    idle: &mut dyn FnMut() -> bool,
) {
    if o.messages == 0 && measure {
        o.first_ns = if due > 0 { due } else { clock::now_ns() };
    }
    o.last_ns = due;
    o.frames.extend_from_slice(&(m.len() as u16).to_be_bytes());
    o.frames.extend_from_slice(m);
    o.messages += 1;
    if o.frames.len() >= batch_bytes {
        flush(o, false, 0, rep, measure, idle);
    }
}

/// A rate wait longer than this sleeps (the last 100 us spin).
const SLEEP_ABOVE_NS: u64 = 200_000;

/// Whether a batch holds a message, waiting for its shard.
fn holds(out: &[Outbound]) -> bool {
    out.iter().any(|o| o.messages > 0)
}

/// Sends every batch that holds a message.
fn flush_all(
    out: &mut [Outbound],
    rep: &mut Reporter,
    measure: bool,
    idle: &mut dyn FnMut() -> bool,
) {
    out.iter_mut()
        .for_each(|o| flush(o, false, 0, rep, measure, idle));
}

/// Sends each batch whose shard is idle (every buffer back); a busy shard's batch keeps
/// growing until the shard is done.
fn flush_to_idle_shards(
    out: &mut [Outbound],
    rep: &mut Reporter,
    measure: bool,
    idle: &mut dyn FnMut() -> bool,
) {
    for o in out
        .iter_mut()
        .filter(|o| o.messages > 0 && o.link.consumer_idle())
    {
        flush(o, false, 0, rep, measure, idle);
    }
}

/// Sends `o`'s batch (with checkpoint mark `mark`, 0 for none); an empty one only when it is
/// the last or carries a mark.
fn flush(
    o: &mut Outbound,
    last: bool,
    mark: u64,
    rep: &mut Reporter,
    measure: bool,
    idle: &mut dyn FnMut() -> bool,
) {
    if o.messages == 0 && !last && mark == 0 {
        return;
    }
    // A consumer polled from `idle` may be what frees the shard to give a buffer back: nap
    // briefly, then poll it again. Time spent waiting for the shard is the engine's, never the
    // machine's noise.
    let buf = match o.link.try_take() {
        Some(b) => b,
        None => {
            let b = o.link.take_with(idle, std::time::Duration::from_micros(50));
            rep.off_cpu.rested();
            b
        }
    };
    let sent_ns = if measure { clock::now_ns() } else { 0 };
    rep.off_cpu.tick(sent_ns);
    let first = if o.messages == 0 { sent_ns } else { o.first_ns };
    let b = FeedBatch {
        seq: o.seq,
        first_ingress_ns: first,
        last_ingress_ns: if o.last_ns > 0 { o.last_ns } else { sent_ns },
        sent_ns,
        messages: o.messages,
        last,
        checkpoint: mark,
        session: o.session,
        frames: &o.frames,
    };
    let buf = batch::write(&b, buf);
    o.link.send(buf);
    rep.off_cpu.doing_mark(crate::telemetry::offcpu::SEND);
    rep.current
        .stages
        .record(Stage::Ingress, sent_ns.saturating_sub(first));
    rep.tick(sent_ns);
    o.seq += 1;
    o.sent_messages += o.messages as u64;
    o.frames.clear();
    o.messages = 0;
    // The sharing role gets a turn per batch even when the ingress never waits (at max speed).
    idle();
}

/// Paces the replay by feed timestamps.
struct Pacer {
    factor: f64,
    start: Option<(u64, std::time::Instant)>,
    rate_start: Option<u64>,
    /// A busy thread shares the CPU: short waits yield it.
    yields: bool,
    /// Yields made in waits (for tests).
    yielded: u64,
}

impl Pacer {
    fn new(speed: Speed, yields: bool) -> Self {
        let factor = match speed {
            Speed::Max | Speed::Rate(_) => 0.0,
            Speed::Times(f) => f,
        };
        Pacer {
            factor,
            start: None,
            rate_start: None,
            yields,
            yielded: 0,
        }
    }

    fn enabled(&self) -> bool {
        self.factor > 0.0
    }

    fn due(&mut self, ts: u64) -> std::time::Instant {
        let (ts0, t0) = *self.start.get_or_insert((ts, std::time::Instant::now()));
        let ns = (ts.saturating_sub(ts0) as f64 / self.factor) as u64;
        t0 + std::time::Duration::from_nanos(ns)
    }

    /// Engine clock ns at which message `i` (from 0) is due at `rate` messages a second.
    fn due_at(&mut self, i: u64, rate: f64) -> u64 {
        let t0 = *self.rate_start.get_or_insert_with(clock::now_ns);
        t0 + (i as f64 * 1e9 / rate) as u64
    }

    /// One step of a wait until the engine clock reaches `due` (spinning the last stretch):
    /// true once it has, or on `stop`. A yield counts as time off the CPU when another task
    /// takes it; a sleep does not. `holding`: a batch waits for its shard to turn idle, so
    /// the step never sleeps (a slow schedule would hold it until the next message).
    ///
    /// A wait under [`SLEEP_ABOVE_NS`] yields only when a busy thread shares the CPU. Beside
    /// threads that sleep (admin, watch) it spins: they get the CPU from the scheduler within
    /// its slice, and a system call in the wait slowed the next batch's hop. With the yield
    /// (or a `getppid` in its place) the hop p50 was 0.32-0.34 us, without it 0.19-0.20 us,
    /// in 7 of 9 pairs (m7 and v3k at 1M/s, 2026-12-07, 08:20); e2e p50 0.92-0.98 against
    /// 0.83-0.90 us. The cause is in the VM or the kernel; a `sched_yield` itself takes
    /// 148 ns here.
    fn waited_until(
        &mut self,
        due: u64,
        stop: &AtomicBool,
        idle: &mut dyn FnMut() -> bool,
        off: &mut OffCpu,
        holding: bool,
    ) -> bool {
        let now = clock::now_ns();
        off.tick(now);
        if now >= due || stop.load(Ordering::Relaxed) {
            return true;
        }
        if due - now > SLEEP_ABOVE_NS && !holding {
            std::thread::sleep(std::time::Duration::from_nanos(due - now - 100_000));
            off.rested();
        } else if due - now > 300 {
            // The ingress shares its CPU with the consumer and control on small machines:
            // give them the wait, or the shards' event buffers come back late. A consumer
            // polled from here runs at once; a thread of its own needs the scheduler.
            if !idle() {
                if self.yields {
                    self.yielded += 1;
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        } else {
            std::hint::spin_loop();
        }
        false
    }

    fn ahead(&mut self, ts: u64) -> bool {
        self.due(ts) > std::time::Instant::now()
    }

    /// Waits until `ts` is due, or until `stop` is set (a feed's clock can jump by hours,
    /// from the pre-open to the open; a stop must not wait for it). The roles sharing this
    /// thread get their turns meanwhile: a replay waiting hours for the open must still
    /// answer the admin endpoint (it did not, until 2026-12-05).
    fn wait(&mut self, ts: u64, stop: &AtomicBool, idle: &mut dyn FnMut() -> bool) {
        let due = self.due(ts);
        let nap = std::time::Duration::from_millis(1);
        loop {
            let now = std::time::Instant::now();
            if now >= due || stop.load(Ordering::Relaxed) {
                return;
            }
            let left = due - now;
            if idle() {
                continue;
            }
            if left > std::time::Duration::from_micros(200) {
                std::thread::sleep((left - std::time::Duration::from_micros(100)).min(nap));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a run of [`run_at`] saw.
    struct Seen {
        /// The batches the shard was sent, as message counts, in order.
        batches: Vec<u32>,
        /// Turns the sharing roles had while the ingress said it waited ahead of schedule.
        turns_ahead: u64,
        /// Whether it still said so after the run.
        ahead_after: bool,
    }

    fn batches_sent(n: u64, rate: f64) -> Vec<u32> {
        run_at(n, rate, true).batches
    }

    /// Runs the ingress over a generated f2 session of `n` messages at `rate` into one shard
    /// that takes each batch and, when `keeps`, keeps its buffer (so it is idle only until the
    /// first; the link's 64 buffers must then hold every batch), else hands it back.
    fn run_at(n: u64, rate: f64, keeps: bool) -> Seen {
        let bytes = shards::synth::generate(&shards::synth::GenConfig {
            scope: shards::synth::Scope::F2,
            messages: n,
            seed: 3,
            profile: shards::synth::Profile::Realistic,
        })
        .unwrap();
        let source = BytesSource {
            name: "test".into(),
            bytes: &bytes,
            skip_corrupt: false,
        };
        let (tx, mut rx) = super::super::ring::link(64, || super::super::touched_buf(1 << 17));
        let (reporter, _collector) = crate::telemetry::reporting(0, 1_000_000_000);
        let (directory, _dir_rx) = super::super::ring::ring(1 << 12);
        let tel = IngressTelemetry {
            reporter,
            directory,
            measure: true,
            off_cpu: false,
        };
        let marks = crate::checkpoint::marks::Marks::new(0, None, 0, Vec::new());
        let routes = Routes::new(1, Assign::Hash, None);
        let stop = AtomicBool::new(false);
        let (mut seen, mut kept) = (Vec::new(), Vec::new());
        let ahead = std::cell::Cell::new(false);
        let mut turns_ahead = 0;
        let mut idle = || {
            turns_ahead += ahead.get() as u64;
            let mut did = false;
            while let Some(b) = rx.try_recv() {
                seen.push(batch::read_feed(&b).unwrap().messages.to_native());
                if keeps {
                    kept.push(b);
                } else {
                    rx.give_back(b);
                }
                did = true;
            }
            did
        };
        let outlets = Outlets {
            routes: &routes,
            links: vec![tx],
            batch_bytes: 1 << 17,
        };
        let pacing = Pacing {
            speed: Speed::Rate(rate),
            own_cpu: false,
            ahead: &ahead,
        };
        let r = run(&source, outlets, pacing, &stop, tel, marks, &mut idle);
        assert_eq!(r.messages, n);
        idle();
        Seen {
            batches: seen,
            turns_ahead,
            ahead_after: ahead.get(),
        }
    }

    /// The CPU the ingress spins away ahead of its schedule is offered to the roles beside it
    /// (a gateway that fell behind may take it); behind the schedule none is.
    #[rstest::rstest]
    #[case::ahead_of_a_slow_schedule(2_000, 1e5, true)]
    #[case::behind_a_schedule_it_cannot_keep(5_000, 1e12, false)]
    fn spare_cpu_is_offered_only_ahead_of_the_schedule(
        #[case] n: u64,
        #[case] rate: f64,
        #[case] offered: bool,
    ) {
        let seen = run_at(n, rate, false);
        assert_eq!(seen.turns_ahead > 0, offered, "{} turns", seen.turns_ahead);
        assert!(!seen.ahead_after, "not ahead once the feed has ended");
    }

    /// A wait of 50 us for the next message, with nothing for the sharing roles to do: the
    /// yields it made.
    fn yields_in_a_short_wait(yields: bool) -> u64 {
        let mut pace = Pacer::new(Speed::Rate(1e6), yields);
        let (stop, mut off) = (AtomicBool::new(false), OffCpu::default());
        let due = clock::now_ns() + 50_000;
        while !pace.waited_until(due, &stop, &mut || false, &mut off, false) {}
        pace.yielded
    }

    #[rstest::rstest]
    #[case::beside_a_busy_thread(true)]
    #[case::with_its_cpu_to_itself(false)]
    fn a_short_wait_yields_the_cpu_only_beside_a_busy_thread(#[case] shared: bool) {
        let yielded = yields_in_a_short_wait(shared);
        assert_eq!(yielded > 0, shared, "{yielded} yields");
    }

    #[test]
    fn behind_the_schedule_an_idle_shard_is_fed_while_the_backlog_is_read() {
        // At 10^12 messages a second every message is overdue when read: the whole session is
        // a backlog. The shard is idle at the start (every buffer home), so the first batch
        // leaves after at most CATCH_UP_CHECK messages, not with the last one.
        let seen = batches_sent(5_000, 1e12);
        assert!(seen.len() >= 2, "batches {seen:?}");
        assert!(
            seen[0] as u64 <= CATCH_UP_CHECK,
            "the first batch held {} messages",
            seen[0]
        );
        assert_eq!(seen.iter().map(|&m| m as u64).sum::<u64>(), 5_000);
    }

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("realtime".parse::<Speed>(), Ok(Speed::Times(1.0)));
        assert_eq!("10".parse::<Speed>(), Ok(Speed::Times(10.0)));
        assert_eq!("1000000/s".parse::<Speed>(), Ok(Speed::Rate(1e6)));
        assert!("0/s".parse::<Speed>().is_err());
        assert!("fast/s".parse::<Speed>().is_err());
        assert!("0".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
    }

    #[test]
    fn hash_routes_spread_and_balanced_routes_even_out_load() {
        let r = Routes::new(3, Assign::Hash, None);
        let mut n = [0usize; 3];
        (1..=3500u16).for_each(|l| n[r.shard(l)] += 1);
        assert!(n.iter().all(|&c| c > 1000), "{n:?}");
        let bytes = shards::synth::generate(&shards::synth::GenConfig {
            scope: shards::synth::Scope::N100,
            messages: 50_000,
            seed: 3,
            profile: shards::synth::Profile::Realistic,
        })
        .unwrap();
        let b = Routes::new(2, Assign::Balanced, Some(&bytes));
        let mut load = [0u64; 2];
        let _ = walk(&bytes, false, |_, m| {
            let l = u16::from_be_bytes([m[1], m[2]]);
            if l != 0 {
                load[b.shard(l)] += 1;
            }
        });
        let (lo, hi) = (load[0].min(load[1]), load[0].max(load[1]));
        assert!(hi as f64 <= lo as f64 * 1.2, "balanced load {load:?}");
    }
}
