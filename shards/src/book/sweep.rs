//! A sliced copy of an array's kept slots as they were at one instant, taken while the array
//! goes on changing: how a checkpoint captures a shard's live orders and trade memory without
//! holding the shard for the whole scan.
//!
//! The array is cut into chunks of [`CHUNK`] slots, all pending at the instant. The shard takes
//! a few pending chunks at a time between batches ([`Sweep::step`]), and the array's owner calls
//! [`Sweep::before_write`] before it writes any slot, which takes that slot's chunk first if it
//! is still pending. So every chunk is read exactly once, while it still holds what it held at
//! the instant, and every slot kept then is copied exactly once whatever moves follow (a move
//! writes both of its slots, so both chunks are taken before it). When the owner replaces the
//! array (growth), it hands the old one over ([`Sweep::freeze`]); that one no longer changes,
//! so the rest is read from it and writes to the new one need nothing.
//!
//! Why chunks of 4,096 slots: a chunk of orders is 64 KiB, read in 6-15 us, so a write that
//! lands in a pending chunk delays its message by about that much, once per chunk; smaller
//! chunks make the pending bitmap and the step's bookkeeping the cost instead.
//!
//! Never allocates after [`Sweep::new`] except in the copy (reserved for what was kept at the
//! instant), and never reads a chunk twice.

use super::pages::PageArray;

/// Slots a chunk holds, as a power of two.
pub const CHUNK_BITS: u32 = 12;
/// Slots a chunk holds.
pub const CHUNK: usize = 1 << CHUNK_BITS;

/// The copy in progress of one array.
pub struct Sweep<T: Copy> {
    /// One bit per chunk still to read.
    pending: Vec<u64>,
    /// Chunks still to read.
    left: usize,
    /// No chunk below this one is pending (where [`Sweep::step`] looks next).
    next: usize,
    /// The array as it was at the instant, once its owner replaced it.
    frozen: Option<PageArray<T>>,
    /// What the chunks read so far kept.
    out: Vec<T>,
    keep: fn(&T) -> bool,
    /// Chunks read because a write was about to land in them.
    forced: u64,
}

impl<T: Copy> Sweep<T> {
    /// A copy of the `len`-slot array as it is now, keeping the slots `keep` says; `expect`
    /// is how many that will be (room reserved for them).
    pub fn new(len: usize, expect: usize, keep: fn(&T) -> bool) -> Self {
        let chunks = len.div_ceil(CHUNK);
        let mut pending = vec![u64::MAX; chunks.div_ceil(64)];
        if chunks % 64 != 0 {
            *pending.last_mut().expect("at least one word") = (1u64 << (chunks % 64)) - 1;
        }
        Sweep {
            pending,
            left: chunks,
            next: 0,
            frozen: None,
            out: Vec::with_capacity(expect),
            keep,
            forced: 0,
        }
    }

    /// Slot `i` of `live` (the array this copies, not yet replaced) is about to be written.
    #[inline(always)]
    pub fn before_write(&mut self, i: usize, live: &[T]) {
        let c = i >> CHUNK_BITS;
        // No word for `c`: the array was empty at the instant, and the sweep covers nothing.
        let pending = self
            .pending
            .get(c >> 6)
            .is_some_and(|w| w >> (c & 63) & 1 != 0);
        if pending && self.frozen.is_none() {
            self.forced += 1;
            self.take(c, live);
        }
    }

    /// The owner replaced the array; `old` is what it was. The first replacement is the
    /// instant's array (nothing was written to it that was not read first); later ones are not.
    pub fn freeze(&mut self, old: PageArray<T>) {
        if self.frozen.is_none() {
            self.frozen = Some(old);
        }
    }

    /// Reads up to `chunks` pending chunks (of `live`, or of the frozen array); true when
    /// none is left.
    pub fn step(&mut self, live: &[T], chunks: usize) -> bool {
        let frozen = self.frozen.take();
        let src = frozen.as_deref().unwrap_or(live);
        for _ in 0..chunks {
            let Some(c) = self.next_pending() else { break };
            self.take(c, src);
        }
        self.frozen = frozen;
        self.left == 0
    }

    /// True when every chunk has been read.
    pub fn done(&self) -> bool {
        self.left == 0
    }

    /// Chunks read because a write was about to land in them.
    pub fn forced(&self) -> u64 {
        self.forced
    }

    /// The kept slots, in no particular order. Only once [`done`](Self::done).
    pub fn finish(self) -> Vec<T> {
        assert_eq!(self.left, 0, "a sweep finished with chunks unread");
        self.out
    }

    fn next_pending(&mut self) -> Option<usize> {
        let mut w = self.next >> 6;
        while w < self.pending.len() {
            if self.pending[w] != 0 {
                self.next = w << 6 | self.pending[w].trailing_zeros() as usize;
                return Some(self.next);
            }
            w += 1;
        }
        self.next = w << 6;
        None
    }

    #[cold]
    #[inline(never)]
    fn take(&mut self, c: usize, src: &[T]) {
        debug_assert!(
            self.pending[c >> 6] >> (c & 63) & 1 != 0,
            "chunk read twice"
        );
        self.pending[c >> 6] &= !(1u64 << (c & 63));
        self.left -= 1;
        let lo = c << CHUNK_BITS;
        let hi = (lo + CHUNK).min(src.len());
        let keep = self.keep;
        self.out.extend(src[lo..hi].iter().filter(|s| keep(s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(x: &u32) -> bool {
        *x != 0
    }

    /// The array at the instant, as a sorted list of kept values.
    fn truth(a: &[u32]) -> Vec<u32> {
        let mut v: Vec<u32> = a.iter().copied().filter(kept).collect();
        v.sort_unstable();
        v
    }

    #[rstest::rstest]
    #[case::one_partial_chunk(100, 1)]
    #[case::exact_chunks(CHUNK * 3, 2)]
    #[case::many_words(CHUNK * 130 + 7, 3)]
    fn writes_between_steps_never_show(#[case] len: usize, #[case] seed: u64) {
        let mut a: Vec<u32> = (0..len as u32).map(|i| i % 3).collect();
        let want = truth(&a);
        let mut s = Sweep::new(a.len(), want.len(), kept);
        let mut x = seed;
        while !s.step(&a, 1) {
            // A few writes anywhere, each announced first, and some moves (two writes).
            for _ in 0..5 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let (i, j) = ((x >> 33) as usize % len, (x >> 13) as usize % len);
                s.before_write(i, &a);
                s.before_write(j, &a);
                a.swap(i, j);
                a[i] = a[i].wrapping_add(7);
            }
        }
        let mut got = s.finish();
        got.sort_unstable();
        assert_eq!(got, want, "seed {seed}");
    }

    #[test]
    fn a_frozen_array_is_read_instead_of_the_live_one() {
        let mut old = PageArray::<u32>::filled(CHUNK * 2, 1);
        old[5] = 0;
        let live = vec![9u32; CHUNK * 4];
        let mut s = Sweep::new(old.len(), CHUNK * 2 - 1, kept);
        assert!(!s.step(&old, 1));
        s.freeze(old);
        s.before_write(CHUNK * 3, &live);
        assert!(s.step(&live, 8));
        let got = s.finish();
        assert_eq!(got.len(), CHUNK * 2 - 1);
        assert!(got.iter().all(|&v| v == 1));
    }
}
