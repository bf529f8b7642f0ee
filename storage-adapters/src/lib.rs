//! `storage-adapters`: what the engine's adapter cores run to hand events on to databases.
//!
//! - [`adapter`]: the loop that runs one sink on its own core: batching, spooling, retries.
//! - [`rows`]: row batches and their spool encoding.
//! - [`pg`]: the PostgreSQL sink (binary COPY into staging, insert skipping existing keys).
//! - [`spool`]: an append-only, checksummed, memory-mapped log per sink, where events wait while
//!   their database cannot take them, and which drains in order when it can.
//!
//! What this crate must never do: run on a shard core, or make a shard wait on a database (sinks
//! consume from rings on their own cores and spool what they cannot write); lose or duplicate an
//! event (writes are idempotent by natural keys and the spool is checked on every read).

#![warn(missing_docs)]

pub mod adapter;
pub mod neo4j;
pub mod pg;
pub mod redis;
pub mod rows;
pub mod spool;
