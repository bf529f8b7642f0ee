//! `--feed pcap:PATH`: a capture fed back through the same arbiter as the live feed, so a
//! capture's books equal the live run's books.
//!
//! Owns reading the pcap file and unwrapping each frame to its MoldUDP64 datagram. There is no
//! one to ask for what a capture lacks: a gap in it is declared lost at once and counted.

use super::arbiter::{Arbiter, ArbiterConfig, Outlet};
use super::capture::datagram_of;
use crate::runtime::ingress::{Fed, Source};
use shards::itch::{FrameError, WalkStats};
use shards::mold::Request;
use std::sync::atomic::{AtomicBool, Ordering};

/// A pcap capture of MoldUDP64 datagrams, read whole.
pub struct PcapSource {
    name: String,
    datagrams: Vec<Vec<u8>>,
    /// Frames that were not IPv4/UDP (skipped, counted, named in [`Source::describe`]).
    not_udp: u64,
}

impl PcapSource {
    /// Its datagrams, in file order.
    pub fn datagrams(&self) -> &[Vec<u8>] {
        &self.datagrams
    }

    /// Reads every frame of the file; an error names the problem.
    pub fn open(path: &std::path::Path) -> Result<PcapSource, String> {
        let f = std::fs::File::open(path)
            .map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
        let mut r = pcap_file::pcap::PcapReader::new(std::io::BufReader::new(f))
            .map_err(|e| format!("{}: not a pcap file: {e}", path.display()))?;
        let mut datagrams = Vec::new();
        let mut not_udp = 0;
        while let Some(p) = r.next_packet() {
            let p = p.map_err(|e| format!("{}: a damaged record: {e}", path.display()))?;
            match datagram_of(&p.data) {
                Some(d) => datagrams.push(d.to_vec()),
                None => not_udp += 1,
            }
        }
        Ok(PcapSource {
            name: path.display().to_string(),
            datagrams,
            not_udp,
        })
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
        match self.not_udp {
            0 => format!("pcap capture {}", self.name),
            n => format!(
                "pcap capture {} ({n} frame(s) not IPv4/UDP, skipped)",
                self.name
            ),
        }
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
        for (i, d) in self.datagrams.iter().enumerate() {
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
        assert_eq!((s.datagrams.len(), s.not_udp), (1, 2));
        assert!(
            s.describe().contains("2 frame(s) not IPv4/UDP"),
            "{}",
            s.describe()
        );
    }
}
