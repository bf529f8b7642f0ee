//! One client's state: what it subscribed, where each of its streams stands, and its bounded
//! outbound queue, where BBO and depth updates of one symbol conflate and trades and bars never
//! do.
//!
//! The queue holds frames rendered once for every client ([`Streams`]) and markers: a BBO or
//! depth marker stands for "this symbol's stream moved" and becomes a frame when the writer
//! reaches it. A client that kept up gets the stream's shared frame; one that missed updates
//! meanwhile gets the latest BBO, or a depth snapshot, marked `"conflated":true` (its `seq`
//! minus the one the client had is how many updates it folds). Either is rendered once for
//! every client in that position.
//!
//! A client subscribed to `*` of any channel reads the gateway's shared [`Log`] through a
//! cursor instead, filtering at read time; its queue then holds only its own frames (acks,
//! errors, heartbeats, first snapshots) and what the log moved to it when it fell behind. One
//! that takes every symbol of its channels and nothing else keeps no stream numbers of its own
//! while it keeps up: it takes [`runs`](super::runs) shared with every client at its cursor.
//!
//! Owns no socket and never waits: the gateway's pump pushes, the connection's writer pops.

use super::log::{Entry, Log};
use super::market::Market;
use super::protocol::{self, Channel, Code, Refusal, Symbols, MAX_DEPTH};
use super::runs::Shape;
use super::streams::Streams;
use super::wire::Frame;
use std::collections::{BTreeSet, VecDeque};

/// Channel kinds, as indexes of per-channel tables.
pub const TRADES: usize = 0;
/// BBO.
pub const BBO: usize = 1;
/// Bars.
pub const BARS: usize = 2;
/// Depth.
pub const DEPTH: usize = 3;
/// How many kinds.
pub const KINDS: usize = 4;

fn kind(c: Channel) -> usize {
    match c {
        Channel::Trades => TRADES,
        Channel::Bbo => BBO,
        Channel::Bars => BARS,
        Channel::Depth(_) => DEPTH,
    }
}

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Frames waiting at most; past it the client is cut off as slow. Also the entries the
    /// shared log keeps for a `*` client that lags, before they move into its queue.
    pub queue: usize,
    /// Symbols named (besides `*`) at most.
    pub symbols: usize,
    /// Requests a second (a burst of twice as many is let through).
    pub requests_per_s: u32,
    /// Stamp every data frame with `"t0"`, the engine-clock ns its first message was read
    /// (`tickcore bench --ws-clients`: clients in the same process time their receipt).
    pub stamp: bool,
    /// Echo every frame back instead of speaking the protocol, with 16 MiB frames: only for
    /// the Autobahn conformance suite (`scripts/autobahn`), which tests the framing layer
    /// against an echo server.
    pub echo: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue: 16_384,
            symbols: 1_000,
            requests_per_s: 20,
            stamp: false,
            echo: false,
        }
    }
}

impl Limits {
    /// The limits `cfg` sets (`ws_*` keys).
    pub fn of(cfg: &crate::config::Config) -> Self {
        Limits {
            queue: cfg.ws_queue_frames.value,
            symbols: cfg.ws_symbols.value,
            requests_per_s: cfg.ws_requests_per_s.value as u32,
            stamp: false,
            echo: cfg.ws_echo.value != 0,
        }
    }
}

/// Which symbols one channel is on for.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// `*`.
    pub all: bool,
    /// Named ones.
    pub some: BTreeSet<u16>,
}

impl Selection {
    /// Whether `locate` is selected.
    pub fn wants(&self, locate: u16) -> bool {
        self.all || self.some.contains(&locate)
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        !self.all && self.some.is_empty()
    }
}

/// Where one symbol's BBO and depth streams to this client stand: the sequence number last
/// sent (`None`: the next frame is a snapshot). Touched only when a frame is written.
#[derive(Debug, Default)]
struct Stream {
    bbo: Option<u64>,
    depth: Option<u64>,
}

/// One bit per locate: a marker of one kind waits in the queue. The pump tests it for every
/// subscriber on every BBO change, so it is a bitset, not a map entry: probing each client's
/// stream map there was 21% of the gateway's samples with 50 clients (perf, 2026-12-06).
#[derive(Debug, Default)]
struct Marked(Vec<u64>);

impl Marked {
    /// Sets `l`'s bit; true when it was set already.
    fn test_and_set(&mut self, l: u16) -> bool {
        let (w, bit) = (l as usize >> 6, 1u64 << (l & 63));
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & bit != 0;
        self.0[w] |= bit;
        was
    }

    fn clear(&mut self, l: u16) {
        if let Some(w) = self.0.get_mut(l as usize >> 6) {
            *w &= !(1u64 << (l & 63));
        }
    }
}

#[derive(Debug)]
enum Item {
    /// A frame as it goes out, with the ingress time of what it carries (0: none).
    Frame(Frame, u64),
    /// `locate`'s BBO moved, first at this ingress ns (later moves fold into it).
    Bbo(u16, u64),
    /// `locate`'s top N moved.
    Depth(u16, u64),
}

/// One client.
#[derive(Debug)]
pub struct Client {
    /// What it is subscribed to, per channel kind.
    pub subs: [Selection; KINDS],
    /// Levels a side of its depth subscription.
    pub depth_n: u8,
    /// By locate. A vector, not a map: a log reader looks its stream up for every BBO change,
    /// and the map's probe was the hottest spot of its reading (perf, 2026-12-07).
    streams: Vec<Stream>,
    /// BBO and depth markers waiting in the queue.
    marked: [Marked; 2],
    queue: VecDeque<Item>,
    /// Where it reads the log next, when it reads it (it has a `*` subscription).
    cursor: Option<u64>,
    /// Its BBO streams stand where those of a client that read the log up to this position
    /// stand, and `streams` may be behind: it takes shared [`runs`](super::runs) and keeps no
    /// number of its own. Made explicit again ([`Client::unsync`]) before anything reads or
    /// changes `streams`.
    synced: Option<u64>,
    limits: Limits,
    /// Its queue overflowed: nothing more is queued, the connection is closing.
    pub overflowed: bool,
    /// Updates folded into an entry already queued (BBO and depth).
    pub conflated: u64,
    /// The connection is to close once the queue is written: the close code and reason.
    pub closing: Option<(u16, String)>,
    tokens: f64,
    refilled_ns: u64,
}

impl Client {
    /// A client with nothing subscribed.
    pub fn new(limits: Limits) -> Self {
        Client {
            subs: Default::default(),
            depth_n: MAX_DEPTH as u8,
            streams: Vec::new(),
            marked: Default::default(),
            queue: VecDeque::new(),
            cursor: None,
            synced: None,
            limits,
            overflowed: false,
            conflated: 0,
            closing: None,
            tokens: 2.0 * limits.requests_per_s as f64,
            refilled_ns: 0,
        }
    }

    /// Whether it is subscribed to anything.
    pub fn subscribed(&self) -> bool {
        self.subs.iter().any(|s| !s.is_empty())
    }

    /// Whether it takes channel kind `k` of any symbol.
    pub fn subscribed_to(&self, k: usize) -> bool {
        !self.subs[k].is_empty()
    }

    /// Frames and log entries waiting.
    pub fn queued(&self, log: &Log) -> usize {
        self.queue.len() + self.cursor.map_or(0, |c| (log.end() - c) as usize)
    }

    /// Whether it reads the log: it takes `*` of some channel.
    pub fn reads_log(&self) -> bool {
        self.subs.iter().any(|s| s.all)
    }

    /// Where it reads the log next (`None`: it does not).
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// The channels it takes of every symbol, when that is all it takes (no depth, nothing
    /// named): the shape a shared run is rendered for.
    fn shape(&self) -> Option<Shape> {
        if !self.subs[DEPTH].is_empty() {
            return None;
        }
        let mut shape = 0;
        for k in [TRADES, BBO, BARS] {
            let sel = &self.subs[k];
            if !sel.some.is_empty() {
                return None;
            }
            shape |= u8::from(sel.all) << k;
        }
        (shape != 0).then_some(shape)
    }

    /// Where it reads next and its shape, when a shared run serves it: it stands where a
    /// client that read the log up to its cursor stands, and has nothing of its own queued.
    pub fn run_key(&self) -> Option<(u64, Shape)> {
        let at = self.cursor?;
        if self.synced != Some(at) || !self.queue.is_empty() || self.overflowed {
            return None;
        }
        Some((at, self.shape()?))
    }

    /// It took a run up to `end`, folding `folded` BBO entries.
    pub fn took_run(&mut self, end: u64, folded: u64) {
        assert!(
            self.cursor.is_some_and(|c| c <= end),
            "a run that ends before the reader's cursor"
        );
        self.cursor = Some(end);
        self.synced = Some(end);
        self.conflated += folded;
    }

    /// After reading one frame at a time: once it has read the log to its end with nothing of
    /// its own left, and takes every symbol of its channels, shared runs can serve it.
    pub fn sync_if_current(&mut self, log: &Log) {
        if self.queue.is_empty() && self.cursor == Some(log.end()) && self.shape().is_some() {
            self.synced = self.cursor;
        }
    }

    /// Writes its BBO streams' numbers down again, where a client that read the log up to
    /// the position it synced at stands: each symbol's BBO numbered one below the first BBO
    /// entry after it, or the latest when there is none.
    pub fn unsync(&mut self, log: &Log, s: &Streams) {
        let Some(at) = self.synced.take() else {
            return;
        };
        if self.subs[BBO].is_empty() {
            return;
        }
        let bound = s.bbo_bound();
        for l in 0..bound {
            let l = l as u16;
            self.stream(l).bbo = s.bbo_seq(l);
        }
        let mut met = vec![false; bound];
        for pos in at..log.end() {
            if let Some(Entry::Bbo { locate, seq, .. }) = log.get(pos) {
                let i = usize::from(*locate);
                if !std::mem::replace(&mut met[i], true) {
                    self.stream(*locate).bbo = super::runs::held_before(*seq);
                }
            }
        }
    }

    /// Starts reading the log at its end once it takes `*` of something; stops (taking what it
    /// had not read into its queue) once it takes `*` of nothing.
    pub fn follow(&mut self, log: &Log, s: &Streams) {
        match (self.reads_log(), self.cursor) {
            (true, None) => self.cursor = Some(log.end()),
            (false, Some(_)) => {
                self.spill(log, s, log.end());
                self.cursor = None;
            }
            _ => {}
        }
    }

    /// Moves the log's entries before `upto` that it wants and has not read into its queue,
    /// where BBO and depth conflate and the queue's limit holds.
    pub fn spill(&mut self, log: &Log, s: &Streams, upto: u64) {
        let Some(from) = self.cursor else { return };
        if from >= upto {
            return;
        }
        self.unsync(log, s);
        self.cursor = Some(upto);
        for pos in from..upto {
            if self.overflowed {
                return;
            }
            match log.get(pos) {
                Some(Entry::Frame {
                    kind,
                    locate,
                    frame,
                    at,
                }) => {
                    self.on_frame(*kind as usize, *locate, frame, *at);
                }
                Some(Entry::Bbo { locate, at, .. }) => {
                    self.on_bbo(*locate, *at);
                }
                Some(Entry::Depth {
                    locate,
                    changed,
                    at,
                }) => {
                    self.on_depth(*locate, *changed, *at);
                }
                None => unreachable!("a reader's cursor {from} is behind the log's base"),
            }
        }
    }

    /// Takes one request's token at engine time `now_ns`; false when over the rate.
    pub fn admit(&mut self, now_ns: u64) -> bool {
        let rate = self.limits.requests_per_s as f64;
        let dt = now_ns.saturating_sub(self.refilled_ns) as f64 / 1e9;
        self.refilled_ns = now_ns;
        self.tokens = (self.tokens + dt * rate).min(2.0 * rate);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    fn push(&mut self, item: Item) -> bool {
        if self.overflowed {
            return false;
        }
        if self.queue.len() >= self.limits.queue {
            self.overflowed = true;
            self.queue.clear();
            self.marked = Default::default();
            return false;
        }
        self.queue.push_back(item);
        true
    }

    /// Queues a text frame (an ack, an error).
    pub fn text(&mut self, s: String) -> bool {
        self.send(Frame::text(&s))
    }

    /// Queues a frame encoded once for many clients (a heartbeat, a loss notice).
    pub fn send(&mut self, f: Frame) -> bool {
        self.push(Item::Frame(f, 0))
    }

    /// Queues a trade or bar frame of kind `k` if subscribed to `locate`'s; true when queued.
    pub fn on_frame(&mut self, k: usize, locate: u16, f: &Frame, ingress_ns: u64) -> bool {
        self.subs[k].wants(locate) && self.push(Item::Frame(f.clone(), ingress_ns))
    }

    /// Marks `locate`'s BBO changed (conflating with a marker already queued).
    pub fn on_bbo(&mut self, locate: u16, ingress_ns: u64) -> bool {
        self.subs[BBO].wants(locate) && self.mark(locate, BBO, ingress_ns)
    }

    /// Marks `locate`'s top levels changed, if the top N of this client's `depth:N` did
    /// (`changed`: bit N - 1 per N).
    pub fn on_depth(&mut self, locate: u16, changed: u16, ingress_ns: u64) -> bool {
        changed & (1 << (self.depth_n - 1)) != 0
            && self.subs[DEPTH].wants(locate)
            && self.mark(locate, DEPTH, ingress_ns)
    }

    fn mark(&mut self, locate: u16, k: usize, ingress_ns: u64) -> bool {
        if self.marked[usize::from(k == DEPTH)].test_and_set(locate) {
            self.conflated += 1;
            return false;
        }
        let item = if k == BBO {
            Item::Bbo(locate, ingress_ns)
        } else {
            Item::Depth(locate, ingress_ns)
        };
        self.push(item)
    }

    /// The next frame to write, with the ingress ns of what it carries (0 for a text frame or
    /// a snapshot): its queue first, then the log; `None` when nothing is waiting.
    pub fn next_frame(&mut self, log: &Log, m: &Market, s: &mut Streams) -> Option<(Frame, u64)> {
        self.not_synced();
        while let Some(item) = self.queue.pop_front() {
            let next = match item {
                Item::Frame(f, at) => Some((f, at)),
                Item::Bbo(l, at) => self.bbo_frame(m, s, l).map(|f| (f, at)),
                Item::Depth(l, at) => self.depth_frame(m, s, l).map(|f| (f, at)),
            };
            if next.is_some() {
                return next;
            }
        }
        self.read_log(log, m, s)
    }

    /// The next frame it wants from the log. A BBO or depth entry it wants but already holds
    /// the state of (an earlier entry sent the latest) is folded, and counted as conflated.
    fn read_log(&mut self, log: &Log, m: &Market, s: &mut Streams) -> Option<(Frame, u64)> {
        let mut pos = self.cursor?;
        let next = loop {
            let Some(e) = log.get(pos) else { break None };
            pos += 1;
            let (wanted, got) = match e {
                Entry::Frame {
                    kind,
                    locate,
                    frame,
                    at,
                } => {
                    let wanted = self.subs[*kind as usize].wants(*locate);
                    (wanted, wanted.then(|| (frame.clone(), *at)))
                }
                Entry::Bbo { locate, at, .. } => {
                    let wanted = self.subs[BBO].wants(*locate);
                    let f = wanted.then(|| self.bbo_frame(m, s, *locate)).flatten();
                    (wanted, f.map(|f| (f, *at)))
                }
                Entry::Depth {
                    locate,
                    changed,
                    at,
                } => {
                    let wanted =
                        changed & (1 << (self.depth_n - 1)) != 0 && self.subs[DEPTH].wants(*locate);
                    let f = wanted.then(|| self.depth_frame(m, s, *locate)).flatten();
                    (wanted, f.map(|f| (f, *at)))
                }
            };
            match (wanted, got) {
                (true, Some(f)) => break Some(f),
                (true, None) => self.conflated += 1,
                (false, _) => {}
            }
        };
        assert!(pos <= log.end(), "a reader past the log's end");
        self.cursor = Some(pos);
        next
    }

    /// The shared frame of `l`'s latest BBO if this client had the one before it (or none
    /// yet), else the latest rendered for it, conflated.
    fn bbo_frame(&mut self, m: &Market, s: &mut Streams, l: u16) -> Option<Frame> {
        self.marked[0].clear(l);
        if !self.subs[BBO].wants(l) {
            return None;
        }
        let sent = &mut self.stream(l).bbo;
        let seq = s.bbo_seq(l)?;
        let conflated = match *sent {
            Some(prev) if prev >= seq => return None,
            Some(prev) => prev + 1 < seq,
            None => false,
        };
        let (seq, frame) = s.bbo_frame(m, l, conflated)?;
        *sent = Some(seq);
        Some(frame)
    }

    /// The shared update of `l`'s top N if this client holds the state before it, else a
    /// snapshot rendered for it (conflated when it held an older state).
    fn depth_frame(&mut self, m: &Market, s: &mut Streams, l: u16) -> Option<Frame> {
        let n = self.depth_n as usize;
        self.marked[1].clear(l);
        if !self.subs[DEPTH].wants(l) {
            return None;
        }
        let sent = &mut self.stream(l).depth;
        let v = s.depth_view(m, l, n);
        let (seq, update) = (v.seq, v.update.clone());
        let frame = match (*sent, update) {
            (Some(prev), _) if prev >= seq => return None,
            (Some(prev), Some(u)) if prev + 1 == seq => u,
            (Some(_), _) => s.depth_snapshot(m, l, n, true),
            (None, _) => s.depth_snapshot(m, l, n, false),
        };
        *sent = Some(seq);
        Some(frame)
    }

    fn not_synced(&self) {
        assert!(
            self.synced.is_none(),
            "a client's own stream numbers used while it follows shared runs (unsync first)"
        );
    }

    fn stream(&mut self, l: u16) -> &mut Stream {
        self.not_synced();
        let i = usize::from(l);
        if i >= self.streams.len() {
            self.streams.resize_with(i + 1, Stream::default);
        }
        &mut self.streams[i]
    }

    /// Applies a subscribe; queues its ack, then a snapshot of each new BBO and depth stream.
    pub fn subscribe(
        &mut self,
        id: Option<&serde_json::Value>,
        channels: &[Channel],
        symbols: &Symbols,
        m: &Market,
    ) -> Result<(), Refusal> {
        self.not_synced();
        let picked = resolve(symbols, m, id)?;
        if let Some(set) = &picked {
            let mut named: BTreeSet<u16> = self.subs.iter().flat_map(|s| s.some.clone()).collect();
            named.extend(set.iter().copied());
            if named.len() > self.limits.symbols {
                return Err(Refusal {
                    code: Code::TooManySymbols,
                    msg: format!(
                        "a connection holds at most {} named symbols (this would make {}); use \"*\" or a second connection",
                        self.limits.symbols,
                        named.len()
                    ),
                    id: id.cloned(),
                });
            }
        }
        let mut fresh: Vec<(usize, u16)> = Vec::new();
        for &c in channels {
            let k = kind(c);
            if let Channel::Depth(n) = c {
                if n != self.depth_n && !self.subs[DEPTH].is_empty() {
                    // A new depth replaces the old: every depth stream starts over.
                    self.streams.iter_mut().for_each(|s| s.depth = None);
                    fresh.extend(self.selected(DEPTH, m).into_iter().map(|l| (DEPTH, l)));
                }
                self.depth_n = n;
            }
            let sel = &mut self.subs[k];
            match &picked {
                None => {
                    if !sel.all {
                        let already = sel.some.clone();
                        fresh.extend(m.locates().filter(|l| !already.contains(l)).map(|l| (k, l)));
                    }
                    sel.all = true;
                }
                Some(set) => {
                    for &l in set {
                        if !sel.wants(l) {
                            fresh.push((k, l));
                        }
                        sel.some.insert(l);
                    }
                }
            }
        }
        let mut out = String::new();
        protocol::ack(&mut out, "subscribe", id, &self.described(m));
        self.text(out);
        fresh.sort_unstable();
        fresh.dedup();
        for (k, l) in fresh {
            match k {
                DEPTH => {
                    self.stream(l).depth = None;
                    self.mark(l, DEPTH, 0);
                }
                BBO if m.bbo(l).is_some() => {
                    self.stream(l).bbo = None;
                    self.mark(l, BBO, 0);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies an unsubscribe and queues its ack.
    pub fn unsubscribe(
        &mut self,
        id: Option<&serde_json::Value>,
        channels: &[Channel],
        symbols: &Symbols,
        m: &Market,
    ) -> Result<(), Refusal> {
        self.not_synced();
        let picked = resolve(symbols, m, id)?;
        for &c in channels {
            let sel = &mut self.subs[kind(c)];
            match &picked {
                None => *sel = Selection::default(),
                Some(set) => set.iter().for_each(|l| {
                    sel.some.remove(l);
                }),
            }
            // A later subscribe starts with the stream's current state.
            let (k, keep) = (kind(c), sel.clone());
            let dropped = self.streams.iter_mut().enumerate();
            for (_, s) in dropped.filter(|(l, _)| !keep.wants(*l as u16)) {
                match k {
                    BBO => s.bbo = None,
                    DEPTH => s.depth = None,
                    _ => {}
                }
            }
        }
        let mut out = String::new();
        protocol::ack(&mut out, "unsubscribe", id, &self.described(m));
        self.text(out);
        Ok(())
    }

    fn selected(&self, k: usize, m: &Market) -> Vec<u16> {
        if self.subs[k].all {
            m.locates().collect()
        } else {
            self.subs[k].some.iter().copied().collect()
        }
    }

    /// The whole subscription, channel -> symbols.
    pub fn described(&self, m: &Market) -> Vec<(Channel, Vec<String>)> {
        let channels = [
            Channel::Trades,
            Channel::Bbo,
            Channel::Bars,
            Channel::Depth(self.depth_n),
        ];
        channels
            .iter()
            .zip(&self.subs)
            .filter(|(_, s)| !s.is_empty())
            .map(|(c, s)| {
                let names = if s.all {
                    vec!["*".to_string()]
                } else {
                    s.some.iter().map(|l| m.name(*l).into_owned()).collect()
                };
                (*c, names)
            })
            .collect()
    }
}

/// The locates `symbols` names (`None`: all), or the refusal naming the unknown ones.
fn resolve(
    symbols: &Symbols,
    m: &Market,
    id: Option<&serde_json::Value>,
) -> Result<Option<BTreeSet<u16>>, Refusal> {
    let Symbols::Some(names) = symbols else {
        return Ok(None);
    };
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| m.locate(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal {
            code: Code::UnknownSymbol,
            msg: format!(
                "not in the feed: {} (`known` lists those that are)",
                unknown.join(", ")
            ),
            id: id.cloned(),
        });
    }
    Ok(Some(names.iter().filter_map(|n| m.locate(n)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::testing::trade;
    use shards::events::{Bbo, Depth, Listing, Quote, Trade};

    /// The gateway's side of a test: its market and streams, fed as the pump feeds them.
    struct Desk {
        m: Market,
        s: Streams,
        log: Log,
    }

    impl Desk {
        fn new() -> Self {
            let mut m = Market::default();
            for (l, s) in [(1u16, b"AAPL    "), (2, b"MSFT    ")] {
                m.list(&Listing {
                    locate: l,
                    stock: *s,
                });
            }
            Desk {
                m,
                s: Streams::new(false),
                log: Log::new(16),
            }
        }

        fn trade(&mut self, c: &mut [&mut Client], t: &Trade) -> bool {
            let f = self.s.trade(&self.m, t, 1, true).expect("rendered");
            c.iter_mut()
                .map(|c| c.on_frame(TRADES, t.locate, &f, 1))
                .fold(false, |a, b| a | b)
        }

        fn bbo(&mut self, c: &mut Client, b: &Bbo) {
            self.m.set_bbo(b);
            self.s.bbo(b.locate, 1);
            c.on_bbo(b.locate, 1);
        }

        fn depth(&mut self, c: &mut Client, d: &Depth) -> bool {
            let open = 1 << (c.depth_n - 1);
            let changed = self.s.depth(&self.m, d, 1, open);
            self.m.set_depth(d);
            c.on_depth(d.locate, changed, 1)
        }

        fn frames(&mut self, c: &mut Client) -> Vec<serde_json::Value> {
            std::iter::from_fn(|| c.next_frame(&self.log, &self.m, &mut self.s))
                .map(|(f, _)| serde_json::from_str(f.as_str()).expect("a frame is JSON"))
                .collect()
        }

        fn sub(&mut self, c: &mut Client, channels: &[Channel], symbols: &[&str]) {
            let s = Symbols::Some(symbols.iter().map(|s| s.to_string()).collect());
            c.subscribe(Some(&1.into()), channels, &s, &self.m)
                .expect("subscribed");
        }
    }

    fn q(price: u32, shares: u64) -> Quote {
        Quote {
            shares,
            price,
            orders: 1,
        }
    }

    fn bbo(px: u32) -> Bbo {
        Bbo::new(1, px as u64, q(px, 1), q(px + 1, 1))
    }

    #[test]
    fn bbo_updates_of_one_symbol_conflate_and_say_so() {
        let mut d = Desk::new();
        let mut c = Client::new(Limits::default());
        d.sub(&mut c, &[Channel::Bbo], &["AAPL"]);
        assert_eq!(d.frames(&mut c)[0]["type"], "ack");
        for px in 100..105 {
            d.bbo(&mut c, &bbo(px));
        }
        let f = d.frames(&mut c);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0]["bid"]["px"], "0.0104", "the latest");
        assert_eq!(f[0]["seq"], 5, "the stream's number: five changes so far");
        assert_eq!(f[0].get("conflated"), None, "its first: nothing folded");
        d.bbo(&mut c, &bbo(90));
        d.bbo(&mut c, &bbo(91));
        let f = d.frames(&mut c);
        assert_eq!(f.len(), 1, "{f:?}");
        let got = (f[0]["seq"].as_u64(), f[0]["conflated"].as_bool());
        assert_eq!(got, (Some(7), Some(true)), "folds seq 6: {}", f[0]);
        d.bbo(&mut c, &bbo(92));
        let f = d.frames(&mut c);
        assert_eq!(
            (f[0]["seq"].as_u64(), f[0].get("conflated")),
            (Some(8), None)
        );
    }

    #[test]
    fn trades_never_conflate_and_an_overflowing_queue_cuts_the_client_off() {
        let mut d = Desk::new();
        let limits = Limits {
            queue: 10,
            ..Limits::default()
        };
        let mut c = Client::new(limits);
        d.sub(&mut c, &[Channel::Trades], &["AAPL"]);
        for n in 0..9 {
            assert!(d.trade(&mut [&mut c], &trade(1, n)));
        }
        assert!(!d.trade(&mut [&mut c], &trade(2, 0)), "not subscribed");
        assert!(!c.overflowed);
        assert!(
            !d.trade(&mut [&mut c], &trade(1, 9)),
            "the eleventh frame overflows"
        );
        assert!(c.overflowed);
        assert_eq!(
            c.queued(&d.log),
            0,
            "an overflowed client's queue is dropped"
        );
        assert!(!d.trade(&mut [&mut c], &trade(1, 10)));
    }

    #[test]
    fn trades_keep_their_order_and_count_by_one_per_symbol() {
        let mut d = Desk::new();
        let mut c = Client::new(Limits::default());
        d.sub(&mut c, &[Channel::Trades], &["AAPL", "MSFT"]);
        for n in 0..6 {
            d.trade(&mut [&mut c], &trade(1 + (n % 2) as u16, n));
        }
        let f = d.frames(&mut c);
        let seqs: Vec<(&str, u64, u64)> = f[1..]
            .iter()
            .map(|v| {
                let field = |k: &str| v[k].as_u64().unwrap();
                (v["symbol"].as_str().unwrap(), field("seq"), field("match"))
            })
            .collect();
        let want = [
            ("AAPL", 1, 0),
            ("MSFT", 1, 1),
            ("AAPL", 2, 2),
            ("MSFT", 2, 3),
            ("AAPL", 3, 4),
            ("MSFT", 3, 5),
        ];
        assert_eq!(seqs, want);
    }

    #[test]
    fn every_subscriber_shares_one_rendered_trade_frame() {
        let mut d = Desk::new();
        let (mut a, mut b) = (
            Client::new(Limits::default()),
            Client::new(Limits::default()),
        );
        d.sub(&mut a, &[Channel::Trades], &["AAPL"]);
        d.sub(&mut b, &[Channel::Trades], &["AAPL"]);
        d.trade(&mut [&mut a, &mut b], &trade(1, 7));
        let mut last = |c: &mut Client| {
            std::iter::from_fn(|| c.next_frame(&d.log, &d.m, &mut d.s))
                .last()
                .expect("a frame")
                .0
        };
        let (fa, fb) = (last(&mut a), last(&mut b));
        assert_eq!(fa, fb);
        assert_eq!(
            fa.wire().as_ptr(),
            fb.wire().as_ptr(),
            "the same bytes, rendered once"
        );
    }

    fn depth(bids: &[(u32, u64)], asks: &[(u32, u64)]) -> Depth {
        let mut d = Depth {
            locate: 1,
            timestamp: 9,
            ..Depth::default()
        };
        for (i, &(p, s)) in bids.iter().enumerate() {
            d.bids[i] = q(p, s);
        }
        for (i, &(p, s)) in asks.iter().enumerate() {
            d.asks[i] = q(p, s);
        }
        d
    }

    /// Applies a depth frame to a client's copy, as a client would.
    fn apply(book: &mut (Vec<Quote>, Vec<Quote>), f: &serde_json::Value) {
        let parse = |l: &serde_json::Value| {
            let px: f64 = l[0].as_str().unwrap().parse().unwrap();
            q((px * 10_000.0).round() as u32, l[1].as_u64().unwrap())
        };
        if f["type"] == "snapshot" {
            book.0.clear();
            book.1.clear();
        }
        for (side, key, best_high) in [(&mut book.0, "bids", true), (&mut book.1, "asks", false)] {
            for l in f[key].as_array().unwrap() {
                let x = parse(l);
                side.retain(|o| o.price != x.price);
                if x.shares > 0 {
                    side.push(x);
                }
            }
            side.sort_by_key(|o| o.price);
            if best_high {
                side.reverse();
            }
        }
        let crc = protocol::checksum(&book.0, &book.1) as u64;
        assert_eq!(f["crc32"].as_u64(), Some(crc), "the copy checks out: {f}");
    }

    #[test]
    fn depth_is_a_snapshot_then_shared_updates_and_a_fresh_snapshot_after_a_fold() {
        let mut d = Desk::new();
        d.m.set_depth(&depth(&[(100, 5), (99, 6), (98, 7)], &[(101, 1), (102, 2)]));
        let mut c = Client::new(Limits::default());
        d.sub(&mut c, &[Channel::Depth(2)], &["AAPL"]);
        let f = d.frames(&mut c);
        let got = (f[1]["type"].as_str(), f[1]["seq"].as_u64());
        assert_eq!(got, (Some("snapshot"), Some(0)), "the view as it stands");
        assert_eq!(f[1]["bids"].as_array().unwrap().len(), 2, "depth:2");
        let mut book = (Vec::new(), Vec::new());
        apply(&mut book, &f[1]);
        // The best bid leaves: one update, the one every subscriber shares.
        assert!(d.depth(&mut c, &depth(&[(99, 6), (98, 7)], &[(101, 1), (102, 2)])));
        let f = d.frames(&mut c);
        let got = (
            f[0]["type"].as_str(),
            f[0]["seq"].as_u64(),
            f[0].get("conflated"),
        );
        assert_eq!(got, (Some("update"), Some(1), None), "{}", f[0]);
        apply(&mut book, &f[0]);
        assert_eq!(book.0, [q(99, 6), q(98, 7)]);
        // Two changes before it reads: a fresh snapshot, marked conflated.
        d.depth(&mut c, &depth(&[(99, 6), (98, 7)], &[(101, 3), (102, 2)]));
        d.depth(&mut c, &depth(&[(99, 6), (98, 8)], &[(101, 3), (102, 2)]));
        let f = d.frames(&mut c);
        assert_eq!(f.len(), 1);
        let got = (
            f[0]["type"].as_str(),
            f[0]["seq"].as_u64(),
            f[0]["conflated"].as_bool(),
        );
        assert_eq!(got, (Some("snapshot"), Some(3), Some(true)), "{}", f[0]);
        apply(&mut book, &f[0]);
        assert_eq!(book.1, [q(101, 3), q(102, 2)]);
        // A level below the top 2 moves: nothing to send.
        let deeper = depth(&[(99, 6), (98, 8), (97, 1)], &[(101, 3), (102, 2)]);
        assert!(!d.depth(&mut c, &deeper));
        assert!(d.frames(&mut c).is_empty());
    }

    #[test]
    fn a_star_depth_subscriber_gets_a_symbol_listed_later() {
        let mut d = Desk::new();
        let mut c = Client::new(Limits::default());
        c.subscribe(None, &[Channel::Depth(1)], &Symbols::All, &d.m)
            .expect("subscribed");
        d.frames(&mut c);
        d.m.list(&Listing {
            locate: 3,
            stock: *b"NVDA    ",
        });
        let mut x = depth(&[(50, 1)], &[(51, 1)]);
        x.locate = 3;
        assert!(d.depth(&mut c, &x), "its view opens with its first change");
        let f = d.frames(&mut c);
        let got = (f[0]["symbol"].as_str(), f[0]["type"].as_str());
        assert_eq!(got, (Some("NVDA"), Some("snapshot")), "{}", f[0]);
    }

    #[test]
    fn an_unknown_symbol_is_refused_whole_and_a_symbol_cap_holds() {
        let m = Desk::new().m;
        let mut c = Client::new(Limits {
            symbols: 1,
            ..Limits::default()
        });
        let s = Symbols::Some(vec!["AAPL".into(), "ZZZZ".into()]);
        let r = c
            .subscribe(None, &[Channel::Bbo], &s, &m)
            .expect_err("refused");
        assert_eq!(r.code, Code::UnknownSymbol);
        assert!(r.msg.contains("ZZZZ"), "{}", r.msg);
        assert!(c.subs[BBO].is_empty(), "nothing subscribed");
        c.subscribe(
            None,
            &[Channel::Bbo],
            &Symbols::Some(vec!["AAPL".into()]),
            &m,
        )
        .expect("subscribed");
        let s = Symbols::Some(vec!["MSFT".into()]);
        let r = c
            .subscribe(None, &[Channel::Trades], &s, &m)
            .expect_err("capped");
        assert_eq!(r.code, Code::TooManySymbols);
        c.subscribe(None, &[Channel::Trades], &Symbols::All, &m)
            .expect("* is not capped");
    }

    #[test]
    fn the_request_rate_is_bounded_with_a_burst() {
        let mut c = Client::new(Limits {
            requests_per_s: 10,
            ..Limits::default()
        });
        let admitted = (0..30).filter(|_| c.admit(1_000_000_000)).count();
        assert_eq!(admitted, 20, "a burst of twice the rate");
        assert!(
            c.admit(1_100_000_000),
            "a tenth of a second later, one more"
        );
        assert!(!c.admit(1_100_000_000));
    }
}
