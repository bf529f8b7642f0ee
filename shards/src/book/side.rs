//! One side of one book: its price levels, best first, found by price in constant time.
//!
//! Keys are the price for bids and the bitwise complement of the price for asks, so both sides
//! order ascending with the best last and share one code path.
//!
//! Why a ladder: almost all activity is within a few hundred ticks of the top, and an add must
//! find its price's level (or the place for a new one), and a removed level must leave its
//! place. A window of [`WINDOW`] slots, one per tick (a cent when every price so far is a whole
//! cent, else 0.0001), indexed by `(key - base) / tick`, does both with one load and no memmove,
//! and tells the prefetcher exactly which line an add will touch. A sorted vector did the same
//! with a search (a scan from the top, interpolation, galloping) and an insertion that moved
//! every entry above it: on 3,500 deep books that was a fifth of all instructions.
//!
//! The window follows the top: a new best above it moves the window up (levels that fall off its
//! bottom go to `deep`), and a side whose window has emptied moves it down to meet the next add.
//! Levels below the window live in `deep`, a sorted vector ([`super::sorted`]): far from the top,
//! they change rarely. Invariant: every key in `deep` is below `base`, every key at or above
//! `base` is on the window's grid and inside it. A price off the cent grid turns the side to the
//! 0.0001 grid for good (until it empties); its far levels then live in `deep`.
//!
//! The side also remembers the second best level when that is cheap to know, so that a removal
//! of the best needs no search and the prefetcher can ask for the new top early; a hint kept
//! exact where known, never guessed (invariant: `next` is the second best or [`NIL`]).
//!
//! A level's aggregates live in the level slab (stable handles), so executions, cancels and
//! deletes reach their level from the order without touching the side at all.

use super::sorted::Sorted;
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

    /// Sort key: ascending, best last. Its own inverse: the key of a key is the price.
    #[inline(always)]
    pub fn key(self, price: u32) -> u32 {
        // Branch-free: an ask's key is the price with every bit flipped.
        price ^ 0u32.wrapping_sub(self as u32)
    }
}

/// Ticks the ladder window spans (2 KiB of slots per side, allocated with the side). 512, not
/// 256: a book 200 ticks deep (the peers' benchmark shape) stays inside the window even just
/// after a new top has moved it (v3k deep 1.05-1.09x, realistic 1.01x, m7 1.015x, back to
/// back), for 7 MiB more on 3,500 books.
pub const WINDOW: usize = 512;
/// Ticks left free above a new top when the window moves: the top can rise this far before the
/// window moves again. An eighth, not a quarter: with 256 ticks, a quarter left the last ticks
/// of deep books in the sorted part, where an add searches and a removal shifts (v3k deep
/// 1.04-1.09x, realistic 1.035x; a sixteenth gave deep only 1.023x).
const HEADROOM: u32 = (WINDOW / 8) as u32;
/// The grid of a side whose prices are all whole cents (Price(4)).
const CENT: u32 = 100;
/// A position [`Side::find`] returns for a price the window does not cover yet.
const OUTSIDE: usize = usize::MAX;

const _: () = assert!(
    core::mem::size_of::<Side>() == 40,
    "sides, identity and top: two lines"
);

/// Price levels of one side.
#[derive(Debug, Clone)]
pub struct Side {
    kind: SideKind,
    /// The grid step of keys (1 or [`CENT`]); a byte, so that the hot fields fit.
    tick: u8,
    /// Levels in the window.
    on_ladder: u16,
    /// The best level ([`NIL`] when empty) and its key, kept here so that "is this level the
    /// top?" (asked by every execute, cancel and delete) reads the book's own line.
    best: LevelId,
    top_key: u32,
    /// The second best level and its key, when known ([`NIL`] when not known, or when there is
    /// none): the level that becomes the top when the best goes, known without a search, so that
    /// the prefetcher can ask for it as soon as it sees the best level's last order named.
    /// Kept only where that is cheap (a new top makes the old one second; a removed best's
    /// successor is looked for in its own line of slots): keeping it exact cost sparse books a
    /// search of the ladder on every removal of either of the top two levels (realistic v3k
    /// 0.91-0.97x).
    next: LevelId,
    next_key: u32,
    /// Key of slot 0.
    base: u32,
    /// One slot per tick from `base` ([`NIL`] when no level). A thin pointer, for the same
    /// reason as `deep`'s.
    ladder: Box<[LevelId; WINDOW]>,
    /// Levels below the window: behind a pointer, because they are seldom touched and the
    /// side's hot fields, both sides and their book's identity and top must fit two lines.
    deep: Box<Sorted>,
}

impl Side {
    /// An empty side with room for `levels` levels below its window.
    pub fn new(kind: SideKind, levels: usize) -> Self {
        Side {
            kind,
            tick: 1,
            on_ladder: 0,
            best: NIL,
            top_key: 0,
            next: NIL,
            next_key: 0,
            base: 0,
            ladder: Box::new([NIL; WINDOW]),
            deep: Box::new(Sorted::new(levels)),
        }
    }

    /// Which side this is.
    pub fn kind(&self) -> SideKind {
        self.kind
    }

    /// Number of price levels.
    pub fn len(&self) -> usize {
        self.on_ladder as usize + self.deep.len()
    }

    /// True when the side holds no level.
    pub fn is_empty(&self) -> bool {
        self.best == NIL
    }

    /// The best level, if any.
    #[inline(always)]
    pub fn best(&self) -> Option<LevelId> {
        (self.best != NIL).then_some(self.best)
    }

    /// The window slot of `key`, if the window covers it.
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

    /// The key of window slot `i` (the inverse of [`Side::slot_of`]).
    #[inline(always)]
    fn key_at(&self, i: usize) -> u32 {
        self.base + i as u32 * self.tick()
    }

    /// Whether `key` lies on the window's grid.
    #[inline(always)]
    fn on_grid(&self, key: u32) -> bool {
        self.tick == 1 || key % CENT == self.base % CENT
    }

    /// Asks the cache for what a removal of the best level reads: when the second best is
    /// known, that level (which the new top publishes) and its line of slots (where the next
    /// second best is looked for); else the line of slots below the best, where the search for
    /// the new best starts. Only reads this side's own fields: no wait on memory.
    #[inline(always)]
    pub(crate) fn prefetch_best_gone(&self, levels: &super::store::Slab<super::Level>) {
        let (key, below) = match self.next {
            NIL => (self.top_key, 1),
            next => {
                levels.prefetch(next);
                (self.next_key, 0)
            }
        };
        if let Some(i) = self.slot_of(key).filter(|_| self.on_ladder > 1) {
            crate::book::prefetch::touch(&self.ladder[i.saturating_sub(below)]);
        }
    }

    /// Asks the cache for the line that holds `price`'s place.
    #[inline(always)]
    pub(crate) fn prefetch_entry(&self, price: u32) {
        let key = self.kind.key(price);
        match self.slot_of(key) {
            Some(i) => crate::book::prefetch::touch(&self.ladder[i]),
            None if key < self.base => {
                self.deep.prefetch_top();
                self.deep.prefetch_key(key);
            }
            None => {}
        }
    }

    /// The level at `price` if the window holds it: [`Side::find`] without the search below
    /// the window, for the prefetcher.
    #[inline(always)]
    pub(crate) fn find_in_window(&self, price: u32) -> Option<LevelId> {
        let l = self.ladder[self.slot_of(self.kind.key(price))?];
        (l != NIL).then_some(l)
    }

    /// Levels from best to worst.
    pub fn levels(&self) -> impl Iterator<Item = LevelId> + '_ {
        self.entries().map(|(l, _)| l)
    }

    /// Levels and their keys from best to worst.
    fn entries(&self) -> impl Iterator<Item = (LevelId, u32)> + '_ {
        let end = match self.slot_of(self.top_key) {
            Some(i) if self.on_ladder > 0 => i + 1,
            _ => 0,
        };
        let window = self.ladder[..end].iter().enumerate().rev();
        let window = window
            .filter(|(_, &l)| l != NIL)
            .map(|(i, &l)| (l, self.key_at(i)));
        window.chain(self.deep.iter_best_first().map(|e| (e.level, e.key)))
    }

    /// The level at `price`, or the position a new one must take (for [`Side::insert_at`]).
    #[inline(always)]
    pub fn find(&self, price: u32) -> Result<LevelId, usize> {
        let key = self.kind.key(price);
        if let Some(i) = self.slot_of(key) {
            let l = self.ladder[i];
            return if l != NIL { Ok(l) } else { Err(i) };
        }
        if key >= self.base {
            return Err(OUTSIDE);
        }
        match self.deep.search(key) {
            Ok(i) => Ok(self.deep.level(i)),
            Err(i) => Err(WINDOW + i),
        }
    }

    /// Places a new level at the position [`Side::find`] returned, the side unchanged since.
    #[inline(always)]
    pub fn insert_at(&mut self, pos: usize, price: u32, level: LevelId) {
        let key = self.kind.key(price);
        if pos < WINDOW && self.best != NIL {
            self.fill_slot(pos, level);
        } else if (WINDOW..OUTSIDE).contains(&pos) && self.on_ladder > 0 && self.on_grid(key) {
            self.deep.insert_at(pos - WINDOW, key, level);
        } else {
            self.place_moving_window(key, price, level);
        }
        if self.best == NIL || key > self.top_key {
            (self.next, self.next_key) = (self.best, self.top_key);
            (self.best, self.top_key) = (level, key);
        } else if self.next != NIL && key > self.next_key {
            (self.next, self.next_key) = (level, key);
        }
    }

    #[inline(always)]
    fn fill_slot(&mut self, i: usize, level: LevelId) {
        debug_assert_eq!(self.ladder[i], NIL);
        self.ladder[i] = level;
        self.on_ladder += 1;
    }

    /// A new level the window cannot take where it stands: the side's first level, a new top
    /// above the window, the first add below an emptied window, or a price off the grid.
    #[cold]
    fn place_moving_window(&mut self, key: u32, price: u32, level: LevelId) {
        if self.best == NIL {
            self.tick = if price % CENT == 0 { CENT as u8 } else { 1 };
            self.base = self.base_below(key);
        } else if !self.on_grid(key) {
            self.leave_grid();
        }
        let end = self.base as u64 + WINDOW as u64 * self.tick() as u64;
        if key as u64 >= end {
            self.move_window(self.base_below(key));
        } else if key < self.base && self.on_ladder == 0 {
            // Meet the add, but keep `deep`'s best (above it, or the add itself) in the window.
            let anchor = self.deep.top().map_or(key, |t| t.key.max(key));
            self.move_window(self.base_below(anchor));
        }
        match self.slot_of(key) {
            Some(i) => self.fill_slot(i, level),
            None => {
                debug_assert!(key < self.base);
                let pos = self.deep.search(key).expect_err("a new level is new");
                self.deep.insert_at(pos, key, level);
            }
        }
    }

    /// A base on the grid that puts `key` [`HEADROOM`] ticks below the window's top.
    fn base_below(&self, key: u32) -> u32 {
        let ticks = (WINDOW as u32 - 1 - HEADROOM).min(key / self.tick());
        key - ticks * self.tick()
    }

    /// Moves the window to start at `base` (on the grid), in place. Moving up sends the levels
    /// below the new base to `deep` (above all of its keys, so they go on its top); moving down
    /// is only asked of an empty window, and takes from `deep` the levels it now covers.
    fn move_window(&mut self, base: u32) {
        debug_assert_eq!(base % self.tick(), self.base % self.tick());
        if base < self.base {
            debug_assert_eq!(self.on_ladder, 0, "the window moves down only when empty");
            self.base = base;
            while let Some(e) = self.deep.top().filter(|e| e.key >= base) {
                self.deep.pop_top();
                let i = self
                    .slot_of(e.key)
                    .expect("a key above the base is in the window");
                self.fill_slot(i, e.level);
            }
            return;
        }
        let shift = (((base - self.base) / self.tick()) as usize).min(WINDOW);
        for i in 0..shift {
            let l = core::mem::replace(&mut self.ladder[i], NIL);
            if l != NIL {
                self.deep.push_top(self.key_at(i), l);
                self.on_ladder -= 1;
            }
        }
        self.ladder.copy_within(shift.., 0);
        self.ladder[WINDOW - shift..].fill(NIL);
        self.base = base;
    }

    /// A price off the cent grid: every level leaves the window for `deep`, and the window
    /// restarts, empty, on the 0.0001 grid just above `deep`'s best (the next add moves it).
    fn leave_grid(&mut self) {
        for i in 0..WINDOW {
            let l = core::mem::replace(&mut self.ladder[i], NIL);
            if l != NIL {
                self.deep.push_top(self.key_at(i), l);
            }
        }
        self.on_ladder = 0;
        self.tick = 1;
        self.base = self.deep.top().map_or(0, |t| t.key.saturating_add(1));
    }

    /// Removes the level at `price`; it must be there.
    #[inline(always)]
    pub fn remove(&mut self, price: u32) -> LevelId {
        let key = self.kind.key(price);
        let level = match self.slot_of(key).filter(|&i| self.ladder[i] != NIL) {
            Some(i) => {
                self.on_ladder -= 1;
                core::mem::replace(&mut self.ladder[i], NIL)
            }
            None => self
                .deep
                .remove(key)
                .expect("level being removed is on its side"),
        };
        if level == self.best {
            match self.next {
                NIL => self.find_new_best(),
                next => (self.best, self.top_key) = (next, self.next_key),
            }
            self.find_next_nearby();
        } else if level == self.next {
            self.next = NIL;
        }
        level
    }

    /// After the best level went, its successor not known: the highest slot still taken, else
    /// `deep`'s best.
    #[inline(always)]
    fn find_new_best(&mut self) {
        if self.on_ladder > 0 {
            let top = self
                .slot_of(self.top_key)
                .expect("the best was in the window");
            let i = self.ladder[..top]
                .iter()
                .rposition(|&l| l != NIL)
                .expect("the window holds a level");
            (self.best, self.top_key) = (self.ladder[i], self.key_at(i));
        } else {
            (self.best, self.top_key) = match self.deep.top() {
                Some(t) => (t.level, t.key),
                None => (NIL, 0),
            };
        }
    }

    /// The second best level if it is cheap to tell: in the best's line of slots below it, or
    /// `deep`'s best when the best is the window's only level; else not known.
    #[inline(always)]
    fn find_next_nearby(&mut self) {
        self.next = NIL;
        let Some(top) = self.slot_of(self.top_key).filter(|_| self.best != NIL) else {
            return;
        };
        // The slots sharing the best's cache line (the ladder is only 4-byte aligned).
        let line = top - (top.min((&self.ladder[top] as *const LevelId as usize & 63) / 4));
        if let Some(i) = self.ladder[line..top].iter().rposition(|&l| l != NIL) {
            (self.next, self.next_key) = (self.ladder[line + i], self.key_at(line + i));
        } else if self.on_ladder == 1 {
            if let Some(t) = self.deep.top() {
                (self.next, self.next_key) = (t.level, t.key);
            }
        }
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.ladder.len() * core::mem::size_of::<LevelId>() + self.deep.heap_bytes()
    }

    /// True when the side's bookkeeping is consistent: `deep` sorted and below the window, the
    /// window's count right, every key on the grid, and the best the highest level.
    pub fn is_sorted(&self) -> bool {
        let taken = self.ladder.iter().filter(|&&l| l != NIL).count();
        let deep_ok = self.deep.is_sorted()
            && self
                .deep
                .iter_best_first()
                .all(|e| e.key < self.base && self.on_grid(e.key));
        let best = self
            .ladder
            .iter()
            .rposition(|&l| l != NIL)
            .map(|i| (self.ladder[i], self.key_at(i)))
            .or(self.deep.top().map(|t| (t.level, t.key)));
        let best_ok = match best {
            Some((l, k)) => self.best == l && self.top_key == k,
            None => self.best == NIL,
        };
        let second = self.entries().nth(1);
        let next_ok = match second {
            Some((l, k)) => self.next == NIL || (self.next == l && self.next_key == k),
            None => self.next == NIL,
        };
        deep_ok && taken == self.on_ladder as usize && best_ok && next_ok
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

    /// The side against a sorted map after every step: lookups, the best, the order of the
    /// levels and the bookkeeping.
    fn check(side: &Side, model: &BTreeMap<u32, LevelId>, seed: u64, step: usize) {
        // Keys ascend towards the best on both sides.
        let want: Vec<LevelId> = model.values().rev().copied().collect();
        let got: Vec<LevelId> = side.levels().collect();
        assert_eq!(got, want, "seed {seed} step {step}: levels best first");
        assert_eq!(
            side.best(),
            want.first().copied(),
            "seed {seed} step {step}"
        );
        assert_eq!(side.len(), model.len(), "seed {seed} step {step}");
        assert!(side.is_sorted(), "seed {seed} step {step}: bookkeeping");
    }

    /// Random adds and removals on both sides, on the cent grid, the 0.0001 grid and a cent
    /// grid with the odd sub-penny price; prices drift far and wide so that the window moves up
    /// and down, spills into `deep` and leaves the grid. Every answer agrees with a sorted map.
    #[test]
    fn find_insert_remove_agree_with_a_sorted_map() {
        for seed in 1..=60u64 {
            let mut next = rng(seed);
            let (step, odd) =
                [(100u32, 0u64), (1, 0), (100, 97), (500, 0), (100, 0)][seed as usize % 5];
            for kind in [SideKind::Bid, SideKind::Ask] {
                let mut side = Side::new(kind, 0);
                let mut model: BTreeMap<u32, LevelId> = BTreeMap::new();
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
                    match (side.find(price), model.get(&key)) {
                        (Ok(l), Some(&m)) => assert_eq!(l, m, "seed {seed} step {n}"),
                        (Err(_), None) => {}
                        (got, want) => panic!("seed {seed} step {n}: {got:?} vs {want:?}"),
                    }
                    if next() % 5 < 2 && !model.is_empty() {
                        let i = next() as usize % model.len();
                        let (&k, &l) = model.iter().nth(i).unwrap();
                        let p = kind.key(k);
                        assert_eq!(side.remove(p), l, "seed {seed} step {n}");
                        model.remove(&k);
                    } else if let Err(at) = side.find(price) {
                        side.insert_at(at, price, n);
                        model.insert(key, n);
                    }
                    check(&side, &model, seed, n as usize);
                    knew_next += (side.next != NIL) as usize;
                }
                // The second best is a hint the prefetcher uses: it must often be known.
                assert!(
                    knew_next > 400,
                    "seed {seed}: second best known {knew_next} times"
                );
                // Empty it from the top down: every removal finds the next best.
                while let Some(&l) = side.levels().collect::<Vec<_>>().first() {
                    let (&k, _) = model.iter().find(|(_, &v)| v == l).unwrap();
                    let p = kind.key(k);
                    assert_eq!(side.remove(p), l, "seed {seed}");
                    model.remove(&k);
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
            let mut side = Side::new(kind, 0);
            let mut model = BTreeMap::new();
            for (n, price) in [0u32, 100, u32::MAX, u32::MAX - 99, 5_000, 1]
                .into_iter()
                .enumerate()
            {
                if let Err(at) = side.find(price) {
                    side.insert_at(at, price, n as u32);
                    model.insert(kind.key(price), n as u32);
                }
                check(&side, &model, 0, n);
            }
        }
    }
}
