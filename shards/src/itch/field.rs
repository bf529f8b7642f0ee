//! Big-endian field access for fixed-layout ITCH messages.
//!
//! Owns the one rule every message shares: integers are big-endian and unaligned, alphas are raw
//! bytes. Never allocates, never panics on a correctly sized buffer: message views only call these
//! with constant offsets into fixed-size arrays, so the compiler removes the bounds checks.

/// A field type that can live at a fixed offset in a message.
pub trait Field: Copy {
    /// Width on the wire, in bytes.
    const SIZE: usize;
    /// Reads the field at `off`. `b` must hold at least `off + SIZE` bytes.
    fn get(b: &[u8], off: usize) -> Self;
    /// Writes the field at `off`. `b` must hold at least `off + SIZE` bytes.
    fn put(self, b: &mut [u8], off: usize);
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            #[inline(always)]
            fn get(b: &[u8], off: usize) -> Self {
                let mut raw = [0u8; core::mem::size_of::<$t>()];
                raw.copy_from_slice(&b[off..off + Self::SIZE]);
                <$t>::from_be_bytes(raw)
            }
            #[inline(always)]
            fn put(self, b: &mut [u8], off: usize) {
                b[off..off + Self::SIZE].copy_from_slice(&self.to_be_bytes());
            }
        }
    )*};
}
int_field!(u8, u16, u32, u64);

impl<const N: usize> Field for [u8; N] {
    const SIZE: usize = N;
    #[inline(always)]
    fn get(b: &[u8], off: usize) -> Self {
        let mut raw = [0u8; N];
        raw.copy_from_slice(&b[off..off + N]);
        raw
    }
    #[inline(always)]
    fn put(self, b: &mut [u8], off: usize) {
        b[off..off + N].copy_from_slice(&self);
    }
}

/// Reads the 6-byte nanoseconds-since-midnight timestamp at `off`.
#[inline(always)]
pub fn get_u48(b: &[u8], off: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw[2..].copy_from_slice(&b[off..off + 6]);
    u64::from_be_bytes(raw)
}

/// Feed time of a message's raw bytes: every ITCH 5.0 type carries its nanoseconds since
/// midnight at bytes 5..11. `None` for bytes too short to hold one.
#[inline(always)]
pub fn timestamp(msg: &[u8]) -> Option<u64> {
    (msg.len() >= 11).then(|| get_u48(msg, 5))
}

/// Writes the low 48 bits of `v` as a 6-byte timestamp at `off`.
#[inline(always)]
pub fn put_u48(v: u64, b: &mut [u8], off: usize) {
    b[off..off + 6].copy_from_slice(&v.to_be_bytes()[2..]);
}

/// Largest value a 6-byte timestamp can carry.
pub const U48_MAX: u64 = (1 << 48) - 1;
