//! Full-depth (L3) order books for every instrument a shard owns.
//!
//! [`Books`] owns all state of one shard: a table of live orders by reference, one [`Book`] per
//! instrument with its two sides' heads, the sides' price levels (an arena of ladder windows
//! and a sorted vector per side below them), and a short memory of recent trades for `B`
//! (broken trade). It applies messages one at a time and reports what changed through an
//! [`EventSink`]. It never blocks, never does I/O and never allocates per message once its
//! tables have reached the day's high-water mark; feed anomalies are counted, never fatal.
//!
//! Structure choices, and why (the figures are in the top-level README):
//! - orders stored inline, by reference ([`order_table`]): a ring indexed by the reference's
//!   low bits for the recent ones, a hash for the ones it laps; E/C/X/D/U (half of all
//!   messages) find everything they need about their order (shares, book, side, price) in the
//!   one slot the lookup lands on; no queue links, because reference order is queue order; a
//!   direct array by reference would need gigabytes for a day, the ring at most 64 MiB;
//! - price levels per side in a ladder of one cell per tick that follows the top ([`side`]),
//!   because activity clusters within a few hundred ticks of the top: a message finds its
//!   level, or its new level's place, by price with one load, and the cell holds the level's
//!   aggregates, so that is the only line of the side it touches; levels below the window sit
//!   in a sorted vector;
//! - books indexed directly by stock locate (a `u16`), no hashing at all.

pub mod checkpoint;
pub mod instrument;
mod order_hash;
pub mod order_table;
pub mod pages;
pub mod prefetch;
pub mod prefetch_policy;
pub mod side;
mod sorted;
pub mod sweep;

pub use instrument::{Anomalies, Book, CrossState, TradeStats};
pub use order_table::{Order, MAX_REF};
pub use prefetch::Pipeline;
pub use prefetch_policy::Prefetch;
pub use side::{Cell, Side, SideKind, SideRef};

use crate::events::{Bbo, Break, EventSink, Quote, Trade, TradeKind};
use crate::itch::{
    decode, DecodeError, Header, Message, Stock, ALL_TYPES, LEN_BY_TYPE, TYPE_INDEX,
};
use order_table::OrderTable;
use pages::{PageArray, PageVec};
use side::{Ladder, SideMut};
use sorted::Sorted;

/// Index meaning "none" (no book for a locate, no trade remembered).
pub const NIL: u32 = u32::MAX;

/// Sides the ladder arena holds: two per possible stock locate, so it never grows. Reserved
/// as zeroed pages, it costs address space (about 545 MiB) until used, and resident memory
/// only for the books that exist (4 KiB and a line per side).
const MAX_SIDES: usize = 2 << 16;

/// Trades remembered for `B`, by match number modulo this (a power of two).
const TRADE_MEMORY: usize = 1 << 16;

#[derive(Debug, Clone, Copy)]
struct TradeRecord {
    match_number: u64,
    shares: u64,
    price: u32,
    book: u32,
}

const NO_TRADE: TradeRecord = TradeRecord {
    match_number: 0,
    shares: 0,
    price: 0,
    book: NIL,
};

/// Book `b` exists, and its two sides have their places in `deeps` and `ladders`.
#[inline(always)]
fn assert_book_index(b: usize, books: usize, deeps: usize, ladders: usize) {
    debug_assert!(b < books, "book {b} of {books}");
    debug_assert!(deeps == 2 * books && ladders >= deeps, "two sides a book");
}

/// Stock directory entries (`R`) among the frames before the first message that names an
/// order or prints a trade: the instruments a session opens with. Stops at the first frame
/// that does not parse, and after [`DIRECTORY_SCAN`] frames.
pub fn listed_before_orders(session: &[u8]) -> usize {
    let (mut pos, mut listed) = (0, 0);
    for _ in 0..DIRECTORY_SCAN {
        let Ok((msg, next)) = crate::itch::frame_at(session, pos) else {
            break;
        };
        match msg[0] {
            b'R' => listed += 1,
            b'A' | b'F' | b'E' | b'C' | b'X' | b'D' | b'U' | b'P' | b'Q' | b'B' => break,
            _ => {}
        }
        pos = next;
    }
    listed
}

/// Frames [`listed_before_orders`] reads at most: a real day lists about 9,000 instruments,
/// with a trading action and a few other messages for each, before its first order.
const DIRECTORY_SCAN: usize = 1 << 17;

/// One aggregated price level, for depth output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelInfo {
    /// Price, Price(4).
    pub price: u32,
    /// Shares at the price.
    pub shares: u64,
    /// Orders at the price.
    pub orders: u32,
}

/// How much to reserve up front. The default is small on purpose: the order table doubles
/// (one rehash, amortised) until it reaches the day's high-water mark, and a table sized for a
/// busy day from the start spreads a small book's orders over lines that never stay in cache
/// (m7: a 2 MiB table for 3,600 live orders made every fresh run of references a miss; sized
/// to its live orders, `tickcore book` on m7 went from 12.6 to 18.2 M msgs/s, back to back).
/// Reserve more only where a growth's rehash during the session would cost more than a
/// larger working set.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Live orders at the busiest moment.
    pub orders: usize,
    /// Slots of the recent-reference ring to start with ([`OrderTable::ring_for`] `orders`:
    /// it never grows). Each doubling copies the ring into fresh pages that fault in on the
    /// hot path: in the engine on v3k, four of them held the shard 11-45 ms each
    /// (2026-12-06).
    pub ring: usize,
}

impl Capacity {
    /// Room for `orders` live orders, the ring included: nothing grows until there are more.
    pub fn whole(orders: usize) -> Self {
        Capacity {
            orders,
            ring: OrderTable::ring_for(orders),
        }
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            orders: 1 << 10,
            ring: order_table::RING_START,
        }
    }
}

/// A live order as the L3 view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestingOrder {
    /// Day-unique reference.
    pub order_ref: u64,
    /// Shares still displayed.
    pub shares: u32,
    /// Limit price, Price(4).
    pub price: u32,
    /// Side it rests on.
    pub side: SideKind,
    /// Stock locate of its book.
    pub locate: u16,
}

/// All books of one shard.
pub struct Books {
    orders: OrderTable,
    /// Price levels open, all books and sides together.
    live_levels: usize,
    /// In huge pages, reserved for a book per stock locate: every message reads its book's
    /// first line, at random across thousands of books.
    books: PageVec<Book>,
    /// Every side's window of cells, side `2 * book + kind`: one arena in huge pages, so that
    /// thousands of sides do not each cost a TLB entry (v3k deep 1.046x with glibc's huge-page
    /// heap, back to back), and no pointer in the side's head. Reserved at its largest: growing
    /// it by doubling zeroed, filled and copied 64 MiB while a v3k day's books were created,
    /// 5% of the samples of a 20M-message run.
    ladders: PageArray<Ladder>,
    /// Every side's levels below its window, indexed like `ladders`.
    deeps: Vec<Sorted>,
    /// Dense book index by stock locate; a fixed-size array so that indexing by a `u16`
    /// needs no bounds check on the hot path.
    by_locate: Box<[u32; 1 << 16]>,
    recent: Box<[TradeRecord]>,
    /// The trade memory at a checkpoint's instant, being copied (every write tells it first).
    recent_sweep: Option<Box<sweep::Sweep<TradeRecord>>>,
    orphan: Anomalies,
    by_type: [u64; ALL_TYPES.len() + 1],
    /// Whether replays prefetch, decided by timing them ([`prefetch_policy`]).
    prefetch: prefetch_policy::Chooser,
}

impl Default for Books {
    fn default() -> Self {
        Books::with_capacity(Capacity::default())
    }
}

impl Books {
    /// Empty books with room reserved as `cap` says.
    pub fn with_capacity(cap: Capacity) -> Self {
        Books {
            orders: OrderTable::with_ring(cap.orders, cap.ring),
            live_levels: 0,
            ladders: PageArray::zeroed(MAX_SIDES),
            deeps: Vec::new(),
            books: PageVec::with_capacity(1 << 16),
            by_locate: vec![NIL; 1 << 16]
                .into_boxed_slice()
                .try_into()
                .expect("exactly one entry per locate"),
            recent: vec![NO_TRADE; TRADE_MEMORY].into_boxed_slice(),
            recent_sweep: None,
            orphan: Anomalies::default(),
            by_type: [0; ALL_TYPES.len() + 1],
            prefetch: prefetch_policy::Chooser::default(),
        }
    }

    /// When replays prefetch (by default, when timing says it pays).
    pub fn set_prefetch(&mut self, policy: Prefetch) {
        self.prefetch = prefetch_policy::Chooser::new(policy);
    }

    /// Makes the order table, and the books and ladder windows of the first `books` books,
    /// resident now (before a feed's clock starts: a page fault on the hot path costs
    /// microseconds, and a huge page's tens of them; a v3k day opening 3,500 books faulted in
    /// 28 MiB of windows in its first 0.2 s). Books take their index in the order they are
    /// listed, so the first ones are the ones a day uses. Only valid before the first message.
    pub fn touch(&mut self, books: usize) {
        debug_assert!(self.orders.is_empty(), "touch writes zeroes over the slots");
        self.orders.touch();
        self.ladders.touch_first(2 * books);
        self.books.touch_first(books);
    }

    /// Makes resident now, before a replay's clock starts, what replaying `session` (a whole
    /// BinaryFILE) will touch at random: the books and ladder windows of every instrument its
    /// directory lists before the first order, and the order ring's pages up to the size the
    /// session's adds could grow it to (an add is its length prefix and an `A`). Sizes
    /// nothing: a small day keeps its small ring and tables.
    ///
    /// Why: on this project's Intel VM a fresh huge page costs about 1.7 ms to fault in
    /// (the hypervisor backs it on first touch), and a v3k uniform day faulted in 64 MiB of
    /// ring and 28 MiB of windows mid-replay: 10% of `tickcore book`'s samples (2026-12-06).
    /// The peers pay theirs before their timers too (CppTrader fills a 9.4 GB order array).
    /// Only valid before the first message.
    pub fn reserve_for_session(&mut self, session: &[u8]) {
        const ADD_FRAME: usize = 2 + LEN_BY_TYPE[b'A' as usize] as usize;
        let books = listed_before_orders(session);
        self.touch(books);
        self.orders.touch_ring_for(session.len() / ADD_FRAME);
    }

    /// Decodes `msg` (one frame's message bytes) and applies it.
    ///
    /// Fails only when `msg` is not a well-formed ITCH 5.0 message; everything a well-formed
    /// message can do wrong to a book is counted as an anomaly instead.
    #[inline]
    pub fn apply<S: EventSink>(&mut self, msg: &[u8], sink: &mut S) -> Result<(), DecodeError> {
        let m = decode(msg)?;
        self.apply_decoded(&m, sink);
        Ok(())
    }

    /// Applies an already decoded message.
    #[inline]
    pub fn apply_decoded<S: EventSink>(&mut self, m: &Message<'_>, sink: &mut S) {
        self.by_type[TYPE_INDEX[m.tag() as usize] as usize] += 1;
        match *m {
            Message::AddOrder(v) => {
                let h = v.header();
                self.add(
                    &h,
                    v.stock(),
                    v.order_ref(),
                    v.side(),
                    v.shares(),
                    v.price(),
                    sink,
                )
            }
            Message::AddOrderMpid(v) => {
                let h = v.header();
                self.add(
                    &h,
                    v.stock(),
                    v.order_ref(),
                    v.side(),
                    v.shares(),
                    v.price(),
                    sink,
                )
            }
            Message::OrderExecuted(v) => {
                let exec = Exec {
                    shares: v.executed_shares(),
                    match_number: v.match_number(),
                };
                self.execute(&v.header(), v.order_ref(), exec, None, true, sink)
            }
            Message::OrderExecutedWithPrice(v) => {
                let exec = Exec {
                    shares: v.executed_shares(),
                    match_number: v.match_number(),
                };
                let printable = v.printable() != b'N';
                let px = Some(v.execution_price());
                self.execute(&v.header(), v.order_ref(), exec, px, printable, sink)
            }
            Message::OrderCancel(v) => {
                self.cancel(&v.header(), v.order_ref(), v.cancelled_shares(), sink)
            }
            Message::OrderDelete(v) => self.delete(&v.header(), v.order_ref(), sink),
            Message::OrderReplace(v) => {
                let h = v.header();
                self.replace(
                    &h,
                    v.original_ref(),
                    v.new_ref(),
                    v.shares(),
                    v.price(),
                    sink,
                )
            }
            Message::Trade(v) => {
                let h = v.header();
                let b = self.book_for(h.locate, v.stock());
                let t = Trade {
                    locate: h.locate,
                    timestamp: h.timestamp,
                    match_number: v.match_number(),
                    price: v.price(),
                    shares: v.shares() as u64,
                    side: v.side(),
                    printable: true,
                    kind: TradeKind::NonDisplayed,
                };
                self.print(b, &t, sink);
            }
            Message::CrossTrade(v) => {
                let h = v.header();
                let b = self.book_for(h.locate, v.stock());
                let t = Trade {
                    locate: h.locate,
                    timestamp: h.timestamp,
                    match_number: v.match_number(),
                    price: v.cross_price(),
                    shares: v.shares(),
                    side: b' ',
                    printable: true,
                    kind: TradeKind::Cross,
                };
                // A cross that matched nothing still prints a `Q` with zero shares.
                if t.shares > 0 {
                    self.print(b, &t, sink);
                }
            }
            Message::BrokenTrade(v) => self.broken(&v.header(), v.match_number(), sink),
            Message::StockDirectory(v) => {
                let b = self.book_for(v.locate(), v.stock());
                self.books[b].symbol = v.stock();
            }
            Message::StockTradingAction(v) => {
                let b = self.book_for(v.locate(), v.stock());
                self.books[b].trading_state = v.trading_state();
            }
            _ => {}
        }
    }

    /// The dense index of the book for `locate`, creating it on first sight.
    #[inline(always)]
    fn book_for(&mut self, locate: u16, stock: Stock) -> usize {
        let b = self.by_locate[locate as usize];
        if b != NIL {
            return b as usize;
        }
        let b = self.books.len();
        self.books.push(Book::new(locate, stock));
        self.deeps.extend([Sorted::new(), Sorted::new()]);
        self.by_locate[locate as usize] = b as u32;
        b
    }

    /// Side `kind` of book `b` with its cells.
    #[inline(always)]
    pub(crate) fn side(&self, b: usize, kind: SideKind) -> SideRef<'_> {
        let i = 2 * b + kind as usize;
        assert_book_index(b, self.books.len(), self.deeps.len(), self.ladders.len());
        // SAFETY: `b` names a book `book_for` created (an add's, or the book an order keeps
        // from its add); books are never removed, and `deeps` and `ladders` hold two sides a
        // book (asserted above in debug builds). Unchecked: three bounds checks were 1.5% of
        // the instructions of a v3k replay.
        unsafe {
            SideRef {
                head: self.books.get_unchecked(b).side(kind),
                ladder: self.ladders.get_unchecked(i),
                deep: self.deeps.get_unchecked(i),
            }
        }
    }

    /// Side `kind` of book `b` with its cells, to change.
    #[inline(always)]
    fn side_mut(&mut self, b: usize, kind: SideKind) -> SideMut<'_> {
        let i = 2 * b + kind as usize;
        assert_book_index(b, self.books.len(), self.deeps.len(), self.ladders.len());
        // SAFETY: as in `side`.
        unsafe {
            SideMut {
                head: &mut self.books.get_unchecked_mut(b).sides[kind as usize],
                ladder: self.ladders.get_unchecked_mut(i),
                deep: self.deeps.get_unchecked_mut(i),
            }
        }
    }

    #[inline(always)]
    fn anomalies_at(&mut self, locate: u16) -> &mut Anomalies {
        match self.by_locate[locate as usize] {
            NIL => &mut self.orphan,
            b => &mut self.books[b as usize].anomalies,
        }
    }

    /// Looks up a live order named by a message: its slot and the order. Counts an unknown
    /// reference, or a locate that disagrees with the order's own (the order's book wins).
    #[inline(always)]
    fn lookup(&mut self, h: &Header, order_ref: u64) -> Option<(usize, Order)> {
        let Some(i) = self.orders.find(order_ref) else {
            self.anomalies_at(h.locate).unknown_ref += 1;
            return None;
        };
        let o = *self.orders.at(i);
        let book = &mut self.books[o.book()];
        if book.locate != h.locate {
            book.anomalies.locate_mismatch += 1;
        }
        Some((i, o))
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn add<S: EventSink>(
        &mut self,
        h: &Header,
        stock: Stock,
        order_ref: u64,
        side: u8,
        shares: u32,
        price: u32,
        sink: &mut S,
    ) {
        let b = self.book_for(h.locate, stock);
        let book = &mut self.books[b];
        if book.symbol != stock {
            book.anomalies.symbol_mismatch += 1;
        }
        let Some(kind) = SideKind::from_itch(side) else {
            book.anomalies.bad_side += 1;
            return;
        };
        let Some(claim) = self.admit(b, order_ref, shares) else {
            return;
        };
        if self.place(b, kind, claim, order_ref, shares, price) {
            self.publish(b, kind, h.timestamp, sink);
        }
    }

    /// The table slot for a new order of book `b` (an add's, or a replace's new one), or
    /// `None` with the reason counted: no shares, a reference too wide to keep, or one that is
    /// already live.
    #[inline(always)]
    fn admit(&mut self, b: usize, order_ref: u64, shares: u32) -> Option<order_table::Claim> {
        let anomalies = &mut self.books[b].anomalies;
        if shares == 0 {
            anomalies.zero_shares += 1;
            return None;
        }
        if order_ref > MAX_REF {
            anomalies.ref_too_large += 1;
            return None;
        }
        let claim = self.orders.claim(order_ref);
        if claim.is_none() {
            self.books[b].anomalies.duplicate_ref += 1;
        }
        claim
    }

    /// Rests a new order, whose reference `claim` holds a slot for, at the back of its level;
    /// returns whether it is at the top.
    #[inline(always)]
    fn place(
        &mut self,
        b: usize,
        kind: SideKind,
        claim: order_table::Claim,
        order_ref: u64,
        shares: u32,
        price: u32,
    ) -> bool {
        let mut side = self.side_mut(b, kind);
        let added = side.add(price, shares);
        let at_top = side.head.is_best(price);
        match added {
            Ok(opened) => self.live_levels += opened as usize,
            Err(side::LevelFull) => {
                self.books[b].anomalies.level_full += 1;
                return false;
            }
        }
        let o = Order::new(order_ref, b, kind, shares, price);
        self.orders.fill(claim, o);
        at_top
    }

    /// Takes `shares` off the order in slot `i`, removing it when none remain; returns whether
    /// its level was the top of its side.
    #[inline(always)]
    fn reduce(&mut self, i: usize, shares: u32) -> bool {
        let o = *self.orders.at(i);
        if shares >= o.shares {
            return self.remove(i);
        }
        *self.orders.shares_at(i) = o.shares - shares;
        let mut side = self.side_mut(o.book(), o.side());
        side.take(o.price, shares, false);
        side.head.is_best(o.price)
    }

    /// Removes the order in slot `i` from its level and the table; returns whether the level was
    /// the top of its side.
    #[inline(always)]
    fn remove(&mut self, i: usize) -> bool {
        let o = self.orders.remove_at(i);
        let mut side = self.side_mut(o.book(), o.side());
        let at_top = side.head.is_best(o.price);
        if side.take(o.price, o.shares, true) {
            self.live_levels -= 1;
        }
        at_top
    }

    #[inline(always)]
    fn execute<S: EventSink>(
        &mut self,
        h: &Header,
        order_ref: u64,
        exec: Exec,
        price: Option<u32>,
        printable: bool,
        sink: &mut S,
    ) {
        let Some((i, o)) = self.lookup(h, order_ref) else {
            return;
        };
        let b = o.book();
        if exec.shares > o.shares {
            self.books[b].anomalies.exec_exceeds_order += 1;
        }
        let t = Trade {
            locate: self.books[b].locate,
            timestamp: h.timestamp,
            match_number: exec.match_number,
            price: price.unwrap_or(o.price),
            shares: exec.shares as u64,
            side: match o.side() {
                SideKind::Bid => b'B',
                SideKind::Ask => b'S',
            },
            printable,
            kind: if price.is_some() {
                TradeKind::ExecutedWithPrice
            } else {
                TradeKind::Executed
            },
        };
        self.print(b, &t, sink);
        if self.reduce(i, exec.shares) {
            self.publish(b, o.side(), h.timestamp, sink);
        }
    }

    #[inline(always)]
    fn cancel<S: EventSink>(&mut self, h: &Header, order_ref: u64, shares: u32, sink: &mut S) {
        let Some((i, o)) = self.lookup(h, order_ref) else {
            return;
        };
        if shares > o.shares {
            self.books[o.book()].anomalies.cancel_exceeds_order += 1;
        }
        if self.reduce(i, shares) {
            self.publish(o.book(), o.side(), h.timestamp, sink);
        }
    }

    #[inline(always)]
    fn delete<S: EventSink>(&mut self, h: &Header, order_ref: u64, sink: &mut S) {
        let Some((i, o)) = self.lookup(h, order_ref) else {
            return;
        };
        if self.remove(i) {
            self.publish(o.book(), o.side(), h.timestamp, sink);
        }
    }

    #[inline(always)]
    fn replace<S: EventSink>(
        &mut self,
        h: &Header,
        original: u64,
        new_ref: u64,
        shares: u32,
        price: u32,
        sink: &mut S,
    ) {
        let Some((i, o)) = self.lookup(h, original) else {
            return;
        };
        let b = o.book();
        let mut touched = self.remove(i);
        if let Some(claim) = self.admit(b, new_ref, shares) {
            touched |= self.place(b, o.side(), claim, new_ref, shares, price);
        }
        if touched {
            self.publish(b, o.side(), h.timestamp, sink);
        }
    }

    /// Counts a trade (printable ones in the statistics), remembers it for `B`, and emits it.
    #[inline(always)]
    fn print<S: EventSink>(&mut self, b: usize, t: &Trade, sink: &mut S) {
        let book = &mut self.books[b];
        if t.printable {
            book.stats.record(t.price, t.shares, t.timestamp);
            let slot = t.match_number as usize & (TRADE_MEMORY - 1);
            if let Some(s) = &mut self.recent_sweep {
                s.before_write(slot, &self.recent);
            }
            self.recent[slot] = TradeRecord {
                match_number: t.match_number,
                shares: t.shares,
                price: t.price,
                book: b as u32,
            };
        } else {
            book.stats.non_printable += 1;
        }
        sink.on_trade(t);
    }

    fn broken<S: EventSink>(&mut self, h: &Header, match_number: u64, sink: &mut S) {
        let at = match_number as usize & (TRADE_MEMORY - 1);
        if let Some(s) = &mut self.recent_sweep {
            s.before_write(at, &self.recent);
        }
        let slot = &mut self.recent[at];
        let reversed = slot.book != NIL && slot.match_number == match_number;
        if reversed {
            let r = core::mem::replace(slot, NO_TRADE);
            self.books[r.book as usize].stats.reverse(r.price, r.shares);
        } else {
            self.anomalies_at(h.locate).unknown_break += 1;
        }
        let brk = Break {
            locate: h.locate,
            timestamp: h.timestamp,
            match_number,
            reversed,
        };
        sink.on_break(&brk);
    }

    #[inline(always)]
    fn quote(side: SideRef<'_>) -> Quote {
        match side.best() {
            Some((price, c)) => Quote {
                price,
                shares: c.shares as u64,
                orders: c.orders,
            },
            None => Quote::default(),
        }
    }

    /// Both sides' best levels as they stand (for checks: the hot path re-reads one side only).
    fn true_top(&self, b: usize) -> (Quote, Quote) {
        (
            Self::quote(self.side(b, SideKind::Bid)),
            Self::quote(self.side(b, SideKind::Ask)),
        )
    }

    /// Re-reads the top of side `kind` of book `b`; emits a BBO event and updates the
    /// crossed/locked state when it changed.
    ///
    /// Only the changed side is re-read: every change to a side's top comes through here, so
    /// the other side's published quote is still its true top, and its best level (a line no
    /// other part of the message touched) need not be read at all.
    #[inline(always)]
    fn publish<S: EventSink>(&mut self, b: usize, kind: SideKind, timestamp: u64, sink: &mut S) {
        let book = &self.books[b];
        let fresh = Self::quote(self.side(b, kind));
        let top = match kind {
            SideKind::Bid => (fresh, book.top.1),
            SideKind::Ask => (book.top.0, fresh),
        };
        debug_assert_eq!(
            top,
            self.true_top(b),
            "the other side's published quote is its true top"
        );
        if top == book.top {
            return;
        }
        let state = if top.0.orders == 0 || top.1.orders == 0 || top.0.price < top.1.price {
            CrossState::Normal
        } else if top.0.price == top.1.price {
            CrossState::Locked
        } else {
            CrossState::Crossed
        };
        let book = &mut self.books[b];
        if state != book.cross {
            match state {
                CrossState::Crossed => book.anomalies.crossed += 1,
                CrossState::Locked => book.anomalies.locked += 1,
                CrossState::Normal => {}
            }
            book.cross = state;
        }
        book.top = top;
        sink.on_bbo(&Bbo::new(book.locate, timestamp, top.0, top.1));
    }

    /// Every book, in the order they were first seen.
    pub fn books(&self) -> &[Book] {
        &self.books
    }

    /// The book of `locate`, if one exists.
    pub fn book(&self, locate: u16) -> Option<&Book> {
        match self.by_locate[locate as usize] {
            NIL => None,
            b => Some(&self.books[b as usize]),
        }
    }

    /// Asks the cache for the lines of `locate`'s book that its published state reads (the
    /// top and the trade statistics; not the sides or the anomaly counters); changes nothing.
    /// For a caller about to read many books' state at once: issuing all the misses first
    /// lets them overlap instead of waiting on each in turn.
    #[inline]
    pub fn prefetch_book(&self, locate: u16) {
        const FIRST: usize = core::mem::offset_of!(Book, top) / 64 * 64;
        const END: usize =
            core::mem::offset_of!(Book, stats) + core::mem::size_of::<instrument::TradeStats>();
        if let Some(b) = self.book(locate) {
            let p = b as *const Book as *const u8;
            for line in (FIRST..END).step_by(64) {
                prefetch::touch(p.wrapping_add(line));
            }
        }
    }

    /// Aggregated levels of one side, best first.
    pub fn depth<'a>(
        &'a self,
        book: &'a Book,
        kind: SideKind,
    ) -> impl Iterator<Item = LevelInfo> + 'a {
        let b = self.by_locate[book.locate as usize] as usize;
        self.side(b, kind).levels().map(|(price, c)| LevelInfo {
            price,
            shares: c.shares as u64,
            orders: c.orders,
        })
    }

    /// The orders queued at one level (`locate`'s book, side `kind`, `price`), oldest first:
    /// the L3 view. References increase with time and a replace takes a new one, so reference
    /// order is queue order. O(live orders): a query, never on the apply path.
    pub fn queue(&self, locate: u16, kind: SideKind, price: u32) -> Vec<RestingOrder> {
        let b = self.by_locate[locate as usize];
        let mut q: Vec<RestingOrder> = self
            .orders
            .iter()
            .filter(|o| o.book() as u32 == b && o.side() == kind && o.price == price)
            .map(|o| self.resting(o))
            .collect();
        q.sort_unstable_by_key(|o| o.order_ref);
        q
    }

    fn resting(&self, o: &Order) -> RestingOrder {
        RestingOrder {
            order_ref: o.order_ref(),
            shares: o.shares,
            price: o.price,
            side: o.side(),
            locate: self.books[o.book()].locate,
        }
    }

    /// The live order with reference `order_ref`, if any.
    pub fn order(&self, order_ref: u64) -> Option<RestingOrder> {
        self.orders.get(order_ref).map(|o| self.resting(o))
    }

    /// Whether the order table fell back to the hash that mixes every bit of a reference (see
    /// [`order_table`]); true only for hostile reference patterns.
    pub fn index_scrambled(&self) -> bool {
        self.orders.scrambled()
    }

    /// Bytes of state the apply path touches: live orders with their share of the table's empty
    /// slots, open levels with as much again of empty cells around them, and books. Decides
    /// whether prefetching pays ([`Pipeline`]).
    pub fn live_state_bytes(&self) -> usize {
        self.orders.live_bytes()
            + self.live_levels * 2 * core::mem::size_of::<Cell>()
            + self.books.len() * core::mem::size_of::<Book>()
    }

    /// Live orders across all books.
    pub fn live_orders(&self) -> usize {
        self.orders.len()
    }

    /// Messages applied, by type, in [`ALL_TYPES`] order; the last entry is always zero.
    pub fn by_type(&self) -> &[u64; ALL_TYPES.len() + 1] {
        &self.by_type
    }

    /// Anomalies of messages whose locate has no book.
    pub fn orphan_anomalies(&self) -> &Anomalies {
        &self.orphan
    }

    /// All anomalies: every book's plus the orphans.
    pub fn total_anomalies(&self) -> Anomalies {
        let mut a = self.orphan;
        self.books.iter().for_each(|b| a.add(&b.anomalies));
        a
    }

    /// Bytes held by the order table, the books with their levels (the part of the ladder arena
    /// in use), and the trade memory.
    pub fn heap_bytes(&self) -> usize {
        let deep: usize = self.deeps.iter().map(Sorted::heap_bytes).sum();
        self.orders.heap_bytes()
            + self.deeps.len() * core::mem::size_of::<Ladder>()
            + deep
            + self.deeps.capacity() * core::mem::size_of::<Sorted>()
            + self.books.len() * core::mem::size_of::<Book>()
            + self.by_locate.len() * 4
            + self.recent.len() * core::mem::size_of::<TradeRecord>()
    }

    /// Checks every structural invariant; returns the first one broken. For tests: O(orders).
    pub fn check_invariants(&self) -> Result<(), String> {
        // Per (book, side, price): orders and shares resting there, summed from the order table.
        type Place = (usize, u8, u32);
        let mut resting: std::collections::BTreeMap<Place, (u32, u64)> = Default::default();
        for o in self.orders.iter() {
            if o.book() >= self.books.len() {
                return Err(format!("order {} names no book", o.order_ref()));
            }
            let e = resting
                .entry((o.book(), o.side() as u8, o.price))
                .or_default();
            e.0 += 1;
            e.1 += o.shares as u64;
        }
        let mut levels = 0;
        for (bi, book) in self.books.iter().enumerate() {
            for kind in [SideKind::Bid, SideKind::Ask] {
                let side = self.side(bi, kind);
                if !side.is_consistent() {
                    let sym = book.symbol_str();
                    return Err(format!("{sym}: {kind:?} side's bookkeeping is broken"));
                }
                for (price, c) in side.levels() {
                    levels += 1;
                    let (n, sh) = resting.remove(&(bi, kind as u8, price)).unwrap_or_default();
                    if n == 0 || n != c.orders || sh != c.shares as u64 {
                        return Err(format!(
                            "{} {kind:?} level {price}: {n} orders / {sh} shares resting, level says {} / {}",
                            book.symbol_str(),
                            c.orders,
                            c.shares
                        ));
                    }
                }
            }
            if self.true_top(bi) != book.top {
                return Err(format!("{}: published top is stale", book.symbol_str()));
            }
        }
        if let Some(((b, s, p), (n, _))) = resting.into_iter().next() {
            return Err(format!(
                "{n} orders rest at book {b} side {s} price {p}, which no side holds"
            ));
        }
        if levels != self.live_levels {
            return Err(format!(
                "{levels} levels open, {} counted",
                self.live_levels
            ));
        }
        if self.orders.len() != self.orders.iter().count() {
            return Err("order table miscounts its orders".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
struct Exec {
    shares: u32,
    match_number: u64,
}
