//! Feed input: opening and memory-mapping ITCH files, and replaying them into books.
//!
//! Owns the translation of every way a file can be wrong (missing, a directory, unreadable,
//! empty, not ITCH, corrupt, truncated) into one line that names the file and, for bad bytes, the
//! offset. Replay walks the mapping in place: no copy of the file, no allocation per message.

use crate::error::{Failure, Result};
use crate::progress::Progress;
use shards::book::Books;
use shards::itch::field::timestamp;
use shards::itch::WalkStats;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Feed bytes: a read-only mapping of a file, or a session generated in memory.
pub enum FeedBytes {
    /// A memory-mapped file.
    Mapped(memmap2::Mmap),
    /// Bytes held in memory.
    Owned(Vec<u8>),
}

impl std::ops::Deref for FeedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FeedBytes::Mapped(m) => m,
            FeedBytes::Owned(v) => v,
        }
    }
}

/// A feed and the name to show for it.
pub struct Feed {
    /// Shown in messages: the path, or a description of a generated session.
    pub name: PathBuf,
    /// The bytes.
    pub bytes: FeedBytes,
}

/// Opens and maps `path`, refusing anything that cannot be an ITCH file.
pub fn open(path: &Path) -> Result<Feed> {
    let file = std::fs::File::open(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such file (check the path, or make one with `tickcore gen --out PATH`)"
                    .to_string()
            }
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => format!("cannot open: {e}"),
        };
        Failure::at(path, hint)
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::at(path, format!("cannot stat: {e}")))?;
    if meta.is_dir() {
        return Err(Failure::at(path, "is a directory, not an ITCH file"));
    }
    if meta.len() == 0 {
        return Err(Failure::at(
            path,
            "file is empty: no ITCH 5.0 messages at byte offset 0",
        ));
    }
    // SAFETY: the mapping is read-only and private to this process; a file truncated underneath
    // a running replay is the operator's error and ends in SIGBUS, as with any mmap reader.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| Failure::at(path, format!("cannot memory-map: {e}")))?;
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Feed {
        name: path.to_path_buf(),
        bytes: FeedBytes::Mapped(map),
    })
}

/// What a replay saw.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    /// Framing statistics (frames, bytes, corruption skipped).
    pub walk: WalkStats,
    /// Wall time of the walk.
    pub elapsed: Duration,
    /// Wall time spent before the walk's clock making the session's memory resident
    /// ([`Books::reserve_for_session`]).
    pub prepared: Duration,
    /// Timestamp of the first message, if any.
    pub first_ts: Option<u64>,
    /// Timestamp of the last message, if any.
    pub last_ts: Option<u64>,
}

impl Replay {
    /// Messages per second of wall time.
    pub fn rate(&self) -> f64 {
        self.walk.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Messages between progress checks: keeps the clock out of the per-message path.
const PROGRESS_EVERY: u64 = 1 << 20;

/// Applies every message of `feed` to `books`.
pub fn replay(feed: &Feed, books: &mut Books, skip_corrupt: bool) -> Result<Replay> {
    let bytes: &[u8] = &feed.bytes;
    let before = Instant::now();
    books.reserve_for_session(bytes);
    let prepared = before.elapsed();
    let mut progress = Progress::new("replay", bytes.len() as u64, "bytes");
    let start = Instant::now();
    let mut n = 0u64;
    let mut first_ts = None;
    let mut last_off = 0usize;
    let walk = books
        .replay(bytes, skip_corrupt, &mut (), |off, msg| {
            n += 1;
            last_off = off;
            if n & (PROGRESS_EVERY - 1) == 0 {
                progress.update(off as u64);
            }
            if first_ts.is_none() {
                first_ts = timestamp(msg);
            }
        })
        .map_err(|e| {
            progress.finish();
            let hint = if e.offset == 0 {
                " (not an ITCH 5.0 BinaryFILE?)"
            } else {
                " (--skip-corrupt resynchronises and counts instead)"
            };
            Failure::at(&feed.name, format!("{e}{hint}"))
        })?;
    progress.finish();
    let elapsed = start.elapsed();
    let last_ts = (walk.frames > 0)
        .then(|| timestamp(&bytes[last_off + 2..]))
        .flatten();
    Ok(Replay {
        walk,
        elapsed,
        prepared,
        first_ts,
        last_ts,
    })
}
