//! Every (symbol, channel) stream the gateway serves, rendered once for all clients: its
//! gateway-wide sequence number and its frames. A trade or a bar becomes one frame that every
//! subscriber's queue shares. A BBO change, or a change of an instrument's top N, becomes the
//! stream's latest frame: a client that kept up takes it as is; a client that fell behind gets a
//! frame rendered for it alone, marked conflated (the latest BBO, or a fresh depth snapshot).
//!
//! Why render once: rendered per client, the JSON of one event was formatted once per
//! subscriber, and with 10 clients formatting and its allocations took about half of the
//! gateway's samples (perf, `tickcore bench --ws-clients 10`, 2026-12-06).
//!
//! Owns the sequence numbers and the depth views a client's top N is diffed against. Never
//! touches a client or a socket.

use super::market::Market;
use super::protocol::{self, DepthFrame, MAX_DEPTH};
use super::wire::Frame;
use shards::bars::Bar;
use shards::events::{Depth, Quote, Trade};
use std::fmt::Write as _;

/// The top N levels a side, as one client view of the book holds them.
type Top = ([Quote; MAX_DEPTH], [Quote; MAX_DEPTH]);

/// A BBO stream: the number of its latest BBO, and that BBO's frames once rendered.
#[derive(Debug, Clone)]
struct BboLine {
    seq: u64,
    /// Ingress ns of the latest change (the frame's stamp).
    at: u64,
    /// Plain (a client that had the one before) and conflated (one that missed some).
    frames: [Option<Frame>; 2],
}

/// A `depth:N` stream of one instrument: the top N after its latest update.
#[derive(Debug)]
pub struct DepthView {
    /// Sequence number of the latest update (0: none since the view was opened).
    pub seq: u64,
    /// Feed time of the depth it holds.
    ts: u64,
    /// Ingress ns of its latest update (a snapshot's stamp; 0: none yet).
    at: u64,
    top: Top,
    /// The update that took the view from `seq - 1` to `seq`.
    pub update: Option<Frame>,
    /// Snapshots at `seq`, once rendered: plain (a new subscriber) and conflated (one that fell
    /// behind).
    snapshots: [Option<Frame>; 2],
}

/// One instrument's streams.
#[derive(Debug, Default)]
struct Line {
    trades: u64,
    bars: u64,
    bbo: Option<BboLine>,
    /// Per N (index N - 1), opened when a client first asks for `depth:N` of the instrument.
    views: [Option<Box<DepthView>>; MAX_DEPTH],
}

/// Every instrument's streams.
#[derive(Debug)]
pub struct Streams {
    /// By locate: every reader of the log looks a BBO's line up, once per change per client
    /// (a vector, not a map; perf, 2026-12-07).
    lines: Vec<Line>,
    /// Stamp data frames with `"t0"` (`tickcore bench --ws-clients`).
    stamp: bool,
    text: String,
    /// Where a frame is encoded before it gets its own allocation.
    scratch: Vec<u8>,
}

impl Streams {
    /// No streams yet; `stamp` adds each frame's ingress time as `"t0"`.
    pub fn new(stamp: bool) -> Self {
        Streams {
            lines: Vec::new(),
            stamp,
            text: String::with_capacity(1024),
            scratch: Vec::with_capacity(1024),
        }
    }

    fn line(&mut self, l: u16) -> &mut Line {
        let i = usize::from(l);
        if i >= self.lines.len() {
            self.lines.resize_with(i + 1, Line::default);
        }
        &mut self.lines[i]
    }

    /// Numbers trade `t` next in its symbol's trades; its frame when `render` (someone takes
    /// it).
    pub fn trade(&mut self, m: &Market, t: &Trade, at: u64, render: bool) -> Option<Frame> {
        let line = self.line(t.locate);
        line.trades += 1;
        let seq = line.trades;
        render.then(|| {
            self.text.clear();
            protocol::trade(&mut self.text, &m.name(t.locate), seq, t);
            self.cut(at)
        })
    }

    /// Numbers closed bar `b` next in its symbol's bars; its frame when `render`.
    pub fn bar(&mut self, m: &Market, b: &Bar, at: u64, render: bool) -> Option<Frame> {
        let line = self.line(b.locate);
        line.bars += 1;
        let seq = line.bars;
        render.then(|| {
            self.text.clear();
            protocol::bar(&mut self.text, &m.name(b.locate), seq, b);
            self.cut(at)
        })
    }

    /// Numbers a BBO change of `l` (the market holds it) and returns its number; its frames
    /// are rendered when a client first takes one.
    pub fn bbo(&mut self, l: u16, at: u64) -> u64 {
        let line = self.line(l);
        let seq = line.bbo.as_ref().map_or(0, |b| b.seq) + 1;
        line.bbo = Some(BboLine {
            seq,
            at,
            frames: [None, None],
        });
        seq
    }

    /// Locates that have a BBO stream are below this.
    pub fn bbo_bound(&self) -> usize {
        self.lines.len()
    }

    /// The number of `l`'s latest BBO.
    pub fn bbo_seq(&self, l: u16) -> Option<u64> {
        Some(self.lines.get(usize::from(l))?.bbo.as_ref()?.seq)
    }

    /// `l`'s latest BBO and its number, plain or `conflated` (for a client that missed some).
    pub fn bbo_frame(&mut self, m: &Market, l: u16, conflated: bool) -> Option<(u64, Frame)> {
        let line = self.lines.get(usize::from(l))?.bbo.as_ref()?;
        let (seq, at) = (line.seq, line.at);
        if let Some(f) = &line.frames[usize::from(conflated)] {
            return Some((seq, f.clone()));
        }
        let b = m.bbo(l)?;
        self.text.clear();
        protocol::bbo(&mut self.text, &m.name(l), seq, b, conflated);
        // Stamped with the latest update's time, also when conflated: one frame serves every
        // client that fell behind. The in-process deliver stage times each client's marker
        // from the oldest update it folds.
        let f = self.cut(at);
        if let Some(line) = self.line(l).bbo.as_mut() {
            line.frames[usize::from(conflated)] = Some(f.clone());
        }
        Some((seq, f))
    }

    /// Diffs `d`, the new top levels of its instrument, against each open view, after opening
    /// the views of the Ns in `open` (bit N - 1) from the market's depth before `d`; returns
    /// the Ns whose top N changed, each view now holding its update frame.
    pub fn depth(&mut self, m: &Market, d: &Depth, at: u64, open: u16) -> u16 {
        let mut changed = 0u16;
        for i in (0..MAX_DEPTH).filter(|i| open & (1 << i) != 0) {
            self.depth_view(m, d.locate, i + 1);
        }
        for i in 0..MAX_DEPTH {
            let Some(mut v) = self.line(d.locate).views[i].take() else {
                continue;
            };
            let n = i + 1;
            let top = top_n(d, n);
            if top != v.top {
                let bids = changes(&v.top.0[..n], &top.0[..n]);
                let asks = changes(&v.top.1[..n], &top.1[..n]);
                v.seq += 1;
                v.ts = d.timestamp;
                v.at = at;
                v.top = top;
                v.snapshots = [None, None];
                self.text.clear();
                let name = m.name(d.locate);
                let f = frame(&name, n, &v, false, (&bids, &asks), false);
                protocol::depth(&mut self.text, &f);
                v.update = Some(self.cut(at));
                changed |= 1 << i;
            }
            self.line(d.locate).views[i] = Some(v);
        }
        changed
    }

    /// The `depth:n` view of `l`, opened from the market's latest depth if it was not open.
    pub fn depth_view(&mut self, m: &Market, l: u16, n: usize) -> &DepthView {
        let slot = &mut self.line(l).views[n - 1];
        slot.get_or_insert_with(|| {
            let (top, ts) = m
                .depth(l)
                .map_or((Top::default(), 0), |d| (top_n(d, n), d.timestamp));
            Box::new(DepthView {
                seq: 0,
                ts,
                at: 0,
                top,
                update: None,
                snapshots: [None, None],
            })
        })
    }

    /// A snapshot of `l`'s top `n` at its view's number, for a client that holds nothing yet,
    /// or (`conflated`) that fell behind.
    pub fn depth_snapshot(&mut self, m: &Market, l: u16, n: usize, conflated: bool) -> Frame {
        self.depth_view(m, l, n);
        let mut v = self.line(l).views[n - 1]
            .take()
            .unwrap_or_else(|| unreachable!("the view was opened above"));
        let f = match &v.snapshots[usize::from(conflated)] {
            Some(f) => f.clone(),
            None => {
                let live = |s: &[Quote]| -> Vec<Quote> {
                    s.iter().copied().filter(|q| q.shares > 0).collect()
                };
                let (bids, asks) = (live(&v.top.0[..n]), live(&v.top.1[..n]));
                self.text.clear();
                let name = m.name(l);
                let f = frame(&name, n, &v, true, (&bids, &asks), conflated);
                protocol::depth(&mut self.text, &f);
                let f = self.cut(v.at);
                v.snapshots[usize::from(conflated)] = Some(f.clone());
                f
            }
        };
        self.line(l).views[n - 1] = Some(v);
        f
    }

    /// Events were lost before the gateway: every symbol's trades and bars skip a number, so
    /// that clients see the gap.
    pub fn skip_trades_and_bars(&mut self) {
        for line in &mut self.lines {
            line.trades += 1;
            line.bars += 1;
        }
    }

    /// Encodes the rendered text as a frame, stamped with `at` when stamping.
    fn cut(&mut self, at: u64) -> Frame {
        if self.stamp && at > 0 && self.text.ends_with('}') {
            self.text.pop();
            let _ = write!(self.text, r#","t0":{at}}}"#);
        }
        Frame::text_with(&mut self.scratch, &self.text)
    }
}

fn frame<'a>(
    symbol: &'a str,
    n: usize,
    v: &DepthView,
    snapshot: bool,
    (bids, asks): (&'a [Quote], &'a [Quote]),
    conflated: bool,
) -> DepthFrame<'a> {
    DepthFrame {
        symbol,
        n: n as u8,
        seq: v.seq,
        ts: v.ts,
        snapshot,
        bids,
        asks,
        crc32: protocol::checksum(&v.top.0[..n], &v.top.1[..n]),
        conflated,
    }
}

/// `d`'s top `n` levels a side, the rest empty.
fn top_n(d: &Depth, n: usize) -> Top {
    let mut top = (d.bids, d.asks);
    for side in [&mut top.0, &mut top.1] {
        side[n..].iter_mut().for_each(|q| *q = Quote::default());
    }
    top
}

/// The levels of `new` that differ from `old`: new or resized ones with their size, and ones
/// gone with size 0.
fn changes(old: &[Quote], new: &[Quote]) -> Vec<Quote> {
    let live = |s: &[Quote]| -> Vec<Quote> { s.iter().copied().filter(|q| q.shares > 0).collect() };
    let (old, new) = (live(old), live(new));
    let mut out: Vec<Quote> = new.iter().copied().filter(|q| !old.contains(q)).collect();
    for q in &old {
        if !new.iter().any(|x| x.price == q.price) {
            out.push(Quote {
                price: q.price,
                shares: 0,
                orders: 0,
            });
        }
    }
    out
}
