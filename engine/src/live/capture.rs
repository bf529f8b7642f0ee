//! `--capture PATH`: what the live feed applied, in sequence order, re-packed as MoldUDP64
//! datagrams in a pcap file (Ethernet, IPv4, UDP to line A's port) that Wireshark opens, and
//! `--feed pcap:PATH` replays to the same books.
//!
//! Owns the packing on the feed core (into pooled buffers, no allocation per message) and a
//! writer thread that does the file I/O. The feed core never waits on the disk: with every
//! pooled buffer in flight, a datagram is counted as not captured, and the count is reported.
//! A recovery appends to the killed run's file ([`Capture::resume`]) rather than writing what
//! it replays again.

use crate::net::Endpoint;
use crate::runtime::ring::{ring, Consumer, Producer};
use shards::mold::{self, PacketWriter, Session};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Datagrams in flight to the writer at most.
const POOL: usize = 4096;
/// Bytes of the pcap file header.
pub(crate) const PCAP_HEADER_LEN: usize = 24;
/// Ethernet + IPv4 + UDP headers before each datagram.
const FRAME_HEADERS: usize = 14 + 20 + 8;

/// One datagram on its way to the writer.
struct Chunk {
    bytes: Box<[u8; mold::MAX_DATAGRAM]>,
    len: usize,
    unix_ns: u64,
}

/// The feed core's end of a capture.
pub struct Capture {
    writer: Option<PacketWriter>,
    next_seq: u64,
    session: Option<Session>,
    to_disk: Producer<Chunk>,
    spares: Consumer<Chunk>,
    thread: Option<std::thread::JoinHandle<std::io::Result<u64>>>,
    done: Arc<AtomicBool>,
    /// Datagrams not captured because the writer had every buffer.
    pub overflow: u64,
    wall_offset_ns: u64,
}

impl Capture {
    /// Creates the file and starts its writer thread.
    pub fn start(path: &Path, lines: &[Endpoint]) -> std::io::Result<Capture> {
        Capture::open(std::fs::File::create(path)?, false, lines)
    }

    /// A recovery's capture: the killed run's file, cut after its last whole record (the kill
    /// may have torn the one after), is appended to. What it holds is replayed, not written
    /// again: rewriting 20M messages' worth took the writer 3.3 s of a 5 s recovery, and it
    /// fell behind (v3k, 300k/s line, 09:00). Refused for a file this program did not write
    /// (another pcap header): the caller starts a new one. Returns what cut the file short,
    /// if anything, for the caller to say (the cut bytes are gone after this).
    pub fn resume(path: &Path, lines: &[Endpoint]) -> Result<(Capture, Option<String>), String> {
        let old = super::replay::PcapSource::open(path)?;
        let ours = pcap_file::pcap::PcapWriter::new(Vec::new())
            .map(|w| w.into_writer())
            .unwrap_or_default();
        if old.header_bytes() != ours {
            return Err(format!(
                "{}: its pcap header is not the one this program writes",
                path.display()
            ));
        }
        let (whole, cut) = (old.whole_len(), old.cut().map(str::to_string));
        drop(old);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|f| f.set_len(whole).map(|_| f))
            .map_err(|e| format!("{}: cannot append: {e}", path.display()))?;
        Capture::open(file, true, lines)
            .map(|c| (c, cut))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Starts the writer thread over `file`; `append`: it holds a header already.
    fn open(file: std::fs::File, append: bool, lines: &[Endpoint]) -> std::io::Result<Capture> {
        let port = lines.first().map_or(31001, |l| l.addr.port());
        let (to_disk, from_feed) = ring::<Chunk>(POOL * 2);
        let (mut back, spares) = ring::<Chunk>(POOL * 2);
        for _ in 0..POOL {
            let c = Chunk {
                bytes: Box::new([0; mold::MAX_DATAGRAM]),
                len: 0,
                unix_ns: 0,
            };
            if back.try_push(c).is_err() {
                unreachable!("the spare ring holds the pool");
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || write_all(file, append, port, from_feed, back, d))?;
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Ok(Capture {
            writer: None,
            next_seq: 1,
            session: None,
            to_disk,
            spares,
            thread: Some(thread),
            done,
            overflow: 0,
            wall_offset_ns: unix.saturating_sub(crate::runtime::clock::now_ns()),
        })
    }

    /// Adds message `seq` of `session`.
    #[inline]
    pub fn message(&mut self, session: Session, seq: u64, m: &[u8]) {
        if self.session != Some(session) || seq != self.next_seq {
            self.idle();
            self.session = Some(session);
        }
        let w = self
            .writer
            .get_or_insert_with(|| PacketWriter::new(session, mold::DEFAULT_MAX_PAYLOAD));
        if w.count() == 0 {
            w.start(seq);
        }
        if !w.push(m) {
            self.idle();
            let w = self.writer.as_mut().expect("the writer exists");
            w.start(seq);
            w.push(m);
        }
        self.next_seq = seq + 1;
    }

    /// Sends the datagram being packed, if any.
    pub fn idle(&mut self) {
        let Some(w) = self.writer.as_mut().filter(|w| w.count() > 0) else {
            return;
        };
        if !ship(
            &mut self.spares,
            &mut self.to_disk,
            self.wall_offset_ns,
            w.finish(),
        ) {
            self.overflow += 1;
        }
        w.start(self.next_seq);
    }

    /// Writes end of session if the session ended, flushes, and returns datagrams written.
    pub fn finish(mut self, ended: bool) -> std::io::Result<u64> {
        self.idle();
        if let (true, Some(s)) = (ended, self.session) {
            let mut b = [0u8; mold::HEADER_LEN];
            let d = mold::end_of_session(&mut b, s, self.next_seq);
            if !ship(&mut self.spares, &mut self.to_disk, self.wall_offset_ns, d) {
                self.overflow += 1;
            }
        }
        self.done.store(true, Ordering::Release);
        let t = self.thread.take().expect("joined once");
        t.join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the capture thread panicked")))
    }
}

/// Copies datagram `d` into a spare buffer, stamps it and hands it to the writer; false when
/// every buffer is with the writer (the caller counts it).
fn ship(
    spares: &mut Consumer<Chunk>,
    to_disk: &mut Producer<Chunk>,
    wall_offset_ns: u64,
    d: &[u8],
) -> bool {
    let Some(mut c) = spares.try_pop() else {
        return false;
    };
    c.bytes[..d.len()].copy_from_slice(d);
    c.len = d.len();
    c.unix_ns = wall_offset_ns + crate::runtime::clock::now_ns();
    if to_disk.try_push(c).is_err() {
        unreachable!("the disk ring holds the pool");
    }
    true
}

/// The capture file behind its buffer, shared between the pcap writer and the loop that
/// flushes it (one thread). The first `skip` bytes written are dropped: the header the pcap
/// writer writes first, when the file holds one already.
#[derive(Clone)]
struct Wal(
    std::rc::Rc<std::cell::RefCell<std::io::BufWriter<std::fs::File>>>,
    std::rc::Rc<std::cell::Cell<usize>>,
);

impl Write for Wal {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let skip = self.1.get().min(b.len());
        if skip > 0 {
            self.1.set(self.1.get() - skip);
            return Ok(skip);
        }
        self.0.borrow_mut().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// The capture is a recovery's write-ahead log: what it holds need not be asked of the
/// exchange again. It reaches the kernel whenever the feed pauses (a killed process loses
/// nothing the kernel has) and the disk at least this often while it grows, more often than
/// any checkpoint is taken.
const WAL_SYNC: std::time::Duration = std::time::Duration::from_millis(500);

fn write_all(
    file: std::fs::File,
    append: bool,
    port: u16,
    mut from_feed: Consumer<Chunk>,
    mut back: Producer<Chunk>,
    done: Arc<AtomicBool>,
) -> std::io::Result<u64> {
    let header = if append { PCAP_HEADER_LEN } else { 0 };
    let wal = Wal(
        std::rc::Rc::new(std::cell::RefCell::new(std::io::BufWriter::with_capacity(
            1 << 20,
            file,
        ))),
        std::rc::Rc::new(std::cell::Cell::new(header)),
    );
    let mut w = pcap_file::pcap::PcapWriter::new(wal.clone()).map_err(std::io::Error::other)?;
    let (mut dirty, mut synced) = (false, std::time::Instant::now());
    let mut frame = Vec::with_capacity(FRAME_HEADERS + mold::MAX_DATAGRAM);
    let mut written = 0u64;
    loop {
        // Read the flag before draining: whatever was pushed before it was set is seen.
        let finishing = done.load(Ordering::Acquire);
        let mut any = false;
        while let Some(c) = from_feed.try_pop() {
            any = true;
            frame.clear();
            udp_frame(&mut frame, port, &c.bytes[..c.len]);
            let ts = std::time::Duration::from_nanos(c.unix_ns);
            w.write_packet(&pcap_file::pcap::PcapPacket::new(
                ts,
                frame.len() as u32,
                &frame,
            ))
            .map_err(std::io::Error::other)?;
            written += 1;
            dirty = true;
            let _ = back.try_push(c);
        }
        if finishing {
            break;
        }
        if dirty && (!any || synced.elapsed() >= WAL_SYNC) {
            let mut f = wal.0.borrow_mut();
            f.flush()?;
            if synced.elapsed() >= WAL_SYNC {
                f.get_ref().sync_data()?;
                synced = std::time::Instant::now();
            }
            dirty = false;
        }
        if !any {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    w.into_writer().flush()?;
    Ok(written)
}

/// Ethernet (locally administered MACs), IPv4 127.0.0.1 -> 127.0.0.1 and UDP headers, then
/// the datagram. The UDP checksum is 0 (allowed over IPv4); the IPv4 one is computed.
pub(crate) fn udp_frame(out: &mut Vec<u8>, port: u16, d: &[u8]) {
    out.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + 8 + d.len()) as u16;
    let mut ip = [
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum::<u32>();
    let sum = (sum & 0xFFFF) + (sum >> 16);
    let sum = !(((sum & 0xFFFF) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&ip);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&((8 + d.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(d);
}

/// The MoldUDP64 datagram inside a captured Ethernet/IPv4/UDP frame, if it is one.
pub fn datagram_of(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = ((ip[0] & 0x0F) as usize) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 17 || ip.len() < ihl + 8 {
        return None;
    }
    let udp = &ip[ihl..];
    let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    udp.get(8..len.max(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_the_datagram_back_out() {
        let mut f = Vec::new();
        udp_frame(&mut f, 31001, b"hello mold");
        assert_eq!(datagram_of(&f), Some(&b"hello mold"[..]));
        assert_eq!(datagram_of(&f[..30]), None);
    }

    fn session() -> Session {
        Session::parse("S1").unwrap()
    }

    use crate::live::arbiter::tests::msg;

    /// A capture of messages `1..=n`, one datagram each (`idle` after every message).
    fn captured(path: &Path, n: u64) {
        let mut c = Capture::start(path, &[]).unwrap();
        for seq in 1..=n {
            c.message(session(), seq, &msg(seq));
            c.idle();
        }
        assert_eq!(c.finish(false).unwrap(), n);
    }

    fn seqs(path: &Path) -> Vec<u64> {
        let src = crate::live::replay::PcapSource::open(path).unwrap();
        src.datagrams()
            .map(|d| mold::claimed(d).unwrap().0)
            .collect()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tickcore-{name}-{}.pcap", std::process::id()))
    }

    /// A kill tears the record being written: the replay uses every whole record before it
    /// and says what cut it; the resumed capture drops the torn bytes and appends after the
    /// last whole record, so the file reads whole again.
    #[rstest::rstest]
    #[case::inside_the_record_header(4)]
    #[case::inside_the_frame(40)]
    fn a_torn_capture_is_replayed_to_its_last_whole_record_and_appended_after_it(
        #[case] kept: u64,
    ) {
        let (two, path) = (temp(&format!("two{kept}")), temp(&format!("torn{kept}")));
        captured(&two, 2);
        captured(&path, 3);
        let whole = std::fs::metadata(&two).unwrap().len();
        let _ = std::fs::remove_file(&two);
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(whole + kept).unwrap();
        drop(f);
        let src = crate::live::replay::PcapSource::open(&path).unwrap();
        assert!(
            src.cut().is_some_and(|c| c.contains("torn")),
            "{:?}",
            src.cut()
        );
        assert_eq!(src.whole_len(), whole);
        drop(src);
        assert_eq!(seqs(&path), vec![1, 2]);
        let (mut c, cut) = Capture::resume(&path, &[]).unwrap();
        assert!(
            cut.is_some_and(|c| c.contains("torn")),
            "the resume says what it cut"
        );
        c.message(session(), 3, &msg(3));
        assert_eq!(c.finish(false).unwrap(), 1);
        let src = crate::live::replay::PcapSource::open(&path).unwrap();
        assert_eq!(src.cut(), None);
        drop(src);
        assert_eq!(seqs(&path), vec![1, 2, 3]);
        let _ = std::fs::remove_file(&path);
    }

    /// A recovered run appends what filled the killed run's hole after it: a replay takes
    /// the datagrams in sequence order, and finds nothing missing.
    #[test]
    fn a_hole_filled_by_an_appended_datagram_replays_in_sequence_order() {
        let path = temp("filled");
        let mut c = Capture::start(&path, &[]).unwrap();
        for seq in [1, 2, 4, 5, 3] {
            c.message(session(), seq, &msg(seq));
            c.idle();
        }
        c.finish(false).unwrap();
        let src = crate::live::replay::PcapSource::open(&path).unwrap();
        let order: Vec<u64> = src
            .in_sequence()
            .iter()
            .map(|d| mold::claimed(d).unwrap().0)
            .collect();
        assert_eq!(order, vec![1, 2, 3, 4, 5]);
        let mut applied = 0;
        let stop = std::sync::atomic::AtomicBool::new(false);
        use crate::runtime::ingress::{Fed, Source};
        src.pump(&stop, |f| applied += matches!(f, Fed::Message(..)) as u64)
            .unwrap();
        assert_eq!(applied, 5, "nothing declared lost");
        drop(src);
        let _ = std::fs::remove_file(&path);
    }

    /// A file with another pcap header (nanosecond stamps here) is not appended to: records
    /// in two formats would not read back.
    #[test]
    fn a_capture_with_another_header_is_not_appended_to() {
        let path = temp("otherheader");
        let header = pcap_file::pcap::PcapHeader {
            ts_resolution: pcap_file::TsResolution::NanoSecond,
            ..Default::default()
        };
        drop(
            pcap_file::pcap::PcapWriter::with_header(std::fs::File::create(&path).unwrap(), header)
                .unwrap(),
        );
        let e = Capture::resume(&path, &[]).err().unwrap();
        assert!(e.contains("header"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
