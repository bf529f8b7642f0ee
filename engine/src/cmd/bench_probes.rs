//! `tickcore bench`'s machine probes, taken just before and just after the replay: the noise
//! (CPU time the machine takes from the CPUs a message crosses), the crossing (one line passed
//! between the ingress's CPU and the first shard's) and the speed (the first shard's CPU at a
//! fixed slice of work). Together they say what the machine was like around the figures.
//! `--noise-ms 0` skips all three, here and only here.
//!
//! Owns the probes' order, their progress lines and their JSON (`noise`, `crossing`,
//! `speed`). Never runs while the replay does: every probe spins on the engine's CPUs.

use crate::config::Config;
use crate::error::{Failure, Result};
use crate::telemetry::budget::pretty;
use crate::telemetry::{crossing, noise, speed};
use std::time::Duration;

/// How long each crossing probe passes its line back and forth.
const CROSSING_PROBE: Duration = Duration::from_millis(200);

/// The probes of one run: its configuration's CPUs, `ms` of noise each time.
pub struct Prober<'a> {
    cfg: &'a Config,
    ms: u64,
    work: speed::Work,
}

/// What one round of the probes saw.
pub struct Probes {
    noise: Vec<noise::CpuNoise>,
    /// `None` when the ingress and the first shard share a CPU.
    crossing: Option<crossing::Crossing>,
    speed: speed::Speed,
}

impl<'a> Prober<'a> {
    /// The probes for `cfg`, `ms` of noise a round; `None` when `ms` is 0.
    pub fn new(cfg: &'a Config, ms: u64) -> Result<Option<Prober<'a>>> {
        if ms == 0 {
            return Ok(None);
        }
        let work = speed::Work::new()
            .map_err(|e| Failure::new(format!("cannot build the speed probe's session: {e}")))?;
        Ok(Some(Prober { cfg, ms, work }))
    }

    /// One round: noise, crossing, speed, in that order.
    pub fn take(&self) -> Probes {
        let cpus: Vec<usize> = paths(self.cfg).into_iter().flatten().collect();
        let ms = self.ms;
        eprintln!("tickcore bench: measuring this machine's noise on CPUs {cpus:?} for {ms} ms...");
        let noise = noise::probe(&cpus, Duration::from_millis(ms));
        let (from, to) = (self.cfg.feed_cpu.value, self.cfg.shard_cpu(0));
        let crossing = (from != to).then(|| {
            eprintln!("tickcore bench: timing the crossing from CPU {from} to CPU {to}...");
            crossing::probe(from, to, CROSSING_PROBE)
        });
        eprintln!("tickcore bench: timing CPU {to}'s speed at a fixed slice of work...");
        let speed = speed::probe(to, &self.work);
        Probes {
            noise,
            crossing,
            speed,
        }
    }

    /// Writes `noise` (both rounds' gaps together, and the floor they put under e2e),
    /// `crossing` and `speed` (each round apart) into `result`.
    pub fn record(&self, before: Probes, after: Probes, result: &mut serde_json::Value) {
        let both = noise::combine(before.noise, after.noise);
        let span = Duration::from_millis(2 * self.ms);
        let j = noise::json(&both, &paths(self.cfg), span);
        let ns = |k: &str| pretty(j[k].as_u64().unwrap_or(0));
        eprintln!(
            "tickcore bench: the floor lost CPU time alone puts under e2e: p99 {}, p99.9 {}",
            ns("floor_p99_ns"),
            ns("floor_p999_ns")
        );
        result["noise"] = j;
        if let (Some(b), Some(a)) = (before.crossing, after.crossing) {
            result["crossing"] = crossing::json(&b, &a, CROSSING_PROBE);
        }
        result["speed"] = speed::json(&before.speed, &after.speed);
    }
}

/// The paths a message takes (ingress CPU, then its shard's).
fn paths(cfg: &Config) -> Vec<Vec<usize>> {
    let feed = cfg.feed_cpu.value;
    (0..cfg.shards.value)
        .map(|i| vec![feed, cfg.shard_cpu(i)])
        .collect()
}
