//! A shard's books as plain data, and back: what a checkpoint keeps of [`Books`].
//!
//! Kept: every book's identity, trading state, published top, cross state, trade statistics and
//! anomaly counters; every live order (reference, book, side, shares, price); the trade memory
//! that `B` (broken trade) needs; the shard-wide anomaly and message-type counters. Not kept:
//! the ladder windows, sorted levels and order-table layout, which are rebuilt by adding the
//! live orders again in reference order (reference order is queue order, so each level's queue
//! comes back as it was).
//!
//! A capture is taken in slices, so a checkpoint never holds the shard for long: the small
//! per-book state is copied at the instant ([`Books::begin_capture`]); the live orders and the
//! trade memory are copied a few chunks at a time between batches ([`Books::capture_step`],
//! through [`super::sweep`]) while messages go on changing them, and still come out as they
//! were at the instant; [`Captured`] turns them into plain data a part at a time. Owns the
//! conversion only; never does I/O (the checkpoint file format is [`crate::checkpoint`]).

use super::order_table::Order;
use super::sweep::Sweep;
use super::{Books, TradeRecord, NIL, TRADE_MEMORY};
use crate::book::instrument::{Anomalies, CrossState, TradeStats};
use crate::book::SideKind;
use crate::checkpoint::{Part, BOOKS_PART, PART};
use crate::events::Quote;
use crate::itch::Header;
use rkyv::{Archive, Deserialize, Serialize};

/// A live order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct OrderState {
    /// Day-unique reference.
    pub order_ref: u64,
    /// Shares still displayed.
    pub shares: u32,
    /// Limit price, Price(4).
    pub price: u32,
    /// Stock locate of its book.
    pub locate: u16,
    /// `B` or `S`.
    pub side: u8,
}

/// One side's published best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct QuoteState {
    /// Shares at the best price.
    pub shares: u64,
    /// Best price; 0 when empty.
    pub price: u32,
    /// Orders at the best price.
    pub orders: u32,
}

/// One instrument's day state (its levels come back from the orders).
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct BookState {
    /// Stock locate.
    pub locate: u16,
    /// Symbol, space padded.
    pub symbol: [u8; 8],
    /// Trading state from the last `H`.
    pub trading_state: u8,
    /// 0 normal, 1 locked, 2 crossed.
    pub cross: u8,
    /// Published best bid, then ask.
    pub top: [QuoteState; 2],
    /// Sum of price x shares.
    pub notional: u128,
    /// Printable trades, volume, last shares, last timestamp.
    pub counts: [u64; 4],
    /// Last price, high, low.
    pub prices: [u32; 3],
    /// Non-printable executions, broken trades.
    pub other: [u64; 2],
    /// Anomaly counters in declaration order.
    pub anomalies: Vec<u64>,
}

/// A remembered trade (for `B`), at its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct TradeMemo {
    /// Slot in the trade memory.
    pub slot: u32,
    /// Match number.
    pub match_number: u64,
    /// Shares.
    pub shares: u64,
    /// Price.
    pub price: u32,
    /// Dense book index.
    pub book: u32,
}

/// Everything a shard's books hold that a restart needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct BooksState {
    /// Books in the order they were created (their dense indexes).
    pub books: Vec<BookState>,
    /// Live orders, in no particular order ([`Books::restore`] adds them in reference order).
    pub orders: Vec<OrderState>,
    /// The trade memory's filled slots.
    pub recent: Vec<TradeMemo>,
    /// Anomalies of messages that named no known order.
    pub orphan: Vec<u64>,
    /// Messages applied by type.
    pub by_type: Vec<u64>,
}

fn quote(q: &Quote) -> QuoteState {
    QuoteState {
        shares: q.shares,
        price: q.price,
        orders: q.orders,
    }
}

fn unquote(q: &QuoteState) -> Quote {
    Quote {
        shares: q.shares,
        price: q.price,
        orders: q.orders,
    }
}

/// The live orders and remembered trades of a capture's instant, copied; turned into plain
/// data a part at a time.
pub struct Captured {
    orders: Vec<Order>,
    recent: Vec<TradeRecord>,
    /// Stock locate by dense book index.
    locates: Vec<u16>,
    forced: u64,
}

impl Captured {
    /// Chunks a write had to copy first while the capture ran (each delayed its message by
    /// one chunk's read).
    pub fn forced(&self) -> u64 {
        self.forced
    }

    /// Live orders captured.
    pub fn orders(&self) -> usize {
        self.orders.len()
    }

    /// Remembered trades captured.
    pub fn trades(&self) -> usize {
        self.recent.len()
    }

    /// Parts the capture and its `books` fill.
    pub fn parts(&self, books: &[BookState]) -> usize {
        crate::checkpoint::parts(books.len(), self.orders.len().max(self.recent.len()))
    }

    /// Part `i`: its share of `books` (the head's, taken at the instant), orders and trades.
    pub fn part(&self, i: usize, books: &[BookState]) -> Part {
        use crate::checkpoint::part;
        Part {
            books: books[part(i, BOOKS_PART, books.len())].to_vec(),
            orders: self.order_states(part(i, PART, self.orders.len())),
            recent: self.trade_memos(part(i, PART, self.recent.len())),
        }
    }

    /// Orders `range` as plain data.
    pub fn order_states(&self, range: core::ops::Range<usize>) -> Vec<OrderState> {
        let state = |o: &Order| OrderState {
            order_ref: o.order_ref(),
            shares: o.shares,
            price: o.price,
            locate: self.locates[o.book()],
            side: match o.side() {
                SideKind::Bid => b'B',
                SideKind::Ask => b'S',
            },
        };
        self.orders[range].iter().map(state).collect()
    }

    /// Remembered trades `range` as plain data.
    pub fn trade_memos(&self, range: core::ops::Range<usize>) -> Vec<TradeMemo> {
        let memo = |t: &TradeRecord| TradeMemo {
            slot: (t.match_number as usize & (TRADE_MEMORY - 1)) as u32,
            match_number: t.match_number,
            shares: t.shares,
            price: t.price,
            book: t.book,
        };
        self.recent[range].iter().map(memo).collect()
    }
}

impl BooksState {
    /// Whether books this build can hold could be restored from this state: the rules
    /// [`Books::restore`] relies on, so that a recovery can pass over a checkpoint that would
    /// not restore before it commits to it (a checkpoint of another build, or a bug).
    pub fn check(&self) -> Result<(), String> {
        let anomaly_count = Anomalies::default().fields().len();
        if self.by_type.len() != crate::itch::ALL_TYPES.len() + 1
            || self.orphan.len() != anomaly_count
        {
            return Err("its counters do not match this build's message types".into());
        }
        let mut listed = vec![false; 1 << 16];
        for b in &self.books {
            if std::mem::replace(&mut listed[b.locate as usize], true)
                || b.anomalies.len() != anomaly_count
            {
                return Err(format!("book {} appears twice or is malformed", b.locate));
            }
        }
        for o in &self.orders {
            if !listed[o.locate as usize] || o.shares == 0 || o.order_ref > super::MAX_REF {
                return Err(format!(
                    "order {} names no book or is malformed",
                    o.order_ref
                ));
            }
        }
        let mut refs: Vec<u64> = self.orders.iter().map(|o| o.order_ref).collect();
        refs.sort_unstable();
        if let Some(w) = refs.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("order {} appears twice", w[0]));
        }
        if let Some(t) = self
            .recent
            .iter()
            .find(|t| t.book as usize >= self.books.len())
        {
            return Err(format!("trade {} names no book", t.match_number));
        }
        Ok(())
    }
}

impl Books {
    /// The per-book state and counters as plain data, without orders or trades.
    fn head(&self) -> BooksState {
        let books: Vec<BookState> = self
            .books
            .iter()
            .map(|b| BookState {
                locate: b.locate,
                symbol: b.symbol,
                trading_state: b.trading_state,
                cross: b.cross as u8,
                top: [quote(&b.top.0), quote(&b.top.1)],
                notional: b.stats.notional,
                counts: [
                    b.stats.trades,
                    b.stats.volume,
                    b.stats.last_shares,
                    b.stats.last_timestamp,
                ],
                prices: [b.stats.last_price, b.stats.high, b.stats.low],
                other: [b.stats.non_printable, b.stats.broken],
                anomalies: b.anomalies.fields().iter().map(|f| f.1).collect(),
            })
            .collect();
        BooksState {
            books,
            orders: Vec::new(),
            recent: Vec::new(),
            orphan: self.orphan.fields().iter().map(|f| f.1).collect(),
            by_type: self.by_type.to_vec(),
        }
    }

    /// Starts a capture of the books as they are now: returns the per-book state and counters
    /// (copied now), and starts copying the live orders and trade memory, which
    /// [`capture_step`](Self::capture_step) goes on with while messages are applied. One
    /// capture at a time.
    pub fn begin_capture(&mut self) -> BooksState {
        self.orders.begin_sweep();
        // Room for a full memory (address space only until written): counting the filled
        // slots first would read the whole memory at the instant.
        let kept = |t: &TradeRecord| t.book != NIL;
        self.recent_sweep = Some(Box::new(Sweep::new(self.recent.len(), TRADE_MEMORY, kept)));
        self.head()
    }

    /// Copies up to `chunks` chunks (4,096 slots each) more of each array; true when the
    /// capture is complete (or none was begun).
    pub fn capture_step(&mut self, chunks: usize) -> bool {
        let orders = self.orders.sweep_step(chunks);
        let recent = match &mut self.recent_sweep {
            Some(s) => s.done() || s.step(&self.recent, chunks),
            None => true,
        };
        orders && recent
    }

    /// The copied orders and trades, once [`capture_step`](Self::capture_step) said complete.
    pub fn finish_capture(&mut self) -> Option<Captured> {
        if !self.recent_sweep.as_ref().is_some_and(|s| s.done()) {
            return None;
        }
        let forced =
            self.orders.sweep_forced() + self.recent_sweep.as_ref().map_or(0, |s| s.forced());
        let orders = self.orders.finish_sweep()?;
        let recent = self.recent_sweep.take()?.finish();
        let locates = self.books.iter().map(|b| b.locate).collect();
        Some(Captured {
            orders,
            recent,
            locates,
            forced,
        })
    }

    /// The books as plain data, at once, orders by ascending reference (for tests and tools;
    /// the engine captures in slices).
    pub fn capture(&mut self) -> BooksState {
        let mut s = self.begin_capture();
        while !self.capture_step(usize::MAX) {}
        let c = self.finish_capture().expect("the capture is complete");
        s.orders = c.order_states(0..c.orders());
        s.orders.sort_unstable_by_key(|o| o.order_ref);
        s.recent = c.trade_memos(0..c.trades());
        s.recent.sort_unstable_by_key(|t| t.slot);
        s
    }

    /// These books, which must be new (room reserved and touched, nothing applied), made equal
    /// to those `s` was captured from. Fails when `s` does not describe books this build can
    /// hold (a checkpoint of another version).
    pub fn restore(self, s: &BooksState) -> Result<Books, String> {
        let mut books = self;
        if !books.books.is_empty() || !books.orders.is_empty() {
            return Err("restoring into books that are not new".into());
        }
        s.check()?;
        for b in &s.books {
            books.book_for(b.locate, b.symbol);
        }
        let mut by_ref: Vec<&OrderState> = s.orders.iter().collect();
        by_ref.sort_unstable_by_key(|o| o.order_ref);
        for o in by_ref {
            let h = Header {
                locate: o.locate,
                tracking: 0,
                timestamp: 0,
            };
            let stock = books.books[books.by_locate[o.locate as usize] as usize].symbol;
            books.add(&h, stock, o.order_ref, o.side, o.shares, o.price, &mut ());
        }
        if books.orders.len() != s.orders.len() {
            return Err("some orders could not be placed again".into());
        }
        for (i, b) in s.books.iter().enumerate() {
            let book = &mut books.books[i];
            book.trading_state = b.trading_state;
            book.cross = match b.cross {
                1 => CrossState::Locked,
                2 => CrossState::Crossed,
                _ => CrossState::Normal,
            };
            book.top = (unquote(&b.top[0]), unquote(&b.top[1]));
            book.stats = TradeStats {
                notional: b.notional,
                trades: b.counts[0],
                volume: b.counts[1],
                last_shares: b.counts[2],
                last_timestamp: b.counts[3],
                last_price: b.prices[0],
                high: b.prices[1],
                low: b.prices[2],
                non_printable: b.other[0],
                broken: b.other[1],
            };
            book.anomalies = Anomalies::from_counts(&b.anomalies);
        }
        for t in &s.recent {
            let slot = books
                .recent
                .get_mut(t.slot as usize % TRADE_MEMORY)
                .expect("slot within the memory");
            *slot = TradeRecord {
                match_number: t.match_number,
                shares: t.shares,
                price: t.price,
                book: t.book,
            };
        }
        books.orphan = Anomalies::from_counts(&s.orphan);
        books.by_type.copy_from_slice(&s.by_type);
        Ok(books)
    }
}
