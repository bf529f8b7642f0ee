//! Runs: what a client reading the log takes from one position to the log's end, rendered
//! once for every client that stands at that position, and handed whole to each one's socket
//! ([`Sink::put_whole`](super::socket::Sink::put_whole)).
//!
//! A client that takes every symbol of some channels (no depth, nothing named) and read the
//! log up to its end has nothing of its own to remember: for each symbol it holds the BBO
//! numbered `seq - 1` of the first BBO entry after its cursor, or the latest if there is
//! none. Two such clients at the same cursor write the same bytes. With 100 clients taking
//! every m7 symbol's trades and BBO, reading the log one frame at a time per client (a lookup
//! of the client's stream and of the symbol's latest frame for every BBO change, a reference
//! count up and down, a copy per frame) was about a third of the gateway's samples. The
//! lookups missed the cache: the socket write for the client before had evicted those lines
//! (perf, `tickcore bench --ws-clients 100`, 2026-12-07).
//!
//! A run folds BBO changes exactly as a client reading one frame at a time does: the first
//! entry of a symbol in the run gives its latest frame (conflated when it is not the entry's
//! own number), later ones fold. The unit tests check the two byte for byte.
//!
//! Owns the runs of the log's present end and the per-symbol marks of one rendering. Never
//! touches a client, a queue or a socket.

use super::client::BBO;
use super::log::{Entry, Log};
use super::market::Market;
use super::streams::Streams;

/// Ingress times of the frames taken for one write, in order, as (ns, frames) runs; 0 for
/// frames that carry no event (an ack, a heartbeat).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stamps(Vec<(u64, u64)>);

impl Stamps {
    /// One more frame stamped `at`.
    pub fn push(&mut self, at: u64) {
        self.push_n(at, 1);
    }

    fn push_n(&mut self, at: u64, n: u64) {
        match self.0.last_mut() {
            Some(last) if last.0 == at => last.1 += n,
            _ => self.0.push((at, n)),
        }
    }

    /// `other`'s frames after these.
    pub fn extend(&mut self, other: &Stamps) {
        other.0.iter().for_each(|&(at, n)| self.push_n(at, n));
    }

    /// Frames stamped.
    pub fn frames(&self) -> u64 {
        self.0.iter().map(|r| r.1).sum()
    }

    /// Whether no frame is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Their delays at `now` as (ns, frames), frames without an event left out. Neighbours
    /// whose delay is within 1/128 of the group's first (and longest) are counted at that
    /// one: a write carries frames of about a hundred batches, and a histogram entry per
    /// batch was 9% of the gateway's samples with 100 clients (perf, 2026-12-07). A delay is
    /// overstated by less than 0.8%, never understated.
    pub fn delays(&self, now: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut runs = self.0.iter().filter(|r| r.0 > 0).peekable();
        std::iter::from_fn(move || {
            let &(first, mut n) = runs.next()?;
            let delay = now.saturating_sub(first);
            while let Some(&&(at, k)) = runs.peek() {
                if at < first || (at - first).saturating_mul(128) > delay {
                    break;
                }
                n += k;
                runs.next();
            }
            Some((delay, n))
        })
    }

    /// Forgets every frame.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The BBO number a client that read the log up to a BBO entry numbered `seq` holds (`None`
/// before the first): where a run's reader stands, and what [`Client::unsync`] writes back.
///
/// [`Client::unsync`]: super::client::Client::unsync
pub fn held_before(seq: u64) -> Option<u64> {
    (seq > 1).then(|| seq - 1)
}

/// The channel kinds a client takes of every symbol, one bit per kind (`1 << kind`).
pub type Shape = u8;

/// The frames from one position to the log's end for one shape.
#[derive(Debug, Default)]
pub struct Run {
    from: u64,
    to: u64,
    shape: Shape,
    /// The frames as they go on the wire.
    pub bytes: Vec<u8>,
    /// Their ingress times.
    pub stamps: Stamps,
    /// BBO entries folded into a frame of the run.
    pub folded: u64,
}

impl Run {
    /// Where a client that took the run reads next: the log's end when it was rendered.
    pub fn end(&self) -> u64 {
        self.to
    }
}

/// A run larger than this gives its buffer back rather than keep it as a spare.
const KEEP_BYTES: usize = 1 << 20;
/// Spare runs kept for reuse.
const SPARES: usize = 8;

/// The runs rendered for the log's present end.
#[derive(Debug, Default)]
pub struct Runs {
    runs: Vec<Run>,
    spare: Vec<Run>,
    /// Per locate: the rendering that last met its BBO (a generation, so nothing is cleared
    /// between renderings).
    met: Vec<u32>,
    generation: u32,
    /// Runs rendered.
    pub rendered: u64,
    /// Runs served (more than rendered: clients served without a rendering).
    pub served: u64,
}

impl Runs {
    /// The run of `shape` from `from` to the log's end, rendered unless a client at `from`
    /// already had it since the log last grew.
    pub fn get(&mut self, from: u64, shape: Shape, log: &Log, m: &Market, s: &mut Streams) -> &Run {
        let to = log.end();
        assert!(from <= to, "a reader past the log's end: {from} > {to}");
        self.drop_stale(to);
        self.served += 1;
        let i = match self
            .runs
            .iter()
            .position(|r| r.from == from && r.shape == shape)
        {
            Some(i) => i,
            None => {
                let mut run = self.spare.pop().unwrap_or_default();
                self.render(&mut run, (from, to, shape), log, m, s);
                self.runs.push(run);
                self.runs.len() - 1
            }
        };
        &self.runs[i]
    }

    /// Runs of an end the log has since grown past are kept as spares.
    fn drop_stale(&mut self, to: u64) {
        let mut i = 0;
        while i < self.runs.len() {
            if self.runs[i].to == to {
                i += 1;
                continue;
            }
            let run = self.runs.swap_remove(i);
            if self.spare.len() < SPARES && run.bytes.capacity() <= KEEP_BYTES {
                self.spare.push(run);
            }
        }
    }

    fn render(
        &mut self,
        run: &mut Run,
        (from, to, shape): (u64, u64, Shape),
        log: &Log,
        m: &Market,
        s: &mut Streams,
    ) {
        self.rendered += 1;
        *run = Run {
            from,
            to,
            shape,
            bytes: std::mem::take(&mut run.bytes),
            stamps: std::mem::take(&mut run.stamps),
            folded: 0,
        };
        run.bytes.clear();
        run.stamps.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.met.fill(0);
            self.generation = 1;
        }
        if self.met.len() < s.bbo_bound() {
            self.met.resize(s.bbo_bound(), 0);
        }
        for pos in from..to {
            let e = log
                .get(pos)
                .unwrap_or_else(|| panic!("a reader's cursor {pos} is behind the log's base"));
            match e {
                Entry::Frame {
                    kind, frame, at, ..
                } if shape & (1 << kind) != 0 => {
                    run.bytes.extend_from_slice(frame.wire());
                    run.stamps.push(*at);
                }
                Entry::Bbo { locate, seq, at } if shape & (1 << BBO) != 0 => {
                    let met = &mut self.met[usize::from(*locate)];
                    if *met == self.generation {
                        run.folded += 1;
                        continue;
                    }
                    *met = self.generation;
                    let latest = s.bbo_seq(*locate).unwrap_or(*seq);
                    // As a client one frame at a time: it gets the latest, conflated when that
                    // skips numbers past the one it held.
                    let conflated = held_before(*seq).is_some_and(|held| held + 1 < latest);
                    if let Some((_, f)) = s.bbo_frame(m, *locate, conflated) {
                        run.bytes.extend_from_slice(f.wire());
                        run.stamps.push(*at);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_merge_neighbours_with_one_time_and_keep_order() {
        let mut a = Stamps::default();
        [5, 5, 0, 7, 7, 7].into_iter().for_each(|t| a.push(t));
        let mut b = Stamps::default();
        b.push(7);
        b.push(9);
        a.extend(&b);
        assert_eq!(a.0, [(5, 2), (0, 1), (7, 4), (9, 1)]);
        assert_eq!(a.frames(), 8);
    }

    #[rstest::rstest]
    #[case::close_ones_count_at_the_oldest(&[(1_000, 2), (1_007, 3)], &[(1_000, 5)])]
    #[case::farther_ones_apart(&[(1_000, 2), (1_008, 3)], &[(1_000, 2), (992, 3)])]
    #[case::no_event_left_out(&[(0, 4), (1_000, 1)], &[(1_000, 1)])]
    #[case::a_newer_before_an_older_not_merged(&[(1_005, 1), (1_000, 1)], &[(995, 1), (1_000, 1)])]
    fn delays_group_neighbours_within_a_128th(
        #[case] runs: &[(u64, u64)],
        #[case] want: &[(u64, u64)],
    ) {
        let s = Stamps(runs.to_vec());
        assert_eq!(s.delays(2_000).collect::<Vec<_>>(), want);
    }
}
