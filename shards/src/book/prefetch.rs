//! Software prefetching across a window of upcoming messages.
//!
//! Why: with thousands of instruments, each message lands on state (index slot, order, level,
//! book, side) that an unrelated message last touched long ago, so applying messages one by one
//! waits on a chain of dependent cache misses per message. The misses of different messages are
//! independent, so [`Pipeline`] overlaps them. It runs three stages over a window of frames, and
//! each stage only reads what the stage before it asked the cache for:
//!
//! 1. `LOOKAHEAD` frames ahead: decodes the frame once into a plan (what the later stages
//!    act on: the named reference, or an add's book, side and price), and asks for the
//!    order-table slot of the reference the message names and its book's first line (both
//!    sides' heads and the identity; the statistics line too for the types that print a trade);
//! 2. `MID` frames ahead: reads the slot (now cached) and, from the book, side and price the
//!    order keeps, asks for its level's cell in the side's ladder (or, below the ladder, the
//!    sorted entries a search will read), and for the table's next line when the order's line is
//!    full (a removal's backward shift reads on into it); for an add, reads the book and asks for
//!    its price's cell; and the book's published top when the message will change it (the named
//!    order is at the best, or the add at or above it);
//! 3. `NEAR` frames ahead: for an order that is the last at the best level (its removal changes
//!    the top), the second best level's cell when the side knows it, else the line of cells below
//!    the best (where the search for the new top starts).
//!
//! A level's aggregates live in its ladder cell, so the line stage 2 asks for is the level
//! itself: an add or a removal reads no other line of its side. Before, the ladder slot held a
//! handle to a level in a slab, and stage 3 had to read the slot to ask for the level.
//!
//! Why so few lines: with thousands of books the state lives in L3 or beyond, and the core can
//! only keep a couple of dozen misses in flight. Prefetching lines a message will not read
//! (both sides' tops, both best levels, for every message) filled those slots and stalled the
//! prefetches that mattered; see the README for what trimming them bought.
//!
//! Messages are applied strictly in order. Prefetches are hints only: results never depend on them.

use super::prefetch_policy::PREFETCH_ABOVE;
use super::{Books, SideKind, NIL};
use crate::events::EventSink;
use crate::itch::field::Field;
use crate::itch::{walk, FrameError, WalkStats};

/// Frames between the first prefetch of a message and its apply (a power of two).
pub const LOOKAHEAD: usize = 16;
/// Stage 2 sits halfway: it reads the slot and the book line stage 1 asked for, and the cell
/// it asks for is the last line most messages need. 8, not 10, once levels moved into the
/// ladder: perf put the waits on stage 2's reads of the book, and the cell has as long again
/// to arrive (v3k deep 1.035x, realistic 1.027x, back to back; 7 gave 1.01x and 0.98x more).
const MID: usize = 8;
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

/// What stage 1 learned of a frame, so that stages 2 and 3 neither dispatch on its type nor
/// look its book up again (callgrind: each stage re-decoding the frame cost about as many
/// instructions as the prefetches themselves).
#[derive(Clone, Copy)]
struct Plan {
    /// The reference of the order the message acts on (`Act::Named`).
    order_ref: u64,
    /// An add's price, or the price of the order stage 2 found.
    price: u32,
    /// An add's book index, or the book of the order stage 2 found; a book created after
    /// stage 1 is not prefetched.
    book: u32,
    act: Act,
}

/// What stages 2 and 3 do for a frame.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Nothing: no order and no price level.
    Other,
    /// E, C, X, D, U: look the order up, then its level.
    Named,
    /// A named order stage 2 found, resting on this side of `book` at `price`.
    Found(SideKind),
    /// A, F on an existing book: the side's ladder cell for the price.
    Add(SideKind),
}

const NO_PLAN: Plan = Plan {
    order_ref: 0,
    price: 0,
    book: NIL,
    act: Act::Other,
};

impl Books {
    /// Stage 1: decodes what the later stages need, and asks for the index slots the message
    /// will read or write and the book's lines for sides and statistics.
    #[inline(always)]
    fn plan(&self, msg: &[u8]) -> Plan {
        let b = self.by_locate[u16::get(msg, 1) as usize];
        let mut plan = NO_PLAN;
        match msg[0] {
            b'A' | b'F' if msg.len() >= 36 => {
                self.orders.prefetch(u64::get(msg, 11));
                if let (Some(kind), true) = (SideKind::from_itch(msg[19]), b != NIL) {
                    plan.act = Act::Add(kind);
                    plan.book = b;
                    plan.price = u32::get(msg, 32);
                }
            }
            b'D' | b'E' | b'C' | b'X' if msg.len() >= 19 => {
                plan.order_ref = u64::get(msg, 11);
                plan.act = Act::Named;
                self.orders.prefetch_pair(plan.order_ref);
            }
            b'U' if msg.len() >= 27 => {
                plan.order_ref = u64::get(msg, 11);
                plan.act = Act::Named;
                self.orders.prefetch_pair(plan.order_ref);
                self.orders.prefetch(u64::get(msg, 19));
            }
            _ => {}
        }
        if b != NIL {
            let p = self.books.as_ptr().wrapping_add(b as usize) as *const u8;
            touch(p);
            if matches!(msg[0], b'E' | b'C' | b'P' | b'Q') {
                touch(p.wrapping_add(128));
            }
        }
        plan
    }

    /// Asks for book `b`'s published top, which a message that changes the top reads.
    #[inline(always)]
    fn prefetch_top(&self, b: usize) {
        touch((self.books.as_ptr().wrapping_add(b) as *const u8).wrapping_add(64));
    }

    /// Stage 2: the level's cell of the named order (from its slot, whose book, side and price
    /// are kept in the plan for stage 3), or of an add's price.
    #[inline(always)]
    fn prefetch_order(&self, plan: &mut Plan) {
        match plan.act {
            Act::Named => {
                if let Some(i) = self.orders.find(plan.order_ref) {
                    let o = self.orders.at(i);
                    let side = self.side(o.book(), o.side());
                    side.prefetch_level(o.price);
                    if side.head.is_best(o.price) {
                        self.prefetch_top(o.book());
                    }
                    self.orders.prefetch_shift(i);
                    (plan.book, plan.price) = (o.book() as u32, o.price);
                    plan.act = Act::Found(o.side());
                }
            }
            Act::Add(kind) => {
                let side = self.side(plan.book as usize, kind);
                side.prefetch_level(plan.price);
                if side.head.tops(plan.price) {
                    self.prefetch_top(plan.book as usize);
                }
            }
            Act::Other | Act::Found(_) => {}
        }
    }

    /// Stage 3: for the last order of the best level, what the top's change will read. The
    /// order stage 2 found may have gone since, which only makes this hint useless.
    #[inline(always)]
    fn prefetch_top_change(&self, plan: &Plan) {
        if let Act::Found(kind) = plan.act {
            let side = self.side(plan.book as usize, kind);
            if side.is_lone_best(plan.price) {
                side.prefetch_best_gone();
            }
        }
    }
}

/// A window of upcoming messages, applied in order with their state prefetched.
///
/// Prefetching costs instructions and only pays when the shard's state does not fit in cache,
/// and on some machines not even then: the books' [`Chooser`](super::prefetch_policy::Chooser)
/// decides at the end of each of its windows, and the pipeline follows, applying messages
/// directly while it says no.
pub struct Pipeline<'a> {
    ring: [&'a [u8]; LOOKAHEAD],
    /// What stage 1 decoded of each message in `ring` (same index).
    plans: [Plan; LOOKAHEAD],
    len: usize,
    /// The books' current mode ([`Chooser::on`](super::prefetch_policy::Chooser::on)), held
    /// here: read through `books` on every message instead, it cost m7 1.3% (five rounds
    /// back to back), the compiler reloading it after each apply.
    enabled: bool,
}

impl Default for Pipeline<'_> {
    fn default() -> Self {
        Pipeline {
            ring: [&[]; LOOKAHEAD],
            plans: [NO_PLAN; LOOKAHEAD],
            len: 0,
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
        if books.prefetch.tick() {
            let big = books.live_state_bytes() > PREFETCH_ABOVE;
            let want = books.prefetch.decide(big);
            if want != self.enabled {
                // Drain in order before changing mode, so no message overtakes another.
                self.finish(books, sink);
                self.enabled = want;
            }
        }
        if !self.enabled {
            let _ = books.apply(msg, sink);
            return;
        }
        let at = self.len & (LOOKAHEAD - 1);
        if self.len >= LOOKAHEAD {
            let _ = books.apply(self.ring[at], sink);
        }
        self.ring[at] = msg;
        self.plans[at] = books.plan(msg);
        self.len += 1;
        if self.len > LOOKAHEAD - MID {
            let k = self.back(LOOKAHEAD - MID);
            books.prefetch_order(&mut self.plans[k]);
        }
        if self.len > LOOKAHEAD - NEAR {
            let k = self.back(LOOKAHEAD - NEAR);
            books.prefetch_top_change(&self.plans[k]);
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
        let mut pipe = Pipeline {
            enabled: self.prefetch.on(),
            ..Pipeline::default()
        };
        self.prefetch.resume();
        let walked = walk(bytes, skip_corrupt, |off, msg| {
            pipe.push(self, msg, sink);
            on_frame(off, msg);
        });
        pipe.finish(self, sink);
        self.prefetch.pause();
        walked
    }
}
