//! The live feed's counters as the admin endpoint's `/metrics` shows them: published by the
//! receiver every few milliseconds (never per message), read by the control core.
//!
//! Owns the metric names and their help texts. Like the rings' `LinkStats`, these are relaxed
//! atomics written by one thread only: a scrape sees each counter whole, maybe a few
//! milliseconds old, and never makes the receiver wait.

use super::arbiter::{Arbiter, LINES, LINE_NAMES};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Per-line counters, in [`LINE_NAMES`] order.
#[derive(Default)]
pub struct LineGauges {
    packets: AtomicU64,
    messages: AtomicU64,
    first: AtomicU64,
    late: AtomicU64,
    duplicate: AtomicU64,
    malformed: AtomicU64,
    other_session: AtomicU64,
    silences: AtomicU64,
}

/// Every live counter.
#[derive(Default)]
pub struct LiveGauges {
    lines: [LineGauges; LINES],
    applied: AtomicU64,
    gaps: AtomicU64,
    rerequests: AtomicU64,
    filled: AtomicU64,
    lost_gaps: AtomicU64,
    lost_messages: AtomicU64,
    held: AtomicU64,
    held_peak: AtomicU64,
    hold_full: AtomicU64,
    fill_p50_ns: AtomicU64,
    fill_p99_ns: AtomicU64,
    first_lost: AtomicU64,
    live_again_ms: AtomicU64,
}

impl LiveGauges {
    /// Copies the arbiter's counters (the receiver calls this every few milliseconds).
    pub fn publish(&self, a: &Arbiter) {
        for (g, l) in self.lines.iter().zip(&a.lines) {
            g.packets.store(l.packets, Relaxed);
            g.messages.store(l.messages, Relaxed);
            g.first.store(l.first, Relaxed);
            g.late.store(l.late, Relaxed);
            g.duplicate.store(l.duplicate, Relaxed);
            g.malformed.store(l.malformed, Relaxed);
            g.other_session.store(l.other_session, Relaxed);
            g.silences.store(l.silences, Relaxed);
        }
        let r = &a.recovery;
        self.applied.store(a.applied(), Relaxed);
        self.gaps.store(r.gaps, Relaxed);
        self.rerequests.store(r.rerequests, Relaxed);
        self.filled.store(r.filled, Relaxed);
        self.lost_gaps.store(r.lost_gaps, Relaxed);
        self.lost_messages.store(r.lost_messages, Relaxed);
        self.held.store(a.held() as u64, Relaxed);
        self.held_peak.store(r.held_peak as u64, Relaxed);
        self.hold_full.store(r.hold_full, Relaxed);
        if let Some((from, _)) = r.lost_ranges.first() {
            self.first_lost.store(*from, Relaxed);
        }
        if !a.fill_ns.is_empty() {
            self.fill_p50_ns
                .store(a.fill_ns.value_at_quantile(0.5), Relaxed);
            self.fill_p99_ns
                .store(a.fill_ns.value_at_quantile(0.99), Relaxed);
        }
    }

    /// The receiver was first live `ns` after the process started (see
    /// `LiveReport::live_again_s`).
    pub fn live_again(&self, ns: u64) {
        self.live_again_ms.store((ns / 1_000_000).max(1), Relaxed);
    }

    /// What a snapshot says of the feed: after a loss, no book can be vouched for (a lost
    /// message's instrument is unknown), so every snapshot says so for the rest of the session.
    pub fn reliability(&self) -> serde_json::Value {
        let lost = self.lost_messages.load(Relaxed);
        serde_json::json!({
            "reliable": lost == 0,
            "lost_messages": lost,
            "first_lost_seq": (lost > 0).then(|| self.first_lost.load(Relaxed)),
        })
    }

    /// Appends the Prometheus text of every live counter.
    pub fn render(&self, m: &mut String) {
        let head = |m: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        type Pick = fn(&LineGauges) -> &AtomicU64;
        let per_line: [(&str, &str, Pick); 8] = [
            ("packets", "Datagrams received per line.", |g| &g.packets),
            ("messages", "Messages in them.", |g| &g.messages),
            ("first", "Packets that brought a message first.", |g| {
                &g.first
            }),
            ("late", "Packets the other line had brought already.", |g| {
                &g.late
            }),
            (
                "duplicate",
                "Packets this line had delivered before.",
                |g| &g.duplicate,
            ),
            ("malformed", "Malformed datagrams, dropped.", |g| {
                &g.malformed
            }),
            (
                "other_session",
                "Datagrams of another session, dropped.",
                |g| &g.other_session,
            ),
            (
                "silences",
                "Times the line fell silent for the liveness period.",
                |g| &g.silences,
            ),
        ];
        for (name, help, pick) in per_line {
            let full = format!("tickcore_live_{name}_total");
            head(m, &full, help, "counter");
            for (line, g) in LINE_NAMES.iter().zip(&self.lines) {
                let _ = writeln!(m, "{full}{{line=\"{line}\"}} {}", pick(g).load(Relaxed));
            }
        }
        let totals: [(&str, &str, &str, &AtomicU64); 12] = [
            (
                "applied_total",
                "Messages handed to the engine in sequence order.",
                "counter",
                &self.applied,
            ),
            ("gaps_total", "Gaps detected.", "counter", &self.gaps),
            (
                "rerequests_total",
                "Re-requests sent.",
                "counter",
                &self.rerequests,
            ),
            (
                "filled_total",
                "Gaps filled completely.",
                "counter",
                &self.filled,
            ),
            (
                "lost_gaps_total",
                "Gaps declared lost.",
                "counter",
                &self.lost_gaps,
            ),
            (
                "lost_messages_total",
                "Messages declared lost.",
                "counter",
                &self.lost_messages,
            ),
            (
                "held_packets",
                "Packets held beyond a gap now.",
                "gauge",
                &self.held,
            ),
            (
                "held_packets_peak",
                "Most packets held at once.",
                "gauge",
                &self.held_peak,
            ),
            (
                "hold_full_total",
                "Packets dropped for a full hold buffer (asked for again).",
                "counter",
                &self.hold_full,
            ),
            (
                "gap_fill_p50_ns",
                "Gap detected to filled, median, nanoseconds.",
                "gauge",
                &self.fill_p50_ns,
            ),
            (
                "gap_fill_p99_ns",
                "Gap detected to filled, p99, nanoseconds.",
                "gauge",
                &self.fill_p99_ns,
            ),
            (
                "live_again_ms",
                "Milliseconds from the process's start until every message the lines had sent \
                 was in (after a recovery: the time to be live again); 0: not yet.",
                "gauge",
                &self.live_again_ms,
            ),
        ];
        for (name, help, kind, v) in totals {
            let full = format!("tickcore_live_{name}");
            head(m, &full, help, kind);
            let _ = writeln!(m, "{full} {}", v.load(Relaxed));
        }
    }
}
