//! The overflow of [`OrderTable`](super::order_table::OrderTable): live orders whose
//! reference the recent-reference ring no longer covers (long-lived ones, or references out of
//! order), in an open-addressing hash table keyed by reference.
//!
//! Why this hash: each reference's home slot is its Fibonacci hash (one multiply), which spreads
//! consecutive references evenly over the table. Keeping runs of four consecutive references
//! in one line was the layout until 2026-12-04: it made every run collide with the survivors
//! of older runs in its line, and the probe runs and backward shifts that followed cost more
//! than the shared line saved (`tickcore book`, 20M messages, back to back: per-reference
//! hashing v3k deep 1.06x, realistic 1.05x, m7 1.2x, when this table held every order). Pure
//! identity hashing (low bits as the slot) was tried before and fails on a real mix: the dense
//! run of recent references laps the table and collides with long-lived survivors, and probe
//! runs grew past 64 at 40% load on the v3k session. Deletion shifts entries back instead of
//! leaving tombstones, so probe runs never rot over a long day.
//!
//! A Fibonacci hash only looks at how the low bits carry into the high ones, so references that
//! differ only in their top bits (a hostile file) share a few homes. A probe run longer than
//! [`MAX_PROBE`] switches the table, once, to a hash that mixes every bit, and rehashes. Slots
//! move on removal and growth, so nothing may hold a slot index across a change to the table.
//! Never allocates except when it grows past its reserved capacity.

use super::order_table::{Order, VACANT};
use super::pages::PageArray;
use super::sweep::Sweep;

/// Probe length that makes the table switch to the hash that mixes every bit.
pub const MAX_PROBE: usize = 64;
/// Slots (16 bytes each: 1 MiB) from which the table keeps its load at or below 1/4.
const BIG_TABLE: usize = 1 << 16;
/// Fibonacci hashing multiplier (2^64 / golden ratio).
const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

/// A vacant slot reserved for a new reference by [`OrderHash::claim`].
#[derive(Debug)]
#[must_use = "a claim does nothing until it is filled"]
pub struct HashClaim {
    pub(super) slot: usize,
    probe: usize,
}

/// Live orders by reference.
pub struct OrderHash {
    slots: PageArray<Order>,
    mask: usize,
    shift: u32,
    len: usize,
    scrambled: bool,
    /// The live orders at a checkpoint's instant, being copied (every write tells it first).
    sweep: Option<Box<Sweep<Order>>>,
}

impl OrderHash {
    /// A table that holds `live` orders before it must grow (at the load its size allows).
    pub fn with_capacity(live: usize) -> Self {
        let mut cap = (live.max(8) * 2).next_power_of_two();
        if cap >= BIG_TABLE {
            cap = (live * 4).next_power_of_two();
        }
        OrderHash {
            slots: PageArray::zeroed(cap),
            mask: cap - 1,
            shift: 64 - cap.trailing_zeros(),
            len: 0,
            scrambled: false,
            sweep: None,
        }
    }

    /// Writes every slot's page now (the slots stay empty), so no lookup faults one in later.
    pub fn touch(&mut self) {
        self.slots.touch();
    }

    /// Live orders.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no order is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the table fell back to the hash that mixes every bit of a reference.
    pub fn scrambled(&self) -> bool {
        self.scrambled
    }

    /// Slots.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes the table holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.slots.mapped_bytes()
    }

    /// The table grows when more than 1/this of its slots are taken: 1/2 while it is small
    /// enough to stay in cache, 1/4 once every access is a miss anyway: at 1/2 a lookup or a
    /// removal's backward shift often reads on into the next line, a miss no prefetch named
    /// (v3k deep 0.91x at 1/2 with per-reference hashing, 0.88x with runs of four); at 1/4 that
    /// is rare.
    #[inline(always)]
    fn load_divisor(&self) -> usize {
        if self.slots.len() < BIG_TABLE {
            2
        } else {
            4
        }
    }

    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        let h = if self.scrambled { mix(key) } else { key };
        (h.wrapping_mul(FIB) >> self.shift) as usize
    }

    /// Asks the cache for the line after slot `i`'s when a removal from `i` will read into it:
    /// the backward shift scans to the first vacant slot, and when the last slot of `i`'s line
    /// is taken, that is past the line, in a line no other prefetch named.
    #[inline(always)]
    pub fn prefetch_shift(&self, i: usize) {
        if self.slots[i | 3].is_live() {
            let next = ((i | 3) + 1) & self.mask;
            crate::book::prefetch::touch(self.slots.as_ptr().wrapping_add(next));
        }
    }

    /// The slot holding `key`, if live. Valid until the table next changes.
    #[inline(always)]
    pub fn find(&self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            let s = &self.slots[i];
            if !s.is_live() {
                return None;
            }
            if s.order_ref() == key {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The live order with reference `key`.
    #[cfg(test)]
    pub fn get(&self, key: u64) -> Option<&Order> {
        self.find(key).map(|i| &self.slots[i])
    }

    /// The order in slot `i` (from [`find`](Self::find)).
    #[inline(always)]
    pub fn at(&self, i: usize) -> &Order {
        &self.slots[i]
    }

    /// Shares left of the order in slot `i` (from [`find`](Self::find)), to change in place.
    #[inline(always)]
    pub fn shares_at(&mut self, i: usize) -> &mut u32 {
        self.writing(i);
        &mut self.slots[i].shares
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
    /// live: one probe serves both the duplicate check and the insert. Grows the table first if
    /// it must, so the claim holds until the table next changes; fill it before then.
    #[inline]
    pub fn claim(&mut self, key: u64) -> Option<HashClaim> {
        if (self.len + 1) * self.load_divisor() > self.slots.len() {
            self.rebuild(self.slots.len() * 2, self.scrambled);
        }
        let mut i = self.home(key);
        let mut probe = 0;
        loop {
            let s = &self.slots[i];
            if !s.is_live() {
                return Some(HashClaim { slot: i, probe });
            }
            if s.order_ref() == key {
                return None;
            }
            i = (i + 1) & self.mask;
            probe += 1;
        }
    }

    /// Puts `o`, whose reference `c` was claimed for, in the claimed slot.
    #[inline]
    pub fn fill(&mut self, c: HashClaim, o: Order) {
        debug_assert!(o.is_live(), "a live order displays shares");
        debug_assert!(!self.slots[c.slot].is_live(), "the claim is stale");
        self.writing(c.slot);
        self.slots[c.slot] = o;
        self.len += 1;
        if c.probe > MAX_PROBE && !self.scrambled {
            self.rebuild(self.slots.len(), true);
        }
    }

    /// Removes the order in slot `i` (from [`find`](Self::find)) and returns it.
    #[inline]
    pub fn remove_at(&mut self, i: usize) -> Order {
        let gone = self.slots[i];
        debug_assert!(gone.is_live(), "removing an empty slot");
        self.len -= 1;
        // Backward-shift: pull later members of the probe run into the hole so that every entry
        // stays reachable from its home slot without tombstones.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let s = self.slots[j];
            if !s.is_live() {
                break;
            }
            let home = self.home(s.order_ref());
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.writing(hole);
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.writing(hole);
        self.slots[hole] = VACANT;
        gone
    }

    /// Removes `key`; returns the order if it was live.
    #[cfg(test)]
    pub fn remove(&mut self, key: u64) -> Option<Order> {
        self.find(key).map(|i| self.remove_at(i))
    }

    /// Every live order, in no particular order. O(capacity): for queries and checks.
    pub fn iter(&self) -> impl Iterator<Item = &Order> + '_ {
        // Empty (an orderly feed keeps every live order in the ring): no scan of its slots,
        // which a checkpoint of an n100 day spent 26% of a paced replay's samples on (1M
        // slots, 16 MiB, sized by shard_orders).
        let slots = if self.len == 0 {
            &[][..]
        } else {
            &self.slots[..]
        };
        slots.iter().filter(|s| s.is_live())
    }

    fn rebuild(&mut self, cap: usize, scrambled: bool) {
        let old = core::mem::replace(&mut self.slots, PageArray::zeroed(cap));
        self.mask = cap - 1;
        self.shift = 64 - cap.trailing_zeros();
        self.scrambled = scrambled;
        self.len = 0;
        for &s in old.iter().filter(|s| s.is_live()) {
            let mut i = self.home(s.order_ref());
            while self.slots[i].is_live() {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = s;
            self.len += 1;
        }
        if let Some(sw) = &mut self.sweep {
            sw.freeze(old);
        }
    }

    /// Slot `i` is about to be written: a checkpoint's copy reads it first if it must.
    #[inline(always)]
    fn writing(&mut self, i: usize) {
        if let Some(s) = &mut self.sweep {
            s.before_write(i, &self.slots);
        }
    }

    /// Starts copying the live orders as they are now (an empty table copies nothing: an
    /// orderly feed keeps every order in the ring, and this table is sized by shard_orders).
    pub(super) fn begin_sweep(&mut self) {
        let len = if self.len == 0 { 0 } else { self.slots.len() };
        let live = |o: &Order| o.is_live();
        self.sweep = Some(Box::new(Sweep::new(len, self.len, live)));
    }

    /// Copies up to `chunks` more chunks; true when the copy is complete.
    pub(super) fn sweep_step(&mut self, chunks: usize) -> bool {
        match &mut self.sweep {
            Some(s) => s.done() || s.step(&self.slots, chunks),
            None => true,
        }
    }

    /// Chunks a write had to copy first.
    pub(super) fn sweep_forced(&self) -> u64 {
        self.sweep.as_ref().map_or(0, |s| s.forced())
    }

    /// Whether a copy was begun and is complete.
    pub(super) fn sweep_done(&self) -> bool {
        self.sweep.as_ref().is_some_and(|s| s.done())
    }

    /// The copied orders, once complete.
    pub(super) fn finish_sweep(&mut self) -> Option<Vec<Order>> {
        if !self.sweep_done() {
            return None;
        }
        Some(self.sweep.take()?.finish())
    }
}

/// Every bit of `key` moves every bit of the result (MurmurHash3's 64-bit finaliser), so
/// references that differ only in their top bits still land far apart.
#[inline(always)]
fn mix(mut key: u64) -> u64 {
    key ^= key >> 33;
    key = key.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    key ^= key >> 33;
    key = key.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    key ^ key >> 33
}

const _: () = assert!(core::mem::size_of::<Order>() == 16);

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::book::SideKind;
    use std::collections::HashMap;

    /// What [`check_against_model`] needs of a table of orders (the hash and the table in
    /// front of it).
    pub(in crate::book) trait Table {
        fn insert(&mut self, o: Order) -> bool;
        fn remove(&mut self, key: u64) -> Option<Order>;
        fn get(&self, key: u64) -> Option<&Order>;
        fn len(&self) -> usize;
        fn live(&self) -> usize;
    }

    /// The hash and the table in front of it answer the model check the same way.
    macro_rules! table {
        ($t:ty) => {
            impl Table for $t {
                fn insert(&mut self, o: Order) -> bool {
                    <$t>::insert(self, o)
                }
                fn remove(&mut self, key: u64) -> Option<Order> {
                    <$t>::remove(self, key)
                }
                fn get(&self, key: u64) -> Option<&Order> {
                    <$t>::get(self, key)
                }
                fn len(&self) -> usize {
                    <$t>::len(self)
                }
                fn live(&self) -> usize {
                    self.iter().count()
                }
            }
        };
    }
    table!(OrderHash);
    table!(crate::book::order_table::OrderTable);

    /// An order whose fields follow from `k` and `n`.
    pub(in crate::book) fn order(k: u64, n: u32) -> Order {
        let side = [SideKind::Bid, SideKind::Ask][n as usize % 2];
        Order::new(k, n as usize % 65_536, side, n + 1, n)
    }

    /// Inserts `keys` in order into `t` and removes at random (one in three), against a
    /// `HashMap`; the seed is printed with any failure.
    pub(in crate::book) fn check_against_model<T: Table>(
        t: &mut T,
        keys: impl Iterator<Item = u64>,
        seed: u64,
    ) {
        let mut model = HashMap::new();
        let mut x = seed | 1;
        for (n, k) in keys.enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 && !model.is_empty() {
                let victim = *model.keys().nth((x as usize / 3) % model.len()).unwrap();
                assert_eq!(t.remove(victim), model.remove(&victim), "seed {seed}");
            } else {
                let fresh = !model.contains_key(&k);
                assert_eq!(t.insert(order(k, n as u32)), fresh, "seed {seed} key {k}");
                model.entry(k).or_insert(order(k, n as u32));
            }
            assert_eq!(t.len(), model.len(), "seed {seed}");
        }
        for (k, v) in &model {
            assert_eq!(t.get(*k), Some(v), "seed {seed}");
        }
        assert_eq!(t.live(), model.len(), "seed {seed}");
        assert_eq!(t.get(u64::MAX - 7), model.get(&(u64::MAX - 7)));
    }

    /// A sweep of the hash begun part way, a chunk copied every `every` changes (inserts of
    /// scattered references and removals, which shift probe runs back), copies the hash as
    /// it was at the instant; the first case grows the hash with most chunks still pending.
    #[rstest::rstest]
    #[case::grows_mid_sweep(1, 3_000, 9)]
    #[case::shifts_a_chunk_per_change(2, 1, 5)]
    fn a_sweep_copies_the_hash_as_it_was(
        #[case] seed: u64,
        #[case] every: usize,
        #[case] inserts_in_ten: u64,
    ) {
        let mut t = OrderHash::with_capacity(4);
        let mut live: Vec<u64> = Vec::new();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut change = |t: &mut OrderHash, live: &mut Vec<u64>, inserts: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 10 < inserts || live.is_empty() {
                let k = x >> 20;
                if t.insert(order(k, k as u32)) {
                    live.push(k);
                }
            } else {
                let k = live.swap_remove((x >> 8) as usize % live.len());
                assert!(t.remove(k).is_some(), "seed {seed}: {k} live");
            }
        };
        // Just below the 32k-slot table's bound (half full): it grows within a few inserts,
        // with most of its eight chunks still pending.
        while t.len() < 16_380 {
            change(&mut t, &mut live, 9);
        }
        let mut want: Vec<u64> = t.iter().map(|o| o.order_ref()).collect();
        let cap = t.capacity();
        t.begin_sweep();
        loop {
            for _ in 0..every {
                change(&mut t, &mut live, inserts_in_ten);
            }
            if t.sweep_step(1) {
                break;
            }
        }
        let mut got: Vec<u64> = t
            .finish_sweep()
            .unwrap()
            .iter()
            .map(|o| o.order_ref())
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "seed {seed}");
        if seed == 1 {
            assert!(t.capacity() > cap, "the hash grew during the sweep");
        }
    }

    #[test]
    fn sequential_references_match_a_hashmap() {
        check_against_model(&mut OrderHash::with_capacity(4), 1_000..20_000u64, 7);
    }

    #[test]
    fn strides_and_long_lived_survivors_keep_probes_short() {
        let keys = (0..5_000u64).map(|i| i << 16);
        check_against_model(&mut OrderHash::with_capacity(4), keys, 11);
        // A day's shape: increasing references, most cancels young, some at any age, about 50k
        // live. Identity hashing (low bits as the slot) failed exactly this at 40% load.
        let mut t = OrderHash::with_capacity(1 << 16);
        let mut live: Vec<u64> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for r in 0..400_000u64 {
            assert!(t.insert(order(r, r as u32)));
            live.push(r);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if live.len() > 50_000 || x % 100 < 48 {
                let n = live.len();
                let i = if x % 10 < 7 {
                    n - 1 - (x as usize >> 8) % n.min(64)
                } else {
                    (x as usize >> 8) % n
                };
                let k = live.swap_remove(i);
                assert_eq!(t.remove(k), Some(order(k, k as u32)));
            }
        }
        assert!(!t.scrambled(), "no probe run reached {MAX_PROBE}");
    }

    #[test]
    fn colliding_keys_fall_back_to_scrambling() {
        let mut t = OrderHash::with_capacity(1 << 10);
        let target = t.home(0);
        let hostile: Vec<u64> = (0..)
            .map(|k: u64| k * 4)
            .filter(|&k| t.home(k) == target)
            .take(200)
            .collect();
        for (i, &k) in hostile.iter().enumerate() {
            assert!(t.insert(order(k, i as u32)));
        }
        assert!(t.scrambled());
        for (i, &k) in hostile.iter().enumerate() {
            assert_eq!(t.get(k), Some(&order(k, i as u32)));
        }
    }

    #[test]
    fn duplicate_insert_is_refused() {
        let mut t = OrderHash::with_capacity(4);
        assert!(t.insert(order(5, 1)));
        assert!(!t.insert(order(5, 2)));
        assert_eq!(t.get(5), Some(&order(5, 1)));
        assert_eq!(t.remove(5), Some(order(5, 1)));
        assert_eq!(t.remove(5), None);
        assert!(t.is_empty());
    }
}
