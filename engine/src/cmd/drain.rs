//! `tickcore drain`: loads what the sinks spooled into their databases, then reports.

use crate::cli::DrainArgs;
use crate::cmd::run::{pg_plan, sink_lines};
use crate::error::{Failure, Result};
use storage_adapters::adapter::{self, Intake};

/// Runs the command.
pub fn run(a: &DrainArgs) -> Result<()> {
    if a.sink.pg.is_none() {
        return Err(Failure::new(
            "nothing to drain into: give --pg URL (or TICKCORE_PG) for build_data/spool/pg/",
        ));
    }
    let plan = pg_plan(&a.sink)?;
    let dir = plan.settings.spool_dir.clone();
    let report = adapter::run(plan.pg, plan.settings, || Intake::End);
    print!("{}", sink_lines(std::slice::from_ref(&report)));
    if report.spool_pending_bytes > 0 {
        return Err(Failure::new(format!(
            "{}: {} bytes are still spooled (the database did not take them: {})",
            dir.display(),
            report.spool_pending_bytes,
            report.last_error.as_deref().unwrap_or("no error recorded")
        )));
    }
    println!("drained {} into PostgreSQL", dir.display());
    Ok(())
}
