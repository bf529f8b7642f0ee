//! The thread-per-core runtime: one feed ingress thread, shard cores (glommio executors), an
//! event consumer, control, storage adapters, the admin endpoint and a watcher, each pinned
//! where the [`plan`] says, talking only over SPSC links ([`ring`]) that carry rkyv batches
//! ([`batch`]).
//!
//! ```text
//!  ingress --FeedBatch--> shard i --EventBatch--> consumer --rows--> sink k
//!     \--directory--> control --Control--> shard i --Snapshot--> control <--desk--> admin
//!  every core --histograms--> control <--lost CPU time-- watch
//! ```
//!
//! A run is assembled in four steps: [`plan::Plan`] (which thread runs which roles on which
//! CPU, computed from the configuration alone), [`topology::Topology`] (every ring, and each
//! role's bundle of ends), [`launch`] (one thread per planned thread, one loop shape each),
//! then the ingress on a scoped thread of [`run`] and the shutdown steps of [`shut_down`].
//! A new role (a feed receiver, a gateway) is a role in the plan, a bundle in the topology
//! and a start in launch, not a branch here.
//!
//! Nothing mutable is shared between cores: a shard owns its books outright and hands them back
//! only when it exits. Never touches book logic.

pub mod batch;
pub mod checkpointer;
pub mod clock;
pub mod consumer;
pub mod ingress;
pub mod launch;
pub mod plan;
pub mod ring;
pub mod shard;
pub mod topology;

use crate::config::Config;
use crate::error::{Failure, Result};
use crate::telemetry::offcpu;
use batch::Buf;
use ingress::{IngressReport, Routes, Source, Speed};
use shard::{ShardReport, Snapshot};
use shards::book::Books;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a run should do besides replaying.
#[derive(Default)]
pub struct RunOptions {
    /// Pacing of the replay.
    pub speed: Option<Speed>,
    /// Where the consumer writes events, one per line (none: count only).
    pub events: Option<Box<dyn std::io::Write + Send>>,
    /// Symbols whose snapshot to fetch from their shard at the end.
    pub queries: Vec<String>,
    /// Storage adapters to run, each on its own adapter core.
    pub sinks: Vec<SinkPlan>,
    /// The admin endpoint, already bound (so a bad address fails before the run starts).
    pub admin: Option<crate::control::admin::Admin>,
    /// Injected delays by shard index (`--chaos`).
    pub chaos: Vec<(usize, shard::Chaos)>,
    /// The WebSocket gateway, already bound.
    pub gateway: Option<crate::gateway::Gateway>,
    /// The CPU of a load this process runs beside the engine (`bench --ws-clients`), which the
    /// plan makes room for.
    pub load_cpu: Option<usize>,
    /// How long control, the admin endpoint and the gateway stay up after the feed ends.
    pub linger: Duration,
    /// Hold the feed until this many gateway clients have subscribed.
    pub ws_wait_clients: u64,
    /// Skip every clock read and histogram record on ingress and shards (to measure what
    /// measuring costs).
    pub unmeasured: bool,
    /// Have the control core ask for a snapshot this often (the benchmark's snapshot load).
    pub snapshot_probe: Option<Duration>,
    /// Set when the run is asked to stop (a signal): sinks stop pushing back on the feed.
    pub stop: Option<Arc<AtomicBool>>,
    /// Take checkpoints: where, how often, and the flag `PUT /checkpoint` sets.
    pub checkpoints: Option<CheckpointOpts>,
    /// Start from these shard states (a recovery): messages applied, one state per shard.
    pub recover: Option<(u64, Vec<shards::checkpoint::ShardState>)>,
    /// The live feed's counters, for `/metrics` (live feeds only).
    pub live: Option<Arc<crate::live::gauges::LiveGauges>>,
}

/// Where and how often shards checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointOpts {
    /// The directory (it exists).
    pub dir: std::path::PathBuf,
    /// Feed time between checkpoints, ns (0: only on request).
    pub every_ns: u64,
    /// Set to ask for one now.
    pub request: Arc<AtomicBool>,
    /// Each shard's last finished mark (the ingress sends the next only when all are done).
    pub finished: Vec<Arc<std::sync::atomic::AtomicU64>>,
    /// Each sink's durable mark: shards keep the newest checkpoint at or before the lowest.
    pub sinks_durable: Vec<Arc<std::sync::atomic::AtomicU64>>,
}

impl CheckpointOpts {
    /// Checkpoints of `shards` shards into `dir` (which exists) every `every_s` seconds of
    /// feed time (0: on request only).
    pub fn new(dir: std::path::PathBuf, every_s: u64, shards: usize) -> CheckpointOpts {
        CheckpointOpts {
            dir,
            every_ns: every_s * 1_000_000_000,
            request: Arc::new(AtomicBool::new(false)),
            finished: (0..shards).map(|_| Default::default()).collect(),
            sinks_durable: Vec::new(),
        }
    }
}

/// A sink's link to the control core: its persist latencies, rows and spool level out, the
/// degrade level in.
pub struct SinkObserver {
    reporter: crate::telemetry::Reporter,
    level: ring::Consumer<u8>,
    hold: bool,
    stop: Option<Arc<AtomicBool>>,
}

impl storage_adapters::adapter::Observer for SinkObserver {
    fn committed(&mut self, rows: usize, lag_ns: Option<u64>) {
        let t = &mut self.reporter.current;
        t.items += rows as u64;
        if let Some(l) = lag_ns {
            t.stages.record(crate::telemetry::Stage::Persist, l);
        }
        self.reporter.tick(clock::now_ns());
    }
    fn hold(&mut self) -> bool {
        while let Some(l) = self.level.try_pop() {
            self.hold = l >= 2;
        }
        self.reporter.tick(clock::now_ns());
        self.hold
    }
    fn now_ns(&self) -> u64 {
        clock::now_ns()
    }
    fn spool_bytes(&mut self, pending: u64) {
        self.reporter.current.gauge = pending;
        self.reporter.current.gauge_set = true;
    }
    fn stopping(&mut self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
    fn lost(&mut self, rows: u64) {
        self.reporter.current.lost += rows;
        self.reporter.tick(clock::now_ns());
    }
}

impl Drop for SinkObserver {
    fn drop(&mut self) {
        self.reporter.flush(Duration::from_millis(200));
    }
}

/// One storage adapter to run.
pub struct SinkPlan {
    /// Batching, spool and retry settings.
    pub settings: storage_adapters::adapter::Settings,
    /// How to connect.
    pub connect: storage_adapters::adapter::AnyConnect,
    /// Which rows it takes.
    pub wants: storage_adapters::adapter::Wants,
}

/// Counters of one link.
#[derive(Debug, Clone)]
pub struct LinkReport {
    /// `ingress->shard0`, `shard0->consumer`, ...
    pub name: String,
    /// Batches sent.
    pub sent: u64,
    /// Times the producer waited for a free buffer.
    pub full_waits: u64,
}

/// Everything a run did.
pub struct RunReport {
    /// The ingress.
    pub ingress: IngressReport,
    /// Every shard, by index.
    pub shards: Vec<ShardReport>,
    /// The consumer.
    pub consumer: consumer::ConsumerReport,
    /// Every link.
    pub links: Vec<LinkReport>,
    /// Every shard's books, by shard index.
    pub books: Vec<Books>,
    /// Snapshots asked for, with the symbol as given (`None`: no such symbol in the feed).
    pub snapshots: Vec<(String, Option<Snapshot>)>,
    /// Wall time from start to the last shard's exit and every sink's finish.
    pub wall: Duration,
    /// Wall time from start until the consumer had every event: the engine's own replay time,
    /// without the sinks' catching up afterwards.
    pub engine_wall: Duration,
    /// Wall time from the feed's start (every shard ready, its memory resident) until the
    /// consumer had every event: what a rate schedule is kept over. The rest of
    /// `engine_wall` is starting up (about 0.9 s on m7 with the bench's defaults, 2026-12-07).
    pub feed_wall: Duration,
    /// Roles and their CPUs.
    pub placement: Vec<(String, usize)>,
    /// The plan the run was launched from.
    pub plan: plan::Plan,
    /// Every storage adapter.
    pub sinks: Vec<storage_adapters::adapter::SinkReport>,
    /// The control core: merged stage histograms, the ladder's history, budgets.
    pub control: Box<crate::control::ControlCore>,
    /// The WebSocket gateway, if it ran.
    pub gateway: Option<crate::gateway::GatewayReport>,
}

impl RunReport {
    /// The feed's wall time, s (never 0, for rates).
    pub fn feed_s(&self) -> f64 {
        self.feed_wall.as_secs_f64().max(1e-9)
    }

    /// Seconds from the run's start to its first message: building shards, making their
    /// memory resident, starting threads. An operator waits them; the feed's rate leaves them
    /// out.
    pub fn startup_s(&self) -> f64 {
        self.engine_wall
            .saturating_sub(self.feed_wall)
            .as_secs_f64()
    }

    /// Messages a second over the feed alone. Counted from the run's start, a 20 M message
    /// v3k file read 7.0 M msgs/s with 0.61 s of start-up in it, 8.9 M over the feed; a bench
    /// run that kept a 1 M msgs/s schedule read 0.74-0.77 M (2026-12-07).
    pub fn feed_rate(&self) -> f64 {
        self.ingress.messages as f64 / self.feed_s()
    }
}

/// Raises the locked-memory limit to its hard maximum (glommio's io_uring buffers are locked).
fn raise_memlock() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct; no other effect.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_MEMLOCK, &r);
        }
    }
}

/// Pins the calling thread to `cpu` (best effort: a CPU the process may not use is ignored).
pub fn pin(cpu: usize) {
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

/// A buffer with `bytes` of capacity, every page of it written once (then emptied).
///
/// The pages are touched with [`shards::book::pages::prefault`]'s volatile writes. Filling the
/// buffer with zeros is not enough: the compiler turns an allocation followed by a zero fill
/// into `calloc`, and the allocator then skips the fill on fresh pages, so they stayed
/// unmapped. Until 2026-12-06 the first batches of a run faulted them in: a few hundred faults
/// on the ingress and the shard in the run's first half second, and turns of up to 8 ms.
pub fn touched_buf(bytes: usize) -> Buf {
    let mut b = Buf::with_capacity(bytes);
    b.resize(bytes, 0);
    shards::book::pages::prefault(&mut b[..]);
    b.clear();
    b
}

/// Gives the calling thread the plan's nice value (0 leaves it alone).
pub fn set_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority on this thread's own id (gettid); no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// Runs `source` through the engine as `cfg` places it, until the feed ends or `stop` is set:
/// plans the threads, builds the rings, launches every role, runs the ingress on a scoped
/// thread of this call, and shuts down in the order [`shut_down`] writes out.
pub fn run(
    source: &(impl Source + Sync),
    cfg: &Config,
    mut opts: RunOptions,
    stop: &AtomicBool,
) -> Result<RunReport> {
    let started = Instant::now();
    clock::now_ns();
    raise_memlock();
    let sink_names: Vec<String> = opts.sinks.iter().map(|p| p.settings.name.clone()).collect();
    let endpoints = plan::Endpoints {
        admin: opts.admin.is_some(),
        gateway: opts.gateway.is_some(),
        load_cpu: opts.load_cpu,
    };
    let plan = plan::Plan::new(cfg, &sink_names, endpoints);
    let skip = opts.recover.as_ref().map_or(0, |r| r.0);
    let topo = topology::Topology::build(cfg, &plan, &mut opts, source.whole());
    let topology::Topology {
        routes,
        ingress,
        shards,
        consumer,
        sinks,
        control: mut setup,
        ready,
        watched,
        links,
        gateway,
    } = topo;
    let shards = launch::shards(shards, &plan, cfg)?;
    let adapters = launch::sinks(sinks, &plan)?;
    let consumer = launch::consumer(consumer, &plan)?;
    // The endpoint and the watcher sleep beside control and stop together, after it.
    let side_stop = Arc::new(AtomicBool::new(false));
    let admin = match opts.admin.take() {
        Some(a) => {
            let t = plan.thread_of(&plan::Role::Admin);
            let (desk, h) = a
                .start(t.cpu, t.nice, Arc::clone(&side_stop))
                .map_err(|e| Failure::new(format!("cannot start the admin thread: {e}")))?;
            setup.desk = Some(desk);
            Some(h)
        }
        None => None,
    };
    let gateway_stats = gateway.as_ref().map(|g| Arc::clone(&g.gateway.stats));
    let gateway = match gateway {
        Some(g) => {
            let t = plan.thread_of(&plan::Role::Gateway);
            let h = g
                .gateway
                .start(
                    (t.cpu, t.nice, t.turn_ns),
                    g.intake,
                    g.reporter,
                    Arc::clone(&side_stop),
                )
                .map_err(|e| Failure::new(format!("cannot start the gateway thread: {e}")))?;
            Some(h)
        }
        None => None,
    };
    let (names, tids): (Vec<String>, Vec<_>) = watched.into_iter().unzip();
    let watch = plan.thread_of(&plan::Role::Watch);
    let mut path_cpus: Vec<usize> = plan.threads[..=cfg.shards.value]
        .iter()
        .map(|t| t.cpu)
        .collect();
    path_cpus.sort_unstable();
    path_cpus.dedup();
    let (lost_rx, watcher) = crate::telemetry::lost::watch(
        tids,
        path_cpus,
        setup.interval,
        watch.cpu,
        watch.nice,
        Arc::clone(&side_stop),
    )
    .map_err(|e| Failure::new(format!("cannot start the watch thread: {e}")))?;
    setup.lost = Some((lost_rx, names));
    let control_stop = Arc::new(AtomicBool::new(false));
    let control = launch::control(
        crate::control::ControlCore::new(setup),
        &plan,
        &control_stop,
    )?;
    wait_for_shards(&ready, cfg.shards.value)?;
    if let Some(s) = &gateway_stats {
        wait_for_clients(s, opts.ws_wait_clients)?;
    }
    let feed = IngressRun {
        source,
        routes: &routes,
        bundle: ingress,
        cpu: plan.threads[0].cpu,
        batch_bytes: cfg.feed_batch_bytes.value,
        speed: opts.speed.unwrap_or(Speed::Max),
        measure: !opts.unmeasured,
        stop,
        marks: crate::checkpoint::marks::Marks::new(
            opts.checkpoints.as_ref().map_or(0, |c| c.every_ns),
            opts.checkpoints.as_ref().map(|c| Arc::clone(&c.request)),
            skip,
            opts.checkpoints
                .as_ref()
                .map_or(Vec::new(), |c| c.finished.clone()),
        ),
    };
    let fed = Instant::now();
    let (ingress, consumer, control) = feed.run(consumer, control)?;
    let (engine_wall, feed_wall) = (started.elapsed(), fed.elapsed());
    let threads = Threads {
        control,
        control_stop,
        side_stop,
        side: admin.into_iter().chain([watcher]).collect(),
        gateway,
        shards,
        adapters,
    };
    let done = shut_down(threads, &opts, stop)?;
    Ok(RunReport {
        ingress,
        shards: done.shards,
        consumer,
        links: topology::link_reports(&links),
        books: done.books,
        snapshots: done.snapshots,
        wall: started.elapsed(),
        engine_wall,
        feed_wall,
        placement: plan.placement(),
        plan,
        sinks: done.sinks,
        control: done.control,
        gateway: done.gateway,
    })
}

/// The ingress's run: the feed, its routes and links, and how to pace.
struct IngressRun<'a, S: Source + Sync> {
    source: &'a S,
    routes: &'a Routes,
    bundle: topology::IngressBundle,
    cpu: usize,
    batch_bytes: usize,
    speed: Speed,
    measure: bool,
    stop: &'a AtomicBool,
    marks: crate::checkpoint::marks::Marks,
}

/// Where control is after launch: on a thread of its own, or to be turned by the ingress.
type ControlAt = std::result::Result<
    std::thread::JoinHandle<crate::control::ControlCore>,
    crate::control::ControlCore,
>;
/// Where the consumer is after launch.
type ConsumerAt =
    std::result::Result<std::thread::JoinHandle<consumer::ConsumerReport>, consumer::Consumer>;

impl<S: Source + Sync> IngressRun<'_, S> {
    /// Runs the ingress on its pinned thread, giving the roles the plan put inside it
    /// (consumer, control) their turns, until the feed ends and, with the consumer inside, every
    /// shard's last events are in. Returns its report, the consumer's, and control.
    fn run(
        self,
        consumer: ConsumerAt,
        control: ControlAt,
    ) -> Result<(IngressReport, consumer::ConsumerReport, ControlAt)> {
        let (consumer_thread, mut inline_consumer) = split(consumer);
        let (control_thread, mut inline_control) = split(control);
        let IngressRun {
            source,
            routes,
            bundle,
            cpu,
            batch_bytes,
            speed,
            measure,
            stop,
            marks,
        } = self;
        let (report, inline_report, inline_control) = std::thread::scope(|s| {
            let h = std::thread::Builder::new()
                .name("ingress".into())
                .spawn_scoped(s, move || {
                    pin(cpu);
                    bundle.tid.set_to_current();
                    let turn = |c: &mut Option<crate::control::ControlCore>| {
                        c.as_mut().is_some_and(|c| c.turn())
                    };
                    // What runs here besides the feed, for the attribution of its long turns.
                    let doing = bundle.reporter.off_cpu.doing();
                    let tel = ingress::IngressTelemetry {
                        reporter: bundle.reporter,
                        directory: bundle.directory,
                        measure,
                        off_cpu: bundle.own_cpu,
                    };
                    let ahead = std::cell::Cell::new(false);
                    let idle = &mut || {
                        if turn(&mut inline_control) {
                            doing.mark(offcpu::CONTROL);
                        }
                        let busy = inline_consumer.as_mut().is_some_and(|c| c.poll());
                        if busy {
                            doing.mark(offcpu::CONSUMER);
                        }
                        if let (true, Some(c)) = (ahead.get(), inline_consumer.as_mut()) {
                            // Spare CPU: a gateway beside it that fell behind may take it.
                            c.give_turn();
                        }
                        busy
                    };
                    let outlets = ingress::Outlets {
                        routes,
                        links: bundle.links,
                        batch_bytes,
                    };
                    let pacing = ingress::Pacing {
                        speed,
                        own_cpu: bundle.own_cpu,
                        ahead: &ahead,
                    };
                    let r = ingress::run(source, outlets, pacing, stop, tel, marks, idle);
                    let report = inline_consumer.map(|c| {
                        c.drain_with(&mut || {
                            turn(&mut inline_control);
                        })
                    });
                    (r, report, inline_control)
                });
            match h {
                Ok(h) => h
                    .join()
                    .map_err(|_| Failure::new("the ingress thread panicked (a bug)")),
                Err(e) => Err(Failure::new(format!(
                    "cannot start the ingress thread: {e}"
                ))),
            }
        })?;
        // Every shard applies its last batch before it sends its last event batch, and the
        // consumer returns only after the last one from every shard: after this, the books
        // are final and queries see the end of the feed.
        let consumer = match (inline_report, consumer_thread) {
            (Some(r), _) => r,
            (None, Some(h)) => h
                .join()
                .map_err(|_| Failure::new("the consumer thread panicked (a bug)"))?,
            (None, None) => unreachable!("the consumer runs inline or on a thread of its own"),
        };
        let control = match (inline_control, control_thread) {
            (Some(c), _) => Err(c),
            (None, Some(h)) => Ok(h),
            (None, None) => unreachable!("control runs inline or on a thread of its own"),
        };
        Ok((report, consumer, control))
    }
}

/// A launched role's thread, or the role itself to run inline.
fn split<T, R>(
    at: std::result::Result<std::thread::JoinHandle<T>, R>,
) -> (Option<std::thread::JoinHandle<T>>, Option<R>) {
    match at {
        Ok(h) => (Some(h), None),
        Err(r) => (None, Some(r)),
    }
}

/// Every thread still running once the feed has ended.
struct Threads {
    control: ControlAt,
    control_stop: Arc<AtomicBool>,
    side_stop: Arc<AtomicBool>,
    /// The admin endpoint and the watcher.
    side: Vec<std::thread::JoinHandle<()>>,
    gateway: Option<std::thread::JoinHandle<crate::gateway::GatewayReport>>,
    shards: Vec<launch::ShardHandle>,
    adapters: Vec<std::thread::JoinHandle<storage_adapters::adapter::SinkReport>>,
}

/// What the shutdown collects.
struct Finished {
    control: Box<crate::control::ControlCore>,
    gateway: Option<crate::gateway::GatewayReport>,
    snapshots: Vec<(String, Option<Snapshot>)>,
    books: Vec<Books>,
    shards: Vec<ShardReport>,
    sinks: Vec<storage_adapters::adapter::SinkReport>,
}

/// Shuts the run down once the feed has ended (the ingress has sent every shard its last
/// batch and the consumer has every shard's last events), in this order:
/// 1. control stays up for the linger (the admin endpoint answers from it, the gateway serves
///    the final state), or until a signal cuts it short, then stops;
/// 2. the admin endpoint, the gateway and the watcher stop (nothing answers them any more);
/// 3. the run's `--query` snapshots are asked, through control, of the shards;
/// 4. the shards are told to stop, and hand back their books and reports;
/// 5. the sinks finish (their rings closed by the consumer: drain, or leave it spooled);
/// 6. control takes the cores' last intervals and closes the time at the last level.
fn shut_down(t: Threads, opts: &RunOptions, stop: &AtomicBool) -> Result<Finished> {
    let deadline = Instant::now() + opts.linger;
    let mut control = match t.control {
        Err(mut c) => {
            c.run_until(deadline, stop);
            Box::new(c)
        }
        Ok(h) => {
            while !stop.load(Ordering::Relaxed) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(20)));
            }
            t.control_stop.store(true, Ordering::Release);
            Box::new(
                h.join()
                    .map_err(|_| Failure::new("the control thread panicked (a bug)"))?,
            )
        }
    };
    control.end_probe();
    t.side_stop.store(true, Ordering::Release);
    for h in t.side {
        let _ = h.join();
    }
    let gateway = match t.gateway {
        Some(h) => Some(
            h.join()
                .map_err(|_| Failure::new("the gateway thread panicked (a bug)"))?,
        ),
        None => None,
    };
    let snapshots = opts
        .queries
        .iter()
        .map(|s| (s.clone(), control.snapshot_now(s, QUERY_PATIENCE)))
        .collect();
    control.stop_shards();
    let (mut books, mut shards) = (Vec::new(), Vec::new());
    for (i, h) in t.shards.into_iter().enumerate() {
        let (b, r) = h
            .join()
            .map_err(|e| Failure::new(format!("shard {i} failed: {e}")))?;
        books.push(b);
        shards.push(r);
    }
    let mut sinks = Vec::new();
    for h in t.adapters {
        sinks.push(
            h.join()
                .map_err(|_| Failure::new("a storage adapter thread panicked (a bug)"))?,
        );
    }
    control.finish();
    Ok(Finished {
        control,
        gateway,
        snapshots,
        books,
        shards,
        sinks,
    })
}

/// Waits until all `n` shards have set up (order tables reserved and touched): the feed's
/// clock starts after, so the first second runs like every other.
fn wait_for_shards(ready: &std::sync::atomic::AtomicUsize, n: usize) -> Result<()> {
    let deadline = Instant::now() + SHARD_SETUP_PATIENCE;
    while ready.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            return Err(Failure::new(format!(
                "shards did not set up within {SHARD_SETUP_PATIENCE:?} (reserving shard_orders \
                 for each: lower it, or check free memory)"
            )));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Waits until `n` gateway clients have subscribed (`--ws-wait-clients`).
fn wait_for_clients(stats: &crate::gateway::GatewayStats, n: u64) -> Result<()> {
    let deadline = Instant::now() + CLIENT_PATIENCE;
    while stats.subscribed.load(Ordering::Acquire) < n {
        if Instant::now() > deadline {
            return Err(Failure::new(format!(
                "--ws-wait-clients {n}: only {} WebSocket client(s) subscribed within \
                 {CLIENT_PATIENCE:?}; connect them to the --ws address, or lower the number",
                stats.subscribed.load(Ordering::Acquire)
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// How long `--ws-wait-clients` waits.
const CLIENT_PATIENCE: Duration = Duration::from_secs(60);

/// How long shards may take to reserve and touch their memory.
const SHARD_SETUP_PATIENCE: Duration = Duration::from_secs(60);

/// How long the run's end-of-feed queries (`--query`) wait for their shard.
const QUERY_PATIENCE: Duration = Duration::from_secs(5);
