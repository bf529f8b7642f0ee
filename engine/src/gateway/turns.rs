//! The gateway's turns on a CPU it shares with the data path (the plan's `turn_ns`).
//!
//! On a small machine the plan puts the gateway on the ingress's CPU. The ingress yields in
//! its short waits so that the gateway can run; but a yielding thread is not a waking one, so
//! once the gateway has the CPU the scheduler leaves it there for up to a whole slice,
//! milliseconds, while the feed's next batch waits. So the gateway yields after a socket write
//! or a batch taken once it has held the CPU for its turn, and the ingress gets the CPU within
//! a turn rather than a slice. Why the turn is 50 us and the gateway at full priority:
//! [`GATEWAY_TURN_NS`](crate::runtime::plan::GATEWAY_TURN_NS).
//!
//! Owns the gateway thread's turn clock (thread-local: the gateway is one thread). Never
//! yields on a CPU of its own (turn 0): there is no one to hand it to, and a `sched_yield` is
//! a system call (148 ns here).

use crate::runtime::clock;
use std::cell::Cell;

thread_local! {
    /// (yield after this many ns of turn, 0: never; when the turn began).
    static TURN: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Makes this thread yield after `turn_ns` of holding the CPU (0: never).
pub fn share(turn_ns: u64) {
    TURN.with(|t| t.set((turn_ns, clock::now_ns())));
}

/// A point where the gateway may hand the CPU back: it does if its turn is over. Returns
/// whether it yielded.
pub fn checkpoint() -> bool {
    TURN.with(|t| {
        let (turn, began) = t.get();
        if !over(turn, began, clock::now_ns()) {
            return false;
        }
        std::thread::yield_now();
        t.set((turn, clock::now_ns()));
        true
    })
}

/// Whether a turn of `turn` ns (0: endless) that began at `began` is over at `now`.
fn over(turn: u64, began: u64, now: u64) -> bool {
    turn != 0 && now.saturating_sub(began) >= turn
}

/// The gateway is about to wait (nothing to do): the next turn starts when it wakes.
pub fn rest() {
    TURN.with(|t| {
        let (turn, _) = t.get();
        if turn != 0 {
            t.set((turn, clock::now_ns()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::endless(0, 0, u64::MAX, false)]
    #[case::just_begun(50_000, 1_000, 1_000, false)]
    #[case::one_ns_short(50_000, 1_000, 50_999, false)]
    #[case::at_its_end(50_000, 1_000, 51_000, true)]
    #[case::clock_before_the_start(50_000, 1_000, 10, false)]
    fn a_turn_is_over_at_its_length(
        #[case] turn: u64,
        #[case] began: u64,
        #[case] now: u64,
        #[case] is: bool,
    ) {
        assert_eq!(over(turn, began, now), is);
    }

    #[test]
    fn a_thread_that_does_not_share_never_yields() {
        share(0);
        assert!((0..1000).all(|_| !checkpoint()));
    }

    #[test]
    fn a_sharing_thread_yields_when_its_turn_is_over_and_starts_another() {
        share(u64::MAX);
        assert!(!checkpoint(), "an endless turn is never over");
        TURN.with(|t| t.set((1, 0)));
        assert!(
            checkpoint(),
            "a turn of 1 ns that began at the epoch is over"
        );
        let (_, began) = TURN.with(Cell::get);
        assert!(began > 0, "the yield began a new turn");
    }
}
