//! The live feed: MoldUDP64 over UDP on one or two lines, arbitrated, with gap recovery.
//!
//! - [`arbiter`]: sequence arbitration, gaps, re-requests, the hold buffer (pure logic).

pub mod arbiter;
