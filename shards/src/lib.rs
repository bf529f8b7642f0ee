//! `shards`: everything one shard core owns, and the feed format it reads.
//!
//! - [`itch`]: NASDAQ TotalView-ITCH 5.0, all 23 message types, zero-copy decode, encode, framing.
//! - [`book`]: full-depth (L3) order books for the instruments a shard owns, with per-instrument
//!   trade statistics and anomaly counters.
//! - [`events`]: what the books emit (trades, BBO changes, breaks) and the sink trait.
//! - [`bars`]: OHLCV bars from printable trades, closed by feed time.
//! - [`checkpoint`]: a shard's whole state at one point of the feed, as checked bytes and back.
//! - [`mold`]: MoldUDP64, the UDP transport ITCH arrives in live, shared by sender and receiver.
//! - [`synth`]: a deterministic synthetic ITCH session generator for tests and benchmarks.
//!
//! What this crate must never do: block, perform I/O, take a lock, or allocate per message on the
//! apply path. Bad input is counted or returned as an error value; it never panics. Panics here are
//! reserved for broken internal invariants, which are bugs.

#![warn(missing_docs)]

pub mod bars;
pub mod book;
pub mod checkpoint;
pub mod events;
pub mod itch;
pub mod mold;
pub mod price;
pub mod symbol;
pub mod synth;
