//! `tickcore bench --ws-clients N`: N WebSocket clients in this process subscribe to every
//! symbol's trades and BBO before the feed starts, and time each frame from the moment its
//! first message was read (the gateway stamps `t0` on the engine's clock; same process, same
//! clock). Then, in the same command, a bare tokio-tungstenite broadcast server sends the
//! frames client 0 received to N fresh clients as fast as it can: the gateway's messages/s per
//! client against that ceiling.
//!
//! Both rates are taken over the window from the first frame any client read to the last one
//! any client read. Each client's own window overstated the bare server N-fold: its single
//! thread serves one client's socket until it fills, so the clients' windows barely overlap
//! (100 clients: 54-67 k frames/s each by their own windows, 5-7 M/s together, on one CPU that
//! also ran the clients, 2026-12-06).
//!
//! The clients read with [`ws_reader`], which costs them little CPU per frame: they share this
//! machine with what they measure.
//!
//! The clients stand for desks on other machines, so they run away from the gateway's CPU: on
//! a CPU the engine leaves free, else on the last shard's, which the plan then lets park when
//! idle ([`clients_cpu`]). The bare server runs on the gateway's CPU and its clients on ours.
//!
//! Owns the clients and the baseline server; never touches the engine but through its socket.

use super::ws_reader::{self, Reader};
use crate::error::{Failure, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Where the clients run: the first of `cpus` that no thread of `plan` is on, else the last
/// shard's. Beside the gateway they took its turns (with 50 clients and the gateway on the
/// feed's CPU, 3-19 of them were cut off while the shard's CPU idled; 2026-12-06).
pub fn clients_cpu(plan: &crate::runtime::plan::Plan, cpus: usize) -> usize {
    use crate::runtime::plan::Role;
    let on = |c: &usize| plan.threads.iter().any(|t| t.cpu == *c);
    let last_shard = plan
        .threads
        .iter()
        .rev()
        .find(|t| t.roles.iter().any(|r| matches!(r, Role::Shard(_))))
        .map(|t| t.cpu);
    (0..cpus)
        .find(|c| !on(c))
        .or(last_shard)
        .unwrap_or(plan.threads[0].cpu)
}

/// Frames client 0 keeps for the baseline at most.
const KEEP: usize = 4_000_000;

/// What the clients saw.
pub struct ClientsReport {
    /// Receive latency (t0 -> frame read by the client), ns, over every client.
    pub latency: Histogram<u64>,
    /// Frames per client.
    pub frames: Vec<u64>,
    /// Per client: frames a second between its first and last data frame.
    pub per_s: Vec<f64>,
    /// Clients closed before the end (cut off as slow, or an error).
    pub cut: u64,
    /// Client 0's data frames, for the baseline.
    pub kept: Vec<Utf8Bytes>,
}

/// Clients running on their own thread.
pub struct Clients {
    handle: std::thread::JoinHandle<ClientsReport>,
}

impl Clients {
    /// Connects `n` clients to `addr` from a thread pinned to `cpu`; each subscribes to trades
    /// and bbo of `*` and reads until the server closes.
    pub fn start(addr: std::net::SocketAddr, n: usize, cpu: usize) -> Result<Clients> {
        let handle = std::thread::Builder::new()
            .name("ws-clients".into())
            .spawn(move || {
                crate::runtime::pin(cpu);
                // At the gateway's priority, not above it: on a small machine both share the
                // feed's CPU, and clients at nice 0 took the gateway's turns (deliver p50
                // 4.4 ms with 10 clients, 2026-12-05).
                crate::runtime::set_nice(crate::runtime::plan::SHARED_NICE);
                current_thread().block_on(async move {
                    let tasks = (0..n).map(|i| client(addr, i == 0));
                    merge(futures_util::future::join_all(tasks).await)
                })
            })
            .map_err(|e| Failure::new(format!("cannot start the WebSocket clients: {e}")))?;
        Ok(Clients { handle })
    }

    /// Waits for every client to end.
    pub fn finish(self) -> Result<ClientsReport> {
        self.handle
            .join()
            .map_err(|_| Failure::new("the WebSocket clients' thread panicked (a bug)"))
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

struct One {
    latency: Histogram<u64>,
    frames: u64,
    /// Engine ns of its first and last data frame.
    window: Option<(u64, u64)>,
    clean: bool,
    kept: Vec<Utf8Bytes>,
}

/// Each client's frames a second over the window of them all (see the module's note).
fn rates(each: &[(u64, Option<(u64, u64)>)]) -> Vec<f64> {
    let first = each.iter().filter_map(|(_, w)| Some(w.as_ref()?.0)).min();
    let last = each.iter().filter_map(|(_, w)| Some(w.as_ref()?.1)).max();
    let (Some(first), Some(last)) = (first, last) else {
        return vec![0.0; each.len()];
    };
    let s = (last - first).max(1) as f64 / 1e9;
    each.iter().map(|(n, _)| *n as f64 / s).collect()
}

async fn client(addr: std::net::SocketAddr, keep: bool) -> One {
    let mut one = One {
        latency: crate::telemetry::histogram(),
        frames: 0,
        window: None,
        clean: false,
        kept: Vec::new(),
    };
    let sub = json!({"op":"subscribe","channels":["trades","bbo"],"symbols":["*"]});
    let Ok(mut ws) = Reader::connect(addr, &sub.to_string()).await else {
        return one;
    };
    let (mut first, mut last) = (None, 0u64);
    ws.read_frames(|op, payload, now| match op {
        ws_reader::TEXT => {
            let Some(t0) = stamp(payload) else { return };
            let _ = one.latency.record(now.saturating_sub(t0).max(1));
            one.frames += 1;
            first.get_or_insert(now);
            last = now;
            if keep && one.kept.len() < KEEP {
                if let Ok(t) = std::str::from_utf8(payload) {
                    one.kept.push(Utf8Bytes::from(t.to_string()));
                }
            }
        }
        ws_reader::CLOSE => one.clean = ws_reader::close_code(payload) == Some(1001),
        _ => {}
    })
    .await;
    one.window = first.map(|f| (f, last));
    one
}

/// The `"t0":N` a data frame ends with.
fn stamp(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""t0":"#;
    let tail = &text[text.len().saturating_sub(32)..];
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let digits = &tail[at + KEY.len()..];
    let digits = &digits[..digits.iter().position(|&c| c == b'}')?];
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn merge(all: Vec<One>) -> ClientsReport {
    let mut r = ClientsReport {
        latency: crate::telemetry::histogram(),
        frames: Vec::new(),
        per_s: Vec::new(),
        cut: 0,
        kept: Vec::new(),
    };
    let each: Vec<_> = all.iter().map(|o| (o.frames, o.window)).collect();
    r.per_s = rates(&each);
    for mut o in all {
        let _ = r.latency.add(&o.latency);
        r.frames.push(o.frames);
        r.cut += u64::from(!o.clean);
        if r.kept.is_empty() {
            r.kept = std::mem::take(&mut o.kept);
        }
    }
    r
}

/// The bare broadcast server's figures.
pub struct Baseline {
    /// Per client: frames a second.
    pub per_s: Vec<f64>,
    /// Frames each client was sent.
    pub frames: usize,
    /// The server thread's CPU time over every frame it sent to any client, ns.
    pub cpu_ns_per_frame: f64,
    /// What one write to one client costs the server's thread, measured in rounds before the
    /// broadcast: a write's own cost and each frame's in it, ns of CPU.
    pub write: WriteCost,
}

/// The CPU a writer pays per write and per frame on this machine's loopback: rounds that
/// write to every client in turn, one frame per write and then [`WIDE`] frames per write.
/// The difference between the two rounds' costs is the frames' share; what is left of a
/// one-frame write is the write's own (the system call, TCP, the client's wake-up).
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteCost {
    /// ns of CPU per write, whatever it holds.
    pub per_write_ns: f64,
    /// ns of CPU per frame in a write.
    pub per_frame_ns: f64,
}

/// Frames in each write of the wide rounds.
const WIDE: usize = 64;
/// Rounds of one-frame writes, and of wide ones.
const ROUNDS: (usize, usize) = (500, 50);

impl WriteCost {
    /// From the CPU of `narrow` one-frame writes and `wide` writes of [`WIDE`] frames.
    fn from_rounds(narrow: (u64, usize), wide: (u64, usize)) -> WriteCost {
        let one = narrow.0 as f64 / narrow.1.max(1) as f64;
        let many = wide.0 as f64 / wide.1.max(1) as f64;
        let per_frame_ns = ((many - one) / (WIDE - 1) as f64).max(0.0);
        WriteCost {
            per_write_ns: (one - per_frame_ns).max(0.0),
            per_frame_ns,
        }
    }

    /// The shortest round a writer can keep to serve `clients` one write each per round while
    /// `frames_per_s` frames go out in all, with `share` of a CPU: its writes' own cost over
    /// what the frames leave of the CPU, ns. `None` when the frames alone take more than
    /// `share`. A frame waits for its client's turn: up to one round, so no deliver p99 under
    /// load is below this.
    pub fn round_floor_ns(&self, clients: usize, frames_per_s: f64, share: f64) -> Option<f64> {
        let left = share - frames_per_s * self.per_frame_ns / 1e9;
        (left > 0.0).then(|| clients as f64 * self.per_write_ns / left)
    }
}

/// Serves `frames` to `n` clients from a bare tokio-tungstenite server on `server_cpu` (every
/// client's task sends the same shared frames, the cheapest broadcast there is), the clients
/// reading on `client_cpu`. Before that, times [`WriteCost`] on the same connections.
pub fn baseline(frames: Vec<Utf8Bytes>, n: usize, cpus: (usize, usize)) -> Result<Baseline> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Failure::new(format!("baseline server: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::new(format!("baseline server: {e}")))?;
    let count = frames.len();
    let server = std::thread::spawn(move || {
        crate::runtime::pin(cpus.0);
        let local = tokio::task::LocalSet::new();
        local.block_on(&current_thread(), serve(listener, frames, n))
    });
    let clients = std::thread::spawn(move || {
        crate::runtime::pin(cpus.1);
        current_thread().block_on(async move {
            let tasks = (0..n).map(|_| async move {
                let mut ws = Reader::connect(addr, "{}").await.ok()?;
                let (mut first, mut last, mut got) = (None, 0u64, 0u64);
                ws.read_frames(|op, _, now| {
                    if op == ws_reader::TEXT {
                        got += 1;
                        first.get_or_insert(now);
                        last = now;
                    }
                })
                .await;
                Some((got, first.map(|f| (f, last))))
            });
            futures_util::future::join_all(tasks).await
        })
    });
    let each = clients
        .join()
        .map_err(|_| Failure::new("baseline clients panicked (a bug)"))?;
    let (cpu_ns_per_frame, write) = server
        .join()
        .map_err(|_| Failure::new("the baseline server panicked (a bug)"))?;
    let each: Vec<_> = each.into_iter().flatten().collect();
    Ok(Baseline {
        per_s: rates(&each),
        frames: count,
        cpu_ns_per_frame,
        write,
    })
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The baseline server: takes `n` clients, times the write rounds on them, then sends every
/// client all of `frames`, each from a task of its own. Returns the CPU per frame of that
/// broadcast and the rounds' [`WriteCost`].
async fn serve(
    listener: std::net::TcpListener,
    frames: Vec<Utf8Bytes>,
    n: usize,
) -> (f64, WriteCost) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
    let mut all: Vec<Ws> = Vec::new();
    for _ in 0..n {
        let Ok((s, _)) = listener.accept().await else {
            break;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
            continue;
        };
        // The subscribe a client sends first, as the gateway would read it.
        let _ = ws.next().await;
        all.push(ws);
    }
    let write = time_writes(&mut all, frames.first()).await;
    let frames = std::rc::Rc::new(frames);
    let sent = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let cpu_before = crate::runtime::clock::thread_cpu_ns();
    let served: Vec<_> = all
        .into_iter()
        .map(|mut ws| {
            let (frames, sent) = (std::rc::Rc::clone(&frames), std::rc::Rc::clone(&sent));
            tokio::task::spawn_local(async move {
                for f in frames.iter() {
                    if ws.feed(Message::Text(f.clone())).await.is_err() {
                        return;
                    }
                    sent.set(sent.get() + 1);
                }
                let _ = ws.close(None).await;
            })
        })
        .collect();
    for s in served {
        let _ = s.await;
    }
    let cpu = crate::runtime::clock::thread_cpu_ns() - cpu_before;
    (cpu as f64 / sent.get().max(1) as f64, write)
}

/// [`WriteCost`] on `all`: `frame`'s bytes as binary frames (the clients count text frames
/// only, so the rounds leave the broadcast's figures alone), written raw on each socket as the
/// gateway writes a rendered run: no per-frame work in user space, only the kernel's.
async fn time_writes(all: &mut [Ws], frame: Option<&Utf8Bytes>) -> WriteCost {
    let Some(frame) = frame else {
        return WriteCost::default();
    };
    let one = binary_frame(frame.as_bytes());
    let narrow = write_rounds(all, &one, ROUNDS.0).await;
    let wide = write_rounds(all, &one.repeat(WIDE), ROUNDS.1).await;
    WriteCost::from_rounds(narrow, wide)
}

/// `payload` as one unmasked, final binary WebSocket frame, as a server sends it.
fn binary_frame(payload: &[u8]) -> Vec<u8> {
    /// FIN and the binary opcode (RFC 6455 5.2).
    const FIN_BINARY: u8 = 0x82;
    let mut f = Vec::with_capacity(payload.len() + 10);
    crate::gateway::wire::put_header(&mut f, FIN_BINARY, payload.len());
    f.extend_from_slice(payload);
    f
}

/// `rounds` rounds of one write of `bytes` to each of `all`: the server thread's CPU over
/// them, ns, and the writes made.
async fn write_rounds(all: &mut [Ws], bytes: &[u8], rounds: usize) -> (u64, usize) {
    use tokio::io::AsyncWriteExt;
    let before = crate::runtime::clock::thread_cpu_ns();
    let mut writes = 0;
    for _ in 0..rounds {
        for ws in all.iter_mut() {
            writes += usize::from(ws.get_mut().write_all(bytes).await.is_ok());
        }
    }
    (crate::runtime::clock::thread_cpu_ns() - before, writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_and_a_frame_are_told_apart_by_the_two_widths() {
        // 100 one-frame writes at 2,030 ns each, 10 writes of WIDE frames at 2,000 + 30 per
        // frame: 2,000 ns a write, 30 a frame.
        let w = WriteCost::from_rounds((203_000, 100), (10 * (2_000 + 30 * WIDE as u64), 10));
        assert!((w.per_write_ns - 2_000.0).abs() < 1e-6, "{w:?}");
        assert!((w.per_frame_ns - 30.0).abs() < 1e-6, "{w:?}");
    }

    #[rstest::rstest]
    // 100 clients, 2 us a write, a whole CPU, no frames: 200 us a round.
    #[case::writes_alone(0.0, 1.0, Some(200_000.0))]
    // The frames take half the CPU (10 M/s at 50 ns): the writes get the other half.
    #[case::frames_take_half(10e6, 1.0, Some(400_000.0))]
    // A quarter of the CPU left after the ingress, and the frames take it all.
    #[case::nothing_left(5e6, 0.25, None)]
    fn the_round_floor_is_the_writes_over_what_the_frames_leave(
        #[case] frames_per_s: f64,
        #[case] share: f64,
        #[case] want: Option<f64>,
    ) {
        let w = WriteCost {
            per_write_ns: 2_000.0,
            per_frame_ns: 50.0,
        };
        let got = w.round_floor_ns(100, frames_per_s, share);
        assert_eq!(
            got.map(f64::round),
            want,
            "{frames_per_s} frames/s, share {share}"
        );
    }

    #[test]
    fn the_probe_frame_reads_back_as_one_binary_frame() {
        let f = binary_frame(&[7u8; 300]);
        let (first, head, len) = crate::gateway::wire::header(&f).expect("a whole header");
        assert_eq!((first, len as usize, f.len() - head), (0x82, 300, 300));
    }
}
