//! What the consumer hands the gateway: each event batch's trades, BBO changes, closed bars,
//! depths and listings, copied out of the shard's archived batch into owned vectors that travel
//! a buffer link and come back emptied, so no batch allocates once the vectors have grown.
//!
//! Owns the copy from archived to native form and the link's ends. Never blocks the consumer
//! on a client: the gateway takes a batch into its clients' queues and gives it straight back.

use crate::runtime::batch::ArchivedEventBatch;
use crate::runtime::ring::{self, Receiver, Sender};
use shards::bars::Bar;
use shards::events::{
    ArchivedQuote, ArchivedTradeKind, Bbo, Depth, Listing, Quote, Trade, TradeKind,
};
use std::sync::Arc;

/// Buffers on the consumer -> gateway link: enough to ride out a gateway turn that serialised a
/// burst for many clients without the consumer waiting.
pub const BUFFERS: usize = 256;

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

    /// Replaces the contents with `b`'s events.
    pub fn fill(&mut self, b: &ArchivedEventBatch<'_>) {
        self.first_ingress_ns = b.first_ingress_ns.to_native();
        self.trades.clear();
        self.trades.extend(b.trades.iter().map(native_trade));
        self.bbos.clear();
        self.bbos.extend(b.bbos.iter().map(|q| {
            Bbo::new(
                q.locate.to_native(),
                q.timestamp.to_native(),
                native_quote(&q.bid),
                native_quote(&q.ask),
            )
        }));
        self.bars.clear();
        self.bars.extend(b.bars.iter().map(native_bar));
        self.depths.clear();
        self.depths.extend(b.depths.iter().map(|d| Depth {
            timestamp: d.timestamp.to_native(),
            bids: std::array::from_fn(|i| native_quote(&d.bids[i])),
            asks: std::array::from_fn(|i| native_quote(&d.asks[i])),
            locate: d.locate.to_native(),
            pad: [0; 6],
        }));
        self.listings.clear();
        self.listings.extend(b.listings.iter().map(|l| Listing {
            locate: l.locate.to_native(),
            stock: l.stock,
        }));
    }
}

/// The consumer's end: a buffer link and the gateway's wake-up.
pub struct GatewayFeed {
    /// Batches to the gateway.
    pub tx: Sender<GatewayBatch>,
    /// Wakes the gateway's pump when it sleeps (an atomic store when it is awake).
    pub wake: Arc<tokio::sync::Notify>,
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
        },
        GatewayIntake { rx, wake },
    )
}

impl GatewayFeed {
    /// Hands `b`'s events to the gateway, if it carries any. Waits only while every buffer
    /// is in flight (counted on the link): the gateway never waits on a client.
    pub fn send(&mut self, b: &ArchivedEventBatch<'_>) {
        if !GatewayBatch::wanted(b) {
            return;
        }
        let mut g = self.tx.take();
        g.fill(b);
        self.tx.send(g);
        self.wake.notify_one();
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
