//! What the consumer hands the gateway: each event batch's trades, BBO changes, closed bars,
//! depths and listings, copied out of the shard's archived batch into owned vectors that travel
//! a buffer link and come back emptied, so no batch allocates once the vectors have grown.
//!
//! Owns the copy from archived to native form, the link's ends, and the turns a gateway on the
//! consumer's CPU is owed when it falls behind ([`Turns`]). Never makes the consumer wait for
//! the gateway: when every buffer is in flight (the gateway is starved of CPU), batches gather
//! in one pending batch where BBOs and depths keep only each instrument's latest, and trades
//! and bars past [`PENDING_MAX`] are counted as lost; the gateway turns a loss into a visible
//! `seq` gap, so clients resubscribe (measured with 100 clients on 2 CPUs, 2026-12-05: a
//! blocking hand-off stalled the consumer, then the shards and the ingress: e2e p90 457 ms).

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
    /// When the gateway shares this CPU: when it is owed a turn.
    pub turns: Turns,
}

/// How long the link holds untaken batches, without once emptying, before the gateway is owed
/// turns: 40 of its turns, longer than the rounds of writes to 100 clients at 1M msgs/s
/// (0.25-0.27 ms of CPU each) that a burst strings together. `bench --ws-clients 100`, m7,
/// 2026-12-08:
/// - at 1M msgs/s (3 rounds, 01:26), 2 ms against 1 ms and no turns: e2e p99 0.75-0.86 ms
///   against 0.93-1.63 and 0.75-0.84; deliver p99 2.1-2.8 ms against 2.7-16.7 and 2.1-8.3;
///   8-9 k turns in 4 s against 11-16 k;
/// - at 2.5M msgs/s (2 pairs, 01:28): 0 and 7 clients cut off against 100 and 100 without;
///   at 3M (2 pairs, 01:27) 100 and 10 against 1 ms's 100 and 100;
/// - with turns from every poll (00:25): 3 ms let the gateway fall 0.1 s behind at 3M msgs/s;
///   50 us (one turn) put e2e p99 at 1.25-1.79 ms at 1M against 0.88-0.96 without turns.
pub const STARVED_NS: u64 = 2_000_000;

/// The turns a gateway on the consumer's CPU is owed. The gateway hands the CPU back after
/// each of its turns (`gateway::turns`); without this, nothing handed it back the other way.
/// An ingress with under 300 ns to wait spins and never yields, so a woken gateway waited for
/// the scheduler's slice: at 3M msgs/s with 100 clients it had 13-26% of the shared CPU, fell
/// half a second behind and every client was cut off (m7, 2026-12-08 00:20-00:54, 5 runs).
///
/// The rule: once the link has held untaken batches for [`STARVED_NS`] without once emptying,
/// the consumer yields the CPU, at most once per turn of its own thread, until the gateway has
/// taken every batch; and only from CPU the ingress spares, waiting ahead of its schedule
/// (`ingress::Pacing::ahead`).
/// Turns given from every poll took the feed's own CPU at `--rate max`: 24-34 M msgs/s against
/// 37-39 without them, 38-40 with the gateway off (3 rounds, 01:03). From spare CPU only, at
/// `--rate max` none are given (39.2-40.2 against 40.7-42.9 M msgs/s, 2 rounds, 01:06). At
/// 2.5M-3M msgs/s, 0-10 clients were cut off in 7 runs of 11 and all 100 in 4, against all
/// 100 in 6 runs of 7 without turns (01:06-01:28): the ingress spares too little CPU there.
#[derive(Debug, Clone, Default)]
pub struct Turns {
    /// The gateway's turn, ns (0: it has a CPU of its own, nothing is owed).
    pub turn_ns: u64,
    /// Since when the link has held an untaken batch, as first seen (0: empty when last seen).
    waiting_since: u64,
    /// No turn is given before this (the giving thread's own turn since the last one).
    not_before: u64,
    /// Turns given.
    pub given: u64,
}

impl Turns {
    /// Turns of `turn_ns` for a gateway that shares the caller's CPU (0: it does not).
    pub fn of(turn_ns: u64) -> Self {
        Turns {
            turn_ns,
            ..Turns::default()
        }
    }

    /// Whether the gateway is owed a turn at `now`, with `unread` batches untaken.
    pub fn owed(&mut self, now: u64, unread: usize) -> bool {
        if unread == 0 {
            self.waiting_since = 0;
            return false;
        }
        if self.waiting_since == 0 {
            self.waiting_since = now;
        }
        now.saturating_sub(self.waiting_since) >= STARVED_NS && now >= self.not_before
    }

    /// A turn was given, ending at `now`: the giver keeps the CPU for a turn before the next.
    pub fn gave(&mut self, now: u64) {
        self.not_before = now + self.turn_ns;
        self.given += 1;
    }
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
            turns: Turns::default(),
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

    /// Yields this thread's CPU to a gateway that shares it and is owed a turn (see [`Turns`]);
    /// returns whether it did.
    pub fn give_turn(&mut self) -> bool {
        if self.turns.turn_ns == 0 {
            return false;
        }
        let unread = self.tx.unread();
        if !self.turns.owed(crate::runtime::clock::now_ns(), unread) {
            return false;
        }
        std::thread::yield_now();
        self.turns.gave(crate::runtime::clock::now_ns());
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

    /// A gateway that shares the CPU, with its turn: nothing is owed until a batch has waited
    /// untaken for [`STARVED_NS`].
    #[rstest::rstest]
    #[case::nothing_waits(0, STARVED_NS * 5, false)]
    #[case::waited_less_than_starved(3, STARVED_NS - 1, false)]
    #[case::waited_starved(3, STARVED_NS, true)]
    fn a_turn_is_owed_once_a_batch_waited_untaken_long_enough(
        #[case] unread: usize,
        #[case] waited: u64,
        #[case] owed: bool,
    ) {
        let mut t = Turns::of(50_000);
        let t0 = 1_000;
        assert!(!t.owed(t0, unread), "nothing is owed at the first sight");
        assert_eq!(t.owed(t0 + waited, unread), owed);
    }

    #[test]
    fn after_a_turn_the_giver_keeps_the_cpu_for_one_of_its_own() {
        let mut t = Turns::of(50_000);
        assert!(!t.owed(1, 1));
        let late = 1 + STARVED_NS;
        assert!(t.owed(late, 1));
        t.gave(late);
        assert!(!t.owed(late + 49_999, 1), "the giver's own turn first");
        assert!(t.owed(late + 50_000, 1));
        assert_eq!(t.given, 1);
    }

    #[test]
    fn a_gateway_that_took_every_batch_owes_the_wait_a_fresh_start() {
        let mut t = Turns::of(50_000);
        assert!(!t.owed(1, 1));
        assert!(!t.owed(2, 0), "every batch taken");
        assert!(!t.owed(STARVED_NS, 1), "the wait starts again");
        assert!(t.owed(2 * STARVED_NS, 1));
    }

    #[test]
    fn a_gateway_with_a_cpu_of_its_own_is_never_given_a_turn() {
        let (mut feed, _intake) = link();
        feed.send(batch::read_events(&event_batch(1, 1)).expect("a batch"));
        assert_eq!(feed.tx.unread(), 1, "the batch waits untaken");
        assert!(!feed.give_turn());
        assert_eq!(feed.turns.given, 0);
    }

    #[test]
    fn a_starved_gateway_on_this_cpu_is_given_a_turn() {
        let (mut feed, mut intake) = link();
        feed.turns = Turns::of(1);
        feed.send(batch::read_events(&event_batch(1, 1)).expect("a batch"));
        // The first look starts the wait; a look a starved wait later yields.
        assert!(!feed.give_turn());
        let since = crate::runtime::clock::now_ns();
        while crate::runtime::clock::now_ns() - since < STARVED_NS {
            std::hint::spin_loop();
        }
        assert!(feed.give_turn());
        assert_eq!(feed.turns.given, 1);
        let b = intake.rx.try_recv().expect("the batch");
        intake.rx.give_back(b);
        assert!(!feed.give_turn(), "nothing waits once the gateway took it");
    }
}
