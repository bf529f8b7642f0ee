//! The exchange's whole session, indexed by sequence number: what the lines send and what the
//! re-request server answers from.
//!
//! Owns the message offsets (read-only once built) and the one range the operator silenced.
//! Never changes after construction, so the sender and the server share it without a lock.

use shards::itch::{walk, FrameError};
use shards::mold::PacketWriter;

/// Every message of the session.
pub struct History {
    bytes: Vec<u8>,
    /// Offset of each message's length prefix; message `seq` is at `offsets[seq - 1]`.
    offsets: Vec<u64>,
    /// Sequence numbers `[from, to]` the lines never carry and the server never answers.
    pub silence: Option<(u64, u64)>,
}

impl History {
    /// Indexes BinaryFILE `bytes`.
    pub fn new(bytes: Vec<u8>, silence: Option<(u64, u64)>) -> Result<History, FrameError> {
        let mut offsets = Vec::new();
        walk(&bytes, false, |off, _| offsets.push(off as u64))?;
        Ok(History {
            bytes,
            offsets,
            silence,
        })
    }

    /// Messages in the session.
    pub fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Whether the session has no messages.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Message `seq` (from 1).
    pub fn message(&self, seq: u64) -> &[u8] {
        let at = self.offsets[(seq - 1) as usize] as usize;
        let len = u16::from_be_bytes([self.bytes[at], self.bytes[at + 1]]) as usize;
        &self.bytes[at + 2..at + 2 + len]
    }

    /// Whether `seq` is in the silenced range.
    pub fn silenced(&self, seq: u64) -> bool {
        self.silence.is_some_and(|(a, b)| a <= seq && seq <= b)
    }

    /// Packs messages from `seq` into `w` until it is full, `count` are in, the session ends, or
    /// the silenced range begins or ends (a packet is all silenced or none of it). Returns
    /// how many went in.
    pub fn pack(&self, w: &mut PacketWriter, seq: u64, count: u64) -> u64 {
        w.start(seq);
        let quiet = self.silenced(seq);
        let mut n = 0;
        while n < count && seq + n <= self.len() && self.silenced(seq + n) == quiet {
            if !w.push(self.message(seq + n)) {
                break;
            }
            n += 1;
        }
        n
    }

    /// The ITCH timestamp of message `seq`, if it has one.
    pub fn timestamp(&self, seq: u64) -> Option<u64> {
        shards::itch::field::timestamp(self.message(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::mold::Session;

    #[test]
    fn packing_stops_at_the_silence_boundaries() {
        let bytes = shards::synth::generate(&shards::synth::GenConfig {
            scope: shards::synth::Scope::F2,
            messages: 200,
            seed: 1,
            profile: shards::synth::Profile::Realistic,
        })
        .unwrap();
        let h = History::new(bytes, Some((10, 14))).unwrap();
        assert_eq!(h.len(), 200);
        let mut w = PacketWriter::new(Session::parse("S").unwrap(), 1400);
        assert_eq!(h.pack(&mut w, 1, 100), 9);
        assert_eq!(h.pack(&mut w, 10, 100), 5);
        assert_eq!(h.pack(&mut w, 199, 100), 2);
        let p = shards::mold::parse(w.finish()).unwrap();
        assert_eq!(p.messages().next().unwrap(), h.message(199));
    }
}
