//! When the ingress marks the feed for a checkpoint, and where a recovery starts it.
//!
//! Owns the schedule (feed time, not wall time: a replay at 100x checkpoints as often per
//! message as the live day would) and the request flag the admin endpoint sets. A mark waits
//! (the request stays set, the schedule stays due) until every shard has finished writing the
//! previous one: a shard that dropped a checkpoint its neighbours wrote would leave a set no
//! recovery can use. Never blocks: a look is a few relaxed loads every [`LOOK_EVERY`] messages.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Messages between looks at the request flag and the feed clock (a look reads one message's
/// timestamp: 2 ns, too much for every message of a 20 M/s replay).
const LOOK_EVERY: u64 = 1024;

/// The ingress's checkpoint schedule.
#[derive(Debug)]
pub struct Marks {
    /// Feed time between checkpoints, ns (0: only on request).
    pub every_ns: u64,
    /// Set to ask for a checkpoint now (`PUT /checkpoint`); the ingress clears it.
    pub request: Option<Arc<AtomicBool>>,
    /// Messages a recovery's checkpoint already holds: read, but not routed.
    pub skip: u64,
    /// Each shard's last checkpoint finished (written or failed), by mark.
    pub finished: Vec<Arc<AtomicU64>>,
    /// The last mark sent.
    last: u64,
    /// Feed time of the next scheduled checkpoint (0: not set yet).
    next_ns: u64,
    /// Marks given (each `true` from [`Marks::due`]).
    pub taken: u64,
}

impl Marks {
    /// A schedule: every `every_ns` of feed time (0: never), on `request`, after `skip`
    /// messages a recovery already holds.
    pub fn new(
        every_ns: u64,
        request: Option<Arc<AtomicBool>>,
        skip: u64,
        finished: Vec<Arc<AtomicU64>>,
    ) -> Marks {
        Marks {
            every_ns,
            request,
            skip,
            finished,
            last: 0,
            next_ns: 0,
            taken: 0,
        }
    }

    /// Whether message number `n` (from 1), just routed, should be followed by a mark (the
    /// caller then sends it). `ts` reads the message's feed time when the schedule needs it.
    #[inline]
    pub fn due(&mut self, n: u64, ts: impl FnOnce() -> Option<u64>) -> bool {
        let due = self.check(n, ts);
        if due {
            self.last = n;
            self.taken += 1;
        }
        due
    }

    fn check(&mut self, n: u64, ts: impl FnOnce() -> Option<u64>) -> bool {
        if n % LOOK_EVERY != 0 || (self.every_ns == 0 && self.request.is_none()) {
            return false;
        }
        if self
            .finished
            .iter()
            .any(|f| f.load(Ordering::Acquire) < self.last)
        {
            return false;
        }
        if self
            .request
            .as_ref()
            .is_some_and(|r| r.swap(false, Ordering::Relaxed))
        {
            return true;
        }
        if self.every_ns == 0 {
            return false;
        }
        let Some(t) = ts() else { return false };
        if self.next_ns == 0 {
            self.next_ns = t + self.every_ns;
            return false;
        }
        if t >= self.next_ns {
            self.next_ns = t + self.every_ns;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn marks_follow_feed_time_and_requests() {
        let req = Arc::new(AtomicBool::new(false));
        let mut m = Marks::new(10 * S, Some(Arc::clone(&req)), 0, Vec::new());
        let mut marked = Vec::new();
        for n in 1..=100 * LOOK_EVERY {
            // One second of feed time every 4 looks.
            let t = 3600 * S + n * S / (4 * LOOK_EVERY);
            if n == 50 * LOOK_EVERY {
                req.store(true, Ordering::Relaxed);
            }
            if m.due(n, || Some(t)) {
                marked.push(n / LOOK_EVERY);
            }
        }
        assert_eq!(
            marked,
            vec![41, 50, 81],
            "every 40 looks, and the request at once"
        );
        assert!(!req.load(Ordering::Relaxed), "the request is taken");
    }

    #[test]
    fn a_mark_waits_until_every_shard_finished_the_last() {
        let done = [Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0))];
        let req = Arc::new(AtomicBool::new(true));
        let mut m = Marks::new(0, Some(Arc::clone(&req)), 0, done.to_vec());
        assert!(m.due(LOOK_EVERY, || None));
        req.store(true, Ordering::Relaxed);
        done[0].store(LOOK_EVERY, Ordering::Release);
        assert!(!m.due(2 * LOOK_EVERY, || None), "shard 1 is still writing");
        assert!(req.load(Ordering::Relaxed), "the request waits");
        done[1].store(LOOK_EVERY, Ordering::Release);
        assert!(m.due(3 * LOOK_EVERY, || None));
    }
}
