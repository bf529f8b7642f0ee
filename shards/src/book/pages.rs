//! Fixed-length arrays in anonymous memory that asks the kernel for transparent huge pages.
//!
//! Why: the order table is touched at random across its whole length (tens of MiB for a
//! 3,500-instrument day). With 4 KiB pages nearly every lookup also misses the TLB, and under a
//! hypervisor each page walk is itself a chain of misses; software prefetches stall on them. On
//! this project's 2-vCPU VM, huge pages took the v3k replay from 3.4 s to 2.2 s (20M messages).
//! `MADV_HUGEPAGE` is only a hint: where THP is off the array still works, at 4 KiB pages.
//!
//! The shard's ladder arena lives here too, for the same reason: thousands of sides' windows.
//!
//! Holds plain `Copy` data only; never grows (the owner rebuilds into a bigger array, or
//! reserves the largest it will need as zeroed pages, which cost nothing until touched).

use memmap2::{Advice, MmapMut};

/// Alignment that lets the kernel back the whole array with 2 MiB pages.
const HUGE: usize = 2 << 20;

/// Below this many bytes a huge page would be mostly empty: use ordinary pages.
const WORTH_IT: usize = HUGE;

/// A `[T]` of fixed length in its own anonymous mapping.
pub struct PageArray<T: Copy> {
    /// Owns the memory; read only through `ptr`.
    map: MmapMut,
    /// The first `T`: the mapping's start, moved up to a 2 MiB boundary for a huge array.
    /// Kept, not recomputed, because every access of the hot arrays goes through it.
    ptr: core::ptr::NonNull<T>,
    len: usize,
}

// SAFETY: a `PageArray` owns its mapping outright (like a `Vec`); `ptr` points into it and is
// never shared with anything else.
unsafe impl<T: Copy + Send> Send for PageArray<T> {}
// SAFETY: as above; shared access only reads.
unsafe impl<T: Copy + Sync> Sync for PageArray<T> {}

/// Makes every page under `s` resident now (a volatile read and write back of one byte per
/// 4 KiB page: nothing changes), so a hot path does not fault them in later. For memory the
/// kernel or the allocator hands out as untouched zero pages.
pub fn prefault<T: Copy>(s: &mut [T]) {
    let bytes = core::mem::size_of_val(s);
    let base = s.as_mut_ptr() as *mut u8;
    for off in (0..bytes).step_by(4096) {
        // SAFETY: `off < bytes`, inside `s`, which we borrow mutably; the byte is written back
        // unchanged, so every `T` keeps its value.
        unsafe {
            let p = base.add(off);
            p.write_volatile(p.read_volatile());
        }
    }
}

/// A type for which all-zero bytes are a valid value: fresh anonymous memory, which the kernel
/// hands out zeroed, already holds an array of it.
///
/// # Safety
/// Every byte zero must be a valid value of the type.
pub unsafe trait Zeroed: Copy {}

impl<T: Zeroed> PageArray<T> {
    /// `len` all-zero `T`s. Writes nothing: only the pages touched later become resident (and
    /// are zeroed by the kernel then), so a large array costs address space until it is used,
    /// and an array that would otherwise grow by copying can be reserved at its largest.
    pub fn zeroed(len: usize) -> Self {
        Self::map(len)
    }
}

impl<T: Copy> PageArray<T> {
    /// `len` copies of `value`. Aborts like `Vec` does when memory is exhausted.
    pub fn filled(len: usize, value: T) -> Self {
        let mut a = Self::map(len);
        a.fill(value);
        a
    }

    /// A mapping for `len` `T`s, zeroed by the kernel: valid only as bytes until filled.
    fn map(len: usize) -> Self {
        const { assert!(core::mem::align_of::<T>() <= 4096) };
        let bytes = len.max(1) * core::mem::size_of::<T>();
        let huge = bytes >= WORTH_IT;
        let pad = if huge { HUGE } else { 0 };
        let mut map = MmapMut::map_anon(bytes + pad).unwrap_or_else(|e| {
            panic!("out of memory: cannot map {bytes} bytes for the books: {e}")
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
        let ptr = map.as_mut_ptr().wrapping_add(offset) as *mut T;
        PageArray {
            ptr: core::ptr::NonNull::new(ptr).expect("a mapping is never at address 0"),
            map,
            len,
        }
    }

    fn fill(&mut self, value: T) {
        for s in self.iter_mut() {
            *s = value;
        }
    }

    /// Makes every page of the array resident now, so no access faults one in later: for
    /// arrays the hot path touches at random, before the clock starts. Writes one zero per
    /// 4 KiB page (a page of fresh anonymous memory is zero already, so nothing changes).
    pub fn touch(&mut self)
    where
        T: Zeroed,
    {
        self.touch_first(self.len);
    }

    /// As [`touch`](Self::touch), for the first `n` items only (all of them if fewer).
    pub fn touch_first(&mut self, n: usize)
    where
        T: Zeroed,
    {
        let n = n.min(self.len);
        prefault(&mut self[..n]);
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
        // SAFETY: `ptr` is the mapping's page-aligned start plus a multiple of 2 MiB or zero, so it
        // is aligned for `T` (align <= 4096, checked above); it holds `len` initialised `T`s
        // (the kernel's zeroes for a `Zeroed` type, else written by `fill` before any read) and
        // lives as long as `self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> core::ops::DerefMut for PageArray<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique. Zeroed anonymous memory
        // is a valid `T` for a `Zeroed` type, and otherwise is written by `fill`, which never
        // reads the old bytes as a `T`, before anything else sees it.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// A vector of at most a fixed number of `T`s in one [`PageArray`] reserved at that size: it
/// never moves or copies, and uses resident memory only for what it holds.
pub struct PageVec<T: Zeroed> {
    items: PageArray<T>,
    len: usize,
}

impl<T: Zeroed> PageVec<T> {
    /// Makes the first `n` slots resident now (see [`PageArray::touch`]).
    pub fn touch_first(&mut self, n: usize) {
        self.items.touch_first(n);
    }

    /// Empty, with room for `cap` items.
    pub fn with_capacity(cap: usize) -> Self {
        PageVec {
            items: PageArray::zeroed(cap),
            len: 0,
        }
    }

    /// Appends `item`. Panics past the capacity, which the owner sizes to what can exist.
    pub fn push(&mut self, item: T) {
        assert!(self.len < self.items.len(), "a PageVec is full");
        self.items[self.len] = item;
        self.len += 1;
    }
}

impl<T: Zeroed> core::ops::Deref for PageVec<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` never exceeds the array's length (`push` checks), and the first `len`
        // items are initialised (zeroed, then pushed).
        unsafe { core::slice::from_raw_parts(self.items.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroed> core::ops::DerefMut for PageVec<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.items.ptr.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::{PageArray, Zeroed};

    #[derive(Clone, Copy, PartialEq, Debug)]
    struct Pair(u64, u32);
    // SAFETY: two integers; zero is a valid value of each.
    unsafe impl Zeroed for Pair {}

    #[test]
    fn a_page_vec_holds_what_is_pushed_up_to_its_capacity() {
        let mut v = super::PageVec::<Pair>::with_capacity(3);
        assert!(v.is_empty());
        v.push(Pair(1, 2));
        v.push(Pair(3, 4));
        assert_eq!(&v[..], &[Pair(1, 2), Pair(3, 4)]);
        v.push(Pair(5, 6));
        assert!(std::panic::catch_unwind(move || v.push(Pair(7, 8))).is_err());
    }

    #[test]
    fn zeroed_arrays_read_as_zero_and_hold_what_is_written() {
        for len in [0usize, 1, (64 << 20) / 16] {
            let mut a = PageArray::<Pair>::zeroed(len);
            assert_eq!(a.len(), len);
            if len > 0 {
                assert_eq!((a[0], a[len - 1]), (Pair(0, 0), Pair(0, 0)));
                a[len / 2] = Pair(3, 4);
                assert_eq!(a[len / 2], Pair(3, 4));
            }
        }
    }

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
