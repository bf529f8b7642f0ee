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

#[test]
fn mix_is_close_to_a_nasdaq_day() {
    let bytes = generate(&cfg(Scope::N100, 2_000_000, 11, Profile::Realistic)).unwrap();
    let books = replay(&bytes);
    let by_type = books.by_type();
    let total: u64 = by_type.iter().sum();
    let share = |t: u8| by_type[TYPE_INDEX[t as usize] as usize] as f64 / total as f64 * 100.0;
    for (t, want, tol) in [
        (b'A', 43.0, 1.5),
        (b'D', 42.0, 1.5),
        (b'U', 9.0, 0.8),
        (b'E', 2.5, 0.5),
        (b'X', 1.2, 0.4),
        (b'I', 1.3, 0.3),
        (b'P', 0.5, 0.2),
        (b'F', 0.5, 0.2),
    ] {
        let got = share(t);
        assert!(
            (got - want).abs() <= tol,
            "{}: {got:.2}% vs {want}%",
            t as char
        );
    }
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

#[test]
fn too_few_messages_is_an_error() {
    let e = generate(&cfg(Scope::V3k, 100, 1, Profile::Realistic)).unwrap_err();
    assert!(e.to_string().contains("7006"), "{e}");
}

#[test]
fn pipelined_replay_equals_sequential_replay() {
    use shards::book::{Pipeline, SideKind};
    use shards::events::EventLog;
    let bytes = generate(&cfg(Scope::V3k, 600_000, 9, Profile::Deep)).unwrap();
    let (mut seq, mut seq_log) = (Books::default(), EventLog::default());
    walk(&bytes, false, |_, m| seq.apply(m, &mut seq_log).unwrap()).unwrap();
    let (mut pip, mut pip_log) = (Books::default(), EventLog::default());
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
