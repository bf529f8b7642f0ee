//! Generator invariants: deterministic for a seed, chunking-independent, never crossed or locked,
//! every reference added before it is used, system events in order, and a NASDAQ-like mix.

use shards::book::Books;
use shards::itch::{walk, ALL_TYPES, TYPE_INDEX};
use shards::synth::{generate, GenConfig, Generator, Profile, Scope};

fn cfg(scope: Scope, messages: u64, seed: u64, profile: Profile) -> GenConfig {
    GenConfig {
        scope,
        messages,
        seed,
        profile,
    }
}

fn replay(bytes: &[u8]) -> Books {
    let mut books = Books::default();
    walk(bytes, false, |off, msg| {
        books
            .apply(msg, &mut ())
            .unwrap_or_else(|e| panic!("offset {off}: {e}"));
    })
    .expect("generated framing is valid");
    books
}

#[test]
fn same_seed_same_bytes_whatever_the_chunking() {
    for scope in Scope::ALL {
        let c = cfg(scope, 60_000, 42, Profile::Realistic);
        let whole = generate(&c).unwrap();
        let mut g = Generator::new(&c).unwrap();
        let mut chunked = Vec::new();
        let mut k = 1;
        while g.fill(&mut chunked, k) > 0 {
            k = k * 3 + 1;
        }
        assert_eq!(whole, chunked, "{scope:?}");
        assert_ne!(
            whole,
            generate(&cfg(scope, 60_000, 43, Profile::Realistic)).unwrap()
        );
    }
}

#[test]
fn books_never_cross_and_every_reference_is_known() {
    for (seed, scope, profile) in [
        (1, Scope::F2, Profile::Realistic),
        (2, Scope::M7, Profile::Realistic),
        (3, Scope::M7, Profile::Deep),
        (4, Scope::N100, Profile::Deep),
        (5, Scope::V3k, Profile::Realistic),
        (6, Scope::M7, Profile::Uniform),
        (7, Scope::V3k, Profile::Uniform),
    ] {
        let bytes = generate(&cfg(scope, 400_000, seed, profile)).unwrap();
        let books = replay(&bytes);
        books
            .check_invariants()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let a = books.total_anomalies();
        assert_eq!(a.total(), 0, "seed {seed} {scope:?} {profile:?}: {a:?}");
        assert!(
            !books.index_scrambled(),
            "seed {seed}: a day's references keep probe runs short"
        );
        assert_eq!(books.books().len(), scope.instruments());
    }
}

#[test]
fn exact_message_count_and_day_structure() {
    let c = cfg(Scope::M7, 50_000, 7, Profile::Realistic);
    let bytes = generate(&c).unwrap();
    let mut events = Vec::new();
    let mut n = 0u64;
    let mut first_order = None;
    let mut directory = 0;
    let mut last_ts = 0;
    walk(&bytes, false, |_, msg| {
        let ts = shards::itch::decode(msg).unwrap().header().timestamp;
        assert!(ts >= last_ts, "timestamps never go back");
        last_ts = ts;
        match msg[0] {
            b'S' => events.push(msg[11]),
            b'R' | b'H' => {
                assert!(first_order.is_none(), "directory before the first order");
                directory += 1;
            }
            b'A' | b'F' if first_order.is_none() => first_order = Some(n),
            _ => {}
        }
        n += 1;
    })
    .unwrap();
    assert_eq!(n, c.messages);
    assert_eq!(events, b"OSQMEC");
    assert_eq!(directory, 14);
}

/// Each type's share of messages (percent, from `share`) is within its tolerance of the wanted.
fn assert_shares(share: impl Fn(u8) -> f64, want: &[(u8, f64, f64)]) {
    for &(t, want, tol) in want {
        let got = share(t);
        assert!(
            (got - want).abs() <= tol,
            "{}: {got:.2}% vs {want}%",
            t as char
        );
    }
}

#[test]
fn mix_is_close_to_a_nasdaq_day() {
    let bytes = generate(&cfg(Scope::N100, 2_000_000, 11, Profile::Realistic)).unwrap();
    let books = replay(&bytes);
    let by_type = books.by_type();
    let total: u64 = by_type.iter().sum();
    let share = |t: u8| by_type[TYPE_INDEX[t as usize] as usize] as f64 / total as f64 * 100.0;
    assert_shares(
        share,
        &[
            (b'A', 43.0, 1.5),
            (b'D', 42.0, 1.5),
            (b'U', 9.0, 0.8),
            (b'E', 2.5, 0.5),
            (b'X', 1.2, 0.4),
            (b'I', 1.3, 0.3),
            (b'P', 0.5, 0.2),
            (b'F', 0.5, 0.2),
        ],
    );
    for t in [b'C', b'L', b'Q'] {
        assert!(share(t) > 0.0, "{} occurs", t as char);
    }
    assert!(ALL_TYPES.len() == 23);
    // Activity is skewed: the busiest tenth of names carries over a third of the trades.
    let mut trades: Vec<u64> = books.books().iter().map(|b| b.stats.trades).collect();
    trades.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = trades[..10].iter().sum();
    assert!(top * 3 > trades.iter().sum::<u64>(), "{trades:?}");
    // Prices move: highs differ from lows.
    assert!(
        books
            .books()
            .iter()
            .filter(|b| b.stats.high > b.stats.low + 500)
            .count()
            > 10
    );
}

/// What a session's order flow looks like from outside: per-type shares, per-instrument
/// message counts, where in its book's live orders (0 the newest, 1 the oldest) the order each
/// delete names stood, and each instrument's span of add prices in ticks.
struct Flow {
    share: std::collections::HashMap<u8, f64>,
    per_locate: Vec<u64>,
    delete_rank: Vec<f64>,
    price_span: Vec<u32>,
}

/// Live orders: reference -> (locate, shares), and each book's references, oldest first.
#[derive(Default)]
struct LiveOrders {
    orders: std::collections::HashMap<u64, (u16, u32)>,
    by_book: std::collections::HashMap<u16, std::collections::BTreeSet<u64>>,
}

impl LiveOrders {
    fn add(&mut self, r: u64, locate: u16, shares: u32) {
        self.orders.insert(r, (locate, shares));
        self.by_book.entry(locate).or_default().insert(r);
    }

    fn take(&mut self, r: u64, shares: u32) {
        let o = self.orders.get_mut(&r).unwrap();
        o.1 -= shares.min(o.1);
        if o.1 == 0 {
            self.by_book.get_mut(&o.0).unwrap().remove(&r);
            self.orders.remove(&r);
        }
    }

    /// Where `r` stands among its book's live orders: 0 the newest, 1 the oldest (`None` when
    /// it is alone).
    fn rank(&self, r: u64) -> Option<f64> {
        let book = &self.by_book[&self.orders[&r].0];
        (book.len() > 1).then(|| book.range(r + 1..).count() as f64 / (book.len() - 1) as f64)
    }
}

fn flow(bytes: &[u8]) -> Flow {
    use shards::itch::{decode, Message};
    use std::collections::HashMap;
    let (mut count, mut n) = (HashMap::<u8, u64>::new(), 0u64);
    let mut per_locate = vec![0u64; 1 << 16];
    let mut live = LiveOrders::default();
    let mut delete_rank = Vec::new();
    let mut span = HashMap::<u16, (u32, u32)>::new();
    walk(bytes, false, |_, msg| {
        let m = decode(msg).unwrap();
        *count.entry(msg[0]).or_default() += 1;
        n += 1;
        let l = m.header().locate;
        per_locate[l as usize] += 1;
        match m {
            Message::AddOrder(v) => {
                live.add(v.order_ref(), l, v.shares());
                let (p, s) = (v.price(), span.entry(l).or_insert((v.price(), v.price())));
                *s = (s.0.min(p), s.1.max(p));
            }
            Message::AddOrderMpid(v) => live.add(v.order_ref(), l, v.shares()),
            Message::OrderDelete(v) => {
                delete_rank.extend(live.rank(v.order_ref()));
                live.take(v.order_ref(), u32::MAX);
            }
            Message::OrderExecuted(v) => live.take(v.order_ref(), v.executed_shares()),
            Message::OrderExecutedWithPrice(v) => live.take(v.order_ref(), v.executed_shares()),
            Message::OrderCancel(v) => live.take(v.order_ref(), v.cancelled_shares()),
            Message::OrderReplace(v) => {
                live.take(v.original_ref(), u32::MAX);
                live.add(v.new_ref(), l, v.shares());
            }
            _ => {}
        }
    })
    .unwrap();
    Flow {
        share: count
            .into_iter()
            .map(|(t, c)| (t, c as f64 * 100.0 / n as f64))
            .collect(),
        // Locate 0 carries the system events; 1.. the instruments.
        per_locate: per_locate[1..].iter().copied().filter(|&c| c > 0).collect(),
        delete_rank,
        price_span: span.values().map(|(lo, hi)| (hi - lo) / 100).collect(),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn the_uniform_profile_is_the_peers_shape() {
    let c = cfg(Scope::V3k, 2_000_000, 12, Profile::Uniform);
    let bytes = generate(&c).unwrap();
    let f = flow(&bytes);
    assert_shares(
        |t| f.share[&t],
        &[
            (b'A', 40.0, 1.0),
            (b'F', 4.0, 0.4),
            (b'D', 42.0, 1.0),
            (b'U', 9.0, 0.5),
            (b'E', 2.5, 0.3),
            (b'X', 1.2, 0.2),
            (b'P', 1.0, 0.2),
        ],
    );
    // Every instrument equally busy: 3,500 counts of about 570 stay within a third of it.
    assert_eq!(f.per_locate.len(), 3_500);
    let avg = f.per_locate.iter().sum::<u64>() as f64 / 3_500.0;
    let (lo, hi) = (f.per_locate.iter().min(), f.per_locate.iter().max());
    assert!(
        *lo.unwrap() as f64 > 0.67 * avg && (*hi.unwrap() as f64) < 1.33 * avg,
        "{lo:?}..{hi:?} around {avg}"
    );
    // Deletes name any live order, young or old alike: on average from the middle.
    let r = mean(&f.delete_rank);
    assert!((0.45..0.55).contains(&r), "mean delete rank {r}");
    // Adds land within 200 ticks of a fixed mid: no instrument's adds span more than 401 ticks.
    let widest = f.price_span.iter().max();
    assert!(f.price_span.iter().all(|&s| s <= 401), "{widest:?}");
    let live = replay(&bytes).live_orders();
    assert!((28_000..48_000).contains(&live), "{live} live orders");
}

#[test]
fn a_realistic_day_deletes_young_orders() {
    let f = flow(&generate(&cfg(Scope::M7, 1_000_000, 12, Profile::Realistic)).unwrap());
    let r = mean(&f.delete_rank);
    assert!(r < 0.3, "mean delete rank {r}");
}

#[test]
fn too_few_messages_is_an_error() {
    let e = generate(&cfg(Scope::V3k, 100, 1, Profile::Realistic)).unwrap_err();
    assert!(e.to_string().contains("7006"), "{e}");
}

#[test]
fn pipelined_replay_equals_sequential_replay() {
    use shards::book::{Pipeline, Prefetch, SideKind};
    use shards::events::EventLog;
    let bytes = generate(&cfg(Scope::V3k, 600_000, 9, Profile::Deep)).unwrap();
    let (mut seq, mut seq_log) = (Books::default(), EventLog::default());
    walk(&bytes, false, |_, m| seq.apply(m, &mut seq_log).unwrap()).unwrap();
    let (mut pip, mut pip_log) = (Books::default(), EventLog::default());
    // Always, not measured: this compares results, whatever timing would have chosen.
    pip.set_prefetch(Prefetch::Always);
    let mut pipe = Pipeline::default();
    let mut switched_on = false;
    walk(&bytes, false, |_, m| {
        pipe.push(&mut pip, m, &mut pip_log);
        switched_on |= pipe.prefetching();
    })
    .unwrap();
    pipe.finish(&mut pip, &mut pip_log);
    assert!(switched_on, "the session grows past the prefetch threshold");
    pip.check_invariants().unwrap();
    assert_eq!(seq_log.trades, pip_log.trades);
    assert_eq!(seq_log.bbos, pip_log.bbos);
    for (a, b) in seq.books().iter().zip(pip.books()) {
        assert_eq!(
            (a.locate, a.stats, a.anomalies),
            (b.locate, b.stats, b.anomalies)
        );
        for kind in [SideKind::Bid, SideKind::Ask] {
            assert!(
                seq.depth(a, kind).eq(pip.depth(b, kind)),
                "{} {kind:?}",
                a.symbol_str()
            );
        }
    }
}

#[test]
fn prices_move_like_a_day() {
    // The boundary may wander 300 ticks from the reference price, so a $500 name can move at
    // most 0.6%; cheaper names move further. A real day moves large caps 1-3%.
    for profile in [Profile::Realistic, Profile::Deep] {
        let books = replay(&generate(&cfg(Scope::M7, 1_000_000, 21, profile)).unwrap());
        let ranges: Vec<(String, f64)> = books
            .books()
            .iter()
            .map(|b| {
                let s = &b.stats;
                (
                    b.symbol_str().to_string(),
                    (s.high - s.low) as f64 / s.vwap().unwrap() as f64,
                )
            })
            .collect();
        assert!(
            ranges.iter().all(|(_, r)| *r > 0.003 && *r < 0.08),
            "{profile:?}: {ranges:?}"
        );
        assert!(
            ranges.iter().filter(|(_, r)| *r > 0.01).count() >= 3,
            "{profile:?}: {ranges:?}"
        );
    }
}
