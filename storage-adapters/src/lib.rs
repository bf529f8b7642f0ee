//! `storage-adapters`: what the engine's adapter cores run to hand events on to databases.
//!
//! - [`adapter`]: the loop that runs one sink on its own core: batching, spooling, retries.
//! - [`rows`]: row batches and their spool encoding.
//! - [`pg`]: the PostgreSQL sink (binary COPY into staging, insert skipping existing keys).
//! - [`redis`]: the Redis sink (hashes and pub/sub through fred, trade streams through [`resp`]).
//! - [`resp`]: a bare RESP2 pipeline in one reused buffer, the Redis sink's bulk path.
//! - [`neo4j`]: the Bolt sink (one `UNWIND` transaction per batch).
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
pub mod resp;
pub mod rows;
pub mod spool;
