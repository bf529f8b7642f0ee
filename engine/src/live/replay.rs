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
    /// Frames that were not IPv4/UDP (skipped, counted).
    pub not_udp: u64,
}

impl PcapSource {
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
        format!("pcap capture {}", self.name)
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
