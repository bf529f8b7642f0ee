//! Checkpoint files: each shard writes its own through its reactor; a restart finds the newest
//! whole set.
//!
//! A file is `ckpt-<applied, 16 digits>-shard<i>of<n>.tkc`. It is written under a `.tmp` name
//! with direct I/O, synced, and renamed, so a name without `.tmp` holds a complete write or
//! damage from outside (a disk, a person), which [`newest`] detects by checksum and skips,
//! saying so. Each shard keeps its newest [`KEEP`] checkpoints and removes older ones itself
//! (it knows what it wrote; no directory listing on a shard). Owns the files; never a book.

use crate::runtime::clock;
use shards::checkpoint::{self, ShardState};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// Checkpoints each shard keeps (the newest, and two to fall back on).
pub const KEEP: usize = 3;

/// The file of shard `shard` of `shards` at `applied`.
pub fn file_name(applied: u64, shard: usize, shards: usize) -> String {
    format!("ckpt-{applied:016}-shard{shard}of{shards}.tkc")
}

fn parse(name: &str) -> Option<(u64, usize, usize)> {
    let rest = name.strip_prefix("ckpt-")?.strip_suffix(".tkc")?;
    let (applied, rest) = rest.split_once("-shard")?;
    let (i, n) = rest.split_once("of")?;
    Some((applied.parse().ok()?, i.parse().ok()?, n.parse().ok()?))
}

/// A shard's writer of its own checkpoints (lives on the shard's executor).
pub struct Writer {
    dir: PathBuf,
    shard: usize,
    shards: usize,
    written: VecDeque<u64>,
    /// The last mark this shard finished (written or failed): the ingress waits for it.
    finished: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Each sink's durable mark.
    sinks: Vec<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Wall and CPU time of each chunk copied into a DMA buffer, ns.
    slices: Vec<(u64, u64)>,
}

/// Bytes a DMA write carries: copying a whole v3k checkpoint (6 MiB) into one DMA buffer held
/// the shard's thread 1-2 ms in one go; a 256 KiB chunk is 30-60 us.
const WRITE_CHUNK: usize = 256 * 1024;

impl Writer {
    /// The writer of shard `shard` of `shards` into `dir` (which exists); it stores each
    /// mark it finishes in `finished`, and keeps the checkpoint `sinks`' lowest durable mark
    /// allows a recovery to start from.
    pub fn new(
        dir: PathBuf,
        shard: usize,
        shards: usize,
        finished: std::sync::Arc<std::sync::atomic::AtomicU64>,
        sinks: Vec<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    ) -> Writer {
        Writer {
            dir,
            shard,
            shards,
            written: VecDeque::new(),
            finished,
            sinks,
            slices: Vec::new(),
        }
    }

    /// The mark this shard last finished, shared.
    pub fn finished_handle(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        std::sync::Arc::clone(&self.finished)
    }

    /// Says the checkpoint at `applied` is finished, written or not.
    pub fn finished(&self, applied: u64) {
        self.finished
            .store(applied, std::sync::atomic::Ordering::Release);
    }

    /// Writes `bytes` (a multiple of 4 KiB) as the checkpoint at `applied`, through io_uring,
    /// then removes this shard's checkpoints that [`pruned`] lets go.
    pub async fn write(&mut self, applied: u64, bytes: &[u8]) -> std::io::Result<()> {
        let name = file_name(applied, self.shard, self.shards);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let file = glommio::io::DmaFile::create(&tmp).await.map_err(io)?;
        let synced = match self.write_all(&file, bytes).await {
            Ok(()) => file.fdatasync().await.map_err(io),
            Err(e) => Err(e),
        };
        let closed = file.close().await.map_err(io);
        if let Err(e) = synced.and(closed) {
            let _ = glommio::io::remove(&tmp).await;
            return Err(e);
        }
        glommio::io::rename(&tmp, self.dir.join(&name))
            .await
            .map_err(io)?;
        self.written.push_back(applied);
        let floor = self
            .sinks
            .iter()
            .map(|m| m.load(std::sync::atomic::Ordering::Acquire))
            .min();
        for old in pruned(&mut self.written, floor) {
            let path = self.dir.join(file_name(old, self.shard, self.shards));
            let _ = glommio::io::remove(path).await;
        }
        Ok(())
    }

    /// Writes `bytes` from offset 0, a [`WRITE_CHUNK`] at a time. Each chunk is copied into a
    /// DMA buffer on the shard's own thread (a slice of the checkpoint, timed), and the shard
    /// runs while the chunk's write is in flight.
    async fn write_all(
        &mut self,
        file: &glommio::io::DmaFile,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        for (i, chunk) in bytes.chunks(WRITE_CHUNK).enumerate() {
            let (t0, c0) = (clock::now_ns(), clock::thread_cpu_ns());
            let mut buf = file.alloc_dma_buffer(chunk.len());
            buf.as_bytes_mut().copy_from_slice(chunk);
            self.slices.push((
                clock::now_ns().saturating_sub(t0),
                clock::thread_cpu_ns().saturating_sub(c0),
            ));
            let at = (i * WRITE_CHUNK) as u64;
            let n = file.write_at(buf, at).await.map_err(io)?;
            if n != chunk.len() {
                return Err(std::io::Error::other(format!(
                    "short write: {n} of {} bytes at {at}",
                    chunk.len()
                )));
            }
        }
        Ok(())
    }

    /// The wall and CPU time of each chunk copied so far, taken (for the shard's report).
    pub fn take_slices(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.slices)
    }
}

/// The checkpoints of `written` (ascending) to remove, taken out of it: all but the newest
/// [`KEEP`], and but the newest at or before `floor`, the lowest sink's durable mark (`None`:
/// no sinks). A recovery can start no later than that mark, so that one set is what it will
/// use when the sinks lag more than [`KEEP`] checkpoints; before, it was removed and the
/// recovery started from the beginning. As the floor only rises, the set kept for it is
/// never one removed earlier.
pub fn pruned(written: &mut VecDeque<u64>, floor: Option<u64>) -> Vec<u64> {
    let newest = written.len().saturating_sub(KEEP);
    let keep = floor.and_then(|f| written.iter().rposition(|&m| m <= f));
    let mut gone = Vec::new();
    let mut i = 0;
    written.retain(|&m| {
        let kept = i >= newest || Some(i) == keep;
        i += 1;
        if !kept {
            gone.push(m);
        }
        kept
    });
    gone
}

fn io(e: glommio::GlommioError<()>) -> std::io::Error {
    e.into()
}

/// Every checkpoint file in `dir` (finished or `.tmp`); none when `dir` does not exist.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ckpt-"))
        .map(|e| e.path())
        .collect())
}

/// What [`newest`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// The newest whole set: messages applied, and each shard's state in shard order.
    pub set: Option<(u64, Vec<ShardState>)>,
    /// Newer sets passed over, each with why (one line each, for the operator).
    pub skipped: Vec<String>,
}

/// The newest set of checkpoints in `dir`, at or before message `bound`, with a valid file
/// for every one of `shards` shards.
pub fn newest(dir: &Path, shards: usize, bound: u64) -> std::io::Result<Found> {
    let mut sets: BTreeMap<u64, BTreeMap<usize, (usize, PathBuf)>> = BTreeMap::new();
    let mut found = Found::default();
    for path in files(dir)? {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some((applied, i, n)) = name.as_deref().and_then(parse) {
            sets.entry(applied).or_default().insert(i, (n, path));
        }
    }
    for (applied, files) in sets.into_iter().rev().filter(|(a, _)| *a <= bound) {
        match load_set(applied, &files, shards) {
            Ok(states) => {
                found.set = Some((applied, states));
                break;
            }
            Err(why) => found.skipped.push(format!(
                "checkpoint after message {applied}: {why}; trying the one before"
            )),
        }
    }
    Ok(found)
}

fn load_set(
    applied: u64,
    files: &BTreeMap<usize, (usize, PathBuf)>,
    shards: usize,
) -> Result<Vec<ShardState>, String> {
    let mut states = Vec::with_capacity(shards);
    for i in 0..shards {
        let Some((n, path)) = files.get(&i) else {
            return Err(format!("shard {i}'s file is missing"));
        };
        if *n != shards {
            return Err(format!("taken with {n} shards, this run has {shards}"));
        }
        let s = read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if s.applied != applied || s.shard as usize != i || s.shards as usize != shards {
            return Err(format!(
                "{}: its header disagrees with its name",
                path.display()
            ));
        }
        states.push(s);
    }
    Ok(states)
}

/// One checkpoint file, memory-mapped, decoded, and checked to restore (so a recovery passes
/// over a file it could not start from before it skips the messages the file holds).
pub fn read(path: &Path) -> Result<ShardState, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: read-only map of a file the engine wrote and renamed into place; nothing writes
    // it again (a new checkpoint is a new file).
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| e.to_string())?;
    let s = checkpoint::decode(&map).map_err(|d| d.to_string())?;
    s.check().map_err(|e| format!("would not restore: {e}"))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case::no_sinks(&[10, 20, 30, 40, 50], None, &[10, 20])]
    #[case::sinks_current(&[10, 20, 30, 40, 50], Some(50), &[10, 20])]
    #[case::a_sink_lagging(&[10, 20, 30, 40, 50], Some(25), &[10])]
    #[case::a_sink_with_no_mark_yet(&[10, 20, 30, 40], Some(0), &[10])]
    #[case::the_kept_one_stays(&[20, 50, 60, 70], Some(45), &[])]
    #[case::the_floor_rises(&[20, 50, 60, 70, 80], Some(55), &[20])]
    #[case::fewer_than_kept(&[10, 20], Some(0), &[])]
    fn pruning_keeps_the_newest_and_the_one_the_sinks_allow(
        #[case] written: &[u64],
        #[case] floor: Option<u64>,
        #[case] gone: &[u64],
    ) {
        let mut w: VecDeque<u64> = written.iter().copied().collect();
        assert_eq!(pruned(&mut w, floor), gone);
        let left: Vec<u64> = written
            .iter()
            .copied()
            .filter(|m| !gone.contains(m))
            .collect();
        assert_eq!(w, left);
    }

    #[test]
    fn names_round_trip() {
        let n = file_name(1_234_567, 2, 3);
        assert_eq!(n, "ckpt-0000000001234567-shard2of3.tkc");
        assert_eq!(parse(&n), Some((1_234_567, 2, 3)));
        assert_eq!(parse(&format!("{n}.tmp")), None);
    }
}
