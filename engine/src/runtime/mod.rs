//! The thread-per-core runtime (in progress).

pub mod batch;
pub mod ring;
