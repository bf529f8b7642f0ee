//! Builds every ring of a run and hands each role its bundle: the ends it owns, its reporter
//! to control, its thread id for the watcher. Nothing starts here; [`super::launch`] starts
//! the threads the plan names with these bundles.
//!
//! Owns the wiring only: link sizes come from the configuration, CPUs from the plan. Never
//! starts a thread, never touches a feed.

use super::batch::Buf;
use super::ingress::Routes;
use super::plan::{Plan, Role, Wait};
use super::ring::{self, Producer, Sender};
use super::shard::{Control, ShardCtx, Snapshot};
use super::{consumer, touched_buf, LinkReport, RunOptions, SinkObserver, SinkPlan};
use crate::config::Config;
use crate::control::{ControlSetup, CoreFeed};
use crate::telemetry::lost::Tid;
use crate::telemetry::Reporter;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

/// What the ingress thread owns.
pub struct IngressBundle {
    /// One link per shard.
    pub links: Vec<Sender<Buf>>,
    /// Its stage histograms.
    pub reporter: Reporter,
    /// Directory entries to control.
    pub directory: Producer<([u8; 8], u16)>,
    /// Its thread id, for the watcher.
    pub tid: Tid,
    /// Whether it has its CPU to itself (no shard, no sink beside it; threads that sleep may
    /// share it). Then it records its time off the CPU, since every other task that runs there
    /// is the machine's, and its waits make no system call.
    pub own_cpu: bool,
}

/// What one storage adapter's thread owns.
pub struct SinkBundle {
    /// What to run.
    pub sink: SinkPlan,
    /// Row batches from the consumer.
    pub rows: ring::Consumer<storage_adapters::rows::RowBatch>,
    /// Checkpoint marks, each after the rows before it.
    pub marks: ring::Consumer<u64>,
    /// Set by the consumer after its last push.
    pub done: Arc<AtomicBool>,
    /// Its link to control.
    pub observer: SinkObserver,
}

/// What the WebSocket gateway's thread owns.
pub struct GatewayBundle {
    /// The bound listener.
    pub gateway: crate::gateway::Gateway,
    /// Event batches from the consumer.
    pub intake: crate::gateway::intake::GatewayIntake,
    /// Its deliver-stage histograms.
    pub reporter: Reporter,
}

/// Every role's bundle, before anything runs.
pub struct Topology {
    /// Shard of every locate.
    pub routes: Routes,
    /// The ingress's ends.
    pub ingress: IngressBundle,
    /// Each shard's context, by index.
    pub shards: Vec<ShardCtx>,
    /// The event consumer, holding every shard's event link and the sinks' row rings.
    pub consumer: consumer::Consumer,
    /// Each sink's bundle, in plan order.
    pub sinks: Vec<SinkBundle>,
    /// Control's ends (the admin desk and the watcher's ring are added at launch).
    pub control: ControlSetup,
    /// Counted up by each shard once it has set up.
    pub ready: Arc<AtomicUsize>,
    /// Threads the watcher samples: names and ids.
    pub watched: Vec<(String, Tid)>,
    /// Every link's counters, for the report.
    pub links: Vec<(String, Arc<ring::LinkStats>)>,
    /// The gateway's bundle, when it is on.
    pub gateway: Option<GatewayBundle>,
}

/// Bytes of each event buffer. A batch that closes the bars of thousands of instruments at
/// once needs more than its messages suggest: on v3k at 1M/s three 64 KiB buffers grew to
/// 128 KiB mid-run (batches of 69-88 KiB), each growth an allocation and a copy on the shard.
/// A larger batch still works: its buffer grows once and keeps the size.
const EVENT_BUFFER_BYTES: usize = 256 << 10;

impl Topology {
    /// Builds every ring for `plan`; takes the sinks and the event writer out of `opts`.
    pub fn build(cfg: &Config, plan: &Plan, opts: &mut RunOptions, whole: Option<&[u8]>) -> Self {
        let n = cfg.shards.value;
        let interval_ns = cfg.control_interval_ms.value as u64 * 1_000_000;
        let mut feeds = Vec::new();
        let mut reporter = |name: String, cpu: usize| {
            let (r, collector) = crate::telemetry::reporting(feeds.len(), interval_ns);
            feeds.push(CoreFeed {
                name,
                cpu,
                collector,
            });
            r
        };
        let ingress_reporter = reporter("ingress".into(), plan.threads[0].cpu);
        let (dir_tx, dir_rx) = ring::ring::<([u8; 8], u16)>(1 << 16);
        let ready = Arc::new(AtomicUsize::new(0));
        let ingress_tid = Tid::default();
        let mut watched = vec![("ingress".to_string(), ingress_tid.clone())];
        let (mut feed_tx, mut event_rx, mut links) = (Vec::new(), Vec::new(), Vec::new());
        let (mut controls, mut answers, mut shards) = (Vec::new(), Vec::new(), Vec::new());
        // A recovery's states, one per shard in shard order (the loader checked the count).
        let mut restore = opts
            .recover
            .take()
            .map_or(Vec::new(), |(_, states)| states)
            .into_iter();
        // Every buffer is touched now: a link's buffers are first used one by one during
        // the first batches, each page faulting in on the hot path.
        let feed_bytes = cfg.feed_batch_bytes.value + 256;
        for i in 0..n {
            let (ftx, mut frx) = ring::link(cfg.feed_buffers.value, || touched_buf(feed_bytes));
            let (mut etx, erx) =
                ring::link(cfg.event_buffers.value, || touched_buf(EVENT_BUFFER_BYTES));
            let (ctx_p, ctx_c) = ring::ring::<Control>(16);
            let (ans_p, ans_c) = ring::ring::<Snapshot>(16);
            links.push((format!("ingress->shard{i}"), ftx.stats()));
            links.push((format!("shard{i}->consumer"), etx.stats()));
            feed_tx.push(ftx);
            event_rx.push(erx);
            controls.push(ctx_p);
            answers.push(ans_c);
            let thread = plan.thread_of(&Role::Shard(i));
            if thread.wait == Wait::Spin {
                // With its CPU to itself the shard spins, for batches and for event buffers
                // alike: parking would free the CPU for nobody, and the promise spares the
                // ingress and the consumer a fence on every batch they send or hand back.
                frx.never_park();
                etx.never_park();
            }
            let tid = Tid::default();
            watched.push((format!("shard{i}"), tid.clone()));
            shards.push(ShardCtx {
                id: i,
                feed: frx,
                events: etx,
                control: ctx_c,
                answers: ans_p,
                reporter: reporter(format!("shard{i}"), thread.cpu),
                chaos: opts.chaos.iter().find(|(s, _)| *s == i).map(|(_, c)| *c),
                dedicated: thread.wait == Wait::Spin,
                beside_feed: thread.cpu == cfg.feed_cpu.value,
                measure: !opts.unmeasured,
                orders: cfg.shard_orders.value,
                books: cfg.shard_books.value,
                ready: Arc::clone(&ready),
                tid,
                depth: opts.gateway.is_some(),
                checkpoints: opts.checkpoints.as_ref().map(|c| {
                    let finished = Arc::clone(&c.finished[i]);
                    let sinks = c.sinks_durable.clone();
                    crate::checkpoint::store::Writer::new(c.dir.clone(), i, n, finished, sinks)
                }),
                // A quarter of the budget, so a slice, a forced chunk and a batch stay inside
                // it; at most 100 us, which holds back 500 messages at 5M msg/s.
                checkpoint_slice_ns: (cfg.checkpoint_stall_us.value as u64 * 1000 / 4).min(100_000),
                restore: restore.next(),
                shards: n,
            });
        }
        // The plan says whether the ingress may park waiting for a free buffer, and whether
        // the consumer may park waiting for events.
        if plan.threads[0].wait == Wait::Spin {
            feed_tx.iter_mut().for_each(ring::Sender::never_park);
        }
        let consumer_spins = plan.thread_of(&Role::Consumer).wait == Wait::Spin;
        let (mut adapter_feeds, mut sinks, mut sink_levels) = (Vec::new(), Vec::new(), Vec::new());
        for sink in opts.sinks.drain(..) {
            let (tx, rows) = ring::ring::<storage_adapters::rows::RowBatch>(4096);
            let (marks_tx, marks) = ring::ring::<u64>(64);
            let done = Arc::new(AtomicBool::new(false));
            adapter_feeds.push(consumer::AdapterFeed {
                tx,
                done: Arc::clone(&done),
                wants: sink.wants,
                marks: marks_tx,
            });
            let cpu = plan.thread_of(&Role::Sink(sink.settings.name.clone())).cpu;
            let (level_tx, level_rx) = ring::ring::<u8>(64);
            sink_levels.push(level_tx);
            let observer = SinkObserver {
                reporter: reporter(format!("sink:{}", sink.settings.name), cpu),
                level: level_rx,
                hold: false,
                stop: opts.stop.clone(),
            };
            sinks.push(SinkBundle {
                sink,
                rows,
                marks,
                done,
                observer,
            });
        }
        let (gateway_feed, gateway) = match opts.gateway.take() {
            Some(g) => {
                let (mut feed, intake) = crate::gateway::intake::link();
                links.push(("consumer->gateway".to_string(), feed.tx.stats()));
                feed.turns = crate::gateway::intake::Turns::of(plan.turns_owed_to_gateway());
                let cpu = plan.thread_of(&Role::Gateway).cpu;
                let bundle = GatewayBundle {
                    gateway: g,
                    intake,
                    reporter: reporter("gateway".into(), cpu),
                };
                (Some(feed), Some(bundle))
            }
            None => (None, None),
        };
        let routes = Routes::new(n, cfg.assign.value, whole);
        let control = ControlSetup {
            budgets: cfg.budgets.iter().map(|b| b.value).collect(),
            enter_after: cfg.degrade_enter.value as u32,
            leave_after: cfg.degrade_leave.value as u32,
            interval: Duration::from_nanos(interval_ns),
            feeds,
            shard_controls: controls,
            answers,
            sink_levels,
            directory: dir_rx,
            routes: routes.clone(),
            links: links.clone(),
            shard_count: n,
            config: cfg.render(),
            desk: None,
            lost: None,
            probe: opts.snapshot_probe,
            live: opts.live.clone(),
            gateway: gateway.as_ref().map(|g| Arc::clone(&g.gateway.stats)),
        };
        Topology {
            routes,
            ingress: IngressBundle {
                links: feed_tx,
                reporter: ingress_reporter,
                directory: dir_tx,
                tid: ingress_tid,
                own_cpu: plan.threads[0].wait == Wait::Spin,
            },
            shards,
            consumer: consumer::Consumer::new(
                event_rx,
                opts.events.take(),
                adapter_feeds,
                gateway_feed,
            )
            .spinning(consumer_spins),
            sinks,
            control,
            ready,
            watched,
            links,
            gateway,
        }
    }
}

/// Every link's counters now.
pub fn link_reports(links: &[(String, Arc<ring::LinkStats>)]) -> Vec<LinkReport> {
    links
        .iter()
        .map(|(name, s)| LinkReport {
            name: name.clone(),
            sent: s.sent.get(),
            full_waits: s.full_waits.get(),
        })
        .collect()
}
