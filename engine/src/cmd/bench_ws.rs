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
}

/// Serves `frames` to `n` clients from a bare tokio-tungstenite server on `server_cpu` (every
/// client's task sends the same shared frames, the cheapest broadcast there is), the clients
/// reading on `client_cpu`.
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
        let frames = std::rc::Rc::new(frames);
        let sent = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let total = std::rc::Rc::clone(&sent);
        let local = tokio::task::LocalSet::new();
        local.block_on(&current_thread(), async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            let mut served = Vec::new();
            for _ in 0..n {
                let Ok((s, _)) = listener.accept().await else {
                    break;
                };
                let frames = std::rc::Rc::clone(&frames);
                let sent = std::rc::Rc::clone(&sent);
                served.push(tokio::task::spawn_local(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                        return;
                    };
                    // The subscribe a client sends first, as the gateway would read it.
                    let _ = ws.next().await;
                    for f in frames.iter() {
                        if ws.feed(Message::Text(f.clone())).await.is_err() {
                            return;
                        }
                        sent.set(sent.get() + 1);
                    }
                    let _ = ws.close(None).await;
                }));
            }
            for s in served {
                let _ = s.await;
            }
        });
        crate::runtime::clock::thread_cpu_ns() as f64 / total.get().max(1) as f64
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
    let cpu_ns_per_frame = server
        .join()
        .map_err(|_| Failure::new("the baseline server panicked (a bug)"))?;
    let each: Vec<_> = each.into_iter().flatten().collect();
    Ok(Baseline {
        per_s: rates(&each),
        frames: count,
        cpu_ns_per_frame,
    })
}
