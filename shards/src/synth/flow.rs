//! The order-flow model behind [`Generator`]: a small book per instrument, kept just well enough
//! to never cross, to execute against the real top of book, and to pick orders to cancel.
//!
//! Price model: each instrument has a boundary tick `b`; bids rest at or below `b`, asks at or
//! above `b + 1`, so the displayed book can never cross or lock. `b` random-walks inside the
//! current spread (it can only move where no resting order is in the way), and executions that
//! empty the top level open the room it moves into. `b` stays within 300 ticks of the reference
//! price and adds land at most 199 ticks from `b`, so every price fits a fixed 1,024-tick window.

use super::rng::{scale, Rng};
use super::universe::{universe, Instrument};
use super::{GenConfig, GenError, Profile};
use crate::book::prefetch::touch;
use crate::itch::*;

const NIL: u32 = u32::MAX;
const AHEAD: usize = 16;
const WINDOW: i32 = 1024;
const HALF: i32 = WINDOW / 2;
const DRIFT: i32 = 300;
const MAX_DEPTH: i32 = 200;
const NO_BID: i32 = i32::MIN;
const NO_ASK: i32 = i32::MAX;

/// Nanoseconds since midnight for the fixed points of the day.
const fn hms(h: u64, m: u64, s: u64) -> u64 {
    ((h * 60 + m) * 60 + s) * 1_000_000_000
}
const T_START: u64 = hms(3, 5, 0);
const T_SYSTEM: u64 = hms(4, 0, 0);
const T_OPEN: u64 = hms(9, 30, 0);
const T_CLOSE: u64 = hms(16, 0, 0);
const T_SYSTEM_END: u64 = hms(20, 0, 0);
const T_END: u64 = hms(20, 5, 0);

/// Order-flow mix, in messages per million (2019-10-30 NASDAQ day, rounded; rare types lifted a
/// little so that short sessions still see them).
const MIX: [(Kind, u32); 13] = [
    (Kind::Add, 430_000),
    (Kind::Delete, 420_000),
    (Kind::Replace, 87_000),
    (Kind::Execute, 24_800),
    (Kind::Noii, 12_700),
    (Kind::Cancel, 12_100),
    (Kind::Trade, 5_200),
    (Kind::AddMpid, 4_800),
    (Kind::Participant, 730),
    (Kind::ExecutePrice, 440),
    (Kind::Cross, 60),
    (Kind::RegSho, 30),
    (Kind::Break, 5),
];

/// The uniform profile's mix (the peers' benchmark shape), in messages per million: 40% A,
/// 4% F, 42% D, 9% U, 2.5% E, 1.2% X, 1% P, and the last 0.3% the rare types, so that every
/// profile exercises them.
const MIX_UNIFORM: [(Kind, u32); 13] = [
    (Kind::Add, 400_000),
    (Kind::Delete, 420_000),
    (Kind::Replace, 90_000),
    (Kind::Execute, 24_800),
    (Kind::Noii, 2_005),
    (Kind::Cancel, 12_000),
    (Kind::Trade, 10_000),
    (Kind::AddMpid, 40_000),
    (Kind::Participant, 700),
    (Kind::ExecutePrice, 200),
    (Kind::Cross, 60),
    (Kind::RegSho, 30),
    (Kind::Break, 5),
];

/// In the uniform profile, the share of executions that take a whole order, per 1,024: the
/// rest take part of it. With 44% adds against 42% deletes, this leaves about 373k orders live
/// after 20M messages, as in the peers' shape.
const UNIFORM_FULL_FILL: u64 = 55;

const MPIDS: [[u8; 4]; 6] = [*b"GSCO", *b"MSCO", *b"JPMS", *b"CDRG", *b"VIRT", *b"NITE"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    AddMpid,
    Delete,
    Replace,
    Execute,
    ExecutePrice,
    Cancel,
    Noii,
    Trade,
    Participant,
    Cross,
    RegSho,
    Break,
}

#[derive(Debug, Clone, Copy)]
struct GenOrder {
    order_ref: u64,
    shares: u32,
    tick: i32,
    prev: u32,
    next: u32,
    /// Index in the live list that holds it: its instrument's, or the day's in the uniform
    /// profile.
    pos: u32,
    /// Index of its instrument in the generator's universe.
    inst: u16,
    side: u8,
}

struct FlowInst {
    locate: u16,
    stock: Stock,
    anchor: i32,
    b: i32,
    lo: i32,
    /// Circular FIFO queue head per tick: bids in `0..WINDOW`, asks in `WINDOW..2*WINDOW`.
    heads: Box<[u32]>,
    best: [i32; 2],
    /// Live orders oldest first, `NIL` where one has left; compacted when half are gone.
    live: Vec<u32>,
    live_count: usize,
    target: usize,
    /// Direction the price leans (+1 up, -1 down); flips now and then.
    trend: i32,
    /// Match number of this instrument's latest trade (0: none yet), what a break names.
    last_match: u64,
}

impl FlowInst {
    fn new(ins: &Instrument, target: usize) -> Self {
        let anchor = ins.anchor_ticks as i32;
        FlowInst {
            locate: ins.locate,
            stock: ins.stock,
            anchor,
            b: anchor,
            lo: anchor - HALF,
            heads: vec![NIL; 2 * WINDOW as usize].into_boxed_slice(),
            best: [NO_BID, NO_ASK],
            live: Vec::new(),
            live_count: 0,
            target,
            trend: 1,
            last_match: 0,
        }
    }

    #[inline(always)]
    fn slot(&self, side: usize, tick: i32) -> usize {
        debug_assert!(tick >= self.lo && tick < self.lo + WINDOW);
        side * WINDOW as usize + (tick - self.lo) as usize
    }
}

/// Writes a synthetic session, a chunk at a time.
pub struct Generator {
    rng: Rng,
    profile: Profile,
    insts: Vec<FlowInst>,
    pick: Box<[u16]>,
    /// Instruments of the next `AHEAD` flow messages, drawn early so their state can be
    /// prefetched (with thousands of names it is cold, and waiting on it dominated generation).
    ahead: [u16; AHEAD],
    /// The random draw each of those messages will use to pick an order to cancel, drawn with
    /// the instrument so that its likely victim can be prefetched too.
    ahead_pick: [u64; AHEAD],
    /// The pick of the message being generated.
    pick_now: u64,
    pick_rng: Rng,
    orders: Vec<GenOrder>,
    /// The uniform profile's live orders, all instruments together, in no order (a removal
    /// swaps the last one into its place): a victim is one uniform draw.
    all: Vec<u32>,
    mix: &'static [(Kind, u32); 13],
    free: u32,
    next_ref: u64,
    next_match: u64,
    emitted: u64,
    total: u64,
    preamble: u64,
    flow_end: u64,
    ts: u64,
    ts_step: u64,
    ts_rem: u64,
    ts_err: u64,
    mix_total: u64,
}

impl Generator {
    /// A generator for `cfg`; fails when `cfg.messages` cannot hold the fixed parts of a day.
    pub fn new(cfg: &GenConfig) -> Result<Self, GenError> {
        let mut rng = Rng::new(cfg.seed);
        let universe = universe(cfg.scope, &mut rng);
        let n = universe.len() as u64;
        let preamble = 3 + 2 * n;
        let minimum = preamble + 3;
        if cfg.messages < minimum {
            return Err(GenError::TooFewMessages {
                asked: cfg.messages,
                minimum,
            });
        }
        let flow = cfg.messages - minimum;
        let max_w = universe.iter().map(|i| i.weight).fold(0.0, f64::max);
        // A book's population target; the uniform profile has none (its books fill as adds
        // outrun removals).
        let depth_target = match cfg.profile {
            Profile::Realistic => 600.0,
            Profile::Deep | Profile::Uniform => 1_600.0,
        };
        let mix = match cfg.profile {
            Profile::Uniform => &MIX_UNIFORM,
            Profile::Realistic | Profile::Deep => &MIX,
        };
        let insts = universe
            .iter()
            .map(|i| {
                FlowInst::new(
                    i,
                    (depth_target * (i.weight / max_w).sqrt()).max(8.0) as usize,
                )
            })
            .collect();
        let span = T_CLOSE - T_OPEN;
        let steps = flow.max(1);
        Ok(Generator {
            rng,
            profile: cfg.profile,
            insts,
            pick: pick_table(&universe),
            ahead: [0; AHEAD],
            ahead_pick: [0; AHEAD],
            pick_now: 0,
            pick_rng: Rng::new(cfg.seed.rotate_left(17) ^ 0x91C4),
            orders: Vec::new(),
            all: Vec::new(),
            mix,
            free: NIL,
            next_ref: 1,
            next_match: 1,
            emitted: 0,
            total: cfg.messages,
            preamble,
            flow_end: preamble + flow,
            ts: T_OPEN,
            ts_step: span / steps,
            ts_rem: span % steps,
            ts_err: 0,
            mix_total: mix.iter().map(|m| m.1 as u64).sum(),
        })
    }

    /// Messages the whole session holds.
    pub fn total_messages(&self) -> u64 {
        self.total
    }

    /// Messages written so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Appends up to `max` framed messages to `out`; returns how many (0 once the day is over).
    pub fn fill(&mut self, out: &mut Vec<u8>, max: u64) -> u64 {
        let stop = self.total.min(self.emitted.saturating_add(max));
        let start = self.emitted;
        while self.emitted < stop {
            let i = self.emitted;
            if i < self.preamble {
                self.preamble_message(i, out);
            } else if i < self.flow_end {
                self.flow_message(out);
            } else {
                let (code, ts) = [(b'M', T_CLOSE), (b'E', T_SYSTEM_END), (b'C', T_END)]
                    [(i - self.flow_end) as usize];
                system(code, ts, out);
            }
            self.emitted += 1;
        }
        self.emitted - start
    }

    fn preamble_message(&self, i: u64, out: &mut Vec<u8>) {
        let n = self.insts.len() as u64;
        match i {
            0 => system(b'O', T_START, out),
            1 => system(b'S', T_SYSTEM, out),
            _ if i < 2 + n => {
                let ins = &self.insts[(i - 2) as usize];
                StockDirectory {
                    header: hdr(ins.locate, T_SYSTEM + i * 1_000),
                    stock: ins.stock,
                    market_category: b'Q',
                    financial_status: b'N',
                    round_lot_size: 100,
                    round_lots_only: b'N',
                    issue_classification: b'C',
                    issue_subtype: *b"Z ",
                    authenticity: b'P',
                    short_sale_threshold: b'N',
                    ipo_flag: b' ',
                    luld_tier: b'1',
                    etp_flag: b'N',
                    etp_leverage_factor: 0,
                    inverse_indicator: b'N',
                }
                .encode_framed(out)
            }
            _ if i < 2 + 2 * n => {
                let ins = &self.insts[(i - 2 - n) as usize];
                StockTradingAction {
                    header: hdr(ins.locate, T_SYSTEM + i * 1_000),
                    stock: ins.stock,
                    trading_state: b'T',
                    reserved: b' ',
                    reason: *b"    ",
                }
                .encode_framed(out)
            }
            _ => system(b'Q', T_OPEN, out),
        }
    }

    fn next_ts(&mut self) -> u64 {
        let t = self.ts;
        self.ts += self.ts_step;
        self.ts_err += self.ts_rem;
        let steps = self.flow_end - self.preamble;
        if self.ts_err >= steps {
            self.ts_err -= steps;
            self.ts += 1;
        }
        t
    }

    fn flow_message(&mut self, out: &mut Vec<u8>) {
        let ts = self.next_ts();
        let mut i = self.next_instrument();
        let drawn = self.draw_kind();
        let kind = self.adjust(drawn, i);
        // A message about a resting order belongs to that order's instrument.
        let oid = self.victim(i, kind);
        if oid != NIL {
            i = self.orders[oid as usize].inst as usize;
        }
        let h = hdr(self.insts[i].locate, ts);
        match kind {
            Kind::Add | Kind::AddMpid => self.add(i, h, kind == Kind::AddMpid, out),
            Kind::Delete => {
                let order_ref = self.orders[oid as usize].order_ref;
                self.remove(i, oid);
                OrderDelete {
                    header: h,
                    order_ref,
                }
                .encode_framed(out);
            }
            Kind::Cancel => self.cancel(i, oid, h, out),
            Kind::Replace => self.replace(i, oid, h, out),
            Kind::Execute | Kind::ExecutePrice => self.execute(i, oid, h, kind, out),
            Kind::Trade => {
                let ins = &self.insts[i];
                let (stock, price) = (ins.stock, ins.b as u32 * 100 + 50);
                let m = self.next_match(i);
                let shares = self.shares();
                Trade {
                    header: h,
                    order_ref: 0,
                    side: b'B',
                    shares,
                    stock,
                    price,
                    match_number: m,
                }
                .encode_framed(out);
            }
            Kind::Cross => {
                let ins = &self.insts[i];
                let (stock, price) = (ins.stock, ins.b as u32 * 100);
                let m = self.next_match(i);
                let shares = self.shares() as u64 * 10;
                let cross_type = if self.rng.chance(512) { b'O' } else { b'C' };
                CrossTrade {
                    header: h,
                    shares,
                    stock,
                    cross_price: price,
                    match_number: m,
                    cross_type,
                }
                .encode_framed(out);
            }
            Kind::Noii => self.noii(i, h, out),
            Kind::Participant => {
                let mpid = MPIDS[self.rng.below(MPIDS.len() as u64) as usize];
                MarketParticipantPosition {
                    header: h,
                    mpid,
                    stock: self.insts[i].stock,
                    primary_market_maker: b'N',
                    market_maker_mode: b'N',
                    participant_state: b'A',
                }
                .encode_framed(out)
            }
            Kind::RegSho => RegSho {
                header: h,
                stock: self.insts[i].stock,
                reg_sho_action: b'0',
            }
            .encode_framed(out),
            // A break names a trade of its own instrument: the feed carries the locate of the
            // broken trade, and a shard only remembers the trades of the instruments it owns.
            Kind::Break => BrokenTrade {
                header: h,
                match_number: self.insts[i].last_match,
            }
            .encode_framed(out),
        }
        self.drift(i);
    }

    /// The instrument of this flow message. Draws `AHEAD` messages early, with the random number
    /// that message will use to pick a victim, and prefetches in three steps, each reading only
    /// what the step before asked for: the instrument's state; then its live-list tail, the
    /// live-list entry its pick starts from and its best queues; then that entry's order.
    fn next_instrument(&mut self) -> usize {
        let k = (self.emitted - self.preamble) as usize;
        if k == 0 {
            for a in 0..AHEAD {
                self.ahead[a] = self.draw_instrument();
                self.ahead_pick[a] = self.pick_rng.next_u64();
            }
        }
        let slot = k % AHEAD;
        let i = self.ahead[slot] as usize;
        self.pick_now = self.ahead_pick[slot];
        let next = self.draw_instrument();
        self.ahead[slot] = next;
        self.ahead_pick[slot] = self.pick_rng.next_u64();
        touch(&self.insts[next as usize]);
        let mid = (k + AHEAD / 2) % AHEAD;
        let ins = &self.insts[self.ahead[mid] as usize];
        let n = ins.live.len();
        touch(ins.live.as_ptr().wrapping_add(n.saturating_sub(1)));
        if n > 0 {
            touch(
                ins.live
                    .as_ptr()
                    .wrapping_add(victim_start(n, self.ahead_pick[mid])),
            );
        }
        for side in 0..2 {
            let t = if side == 0 {
                ins.best[0].max(ins.lo)
            } else {
                ins.best[1].min(ins.lo + WINDOW - 1)
            };
            touch(ins.heads.as_ptr().wrapping_add(ins.slot(side, t)));
        }
        let near = (k + AHEAD / 4) % AHEAD;
        let r = self.ahead_pick[near];
        let (live, at): (&[u32], Pick) = match self.profile {
            Profile::Uniform => (&self.all, uniform_index),
            _ => (&self.insts[self.ahead[near] as usize].live, victim_start),
        };
        if !live.is_empty() {
            let oid = live[at(live.len(), r)];
            touch(self.orders.as_ptr().wrapping_add(oid as usize));
        }
        i
    }

    /// An instrument for a message: by weight, or uniform in the uniform profile.
    fn draw_instrument(&mut self) -> u16 {
        let r = self.pick_rng.next_u64();
        match self.profile {
            Profile::Uniform => uniform_index(self.insts.len(), r) as u16,
            Profile::Realistic | Profile::Deep => self.pick[(r & 0xFFFF) as usize],
        }
    }

    /// The resting order a message of `kind` on instrument `i` is about, or `NIL` for a kind
    /// that names none. The uniform profile draws it from the whole day's live orders.
    fn victim(&mut self, i: usize, kind: Kind) -> u32 {
        let names_order = matches!(
            kind,
            Kind::Delete | Kind::Cancel | Kind::Replace | Kind::Execute | Kind::ExecutePrice
        );
        if !names_order {
            return NIL;
        }
        if self.profile == Profile::Uniform {
            return self.all[uniform_index(self.all.len(), self.pick_now)];
        }
        match kind {
            Kind::Delete => self.pick_delete(i),
            Kind::Cancel | Kind::Replace => self.random_order(i),
            _ => self.top_order(i),
        }
    }

    fn draw_kind(&mut self) -> Kind {
        let mut r = self.rng.below(self.mix_total) as u32;
        for &(k, w) in self.mix {
            if r < w {
                return k;
            }
            r -= w;
        }
        Kind::Add
    }

    /// Keeps each book's population near its target, and turns impossible draws into possible ones.
    fn adjust(&mut self, kind: Kind, i: usize) -> Kind {
        let ins = &self.insts[i];
        if self.profile == Profile::Uniform {
            return match kind {
                Kind::Delete
                | Kind::Cancel
                | Kind::Replace
                | Kind::Execute
                | Kind::ExecutePrice
                    if self.all.is_empty() =>
                {
                    Kind::Add
                }
                Kind::Break if ins.last_match == 0 => Kind::Add,
                _ => kind,
            };
        }
        let (live, target) = (ins.live_count, ins.target);
        let no_top = ins.best[0] == NO_BID && ins.best[1] == NO_ASK;
        match kind {
            Kind::Delete | Kind::Cancel | Kind::Replace if live == 0 => Kind::Add,
            Kind::Execute | Kind::ExecutePrice if no_top => Kind::Add,
            Kind::Break if ins.last_match == 0 => Kind::Add,
            Kind::Delete | Kind::Cancel if live < target => {
                let p = ((target - live) * 512 / target) as u64;
                if self.rng.chance(p) {
                    Kind::Add
                } else {
                    kind
                }
            }
            Kind::Add | Kind::AddMpid if live > 2 * target => Kind::Delete,
            _ => kind,
        }
    }

    fn next_match(&mut self, i: usize) -> u64 {
        self.next_match += 1;
        self.insts[i].last_match = self.next_match - 1;
        self.next_match - 1
    }

    fn shares(&mut self) -> u32 {
        let r = self.rng.next_u64();
        match r & 63 {
            0..=8 => 1 + (r >> 8) as u32 % 99,       // odd lot
            9 => 1_000 * (1 + (r >> 8) as u32 % 20), // block
            _ => 100 * (1 + ((r >> 8) as u32 & 7).min((r >> 16) as u32 & 7)), // round lots
        }
    }

    /// Ticks away from the inside for a new order.
    fn depth(&mut self) -> i32 {
        let r = self.rng.next_u64();
        match self.profile {
            Profile::Deep | Profile::Uniform => ((r >> 32) % MAX_DEPTH as u64) as i32,
            Profile::Realistic => match r & 1023 {
                0..=716 => ((r >> 10) % 8) as i32,
                717..=972 => ((r >> 10) % 64) as i32,
                _ => ((r >> 10) % MAX_DEPTH as u64) as i32,
            },
        }
    }

    fn add(&mut self, i: usize, h: Header, mpid: bool, out: &mut Vec<u8>) {
        let side = (self.rng.next_u64() & 1) as usize;
        let d = self.depth();
        let b = self.insts[i].b;
        let tick = if side == 0 { b - d } else { b + 1 + d };
        let shares = self.shares();
        let order_ref = self.next_ref;
        self.next_ref += 1;
        self.insert(
            i,
            GenOrder {
                order_ref,
                shares,
                tick,
                prev: NIL,
                next: NIL,
                pos: 0,
                inst: i as u16,
                side: side as u8,
            },
        );
        let a = AddOrder {
            header: h,
            order_ref,
            side: if side == 0 { b'B' } else { b'S' },
            shares,
            stock: self.insts[i].stock,
            price: tick as u32 * 100,
        };
        if mpid {
            let attribution = MPIDS[(order_ref % MPIDS.len() as u64) as usize];
            AddOrderMpid {
                header: a.header,
                order_ref,
                side: a.side,
                shares,
                stock: a.stock,
                price: a.price,
                attribution,
            }
            .encode_framed(out)
        } else {
            a.encode_framed(out)
        }
    }

    fn cancel(&mut self, i: usize, oid: u32, h: Header, out: &mut Vec<u8>) {
        let o = self.orders[oid as usize];
        if o.shares < 2 {
            self.remove(i, oid);
            return OrderDelete {
                header: h,
                order_ref: o.order_ref,
            }
            .encode_framed(out);
        }
        let c = 1 + self.rng.below(o.shares as u64 - 1) as u32;
        self.orders[oid as usize].shares -= c;
        OrderCancel {
            header: h,
            order_ref: o.order_ref,
            cancelled_shares: c,
        }
        .encode_framed(out);
    }

    fn replace(&mut self, i: usize, oid: u32, h: Header, out: &mut Vec<u8>) {
        let o = self.orders[oid as usize];
        self.remove(i, oid);
        let ins = &self.insts[i];
        let moved = o.tick + self.rng.below(5) as i32 - 2;
        let (lo, b) = (ins.lo, ins.b);
        let tick = if o.side == 0 {
            moved.min(b).max(lo)
        } else {
            moved.max(b + 1).min(lo + WINDOW - 1)
        };
        let shares = self.shares();
        let new_ref = self.next_ref;
        self.next_ref += 1;
        self.insert(
            i,
            GenOrder {
                order_ref: new_ref,
                shares,
                tick,
                prev: NIL,
                next: NIL,
                pos: 0,
                inst: o.inst,
                side: o.side,
            },
        );
        OrderReplace {
            header: h,
            original_ref: o.order_ref,
            new_ref,
            shares,
            price: tick as u32 * 100,
        }
        .encode_framed(out);
    }

    /// The oldest order at the best level of a side drawn at random (the other side when that
    /// one is empty): what an execution takes in a real book.
    fn top_order(&mut self, i: usize) -> u32 {
        let ins = &self.insts[i];
        let mut side = (self.rng.next_u64() & 1) as usize;
        if (side == 0 && ins.best[0] == NO_BID) || (side == 1 && ins.best[1] == NO_ASK) {
            side ^= 1;
        }
        ins.heads[ins.slot(side, ins.best[side])]
    }

    fn execute(&mut self, i: usize, oid: u32, h: Header, kind: Kind, out: &mut Vec<u8>) {
        let o = self.orders[oid as usize];
        let full_per_1024 = match self.profile {
            Profile::Uniform => UNIFORM_FULL_FILL,
            Profile::Realistic | Profile::Deep => 614,
        };
        let full = o.shares == 1 || self.rng.chance(full_per_1024);
        let executed = if full {
            o.shares
        } else {
            1 + self.rng.below(o.shares as u64 - 1) as u32
        };
        if full {
            self.remove(i, oid);
        } else {
            self.orders[oid as usize].shares -= executed;
        }
        let match_number = self.next_match(i);
        if kind == Kind::ExecutePrice {
            let printable = if self.rng.chance(972) { b'Y' } else { b'N' };
            OrderExecutedWithPrice {
                header: h,
                order_ref: o.order_ref,
                executed_shares: executed,
                match_number,
                printable,
                execution_price: o.tick as u32 * 100,
            }
            .encode_framed(out)
        } else {
            OrderExecuted {
                header: h,
                order_ref: o.order_ref,
                executed_shares: executed,
                match_number,
            }
            .encode_framed(out)
        }
    }

    fn noii(&mut self, i: usize, h: Header, out: &mut Vec<u8>) {
        let r = self.rng.next_u64();
        let ins = &self.insts[i];
        let px = ins.b as u32 * 100;
        Noii {
            header: h,
            paired_shares: (r & 0xFFFF) * 100,
            imbalance_shares: ((r >> 16) & 0xFFF) * 100,
            imbalance_direction: [b'B', b'S', b'N', b'O'][(r >> 28) as usize & 3],
            stock: ins.stock,
            far_price: px,
            near_price: px + 100,
            current_reference_price: px,
            cross_type: [b'O', b'C', b'H', b'C'][(r >> 30) as usize & 3],
            price_variation_indicator: b'L',
        }
        .encode_framed(out)
    }

    /// Moves the boundary one tick when the spread leaves room for it.
    /// Moves the boundary one tick when the spread leaves room for it, three times in four in
    /// the direction the instrument leans; the lean flips about once in 4,096 of its messages,
    /// and turns back towards the reference price near the edge of its range.
    fn drift(&mut self, i: usize) {
        let r = self.rng.next_u64();
        if self.profile == Profile::Uniform {
            return; // the mid is fixed
        }
        let ins = &mut self.insts[i];
        if (r >> 20) & 4095 == 0 || (ins.b - ins.anchor) * ins.trend > DRIFT - 20 {
            ins.trend = -ins.trend;
        }
        if r & 7 != 0 {
            return;
        }
        let step = if (r >> 3) & 3 == 0 {
            -ins.trend
        } else {
            ins.trend
        };
        let b = ins.b + step;
        let ok = b >= ins.best[0] && b < ins.best[1] && (b - ins.anchor).abs() <= DRIFT;
        if ok {
            ins.b = b;
        }
    }

    /// A delete's victim: one in five is the oldest order at the best level in the way of the
    /// lean (pulled quotes are how prices move between trades), the rest as [`Self::random_order`].
    fn pick_delete(&mut self, i: usize) -> u32 {
        let ins = &self.insts[i];
        let side = if ins.trend > 0 { 1 } else { 0 };
        let best = ins.best[side];
        if (self.pick_now >> 40) & 1023 < 205 && best != NO_BID && best != NO_ASK {
            return ins.heads[ins.slot(side, best)];
        }
        self.random_order(i)
    }

    fn random_order(&mut self, i: usize) -> u32 {
        let live = &self.insts[i].live;
        let start = victim_start(live.len(), self.pick_now);
        live[..=start]
            .iter()
            .rev()
            .chain(&live[start + 1..])
            .copied()
            .find(|&o| o != NIL)
            .expect("instrument has a live order")
    }

    fn insert(&mut self, i: usize, mut o: GenOrder) {
        let uniform = self.profile == Profile::Uniform;
        let ins = &mut self.insts[i];
        o.pos = if uniform {
            self.all.len()
        } else {
            ins.live.len()
        } as u32;
        let oid = if self.free != NIL {
            let f = self.free;
            self.free = self.orders[f as usize].next;
            self.orders[f as usize] = o;
            f
        } else {
            self.orders.push(o);
            (self.orders.len() - 1) as u32
        };
        if uniform {
            self.all.push(oid);
        } else {
            ins.live.push(oid);
        }
        ins.live_count += 1;
        let side = o.side as usize;
        let slot = ins.slot(side, o.tick);
        let head = ins.heads[slot];
        if head == NIL {
            ins.heads[slot] = oid;
            let n = &mut self.orders[oid as usize];
            n.prev = oid;
            n.next = oid;
        } else {
            let tail = self.orders[head as usize].prev;
            self.orders[oid as usize].prev = tail;
            self.orders[oid as usize].next = head;
            self.orders[tail as usize].next = oid;
            self.orders[head as usize].prev = oid;
        }
        ins.best[side] = if side == 0 {
            ins.best[0].max(o.tick)
        } else {
            ins.best[1].min(o.tick)
        };
    }

    fn remove(&mut self, i: usize, oid: u32) {
        let o = self.orders[oid as usize];
        let ins = &mut self.insts[i];
        let side = o.side as usize;
        let slot = ins.slot(side, o.tick);
        if o.next == oid {
            ins.heads[slot] = NIL;
            if ins.best[side] == o.tick {
                ins.best[side] = next_best(ins, side, o.tick);
            }
        } else {
            self.orders[o.prev as usize].next = o.next;
            self.orders[o.next as usize].prev = o.prev;
            if ins.heads[slot] == oid {
                ins.heads[slot] = o.next;
            }
        }
        ins.live_count -= 1;
        if self.profile == Profile::Uniform {
            self.all.swap_remove(o.pos as usize);
            if let Some(&moved) = self.all.get(o.pos as usize) {
                self.orders[moved as usize].pos = o.pos;
            }
        } else {
            ins.live[o.pos as usize] = NIL;
        }
        if ins.live.len() > 64 && ins.live.len() > 2 * ins.live_count {
            ins.live.retain(|&x| x != NIL);
            for (p, &x) in ins.live.iter().enumerate() {
                self.orders[x as usize].pos = p as u32;
            }
        }
        self.orders[oid as usize].next = self.free;
        self.free = oid;
    }
}

/// Where in a live list of `n` entries (oldest first) the search for a victim starts. Most
/// cancels hit young orders (real order lifetimes are short and heavy-tailed): 70% start among
/// the newest few dozen, the rest anywhere.
#[inline(always)]
fn victim_start(n: usize, r: u64) -> usize {
    if r & 1023 < 717 {
        let back = ((r >> 10) & 63).min((r >> 16) & 63) as usize;
        n - 1 - back.min(n - 1)
    } else {
        ((r >> 10) % n as u64) as usize
    }
}

/// How a profile turns a random draw into an index in a live list of `n` orders.
type Pick = fn(usize, u64) -> usize;

/// Index `0..n` in a live list from a draw made earlier ([`scale`]); 0 for an empty list.
#[inline(always)]
fn uniform_index(n: usize, r: u64) -> usize {
    scale(r, n as u64) as usize
}

/// The next non-empty tick beyond `from` on `side`, or the empty marker.
fn next_best(ins: &FlowInst, side: usize, from: i32) -> i32 {
    let base = side * WINDOW as usize;
    if side == 0 {
        (ins.lo..from)
            .rev()
            .find(|&t| ins.heads[base + (t - ins.lo) as usize] != NIL)
            .unwrap_or(NO_BID)
    } else {
        (from + 1..ins.lo + WINDOW)
            .find(|&t| ins.heads[base + (t - ins.lo) as usize] != NIL)
            .unwrap_or(NO_ASK)
    }
}

fn hdr(locate: u16, timestamp: u64) -> Header {
    Header {
        locate,
        tracking: 0,
        timestamp,
    }
}

fn system(code: u8, ts: u64, out: &mut Vec<u8>) {
    SystemEvent {
        header: hdr(0, ts),
        event_code: code,
    }
    .encode_framed(out)
}

/// 65,536 slots, each naming an instrument, in proportion to weight (every instrument gets one).
fn pick_table(u: &[Instrument]) -> Box<[u16]> {
    const SLOTS: usize = 1 << 16;
    let total: f64 = u.iter().map(|i| i.weight).sum();
    let spare = (SLOTS - u.len()) as f64;
    let mut t = Vec::with_capacity(SLOTS);
    for (k, ins) in u.iter().enumerate() {
        let n = 1 + (spare * ins.weight / total) as usize;
        t.extend(std::iter::repeat_n(k as u16, n));
    }
    let mut k = 0;
    while t.len() < SLOTS {
        t.push(k as u16 % u.len() as u16);
        k += 1;
    }
    // Interleave so that consecutive draws are not correlated with table position.
    let mut r = Rng::new(0x7AB1E);
    for j in (1..SLOTS).rev() {
        t.swap(j, r.below(j as u64 + 1) as usize);
    }
    t.into_boxed_slice()
}
