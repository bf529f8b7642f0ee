//! `tickcore drain`: loads what the sinks spooled into their databases, then reports.

use crate::cli::DrainArgs;
use crate::cmd::run::{neo4j_plan, pg_plan, redis_plan, sink_lines};
use crate::config::{machine_cpus, Config, Overrides};
use crate::error::{Failure, Result};
use storage_adapters::adapter::{self, Intake};

/// Runs the command: every sink whose URL is given drains its spool.
pub fn run(a: &DrainArgs) -> Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = Config::load(
        a.config.as_deref(),
        env,
        &Overrides::default(),
        machine_cpus(),
    )?;
    let mut plans = Vec::new();
    if a.sink.pg.is_some() {
        plans.push(pg_plan(&a.sink, &cfg));
    }
    if a.sink.redis.is_some() {
        plans.push(redis_plan(&a.sink, &cfg));
    }
    if a.sink.neo4j.is_some() {
        plans.push(neo4j_plan(&a.sink, &cfg));
    }
    if plans.is_empty() {
        return Err(Failure::new(
            "nothing to drain into: give --pg, --redis and/or --neo4j URLs (or TICKCORE_PG, TICKCORE_REDIS, TICKCORE_NEO4J)",
        ));
    }
    let mut left = Vec::new();
    for plan in plans {
        let dir = plan.settings.spool_dir.clone();
        let report = adapter::run(plan.connect, plan.settings, || Intake::End, ());
        print!("{}", sink_lines(std::slice::from_ref(&report)));
        if report.spool_pending_bytes > 0 {
            left.push(format!(
                "{}: {} bytes are still spooled (the database did not take them: {})",
                dir.display(),
                report.spool_pending_bytes,
                report.last_error.as_deref().unwrap_or("no error recorded")
            ));
        } else {
            println!("drained {}", dir.display());
        }
    }
    if left.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(left.join("; ")))
    }
}
