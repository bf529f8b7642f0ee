//! One client's state: what it subscribed, its sequence numbers, and its bounded outbound
//! queue, where BBO and depth updates of one symbol conflate and trades and bars never do.
//!
//! The queue holds events, not text: a BBO or depth entry is a marker, rendered from the
//! [`Market`] when the writer reaches it, so however many updates arrived meanwhile, the
//! client gets the latest, once, marked `"conflated":true`. Depth is sent as a snapshot, then
//! as the levels that changed against what this client was last sent.
//!
//! Owns no socket and never waits: the gateway's pump pushes, the connection's writer pops.

use super::market::Market;
use super::protocol::{self, Channel, Code, DepthFrame, Refusal, Symbols, MAX_DEPTH};
use shards::bars::Bar;
use shards::events::{Quote, Trade};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

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
    /// Frames waiting at most; past it the client is cut off as slow.
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

    fn is_empty(&self) -> bool {
        !self.all && self.some.is_empty()
    }
}

/// A BBO or depth update waiting in the queue.
#[derive(Debug, Default, Clone, Copy)]
struct Pending {
    queued: bool,
    /// Updates folded into the entry.
    merged: u32,
    /// Ingress time of the oldest of them.
    oldest_ns: u64,
}

/// One symbol's stream to this client.
#[derive(Debug, Default)]
struct Stream {
    /// Last sequence number sent, per channel kind.
    seq: [u64; KINDS],
    bbo: Pending,
    depth: Pending,
    /// The top levels this client holds (as last sent); `None`: a snapshot comes next.
    held: Option<Box<([Quote; MAX_DEPTH], [Quote; MAX_DEPTH])>>,
}

#[derive(Debug)]
enum Item {
    Text(String),
    Trade(Trade, u64),
    Bar(Bar, u64),
    Bbo(u16),
    Depth(u16),
}

/// One client.
#[derive(Debug)]
pub struct Client {
    /// What it is subscribed to, per channel kind.
    pub subs: [Selection; KINDS],
    /// Levels a side of its depth subscription.
    pub depth_n: u8,
    streams: HashMap<u16, Stream>,
    queue: VecDeque<Item>,
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
            streams: HashMap::new(),
            queue: VecDeque::new(),
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

    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
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
            return false;
        }
        self.queue.push_back(item);
        true
    }

    /// Queues a text frame (an ack, an error, a heartbeat).
    pub fn text(&mut self, s: String) -> bool {
        self.push(Item::Text(s))
    }

    /// Queues `t` if subscribed; true when something was queued.
    pub fn on_trade(&mut self, t: &Trade, ingress_ns: u64) -> bool {
        self.subs[TRADES].wants(t.locate) && self.push(Item::Trade(*t, ingress_ns))
    }

    /// Queues `b` if subscribed.
    pub fn on_bar(&mut self, b: &Bar, ingress_ns: u64) -> bool {
        self.subs[BARS].wants(b.locate) && self.push(Item::Bar(*b, ingress_ns))
    }

    /// Marks `locate`'s BBO changed (conflating with an entry already queued).
    pub fn on_bbo(&mut self, locate: u16, ingress_ns: u64) -> bool {
        self.subs[BBO].wants(locate) && self.mark(locate, BBO, ingress_ns)
    }

    /// Marks `locate`'s top levels changed.
    pub fn on_depth(&mut self, locate: u16, ingress_ns: u64) -> bool {
        self.subs[DEPTH].wants(locate) && self.mark(locate, DEPTH, ingress_ns)
    }

    fn mark(&mut self, locate: u16, k: usize, ingress_ns: u64) -> bool {
        let s = self.streams.entry(locate).or_default();
        let p = if k == BBO { &mut s.bbo } else { &mut s.depth };
        if p.queued {
            p.merged += 1;
            self.conflated += 1;
            return false;
        }
        *p = Pending {
            queued: true,
            merged: 1,
            oldest_ns: ingress_ns,
        };
        let item = if k == BBO {
            Item::Bbo(locate)
        } else {
            Item::Depth(locate)
        };
        self.push(item)
    }

    /// Renders the next frame into `out` (cleared first): `Some(ingress ns)` of what it
    /// carries (0 for a text frame), `None` when nothing is waiting.
    pub fn next_frame(&mut self, m: &Market, out: &mut String) -> Option<u64> {
        loop {
            out.clear();
            let item = self.queue.pop_front()?;
            let at = match item {
                Item::Text(s) => {
                    *out = s;
                    0
                }
                Item::Trade(t, at) => {
                    let seq = self.next_seq(t.locate, TRADES);
                    protocol::trade(out, &m.name(t.locate), seq, &t);
                    at
                }
                Item::Bar(b, at) => {
                    let seq = self.next_seq(b.locate, BARS);
                    protocol::bar(out, &m.name(b.locate), seq, &b);
                    at
                }
                Item::Bbo(l) => {
                    let p = std::mem::take(&mut self.stream(l).bbo);
                    let Some(b) = m.bbo(l) else { continue };
                    let seq = self.next_seq(l, BBO);
                    protocol::bbo(out, &m.name(l), seq, b, p.merged);
                    p.oldest_ns
                }
                Item::Depth(l) => {
                    let p = std::mem::take(&mut self.stream(l).depth);
                    if !self.depth_frame(m, l, p.merged, out) {
                        continue;
                    }
                    p.oldest_ns
                }
            };
            if self.limits.stamp && at > 0 && out.ends_with('}') {
                out.pop();
                let _ = write!(out, r#","t0":{at}}}"#);
            }
            return Some(at);
        }
    }

    /// Events were lost before the gateway: every stream's next frame skips a sequence number,
    /// so that the client sees the gap and resubscribes (depth starts over with a snapshot).
    pub fn skip_seqs(&mut self) {
        for s in self.streams.values_mut() {
            s.seq.iter_mut().for_each(|q| *q += 1);
            s.held = None;
        }
    }

    fn stream(&mut self, l: u16) -> &mut Stream {
        self.streams.entry(l).or_default()
    }

    fn next_seq(&mut self, l: u16, k: usize) -> u64 {
        let s = &mut self.stream(l).seq[k];
        *s += 1;
        *s
    }

    /// A snapshot (the client holds nothing yet) or the changed levels; false when nothing
    /// changed within its top N (a deeper level moved).
    fn depth_frame(&mut self, m: &Market, l: u16, merged: u32, out: &mut String) -> bool {
        let n = self.depth_n as usize;
        let empty = ([Quote::default(); MAX_DEPTH], [Quote::default(); MAX_DEPTH]);
        let (now, ts) = match m.depth(l) {
            Some(d) => ((d.bids, d.asks), d.timestamp),
            None => (empty, 0),
        };
        let mut top = now;
        for side in [&mut top.0, &mut top.1] {
            side[n..].iter_mut().for_each(|q| *q = Quote::default());
        }
        let crc32 = protocol::checksum(&top.0[..n], &top.1[..n]);
        let name = m.name(l).into_owned();
        let held = self.stream(l).held.take();
        let live =
            |s: &[Quote]| -> Vec<Quote> { s.iter().copied().filter(|q| q.shares > 0).collect() };
        let (snapshot, bids, asks) = match held {
            None => (true, live(&top.0[..n]), live(&top.1[..n])),
            Some(old) => (
                false,
                changes(&old.0[..n], &top.0[..n]),
                changes(&old.1[..n], &top.1[..n]),
            ),
        };
        self.stream(l).held = Some(Box::new(top));
        if !snapshot && bids.is_empty() && asks.is_empty() {
            return false;
        }
        let seq = self.next_seq(l, DEPTH);
        let f = DepthFrame {
            symbol: &name,
            n: n as u8,
            seq,
            ts,
            snapshot,
            bids: &bids,
            asks: &asks,
            crc32,
            merged,
        };
        protocol::depth(out, &f);
        true
    }

    /// Applies a subscribe; queues its ack, then a snapshot of each new BBO and depth stream.
    pub fn subscribe(
        &mut self,
        id: Option<&serde_json::Value>,
        channels: &[Channel],
        symbols: &Symbols,
        m: &Market,
    ) -> Result<(), Refusal> {
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
                    self.streams.values_mut().for_each(|s| s.held = None);
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
                    self.stream(l).held = None;
                    self.mark(l, DEPTH, 0);
                }
                BBO if m.bbo(l).is_some() => {
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
        let picked = resolve(symbols, m, id)?;
        for &c in channels {
            let sel = &mut self.subs[kind(c)];
            match &picked {
                None => *sel = Selection::default(),
                Some(set) => set.iter().for_each(|l| {
                    sel.some.remove(l);
                }),
            }
            if kind(c) == DEPTH {
                // A later subscribe starts with a snapshot.
                let keep = sel.clone();
                for (l, s) in self.streams.iter_mut() {
                    if !keep.wants(*l) {
                        s.held = None;
                    }
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

/// The levels of `new` that differ from `old`: new or resized ones with their size, and ones
/// gone with size 0.
fn changes(old: &[Quote], new: &[Quote]) -> Vec<Quote> {
    let mut out = Vec::new();
    let live = |s: &[Quote]| -> Vec<Quote> { s.iter().copied().filter(|q| q.shares > 0).collect() };
    let (old, new) = (live(old), live(new));
    for q in &new {
        if !old.contains(q) {
            out.push(*q);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use shards::events::{Bbo, Depth, Listing, TradeKind};

    fn market() -> Market {
        let mut m = Market::default();
        for (l, s) in [(1u16, b"AAPL    "), (2, b"MSFT    ")] {
            m.list(&Listing {
                locate: l,
                stock: *s,
            });
        }
        m
    }

    fn q(price: u32, shares: u64) -> Quote {
        Quote {
            shares,
            price,
            orders: 1,
        }
    }

    fn frames(c: &mut Client, m: &Market) -> Vec<serde_json::Value> {
        let mut out = String::new();
        let mut v = Vec::new();
        while c.next_frame(m, &mut out).is_some() {
            v.push(serde_json::from_str(&out).expect("a frame is JSON"));
        }
        v
    }

    fn sub(c: &mut Client, m: &Market, channels: &[Channel], symbols: &[&str]) {
        let s = Symbols::Some(symbols.iter().map(|s| s.to_string()).collect());
        c.subscribe(Some(&1.into()), channels, &s, m)
            .expect("subscribed");
    }

    #[test]
    fn bbo_updates_of_one_symbol_conflate_and_say_so() {
        let mut m = market();
        let mut c = Client::new(Limits::default());
        sub(&mut c, &m, &[Channel::Bbo], &["AAPL"]);
        assert_eq!(frames(&mut c, &m)[0]["type"], "ack");
        for px in 100..105 {
            m.set_bbo(&Bbo::new(1, px as u64, q(px, 1), q(px + 1, 1)));
            c.on_bbo(1, 10);
        }
        let f = frames(&mut c, &m);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0]["bid"]["px"], "0.0104", "the latest");
        assert_eq!(
            (f[0]["conflated"].as_bool(), f[0]["merged"].as_u64()),
            (Some(true), Some(5))
        );
        assert_eq!(f[0]["seq"], 1);
        m.set_bbo(&Bbo::new(1, 200, q(90, 1), q(91, 1)));
        c.on_bbo(1, 10);
        let f = frames(&mut c, &m);
        assert_eq!(
            (f[0]["seq"].as_u64(), f[0].get("conflated")),
            (Some(2), None)
        );
    }

    fn trade(locate: u16, n: u64) -> Trade {
        Trade {
            locate,
            timestamp: n,
            match_number: n,
            price: 100,
            shares: 1,
            side: b'B',
            printable: true,
            kind: TradeKind::Executed,
        }
    }

    #[test]
    fn trades_never_conflate_and_an_overflowing_queue_cuts_the_client_off() {
        let m = market();
        let limits = Limits {
            queue: 10,
            ..Limits::default()
        };
        let mut c = Client::new(limits);
        sub(&mut c, &m, &[Channel::Trades], &["AAPL"]);
        for n in 0..9 {
            assert!(c.on_trade(&trade(1, n), 0));
        }
        assert!(!c.on_trade(&trade(2, 0), 0), "not subscribed");
        assert!(!c.overflowed);
        assert!(!c.on_trade(&trade(1, 9), 0), "the eleventh frame overflows");
        assert!(c.overflowed);
        assert_eq!(c.queued(), 0, "an overflowed client's queue is dropped");
        assert!(!c.on_trade(&trade(1, 10), 0));
    }

    #[test]
    fn trades_keep_their_order_and_count_by_one() {
        let m = market();
        let mut c = Client::new(Limits::default());
        sub(&mut c, &m, &[Channel::Trades], &["AAPL", "MSFT"]);
        for n in 0..6 {
            c.on_trade(&trade(1 + (n % 2) as u16, n), 0);
        }
        let f = frames(&mut c, &m);
        let seqs: Vec<(String, u64, u64)> = f[1..]
            .iter()
            .map(|v| {
                (
                    v["symbol"].as_str().unwrap().to_string(),
                    v["seq"].as_u64().unwrap(),
                    v["match"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seqs,
            [
                ("AAPL".into(), 1, 0),
                ("MSFT".into(), 1, 1),
                ("AAPL".into(), 2, 2),
                ("MSFT".into(), 2, 3),
                ("AAPL".into(), 3, 4),
                ("MSFT".into(), 3, 5)
            ]
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
    }

    #[test]
    fn depth_is_a_snapshot_then_changed_levels_that_rebuild_the_top_n() {
        let mut m = market();
        m.set_depth(&depth(&[(100, 5), (99, 6), (98, 7)], &[(101, 1), (102, 2)]));
        let mut c = Client::new(Limits::default());
        sub(&mut c, &m, &[Channel::Depth(2)], &["AAPL"]);
        let f = frames(&mut c, &m);
        assert_eq!(
            (f[1]["type"].as_str(), f[1]["seq"].as_u64()),
            (Some("snapshot"), Some(1))
        );
        assert_eq!(f[1]["bids"].as_array().unwrap().len(), 2, "depth:2");
        let mut book = (Vec::new(), Vec::new());
        apply(&mut book, &f[1]);
        // The best bid leaves, a new ask level comes in between, and a third update is folded.
        m.set_depth(&depth(&[(99, 6), (98, 7)], &[(101, 1), (102, 2)]));
        c.on_depth(1, 5);
        m.set_depth(&depth(&[(99, 6), (98, 7)], &[(101, 3), (102, 2)]));
        c.on_depth(1, 6);
        let f = frames(&mut c, &m);
        assert_eq!(f.len(), 1);
        let u = &f[0];
        assert_eq!(
            (
                u["type"].as_str(),
                u["seq"].as_u64(),
                u["conflated"].as_bool()
            ),
            (Some("update"), Some(2), Some(true))
        );
        apply(&mut book, u);
        assert_eq!(book.0, [q(99, 6), q(98, 7)]);
        assert_eq!(book.1, [q(101, 3), q(102, 2)]);
        assert_eq!(
            u["crc32"].as_u64(),
            Some(protocol::checksum(&book.0, &book.1) as u64),
            "the client's copy checks out"
        );
        // A level below the top 2 moves: nothing to send.
        m.set_depth(&depth(&[(99, 6), (98, 7), (97, 1)], &[(101, 3), (102, 2)]));
        c.on_depth(1, 7);
        assert!(frames(&mut c, &m).is_empty());
    }

    #[test]
    fn an_unknown_symbol_is_refused_whole_and_a_symbol_cap_holds() {
        let m = market();
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
        sub(&mut c, &m, &[Channel::Bbo], &["AAPL"]);
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
