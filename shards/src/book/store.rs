//! Slab storage for price levels, addressed by stable `u32` handles.
//!
//! Why a slab: handles never move, so an order and a side's sorted entries can name their level
//! by index, and every execute, cancel or delete reaches its level's aggregates with no search.
//! Freed slots go on a LIFO free list, so the next new level reuses the slot that was touched
//! last and is still in cache. Never allocates once the slab reaches the day's high-water mark.

use super::side::SideKind;

/// Handle meaning "none".
pub const NIL: u32 = u32::MAX;

/// A price level: the aggregates of the orders resting at one price on one side of one book.
/// Sixteen bytes, four to a line: deep books hold about one order per level, so the levels are
/// as large a working set as the orders, and every byte here is a byte of cache the apply path
/// misses on. Aligned so that no level straddles two lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct Level {
    /// Sum of the shares of its orders; never zero while the level exists. A `u32`, like an
    /// order's shares: an add that would take a level past `u32::MAX` shares is refused and
    /// counted (`level_full`), which no real day comes near (a whole day's volume in the
    /// busiest name is a few hundred million shares).
    pub shares: u32,
    /// Limit price, Price(4).
    pub price: u32,
    /// Number of orders resting; never zero while the level exists. Free-list link when free.
    pub orders: u32,
    /// Dense index of the level's book, shifted left one, with the side in the low bit.
    owner: u32,
}

impl Level {
    /// An empty level at `price` on side `side` of book `book`.
    #[inline(always)]
    pub fn new(book: u32, side: SideKind, price: u32) -> Self {
        debug_assert!(book < 1 << 31, "book indices fit 31 bits");
        Level {
            shares: 0,
            price,
            orders: 0,
            owner: book << 1 | side as u32,
        }
    }

    /// Dense index of the level's book.
    #[inline(always)]
    pub fn book(&self) -> u32 {
        self.owner >> 1
    }

    /// Side of the level.
    #[inline(always)]
    pub fn side(&self) -> SideKind {
        if self.owner & 1 == 0 {
            SideKind::Bid
        } else {
            SideKind::Ask
        }
    }
}

/// Something a slab can hold: it must lend one field to the free list.
pub trait Slotted: Copy {
    /// The field that links free slots.
    fn link(&mut self) -> &mut u32;
}

impl Slotted for Level {
    fn link(&mut self) -> &mut u32 {
        &mut self.orders
    }
}

/// A vector of slots with a LIFO free list.
#[derive(Debug, Clone)]
pub struct Slab<T: Slotted> {
    items: Vec<T>,
    free: u32,
    live: usize,
}

impl<T: Slotted> Slab<T> {
    /// A slab with room for `n` items before it grows.
    pub fn with_capacity(n: usize) -> Self {
        Slab {
            items: Vec::with_capacity(n),
            free: NIL,
            live: 0,
        }
    }

    /// Stores `item` and returns its handle.
    #[inline(always)]
    pub fn alloc(&mut self, item: T) -> u32 {
        self.live += 1;
        if self.free != NIL {
            let h = self.free;
            let slot = &mut self.items[h as usize];
            self.free = *slot.link();
            *slot = item;
            h
        } else {
            let h = self.items.len();
            assert!(
                h < NIL as usize,
                "slab is full: more than 4 billion live items"
            );
            self.items.push(item);
            h as u32
        }
    }

    /// Returns the slot of `h` to the free list.
    #[inline(always)]
    pub fn free(&mut self, h: u32) {
        self.live -= 1;
        *self.items[h as usize].link() = self.free;
        self.free = h;
    }

    /// Asks the cache for the slot of `h`; `NIL` or a stale handle is harmless.
    #[inline(always)]
    pub fn prefetch(&self, h: u32) {
        crate::book::prefetch::touch(self.items.as_ptr().wrapping_add(h as usize));
    }

    /// Items in use.
    pub fn live(&self) -> usize {
        self.live
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * core::mem::size_of::<T>()
    }
}

impl<T: Slotted> core::ops::Index<u32> for Slab<T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, h: u32) -> &T {
        &self.items[h as usize]
    }
}

impl<T: Slotted> core::ops::IndexMut<u32> for Slab<T> {
    #[inline(always)]
    fn index_mut(&mut self, h: u32) -> &mut T {
        &mut self.items[h as usize]
    }
}

const _: () = assert!(core::mem::size_of::<Level>() == 16);
