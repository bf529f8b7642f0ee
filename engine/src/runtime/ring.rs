//! Bounded single-producer/single-consumer rings, and the [`Link`] that carries reusable
//! buffers between two cores.
//!
//! A [`Link`] is two rings: filled buffers travel forward, emptied buffers travel back to their
//! producer, so steady state allocates nothing. The number of buffers bounds the link: when all
//! of them are in flight the producer waits (spins, then yields, then parks) and never drops.
//! Every wait is counted.
//!
//! Owns only indices and slots; never locks. Each index is written by one side and read by the
//! other (release/acquire). The consumer learns that a value has come from the slot itself,
//! which carries the number of the write that filled it, so one line crosses per value; the
//! producer caches the consumer's index and reads it only when its cached view runs out.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;

/// Pads to its own pair of cache lines (adjacent-line prefetch pulls lines in pairs).
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// One slot: a value and the number of the write that filled it, on a line of their own, so
/// that the consumer learns a value has come and reads it in one miss to the producer's core
/// (with a separate tail index it was two, one after the other: the index, then the slot).
#[repr(align(64))]
struct Slot<T> {
    /// Position + 1 of the value the slot holds (0: never written). A slot reused a lap later
    /// holds a number a whole capacity behind, so a stale one never matches.
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

struct Shared<T> {
    slots: Box<[Slot<T>]>,
    mask: usize,
    /// Next slot to read; written by the consumer only.
    head: Padded<AtomicUsize>,
    /// Next slot to write; written by the producer only. The consumer reads slots, not this;
    /// it serves [`Consumer::len`] and the parking protocol.
    tail: Padded<AtomicUsize>,
}

// SAFETY: a slot is written only by the producer while it is outside head..tail, and read only by
// the consumer while inside; the release store of the slot's `seq` (resp. of `head`) publishes
// the write (resp. the read) before the other side can see the slot change hands.
unsafe impl<T: Send> Sync for Shared<T> {}
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let (head, tail) = (*self.head.0.get_mut(), *self.tail.0.get_mut());
        for i in head..tail {
            // SAFETY: slots in head..tail hold initialised values no one else can reach now.
            unsafe { self.slots[i & self.mask].value.get_mut().assume_init_drop() };
        }
    }
}

/// The writing end of a ring.
pub struct Producer<T> {
    ring: Arc<Shared<T>>,
    tail: usize,
    head_seen: usize,
    /// Loads of the consumer's index (each a miss to the other core), for tests.
    head_loads: u64,
}

/// The reading end of a ring.
pub struct Consumer<T> {
    ring: Arc<Shared<T>>,
    head: usize,
}

/// A ring with room for `capacity` values (rounded up to a power of two).
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let ring = Arc::new(Shared {
        slots: (0..cap)
            .map(|_| Slot {
                seq: AtomicUsize::new(0),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect(),
        mask: cap - 1,
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
    });
    let p = Producer {
        ring: Arc::clone(&ring),
        tail: 0,
        head_seen: 0,
        head_loads: 0,
    };
    let c = Consumer { ring, head: 0 };
    (p, c)
}

impl<T: Send> Producer<T> {
    /// Appends `v`, or hands it back when the ring is full.
    #[inline]
    pub fn try_push(&mut self, v: T) -> Result<(), T> {
        let r = &*self.ring;
        if self.tail - self.head_seen > r.mask {
            self.head_seen = r.head.0.load(Ordering::Acquire);
            self.head_loads += 1;
            if self.tail - self.head_seen > r.mask {
                return Err(v);
            }
        }
        let slot = &r.slots[self.tail & r.mask];
        // SAFETY: the slot is outside head..tail, so the consumer does not touch it (see Shared).
        unsafe { (*slot.value.get()).write(v) };
        self.tail += 1;
        slot.seq.store(self.tail, Ordering::Release);
        r.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Values pushed and not yet taken (a snapshot; one load of the consumer's index).
    pub fn unread(&mut self) -> usize {
        self.head_seen = self.ring.head.0.load(Ordering::Acquire);
        self.head_loads += 1;
        debug_assert!(self.head_seen <= self.tail, "the consumer is never ahead");
        self.tail - self.head_seen
    }
}

impl<T: Send> Consumer<T> {
    /// Takes the oldest value, if any.
    #[inline]
    pub fn try_pop(&mut self) -> Option<T> {
        let r = &*self.ring;
        let slot = &r.slots[self.head & r.mask];
        if slot.seq.load(Ordering::Acquire) != self.head + 1 {
            return None;
        }
        // SAFETY: the slot holds write head + 1: initialised by the producer, released to us.
        let v = unsafe { (*slot.value.get()).assume_init_read() };
        self.head += 1;
        r.head.0.store(self.head, Ordering::Release);
        Some(v)
    }

    /// Asks for the line of the slot the next pop reads (a hint: it never faults or waits).
    #[inline]
    pub fn prefetch_next(&self) {
        let r = &*self.ring;
        shards::book::prefetch::touch(&r.slots[self.head & r.mask]);
    }

    /// Values waiting (a snapshot).
    pub fn len(&self) -> usize {
        self.ring.tail.0.load(Ordering::Acquire) - self.head
    }

    /// True when nothing is waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a side waits for the other: spin first (the other core is usually about to answer),
/// then yield, then park until woken.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    step: u32,
}

const SPINS: u32 = 64;
const YIELDS: u32 = 16;

impl Backoff {
    /// A fresh wait.
    pub fn new() -> Self {
        Backoff { step: 0 }
    }

    /// True once spinning and yielding are used up: the caller should park.
    pub fn should_park(&self) -> bool {
        self.step >= SPINS + YIELDS
    }

    /// Moves past the spinning steps (the caller yields instead), counting one step.
    pub fn skip_spins(&mut self) {
        self.step = self.step.max(SPINS).saturating_add(1);
    }

    /// One step of the wait short of parking.
    pub fn snooze(&mut self) {
        if self.step < SPINS {
            for _ in 0..(1 << (self.step / 8).min(6)) {
                std::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
        self.step = self.step.saturating_add(1);
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// A parked thread and whether it wants waking; the side that makes progress wakes it.
///
/// No wake-up is lost: the waiting side publishes `parked` and then checks for work, the
/// working side publishes its work and then checks `parked`, each with a full fence between
/// (Dekker's pattern; without the fence each could read the other's old value and the waiter
/// would sleep out its timeout). The fence drains the working side's store buffer, which
/// holds the ring slot it just wrote to a line the other core owns: 100-200 ns on this
/// project's VM. A waiting side that never parks ([`spin_only`](Self::spin_only): a core
/// with its CPU to itself) spares the working side both the fence and the load.
pub struct Waker {
    parked: AtomicBool,
    /// The waiting side never parks; set once, before or while the link runs.
    spins: AtomicBool,
    thread: std::sync::OnceLock<Thread>,
}

impl Waker {
    fn new() -> Self {
        Waker {
            parked: AtomicBool::new(false),
            spins: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        }
    }

    /// The waiting side promises never to park again. A working side that has not seen the
    /// promise yet only fences for nothing.
    pub fn spin_only(&self) {
        self.spins.store(true, Ordering::Release);
    }

    /// Whether the waiting side promised never to park.
    fn spins(&self) -> bool {
        self.spins.load(Ordering::Relaxed)
    }

    /// Parks the calling thread until [`wake`](Self::wake) or `timeout`, unless `ready()`
    /// already holds once the intent to park is published (so no wake-up is ever lost).
    pub fn park_unless(&self, ready: impl Fn() -> bool, timeout: std::time::Duration) {
        debug_assert!(
            !self.spins(),
            "a side that promised to spin parked: its wakes are skipped"
        );
        let _ = self.thread.set(std::thread::current());
        self.parked.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !ready() {
            std::thread::park_timeout(timeout);
        }
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Wakes the parked side, if it is parked. Call after publishing the work.
    #[inline]
    pub fn wake(&self) {
        if self.spins() {
            return;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }
}

/// A counter one side writes and any core reads, on lines of its own. A plain load and store,
/// not a locked add: it has one writer, and a locked add drains the writer's store buffer
/// (it was 91% of the ingress's `send` samples, v3k at 1M/s, 2026-12-06), and the three
/// counters on one line bounced it between the two cores on every batch.
#[derive(Default)]
pub struct Count(Padded<AtomicU64>);

impl Count {
    /// Adds one. Only the counter's one writer calls it.
    #[inline(always)]
    fn bump(&self) {
        let c = &self.0 .0;
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// The count (a snapshot).
    pub fn get(&self) -> u64 {
        self.0 .0.load(Ordering::Relaxed)
    }
}

/// Counters of one link, readable from any core.
#[derive(Default)]
pub struct LinkStats {
    /// Buffers sent (written by the producer).
    pub sent: Count,
    /// Times the producer found every buffer in flight and had to wait (the producer).
    pub full_waits: Count,
    /// Buffers the consumer has handed back: `sent - returned` are in flight (the consumer).
    pub returned: Count,
}

/// The producer's end of a link: takes empty buffers, sends filled ones.
pub struct Sender<B> {
    forward: Producer<B>,
    back: Consumer<B>,
    /// Woken when the consumer returns a buffer.
    pub(crate) producer_waker: Arc<Waker>,
    /// Woken when a buffer is sent.
    pub(crate) consumer_waker: Arc<Waker>,
    stats: Arc<LinkStats>,
    /// Buffers the link holds.
    buffers: usize,
}

/// The consumer's end of a link: receives filled buffers, returns them empty.
pub struct Receiver<B> {
    forward: Consumer<B>,
    back: Producer<B>,
    producer_waker: Arc<Waker>,
    consumer_waker: Arc<Waker>,
    stats: Arc<LinkStats>,
}

/// A link carrying `buffers` reusable buffers made by `make`.
pub fn link<B: Send>(buffers: usize, make: impl Fn() -> B) -> (Sender<B>, Receiver<B>) {
    let n = buffers.max(1);
    let (fp, fc) = ring(n);
    // Twice the buffers: most of them sit at home, so a return ring of exactly `n` looked
    // full to its producer after every return, and each return loaded the other core's head
    // index (a line it writes on every take): 12% of the shard's samples, m7 at 1M/s,
    // 2026-12-07. With room for 2n the cached head goes stale for n returns.
    let (mut bp, bc) = ring(2 * n);
    for _ in 0..n {
        if bp.try_push(make()).is_err() {
            unreachable!("the return ring holds every buffer");
        }
    }
    let pw = Arc::new(Waker::new());
    let cw = Arc::new(Waker::new());
    let stats = Arc::new(LinkStats::default());
    let s = Sender {
        forward: fp,
        back: bc,
        producer_waker: Arc::clone(&pw),
        consumer_waker: Arc::clone(&cw),
        stats: Arc::clone(&stats),
        buffers: n,
    };
    let r = Receiver {
        forward: fc,
        back: bp,
        producer_waker: pw,
        consumer_waker: cw,
        stats,
    };
    (s, r)
}

impl<B: Send> Sender<B> {
    /// An empty buffer if one is home, without waiting.
    #[inline]
    pub fn try_take(&mut self) -> Option<B> {
        self.back.try_pop()
    }

    /// An empty buffer, waiting (spin, yield, park) while all are in flight.
    pub fn take(&mut self) -> B {
        self.take_with(&mut || false, std::time::Duration::from_millis(1))
    }

    /// As [`take`](Self::take), running `idle` (another role's work on this CPU, which says
    /// whether it did any) while it waits; the wait starts over after work was done. Parks for
    /// at most `nap`: the buffer may be waiting on work that only `idle` does.
    pub fn take_with(&mut self, idle: &mut dyn FnMut() -> bool, nap: std::time::Duration) -> B {
        if let Some(b) = self.back.try_pop() {
            return b;
        }
        self.stats.full_waits.bump();
        let mut backoff = Backoff::new();
        loop {
            if let Some(b) = self.back.try_pop() {
                return b;
            }
            if idle() {
                backoff = Backoff::new();
            } else if backoff.should_park() && !self.producer_waker.spins() {
                let back = &self.back;
                self.producer_waker.park_unless(|| !back.is_empty(), nap);
            } else {
                backoff.snooze();
            }
        }
    }

    /// Sends a filled buffer. Never fails: the buffer came from [`take`](Self::take), so the
    /// forward ring has room for it.
    pub fn send(&mut self, b: B) {
        if self.forward.try_push(b).is_err() {
            unreachable!("more buffers in flight than the link holds");
        }
        self.stats.sent.bump();
        self.consumer_waker.wake();
    }

    /// Makes [`take_with`](Self::take_with) wait by spinning and yielding, never parking:
    /// for a producer with its CPU to itself, where parking frees the CPU for nobody and makes
    /// the consumer pay a futex wake (a syscall and an IPI, microseconds on a VM) for every
    /// buffer it hands back. Measured on v3k at max speed: 3% of the shard's time was that wake.
    pub fn never_park(&mut self) {
        self.producer_waker.spin_only();
    }

    /// For a producer that waits with nothing to send: reads the return ring's index and asks
    /// for its next slot, so the idle check and the take after the wait find both in cache.
    /// Each was a miss to the consumer's core after every return: the ingress stage's p50
    /// (message due -> batch sent) was 0.16-0.17 us without this and 0.10-0.11 us with it
    /// (m7 at 1M/s, 6 pairs, 2026-12-07 08:35).
    #[inline]
    pub fn keep_warm(&self) {
        std::hint::black_box(self.back.len());
        self.back.prefetch_next();
    }

    /// True when every buffer is back home: the consumer has finished all it was sent and
    /// waits for more (one load of the return ring's index).
    #[inline]
    pub fn consumer_idle(&self) -> bool {
        let home = self.back.len();
        debug_assert!(
            home <= self.buffers,
            "more buffers home than the link holds"
        );
        home == self.buffers
    }

    /// Buffers sent that the consumer has not taken yet.
    pub fn unread(&mut self) -> usize {
        self.forward.unread()
    }

    /// This link's counters.
    pub fn stats(&self) -> Arc<LinkStats> {
        Arc::clone(&self.stats)
    }
}

impl<B: Send> Receiver<B> {
    /// The next filled buffer, if one is waiting.
    #[inline]
    pub fn try_recv(&mut self) -> Option<B> {
        self.forward.try_pop()
    }

    /// Hands an emptied buffer back to the producer.
    pub fn give_back(&mut self, b: B) {
        self.hand_back(b);
        self.wake_producer();
    }

    /// Hands an emptied buffer back without waking a parked producer: a spinning producer
    /// sees it as soon as the store drains, and the caller does more work before it pays
    /// the wake's fence in [`wake_producer`](Self::wake_producer). The fence right after
    /// the store stalls until the line reaches the other core (it put 50-100 ns on the
    /// shard's apply, m7 at 1M/s, 2026-12-07).
    pub fn hand_back(&mut self, b: B) {
        if self.back.try_push(b).is_err() {
            unreachable!("more buffers returned than the link holds");
        }
        self.stats.returned.bump();
    }

    /// Wakes the producer if it parked; call after [`hand_back`](Self::hand_back).
    pub fn wake_producer(&self) {
        self.producer_waker.wake();
    }

    /// Buffers waiting to be read (a snapshot: ring occupancy).
    pub fn pending(&self) -> usize {
        self.forward.len()
    }

    /// Promises never to [`park`](Self::park): for a consumer with its CPU to itself, which
    /// spins. The producer then sends without a fence.
    pub fn never_park(&mut self) {
        self.consumer_waker.spin_only();
    }

    /// Parks until a buffer arrives or `timeout` passes.
    pub fn park(&self, timeout: std::time::Duration) {
        let f = &self.forward;
        self.consumer_waker.park_unless(|| !f.is_empty(), timeout);
    }

    /// This link's counters.
    pub fn stats(&self) -> Arc<LinkStats> {
        Arc::clone(&self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_arrive_in_order_across_threads() {
        let (mut p, mut c) = ring::<u64>(8);
        let n = 200_000u64;
        let t = std::thread::spawn(move || {
            for i in 0..n {
                let mut v = i;
                while let Err(back) = p.try_push(v) {
                    v = back;
                    std::hint::spin_loop();
                }
            }
        });
        let mut want = 0;
        while want < n {
            if let Some(v) = c.try_pop() {
                assert_eq!(v, want);
                want += 1;
            }
        }
        t.join().unwrap();
        assert!(c.try_pop().is_none());
    }

    #[test]
    fn a_full_ring_refuses_and_hands_the_value_back() {
        let (mut p, mut c) = ring::<String>(2);
        p.try_push("a".into()).unwrap();
        p.try_push("b".into()).unwrap();
        assert_eq!(p.try_push("c".into()), Err("c".to_string()));
        assert_eq!(c.try_pop().as_deref(), Some("a"));
        p.try_push("c".into()).unwrap();
        // Dropping with values inside frees them (no leak under Miri/valgrind).
    }

    #[test]
    fn a_link_knows_when_its_consumer_has_everything_back() {
        let (mut tx, mut rx) = link(2, || 0u8);
        assert!(tx.consumer_idle());
        let b = tx.take();
        tx.send(b);
        assert!(!tx.consumer_idle(), "one in flight");
        let b = rx.try_recv().unwrap();
        assert!(!tx.consumer_idle(), "being read");
        rx.give_back(b);
        assert!(tx.consumer_idle());
    }

    #[test]
    fn a_slot_written_a_lap_ago_reads_as_empty() {
        let (mut p, mut c) = ring::<u32>(4);
        for lap in 0..10u32 {
            for i in 0..4 {
                assert!(p.try_push(lap * 4 + i).is_ok());
            }
            assert!(p.try_push(99).is_err(), "full at lap {lap}");
            for i in 0..4 {
                assert_eq!(c.try_pop(), Some(lap * 4 + i));
            }
            assert_eq!(
                c.try_pop(),
                None,
                "every slot holds last lap's number at lap {lap}"
            );
            assert!(c.is_empty());
        }
    }

    #[test]
    fn returning_a_buffer_reads_the_other_cores_index_once_in_many_returns() {
        // Steady state: nearly every buffer is home. The return ring must not look full to
        // the side returning them after every return.
        let (mut tx, mut rx) = link(64, Vec::<u8>::new);
        for _ in 0..1000 {
            let b = tx.take();
            tx.send(b);
            let b = rx.try_recv().expect("just sent");
            rx.give_back(b);
        }
        let loads = rx.back.head_loads;
        assert!(
            loads <= 1000 / 64 + 1,
            "{loads} loads of the head in 1000 returns"
        );
    }

    #[test]
    fn a_link_reuses_its_buffers_and_counts_waits() {
        let (mut tx, mut rx) = link(2, || Vec::<u8>::with_capacity(16));
        let t = std::thread::spawn(move || {
            let mut got = 0u64;
            while got < 1000 {
                if let Some(mut b) = rx.try_recv() {
                    assert_eq!(b.len(), 1);
                    got += b[0] as u64 % 2;
                    b.clear();
                    rx.give_back(b);
                } else {
                    rx.park(std::time::Duration::from_millis(1));
                }
            }
            got
        });
        for i in 0..1000u32 {
            let mut b = tx.take();
            assert!(b.capacity() >= 16, "buffers are reused, not remade");
            b.push((2 * i + 1) as u8);
            tx.send(b);
        }
        assert_eq!(t.join().unwrap(), 1000);
        assert_eq!(tx.stats().sent.get(), 1000);
    }

    #[test]
    fn no_wake_is_lost_between_a_parking_receiver_and_a_sender() {
        // Ping-pong with one buffer: the receiver parks for up to 30 s whenever its ring is
        // empty, so each lost wake costs 30 s. Without the fences a wake is lost when the
        // sender reads `parked` before the receiver's store lands and the receiver reads the
        // ring before the sender's push lands.
        const PARK: std::time::Duration = std::time::Duration::from_secs(30);
        let (mut tx, mut rx) = link(1, || 0u32);
        let start = std::time::Instant::now();
        let t = std::thread::spawn(move || {
            for want in 0..2_000u32 {
                let b = loop {
                    match rx.try_recv() {
                        Some(b) => break b,
                        None => rx.park(PARK),
                    }
                };
                assert_eq!(b, want);
                rx.give_back(b);
            }
        });
        for i in 0..2_000u32 {
            let _ = tx.take();
            tx.send(i);
        }
        t.join().unwrap();
        assert!(
            start.elapsed() < PARK,
            "a wake was lost: {:?}",
            start.elapsed()
        );
    }
}
