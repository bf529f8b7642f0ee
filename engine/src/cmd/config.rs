//! `tickcore config`: prints the configuration in force, where each value came from, and the
//! plan (threads, roles, CPUs) that `tickcore run` launches from it.

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
    let sinks = crate::cmd::run::effective_sinks(&a.sinks.names, &a.sinks.settings);
    let endpoints = crate::runtime::plan::Endpoints {
        admin: a.endpoints.admin.as_ref() != Some(&crate::control::admin::AdminAddr::Off),
        gateway: a.endpoints.ws.is_some(),
        load_cpu: None,
    };
    let plan = crate::runtime::plan::Plan::new(&c, &sinks, endpoints);
    println!("# the plan `tickcore run` launches with these flags:");
    for l in plan.lines() {
        println!("{l}");
    }
    for (cpu, threads) in plan.shared_cpus() {
        println!("# CPU {cpu} is shared by threads {}", threads.join(", "));
    }
    Ok(())
}
