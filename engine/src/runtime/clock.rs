//! The one clock every core stamps batches with: nanoseconds since the process started, from
//! `CLOCK_MONOTONIC` (std's `Instant`).
//!
//! Why this clock: it is the same across cores (the kernel keeps it consistent, unlike a raw
//! TSC read on a machine whose TSCs are not synchronised), it never jumps with wall-clock
//! changes, and through the vDSO it costs about 20 ns here, paid once per batch, not per message.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the first call in this process.
#[inline]
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The instant `ns` nanoseconds after this clock's start (to hand a time to code that keeps
/// `Instant`s, such as the exchange simulator's schedule).
pub fn instant_at(ns: u64) -> Instant {
    epoch() + std::time::Duration::from_nanos(ns)
}
