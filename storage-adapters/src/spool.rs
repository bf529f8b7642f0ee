//! The spool: an append-only log of records on local disk, one directory per sink
//! (`build_data/spool/<sink>/`), in memory-mapped segment files.
//!
//! A segment is a file of fixed size (zero-filled when created) holding a 16-byte header
//! (`TKSPOOL1`, format version) and then records, each
//! `len: u32 LE | crc32(payload): u32 LE | state: u32 LE | payload`, padded to 4 bytes. A record
//! is appended by writing its payload and checksum first and its length last, so a record whose
//! length made it to disk but whose payload did not (power loss, `SIGKILL` mid-write) fails its
//! checksum. `state` turns from 0 (pending) to 1 (drained) once the sink has committed it; a
//! segment whose records are all drained is deleted.
//!
//! On open, every segment is read from the start: the first zero length ends it; the first record
//! that fails its checksum or runs past the end is corruption, reported with its segment and
//! offset, and everything from it to the end of that segment is cut off (the good records before
//! it still drain). Owns only files under its directory; never interprets payloads.
//!
//! A disk that says no is an error here, never a crash: a new segment's blocks are reserved
//! (`posix_fallocate`) before it is mapped, so a full disk fails the append that needed the
//! segment instead of raising `SIGBUS` on a write into a sparse page; a byte limit
//! ([`Spool::limit`]) refuses a segment past it the same way; a spool whose directory could not
//! be opened ([`Spool::detached`]) refuses every append until the directory can be created.

use memmap2::MmapMut;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"TKSPOOL1";
const VERSION: u32 = 1;
const HEADER: usize = 16;
const RECORD_HEADER: usize = 12;
const PENDING: u32 = 0;
const DRAINED: u32 = 1;

/// Something wrong found in a segment on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the first bad record.
    pub offset: usize,
    /// Bytes cut off from there to the end of the written part.
    pub cut: usize,
    /// What was wrong.
    pub why: &'static str,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} at byte offset {}; cut off {} bytes after the last good record",
            self.segment.display(),
            self.why,
            self.offset,
            self.cut
        )
    }
}

/// What opening a spool found.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// Segments found.
    pub segments: usize,
    /// Records still waiting to drain.
    pub pending: u64,
    /// Payload bytes still waiting.
    pub pending_bytes: u64,
    /// Damage found and cut off.
    pub damage: Vec<Damage>,
}

struct Segment {
    path: PathBuf,
    map: MmapMut,
    /// End of the written records.
    end: usize,
    /// Offset of the oldest record not yet drained (== `end` when none).
    next: usize,
}

/// One sink's spool.
pub struct Spool {
    dir: PathBuf,
    segment_bytes: usize,
    segments: VecDeque<Segment>,
    pending: u64,
    pending_bytes: u64,
    /// Highest segment id ever seen here, damaged ones included: new segments go after it.
    max_id: u64,
    /// Segment bytes on disk this spool may not go past (`None`: the disk's own limit).
    max_bytes: Option<u64>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, with segments of `segment_bytes` (at least
    /// 4 KiB; a record must fit in one segment).
    pub fn open(dir: &Path, segment_bytes: usize) -> io::Result<(Spool, OpenReport)> {
        std::fs::create_dir_all(dir)?;
        let mut ids: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".spool")?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(4096),
            segments: VecDeque::new(),
            pending: 0,
            pending_bytes: 0,
            max_id: ids.last().copied().unwrap_or(0),
            max_bytes: None,
        };
        let mut report = OpenReport::default();
        for id in ids {
            let path = spool.path_of(id);
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            if file.metadata()?.len() < HEADER as u64 {
                report.damage.push(Damage {
                    segment: path.clone(),
                    offset: 0,
                    cut: file.metadata()?.len() as usize,
                    why: "segment shorter than its header",
                });
                drop(file);
                set_aside(&path)?;
                continue;
            }
            // SAFETY: the file is ours alone (one sink, one process owns its spool directory);
            // nothing truncates it while mapped.
            let map = unsafe { MmapMut::map_mut(&file)? };
            let mut seg = Segment {
                path,
                map,
                end: HEADER,
                next: HEADER,
            };
            if &seg.map[..8] != MAGIC || u32_at(&seg.map, 8) != VERSION {
                report.damage.push(Damage {
                    segment: seg.path.clone(),
                    offset: 0,
                    cut: seg.map.len(),
                    why: "not a tickcore spool segment (bad magic or version)",
                });
                drop(seg);
                set_aside(&spool.path_of(id))?;
                continue;
            }
            spool.scan(&mut seg, &mut report);
            report.segments += 1;
            spool.segments.push_back(seg);
        }
        report.pending = spool.pending;
        report.pending_bytes = spool.pending_bytes;
        Ok((spool, report))
    }

    /// A spool whose directory could not be opened: it holds nothing, and every append tries
    /// to create the directory again (so a spool comes back when the disk does).
    pub fn detached(dir: &Path, segment_bytes: usize) -> Spool {
        Spool {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(4096),
            segments: VecDeque::new(),
            pending: 0,
            pending_bytes: 0,
            max_id: 0,
            max_bytes: None,
        }
    }

    /// Caps the segment bytes on disk at `max_bytes` (segments shrink to fit under it, to no
    /// less than 4 KiB); an append that would need a segment past it fails with
    /// `StorageFull`.
    pub fn limit(&mut self, max_bytes: u64) {
        self.max_bytes = Some(max_bytes);
        let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        self.segment_bytes = self.segment_bytes.min(cap).max(4096);
    }

    fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(format!("seg-{id:012}.spool"))
    }

    /// Reads a segment's records, finds its end and its first pending record, cuts damage.
    fn scan(&mut self, seg: &mut Segment, report: &mut OpenReport) {
        let m = &mut seg.map;
        let mut at = HEADER;
        let mut first_pending = None;
        loop {
            if at + RECORD_HEADER > m.len() {
                break;
            }
            let len = u32_at(m, at) as usize;
            if len == 0 {
                break;
            }
            let end = at + RECORD_HEADER + len;
            let bad = if end > m.len() {
                Some("record runs past the end of the segment")
            } else if crc32fast::hash(&m[at + RECORD_HEADER..end]) != u32_at(m, at + 4) {
                Some("record fails its checksum (torn or corrupted)")
            } else {
                None
            };
            if let Some(why) = bad {
                let written = written_end(m, at);
                report.damage.push(Damage {
                    segment: seg.path.clone(),
                    offset: at,
                    cut: written - at,
                    why,
                });
                m[at..written].fill(0);
                let _ = m.flush();
                break;
            }
            if u32_at(m, at + 8) == PENDING {
                first_pending.get_or_insert(at);
                self.pending += 1;
                self.pending_bytes += len as u64;
            }
            at = pad4(end);
        }
        seg.end = at;
        seg.next = first_pending.unwrap_or(at);
    }

    /// Appends one record. The spool grows by a segment when the current one is full.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let need = pad4(RECORD_HEADER + payload.len());
        if payload.is_empty() || need > self.segment_bytes - HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a spool record holds 1..={} bytes",
                    self.segment_bytes - HEADER - RECORD_HEADER
                ),
            ));
        }
        let fits = self
            .segments
            .back()
            .is_some_and(|s| s.end + need <= s.map.len());
        if !fits {
            self.new_segment()?;
        }
        let seg = self
            .segments
            .back_mut()
            .expect("a segment exists after new_segment");
        let at = seg.end;
        let m = &mut seg.map;
        m[at + RECORD_HEADER..at + RECORD_HEADER + payload.len()].copy_from_slice(payload);
        m[at + 4..at + 8].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        m[at + 8..at + 12].copy_from_slice(&PENDING.to_le_bytes());
        // The length goes last: until it is there, the record does not exist.
        m[at..at + 4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        seg.end = at + need;
        self.pending += 1;
        self.pending_bytes += payload.len() as u64;
        Ok(())
    }

    fn new_segment(&mut self) -> io::Result<()> {
        // A drained segment kept because it was being written goes now: under a byte limit it
        // would hold room that nothing uses.
        self.delete_drained(0)?;
        if let Some(max) = self.max_bytes {
            if self.disk_bytes() + self.segment_bytes as u64 > max {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("the spool is at its limit of {max} bytes (TICKCORE_SPOOL_MAX_BYTES)"),
                ));
            }
        }
        std::fs::create_dir_all(&self.dir)?;
        let id = self.max_id + 1;
        self.max_id = id;
        let path = self.path_of(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        if let Err(e) = reserve(&file, self.segment_bytes) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // SAFETY: a file we just created and own; see `open`.
        let mut map = unsafe { MmapMut::map_mut(&file)? };
        map[..8].copy_from_slice(MAGIC);
        map[8..12].copy_from_slice(&VERSION.to_le_bytes());
        self.segments.push_back(Segment {
            path,
            map,
            end: HEADER,
            next: HEADER,
        });
        Ok(())
    }

    /// The oldest record not yet drained.
    pub fn peek(&self) -> Option<&[u8]> {
        let seg = self.segments.iter().find(|s| s.next < s.end)?;
        let len = u32_at(&seg.map, seg.next) as usize;
        Some(&seg.map[seg.next + RECORD_HEADER..seg.next + RECORD_HEADER + len])
    }

    /// Up to `n` of the oldest pending records, oldest first (to drain several in one write).
    pub fn oldest(&self, n: usize) -> Vec<&[u8]> {
        let mut out = Vec::new();
        for seg in &self.segments {
            let mut at = seg.next;
            while at < seg.end && out.len() < n {
                let len = u32_at(&seg.map, at) as usize;
                if u32_at(&seg.map, at + 8) == PENDING {
                    out.push(&seg.map[at + RECORD_HEADER..at + RECORD_HEADER + len]);
                }
                at = pad4(at + RECORD_HEADER + len);
            }
        }
        out
    }

    /// Marks the oldest pending record drained (after its sink committed it); deletes segments
    /// that hold nothing pending, except the one being written.
    pub fn pop(&mut self) -> io::Result<()> {
        let Some(i) = self.segments.iter().position(|s| s.next < s.end) else {
            return Ok(());
        };
        let seg = &mut self.segments[i];
        let at = seg.next;
        let len = u32_at(&seg.map, at) as usize;
        seg.map[at + 8..at + 12].copy_from_slice(&DRAINED.to_le_bytes());
        seg.next = pad4(at + RECORD_HEADER + len);
        self.pending -= 1;
        self.pending_bytes -= len as u64;
        self.delete_drained(1)
    }

    /// Deletes the oldest segments while they hold nothing pending, keeping at least `keep`.
    fn delete_drained(&mut self, keep: usize) -> io::Result<()> {
        while self.segments.len() > keep && self.segments[0].next >= self.segments[0].end {
            let done = self
                .segments
                .pop_front()
                .expect("more than `keep` segments");
            let path = done.path.clone();
            drop(done);
            std::fs::remove_file(path)?;
        }
        Ok(())
    }

    /// Records waiting to drain.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Payload bytes waiting to drain.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Bytes of segment files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.map.len() as u64).sum()
    }

    /// Asks the kernel to write everything to disk (blocking: adapter cores only).
    pub fn sync(&self) -> io::Result<()> {
        self.segments.iter().try_for_each(|s| s.map.flush())
    }
}

/// Gives `file` `len` bytes of real blocks. A sparse file (`set_len` alone) would take the
/// disk's "full" as `SIGBUS` on the first store into an unbacked page of the map.
fn reserve(file: &std::fs::File, len: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    // SAFETY: a valid open descriptor; posix_fallocate reads nothing of ours.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        // Filesystems without fallocate (some overlay/tmpfs setups): fall back to writing
        // zeros, which reserves the blocks just the same, slower.
        libc::EOPNOTSUPP | libc::EINVAL => zero_fill(file, len as usize),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn zero_fill(file: &std::fs::File, len: usize) -> io::Result<()> {
    use std::io::Write;
    let zeros = vec![0u8; 1 << 16];
    let mut w = file;
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len());
        w.write_all(&zeros[..n])?;
        left -= n;
    }
    w.flush()
}

/// Moves a segment that cannot be read out of the way, keeping it for a person to look at.
fn set_aside(path: &Path) -> io::Result<()> {
    let mut to = path.as_os_str().to_owned();
    to.push(".damaged");
    std::fs::rename(path, to)
}

/// End of the non-zero bytes from `at`: how much a cut removes.
fn written_end(m: &[u8], at: usize) -> usize {
    m[at..]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(at, |p| at + p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tickcore-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("record {i} {}", "x".repeat(i % 37)).into_bytes())
            .collect()
    }

    #[test]
    fn records_drain_in_order_across_segments_and_reopens() {
        let d = dir("order");
        let recs = records(500);
        {
            let (mut s, r) = Spool::open(&d, 4096).unwrap();
            assert_eq!(r.pending, 0);
            for x in &recs[..300] {
                s.append(x).unwrap();
            }
            for x in &recs[..100] {
                assert_eq!(s.peek(), Some(&x[..]));
                s.pop().unwrap();
            }
            s.sync().unwrap();
        }
        // A new process finds the 200 still pending, in order, then keeps appending.
        let (mut s, r) = Spool::open(&d, 4096).unwrap();
        assert_eq!(r.pending, 200);
        assert!(r.damage.is_empty());
        for x in &recs[300..] {
            s.append(x).unwrap();
        }
        for x in &recs[100..] {
            assert_eq!(s.peek(), Some(&x[..]));
            s.pop().unwrap();
        }
        assert!(s.is_empty() && s.peek().is_none());
        assert_eq!(s.segments.len(), 1, "drained segments are deleted");
        let _ = std::fs::remove_dir_all(&d);
    }

    fn segment_files(d: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_flipped_byte_is_reported_and_the_records_before_it_still_drain() {
        let d = dir("flip");
        let recs = records(20);
        {
            let (mut s, _) = Spool::open(&d, 1 << 16).unwrap();
            recs.iter().for_each(|x| s.append(x).unwrap());
            s.sync().unwrap();
        }
        let seg = &segment_files(&d)[0];
        let mut bytes = std::fs::read(seg).unwrap();
        // Record 12's payload starts after 12 records; flip a byte inside it.
        let at = HEADER
            + recs[..12]
                .iter()
                .map(|r| pad4(RECORD_HEADER + r.len()))
                .sum::<usize>();
        bytes[at + RECORD_HEADER + 3] ^= 0x40;
        std::fs::write(seg, &bytes).unwrap();
        let (mut s, r) = Spool::open(&d, 1 << 16).unwrap();
        assert_eq!(r.damage.len(), 1);
        assert_eq!(r.damage[0].offset, at);
        assert!(r.damage[0].to_string().contains("checksum"));
        assert_eq!(r.pending, 12);
        for x in &recs[..12] {
            assert_eq!(s.peek(), Some(&x[..]));
            s.pop().unwrap();
        }
        assert!(s.peek().is_none());
        // The cut is permanent: appending goes on after the last good record.
        s.append(b"after").unwrap();
        drop(s);
        let (s, r) = Spool::open(&d, 1 << 16).unwrap();
        assert!(r.damage.is_empty());
        assert_eq!(s.peek(), Some(&b"after"[..]));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_last_record_is_cut_off() {
        let d = dir("torn");
        let recs = records(5);
        {
            let (mut s, _) = Spool::open(&d, 1 << 16).unwrap();
            recs.iter().for_each(|x| s.append(x).unwrap());
            s.sync().unwrap();
        }
        let seg = &segment_files(&d)[0];
        let mut bytes = std::fs::read(seg).unwrap();
        // Power loss mid-write: the last record's length reached the disk, half its payload
        // did not.
        let at = HEADER
            + recs[..4]
                .iter()
                .map(|r| pad4(RECORD_HEADER + r.len()))
                .sum::<usize>();
        let len = recs[4].len();
        bytes[at + RECORD_HEADER + len / 2..at + RECORD_HEADER + len].fill(0);
        std::fs::write(seg, &bytes).unwrap();
        let (s, r) = Spool::open(&d, 1 << 16).unwrap();
        assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
        assert_eq!(r.pending, 4);
        assert_eq!(s.peek(), Some(&recs[0][..]));
        // A truncated file (the tail of the segment gone) is the same case.
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn foreign_or_truncated_segments_are_reported_not_read() {
        let d = dir("foreign");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("seg-000000000001.spool"),
            b"hello, this is not a spool segment",
        )
        .unwrap();
        std::fs::write(d.join("seg-000000000002.spool"), b"short").unwrap();
        let (mut s, r) = Spool::open(&d, 4096).unwrap();
        assert_eq!(r.damage.len(), 2, "{:?}", r.damage);
        assert!(s.is_empty());
        assert!(s.append(&[]).is_err(), "empty records are refused");
        assert!(
            s.append(&vec![1u8; 8192]).is_err(),
            "a record larger than a segment is refused"
        );
        s.append(b"fresh").unwrap();
        assert_eq!(s.peek(), Some(&b"fresh"[..]));
        let names: Vec<String> = segment_files(&d)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().filter(|n| n.ends_with(".damaged")).count() == 2,
            "{names:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_spool_at_its_limit_refuses_with_storage_full_and_takes_again_once_drained() {
        let d = dir("limit");
        let (mut s, _) = Spool::open(&d, 64 << 20).unwrap();
        s.limit(8192);
        let rec = vec![7u8; 1000];
        let mut taken = 0;
        let err = loop {
            match s.append(&rec) {
                Ok(()) => taken += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
        assert!(s.disk_bytes() <= 8192, "{}", s.disk_bytes());
        assert_eq!(taken, 8, "one 8 KiB segment holds 8 records of 1,012 bytes");
        // Once drained, the full segment is deleted when the next one is needed.
        for _ in 0..8 {
            s.pop().unwrap();
        }
        s.append(&rec).unwrap();
        assert_eq!(s.disk_bytes(), 8192);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_detached_spool_refuses_until_its_directory_can_be_made() {
        let d = dir("detached");
        std::fs::create_dir_all(&d).unwrap();
        let blocker = d.join("spool");
        std::fs::write(&blocker, b"a file where the directory should be").unwrap();
        assert!(Spool::open(&blocker.join("pg"), 4096).is_err());
        let mut s = Spool::detached(&blocker.join("pg"), 4096);
        assert!(s.append(b"row").is_err());
        std::fs::remove_file(&blocker).unwrap();
        s.append(b"row").unwrap();
        assert_eq!(s.peek(), Some(&b"row"[..]));
        let _ = std::fs::remove_dir_all(&d);
    }
}
