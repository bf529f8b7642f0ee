//! OHLCV bars (1 second and 1 minute, or any interval) built from printable trades and closed by
//! feed time.
//!
//! A bar covers `[start, start + interval)` of feed time (nanoseconds since midnight). It closes
//! when the shard's feed time reaches its end, whichever instrument's message carried that time,
//! so a quiet instrument's bar closes on time instead of waiting for its next trade; and at the
//! end of the feed ([`BarClock::flush`]). Only printable trades count (as in volume and VWAP);
//! broken trades are not taken back out of bars already built.
//!
//! Owns per-instrument open bars, indexed densely by locate. Never allocates per trade: the
//! open-bar table and the list of open bars grow only with the number of instruments.

use rkyv::{Archive, Deserialize, Serialize};

/// One closed bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
#[rkyv(derive(Debug))]
pub struct Bar {
    /// Instrument.
    pub locate: u16,
    /// Length in seconds (1 or 60 in the engine).
    pub interval_s: u32,
    /// Feed time the bar starts, nanoseconds since midnight (a multiple of the interval).
    pub start: u64,
    /// First, highest, lowest and last trade price, Price(4).
    pub open: u32,
    /// Highest price.
    pub high: u32,
    /// Lowest price.
    pub low: u32,
    /// Last price.
    pub close: u32,
    /// Shares traded.
    pub volume: u64,
    /// Sum of price x shares (Price(4) units), for VWAP.
    pub notional: u128,
    /// Printable trades.
    pub trades: u32,
}

impl Bar {
    /// Volume-weighted average price, Price(4), rounded half up.
    pub fn vwap(&self) -> u32 {
        let v = self.volume.max(1) as u128;
        ((self.notional + v / 2) / v) as u32
    }
}

const NONE: u32 = u32::MAX;

/// A clock's open bars as plain data (for checkpoints).
#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct ClockState {
    /// Bar length, seconds.
    pub interval_s: u32,
    /// Start of the open bucket; `u64::MAX` when none is open.
    pub bucket: u64,
    /// The open bars, in the order they opened.
    pub open: Vec<Bar>,
}

impl ClockState {
    /// Whether [`BarClock::restore`] can take this state: an interval, and at most one open
    /// bar a locate, none of them empty.
    pub fn check(&self) -> Result<(), String> {
        if self.interval_s == 0 || self.open.iter().any(|b| b.trades == 0) {
            return Err("a bar clock with no interval or an empty open bar".into());
        }
        let mut seen = vec![false; 1 << 16];
        match self
            .open
            .iter()
            .find(|b| std::mem::replace(&mut seen[b.locate as usize], true))
        {
            Some(b) => Err(format!("two open bars for locate {}", b.locate)),
            None => Ok(()),
        }
    }
}

/// Open bars of one interval for every instrument of a shard.
pub struct BarClock {
    interval_ns: u64,
    interval_s: u32,
    /// Open bar per locate (`trades == 0` means none).
    open: Vec<Bar>,
    /// Locates with an open bar, in the order they opened.
    live: Vec<u16>,
    /// Start of the bucket the open bars belong to; `NONE` before the first trade.
    bucket: u64,
    slot: Vec<u32>,
}

impl BarClock {
    /// A clock for bars of `interval_s` seconds.
    pub fn new(interval_s: u32) -> Self {
        assert!(interval_s > 0, "a bar lasts at least a second");
        BarClock {
            interval_ns: interval_s as u64 * 1_000_000_000,
            interval_s,
            open: Vec::new(),
            live: Vec::new(),
            bucket: u64::MAX,
            slot: Vec::new(),
        }
    }

    /// Bar length in seconds.
    pub fn interval_s(&self) -> u32 {
        self.interval_s
    }

    /// Advances feed time to `t`, closing every open bar that ends at or before it.
    #[inline]
    pub fn advance(&mut self, t: u64, mut closed: impl FnMut(&Bar)) {
        if self.bucket != u64::MAX && t >= self.bucket + self.interval_ns {
            self.close_all(&mut closed);
        }
    }

    /// Adds a printable trade at feed time `t` (after [`advance`](Self::advance) to `t`).
    #[inline]
    pub fn trade(&mut self, locate: u16, t: u64, price: u32, shares: u64) {
        let start = t - t % self.interval_ns;
        if self.bucket == u64::MAX || start > self.bucket {
            // Only reachable when the caller skipped `advance`: nothing open is older.
            debug_assert!(self.live.is_empty(), "advance closes older bars first");
            self.bucket = start;
        }
        let i = locate as usize;
        if i >= self.slot.len() {
            self.slot.resize(i + 1, NONE);
        }
        if self.slot[i] == NONE {
            self.slot[i] = self.open.len() as u32;
            self.open.push(empty(locate, self.interval_s));
        }
        let b = &mut self.open[self.slot[i] as usize];
        if b.trades == 0 {
            *b = Bar {
                start: self.bucket,
                open: price,
                high: price,
                low: price,
                ..empty(locate, self.interval_s)
            };
            self.live.push(locate);
        }
        b.high = b.high.max(price);
        b.low = b.low.min(price);
        b.close = price;
        b.volume += shares;
        b.notional += price as u128 * shares as u128;
        b.trades += 1;
    }

    /// The bar still open for `locate`, if any (for snapshots).
    pub fn current(&self, locate: u16) -> Option<&Bar> {
        let s = *self.slot.get(locate as usize)?;
        (s != NONE)
            .then(|| &self.open[s as usize])
            .filter(|b| b.trades > 0)
    }

    /// The open bars as plain data.
    pub fn capture(&self) -> ClockState {
        ClockState {
            interval_s: self.interval_s,
            bucket: self.bucket,
            open: self
                .live
                .iter()
                .map(|&l| self.open[self.slot[l as usize] as usize])
                .collect(),
        }
    }

    /// A clock whose open bars are those of `s`.
    pub fn restore(s: &ClockState) -> Result<BarClock, String> {
        s.check()?;
        let mut c = BarClock::new(s.interval_s);
        c.bucket = s.bucket;
        for b in &s.open {
            let i = b.locate as usize;
            if i >= c.slot.len() {
                c.slot.resize(i + 1, NONE);
            }
            debug_assert_eq!(c.slot[i], NONE, "checked: one open bar a locate");
            c.slot[i] = c.open.len() as u32;
            c.open.push(*b);
            c.live.push(b.locate);
        }
        Ok(c)
    }

    /// Closes every open bar (end of feed).
    pub fn flush(&mut self, mut closed: impl FnMut(&Bar)) {
        self.close_all(&mut closed);
    }

    fn close_all(&mut self, closed: &mut impl FnMut(&Bar)) {
        for &l in &self.live {
            let b = &mut self.open[self.slot[l as usize] as usize];
            closed(b);
            b.trades = 0;
        }
        self.live.clear();
        self.bucket = u64::MAX;
    }
}

fn empty(locate: u16, interval_s: u32) -> Bar {
    Bar {
        locate,
        interval_s,
        start: 0,
        open: 0,
        high: 0,
        low: u32::MAX,
        close: 0,
        volume: 0,
        notional: 0,
        trades: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn bars_close_by_feed_time_and_hold_ohlcv() {
        let mut c = BarClock::new(1);
        let mut out = Vec::new();
        for (t, l, px, q) in [
            (10 * S + 5, 1, 100, 10),
            (10 * S + 9, 1, 120, 30),
            (10 * S + 20, 2, 50, 1),
        ] {
            c.advance(t, |b| out.push(*b));
            c.trade(l, t, px, q);
        }
        assert!(out.is_empty());
        assert_eq!(c.current(1).unwrap().high, 120);
        // A message of any instrument a second later closes both bars.
        c.advance(11 * S, |b| out.push(*b));
        assert_eq!(out.len(), 2);
        let b = out[0];
        assert_eq!(
            (b.locate, b.start, b.open, b.high, b.low, b.close),
            (1, 10 * S, 100, 120, 100, 120)
        );
        assert_eq!((b.volume, b.trades, b.vwap()), (40, 2, 115));
        assert!(c.current(1).is_none());
        c.advance(12 * S + 1, |b| out.push(*b));
        c.trade(1, 12 * S + 1, 7, 1);
        c.flush(|b| out.push(*b));
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].start, 12 * S);
    }
}
