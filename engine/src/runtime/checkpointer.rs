//! A shard's checkpoint taking, in slices: begun at a mark between batches, stepped between
//! later batches, then written by a task of the shard's own executor through io_uring.
//!
//! At the mark the shard copies its small state (books' tops, statistics, counters; open bars)
//! and starts the sweeps of its order table and trade memory (`shards::book::sweep`); each
//! [`Checkpointer::step`] then copies chunks, or archives one part of the file, until a slice of
//! a quarter of `checkpoint_stall_us` (at most 100 us) has passed; the shard steps when it has
//! nothing to apply, or after four slices' time when it never runs dry. A slice
//! is the longest the checkpoint holds the shard at once: that is the stall reported, on the
//! wall clock and on the thread's CPU clock (a slice whose wall time passes the budget while
//! its CPU time does not waited for a CPU: the machine's time, not the checkpoint's). Before,
//! the whole capture and encode ran in one go: 7-23 ms on a v3k day (93k live orders, a table
//! of 80 MiB to scan, a 5 MiB archive), against a 1 ms budget.
//!
//! Never blocks the shard on the disk: a file waits in a bounded queue for the writing task,
//! and one that finds the queue full is dropped and counted.

use super::clock;
use super::shard::ShardReport;
use shards::book::checkpoint::{BookState, Captured};
use shards::book::Books;
use shards::checkpoint::{Encoder, ShardState};

/// Checkpoints that may wait for the disk at once; past this one is dropped and counted
/// (the shard never waits for its disk).
const CHECKPOINTS_QUEUED: usize = 2;

/// Chunks of each array copied between two looks at the clock (one chunk reads 64 KiB in
/// 6-15 us); parts are archived one a look (50-150 us each).
const CHUNKS_PER_LOOK: usize = 2;

/// What the writing task did: files written and failed, the last error, and the wall and CPU
/// time of each chunk it copied into a DMA buffer (slices of the shard's thread too).
#[derive(Default)]
struct Written {
    written: u64,
    failed: u64,
    error: Option<String>,
    slices: Vec<(u64, u64)>,
}

/// What the checkpoint being taken waits for.
enum Stage {
    /// The sweeps of the orders and trades.
    Copying,
    /// Parts still to archive, from `next`.
    Encoding {
        captured: Captured,
        books: Vec<BookState>,
        encoder: Encoder,
        next: usize,
    },
}

/// The checkpoint being taken.
struct Taking {
    applied: u64,
    head: ShardState,
    stage: Stage,
    /// Time spent on it so far.
    work_ns: u64,
}

/// A shard's checkpoints: the one being taken, and the task writing them.
pub struct Checkpointer {
    queue: glommio::channels::local_channel::LocalSender<(u64, Vec<u8>)>,
    task: glommio::task::JoinHandle<Written>,
    finished: std::sync::Arc<std::sync::atomic::AtomicU64>,
    last: u64,
    taking: Option<Taking>,
    slice_ns: u64,
    /// When the last slice ended.
    stepped_at: u64,
}

impl Checkpointer {
    /// Starts the writing task on this executor; each step of a checkpoint holds the shard for
    /// about `slice_ns`.
    pub fn start(mut w: crate::checkpoint::store::Writer, slice_ns: u64) -> Checkpointer {
        let finished = w.finished_handle();
        let (queue, rx) =
            glommio::channels::local_channel::new_bounded::<(u64, Vec<u8>)>(CHECKPOINTS_QUEUED);
        let task = glommio::spawn_local(async move {
            let mut done = Written::default();
            while let Some((applied, bytes)) = rx.recv().await {
                match w.write(applied, &bytes).await {
                    Ok(()) => done.written += 1,
                    Err(e) => {
                        done.failed += 1;
                        done.error = Some(format!("writing the checkpoint after {applied}: {e}"));
                    }
                }
                w.finished(applied);
            }
            done.slices = w.take_slices();
            done
        })
        .detach();
        Checkpointer {
            queue,
            task,
            finished,
            last: 0,
            taking: None,
            slice_ns: slice_ns.max(1),
            stepped_at: 0,
        }
    }

    /// A checkpoint is begun and not yet written: the shard's loop must step it, and let the
    /// writing task and the reactor run (a spinning shard never yields on its own).
    pub fn busy(&self) -> bool {
        self.taking.is_some()
            || self.finished.load(std::sync::atomic::Ordering::Acquire) < self.last
    }

    /// True while a checkpoint is being copied or archived (the shard must call [`step`](Self::step)).
    pub fn taking(&self) -> bool {
        self.taking.is_some()
    }

    /// Whether to take a slice now: when the shard has nothing to apply (`idle`), or when
    /// four slices' time passed since the last one (a saturated shard gives the checkpoint a
    /// fifth of its time). Stepping after every batch instead starved the feed: on v3k at
    /// 5M msg/s, e2e p99 went from 37 ms to 120 ms.
    pub fn due(&self, idle: bool) -> bool {
        self.taking.is_some()
            && (idle || clock::now_ns().saturating_sub(self.stepped_at) > 4 * self.slice_ns)
    }

    /// Begins the checkpoint of mark `applied`: `head` gives the shard's state without its
    /// books (timed with the rest of this first slice), which are copied from here on. A mark
    /// that comes while one is still being taken is counted as failed (the ingress sends the
    /// next only when every shard finished the last).
    pub fn begin(
        &mut self,
        applied: u64,
        head: impl FnOnce() -> ShardState,
        books: &mut Books,
        rep: &mut ShardReport,
    ) {
        if self.taking.is_some() {
            rep.checkpoints_failed += 1;
            rep.checkpoint_error = Some(format!(
                "the checkpoint after {applied} was dropped: the last was still being taken"
            ));
            return;
        }
        let (t0, c0) = (clock::now_ns(), clock::thread_cpu_ns());
        let mut head = head();
        debug_assert_eq!(head.applied, applied, "the head is of this mark");
        head.books = books.begin_capture();
        self.last = applied;
        self.stepped_at = clock::now_ns();
        let took = self.stepped_at.saturating_sub(t0);
        rep.checkpoint_stalls_ns.push(took);
        rep.checkpoint_stalls_cpu_ns
            .push(clock::thread_cpu_ns().saturating_sub(c0));
        self.taking = Some(Taking {
            applied,
            head,
            stage: Stage::Copying,
            work_ns: took,
        });
    }

    /// One slice of the checkpoint being taken; hands the file to the writer when it is whole.
    pub fn step(&mut self, books: &mut Books, rep: &mut ShardReport) {
        let Some(t) = &mut self.taking else { return };
        let (t0, c0) = (clock::now_ns(), clock::thread_cpu_ns());
        let mut whole = false;
        while !whole && clock::now_ns().saturating_sub(t0) < self.slice_ns {
            whole = match &mut t.stage {
                Stage::Copying => {
                    if books.capture_step(CHUNKS_PER_LOOK) {
                        t.stage = encoding(books, &mut t.head);
                    }
                    false
                }
                Stage::Encoding {
                    captured,
                    books,
                    encoder,
                    next,
                } => {
                    if *next < captured.parts(books) {
                        encoder.part(&captured.part(*next, books));
                        *next += 1;
                    }
                    *next >= captured.parts(books)
                }
            };
        }
        self.stepped_at = clock::now_ns();
        let took = self.stepped_at.saturating_sub(t0);
        rep.checkpoint_stalls_ns.push(took);
        rep.checkpoint_stalls_cpu_ns
            .push(clock::thread_cpu_ns().saturating_sub(c0));
        t.work_ns += took;
        if whole {
            let t = self.taking.take().expect("taking");
            rep.checkpoint_work_ns.push(t.work_ns);
            self.send(t, rep);
        }
    }

    /// Takes the checkpoint being taken to its end at once (the feed ended).
    pub fn complete(&mut self, books: &mut Books, rep: &mut ShardReport) {
        while self.taking.is_some() {
            self.step(books, rep);
        }
    }

    fn send(&mut self, t: Taking, rep: &mut ShardReport) {
        let Stage::Encoding {
            encoder, captured, ..
        } = t.stage
        else {
            unreachable!("sent only once archived")
        };
        rep.checkpoint_forced_chunks += captured.forced();
        let applied = t.applied;
        if self.queue.try_send((applied, encoder.finish())).is_err() {
            rep.checkpoints_failed += 1;
            rep.checkpoint_error = Some(format!(
                "the checkpoint after {applied} was dropped: {CHECKPOINTS_QUEUED} were still \
                 waiting for the disk"
            ));
        }
    }

    /// Waits for the writing task to write what it was given.
    pub async fn finish(self, rep: &mut ShardReport) {
        drop(self.queue);
        if let Some(done) = self.task.await {
            rep.checkpoints_written += done.written;
            rep.checkpoints_failed += done.failed;
            if done.error.is_some() {
                rep.checkpoint_error = done.error;
            }
            for (wall, cpu) in done.slices {
                rep.checkpoint_stalls_ns.push(wall);
                rep.checkpoint_stalls_cpu_ns.push(cpu);
            }
        }
    }
}

/// The copy is complete: the encoder, with part 0 (the head without its books) archived.
fn encoding(books: &mut Books, head: &mut ShardState) -> Stage {
    let captured = books
        .finish_capture()
        .expect("the capture said it was complete");
    let state = std::mem::take(&mut head.books.books);
    // About 32 bytes an order or trade once archived, and the head.
    let reserve = 64 * 1024 + 32 * (captured.orders() + captured.trades());
    Stage::Encoding {
        encoder: Encoder::new(head, reserve + 256 * state.len()),
        captured,
        books: state,
        next: 0,
    }
}
