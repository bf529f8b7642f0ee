//! One side of one book: its price levels and their aggregates, best first, found by price in
//! constant time.
//!
//! Keys are the price for bids and the bitwise complement of the price for asks, so both sides
//! order ascending with the best last and share one code path.
//!
//! Why a ladder: almost all activity is within a few hundred ticks of the top, and an add must
//! find its price's level (or the place for a new one), and a removed level must leave its
//! place. A window of [`WINDOW`] cells, one per tick (a cent when every price so far is a whole
//! cent, else 0.0001), indexed by `(key - base) / tick`, does both with one load and no memmove,
//! and tells the prefetcher exactly which line a message will touch. A sorted vector did the
//! same with a search (a scan from the top, interpolation, galloping) and an insertion that
//! moved every entry above it: on 3,500 deep books that was a fifth of all instructions.
//!
//! Why the aggregates live in the cell: a level is its price. Nothing holds a handle to a level,
//! so an order names its level by book, side and price, and an add, an execution or a removal
//! reads and writes one line of the ladder, not a ladder slot and then a level elsewhere (v3k
//! deep had as many levels as orders, and the separate level was a miss of its own on most
//! messages). Cells may therefore move: when the window moves, and in `deep`.
//!
//! The window follows the top: a new best above it moves the window up (levels that fall off its
//! bottom go to `deep`), and a side whose window has emptied moves it down to meet the next add.
//! Levels below the window live in `deep`, a sorted vector ([`super::sorted`]): far from the top,
//! they change rarely. Invariant: every key in `deep` is below `base`, every key at or above
//! `base` is on the window's grid and inside it. A price off the cent grid turns the side to the
//! 0.0001 grid for good (until it empties); its far levels then live in `deep`.
//!
//! Each window keeps a bitmap of its taken cells ([`Ladder`]), so the next level below any
//! cell is a few bit scans of one line, however sparse the side. The side also remembers the
//! second best level, so that a removal of the best needs no search and the prefetcher can ask
//! for the new top early; a hint kept exact where known, never guessed (invariant: when
//! `has_next`, `next_key` is the second best).
//!
//! The side's head ([`Side`]: grid, base, best, second best) lives in its book's first line;
//! its cells live in the shard's ladder arena and its levels below the window in the shard's
//! `deep` vectors, and [`SideRef`] / [`SideMut`] put the three together. Never allocates per
//! message: the arena grows only when a book is created, and `deep` only when a side is deeper
//! below its window than ever before.

use super::sorted::Sorted;

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

    /// Sort key: ascending, best last. Its own inverse: the key of a key is the price.
    #[inline(always)]
    pub fn key(self, price: u32) -> u32 {
        // Branch-free: an ask's key is the price with every bit flipped.
        price ^ 0u32.wrapping_sub(self as u32)
    }
}

/// A price level's aggregates: eight bytes, eight to a line. Empty (no level) when `orders` is
/// zero, and then `shares` is zero too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct Cell {
    /// Sum of the shares of its orders; never zero while the level exists. A `u32`, like an
    /// order's shares: an add that would take a level past `u32::MAX` shares is refused and
    /// counted (`level_full`), which no real day comes near (a whole day's volume in the
    /// busiest name is a few hundred million shares).
    pub shares: u32,
    /// Number of orders resting.
    pub orders: u32,
}

/// An add that would take its level past `u32::MAX` shares; the level is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelFull;

impl Cell {
    const EMPTY: Cell = Cell {
        shares: 0,
        orders: 0,
    };

    /// Whether a level is here.
    #[inline(always)]
    pub fn is_level(&self) -> bool {
        self.orders != 0
    }

    /// One more order of `shares`; returns whether that opened the level.
    #[inline(always)]
    fn join(&mut self, shares: u32) -> Result<bool, LevelFull> {
        let sum = self.shares.checked_add(shares).ok_or(LevelFull)?;
        let opened = self.orders == 0;
        self.shares = sum;
        self.orders += 1;
        Ok(opened)
    }

    /// Takes `shares` off, and an order when `leaves`; returns whether the level is gone.
    #[inline(always)]
    fn take(&mut self, shares: u32, leaves: bool) -> bool {
        debug_assert!(self.orders > 0, "taking from a level that is not there");
        debug_assert!(self.shares >= shares, "level shares never go negative");
        self.shares -= shares;
        self.orders -= leaves as u32;
        debug_assert!(
            self.orders > 0 || self.shares == 0,
            "an empty level holds no shares"
        );
        debug_assert!(self.orders == 0 || self.shares > 0, "a level holds shares");
        self.orders == 0
    }
}

/// Ticks the ladder window spans (4 KiB of cells per side, in the shard's ladder arena). 512, not
/// 256: a book 200 ticks deep (the peers' benchmark shape) stays inside the window even just
/// after a new top has moved it (v3k deep 1.05-1.09x, realistic 1.01x, m7 1.015x, back to
/// back).
pub const WINDOW: usize = 512;
/// Ticks left free above a new top when the window moves: the top can rise this far before the
/// window moves again. An eighth, not a quarter: with 256 ticks, a quarter left the last ticks
/// of deep books in the sorted part, where an add searches and a removal shifts (v3k deep
/// 1.04-1.09x, realistic 1.035x; a sixteenth gave deep only 1.023x).
const HEADROOM: u32 = (WINDOW / 8) as u32;
/// The grid of a side whose prices are all whole cents (Price(4)).
const CENT: u32 = 100;

/// One side's window of cells, and a bitmap of the cells that hold a level.
///
/// Why the bitmap: when the best level goes and the second best is not known, the new best is
/// the highest taken cell below it, and on a sparse side (the peers' uniform shape: about 50
/// levels of one order spread over 800 ticks) a scan of the cells read line after line of
/// empty ones, 560,000 times in a v3k day. The bitmap answers with a few bit scans of one line,
/// which the side's adds and removals keep in cache; it also finds the second best exactly, so
/// a removal of the best rarely searches at all.
///
/// The bitmap also staggers the windows: it puts the arena's windows a line apart modulo
/// 4 KiB (windows 4 KiB apart put every side's top, which sits at the same cell after each
/// move of its window, in the same few cache sets, and evicted each other).
///
/// Invariant: bit `i` is set exactly when cell `i` holds a level. Only the methods below
/// change a cell, so nothing else can break it.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Ladder {
    cells: [Cell; WINDOW],
    /// Bit `i % 64` of word `i / 64`: cell `i` holds a level.
    taken: [u64; WORDS],
}

/// Words of the bitmap.
const WORDS: usize = WINDOW / 64;

impl core::ops::Deref for Ladder {
    type Target = [Cell; WINDOW];
    #[inline(always)]
    fn deref(&self) -> &[Cell; WINDOW] {
        &self.cells
    }
}

// SAFETY: cells of two `u32`s and bitmap words; zero cells are empty ones, and a zero bitmap
// says so.
unsafe impl super::pages::Zeroed for Ladder {}

impl Ladder {
    /// One more order of `shares` in cell `i`; returns whether that opened the level.
    #[inline(always)]
    fn join(&mut self, i: usize, shares: u32) -> Result<bool, LevelFull> {
        let opened = self.cells[i].join(shares)?;
        if opened {
            self.taken[i / 64] |= 1 << (i % 64);
        }
        Ok(opened)
    }

    /// Takes `shares` (and an order when `leaves`) off cell `i`; returns whether the level went.
    #[inline(always)]
    fn take(&mut self, i: usize, shares: u32, leaves: bool) -> bool {
        let gone = self.cells[i].take(shares, leaves);
        if gone {
            self.taken[i / 64] &= !(1 << (i % 64));
        }
        gone
    }

    /// Puts a level in the empty cell `i`.
    fn put(&mut self, i: usize, c: Cell) {
        debug_assert!(!self.cells[i].is_level() && c.is_level());
        self.cells[i] = c;
        self.taken[i / 64] |= 1 << (i % 64);
    }

    /// The highest taken cell below cell `i` (`i` may be [`WINDOW`]: the highest of all).
    #[inline(always)]
    fn highest_below(&self, i: usize) -> Option<usize> {
        debug_assert!(i <= WINDOW);
        let mut w = i / 64;
        let mut bits = match self.taken.get(w) {
            Some(&word) => word & ((1u64 << (i % 64)) - 1),
            None => 0,
        };
        loop {
            if bits != 0 {
                return Some(w * 64 + 63 - bits.leading_zeros() as usize);
            }
            if w == 0 {
                return None;
            }
            w -= 1;
            bits = self.taken[w];
        }
    }

    /// Empties the cells below `shift`, lowest first, handing each level to `gone`, and moves
    /// every cell down by `shift` (the window's base moved up by that many ticks).
    fn shift_down(&mut self, shift: usize, mut gone: impl FnMut(usize, Cell)) {
        let shift = shift.min(WINDOW);
        for w in 0..shift.div_ceil(64) {
            let below = shift - w * 64;
            let mut bits = match below >= 64 {
                true => self.taken[w],
                false => self.taken[w] & ((1u64 << below) - 1),
            };
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                gone(i, self.cells[i]);
                bits &= bits - 1;
            }
        }
        self.cells.copy_within(shift.., 0);
        self.cells[WINDOW - shift..].fill(Cell::EMPTY);
        let (ws, bs) = (shift / 64, shift % 64);
        for k in 0..WORDS {
            let lo = self.taken.get(k + ws).copied().unwrap_or(0);
            let hi = self.taken.get(k + ws + 1).copied().unwrap_or(0);
            self.taken[k] = match bs {
                0 => lo,
                _ => lo >> bs | hi << (64 - bs),
            };
        }
    }

    /// Empties every cell, lowest first, handing each level to `gone`.
    fn clear(&mut self, gone: impl FnMut(usize, Cell)) {
        self.shift_down(WINDOW, gone);
    }

    /// Whether the bitmap says exactly which cells hold a level.
    fn is_consistent(&self) -> bool {
        (0..WINDOW).all(|i| (self.taken[i / 64] >> (i % 64) & 1 != 0) == self.cells[i].is_level())
    }
}

const _: () = assert!(
    core::mem::size_of::<Side>() == 20,
    "both sides and the book's identity share one line"
);

/// The head of one side: where its levels are and which is the best. Twenty bytes and no
/// pointer, so that both sides and their book's identity fit the book's first line, the only
/// line of the book most messages read; the cells live in the shard's ladder arena and the
/// levels below the window in its `deep` vectors, both found by the side's index.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Side {
    kind: SideKind,
    /// The grid step of keys (1 or [`CENT`]); a byte, so that the hot fields fit.
    tick: u8,
    /// Whether the side holds a level; `top_key` means nothing when not.
    has_best: bool,
    /// Whether the second best is known (see `next_key`).
    has_next: bool,
    /// Levels in the window.
    on_ladder: u16,
    /// Key of the best level, kept here so that "is this level the top?" (asked by every
    /// execute, cancel and delete) reads the book's own line.
    top_key: u32,
    /// Key of the second best level, when `has_next`: the level that becomes the top when the
    /// best goes, known without a search, so that the prefetcher can ask for it as soon as it
    /// sees the best level's last order named. Found in the ladder's bitmap when either of the
    /// top two levels goes (one line, already in cache from the removal); not known while the
    /// best is below the window. Before the bitmap it was looked for only in the best's own
    /// line of cells: a search of the cells on every such removal cost realistic v3k
    /// 0.91-0.97x.
    next_key: u32,
    /// Key of cell 0.
    base: u32,
}

impl Side {
    /// An empty side.
    pub fn new(kind: SideKind) -> Self {
        Side {
            kind,
            tick: 1,
            has_best: false,
            has_next: false,
            on_ladder: 0,
            top_key: 0,
            next_key: 0,
            base: 0,
        }
    }

    /// Which side this is.
    pub fn kind(&self) -> SideKind {
        self.kind
    }

    /// True when the side holds no level.
    pub fn is_empty(&self) -> bool {
        !self.has_best
    }

    /// Whether the level at `price` is the best.
    #[inline(always)]
    pub fn is_best(&self, price: u32) -> bool {
        self.has_best && self.kind.key(price) == self.top_key
    }

    /// Whether an add at `price` would be at or above the best: the top changes.
    #[inline(always)]
    pub fn tops(&self, price: u32) -> bool {
        !self.has_best || self.kind.key(price) >= self.top_key
    }

    /// The window cell of `key`, if the window covers it.
    #[inline(always)]
    fn slot_of(&self, key: u32) -> Option<usize> {
        let d = key.checked_sub(self.base)?;
        let i = if self.tick == 1 {
            d
        } else {
            let i = d / CENT;
            if i * CENT != d {
                return None;
            }
            i
        };
        ((i as usize) < WINDOW).then_some(i as usize)
    }

    /// The grid step of keys, widened for arithmetic.
    #[inline(always)]
    fn tick(&self) -> u32 {
        self.tick as u32
    }

    /// The key of window cell `i` (the inverse of [`Side::slot_of`]).
    #[inline(always)]
    fn key_at(&self, i: usize) -> u32 {
        self.base + i as u32 * self.tick()
    }

    /// Whether `key` lies on the window's grid.
    #[inline(always)]
    fn on_grid(&self, key: u32) -> bool {
        self.tick == 1 || key % CENT == self.base % CENT
    }

    /// A base on the grid that puts `key` [`HEADROOM`] ticks below the window's top.
    fn base_below(&self, key: u32) -> u32 {
        let ticks = (WINDOW as u32 - 1 - HEADROOM).min(key / self.tick());
        key - ticks * self.tick()
    }

    /// Bookkeeping of the best and second best for a level just opened at `key`.
    #[inline(always)]
    fn opened(&mut self, key: u32) {
        if !self.has_best || key > self.top_key {
            (self.has_next, self.next_key) = (self.has_best, self.top_key);
            (self.has_best, self.top_key) = (true, key);
        } else if self.has_next && key > self.next_key {
            self.next_key = key;
        }
    }
}

/// A side's head with its cells, shared: what reads of its levels work on.
#[derive(Clone, Copy)]
pub struct SideRef<'a> {
    pub(crate) head: &'a Side,
    pub(crate) ladder: &'a Ladder,
    pub(crate) deep: &'a Sorted,
}

/// A side's head with its cells, exclusive: what changes to its levels work on.
pub struct SideMut<'a> {
    pub(crate) head: &'a mut Side,
    pub(crate) ladder: &'a mut Ladder,
    pub(crate) deep: &'a mut Sorted,
}

impl<'a> SideRef<'a> {
    /// Number of price levels.
    pub fn len(self) -> usize {
        self.head.on_ladder as usize + self.deep.len()
    }

    /// True when the side holds no level.
    pub fn is_empty(self) -> bool {
        self.head.is_empty()
    }

    /// The best level's price and aggregates, if any.
    #[inline(always)]
    pub fn best(self) -> Option<(u32, Cell)> {
        let h = self.head;
        if !h.has_best {
            return None;
        }
        let cell = match h.slot_of(h.top_key) {
            Some(i) => self.ladder[i],
            None => {
                self.deep
                    .top()
                    .expect("a best below the window is deep's top")
                    .cell
            }
        };
        Some((h.kind.key(h.top_key), cell))
    }

    /// The aggregates of the level at `price`, if there is one.
    pub fn level(self, price: u32) -> Option<Cell> {
        let h = self.head;
        let key = h.kind.key(price);
        if !h.has_best {
            return None;
        }
        if let Some(i) = h.slot_of(key) {
            return Some(self.ladder[i]).filter(Cell::is_level);
        }
        if key >= h.base {
            return None;
        }
        self.deep.search(key).ok().map(|i| self.deep.cell(i))
    }

    /// Asks the cache for what a removal of the best level reads: when the second best is
    /// known, its cell (which the new top publishes, and where the next second best is looked
    /// for); else the line of cells below the best, where the search for the new best starts.
    /// Only reads the side's head: no wait on memory.
    #[inline(always)]
    pub(crate) fn prefetch_best_gone(self) {
        let h = self.head;
        let (key, below) = match h.has_next {
            true => (h.next_key, 0),
            false => (h.top_key, 1),
        };
        if let Some(i) = h.slot_of(key).filter(|_| h.on_ladder > 1) {
            crate::book::prefetch::touch(&self.ladder[i.saturating_sub(below)]);
        }
    }

    /// Asks the cache for the line that holds `price`'s level, or its place.
    #[inline(always)]
    pub(crate) fn prefetch_level(self, price: u32) {
        let key = self.head.kind.key(price);
        match self.head.slot_of(key) {
            Some(i) => crate::book::prefetch::touch(&self.ladder[i]),
            None if key < self.head.base => {
                self.deep.prefetch_top();
                self.deep.prefetch_key(key);
            }
            None => {}
        }
    }

    /// Whether the level at `price` is the best and holds one order: a removal of that order
    /// changes the top. For the prefetcher; reads the level's cell.
    #[inline(always)]
    pub(crate) fn is_lone_best(self, price: u32) -> bool {
        let h = self.head;
        h.is_best(price) && h.slot_of(h.top_key).map(|i| self.ladder[i].orders) == Some(1)
    }

    /// Levels, price and aggregates, from best to worst.
    pub fn levels(self) -> impl Iterator<Item = (u32, Cell)> + 'a {
        let (h, ladder, deep): (&'a Side, &'a Ladder, &'a Sorted) =
            (self.head, self.ladder, self.deep);
        let end = match h.slot_of(h.top_key) {
            Some(i) if h.on_ladder > 0 => i + 1,
            _ => 0,
        };
        let window = ladder[..end].iter().enumerate().rev();
        let window = window
            .filter(|(_, c)| c.is_level())
            .map(move |(i, &c)| (h.key_at(i), c));
        let deep = deep.iter_best_first().map(|e| (e.key, e.cell));
        window.chain(deep).map(move |(k, c)| (h.kind.key(k), c))
    }

    /// True when the side's bookkeeping is consistent: `deep` sorted and below the window, the
    /// window's count right, every key on the grid, every level holding orders and shares, and
    /// the best and the second best (when known) right.
    pub fn is_consistent(self) -> bool {
        let h = self.head;
        let taken = self.ladder.iter().filter(|c| c.is_level()).count();
        let bitmap_ok = self.ladder.is_consistent();
        let cells_ok = self
            .ladder
            .iter()
            .copied()
            .chain(self.deep.iter_best_first().map(|e| e.cell))
            .all(|c| (c.orders == 0) == (c.shares == 0));
        let deep_ok = self.deep.is_sorted()
            && self
                .deep
                .iter_best_first()
                .all(|e| e.key < h.base && h.on_grid(e.key) && e.cell.is_level());
        let keys: Vec<u32> = self.levels().map(|(p, _)| h.kind.key(p)).collect();
        let best_ok = match keys.first() {
            Some(&k) => h.has_best && h.top_key == k,
            None => !h.has_best,
        };
        let next_ok = match keys.get(1) {
            Some(&k) => !h.has_next || h.next_key == k,
            None => !h.has_next,
        };
        let all_seen = keys.len() == self.len();
        deep_ok
            && cells_ok
            && bitmap_ok
            && all_seen
            && taken == h.on_ladder as usize
            && best_ok
            && next_ok
    }
}

impl SideMut<'_> {
    /// Adds one order of `shares` at `price`, opening its level when there is none; returns
    /// whether it opened one. A level that would pass `u32::MAX` shares is left as it was.
    #[inline(always)]
    pub fn add(&mut self, price: u32, shares: u32) -> Result<bool, LevelFull> {
        let key = self.head.kind.key(price);
        let opened = match self.head.slot_of(key).filter(|_| self.head.has_best) {
            Some(i) => self.join_window(i, shares)?,
            None => self.add_outside(key, price, shares)?,
        };
        if opened {
            self.head.opened(key);
        }
        Ok(opened)
    }

    /// One more order of `shares` in window cell `i`, counted in the window when it opens the
    /// level there; returns whether it did.
    #[inline(always)]
    fn join_window(&mut self, i: usize, shares: u32) -> Result<bool, LevelFull> {
        let opened = self.ladder.join(i, shares)?;
        self.head.on_ladder += opened as u16;
        Ok(opened)
    }

    /// An add the window does not cover where it stands: below it, or one that moves it (the
    /// side's first level, a new top above the window, the first add below an emptied window,
    /// or a price off the grid).
    #[inline(never)]
    fn add_outside(&mut self, key: u32, price: u32, shares: u32) -> Result<bool, LevelFull> {
        let h = &*self.head;
        let below = h.has_best && key < h.base && h.on_ladder > 0 && h.on_grid(key);
        if !below {
            self.make_room(key, price);
        }
        let opened = match self.head.slot_of(key) {
            Some(i) => self.join_window(i, shares)?,
            None => {
                debug_assert!(key < self.head.base);
                match self.deep.search(key) {
                    Ok(i) => self.deep.cell_mut(i).join(shares)?,
                    Err(pos) => {
                        let mut cell = Cell::EMPTY;
                        cell.join(shares)?;
                        self.deep.insert_at(pos, key, cell);
                        return Ok(true);
                    }
                }
            }
        };
        Ok(opened)
    }

    /// Moves the window, or sets the side up, so that `key` is in the window or below it on its
    /// grid. Every level stays, in the window or in `deep`.
    #[cold]
    fn make_room(&mut self, key: u32, price: u32) {
        let h = &mut *self.head;
        if !h.has_best {
            h.tick = if price % CENT == 0 { CENT as u8 } else { 1 };
            h.base = h.base_below(key);
            return;
        }
        if !h.on_grid(key) {
            self.leave_grid();
        }
        let h = &*self.head;
        let end = h.base as u64 + WINDOW as u64 * h.tick() as u64;
        let to = if key as u64 >= end {
            h.base_below(key)
        } else if key < h.base && h.on_ladder == 0 {
            // Meet the add, but keep `deep`'s best (above it, or the add itself) in the window.
            h.base_below(self.deep.top().map_or(key, |t| t.key.max(key)))
        } else {
            return;
        };
        self.move_window(to);
    }

    /// Moves the window to start at `base` (on the grid), in place. Moving up sends the levels
    /// below the new base to `deep` (above all of its keys, so they go on its top); moving down
    /// is only asked of an empty window, and takes from `deep` the levels it now covers.
    fn move_window(&mut self, base: u32) {
        let h = &mut *self.head;
        debug_assert_eq!(base % h.tick(), h.base % h.tick());
        if base < h.base {
            debug_assert_eq!(h.on_ladder, 0, "the window moves down only when empty");
            h.base = base;
            while let Some(e) = self.deep.top().filter(|e| e.key >= base) {
                self.deep.pop_top();
                let i = h
                    .slot_of(e.key)
                    .expect("a key above the base is in the window");
                self.ladder.put(i, e.cell);
                h.on_ladder += 1;
            }
            return;
        }
        let shift = ((base - h.base) / h.tick()) as usize;
        let deep = &mut *self.deep;
        self.ladder.shift_down(shift, |i, c| {
            deep.push_top(h.key_at(i), c);
            h.on_ladder -= 1;
        });
        h.base = base;
    }

    /// A price off the cent grid: every level leaves the window for `deep`, and the window
    /// restarts, empty, on the 0.0001 grid just above `deep`'s best (the next add moves it).
    fn leave_grid(&mut self) {
        let h = &mut *self.head;
        let deep = &mut *self.deep;
        self.ladder.clear(|i, c| deep.push_top(h.key_at(i), c));
        h.on_ladder = 0;
        h.tick = 1;
        h.base = self.deep.top().map_or(0, |t| t.key.saturating_add(1));
    }

    /// Takes `shares` off the level at `price`, and one order when `leaves`; the level goes
    /// when its last order leaves. The level must be there. Returns whether it went.
    #[inline(always)]
    pub fn take(&mut self, price: u32, shares: u32, leaves: bool) -> bool {
        let key = self.head.kind.key(price);
        let gone = match self.head.slot_of(key) {
            Some(i) => {
                let gone = self.ladder.take(i, shares, leaves);
                self.head.on_ladder -= gone as u16;
                gone
            }
            None => self.take_deep(key, shares, leaves),
        };
        if gone {
            self.closed(key);
        }
        gone
    }

    /// [`SideMut::take`] for a level below the window.
    #[inline(never)]
    fn take_deep(&mut self, key: u32, shares: u32, leaves: bool) -> bool {
        let i = self
            .deep
            .search(key)
            .expect("a level taken from is on its side");
        let gone = self.deep.cell_mut(i).take(shares, leaves);
        if gone {
            self.deep.remove_at(i);
        }
        gone
    }

    /// Bookkeeping for the level at `key`, just gone.
    #[inline(always)]
    fn closed(&mut self, key: u32) {
        if key == self.head.top_key {
            match self.head.has_next {
                false => self.find_new_best(),
                true => self.head.top_key = self.head.next_key,
            }
            self.find_next_nearby();
        } else if self.head.has_next && key == self.head.next_key {
            self.find_next_nearby();
        }
    }

    /// After the best level went, its successor not known: the highest cell still taken, else
    /// `deep`'s best.
    #[inline(always)]
    fn find_new_best(&mut self) {
        let h = &mut *self.head;
        if h.on_ladder > 0 {
            let top = h.slot_of(h.top_key).expect("the best was in the window");
            let i = self
                .ladder
                .highest_below(top)
                .expect("the window holds a level");
            h.top_key = h.key_at(i);
        } else {
            match self.deep.top() {
                Some(t) => h.top_key = t.key,
                None => h.has_best = false,
            }
        }
    }

    /// The second best level when the best is in the window: the highest taken cell below
    /// it, else `deep`'s best; not known when the best is in `deep`.
    #[inline(always)]
    fn find_next_nearby(&mut self) {
        let h = &mut *self.head;
        h.has_next = false;
        let Some(top) = h.slot_of(h.top_key).filter(|_| h.has_best) else {
            return;
        };
        if let Some(i) = self.ladder.highest_below(top) {
            (h.has_next, h.next_key) = (true, h.key_at(i));
        } else if let Some(t) = self.deep.top() {
            (h.has_next, h.next_key) = (true, t.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Key -> aggregates, ascending towards the best on both sides.
    type Model = BTreeMap<u32, Cell>;

    /// A side that owns its cells, as the books' arena and `deep` vectors would hold them.
    struct Owned {
        head: Side,
        ladder: Box<Ladder>,
        deep: Sorted,
    }

    impl Owned {
        fn new(kind: SideKind) -> Self {
            Owned {
                head: Side::new(kind),
                ladder: Box::new(Ladder {
                    cells: [Cell::EMPTY; WINDOW],
                    taken: [0; WORDS],
                }),
                deep: Sorted::new(),
            }
        }

        fn m(&mut self) -> SideMut<'_> {
            SideMut {
                head: &mut self.head,
                ladder: &mut self.ladder,
                deep: &mut self.deep,
            }
        }

        fn r(&self) -> SideRef<'_> {
            SideRef {
                head: &self.head,
                ladder: &self.ladder,
                deep: &self.deep,
            }
        }
    }

    /// The side against a sorted map after every step: the levels best first with their
    /// aggregates, the best, lookups and the bookkeeping.
    fn check(side: &Owned, model: &Model, seed: u64, step: usize) {
        let kind = side.head.kind();
        let want: Vec<(u32, Cell)> = model
            .iter()
            .rev()
            .map(|(&k, &c)| (kind.key(k), c))
            .collect();
        let got: Vec<(u32, Cell)> = side.r().levels().collect();
        assert_eq!(got, want, "seed {seed} step {step}: levels best first");
        assert_eq!(
            side.r().best(),
            want.first().copied(),
            "seed {seed} step {step}"
        );
        assert_eq!(side.r().len(), model.len(), "seed {seed} step {step}");
        assert!(
            side.r().is_consistent(),
            "seed {seed} step {step}: bookkeeping"
        );
    }

    /// Takes one order, or part of one, off the level at `key` in both the side and the model,
    /// keeping at least a share per order that stays.
    fn take_some(side: &mut Owned, model: &mut Model, key: u32, r: u64, seed: u64, n: u32) {
        let c = model[&key];
        let spare = c.shares - c.orders; // shares beyond one per order
        let leaves = r % 3 != 0 || spare == 0;
        let shares = match (leaves, c.orders) {
            (true, 1) => c.shares,
            (true, _) => 1 + (r >> 8) as u32 % (spare + 1),
            (false, _) => 1 + (r >> 8) as u32 % spare,
        };
        let price = side.head.kind().key(key);
        let gone = side.m().take(price, shares, leaves);
        let m = model.get_mut(&key).unwrap();
        (m.shares, m.orders) = (m.shares - shares, m.orders - leaves as u32);
        assert_eq!(gone, m.orders == 0, "seed {seed} step {n}");
        if m.orders == 0 {
            model.remove(&key);
        }
    }

    /// Random adds and removals on both sides, on the cent grid, the 0.0001 grid and a cent
    /// grid with the odd sub-penny price; prices drift far and wide so that the window moves up
    /// and down, spills into `deep` and leaves the grid. Every answer agrees with a sorted map.
    /// A ladder holding a level (of `i + 1` shares) in each of `cells`.
    fn ladder_with(cells: &[usize]) -> Box<Ladder> {
        let mut l = Box::new(Ladder {
            cells: [Cell::EMPTY; WINDOW],
            taken: [0; WORDS],
        });
        for &i in cells {
            assert_eq!(l.join(i, i as u32 + 1), Ok(true));
        }
        l
    }

    #[rstest::rstest]
    #[case::none(&[], WINDOW, None)]
    #[case::the_highest_of_all(&[3, 200, 511], WINDOW, Some(511))]
    #[case::not_itself(&[3, 200], 200, Some(3))]
    #[case::across_a_word(&[63, 64], 64, Some(63))]
    #[case::across_words(&[1, 450], 449, Some(1))]
    #[case::cell_zero(&[0], 1, Some(0))]
    #[case::nothing_below(&[5], 5, None)]
    fn the_highest_taken_cell_below(
        #[case] cells: &[usize],
        #[case] below: usize,
        #[case] want: Option<usize>,
    ) {
        assert_eq!(ladder_with(cells).highest_below(below), want);
    }

    #[rstest::rstest]
    #[case::nothing(0)]
    #[case::one(1)]
    #[case::inside_a_word(37)]
    #[case::a_word(64)]
    #[case::past_a_word(65)]
    #[case::most(511)]
    #[case::all(WINDOW)]
    fn shifting_down_hands_over_the_cells_below_and_moves_the_rest(#[case] shift: usize) {
        let cells: Vec<usize> = (0..WINDOW).filter(|i| i % 7 == 0 || i % 64 == 63).collect();
        let mut l = ladder_with(&cells);
        let mut gone = Vec::new();
        l.shift_down(shift, |i, c| gone.push((i, c.shares)));
        let below: Vec<_> = cells
            .iter()
            .filter(|&&i| i < shift)
            .map(|&i| (i, i as u32 + 1))
            .collect();
        assert_eq!(gone, below, "shift {shift}: handed over, lowest first");
        let moved: Vec<_> = cells
            .iter()
            .filter(|&&i| i >= shift)
            .map(|&i| (i - shift, i as u32 + 1))
            .collect();
        let left: Vec<_> = (0..WINDOW)
            .filter(|&i| l[i].is_level())
            .map(|i| (i, l[i].shares))
            .collect();
        assert_eq!(left, moved, "shift {shift}: moved down");
        assert!(l.is_consistent(), "shift {shift}: the bitmap follows");
    }

    #[test]
    fn add_and_take_agree_with_a_sorted_map() {
        for seed in 1..=60u64 {
            let mut next = rng(seed);
            let (step, odd) =
                [(100u32, 0u64), (1, 0), (100, 97), (500, 0), (100, 0)][seed as usize % 5];
            for kind in [SideKind::Bid, SideKind::Ask] {
                let mut side = Owned::new(kind);
                let mut model = Model::new();
                let mut knew_next = 0;
                let mut mid: i64 = 1_000_000 + (next() % 10_000) as i64 * 100;
                for n in 0..4_000u32 {
                    // A drifting mid with bursts far away: the window must follow both.
                    mid += (next() % 21) as i64 * step as i64 - 10 * step as i64;
                    mid = mid.max(400 * step as i64);
                    let spread = if next() % 50 == 0 { 2_000 } else { 300 };
                    let off = (next() % spread) as i64 - spread as i64 / 2;
                    let mut price = (mid + off * step as i64).max(0) as u32;
                    if odd > 0 && next() % odd == 0 {
                        price += 1;
                    }
                    let key = kind.key(price);
                    assert_eq!(
                        side.r().level(price),
                        model.get(&key).copied(),
                        "seed {seed} step {n}"
                    );
                    if next() % 5 < 2 && !model.is_empty() {
                        let i = next() as usize % model.len();
                        let k = *model.keys().nth(i).unwrap();
                        take_some(&mut side, &mut model, k, next(), seed, n);
                    } else {
                        let shares = 1 + (next() % 1000) as u32;
                        let opened = side.m().add(price, shares).unwrap();
                        let m = model.entry(key).or_default();
                        assert_eq!(opened, m.orders == 0, "seed {seed} step {n}");
                        m.shares += shares;
                        m.orders += 1;
                    }
                    check(&side, &model, seed, n as usize);
                    knew_next += side.head.has_next as usize;
                }
                // The second best is a hint the prefetcher uses: it must often be known.
                assert!(
                    knew_next > 400,
                    "seed {seed}: second best known {knew_next} times"
                );
                // Empty it from the top down: every removal finds the next best.
                while let Some((price, c)) = side.r().best() {
                    let shares = if c.orders == 1 { c.shares } else { 1 };
                    assert_eq!(
                        side.m().take(price, shares, true),
                        c.orders == 1,
                        "seed {seed}"
                    );
                    let key = kind.key(price);
                    let m = model.get_mut(&key).unwrap();
                    (m.shares, m.orders) = (m.shares - shares, m.orders - 1);
                    if m.orders == 0 {
                        model.remove(&key);
                    }
                    check(&side, &model, seed, usize::MAX);
                }
            }
        }
    }

    /// A price at the very ends of the range (0, and the largest a `u32` holds) never
    /// overflows the window arithmetic.
    #[test]
    fn extreme_prices_stay_in_order() {
        for kind in [SideKind::Bid, SideKind::Ask] {
            let mut side = Owned::new(kind);
            let mut model = Model::new();
            for (n, price) in [0u32, 100, u32::MAX, u32::MAX - 99, 5_000, 1]
                .into_iter()
                .enumerate()
            {
                side.m().add(price, 7).unwrap();
                let m = model.entry(kind.key(price)).or_default();
                (m.shares, m.orders) = (m.shares + 7, m.orders + 1);
                check(&side, &model, 0, n);
            }
        }
    }

    /// A level cannot pass `u32::MAX` shares; the refused add changes nothing.
    #[test]
    fn a_full_level_refuses_an_add_and_stays_as_it_was() {
        let mut side = Owned::new(SideKind::Bid);
        assert_eq!(side.m().add(10_000, u32::MAX - 5), Ok(true));
        assert_eq!(side.m().add(10_000, 6), Err(LevelFull));
        assert_eq!(side.m().add(10_000, 5), Ok(false));
        assert_eq!(
            side.r().level(10_000),
            Some(Cell {
                shares: u32::MAX,
                orders: 2
            })
        );
    }
}
