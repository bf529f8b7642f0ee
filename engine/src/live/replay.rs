//! `--feed pcap:PATH`: a capture fed back through the same arbiter as the live feed, so a
//! capture's books equal the live run's books.
//!
//! Owns reading the pcap file (mapped, read in place; a tail torn by a killed writer is said and
//! the records before it are used) and unwrapping each frame to its MoldUDP64 datagram. A
//! recovery replays the killed run's capture through [`PcapSource::datagrams`] too. There is
//! no one to ask for what a capture lacks: a gap in it is declared lost at once and counted.

use super::arbiter::{Arbiter, ArbiterConfig, Outlet};
use super::capture::datagram_of;
use crate::runtime::ingress::{Fed, Source};
use pcap_file::pcap::PcapParser;
use shards::itch::{FrameError, WalkStats};
use shards::mold::{self, Request};
use std::sync::atomic::{AtomicBool, Ordering};

/// A pcap capture of MoldUDP64 datagrams, mapped and read in place.
pub struct PcapSource {
    name: String,
    map: memmap2::Mmap,
    parser: PcapParser,
    /// Where the records start (after the file header) and where the last whole one ends.
    records: std::ops::Range<usize>,
    /// Frames that were not IPv4/UDP (skipped, counted, named in [`Source::describe`]).
    not_udp: u64,
    /// What cut the file short, if something did: a record torn by a killed writer, or a
    /// damaged one. Everything before it is used.
    cut: Option<String>,
}

impl PcapSource {
    /// Maps the file and walks its record headers once (counting frames that are not UDP and
    /// finding where the whole records end); an error names the problem.
    pub fn open(path: &std::path::Path) -> Result<PcapSource, String> {
        let f = std::fs::File::open(path)
            .map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < super::capture::PCAP_HEADER_LEN as u64 {
            return Err(format!(
                "{}: not a pcap file: {len} bytes, shorter than a pcap header",
                path.display()
            ));
        }
        // SAFETY: the file is only read, and only below the end of its last whole record. A
        // recovery cuts a torn tail before it maps the file again to replay it, and its writer
        // only appends past the mapped length; another process rewriting the file under a
        // replay is an operator error this process cannot prevent.
        let map = unsafe { memmap2::Mmap::map(&f) }
            .map_err(|e| format!("{}: cannot map: {e}", path.display()))?;
        let (rest, parser) = PcapParser::new(&map[..])
            .map_err(|e| format!("{}: not a pcap file: {e}", path.display()))?;
        let start = map.len() - rest.len();
        let mut s = PcapSource {
            name: path.display().to_string(),
            records: start..map.len(),
            map,
            parser,
            not_udp: 0,
            cut: None,
        };
        s.walk();
        Ok(s)
    }

    /// One pass over the record headers: counts, and where the whole records end.
    fn walk(&mut self) {
        let mut rest = &self.map[self.records.clone()];
        let mut not_udp = 0;
        while !rest.is_empty() {
            match self.parser.next_packet(rest) {
                Ok((r, p)) => {
                    not_udp += datagram_of(&p.data).is_none() as u64;
                    rest = r;
                }
                Err(e) => {
                    self.cut = Some(match e {
                        pcap_file::PcapError::IncompleteBuffer => {
                            format!("its last {} bytes are a torn record", rest.len())
                        }
                        e => format!(
                            "a damaged record ({e}) and the {} bytes after it",
                            rest.len()
                        ),
                    });
                    break;
                }
            }
        }
        self.records.end = self.map.len() - rest.len();
        self.not_udp = not_udp;
    }

    /// Its datagrams, in file order, up to the last whole record.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut rest = &self.map[self.records.clone()];
        std::iter::from_fn(move || loop {
            let (r, p) = self.parser.next_packet(rest).ok()?;
            rest = r;
            // The frame borrows the map: `p.data` is `Cow::Borrowed` for a parser over a slice.
            let frame: &[u8] = match p.data {
                std::borrow::Cow::Borrowed(b) => b,
                std::borrow::Cow::Owned(_) => continue,
            };
            if let Some(d) = datagram_of(frame) {
                return Some(d);
            }
        })
    }

    /// Its datagrams in sequence order within each session (sessions in the order they first
    /// appear, file order among equals). A recovered run appends what filled the killed run's
    /// holes after the killed run's records: in file order those holes would be found empty.
    pub fn in_sequence(&self) -> Vec<&[u8]> {
        let mut sessions: Vec<[u8; mold::SESSION_LEN]> = Vec::new();
        let mut keyed: Vec<(usize, u64, &[u8])> = Vec::new();
        for d in self.datagrams() {
            let (k, seq) = match mold::header(d) {
                Ok((s, seq, _)) => match sessions.iter().position(|x| *x == s.0) {
                    Some(k) => (k, seq),
                    None => {
                        sessions.push(s.0);
                        (sessions.len() - 1, seq)
                    }
                },
                // Malformed: sorted to the front of the session it follows, for the arbiter
                // to count (its place does not change the count).
                Err(_) => (sessions.len().saturating_sub(1), 0),
            };
            keyed.push((k, seq, d));
        }
        keyed.sort_by_key(|&(k, seq, _)| (k, seq));
        keyed.into_iter().map(|(_, _, d)| d).collect()
    }

    /// What cut the file short, if anything.
    pub fn cut(&self) -> Option<&str> {
        self.cut.as_deref()
    }

    /// Bytes up to the end of the last whole record.
    pub fn whole_len(&self) -> u64 {
        self.records.end as u64
    }

    /// The file's pcap header, as written.
    pub fn header_bytes(&self) -> &[u8] {
        &self.map[..self.records.start]
    }
}

struct Out<F: FnMut(Fed<'_>)> {
    each: F,
}

impl<F: FnMut(Fed<'_>)> Outlet for Out<F> {
    fn message(&mut self, _seq: u64, m: &[u8]) {
        (self.each)(Fed::Message(m, 0));
    }
    fn request(&mut self, _r: Request) {}
    fn lost(&mut self, from: u64, to: u64) {
        tracing::error!(
            "pcap replay: messages {from} to {} are not in the capture",
            to - 1
        );
    }
    fn notice(&mut self, what: std::fmt::Arguments<'_>) {
        tracing::warn!("pcap replay: {what}");
    }
}

impl Source for PcapSource {
    fn describe(&self) -> String {
        let mut s = format!("pcap capture {}", self.name);
        if self.not_udp > 0 {
            s += &format!(" ({} frame(s) not IPv4/UDP, skipped)", self.not_udp);
        }
        if let Some(c) = &self.cut {
            s += &format!(" (cut short: {c}; replayed up to it)");
        }
        s
    }

    fn whole(&self) -> Option<&[u8]> {
        None
    }

    fn pump(&self, stop: &AtomicBool, each: impl FnMut(Fed<'_>)) -> Result<WalkStats, FrameError> {
        let mut arb = Arbiter::new(ArbiterConfig {
            lines: 1,
            max_retries: 0,
            reorder_ns: 0,
            ..ArbiterConfig::default()
        });
        let mut out = Out { each };
        for (i, d) in self.in_sequence().into_iter().enumerate() {
            if i % 4096 == 0 && stop.load(Ordering::Relaxed) {
                break;
            }
            arb.datagram(0, d, i as u64, &mut out);
            arb.tick(i as u64, &mut out);
        }
        // Whatever is still missing at the end was never captured.
        arb.tick(u64::MAX / 2, &mut out);
        Ok(WalkStats {
            frames: arb.applied(),
            ..WalkStats::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::{PcapPacket, PcapWriter};

    #[test]
    fn frames_that_are_not_udp_are_counted_and_named() {
        let path =
            std::env::temp_dir().join(format!("tickcore-notudp-{}.pcap", std::process::id()));
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        let mut udp = Vec::new();
        super::super::capture::udp_frame(&mut udp, 31001, b"not mold but udp");
        // An ARP frame: Ethernet with type 0x0806.
        let mut arp = vec![0xFF; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        for f in [&udp, &arp, &arp] {
            let ts = std::time::Duration::from_secs(1);
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
                .unwrap();
        }
        drop(w);
        let s = PcapSource::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!((s.datagrams().count(), s.not_udp), (1, 2));
        assert!(
            s.describe().contains("2 frame(s) not IPv4/UDP"),
            "{}",
            s.describe()
        );
    }
}
