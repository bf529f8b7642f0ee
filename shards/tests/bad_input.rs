//! Framing under bad input: every failure names its offset; `skip_corrupt` resynchronises and
//! counts. Nothing here may panic.

use shards::book::Books;
use shards::itch::{walk, FrameErrorKind};
use shards::synth::{generate, GenConfig, Profile, Scope};

fn session() -> Vec<u8> {
    generate(&GenConfig {
        scope: Scope::F2,
        messages: 5_000,
        seed: 3,
        profile: Profile::Realistic,
    })
    .unwrap()
}

/// Offsets of every frame.
fn offsets(b: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    walk(b, false, |off, _| v.push(off)).unwrap();
    v
}

#[test]
fn empty_input_has_no_frames() {
    let s = walk(&[], false, |_, _| panic!("no frame")).unwrap();
    assert_eq!((s.frames, s.bytes), (0, 0));
}

#[test]
fn truncated_last_message_names_its_offset() {
    let b = session();
    let last = *offsets(&b).last().unwrap();
    let cut = &b[..b.len() - 3];
    let e = walk(cut, false, |_, _| {}).unwrap_err();
    assert_eq!(e.offset, last as u64);
    assert!(matches!(e.kind, FrameErrorKind::Truncated { .. }));
    assert!(
        e.to_string().contains(&format!("byte offset {last}")),
        "{e}"
    );
    let s = walk(cut, true, |_, _| {}).unwrap();
    assert!(s.truncated_tail);
    assert_eq!(s.frames, 4_999);
    assert_eq!(s.skipped_bytes, (cut.len() - last) as u64);
    // A cut inside the length prefix too.
    let e = walk(&b[..last + 1], false, |_, _| {}).unwrap_err();
    assert_eq!(e.offset, last as u64);
}

#[test]
fn length_prefix_that_does_not_match_the_type() {
    let mut b = session();
    let off = offsets(&b)[1_000];
    b[off + 1] = b[off + 1].wrapping_add(1);
    let e = walk(&b, false, |_, _| {}).unwrap_err();
    assert_eq!(e.offset, off as u64);
    assert!(matches!(e.kind, FrameErrorKind::BadLength { .. }), "{e}");
    let mut seen = 0;
    let s = walk(&b, true, |_, _| seen += 1).unwrap();
    assert_eq!(s.corrupt_regions, 1);
    assert!(
        (4_990..5_000).contains(&seen),
        "resynchronised after the bad frame: {seen}"
    );
    assert_eq!(s.first_error.unwrap().offset, off as u64);
}

#[test]
fn unknown_type_byte() {
    let mut b = session();
    let off = offsets(&b)[2_000];
    b[off + 2] = b'z';
    let e = walk(&b, false, |_, _| {}).unwrap_err();
    assert_eq!(e.kind, FrameErrorKind::UnknownType(b'z'));
    assert!(e.to_string().contains("unknown message type 'z'"), "{e}");
    assert_eq!(walk(&b, true, |_, _| {}).unwrap().corrupt_regions, 1);
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x1234_5678_9abc_def0u64;
    for round in 0..200 {
        let len = (round * 37) % 4096;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut books = Books::default();
        let _ = walk(&bytes, false, |_, m| books.apply(m, &mut ()).unwrap());
        let s = walk(&bytes, true, |_, m| books.apply(m, &mut ()).unwrap()).unwrap();
        assert_eq!(s.bytes as usize, bytes.len(), "round {round}");
        books
            .check_invariants()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
}

#[test]
fn replay_applies_every_frame_before_a_framing_error() {
    // Large enough that prefetching is on when the error comes, so frames are in flight.
    let cfg = GenConfig {
        scope: Scope::V3k,
        messages: 600_000,
        seed: 9,
        profile: Profile::Deep,
    };
    let mut b = generate(&cfg).unwrap();
    let off = offsets(&b)[500_000];
    b[off + 2] = b'z';
    let mut books = Books::default();
    let e = books.replay(&b, false, &mut (), |_, _| {}).unwrap_err();
    assert_eq!(e.offset, off as u64);
    let applied: u64 = books.by_type().iter().sum();
    assert_eq!(applied, 500_000, "frames before the error are applied");
    books.check_invariants().unwrap();
}
