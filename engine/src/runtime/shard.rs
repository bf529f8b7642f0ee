//! A shard core: a glommio executor pinned to its CPU that owns its instruments' books.
//!
//! It takes feed batches from the ingress link, reads each in place, applies its frames to the
//! books (through the same prefetch pipeline `tickcore book` uses), turns trades into 1-second
//! and 1-minute bars, and sends the batch's events to the consumer link. Between batches it
//! answers snapshot queries from its own state: the per-core cache of every instrument it owns.
//!
//! Never blocks on another core except to wait for an empty event buffer (backpressure, counted)
//! and never allocates per message: event vectors and bar tables grow to their high-water mark.

use super::batch::{self, Buf, EventBatch};
use super::checkpointer::Checkpointer;
use super::clock;
use super::ring::{Backoff, Consumer, Producer, Receiver, Sender};
use crate::telemetry::{Reporter, Stage};
use shards::bars::{Bar, BarClock};
use shards::book::{Books, LevelInfo, SideKind};
use shards::checkpoint::ShardState;
use shards::events::{
    Bbo, Break, Depth, EventSink, InstrumentState, Listing, Quote, Trade, DEPTH_LEVELS,
};
use std::time::Duration;

/// Price levels per side in a snapshot.
pub const SNAPSHOT_DEPTH: usize = 10;

/// The latest state of one instrument, as its shard holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Instrument.
    pub locate: u16,
    /// Symbol, space padded; all spaces when the shard has no book for the locate.
    pub symbol: [u8; 8],
    /// Best bid and ask.
    pub bid: Quote,
    /// Best ask.
    pub ask: Quote,
    /// Last printable trade: price, shares, feed time (zeros before the first).
    pub last: (u32, u64, u64),
    /// Day's printable trades and volume.
    pub trades: u64,
    /// Day's volume.
    pub volume: u64,
    /// Day VWAP, Price(4); `None` before the first trade.
    pub vwap: Option<u64>,
    /// Top levels per side, best first; unused entries are zero.
    pub bids: [LevelInfo; SNAPSHOT_DEPTH],
    /// Top ask levels.
    pub asks: [LevelInfo; SNAPSHOT_DEPTH],
    /// The open 1-second and 1-minute bars, if any.
    pub bar_1s: Option<Bar>,
    /// The open 1-minute bar.
    pub bar_1m: Option<Bar>,
}

/// A request to a shard.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// The snapshot of one locate.
    Query(u16),
    /// Run at this degrade level from now on (see `telemetry::budget::LEVELS`).
    Level(u8),
    /// Finish: the ingress has sent its last batch and nothing more will be asked.
    Stop,
}

/// What a shard did.
#[derive(Debug, Default)]
pub struct ShardReport {
    /// Shard index.
    pub id: usize,
    /// Messages applied.
    pub messages: u64,
    /// Feed batches taken.
    pub batches: u64,
    /// Trades emitted.
    pub trades: u64,
    /// BBO changes.
    pub bbos: u64,
    /// Bars closed.
    pub bars: u64,
    /// Breaks.
    pub breaks: u64,
    /// BBO changes folded into a later one of the same instrument and batch (degrade level 1
    /// and up): `bbos + bbos_coalesced` is every change the books made.
    pub bbos_coalesced: u64,
    /// Batches that failed validation or framing (a bug if ever non-zero).
    pub bad_batches: u64,
    /// How long each slice of a checkpoint held the shard at once, ns.
    pub checkpoint_stalls_ns: Vec<u64>,
    /// How much of each slice the shard's thread ran (the rest it waited for a CPU), ns.
    pub checkpoint_stalls_cpu_ns: Vec<u64>,
    /// Each checkpoint's work over all its slices, ns.
    pub checkpoint_work_ns: Vec<u64>,
    /// Chunks a write copied first while a checkpoint was taken (each a 6-15 us read inside
    /// one message's apply).
    pub checkpoint_forced_chunks: u64,
    /// Checkpoints written to disk.
    pub checkpoints_written: u64,
    /// Checkpoints not written (the writer was behind, or the disk refused), and the last why.
    pub checkpoints_failed: u64,
    /// Why the last checkpoint failed, or why a restore did.
    pub checkpoint_error: Option<String>,
    /// Its time off its CPU while it ran, when it recorded it (with a CPU to itself).
    pub off_cpu: Option<crate::telemetry::offcpu::Record>,
}

/// A delay injected into one shard's apply stage, for tests and drills (`--chaos`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Chaos {
    /// Spin this long per message applied...
    pub delay_ns: u64,
    /// ...for this long after the shard's first batch (0: for the whole run).
    pub for_ns: u64,
}

/// `--chaos apply-delay=DURATION@shardN[:for=DURATION]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChaosSpec {
    /// The shard.
    pub shard: usize,
    /// What to inject.
    pub chaos: Chaos,
}

impl std::str::FromStr for ChaosSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<ChaosSpec, String> {
        use crate::telemetry::budget::parse_duration;
        let usage =
            "write apply-delay=DURATION@shardN[:for=DURATION], e.g. apply-delay=50us@shard0:for=1s";
        let rest = s
            .strip_prefix("apply-delay=")
            .ok_or_else(|| format!("`{s}`: the only chaos is apply-delay; {usage}"))?;
        let (delay, target) = rest
            .split_once('@')
            .ok_or_else(|| format!("`{s}` names no shard; {usage}"))?;
        let (shard, window) = match target.split_once(':') {
            Some((sh, w)) => (sh, Some(w)),
            None => (target, None),
        };
        let shard = shard
            .strip_prefix("shard")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("`{shard}` is not a shard (shard0, shard1, ...); {usage}"))?;
        let for_ns = match window {
            None => 0,
            Some(w) => {
                let d = w
                    .strip_prefix("for=")
                    .ok_or_else(|| format!("`{w}`: {usage}"))?;
                parse_duration(d)?
            }
        };
        Ok(ChaosSpec {
            shard,
            chaos: Chaos {
                delay_ns: parse_duration(delay)?,
                for_ns,
            },
        })
    }
}

/// Everything a shard core needs.
pub struct ShardCtx {
    /// Shard index.
    pub id: usize,
    /// Feed batches from the ingress.
    pub feed: Receiver<Buf>,
    /// Event batches to the consumer.
    pub events: Sender<Buf>,
    /// Requests from the engine.
    pub control: Consumer<Control>,
    /// Answers to queries.
    pub answers: Producer<Snapshot>,
    /// Stage histograms, shipped to the control core.
    pub reporter: Reporter,
    /// Injected apply delay, if any.
    pub chaos: Option<Chaos>,
    /// The shard has its CPU to itself: when idle it spins instead of parking (a wake-up
    /// costs tens of microseconds, which is the hop budget many times over).
    pub dedicated: bool,
    /// The shard shares the feed's CPU: when idle it yields at once (spinning would keep the
    /// feed, the one thread that can give it work, off the CPU: 54 us of e2e p50 on the live
    /// benchmark, 2026-12-05).
    pub beside_feed: bool,
    /// Read the clock and record the stages (off: `tickcore bench --no-histograms`).
    pub measure: bool,
    /// Live orders to reserve (and touch) room for before the feed starts.
    pub orders: usize,
    /// Books to touch room for before the feed starts.
    pub books: usize,
    /// Counted up once this shard is set up; the ingress starts when every shard has.
    pub ready: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// This thread's id, for the watcher of lost CPU time.
    pub tid: crate::telemetry::lost::Tid,
    /// Send each batch's changed top levels ([`Depth`]): a depth consumer (the WebSocket
    /// gateway) is on.
    pub depth: bool,
    /// Where this shard writes its checkpoints (off: none are taken).
    pub checkpoints: Option<crate::checkpoint::store::Writer>,
    /// How long one slice of a checkpoint may hold the shard, ns.
    pub checkpoint_slice_ns: u64,
    /// The state to start from (a recovery).
    pub restore: Option<shards::checkpoint::ShardState>,
    /// Shards in the run (written into checkpoints).
    pub shards: usize,
}

/// Events of the batch being applied, and the bars being built.
struct Out {
    trades: Vec<Trade>,
    bbos: Vec<Bbo>,
    bars: Vec<Bar>,
    breaks: Vec<Break>,
    listings: Vec<Listing>,
    states: Vec<InstrumentState>,
    /// Instruments whose trade statistics the batch being applied changed, each once.
    touched: Vec<u16>,
    marked: Box<[bool]>,
    /// Feed time of each instrument's latest trade or break.
    changed_at: Box<[u64]>,
    s1: BarClock,
    m1: BarClock,
    /// Degrade level 1+: keep one BBO per instrument per batch.
    coalesce: bool,
    /// Index in `bbos` of each locate's BBO in this batch (`NO_BBO`: none yet).
    bbo_at: Box<[u32]>,
    coalesced: u64,
    /// Top levels to send (empty and unused unless a depth consumer is on).
    depth: DepthOut,
}

/// The depth a shard sends: which books a batch touched, and the top levels last sent for each,
/// so that an instrument whose top levels did not change sends nothing.
#[derive(Default)]
struct DepthOut {
    on: bool,
    /// Locates the batch being applied touched, each once.
    touched: Vec<u16>,
    marked: Box<[bool]>,
    /// Feed time of each locate's latest touch.
    at: Box<[u64]>,
    /// Index in `sent` of each locate's last sent depth (`NO_SLOT`: none yet).
    slot: Box<[u32]>,
    sent: Vec<Depth>,
    /// This batch's changed depths.
    out: Vec<Depth>,
}

const NO_SLOT: u32 = u32::MAX;

impl DepthOut {
    fn new(on: bool) -> Self {
        if !on {
            return DepthOut::default();
        }
        DepthOut {
            on,
            touched: Vec::with_capacity(1024),
            marked: vec![false; 1 << 16].into_boxed_slice(),
            at: vec![0; 1 << 16].into_boxed_slice(),
            slot: vec![NO_SLOT; 1 << 16].into_boxed_slice(),
            sent: Vec::new(),
            out: Vec::with_capacity(256),
        }
    }

    /// Notes that message `m`, at feed time `ts`, may have changed its book's levels.
    #[inline(always)]
    fn note(&mut self, m: &[u8], ts: Option<u64>) {
        if !matches!(m[0], b'A' | b'F' | b'E' | b'C' | b'X' | b'D' | b'U') || m.len() < 11 {
            return;
        }
        let locate = u16::from_be_bytes([m[1], m[2]]);
        self.at[locate as usize] = ts.unwrap_or(0);
        let seen = &mut self.marked[locate as usize];
        if !*seen {
            *seen = true;
            self.touched.push(locate);
        }
    }

    /// Puts in `out` the top levels of every touched book whose top levels changed.
    fn collect(&mut self, books: &Books) {
        for i in 0..self.touched.len() {
            let l = self.touched[i];
            self.marked[l as usize] = false;
            let Some(book) = books.book(l) else { continue };
            let mut d = Depth {
                timestamp: self.at[l as usize],
                locate: l,
                ..Depth::default()
            };
            let level = |x: LevelInfo| Quote {
                shares: x.shares,
                price: x.price,
                orders: x.orders,
            };
            for (slot, x) in d.bids.iter_mut().zip(books.depth(book, SideKind::Bid)) {
                *slot = level(x);
            }
            for (slot, x) in d.asks.iter_mut().zip(books.depth(book, SideKind::Ask)) {
                *slot = level(x);
            }
            let at = &mut self.slot[l as usize];
            if *at == NO_SLOT {
                *at = self.sent.len() as u32;
                self.sent.push(Depth::default());
            }
            let last = &mut self.sent[*at as usize];
            if (last.bids, last.asks) != (d.bids, d.asks) {
                *last = d;
                self.out.push(d);
            }
        }
        self.touched.clear();
    }
}

const _: () = assert!(DEPTH_LEVELS <= SNAPSHOT_DEPTH);

const NO_BBO: u32 = u32::MAX;

impl Out {
    #[inline(always)]
    fn touch(&mut self, locate: u16, t: u64) {
        self.changed_at[locate as usize] = t;
        let m = &mut self.marked[locate as usize];
        if !*m {
            *m = true;
            self.touched.push(locate);
        }
    }

    #[inline(always)]
    fn advance(&mut self, t: u64) {
        let bars = &mut self.bars;
        self.s1.advance(t, |b| bars.push(*b));
        self.m1.advance(t, |b| bars.push(*b));
    }

    fn flush_bars(&mut self) {
        let bars = &mut self.bars;
        self.s1.flush(|b| bars.push(*b));
        self.m1.flush(|b| bars.push(*b));
    }
}

impl EventSink for Out {
    #[inline(always)]
    fn on_trade(&mut self, t: &Trade) {
        self.advance(t.timestamp);
        self.touch(t.locate, t.timestamp);
        if t.printable {
            self.s1.trade(t.locate, t.timestamp, t.price, t.shares);
            self.m1.trade(t.locate, t.timestamp, t.price, t.shares);
        }
        self.trades.push(*t);
    }
    #[inline(always)]
    fn on_bbo(&mut self, b: &Bbo) {
        // Not `touch`: the BBO event carries the new top, and the consumer folds it into the
        // instrument's state. Touching here made every quoted instrument's full state travel
        // beside its BBO each batch (v3k: most states, and 4-5% of the shard's time).
        self.advance(b.timestamp);
        if self.coalesce {
            let at = &mut self.bbo_at[b.locate as usize];
            if *at != NO_BBO {
                self.bbos[*at as usize] = *b;
                self.coalesced += 1;
                return;
            }
            *at = self.bbos.len() as u32;
        }
        self.bbos.push(*b);
    }
    #[inline(always)]
    fn on_break(&mut self, b: &Break) {
        self.touch(b.locate, b.timestamp);
        self.breaks.push(*b);
    }
}

/// Runs a shard until it has applied the last feed batch and been told to stop; returns its
/// books and report.
pub async fn run(mut ctx: ShardCtx) -> (Books, ShardReport) {
    ctx.tid.set_to_current();
    let (orders, first_books) = (ctx.orders, ctx.books);
    let fresh = move || fresh_books(orders, first_books);
    let mut books = fresh();
    let mut rep = ShardReport {
        id: ctx.id,
        ..Default::default()
    };
    let restore = ctx.restore.take();
    let mut out = Out {
        trades: Vec::with_capacity(1024),
        bbos: Vec::with_capacity(1024),
        bars: Vec::with_capacity(256),
        breaks: Vec::new(),
        listings: Vec::new(),
        states: Vec::new(),
        touched: Vec::new(),
        marked: vec![false; 1 << 16].into_boxed_slice(),
        changed_at: vec![0; 1 << 16].into_boxed_slice(),
        s1: BarClock::new(1),
        m1: BarClock::new(60),
        coalesce: false,
        bbo_at: vec![NO_BBO; 1 << 16].into_boxed_slice(),
        coalesced: 0,
        depth: DepthOut::new(ctx.depth),
    };
    shards::book::pages::prefault(&mut out.marked);
    shards::book::pages::prefault(&mut out.changed_at);
    if let Some(state) = restore {
        books = restored(books, fresh, &mut out, &state, &mut rep);
    }
    let slice = ctx.checkpoint_slice_ns;
    let mut writer = ctx
        .checkpoints
        .take()
        .map(|w| Checkpointer::start(w, slice));
    ctx.ready.fetch_add(1, std::sync::atomic::Ordering::Release);
    if ctx.dedicated {
        // Only with its CPU to itself: a shard that shares one waits by choice, and the
        // roles it shares with take turns that are the engine's, not the machine's.
        ctx.reporter.off_cpu.begin();
    }
    let mut chaos_until = 0u64;
    let mut fed_last = false;
    let mut stop = false;
    let mut idle = Backoff::new();
    let mut next = NextFeed::default();
    while !(stop && fed_last) {
        if ctx.reporter.off_cpu.recording() {
            ctx.reporter.off_cpu.tick(clock::now_ns());
        }
        let mut busy = false;
        // One batch, then the control ring: a snapshot waits at most one batch's apply.
        if let Some(buf) = ctx.feed.try_recv() {
            next.saw(buf.as_ptr());
            if let (Some(c), 0) = (ctx.chaos, chaos_until) {
                chaos_until = if c.for_ns == 0 {
                    u64::MAX
                } else {
                    clock::now_ns() + c.for_ns
                };
            }
            let applied = apply(&mut ctx, &mut books, &mut out, &mut rep, &buf, chaos_until);
            // The buffer goes home before the events are built: the ingress sees the shard
            // idle one event write sooner and sends what it holds while the shard emits.
            ctx.feed.hand_back(buf);
            if let Some(a) = &applied {
                emit(&mut ctx, &books, &mut out, &mut rep, a);
            }
            ctx.feed.wake_producer();
            if let Some(a) = applied {
                fed_last |= a.last;
                let mark = (a.checkpoint, a.session);
                if let (Some(w), true) = (&mut writer, mark.0 > 0) {
                    w.begin(mark.0, || head(&ctx, &out, mark), &mut books, &mut rep);
                }
            }
            busy = true;
            glommio::yield_if_needed().await;
        }
        while let Some(c) = ctx.control.try_pop() {
            match c {
                Control::Query(locate) => {
                    let snap = snapshot(&books, &out, locate);
                    if ctx.answers.try_push(snap).is_err() {
                        unreachable!("one answer per query, and the engine asks one at a time");
                    }
                }
                Control::Level(l) => out.coalesce = l >= 1,
                Control::Stop => stop = true,
            }
            busy = true;
        }
        if let Some(w) = writer.as_mut().filter(|w| w.due(!busy)) {
            w.step(&mut books, &mut rep);
            busy = true;
        }
        if writer.as_ref().is_some_and(Checkpointer::busy) {
            // The write's completions are reaped when the executor polls its rings: when the
            // shard sleeps (idle), or at glommio's preemption tick (100 ms) while it is busy.
            // Measured: each step of a write took 100-300 ms with only a yield here.
            if busy {
                glommio::executor().yield_task_queue_now().await;
            } else {
                glommio::timer::sleep(Duration::from_micros(20)).await;
                ctx.reporter.off_cpu.rested();
            }
            continue;
        }
        if busy {
            idle = Backoff::new();
        } else if ctx.dedicated {
            next.ask();
            std::hint::spin_loop();
        } else if ctx.beside_feed && !idle.should_park() {
            std::thread::yield_now();
            idle.skip_spins();
        } else if idle.should_park() {
            ctx.feed.park(Duration::from_micros(500));
        } else {
            idle.snooze();
        }
    }
    rep.bbos_coalesced = out.coalesced;
    rep.off_cpu = ctx.reporter.off_cpu.finish();
    if let Some(mut w) = writer {
        w.complete(&mut books, &mut rep);
        w.finish(&mut rep).await;
    }
    ctx.reporter.flush(Duration::from_millis(200));
    (books, rep)
}

/// Empty books with room for `orders` live orders and the first `touch` books, all of it
/// resident before the feed starts: growing the order table mid-feed copied it into fresh
/// pages, up to tens of ms on v3k.
fn fresh_books(orders: usize, touch: usize) -> Books {
    let mut books = Books::with_capacity(shards::book::Capacity::whole(orders));
    books.touch(touch);
    books
}

/// `books` (new) and `out`'s bar clocks set to `state`; its books' listings go out with the
/// first event batch, so the consumer names their rows as if it had seen the directory.
fn restored(
    books: Books,
    fresh: impl FnOnce() -> Books,
    out: &mut Out,
    state: &shards::checkpoint::ShardState,
    rep: &mut ShardReport,
) -> Books {
    let clocks = match state.clocks.as_slice() {
        [s1, m1] => BarClock::restore(s1).and_then(|a| Ok((a, BarClock::restore(m1)?))),
        _ => Err("a checkpoint holds two bar clocks".to_string()),
    };
    let restored = clocks.and_then(|c| Ok((c, books.restore(&state.books)?)));
    match restored {
        Ok(((s1, m1), b)) => {
            out.s1 = s1;
            out.m1 = m1;
            for book in b.books() {
                out.listings.push(Listing {
                    locate: book.locate,
                    stock: book.symbol,
                });
            }
            b
        }
        Err(e) => {
            rep.checkpoint_error = Some(format!("cannot restore the checkpoint: {e}"));
            fresh()
        }
    }
}

/// The shard's state at checkpoint mark `(applied, session)` but its books, which the
/// [`Checkpointer`] copies in slices.
fn head(ctx: &ShardCtx, out: &Out, (applied, session): (u64, [u8; 10])) -> ShardState {
    ShardState {
        shard: ctx.id as u32,
        shards: ctx.shards as u32,
        applied,
        session,
        feed_time: 0,
        books: Default::default(),
        clocks: vec![out.s1.capture(), out.m1.capture()],
    }
}

/// The feed buffers in the order they come: both rings of a link are FIFO and its buffers a
/// fixed set, so they come round in the same order lap after lap. A spinning shard asks for
/// the next one's first lines with every poll of the ring, so that when the batch comes its
/// lines and the ring's slot cross together instead of one after the other: apply p50 per
/// message 0.21-0.23 -> 0.14-0.20 us, e2e p50 -30-70 ns (m7 and v3k at 1M/s, 5 pairs,
/// 2026-12-07 09:05). A buffer that grew moves; its new address is learnt when it comes.
#[derive(Default)]
struct NextFeed {
    /// Each buffer's address, in the order they came (the first lap, kept up to date).
    order: Vec<usize>,
    /// Where the next one sits in `order`.
    at: usize,
    /// The lap length, once a buffer came round again.
    lap: Option<usize>,
}

impl NextFeed {
    fn saw(&mut self, p: *const u8) {
        let a = p as usize;
        match self.lap {
            Some(n) => {
                self.order[self.at] = a;
                self.at = (self.at + 1) % n;
            }
            None if self.order.first() == Some(&a) => {
                self.lap = Some(self.order.len());
                self.at = 1 % self.order.len();
            }
            None if self.order.len() < 4096 => self.order.push(a),
            None => {}
        }
    }

    /// The address of the buffer expected next, once a lap has been seen.
    fn expected(&self) -> Option<usize> {
        self.lap.map(|_| self.order[self.at])
    }

    /// Asks for the first two lines of the buffer expected next (a hint; it runs with every
    /// poll of an idle shard, so it does no division).
    fn ask(&self) {
        if let Some(a) = self.expected() {
            let p = a as *const u8;
            batch::touch(p);
            batch::touch(p.wrapping_add(64));
        }
    }
}

/// What the shard keeps of a feed batch once its frames are applied (the buffer goes home
/// before the batch's events are built and sent).
struct Applied {
    seq: u64,
    first_ingress_ns: u64,
    last_ingress_ns: u64,
    sent_ns: u64,
    last: bool,
    checkpoint: u64,
    session: [u8; 10],
    /// Messages applied.
    messages: u64,
    /// When the shard picked the batch up (engine ns; 0 unmeasured).
    picked: u64,
}

/// Applies one feed batch's frames to the books and collects what they changed in `out`;
/// `None` for a batch that fails validation (counted).
fn apply(
    ctx: &mut ShardCtx,
    books: &mut Books,
    out: &mut Out,
    rep: &mut ShardReport,
    buf: &[u8],
    chaos_until: u64,
) -> Option<Applied> {
    let picked = if ctx.measure { clock::now_ns() } else { 0 };
    batch::prefetch(buf);
    let Ok(b) = batch::read_feed(buf) else {
        rep.bad_batches += 1;
        return None;
    };
    let mut n = 0u64;
    let mut listings = core::mem::take(&mut out.listings);
    let mut depth = core::mem::take(&mut out.depth);
    let delay = ctx.chaos.map_or(0, |c| c.delay_ns);
    // The batch's last feed time, for the clock that closes bars (a second walk over the batch
    // just for it cost 1-2% of the shard's time on v3k).
    let mut last_ts = None;
    let replayed = books.replay(&b.frames, false, out, |_, m| {
        n += 1;
        let ts = shards::itch::field::timestamp(m);
        last_ts = ts.or(last_ts);
        if delay > 0 {
            spin_chaos(delay, chaos_until);
        }
        if depth.on {
            depth.note(m, ts);
        }
        if m[0] == b'R' && m.len() >= 19 {
            let mut stock = [0u8; 8];
            stock.copy_from_slice(&m[11..19]);
            let locate = u16::from_be_bytes([m[1], m[2]]);
            listings.push(Listing { locate, stock });
        }
    });
    out.listings = listings;
    if depth.on {
        depth.collect(books);
    }
    out.depth = depth;
    if replayed.is_err() {
        rep.bad_batches += 1;
    }
    if let Some(ts) = last_ts {
        out.advance(ts);
    }
    if b.last {
        out.flush_bars();
    }
    Some(Applied {
        seq: b.seq.to_native(),
        first_ingress_ns: b.first_ingress_ns.to_native(),
        last_ingress_ns: b.last_ingress_ns.to_native(),
        sent_ns: b.sent_ns.to_native(),
        last: b.last,
        checkpoint: b.checkpoint.to_native(),
        session: b.session,
        messages: n,
        picked,
    })
}

/// Adds the state of every instrument the batch touched, then sends the batch's events to
/// the consumer link and records its stages.
fn emit(ctx: &mut ShardCtx, books: &Books, out: &mut Out, rep: &mut ShardReport, a: &Applied) {
    let measure = ctx.measure;
    let now = || if measure { clock::now_ns() } else { 0 };
    // With thousands of instruments the touched books' statistics lines are cold: ask for
    // them all first so the misses overlap (v3k: a quarter of the shard's own time was spent
    // waiting on them one by one).
    for &l in &out.touched {
        books.prefetch_book(l);
    }
    for &l in &out.touched {
        out.marked[l as usize] = false;
        if let Some(book) = books.book(l) {
            let (bid, ask) = book.top();
            let st = &book.stats;
            out.states.push(InstrumentState {
                locate: l,
                timestamp: out.changed_at[l as usize],
                bid,
                ask,
                last_price: st.last_price,
                last_shares: st.last_shares,
                trades: st.trades,
                volume: st.volume,
                notional: st.notional,
                pad: [0; 10],
            });
        }
    }
    out.touched.clear();
    for q in &out.bbos {
        out.bbo_at[q.locate as usize] = NO_BBO;
    }
    let applied = now();
    let n = a.messages;
    rep.messages += n;
    rep.batches += 1;
    rep.trades += out.trades.len() as u64;
    rep.bbos += out.bbos.len() as u64;
    rep.bars += out.bars.len() as u64;
    rep.breaks += out.breaks.len() as u64;
    let ev = EventBatch {
        shard: ctx.id as u16,
        seq: a.seq,
        first_ingress_ns: a.first_ingress_ns,
        last: a.last,
        checkpoint: a.checkpoint,
        trades: &out.trades,
        bbos: &out.bbos,
        bars: &out.bars,
        breaks: &out.breaks,
        listings: &out.listings,
        states: &out.states,
        depths: &out.depth.out,
    };
    let events = (ev.trades.len() + ev.bbos.len() + ev.bars.len() + ev.breaks.len()) as u64;
    let ebuf = ctx.events.take();
    let ebuf = batch::write(&ev, ebuf);
    ctx.events.send(ebuf);
    out.trades.clear();
    out.bbos.clear();
    out.bars.clear();
    out.breaks.clear();
    out.listings.clear();
    out.states.clear();
    out.depth.out.clear();
    if measure {
        record(ctx, a, events, (applied, now()));
    }
}

/// Records one batch's stages: (applied, events sent) in engine ns.
fn record(ctx: &mut ShardCtx, a: &Applied, events: u64, (applied, sent): (u64, u64)) {
    let (first, n) = (a.first_ingress_ns, a.messages);
    let t = &mut ctx.reporter.current;
    t.stages
        .record(Stage::Hop, a.picked.saturating_sub(a.sent_ns));
    if let Some(per) = applied.saturating_sub(a.picked).checked_div(n) {
        t.stages.record_n(Stage::Apply, per, n);
        let last = a.last_ingress_ns.max(first);
        record_spread(
            &mut t.stages,
            sent.saturating_sub(first),
            sent.saturating_sub(last),
            n,
        );
    }
    t.stages.record(Stage::Emit, sent.saturating_sub(applied));
    t.items += n;
    t.events += events;
    ctx.reporter.tick(sent);
}

/// Records e2e for each of a batch's `n` messages: the first waited `oldest` ns, the last
/// `newest`, those between are spaced evenly (they were due evenly on a rate schedule, read
/// back to back at max speed). One sample per batch would hide a stall: a batch that piled up
/// a thousand messages behind a descheduled ingress would count once. Messages go in at most
/// [`SPREAD_GROUPS`] runs of equal latency (a run's middle), so a batch costs a few dozen
/// records however long it is, within 1% of the batch's spread of exact.
fn record_spread(stages: &mut crate::telemetry::StageSet, oldest: u64, newest: u64, n: u64) {
    if n <= 1 || oldest == newest {
        return stages.record_n(Stage::E2e, oldest, n.max(1));
    }
    let span = u128::from(oldest - newest);
    let groups = n.min(SPREAD_GROUPS);
    for g in 0..groups {
        let (lo, hi) = (g * n / groups, (g + 1) * n / groups);
        // Message k waited oldest - span * k / (n - 1); the run's middle is k = (lo + hi - 1) / 2.
        let off = span * u128::from(lo + hi - 1) / (2 * u128::from(n - 1));
        stages.record_n(Stage::E2e, oldest - off as u64, hi - lo);
    }
}

/// Runs of equal latency a batch's e2e samples are recorded in.
const SPREAD_GROUPS: u64 = 64;

/// Spins `delay_ns` (chaos), while the chaos window lasts.
#[cold]
fn spin_chaos(delay_ns: u64, until: u64) {
    let start = clock::now_ns();
    if start >= until {
        return;
    }
    while clock::now_ns() - start < delay_ns {
        std::hint::spin_loop();
    }
}

fn snapshot(books: &Books, out: &Out, locate: u16) -> Snapshot {
    let none = LevelInfo {
        price: 0,
        shares: 0,
        orders: 0,
    };
    let mut s = Snapshot {
        locate,
        symbol: *b"        ",
        bid: Quote::default(),
        ask: Quote::default(),
        last: (0, 0, 0),
        trades: 0,
        volume: 0,
        vwap: None,
        bids: [none; SNAPSHOT_DEPTH],
        asks: [none; SNAPSHOT_DEPTH],
        bar_1s: out.s1.current(locate).copied(),
        bar_1m: out.m1.current(locate).copied(),
    };
    let Some(book) = books.book(locate) else {
        return s;
    };
    s.symbol = book.symbol;
    (s.bid, s.ask) = book.top();
    let st = &book.stats;
    s.last = (st.last_price, st.last_shares, st.last_timestamp);
    s.trades = st.trades;
    s.volume = st.volume;
    s.vwap = st.vwap();
    for (slot, l) in s.bids.iter_mut().zip(books.depth(book, SideKind::Bid)) {
        *slot = l;
    }
    for (slot, l) in s.asks.iter_mut().zip(books.depth(book, SideKind::Ask)) {
        *slot = l;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_feed_buffer_is_expected_once_they_came_round_and_a_moved_one_is_learnt() {
        // A link of three buffers: a lap is 0x100, 0x200, 0x300.
        let mut next = NextFeed::default();
        for a in [0x100, 0x200, 0x300] {
            assert_eq!(next.expected(), None, "no lap seen yet");
            next.saw(a as *const u8);
        }
        next.saw(0x100 as *const u8);
        assert_eq!(next.expected(), Some(0x200));
        // The buffer at 0x200 grew and moved to 0x900: missed once, then expected.
        next.saw(0x900 as *const u8);
        assert_eq!(next.expected(), Some(0x300));
        next.saw(0x300 as *const u8);
        next.saw(0x100 as *const u8);
        assert_eq!(next.expected(), Some(0x900));
    }

    #[test]
    fn a_batch_times_each_of_its_messages_from_the_first_to_the_last() {
        let mut set = crate::telemetry::StageSet::default();
        record_spread(&mut set, 10_000, 1_000, 10);
        let h = set.get(Stage::E2e);
        assert_eq!(h.len(), 10);
        assert!(h.equivalent(h.min(), 1_000) && h.equivalent(h.max(), 10_000));
        assert!(
            h.equivalent(h.value_at_quantile(0.5), 5_000),
            "evenly spaced"
        );
        record_spread(&mut set, 7_000, 7_000, 3);
        record_spread(&mut set, 7_000, 7_000, 1);
        assert_eq!(set.get(Stage::E2e).len(), 14);
        // A long batch: every message counted, its quantiles where an exact spread puts them.
        let mut long = crate::telemetry::StageSet::default();
        record_spread(&mut long, 1_001_000, 1_000, 1_001);
        let h = long.get(Stage::E2e);
        assert_eq!(h.len(), 1_001);
        for q in [0.1, 0.5, 0.9] {
            let exact = 1_000.0 + 1_000_000.0 * q;
            let got = h.value_at_quantile(q) as f64;
            assert!((got - exact).abs() / exact < 0.02, "q{q}: {got} vs {exact}");
        }
    }
}
