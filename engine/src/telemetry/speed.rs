//! The shard CPU's own speed: how fast it runs a fixed slice of the engine's work, and how long
//! one of its loads takes past the caches, timed around the replay.
//!
//! Why: on this project's 2-vCPU VM the same build's e2e median moved from 0.8-1.4 us to
//! 2.2-4.5 us between runs minutes apart (2026-12-07), and the shard's apply and emit per
//! message slowed 1.5-3x with it. The noise probe counts time a CPU is taken away and the
//! crossing probe times a line's trip between two CPUs; neither sees a CPU that runs, but runs
//! slower (a busy hyperthread sibling, a neighbour's cache or memory traffic). This probe
//! does, with two figures:
//! - apply: a fixed session (m7, [`MESSAGES`] messages, seed 1, whatever the run's scope)
//!   applied to fresh books, in passes; ns per message. Its state fits in the L2, so this is
//!   the core's speed at the engine's own instructions.
//! - miss: a dependent chase over [`CHASE_BYTES`], one line a step in a random cycle; ns per
//!   load, the latency of a miss past the L2. 64 MiB is about what a v3k shard's books touch
//!   (40-50 MiB); on this VM it lands in the L3 the host reports (40 ns a load, 2026-12-07).
//!
//! Each figure is the median of its passes; before and after are kept apart, as the
//! crossing's are, because the phase can flip during a run. Never runs during a replay: it
//! would take the shard's CPU.

use super::median;
use crate::runtime::clock;
use shards::book::{Books, Prefetch};
use shards::synth::{generate, GenConfig, Profile, Scope};

/// Messages in the fixed session the apply passes replay.
pub const MESSAGES: u64 = 50_000;
/// Passes of each figure per probe.
pub const PASSES: usize = 5;
/// Bytes the miss chase walks: well past the 2 MiB L2, about a v3k shard's working set.
pub const CHASE_BYTES: usize = 64 << 20;
/// Loads timed per chase pass.
const CHASE_STEPS: usize = 200_000;
const LINE: usize = 64;

/// One probe of one CPU: each pass's figure.
#[derive(Debug, Clone, Default)]
pub struct Speed {
    /// The CPU probed.
    pub cpu: usize,
    /// ns per message of each apply pass.
    pub apply_ns: Vec<f64>,
    /// ns per load of each chase pass.
    pub miss_ns: Vec<f64>,
}

/// What a probe needs, built once for the run (the session and the chase's cycle).
pub struct Work {
    session: Vec<u8>,
    chase: Vec<u64>,
}

impl Work {
    /// Generates the fixed session and lays out the chase's cycle (about 50 ms here).
    pub fn new() -> Result<Work, String> {
        let session = generate(&GenConfig {
            scope: Scope::M7,
            messages: MESSAGES,
            seed: 1,
            profile: Profile::Realistic,
        })
        .map_err(|e| e.to_string())?;
        Ok(Work {
            session,
            chase: cycle(CHASE_BYTES / LINE, 1),
        })
    }
}

/// A random single cycle over `lines` lines (Sattolo's shuffle, seeded), laid out one `u64`
/// per 64-byte line: the word at line `i` holds the next line's index.
fn cycle(lines: usize, seed: u64) -> Vec<u64> {
    let mut rng = shards::synth::rng::Rng::new(seed);
    let mut order: Vec<u32> = (0..lines as u32).collect();
    for i in (1..lines).rev() {
        let j = rng.below(i as u64) as usize;
        order.swap(i, j);
    }
    let per = LINE / 8;
    let mut words = vec![0u64; lines * per];
    for w in order.windows(2) {
        words[w[0] as usize * per] = u64::from(w[1]);
    }
    words[order[lines - 1] as usize * per] = u64::from(order[0]);
    words
}

/// Probes `cpu`: [`PASSES`] apply passes, then as many chase passes, on a thread pinned there.
pub fn probe(cpu: usize, work: &Work) -> Speed {
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::runtime::pin(cpu);
            Speed {
                cpu,
                apply_ns: (0..PASSES).map(|_| apply_pass(&work.session)).collect(),
                miss_ns: (0..PASSES).map(|_| chase_pass(&work.chase)).collect(),
            }
        })
        .join()
        .unwrap_or_default()
    })
}

/// One pass of the fixed session through fresh books, their memory resident before the clock.
fn apply_pass(session: &[u8]) -> f64 {
    let mut books = Books::default();
    books.set_prefetch(Prefetch::Never);
    books.reserve_for_session(session);
    let t0 = clock::now_ns();
    let walked = books.replay(session, false, &mut (), |_, _| {});
    let ns = clock::now_ns() - t0;
    let n = walked.map_or(MESSAGES, |w| w.frames).max(1);
    ns as f64 / n as f64
}

/// One pass of [`CHASE_STEPS`] dependent loads.
fn chase_pass(words: &[u64]) -> f64 {
    let per = LINE / 8;
    let mut at = 0usize;
    let t0 = clock::now_ns();
    for _ in 0..CHASE_STEPS {
        at = words[at * per] as usize;
    }
    let ns = clock::now_ns() - t0;
    std::hint::black_box(at);
    ns as f64 / CHASE_STEPS as f64
}

/// The JSON's `speed`: each figure's median over both probes, and each probe's.
pub fn json(before: &Speed, after: &Speed) -> serde_json::Value {
    let both = |f: fn(&Speed) -> &Vec<f64>| {
        let mut v = f(before).clone();
        v.extend(f(after));
        median(&v)
    };
    let r = |x: f64| (x * 10.0).round() / 10.0;
    serde_json::json!({
        "cpu": before.cpu,
        "apply_messages": MESSAGES,
        "passes": before.apply_ns.len() + after.apply_ns.len(),
        "apply_ns_per_message": r(both(|s| &s.apply_ns)),
        "apply_before_ns": r(median(&before.apply_ns)),
        "apply_after_ns": r(median(&after.apply_ns)),
        "chase_bytes": CHASE_BYTES,
        "miss_ns": r(both(|s| &s.miss_ns)),
        "miss_before_ns": r(median(&before.miss_ns)),
        "miss_after_ns": r(median(&after.miss_ns)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chase_is_one_cycle_through_every_line() {
        let (lines, per) = (1000, LINE / 8);
        let w = cycle(lines, 7);
        let mut seen = vec![false; lines];
        let mut at = 0usize;
        for step in 0..lines {
            assert!(
                !seen[at],
                "line {at} came back after {step} steps, not {lines}"
            );
            seen[at] = true;
            at = w[at * per] as usize;
        }
        assert_eq!(at, 0, "the cycle does not close");
    }

    #[test]
    fn a_probe_times_the_fixed_session_and_the_chase() {
        let work = Work::new().unwrap();
        let s = probe(0, &work);
        assert_eq!((s.apply_ns.len(), s.miss_ns.len()), (PASSES, PASSES));
        // Whatever the machine, a message takes more than nothing and less than a
        // millisecond, and so does a load.
        for v in s.apply_ns.iter().chain(&s.miss_ns) {
            assert!(*v > 0.0 && *v < 1e6, "{s:?}");
        }
    }

    #[test]
    fn the_json_keeps_each_probes_median_apart() {
        let a = Speed {
            cpu: 1,
            apply_ns: vec![20.0, 21.0, 90.0],
            miss_ns: vec![100.0; 3],
        };
        let b = Speed {
            cpu: 1,
            apply_ns: vec![40.0, 41.0, 42.0],
            miss_ns: vec![300.0; 3],
        };
        let j = json(&a, &b);
        assert_eq!(j["apply_before_ns"], 21.0);
        assert_eq!(j["apply_after_ns"], 41.0);
        // Six passes: the upper of the two middle ones.
        assert_eq!(j["apply_ns_per_message"], 41.0);
        assert_eq!(j["miss_before_ns"], 100.0);
        assert_eq!(j["miss_after_ns"], 300.0);
        assert_eq!(j["passes"], 6);
        assert_eq!(j["cpu"], 1);
    }
}
