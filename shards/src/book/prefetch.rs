//! Software prefetching across a window of upcoming messages.
//!
//! Why: with thousands of instruments, each message lands on state (index slot, order, level,
//! book, side) that an unrelated message last touched long ago, so applying messages one by one
//! waits on a chain of dependent cache misses per message. The misses of different messages are
//! independent, so [`Pipeline`] overlaps them. It runs three stages over a window of frames, and
//! each stage only reads what the stage before it asked the cache for:
//!
//! 1. `LOOKAHEAD` frames ahead: the order-table slot of the reference the message names, and
//!    its book's hot lines (sides, identity, published top; the statistics line only for the
//!    types that print a trade);
//! 2. `MID` frames ahead: reads the slot (now cached) and asks for the order's level, and for
//!    the table's next line when the order's line is full (a removal's backward shift reads
//!    on into it); for an add, reads the book and asks for its price's slot in the side's
//!    ladder (or, below the ladder, the sorted entries a search will read);
//! 3. `NEAR` frames ahead: for an add, the level it joins, read from the ladder slot stage 2
//!    asked for; for an order that is the last at its level (its removal clears its slot),
//!    that slot, or, when its level is the best, the line of slots below it (where the search
//!    for the new top starts).
//!
//! The add's level at stage 3 lost 6-7% when first tried (the slot was often not there yet,
//! and the stage waited on it), while the order table still ran at load 1/2 and its next line
//! was not prefetched; with both fixed it gains 8% on v3k deep and changes nothing on realistic
//! (median ratios of fourteen rounds back to back). The side's top slot is not asked for, only
//! the add's own: with a ladder the add reads no other line of the side (realistic v3k 1.05x
//! without it, deep unchanged).
//!
//! Why so few lines: with thousands of books the state lives in L3 or beyond, and the core can
//! only keep a couple of dozen misses in flight. Prefetching lines a message will not read
//! (both sides' tops, both best levels, for every message) filled those slots and stalled the
//! prefetches that mattered; see the README for what trimming them bought.
//!
//! Messages are applied strictly in order. Prefetches are hints only: results never depend on them.

use super::{Books, LevelId, Side, SideKind, NIL};
use crate::events::EventSink;
use crate::itch::field::Field;
use crate::itch::{walk, FrameError, WalkStats};

/// Frames between the first prefetch of a message and its apply (a power of two).
pub const LOOKAHEAD: usize = 16;
const MID: usize = 10;
const NEAR: usize = 4;

/// Asks the cache for the line holding `p`. Never faults, whatever `p` is.
#[inline(always)]
pub fn touch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never dereferences and never faults on any address.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Reference a message names, for the types that name a live order.
#[inline(always)]
fn named_ref(msg: &[u8]) -> Option<u64> {
    match msg[0] {
        b'D' | b'E' | b'C' | b'X' | b'U' if msg.len() >= 19 => Some(u64::get(msg, 11)),
        _ => None,
    }
}

/// The side an add rests on.
#[inline(always)]
fn add_side(msg: &[u8]) -> Option<SideKind> {
    match msg[0] {
        b'A' | b'F' if msg.len() >= 36 => SideKind::from_itch(msg[19]),
        _ => None,
    }
}

impl Books {
    #[inline(always)]
    fn book_index(&self, msg: &[u8]) -> u32 {
        self.by_locate[u16::get(msg, 1) as usize]
    }

    /// For an add whose book exists: the side it rests on and its price.
    #[inline(always)]
    fn add_target(&self, msg: &[u8]) -> Option<(&Side, u32)> {
        let kind = add_side(msg)?;
        let b = self.book_index(msg);
        (b != NIL).then(|| (self.books[b as usize].side(kind), u32::get(msg, 32)))
    }

    /// Stage 1: the index slots the message will read or write, and the book's lines for
    /// sides, top and statistics.
    #[inline(always)]
    fn prefetch_slot(&self, msg: &[u8]) {
        match msg[0] {
            b'A' | b'F' if msg.len() >= 19 => self.orders.prefetch(u64::get(msg, 11)),
            b'D' | b'E' | b'C' | b'X' if msg.len() >= 19 => {
                self.orders.prefetch_pair(u64::get(msg, 11))
            }
            b'U' if msg.len() >= 27 => {
                self.orders.prefetch_pair(u64::get(msg, 11));
                self.orders.prefetch(u64::get(msg, 19));
            }
            _ => {}
        }
        let b = self.book_index(msg);
        if b != NIL {
            let p = self.books.as_ptr().wrapping_add(b as usize) as *const u8;
            touch(p);
            touch(p.wrapping_add(64));
            if matches!(msg[0], b'E' | b'C' | b'P' | b'Q') {
                touch(p.wrapping_add(128));
            }
        }
    }

    /// Stage 2: the order's level (from its slot); for an add, the line of its side that holds
    /// its price's place. Returns the order's level for stage 3 ([`NIL`] when none), so
    /// stage 3 does not look the reference up again.
    #[inline(always)]
    fn prefetch_order(&self, msg: &[u8]) -> LevelId {
        if let Some(i) = named_ref(msg).and_then(|r| self.orders.find(r)) {
            let level = self.orders.at(i).level;
            self.levels.prefetch(level);
            self.orders.prefetch_shift(i);
            return level;
        }
        if let Some((side, price)) = self.add_target(msg) {
            side.prefetch_entry(price);
        }
        NIL
    }

    /// Stage 3: for an add, the level it joins when the ladder holds it; for the last order of
    /// a level, the line its level's removal will clear.
    /// `level` is what stage 2 found; messages in between may have freed it, which only makes
    /// this hint useless (a freed slot still holds a valid book and side, and the slab never
    /// shrinks).
    #[inline(always)]
    fn prefetch_level(&self, msg: &[u8], level: LevelId) {
        if level == NIL {
            if let Some(l) = self
                .add_target(msg)
                .and_then(|(s, price)| s.find_in_window(price))
            {
                self.levels.prefetch(l);
            }
            return;
        }
        let lv = &self.levels[level];
        if lv.orders == 1 {
            let side = self.books[lv.book as usize].side(lv.side);
            if side.best() == Some(level) {
                side.prefetch_next_best();
            } else {
                side.prefetch_entry(lv.price);
            }
        }
    }
}

/// A window of upcoming messages, applied in order with their state prefetched.
///
/// Prefetching costs instructions and only pays when the shard's state does not fit in cache, so
/// the pipeline re-checks the size of that state every [`RECHECK`] messages and, below
/// [`PREFETCH_ABOVE`], applies messages directly (measured on m7: 0.88-0.91x with prefetching).
pub struct Pipeline<'a> {
    ring: [&'a [u8]; LOOKAHEAD],
    /// The level stage 2 found for each message in `ring` (same index), for stage 3.
    found: [LevelId; LOOKAHEAD],
    len: usize,
    seen: u64,
    enabled: bool,
}

/// Messages between checks of whether prefetching pays.
pub const RECHECK: u64 = 1 << 16;
/// Bytes of live book state above which prefetching is switched on (about one core's L2).
pub const PREFETCH_ABOVE: usize = 1 << 20;

impl Default for Pipeline<'_> {
    fn default() -> Self {
        Pipeline {
            ring: [&[]; LOOKAHEAD],
            found: [NIL; LOOKAHEAD],
            len: 0,
            seen: 0,
            enabled: false,
        }
    }
}

impl<'a> Pipeline<'a> {
    /// Whether messages are currently prefetched (false while the state fits in cache).
    pub fn prefetching(&self) -> bool {
        self.enabled
    }

    /// Index in the ring of the message `k` places behind the newest.
    #[inline(always)]
    fn back(&self, k: usize) -> usize {
        (self.len - 1 - k) & (LOOKAHEAD - 1)
    }

    /// Queues `msg` (one frame's message bytes, already framed correctly) and applies the message
    /// that falls out of the window.
    #[inline(always)]
    pub fn push<S: EventSink>(&mut self, books: &mut Books, msg: &'a [u8], sink: &mut S) {
        if self.seen & (RECHECK - 1) == 0 {
            let want = books.live_state_bytes() > PREFETCH_ABOVE;
            if want != self.enabled {
                // Drain in order before changing mode, so no message overtakes another.
                self.finish(books, sink);
                self.enabled = want;
            }
        }
        self.seen += 1;
        if !self.enabled {
            let _ = books.apply(msg, sink);
            return;
        }
        let at = self.len & (LOOKAHEAD - 1);
        if self.len >= LOOKAHEAD {
            let _ = books.apply(self.ring[at], sink);
        }
        self.ring[at] = msg;
        self.len += 1;
        books.prefetch_slot(msg);
        if self.len > LOOKAHEAD - MID {
            let k = self.back(LOOKAHEAD - MID);
            self.found[k] = books.prefetch_order(self.ring[k]);
        }
        if self.len > LOOKAHEAD - NEAR {
            let k = self.back(LOOKAHEAD - NEAR);
            books.prefetch_level(self.ring[k], self.found[k]);
        }
    }

    /// Applies what is still in the window.
    pub fn finish<S: EventSink>(&mut self, books: &mut Books, sink: &mut S) {
        let start = self.len.saturating_sub(LOOKAHEAD);
        for k in start..self.len {
            let _ = books.apply(self.ring[k & (LOOKAHEAD - 1)], sink);
        }
        self.len = 0;
    }
}

impl Books {
    /// Applies every frame of `bytes`, in order, through a [`Pipeline`]: the one replay path that
    /// the engine runs and the benchmarks measure. `on_frame(offset, message)` sees each frame as
    /// it is queued (for progress and bookkeeping). When framing fails, every frame before the
    /// failure has still been applied when the error returns.
    pub fn replay<S: EventSink>(
        &mut self,
        bytes: &[u8],
        skip_corrupt: bool,
        sink: &mut S,
        mut on_frame: impl FnMut(usize, &[u8]),
    ) -> Result<WalkStats, FrameError> {
        let mut pipe = Pipeline::default();
        let walked = walk(bytes, skip_corrupt, |off, msg| {
            pipe.push(self, msg, sink);
            on_frame(off, msg);
        });
        pipe.finish(self, sink);
        walked
    }
}
