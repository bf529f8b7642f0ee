//! The generator's random numbers: wyrand, written out here so that the bytes a seed produces
//! never change with a dependency upgrade.

/// wyrand: 64-bit state, one multiply per draw, passes BigCrush; not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole future is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_0F71_C4C0_4E00)
    }

    /// The next 64 random bits.
    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for our `n`).
    #[inline(always)]
    pub fn below(&mut self, n: u64) -> u64 {
        scale(self.next_u64(), n)
    }

    /// Uniform in `[0, 1)`.
    #[inline(always)]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `num / 1024`.
    #[inline(always)]
    pub fn chance(&mut self, num: u64) -> bool {
        self.next_u64() & 1023 < num
    }
}

/// Uniform in `0..n` from 64 random bits drawn earlier (Lemire's multiply-shift); 0 when `n` is
/// 0. For a draw that must be made before `n` is known (the generator draws ahead to prefetch).
#[inline(always)]
pub fn scale(r: u64, n: u64) -> u64 {
    ((r as u128 * n as u128) >> 64) as u64
}
