//! The arbiter's cases, one per behaviour, and a seeded soak over lossy lines.

use super::*;
use rstest::rstest;
use shards::mold::{PacketWriter, Session};
use shards::synth::rng::Rng;

const A: usize = 0;
const B: usize = 1;
const R: usize = ANSWERS;

fn s1() -> Session {
    Session::parse("S1").unwrap()
}

/// The session an exchange restarted under.
fn s2() -> Session {
    Session::parse("S2").unwrap()
}

/// An Order Delete whose reference is its sequence number: valid ITCH, and it says where it was.
pub(crate) fn msg(seq: u64) -> [u8; 19] {
    let mut m = [0u8; 19];
    m[0] = b'D';
    m[11..19].copy_from_slice(&seq.to_be_bytes());
    m
}

fn pkt_of(session: Session, seq: u64, n: u64) -> Vec<u8> {
    let mut w = PacketWriter::new(session, mold::DEFAULT_MAX_PAYLOAD);
    w.start(seq);
    for s in seq..seq + n {
        assert!(w.push(&msg(s)));
    }
    w.finish().to_vec()
}

fn pkt(seq: u64, n: u64) -> Vec<u8> {
    pkt_of(s1(), seq, n)
}

fn hb(seq: u64) -> Vec<u8> {
    mold::heartbeat(&mut [0; 20], s1(), seq).to_vec()
}

fn eos(seq: u64) -> Vec<u8> {
    mold::end_of_session(&mut [0; 20], s1(), seq).to_vec()
}

#[derive(Default)]
struct Rec {
    got: Vec<u64>,
    requests: Vec<Request>,
    lost: Vec<(u64, u64)>,
    notes: Vec<String>,
}

impl Outlet for Rec {
    fn message(&mut self, seq: u64, m: &[u8]) {
        let r = u64::from_be_bytes(m[11..19].try_into().unwrap());
        assert_eq!(
            r, seq,
            "the message delivered is the one its sequence number names"
        );
        self.got.push(seq);
    }
    fn request(&mut self, r: Request) {
        self.requests.push(r);
    }
    fn lost(&mut self, from: u64, to: u64) {
        self.lost.push((from, to));
    }
    fn notice(&mut self, what: std::fmt::Arguments<'_>) {
        self.notes.push(what.to_string());
    }
}

fn arb(lines: usize) -> Arbiter {
    Arbiter::new(ArbiterConfig {
        lines,
        hold_packets: 16,
        ..ArbiterConfig::default()
    })
}

fn feed(a: &mut Arbiter, out: &mut Rec, line: usize, d: &[u8], now: u64) {
    a.datagram(line, d, now, out);
    a.check();
}

fn upto(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

#[test]
fn in_order_on_one_line_everything_is_applied_once() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 3), 1);
    feed(&mut a, &mut o, A, &pkt(4, 2), 2);
    assert_eq!(o.got, upto(5));
    assert_eq!((a.lines[A].first, a.recovery.gaps), (2, 0));
}

#[test]
fn the_second_line_is_late_or_duplicate_never_applied_twice() {
    let (mut a, mut o) = (arb(2), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 3), 1);
    feed(&mut a, &mut o, B, &pkt(1, 3), 2);
    feed(&mut a, &mut o, B, &pkt(4, 3), 3);
    feed(&mut a, &mut o, A, &pkt(4, 3), 4);
    feed(&mut a, &mut o, A, &pkt(4, 3), 5);
    assert_eq!(o.got, upto(6));
    let (la, lb) = (a.lines[A], a.lines[B]);
    assert_eq!((la.first, la.late, la.duplicate), (1, 1, 1));
    assert_eq!((lb.first, lb.late, lb.duplicate), (1, 1, 0));
}

#[test]
fn a_gap_waits_for_the_reorder_window_then_is_asked_for_and_filled() {
    let (mut a, mut o) = (arb(2), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 2), 0);
    feed(&mut a, &mut o, A, &pkt(5, 2), 1_000);
    assert_eq!(o.got, upto(2), "held beyond the gap");
    a.tick(100_000, &mut o);
    assert!(
        o.requests.is_empty(),
        "inside the reorder window the other line may bring it"
    );
    a.tick(201_000, &mut o);
    assert_eq!(
        o.requests,
        vec![Request {
            session: s1(),
            seq: 3,
            count: 2
        }]
    );
    feed(&mut a, &mut o, R, &pkt(3, 2), 250_000);
    assert_eq!(o.got, upto(6));
    assert_eq!((a.recovery.gaps, a.recovery.filled, a.held()), (1, 1, 0));
    assert_eq!(a.fill_ns.len(), 1);
    let took = a.fill_ns.max() as f64;
    assert!(
        (took - 249_000.0).abs() < 249_000.0 * 0.01,
        "detected at 1 us, filled at 250 us: {took}"
    );
}

#[test]
fn the_other_line_fills_a_gap_without_a_request() {
    let (mut a, mut o) = (arb(2), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 2), 0);
    feed(&mut a, &mut o, A, &pkt(5, 2), 1);
    feed(&mut a, &mut o, B, &pkt(3, 2), 2);
    a.tick(1_000_000, &mut o);
    assert_eq!(o.got, upto(6));
    assert!(o.requests.is_empty());
}

#[test]
fn one_line_asks_at_once_and_retries_on_the_clock_then_declares_the_gap_lost() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    feed(&mut a, &mut o, A, &pkt(4, 2), 10);
    let retry = ArbiterConfig::default().retry_ns;
    let mut t = 10;
    for _ in 0..ArbiterConfig::default().max_retries {
        a.tick(t, &mut o);
        t += retry;
    }
    assert_eq!(
        o.requests.len(),
        10,
        "one outstanding request, resent each retry period"
    );
    assert!(o.requests.iter().all(|r| (r.seq, r.count) == (2, 2)));
    assert_eq!(o.got, vec![1]);
    a.tick(t, &mut o);
    a.check();
    assert_eq!(o.lost, vec![(2, 4)]);
    assert_eq!(
        o.got,
        vec![1, 4, 5],
        "past the lost range, the held packet is applied"
    );
    assert_eq!((a.recovery.lost_messages, a.recovery.lost_gaps), (2, 1));
}

#[test]
fn a_partial_answer_teaches_what_an_answer_holds_and_the_rest_is_asked_for_at_once() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    feed(&mut a, &mut o, A, &pkt(300, 1), 1);
    a.tick(2, &mut o);
    let asked: Vec<(u64, u16)> = o.requests.iter().map(|r| (r.seq, r.count)).collect();
    assert_eq!(asked, vec![(2, 100), (102, 100), (202, 98)], "the window");
    o.requests.clear();
    feed(&mut a, &mut o, R, &pkt(2, 60), 3);
    assert_eq!(*o.got.last().unwrap(), 61);
    let asked: Vec<(u64, u16)> = o.requests.iter().map(|r| (r.seq, r.count)).collect();
    assert_eq!(
        asked,
        vec![(62, 40)],
        "what the answer could not hold, at once"
    );
    assert_eq!(a.fit, 80, "halfway to what the answer held");
    o.requests.clear();
    // The server answers in the order it was asked.
    feed(&mut a, &mut o, R, &pkt(102, 60), 4);
    let asked: Vec<(u64, u16)> = o.requests.iter().map(|r| (r.seq, r.count)).collect();
    assert_eq!(asked, vec![(162, 40)]);
    assert_eq!(a.fit, 70);
    feed(&mut a, &mut o, R, &pkt(202, 60), 5);
    feed(&mut a, &mut o, R, &pkt(62, 40), 6);
    feed(&mut a, &mut o, R, &pkt(162, 40), 7);
    feed(&mut a, &mut o, R, &pkt(262, 38), 8);
    assert_eq!(o.got, upto(300));
    assert!(a.caught_up());
}

#[test]
fn the_front_gap_is_asked_a_window_at_a_time_and_the_window_slides_with_each_answer() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    feed(&mut a, &mut o, A, &pkt(10_002, 1), 1);
    a.fit = 50;
    a.tick(2, &mut o);
    let window = ArbiterConfig::default().request_window;
    assert_eq!(o.requests.len(), window);
    for (i, r) in o.requests.iter().enumerate() {
        assert_eq!((r.seq, r.count), (2 + 50 * i as u64, 50), "request {i}");
    }
    o.requests.clear();
    feed(&mut a, &mut o, R, &pkt(2, 50), 3);
    // A whole answer: one request out for the one answered, asking for an eighth more.
    assert_eq!(a.fit, 57);
    let asked: Vec<(u64, u16)> = o.requests.iter().map(|r| (r.seq, r.count)).collect();
    assert_eq!(asked, vec![(2 + 50 * window as u64, 57)]);
    assert_eq!(a.recovery.lost_gaps, 0);
}

#[test]
fn an_answer_that_passes_an_unanswered_request_has_it_asked_again_at_once() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    feed(&mut a, &mut o, A, &pkt(402, 1), 1);
    a.fit = 50;
    a.tick(2, &mut o);
    o.requests.clear();
    // The answer to (2, 50) is lost; the one to (52, 50) arrives and is held.
    feed(&mut a, &mut o, R, &pkt(52, 50), 3);
    let asked: Vec<(u64, u16)> = o.requests.iter().map(|r| (r.seq, r.count)).collect();
    assert_eq!(
        asked[0],
        (2, 50),
        "asked again without waiting for the retry"
    );
    assert_eq!(a.held(), 2, "the answer and the line's packet");
    feed(&mut a, &mut o, R, &pkt(2, 50), 4);
    assert_eq!(o.got, upto(101));
}

/// A restart's gap fills while the line runs ahead and fills the hold: the gaps beyond it are
/// not asked while their answers would find no room, so no retry is spent on them and
/// nothing is declared lost while the server answers everything.
#[test]
fn a_gap_beyond_a_full_hold_waits_unasked_and_is_never_declared_lost() {
    let mut a = Arbiter::new(ArbiterConfig {
        lines: 1,
        hold_packets: 16,
        request_window: 1,
        ..ArbiterConfig::default()
    });
    let mut o = Rec::default();
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    // The line resumes at 1,000: [2, 1000) is the restart's gap.
    let mut seq = 1_000;
    let mut now = 10;
    let retry = ArbiterConfig::default().retry_ns;
    let mut line = |a: &mut Arbiter, o: &mut Rec, now: u64| {
        feed(a, o, A, &pkt(seq, 1), now);
        seq += 1;
    };
    for _ in 0..40 {
        line(&mut a, &mut o, now);
    }
    assert!(a.recovery.hold_full > 0, "the line has overrun the hold");
    // The server answers only the front gap, slowly: one answer every retry period.
    for _ in 0..3 * ArbiterConfig::default().max_retries {
        a.tick(now, &mut o);
        let asked = std::mem::take(&mut o.requests);
        let front = a.next();
        for r in asked.iter().filter(|r| r.seq == front) {
            feed(
                &mut a,
                &mut o,
                R,
                &pkt(r.seq, (r.count as u64).min(20)),
                now + 1,
            );
        }
        line(&mut a, &mut o, now + 2);
        now += retry;
    }
    assert!(o.lost.is_empty(), "declared lost: {:?}", o.lost);
    while !a.caught_up() {
        a.tick(now, &mut o);
        for r in std::mem::take(&mut o.requests) {
            feed(
                &mut a,
                &mut o,
                R,
                &pkt(r.seq, (r.count as u64).min(20)),
                now + 1,
            );
        }
        now += retry;
        assert!(now < 1_000 * retry, "never caught up");
    }
    assert_eq!(o.got, upto(seq - 1));
    assert!(o.lost.is_empty(), "declared lost: {:?}", o.lost);
}

#[test]
fn a_heartbeat_reveals_a_lost_tail_and_end_of_session_finishes_only_when_complete() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 2), 0);
    feed(&mut a, &mut o, A, &hb(3), 1);
    assert!(a.recovery.gaps == 0 && !a.done());
    feed(&mut a, &mut o, A, &eos(5), 2);
    assert_eq!(a.recovery.gaps, 1, "messages 3 and 4 exist but never came");
    assert!(!a.done(), "end of session does not skip what is missing");
    a.tick(3, &mut o);
    assert_eq!((o.requests[0].seq, o.requests[0].count), (3, 2));
    feed(&mut a, &mut o, R, &pkt(3, 2), 4);
    assert!(a.done());
    assert_eq!(o.got, upto(4));
}

#[test]
fn a_full_hold_buffer_drops_and_the_dropped_packets_are_asked_for() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    for i in 0..20u64 {
        feed(&mut a, &mut o, A, &pkt(3 + i, 1), 1 + i);
    }
    assert_eq!(
        a.recovery.hold_full, 8,
        "12 held, 8 dropped: a quarter of the hold is kept for answers"
    );
    assert_eq!(a.recovery.held_peak, 12);
    a.tick(100, &mut o);
    feed(&mut a, &mut o, R, &pkt(2, 1), 101);
    assert_eq!(*o.got.last().unwrap(), 14);
    a.tick(200, &mut o);
    let r = o.requests.last().unwrap();
    assert_eq!((r.seq, r.count), (15, 8));
    feed(&mut a, &mut o, R, &pkt(15, 8), 201);
    assert_eq!(o.got, upto(22));
}

#[test]
fn the_first_live_session_is_locked_and_others_are_counted() {
    let (mut a, mut o) = (arb(1), Rec::default());
    let old = Session::parse("OLD").unwrap();
    feed(
        &mut a,
        &mut o,
        A,
        mold::end_of_session(&mut [0; 20], old, 900),
        0,
    );
    assert_eq!(a.session(), None, "an ended session is not locked onto");
    feed(&mut a, &mut o, A, &pkt(1, 1), 1);
    feed(&mut a, &mut o, A, &pkt_of(old, 2, 1), 2);
    feed(&mut a, &mut o, A, &pkt(2, 1), 3);
    assert_eq!(a.session(), Some(s1()));
    assert_eq!(a.lines[A].other_session, 2);
    assert_eq!(o.got, upto(2));
}

#[test]
fn a_new_session_is_followed_once_the_locked_one_has_gone_silent() {
    let (mut a, mut o) = (arb(1), Rec::default());
    let new = s2();
    feed(&mut a, &mut o, A, &pkt(1, 2), 0);
    feed(&mut a, &mut o, A, &pkt(4, 1), 1);
    feed(&mut a, &mut o, A, &pkt_of(new, 1, 1), 2);
    assert_eq!(
        a.lines[A].other_session, 1,
        "not while the locked session is live"
    );
    let later = 2 + ArbiterConfig::default().liveness_ns;
    feed(&mut a, &mut o, A, &pkt_of(new, 1, 2), later);
    assert_eq!(a.session(), Some(new));
    assert_eq!(
        o.lost,
        vec![(3, 5)],
        "what the old session still owed is lost"
    );
    assert_eq!(o.got, vec![1, 2, 1, 2]);
    assert_eq!(a.recovery.session_changes, 1);
}

/// A receiver that reads its socket late reads the old session's last packets and the whole
/// of the new one at once, the new one's end of session included, all within the liveness
/// period of the old one's last packet: nothing more comes. Once the old one has been silent
/// that long, the new one is followed at a tick, its messages are asked for, and the run ends
/// at its end of session, with what the server no longer answers declared lost.
#[test]
fn a_new_session_read_all_at_once_with_the_old_one_is_followed_at_a_tick() {
    let (mut a, mut o) = (arb(1), Rec::default());
    let new = s2();
    let live = ArbiterConfig::default().liveness_ns;
    feed(&mut a, &mut o, A, &pkt(1, 2), 10);
    feed(&mut a, &mut o, A, &pkt_of(new, 1, 3), 11);
    feed(&mut a, &mut o, A, &pkt_of(new, 4, 2), 12);
    feed(
        &mut a,
        &mut o,
        A,
        mold::end_of_session(&mut [0; 20], new, 6),
        13,
    );
    assert_eq!(a.lines[A].other_session, 3);
    a.tick(10 + live - 1, &mut o);
    assert_eq!(
        a.session(),
        Some(s1()),
        "not before the old one has been silent"
    );
    a.tick(10 + live, &mut o);
    a.check();
    assert_eq!(a.session(), Some(new));
    assert_eq!(a.recovery.session_changes, 1);
    a.tick(10 + live + 1, &mut o);
    let asked: Vec<(u64, u16)> = o
        .requests
        .iter()
        .filter(|r| r.session == new)
        .map(|r| (r.seq, r.count))
        .collect();
    assert_eq!(
        asked.first(),
        Some(&(1, 5)),
        "the new session's messages are asked for"
    );
    let answer = pkt_of(new, 1, 5);
    feed(&mut a, &mut o, ANSWERS, &answer, 10 + live + 2);
    assert!(a.done(), "its end of session ends the run");
    assert_eq!(o.got, vec![1, 2, 1, 2, 3, 4, 5]);
}

/// A packet of another session heard before the locked one's last packet is not a reason to
/// follow it when the locked one later goes silent.
#[test]
fn another_session_heard_before_the_locked_ones_last_packet_is_not_followed() {
    let (mut a, mut o) = (arb(1), Rec::default());
    let new = s2();
    let live = ArbiterConfig::default().liveness_ns;
    feed(&mut a, &mut o, A, &pkt(1, 1), 10);
    feed(&mut a, &mut o, A, &pkt_of(new, 1, 1), 11);
    feed(&mut a, &mut o, A, &pkt(2, 1), 12);
    a.tick(12 + 2 * live, &mut o);
    assert_eq!(a.session(), Some(s1()));
    assert_eq!(a.recovery.session_changes, 0);
}

#[test]
fn a_configured_session_is_never_left() {
    let mut a = Arbiter::new(ArbiterConfig {
        lines: 1,
        session: Some(s1()),
        ..ArbiterConfig::default()
    });
    let mut o = Rec::default();
    let other = s2();
    feed(&mut a, &mut o, A, &pkt_of(other, 1, 1), 0);
    feed(&mut a, &mut o, A, &pkt_of(other, 1, 1), 10_000_000_000);
    assert_eq!(a.lines[A].other_session, 2);
    assert!(o.got.is_empty());
}

#[test]
fn a_message_that_is_not_itch_uses_up_its_sequence_number_and_is_counted() {
    let (mut a, mut o) = (arb(1), Rec::default());
    let mut w = PacketWriter::new(s1(), 1400);
    w.start(1);
    w.push(&msg(1));
    w.push(b"Zjunk");
    w.push(&msg(3));
    feed(&mut a, &mut o, A, w.finish(), 0);
    assert_eq!((o.got.clone(), a.next()), (vec![1, 3], 4));
    assert_eq!(a.malformed.bad_message, 1);
}

#[test]
fn a_sequence_far_beyond_the_window_is_malformed() {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    feed(&mut a, &mut o, A, &pkt(1 << 40, 1), 1);
    assert_eq!(a.malformed.far_sequence, 1);
    assert_eq!(a.recovery.gaps, 0);
}

#[rstest]
#[case::short(vec![0u8; 7])]
#[case::bad_session({ let mut d = pkt(1, 1); d[3] = b'-'; d })]
#[case::past_end({ let mut d = pkt(1, 1); d[21] = 200; d })]
#[case::count({ let mut d = pkt(1, 1); d[19] = 2; d })]
fn a_malformed_datagram_is_counted_and_changes_nothing(#[case] d: Vec<u8>) {
    let (mut a, mut o) = (arb(1), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    feed(&mut a, &mut o, A, &d, 1);
    feed(&mut a, &mut o, A, &pkt(2, 1), 2);
    assert_eq!(o.got, upto(2));
    assert_eq!((a.lines[A].malformed, a.recovery.gaps), (1, 0));
}

#[test]
fn a_silent_line_is_reported_and_a_dead_session_is_probed_past_its_end() {
    let (mut a, mut o) = (arb(2), Rec::default());
    feed(&mut a, &mut o, A, &pkt(1, 2), 1);
    feed(&mut a, &mut o, B, &pkt(1, 2), 1);
    let live = ArbiterConfig::default().liveness_ns;
    a.tick(1 + live, &mut o);
    assert_eq!((a.lines[A].silences, a.lines[B].silences), (1, 1));
    assert_eq!(
        o.requests,
        vec![Request {
            session: s1(),
            seq: 3,
            count: 100
        }]
    );
    assert_eq!(a.recovery.tail_probes, 1);
    feed(&mut a, &mut o, R, &pkt(3, 1), 2 + live);
    assert_eq!(o.got, upto(3), "the probe's answer is applied");
}

/// Two lines each dropping, reordering and duplicating at `pct` percent, a server that
/// answers every request: every message arrives once, in order. The seed is in the case name.
#[rstest]
fn lossy_lines_deliver_everything_once_in_order(
    #[values(1, 2, 3, 4, 5, 6, 7, 8)] seed: u64,
    #[values(1, 5, 30)] pct: u64,
) {
    let total = 3_000u64;
    let mut rng = Rng::new(seed);
    let mut packets = Vec::new();
    let mut s = 1;
    while s <= total {
        let n = (1 + rng.below(8)).min(total + 1 - s);
        packets.push((s, n));
        s += n;
    }
    let mut a = Arbiter::new(ArbiterConfig {
        lines: 2,
        hold_packets: 64,
        ..ArbiterConfig::default()
    });
    let mut o = Rec::default();
    let mut now = 0u64;
    let mut queue: Vec<(usize, Vec<u8>)> = Vec::new();
    for &(seq, n) in &packets {
        for line in [A, B] {
            if rng.below(100) < pct {
                continue;
            }
            let d = pkt(seq, n);
            if rng.below(100) < pct {
                queue.push((line, d.clone()));
            }
            if rng.below(100) < pct && !queue.is_empty() {
                // Reorder: this one goes before something sent earlier.
                let i = rng.below(queue.len() as u64) as usize;
                queue.insert(i, (line, d));
            } else {
                queue.push((line, d));
            }
        }
        if rng.below(4) == 0 {
            for (line, d) in queue.drain(..) {
                now += 1_000;
                a.datagram(line, &d, now, &mut o);
            }
            a.check();
        }
        now += 10_000;
        a.tick(now, &mut o);
        answer(&mut a, &mut o, now);
    }
    for (line, d) in queue.drain(..) {
        a.datagram(line, &d, now, &mut o);
    }
    a.datagram(A, &eos(total + 1), now, &mut o);
    while !a.done() {
        now += 30_000_000;
        a.tick(now, &mut o);
        answer(&mut a, &mut o, now);
        assert!(
            now < 100_000_000_000,
            "seed {seed} pct {pct}: recovery never finished"
        );
    }
    a.check();
    assert_eq!(o.got, upto(total), "seed {seed} pct {pct}");
    assert!(o.lost.is_empty(), "seed {seed} pct {pct}: {:?}", o.lost);
}

/// Answers the requests made so far from a perfect history, as the server would.
fn answer(a: &mut Arbiter, o: &mut Rec, now: u64) {
    let asked = std::mem::take(&mut o.requests);
    for r in asked {
        let n = (r.count as u64).min(3_001 - r.seq.min(3_001));
        if n > 0 {
            a.datagram(R, &pkt(r.seq, n.min(60)), now, o);
        }
    }
}

#[test]
fn an_ended_new_session_is_followed_once_the_locked_one_is_silent_and_asked_for_whole() {
    let (mut a, mut o) = (arb(1), Rec::default());
    let new = s2();
    feed(&mut a, &mut o, A, &pkt(1, 2), 0);
    let later = ArbiterConfig::default().liveness_ns;
    feed(
        &mut a,
        &mut o,
        A,
        mold::end_of_session(&mut [0; 20], new, 4),
        later,
    );
    assert_eq!(a.session(), Some(new));
    a.tick(later + 1, &mut o);
    let r = o.requests.last().unwrap();
    assert_eq!(
        (r.session, r.seq, r.count),
        (new, 1, 3),
        "the whole ended session"
    );
    feed(&mut a, &mut o, R, &pkt_of(new, 1, 3), later + 2);
    assert!(a.done());
    assert_eq!(o.got, vec![1, 2, 1, 2, 3]);
}

/// A restart: the arbiter resumes at 1 while the line is already at 20,001 and runs on, a
/// packet a tick; the server answers a tick later, losing `loss` percent of its answers, in
/// the order asked. Everything arrives once, in order, nothing is declared lost, and the
/// window fills the gap in far fewer rounds than one request per round trip would.
#[rstest]
fn a_restarts_gap_fills_while_the_line_runs_on(
    #[values(1, 2, 3, 4)] seed: u64,
    #[values(0, 5)] loss: u64,
) {
    let mut rng = Rng::new(seed);
    let mut a = Arbiter::new(ArbiterConfig {
        lines: 1,
        hold_packets: 256,
        ..ArbiterConfig::default()
    });
    let mut o = Rec::default();
    let mut line = 20_001u64;
    let mut now = 0u64;
    let mut pending: Vec<Request> = Vec::new();
    let mut ticks = 0u64;
    while !(a.caught_up() && a.next() > 20_000) {
        let n = 1 + rng.below(40);
        feed(&mut a, &mut o, A, &pkt(line, n), now);
        line += n;
        for r in std::mem::take(&mut pending) {
            if rng.below(100) >= loss {
                let n = (r.count as u64).min(line - r.seq).min(25 + rng.below(20));
                feed(&mut a, &mut o, R, &pkt(r.seq, n), now);
            }
        }
        now += 50_000;
        a.tick(now, &mut o);
        pending.append(&mut o.requests);
        ticks += 1;
        assert!(
            ticks < 20_000,
            "seed {seed} loss {loss}: never caught up: next {} held {} gaps {:?} flight {:?} fit {}",
            a.next(),
            a.held(),
            &a.gaps[..a.gaps.len().min(5)],
            a.flight.iter().take(5).collect::<Vec<_>>(),
            a.fit
        );
    }
    a.check();
    assert_eq!(o.got, upto(line - 1), "seed {seed} loss {loss}");
    assert!(o.lost.is_empty(), "seed {seed} loss {loss}: {:?}", o.lost);
    assert!(
        ticks < 400,
        "seed {seed} loss {loss}: {ticks} ticks to fill 20,000 messages"
    );
}

/// With no retries (a capture replayed: no one to ask), a gap is lost at its first tick and
/// what lies beyond it is applied, not held until the hold overflows.
#[test]
fn with_no_retries_a_gap_is_lost_at_once() {
    let mut a = Arbiter::new(ArbiterConfig {
        lines: 1,
        max_retries: 0,
        reorder_ns: 0,
        ..ArbiterConfig::default()
    });
    let mut o = Rec::default();
    feed(&mut a, &mut o, A, &pkt(1, 1), 0);
    feed(&mut a, &mut o, A, &pkt(3, 1), 1);
    a.tick(1, &mut o);
    assert_eq!(o.lost, vec![(2, 3)]);
    assert_eq!(o.got, vec![1, 3]);
}
