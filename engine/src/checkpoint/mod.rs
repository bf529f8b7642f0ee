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

/// Checkpoint stalls (slices) over every shard: count, p50, p99, max (ns), and how many
/// passed `budget_ns`.
pub fn stalls(shards: &[ShardReport], budget_ns: u64) -> (usize, u64, u64, u64, usize) {
    quantiles(shards, budget_ns, |s| &s.checkpoint_stalls_ns)
}

/// Count, p50, p99, max and count over `budget_ns` of the samples `of` each shard.
fn quantiles(
    shards: &[ShardReport],
    budget_ns: u64,
    of: impl Fn(&ShardReport) -> &Vec<u64>,
) -> (usize, u64, u64, u64, usize) {
    let mut all: Vec<u64> = shards.iter().flat_map(|s| of(s).iter().copied()).collect();
    all.sort_unstable();
    let at = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let over = all.iter().filter(|&&s| s > budget_ns).count();
    (
        all.len(),
        at(0.5),
        at(0.99),
        all.last().copied().unwrap_or(0),
        over,
    )
}

/// The checkpoints of a run for `--json` and bench results: marks taken, the stall of each
/// slice a shard gave them (p50/p99/max against `budget_ns`), each checkpoint's work over its
/// slices, chunks a write copied first, files written and failed, and the errors.
pub fn summary_json(shards: &[ShardReport], marks: u64, budget_ns: u64) -> serde_json::Value {
    let (n, p50, p99, max, over) = stalls(shards, budget_ns);
    let (_, _, cpu_p99, cpu_max, cpu_over) =
        quantiles(shards, budget_ns, |s| &s.checkpoint_stalls_cpu_ns);
    let (_, work_p50, _, work_max, _) = quantiles(shards, 0, |s| &s.checkpoint_work_ns);
    serde_json::json!({
        "taken": marks, "shard_stalls": n, "stall_p50_ns": p50, "stall_p99_ns": p99,
        "stall_max_ns": max, "over_budget": over, "budget_ns": budget_ns,
        "stall_cpu_p99_ns": cpu_p99, "stall_cpu_max_ns": cpu_max, "over_budget_on_cpu": cpu_over,
        "work_p50_ns": work_p50, "work_max_ns": work_max,
        "forced_chunks": shards.iter().map(|s| s.checkpoint_forced_chunks).sum::<u64>(),
        "written": shards.iter().map(|s| s.checkpoints_written).sum::<u64>(),
        "failed": shards.iter().map(|s| s.checkpoints_failed).sum::<u64>(),
        "errors": shards.iter().filter_map(|s| s.checkpoint_error.clone()).collect::<Vec<_>>(),
    })
}

fn ms(ns: u64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// The summary's checkpoint lines (empty when none were taken, none failed and none restored).
pub fn summary_lines(shards: &[ShardReport], marks: u64, budget_ns: u64) -> String {
    let (n, p50, p99, max, over) = stalls(shards, budget_ns);
    let (_, _, cpu_p99, cpu_max, cpu_over) =
        quantiles(shards, budget_ns, |s| &s.checkpoint_stalls_cpu_ns);
    let (_, work_p50, _, work_max, _) = quantiles(shards, 0, |s| &s.checkpoint_work_ns);
    let forced: u64 = shards.iter().map(|s| s.checkpoint_forced_chunks).sum();
    let written: u64 = shards.iter().map(|s| s.checkpoints_written).sum();
    let failed: u64 = shards.iter().map(|s| s.checkpoints_failed).sum();
    let mut s = String::new();
    if n > 0 || failed > 0 {
        s += &format!(
            "  checkpoints: {marks} taken, {written} shard files written, {failed} failed; stall \
             per slice p50 {} / p99 {} / max {}, {over} of {n} slices over the {} budget; on \
             the thread's CPU p99 {} / max {}, {cpu_over} over (the rest of a slice it waited \
             for a CPU); work per checkpoint p50 {} / max {}; {forced} chunks copied ahead of a \
             write\n",
            ms(p50),
            ms(p99),
            ms(max),
            ms(budget_ns),
            ms(cpu_p99),
            ms(cpu_max),
            ms(work_p50),
            ms(work_max),
        );
    }
    for sh in shards {
        if let Some(e) = &sh.checkpoint_error {
            s += &format!("  shard{}: {e}\n", sh.id);
        }
    }
    s
}
