//! Snapshot requests out to the shards: the one path every snapshot takes (the admin
//! endpoint's, the benchmark's probe, the run's end-of-feed queries), each with a deadline.
//!
//! A shard answers its control ring in order, so the requests out to one shard are a FIFO:
//! the next answer from shard i belongs to the oldest request out to shard i. A request past
//! its deadline is expired (its asker told so) but stays in the queue until its late answer
//! arrives and is dropped, so no answer is ever handed to the wrong asker.
//!
//! Owns only bookkeeping: never touches a ring or a clock itself, never allocates after
//! start-up (each shard's queue holds at most [`MAX_OUT`]).

use std::collections::VecDeque;
use std::time::Instant;

/// Requests out to one shard at most: half its answer ring (16), so an answer always has room.
pub const MAX_OUT: usize = 8;

/// Who asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// The control core's own snapshot load (`tickcore bench`).
    Probe,
    /// The admin endpoint, request id.
    Admin(u64),
    /// The run, at the end of the feed (`--query`).
    Engine,
}

/// One request out.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// Shard asked.
    pub shard: usize,
    /// Who asked.
    pub asker: Asker,
    /// Engine clock when it was sent.
    pub sent_ns: u64,
    /// When its asker stops waiting.
    pub deadline: Instant,
    /// Its asker has been told it expired; its answer is dropped when it comes.
    pub expired: bool,
}

/// Every request out, per shard, oldest first.
pub struct Outstanding {
    per_shard: Vec<VecDeque<Query>>,
}

impl Outstanding {
    /// No request out to any of `shards` shards.
    pub fn new(shards: usize) -> Outstanding {
        Outstanding {
            per_shard: (0..shards)
                .map(|_| VecDeque::with_capacity(MAX_OUT))
                .collect(),
        }
    }

    /// Whether another request may go to `shard`.
    pub fn has_room(&self, shard: usize) -> bool {
        self.per_shard[shard].len() < MAX_OUT
    }

    /// Records a request sent to `shard`.
    pub fn sent(&mut self, shard: usize, asker: Asker, sent_ns: u64, deadline: Instant) {
        assert!(
            self.has_room(shard),
            "a request beyond MAX_OUT to shard {shard}"
        );
        self.per_shard[shard].push_back(Query {
            shard,
            asker,
            sent_ns,
            deadline,
            expired: false,
        });
    }

    /// The request `shard`'s next answer belongs to (`None`: an answer nobody asked for).
    pub fn answered(&mut self, shard: usize) -> Option<Query> {
        self.per_shard[shard].pop_front()
    }

    /// Marks every request past its deadline at `now` as expired and returns those newly so.
    pub fn expire(&mut self, now: Instant) -> impl Iterator<Item = Query> + '_ {
        self.per_shard.iter_mut().flat_map(move |q| {
            q.iter_mut().filter_map(move |r| {
                (!r.expired && now > r.deadline).then(|| {
                    r.expired = true;
                    *r
                })
            })
        })
    }

    /// Marks the probe's requests still out as expired: their answers, whenever they come,
    /// are not timed.
    pub fn expire_probe(&mut self) {
        for q in self.per_shard.iter_mut().flatten() {
            if q.asker == Asker::Probe {
                q.expired = true;
            }
        }
    }

    /// Whether a probe request is out (the probe keeps one at a time).
    pub fn probe_out(&self) -> bool {
        self.per_shard
            .iter()
            .flatten()
            .any(|q| q.asker == Asker::Probe && !q.expired)
    }

    /// No request out (expired ones still waiting for their late answer count as out).
    pub fn is_empty(&self) -> bool {
        self.per_shard.iter().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_go_to_the_oldest_request_of_their_shard() {
        let mut o = Outstanding::new(2);
        let t = Instant::now() + Duration::from_secs(1);
        o.sent(0, Asker::Admin(1), 10, t);
        o.sent(1, Asker::Probe, 11, t);
        o.sent(0, Asker::Admin(2), 12, t);
        assert_eq!(o.answered(0).map(|q| q.asker), Some(Asker::Admin(1)));
        assert_eq!(o.answered(1).map(|q| q.asker), Some(Asker::Probe));
        assert_eq!(o.answered(0).map(|q| q.asker), Some(Asker::Admin(2)));
        assert!(o.is_empty());
        assert!(o.answered(0).is_none(), "an answer nobody asked for");
    }

    #[test]
    fn an_expired_request_is_reported_once_and_still_takes_its_late_answer() {
        let mut o = Outstanding::new(1);
        let start = Instant::now();
        o.sent(0, Asker::Admin(7), 0, start);
        o.sent(0, Asker::Admin(8), 0, start + Duration::from_secs(60));
        let later = start + Duration::from_millis(1);
        let gone: Vec<_> = o.expire(later).map(|q| q.asker).collect();
        assert_eq!(gone, vec![Asker::Admin(7)]);
        assert_eq!(o.expire(later).count(), 0, "told once");
        // The late answer is 7's, not 8's.
        let q = o.answered(0).expect("still queued");
        assert!(q.expired && q.asker == Asker::Admin(7));
        assert_eq!(o.answered(0).map(|q| q.asker), Some(Asker::Admin(8)));
    }

    #[test]
    fn ending_the_probe_leaves_its_answer_untimed_and_others_alone() {
        let mut o = Outstanding::new(1);
        let t = Instant::now() + Duration::from_secs(1);
        o.sent(0, Asker::Probe, 0, t);
        o.sent(0, Asker::Admin(3), 0, t);
        assert!(o.probe_out());
        o.expire_probe();
        assert!(!o.probe_out());
        let p = o.answered(0).expect("still queued for its answer");
        assert!(p.expired && p.asker == Asker::Probe);
        let a = o.answered(0).expect("the admin's request");
        assert!(!a.expired, "only the probe's requests end");
    }

    #[test]
    fn a_shard_takes_at_most_max_out_requests() {
        let mut o = Outstanding::new(1);
        let t = Instant::now();
        for i in 0..MAX_OUT as u64 {
            assert!(o.has_room(0));
            o.sent(0, Asker::Admin(i), 0, t);
        }
        assert!(!o.has_room(0));
        assert!(!o.probe_out());
    }
}
