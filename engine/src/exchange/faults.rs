//! Per-line fault injection for the exchange simulator: drop, reorder and duplicate packets,
//! and stop a line after N packets; deterministic for a seed.
//!
//! Owns each line's random stream and the packet it holds back to reorder. Never touches the
//! re-request server, which drops nothing.

use shards::synth::rng::Rng;

/// Fault rates and the kill switch, as the operator gave them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Fraction of packets dropped (0 to 1).
    pub drop: f64,
    /// Fraction of packets sent after the next one.
    pub reorder: f64,
    /// Fraction of packets sent twice.
    pub dup: f64,
    /// Line A sends nothing more after this many packets.
    pub kill_a_after: Option<u64>,
}

/// What happens to one packet on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Sent once.
    Send,
    /// Not sent.
    Drop,
    /// Sent twice.
    Duplicate,
    /// Held, and sent after the line's next packet.
    Reorder,
    /// The line is dead.
    Dead,
}

/// Counters of one line.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LineCounts {
    /// Datagrams sent (data, heartbeats, end of session; duplicates count twice).
    pub sent: u64,
    /// Data packets the line carried (before faults).
    pub packets: u64,
    /// Data packets dropped.
    pub dropped: u64,
    /// Data packets sent out of order.
    pub reordered: u64,
    /// Data packets sent twice.
    pub duplicated: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Ends of session sent.
    pub ends: u64,
}

/// One line's fault state.
pub struct LineFaults {
    rng: Rng,
    faults: Faults,
    kill_after: Option<u64>,
    /// Counters.
    pub counts: LineCounts,
}

impl LineFaults {
    /// Line `index` (0 = A) with its own stream from `seed`.
    pub fn new(index: usize, faults: Faults, seed: u64) -> LineFaults {
        LineFaults {
            rng: Rng::new(seed ^ (0xA11E_0000 + index as u64)),
            faults,
            kill_after: if index == 0 {
                faults.kill_a_after
            } else {
                None
            },
            counts: LineCounts::default(),
        }
    }

    /// Whether the line is dead (sends nothing, heartbeats included).
    pub fn dead(&self) -> bool {
        self.kill_after.is_some_and(|n| self.counts.packets >= n)
    }

    /// Decides the next data packet's fate and counts it.
    pub fn fate(&mut self) -> Fate {
        if self.dead() {
            return Fate::Dead;
        }
        self.counts.packets += 1;
        let f = self.faults;
        // Three draws every packet, whatever the rates: a line's stream depends on the seed only.
        let (d, r, u) = (self.rng.unit(), self.rng.unit(), self.rng.unit());
        if d < f.drop {
            self.counts.dropped += 1;
            Fate::Drop
        } else if r < f.reorder {
            self.counts.reordered += 1;
            Fate::Reorder
        } else if u < f.dup {
            self.counts.duplicated += 1;
            Fate::Duplicate
        } else {
            Fate::Send
        }
    }
}

/// Parses a percentage (0 to 100) into a fraction.
pub fn parse_pct(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!("`{s}` is not a percentage from 0 to 100")),
    }
}

/// Parses `A@N`: line A stops after N packets.
pub fn parse_kill(s: &str) -> Result<u64, String> {
    s.strip_prefix("A@")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("`{s}`: write A@N (line A stops after N packets)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fates_and_rates_are_kept() {
        let f = Faults {
            drop: 0.05,
            reorder: 0.02,
            dup: 0.02,
            kill_a_after: None,
        };
        let run = |seed| {
            let mut l = LineFaults::new(1, f, seed);
            (0..100_000).map(|_| l.fate()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let drops = run(7).iter().filter(|&&x| x == Fate::Drop).count();
        assert!((4_500..5_500).contains(&drops), "{drops}");
    }

    #[test]
    fn line_a_dies_after_its_packets_and_line_b_does_not() {
        let f = Faults {
            kill_a_after: Some(3),
            ..Faults::default()
        };
        let (mut a, mut b) = (LineFaults::new(0, f, 1), LineFaults::new(1, f, 1));
        let fa: Vec<Fate> = (0..5).map(|_| a.fate()).collect();
        assert_eq!(fa[2..], [Fate::Send, Fate::Dead, Fate::Dead]);
        assert!((0..5).all(|_| b.fate() == Fate::Send));
    }

    #[test]
    fn flags_parse() {
        assert_eq!(parse_pct("5"), Ok(0.05));
        assert_eq!(parse_pct("1%"), Ok(0.01));
        assert!(parse_pct("101").is_err());
        assert_eq!(parse_kill("A@500"), Ok(500));
        assert!(parse_kill("B@5").is_err());
    }
}
