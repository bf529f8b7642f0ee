//! The adapter loop that runs one sink on its own core: batching, spooling, retries, drain.
//!
//! Two tasks share one current-thread tokio runtime on the adapter core:
//! - intake takes row batches from the engine as fast as they come and never waits on the
//!   database: a batch goes to the in-memory queue while the sink keeps up and the spool is
//!   empty, and otherwise to the spool, behind everything queued (the queue is bounded), so a
//!   slow or dead database can never back up the rings into the shards, and rows reach the
//!   database in the order they came (a latest-state store depends on it);
//! - the writer drains the spool first (in order), then the queue, in batches of `rows` rows or
//!   after `linger`, whichever comes first. A failed or timed-out write puts the batch (and the
//!   whole queue) in the spool, drops the connection and retries with exponential backoff.
//!
//! Writes are idempotent by natural keys, so a batch whose commit outcome is unknown (timeout)
//! is simply written again.
//!
//! When the spool refuses a batch too (disk full, its limit, a directory that cannot be
//! written), the batch is held in memory, behind the spool and ahead of the queue, so order
//! still holds; the held batches go to the spool as soon as it takes them again, or straight
//! to the database. Held rows are bounded by `memory_rows`; past the bound the
//! [`Overflow`] setting decides: a replay stops taking rows, so the rings fill and the feed
//! waits ([`Overflow::PushBack`]); a live feed cannot wait, so the oldest held rows are dropped
//! and counted lost ([`Overflow::Lose`], [`SinkReport::rows_lost`], [`Observer::lost`]).
//! Nothing is dropped silently. Owns the sink's connection, queue, held rows and spool; never
//! touches a shard.

use crate::rows::RowBatch;
use crate::spool::{OpenReport, Spool};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A database the adapter writes to.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Writes every row of `rows` (idempotently); returns rows that were new.
    async fn write(&mut self, rows: &RowBatch) -> Result<u64, String>;
}

/// How to (re)connect a sink.
#[allow(async_fn_in_trait)]
pub trait Connect {
    /// The connected sink.
    type Sink: Sink;
    /// Connects (and prepares schema); the error says what failed and what to do.
    async fn connect(&self) -> Result<Self::Sink, String>;
    /// Times a connection found the server had lost what was written and wrote it again.
    fn restores(&self) -> u64 {
        0
    }
}

/// Batching and retry settings of one sink.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sink name (`pg`, `redis`, `neo4j`): names its spool directory.
    pub name: String,
    /// The spool directory (`build_data/spool/<name>/`).
    pub spool_dir: PathBuf,
    /// Flush at this many rows...
    pub batch_rows: usize,
    /// ...or when the oldest queued row has waited this long.
    pub linger: Duration,
    /// Rows held in memory before new batches go to the spool.
    pub max_queued_rows: usize,
    /// A write that takes longer is abandoned (and sent again later).
    pub write_timeout: Duration,
    /// After the feed ends, how long to keep retrying a dead sink before leaving the rest in
    /// the spool for `tickcore drain`.
    pub finish_within: Duration,
    /// Spool segment size.
    pub segment_bytes: usize,
    /// Only spool: no database configured.
    pub spool_only: bool,
    /// Rows held in memory while neither the database nor the spool takes them.
    pub memory_rows: usize,
    /// What happens past `memory_rows`.
    pub overflow: Overflow,
    /// Cap on the spool's bytes on disk (`None`: the disk's own).
    pub spool_max_bytes: Option<u64>,
    /// The sink's durable mark, published for the shards, which keep the checkpoint a
    /// recovery could start from (the newest at or before the lowest sink's mark): the mark
    /// file's value at start, then each mark recorded.
    pub durable: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// What a sink does with rows it can keep nowhere: past its memory bound, with the database
/// and the spool both refusing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Stop taking rows: the rings fill and the feed waits (a replay can wait).
    PushBack,
    /// Drop the oldest held rows and count them lost (a live feed cannot wait).
    Lose,
}

/// What one sink did.
#[derive(Debug, Default, Clone)]
pub struct SinkReport {
    /// Sink name.
    pub name: String,
    /// Rows handed to the sink by the engine.
    pub rows_in: u64,
    /// Rows the database reported as new.
    pub rows_new: u64,
    /// Rows written (new or already there), spool drains included.
    pub rows_written: u64,
    /// Committed batches.
    pub batches: u64,
    /// Mean and p99 commit latency, microseconds.
    pub commit_mean_us: f64,
    /// p99 commit latency, microseconds.
    pub commit_p99_us: u64,
    /// Bytes waiting in the spool at the end.
    pub spool_pending_bytes: u64,
    /// Largest spool backlog seen, bytes.
    pub spool_peak_bytes: u64,
    /// Records drained from the spool into the database.
    pub spool_drained: u64,
    /// Failed connects and writes.
    pub retries: u64,
    /// Time spent unable to write (spooling), seconds.
    pub degraded_s: f64,
    /// Times the server was found restarted empty and the sink wrote its state again.
    pub restores: u64,
    /// The last error, for the summary.
    pub last_error: Option<String>,
    /// What opening the spool found (left over from an earlier run, damage).
    pub spool_open: Option<OpenReport>,
    /// Appends the spool refused (disk full, its limit, no directory).
    pub spool_refusals: u64,
    /// Most rows held in memory at once because the spool refused them.
    pub held_peak_rows: u64,
    /// Rows dropped because neither the database, the spool nor memory could keep them.
    pub rows_lost: u64,
    /// Times intake stopped taking rows to push back on the feed.
    pub pushbacks: u64,
}

/// What the engine learns from, and tells, a running sink (the control core's side).
pub trait Observer {
    /// A batch of `rows` committed; `lag_ns` is commit time minus its oldest row's feed read,
    /// when known (rows that went through the spool are not timed).
    fn committed(&mut self, _rows: usize, _lag_ns: Option<u64>) {}
    /// Whether the sink should stop writing live and keep new rows in the spool for now
    /// (the degrade ladder's top level). Asked before every write.
    fn hold(&mut self) -> bool {
        false
    }
    /// The engine's clock, ns (the one `RowBatch::first_ns` is stamped with).
    fn now_ns(&self) -> u64 {
        0
    }
    /// Bytes waiting in the spool now (called as the writer goes round).
    fn spool_bytes(&mut self, _pending: u64) {}
    /// `rows` more rows were lost (counted for the metrics; the report has the total).
    fn lost(&mut self, _rows: u64) {}
    /// Whether the run is being stopped (a signal): a sink pushing back on the feed then
    /// stops waiting, and counts what it cannot keep as lost instead.
    fn stopping(&mut self) -> bool {
        false
    }
    /// Something an operator must see now, in one line (the spool refusing, rows lost).
    fn warn(&mut self, line: &str) {
        eprintln!("tickcore: {line}");
    }
}

/// Observes nothing, holds nothing.
impl Observer for () {}

/// What the engine hands the adapter.
pub enum Intake {
    /// Rows to write.
    Rows(RowBatch),
    /// Nothing right now.
    Idle,
    /// The feed is over; nothing more will come.
    End,
    /// A checkpoint mark (feed messages applied), after every row that came before it: once
    /// those rows are durable (committed, or in the synced spool) the sink records the mark
    /// ([`durable_mark`]), and a recovery may start at a checkpoint up to it.
    Mark(u64),
}

/// The file in a sink's spool directory that holds its durable mark.
const MARK_FILE: &str = "durable-mark";

/// Forgets `spool_dir`'s durable mark (a new run starts a new history: a mark of an earlier
/// run must not vouch for this one's rows).
pub fn forget_durable_mark(spool_dir: &std::path::Path) -> std::io::Result<bool> {
    match std::fs::remove_file(spool_dir.join(MARK_FILE)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The highest checkpoint mark up to which `spool_dir`'s sink had every row durable (`None`:
/// it never recorded one).
pub fn durable_mark(spool_dir: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(spool_dir.join(MARK_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

struct State {
    queue: VecDeque<(Instant, RowBatch)>,
    queued_rows: usize,
    spool: Spool,
    /// Batches the spool refused, oldest first: behind the spool, ahead of the queue.
    held: VecDeque<RowBatch>,
    held_rows: usize,
    memory_rows: usize,
    overflow: Overflow,
    /// No append is tried before this while batches are held (a refused append costs an
    /// encode; a full disk refuses every one).
    spool_retry_at: Instant,
    ended: bool,
    scratch: Vec<u8>,
    report: SinkReport,
    spool_error: Option<String>,
    /// Lost rows not yet told to the observer.
    lost_untold: u64,
    /// Lines for the observer to show, in order.
    warnings: Vec<String>,
    /// A checkpoint mark to record once the rows before it are durable.
    mark: Option<u64>,
    /// Where the mark goes.
    mark_file: PathBuf,
    /// Where the mark is published once recorded.
    durable: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How long a refusing spool is left alone before the next append is tried.
const SPOOL_RETRY: Duration = Duration::from_millis(100);

impl State {
    /// Keeps `b` on disk if the spool takes it, in memory if not (never ahead of what is
    /// already held).
    fn spool_batch(&mut self, b: RowBatch) {
        if b.is_empty() {
            return;
        }
        self.unhold();
        if self.held.is_empty() && self.append(&b) {
            return;
        }
        self.hold(b);
    }

    fn append(&mut self, b: &RowBatch) -> bool {
        b.encode(&mut self.scratch);
        match self.spool.append(&self.scratch) {
            Ok(()) => {
                let bytes = self.spool.pending_bytes();
                self.report.spool_peak_bytes = self.report.spool_peak_bytes.max(bytes);
                true
            }
            Err(e) => {
                self.report.spool_refusals += 1;
                self.spool_retry_at = Instant::now() + SPOOL_RETRY;
                if self.spool_error.is_none() {
                    let then = match self.overflow {
                        Overflow::PushBack => "then the feed waits",
                        Overflow::Lose => "then the oldest are dropped and counted lost",
                    };
                    self.warnings.push(format!(
                        "sink {}: the spool refuses rows ({e}); holding up to {} rows in \
                         memory, {then}. Free disk space or fix the spool directory.",
                        self.report.name, self.memory_rows
                    ));
                    self.spool_error = Some(format!("spool append failed: {e}"));
                }
                false
            }
        }
    }

    fn hold(&mut self, b: RowBatch) {
        self.held_rows += b.len();
        self.held.push_back(b);
        self.report.held_peak_rows = self.report.held_peak_rows.max(self.held_rows as u64);
        if self.overflow == Overflow::Lose {
            while self.held_rows > self.memory_rows && self.held.len() > 1 {
                let old = self.held.pop_front().expect("more than one held");
                self.held_rows -= old.len();
                self.lose(old.len() as u64);
            }
        }
    }

    /// Moves held batches to the spool, oldest first, while it takes them (at most once per
    /// [`SPOOL_RETRY`] while it refuses). Nothing to do, and no clock read, when none is held.
    fn unhold(&mut self) {
        if self.held.is_empty() || Instant::now() < self.spool_retry_at {
            return;
        }
        while let Some(b) = self.held.pop_front() {
            if !self.append(&b) {
                self.held.push_front(b);
                return;
            }
            self.held_rows -= b.len();
        }
    }

    fn lose(&mut self, rows: u64) {
        if self.report.rows_lost == 0 {
            self.warnings.push(format!(
                "sink {}: LOSING ROWS: the database and the spool refuse them and memory holds \
                 {} rows; lost rows are counted (tickcore_sink_lost_rows_total) and the run \
                 will exit with status 3",
                self.report.name, self.memory_rows
            ));
        }
        self.report.rows_lost += rows;
        self.lost_untold += rows;
    }

    /// Whether intake should stop taking rows (the rings then push back on the feed).
    fn full(&self) -> bool {
        self.overflow == Overflow::PushBack && self.held_rows >= self.memory_rows
    }

    fn spool_queue(&mut self) {
        while let Some((_, b)) = self.queue.pop_front() {
            self.spool_batch(b);
        }
        self.queued_rows = 0;
    }

    /// Records the pending checkpoint mark: every row that came before it goes to the spool
    /// (or is already committed), the spool is synced, and the mark written. Called by the
    /// writer between writes, so no batch is in flight. Rows held in memory (the spool
    /// refusing) are not durable: the mark waits for the next one.
    fn record_mark(&mut self) {
        let Some(m) = self.mark else { return };
        self.spool_queue();
        if !self.held.is_empty() {
            return;
        }
        self.mark = None;
        let tmp = self.mark_file.with_extension("tmp");
        let written = self
            .spool
            .sync()
            .and_then(|()| std::fs::write(&tmp, format!("{m}\n")))
            .and_then(|()| std::fs::rename(&tmp, &self.mark_file));
        match written {
            Ok(()) => self.durable.store(m, std::sync::atomic::Ordering::Release),
            Err(e) => {
                self.report.last_error = Some(format!("cannot record checkpoint mark {m}: {e}"))
            }
        }
    }

    /// Tells the observer what it has not heard yet.
    fn tell(&mut self, observer: &mut impl Observer) {
        for w in self.warnings.drain(..) {
            observer.warn(&w);
        }
        if self.lost_untold > 0 {
            observer.lost(std::mem::take(&mut self.lost_untold));
        }
    }
}

/// Runs a sink until `intake` says the feed ended and everything is written (or, for a dead
/// sink, `finish_within` has passed and the rest sits in the spool).
pub fn run<C: Connect>(
    connect: C,
    s: Settings,
    mut intake: impl FnMut() -> Intake,
    mut observer: impl Observer,
) -> SinkReport {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return SinkReport {
                name: s.name,
                last_error: Some(format!("cannot start the adapter's runtime: {e}")),
                ..Default::default()
            }
        }
    };
    let mut warnings = Vec::new();
    let (mut spool, open) = match Spool::open(&s.spool_dir, s.segment_bytes) {
        Ok((spool, open)) => (spool, Some(open)),
        Err(e) => {
            // Rows can still go to the database, or be held; the spool is tried again as
            // rows need it.
            warnings.push(format!(
                "sink {}: cannot open the spool {} ({e}); writing without it until it can be \
                 created",
                s.name,
                s.spool_dir.display()
            ));
            (Spool::detached(&s.spool_dir, s.segment_bytes), None)
        }
    };
    if let Some(max) = s.spool_max_bytes {
        spool.limit(max);
    }
    let state = RefCell::new(State {
        queue: VecDeque::new(),
        queued_rows: 0,
        spool,
        held: VecDeque::new(),
        held_rows: 0,
        memory_rows: s.memory_rows.max(1),
        overflow: s.overflow,
        spool_retry_at: Instant::now(),
        ended: false,
        scratch: Vec::new(),
        report: SinkReport {
            name: s.name.clone(),
            spool_open: open,
            ..Default::default()
        },
        spool_error: None,
        lost_untold: 0,
        warnings,
        mark: None,
        mark_file: s.spool_dir.join(MARK_FILE),
        durable: std::sync::Arc::clone(&s.durable),
    });
    s.durable.store(
        durable_mark(&s.spool_dir).unwrap_or(0),
        std::sync::atomic::Ordering::Release,
    );
    let mut commits = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 1 << 40, 3)
        .expect("static histogram bounds");
    rt.block_on(async {
        let intake_task = async {
            let mut pushing_back = false;
            loop {
                let mut got = false;
                loop {
                    if state.borrow().full() {
                        // Nothing can keep more rows: leave them in the ring (the feed waits).
                        if !pushing_back {
                            let mut st = state.borrow_mut();
                            st.report.pushbacks += 1;
                            if st.report.pushbacks == 1 {
                                let line = format!(
                                    "sink {}: pushing back on the feed: the database and the \
                                     spool refuse rows and {} are held in memory; the replay \
                                     waits until one of them takes rows again",
                                    st.report.name, st.memory_rows
                                );
                                st.warnings.push(line);
                            }
                        }
                        pushing_back = true;
                        break;
                    }
                    pushing_back = false;
                    match intake() {
                        Intake::Rows(b) => {
                            got = true;
                            let mut st = state.borrow_mut();
                            st.report.rows_in += b.len() as u64;
                            if !st.spool.is_empty()
                                || !st.held.is_empty()
                                || st.queued_rows + b.len() > s.max_queued_rows
                            {
                                // Order matters (latest state wins, stream ids increase): what
                                // is queued is older, so it goes to the spool first.
                                st.spool_queue();
                                st.spool_batch(b);
                            } else {
                                st.queued_rows += b.len();
                                st.queue.push_back((Instant::now(), b));
                            }
                        }
                        Intake::Mark(m) => {
                            got = true;
                            state.borrow_mut().mark = Some(m);
                        }
                        Intake::Idle => break,
                        Intake::End => {
                            state.borrow_mut().ended = true;
                            return;
                        }
                    }
                }
                let pause = if got {
                    Duration::from_micros(50)
                } else {
                    Duration::from_micros(200)
                };
                tokio::time::sleep(pause).await;
            }
        };
        let writer_task = writer(&connect, &s, &state, &mut commits, &mut observer);
        tokio::join!(intake_task, writer_task);
    });
    let mut st = state.into_inner();
    if st.held_rows > 0 {
        // The feed is over and neither the database nor the spool took these in time.
        let rows = st.held_rows as u64;
        st.held.clear();
        st.held_rows = 0;
        st.lose(rows);
    }
    st.tell(&mut observer);
    st.report.restores = connect.restores();
    st.report.spool_pending_bytes = st.spool.pending_bytes();
    let _ = st.spool.sync();
    if !commits.is_empty() {
        st.report.commit_mean_us = commits.mean();
        st.report.commit_p99_us = commits.value_at_quantile(0.99);
    }
    if let Some(e) = st.spool_error {
        st.report.last_error = Some(e);
    }
    if st.report.rows_lost > 0 {
        st.report.last_error = Some(format!(
            "{} rows lost: the database and the spool refused them and memory was full",
            st.report.rows_lost
        ));
    }
    st.report
}

async fn writer<C: Connect>(
    connect: &C,
    s: &Settings,
    state: &RefCell<State>,
    commits: &mut hdrhistogram::Histogram<u64>,
    observer: &mut impl Observer,
) {
    let mut sink: Option<C::Sink> = None;
    let mut backoff = Duration::from_millis(50);
    let mut degraded_since: Option<Instant> = None;
    let mut ended_at: Option<Instant> = None;
    let mut retry_at = Instant::now();
    loop {
        let (ended, queue_empty, spool_empty, held_empty) = {
            let mut st = state.borrow_mut();
            if st.overflow == Overflow::PushBack && observer.stopping() {
                st.overflow = Overflow::Lose;
                let line = format!(
                    "sink {}: the run is stopping: it no longer waits for the database or the \
                     spool; rows past {} in memory are counted lost",
                    st.report.name, st.memory_rows
                );
                st.warnings.push(line);
            }
            st.unhold();
            st.record_mark();
            st.tell(observer);
            observer.spool_bytes(st.spool.pending_bytes());
            (
                st.ended,
                st.queue.is_empty(),
                st.spool.is_empty(),
                st.held.is_empty(),
            )
        };
        if ended {
            ended_at.get_or_insert_with(Instant::now);
            if queue_empty && spool_empty && held_empty {
                break;
            }
        }
        let given_up = ended_at.is_some_and(|t| t.elapsed() > s.finish_within);
        if s.spool_only || (observer.hold() && !ended) {
            state.borrow_mut().spool_queue();
            if ended && (held_empty || given_up) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        if sink.is_none() {
            if given_up {
                state.borrow_mut().spool_queue();
                break;
            }
            if Instant::now() < retry_at {
                state.borrow_mut().spool_queue();
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            match tokio::time::timeout(s.write_timeout, connect.connect()).await {
                Ok(Ok(x)) => {
                    sink = Some(x);
                    backoff = Duration::from_millis(50);
                }
                Ok(Err(e)) => fail(state, &mut retry_at, &mut backoff, &mut degraded_since, e),
                Err(_) => fail(
                    state,
                    &mut retry_at,
                    &mut backoff,
                    &mut degraded_since,
                    "connect timed out".into(),
                ),
            }
            continue;
        }
        // Spool first, in order; then what the spool refused; then the queue.
        let from_spool = !spool_empty;
        let from_held = !from_spool && !held_empty;
        let mut records = 0usize;
        let batch = if from_spool {
            // Several records per write: they were spooled one event batch at a time.
            let st = state.borrow();
            let mut merged = RowBatch::default();
            let mut bad = false;
            for rec in st.spool.oldest(4096) {
                match RowBatch::decode(rec) {
                    Some(mut b) => merged.append(&mut b),
                    None if records == 0 => {
                        bad = true;
                        records = 1;
                        break;
                    }
                    None => break,
                }
                records += 1;
                if merged.len() >= s.batch_rows {
                    break;
                }
            }
            drop(st);
            if bad {
                let mut st = state.borrow_mut();
                st.report.last_error = Some("a spool record is not a row batch; skipped".into());
                let _ = st.spool.pop();
                continue;
            }
            if records == 0 {
                continue;
            }
            merged
        } else if from_held {
            take_held(state, s)
        } else {
            match take_due(state, s, ended) {
                Some(b) => b,
                None => {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                    continue;
                }
            }
        };
        let t0 = Instant::now();
        let Some(snk) = sink.as_mut() else { continue };
        let res = tokio::time::timeout(s.write_timeout, snk.write(&batch)).await;
        match res {
            Ok(Ok(new)) => {
                commits.saturating_record(t0.elapsed().as_micros().max(1) as u64);
                let lag = (batch.first_ns > 0 && !from_spool)
                    .then(|| observer.now_ns().saturating_sub(batch.first_ns));
                observer.committed(batch.len(), lag);
                let mut st = state.borrow_mut();
                st.report.rows_new += new;
                st.report.rows_written += batch.len() as u64;
                st.report.batches += 1;
                if from_spool {
                    for _ in 0..records {
                        let _ = st.spool.pop();
                    }
                    st.report.spool_drained += records as u64;
                }
                if let Some(t) = degraded_since.take() {
                    st.report.degraded_s += t.elapsed().as_secs_f64();
                }
            }
            outcome => {
                let e = match outcome {
                    Ok(Err(e)) => e,
                    _ => format!("write timed out after {:?}", s.write_timeout),
                };
                sink = None;
                if from_held {
                    // It was refused by the spool once; it goes back where it was, first.
                    let mut st = state.borrow_mut();
                    st.held_rows += batch.len();
                    st.held.push_front(batch);
                } else if !from_spool {
                    state.borrow_mut().spool_batch(batch);
                }
                fail(state, &mut retry_at, &mut backoff, &mut degraded_since, e);
            }
        }
    }
    if let Some(t) = degraded_since {
        state.borrow_mut().report.degraded_s += t.elapsed().as_secs_f64();
    }
}

fn fail(
    state: &RefCell<State>,
    retry_at: &mut Instant,
    backoff: &mut Duration,
    degraded_since: &mut Option<Instant>,
    e: String,
) {
    let mut st = state.borrow_mut();
    st.report.retries += 1;
    st.report.last_error = Some(e);
    st.spool_queue();
    degraded_since.get_or_insert_with(Instant::now);
    *retry_at = Instant::now() + *backoff;
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
}

/// Batches from `next`, oldest first, merged into one of up to `rows` rows (the last batch
/// taken may carry it past).
fn merged(rows: usize, mut next: impl FnMut() -> Option<RowBatch>) -> RowBatch {
    let mut out = RowBatch::default();
    while out.len() < rows {
        let Some(mut b) = next() else { break };
        out.append(&mut b);
    }
    out
}

/// Held batches for one write, oldest first, up to `batch_rows` rows.
fn take_held(state: &RefCell<State>, s: &Settings) -> RowBatch {
    let mut st = state.borrow_mut();
    merged(s.batch_rows, || {
        let b = st.held.pop_front()?;
        st.held_rows -= b.len();
        Some(b)
    })
}

/// The queued rows due for a write: `batch_rows` of them, or all once the oldest has lingered
/// (or the feed has ended).
fn take_due(state: &RefCell<State>, s: &Settings, ended: bool) -> Option<RowBatch> {
    let mut st = state.borrow_mut();
    let oldest = st.queue.front()?.0;
    if st.queued_rows < s.batch_rows && oldest.elapsed() < s.linger && !ended {
        return None;
    }
    Some(merged(s.batch_rows, || {
        let (_, b) = st.queue.pop_front()?;
        st.queued_rows -= b.len();
        Some(b)
    }))
}

/// Any of the sinks this crate has, for an engine that picks them at run time.
#[derive(Debug, Clone)]
pub enum AnyConnect {
    /// PostgreSQL.
    Pg(crate::pg::PgConnect),
    /// Redis.
    Redis(crate::redis::RedisConnect),
    /// Neo4j over Bolt.
    Neo4j(crate::neo4j::Neo4jConnect),
}

/// A connected sink of either kind.
pub enum AnySink {
    /// PostgreSQL.
    Pg(crate::pg::PgSink),
    /// Redis.
    Redis(crate::redis::RedisSink),
    /// Neo4j over Bolt.
    Neo4j(crate::neo4j::Neo4jSink),
}

impl Connect for AnyConnect {
    type Sink = AnySink;
    async fn connect(&self) -> Result<AnySink, String> {
        match self {
            AnyConnect::Pg(c) => c.connect().await.map(AnySink::Pg),
            AnyConnect::Redis(c) => c.connect().await.map(AnySink::Redis),
            AnyConnect::Neo4j(c) => c.connect().await.map(AnySink::Neo4j),
        }
    }
    fn restores(&self) -> u64 {
        match self {
            AnyConnect::Redis(c) => c.restores(),
            _ => 0,
        }
    }
}

impl Sink for AnySink {
    async fn write(&mut self, rows: &RowBatch) -> Result<u64, String> {
        match self {
            AnySink::Pg(s) => s.write(rows).await,
            AnySink::Redis(s) => s.write(rows).await,
            AnySink::Neo4j(s) => s.write(rows).await,
        }
    }
}

/// Which rows a sink takes.
#[derive(Debug, Clone, Copy)]
pub struct Wants {
    /// Trades.
    pub trades: bool,
    /// Closed bars.
    pub bars: bool,
    /// Instrument states.
    pub states: bool,
}
