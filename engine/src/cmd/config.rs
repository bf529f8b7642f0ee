//! `tickcore config`: prints the configuration in force and where each value came from.

use crate::cli::ConfigArgs;
use crate::config::{machine_cpus, Config};
use crate::error::Result;

/// Runs the command.
pub fn run(a: &ConfigArgs) -> Result<()> {
    let cpus = machine_cpus();
    let c = Config::load(
        a.config.as_deref(),
        |k| std::env::var(k).ok(),
        &a.tune,
        cpus,
    )?;
    print!("{}", c.render());
    println!("# this machine: {cpus} CPUs");
    for (cpu, roles) in c.shared_cpus() {
        println!("# CPU {cpu} is shared by {}", roles.join(", "));
    }
    Ok(())
}
