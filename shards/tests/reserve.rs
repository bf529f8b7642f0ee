//! Making a session's memory resident before its replay (`Books::reserve_for_session`): it
//! counts the directory right, changes nothing a replay computes, and leaves the replay with
//! the page faults of the tables that grow only (the hash, the deep vectors).

use rstest::rstest;
use shards::book::{listed_before_orders, Books, SideKind};
use shards::synth::{generate, GenConfig, Profile, Scope};

const FIXTURE: &[u8] = include_bytes!("data/ritch-ex20101224.itch50");

fn session(scope: Scope, profile: Profile, messages: u64) -> Vec<u8> {
    let cfg = GenConfig {
        scope,
        messages,
        seed: 3,
        profile,
    };
    generate(&cfg).expect("a valid configuration")
}

#[rstest]
#[case::m7(session(Scope::M7, Profile::Realistic, 20_000), 7)]
#[case::v3k(session(Scope::V3k, Profile::Uniform, 20_000), 3_500)]
#[case::ritch_bx_file(FIXTURE.to_vec(), 3)]
#[case::empty(Vec::new(), 0)]
#[case::not_itch(vec![0xAB; 4_096], 0)]
fn the_directory_before_the_first_order_is_counted(#[case] bytes: Vec<u8>, #[case] want: usize) {
    assert_eq!(listed_before_orders(&bytes), want);
}

#[test]
fn a_session_cut_inside_its_directory_counts_what_is_there() {
    let whole = session(Scope::V3k, Profile::Deep, 20_000);
    let (mut pos, mut seen) = (0, 0);
    while seen < 1_000 {
        let (msg, next) = shards::itch::frame_at(&whole, pos).expect("a whole frame");
        seen += (msg[0] == b'R') as usize;
        pos = next;
    }
    // Cut one byte into the next frame: the truncated frame ends the count.
    assert_eq!(listed_before_orders(&whole[..pos + 1]), 1_000);
}

/// Minor page faults this thread has taken so far (`/proc/thread-self/stat`, field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("procfs");
    // The command name (field 2) may hold spaces; count fields after its closing paren.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    rest.split(' ')
        .nth(7)
        .expect("field 10")
        .parse()
        .expect("a count")
}

/// Replays `bytes` into fresh books, reserved first or not; returns the books and the page
/// faults the replay alone took.
fn replayed(bytes: &[u8], reserve: bool) -> (Books, u64) {
    let mut books = Books::default();
    if reserve {
        books.reserve_for_session(bytes);
    }
    let before = minor_faults();
    books
        .replay(bytes, false, &mut (), |_, _| {})
        .expect("a clean session");
    (books, minor_faults() - before)
}

#[rstest]
#[case::v3k_uniform(Profile::Uniform)]
#[case::v3k_deep(Profile::Deep)]
fn a_reserved_replay_ends_in_the_same_books_with_fewer_faults(#[case] profile: Profile) {
    let bytes = session(Scope::V3k, profile, 600_000);
    let (plain, plain_faults) = replayed(&bytes, false);
    let (reserved, reserved_faults) = replayed(&bytes, true);
    assert_eq!(reserved.live_orders(), plain.live_orders());
    assert_eq!(reserved.by_type(), plain.by_type());
    assert_eq!(reserved.books().len(), plain.books().len());
    for (a, b) in reserved.books().iter().zip(plain.books()) {
        assert_eq!((a.top(), a.stats), (b.top(), b.stats), "book {}", a.locate);
        for kind in [SideKind::Bid, SideKind::Ask] {
            let ours: Vec<_> = reserved.depth(a, kind).collect();
            assert_eq!(
                ours,
                plain.depth(b, kind).collect::<Vec<_>>(),
                "book {}",
                a.locate
            );
        }
    }
    // 3,500 books' windows (8 KiB a book: 14 huge pages, or 7,000 small ones where THP is
    // off) and the ring's doublings fault nothing in once reserved; what is left is the
    // allocator's (the deep vectors).
    let windows = (3_500 * 8_192usize).div_ceil(2 << 20) as u64;
    assert!(
        reserved_faults + windows <= plain_faults,
        "{reserved_faults} faults reserved, {plain_faults} not"
    );
}
