//! Checkpoints: when the engine takes them, where they are kept, and how a restart finds the
//! newest one that is whole.
//!
//! - [`marks`]: the ingress's side. Every `checkpoint_every_s` of feed time, or when
//!   `PUT /checkpoint` asks, it sends every shard the same mark (the number of feed messages
//!   applied so far) at the same point of the feed; a recovery's first messages are skipped
//!   here.
//! - [`store`]: the files, `build_data/checkpoints/ckpt-<applied>-shard<i>of<n>.tkc`, written
//!   by each shard through its own io_uring reactor (glommio's DMA files; a temporary name,
//!   then a rename, so a file under its final name is whole or damaged, never half new), and
//!   read back memory-mapped. A set is usable when every shard's file of it decodes.
//!
//! The format itself is `shards::checkpoint`. Owns policy and files; never touches a book.

pub mod marks;
pub mod store;

pub mod recovery;

use crate::runtime::shard::ShardReport;

/// Count, p50, p99, max and count over `budget_ns` of the samples `of` each shard.
fn quantiles(
    shards: &[ShardReport],
    budget_ns: u64,
    of: impl Fn(&ShardReport) -> &Vec<u64>,
) -> Quantiles {
    let mut all: Vec<u64> = shards.iter().flat_map(|s| of(s).iter().copied()).collect();
    all.sort_unstable();
    let at = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Quantiles {
        n: all.len(),
        p50: at(0.5),
        p99: at(0.99),
        max: all.last().copied().unwrap_or(0),
        over: all.iter().filter(|&&s| s > budget_ns).count(),
    }
}

/// Samples, their p50, p99 and max (ns), and how many passed the budget.
struct Quantiles {
    n: usize,
    p50: u64,
    p99: u64,
    max: u64,
    over: usize,
}

/// A run's checkpoint figures over every shard, for the summary line and the JSON alike.
struct Figures {
    /// Each slice's stall on the wall clock, and on the thread's CPU clock.
    wall: Quantiles,
    cpu: Quantiles,
    /// Each checkpoint's work over its slices.
    work: Quantiles,
    forced: u64,
    written: u64,
    failed: u64,
}

fn figures(shards: &[ShardReport], budget_ns: u64) -> Figures {
    Figures {
        wall: quantiles(shards, budget_ns, |s| &s.checkpoint_stalls_ns),
        cpu: quantiles(shards, budget_ns, |s| &s.checkpoint_stalls_cpu_ns),
        work: quantiles(shards, 0, |s| &s.checkpoint_work_ns),
        forced: shards.iter().map(|s| s.checkpoint_forced_chunks).sum(),
        written: shards.iter().map(|s| s.checkpoints_written).sum(),
        failed: shards.iter().map(|s| s.checkpoints_failed).sum(),
    }
}

/// The checkpoints of a run for `--json` and bench results: marks taken, the stall of each
/// slice a shard gave them (p50/p99/max against `budget_ns`, on the wall and CPU clocks), each
/// checkpoint's work over its slices, chunks a write copied first, files written and failed,
/// and the errors.
pub fn summary_json(shards: &[ShardReport], marks: u64, budget_ns: u64) -> serde_json::Value {
    let f = figures(shards, budget_ns);
    serde_json::json!({
        "taken": marks, "shard_stalls": f.wall.n, "stall_p50_ns": f.wall.p50,
        "stall_p99_ns": f.wall.p99, "stall_max_ns": f.wall.max, "over_budget": f.wall.over,
        "budget_ns": budget_ns, "stall_cpu_p99_ns": f.cpu.p99, "stall_cpu_max_ns": f.cpu.max,
        "over_budget_on_cpu": f.cpu.over, "work_p50_ns": f.work.p50, "work_max_ns": f.work.max,
        "forced_chunks": f.forced, "written": f.written, "failed": f.failed,
        "errors": shards.iter().filter_map(|s| s.checkpoint_error.clone()).collect::<Vec<_>>(),
    })
}

/// The summary's checkpoint lines (empty when none were taken, none failed and none restored).
pub fn summary_lines(shards: &[ShardReport], marks: u64, budget_ns: u64) -> String {
    use crate::telemetry::budget::pretty;
    let f = figures(shards, budget_ns);
    let (wall, cpu) = (&f.wall, &f.cpu);
    let mut s = String::new();
    if wall.n > 0 || f.failed > 0 {
        s += &format!(
            "  checkpoints: {marks} taken, {} shard files written, {} failed; stall per slice \
             p50 {} / p99 {} / max {}, {} of {} slices over the {} budget; on the thread's CPU \
             p99 {} / max {}, {} over (the rest of a slice it waited for a CPU); work per \
             checkpoint p50 {} / max {}; {} chunks copied ahead of a write\n",
            f.written,
            f.failed,
            pretty(wall.p50),
            pretty(wall.p99),
            pretty(wall.max),
            wall.over,
            wall.n,
            pretty(budget_ns),
            pretty(cpu.p99),
            pretty(cpu.max),
            cpu.over,
            pretty(f.work.p50),
            pretty(f.work.max),
            f.forced,
        );
    }
    for sh in shards {
        if let Some(e) = &sh.checkpoint_error {
            s += &format!("  shard{}: {e}\n", sh.id);
        }
    }
    s
}
