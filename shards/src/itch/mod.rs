//! NASDAQ TotalView-ITCH 5.0: message layouts, zero-copy decoding, encoding and file framing.
//!
//! Owns the wire format and nothing else: no book logic, no I/O. Decoding never allocates and
//! never copies; it hands out typed views over the caller's bytes. All 23 types of ITCH 5.0 are
//! here, the 2015 spec's twenty plus `J`, `h` and `O` added later.

pub mod field;
pub mod framing;
pub mod messages;

pub use framing::{frame_at, resync, walk, FrameError, FrameErrorKind, WalkStats};
pub use messages::*;
