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

    fn state(&self, applied: u64) -> ShardState {
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

fn go_on_alike(name: &str, file: &[u8], cut_per_mille: usize) {
    let msgs = messages(file);
    let cut = msgs.len() * cut_per_mille / 1000;
    let mut a = fresh();
    msgs[..cut].iter().for_each(|m| a.apply(m));
    let bytes = checkpoint::encode(&a.state(cut as u64));
    assert_eq!(bytes.len() % checkpoint::BLOCK, 0);
    let mut b = restored(&bytes);
    assert_eq!(
        b.state(cut as u64),
        a.state(cut as u64),
        "{name} at {cut}: restored state differs"
    );
    a.log = EventLog::default();
    a.closed.clear();
    for m in &msgs[cut..] {
        a.apply(m);
        b.apply(m);
    }
    a.bars.flush(|x| a.closed.push(*x));
    b.bars.flush(|x| b.closed.push(*x));
    assert_eq!(a.log.trades, b.log.trades, "{name} at {cut}: trades after");
    assert_eq!(a.log.bbos, b.log.bbos, "{name} at {cut}: BBOs after");
    assert_eq!(a.log.breaks, b.log.breaks, "{name} at {cut}: breaks after");
    assert_eq!(a.closed, b.closed, "{name} at {cut}: bars after");
    let end = msgs.len() as u64;
    assert_eq!(b.state(end), a.state(end), "{name} at {cut}: final state");
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
