//! Latency measurement: the pipeline's stages, each core's own HDR histograms, and how a core
//! ships an interval's histograms to the control core without waiting or allocating.
//!
//! Every core records only into its own [`StageSet`]; nothing here is shared. At each interval
//! boundary (the core checks its clock between batches) the [`Reporter`] swaps its set with a
//! spare that the control core handed back, and sends the filled one over an SPSC ring. When no
//! spare is back yet (control is slow), the core keeps recording into the same set: an interval
//! then spans longer, but no sample is dropped and the core never waits.
//!
//! Clock: [`crate::runtime::clock::now_ns`] (CLOCK_MONOTONIC through the vDSO: one clock for all
//! cores, about 20 ns a read here), read a few times per batch, never per message.

pub mod budget;
pub mod crossing;
pub mod lost;
pub mod memory;
pub mod noise;
pub mod offcpu;
pub mod speed;

use crate::runtime::ring::{self, Consumer, Producer};
use hdrhistogram::Histogram;

/// A stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Ingress: first message of a batch read (or due, when paced) -> batch handed to a ring.
    Ingress,
    /// Hop: batch handed to a ring -> its shard picked it up.
    Hop,
    /// Apply: book update per message (the batch's apply time over its messages: messages go
    /// through a prefetch pipeline that interleaves several, so one has no time of its own).
    Apply,
    /// Emit: a batch applied -> its events on the ring to consumers.
    Emit,
    /// End to end: first message read (or due) -> its events on the ring to consumers.
    E2e,
    /// Persist: first message read -> its rows committed by a sink (rows that went through the
    /// spool are not timed: the spool does not keep the stamp).
    Persist,
    /// Snapshot: a snapshot request sent to a shard -> its answer back at the control core.
    Snapshot,
    /// Deliver: first message read -> a frame of its events written to a WebSocket client
    /// (`run --ws`; a conflated frame counts from the oldest update it carries).
    Deliver,
}

/// Every stage, in pipeline order.
pub const STAGES: [Stage; 8] = [
    Stage::Ingress,
    Stage::Hop,
    Stage::Apply,
    Stage::Emit,
    Stage::E2e,
    Stage::Persist,
    Stage::Snapshot,
    Stage::Deliver,
];

impl Stage {
    /// The name in budgets, metrics and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingress => "ingress",
            Stage::Hop => "hop",
            Stage::Apply => "apply",
            Stage::Emit => "emit",
            Stage::E2e => "e2e",
            Stage::Persist => "persist",
            Stage::Snapshot => "snapshot",
            Stage::Deliver => "deliver",
        }
    }

    /// The stage called `name`.
    pub fn parse(name: &str) -> Option<Stage> {
        STAGES.iter().copied().find(|s| s.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Highest latency a histogram tracks: one minute. A higher value is counted apart, as
/// beyond the range ([`StageSet::beyond`]), never clamped into a quantile.
pub const MAX_NS: u64 = 60_000_000_000;

/// The median of some figures, the upper middle one of an even count (0 for none).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A fresh histogram: 1 ns to a minute, two significant digits (1% resolution; about 30 KiB,
/// small enough to keep one per stage per core in cache-friendly reach).
pub fn histogram() -> Histogram<u64> {
    let mut h =
        Histogram::new_with_bounds(1, MAX_NS, 2).expect("static histogram bounds are valid");
    // Its counters come as untouched zero pages: record one value per power of two (one per
    // bucket, a KiB apart) so every page is resident before a run records into it, then clear.
    let mut v = 1u64;
    while v <= MAX_NS {
        let _ = h.record(v);
        v *= 2;
    }
    h.reset();
    h
}

/// One core's histograms, one per stage it records (the others stay empty).
pub struct StageSet {
    hists: [Histogram<u64>; STAGES.len()],
    /// Samples over [`MAX_NS`], per stage.
    beyond: [u64; STAGES.len()],
}

impl Default for StageSet {
    fn default() -> Self {
        StageSet {
            hists: std::array::from_fn(|_| histogram()),
            beyond: [0; STAGES.len()],
        }
    }
}

impl StageSet {
    /// Records one latency.
    #[inline]
    pub fn record(&mut self, stage: Stage, ns: u64) {
        self.record_n(stage, ns, 1);
    }

    /// Records `n` samples of the same latency.
    #[inline]
    pub fn record_n(&mut self, stage: Stage, ns: u64, n: u64) {
        if ns > MAX_NS {
            return self.record_beyond(stage, n);
        }
        let _ = self.hists[stage.index()].record_n(ns.max(1), n);
    }

    #[cold]
    fn record_beyond(&mut self, stage: Stage, n: u64) {
        self.beyond[stage.index()] += n;
    }

    /// Samples of `stage` over [`MAX_NS`] (not in its histogram).
    pub fn beyond(&self, stage: Stage) -> u64 {
        self.beyond[stage.index()]
    }

    /// The histogram of `stage`.
    pub fn get(&self, stage: Stage) -> &Histogram<u64> {
        &self.hists[stage.index()]
    }

    /// Adds `h` to the histogram of `stage` (one recorded elsewhere, e.g. the control core's
    /// snapshot round trips).
    pub fn add(&mut self, stage: Stage, h: &Histogram<u64>) {
        let _ = self.hists[stage.index()].add(h);
    }

    /// Adds every histogram of `other`.
    pub fn merge(&mut self, other: &StageSet) {
        for s in STAGES {
            self.merge_stage(other, s);
        }
    }

    /// Whether `stage` recorded anything (in its histogram or beyond it).
    pub fn holds(&self, stage: Stage) -> bool {
        !self.hists[stage.index()].is_empty() || self.beyond[stage.index()] > 0
    }

    /// Adds `other`'s samples of `stage`. A histogram that holds anything is added counter by
    /// counter, all of them (about 3,800): 6-8 us here.
    pub fn merge_stage(&mut self, other: &StageSet, stage: Stage) {
        let i = stage.index();
        // Same bounds on both sides: adding cannot fail (and an empty one adds nothing).
        let _ = self.hists[i].add(&other.hists[i]);
        self.beyond[i] += other.beyond[i];
    }

    /// Empties the histogram of `stage` (keeps its memory) and its count beyond it.
    pub fn reset_stage(&mut self, stage: Stage) {
        let i = stage.index();
        if !self.hists[i].is_empty() {
            self.hists[i].reset();
        }
        self.beyond[i] = 0;
    }

    /// Empties every histogram (keeps their memory); an empty one is left alone (a reset
    /// clears all 30 KiB of counters, and a core records three or four stages of seven).
    pub fn reset(&mut self) {
        for s in STAGES {
            self.reset_stage(s);
        }
    }
}

/// One core's histograms and counters over one interval.
pub struct Interval {
    /// Index of the sending core in the control core's table.
    pub core: usize,
    /// The histograms.
    pub stages: StageSet,
    /// Messages (ingress, shards) or rows (sinks) handled in the interval.
    pub items: u64,
    /// Events emitted in the interval (shards).
    pub events: u64,
    /// A level the core reports (a sink's spool bytes), when `gauge_set`.
    pub gauge: u64,
    /// Whether `gauge` was set in the interval.
    pub gauge_set: bool,
    /// Rows a sink lost in the interval (its database, spool and memory all refused them).
    pub lost: u64,
    /// The core's longest gap off its CPU in the interval, ns (0 when it does not record).
    pub off_max_ns: u64,
    /// The core's longest turn of its own work in the interval, ns (0 when it does not record).
    pub turn_max_ns: u64,
    /// The roles that ran in that turn ([`offcpu::Doing`] bits).
    pub turn_roles: u8,
}

/// Spare intervals per core: enough that control's merge never leaves a core without one.
const SPARES: usize = 4;

/// A core's end: records, and ships an interval when one is due.
pub struct Reporter {
    /// What is being recorded now.
    pub current: Box<Interval>,
    to_control: Producer<Box<Interval>>,
    spares: Consumer<Box<Interval>>,
    interval_ns: u64,
    next_ns: u64,
    /// The core's own time off its CPU, when it records it (the data path: ingress and shards).
    pub off_cpu: offcpu::OffCpu,
}

/// The control core's end of one core's reporting.
pub struct Collector {
    /// Filled intervals.
    pub filled: Consumer<Box<Interval>>,
    /// Emptied intervals going back.
    pub spares: Producer<Box<Interval>>,
}

/// A reporter for core `core` and its collector, with spares allocated now (never later).
pub fn reporting(core: usize, interval_ns: u64) -> (Reporter, Collector) {
    let (to_control, filled) = ring::ring::<Box<Interval>>(SPARES * 2);
    let (mut back, spares) = ring::ring::<Box<Interval>>(SPARES * 2);
    let make = || {
        Box::new(Interval {
            core,
            stages: StageSet::default(),
            items: 0,
            events: 0,
            gauge: 0,
            gauge_set: false,
            lost: 0,
            off_max_ns: 0,
            turn_max_ns: 0,
            turn_roles: 0,
        })
    };
    for _ in 0..SPARES {
        let _ = back.try_push(make());
    }
    let r = Reporter {
        current: make(),
        to_control,
        spares,
        interval_ns: interval_ns.max(1),
        next_ns: 0,
        off_cpu: offcpu::OffCpu::default(),
    };
    (
        r,
        Collector {
            filled,
            spares: back,
        },
    )
}

impl Reporter {
    /// Ships the current interval if `now_ns` is past its end and a spare is back.
    #[inline]
    pub fn tick(&mut self, now_ns: u64) {
        if now_ns >= self.next_ns {
            self.ship(now_ns);
        }
    }

    #[cold]
    fn ship(&mut self, now_ns: u64) {
        let Some(mut spare) = self.spares.try_pop() else {
            return;
        };
        self.next_ns = now_ns + self.interval_ns;
        (
            self.current.off_max_ns,
            self.current.turn_max_ns,
            self.current.turn_roles,
        ) = self.off_cpu.take_interval();
        std::mem::swap(&mut self.current, &mut spare);
        if let Err(back) = self.to_control.try_push(spare) {
            // The forward ring holds every box there is, so this cannot happen; keep the data.
            self.current.stages.merge(&back.stages);
        }
    }

    /// Ships whatever is recorded, now (at exit), waiting up to `patience` for a spare.
    pub fn flush(&mut self, patience: std::time::Duration) {
        self.flush_with(patience, &mut || false)
    }

    /// As [`flush`](Self::flush), running `idle` while it waits: when the control core works
    /// on this very thread, it is what hands the spare back.
    pub fn flush_with(&mut self, patience: std::time::Duration, idle: &mut dyn FnMut() -> bool) {
        let t = std::time::Instant::now();
        loop {
            self.next_ns = 0;
            let before = self.spares.len();
            self.ship(0);
            if before > 0 || t.elapsed() > patience {
                return;
            }
            if !idle() {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_reach_the_collector_and_come_back_empty() {
        let (mut r, mut c) = reporting(3, 1000);
        r.current.stages.record(Stage::Apply, 250);
        r.current.items = 7;
        r.tick(5_000);
        let got = c.filled.try_pop().expect("an interval was shipped");
        assert_eq!(got.core, 3);
        assert_eq!(got.items, 7);
        assert_eq!(got.stages.get(Stage::Apply).len(), 1);
        assert_eq!(r.current.stages.get(Stage::Apply).len(), 0);
        // Not due yet: nothing more is shipped.
        r.current.stages.record(Stage::Apply, 300);
        r.tick(5_500);
        assert!(c.filled.try_pop().is_none());
    }

    #[test]
    fn a_core_without_spares_keeps_recording_and_loses_nothing() {
        let (mut r, mut c) = reporting(0, 1);
        let mut shipped = Vec::new();
        for t in 1..=20u64 {
            r.current.stages.record(Stage::Hop, t);
            r.tick(t * 10);
            while let Some(i) = c.filled.try_pop() {
                shipped.push(i);
            }
        }
        // Control never gave any back: only the spares went out; the rest is still here.
        let sent: u64 = shipped.iter().map(|i| i.stages.get(Stage::Hop).len()).sum();
        assert_eq!(sent + r.current.stages.get(Stage::Hop).len(), 20);
    }

    #[test]
    fn a_value_past_the_old_2_pow_24_limit_shows_up_as_itself() {
        let mut set = StageSet::default();
        // 50 ms, three times 2^24 ns: what `--rate max` printed as 16,777,215 ns before.
        set.record_n(Stage::E2e, 50_000_000, 100);
        let p99 = set.get(Stage::E2e).value_at_quantile(0.99);
        assert!((p99 as f64 - 5e7).abs() / 5e7 < 0.01, "{p99}");
    }

    #[test]
    fn a_value_past_a_minute_is_counted_beyond_the_range_not_clamped() {
        let mut set = StageSet::default();
        set.record(Stage::Hop, 500);
        set.record_n(Stage::Hop, 2 * 60_000_000_000, 3);
        assert_eq!(set.get(Stage::Hop).len(), 1, "not in the histogram");
        assert_eq!(set.beyond(Stage::Hop), 3);
        let mut merged = StageSet::default();
        merged.merge(&set);
        assert_eq!(merged.beyond(Stage::Hop), 3);
        let j = crate::control::stage_json_of(&merged, Stage::Hop);
        assert_eq!(j["count"], 4);
        assert_eq!(j["beyond_range"], 3);
        assert!(j["p50_ns"].is_null() && j["max_ns"].is_null(), "{j}");
        merged.reset();
        assert_eq!(merged.beyond(Stage::Hop), 0);
    }

    #[test]
    fn stage_names_round_trip() {
        for s in STAGES {
            assert_eq!(Stage::parse(s.name()), Some(s));
        }
        assert_eq!(Stage::parse("nope"), None);
    }
}
