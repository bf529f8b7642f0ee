//! Latency budgets (`apply.p99=2us`) and the degrade ladder that enforces them.
//!
//! The ladder is pure bookkeeping: each interval the control core gives it whether any budget
//! was over, and it answers with the level to run at. Hysteresis: a level is entered after
//! `enter_after` consecutive intervals over budget and left after `leave_after` consecutive
//! intervals under, so one noisy interval never flaps it.

use super::Stage;
use std::fmt;

/// A percentile of one stage that must stay at or under a limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// The stage.
    pub stage: Stage,
    /// The quantile, e.g. 0.99.
    pub quantile: f64,
    /// The limit, nanoseconds.
    pub limit_ns: u64,
}

impl Budget {
    /// `stage.pNN`: the key of this budget (`apply.p99`).
    pub fn key(&self) -> String {
        format!("{}.{}", self.stage.name(), quantile_name(self.quantile))
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key(), duration_text(self.limit_ns))
    }
}

/// `p99` for 0.99, `p999` for 0.999, ...
pub fn quantile_name(q: f64) -> String {
    let digits = format!("{:.6}", q * 100.0);
    let digits = digits.trim_end_matches('0').trim_end_matches('.');
    format!("p{}", digits.replace('.', ""))
}

/// The quantile of `p50`, `p90`, `p99`, `p999`, `p9999`, `max`.
pub fn parse_quantile(s: &str) -> Option<f64> {
    match s {
        "p50" => Some(0.5),
        "p90" => Some(0.9),
        "p99" => Some(0.99),
        "p999" => Some(0.999),
        "p9999" => Some(0.9999),
        "max" => Some(1.0),
        _ => None,
    }
}

/// Nanoseconds of `500ns`, `2us` (or `2µs`), `20ms`, `1s`; fractions allowed (`1.5ms`).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` has no unit: use ns, us, ms or s (e.g. 50us)"))?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => {
            return Err(format!(
                "`{unit}` in `{s}` is not a unit: use ns, us, ms or s"
            ))
        }
    };
    let ns = v * scale;
    if !(1.0..=super::MAX_NS as f64).contains(&ns) {
        return Err(format!("`{s}` is outside 1ns..60s"));
    }
    Ok(ns.round() as u64)
}

/// A duration as the shortest exact text: `2us`, `1500ns`, `20ms`.
pub fn duration_text(ns: u64) -> String {
    for (unit, scale) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
        if ns >= scale && ns % scale == 0 {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}

/// A latency for people: `95ns`, `107.5us`, `7.21ms`, `1.23s`.
pub fn pretty(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{:.1}us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// One budget from `stage.pNN=DURATION`.
pub fn parse_budget(s: &str) -> Result<Budget, String> {
    let (key, value) = s.split_once('=').ok_or_else(|| {
        format!("`{s}` is not a budget: write STAGE.PCT=DURATION, e.g. apply.p99=2us")
    })?;
    let (stage, q) = key.trim().split_once('.').ok_or_else(|| {
        format!("`{key}` names no percentile: write e.g. apply.p99 (p50 p90 p99 p999 p9999 max)")
    })?;
    let stage = Stage::parse(stage).ok_or_else(|| {
        let all: Vec<&str> = super::STAGES.iter().map(|s| s.name()).collect();
        format!("`{stage}` is not a stage (stages: {})", all.join(" "))
    })?;
    let quantile = parse_quantile(q)
        .ok_or_else(|| format!("`{q}` is not a percentile (p50 p90 p99 p999 p9999 max)"))?;
    let limit_ns = parse_duration(value)?;
    Ok(Budget {
        stage,
        quantile,
        limit_ns,
    })
}

/// Budgets from a list separated by commas or newlines; empty entries are skipped.
pub fn parse_budgets(s: &str) -> Result<Vec<Budget>, String> {
    s.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(parse_budget)
        .collect()
}

/// Replaces the budget with the same key in `set`, or adds it.
pub fn upsert(set: &mut Vec<Budget>, b: Budget) {
    match set
        .iter_mut()
        .find(|x| x.stage == b.stage && x.quantile == b.quantile)
    {
        Some(x) => *x = b,
        None => set.push(b),
    }
}

/// The built-in budgets: loose enough that a replay at full speed on a laptop (where queueing
/// behind the rings dominates end-to-end time) runs at level 0; a desk sets its own in
/// `affinity.toml` or with `--budget` (e.g. apply.p99=2us e2e.p999=50us persist.p99=20ms).
pub fn defaults() -> Vec<Budget> {
    parse_budgets("apply.p99=20us,e2e.p999=100ms,persist.p99=10s").expect("built-in budgets parse")
}

/// What the ladder's levels do (index = level).
pub const LEVELS: [&str; 3] = [
    "normal",
    "coalesce: each shard sends at most one BBO per instrument per event batch (the latest)",
    "coalesce + sinks spool only: sinks stop writing live and keep their backlog in the spool",
];

/// The degrade ladder's state.
#[derive(Debug, Clone)]
pub struct Ladder {
    /// Current level, 0 = normal.
    pub level: usize,
    /// Intervals over budget before going one level up.
    pub enter_after: u32,
    /// Intervals under budget before going one level down.
    pub leave_after: u32,
    over: u32,
    under: u32,
}

impl Ladder {
    /// A ladder at level 0.
    pub fn new(enter_after: u32, leave_after: u32) -> Ladder {
        Ladder {
            level: 0,
            enter_after: enter_after.max(1),
            leave_after: leave_after.max(1),
            over: 0,
            under: 0,
        }
    }

    /// One interval's verdict; returns the new level when it changed.
    pub fn step(&mut self, over_budget: bool) -> Option<usize> {
        if over_budget {
            self.under = 0;
            self.over += 1;
            if self.over >= self.enter_after && self.level + 1 < LEVELS.len() {
                self.over = 0;
                self.level += 1;
                return Some(self.level);
            }
        } else {
            self.over = 0;
            self.under += 1;
            if self.under >= self.leave_after && self.level > 0 {
                self.under = 0;
                self.level -= 1;
                return Some(self.level);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_print_back() {
        let b = parse_budget("apply.p99=2us").unwrap();
        assert_eq!(
            (b.stage, b.quantile, b.limit_ns),
            (Stage::Apply, 0.99, 2_000)
        );
        assert_eq!(b.to_string(), "apply.p99=2us");
        assert_eq!(
            parse_budget("e2e.p999=50µs").unwrap().to_string(),
            "e2e.p999=50us"
        );
        assert_eq!(
            parse_budget("persist.p99=1.5ms").unwrap().limit_ns,
            1_500_000
        );
        assert_eq!(
            parse_budgets("hop.p50=1us, emit.max=1s\n").unwrap().len(),
            2
        );
        assert_eq!(quantile_name(0.9999), "p9999");
    }

    #[test]
    fn malformed_budgets_say_what_is_wrong() {
        for (input, says) in [
            ("apply", "is not a budget"),
            ("apply=2us", "names no percentile"),
            ("fetch.p99=2us", "is not a stage"),
            ("apply.p98=2us", "is not a percentile"),
            ("apply.p99=2", "has no unit"),
            ("apply.p99=2parsecs", "is not a unit"),
            ("apply.p99=fast", "does not start with a number"),
            ("apply.p99=2h", "is not a unit"),
            ("apply.p99=120s", "outside"),
        ] {
            let e = parse_budget(input).unwrap_err();
            assert!(e.contains(says), "{input}: {e}");
        }
    }

    #[test]
    fn the_ladder_climbs_after_k_and_falls_after_m() {
        let mut l = Ladder::new(2, 3);
        assert_eq!(l.step(true), None);
        assert_eq!(l.step(true), Some(1));
        // One clean interval does not undo it (hysteresis), nor does a breach reset the climb.
        assert_eq!(l.step(false), None);
        assert_eq!(l.step(true), None);
        assert_eq!(l.step(true), Some(2));
        assert_eq!(l.step(true), None);
        assert_eq!(l.step(true), None, "no level above the top");
        assert_eq!(l.step(false), None);
        assert_eq!(l.step(false), None);
        assert_eq!(l.step(false), Some(1));
        for _ in 0..3 {
            l.step(false);
        }
        assert_eq!(l.level, 0);
        assert_eq!(l.step(false), None, "no level below normal");
    }
}
