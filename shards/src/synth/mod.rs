//! A deterministic synthetic ITCH 5.0 session, for tests, benchmarks and laptop demos.
//!
//! Owns the model of a trading day: system events in order (O S, directory and trading action for
//! every instrument, Q, order flow, M E C), an order-flow mix close to a real NASDAQ day, activity
//! skewed across names, prices that move, and displayed books that never cross or lock. The same
//! configuration always gives the same bytes, however the output is chunked.
//!
//! It is test-data machinery: it allocates as it likes and is never on the engine's path.

mod flow;
pub mod rng;
pub mod universe;

pub use flow::Generator;
pub use universe::{universe, Instrument, Scope};

/// How far from the inside adds land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// Most adds at or near the top, a thin tail to 200 ticks deep (like a real day).
    #[default]
    Realistic,
    /// Adds spread evenly over 200 ticks either side (deep books, as peers benchmark).
    Deep,
    /// A harsher day than a real one: every message's instrument uniform over the scope, adds
    /// uniform over 200 ticks either side of a fixed mid, and every execute, cancel, delete or
    /// replace aimed at a live order drawn uniformly from all live orders of the day (no
    /// preference for young ones). Mix: 40% A, 4% F, 42% D, 9% U, 2.5% E, 1.2% X, 1% P.
    Uniform,
}

impl Profile {
    /// The profile's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Realistic => "realistic",
            Profile::Deep => "deep",
            Profile::Uniform => "uniform",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GenConfig {
    /// Instrument universe.
    pub scope: Scope,
    /// Messages in the whole file, system events and directory included.
    pub messages: u64,
    /// Seed: the same configuration always gives the same bytes.
    pub seed: u64,
    /// Where adds land relative to the inside.
    pub profile: Profile,
}

/// Why a session cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenError {
    /// Fewer messages than the fixed start and end of a day need.
    TooFewMessages {
        /// Messages asked for.
        asked: u64,
        /// The least the scope needs.
        minimum: u64,
    },
}

impl core::fmt::Display for GenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GenError::TooFewMessages { asked, minimum } => write!(
                f,
                "{asked} messages is too few: the system events and one directory and trading \
                 action message per instrument alone take {minimum}"
            ),
        }
    }
}

impl std::error::Error for GenError {}

/// Generates a whole session into memory (BinaryFILE framing).
pub fn generate(cfg: &GenConfig) -> Result<Vec<u8>, GenError> {
    let mut g = Generator::new(cfg)?;
    let mut out = Vec::with_capacity((cfg.messages as usize).saturating_mul(36));
    while g.fill(&mut out, u64::MAX) > 0 {}
    Ok(out)
}
