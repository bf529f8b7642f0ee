//! Starts the threads a [`Plan`] names, each with its bundle from the [`Topology`], and one
//! loop shape per thread: a shard's glommio executor, a sink's adapter loop, the consumer's
//! drain, control's tick-and-rest, the admin endpoint's reactor, the watcher's sleep. The
//! ingress is not here: it runs on the caller's scoped thread (it borrows the source).
//!
//! Owns thread start-up and pinning. Never decides placement (the plan does) or wiring (the
//! topology does).

use super::plan::{Plan, Role};
use super::shard::{self, ShardCtx, ShardReport};
use super::topology::SinkBundle;
use super::{consumer, pin, set_nice};
use crate::config::Config;
use crate::control::ControlCore;
use crate::error::{Failure, Result};
use shards::book::Books;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A shard's executor.
pub type ShardHandle = glommio::ExecutorJoinHandle<(Books, ShardReport)>;

/// Starts each shard's executor on its CPU.
pub fn shards(ctxs: Vec<ShardCtx>, plan: &Plan, cfg: &Config) -> Result<Vec<ShardHandle>> {
    ctxs.into_iter()
        .map(|ctx| {
            let i = ctx.id;
            let cpu = plan.thread_of(&Role::Shard(i)).cpu;
            glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
                .name(&format!("shard{i}"))
                .io_memory(cfg.io_memory_kib.value << 10)
                .spawn(move || shard::run(ctx))
                .map_err(|e| start_failure(i, cpu, cfg, &e))
        })
        .collect()
}

/// Starts each storage adapter on its CPU at its nice value.
pub fn sinks(
    bundles: Vec<SinkBundle>,
    plan: &Plan,
) -> Result<Vec<JoinHandle<storage_adapters::adapter::SinkReport>>> {
    bundles
        .into_iter()
        .map(|b| {
            let t = plan.thread_of(&Role::Sink(b.sink.settings.name.clone()));
            let (cpu, nice) = (t.cpu, t.nice);
            let SinkBundle {
                sink,
                mut rows,
                mut marks,
                done,
                observer,
            } = b;
            std::thread::Builder::new()
                .name(t.name.clone())
                .spawn(move || {
                    pin(cpu);
                    set_nice(nice);
                    use storage_adapters::adapter::Intake;
                    // A mark goes to the adapter once the rows ring is empty: every row pushed
                    // before the mark (the consumer pushed it after them) has then been taken.
                    let mut mark = None;
                    let intake = move || {
                        if mark.is_none() {
                            mark = marks.try_pop();
                        }
                        if let Some(b) = rows.try_pop() {
                            return Intake::Rows(b);
                        }
                        if let Some(m) = mark.take() {
                            return Intake::Mark(m);
                        }
                        if done.load(Ordering::Acquire) {
                            // The consumer set `done` after its last push: one more look is final.
                            return rows.try_pop().map_or(Intake::End, Intake::Rows);
                        }
                        Intake::Idle
                    };
                    storage_adapters::adapter::run(sink.connect, sink.settings, intake, observer)
                })
                .map_err(|e| Failure::new(format!("cannot start a storage adapter thread: {e}")))
        })
        .collect()
}

/// Starts the consumer on a thread of its own, if the plan gives it one; otherwise hands it
/// back for the ingress thread to poll.
pub fn consumer(
    c: consumer::Consumer,
    plan: &Plan,
) -> Result<std::result::Result<JoinHandle<consumer::ConsumerReport>, consumer::Consumer>> {
    if plan.on_ingress_thread(&Role::Consumer) {
        return Ok(Err(c));
    }
    let cpu = plan.thread_of(&Role::Consumer).cpu;
    std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            pin(cpu);
            c.drain()
        })
        .map(Ok)
        .map_err(|e| Failure::new(format!("cannot start the consumer thread: {e}")))
}

/// Starts control on a thread of its own, if the plan gives it one (it runs until `stop`);
/// otherwise hands it back for the ingress thread to turn.
pub fn control(
    core: ControlCore,
    plan: &Plan,
    stop: &Arc<AtomicBool>,
) -> Result<std::result::Result<JoinHandle<ControlCore>, ControlCore>> {
    if plan.on_ingress_thread(&Role::Control) {
        return Ok(Err(core));
    }
    let cpu = plan.thread_of(&Role::Control).cpu;
    let stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            pin(cpu);
            core.run(&stop)
        })
        .map(Ok)
        .map_err(|e| Failure::new(format!("cannot start the control thread: {e}")))
}

fn start_failure(i: usize, cpu: usize, cfg: &Config, e: &glommio::GlommioError<()>) -> Failure {
    Failure::new(format!(
        "cannot start shard {i} on CPU {cpu}: {e}. Shards run on glommio, which needs io_uring \
         (check that `sysctl kernel.io_uring_disabled` is 0 and that the container's seccomp \
         profile allows io_uring_setup) and locked memory (raise `ulimit -l`, or lower \
         io_memory_kib, now {} KiB per shard)",
        cfg.io_memory_kib.value
    ))
}
