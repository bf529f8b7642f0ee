//! Steady state allocates nothing per message, on any core: a counting global allocator over two
//! replays of the same universe, one ten times longer than the other. Whatever allocates per
//! message (or per batch) shows up as a difference that grows with the length; start-up and
//! high-water growth (slabs, tables, event vectors) do not.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tickcore::config::{Config, Overrides};
use tickcore::runtime::{self, ingress::BytesSource, RunOptions};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The counter is process-wide: tests that read it take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn allocations_for(messages: u64, shards: usize) -> u64 {
    let bytes = shards::synth::generate(&shards::synth::GenConfig {
        scope: shards::synth::Scope::M7,
        messages,
        seed: 4,
        profile: shards::synth::Profile::Realistic,
    })
    .unwrap();
    let flags = Overrides {
        shards: Some(shards),
        ..Default::default()
    };
    let cfg = Config::load(None, |_| None, &flags, 2).unwrap();
    let src = BytesSource {
        name: "alloc test".into(),
        bytes: &bytes,
        skip_corrupt: false,
    };
    let stop = AtomicBool::new(false);
    let before = ALLOCS.load(Ordering::Relaxed);
    let r = runtime::run(&src, &cfg, RunOptions::default(), &stop).unwrap();
    let used = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(r.ingress.messages, messages);
    used
}

#[test]
fn a_longer_replay_allocates_no_more_than_its_high_water_growth() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for shards in [1, 2] {
        let short = allocations_for(200_000, shards);
        let long = allocations_for(2_000_000, shards);
        let extra = long.saturating_sub(short);
        eprintln!("{shards} shard(s): {short} allocations for 200k messages, {long} for 2M");
        // 1.8M more messages (about 1,700 more feed batches and as many event batches per
        // shard): allow a few hundred high-water growths, nothing that scales with either.
        assert!(
            extra < 500,
            "{shards} shard(s): {short} allocations for 200k messages, {long} for 2M \
             ({extra} more): something allocates per message or per batch"
        );
    }
}

/// The live receiver's allocations over `messages`: datagrams arrive on one loopback line from
/// a sender thread, every 10th pair swapped (so the hold buffer is used), and are pumped until
/// end of session.
fn live_allocations_for(messages: u64) -> u64 {
    use shards::mold::{self, Session};
    use tickcore::live::source::{LiveConfig, MoldSource};
    use tickcore::runtime::ingress::{Fed, Source};
    let bytes = shards::synth::generate(&shards::synth::GenConfig {
        scope: shards::synth::Scope::M7,
        messages,
        seed: 5,
        profile: shards::synth::Profile::Realistic,
    })
    .unwrap();
    let s = Session::parse("ALLOC").unwrap();
    let (mut pkts, _) = mold::pack_session(&bytes, s, 1400).unwrap();
    let end = pkts.pop().unwrap();
    for i in (0..pkts.len() - 1).step_by(10) {
        pkts.swap(i, i + 1);
    }
    pkts.push(end);
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = LiveConfig::loopback(port, "127.0.0.1:9".parse().unwrap(), 64 << 20);
    let to: std::net::SocketAddr = cfg.lines[0].addr.into();
    let src = MoldSource::open(cfg).unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stop = AtomicBool::new(false);
    let mut n = 0u64;
    let before = ALLOCS.load(Ordering::Relaxed);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for p in &pkts {
                tx.send_to(p, to).unwrap();
            }
        });
        src.pump(&stop, |f| {
            if let Fed::Message(..) = f {
                n += 1;
            }
        })
        .unwrap();
    });
    let used = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(n, messages, "every message received once");
    used
}

#[test]
fn the_live_receiver_allocates_nothing_per_message() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let short = live_allocations_for(20_000);
    let long = live_allocations_for(200_000);
    eprintln!("live receiver: {short} allocations for 20k messages, {long} for 200k");
    assert!(
        long.saturating_sub(short) < 50,
        "live receiver: {short} allocations for 20k messages, {long} for 200k: something allocates per datagram or message"
    );
}
