//! `run --recover`: the newest whole checkpoint set, and one line for the operator on what was
//! found, passed over, or missing.
//!
//! Owns the choice of where a restarted run begins. Never writes a checkpoint.

use super::store;
use crate::error::{Failure, Result};
use shards::checkpoint::ShardState;

/// Where a recovering run starts: messages already applied and each shard's state, or `None`
/// (no whole checkpoint: the feed is applied from its start). Every line said goes to `say`.
pub fn load(
    dir: &std::path::Path,
    shards: usize,
    say: &mut dyn FnMut(&str),
) -> Result<Option<(u64, Vec<ShardState>)>> {
    let found = store::newest(dir, shards)
        .map_err(|e| Failure::at(dir, format!("cannot read the checkpoint directory: {e}")))?;
    for why in &found.skipped {
        say(&format!("recover: passed over the {why}"));
    }
    match &found.set {
        Some((applied, states)) => {
            let orders: usize = states.iter().map(|s| s.books.orders.len()).sum();
            say(&format!(
                "recover: starting after message {applied} from the checkpoint in {} ({} \
                 shard(s), {orders} live orders); the feed's first {applied} messages are \
                 skipped",
                dir.display(),
                states.len()
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
