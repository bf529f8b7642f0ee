//! `run --recover`: the newest whole checkpoint set, and one line for the operator on what was
//! found, passed over, or missing.
//!
//! Owns the choice of where a restarted run begins. Never writes a checkpoint.

use super::store;
use crate::error::{Failure, Result};
use shards::checkpoint::ShardState;

/// A run that does not recover starts a new history: the checkpoints of an earlier run (a
/// later `--recover` would otherwise take them for this run's) and the sinks' durable marks
/// go. Says what it removed, in one line.
pub fn start_fresh(
    dir: &std::path::Path,
    sink_spools: &[std::path::PathBuf],
    say: &mut dyn FnMut(&str),
) -> Result<()> {
    let files = store::files(dir)
        .map_err(|e| Failure::at(dir, format!("cannot read the checkpoint directory: {e}")))?;
    for f in &files {
        std::fs::remove_file(f)
            .map_err(|e| Failure::at(f, format!("cannot remove an old checkpoint: {e}")))?;
    }
    let mut marks = 0;
    for s in sink_spools {
        marks += storage_adapters::adapter::forget_durable_mark(s)
            .map_err(|e| Failure::at(s, format!("cannot remove the sink's durable mark: {e}")))?
            as usize;
    }
    if !files.is_empty() || marks > 0 {
        say(&format!(
            "removed {} checkpoint file(s) and {marks} sink mark(s) of an earlier run from {} \
             (a run without --recover starts a new history)",
            files.len(),
            dir.display()
        ));
    }
    Ok(())
}

/// Where a recovering run starts: messages already applied and each shard's state, or `None`
/// (no whole checkpoint: the feed is applied from its start). `sinks_durable` is the sink
/// with the lowest durable mark, and that mark: no checkpoint past it is used (the rows after
/// it may be gone with the killed process). Every line said goes to `say`.
pub fn load(
    dir: &std::path::Path,
    shards: usize,
    sinks_durable: Option<(String, u64)>,
    say: &mut dyn FnMut(&str),
) -> Result<Option<(u64, Vec<ShardState>)>> {
    let bound = sinks_durable.as_ref().map_or(u64::MAX, |s| s.1);
    if let Some((sink, m)) = &sinks_durable {
        say(&format!(
            "recover: sink {sink} has every row durable up to message {m}: no checkpoint after \
             it is used"
        ));
    }
    let t = std::time::Instant::now();
    let found = store::newest(dir, shards, bound)
        .map_err(|e| Failure::at(dir, format!("cannot read the checkpoint directory: {e}")))?;
    for why in &found.skipped {
        say(&format!("recover: passed over the {why}"));
    }
    match &found.set {
        Some((applied, states)) => {
            let orders: usize = states.iter().map(|s| s.books.orders.len()).sum();
            say(&format!(
                "recover: starting after message {applied} from the checkpoint in {} ({} \
                 shard(s), {orders} live orders, read and checked in {:.2} s); the feed's \
                 first {applied} messages are skipped",
                dir.display(),
                states.len(),
                t.elapsed().as_secs_f64()
            ));
        }
        None => say(&format!(
            "recover: no whole checkpoint for {shards} shard(s) in {}: applying the feed from \
             its start",
            dir.display()
        )),
    }
    Ok(found.set)
}
