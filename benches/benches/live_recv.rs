//! Receive rate of one feed core over loopback: tickcore's MoldUDP64 receiver (recvmmsg,
//! arbitration, in-order hand-over) against a bare `recvmmsg` loop and a bare io_uring
//! multishot receive (provided buffers), in the same run, rounds alternating.
//!
//! Each round first fills a receive buffer with the whole session (the sender is done before
//! the clock starts, so it takes no CPU from the receiver), then times the drain on a pinned
//! core. `bare_recvmmsg` only counts messages from each header; `bare_recvmmsg_walk` also hands
//! every message on (a plain receiver, no checks); tickcore's receiver checks every datagram
//! and message, arbitrates and hands each over in order. Rate = messages / drain time.
//!
//! Run: `cargo bench -p tickcore-benches --bench live_recv` (`TICKCORE_BENCH_MESSAGES`, default
//! 1M; `TICKCORE_BENCH_ROUNDS`, default 5). Writes `build_data/bench/live_recv.json`. Under
//! `cargo test --all-targets` it is a smoke run (20k messages, one round). The receive buffer
//! must hold the whole session: it needs SO_RCVBUFFORCE (root) or a large net.core.rmem_max.

use io_uring::{cqueue, opcode, types, IoUring};
use shards::mold::{self, Session};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tickcore::live::recv::RecvBatch;
use tickcore::live::source::{LiveConfig, MoldSource};
use tickcore::runtime::ingress::{Fed, Source};

const CPU: usize = 1;
/// Receive buffer bytes the session needs (set once, before the rounds).
static NEED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Receive buffer asked for: the whole session must fit before the drain starts.
const RCVBUF: usize = 1 << 30;

fn packets(messages: u64) -> (Vec<Vec<u8>>, u64) {
    let bytes = shards::synth::generate(&shards::synth::GenConfig {
        scope: shards::synth::Scope::M7,
        messages,
        seed: 1,
        profile: shards::synth::Profile::Realistic,
    })
    .unwrap();
    let s = Session::parse("BENCH").unwrap();
    mold::pack_session(&bytes, s, mold::DEFAULT_MAX_PAYLOAD).unwrap()
}

fn fill(to: SocketAddr, pkts: &[Vec<u8>]) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in pkts {
        tx.send_to(p, to).unwrap();
    }
}

/// Bytes of receive buffer a loopback datagram of up to 1,420 bytes takes (its skb's truesize).
const TRUESIZE: usize = 2_304;

fn bound() -> (UdpSocket, SocketAddr) {
    let (s, got) =
        tickcore::net::bind_receiver(&tickcore::net::Endpoint::loopback(0), RCVBUF).unwrap();
    let need = NEED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        got.granted >= need,
        "the receive buffer cannot hold the session ({got:?}, {need} needed): run as root or raise net.core.rmem_max"
    );
    let a = s.local_addr().unwrap();
    (s, a)
}

/// Messages in a datagram, from its header (EOS: `None`).
fn count(d: &[u8]) -> Option<u64> {
    match u16::from_be_bytes([d[18], d[19]]) {
        0xFFFF => None,
        n => Some(n as u64),
    }
}

/// Drains the session with recvmmsg, `per_datagram` giving each datagram's messages; stops at
/// end of session.
fn recvmmsg_drain(pkts: &[Vec<u8>], total: u64, per_datagram: fn(&[u8]) -> u64) -> f64 {
    let (s, a) = bound();
    fill(a, pkts);
    let mut b = RecvBatch::new(64);
    let mut n = 0u64;
    let t = Instant::now();
    'drain: loop {
        let k = b.recv(s.as_raw_fd()).unwrap();
        for i in 0..k {
            let d = b.datagram(i);
            if count(d).is_none() {
                break 'drain;
            }
            n += per_datagram(d);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, total, "a bare recvmmsg loop lost messages");
    n as f64 / secs
}

/// recvmmsg, reading only each datagram's header.
fn bare_recvmmsg(pkts: &[Vec<u8>], total: u64) -> f64 {
    recvmmsg_drain(pkts, total, |d| count(d).unwrap_or(0))
}

/// A plain receiver: recvmmsg, then every message of every datagram handed on in arrival order
/// (no checks, no sequence numbers, no arbitration).
fn bare_recvmmsg_walk(pkts: &[Vec<u8>], total: u64) -> f64 {
    recvmmsg_drain(pkts, total, |d| {
        mold::messages_of_checked(d)
            .map(|m| {
                std::hint::black_box(m);
            })
            .count() as u64
    })
}

fn bare_io_uring(pkts: &[Vec<u8>], total: u64) -> f64 {
    const BUFS: u16 = 256;
    const LEN: usize = 2048;
    let Ok(mut ring) = IoUring::new(512) else {
        eprintln!("  io_uring is not available here (kernel.io_uring_disabled?): skipped");
        return f64::NAN;
    };
    let (s, a) = bound();
    fill(a, pkts);
    let mut pool = vec![0u8; BUFS as usize * LEN];
    let provide = |ring: &mut IoUring, pool: &mut [u8], bid: u16, n: u16| {
        let at = bid as usize * LEN;
        let e = opcode::ProvideBuffers::new(pool[at..].as_mut_ptr(), LEN as i32, n, 7, bid)
            .build()
            .user_data(1);
        // SAFETY: the pool outlives the ring's use of it (both live to the end of this fn).
        unsafe { ring.submission().push(&e).unwrap() };
    };
    provide(&mut ring, &mut pool, 0, BUFS);
    let arm = |ring: &mut IoUring| {
        let e = opcode::RecvMulti::new(types::Fd(s.as_raw_fd()), 7)
            .build()
            .user_data(2);
        // SAFETY: the socket outlives the request.
        unsafe { ring.submission().push(&e).unwrap() };
    };
    arm(&mut ring);
    let mut n = 0u64;
    let t = Instant::now();
    let mut done = false;
    let mut ret = Vec::with_capacity(BUFS as usize);
    while !done {
        ring.submit().unwrap();
        let mut rearm = false;
        for c in ring.completion() {
            if c.user_data() != 2 {
                continue;
            }
            if !cqueue::more(c.flags()) {
                rearm = true;
            }
            let Some(bid) = cqueue::buffer_select(c.flags()) else {
                continue;
            };
            let len = c.result().max(0) as usize;
            let at = bid as usize * LEN;
            match count(&pool[at..at + len]) {
                Some(k) => n += k,
                None => done = true,
            }
            ret.push(bid);
        }
        for bid in ret.drain(..) {
            provide(&mut ring, &mut pool, bid, 1);
        }
        if rearm && !done {
            arm(&mut ring);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, total, "bare io_uring lost messages");
    n as f64 / secs
}

fn tickcore_receiver(pkts: &[Vec<u8>], total: u64) -> f64 {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = LiveConfig::loopback(port, "127.0.0.1:9".parse().unwrap(), RCVBUF);
    let to: SocketAddr = cfg.lines[0].addr.into();
    let src = MoldSource::open(cfg).unwrap();
    fill(to, pkts);
    let stop = AtomicBool::new(false);
    let mut n = 0u64;
    let t = Instant::now();
    src.pump(&stop, |f| {
        if let Fed::Message(m, _) = f {
            n += 1;
            std::hint::black_box(m);
        }
    })
    .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(n, total, "tickcore's receiver lost messages");
    n as f64 / secs
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    if std::env::args().any(|a| a == "--list") {
        return println!("live_recv: benchmark");
    }
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (messages, rounds) = if smoke {
        (20_000, 1)
    } else {
        (
            env("TICKCORE_BENCH_MESSAGES", 1_000_000),
            env("TICKCORE_BENCH_ROUNDS", 5) as usize,
        )
    };
    let cpu = CPU.min(tickcore::config::machine_cpus() - 1);
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    let (pkts, total) = packets(messages);
    NEED.store(pkts.len() * TRUESIZE, std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "live_recv: {total} messages in {} datagrams, {rounds} rounds",
        pkts.len()
    );
    type Variant = (&'static str, fn(&[Vec<u8>], u64) -> f64);
    let variants: [Variant; 4] = [
        ("bare_recvmmsg", bare_recvmmsg),
        ("bare_recvmmsg_walk", bare_recvmmsg_walk),
        ("bare_io_uring_multishot", bare_io_uring),
        ("tickcore_receiver", tickcore_receiver),
    ];
    let mut rates = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        for (i, (name, f)) in variants.iter().enumerate() {
            let x = f(&pkts, total);
            eprintln!("  round {r}: {name:<24} {:>7.2} M msgs/s", x / 1e6);
            rates[i].push(x);
        }
    }
    let meds: Vec<f64> = rates.iter_mut().map(|v| median(v)).collect();
    println!("live_recv ({total} messages, median of {rounds} rounds, CPU {cpu}):");
    for ((name, _), m) in variants.iter().zip(&meds) {
        println!(
            "  {name:<24} {:>7.2} M msgs/s  {:.2}x bare recvmmsg",
            m / 1e6,
            m / meds[0]
        );
    }
    let json = serde_json::json!({
        "messages": total,
        "datagrams": pkts.len(),
        "rounds": rounds,
        "median_msgs_per_s": variants.iter().zip(&meds)
            .map(|((n, _), m)| (n.to_string(), serde_json::json!(m)))
            .collect::<serde_json::Map<_, _>>(),
        "all_msgs_per_s": variants.iter().zip(&rates)
            .map(|((n, _), v)| (n.to_string(), serde_json::json!(v)))
            .collect::<serde_json::Map<_, _>>(),
        "tickcore_vs_bare_recvmmsg": meds[3] / meds[0],
        "tickcore_vs_bare_recvmmsg_walk": meds[3] / meds[1],
        "io_uring_vs_recvmmsg": meds[2] / meds[0],
    });
    if smoke {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../build_data/bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("live_recv.json"), json.to_string());
}
