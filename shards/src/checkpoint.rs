//! A shard's checkpoint: its whole state at one point of the feed, as bytes and back.
//!
//! The bytes are a 32-byte header and an rkyv archive of [`ShardState`]:
//! `magic "TKCKPT01" | version u32 LE | crc32(archive) u32 LE | archive length u64 LE | 0 u64 |
//! archive | zero padding`, the whole padded to a multiple of 4,096 bytes so that it can be
//! written with direct I/O. [`decode`] checks the magic, the version, the length and the
//! checksum before rkyv's own validation, so a truncated, torn or flipped file is one clear
//! error naming what is wrong, never a panic and never a wrong book.
//!
//! Owns the format only: the engine decides when to take one, writes it (from the shard's own
//! reactor) and reads it back (memory-mapped). Never does I/O.

use crate::bars::ClockState;
use crate::book::checkpoint::BooksState;
use rkyv::{Archive, Deserialize, Serialize};

/// First bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"TKCKPT01";
/// Format version (bump on any change to [`ShardState`]).
pub const VERSION: u32 = 1;
/// Header bytes before the archive (keeps the archive 16-byte aligned in a mapped file).
pub const HEADER: usize = 32;
/// Files are padded to a multiple of this (direct I/O's unit).
pub const BLOCK: usize = 4096;

/// One shard's state after the feed's first `applied` messages.
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct ShardState {
    /// This shard's index.
    pub shard: u32,
    /// Shards the engine had (a checkpoint only fits an engine that splits instruments alike).
    pub shards: u32,
    /// Messages of the feed the engine had applied: the next one to apply is `applied + 1`
    /// (MoldUDP64 numbers messages from 1).
    pub applied: u64,
    /// The MoldUDP64 session the feed was (spaces for a file).
    pub session: [u8; 10],
    /// Feed time of the last message applied, ns since midnight.
    pub feed_time: u64,
    /// The books.
    pub books: BooksState,
    /// Open bars, one clock per bar length.
    pub clocks: Vec<ClockState>,
}

/// What is wrong with a checkpoint's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Shorter than its header says (a write cut short).
    Truncated {
        /// Bytes there.
        have: usize,
        /// Bytes the header says.
        need: usize,
    },
    /// Not a checkpoint, or one of another format version.
    Foreign,
    /// The archive fails its checksum (torn or flipped bytes).
    Checksum,
    /// The archive passed its checksum but does not validate (a bug, or another build).
    Invalid(String),
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Truncated { have, need } => {
                write!(f, "truncated: {have} bytes of {need}")
            }
            Damage::Foreign => f.write_str("not a tickcore checkpoint of this version"),
            Damage::Checksum => f.write_str("fails its checksum (torn or corrupted)"),
            Damage::Invalid(e) => write!(f, "does not validate: {e}"),
        }
    }
}

/// The file bytes of `s` (allocates; the engine calls it between batches).
pub fn encode(s: &ShardState) -> Vec<u8> {
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(s).expect("plain data always archives");
    let total = (HEADER + archive.len()).div_ceil(BLOCK) * BLOCK;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&archive).to_le_bytes());
    out.extend_from_slice(&(archive.len() as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&archive);
    out.resize(total, 0);
    out
}

/// The state in `bytes` (a whole file), checked.
pub fn decode(bytes: &[u8]) -> Result<ShardState, Damage> {
    if bytes.len() < HEADER {
        return Err(Damage::Truncated {
            have: bytes.len(),
            need: HEADER,
        });
    }
    if &bytes[..8] != MAGIC || u32_at(bytes, 8) != VERSION {
        return Err(Damage::Foreign);
    }
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")) as usize;
    let need = HEADER.saturating_add(len);
    if bytes.len() < need {
        return Err(Damage::Truncated {
            have: bytes.len(),
            need,
        });
    }
    let archive = &bytes[HEADER..need];
    if crc32fast::hash(archive) != u32_at(bytes, 12) {
        return Err(Damage::Checksum);
    }
    // rkyv reads in place from an aligned buffer (a mapped file's is); copy otherwise.
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    let archive = if archive.as_ptr().align_offset(16) == 0 {
        archive
    } else {
        aligned.extend_from_slice(archive);
        &aligned[..]
    };
    rkyv::from_bytes::<ShardState, rkyv::rancor::Error>(archive)
        .map_err(|e| Damage::Invalid(e.to_string()))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
