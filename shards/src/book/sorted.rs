//! Price levels in a sorted vector of keys, best (highest key) last: the part of a side that
//! lies below its ladder window ([`super::side`]).
//!
//! Why a sorted vector here: these are the levels far from the top (or every level of a side
//! whose prices fit no grid), which change rarely, so the memmove an insertion costs is rare too,
//! and a deep book's levels sit four to a line. A search scans a few entries down from the top,
//! then interpolates between the worst and best keys, gallops out from the guess and bisects.
//! Knows keys only: the owning [`Side`](super::Side) turns prices into keys.

use super::side::Cell;

/// One level: its key and its aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Price for bids, its complement for asks: ascending, best last.
    pub key: u32,
    /// The level's shares and orders.
    pub cell: Cell,
}

/// Entries scanned linearly from the top before searching further down.
const TOP_SCAN: usize = 4;

/// Levels sorted by key, best last.
#[derive(Debug, Clone, Default)]
pub struct Sorted {
    /// Keys of the best and the worst entry (meaningless when empty), for the interpolated guess.
    top_key: u32,
    low_key: u32,
    entries: Vec<Entry>,
}

impl Sorted {
    /// Empty; allocates on the first entry.
    pub fn new() -> Self {
        Sorted::default()
    }

    /// Number of entries.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The best entry, if any.
    #[inline(always)]
    pub fn top(&self) -> Option<Entry> {
        self.entries.last().copied()
    }

    /// The aggregates at position `i` (from [`Sorted::search`]).
    #[inline(always)]
    pub fn cell(&self, i: usize) -> Cell {
        self.entries[i].cell
    }

    /// The aggregates at position `i` (from [`Sorted::search`]), to change in place.
    #[inline(always)]
    pub fn cell_mut(&mut self, i: usize) -> &mut Cell {
        &mut self.entries[i].cell
    }

    /// Entries from best to worst.
    pub fn iter_best_first(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries.iter().rev().copied()
    }

    /// Asks the cache for the top few entries, where most searches end.
    #[inline(always)]
    pub fn prefetch_top(&self) {
        let n = self.entries.len();
        if n > 0 {
            crate::book::prefetch::touch(self.entries.as_ptr().wrapping_add(n - 1));
            crate::book::prefetch::touch(self.entries.as_ptr().wrapping_add(n.saturating_sub(8)));
        }
    }

    /// Where `key` would be if the entries were spread evenly between the worst and the best
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

    /// Asks the cache for the entry where a search for `key` will most likely end.
    #[inline(always)]
    pub fn prefetch_key(&self, key: u32) {
        let n = self.entries.len();
        if n > TOP_SCAN && key < self.top_key {
            let at = self.guess(key, n).min(n - TOP_SCAN);
            crate::book::prefetch::touch(self.entries.as_ptr().wrapping_add(at));
        }
    }

    /// Where `key` is, or where it would go.
    #[inline(always)]
    pub fn search(&self, key: u32) -> Result<usize, usize> {
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

    /// Places a new entry at the position [`Sorted::search`] returned.
    #[inline(always)]
    pub fn insert_at(&mut self, pos: usize, key: u32, cell: Cell) {
        debug_assert!(pos == 0 || self.entries[pos - 1].key < key);
        debug_assert!(pos == self.entries.len() || self.entries[pos].key > key);
        self.entries.insert(pos, Entry { key, cell });
        if pos + 1 == self.entries.len() {
            self.top_key = key;
        }
        if pos == 0 {
            self.low_key = key;
        }
    }

    /// Appends an entry above every other one.
    pub fn push_top(&mut self, key: u32, cell: Cell) {
        let n = self.entries.len();
        self.insert_at(n, key, cell);
    }

    /// Removes and returns the best entry.
    pub fn pop_top(&mut self) -> Option<Entry> {
        let e = self.entries.pop()?;
        if let Some(t) = self.entries.last() {
            self.top_key = t.key;
        }
        Some(e)
    }

    /// Removes the entry at position `pos` (from [`Sorted::search`]).
    #[inline(always)]
    pub fn remove_at(&mut self, pos: usize) {
        self.entries.remove(pos);
        // Only the ends' keys can change, and only when an end went: reading the worst entry on
        // every removal was a cache miss per removed level on deep books.
        let n = self.entries.len();
        if n > 0 && pos == n {
            self.top_key = self.entries[n - 1].key;
        } else if n > 0 && pos == 0 {
            self.low_key = self.entries[0].key;
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * core::mem::size_of::<Entry>()
    }

    /// True when keys strictly increase and the cached end keys are right.
    pub fn is_sorted(&self) -> bool {
        let ends_ok = match (self.entries.first(), self.entries.last()) {
            (Some(l), Some(t)) => l.key == self.low_key && t.key == self.top_key,
            _ => true,
        };
        ends_ok && self.entries.windows(2).all(|w| w[0].key < w[1].key)
    }
}
