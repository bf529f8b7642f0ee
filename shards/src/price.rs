//! Price(4) and Price(8) as decimal text.
//!
//! Owns the one formatting rule that readers rely on: four decimals for Price(4), exact integer
//! arithmetic, no floating point anywhere.

use core::fmt;

/// A Price(4) value shown with exactly four decimals (`1872300` as `187.2300`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Px4(pub u64);

impl fmt::Display for Px4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

/// A Price(8) value shown with exactly eight decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Px8(pub u64);

impl fmt::Display for Px8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / 100_000_000, self.0 % 100_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_decimals_always() {
        assert_eq!(Px4(1_872_300).to_string(), "187.2300");
        assert_eq!(Px4(5).to_string(), "0.0005");
        assert_eq!(Px4(0).to_string(), "0.0000");
        assert_eq!(Px4(u32::MAX as u64).to_string(), "429496.7295");
        assert_eq!(Px8(123_456_789_012).to_string(), "1234.56789012");
    }
}
