//! Whether the prefetch pipeline runs: decided by timing both ways on this machine, this day.
//!
//! Why measured and not fixed: whether asking for lines ahead pays depends on the machine more
//! than on the books. On the AMD EPYC VM the pipeline was built on (1 MiB L2, L3 shared by
//! noisy neighbours) it took v3k realistic from 5.3 to 7-8 M msgs/s. On the Intel Xeon VM of
//! 2026-12-05 (2 MiB L2, 300 MiB L3, out-of-order execution overlapping the L3 hits of
//! neighbouring messages by itself) the same pipeline cost 0.66-0.79x: `tickcore book`, 20M
//! messages, pipelined against sequential, m7 uniform 20.3 vs 31.0 M/s, v3k uniform 16.3 vs
//! 21.2, v3k deep 14.2 vs 19.0, and every subset of its stages was slower than none. A
//! threshold tuned on one of them is wrong on the other.
//!
//! [`Chooser`] times windows of [`WINDOW`] messages (only the time spent applying them, not
//! the time a shard waits for its feed) and keeps the mode whose latest windows were faster;
//! every [`EXPLORE_EVERY`] windows it tries the other mode again for [`TRIAL`] windows, because
//! the answer changes as books fill up. Below [`PREFETCH_ABOVE`] bytes of live state (the state
//! fits in one core's L2) it never prefetches: that never paid anywhere.
//!
//! It must never change what is applied: prefetches are hints, and a mode change drains the
//! window in order first. Timing reads the clock twice per replay call and once per window.

use std::time::Instant;

/// When the pipeline prefetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prefetch {
    /// Never: every message is applied as it comes (what the benchmarks compare against).
    Never,
    /// Whenever the live state is larger than [`PREFETCH_ABOVE`].
    Always,
    /// When timing says it pays (above [`PREFETCH_ABOVE`]).
    #[default]
    Measured,
}

/// Messages per timed window (a power of two). 65,536 messages take 1-4 ms: long enough that
/// the clock's cost vanishes, short enough that a trial of the worse mode costs little.
pub const WINDOW: u64 = 1 << 16;
/// Windows between trials of the mode not in use.
pub const EXPLORE_EVERY: u32 = 32;
/// Windows a trial runs; the better of them counts, so that one window a neighbour's burst
/// slowed does not decide.
pub const TRIAL: u32 = 2;
/// A trial's mode must be this much faster (per 1,024) to take over: two equal modes do not
/// flap on noise.
const MARGIN: u64 = 20;
/// Bytes of live book state above which prefetching may run (about one core's L2).
pub const PREFETCH_ABOVE: usize = 1 << 20;

/// Times windows of messages and decides, at the end of each, whether the next prefetches.
#[derive(Debug, Clone)]
pub struct Chooser {
    policy: Prefetch,
    /// Messages into the current window.
    seen: u64,
    /// Nanoseconds spent applying in the current window, up to `since`.
    busy: u64,
    /// When the current replay call started, or the last window ended within it.
    since: Option<Instant>,
    on: bool,
    /// Nanoseconds per window of each mode (index: `on as usize`): the better of its last
    /// [`TRIAL`] windows; 0 while unknown.
    cost: [u64; 2],
    /// The window before the latest one, in the current mode (0: none).
    previous: u64,
    /// Windows since the current mode started.
    run: u32,
    /// Whether the current run is a trial.
    trial: bool,
}

impl Default for Chooser {
    fn default() -> Self {
        Chooser::new(Prefetch::default())
    }
}

impl Chooser {
    /// A chooser following `policy`, prefetching nothing yet.
    pub fn new(policy: Prefetch) -> Self {
        Chooser {
            policy,
            seen: 0,
            busy: 0,
            since: None,
            on: false,
            cost: [0; 2],
            previous: 0,
            run: 0,
            trial: false,
        }
    }

    /// Whether messages are prefetched now.
    #[inline(always)]
    pub fn on(&self) -> bool {
        self.on
    }

    /// A replay call starts applying: its time counts.
    #[inline]
    pub fn resume(&mut self) {
        self.since = Some(Instant::now());
    }

    /// A replay call ends: the time until the next [`resume`](Self::resume) does not count.
    #[inline]
    pub fn pause(&mut self) {
        if let Some(t) = self.since.take() {
            self.busy += t.elapsed().as_nanos() as u64;
        }
    }

    /// Counts one message; true at the end of a window, when [`decide`](Self::decide) must be
    /// called before the next message.
    #[inline(always)]
    pub fn tick(&mut self) -> bool {
        self.seen += 1;
        self.seen == WINDOW
    }

    /// Ends the window: returns whether the next one prefetches, given whether the live
    /// state is above [`PREFETCH_ABOVE`].
    pub fn decide(&mut self, big: bool) -> bool {
        let now = Instant::now();
        let took = self.busy + self.since.map_or(0, |t| (now - t).as_nanos() as u64);
        self.since = self.since.map(|_| now);
        self.busy = 0;
        self.after(big, took)
    }

    /// Ends a window that took `took` nanoseconds of applying.
    fn after(&mut self, big: bool, took: u64) -> bool {
        self.seen = 0;
        let on = match self.policy {
            Prefetch::Never => false,
            Prefetch::Always => big,
            Prefetch::Measured => self.measured(big, took),
        };
        self.on = on;
        on
    }

    /// The measured policy, after a window of `took` nanoseconds in the current mode.
    fn measured(&mut self, big: bool, took: u64) -> bool {
        if !big {
            self.restart(false);
            self.cost = [0; 2];
            return false;
        }
        let m = self.on as usize;
        self.run += 1;
        self.cost[m] = match self.previous {
            0 => took,
            p => p.min(took),
        };
        self.previous = took;
        let other = 1 - m;
        if self.cost[other] == 0 {
            // Never timed the other way (the state just grew past the threshold): try it, once
            // this mode has had as many windows as a trial gets (the first window after the
            // state grows is slow either way, with the day's books being created).
            if self.run >= TRIAL {
                return self.start_trial();
            }
            return self.on;
        }
        if self.trial && self.run < TRIAL {
            return self.on;
        }
        if self.trial {
            // The trial is over: keep its mode only if it was clearly faster.
            self.trial = false;
            if self.cost[m] * 1024 + self.cost[m] * MARGIN > self.cost[other] * 1024 {
                self.restart(other == 1);
            }
            return self.on;
        }
        if self.run >= EXPLORE_EVERY {
            return self.start_trial();
        }
        self.on
    }

    fn start_trial(&mut self) -> bool {
        let other = !self.on;
        self.restart(other);
        self.trial = true;
        other
    }

    fn restart(&mut self, on: bool) {
        self.on = on;
        self.run = 0;
        self.previous = 0;
        self.trial = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Runs `windows` windows where prefetching takes `with` ns and not prefetching `without`;
    /// returns the share of windows that prefetched.
    fn share_on(policy: Prefetch, big: bool, with: u64, without: u64, windows: u32) -> f64 {
        let mut c = Chooser::new(policy);
        let mut on = 0;
        for _ in 0..windows {
            on += c.on() as u32;
            let took = if c.on() { with } else { without };
            c.after(big, took);
        }
        on as f64 / windows as f64
    }

    #[rstest]
    #[case::prefetching_pays(Prefetch::Measured, true, 700, 1000, 0.9, 1.0)]
    #[case::prefetching_costs(Prefetch::Measured, true, 1400, 1000, 0.0, 0.1)]
    #[case::small_state_never(Prefetch::Measured, false, 100, 1000, 0.0, 0.0)]
    #[case::equal_does_not_flap(Prefetch::Measured, true, 1000, 1000, 0.0, 0.1)]
    #[case::never(Prefetch::Never, true, 100, 1000, 0.0, 0.0)]
    #[case::always(Prefetch::Always, true, 5000, 1000, 0.99, 1.0)]
    fn keeps_the_faster_mode(
        #[case] policy: Prefetch,
        #[case] big: bool,
        #[case] with: u64,
        #[case] without: u64,
        #[case] lo: f64,
        #[case] hi: f64,
    ) {
        let s = share_on(policy, big, with, without, 1_000);
        assert!((lo..=hi).contains(&s), "prefetched {s} of the windows");
    }

    #[test]
    fn a_change_of_machine_weather_is_followed() {
        // Prefetching pays for a while, then stops paying: within one exploration period
        // plus a trial the chooser follows.
        let mut c = Chooser::new(Prefetch::Measured);
        for _ in 0..100 {
            let took = if c.on() { 700 } else { 1000 };
            c.after(true, took);
        }
        assert!(c.on());
        let mut on = Vec::new();
        for _ in 0..200 {
            let took = if c.on() { 1400 } else { 1000 };
            c.after(true, took);
            on.push(c.on());
        }
        let first_off = on.iter().position(|o| !o).unwrap();
        assert!(
            first_off <= (EXPLORE_EVERY + TRIAL) as usize,
            "on until {first_off}"
        );
        let later = on[first_off..].iter().filter(|o| **o).count();
        assert!(
            later * 10 <= on.len() - first_off,
            "{later} windows on after {first_off}"
        );
    }

    #[test]
    fn one_slow_window_does_not_decide_a_trial() {
        // Prefetching pays (700 vs 1000), but the first window of every trial is slowed to
        // 5000 by a neighbour: the better window of the trial still wins.
        let mut c = Chooser::new(Prefetch::Measured);
        let mut on_windows = 0;
        let mut fresh = true;
        for _ in 0..1_000 {
            let was = c.on();
            let took = match (was, fresh) {
                (true, true) => 5000,
                (true, false) => 700,
                (false, _) => 1000,
            };
            c.after(true, took);
            fresh = c.on() != was;
            on_windows += c.on() as u32;
        }
        assert!(on_windows > 900, "{on_windows} windows prefetched");
    }
}
