//! One-hop latency between two pinned cores: ingress-shaped batches (one ITCH frame, rkyv
//! archived in a reused buffer) over a `ring::link`, producer on CPU 0, consumer busy-polling on
//! CPU 1. Open loop: one batch every `GAP` so the figure is the hop, not a queue. Also the bare
//! ring (a `u64` timestamp per slot) to show what the batch format costs.
//!
//! Run: `cargo bench -p tickcore-benches --bench hop` (`TICKCORE_BENCH_MESSAGES` samples, default
//! 1M). Writes `build_data/bench/hop.json`.

use hdrhistogram::Histogram;
use std::time::Duration;
use tickcore::runtime::batch::{self, Buf, FeedBatch};
use tickcore::runtime::clock::now_ns;
use tickcore::runtime::ring;

const GAP: Duration = Duration::from_micros(5);

fn pin(cpu: usize) {
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

fn wait_until(t: u64) {
    while now_ns() < t {
        std::hint::spin_loop();
    }
}

fn link_hop(samples: u64, cpus: (usize, usize)) -> Histogram<u64> {
    let (mut tx, mut rx) = ring::link(64, || Buf::with_capacity(4096));
    let consumer = std::thread::spawn(move || {
        pin(cpus.1);
        let mut h = Histogram::<u64>::new_with_bounds(1, 1 << 36, 3).unwrap();
        let mut got = 0;
        while got < samples {
            if let Some(buf) = rx.try_recv() {
                let now = now_ns();
                let b = batch::read_feed(&buf).expect("valid batch");
                h.saturating_record(now.saturating_sub(b.first_ingress_ns.to_native()).max(1));
                rx.give_back(buf);
                got += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        h
    });
    pin(cpus.0);
    // One delete message, framed, as the ingress would send it.
    let mut frames = vec![0u8, 19, b'D'];
    frames.extend_from_slice(&[0u8; 18]);
    let mut next = now_ns() + 1_000_000;
    for seq in 0..samples {
        wait_until(next);
        next += GAP.as_nanos() as u64;
        let buf = tx.take();
        // One clock read, as the ingress stamps a batch it sends (three reads here charged the
        // hop two extra reads, about 70 ns).
        let now = now_ns();
        let b = FeedBatch {
            seq,
            first_ingress_ns: now,
            last_ingress_ns: now,
            sent_ns: now,
            messages: 1,
            last: false,
            checkpoint: 0,
            session: [b' '; 10],
            frames: &frames,
        };
        tx.send(batch::write(&b, buf));
    }
    consumer.join().unwrap()
}

fn bare_hop(samples: u64, cpus: (usize, usize)) -> Histogram<u64> {
    let (mut p, mut c) = ring::ring::<u64>(1024);
    let consumer = std::thread::spawn(move || {
        pin(cpus.1);
        let mut h = Histogram::<u64>::new_with_bounds(1, 1 << 36, 3).unwrap();
        let mut got = 0;
        while got < samples {
            if let Some(t) = c.try_pop() {
                h.saturating_record(now_ns().saturating_sub(t).max(1));
                got += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        h
    });
    pin(cpus.0);
    let mut next = now_ns() + 1_000_000;
    for _ in 0..samples {
        wait_until(next);
        next += GAP.as_nanos() as u64;
        while p.try_push(now_ns()).is_err() {
            std::hint::spin_loop();
        }
    }
    consumer.join().unwrap()
}

/// How often a thread spinning on one CPU loses it: gaps over 10 us between two clock reads in a
/// tight loop for `secs`, on each CPU. On a VM these are the hypervisor (steal) and the host's
/// interrupts; they bound the hop's tail from below whatever the ring does.
fn stolen(cpu: usize, secs: f64) -> (u64, u64, u64) {
    pin(cpu);
    let end = now_ns() + (secs * 1e9) as u64;
    let (mut gaps, mut lost, mut max) = (0u64, 0u64, 0u64);
    let mut last = now_ns();
    while last < end {
        let t = now_ns();
        let d = t - last;
        if d > 10_000 {
            gaps += 1;
            lost += d;
            max = max.max(d);
        }
        last = t;
    }
    (gaps, lost, max)
}

fn clock_cost() -> f64 {
    let n = 100_000;
    let t0 = now_ns();
    for _ in 0..n {
        std::hint::black_box(now_ns());
    }
    (now_ns() - t0) as f64 / n as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return println!("hop: benchmark");
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let samples = if smoke {
        2_000
    } else {
        tickcore_benches::messages_from_env(1_000_000)
    };
    let cpus = (0, usize::from(tickcore::config::machine_cpus() > 1));
    let clock = clock_cost();
    println!(
        "hop: {samples} samples, CPU {} -> CPU {}, one every {GAP:?}; clock read {clock:.1} ns",
        cpus.0, cpus.1
    );
    let mut json = serde_json::Map::new();
    for (name, h) in [
        ("link_rkyv_batch", link_hop(samples, cpus)),
        ("bare_ring_u64", bare_hop(samples, cpus)),
    ] {
        let q = |p: f64| h.value_at_quantile(p);
        println!(
            "  {name:<16} p50 {} ns  p99 {} ns  p99.9 {} ns  max {} ns",
            q(0.5),
            q(0.99),
            q(0.999),
            h.max()
        );
        json.insert(
            name.into(),
            serde_json::json!({"count": h.len(), "p50_ns": q(0.5), "p99_ns": q(0.99),
                               "p999_ns": q(0.999), "max_ns": h.max()}),
        );
    }
    json.insert("clock_read_ns".into(), serde_json::json!(clock));
    let secs = if smoke { 0.05 } else { 2.0 };
    for cpu in [cpus.0, cpus.1] {
        let (gaps, lost, max) = stolen(cpu, secs);
        println!(
            "  CPU {cpu}: a spinning thread lost the CPU {gaps} times in {secs} s (over 10 us each), \
             {:.2}% of the time, longest {} us",
            lost as f64 / (secs * 1e7),
            max / 1000
        );
        json.insert(
            format!("cpu{cpu}_lost"),
            serde_json::json!({"gaps_over_10us": gaps,
            "lost_ns": lost, "max_gap_ns": max, "seconds": secs}),
        );
    }
    if !smoke {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../build_data/bench");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            format!("{dir}/hop.json"),
            serde_json::Value::Object(json).to_string(),
        )
        .unwrap();
    }
}
