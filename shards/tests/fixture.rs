//! Conformance against RITCH's sampled BX file: exactly the counts its authors expect.

use shards::book::Books;
use shards::itch::{decode, walk, Message, ALL_TYPES};
use std::collections::BTreeMap;

const FIXTURE: &[u8] = include_bytes!("data/ritch-ex20101224.itch50");

#[test]
fn message_counts_per_type() {
    let mut by_type = BTreeMap::new();
    let stats = walk(FIXTURE, false, |_, m| {
        *by_type.entry(m[0]).or_insert(0u64) += 1
    })
    .unwrap();
    assert_eq!(stats.frames, 12_012);
    assert_eq!(stats.bytes, 465_048);
    let want: BTreeMap<u8, u64> = [
        (b'S', 6),
        (b'R', 3),
        (b'H', 3),
        (b'A', 4997),
        (b'F', 3),
        (b'E', 198),
        (b'X', 45),
        (b'D', 1745),
        (b'U', 12),
        (b'P', 5000),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_type, want);
    assert!(by_type.keys().all(|t| ALL_TYPES.contains(t)));
}

#[test]
fn fields_decode_to_the_expected_values() {
    let mut events = Vec::new();
    let mut directory = Vec::new();
    let mut states = Vec::new();
    let (mut buy, mut sell) = (0, 0);
    let mut adds_by_locate = BTreeMap::new();
    let mut trades_by_locate = BTreeMap::new();
    let mut trade_sides = BTreeMap::new();
    let (mut with_match, mut with_new_ref) = (0, 0);
    walk(FIXTURE, false, |_, m| match decode(m).unwrap() {
        Message::SystemEvent(v) => events.push(v.event_code()),
        Message::StockDirectory(v) => {
            directory.push((v.locate(), shards::symbol::trim(&v.stock()).to_string()))
        }
        Message::StockTradingAction(v) => states.push(v.trading_state()),
        Message::AddOrder(v) => {
            if v.side() == b'B' {
                buy += 1
            } else {
                sell += 1
            }
            *adds_by_locate.entry(v.locate()).or_insert(0) += 1;
        }
        Message::AddOrderMpid(v) => {
            if v.side() == b'B' {
                buy += 1
            } else {
                sell += 1
            }
            *adds_by_locate.entry(v.locate()).or_insert(0) += 1;
        }
        Message::Trade(v) => {
            *trades_by_locate.entry(v.locate()).or_insert(0) += 1;
            *trade_sides.entry(v.side()).or_insert(0) += 1;
        }
        Message::OrderExecuted(v) => with_match += (v.match_number() > 0) as u32,
        Message::OrderReplace(v) => with_new_ref += (v.new_ref() > 0 && v.price() > 0) as u32,
        _ => {}
    })
    .unwrap();
    assert_eq!(events, b"OSQMEC");
    let names: Vec<(u16, &str)> = directory.iter().map(|(l, s)| (*l, s.as_str())).collect();
    assert_eq!(names, [(1, "ALC"), (2, "BOB"), (3, "CHAR")]);
    assert_eq!(states, b"TTT");
    assert_eq!((buy, sell), (2_432, 2_568));
    assert_eq!(
        adds_by_locate.into_iter().collect::<Vec<_>>(),
        [(1, 950), (2, 2_482), (3, 1_568)]
    );
    assert_eq!(
        trades_by_locate.into_iter().collect::<Vec<_>>(),
        [(1, 1_885), (2, 1_658), (3, 1_457)]
    );
    assert_eq!(trade_sides.into_iter().collect::<Vec<_>>(), [(b'B', 5_000)]);
    assert_eq!((with_match, with_new_ref), (198, 12));
}

#[test]
fn books_survive_a_sampled_day_with_counted_anomalies() {
    let mut books = Books::default();
    walk(FIXTURE, false, |_, m| books.apply(m, &mut ()).unwrap()).unwrap();
    books.check_invariants().unwrap();
    assert_eq!(books.books().len(), 3);
    // An independent model: a set of live references; count the modifications it cannot place.
    let mut live = std::collections::HashSet::new();
    let mut unknown = 0u64;
    walk(FIXTURE, false, |_, m| match decode(m).unwrap() {
        Message::AddOrder(v) => drop(live.insert(v.order_ref())),
        Message::AddOrderMpid(v) => drop(live.insert(v.order_ref())),
        Message::OrderDelete(v) => unknown += !live.remove(&v.order_ref()) as u64,
        Message::OrderCancel(v) => unknown += !live.contains(&v.order_ref()) as u64,
        Message::OrderExecuted(v) => unknown += !live.contains(&v.order_ref()) as u64,
        Message::OrderReplace(v) => {
            if live.remove(&v.original_ref()) {
                live.insert(v.new_ref());
            } else {
                unknown += 1;
            }
        }
        _ => {}
    })
    .unwrap();
    let a = books.total_anomalies();
    assert!(unknown > 0);
    assert_eq!(a.unknown_ref, unknown, "{a:?}");
    // The sample leaves crossed books: each book enters the crossed state at least once.
    assert!(a.crossed >= 3, "{a:?}");
    let trades: u64 = books.books().iter().map(|b| b.stats.trades).sum();
    assert!(trades >= 5_000, "every P prints: {trades}");
    for b in books.books() {
        assert!(b.stats.vwap().is_some());
        assert_eq!(b.trading_state, b'T');
    }
}
