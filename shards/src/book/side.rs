//! One side of one book: its price levels, sorted, best last.
//!
//! Why a sorted vector with the best level at the end: almost all activity is at or near the top,
//! so creating or removing a level there moves a handful of 8-byte entries, and the top is the
//! last element, found without a search. Keys are the price for bids and the bitwise complement
//! of the price for asks, so both sides sort ascending with the best last and share one search.
//! A level's aggregates live in the level pool (stable handles), so executions, cancels and
//! deletes reach their level from the order without searching at all; only adds and level removal
//! search, first a few entries down from the top, then by a branch-free binary search.

use super::store::NIL;

/// A price level's handle in the level pool.
pub type LevelId = u32;

/// `B` or `S`, as a dense index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SideKind {
    /// Buy orders; best is the highest price.
    Bid = 0,
    /// Sell orders; best is the lowest price.
    Ask = 1,
}

impl SideKind {
    /// Parses the ITCH buy/sell indicator.
    #[inline(always)]
    pub fn from_itch(b: u8) -> Option<SideKind> {
        match b {
            b'B' => Some(SideKind::Bid),
            b'S' => Some(SideKind::Ask),
            _ => None,
        }
    }

    /// Sort key: ascending, best last.
    #[inline(always)]
    pub fn key(self, price: u32) -> u32 {
        match self {
            SideKind::Bid => price,
            SideKind::Ask => !price,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u32,
    level: LevelId,
}

/// Entries scanned linearly from the top before searching further down.
const TOP_SCAN: usize = 4;

/// Price levels of one side, sorted by key, best last.
#[derive(Debug, Clone)]
pub struct Side {
    kind: SideKind,
    /// Keys of the best and the worst level (meaningless when empty); kept beside `entries` so
    /// a search, and the prefetcher, can aim at a deep price's entry from the book's own line.
    top_key: u32,
    low_key: u32,
    /// The best level ([`NIL`] when empty), kept here so that "is this level the top?" (asked by
    /// every execute, cancel and delete) reads the book's own line instead of the entries'.
    best: LevelId,
    entries: Vec<Entry>,
}

impl Side {
    /// An empty side with room for `levels` levels.
    pub fn new(kind: SideKind, levels: usize) -> Self {
        Side {
            kind,
            top_key: 0,
            low_key: 0,
            best: NIL,
            entries: Vec::with_capacity(levels),
        }
    }

    /// Which side this is.
    pub fn kind(&self) -> SideKind {
        self.kind
    }

    /// Number of price levels.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the side holds no level.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The best level, if any.
    #[inline(always)]
    pub fn best(&self) -> Option<LevelId> {
        (self.best != NIL).then_some(self.best)
    }

    /// Asks the cache for the top few entries, where most searches end.
    #[inline(always)]
    pub(crate) fn prefetch_top(&self) {
        let n = self.entries.len();
        if n > 0 {
            crate::book::prefetch::touch(self.entries.as_ptr().wrapping_add(n - 1));
            crate::book::prefetch::touch(self.entries.as_ptr().wrapping_add(n.saturating_sub(8)));
        }
    }

    /// Asks the cache for the level that becomes the best when the best one goes.
    #[inline(always)]
    pub(crate) fn prefetch_next_best(&self, levels: &super::store::Slab<super::store::Level>) {
        let n = self.entries.len();
        if n >= 2 {
            levels.prefetch(self.entries[n - 2].level);
        }
    }

    /// Where `key` would be if the levels were spread evenly between the worst and the best
    /// (interpolation): exact for a dense book, close for an evenly spread deep one. A hint only.
    #[inline(always)]
    fn guess(&self, key: u32, n: usize) -> usize {
        let (low, top) = (self.low_key, self.top_key);
        if key <= low || top <= low {
            return 0;
        }
        let frac = (key.min(top) - low) as u64 * (n as u64 - 1) / (top - low) as u64;
        frac as usize
    }

    /// Asks the cache for the entry where a search for `price` will most likely end.
    #[inline(always)]
    pub(crate) fn prefetch_entry(&self, price: u32) {
        let n = self.entries.len();
        let key = self.kind.key(price);
        if n > TOP_SCAN && key < self.top_key {
            let at = self.guess(key, n).min(n - TOP_SCAN);
            crate::book::prefetch::touch(self.entries.as_ptr().wrapping_add(at));
        }
    }

    /// Levels from best to worst.
    pub fn levels(&self) -> impl Iterator<Item = LevelId> + '_ {
        self.entries.iter().rev().map(|e| e.level)
    }

    /// Where `price` is, or where it would go.
    #[inline(always)]
    fn search(&self, price: u32) -> Result<usize, usize> {
        let key = self.kind.key(price);
        let e = &self.entries;
        let n = e.len();
        for i in (n.saturating_sub(TOP_SCAN)..n).rev() {
            if e[i].key == key {
                return Ok(i);
            }
            if e[i].key < key {
                return Err(i + 1);
            }
        }
        let hi = n.saturating_sub(TOP_SCAN);
        if hi == 0 {
            return Err(0);
        }
        // Deep books: the interpolated guess usually lands on the level or a few entries off,
        // so gallop outwards from it (probes stay in nearby lines) before bisecting.
        let g = self.guess(key, n).min(hi - 1);
        let (lo, end) = match e[g].key.cmp(&key) {
            core::cmp::Ordering::Equal => return Ok(g),
            core::cmp::Ordering::Less => {
                let (mut lo, mut step) = (g + 1, 1);
                loop {
                    let probe = lo + step - 1;
                    if probe >= hi {
                        break (lo, hi);
                    }
                    if e[probe].key >= key {
                        break (lo, probe);
                    }
                    lo = probe + 1;
                    step *= 2;
                }
            }
            core::cmp::Ordering::Greater => {
                let (mut end, mut step) = (g, 1);
                loop {
                    if step > end {
                        break (0, end);
                    }
                    let probe = end - step;
                    if e[probe].key < key {
                        break (probe + 1, end);
                    }
                    end = probe;
                    step *= 2;
                }
            }
        };
        // The answer is the first position in lo..=end whose key is not below `key`.
        let at = lo + e[lo..end].partition_point(|x| x.key < key);
        if at < n && e[at].key == key {
            Ok(at)
        } else {
            Err(at)
        }
    }

    /// The level at `price`, or the position a new one must take.
    #[inline(always)]
    pub fn find(&self, price: u32) -> Result<LevelId, usize> {
        self.search(price).map(|i| self.entries[i].level)
    }

    /// Places a new level at the position [`Side::find`] returned.
    #[inline(always)]
    pub fn insert_at(&mut self, pos: usize, price: u32, level: LevelId) {
        let key = self.kind.key(price);
        debug_assert!(pos == 0 || self.entries[pos - 1].key < key);
        debug_assert!(pos == self.entries.len() || self.entries[pos].key > key);
        self.entries.insert(pos, Entry { key, level });
        if pos + 1 == self.entries.len() {
            self.top_key = key;
            self.best = level;
        }
        if pos == 0 {
            self.low_key = key;
        }
    }

    /// Removes the level at `price`; it must be there.
    #[inline(always)]
    pub fn remove(&mut self, price: u32) -> LevelId {
        let pos = self
            .search(price)
            .expect("level being removed is on its side");
        let level = self.entries.remove(pos).level;
        // Only the ends' keys can change, and only when an end went: reading the worst entry on
        // every removal was a cache miss per removed level on deep books.
        let n = self.entries.len();
        if n == 0 {
            self.best = NIL;
        } else if pos == n {
            let top = self.entries[n - 1];
            (self.top_key, self.best) = (top.key, top.level);
        } else if pos == 0 {
            self.low_key = self.entries[0].key;
        }
        level
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * core::mem::size_of::<Entry>()
    }

    /// True when keys strictly increase (no duplicate level, correct order).
    pub fn is_sorted(&self) -> bool {
        let top_ok = match self.entries.last() {
            Some(t) => t.key == self.top_key && t.level == self.best,
            None => self.best == NIL,
        };
        let low_ok = self.entries.first().is_none_or(|l| l.key == self.low_key);
        top_ok && low_ok && self.entries.windows(2).all(|w| w[0].key < w[1].key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Random inserts and removals on both sides, on penny, sub-penny and gappy grids: every
    /// search agrees with a sorted map, whatever the first guess.
    #[test]
    fn search_agrees_with_a_sorted_map() {
        for seed in 1..=40u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let step = [1u32, 100, 100, 250][seed as usize % 4];
            for kind in [SideKind::Bid, SideKind::Ask] {
                let mut side = Side::new(kind, 0);
                let mut model: BTreeMap<u32, LevelId> = BTreeMap::new();
                for n in 0..3_000u32 {
                    let price = 1_000_000 + step * (next() % 400) as u32;
                    let found = side.find(price);
                    let pos = model.range(..price).count();
                    match model.get(&price) {
                        Some(&l) => assert_eq!(found, Ok(l), "seed {seed}"),
                        None => {
                            // Positions run by key: ascending price for bids, descending for asks.
                            let want = if kind == SideKind::Bid {
                                pos
                            } else {
                                model.len() - pos
                            };
                            assert_eq!(found, Err(want), "seed {seed}");
                        }
                    }
                    if next() % 3 == 0 && !model.is_empty() {
                        let &p = model.keys().nth(next() as usize % model.len()).unwrap();
                        assert_eq!(side.remove(p), model.remove(&p).unwrap(), "seed {seed}");
                    } else if let Err(at) = found {
                        side.insert_at(at, price, n);
                        model.insert(price, n);
                    }
                    assert!(side.is_sorted(), "seed {seed}");
                }
            }
        }
    }
}
