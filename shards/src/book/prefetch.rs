//! Software prefetching across a window of upcoming messages.
//!
//! Why: with thousands of instruments, each message lands on state (index slot, order, level,
//! book) that an unrelated message last touched long ago, so applying messages one by one waits
//! on a chain of cache misses per message. The misses of different messages are independent, so
//! [`Pipeline`] looks ahead: it asks for the index slots of the message `LOOKAHEAD` frames ahead,
//! for the orders and books of the one half as far ahead (by then their slots have arrived), and
//! applies messages strictly in order. Prefetches are hints only: results never depend on them.

use super::{Books, SideKind, NIL};
use crate::events::EventSink;
use crate::itch::field::Field;

/// Frames between the first prefetch of a message and its apply (a power of two).
pub const LOOKAHEAD: usize = 16;
const MID: usize = LOOKAHEAD / 2;

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

impl Books {
    /// First stage: the index slot of the order `msg` names, and its book's first two lines.
    #[inline(always)]
    fn prefetch_near(&self, msg: &[u8]) {
        if let Some(r) = named_ref(msg) {
            self.index.prefetch(r);
        }
        if msg.len() >= 3 {
            let b = self.by_locate[u16::get(msg, 1) as usize];
            if b != NIL {
                let p = self.books.as_ptr().wrapping_add(b as usize);
                touch(p);
                touch((p as *const u8).wrapping_add(64));
            }
        }
    }

    /// Second stage: for an add, the top of its side; for an order message, the order, its
    /// level, its queue neighbours and the top of its side.
    #[inline(always)]
    fn prefetch_far(&self, msg: &[u8]) {
        let b = self.by_locate[u16::get(msg, 1) as usize];
        match named_ref(msg).and_then(|r| self.index.get(r)) {
            Some(oid) => {
                let o = &self.orders[oid];
                touch(&self.levels[o.level]);
                if o.prev != NIL {
                    touch(&self.orders[o.prev]);
                }
                if o.next != NIL {
                    touch(&self.orders[o.next]);
                }
                self.books[o.book as usize].side(o.side).prefetch_top();
            }
            None if (msg[0] == b'A' || msg[0] == b'F') && b != NIL => {
                let book = &self.books[b as usize];
                let side = book.side(if msg[19] == b'B' {
                    SideKind::Bid
                } else {
                    SideKind::Ask
                });
                side.prefetch_top();
                if let Some(l) = side.best() {
                    touch(&self.levels[l]);
                }
            }
            None => {}
        }
    }
}

/// A window of upcoming messages, applied in order with their state prefetched.
pub struct Pipeline<'a> {
    ring: [&'a [u8]; LOOKAHEAD],
    len: usize,
}

impl Default for Pipeline<'_> {
    fn default() -> Self {
        Pipeline {
            ring: [&[]; LOOKAHEAD],
            len: 0,
        }
    }
}

impl<'a> Pipeline<'a> {
    /// Queues `msg` (one frame's message bytes, already framed correctly) and applies the message
    /// that falls out of the window.
    #[inline(always)]
    pub fn push<S: EventSink>(&mut self, books: &mut Books, msg: &'a [u8], sink: &mut S) {
        let at = self.len & (LOOKAHEAD - 1);
        if self.len >= LOOKAHEAD {
            let _ = books.apply(self.ring[at], sink);
        }
        self.ring[at] = msg;
        self.len += 1;
        books.prefetch_near(msg);
        if self.len > MID {
            books.prefetch_far(self.ring[(self.len - 1 - MID) & (LOOKAHEAD - 1)]);
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
