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

/// CPU time the calling thread has run, ns (`CLOCK_THREAD_CPUTIME_ID`). A system call, not
/// the vDSO (about 0.2 us): for timing slices of work beside [`now_ns`], to tell time the
/// thread ran from time it waited for a CPU; never per message.
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The instant `ns` nanoseconds after this clock's start (to hand a time to code that keeps
/// `Instant`s, such as the exchange simulator's schedule).
pub fn instant_at(ns: u64) -> Instant {
    epoch() + std::time::Duration::from_nanos(ns)
}
