//! Progress lines for long work, on a terminal only.
//!
//! Quiet when stderr is not a terminal (pipes, CI, tests), so output stays parseable. Callers
//! tick it every so many units of work; it reads the clock only then and redraws at most four
//! times a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A progress line on stderr.
pub struct Progress {
    label: &'static str,
    total: u64,
    unit: &'static str,
    start: Instant,
    last: Instant,
    enabled: bool,
}

impl Progress {
    /// Progress over `total` units (bytes or messages), shown only on a terminal.
    pub fn new(label: &'static str, total: u64, unit: &'static str) -> Self {
        let now = Instant::now();
        Progress {
            label,
            total,
            unit,
            start: now,
            last: now,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    /// Reports that `done` units are complete.
    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now - self.last < Duration::from_millis(250) {
            return;
        }
        self.last = now;
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let secs = (now - self.start).as_secs_f64().max(1e-9);
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r{}: {pct:5.1}%  {} {}  {}   ",
            self.label,
            crate::fmt::count(done),
            self.unit,
            crate::fmt::rate(done as f64 / secs)
        );
        let _ = e.flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last != self.start {
            let _ = write!(std::io::stderr(), "\r{:70}\r", "");
        }
    }
}
