//! Per-instrument state: the two sides of the book, trade statistics and anomaly counters.
//!
//! Owns what a reader of one instrument wants to know, and its price levels (in its sides); the
//! orders themselves live in the shard-wide order table. Never allocates after the book is
//! created (its sides grow only when a book gets deeper than ever before).

use super::side::{Side, SideKind};
use crate::events::Quote;
use crate::itch::Stock;

/// Trades, volume and prices of the day, printable executions only.
///
/// `repr(C)`, in this order, so that everything [`TradeStats::record`] writes sits in the
/// struct's first 64 bytes: the one line of the book the prefetcher asks for ahead of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct TradeStats {
    /// Sum of price x shares, in Price(4) units, for VWAP.
    pub notional: u128,
    /// Printable trades.
    pub trades: u64,
    /// Shares traded (printable).
    pub volume: u64,
    /// Shares of the last printable trade.
    pub last_shares: u64,
    /// Feed time of the last printable trade.
    pub last_timestamp: u64,
    /// Last printable trade price; 0 before the first.
    pub last_price: u32,
    /// Day high; 0 before the first trade.
    pub high: u32,
    /// Day low; `u32::MAX` before the first trade.
    pub low: u32,
    /// Executions that did not print (`C` with printable `N`).
    pub non_printable: u64,
    /// Trades broken by `B` and taken back out of the figures above (high and low stay).
    pub broken: u64,
}

const _: () = assert!(
    core::mem::offset_of!(TradeStats, low) + 4 <= 64,
    "a trade's statistics fit one line"
);

impl Default for TradeStats {
    fn default() -> Self {
        TradeStats {
            trades: 0,
            volume: 0,
            notional: 0,
            last_price: 0,
            last_shares: 0,
            last_timestamp: 0,
            high: 0,
            low: u32::MAX,
            non_printable: 0,
            broken: 0,
        }
    }
}

impl TradeStats {
    /// Adds a printable trade.
    #[inline(always)]
    pub fn record(&mut self, price: u32, shares: u64, timestamp: u64) {
        self.trades += 1;
        self.volume += shares;
        self.notional += price as u128 * shares as u128;
        self.last_price = price;
        self.last_shares = shares;
        self.last_timestamp = timestamp;
        self.high = self.high.max(price);
        self.low = self.low.min(price);
    }

    /// Takes a broken trade back out.
    pub fn reverse(&mut self, price: u32, shares: u64) {
        debug_assert!(self.trades > 0 && self.volume >= shares);
        self.trades = self.trades.saturating_sub(1);
        self.volume = self.volume.saturating_sub(shares);
        self.notional = self.notional.saturating_sub(price as u128 * shares as u128);
        self.broken += 1;
    }

    /// Volume-weighted average price, Price(4), rounded half up; `None` before any volume.
    pub fn vwap(&self) -> Option<u64> {
        let v = self.volume as u128;
        (v > 0).then(|| ((self.notional + v / 2) / v) as u64)
    }
}

macro_rules! anomalies {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Things the feed did that a correct, complete feed would not. Counted, never fatal.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Anomalies {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl Anomalies {
            /// Every counter with its name, in declaration order.
            pub fn fields(&self) -> [(&'static str, u64); [$(stringify!($name)),*].len()] {
                [$( (stringify!($name), self.$name), )*]
            }

            /// Adds `other`'s counts to these.
            pub fn add(&mut self, other: &Anomalies) {
                $( self.$name += other.$name; )*
            }

            /// Counters from `counts`, in declaration order (missing ones zero).
            pub fn from_counts(counts: &[u64]) -> Anomalies {
                let mut it = counts.iter().copied();
                Anomalies { $( $name: it.next().unwrap_or(0), )* }
            }

            /// Sum of all counters.
            pub fn total(&self) -> u64 {
                0 $( + self.$name )*
            }
        }
    };
}

anomalies! {
    /// An execute, cancel, delete or replace named a reference that is not live.
    unknown_ref,
    /// An execution was larger than the order's remaining shares (the order left the book).
    exec_exceeds_order,
    /// A cancel was larger than the order's remaining shares (the order left the book).
    cancel_exceeds_order,
    /// An add or replace used a reference that is already live (ignored).
    duplicate_ref,
    /// A message's locate differs from the locate of the order it names (the order's wins).
    locate_mismatch,
    /// An add's stock field differs from the book's symbol.
    symbol_mismatch,
    /// An add's side was neither `B` nor `S` (ignored).
    bad_side,
    /// An add or replace with zero shares (nothing displayed, ignored).
    zero_shares,
    /// An add or replace that would take its level past `u32::MAX` shares (refused; its
    /// reference is not live).
    level_full,
    /// An add or replace whose reference does not fit the 47 bits a live order keeps (refused;
    /// real references count up from 1 and stay far below 2^47).
    ref_too_large,
    /// The book went from uncrossed to crossed (best bid above best ask).
    crossed,
    /// The book went from uncrossed to locked (best bid equal to best ask).
    locked,
    /// A broken trade whose match number is not remembered.
    unknown_break,
}

/// Whether the top of the book is crossed, locked or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum CrossState {
    /// Best bid below best ask, or a side empty.
    #[default]
    Normal,
    /// Best bid equals best ask.
    Locked,
    /// Best bid above best ask.
    Crossed,
}

/// One instrument's book and day state.
///
/// Laid out hot first, one cache line per group: both sides' heads and the book's identity
/// (read by every order message), then the published top (read when the top changes), then
/// trade statistics, then the anomaly counters that a clean feed never touches.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct Book {
    /// Bids, then asks: indexed by [`SideKind`], so choosing a side is an offset, not a branch.
    pub(crate) sides: [Side; 2],
    /// Symbol, space padded, from the directory or the first message that named it.
    pub symbol: Stock,
    /// Stock locate of the instrument.
    pub locate: u16,
    /// Trading state from the last `H` (`T` trading, `H` halted, ...); 0 before any.
    pub trading_state: u8,
    pub(crate) cross: CrossState,
    _line0: [u8; 8],
    pub(crate) top: (Quote, Quote),
    _line1: [u8; 32],
    /// Trades, volume and prices.
    pub stats: TradeStats,
    /// Anomalies seen on this instrument.
    pub anomalies: Anomalies,
}

impl Book {
    /// The published best bid and ask (what the last BBO event said).
    pub fn top(&self) -> (Quote, Quote) {
        self.top
    }

    /// A new, empty book.
    pub fn new(locate: u16, symbol: Stock) -> Self {
        Book {
            locate,
            symbol,
            trading_state: 0,
            stats: TradeStats::default(),
            anomalies: Anomalies::default(),
            sides: [Side::new(SideKind::Bid), Side::new(SideKind::Ask)],
            top: (Quote::default(), Quote::default()),
            cross: CrossState::Normal,
            _line0: [0; 8],
            _line1: [0; 32],
        }
    }

    /// The symbol without its padding.
    pub fn symbol_str(&self) -> &str {
        crate::symbol::trim(&self.symbol)
    }

    /// The head of side `kind` (where its levels are, and its best; the levels themselves are
    /// in [`Books::depth`](super::Books::depth)).
    #[inline(always)]
    pub fn side(&self, kind: SideKind) -> &Side {
        &self.sides[kind as usize]
    }

    /// Best bid and ask as last published.
    pub fn bbo(&self) -> (Quote, Quote) {
        self.top
    }

    /// Crossed, locked or neither, as of the last top-of-book change.
    pub fn cross_state(&self) -> CrossState {
        self.cross
    }
}

// SAFETY: integers, byte arrays, and enums whose zero is a variant (`SideKind::Bid`,
// `CrossState::Normal`, both `repr(u8)`): all-zero bytes are a valid (empty, unnamed) book,
// which `Books` overwrites with `Book::new` before use.
unsafe impl super::pages::Zeroed for Book {}

// Stage 1 of the prefetcher asks for a book's first line for every message, its third
// (statistics) for trades only, and stage 2 its second (the published top) when the message
// will change the top: each group must sit in its own line.
const _: () = assert!(core::mem::offset_of!(Book, top) == 64);
const _: () = assert!(core::mem::offset_of!(Book, stats) == 128);
