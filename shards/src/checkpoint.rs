//! A shard's checkpoint: its whole state at one point of the feed, as bytes and back.
//!
//! The bytes are a 32-byte header and a body of parts, each an rkyv archive:
//! `magic "TKCKPT02" | version u32 LE | crc32(body) u32 LE | body length u64 LE | parts u32 LE |
//! 0 u32 | body | zero padding`, the whole padded to a multiple of 4,096 bytes so that it can be
//! written with direct I/O. A part is `archive length u64 LE | 0 u64 | archive | zero padding to
//! 16`. Part 0 is the [`ShardState`] without its books, orders and remembered trades; each
//! later part is a [`Part`] of at most [`BOOKS_PART`] books and [`PART`] orders and trades. [`decode`] checks the magic, the version, the
//! lengths and the checksum before rkyv's own validation, so a truncated, torn or flipped file
//! is one clear error naming what is wrong, never a panic and never a wrong book.
//!
//! Why parts: an archive is written in one go, and a shard's orders (93k on a v3k day, and
//! millions on a deep one) took 2-5 ms to archive at once; the [`Encoder`] archives one part
//! at a time (100-150 us), so the shard can apply batches between parts.
//!
//! Owns the format only: the engine decides when to take one, writes it (from the shard's own
//! reactor) and reads it back (memory-mapped). Never does I/O.

use crate::bars::ClockState;
use crate::book::checkpoint::{BookState, BooksState, OrderState, TradeMemo};
use rkyv::{Archive, Deserialize, Serialize};

/// First bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"TKCKPT02";
/// Format version (bump on any change to [`ShardState`] or [`Part`]).
pub const VERSION: u32 = 2;
/// Orders (and remembered trades) a part holds at most. rkyv archives a derived struct field
/// by field: 8,192 orders and trades took 0.8-1.4 ms a part (24 ns an order, 70 a trade), so
/// parts are small enough to fit a slice of the stall budget many times over.
pub const PART: usize = 1_024;
/// Books a part holds at most: a book's state is some thirty fields, and 3,500 of them took
/// 2.5-3.5 ms to archive at once.
pub const BOOKS_PART: usize = 64;
/// Bytes before each part's archive.
const PART_HEADER: usize = 16;
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

/// Books, orders and remembered trades, beyond part 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct Part {
    /// Books, in dense index order across the parts.
    pub books: Vec<BookState>,
    /// Live orders.
    pub orders: Vec<OrderState>,
    /// Remembered trades.
    pub recent: Vec<TradeMemo>,
}

impl ShardState {
    /// Whether a shard of this build can start from this state: its books and its two bar
    /// clocks restore (see [`BooksState::check`]).
    pub fn check(&self) -> Result<(), String> {
        if self.clocks.len() != 2 {
            return Err(format!("{} bar clocks, not two", self.clocks.len()));
        }
        self.clocks.iter().try_for_each(ClockState::check)?;
        self.books.check()
    }
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

/// A checkpoint's bytes, built a part at a time (allocates; the engine calls each step between
/// batches).
pub struct Encoder {
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    parts: u32,
}

impl Encoder {
    /// Starts with part 0, `head` (whose books, orders and trades the later parts carry);
    /// `reserve` is the expected size of the whole, so the buffer does not grow by copying.
    pub fn new(head: &ShardState, reserve: usize) -> Encoder {
        let mut out = Vec::with_capacity(reserve.max(BLOCK));
        out.resize(HEADER, 0);
        let mut e = Encoder {
            out,
            crc: crc32fast::Hasher::new(),
            parts: 0,
        };
        e.push(&rkyv::to_bytes::<rkyv::rancor::Error>(head).expect("plain data always archives"));
        e
    }

    /// Adds part `p` (at most [`BOOKS_PART`] books and [`PART`] orders and trades).
    pub fn part(&mut self, p: &Part) {
        debug_assert!(p.books.len() <= BOOKS_PART, "parts stay small");
        debug_assert!(
            p.orders.len() <= PART && p.recent.len() <= PART,
            "parts stay small"
        );
        self.push(&rkyv::to_bytes::<rkyv::rancor::Error>(p).expect("plain data always archives"));
    }

    fn push(&mut self, archive: &[u8]) {
        let at = self.out.len();
        self.out
            .extend_from_slice(&(archive.len() as u64).to_le_bytes());
        self.out.extend_from_slice(&0u64.to_le_bytes());
        self.out.extend_from_slice(archive);
        self.out.resize(self.out.len().next_multiple_of(16), 0);
        self.crc.update(&self.out[at..]);
        self.parts += 1;
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// True before any part (never: part 0 is added by [`new`](Self::new)).
    pub fn is_empty(&self) -> bool {
        self.parts == 0
    }

    /// The file's bytes: the header written, padded to whole blocks.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.out;
        let body = (out.len() - HEADER) as u64;
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc.finalize().to_le_bytes());
        out[16..24].copy_from_slice(&body.to_le_bytes());
        out[24..28].copy_from_slice(&self.parts.to_le_bytes());
        out.resize(out.len().next_multiple_of(BLOCK), 0);
        out
    }
}

/// The file bytes of `s`, at once (for tests and tools; the engine steps an [`Encoder`]).
pub fn encode(s: &ShardState) -> Vec<u8> {
    let mut head = s.clone();
    head.books.books = Vec::new();
    head.books.orders = Vec::new();
    head.books.recent = Vec::new();
    let mut e = Encoder::new(&head, 0);
    let b = &s.books;
    for i in 0..parts(b.books.len(), b.orders.len().max(b.recent.len())) {
        e.part(&Part {
            books: b.books[part(i, BOOKS_PART, b.books.len())].to_vec(),
            orders: b.orders[part(i, PART, b.orders.len())].to_vec(),
            recent: b.recent[part(i, PART, b.recent.len())].to_vec(),
        });
    }
    e.finish()
}

/// Parts that `books` books and `items` orders or trades (whichever are more) fill.
pub fn parts(books: usize, items: usize) -> usize {
    books.div_ceil(BOOKS_PART).max(items.div_ceil(PART))
}

/// Part `i`'s range of `len` items, `per` a part.
pub fn part(i: usize, per: usize, len: usize) -> core::ops::Range<usize> {
    (i * per).min(len)..((i + 1) * per).min(len)
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
    let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let need = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(HEADER))
        .unwrap_or(usize::MAX);
    if bytes.len() < need {
        return Err(Damage::Truncated {
            have: bytes.len(),
            need,
        });
    }
    let mut body = &bytes[HEADER..need];
    if crc32fast::hash(body) != u32_at(bytes, 12) {
        return Err(Damage::Checksum);
    }
    let parts = u32_at(bytes, 24);
    let mut state: Option<ShardState> = None;
    for i in 0..parts {
        let (archive, rest) =
            split_part(body).map_err(|e| Damage::Invalid(format!("part {i}: {e}")))?;
        body = rest;
        match &mut state {
            None => state = Some(from_archive::<ShardState>(archive)?),
            Some(s) => {
                let p = from_archive::<Part>(archive)?;
                s.books.books.extend(p.books);
                s.books.orders.extend(p.orders);
                s.books.recent.extend(p.recent);
            }
        }
    }
    match (state, body.is_empty()) {
        (Some(s), true) => Ok(s),
        (None, _) => Err(Damage::Invalid("no parts".into())),
        (Some(_), false) => Err(Damage::Invalid("bytes after the last part".into())),
    }
}

/// The first part's archive in `body`, and the rest.
fn split_part(body: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if body.len() < PART_HEADER {
        return Err("cut short".into());
    }
    let len = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(PART_HEADER))
        .filter(|&e| e <= body.len())
        .ok_or("longer than the file")?;
    let next = end.next_multiple_of(16).min(body.len());
    Ok((&body[PART_HEADER..end], &body[next..]))
}

fn from_archive<T>(archive: &[u8]) -> Result<T, Damage>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    // rkyv reads in place from an aligned buffer (a mapped file's is); copy otherwise.
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    let archive = if archive.as_ptr().align_offset(16) == 0 {
        archive
    } else {
        aligned.extend_from_slice(archive);
        &aligned[..]
    };
    rkyv::from_bytes::<T, rkyv::rancor::Error>(archive).map_err(|e| Damage::Invalid(e.to_string()))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
