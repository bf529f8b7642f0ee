//! The thread-per-core runtime: one feed ingress thread, shard cores (glommio executors), and an
//! event consumer, each pinned to the CPU the configuration gives it, talking only over SPSC
//! links ([`ring`]) that carry rkyv batches ([`batch`]).
//!
//! ```text
//!  ingress (feed_cpu) --FeedBatch--> shard i (shard_cpus[i]) --EventBatch--> consumer (adapter_cpus[0])
//!        one link per shard            books, bars, per-core cache          one link per shard
//!  engine (caller's thread) --Control--> shard i --Snapshot--> engine
//! ```
//!
//! Nothing mutable is shared between cores: a shard owns its books outright and hands them back
//! only when it exits. Owns thread start-up, pinning, shutdown order and the run's report; never
//! touches book logic.

pub mod batch;
pub mod clock;
pub mod consumer;
pub mod ingress;
pub mod plan;
pub mod ring;
pub mod shard;

use crate::config::Config;
use crate::error::{Failure, Result};
use batch::Buf;
use ingress::{IngressReport, Routes, Source, Speed};
use shard::{Control, ShardReport, Snapshot};
use shards::book::Books;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// How long the control core (and its admin endpoint) stays up after the feed ends.
    pub admin_linger: Duration,
    /// Skip every clock read and histogram record on ingress and shards (to measure what
    /// measuring costs).
    pub unmeasured: bool,
    /// Have the control core ask for a snapshot this often (the benchmark's snapshot load).
    pub snapshot_probe: Option<Duration>,
}

/// A sink's link to the control core: its persist latencies, rows and spool level out, the
/// degrade level in.
struct SinkObserver {
    reporter: crate::telemetry::Reporter,
    level: ring::Consumer<u8>,
    hold: bool,
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
    /// Roles and their CPUs.
    pub placement: Vec<(String, usize)>,
    /// The plan the run was launched from.
    pub plan: plan::Plan,
    /// Every storage adapter.
    pub sinks: Vec<storage_adapters::adapter::SinkReport>,
    /// The control core: merged stage histograms, the ladder's history, budgets.
    pub control: Box<crate::control::ControlCore>,
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

fn pin(cpu: usize) {
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

/// Makes every page under `s` resident now (a volatile read and write back of one byte per
/// 4 KiB page: nothing changes), so the run does not fault them in on the hot path. For
/// memory from `vec![0; n]`, which the allocator hands out as untouched zero pages.
pub fn prefault<T: Copy>(s: &mut [T]) {
    let bytes = core::mem::size_of_val(s);
    let base = s.as_mut_ptr() as *mut u8;
    for off in (0..bytes).step_by(4096) {
        // SAFETY: `off < bytes`, inside `s`, which we borrow mutably; the byte is written back
        // unchanged, so every `T` keeps its value.
        unsafe {
            let p = base.add(off);
            p.write_volatile(p.read_volatile());
        }
    }
}

/// A buffer with `bytes` of capacity, every page of it written once (then emptied).
pub fn touched_buf(bytes: usize) -> Buf {
    let mut b = Buf::with_capacity(bytes);
    b.resize(bytes, 0);
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

/// Runs `source` through the engine as `cfg` places it, until the feed ends or `stop` is set.
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
    let plan = plan::Plan::new(cfg, &sink_names, opts.admin.is_some());
    let n = cfg.shards.value;
    let routes = Routes::new(n, cfg.assign.value, source.whole());
    let batch_bytes = cfg.feed_batch_bytes.value;
    // Every buffer is touched now: a link's 64 buffers are first used one by one during the
    // first batches, each page faulting in on the hot path.
    let feed_buf = || touched_buf(batch_bytes + 256);
    let mut feed_tx = Vec::new();
    let mut event_rx = Vec::new();
    let mut controls = Vec::new();
    let mut answers = Vec::new();
    let mut links = Vec::new();
    let mut handles = Vec::new();
    let interval_ns = cfg.control_interval_ms.value as u64 * 1_000_000;
    let mut core_feeds = Vec::new();
    let reporter = |name: String, cpu: usize, feeds: &mut Vec<crate::control::CoreFeed>| {
        let (r, collector) = crate::telemetry::reporting(feeds.len(), interval_ns);
        feeds.push(crate::control::CoreFeed {
            name,
            cpu,
            collector,
        });
        r
    };
    let ingress_reporter = reporter("ingress".into(), cfg.feed_cpu.value, &mut core_feeds);
    let (dir_tx, dir_rx) = ring::ring::<([u8; 8], u16)>(1 << 16);
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ingress_tid = crate::telemetry::lost::Tid::default();
    let mut watched = vec![("ingress".to_string(), ingress_tid.clone())];
    for i in 0..n {
        let (ftx, frx) = ring::link(cfg.feed_buffers.value, feed_buf);
        let (etx, erx) = ring::link(cfg.event_buffers.value, || touched_buf(64 << 10));
        let (ctx_p, ctx_c) = ring::ring::<Control>(16);
        let (ans_p, ans_c) = ring::ring::<Snapshot>(16);
        links.push((format!("ingress->shard{i}"), ftx.stats()));
        links.push((format!("shard{i}->consumer"), etx.stats()));
        feed_tx.push(ftx);
        event_rx.push(erx);
        controls.push(ctx_p);
        answers.push(ans_c);
        let cpu = plan.thread_of(&plan::Role::Shard(i)).cpu;
        let ctx = shard::ShardCtx {
            id: i,
            feed: frx,
            events: etx,
            control: ctx_c,
            answers: ans_p,
            reporter: reporter(format!("shard{i}"), cpu, &mut core_feeds),
            chaos: opts.chaos.iter().find(|(s, _)| *s == i).map(|(_, c)| *c),
            dedicated: plan.thread_of(&plan::Role::Shard(i)).wait == plan::Wait::Spin,
            orders: cfg.shard_orders.value,
            books: cfg.shard_books.value,
            ready: std::sync::Arc::clone(&ready),
            tid: {
                let t = crate::telemetry::lost::Tid::default();
                watched.push((format!("shard{i}"), t.clone()));
                t
            },
            measure: !opts.unmeasured,
        };
        let h = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
            .name(&format!("shard{i}"))
            .io_memory(cfg.io_memory_kib.value << 10)
            .spawn(move || shard::run(ctx))
            .map_err(|e| start_failure(i, cpu, cfg, &e))?;
        handles.push(h);
    }
    let consumer_cpu = plan.thread_of(&plan::Role::Consumer).cpu;
    let events = opts.events.take();
    let mut feeds = Vec::new();
    let mut adapters = Vec::new();
    let mut sink_levels = Vec::new();
    for sink in opts.sinks.drain(..) {
        let (tx, mut rx) = ring::ring::<storage_adapters::rows::RowBatch>(4096);
        let done = std::sync::Arc::new(AtomicBool::new(false));
        feeds.push(consumer::AdapterFeed {
            tx,
            done: std::sync::Arc::clone(&done),
            wants: sink.wants,
        });
        let thread = plan.thread_of(&plan::Role::Sink(sink.settings.name.clone()));
        let (cpu, nice) = (thread.cpu, thread.nice);
        let (level_tx, level_rx) = ring::ring::<u8>(64);
        sink_levels.push(level_tx);
        let observer = SinkObserver {
            reporter: reporter(format!("sink:{}", sink.settings.name), cpu, &mut core_feeds),
            level: level_rx,
            hold: false,
        };
        let h = std::thread::Builder::new()
            .name(format!("sink-{}", sink.settings.name))
            .spawn(move || {
                pin(cpu);
                set_nice(nice);
                use storage_adapters::adapter::Intake;
                storage_adapters::adapter::run(
                    sink.connect,
                    sink.settings,
                    move || {
                        if let Some(b) = rx.try_pop() {
                            return Intake::Rows(b);
                        }
                        if done.load(Ordering::Acquire) {
                            // The consumer set `done` after its last push: one more look is final.
                            return rx.try_pop().map_or(Intake::End, Intake::Rows);
                        }
                        Intake::Idle
                    },
                    observer,
                )
            })
            .map_err(|e| Failure::new(format!("cannot start a storage adapter thread: {e}")))?;
        adapters.push(h);
    }
    // The plan says whether the ingress may park, and which roles take turns inside it.
    if plan.threads[0].wait == plan::Wait::Spin {
        feed_tx.iter_mut().for_each(ring::Sender::never_park);
    }
    let inline = plan.on_ingress_thread(&plan::Role::Consumer);
    let mut consumer = consumer::Consumer::new(event_rx, events, feeds);
    let consumer_thread = if inline {
        None
    } else {
        let c = std::mem::replace(
            &mut consumer,
            consumer::Consumer::new(Vec::new(), None, Vec::new()),
        );
        let h = std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || {
                pin(consumer_cpu);
                c.drain()
            })
            .map_err(|e| Failure::new(format!("cannot start the consumer thread: {e}")))?;
        Some(h)
    };
    let control_stop = std::sync::Arc::new(AtomicBool::new(false));
    let control_cpu = plan.thread_of(&plan::Role::Control).cpu;
    let admin_stop = std::sync::Arc::new(AtomicBool::new(false));
    let (desk, admin_thread) = match opts.admin.take() {
        Some(a) => {
            let t = plan.thread_of(&plan::Role::Admin);
            let (d, h) = a
                .start(t.cpu, t.nice, std::sync::Arc::clone(&admin_stop))
                .map_err(|e| Failure::new(format!("cannot start the admin thread: {e}")))?;
            (Some(d), Some(h))
        }
        None => (None, None),
    };
    let watch = plan.thread_of(&plan::Role::Watch);
    let (names, tids): (Vec<String>, Vec<_>) = watched.into_iter().unzip();
    let mut path_cpus: Vec<usize> = plan.threads[..=n].iter().map(|t| t.cpu).collect();
    path_cpus.sort_unstable();
    path_cpus.dedup();
    let (lost_rx, watch_thread) = crate::telemetry::lost::watch(
        tids,
        path_cpus,
        Duration::from_nanos(interval_ns),
        watch.cpu,
        watch.nice,
        std::sync::Arc::clone(&admin_stop),
    )
    .map_err(|e| Failure::new(format!("cannot start the watch thread: {e}")))?;
    let setup = crate::control::ControlSetup {
        budgets: cfg.budgets.iter().map(|b| b.value).collect(),
        enter_after: cfg.degrade_enter.value as u32,
        leave_after: cfg.degrade_leave.value as u32,
        interval: Duration::from_nanos(interval_ns),
        feeds: core_feeds,
        shard_controls: std::mem::take(&mut controls),
        answers: std::mem::take(&mut answers),
        sink_levels,
        directory: dir_rx,
        routes: routes.clone(),
        links: links.clone(),
        shard_count: n,
        config: cfg.render(),
        desk,
        lost: Some((lost_rx, names)),
        probe: opts.snapshot_probe,
    };
    // Like the consumer, control on the ingress CPU takes its turns on the ingress thread.
    let core = crate::control::ControlCore::new(setup);
    let (inline_control, control_thread) = if plan.on_ingress_thread(&plan::Role::Control) {
        (Some(core), None)
    } else {
        let stop = std::sync::Arc::clone(&control_stop);
        let h = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                pin(control_cpu);
                core.run(&stop)
            })
            .map_err(|e| Failure::new(format!("cannot start the control thread: {e}")))?;
        (None, Some(h))
    };
    wait_for_shards(&ready, n)?;
    let feed_cpu = cfg.feed_cpu.value;
    let speed = opts.speed.unwrap_or(Speed::Max);
    let tel = ingress::IngressTelemetry {
        reporter: ingress_reporter,
        directory: dir_tx,
        measure: !opts.unmeasured,
    };
    let (ingress, inline_report, inline_control) = std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("ingress".into())
            .spawn_scoped(s, || {
                pin(feed_cpu);
                ingress_tid.set_to_current();
                let mut control = inline_control;
                let control_turn = |c: &mut Option<crate::control::ControlCore>| {
                    if let Some(c) = c.as_mut() {
                        c.turn();
                    }
                };
                let idle = &mut || {
                    control_turn(&mut control);
                    inline && consumer.poll()
                };
                let r = ingress::run(
                    source,
                    &routes,
                    feed_tx,
                    batch_bytes,
                    speed,
                    stop,
                    tel,
                    idle,
                );
                let report =
                    inline.then(|| consumer.drain_with(&mut || control_turn(&mut control)));
                (r, report, control)
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
    // consumer returns only after the last one from every shard: after this join, the books
    // are final and queries see the end of the feed.
    let consumer = match (inline_report, consumer_thread) {
        (Some(r), _) => r,
        (None, Some(h)) => h
            .join()
            .map_err(|_| Failure::new("the consumer thread panicked (a bug)"))?,
        (None, None) => unreachable!("the consumer runs inline or on a thread of its own"),
    };
    let engine_wall = started.elapsed();
    let mut control = match (inline_control, control_thread) {
        (Some(mut c), _) => {
            c.run_until(Instant::now() + opts.admin_linger);
            Box::new(c)
        }
        (None, Some(h)) => {
            std::thread::sleep(opts.admin_linger);
            control_stop.store(true, Ordering::Release);
            Box::new(
                h.join()
                    .map_err(|_| Failure::new("the control thread panicked (a bug)"))?,
            )
        }
        (None, None) => unreachable!("control runs inline or on a thread of its own"),
    };
    // The endpoint's last request is answered (or expired) by now: control no longer turns.
    admin_stop.store(true, Ordering::Release);
    if let Some(h) = admin_thread {
        let _ = h.join();
    }
    let _ = watch_thread.join();
    let snapshots = opts
        .queries
        .iter()
        .map(|s| (s.clone(), control.snapshot_now(s, QUERY_PATIENCE)))
        .collect();
    control.stop_shards();
    let mut books = Vec::with_capacity(n);
    let mut shards = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        let (b, r) = h
            .join()
            .map_err(|e| Failure::new(format!("shard {i} failed: {e}")))?;
        books.push(b);
        shards.push(r);
    }
    let links = links
        .iter()
        .map(|(name, s)| LinkReport {
            name: name.clone(),
            sent: s.sent.load(Ordering::Relaxed),
            full_waits: s.full_waits.load(Ordering::Relaxed),
        })
        .collect();
    let mut sinks = Vec::new();
    for h in adapters {
        sinks.push(
            h.join()
                .map_err(|_| Failure::new("a storage adapter thread panicked (a bug)"))?,
        );
    }
    control.finish();
    Ok(RunReport {
        ingress,
        shards,
        consumer,
        links,
        books,
        snapshots,
        wall: started.elapsed(),
        engine_wall,
        placement: plan.placement(),
        plan,
        sinks,
        control,
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

/// How long shards may take to reserve and touch their memory.
const SHARD_SETUP_PATIENCE: Duration = Duration::from_secs(60);

fn start_failure(i: usize, cpu: usize, cfg: &Config, e: &glommio::GlommioError<()>) -> Failure {
    Failure::new(format!(
        "cannot start shard {i} on CPU {cpu}: {e}. Shards run on glommio, which needs io_uring \
         (check that `sysctl kernel.io_uring_disabled` is 0 and that the container's seccomp \
         profile allows io_uring_setup) and locked memory (raise `ulimit -l`, or lower \
         io_memory_kib, now {} KiB per shard)",
        cfg.io_memory_kib.value
    ))
}

/// How long the run's end-of-feed queries (`--query`) wait for their shard.
const QUERY_PATIENCE: Duration = Duration::from_secs(5);
