//! Live orders by reference: a ring indexed by the reference's low bits for the recent ones,
//! and a hash table ([`OrderHash`]) for the rest.
//!
//! Why inline: an execute, cancel or delete names an order by reference, and everything it needs
//! (shares left, and its book, side and price, which name its level) sits in the 16-byte slot the
//! lookup lands on. A separate order pool behind an index costs a second dependent cache miss
//! per message; queue links to neighbouring orders cost two more on every removal. Both were
//! measured (v3k, 20M messages).
//!
//! Why no queue links: ITCH references are unique for the day and increase with time, and a
//! replace takes a new (larger) reference and loses its place, so a level's FIFO queue is exactly
//! its orders in reference order. [`OrderTable::iter`] plus a sort rebuilds it when asked (the L3
//! view is a query, not a hot-path need).
//!
//! Why a ring in front of the hash: references count up through the day, so the slot of
//! reference `r` in a ring of [`RING`] slots is `r mod RING`: consecutive adds fill consecutive
//! slots (four to a line, a stream the hardware prefetches), a lookup is a mask and one compare
//! (no hash, no probe), and a removal writes one slot (no backward shift). An order is moved to
//! the hash when the ring laps it still live, unless the ring is more than an eighth full: then
//! the ring doubles instead, up to [`RING`] slots (64 MiB), in place: its largest size is
//! reserved as untouched pages, and a doubling moves each live order whose reference has the
//! new bit set up by the old size, so only the new half's pages are ever faulted in, once (a
//! doubling into a fresh array faulted in every size on the way, 128 MiB on the uniform
//! shape, and zeroing them was 11% of a v3k uniform `tickcore book` on this VM, 2026-12-06).
//! So the ring grows with the live orders it holds (from [`RING_START`] slots), and keeps the
//! hash for the survivors of a day whose cancels mostly hit young orders; on the peers' uniform shape (the harshest: cancels hit
//! any live order) it ends at 4M slots and laps nothing in a 20M-message session. CppTrader
//! indexes a 9.4 GB array by reference for the same effect. A reference that arrives out of
//! order, below the ring's occupant of its slot, goes to the hash directly, and duplicates are
//! found in either.
//!
//! Slots move on removal and growth of the hash, so nothing may hold a slot index across a
//! change to the table. Never allocates except when the hash grows past its reserved capacity.
//!
//! A checkpoint copies the live orders while the table goes on changing ([`OrderTable::begin_sweep`]):
//! every write to a slot, in the ring or the hash, first tells the [`Sweep`], which costs one
//! untaken branch per write when no checkpoint is being taken.

use super::order_hash::{HashClaim, OrderHash};
use super::pages::PageArray;
use super::side::SideKind;
use super::sweep::Sweep;

pub use super::order_hash::MAX_PROBE;

/// Most slots of the recent-reference ring (16 bytes each: 64 MiB). A power of two.
pub const RING: usize = 1 << 22;
/// Slots of the ring to start with (64 KiB): a small day's ring stays in cache.
pub const RING_START: usize = 1 << 12;

/// Bits of a reference a live order keeps. Real references count up from 1 through the day and
/// stay far below this (2^47 is 140 trillion); an add whose reference does not fit is refused
/// and counted (`ref_too_large`), never truncated.
pub const REF_BITS: u32 = 47;
/// The largest reference a live order can have.
pub const MAX_REF: u64 = (1 << REF_BITS) - 1;

/// A live order: 16 bytes, four per cache line. Its level is named by its book, side and
/// price, so a message that names the order finds everything it needs in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Order {
    /// The reference in the low [`REF_BITS`] bits, the book's dense index in the next 16 (a
    /// book per stock locate: at most 65,536), the side in the top bit.
    tag: u64,
    /// Shares still displayed; never zero while live, zero in an empty slot.
    pub shares: u32,
    /// Limit price, Price(4).
    pub price: u32,
}

impl Order {
    /// A live order. `order_ref` must fit [`REF_BITS`] bits and `book` 16; `shares` is not zero.
    #[inline(always)]
    pub fn new(order_ref: u64, book: usize, side: SideKind, shares: u32, price: u32) -> Self {
        debug_assert!(order_ref <= MAX_REF, "the caller refuses wide references");
        debug_assert!(book < 1 << 16, "a book per stock locate");
        debug_assert!(shares > 0, "a live order displays shares");
        Order {
            tag: order_ref | (book as u64) << REF_BITS | (side as u64) << 63,
            shares,
            price,
        }
    }

    /// Day-unique reference.
    #[inline(always)]
    pub fn order_ref(&self) -> u64 {
        self.tag & MAX_REF
    }

    /// Dense index of the order's book.
    #[inline(always)]
    pub fn book(&self) -> usize {
        (self.tag >> REF_BITS) as usize & 0xFFFF
    }

    /// Side the order rests on.
    #[inline(always)]
    pub fn side(&self) -> SideKind {
        match self.tag >> 63 {
            0 => SideKind::Bid,
            _ => SideKind::Ask,
        }
    }

    #[inline(always)]
    pub(super) fn is_live(&self) -> bool {
        self.shares != 0
    }
}

// SAFETY: integers only; the all-zero order is `VACANT`, an empty slot.
unsafe impl super::pages::Zeroed for Order {}

pub(super) const VACANT: Order = Order {
    tag: 0,
    shares: 0,
    price: 0,
};

/// `n` rounded up to a ring size: a power of two from [`RING_START`] to [`RING`].
fn ring_slots(n: usize) -> usize {
    n.next_power_of_two().clamp(RING_START, RING)
}

/// A vacant slot reserved for a new reference by [`OrderTable::claim`].
#[derive(Debug)]
#[must_use = "a claim does nothing until it is filled"]
pub enum Claim {
    /// Slot of the ring.
    Ring(usize),
    /// Slot of the hash.
    Hash(HashClaim),
}

/// Live orders by reference. A slot index below [`RING`] is a ring slot; from [`RING`] on, a
/// slot of the hash.
pub struct OrderTable {
    /// [`RING`] slots reserved; the first `mask + 1` are the ring.
    ring: PageArray<Order>,
    /// The ring's size less one; a power of two less one.
    mask: usize,
    older: OrderHash,
    /// Live orders in the ring.
    in_ring: usize,
    /// The largest reference ever claimed: a larger one cannot be live yet, so its add skips
    /// the duplicate check.
    max_ref: u64,
    /// The ring's live orders at a checkpoint's instant, being copied.
    sweep: Option<Box<Sweep<Order>>>,
}

impl OrderTable {
    /// A table whose hash holds `older` orders before it must grow.
    pub fn with_capacity(older: usize) -> Self {
        Self::with_ring(older, RING_START)
    }

    /// As [`with_capacity`](Self::with_capacity), with a ring of `slots` from the start
    /// (rounded to a power of two between [`RING_START`] and [`RING`]).
    pub fn with_ring(older: usize, slots: usize) -> Self {
        let slots = ring_slots(slots);
        OrderTable {
            ring: PageArray::zeroed(RING),
            mask: slots - 1,
            older: OrderHash::with_capacity(older),
            in_ring: 0,
            max_ref: 0,
            sweep: None,
        }
    }

    /// The most the ring grows to while at most `live` orders are live: it doubles only while
    /// more than an eighth full. A ring this size from the start never grows mid-feed.
    pub fn ring_for(live: usize) -> usize {
        ring_slots(live.saturating_mul(8))
    }

    /// Writes every slot's page now (the slots stay empty), so no lookup faults one in later.
    pub fn touch(&mut self) {
        self.ring.touch_first(self.slots());
        self.older.touch();
    }

    /// Makes resident now the ring's pages up to the size it grows to while at most `live`
    /// orders are live ([`ring_for`](Self::ring_for)), without growing it: a small day keeps
    /// its small ring in cache, and a doubling later faults nothing in.
    pub fn touch_ring_for(&mut self, live: usize) {
        self.ring.touch_first(Self::ring_for(live));
    }

    /// Slots of the ring.
    #[inline(always)]
    fn slots(&self) -> usize {
        self.mask + 1
    }

    /// The ring in use (the reservation beyond it is vacant).
    fn ring_in_use(&self) -> &[Order] {
        &self.ring[..self.slots()]
    }

    /// Live orders.
    pub fn len(&self) -> usize {
        self.in_ring + self.older.len()
    }

    /// True when no order is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live orders the ring lapped, or that came out of order, kept in the hash.
    pub fn older(&self) -> usize {
        self.older.len()
    }

    /// Whether the hash fell back to the hash that mixes every bit of a reference.
    pub fn scrambled(&self) -> bool {
        self.older.scrambled()
    }

    /// Bytes the table holds, mapped.
    pub fn heap_bytes(&self) -> usize {
        self.slots() * core::mem::size_of::<Order>() + self.older.heap_bytes()
    }

    /// Bytes of the table a day touches at random: live orders, a line's share each (the ring
    /// between them is only streamed through by adds), and the hash.
    pub fn live_bytes(&self) -> usize {
        self.in_ring * 64 + self.older.len() * 2 * core::mem::size_of::<Order>()
    }

    /// Asks the cache for `key`'s ring slot; changes nothing.
    #[inline(always)]
    pub fn prefetch(&self, key: u64) {
        crate::book::prefetch::touch(self.ring.as_ptr().wrapping_add(key as usize & self.mask));
    }

    /// Asks the cache for where `key` is most likely: its ring slot.
    #[inline(always)]
    pub fn prefetch_pair(&self, key: u64) {
        self.prefetch(key);
    }

    /// Asks the cache for the line a removal from slot `i` reads beyond its own: only the
    /// hash's backward shift does.
    #[inline(always)]
    pub fn prefetch_shift(&self, i: usize) {
        if i >= RING {
            self.older.prefetch_shift(i - RING);
        }
    }

    /// The slot holding `key`, if live. Valid until the table next changes.
    #[inline(always)]
    pub fn find(&self, key: u64) -> Option<usize> {
        let j = key as usize & self.mask;
        let s = &self.ring[j];
        if s.is_live() && s.order_ref() == key {
            return Some(j);
        }
        if self.older.is_empty() {
            return None;
        }
        self.find_older(key)
    }

    /// [`find`](Self::find) in the hash: out of line, so that the ring's path stays a few
    /// instructions wherever it is inlined.
    #[inline(never)]
    fn find_older(&self, key: u64) -> Option<usize> {
        self.older.find(key).map(|h| RING + h)
    }

    /// The live order with reference `key`.
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<&Order> {
        self.find(key).map(|i| self.at(i))
    }

    /// The order in slot `i` (from [`find`](Self::find)).
    #[inline(always)]
    pub fn at(&self, i: usize) -> &Order {
        match i < RING {
            true => &self.ring[i],
            false => self.older.at(i - RING),
        }
    }

    /// Shares left of the order in slot `i` (from [`find`](Self::find)), to change in place.
    #[inline(always)]
    pub fn shares_at(&mut self, i: usize) -> &mut u32 {
        match i < RING {
            true => {
                self.writing(i);
                &mut self.ring[i].shares
            }
            false => self.older.shares_at(i - RING),
        }
    }

    /// Inserts `o`; returns false (and changes nothing) if its reference is already live.
    #[inline]
    pub fn insert(&mut self, o: Order) -> bool {
        match self.claim(o.order_ref()) {
            Some(c) => {
                self.fill(c, o);
                true
            }
            None => false,
        }
    }

    /// The slot a new order with reference `key` would take, or `None` when `key` is already
    /// live. May move the ring's occupant of `key`'s slot (an older reference) to the hash, so
    /// the claim holds until the table next changes; fill it before then.
    #[inline(always)]
    pub fn claim(&mut self, key: u64) -> Option<Claim> {
        if key <= self.max_ref {
            return self.claim_out_of_order(key);
        }
        // Nothing this large was ever added: no duplicate, and any occupant is older.
        self.max_ref = key;
        loop {
            let j = key as usize & self.mask;
            if !self.ring[j].is_live() {
                return Some(Claim::Ring(j));
            }
            self.lapped(j);
        }
    }

    /// [`claim`](Self::claim) for a reference not above every one seen: it may be live already,
    /// and the ring's occupant of its slot may be newer than it.
    #[inline(never)]
    fn claim_out_of_order(&mut self, key: u64) -> Option<Claim> {
        if self.find(key).is_some() {
            return None;
        }
        let j = key as usize & self.mask;
        let s = self.ring[j];
        if !s.is_live() {
            return Some(Claim::Ring(j));
        }
        if s.order_ref() < key {
            self.migrate(j);
            return Some(Claim::Ring(j));
        }
        self.older.claim(key).map(Claim::Hash)
    }

    /// A newer reference needs the slot of the ring's live occupant `j`: the ring doubles
    /// while it is more than an eighth full (the slot may still be taken after), else the
    /// occupant moves to the hash.
    #[cold]
    fn lapped(&mut self, j: usize) {
        if self.slots() < RING && self.in_ring * 8 > self.slots() {
            self.grow_ring();
        } else {
            self.migrate(j);
        }
    }

    /// Doubles the ring in place: a live order whose reference has the new bit set moves up
    /// by the old size, into the new half (vacant: the ring never shrinks); the rest stay.
    /// A checkpoint's copy reads a slot's chunk before its order moves out.
    fn grow_ring(&mut self) {
        let old = self.slots();
        debug_assert!(old < RING, "the ring grows up to its reservation");
        self.mask = 2 * old - 1;
        for j in 0..old {
            let o = self.ring[j];
            if o.is_live() && o.order_ref() as usize & old != 0 {
                debug_assert!(!self.ring[j + old].is_live(), "the new half is vacant");
                self.writing(j);
                self.ring[j + old] = o;
                self.ring[j] = VACANT;
            }
        }
    }

    /// Moves the ring's live occupant of slot `j` to the hash.
    fn migrate(&mut self, j: usize) {
        self.writing(j);
        let o = core::mem::replace(&mut self.ring[j], VACANT);
        self.in_ring -= 1;
        let moved = self.older.insert(o);
        debug_assert!(
            moved,
            "a reference is live in the ring or the hash, not both"
        );
    }

    /// Puts `o`, whose reference `c` was claimed for, in the claimed slot.
    #[inline(always)]
    pub fn fill(&mut self, c: Claim, o: Order) {
        debug_assert!(o.is_live(), "a live order displays shares");
        match c {
            Claim::Ring(j) => {
                debug_assert!(!self.ring[j].is_live(), "the claim is stale");
                self.writing(j);
                self.ring[j] = o;
                self.in_ring += 1;
            }
            Claim::Hash(h) => self.fill_older(h, o),
        }
    }

    #[inline(never)]
    fn fill_older(&mut self, c: HashClaim, o: Order) {
        self.older.fill(c, o)
    }

    /// Removes the order in slot `i` (from [`find`](Self::find)) and returns it.
    #[inline(always)]
    pub fn remove_at(&mut self, i: usize) -> Order {
        if i >= RING {
            return self.remove_older(i - RING);
        }
        self.writing(i);
        let gone = core::mem::replace(&mut self.ring[i], VACANT);
        debug_assert!(gone.is_live(), "removing an empty slot");
        self.in_ring -= 1;
        gone
    }

    #[inline(never)]
    fn remove_older(&mut self, i: usize) -> Order {
        self.older.remove_at(i)
    }

    /// Removes `key`; returns the order if it was live.
    pub fn remove(&mut self, key: u64) -> Option<Order> {
        self.find(key).map(|i| self.remove_at(i))
    }

    /// Ring slot `i` is about to be written: a checkpoint's copy reads it first if it must.
    #[inline(always)]
    fn writing(&mut self, i: usize) {
        if let Some(s) = &mut self.sweep {
            s.before_write(i, &self.ring[..=self.mask]);
        }
    }

    /// Starts copying the live orders as they are now, while the table goes on changing.
    pub fn begin_sweep(&mut self) {
        debug_assert!(self.sweep.is_none(), "one checkpoint at a time");
        let live = |o: &Order| o.is_live();
        self.sweep = Some(Box::new(Sweep::new(self.slots(), self.in_ring, live)));
        self.older.begin_sweep();
    }

    /// Copies up to `chunks` more chunks of slots; true when the copy is complete.
    pub fn sweep_step(&mut self, chunks: usize) -> bool {
        let Some(s) = &mut self.sweep else {
            return true;
        };
        let ring_done = s.done() || s.step(&self.ring[..=self.mask], chunks);
        ring_done && self.older.sweep_step(chunks)
    }

    /// Chunks a write had to copy first (each delayed its message by one chunk's read).
    pub fn sweep_forced(&self) -> u64 {
        self.sweep.as_ref().map_or(0, |s| s.forced()) + self.older.sweep_forced()
    }

    /// The live orders at the instant [`begin_sweep`](Self::begin_sweep) was called, in no
    /// particular order; `None` until [`sweep_step`](Self::sweep_step) said complete.
    pub fn finish_sweep(&mut self) -> Option<Vec<Order>> {
        // Both copies complete before either is taken: a half-taken sweep would lose its orders.
        if !self.sweep.as_ref().is_some_and(|s| s.done()) || !self.older.sweep_done() {
            return None;
        }
        let mut all = self.sweep.take()?.finish();
        all.extend(self.older.finish_sweep()?);
        Some(all)
    }

    /// Every live order, in no particular order. O(capacity): for queries and checks.
    pub fn iter(&self) -> impl Iterator<Item = &Order> + '_ {
        self.ring_in_use()
            .iter()
            .filter(|s| s.is_live())
            .chain(self.older.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::super::order_hash::tests::{check_against_model, order};
    use super::*;

    fn checked(keys: impl Iterator<Item = u64>, seed: u64) -> OrderTable {
        let mut t = OrderTable::with_capacity(4);
        check_against_model(&mut t, keys, seed);
        t
    }

    #[test]
    fn sequential_references_stay_in_the_ring() {
        let t = checked(1_000..20_000u64, 7);
        assert_eq!(t.older(), 0);
        assert!(t.slots() < 1 << 16, "{} slots for ~6k live", t.slots());
    }

    #[test]
    fn a_ring_sized_for_its_live_orders_never_grows() {
        // The engine sizes its ring for its shard's live orders before the clock starts: a
        // doubling mid-feed faults fresh pages in on the hot path.
        let live = 20_000;
        let mut t = OrderTable::with_ring(live, OrderTable::ring_for(live));
        let slots = t.slots();
        for k in 1..=live as u64 {
            assert!(t.insert(order(k, 1)));
        }
        assert_eq!(t.slots(), slots, "the ring grew");
        assert_eq!(t.older(), 0, "nothing was lapped");
        // The same orders in a ring left to grow from the smallest size: it doubles, never
        // past the size given from the start.
        let mut small = OrderTable::with_capacity(live);
        for k in 1..=live as u64 {
            assert!(small.insert(order(k, 1)));
        }
        assert!(small.slots() > RING_START, "it grew");
        assert!(small.slots() <= slots, "ring_for bounds the growth");
    }

    #[test]
    fn the_ring_doubles_in_place() {
        // Every order stays found, in its reference's slot of the larger ring, and the ring
        // is where it was: a doubling faults in only the new half's pages.
        let mut t = OrderTable::with_capacity(4);
        let at = t.ring.as_ptr();
        let live = 3 * RING_START as u64;
        for k in 1..=live {
            assert!(t.insert(order(k * 3, 1)));
        }
        assert!(t.slots() > RING_START, "it doubled");
        assert_eq!(t.ring.as_ptr(), at, "the ring moved");
        assert_eq!(t.older(), 0);
        for k in 1..=live {
            assert_eq!(
                t.find(k * 3),
                Some((k * 3) as usize & t.mask),
                "reference {}",
                k * 3
            );
        }
    }

    #[test]
    fn a_sparse_ring_hands_survivors_to_the_hash() {
        // 100 live orders that never leave, then a long run of short-lived ones: the ring
        // stays small and the survivors move to the hash when it laps them.
        let mut t = OrderTable::with_capacity(4);
        for k in 0..100 {
            assert!(t.insert(order(k, 1)));
        }
        for k in 100..200_000u64 {
            assert!(t.insert(order(k, 1)));
            if k > 100 {
                assert!(t.remove(k - 1).is_some());
            }
        }
        assert_eq!(t.slots(), RING_START);
        assert_eq!(t.older(), 100);
        assert!((0..100).all(|k| t.get(k).is_some()));
    }

    #[test]
    fn lapped_survivors_move_to_the_hash_and_stay_found() {
        // Every reference a multiple of RING/4 apart: each add laps the one four before it.
        let t = checked((0..2_000u64).map(|i| i * (RING as u64 / 4)), 11);
        assert!(t.older() > 0, "survivors were lapped");
    }

    #[test]
    fn out_of_order_and_repeated_references_match_a_hashmap() {
        // Descending, repeated and lapping references together.
        let keys = (0..6_000u64).map(|i| match i % 4 {
            0 => 50_000 - i,
            1 => i % 97,
            2 => i * RING as u64 + 3,
            _ => i + RING as u64,
        });
        checked(keys, 5);
    }

    /// Changes to a table and the live references it should hold, drawn from a seed.
    struct Day {
        t: OrderTable,
        live: Vec<u64>,
        x: u64,
        next: u64,
        n: u32,
    }

    impl Day {
        fn new(seed: u64) -> Day {
            Day {
                t: OrderTable::with_capacity(4),
                live: Vec::new(),
                x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
                next: 1,
                n: 0,
            }
        }

        /// One change: in `mix`'s proportions (out of 16) an add of a new reference, an add
        /// below the newest (out of order), a removal of a young order, of any order, or a
        /// partial execution.
        fn change(&mut self, mix: [u64; 5]) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let x = self.x;
            let (r, pick) = (x % 16, (x >> 8) as usize);
            let mut at = 0;
            let kind = mix.iter().position(|&w| {
                at += w;
                r < at
            });
            self.n += 1;
            let len = self.live.len();
            match kind {
                Some(0) => {
                    self.next += 1 + (x >> 40) % 3;
                    self.add(self.next);
                }
                Some(1) => self.add(1 + (x >> 20) % self.next),
                Some(2) if len > 0 => self.remove(len - 1 - pick % len.min(64)),
                Some(3) if len > 0 => self.remove(pick % len),
                Some(4) if len > 0 => {
                    let i = self.t.find(self.live[pick % len]).expect("live");
                    let s = self.t.shares_at(i);
                    *s = (*s / 2).max(1);
                }
                _ => {}
            }
        }

        fn add(&mut self, k: u64) {
            if self.t.insert(order(k, self.n)) {
                self.live.push(k);
            }
        }

        fn remove(&mut self, i: usize) {
            let k = self.live.swap_remove(i);
            assert!(self.t.remove(k).is_some(), "{k} was live");
        }
    }

    /// Adds only: after a [`DAY`] the ring is sparse and has lapped (references ~120k in 16k
    /// slots), so adds move survivors to the hash, then fill it past an eighth and it doubles
    /// with chunks still pending, moving orders to other slots.
    const ADDS: [u64; 5] = [16, 0, 0, 0, 0];
    /// A day whose cancels hit young orders: survivors are lapped into the hash.
    const DAY: [u64; 5] = [6, 1, 6, 0, 3];

    /// Live orders, sorted by reference, as plain tuples.
    fn sorted(mut v: Vec<Order>) -> Vec<(u64, u32, u32)> {
        v.sort_unstable_by_key(|o| o.order_ref());
        v.iter()
            .map(|o| (o.order_ref(), o.shares, o.price))
            .collect()
    }

    /// A sweep begun part way through a day, a chunk copied every `every` changes drawn from
    /// `during`, copies the table as it was at the instant; each case names the path it
    /// drives, and checks that it did.
    #[rstest::rstest]
    #[case::ring_doubles(1, DAY, 4_000, ADDS)]
    #[case::hash_grows(2, DAY, 20_000, [7, 1, 7, 0, 1])]
    #[case::removals_shift_the_hash(3, DAY, 1, [4, 2, 4, 4, 2])]
    #[case::a_chunk_every_hundred(4, DAY, 100, [6, 2, 3, 2, 3])]
    fn a_sweep_copies_the_table_as_it_was(
        #[case] seed: u64,
        #[case] before: [u64; 5],
        #[case] every: usize,
        #[case] during: [u64; 5],
    ) {
        let mut d = Day::new(seed);
        for _ in 0..60_000 {
            d.change(before);
        }
        let want = sorted(d.t.iter().copied().collect());
        let (ring, hash) = (d.t.slots(), d.t.older.capacity());
        d.t.begin_sweep();
        loop {
            for _ in 0..every {
                d.change(during);
            }
            if d.t.sweep_step(1) {
                break;
            }
        }
        let got = sorted(d.t.finish_sweep().expect("complete"));
        assert_eq!(got.len(), want.len(), "seed {seed}: orders copied");
        assert_eq!(got, want, "seed {seed}");
        match seed {
            1 => assert!(d.t.slots() > ring, "the ring doubled during the sweep"),
            2 => assert!(
                d.t.older.capacity() > hash,
                "the hash grew during the sweep"
            ),
            _ => {}
        }
    }

    #[test]
    fn a_survivor_lapped_into_the_hash_mid_sweep_is_copied_from_the_ring() {
        // The ring's one chunk is pending when the add of 5 + RING_START laps 5: the move to
        // the hash is the first write to the chunk.
        let mut t = OrderTable::with_capacity(4);
        assert!(t.insert(order(5, 1)));
        t.begin_sweep();
        assert!(t.insert(order(5 + RING_START as u64, 2)));
        assert_eq!(t.older(), 1, "5 moved to the hash");
        assert!(t.sweep_step(usize::MAX));
        assert_eq!(t.finish_sweep(), Some(vec![order(5, 1)]));
    }

    #[test]
    fn duplicate_insert_is_refused() {
        let mut t = OrderTable::with_capacity(4);
        assert!(t.insert(order(5, 1)));
        assert!(!t.insert(order(5, 2)));
        assert_eq!(t.get(5), Some(&order(5, 1)));
        // A lapped order is still found, and still a duplicate.
        assert!(t.insert(order(5 + RING as u64, 3)));
        assert!(!t.insert(order(5, 4)));
        assert_eq!(t.get(5), Some(&order(5, 1)));
        assert_eq!(t.remove(5), Some(order(5, 1)));
        assert_eq!(t.remove(5), None);
        assert_eq!(t.remove(5 + RING as u64), Some(order(5 + RING as u64, 3)));
        assert!(t.is_empty());
    }
}
