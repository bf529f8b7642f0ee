//! Order reference -> order slot: an open-addressing hash table with linear probing.
//!
//! Why this shape: ITCH order references are unique for the day and handed out in increasing
//! order across the whole market, and most orders die young. The home slot keeps each run of four
//! consecutive references together in one 64-byte line (so an add, and the cancel that soon
//! follows it, touch a line that is still hot) but scatters the runs by a multiplicative hash.
//! Pure identity hashing (low bits as the slot) was tried and fails on a real mix: the dense run
//! of recent references laps the table and collides with long-lived survivors, every collision
//! pushes the rest of the run one slot further, and probe runs grew past 64 at 40% load on the
//! v3k session. Deletion shifts entries back instead of leaving tombstones, so probe runs never
//! rot over a long day.
//!
//! A probe run longer than [`MAX_PROBE`] (a hostile file) switches the table to hashing every
//! reference on its own, once, and rehashes. Never allocates except when it grows past its
//! reserved capacity.

/// Slot value meaning "empty".
const EMPTY: u32 = u32::MAX;
/// Probe length that makes the table give up on identity hashing.
pub const MAX_PROBE: usize = 64;
/// Fibonacci hashing multiplier (2^64 / golden ratio).
const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    key: u64,
    val: u32,
}

const VACANT: Slot = Slot { key: 0, val: EMPTY };

/// Maps live order references to their slot in the order pool.
pub struct RefIndex {
    slots: Vec<Slot>,
    mask: usize,
    shift: u32,
    len: usize,
    scrambled: bool,
}

impl RefIndex {
    /// A table that holds `live` entries before it must grow.
    pub fn with_capacity(live: usize) -> Self {
        let cap = (live.max(8) * 2).next_power_of_two();
        RefIndex {
            slots: vec![VACANT; cap],
            mask: cap - 1,
            shift: 64 - cap.trailing_zeros(),
            len: 0,
            scrambled: false,
        }
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no order is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the table fell back to multiplicative hashing.
    pub fn scrambled(&self) -> bool {
        self.scrambled
    }

    /// Bytes the table holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Slot>()
    }

    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        if self.scrambled {
            (key.wrapping_mul(FIB) >> self.shift) as usize
        } else {
            // Runs of four consecutive references share a line; runs land by Fibonacci hashing.
            let run = ((key >> 2).wrapping_mul(FIB) >> (self.shift + 2)) as usize;
            (run << 2 | (key & 3) as usize) & self.mask
        }
    }

    /// Asks the cache for `key`'s home slot; changes nothing.
    #[inline(always)]
    pub fn prefetch(&self, key: u64) {
        crate::book::prefetch::touch(self.slots.as_ptr().wrapping_add(self.home(key)));
    }

    /// The value for `key`, if live.
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<u32> {
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == key {
                return Some(s.val);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts `key -> val`; returns false (and changes nothing) if `key` is already live.
    #[inline]
    pub fn insert(&mut self, key: u64, val: u32) -> bool {
        debug_assert_ne!(val, EMPTY);
        if (self.len + 1) * 2 > self.slots.len() {
            self.rebuild(self.slots.len() * 2, self.scrambled);
        }
        let mut i = self.home(key);
        let mut probe = 0;
        loop {
            let s = self.slots[i];
            if s.val == EMPTY {
                self.slots[i] = Slot { key, val };
                self.len += 1;
                if probe > MAX_PROBE && !self.scrambled {
                    self.rebuild(self.slots.len(), true);
                }
                return true;
            }
            if s.key == key {
                return false;
            }
            i = (i + 1) & self.mask;
            probe += 1;
        }
    }

    /// Removes `key`; returns its value if it was live.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let mut i = self.home(key);
        loop {
            let s = self.slots[i];
            if s.val == EMPTY {
                return None;
            }
            if s.key == key {
                break;
            }
            i = (i + 1) & self.mask;
        }
        let val = self.slots[i].val;
        self.len -= 1;
        // Backward-shift: pull later members of the probe run into the hole so that every entry
        // stays reachable from its home slot without tombstones.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let s = self.slots[j];
            if s.val == EMPTY {
                break;
            }
            let home = self.home(s.key);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slots[hole] = VACANT;
        Some(val)
    }

    fn rebuild(&mut self, cap: usize, scrambled: bool) {
        let old = core::mem::replace(&mut self.slots, vec![VACANT; cap]);
        self.mask = cap - 1;
        self.shift = 64 - cap.trailing_zeros();
        self.scrambled = scrambled;
        self.len = 0;
        for s in old.into_iter().filter(|s| s.val != EMPTY) {
            let mut i = self.home(s.key);
            while self.slots[i].val != EMPTY {
                i = (i + 1) & self.mask;
            }
            self.slots[i] = s;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check_against_model(keys: impl Iterator<Item = u64>, seed: u64) {
        let mut t = RefIndex::with_capacity(4);
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
                assert_eq!(t.insert(k, n as u32), fresh, "seed {seed}");
                model.entry(k).or_insert(n as u32);
            }
            assert_eq!(t.len(), model.len(), "seed {seed}");
        }
        for (k, v) in &model {
            assert_eq!(t.get(*k), Some(*v), "seed {seed}");
        }
        assert_eq!(t.get(u64::MAX - 7), model.get(&(u64::MAX - 7)).copied());
    }

    #[test]
    fn sequential_references_match_a_hashmap() {
        check_against_model(1_000..20_000u64, 7);
    }

    #[test]
    fn strides_and_long_lived_survivors_keep_probes_short() {
        check_against_model((0..5_000u64).map(|i| i << 16), 11);
        // A day's shape: increasing references, most cancels young, some at any age, about 50k
        // live. Identity hashing (low bits as the slot) failed exactly this at 40% load.
        let mut t = RefIndex::with_capacity(1 << 16);
        let mut live: Vec<u64> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for r in 0..400_000u64 {
            assert!(t.insert(r, r as u32));
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
                assert_eq!(t.remove(k), Some(k as u32));
            }
        }
        assert!(!t.scrambled(), "no probe run reached {MAX_PROBE}");
    }

    #[test]
    fn colliding_keys_fall_back_to_scrambling() {
        let mut t = RefIndex::with_capacity(1 << 10);
        let target = t.home(0);
        let hostile: Vec<u64> = (0..)
            .map(|k: u64| k * 4)
            .filter(|&k| t.home(k) == target)
            .take(200)
            .collect();
        for (i, &k) in hostile.iter().enumerate() {
            assert!(t.insert(k, i as u32));
        }
        assert!(t.scrambled());
        for (i, &k) in hostile.iter().enumerate() {
            assert_eq!(t.get(k), Some(i as u32));
        }
    }

    #[test]
    fn duplicate_insert_is_refused() {
        let mut t = RefIndex::with_capacity(4);
        assert!(t.insert(5, 1));
        assert!(!t.insert(5, 2));
        assert_eq!(t.get(5), Some(1));
        assert_eq!(t.remove(5), Some(1));
        assert_eq!(t.remove(5), None);
        assert!(t.is_empty());
    }
}
