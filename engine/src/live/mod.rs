//! The live feed: MoldUDP64 over UDP on one or two lines, arbitrated, with gap recovery.
//!
//! - [`arbiter`]: sequence arbitration, gaps, re-requests, the hold buffer (pure logic).
//! - [`recv`]: batched nonblocking receive (`recvmmsg`).
//! - [`source`]: the receive loop on the feed core, a [`crate::runtime::ingress::Source`].
//! - [`gauges`]: its counters for `/metrics`, published every few milliseconds.
//! - [`capture`]: what was applied, as pcap; [`replay`]: a capture fed back in.
//!
//! Never shares code with the exchange simulator beyond the wire codec and endpoint setup.

pub mod arbiter;
pub mod capture;
pub mod gauges;
pub mod recv;
pub mod replay;
pub mod source;
