//! Fixed-length arrays in anonymous memory that asks the kernel for transparent huge pages.
//!
//! Why: the order table is touched at random across its whole length (tens of MiB for a
//! 3,500-instrument day). With 4 KiB pages nearly every lookup also misses the TLB, and under a
//! hypervisor each page walk is itself a chain of misses; software prefetches stall on them. On
//! this project's 2-vCPU VM, huge pages took the v3k replay from 3.4 s to 2.2 s (20M messages).
//! `MADV_HUGEPAGE` is only a hint: where THP is off the array still works, at 4 KiB pages.
//!
//! Holds plain `Copy` data only; never grows (the owner rebuilds into a bigger array).

use memmap2::{Advice, MmapMut};

/// Alignment that lets the kernel back the whole array with 2 MiB pages.
const HUGE: usize = 2 << 20;

/// Below this many bytes a huge page would be mostly empty: use ordinary pages.
const WORTH_IT: usize = HUGE;

/// A `[T]` of fixed length in its own anonymous mapping.
pub struct PageArray<T: Copy> {
    map: MmapMut,
    offset: usize,
    len: usize,
    _t: core::marker::PhantomData<T>,
}

impl<T: Copy> PageArray<T> {
    /// `len` copies of `value`. Aborts like `Vec` does when memory is exhausted.
    pub fn filled(len: usize, value: T) -> Self {
        const { assert!(core::mem::align_of::<T>() <= 4096) };
        let bytes = len.max(1) * core::mem::size_of::<T>();
        let huge = bytes >= WORTH_IT;
        let pad = if huge { HUGE } else { 0 };
        let map = MmapMut::map_anon(bytes + pad).unwrap_or_else(|e| {
            panic!("out of memory: cannot map {bytes} bytes for an order table: {e}")
        });
        let base = map.as_ptr() as usize;
        let offset = if huge {
            base.next_multiple_of(HUGE) - base
        } else {
            0
        };
        if huge {
            // A hint: failure (THP compiled out, `never`) only costs speed.
            let _ = map.advise_range(Advice::HugePage, offset, bytes);
        }
        let mut a = PageArray {
            map,
            offset,
            len,
            _t: core::marker::PhantomData,
        };
        a.fill(value);
        a
    }

    fn fill(&mut self, value: T) {
        for s in self.iter_mut() {
            *s = value;
        }
    }

    /// Bytes mapped.
    pub fn mapped_bytes(&self) -> usize {
        self.map.len()
    }
}

impl<T: Copy> core::ops::Deref for PageArray<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: the mapping is page aligned plus `offset` (a multiple of 2 MiB or zero), so it
        // is aligned for `T` (align <= 4096, checked above); it holds `len` initialised `T`s
        // (written by `fill` before any read) and lives as long as `self`.
        unsafe { core::slice::from_raw_parts(self.map.as_ptr().add(self.offset).cast(), self.len) }
    }
}

impl<T: Copy> core::ops::DerefMut for PageArray<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique. Zeroed anonymous memory
        // is read only through `fill`'s writes, which never read the old bytes as a `T`.
        unsafe {
            core::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(self.offset).cast(), self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PageArray;

    #[test]
    fn small_and_huge_arrays_hold_what_is_written() {
        for len in [0usize, 1, 1000, (4 << 20) / 16 + 3] {
            let mut a = PageArray::filled(len, (7u64, 9u32));
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|&x| x == (7, 9)));
            if len > 0 {
                a[len - 1] = (1, 2);
                assert_eq!(a[len - 1], (1, 2));
                assert_eq!(a.as_ptr() as usize % 8, 0);
            }
        }
    }
}
