//! One side of one book: its price levels, sorted, best last.
//!
//! Why a sorted vector with the best level at the end: almost all activity is at or near the top,
//! so creating or removing a level there moves a handful of 8-byte entries, and the top is the
//! last element, found without a search. Keys are the price for bids and the bitwise complement
//! of the price for asks, so both sides sort ascending with the best last and share one search.
//! A level's aggregates live in the level pool (stable handles), so executions, cancels and
//! deletes reach their level from the order without searching at all; only adds and level removal
//! search, first a few entries down from the top, then by a branch-free binary search.

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

/// Entries scanned linearly from the top before falling back to binary search.
const TOP_SCAN: usize = 4;

/// Price levels of one side, sorted by key, best last.
#[derive(Debug, Clone)]
pub struct Side {
    kind: SideKind,
    entries: Vec<Entry>,
}

impl Side {
    /// An empty side with room for `levels` levels.
    pub fn new(kind: SideKind, levels: usize) -> Self {
        Side {
            kind,
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
        self.entries.last().map(|e| e.level)
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
        let n = n.saturating_sub(TOP_SCAN);
        if n == 0 {
            return Err(0);
        }
        let (mut base, mut size) = (0usize, n);
        while size > 1 {
            let half = size / 2;
            let mid = base + half;
            base = if e[mid].key <= key { mid } else { base };
            size -= half;
        }
        match e[base].key.cmp(&key) {
            core::cmp::Ordering::Equal => Ok(base),
            core::cmp::Ordering::Less => Err(base + 1),
            core::cmp::Ordering::Greater => Err(base),
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
    }

    /// Removes the level at `price`; it must be there.
    #[inline(always)]
    pub fn remove(&mut self, price: u32) -> LevelId {
        let pos = self
            .search(price)
            .expect("level being removed is on its side");
        self.entries.remove(pos).level
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * core::mem::size_of::<Entry>()
    }

    /// True when keys strictly increase (no duplicate level, correct order).
    pub fn is_sorted(&self) -> bool {
        self.entries.windows(2).all(|w| w[0].key < w[1].key)
    }
}
