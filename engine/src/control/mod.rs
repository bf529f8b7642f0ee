//! The control core: collects every core's stage histograms, enforces the latency budgets with
//! the degrade ladder, and serves the admin endpoint.
//!
//! Every `interval` it merges the intervals the cores shipped (over SPSC rings, see
//! [`crate::telemetry`]), compares each budget's percentile with its limit, steps the ladder,
//! and sends a level change to every shard (over its control ring) and every sink (over its
//! level ring). It also names locates (from the directory entries the ingress forwards) and
//! routes snapshot requests to the owning shard.
//!
//! Owns merged histograms, the ladder and the admin socket. Never touches a book, never blocks
//! a shard: everything it sends is a `try_push` on a ring with room to spare, and a full ring
//! is counted, not waited on.

pub mod admin;
pub mod desk;
pub mod queries;

use crate::runtime::clock;
use crate::runtime::ingress::Routes;
use crate::runtime::ring::{Consumer, LinkStats, Producer};
use crate::runtime::shard::{Control, Snapshot};
use crate::telemetry::budget::{Budget, Ladder, LEVELS};
use crate::telemetry::{histogram, Collector, Stage, StageSet, STAGES};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One core the control core hears from.
pub struct CoreFeed {
    /// `ingress`, `shard0`, `sink:pg`, ...
    pub name: String,
    /// CPU it runs on.
    pub cpu: usize,
    /// Its intervals.
    pub collector: Collector,
}

/// One level change of the ladder.
#[derive(Debug, Clone)]
pub struct LevelChange {
    /// Seconds since the run started.
    pub at_s: f64,
    /// Level before.
    pub from: usize,
    /// Level after.
    pub to: usize,
    /// The measurements that caused it (`e2e.p999 = 73us > 50us`), or that the interval was clean.
    pub reason: String,
}

/// One interval as the control core saw it (for the latency-over-time chart).
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Seconds since the run started.
    pub at_s: f64,
    /// e2e p99 and max in the interval, ns (0 when no batch finished).
    pub e2e_p99_ns: u64,
    /// e2e max in the interval, ns.
    pub e2e_max_ns: u64,
    /// Messages the shards applied in the interval.
    pub messages: u64,
    /// CPU time the ingress thread lost to other tasks while runnable in the interval, ns
    /// (see [`crate::telemetry::lost`]).
    pub ingress_lost_ns: u64,
    /// The same for the shard that lost most.
    pub shard_lost_ns: u64,
    /// The longest turn of control work in the interval, ns: on a small machine it runs on
    /// the ingress thread, and the feed waits for it.
    pub control_turn_max_ns: u64,
    /// Hypervisor steal on the data path's CPUs in the interval, ns (10 ms resolution).
    pub steal_ns: u64,
    /// The ingress's longest gap off its CPU in the interval, ns (see
    /// [`crate::telemetry::offcpu`]; 0 when it does not record).
    pub ingress_off_max_ns: u64,
    /// The ingress's longest own turn in the interval, ns.
    pub ingress_turn_max_ns: u64,
    /// What ran in that turn ([`crate::telemetry::offcpu::Doing`] bits).
    pub ingress_turn_roles: u8,
    /// The longest gap off its CPU of any shard in the interval, ns.
    pub shard_off_max_ns: u64,
    /// The longest own turn of any shard in the interval, ns.
    pub shard_turn_max_ns: u64,
    /// The level in force after the interval.
    pub level: usize,
}

/// The longest gap off the CPU and the longest own turn the cores of one kind reported in an
/// interval, ns.
#[derive(Debug, Default, Clone, Copy)]
struct Longest {
    off_ns: u64,
    turn_ns: u64,
    turn_roles: u8,
}

impl Longest {
    fn note(&mut self, iv: &crate::telemetry::Interval) {
        self.off_ns = self.off_ns.max(iv.off_max_ns);
        if iv.turn_max_ns > self.turn_ns {
            self.turn_ns = iv.turn_max_ns;
            self.turn_roles = iv.turn_roles;
        }
    }
}

/// Per-core totals.
pub struct CoreTotals {
    /// Name.
    pub name: String,
    /// CPU.
    pub cpu: usize,
    /// Every sample the core sent, merged.
    pub stages: StageSet,
    /// Messages or rows handled.
    pub items: u64,
    /// Events emitted.
    pub events: u64,
    /// The last gauge the core reported (a sink's spool bytes).
    pub gauge: u64,
    /// Rows lost (sinks).
    pub lost: u64,
}

/// What the control core hands out to the admin endpoint and the run's summary.
pub struct ControlState {
    /// Budgets in force.
    pub budgets: Vec<Budget>,
    /// The ladder.
    pub ladder: Ladder,
    /// Every core's totals, in feed order.
    pub cores: Vec<CoreTotals>,
    /// Level changes, in order.
    pub changes: Vec<LevelChange>,
    /// Seconds spent at each level.
    pub time_at_level: [f64; LEVELS.len()],
    /// Intervals over budget, per budget key.
    pub breaches: BTreeMap<String, u64>,
    /// Interval history (bounded: the first `MAX_TICKS`).
    pub ticks: Vec<Tick>,
    /// Watched threads (`ingress`, `shard0`, ...) and the CPU time each lost to other tasks
    /// while runnable over the whole run, ns.
    pub lost: Vec<(String, u64)>,
    /// Snapshot round trips as the control core measured them.
    pub snapshot: Histogram<u64>,
    /// Links and their counters.
    pub links: Vec<(String, Arc<LinkStats>)>,
    /// The live feed's counters (live feeds only).
    pub live: Option<Arc<crate::live::gauges::LiveGauges>>,
    /// The WebSocket gateway's counters (`--ws` only).
    pub gateway: Option<Arc<crate::gateway::GatewayStats>>,
    /// Rendered configuration (for `/status`).
    pub config: String,
    /// When the run started.
    pub started: Instant,
    /// Control messages that found a full ring (a shard far behind).
    pub dropped_controls: u64,
    /// Probe snapshot requests that got no answer in time (or found a full ring).
    pub probe_misses: u64,
    /// The answer to the engine's own last query ([`ControlCore::snapshot_now`]).
    last_answer: Option<Snapshot>,
}

/// Why a snapshot request was not sent.
enum AskError {
    /// The feed has not listed the symbol.
    Unknown,
    /// The shard has too many requests out, or its ring is full.
    Busy(String),
}

/// Pause between turns of the control loop on its own thread.
const TICK: Duration = Duration::from_micros(500);

/// Histograms a turn of control merges at most. A merge adds all of a histogram's counters,
/// twice (the core's totals and the interval's), then clears them. Merged whole, every
/// core's interval made one turn of 46-54 us (median of each run's longest turn per
/// interval) every interval, on the ingress thread where control shares it
/// (`control_turn_max_ns` in `tickcore bench`'s timeline, m7 at 1M/s, 2026-12-07): a stall
/// of the feed ten times a second; two a turn, 26 us; one a turn, with the interval's
/// accumulator cleared a histogram a turn too, 14-15 us (3 pairs each). A tick comes every
/// [`TICK`]: an interval's six to ten histograms are in within a few milliseconds.
const MERGES_PER_TURN: usize = 1;

/// An interval a core shipped, being merged: `stage` is the next of [`STAGES`] to look at.
struct Merging {
    feed: usize,
    iv: Box<crate::telemetry::Interval>,
    stage: usize,
}

/// Interval history kept for the chart: an hour at 100 ms.
pub const MAX_TICKS: usize = 36_000;

/// Everything the control core owns while the run lasts.
pub struct ControlCore {
    /// The state the endpoint and the summary read.
    pub state: ControlState,
    feeds: Vec<CoreFeed>,
    /// The interval being merged, a few histograms a turn.
    merging: Option<Merging>,
    interval_acc: StageSet,
    /// The interval before's accumulator, cleared a histogram a turn ([`Self::clear_some`])
    /// to take the next interval's samples; `cleared` stages of it are clear.
    interval_old: StageSet,
    cleared: usize,
    interval_messages: u64,
    shard_controls: Vec<Producer<Control>>,
    answers: Vec<Consumer<Snapshot>>,
    sink_levels: Vec<Producer<u8>>,
    directory: Consumer<([u8; 8], u16)>,
    names: BTreeMap<[u8; 8], u16>,
    /// Locates in the order their names arrived: the probe's round-robin (an index, because
    /// the probe may run on the ingress thread, where walking the map would stall the feed).
    probe_order: Vec<u16>,
    routes: Routes,
    interval: Duration,
    next_evaluation: Instant,
    next_turn_ns: u64,
    level_since: Instant,
    /// The admin endpoint's requests and replies, when it is on.
    desk: Option<desk::ControlDesk>,
    /// Every snapshot request out to a shard, whoever asked.
    queries: queries::Outstanding,
    /// The watcher's samples of lost CPU time, and this interval's sums so far.
    lost: Option<Consumer<crate::telemetry::lost::Sample>>,
    interval_lost: Vec<u64>,
    interval_turn_max: u64,
    /// This interval's longest off-CPU gap and own turn of the ingress, and of any shard.
    interval_ingress: Longest,
    interval_shards: Longest,
    probe: Option<Probe>,
}

/// Snapshot requests the control core makes on its own (see [`ControlSetup::probe`]).
struct Probe {
    every: Duration,
    next: Instant,
    turn: usize,
}

/// How long a probe's answer may take before it counts as a miss.
const PROBE_PATIENCE: Duration = Duration::from_millis(100);

/// How long an admin request waits for its shard's snapshot.
pub const ADMIN_PATIENCE: Duration = Duration::from_millis(500);

/// What the control core needs to start.
pub struct ControlSetup {
    /// Budgets.
    pub budgets: Vec<Budget>,
    /// Ladder hysteresis.
    pub enter_after: u32,
    /// Intervals under budget before a level is left.
    pub leave_after: u32,
    /// Interval length.
    pub interval: Duration,
    /// Every reporting core.
    pub feeds: Vec<CoreFeed>,
    /// Control rings to the shards (the control core is their only producer while it runs).
    pub shard_controls: Vec<Producer<Control>>,
    /// Snapshot answers from the shards.
    pub answers: Vec<Consumer<Snapshot>>,
    /// Level rings to the sinks.
    pub sink_levels: Vec<Producer<u8>>,
    /// Directory entries from the ingress.
    pub directory: Consumer<([u8; 8], u16)>,
    /// Which shard owns which locate.
    pub routes: Routes,
    /// Links to report.
    pub links: Vec<(String, Arc<LinkStats>)>,
    /// Shards (one control ring and one answer ring each).
    pub shard_count: usize,
    /// Rendered configuration.
    pub config: String,
    /// The admin endpoint's end of its rings to control, if the endpoint is on.
    pub desk: Option<desk::ControlDesk>,
    /// The watcher's samples and the names of the threads it watches, in its order.
    pub lost: Option<(Consumer<crate::telemetry::lost::Sample>, Vec<String>)>,
    /// Ask a shard for a snapshot this often, round-robin over the listed symbols (the
    /// benchmark's load on the `snapshot` stage; `None` in normal runs).
    pub probe: Option<Duration>,
    /// The live feed's counters (live feeds only).
    pub live: Option<Arc<crate::live::gauges::LiveGauges>>,
    /// The WebSocket gateway's counters (`--ws` only).
    pub gateway: Option<Arc<crate::gateway::GatewayStats>>,
}

impl ControlCore {
    /// A control core at level 0.
    pub fn new(s: ControlSetup) -> ControlCore {
        let (lost_rx, lost_names) = match s.lost {
            Some((rx, names)) => (Some(rx), names),
            None => (None, Vec::new()),
        };
        // The watcher's last figure is steal: keep it as a pseudo-thread named so.
        let mut lost_names = lost_names;
        if lost_rx.is_some() {
            lost_names.push("steal".into());
        }
        let watched = lost_names.len();
        let cores = s
            .feeds
            .iter()
            .map(|f| CoreTotals {
                name: f.name.clone(),
                cpu: f.cpu,
                stages: StageSet::default(),
                items: 0,
                events: 0,
                gauge: 0,
                lost: 0,
            })
            .collect();
        let now = Instant::now();
        ControlCore {
            state: ControlState {
                budgets: s.budgets,
                ladder: Ladder::new(s.enter_after, s.leave_after),
                cores,
                changes: Vec::new(),
                time_at_level: [0.0; LEVELS.len()],
                breaches: BTreeMap::new(),
                // Reserved whole: growing it copied the history on the ingress's thread, where
                // control runs on a small machine.
                ticks: Vec::with_capacity(MAX_TICKS),
                lost: lost_names.into_iter().map(|n| (n, 0)).collect(),
                snapshot: histogram(),
                links: s.links,
                live: s.live,
                gateway: s.gateway,
                config: s.config,
                started: now,
                dropped_controls: 0,
                probe_misses: 0,
                last_answer: None,
            },
            feeds: s.feeds,
            merging: None,
            interval_acc: StageSet::default(),
            interval_old: StageSet::default(),
            cleared: STAGES.len(),
            interval_messages: 0,
            shard_controls: s.shard_controls,
            answers: s.answers,
            sink_levels: s.sink_levels,
            directory: s.directory,
            names: BTreeMap::new(),
            probe_order: Vec::new(),
            queries: queries::Outstanding::new(s.shard_count),
            interval_lost: vec![0; watched],
            interval_turn_max: 0,
            interval_ingress: Longest::default(),
            interval_shards: Longest::default(),
            lost: lost_rx,
            routes: s.routes,
            interval: s.interval,
            next_evaluation: now + s.interval,
            next_turn_ns: 0,
            level_since: now,
            desk: s.desk,
            probe: s.probe.map(|every| Probe {
                every,
                next: now,
                turn: 0,
            }),
        }
    }

    /// Runs until `stop` is set; returns itself so the caller can drain the cores' last
    /// intervals after they exit.
    pub fn run(mut self, stop: &AtomicBool) -> ControlCore {
        while !stop.load(Ordering::Acquire) {
            self.tick();
            self.rest(Instant::now() + TICK);
        }
        self.collect();
        self
    }

    /// Waits until `until` on a thread of control's own: watching for answers while a
    /// snapshot request is out (so the snapshot stage times the round trip, not the tick),
    /// asleep otherwise.
    fn rest(&mut self, until: Instant) {
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            if self.answers_in() {
                return std::thread::sleep(until - now);
            }
            std::thread::yield_now();
        }
    }

    /// Runs on the calling thread until `deadline` or `stop` (the admin endpoint's linger
    /// after a run whose control work shared the ingress thread; a signal cuts it short).
    pub fn run_until(&mut self, deadline: Instant, stop: &AtomicBool) {
        loop {
            self.tick();
            let now = Instant::now();
            if now >= deadline || stop.load(Ordering::Relaxed) {
                return;
            }
            self.rest((now + TICK).min(deadline));
        }
    }

    /// A turn of control work if one is due ([`TICK`] after the last): how the ingress thread
    /// runs the control core when they share a CPU. Whether it ran its tick.
    pub fn turn(&mut self) -> bool {
        // Answers are looked for on every call, not every tick: the snapshot stage would
        // otherwise time the tick (500 us), not the round trip. A ring pop costs ns.
        self.answers_in();
        let now = clock::now_ns();
        if now < self.next_turn_ns {
            return false;
        }
        self.next_turn_ns = now + TICK.as_nanos() as u64;
        self.tick();
        let took = clock::now_ns().saturating_sub(now);
        self.interval_turn_max = self.interval_turn_max.max(took);
        true
    }

    /// One turn of control work: merge what the cores shipped, evaluate the budgets when an
    /// interval has passed, answer the admin endpoint's requests, probe. Never blocks: a
    /// snapshot request is sent and its answer taken on a later turn, so the ingress thread
    /// can call this between batches when control shares its CPU.
    pub fn tick(&mut self) {
        self.collect_turn();
        if Instant::now() >= self.next_evaluation {
            self.next_evaluation += self.interval;
            self.evaluate();
        }
        self.serve_desk();
        self.probe();
    }

    /// Answers what the admin endpoint asked since the last turn.
    fn serve_desk(&mut self) {
        while let Some(ask) = self.desk.as_mut().and_then(|d| d.asks.try_pop()) {
            if let Some(reply) = self.answer(ask) {
                if let Some(d) = &mut self.desk {
                    d.reply(reply);
                }
            }
        }
    }

    /// The reply to `ask` now, or `None` when it waits for a shard's answer.
    fn answer(&mut self, ask: desk::Ask) -> Option<desk::Reply> {
        use desk::{AskKind, Reply};
        Some(match ask.kind {
            AskKind::Metrics => Reply::metrics(ask.id, admin::metrics(self)),
            AskKind::Status => Reply::json(ask.id, 200, admin::status(self)),
            AskKind::Budgets => Reply::json(ask.id, 200, admin::budgets_json(self)),
            AskKind::PutBudgets(list) => {
                for b in list {
                    crate::telemetry::budget::upsert(&mut self.state.budgets, b);
                }
                Reply::json(ask.id, 200, admin::budgets_json(self))
            }
            AskKind::Snapshot(sym) => {
                let asker = queries::Asker::Admin(ask.id);
                match self.ask_snapshot(&sym, asker, ADMIN_PATIENCE) {
                    Ok(()) => return None,
                    Err(AskError::Unknown) => Reply::text(
                        ask.id,
                        404,
                        &format!("no instrument `{sym}` in the feed so far"),
                    ),
                    Err(AskError::Busy(e)) => Reply::text(ask.id, 503, &e),
                }
            }
        })
    }

    /// Merges every interval waiting on the rings and hands the boxes back.
    pub fn collect(&mut self) {
        self.collect_small();
        while self.merge_some(usize::MAX) {}
    }

    /// What a turn of control collects: the small rings whole, and at most
    /// [`MERGES_PER_TURN`] of the cores' histograms; and it clears a histogram of the last
    /// interval's accumulator.
    fn collect_turn(&mut self) {
        self.collect_small();
        self.merge_some(MERGES_PER_TURN);
        self.clear_some(1);
    }

    /// Clears up to `budget` histograms of the last interval's accumulator.
    fn clear_some(&mut self, budget: usize) {
        let to = self.cleared.saturating_add(budget).min(STAGES.len());
        for &s in &STAGES[self.cleared..to] {
            self.interval_old.reset_stage(s);
        }
        self.cleared = to;
    }

    /// The lost-time samples and the directory entries waiting on their rings.
    fn collect_small(&mut self) {
        while let Some(sample) = self.lost.as_mut().and_then(Consumer::try_pop) {
            for (i, ns) in sample.into_iter().enumerate() {
                if let (Some(acc), Some(total)) =
                    (self.interval_lost.get_mut(i), self.state.lost.get_mut(i))
                {
                    *acc += ns;
                    total.1 += ns;
                }
            }
        }
        while let Some((symbol, locate)) = self.directory.try_pop() {
            if self.names.insert(symbol, locate).is_none() {
                self.probe_order.push(locate);
            }
        }
    }

    /// Merges up to `budget` of the histograms the cores shipped, into each core's totals and
    /// the interval's, and closes each interval whose histograms are all in; returns whether
    /// any is left.
    fn merge_some(&mut self, mut budget: usize) -> bool {
        loop {
            if self.merging.is_none() {
                self.merging = self.feeds.iter_mut().enumerate().find_map(|(feed, f)| {
                    let iv = f.collector.filled.try_pop()?;
                    Some(Merging { feed, iv, stage: 0 })
                });
            }
            let Some(m) = self.merging.as_mut() else {
                return false;
            };
            while let Some(&s) = STAGES.get(m.stage) {
                if m.iv.stages.holds(s) {
                    if budget == 0 {
                        return true;
                    }
                    budget -= 1;
                    self.state.cores[m.iv.core]
                        .stages
                        .merge_stage(&m.iv.stages, s);
                    self.interval_acc.merge_stage(&m.iv.stages, s);
                    m.iv.stages.reset_stage(s);
                }
                m.stage += 1;
            }
            let m = self.merging.take().expect("an interval is being merged");
            self.close_interval(m);
        }
    }

    /// Counts an interval whose histograms are merged, and hands its box back.
    fn close_interval(&mut self, m: Merging) {
        let Merging { feed, mut iv, .. } = m;
        let f = &mut self.feeds[feed];
        let c = &mut self.state.cores[iv.core];
        c.items += iv.items;
        c.events += iv.events;
        c.lost += iv.lost;
        if iv.gauge_set {
            c.gauge = iv.gauge;
        }
        if f.name == "ingress" {
            self.interval_ingress.note(&iv);
        } else if f.name.starts_with("shard") {
            self.interval_shards.note(&iv);
            self.interval_messages += iv.items;
        }
        // `merge_some` cleared each stage it merged, and the others held nothing.
        debug_assert!(STAGES.iter().all(|&s| !iv.stages.holds(s)), "a stage left");
        iv.items = 0;
        iv.events = 0;
        iv.lost = 0;
        iv.gauge_set = false;
        // The spare ring holds every box there is: this cannot fail.
        let _ = f.collector.spares.try_push(iv);
    }

    /// Closes an interval: budgets, ladder, history.
    pub fn evaluate(&mut self) {
        let mut over = Vec::new();
        for b in &self.state.budgets {
            let h = self.interval_acc.get(b.stage);
            if h.is_empty() {
                continue;
            }
            let v = h.value_at_quantile(b.quantile);
            if v > b.limit_ns {
                over.push(format!(
                    "{} = {} > {}",
                    b.key(),
                    crate::telemetry::budget::duration_text(v),
                    crate::telemetry::budget::duration_text(b.limit_ns)
                ));
                *self.state.breaches.entry(b.key()).or_default() += 1;
            }
        }
        let from = self.state.ladder.level;
        if let Some(to) = self.state.ladder.step(!over.is_empty()) {
            let reason = if over.is_empty() {
                format!("{} clean intervals in a row", self.state.ladder.leave_after)
            } else {
                over.join(", ")
            };
            self.set_level(from, to, reason);
        }
        let e2e = self.interval_acc.get(Stage::E2e);
        if self.state.ticks.len() < MAX_TICKS {
            self.state.ticks.push(Tick {
                at_s: self.state.started.elapsed().as_secs_f64(),
                e2e_p99_ns: if e2e.is_empty() {
                    0
                } else {
                    e2e.value_at_quantile(0.99)
                },
                e2e_max_ns: e2e.max(),
                messages: self.interval_messages,
                level: self.state.ladder.level,
                ingress_lost_ns: self.lost_of(|n| n == "ingress"),
                shard_lost_ns: self.lost_of(|n| n.starts_with("shard")),
                control_turn_max_ns: self.interval_turn_max,
                steal_ns: self.lost_of(|n| n == "steal"),
                ingress_off_max_ns: self.interval_ingress.off_ns,
                ingress_turn_max_ns: self.interval_ingress.turn_ns,
                ingress_turn_roles: self.interval_ingress.turn_roles,
                shard_off_max_ns: self.interval_shards.off_ns,
                shard_turn_max_ns: self.interval_shards.turn_ns,
            });
        }
        self.interval_ingress = Longest::default();
        self.interval_shards = Longest::default();
        self.interval_lost.iter_mut().for_each(|v| *v = 0);
        self.interval_turn_max = 0;
        // Clearing every histogram here took about 10 us of this turn: the accumulator
        // trades places with the one cleared over the turns since the last interval.
        self.clear_some(usize::MAX);
        std::mem::swap(&mut self.interval_acc, &mut self.interval_old);
        self.cleared = 0;
        self.interval_messages = 0;
    }

    /// The most any watched thread named as `which` says lost in this interval.
    fn lost_of(&self, which: impl Fn(&str) -> bool) -> u64 {
        self.state
            .lost
            .iter()
            .zip(&self.interval_lost)
            .filter(|((n, _), _)| which(n))
            .map(|(_, &v)| v)
            .max()
            .unwrap_or(0)
    }

    fn set_level(&mut self, from: usize, to: usize, reason: String) {
        let now = Instant::now();
        self.state.time_at_level[from] += (now - self.level_since).as_secs_f64();
        self.level_since = now;
        let at_s = self.state.started.elapsed().as_secs_f64();
        // Live, for the operator (through the non-blocking writer: control may be running on
        // the ingress thread); the run's log gets every change from the summary.
        tracing::warn!(
            "tickcore: degrade level {from} -> {to} at {at_s:.2} s ({}): {reason}",
            LEVELS[to]
        );
        for c in &mut self.shard_controls {
            if c.try_push(Control::Level(to as u8)).is_err() {
                self.state.dropped_controls += 1;
            }
        }
        for s in &mut self.sink_levels {
            if s.try_push(to as u8).is_err() {
                self.state.dropped_controls += 1;
            }
        }
        self.state.changes.push(LevelChange {
            at_s,
            from,
            to,
            reason,
        });
    }

    /// The locate the feed listed `symbol` under, if it did.
    fn locate_of(&mut self, symbol: &str) -> Option<u16> {
        self.collect();
        let sym = symbol.as_bytes();
        if sym.is_empty() || sym.len() > 8 {
            return None;
        }
        let mut key = [b' '; 8];
        key[..sym.len()].copy_from_slice(sym);
        self.names.get(&key).copied()
    }

    /// Sends a snapshot request for `symbol` on behalf of `asker`; its answer is taken by
    /// [`answers_in`](Self::answers_in) on a later turn.
    fn ask_snapshot(
        &mut self,
        symbol: &str,
        asker: queries::Asker,
        patience: Duration,
    ) -> Result<(), AskError> {
        let locate = self.locate_of(symbol).ok_or(AskError::Unknown)?;
        self.ask_locate(locate, asker, patience)
    }

    fn ask_locate(
        &mut self,
        locate: u16,
        asker: queries::Asker,
        patience: Duration,
    ) -> Result<(), AskError> {
        let shard = self.routes.shard(locate);
        if !self.queries.has_room(shard) {
            return Err(AskError::Busy(format!(
                "shard {shard} has {} snapshot requests out; try again",
                queries::MAX_OUT
            )));
        }
        if self.shard_controls[shard]
            .try_push(Control::Query(locate))
            .is_err()
        {
            return Err(AskError::Busy(format!(
                "shard {shard}'s control ring is full"
            )));
        }
        self.queries
            .sent(shard, asker, clock::now_ns(), Instant::now() + patience);
        Ok(())
    }

    /// Takes every answer the shards sent, hands each to whoever asked (timing the round
    /// trip), and expires requests past their deadline. Returns whether no request is out.
    fn answers_in(&mut self) -> bool {
        let now = Instant::now();
        let now_ns = clock::now_ns();
        for shard in 0..self.answers.len() {
            while let Some(snap) = self.answers[shard].try_pop() {
                let Some(q) = self.queries.answered(shard) else {
                    debug_assert!(false, "an answer no request waited for");
                    continue;
                };
                if q.expired {
                    continue;
                }
                let dt = now_ns.saturating_sub(q.sent_ns);
                self.state.snapshot.saturating_record(dt.max(1));
                match q.asker {
                    queries::Asker::Probe => {}
                    queries::Asker::Admin(id) => {
                        if let Some(d) = &mut self.desk {
                            let mut body = crate::cmd::run::snapshot_json(&snap);
                            if let Some(l) = &self.state.live {
                                body["feed"] = l.reliability();
                            }
                            d.reply(desk::Reply::json(id, 200, body));
                        }
                    }
                    queries::Asker::Engine => self.state.last_answer = Some(snap),
                }
            }
        }
        for q in self.queries.expire(now) {
            match q.asker {
                queries::Asker::Probe => self.state.probe_misses += 1,
                queries::Asker::Admin(id) => {
                    if let Some(d) = &mut self.desk {
                        let msg =
                            format!("shard {} did not answer within {ADMIN_PATIENCE:?}", q.shard);
                        d.reply(desk::Reply::text(id, 503, &msg));
                    }
                }
                queries::Asker::Engine => {}
            }
        }
        self.queries.is_empty()
    }

    /// Sends the probe's snapshot request when one is due and none of the probe's is out.
    fn probe(&mut self) {
        let Some(p) = &mut self.probe else { return };
        let now = Instant::now();
        if now < p.next || self.probe_order.is_empty() || self.queries.probe_out() {
            return;
        }
        p.next = (p.next + p.every).max(now);
        p.turn = (p.turn + 1) % self.probe_order.len();
        let locate = self.probe_order[p.turn];
        if self
            .ask_locate(locate, queries::Asker::Probe, PROBE_PATIENCE)
            .is_err()
        {
            self.state.probe_misses += 1;
        }
    }

    /// The owning shard's snapshot of `symbol`, through the same path as every other
    /// request, waiting on this thread up to `patience` (the run's end-of-feed queries).
    /// `None`: the feed never listed it, or its shard did not answer in time.
    pub fn snapshot_now(&mut self, symbol: &str, patience: Duration) -> Option<Snapshot> {
        self.state.last_answer = None;
        self.ask_snapshot(symbol, queries::Asker::Engine, patience)
            .ok()?;
        while !self.answers_in() {
            std::hint::spin_loop();
        }
        self.state.last_answer.take()
    }

    /// Ends the snapshot probe: no more requests, and one still out is not timed. Called when
    /// control stops turning at the end of a run: the shutdown then joins the side threads
    /// (the watcher sleeps up to an interval), and an answer waiting through that was timed
    /// as a 47-93 ms round trip, the stage's max in one run of two (2026-12-06).
    pub fn end_probe(&mut self) {
        self.probe = None;
        self.queries.expire_probe();
    }

    /// Tells every shard to finish (after the run's last query). Waits for requests still
    /// out first, so no shard is stopped with a question unanswered.
    pub fn stop_shards(&mut self) {
        let deadline = Instant::now() + PROBE_PATIENCE.max(ADMIN_PATIENCE);
        while !self.answers_in() && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        for c in &mut self.shard_controls {
            // Room is certain: nothing else is queued once every request was answered.
            let _ = c.try_push(Control::Stop);
        }
    }

    /// Closes the books on the run: the cores' last intervals, the time at the last level.
    pub fn finish(&mut self) {
        self.collect();
        let now = Instant::now();
        let l = self.state.ladder.level;
        self.state.time_at_level[l] += (now - self.level_since).as_secs_f64();
        self.level_since = now;
    }

    /// Seconds spent at each level so far, the current level's time counted up to now.
    pub fn seconds_at_level(&self) -> [f64; LEVELS.len()] {
        let mut time = self.state.time_at_level;
        time[self.state.ladder.level] += self.level_since.elapsed().as_secs_f64();
        time
    }

    /// Where the admin endpoint listens, if it is on.
    pub fn desk_addr(&self) -> Option<String> {
        self.desk.as_ref().map(|d| d.addr.to_string())
    }

    /// The admin endpoint's counters, if it is on.
    pub fn desk_stats(&self) -> Option<&admin::AdminStats> {
        self.desk.as_ref().map(|d| &*d.stats)
    }

    /// Every stage merged over every core.
    pub fn all_stages(&self) -> StageSet {
        let mut all = StageSet::default();
        for c in &self.state.cores {
            all.merge(&c.stages);
        }
        all.add(Stage::Snapshot, &self.state.snapshot);
        all
    }
}

/// The percentiles every report shows, with their JSON names.
pub const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
    ("p9999", 0.9999),
];

/// A stage's figures as JSON: count, p50..p99.99 and max in ns.
pub fn stage_json(h: &Histogram<u64>) -> serde_json::Value {
    stage_json_beyond(h, 0)
}

/// One stage of `set` as JSON, its samples beyond the histogram's range included.
pub fn stage_json_of(set: &StageSet, stage: Stage) -> serde_json::Value {
    stage_json_beyond(set.get(stage), set.beyond(stage))
}

/// As [`stage_json`], with `beyond` more samples over [`crate::telemetry::MAX_NS`]: they count
/// in `count` and `beyond_range`, and a quantile (or the max) that falls among them is `null`
/// (beyond the range), never a clamped number.
fn stage_json_beyond(h: &Histogram<u64>, beyond: u64) -> serde_json::Value {
    let within = h.len();
    let total = within + beyond;
    let mut m = serde_json::Map::new();
    m.insert("count".into(), total.into());
    for (name, q) in QUANTILES {
        let rank = (q * total as f64).ceil() as u64;
        let v: serde_json::Value = if total == 0 {
            0.into()
        } else if rank > within {
            serde_json::Value::Null
        } else {
            h.value_at_quantile(rank as f64 / within as f64).into()
        };
        m.insert(format!("{name}_ns"), v);
    }
    let max: serde_json::Value = if beyond > 0 {
        serde_json::Value::Null
    } else {
        h.max().into()
    };
    m.insert("max_ns".into(), max);
    if beyond > 0 {
        m.insert("beyond_range".into(), beyond.into());
    }
    serde_json::Value::Object(m)
}

/// Every stage with samples, as JSON keyed by stage name.
pub fn stages_json(set: &StageSet) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for s in STAGES {
        if !set.get(s).is_empty() || set.beyond(s) > 0 {
            m.insert(s.name().into(), stage_json_of(set, s));
        }
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Assign;
    use crate::telemetry::reporting;

    fn control(feed: Collector) -> ControlCore {
        let (_dir_tx, directory) = crate::runtime::ring::ring(16);
        ControlCore::new(ControlSetup {
            budgets: Vec::new(),
            enter_after: 1,
            leave_after: 1,
            interval: Duration::from_secs(1),
            feeds: vec![CoreFeed {
                name: "shard0".into(),
                cpu: 0,
                collector: feed,
            }],
            shard_controls: Vec::new(),
            answers: Vec::new(),
            sink_levels: Vec::new(),
            directory,
            routes: Routes::new(1, Assign::Hash, None),
            links: Vec::new(),
            shard_count: 0,
            config: String::new(),
            desk: None,
            lost: None,
            probe: None,
            live: None,
            gateway: None,
        })
    }

    #[test]
    fn a_turn_merges_a_few_histograms_and_later_turns_the_rest() {
        let (mut rep, collector) = reporting(0, 1);
        let recorded = [Stage::Hop, Stage::Apply, Stage::Emit];
        for s in recorded {
            rep.current.stages.record(s, 1_000);
        }
        rep.current.items = 7;
        rep.tick(1);
        let mut c = control(collector);
        let merged = |c: &ControlCore| {
            let t = &c.state.cores[0].stages;
            recorded.iter().filter(|&&s| t.holds(s)).count()
        };
        let turns = recorded.len().div_ceil(MERGES_PER_TURN);
        for turn in 1..turns {
            c.collect_turn();
            assert_eq!(merged(&c), turn * MERGES_PER_TURN, "after turn {turn}");
            assert_eq!(
                c.state.cores[0].items, 0,
                "counted once its histograms are in"
            );
        }
        c.collect_turn();
        assert_eq!(merged(&c), recorded.len());
        assert_eq!(c.state.cores[0].items, 7);
        assert_eq!(c.interval_acc.get(Stage::Apply).len(), 1);
        assert!(c.merging.is_none(), "the box went back");
    }

    #[test]
    fn an_interval_is_judged_on_its_own_samples_only() {
        let (mut rep, collector) = reporting(0, 1);
        let mut c = control(collector);
        rep.current.stages.record(Stage::Apply, 1_000);
        rep.tick(1);
        c.collect();
        c.evaluate();
        assert!(c.interval_acc.get(Stage::Apply).is_empty());
        for _ in STAGES {
            c.collect_turn();
        }
        assert!(
            !c.interval_old.holds(Stage::Apply),
            "cleared a turn at a time"
        );
        rep.current.stages.record_n(Stage::Apply, 2_000, 2);
        rep.tick(10);
        c.collect();
        assert_eq!(c.interval_acc.get(Stage::Apply).len(), 2);
        assert_eq!(c.state.cores[0].stages.get(Stage::Apply).len(), 3);
    }
}
