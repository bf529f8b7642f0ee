//! A checkpoint taken anywhere in a session, encoded, decoded and restored, gives books that go
//! on exactly as the originals: the same events for the rest of the session and the same state
//! at its end. Checked on the generator's three profiles and on RITCH's sampled BX file (a
//! shape we did not write). Damaged bytes are one clear error each.

use rstest::rstest;
use shards::bars::BarClock;
use shards::book::{Books, Capacity};
use shards::checkpoint::{self, Damage, ShardState};
use shards::events::EventLog;
use shards::itch::{decode, walk, Message};
use shards::synth::{generate, GenConfig, Profile, Scope};

const FIXTURE: &[u8] = include_bytes!("data/ritch-ex20101224.itch50");

/// Every message of a framed file, in order.
fn messages(file: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    walk(file, false, |_, m| out.push(m)).unwrap();
    out
}

fn session(scope: Scope, profile: Profile, seed: u64) -> Vec<u8> {
    generate(&GenConfig {
        scope,
        messages: 60_000,
        seed,
        profile,
    })
    .unwrap()
}

/// Books and 1-second bars fed the same messages, as a shard feeds them.
struct Shard {
    books: Books,
    bars: BarClock,
    log: EventLog,
    closed: Vec<shards::bars::Bar>,
}

impl Shard {
    fn apply(&mut self, m: &[u8]) {
        let d = decode(m).unwrap();
        let t = d.header().timestamp;
        self.bars.advance(t, |b| self.closed.push(*b));
        let before = self.log.trades.len();
        self.books.apply_decoded(&d, &mut self.log);
        for tr in &self.log.trades[before..] {
            if tr.printable {
                self.bars.trade(tr.locate, t, tr.price, tr.shares);
            }
        }
        let _ = matches!(d, Message::SystemEvent(_));
    }

    fn state(&mut self, applied: u64) -> ShardState {
        ShardState {
            shard: 0,
            shards: 1,
            applied,
            session: *b"          ",
            feed_time: 0,
            books: self.books.capture(),
            clocks: vec![self.bars.capture()],
        }
    }
}

fn fresh() -> Shard {
    Shard {
        books: Books::default(),
        bars: BarClock::new(1),
        log: EventLog::default(),
        closed: Vec::new(),
    }
}

fn restored(bytes: &[u8]) -> Shard {
    let s = checkpoint::decode(bytes).unwrap();
    Shard {
        books: Books::with_capacity(Capacity::default())
            .restore(&s.books)
            .unwrap(),
        bars: BarClock::restore(&s.clocks[0]).unwrap(),
        log: EventLog::default(),
        closed: Vec::new(),
    }
}

/// A checkpoint of `a` taken in slices as the engine takes it: begun now (after `applied`
/// messages), then a chunk at a time with `every` of `rest` applied between chunks. Returns the
/// file's bytes and how many of `rest` `a` applied meanwhile.
fn sliced(a: &mut Shard, applied: u64, rest: &[&[u8]], every: usize) -> (Vec<u8>, usize) {
    let mut head = a.state(applied);
    head.books = a.books.begin_capture();
    let books = std::mem::take(&mut head.books.books);
    let mut done = 0;
    while !a.books.capture_step(1) {
        for m in rest.iter().skip(done).take(every) {
            a.apply(m);
        }
        done = (done + every).min(rest.len());
    }
    let c = a.books.finish_capture().expect("complete");
    let mut e = checkpoint::Encoder::new(&head, 0);
    for i in 0..c.parts(&books) {
        e.part(&c.part(i, &books));
    }
    (e.finish(), done)
}

fn go_on_alike(name: &str, file: &[u8], cut_per_mille: usize) {
    let msgs = messages(file);
    let cut = msgs.len() * cut_per_mille / 1000;
    let (mut a, mut c) = (fresh(), fresh());
    for m in &msgs[..cut] {
        a.apply(m);
        c.apply(m);
    }
    // c stops at the cut and is captured at once; a goes on while its capture is sliced.
    let whole = c.state(cut as u64);
    assert_eq!(
        checkpoint::decode(&checkpoint::encode(&whole)).unwrap(),
        whole
    );
    let (bytes, ahead) = sliced(&mut a, cut as u64, &msgs[cut..], 3);
    assert_eq!(bytes.len() % checkpoint::BLOCK, 0);
    let mut b = restored(&bytes);
    assert_eq!(
        b.state(cut as u64),
        whole,
        "{name} at {cut}: the state restored from a sliced capture differs"
    );
    c.log = EventLog::default();
    c.closed.clear();
    for m in &msgs[cut..] {
        c.apply(m);
        b.apply(m);
    }
    for m in &msgs[cut + ahead..] {
        a.apply(m);
    }
    c.bars.flush(|x| c.closed.push(*x));
    b.bars.flush(|x| b.closed.push(*x));
    assert_eq!(c.log.trades, b.log.trades, "{name} at {cut}: trades after");
    assert_eq!(c.log.bbos, b.log.bbos, "{name} at {cut}: BBOs after");
    assert_eq!(c.log.breaks, b.log.breaks, "{name} at {cut}: breaks after");
    assert_eq!(c.closed, b.closed, "{name} at {cut}: bars after");
    let end = msgs.len() as u64;
    let last = c.state(end);
    assert_eq!(b.state(end), last, "{name} at {cut}: final state");
    assert_eq!(
        a.state(end),
        last,
        "{name} at {cut}: capturing changed the books"
    );
    b.books.check_invariants().unwrap();
}

#[rstest]
#[case::realistic_early("realistic", 50)]
#[case::realistic_mid("realistic", 500)]
#[case::deep_mid("deep", 500)]
#[case::uniform_late("uniform", 900)]
fn a_restored_shard_goes_on_like_the_original(#[case] profile: &str, #[case] cut: usize) {
    let p = match profile {
        "deep" => Profile::Deep,
        "uniform" => Profile::Uniform,
        _ => Profile::Realistic,
    };
    let seed = 17;
    let file = session(Scope::N100, p, seed);
    go_on_alike(&format!("n100 {profile} seed {seed}"), &file, cut);
}

#[rstest]
#[case::after_the_directory(1)]
#[case::mid_file(500)]
#[case::near_the_end(990)]
fn a_restored_shard_goes_on_like_the_original_on_ritch_bx(#[case] cut: usize) {
    go_on_alike("ritch bx", FIXTURE, cut);
}

fn sample() -> Vec<u8> {
    let file = session(Scope::M7, Profile::Realistic, 3);
    let msgs = messages(&file);
    let mut a = fresh();
    msgs[..20_000].iter().for_each(|m| a.apply(m));
    checkpoint::encode(&a.state(20_000))
}

#[rstest]
#[case::cut_mid_archive("cut")]
#[case::cut_in_header("header")]
#[case::flipped_byte("flip")]
#[case::foreign_magic("magic")]
#[case::other_version("version")]
fn damaged_bytes_are_one_clear_error(#[case] how: &str) {
    let mut b = sample();
    let want = match how {
        "cut" => {
            b.truncate(checkpoint::HEADER + 100);
            "truncated"
        }
        "header" => {
            b.truncate(20);
            "truncated"
        }
        "flip" => {
            b[checkpoint::HEADER + 7] ^= 0x10;
            "checksum"
        }
        "magic" => {
            b[0] = b'X';
            "not a tickcore checkpoint"
        }
        _ => {
            b[8] = 9;
            "not a tickcore checkpoint"
        }
    };
    let e = checkpoint::decode(&b).unwrap_err();
    assert!(e.to_string().contains(want), "{how}: {e}");
    assert!(
        !matches!(e, Damage::Invalid(_)),
        "{how}: caught before rkyv: {e}"
    );
}
