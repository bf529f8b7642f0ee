//! The batch log: every event the gateway took, in order, once for every client subscribed to
//! `*` of a channel. Each such client keeps only a cursor into it and reads it at its own pace;
//! the pump appends one entry per event, not one per event per client.
//!
//! Why: with 100 `*` clients the pump's fan-out into per-client queues was 29% of the gateway's
//! samples, a quarter of it one cache miss per client per BBO change on the client's marker
//! bitset (perf, `tickcore bench --ws-clients 100`, 2026-12-07). A reader walking the log
//! touches its own state while the log's tail is warm.
//!
//! A client subscribed to named symbols only keeps its own queue (`client`): walking the whole
//! log for one symbol would cost it every event.
//!
//! The log is bounded: the entries a client is more than the log's cap behind are moved into its
//! own queue, where BBO and depth conflate and the queue's limit cuts a slow client off, as for
//! every client.
//!
//! Owns entries and their positions. Never decides who wants what.

use super::wire::Frame;
use std::collections::VecDeque;

/// One event as readers find it.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A trade or bar frame of channel kind `kind`, with its ingress ns.
    Frame {
        /// Channel kind (`client::TRADES` or `client::BARS`).
        kind: u8,
        /// Instrument.
        locate: u16,
        /// As every subscriber gets it.
        frame: Frame,
        /// Ingress ns of the batch.
        at: u64,
    },
    /// `locate`'s BBO moved (the streams hold its latest).
    Bbo {
        /// Instrument.
        locate: u16,
        /// The number this move gave its BBO stream: a reader that had every move before it
        /// had `seq - 1` ([`runs`](super::runs) reads where a reader stands from it).
        seq: u64,
        /// Ingress ns of the batch.
        at: u64,
    },
    /// `locate`'s top levels moved, for the Ns in `changed` (bit N - 1).
    Depth {
        /// Instrument.
        locate: u16,
        /// The Ns whose top N changed.
        changed: u16,
        /// Ingress ns of the batch.
        at: u64,
    },
}

/// Entries `[base, base + len)` by absolute position.
#[derive(Debug)]
pub struct Log {
    entries: VecDeque<Entry>,
    base: u64,
    cap: usize,
}

impl Log {
    /// An empty log that keeps at most `cap` entries for a reader that lags.
    pub fn new(cap: usize) -> Self {
        assert!(cap > 0, "a log holds at least one entry");
        Log {
            entries: VecDeque::with_capacity(cap.min(1 << 16)),
            base: 0,
            cap,
        }
    }

    /// Position of the oldest entry kept.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Position the next entry will take.
    pub fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Appends `e`.
    pub fn push(&mut self, e: Entry) {
        self.entries.push_back(e);
    }

    /// The entry at `pos`, if still kept.
    pub fn get(&self, pos: u64) -> Option<&Entry> {
        let i = pos.checked_sub(self.base)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// Drops the entries before `pos` (every reader is past them).
    pub fn drop_before(&mut self, pos: u64) {
        assert!(
            pos <= self.end(),
            "dropping past the end: {pos} > {}",
            self.end()
        );
        let n = pos.saturating_sub(self.base);
        self.entries.drain(..n as usize);
        self.base += n;
    }

    /// Where the oldest entry a reader may still find should be: `cap` before the end.
    pub fn floor(&self) -> u64 {
        self.end().saturating_sub(self.cap as u64).max(self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bbo(l: u16) -> Entry {
        Entry::Bbo {
            locate: l,
            seq: 1,
            at: 0,
        }
    }

    #[test]
    fn positions_are_absolute_across_drops() {
        let mut log = Log::new(2);
        (1..=5).for_each(|l| log.push(bbo(l)));
        assert_eq!((log.base(), log.end(), log.floor()), (0, 5, 3));
        log.drop_before(3);
        assert!(log.get(2).is_none(), "dropped");
        assert!(matches!(log.get(3), Some(Entry::Bbo { locate: 4, .. })));
        assert!(log.get(5).is_none(), "not yet written");
        log.drop_before(5);
        assert_eq!((log.base(), log.end(), log.floor()), (5, 5, 5));
    }
}
