//! The books against a plain model: a map of live orders, aggregated at the end. Random flows mix
//! valid operations with references the book has never seen and oversized executions and cancels;
//! generated uniform sessions, bent with price jumps and sub-penny prices, give deep ladders,
//! window moves and long-lived orders far from the top.

use proptest::prelude::*;
use shards::book::{Books, SideKind, MAX_REF};
use shards::events::EventLog;
use shards::itch::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
struct ModelOrder {
    locate: u16,
    side: u8,
    price: u32,
    shares: u32,
    seq: u64,
}

#[derive(Default)]
struct Model {
    live: BTreeMap<u64, ModelOrder>,
    volume: BTreeMap<u16, u64>,
    seq: u64,
    next_ref: u64,
    next_match: u64,
}

/// One price level: (price, shares, references oldest first).
type LevelView = (u32, u64, Vec<u64>);
/// (locate, side) -> levels, best first.
type Ladders = BTreeMap<(u16, u8), Vec<LevelView>>;
/// (arrival sequence, reference, shares) of a queued order.
type Queued = (u64, u64, u32);

const STOCKS: [&[u8; 8]; 3] = [b"AAA     ", b"BBB     ", b"CCC     "];

fn h(locate: u16, ts: u64) -> Header {
    Header {
        locate,
        tracking: 0,
        timestamp: ts,
    }
}

impl Model {
    /// Turns raw random numbers into one message that makes sense against the model, applies it
    /// to the model, and returns it.
    fn step(&mut self, op: u8, a: u64, b: u32, c: u32, ts: u64) -> OwnedMessage {
        let pick = |live: &BTreeMap<u64, ModelOrder>| {
            (!live.is_empty()).then(|| *live.keys().nth(a as usize % live.len()).unwrap())
        };
        let locate = (a % 3) as u16 + 1;
        match (op % 8, pick(&self.live)) {
            (0..=2, _) | (_, None) => {
                self.next_ref += 1 + (a % 3);
                let side = if b % 2 == 0 { b'B' } else { b'S' };
                let price = 10_000 + (c % 40) * 100;
                let shares = 1 + b % 500;
                self.seq += 1;
                let o = ModelOrder {
                    locate,
                    side,
                    price,
                    shares,
                    seq: self.seq,
                };
                self.live.insert(self.next_ref, o);
                let stock = *STOCKS[locate as usize - 1];
                AddOrder {
                    header: h(locate, ts),
                    order_ref: self.next_ref,
                    side,
                    shares,
                    stock,
                    price,
                }
                .into()
            }
            (3, Some(r)) => {
                let o = self.live.remove(&r).unwrap();
                OrderDelete {
                    header: h(o.locate, ts),
                    order_ref: r,
                }
                .into()
            }
            (4, Some(r)) => {
                // Sometimes more than the order holds: the order leaves, the anomaly is counted.
                let o = self.live[&r];
                let n = 1 + b % (o.shares + o.shares / 4 + 1);
                self.next_match += 1;
                *self.volume.entry(o.locate).or_default() += n as u64;
                self.reduce(r, n);
                OrderExecuted {
                    header: h(o.locate, ts),
                    order_ref: r,
                    executed_shares: n,
                    match_number: self.next_match,
                }
                .into()
            }
            (5, Some(r)) => {
                let o = self.live[&r];
                let n = 1 + b % (o.shares + 2);
                self.reduce(r, n);
                OrderCancel {
                    header: h(o.locate, ts),
                    order_ref: r,
                    cancelled_shares: n,
                }
                .into()
            }
            (6, Some(r)) => {
                let o = self.live.remove(&r).unwrap();
                self.next_ref += 1;
                self.seq += 1;
                let price = 10_000 + (c % 40) * 100;
                let shares = 1 + b % 500;
                self.live.insert(
                    self.next_ref,
                    ModelOrder {
                        price,
                        shares,
                        seq: self.seq,
                        ..o
                    },
                );
                OrderReplace {
                    header: h(o.locate, ts),
                    original_ref: r,
                    new_ref: self.next_ref,
                    shares,
                    price,
                }
                .into()
            }
            _ => {
                // A reference the book has never seen: counted, changes nothing.
                let order_ref = self.next_ref + 1_000_000 + a % 1000;
                OrderDelete {
                    header: h(locate, ts),
                    order_ref,
                }
                .into()
            }
        }
    }

    fn reduce(&mut self, r: u64, n: u32) {
        let o = self.live.get_mut(&r).unwrap();
        if n >= o.shares {
            self.live.remove(&r);
        } else {
            o.shares -= n;
        }
    }

    /// (locate, side) -> levels best first: (price, shares, refs oldest first).
    fn levels(&self) -> Ladders {
        let mut agg: BTreeMap<(u16, u8, u32), Vec<Queued>> = BTreeMap::new();
        for (r, o) in &self.live {
            agg.entry((o.locate, o.side, o.price))
                .or_default()
                .push((o.seq, *r, o.shares));
        }
        let mut out: Ladders = BTreeMap::new();
        for ((l, s, p), mut v) in agg {
            v.sort();
            let shares = v.iter().map(|x| x.2 as u64).sum();
            out.entry((l, s))
                .or_default()
                .push((p, shares, v.iter().map(|x| x.1).collect()));
        }
        for ((_, s), v) in out.iter_mut() {
            if *s == b'B' {
                v.reverse();
            }
        }
        out
    }
}

impl Model {
    /// Applies any message to the model, as the books must: only what changes live orders.
    fn apply(&mut self, m: &OwnedMessage) {
        match *m {
            OwnedMessage::AddOrder(a) => {
                self.rest(a.header.locate, a.order_ref, a.side, a.price, a.shares)
            }
            OwnedMessage::AddOrderMpid(a) => {
                self.rest(a.header.locate, a.order_ref, a.side, a.price, a.shares)
            }
            OwnedMessage::OrderExecuted(e) => self.take(e.order_ref, e.executed_shares),
            OwnedMessage::OrderExecutedWithPrice(e) => self.take(e.order_ref, e.executed_shares),
            OwnedMessage::OrderCancel(c) => self.take(c.order_ref, c.cancelled_shares),
            OwnedMessage::OrderDelete(d) => self.take(d.order_ref, u32::MAX),
            OwnedMessage::OrderReplace(u) => {
                if let Some(o) = self.live.remove(&u.original_ref) {
                    self.rest(o.locate, u.new_ref, o.side, u.price, u.shares);
                }
            }
            _ => {}
        }
    }

    fn rest(&mut self, locate: u16, order_ref: u64, side: u8, price: u32, shares: u32) {
        self.seq += 1;
        let seq = self.seq;
        self.live.entry(order_ref).or_insert(ModelOrder {
            locate,
            side,
            price,
            shares,
            seq,
        });
    }

    fn take(&mut self, order_ref: u64, shares: u32) {
        if self.live.contains_key(&order_ref) {
            self.reduce(order_ref, shares);
        }
    }
}

/// A generated uniform session, bent where the generator never goes: from message `jump_at`
/// on, every new price moves `jump` ticks (the books' windows must follow, and the orders left
/// behind rest far from the top for the rest of the day), and one add or replace in
/// `subpenny` (0: none) lands on a sub-penny price (its side leaves the cent grid).
fn bent_session(
    scope: shards::synth::Scope,
    messages: u64,
    seed: u64,
    jump_at: u64,
    jump: i32,
    subpenny: u64,
) -> Vec<OwnedMessage> {
    use shards::synth::{generate, GenConfig, Profile};
    let cfg = GenConfig {
        scope,
        messages,
        seed,
        profile: Profile::Uniform,
    };
    let bytes = generate(&cfg).unwrap();
    let mut out = Vec::new();
    let mut k = 0u64;
    walk(&bytes, false, |_, msg| {
        let mut m = decode(msg).unwrap().to_owned();
        let bend = |price: &mut u32| {
            if k >= jump_at {
                *price = (*price as i64 + jump as i64 * 100) as u32;
            }
            if subpenny > 0 && k % subpenny == seed % subpenny {
                *price += 1 + (k % 99) as u32;
            }
        };
        match &mut m {
            OwnedMessage::AddOrder(a) => bend(&mut a.price),
            OwnedMessage::AddOrderMpid(a) => bend(&mut a.price),
            OwnedMessage::OrderReplace(u) => bend(&mut u.price),
            _ => {}
        }
        out.push(m);
        k += 1;
    })
    .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Uniform sessions (deep ladders, victims anywhere in the book), with window moves,
    /// sub-penny prices and long-lived orders far from the top mixed in.
    #[test]
    fn books_equal_the_model_on_bent_uniform_sessions(
        seed in any::<u64>(),
        m7 in any::<bool>(),
        messages in 2_000u64..30_000,
        jump_at in 0.0f64..1.0,
        jump in -500i32..1_500,
        subpenny in prop_oneof![Just(0u64), 5u64..400],
    ) {
        let scope = if m7 { shards::synth::Scope::M7 } else { shards::synth::Scope::F2 };
        let session = bent_session(scope, messages, seed, (jump_at * messages as f64) as u64, jump, subpenny);
        let mut model = Model::default();
        let mut books = Books::default();
        let mut log = EventLog::default();
        let mut bytes = Vec::new();
        for (i, m) in session.iter().enumerate() {
            model.apply(m);
            bytes.clear();
            m.encode(&mut bytes);
            books.apply(&bytes, &mut log).unwrap();
            if i % 997 == 0 {
                prop_assert!(books.check_invariants().is_ok(), "after {i}: {:?}", books.check_invariants());
            }
        }
        prop_assert!(books.check_invariants().is_ok(), "{:?}", books.check_invariants());
        prop_assert_eq!(book_levels(&books), model.levels());
        prop_assert_eq!(books.live_orders(), model.live.len());
        for b in books.books() {
            if let Some(last) = log.bbos.iter().rev().find(|e| e.locate == b.locate) {
                prop_assert_eq!((last.bid, last.ask), b.bbo());
            }
        }
    }
}

fn book_levels(books: &Books) -> Ladders {
    let mut out = BTreeMap::new();
    for b in books.books() {
        for (kind, s) in [(SideKind::Bid, b'B'), (SideKind::Ask, b'S')] {
            let levels: Vec<_> = books
                .depth(b, kind)
                .map(|info| {
                    let queue = books.queue(b.locate, kind, info.price);
                    let refs: Vec<u64> = queue.iter().map(|o| o.order_ref).collect();
                    assert_eq!(info.orders as usize, refs.len());
                    (info.price, info.shares, refs)
                })
                .collect();
            if !levels.is_empty() {
                out.insert((b.locate, s), levels);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn books_equal_the_model(ops in prop::collection::vec((any::<u8>(), any::<u64>(), any::<u32>(), any::<u32>()), 1..600)) {
        let mut model = Model::default();
        let mut books = Books::default();
        let mut log = EventLog::default();
        let mut bytes = Vec::new();
        for (i, (op, a, b, c)) in ops.iter().enumerate() {
            let m = model.step(*op, *a, *b, *c, i as u64);
            bytes.clear();
            m.encode(&mut bytes);
            books.apply(&bytes, &mut log).unwrap();
            prop_assert!(books.check_invariants().is_ok(), "after op {i}: {:?}", books.check_invariants());
        }
        prop_assert_eq!(book_levels(&books), model.levels());
        prop_assert_eq!(books.live_orders(), model.live.len());
        for b in books.books() {
            prop_assert_eq!(b.stats.volume, model.volume.get(&b.locate).copied().unwrap_or(0));
        }
        let traded: u64 = log.trades.iter().map(|t| t.shares).sum();
        prop_assert_eq!(traded, model.volume.values().sum::<u64>());
        // Every BBO event reflects the book at that moment: the last one per instrument is the top now.
        for b in books.books() {
            if let Some(last) = log.bbos.iter().rev().find(|e| e.locate == b.locate) {
                prop_assert_eq!((last.bid, last.ask), b.bbo());
            }
        }
    }
}

/// Encodes `m` and applies it to `books`.
fn apply(m: OwnedMessage, books: &mut Books) {
    let mut buf = Vec::new();
    m.encode(&mut buf);
    books.apply(&buf, &mut ()).unwrap();
}

#[test]
fn unknown_references_are_counted_and_change_nothing() {
    let mut books = Books::default();
    let stock = *b"AAA     ";
    let add = AddOrder {
        header: h(1, 1),
        order_ref: 7,
        side: b'B',
        shares: 100,
        stock,
        price: 10_000,
    };
    apply(add.into(), &mut books);
    apply(
        OrderDelete {
            header: h(1, 2),
            order_ref: 8,
        }
        .into(),
        &mut books,
    );
    apply(
        OrderCancel {
            header: h(1, 2),
            order_ref: 9,
            cancelled_shares: 5,
        }
        .into(),
        &mut books,
    );
    apply(
        OrderExecuted {
            header: h(1, 2),
            order_ref: 10,
            executed_shares: 5,
            match_number: 1,
        }
        .into(),
        &mut books,
    );
    apply(
        OrderReplace {
            header: h(1, 2),
            original_ref: 11,
            new_ref: 12,
            shares: 5,
            price: 1,
        }
        .into(),
        &mut books,
    );
    apply(
        OrderDelete {
            header: h(9, 2),
            order_ref: 13,
        }
        .into(),
        &mut books,
    );
    let b = books.book(1).unwrap();
    assert_eq!(b.anomalies.unknown_ref, 4);
    assert_eq!(
        books.orphan_anomalies().unknown_ref,
        1,
        "locate 9 has no book"
    );
    assert_eq!(books.live_orders(), 1);
    assert_eq!(b.stats.trades, 0);
    // An execution larger than the order prints what the exchange reported and removes the order.
    apply(
        OrderExecuted {
            header: h(1, 3),
            order_ref: 7,
            executed_shares: 150,
            match_number: 2,
        }
        .into(),
        &mut books,
    );
    let b = books.book(1).unwrap();
    assert_eq!(b.anomalies.exec_exceeds_order, 1);
    assert_eq!((b.stats.trades, b.stats.volume), (1, 150));
    assert_eq!(books.live_orders(), 0);
    // A duplicate add is refused; a break of a remembered trade takes its volume back.
    apply(add.into(), &mut books);
    apply(add.into(), &mut books);
    apply(
        BrokenTrade {
            header: h(1, 4),
            match_number: 2,
        }
        .into(),
        &mut books,
    );
    apply(
        BrokenTrade {
            header: h(1, 4),
            match_number: 99,
        }
        .into(),
        &mut books,
    );
    let b = books.book(1).unwrap();
    assert_eq!(b.anomalies.duplicate_ref, 1);
    assert_eq!((b.stats.trades, b.stats.volume, b.stats.broken), (0, 0, 1));
    assert_eq!(b.anomalies.unknown_break, 1);
    books.check_invariants().unwrap();
}

#[test]
fn non_printable_executions_do_not_count_and_crosses_are_detected() {
    let mut books = Books::default();
    let stock = *b"AAA     ";
    apply(
        AddOrder {
            header: h(1, 1),
            order_ref: 1,
            side: b'B',
            shares: 100,
            stock,
            price: 10_100,
        }
        .into(),
        &mut books,
    );
    apply(
        AddOrder {
            header: h(1, 1),
            order_ref: 2,
            side: b'S',
            shares: 100,
            stock,
            price: 10_100,
        }
        .into(),
        &mut books,
    );
    assert_eq!(books.book(1).unwrap().anomalies.locked, 1);
    apply(
        AddOrder {
            header: h(1, 1),
            order_ref: 3,
            side: b'S',
            shares: 100,
            stock,
            price: 10_000,
        }
        .into(),
        &mut books,
    );
    assert_eq!(books.book(1).unwrap().anomalies.crossed, 1);
    let c = |printable, m| OrderExecutedWithPrice {
        header: h(1, 2),
        order_ref: 1,
        executed_shares: 10,
        match_number: m,
        printable,
        execution_price: 10_050,
    };
    apply(c(b'N', 5).into(), &mut books);
    apply(c(b'Y', 6).into(), &mut books);
    let b = books.book(1).unwrap();
    assert_eq!(
        (b.stats.trades, b.stats.volume, b.stats.non_printable),
        (1, 10, 1)
    );
    assert_eq!(b.stats.vwap(), Some(10_050));
    assert_eq!(books.depth(b, SideKind::Bid).next().unwrap().shares, 80);
    books.check_invariants().unwrap();
}

/// A level holds at most `u32::MAX` shares: an add or a replace that would pass it is refused
/// and counted, the level keeps what it had, and the refused reference is not live.
#[test]
fn an_add_past_a_full_level_is_refused_and_counted() {
    let mut books = Books::default();
    let stock = *b"AAA     ";
    let add = |order_ref, shares| AddOrder {
        header: h(1, 1),
        order_ref,
        side: b'B',
        shares,
        stock,
        price: 10_000,
    };
    apply(add(1, 3_000_000_000).into(), &mut books);
    apply(add(2, 1_294_967_295).into(), &mut books);
    apply(add(3, 1).into(), &mut books);
    let b = books.book(1).unwrap();
    assert_eq!(b.anomalies.level_full, 1);
    assert_eq!(books.live_orders(), 2);
    assert_eq!(b.top().0.shares, u32::MAX as u64);
    assert_eq!(books.order(3), None, "the refused order is not live");
    // A replace that would overfill the level is refused too; the original order has left.
    apply(
        OrderReplace {
            header: h(1, 2),
            original_ref: 2,
            new_ref: 4,
            shares: 1_294_967_296,
            price: 10_000,
        }
        .into(),
        &mut books,
    );
    let b = books.book(1).unwrap();
    assert_eq!(b.anomalies.level_full, 2);
    assert_eq!(b.top().0.shares, 3_000_000_000);
    assert_eq!((books.order(2), books.order(4)), (None, None));
    apply(add(5, 1_294_967_295).into(), &mut books);
    assert_eq!(books.book(1).unwrap().top().0.shares, u32::MAX as u64);
    books.check_invariants().unwrap();
}

/// A reference wider than a live order keeps is refused and counted, on an add and on a
/// replace; a message naming it later is an unknown reference, and nothing else changes.
#[test]
fn a_reference_too_large_to_keep_is_refused_and_counted() {
    let mut books = Books::default();
    let add = |order_ref| AddOrder {
        header: h(1, 1),
        order_ref,
        side: b'S',
        shares: 100,
        stock: *b"AAA     ",
        price: 10_100,
    };
    apply(add(MAX_REF + 1).into(), &mut books);
    apply(add(u64::MAX).into(), &mut books);
    apply(add(MAX_REF).into(), &mut books);
    let b = books.book(1).unwrap();
    assert_eq!(b.anomalies.ref_too_large, 2);
    assert_eq!(books.live_orders(), 1);
    assert_eq!(books.order(MAX_REF).map(|o| o.shares), Some(100));
    let replace = OrderReplace {
        header: h(1, 2),
        original_ref: MAX_REF,
        new_ref: MAX_REF + 5,
        shares: 50,
        price: 10_100,
    };
    apply(replace.into(), &mut books);
    apply(
        OrderDelete {
            header: h(1, 3),
            order_ref: MAX_REF + 1,
        }
        .into(),
        &mut books,
    );
    let b = books.book(1).unwrap();
    assert_eq!(b.anomalies.ref_too_large, 3, "the replace's new reference");
    assert_eq!(b.anomalies.unknown_ref, 1, "the refused add's reference");
    assert_eq!(books.live_orders(), 0, "the replaced order left");
    assert_eq!(b.top().1.orders, 0);
    books.check_invariants().unwrap();
}
