//! The WebSocket gateway (`run --ws`): a role of the runtime plan on its own thread, serving
//! desks and notebooks trades, BBO, bars and depth as JSON text frames ([`protocol`]), and at
//! `GET /` a live book page.
//!
//! ```text
//!  consumer --GatewayBatch link--> pump --> streams (each frame rendered once, numbered)
//!                                    |          |
//!                                    |          v
//!                                    +--> log (one entry per event) ---> each `*` client's cursor
//!                                    |    runs: a cursor's frames, once   |
//!                                    +--> each named subscriber's queue   |
//!                                    |               \--> its writer <----/ --> socket
//!                                    \--> market (latest BBO and top levels per instrument)
//! ```
//!
//! Why tokio and hyper rather than glommio: the gateway's work is queueing shared frames and
//! waiting on slow sockets, not moving bytes at line rate, and the admin endpoint already runs
//! hyper on a current-thread tokio runtime: one HTTP stack serves both. hyper does the HTTP
//! upgrade (and serves the page on the same port); tungstenite parses what clients send; each
//! frame out is encoded once ([`wire`]) and copied into each connection's write buffer
//! ([`socket`]).
//!
//! A slow client never slows a shard, the consumer or another client: the pump only appends to
//! a bounded log ([`log`]) read by clients subscribed to `*`, and pushes into bounded queues of
//! clients subscribed to named symbols, where BBO and depth conflate ([`client`]); a client a
//! whole log behind has the rest moved into its queue, and a queue that still overflows gets an
//! error frame and a close (1013), counted. The consumer waits only when all
//! of the link's buffers are in flight, which the pump never holds across a socket write.
//!
//! Owns client sessions and their limits. Never touches a book and never blocks the feed.

pub mod client;
pub mod intake;
pub mod log;
pub mod market;
pub mod protocol;
pub mod runs;
mod session;
mod socket;
pub mod streams;
#[cfg(test)]
mod testing;
mod turns;
pub mod wire;

use crate::telemetry::Reporter;
use client::{Client, Limits, KINDS};
use intake::{GatewayBatch, GatewayIntake};
use market::Market;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use streams::Streams;

/// Where `--ws` alone binds.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9900";
/// Kernel send buffer of a client's socket, bytes.
const SEND_BUFFER: usize = 256 << 10;
/// WebSocket connections open at once at most; one more is answered 503.
pub const MAX_CONNECTIONS: usize = 512;

/// The gateway's counters; written by its thread only, read by control for `/metrics` and by
/// the summary.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// WebSocket connections accepted.
    pub accepted: AtomicU64,
    /// Open now.
    pub open: AtomicU64,
    /// Refused over [`MAX_CONNECTIONS`] or for a bad token.
    pub refused: AtomicU64,
    /// Cut off because their queue overflowed.
    pub slow_closed: AtomicU64,
    /// Frames written.
    pub frames: AtomicU64,
    /// Updates folded into a frame already queued.
    pub conflated: AtomicU64,
    /// Error frames sent (bad requests, unknown symbols, rate limits, binary frames).
    pub errors: AtomicU64,
    /// Event batches taken from the consumer.
    pub batches: AtomicU64,
    /// Connections subscribed to something now (what `--ws-wait-clients` waits for).
    pub subscribed: AtomicU64,
    /// Trades and bars lost before they reached the gateway (it was starved of CPU for
    /// [`intake::PENDING_MAX`] of them); clients see a `seq` gap.
    pub lost: AtomicU64,
}

/// What the gateway did, for the summary.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GatewayReport {
    /// The address it served.
    pub addr: String,
    /// Connections accepted.
    pub accepted: u64,
    /// Refused.
    pub refused: u64,
    /// Cut off as slow.
    pub slow_closed: u64,
    /// Frames written.
    pub frames: u64,
    /// Updates conflated.
    pub conflated: u64,
    /// Error frames.
    pub errors: u64,
    /// Event batches taken.
    pub batches: u64,
    /// CPU time the gateway's thread ran, ns (its cost per frame is this over `frames`).
    pub cpu_ns: u64,
}

impl GatewayStats {
    fn report(&self, addr: SocketAddr) -> GatewayReport {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GatewayReport {
            addr: addr.to_string(),
            accepted: l(&self.accepted),
            refused: l(&self.refused),
            slow_closed: l(&self.slow_closed),
            frames: l(&self.frames),
            conflated: l(&self.conflated),
            errors: l(&self.errors),
            batches: l(&self.batches),
            cpu_ns: 0,
        }
    }
}

/// A bound gateway, not yet serving.
pub struct Gateway {
    listener: TcpListener,
    token: Option<String>,
    limits: Limits,
    /// The address it listens on (the real port when `:0` was asked).
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<GatewayStats>,
}

impl Gateway {
    /// Binds `addr`. `token` is `TICKCORE_WS_TOKEN`; a non-loopback address without one is
    /// refused.
    pub fn bind(
        addr: SocketAddr,
        token: Option<String>,
        limits: Limits,
    ) -> Result<Gateway, String> {
        let token = token.filter(|t| !t.is_empty());
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(format!(
                "--ws {addr} is not a loopback address: set TICKCORE_WS_TOKEN (clients then send \
                 `?token=<token>` or `Authorization: Bearer <token>`), or bind 127.0.0.1"
            ));
        }
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen on {addr} for --ws: {e} (pick another port)"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("--ws {addr}: {e}"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(Gateway {
            listener,
            token,
            limits,
            addr,
            stats: Arc::new(GatewayStats::default()),
        })
    }

    /// Serves on a thread of its own, pinned to `cpu` at `nice`, handing the CPU back every
    /// `turn_ns` (0: never), until `stop` is set.
    pub fn start(
        self,
        (cpu, nice, turn_ns): (usize, i32, u64),
        intake: GatewayIntake,
        reporter: Reporter,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<GatewayReport>> {
        std::thread::Builder::new()
            .name("gateway".into())
            .spawn(move || {
                crate::runtime::pin(cpu);
                crate::runtime::set_nice(nice);
                turns::share(turn_ns);
                let (addr, stats) = (self.addr, Arc::clone(&self.stats));
                serve(self, intake, reporter, &stop);
                GatewayReport {
                    cpu_ns: crate::runtime::clock::thread_cpu_ns(),
                    ..stats.report(addr)
                }
            })
    }
}

/// Every client, the market, and who wants what: the gateway thread's state (one thread, so
/// `Rc<RefCell<_>>`, no lock).
pub struct Hub {
    market: Market,
    streams: Streams,
    /// Clients by id (a slot is reused once its session has ended).
    clients: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// Every event a client with a `*` subscription may want, in order.
    log: log::Log,
    /// Clients reading the log.
    readers: Vec<usize>,
    /// What readers in one position take, rendered once for all of them.
    runs: runs::Runs,
    /// Per channel kind: whether some reader takes it.
    read: [bool; KINDS],
    /// Per channel kind: the clients that do not read the log subscribed to each locate.
    index: [FxHashMap<u16, Vec<usize>>; KINDS],
    /// The `depth:N` in use (bit N - 1): each instrument's view of that N opens with its next
    /// depth change, so `*` subscribers get symbols listed later.
    depth_ns: u16,
    /// Clients that got something since they were last woken.
    dirty: Vec<usize>,
    /// Updates folded during the batch being taken (added to the stats once a batch).
    folded: u64,
    /// The run is over: writers drain their queues, then close (1001).
    going_away: bool,
    limits: Limits,
    stats: Arc<GatewayStats>,
    reporter: Reporter,
}

struct Slot {
    client: Client,
    wake: Rc<tokio::sync::Notify>,
    woken: bool,
    /// Notified once, when its queue overflows or its writes stall: its writer stops waiting
    /// on the socket.
    evict: Rc<tokio::sync::Notify>,
    evicted: bool,
    /// When its writer last finished a write (engine ns): a heartbeat follows [`HEARTBEAT`] of
    /// silence.
    last_write_ns: u64,
    /// When the write in progress began (0: none): past [`WRITE_PATIENCE`] the client is cut
    /// off. One patrol of every client per tick instead of a timer per write.
    busy_since_ns: u64,
}

impl Slot {
    /// Tells its writer to stop waiting on the socket and cut it off; counted once.
    fn evict(&mut self, stats: &GatewayStats) {
        if !self.evicted {
            self.evicted = true;
            self.evict.notify_one();
            stats.slow_closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Has its writer woken with the batch's others (`dirty` holds the ids to wake).
    fn wake_later(&mut self, id: usize, dirty: &mut Vec<usize>) {
        if !self.woken {
            self.woken = true;
            dirty.push(id);
        }
    }
}

/// What a writer found to take.
enum Taken {
    /// Frames (maybe none) are in its buffer.
    Frames,
    /// Its queue overflowed: it is to be cut off.
    Slow,
    /// Its client has left.
    Gone,
}

type Shared = Rc<RefCell<Hub>>;

/// A heartbeat goes out after this long without a frame.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long one write may wait for the socket before the client is cut off as stalled.
const WRITE_PATIENCE: Duration = Duration::from_secs(5);
/// How often the gateway ticks: the reporter, heartbeats, stalled writers, the stop flag.
const TICK: Duration = Duration::from_millis(50);

impl Hub {
    fn new(stats: Arc<GatewayStats>, reporter: Reporter, limits: Limits) -> Self {
        Hub {
            market: Market::default(),
            streams: Streams::new(limits.stamp),
            clients: Vec::new(),
            free: Vec::new(),
            log: log::Log::new(limits.queue.max(1)),
            readers: Vec::new(),
            runs: runs::Runs::default(),
            read: [false; KINDS],
            index: Default::default(),
            depth_ns: 0,
            dirty: Vec::new(),
            folded: 0,
            going_away: false,
            limits,
            stats,
            reporter,
        }
    }

    fn slot(&mut self, id: usize) -> Option<&mut Slot> {
        self.clients.get_mut(id).and_then(Option::as_mut)
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.clients.iter().flatten()
    }

    /// Rebuilds who wants what, after a subscription changed or a client left: a client with
    /// a `*` subscription reads the log, the others are indexed by locate.
    fn reindex(&mut self) {
        self.index = Default::default();
        self.readers.clear();
        self.read = [false; KINDS];
        self.depth_ns = 0;
        let mut subscribed = 0;
        for (id, s) in self.clients.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            subscribed += u64::from(s.client.subscribed());
            s.client.follow(&self.log, &self.streams);
            if s.client.reads_log() {
                self.readers.push(id);
                for (k, sel) in s.client.subs.iter().enumerate() {
                    self.read[k] |= !sel.is_empty();
                }
            } else {
                for (k, sel) in s.client.subs.iter().enumerate() {
                    for &l in &sel.some {
                        self.index[k].entry(l).or_default().push(id);
                    }
                }
            }
            if s.client.subscribed_to(client::DEPTH) {
                self.depth_ns |= 1 << (s.client.depth_n - 1);
            }
        }
        self.stats.subscribed.store(subscribed, Ordering::Release);
    }

    /// Whether any client may take kind `k` of `locate`.
    fn wanted(&self, k: usize, locate: u16) -> bool {
        self.read[k] || self.index[k].get(&locate).is_some_and(|v| !v.is_empty())
    }

    /// Takes one batch, and settles the log after it (what the pump does for all the batches
    /// it takes at once).
    #[cfg(test)]
    fn take(&mut self, b: &GatewayBatch) {
        let end = self.log.end();
        self.absorb(b);
        self.settle_log(end);
    }

    /// Takes one batch into the market, the streams, the log and every named subscriber's
    /// queue. The log's readers are settled once after all the batches the pump takes at once
    /// ([`Hub::settle_log`]): per batch, the walk over 100 readers was about 5% of the
    /// gateway's samples (perf, 2026-12-07).
    fn absorb(&mut self, b: &GatewayBatch) {
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        for l in &b.listings {
            self.market.list(l);
        }
        let at = b.first_ingress_ns;
        if b.lost > 0 {
            self.lost(b.lost);
        }
        for t in &b.trades {
            let want = self.wanted(client::TRADES, t.locate);
            if let Some(f) = self.streams.trade(&self.market, t, at, want) {
                self.append(client::TRADES, || log::Entry::Frame {
                    kind: client::TRADES as u8,
                    locate: t.locate,
                    frame: f.clone(),
                    at,
                });
                self.each(client::TRADES, t.locate, |c| {
                    c.on_frame(client::TRADES, t.locate, &f, at)
                });
            }
        }
        for q in &b.bbos {
            self.market.set_bbo(q);
            let seq = self.streams.bbo(q.locate, at);
            self.append(client::BBO, || log::Entry::Bbo {
                locate: q.locate,
                seq,
                at,
            });
            self.each(client::BBO, q.locate, |c| c.on_bbo(q.locate, at));
        }
        for d in &b.depths {
            let changed = self.streams.depth(&self.market, d, at, self.depth_ns);
            self.market.set_depth(d);
            if changed != 0 {
                self.append(client::DEPTH, || log::Entry::Depth {
                    locate: d.locate,
                    changed,
                    at,
                });
                self.each(client::DEPTH, d.locate, |c| {
                    c.on_depth(d.locate, changed, at)
                });
            }
        }
        for x in &b.bars {
            let want = self.wanted(client::BARS, x.locate);
            if let Some(f) = self.streams.bar(&self.market, x, at, want) {
                self.append(client::BARS, || log::Entry::Frame {
                    kind: client::BARS as u8,
                    locate: x.locate,
                    frame: f.clone(),
                    at,
                });
                self.each(client::BARS, x.locate, |c| {
                    c.on_frame(client::BARS, x.locate, &f, at)
                });
            }
        }
        self.count_folds();
    }

    /// Adds the updates folded since the last count to the stats.
    fn count_folds(&mut self) {
        let folded = std::mem::take(&mut self.folded);
        self.stats.conflated.fetch_add(folded, Ordering::Relaxed);
    }

    /// Copies what client `id`'s writer is to write next into `buf`, and their ingress times
    /// into `stamps`: a shared run when one serves it, else its queue and then the log one
    /// frame at a time, up to [`socket::GATHER`] bytes. Marks a write in progress for the
    /// patrol when it took any.
    fn take_frames(
        &mut self,
        id: usize,
        out: &mut impl socket::Sink,
        stamps: &mut runs::Stamps,
    ) -> Taken {
        let Some(slot) = self.clients.get_mut(id).and_then(Option::as_mut) else {
            return Taken::Gone;
        };
        let c = &mut slot.client;
        if c.overflowed {
            return Taken::Slow;
        }
        let held = c.conflated;
        match c.run_key() {
            Some((from, shape)) if from < self.log.end() => {
                let run = self
                    .runs
                    .get(from, shape, &self.log, &self.market, &mut self.streams);
                out.put_whole(&run.bytes);
                stamps.extend(&run.stamps);
                c.took_run(run.end(), run.folded);
            }
            Some(_) => {}
            None => {
                c.unsync(&self.log, &self.streams);
                let buf = out.buffer();
                while buf.len() < socket::GATHER {
                    let Some((f, at)) = c.next_frame(&self.log, &self.market, &mut self.streams)
                    else {
                        break;
                    };
                    buf.extend_from_slice(f.wire());
                    stamps.push(at);
                }
                c.sync_if_current(&self.log);
            }
        }
        // Log readers fold BBO and depth as they read.
        let folded = c.conflated - held;
        self.stats.conflated.fetch_add(folded, Ordering::Relaxed);
        if out.pending() {
            slot.busy_since_ns = crate::runtime::clock::now_ns();
        }
        Taken::Frames
    }

    /// Logs an event of kind `k` if some reader takes that kind.
    fn append(&mut self, k: usize, e: impl FnOnce() -> log::Entry) {
        if self.read[k] {
            self.log.push(e());
        }
    }

    /// After batches that ended the log at `before` grew it: wakes the readers; moves what a
    /// reader is more than the log's cap behind into its queue; drops what every reader read.
    fn settle_log(&mut self, before: u64) {
        let (floor, grew) = (self.log.floor(), self.log.end() > before);
        let mut oldest = self.log.end();
        for &id in &self.readers {
            let Some(s) = self.clients.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            if grew {
                s.wake_later(id, &mut self.dirty);
            }
            let held = s.client.conflated;
            s.client.spill(&self.log, &self.streams, floor);
            self.folded += s.client.conflated - held;
            if s.client.overflowed {
                s.evict(&self.stats);
            }
            oldest = oldest.min(s.client.cursor().unwrap_or(oldest));
        }
        self.log.drop_before(oldest);
        self.count_folds();
    }

    /// Trades and bars were lost before the gateway: their numbers skip one, and every client
    /// is told.
    fn lost(&mut self, lost: u64) {
        self.stats.lost.fetch_add(lost, Ordering::Relaxed);
        self.streams.skip_trades_and_bars();
        let why = protocol::Refusal::new(
            protocol::Code::EventsLost,
            format!(
                "{lost} trades and bars were lost before the gateway (it was starved of CPU); \
                 sequence numbers skip one: resubscribe for fresh snapshots"
            ),
        );
        let mut text = String::new();
        protocol::error(&mut text, &why, None);
        let notice = wire::Frame::text(&text);
        for (id, s) in self.clients.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            s.client.send(notice.clone());
            s.wake_later(id, &mut self.dirty);
        }
    }

    fn each(&mut self, k: usize, locate: u16, mut f: impl FnMut(&mut Client) -> bool) {
        let named = self.index[k].get(&locate).map_or(&[][..], Vec::as_slice);
        for &id in named {
            let Some(s) = self.clients.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            let before = s.client.conflated;
            if f(&mut s.client) {
                s.wake_later(id, &mut self.dirty);
            }
            if s.client.overflowed {
                s.evict(&self.stats);
            }
            self.folded += s.client.conflated - before;
        }
    }

    /// Wakes every client that got something.
    fn wake_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            if let Some(s) = self.slot(id) {
                s.woken = false;
                s.wake.notify_one();
            }
        }
        // The list's allocation is kept for the next batches.
        dirty.clear();
        self.dirty = dirty;
    }

    /// Once a tick: a heartbeat to each client silent for [`HEARTBEAT`], and a cut-off for each
    /// whose write has waited on its socket for [`WRITE_PATIENCE`].
    fn patrol(&mut self, now_ns: u64) {
        let (quiet, patience) = (
            HEARTBEAT.as_nanos() as u64,
            WRITE_PATIENCE.as_nanos() as u64,
        );
        let mut beat = String::new();
        protocol::heartbeat(&mut beat, session::wall_ms());
        let beat = wire::Frame::text(&beat);
        for s in self.clients.iter_mut().flatten() {
            if s.busy_since_ns > 0 {
                if now_ns.saturating_sub(s.busy_since_ns) > patience {
                    s.evict(&self.stats);
                }
            } else if s.client.queued(&self.log) == 0
                && now_ns.saturating_sub(s.last_write_ns) >= quiet
            {
                s.last_write_ns = now_ns;
                s.client.send(beat.clone());
                s.wake.notify_one();
            }
        }
    }

    /// Registers a client; returns its id, its wake-up and its eviction notice.
    fn join(&mut self) -> (usize, Rc<tokio::sync::Notify>, Rc<tokio::sync::Notify>) {
        let wake = Rc::new(tokio::sync::Notify::new());
        let evict = Rc::new(tokio::sync::Notify::new());
        let slot = Slot {
            client: Client::new(self.limits),
            wake: Rc::clone(&wake),
            woken: false,
            evict: Rc::clone(&evict),
            evicted: false,
            last_write_ns: crate::runtime::clock::now_ns(),
            busy_since_ns: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.clients[id] = Some(slot);
                id
            }
            None => {
                self.clients.push(Some(slot));
                self.clients.len() - 1
            }
        };
        (id, wake, evict)
    }

    fn leave(&mut self, id: usize) {
        if let Some(s) = self.clients.get_mut(id) {
            if s.take().is_some() {
                self.free.push(id);
            }
        }
        self.reindex();
    }
}

fn serve(g: Gateway, intake: GatewayIntake, reporter: Reporter, stop: &AtomicBool) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_unpark(turns::rest)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("WebSocket gateway off: no runtime: {e}"),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = match tokio::net::TcpListener::from_std(g.listener) {
            Ok(l) => l,
            Err(e) => return tracing::error!("WebSocket gateway off: {e}"),
        };
        let hub = Hub::new(Arc::clone(&g.stats), reporter, g.limits);
        let hub: Shared = Rc::new(RefCell::new(hub));
        tokio::task::spawn_local(pump(Rc::clone(&hub), intake));
        let token: Rc<Option<String>> = Rc::new(g.token);
        let mut check = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    // A fixed kernel buffer: what a slow client cannot take waits in its queue,
                    // where BBO and depth conflate, not in megabytes of autotuned socket buffer.
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
                    tokio::task::spawn_local(session::http(stream, Rc::clone(&hub), Rc::clone(&token)));
                }
                _ = check.tick() => {
                    let now = crate::runtime::clock::now_ns();
                    let mut h = hub.borrow_mut();
                    h.reporter.tick(now);
                    h.patrol(now);
                    drop(h);
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                }
            }
        }
        say_goodbye(&hub).await;
        hub.borrow_mut().reporter.flush(Duration::from_millis(200));
    });
}

/// Has every client's writer drain its queue and close with 1001 (going away), waiting at
/// most [`GOODBYE`] for them.
async fn say_goodbye(hub: &Shared) {
    {
        let mut h = hub.borrow_mut();
        h.going_away = true;
        for s in h.slots() {
            s.wake.notify_one();
        }
    }
    let deadline = tokio::time::Instant::now() + GOODBYE;
    while hub.borrow().slots().next().is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long clients get to take their last frames when the run ends.
const GOODBYE: Duration = Duration::from_secs(2);

/// Moves batches from the consumer into the clients' queues, and wakes their writers. Sleeps
/// on the link's notify when idle: the consumer's notify after each batch wakes it.
async fn pump(hub: Shared, mut intake: GatewayIntake) {
    loop {
        let mut took = false;
        let end = hub.borrow().log.end();
        while let Some(b) = intake.rx.try_recv() {
            hub.borrow_mut().absorb(&b);
            intake.rx.give_back(b);
            took = true;
            turns::checkpoint();
        }
        if took {
            {
                let mut h = hub.borrow_mut();
                h.settle_log(end);
                h.wake_dirty();
            }
            // Let the writers run before the next batch.
            tokio::task::yield_now().await;
        } else {
            intake.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn hub() -> Hub {
        let (reporter, _) = crate::telemetry::reporting(0, 1_000_000_000);
        Hub::new(Arc::default(), reporter, Limits::default())
    }

    use intake::GatewayBatch;
    use protocol::{Channel, Symbols};
    use shards::events::{Bbo, Listing, Quote};

    /// A hub listing AAPL (1) and MSFT (2), whose client queues hold `queue` frames.
    fn listed(queue: usize) -> Hub {
        let (reporter, _) = crate::telemetry::reporting(0, 1_000_000_000);
        let limits = Limits {
            queue,
            ..Limits::default()
        };
        let mut h = Hub::new(Arc::default(), reporter, limits);
        let listings = [(1u16, b"AAPL    "), (2, b"MSFT    ")]
            .map(|(locate, s)| Listing { locate, stock: *s })
            .to_vec();
        h.take(&GatewayBatch {
            listings,
            ..GatewayBatch::default()
        });
        h
    }

    /// A client joined and subscribed to `channels` of `symbols` (`*` alone: all).
    fn joined(h: &mut Hub, channels: &[Channel], symbols: &[&str]) -> usize {
        let (id, _, _) = h.join();
        let symbols = match symbols {
            ["*"] => Symbols::All,
            named => Symbols::Some(named.iter().map(|s| s.to_string()).collect()),
        };
        let c = &mut h.clients[id].as_mut().unwrap().client;
        c.subscribe(None, channels, &symbols, &h.market).unwrap();
        h.reindex();
        h.frames(id); // the ack
        id
    }

    fn trades(of: &[(u16, u64)]) -> GatewayBatch {
        GatewayBatch {
            first_ingress_ns: 1,
            trades: of.iter().map(|&(l, n)| testing::trade(l, n)).collect(),
            ..GatewayBatch::default()
        }
    }

    fn bbo_of(l: u16, px: u32) -> Bbo {
        let q = |price| Quote {
            shares: 1,
            price,
            orders: 1,
        };
        Bbo::new(l, px as u64, q(px), q(px + 1))
    }

    fn bbo(px: u32) -> GatewayBatch {
        GatewayBatch {
            first_ingress_ns: 1,
            bbos: vec![bbo_of(1, px)],
            ..GatewayBatch::default()
        }
    }

    impl Hub {
        fn queued(&mut self, id: usize) -> usize {
            let log = &self.log;
            self.clients[id].as_ref().unwrap().client.queued(log)
        }

        /// What client `id`'s writer would write now, as JSON (through the writer's own
        /// take, a shared run or one frame at a time).
        fn frames(&mut self, id: usize) -> Vec<serde_json::Value> {
            let (mut out, mut buf, mut stamps) = (Vec::new(), Vec::new(), runs::Stamps::default());
            loop {
                buf.clear();
                assert!(matches!(
                    self.take_frames(id, &mut buf, &mut stamps),
                    Taken::Frames
                ));
                if buf.is_empty() {
                    return out;
                }
                let mut rest = &buf[..];
                while let Some((_, head, len)) = wire::header(rest) {
                    let end = head + len as usize;
                    out.push(serde_json::from_slice(&rest[head..end]).unwrap());
                    rest = &rest[end..];
                }
                assert!(rest.is_empty(), "whole frames only");
            }
        }

        fn client(&self, id: usize) -> &Client {
            &self.clients[id].as_ref().unwrap().client
        }
    }

    fn matches(frames: &[serde_json::Value]) -> Vec<(String, u64, u64)> {
        let field = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
        frames
            .iter()
            .map(|v| (v["symbol"].to_string(), field(v, "seq"), field(v, "match")))
            .collect()
    }

    #[test]
    fn a_star_client_reads_every_trade_once_from_the_log_and_a_named_one_its_own() {
        let mut h = listed(64);
        let star = joined(&mut h, &[Channel::Trades], &["*"]);
        let named = joined(&mut h, &[Channel::Trades], &["MSFT"]);
        assert!(h.client(star).reads_log() && !h.client(named).reads_log());
        h.take(&trades(&[(1, 10), (2, 11)]));
        h.take(&trades(&[(1, 12)]));
        assert_eq!(
            h.log.end() - h.log.base(),
            3,
            "one entry per trade, not per client"
        );
        let want = [
            (r#""AAPL""#.to_string(), 1, 10),
            (r#""MSFT""#.to_string(), 1, 11),
            (r#""AAPL""#.to_string(), 2, 12),
        ];
        assert_eq!(matches(&h.frames(star)), want);
        assert_eq!(matches(&h.frames(named)), want[1..2]);
        assert!(h.frames(star).is_empty(), "each once");
        h.take(&GatewayBatch::default());
        assert_eq!(h.log.base(), h.log.end(), "read entries are dropped");
    }

    #[test]
    fn a_bbo_reader_that_lags_gets_the_latest_once_and_counts_the_folds() {
        let mut h = listed(64);
        let id = joined(&mut h, &[Channel::Bbo], &["*"]);
        (100..105).for_each(|px| h.take(&bbo(px)));
        let f = h.frames(id);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0]["seq"].as_u64(), f[0].get("conflated")),
            (Some(5), None)
        );
        assert_eq!(h.client(id).conflated, 4, "four entries folded");
        h.take(&bbo(90));
        h.take(&bbo(91));
        let f = h.frames(id);
        let got = (f[0]["seq"].as_u64(), f[0]["conflated"].as_bool());
        assert_eq!((f.len(), got), (1, (Some(7), Some(true))), "{f:?}");
    }

    #[test]
    fn a_reader_a_whole_log_behind_has_it_moved_to_its_queue_and_is_cut_off_past_its_limit() {
        let mut h = listed(8);
        let (id, _, evict) = h.join();
        let c = &mut h.clients[id].as_mut().unwrap().client;
        c.subscribe(None, &[Channel::Trades], &Symbols::All, &h.market)
            .unwrap();
        h.reindex();
        for n in 0..8 {
            h.take(&trades(&[(1, n)]));
        }
        assert_eq!(h.queued(id), 9, "the ack, and eight entries in the log");
        h.take(&trades(&[(1, 8)]));
        assert_eq!(h.log.end() - h.log.base(), 8, "the log keeps its cap");
        h.take(&trades(&[
            (1, 9),
            (1, 10),
            (1, 11),
            (1, 12),
            (1, 13),
            (1, 14),
        ]));
        assert_eq!(
            h.queued(id),
            16,
            "a full queue (the ack and 7 moved), a full log"
        );
        assert!(evict.notified().now_or_never().is_none(), "not over yet");
        h.take(&trades(&[(1, 15)]));
        assert!(h.client(id).overflowed, "its queue overflowed");
        assert!(
            evict.notified().now_or_never().is_some(),
            "its writer is told"
        );
        assert_eq!(h.stats.slow_closed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_client_that_drops_its_star_keeps_what_it_had_not_read() {
        let mut h = listed(64);
        let id = joined(&mut h, &[Channel::Trades], &["*"]);
        h.take(&trades(&[(1, 1), (2, 2)]));
        let c = &mut h.clients[id].as_mut().unwrap().client;
        c.unsync(&h.log, &h.streams);
        let aapl = Symbols::Some(vec!["AAPL".into()]);
        c.subscribe(None, &[Channel::Trades], &aapl, &h.market)
            .unwrap();
        let all = Symbols::All;
        c.unsubscribe(None, &[Channel::Trades], &all, &h.market)
            .unwrap();
        c.subscribe(None, &[Channel::Trades], &aapl, &h.market)
            .unwrap();
        h.reindex();
        assert!(!h.client(id).reads_log());
        h.take(&trades(&[(1, 3), (2, 4)]));
        let f = h.frames(id);
        let data: Vec<_> = f.iter().filter(|v| v["type"] == "trade").collect();
        let seqs: Vec<u64> = data.iter().map(|v| v["match"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 3], "AAPL's, read before and after: {f:?}");
    }

    #[test]
    fn a_write_stalled_past_the_patience_is_cut_off_once() {
        let mut h = hub();
        let (id, _, evict) = h.join();
        let start = 1_000;
        h.slot(id).unwrap().busy_since_ns = start;
        let patience = WRITE_PATIENCE.as_nanos() as u64;
        h.patrol(start + patience);
        assert!(evict.notified().now_or_never().is_none(), "not yet");
        h.patrol(start + patience + 1);
        assert!(
            evict.notified().now_or_never().is_some(),
            "its writer is told"
        );
        h.patrol(start + 2 * patience);
        assert_eq!(
            h.stats.slow_closed.load(Ordering::Relaxed),
            1,
            "counted once"
        );
    }

    #[test]
    fn a_silent_client_gets_a_heartbeat_after_a_second_and_a_busy_one_does_not() {
        let mut h = hub();
        let (quiet, _, _) = h.join();
        let (busy, _, _) = h.join();
        let t0 = h.slot(quiet).unwrap().last_write_ns;
        h.slot(busy).unwrap().busy_since_ns = t0;
        let beat = HEARTBEAT.as_nanos() as u64;
        h.patrol(t0 + beat - 1);
        assert_eq!(h.queued(quiet), 0);
        h.patrol(t0 + beat);
        assert_eq!(h.queued(quiet), 1, "a heartbeat");
        assert_eq!(h.queued(busy), 0, "it is writing");
        h.patrol(t0 + beat + beat / 2);
        assert_eq!(h.queued(quiet), 1, "one a second");
    }

    /// A reader of every symbol's trades and BBO, and one that takes the same frames but
    /// names AAPL too, so that no shared run serves it.
    fn pair(h: &mut Hub) -> (usize, usize) {
        let ours = joined(h, &[Channel::Trades, Channel::Bbo], &["*"]);
        let one_by_one = joined(h, &[Channel::Trades, Channel::Bbo], &["*"]);
        let c = &mut h.clients[one_by_one].as_mut().unwrap().client;
        c.unsync(&h.log, &h.streams);
        let aapl = Symbols::Some(vec!["AAPL".into()]);
        c.subscribe(None, &[Channel::Bbo], &aapl, &h.market)
            .unwrap();
        h.reindex();
        h.frames(one_by_one); // the second ack
        (ours, one_by_one)
    }

    fn data(frames: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
        frames.into_iter().filter(|v| v["type"] != "ack").collect()
    }

    /// Random trades and BBO moves of AAPL and MSFT, read by two pairs of clients at random
    /// turns (each pair at the same turns), with heartbeats queued now and then: a client served
    /// by shared runs writes, and folds, exactly what one reading one frame at a time does.
    #[rstest::rstest]
    #[case(1)]
    #[case(2)]
    #[case(3)]
    #[case(4)]
    fn shared_runs_write_what_reading_one_frame_at_a_time_writes(#[case] seed: u64) {
        let mut rng = shards::synth::rng::Rng::new(seed);
        let mut h = listed(1 << 20);
        let pairs = [pair(&mut h), pair(&mut h)];
        let beat = wire::Frame::text(r#"{"type":"heartbeat"}"#);
        let mut n = 0;
        for turn in 0..3_000 {
            let mut b = GatewayBatch {
                first_ingress_ns: turn + 1,
                ..GatewayBatch::default()
            };
            for _ in 0..rng.below(4) {
                n += 1;
                let l = 1 + rng.below(2) as u16;
                match rng.below(3) {
                    0 => b.trades.push(testing::trade(l, n)),
                    _ => b.bbos.push(bbo_of(l, 100 + rng.below(20) as u32)),
                }
            }
            h.take(&b);
            for &(ours, theirs) in &pairs {
                if rng.chance(40) {
                    for id in [ours, theirs] {
                        h.clients[id].as_mut().unwrap().client.send(beat.clone());
                    }
                }
                if rng.chance(300) {
                    let (a, b) = (h.frames(ours), h.frames(theirs));
                    assert_eq!(data(a), data(b), "seed {seed}, turn {turn}");
                    let folds = |id| h.client(id).conflated;
                    assert_eq!(folds(ours), folds(theirs), "seed {seed}, turn {turn}");
                }
            }
        }
        assert!(
            h.runs.served > h.runs.rendered,
            "seed {seed}: the two clients served by runs shared some ({} served, {} rendered)",
            h.runs.served,
            h.runs.rendered
        );
    }

    #[test]
    fn readers_at_one_position_share_one_run() {
        let mut h = listed(64);
        let a = joined(&mut h, &[Channel::Trades, Channel::Bbo], &["*"]);
        let b = joined(&mut h, &[Channel::Trades, Channel::Bbo], &["*"]);
        h.take(&trades(&[(1, 1)]));
        h.frames(a);
        h.frames(b);
        let before = h.runs.rendered;
        h.take(&trades(&[(1, 2), (2, 3)]));
        h.take(&bbo(101));
        let (fa, fb) = (h.frames(a), h.frames(b));
        assert_eq!(fa, fb);
        assert_eq!(fa.len(), 3, "{fa:?}");
        assert_eq!(h.runs.rendered - before, 1, "rendered once for both");
    }

    #[test]
    fn a_reader_served_by_runs_that_subscribes_again_gets_its_snapshot() {
        let mut h = listed(64);
        let id = joined(&mut h, &[Channel::Bbo], &["*"]);
        h.take(&bbo(100));
        h.take(&bbo(101));
        assert_eq!(h.frames(id).len(), 1);
        h.take(&bbo(102));
        assert_eq!(h.frames(id)[0]["seq"], 3, "taken from a run");
        let c = &mut h.clients[id].as_mut().unwrap().client;
        c.unsync(&h.log, &h.streams);
        c.unsubscribe(None, &[Channel::Bbo], &Symbols::All, &h.market)
            .unwrap();
        c.subscribe(None, &[Channel::Bbo], &Symbols::All, &h.market)
            .unwrap();
        h.reindex();
        let f = data(h.frames(id));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0]["seq"].as_u64(), f[0].get("conflated")),
            (Some(3), None)
        );
    }

    #[test]
    fn batches_taken_at_once_are_settled_once_after_them() {
        let mut h = listed(4);
        let id = joined(&mut h, &[Channel::Trades], &["*"]);
        let before = h.log.end();
        for n in 0..6 {
            h.absorb(&trades(&[(1, n)]));
        }
        assert_eq!(
            h.log.end() - h.log.base(),
            6,
            "not settled yet: past the cap"
        );
        h.settle_log(before);
        assert_eq!(
            h.log.end() - h.log.base(),
            4,
            "settled: the log keeps its cap"
        );
        assert_eq!(
            h.queued(id),
            6,
            "the two it was behind the cap moved to its queue"
        );
        let f = h.frames(id);
        let seqs: Vec<u64> = f.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "each once, in order");
    }
}
