//! What the consumer hands the gateway: each event batch's trades, BBO changes, closed bars,
//! depths and listings, copied out of the shard's archived batch into owned vectors that travel
//! a buffer link and come back emptied, so no batch allocates once the vectors have grown.
//!
//! Owns the copy from archived to native form and the link's ends. Never makes the consumer
//! wait: when every buffer is in flight (the gateway is starved of CPU), batches gather in one
//! pending batch where BBOs and depths keep only each instrument's latest, and trades and bars
//! past [`PENDING_MAX`] are counted as lost; the gateway turns a loss into a visible `seq` gap,
//! so clients resubscribe (measured with 100 clients on 2 CPUs, 2026-12-05: a blocking hand-off
//! stalled the consumer, then the shards and the ingress: e2e p90 457 ms).

use crate::runtime::batch::ArchivedEventBatch;
use crate::runtime::ring::{self, Receiver, Sender};
use shards::bars::Bar;
use shards::events::{
    ArchivedQuote, ArchivedTradeKind, Bbo, Depth, Listing, Quote, Trade, TradeKind,
};
use std::sync::Arc;

/// Buffers on the consumer -> gateway link: enough to ride out a gateway turn that serialised a
/// burst for many clients without gathering.
pub const BUFFERS: usize = 256;
/// Trades and bars a pending batch holds at most; more are lost (and said so).
pub const PENDING_MAX: usize = 1 << 16;

/// One event batch, as the gateway serves it.
#[derive(Debug, Default)]
pub struct GatewayBatch {
    /// When the batch's first message left the ingress (engine ns), for the deliver stage.
    pub first_ingress_ns: u64,
    /// Trades, in feed order.
    pub trades: Vec<Trade>,
    /// BBO changes, in feed order.
    pub bbos: Vec<Bbo>,
    /// Bars closed.
    pub bars: Vec<Bar>,
    /// Changed top levels, one per instrument.
    pub depths: Vec<Depth>,
    /// Instruments named.
    pub listings: Vec<Listing>,
    /// Trades and bars lost before this batch (the gateway was starved and the pending batch
    /// was full).
    pub lost: u64,
}

impl GatewayBatch {
    /// Whether `b` carries anything a client takes.
    pub fn wanted(b: &ArchivedEventBatch<'_>) -> bool {
        !(b.trades.is_empty()
            && b.bbos.is_empty()
            && b.bars.is_empty()
            && b.depths.is_empty()
            && b.listings.is_empty())
    }

    /// Empties it (its vectors keep their room).
    pub fn clear(&mut self) {
        self.first_ingress_ns = 0;
        self.trades.clear();
        self.bbos.clear();
        self.bars.clear();
        self.depths.clear();
        self.listings.clear();
        self.lost = 0;
    }

    fn is_empty(&self) -> bool {
        self.trades.is_empty()
            && self.bbos.is_empty()
            && self.bars.is_empty()
            && self.depths.is_empty()
            && self.listings.is_empty()
            && self.lost == 0
    }

    /// Adds `b`'s events (the first batch's ingress time stays: the oldest).
    pub fn absorb(&mut self, b: &ArchivedEventBatch<'_>) {
        if self.is_empty() {
            self.first_ingress_ns = b.first_ingress_ns.to_native();
        }
        let room = PENDING_MAX.saturating_sub(self.trades.len() + self.bars.len());
        let lost = (b.trades.len() + b.bars.len()).saturating_sub(room);
        if lost > 0 {
            self.lost += lost as u64;
        } else {
            self.trades.extend(b.trades.iter().map(native_trade));
            self.bars.extend(b.bars.iter().map(native_bar));
        }
        self.bbos.extend(b.bbos.iter().map(|q| {
            Bbo::new(
                q.locate.to_native(),
                q.timestamp.to_native(),
                native_quote(&q.bid),
                native_quote(&q.ask),
            )
        }));
        self.depths.extend(b.depths.iter().map(|d| Depth {
            timestamp: d.timestamp.to_native(),
            bids: std::array::from_fn(|i| native_quote(&d.bids[i])),
            asks: std::array::from_fn(|i| native_quote(&d.asks[i])),
            locate: d.locate.to_native(),
            pad: [0; 6],
        }));
        self.listings.extend(b.listings.iter().map(|l| Listing {
            locate: l.locate.to_native(),
            stock: l.stock,
        }));
        if self.bbos.len() + self.depths.len() > PENDING_MAX {
            self.compact();
        }
    }

    /// Keeps only each instrument's latest BBO and depth (what a late reader needs).
    fn compact(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.bbos.reverse();
        self.bbos.retain(|q| seen.insert(q.locate));
        self.bbos.reverse();
        seen.clear();
        self.depths.reverse();
        self.depths.retain(|d| seen.insert(d.locate));
        self.depths.reverse();
    }
}

/// The consumer's end: a buffer link, the gateway's wake-up, and the batch gathering while
/// every buffer is in flight.
pub struct GatewayFeed {
    /// Batches to the gateway.
    pub tx: Sender<GatewayBatch>,
    /// Wakes the gateway's pump when it sleeps (an atomic store when it is awake).
    pub wake: Arc<tokio::sync::Notify>,
    pending: GatewayBatch,
    /// Batches that had to gather (no free buffer).
    pub gathered: u64,
}

/// The gateway's end.
pub struct GatewayIntake {
    /// Batches from the consumer.
    pub rx: Receiver<GatewayBatch>,
    /// Notified after each batch sent.
    pub wake: Arc<tokio::sync::Notify>,
}

/// A consumer -> gateway link.
pub fn link() -> (GatewayFeed, GatewayIntake) {
    let (tx, rx) = ring::link(BUFFERS, GatewayBatch::default);
    let wake = Arc::new(tokio::sync::Notify::new());
    (
        GatewayFeed {
            tx,
            wake: Arc::clone(&wake),
            pending: GatewayBatch::default(),
            gathered: 0,
        },
        GatewayIntake { rx, wake },
    )
}

impl GatewayFeed {
    /// Hands `b`'s events to the gateway, if it carries any; never waits.
    pub fn send(&mut self, b: &ArchivedEventBatch<'_>) {
        if !GatewayBatch::wanted(b) {
            return;
        }
        self.pending.absorb(b);
        if !self.flush() {
            self.gathered += 1;
        }
    }

    /// Sends what is pending if a buffer is free; true when nothing is left pending.
    pub fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let Some(mut g) = self.tx.try_take() else {
            return false;
        };
        g.clear();
        std::mem::swap(&mut g, &mut self.pending);
        self.tx.send(g);
        self.wake.notify_one();
        true
    }

    /// Sends what is pending, waiting for a buffer (the feed's end: the consumer has nothing
    /// else to do).
    pub fn finish(&mut self) {
        while !self.flush() {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// A quote in native form.
pub fn native_quote(q: &ArchivedQuote) -> Quote {
    Quote {
        price: q.price.to_native(),
        shares: q.shares.to_native(),
        orders: q.orders.to_native(),
    }
}

/// A trade in native form.
pub fn native_trade(t: &shards::events::ArchivedTrade) -> Trade {
    Trade {
        locate: t.locate.to_native(),
        timestamp: t.timestamp.to_native(),
        match_number: t.match_number.to_native(),
        price: t.price.to_native(),
        shares: t.shares.to_native(),
        side: t.side,
        printable: t.printable,
        kind: match t.kind {
            ArchivedTradeKind::Executed => TradeKind::Executed,
            ArchivedTradeKind::ExecutedWithPrice => TradeKind::ExecutedWithPrice,
            ArchivedTradeKind::NonDisplayed => TradeKind::NonDisplayed,
            ArchivedTradeKind::Cross => TradeKind::Cross,
        },
    }
}

/// A bar in native form.
pub fn native_bar(x: &shards::bars::ArchivedBar) -> Bar {
    Bar {
        locate: x.locate.to_native(),
        interval_s: x.interval_s.to_native(),
        start: x.start.to_native(),
        open: x.open.to_native(),
        high: x.high.to_native(),
        low: x.low.to_native(),
        close: x.close.to_native(),
        volume: x.volume.to_native(),
        notional: x.notional.to_native(),
        trades: x.trades.to_native(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::batch::{self, Buf, EventBatch};
    use shards::events::{Bbo, Quote};

    fn event_batch(locate: u16, n: u64) -> Buf {
        let t = crate::gateway::testing::trade(locate, n);
        let q = Quote {
            shares: n,
            price: 100,
            orders: 1,
        };
        let ev = EventBatch {
            shard: 0,
            seq: n,
            first_ingress_ns: n,
            last: false,
            checkpoint: 0,
            trades: &[t],
            bbos: &[Bbo::new(locate, n, q, q)],
            bars: &[],
            breaks: &[],
            listings: &[],
            states: &[],
            depths: &[],
        };
        batch::write(&ev, Buf::new())
    }

    #[test]
    fn with_every_buffer_in_flight_batches_gather_and_the_consumer_never_waits() {
        let (mut feed, mut intake) = link();
        let mut n = 0;
        for _ in 0..BUFFERS + 3 {
            n += 1;
            feed.send(batch::read_events(&event_batch(1, n)).unwrap());
        }
        assert_eq!(feed.gathered, 3, "the last three found no free buffer");
        let first = intake.rx.try_recv().unwrap();
        assert_eq!(first.trades[0].match_number, 1);
        intake.rx.give_back(first);
        assert!(feed.flush(), "a buffer came home: what gathered goes");
        let mut last = None;
        while let Some(b) = intake.rx.try_recv() {
            last = Some((b.trades.len(), b.first_ingress_ns, b.lost));
            intake.rx.give_back(b);
        }
        let gathered = BUFFERS as u64 + 1;
        assert_eq!(
            last,
            Some((3, gathered, 0)),
            "three batches' trades, the oldest's time"
        );
    }

    #[test]
    fn a_gathered_batch_keeps_each_instruments_latest_bbo_and_counts_lost_trades() {
        let mut g = GatewayBatch::default();
        for n in 0..(PENDING_MAX as u64 + 10) {
            g.absorb(batch::read_events(&event_batch((n % 3) as u16, n)).unwrap());
        }
        assert_eq!(g.trades.len(), PENDING_MAX);
        assert_eq!(g.lost, 10);
        assert!(g.bbos.len() < PENDING_MAX, "compacted");
        let latest = g
            .bbos
            .iter()
            .filter(|q| q.locate == 1)
            .map(|q| q.timestamp)
            .max();
        let want = (0..PENDING_MAX as u64 + 10).filter(|n| n % 3 == 1).max();
        assert_eq!(latest, want, "the latest BBO survives compaction");
    }
}
