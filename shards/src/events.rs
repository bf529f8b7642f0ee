//! Events the books emit while they apply messages: trades, best bid/offer changes, breaks, and
//! the bars built from trades ([`crate::bars`]).
//!
//! Owns the event types and the [`EventSink`] trait through which a shard hands them on. Events
//! are small fixed-size `Copy` values with no heap data, so emitting one never allocates, and
//! their rkyv archived forms (which cross cores in batches) validate with bounds checks only;
//! a sink whose methods do nothing compiles away entirely.

use rkyv::{Archive, Serialize};

/// Which message printed a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Archive, Serialize)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
#[repr(u8)]
pub enum TradeKind {
    /// `E`: a displayed order executed at its own price.
    Executed = b'E',
    /// `C`: a displayed order executed at another price.
    ExecutedWithPrice = b'C',
    /// `P`: a non-displayed order matched.
    NonDisplayed = b'P',
    /// `Q`: an opening, closing, halt or IPO cross.
    Cross = b'Q',
}

/// One execution, printable or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize)]
#[rkyv(derive(Debug))]
pub struct Trade {
    /// Instrument.
    pub locate: u16,
    /// Feed time, nanoseconds since midnight.
    pub timestamp: u64,
    /// Day-unique match number.
    pub match_number: u64,
    /// Price, Price(4).
    pub price: u32,
    /// Shares matched.
    pub shares: u64,
    /// Side of the resting order (`B`/`S`), or `b' '` for a cross.
    pub side: u8,
    /// Whether it counts towards volume and VWAP.
    pub printable: bool,
    /// Which message printed it.
    pub kind: TradeKind,
}

/// Top of one side: price, shares and orders at the best level; all zero when the side is empty.
///
/// `repr(C)` with no padding, here and in [`Bbo`] and [`InstrumentState`]: the archived layout
/// is then the native one, so rkyv writes a batch's slice of them as one copy of bytes instead
/// of field by field (see [`copies_as_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Archive, Serialize)]
#[rkyv(derive(Debug))]
#[repr(C)]
pub struct Quote {
    /// Shares at the best price.
    pub shares: u64,
    /// Best price, Price(4); 0 when empty.
    pub price: u32,
    /// Orders at the best price.
    pub orders: u32,
}

/// The best bid and offer of one instrument after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Archive, Serialize)]
#[rkyv(derive(Debug))]
#[repr(C)]
pub struct Bbo {
    /// Feed time of the message that changed it.
    pub timestamp: u64,
    /// Best bid.
    pub bid: Quote,
    /// Best ask.
    pub ask: Quote,
    /// Instrument.
    pub locate: u16,
    /// Always zero: the bytes the compiler would otherwise pad with, named so that the
    /// layout has no padding (padding would make rkyv copy field by field).
    pub pad: [u8; 6],
}

impl Bbo {
    /// The BBO of `locate` at feed time `timestamp`.
    pub fn new(locate: u16, timestamp: u64, bid: Quote, ask: Quote) -> Bbo {
        Bbo {
            timestamp,
            bid,
            ask,
            locate,
            pad: [0; 6],
        }
    }
}

/// A trade that the exchange broke (`B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize)]
#[rkyv(derive(Debug))]
pub struct Break {
    /// Instrument named by the message.
    pub locate: u16,
    /// Feed time.
    pub timestamp: u64,
    /// Match number of the broken trade.
    pub match_number: u64,
    /// Whether the trade was still remembered and its volume taken back.
    pub reversed: bool,
}

/// The latest state of one instrument: what a live-state store (Redis) keeps per instrument.
/// A shard emits it at most once per instrument per batch, for the instruments whose trade
/// statistics the batch changed (a trade printed or was broken); a change of top alone travels
/// as a [`Bbo`] only, and a consumer that keeps states folds BBOs into them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Archive, Serialize)]
#[rkyv(derive(Debug))]
#[repr(C)]
pub struct InstrumentState {
    /// Sum of price x shares so far, Price(4) units, for VWAP.
    pub notional: u128,
    /// Feed time of the last change.
    pub timestamp: u64,
    /// Best bid.
    pub bid: Quote,
    /// Best ask.
    pub ask: Quote,
    /// Shares of the last printable trade.
    pub last_shares: u64,
    /// Printable trades so far (net of breaks).
    pub trades: u64,
    /// Printable volume so far (net of breaks).
    pub volume: u64,
    /// Last printable trade: price (0 before the first), shares, feed time.
    pub last_price: u32,
    /// Instrument.
    pub locate: u16,
    /// Always zero, as [`Bbo::pad`].
    pub pad: [u8; 10],
}

/// Levels per side a [`Depth`] carries: the most a depth subscriber can ask for.
pub const DEPTH_LEVELS: usize = 10;

/// The top [`DEPTH_LEVELS`] levels of each side of one instrument, best first, after a batch
/// changed them; unused entries are zero. A shard sends one per instrument per batch, only when
/// a depth consumer (the WebSocket gateway) is on and the top levels differ from the last ones
/// it sent, so a consumer diffs successive ones into level updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Archive, Serialize)]
#[rkyv(derive(Debug))]
#[repr(C)]
pub struct Depth {
    /// Feed time of the batch's last message that touched the book.
    pub timestamp: u64,
    /// Bid levels: price, shares and orders each, as a [`Quote`].
    pub bids: [Quote; DEPTH_LEVELS],
    /// Ask levels.
    pub asks: [Quote; DEPTH_LEVELS],
    /// Instrument.
    pub locate: u16,
    /// Always zero, as [`Bbo::pad`].
    pub pad: [u8; 6],
}

/// Whether rkyv archives a slice of `T` as one copy of its bytes.
pub const fn copies_as_bytes<T: Archive>() -> bool {
    T::COPY_OPTIMIZATION.is_enabled()
}

// The event types a shard sends in bulk must stay byte-copyable: a field that reintroduces
// padding fails the build here instead of quietly slowing every batch.
const _: () = assert!(
    copies_as_bytes::<Quote>()
        && copies_as_bytes::<Bbo>()
        && copies_as_bytes::<InstrumentState>()
        && copies_as_bytes::<Depth>()
);

/// An instrument's listing, from its stock directory message (`R`): how consumers name a locate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize)]
#[rkyv(derive(Debug))]
pub struct Listing {
    /// Instrument.
    pub locate: u16,
    /// Symbol, space padded.
    pub stock: [u8; 8],
}

/// Receives events as the books produce them. Every method defaults to doing nothing.
pub trait EventSink {
    /// A trade printed.
    #[inline(always)]
    fn on_trade(&mut self, _trade: &Trade) {}
    /// The best bid or offer of an instrument changed.
    #[inline(always)]
    fn on_bbo(&mut self, _bbo: &Bbo) {}
    /// A trade was broken.
    #[inline(always)]
    fn on_break(&mut self, _brk: &Break) {}
}

/// Discards every event.
impl EventSink for () {}

/// Collects every event, in order; for tests and small tools, not the hot path.
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    /// Trades in arrival order.
    pub trades: Vec<Trade>,
    /// BBO changes in arrival order.
    pub bbos: Vec<Bbo>,
    /// Breaks in arrival order.
    pub breaks: Vec<Break>,
}

impl EventSink for EventLog {
    fn on_trade(&mut self, t: &Trade) {
        self.trades.push(*t);
    }
    fn on_bbo(&mut self, b: &Bbo) {
        self.bbos.push(*b);
    }
    fn on_break(&mut self, b: &Break) {
        self.breaks.push(*b);
    }
}
