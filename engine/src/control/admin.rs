//! The admin endpoint: an HTTP/1.1 server (hyper on a current-thread tokio runtime) on a
//! thread of its own, which asks the control core for every answer over the [`desk`] rings.
//!
//! - `GET /metrics`: Prometheus text exposition (format 0.0.4);
//! - `GET /status`: the same as JSON, plus configuration and uptime;
//! - `GET /snapshot/{SYMBOL}`: the owning shard's per-core cache, through the rings;
//! - `GET /budgets`, `PUT /budgets` (`apply.p99=2us,e2e.p999=50us`, or a JSON object of the
//!   same): change budgets while running; bad input is a 400 with the reason.
//!
//! Why a thread of its own: until 2026-12-05 the endpoint was a hand-written server polled by
//! the control loop, which runs on the ingress thread on a small machine; a client that
//! connected and sent nothing held the feed for its 200 ms read timeout, so 20 idle
//! connections stopped the feed for seconds (e2e p50 3 s). Now no socket is read where the
//! feed runs: the ingress pays one ring pop per control turn.
//!
//! Binds loopback unless told otherwise; any other address needs `TICKCORE_ADMIN_TOKEN`, and
//! then every request must carry `Authorization: Bearer <token>`. Limits: [`MAX_CONNECTIONS`]
//! open at once (one more is answered 503 and closed), [`HEAD_TIMEOUT`] to send a request head
//! (also how long an idle keep-alive connection stays), [`BODY_TIMEOUT`] and 64 KiB for a body,
//! [`CONNECTION_LIFETIME`] in all.

use super::desk::{self, AdminDesk, Ask, AskKind, Reply};
use super::{stage_json, stages_json, ControlCore, QUANTILES};
use crate::telemetry::budget::{self, LEVELS};
use crate::telemetry::STAGES;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAX_BODY: usize = 64 << 10;
/// Connections open at once at most.
pub const MAX_CONNECTIONS: usize = 256;
/// Time to send a request head, and the most an idle keep-alive connection stays open.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Time to send a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection's whole life at most.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a request waits for control's reply (a snapshot waits for its shard too).
const REPLY_PATIENCE: Duration = Duration::from_secs(2);

/// A bound admin endpoint, not yet serving.
pub struct Admin {
    listener: TcpListener,
    token: Option<String>,
    /// The address it listens on (with the real port when `:0` was asked).
    pub addr: SocketAddr,
    /// `PUT /checkpoint` sets it (the ingress takes it); `None`: checkpoints are off.
    pub checkpoint: Option<Arc<AtomicBool>>,
}

/// The endpoint's counters; written by its thread only, read by control for `/metrics`.
#[derive(Debug, Default)]
pub struct AdminStats {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Connections refused because [`MAX_CONNECTIONS`] were open.
    pub refused: AtomicU64,
    /// Connections cut off at a timeout (slow head, slow body, or their lifetime).
    pub timed_out: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// Where the endpoint should listen.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminAddr {
    /// No endpoint.
    Off,
    /// The built-in default (`127.0.0.1:9800`): if it is taken, the run goes on without one.
    Default,
    /// An address the operator gave: failing to bind it is a startup error.
    Given(SocketAddr),
}

/// The default address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9800";

impl std::str::FromStr for AdminAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<AdminAddr, String> {
        if s == "off" {
            return Ok(AdminAddr::Off);
        }
        s.parse().map(AdminAddr::Given).map_err(|_| {
            format!("`{s}` is not an address: write HOST:PORT (e.g. 127.0.0.1:9800) or off")
        })
    }
}

impl Admin {
    /// Binds `addr`. `token` is `TICKCORE_ADMIN_TOKEN`; a non-loopback address without one is
    /// refused. `Ok(None)` when the endpoint is off, or the default address is taken (said on
    /// stderr).
    pub fn bind(addr: &AdminAddr, token: Option<String>) -> Result<Option<Admin>, String> {
        let (sa, default) = match addr {
            AdminAddr::Off => return Ok(None),
            AdminAddr::Default => (DEFAULT_ADDR.parse().expect("valid default"), true),
            AdminAddr::Given(a) => (*a, false),
        };
        let token = token.filter(|t| !t.is_empty());
        if !sa.ip().is_loopback() && token.is_none() {
            return Err(format!(
                "--admin {sa} is not a loopback address: set TICKCORE_ADMIN_TOKEN (every request \
                 must then send `Authorization: Bearer <token>`), or bind 127.0.0.1"
            ));
        }
        let listener = match TcpListener::bind(sa) {
            Ok(l) => l,
            Err(e) if default => {
                eprintln!(
                    "tickcore: admin endpoint off: {sa} is not free ({e}); pass --admin HOST:PORT or --admin off"
                );
                return Ok(None);
            }
            Err(e) => return Err(format!("cannot listen on {sa} for --admin: {e}")),
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("admin endpoint {sa}: {e}"))?;
        let addr = listener.local_addr().unwrap_or(sa);
        Ok(Some(Admin {
            listener,
            token,
            addr,
            checkpoint: None,
        }))
    }

    /// Starts serving on a thread of its own, pinned to `cpu` at `nice`; control answers through the
    /// returned [`desk::ControlDesk`]. The thread ends once `stop` is set.
    pub fn start(
        self,
        cpu: usize,
        nice: i32,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(desk::ControlDesk, std::thread::JoinHandle<()>)> {
        let stats = Arc::new(AdminStats::default());
        let (admin_end, control_end) = desk::desk(self.addr, Arc::clone(&stats));
        let h = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                crate::runtime::pin(cpu);
                crate::runtime::set_nice(nice);
                serve(self, admin_end, stats, &stop);
            })?;
        Ok((control_end, h))
    }
}

/// The endpoint's side of the desk, shared by its connections (one thread: `Rc`, no lock).
struct Pending {
    desk: AdminDesk,
    next_id: u64,
    waiting: HashMap<u64, tokio::sync::oneshot::Sender<Reply>>,
    /// Wakes the reply pump when a request goes out.
    wake: Rc<tokio::sync::Notify>,
    /// The checkpoint request flag, when checkpoints are on.
    checkpoint: Option<Arc<AtomicBool>>,
}

type Shared = Rc<RefCell<Pending>>;

fn serve(admin: Admin, desk: AdminDesk, stats: Arc<AdminStats>, stop: &AtomicBool) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("tickcore: admin endpoint off: no runtime: {e}"),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let _ = admin.listener.set_nonblocking(true);
        let listener = match tokio::net::TcpListener::from_std(admin.listener) {
            Ok(l) => l,
            Err(e) => return eprintln!("tickcore: admin endpoint off: {e}"),
        };
        let wake = Rc::new(tokio::sync::Notify::new());
        let shared: Shared = Rc::new(RefCell::new(Pending {
            desk,
            next_id: 0,
            waiting: HashMap::new(),
            wake: Rc::clone(&wake),
            checkpoint: admin.checkpoint.clone(),
        }));
        tokio::task::spawn_local(pump_replies(Rc::clone(&shared), wake));
        let token: Rc<Option<String>> = Rc::new(admin.token);
        let mut check = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    connection(stream, &shared, &token, &stats);
                }
                _ = check.tick() => {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                }
            }
        }
    });
}

/// Serves one connection on its own task, within the limits.
fn connection(
    stream: tokio::net::TcpStream,
    shared: &Shared,
    token: &Rc<Option<String>>,
    stats: &Arc<AdminStats>,
) {
    if stats.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS as u64 {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_local(refuse(stream));
        return;
    }
    stats.open.fetch_add(1, Ordering::Relaxed);
    let (shared, token, stats) = (Rc::clone(shared), Rc::clone(token), Arc::clone(stats));
    tokio::task::spawn_local(async move {
        let svc_stats = Arc::clone(&stats);
        let svc = hyper::service::service_fn(move |req| {
            let (shared, token, stats) = (
                Rc::clone(&shared),
                Rc::clone(&token),
                Arc::clone(&svc_stats),
            );
            async move {
                let reply = handle(req, &shared, &token).await;
                stats.requests.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(response(reply))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .keep_alive(true)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
        match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
            Ok(Err(e)) if e.is_timeout() => {
                stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        stats.open.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Tells a client over the connection limit why, and closes.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = format!("more than {MAX_CONNECTIONS} admin connections are open; try again\n");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(BODY_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await
    })
    .await;
}

/// Hands control's replies to the requests waiting for them; polls the ring only while a
/// request is out (every 100 us: the endpoint's CPU is shared with the feed on a small box,
/// and an admin answer may take a millisecond).
async fn pump_replies(shared: Shared, wake: Rc<tokio::sync::Notify>) {
    loop {
        let idle = {
            let mut p = shared.borrow_mut();
            while let Some(r) = p.desk.replies.try_pop() {
                if let Some(tx) = p.waiting.remove(&r.id) {
                    let _ = tx.send(r);
                }
            }
            p.waiting.is_empty()
        };
        if idle {
            wake.notified().await;
        } else {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
}

/// Sends `kind` to control and waits for its reply.
async fn ask(shared: &Shared, kind: AskKind) -> Reply {
    let rx = {
        let mut p = shared.borrow_mut();
        if p.waiting.len() >= desk::MAX_ASKS {
            return Reply::text(0, 503, "too many admin requests in flight; try again");
        }
        let id = p.next_id;
        p.next_id += 1;
        if p.desk.asks.try_push(Ask { id, kind }).is_err() {
            return Reply::text(id, 503, "too many admin requests in flight; try again");
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        p.waiting.insert(id, tx);
        p.wake.notify_one();
        rx
    };
    match tokio::time::timeout(REPLY_PATIENCE, rx).await {
        Ok(Ok(r)) => r,
        _ => Reply::text(
            0,
            503,
            &format!("the control core did not answer within {REPLY_PATIENCE:?}"),
        ),
    }
}

/// Routes one request.
async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    shared: &Shared,
    token: &Option<String>,
) -> Reply {
    if let Some(t) = token {
        let want = format!("Bearer {t}");
        let got = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return Reply::text(
                0,
                401,
                "missing or wrong token: send Authorization: Bearer <TICKCORE_ADMIN_TOKEN>",
            );
        }
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    use hyper::Method;
    let kind = match (&method, path.as_str()) {
        (&Method::GET, "/metrics") => AskKind::Metrics,
        (&Method::GET, "/status") => AskKind::Status,
        (&Method::GET, "/budgets") => AskKind::Budgets,
        (&Method::PUT, "/budgets") => match read_body(req).await {
            Ok(body) => match parse_budget_body(&body) {
                Ok(list) => AskKind::PutBudgets(list),
                Err(e) => return Reply::text(0, 400, &e),
            },
            Err(e) => return Reply::text(0, 400, &e),
        },
        (&Method::PUT, "/checkpoint") => return request_checkpoint(shared),
        (&Method::GET, p) if p.starts_with("/snapshot/") => {
            AskKind::Snapshot(p["/snapshot/".len()..].to_string())
        }
        (_, "/metrics" | "/status" | "/budgets" | "/checkpoint") => {
            return Reply::text(0, 405, "method not allowed")
        }
        _ => {
            return Reply::text(
                0,
                404,
                "no such path: try /metrics /status /snapshot/SYMBOL /budgets /checkpoint",
            )
        }
    };
    ask(shared, kind).await
}

/// `PUT /checkpoint`: asks the ingress to mark the feed (every shard then writes its state).
fn request_checkpoint(shared: &Shared) -> Reply {
    match &shared.borrow().checkpoint {
        Some(flag) => {
            flag.store(true, Ordering::Relaxed);
            Reply::text(
                0,
                202,
                "checkpoint requested: every shard writes one to build_data/checkpoints/ within \
                 the next 1,024 feed messages",
            )
        }
        None => Reply::text(
            0,
            409,
            "checkpoints are off in this run: start it with --checkpoint-every-s S (or --recover)",
        ),
    }
}

/// A request body, at most 64 KiB, within [`BODY_TIMEOUT`].
async fn read_body(req: hyper::Request<hyper::body::Incoming>) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(format!("request body not sent within {BODY_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("request body: {e} (limit {MAX_BODY} bytes)")),
        Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
    }
}

fn response(r: Reply) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(r.body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(r.kind),
    );
    resp
}

/// Budgets from a `PUT /budgets` body: `stage.pNN=DUR` entries (commas or newlines), or a JSON
/// object of the same (`{"apply.p99": "2us"}`).
fn parse_budget_body(body: &[u8]) -> Result<Vec<budget::Budget>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())?;
    let text = text.trim();
    if text.is_empty() {
        return Err("no budgets in the body: send e.g. apply.p99=2us,e2e.p999=50us".into());
    }
    if text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("the body is not JSON: {e}"))?;
        let obj = v.as_object().ok_or("the JSON body must be an object")?;
        obj.iter()
            .map(|(k, v)| {
                let d = v
                    .as_str()
                    .ok_or_else(|| format!("`{k}`: the limit must be a string such as \"2us\""))?;
                budget::parse_budget(&format!("{k}={d}"))
            })
            .collect()
    } else {
        budget::parse_budgets(text)
    }
}

pub fn budgets_json(core: &ControlCore) -> serde_json::Value {
    let m: serde_json::Map<String, serde_json::Value> = core
        .state
        .budgets
        .iter()
        .map(|b| (b.key(), budget::duration_text(b.limit_ns).into()))
        .collect();
    serde_json::Value::Object(m)
}

/// `/status`: cores with their stages, links, sinks, the ladder, budgets, configuration.
pub fn status(core: &ControlCore) -> serde_json::Value {
    let st = &core.state;
    let cores: Vec<serde_json::Value> = st
        .cores
        .iter()
        .map(|c| {
            serde_json::json!({"name": c.name, "cpu": c.cpu, "items": c.items, "events": c.events,
                "gauge": c.gauge, "stages": stages_json(&c.stages)})
        })
        .collect();
    let links: Vec<serde_json::Value> = st
        .links
        .iter()
        .map(|(n, l)| {
            let (sent, back) = (l.sent.get(), l.returned.get());
            serde_json::json!({"name": n, "sent": sent, "in_flight": sent.saturating_sub(back),
                "full_waits": l.full_waits.get()})
        })
        .collect();
    serde_json::json!({
        "uptime_s": st.started.elapsed().as_secs_f64(),
        "admin": core.desk_addr(),
        "cores": cores,
        "links": links,
        "degrade": degrade_json(core),
        "budgets": budgets_json(core),
        "snapshot": stage_json(&st.snapshot),
        "config": st.config,
    })
}

/// The ladder as JSON: level, changes, seconds per level, breaches.
pub fn degrade_json(core: &ControlCore) -> serde_json::Value {
    let st = &core.state;
    let time = core.seconds_at_level();
    let changes: Vec<serde_json::Value> = st
        .changes
        .iter()
        .map(
            |c| serde_json::json!({"at_s": c.at_s, "from": c.from, "to": c.to, "reason": c.reason}),
        )
        .collect();
    serde_json::json!({
        "level": st.ladder.level,
        "levels": LEVELS,
        "enter_after": st.ladder.enter_after,
        "leave_after": st.ladder.leave_after,
        "seconds_at_level": time,
        "changes": changes,
        "breaches": st.breaches,
    })
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(std::sync::atomic::Ordering::Relaxed)
}

/// One per-sink series: name, help, type, and its value for a sink's core.
type Series<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a dyn Fn(&super::CoreTotals) -> u64,
);

/// Counters as Prometheus text: name, help, type, value.
fn counters(m: &mut String, rows: &[(&str, &str, &str, &std::sync::atomic::AtomicU64)]) {
    for (name, help, kind, v) in rows {
        let _ = writeln!(
            m,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
            load(v)
        );
    }
}

/// The endpoint's own counters.
fn admin_metrics(core: &ControlCore, m: &mut String) {
    let Some(stats) = core.desk_stats() else {
        return;
    };
    counters(
        m,
        &[
            (
                "tickcore_admin_requests_total",
                "Admin requests answered.",
                "counter",
                &stats.requests,
            ),
            (
                "tickcore_admin_refused_total",
                "Admin connections refused over the connection limit.",
                "counter",
                &stats.refused,
            ),
            (
                "tickcore_admin_timed_out_total",
                "Admin connections cut off at a timeout.",
                "counter",
                &stats.timed_out,
            ),
            (
                "tickcore_admin_connections",
                "Admin connections open now.",
                "gauge",
                &stats.open,
            ),
        ],
    );
}

/// The WebSocket gateway's counters.
fn gateway_metrics(core: &ControlCore, m: &mut String) {
    let Some(g) = &core.state.gateway else {
        return;
    };
    counters(
        m,
        &[
            (
                "tickcore_ws_accepted_total",
                "WebSocket connections accepted.",
                "counter",
                &g.accepted,
            ),
            (
                "tickcore_ws_connections",
                "WebSocket connections open now.",
                "gauge",
                &g.open,
            ),
            (
                "tickcore_ws_refused_total",
                "WebSocket connections refused (limit or token).",
                "counter",
                &g.refused,
            ),
            (
                "tickcore_ws_slow_closed_total",
                "Clients cut off because their queue overflowed.",
                "counter",
                &g.slow_closed,
            ),
            (
                "tickcore_ws_frames_total",
                "Frames written to clients.",
                "counter",
                &g.frames,
            ),
            (
                "tickcore_ws_conflated_total",
                "BBO and depth updates folded into a frame already queued.",
                "counter",
                &g.conflated,
            ),
            (
                "tickcore_ws_errors_total",
                "Error frames sent to clients.",
                "counter",
                &g.errors,
            ),
            (
                "tickcore_ws_batches_total",
                "Event batches the gateway took from the consumer.",
                "counter",
                &g.batches,
            ),
        ],
    );
}

/// Prometheus label value escaping.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `/metrics` in the Prometheus text format.
pub fn metrics(core: &ControlCore) -> String {
    let st = &core.state;
    let mut m = String::new();
    admin_metrics(core, &mut m);
    gateway_metrics(core, &mut m);
    if let Some(l) = &st.live {
        l.render(&mut m);
    }
    let _ = writeln!(
        m,
        "# HELP tickcore_stage_latency_ns Latency of each pipeline stage per core, nanoseconds."
    );
    let _ = writeln!(m, "# TYPE tickcore_stage_latency_ns summary");
    for c in &st.cores {
        for s in STAGES {
            let h = c.stages.get(s);
            if h.is_empty() {
                continue;
            }
            let l = format!("core=\"{}\",stage=\"{}\"", esc(&c.name), s.name());
            for (_, q) in QUANTILES {
                let _ = writeln!(
                    m,
                    "tickcore_stage_latency_ns{{{l},quantile=\"{q}\"}} {}",
                    h.value_at_quantile(q)
                );
            }
            let _ = writeln!(
                m,
                "tickcore_stage_latency_ns_sum{{{l}}} {:.0}",
                h.mean() * h.len() as f64
            );
            let _ = writeln!(m, "tickcore_stage_latency_ns_count{{{l}}} {}", h.len());
        }
    }
    let counter = |m: &mut String, name: &str, help: &str, kind: &str| {
        let _ = writeln!(m, "# HELP {name} {help}");
        let _ = writeln!(m, "# TYPE {name} {kind}");
    };
    counter(
        &mut m,
        "tickcore_core_items_total",
        "Messages (ingress, shards) or rows (sinks) handled per core.",
        "counter",
    );
    for c in &st.cores {
        let _ = writeln!(
            m,
            "tickcore_core_items_total{{core=\"{}\",cpu=\"{}\"}} {}",
            esc(&c.name),
            c.cpu,
            c.items
        );
    }
    counter(
        &mut m,
        "tickcore_core_events_total",
        "Events emitted per shard core.",
        "counter",
    );
    for c in st.cores.iter().filter(|c| c.name.starts_with("shard")) {
        let _ = writeln!(
            m,
            "tickcore_core_events_total{{core=\"{}\"}} {}",
            esc(&c.name),
            c.events
        );
    }
    counter(
        &mut m,
        "tickcore_ring_sent_total",
        "Batches sent over each ring.",
        "counter",
    );
    for (n, l) in &st.links {
        let _ = writeln!(
            m,
            "tickcore_ring_sent_total{{ring=\"{}\"}} {}",
            esc(n),
            l.sent.get()
        );
    }
    counter(
        &mut m,
        "tickcore_ring_full_waits_total",
        "Times a producer found every buffer of its ring in flight.",
        "counter",
    );
    for (n, l) in &st.links {
        let _ = writeln!(
            m,
            "tickcore_ring_full_waits_total{{ring=\"{}\"}} {}",
            esc(n),
            l.full_waits.get()
        );
    }
    counter(
        &mut m,
        "tickcore_ring_in_flight",
        "Buffers of each ring in flight now (occupancy).",
        "gauge",
    );
    for (n, l) in &st.links {
        let v = l.sent.get().saturating_sub(l.returned.get());
        let _ = writeln!(m, "tickcore_ring_in_flight{{ring=\"{}\"}} {v}", esc(n));
    }
    let sinks: Vec<_> = st
        .cores
        .iter()
        .filter_map(|c| Some((c.name.strip_prefix("sink:")?, c)))
        .collect();
    let lag_p99 = |c: &super::CoreTotals| {
        let h = c.stages.get(crate::telemetry::Stage::Persist);
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(0.99)
        }
    };
    let per_sink: [Series<'_>; 4] = [
        (
            "tickcore_sink_rows_total",
            "Rows each sink committed.",
            "counter",
            &|c| c.items,
        ),
        (
            "tickcore_sink_spool_bytes",
            "Bytes waiting in each sink's spool.",
            "gauge",
            &|c| c.gauge,
        ),
        (
            "tickcore_sink_lost_rows_total",
            "Rows each sink dropped because its database, its spool and its memory bound all \
             refused them (live feeds only; a replay waits instead).",
            "counter",
            &|c| c.lost,
        ),
        (
            "tickcore_sink_lag_ns",
            "Feed read to commit, p99 per sink, nanoseconds.",
            "gauge",
            &lag_p99,
        ),
    ];
    for (name, help, kind, value) in per_sink {
        counter(&mut m, name, help, kind);
        for (sink, c) in &sinks {
            let _ = writeln!(m, "{name}{{sink=\"{}\"}} {}", esc(sink), value(c));
        }
    }
    counter(
        &mut m,
        "tickcore_degrade_level",
        "Degrade ladder level in force (0 = normal).",
        "gauge",
    );
    let _ = writeln!(m, "tickcore_degrade_level {}", st.ladder.level);
    counter(
        &mut m,
        "tickcore_degrade_changes_total",
        "Level changes of the degrade ladder.",
        "counter",
    );
    let _ = writeln!(m, "tickcore_degrade_changes_total {}", st.changes.len());
    counter(
        &mut m,
        "tickcore_degrade_seconds_total",
        "Seconds spent at each degrade level.",
        "counter",
    );
    let time = core.seconds_at_level();
    for (l, t) in time.iter().enumerate() {
        let _ = writeln!(m, "tickcore_degrade_seconds_total{{level=\"{l}\"}} {t:.3}");
    }
    counter(
        &mut m,
        "tickcore_budget_limit_ns",
        "Each latency budget's limit, nanoseconds.",
        "gauge",
    );
    for b in &st.budgets {
        let _ = writeln!(
            m,
            "tickcore_budget_limit_ns{{budget=\"{}\"}} {}",
            b.key(),
            b.limit_ns
        );
    }
    counter(
        &mut m,
        "tickcore_budget_breaches_total",
        "Intervals in which each budget was over its limit.",
        "counter",
    );
    for b in &st.budgets {
        let n = st.breaches.get(&b.key()).copied().unwrap_or(0);
        let _ = writeln!(
            m,
            "tickcore_budget_breaches_total{{budget=\"{}\"}} {n}",
            b.key()
        );
    }
    counter(
        &mut m,
        "tickcore_uptime_seconds",
        "Seconds since the run started.",
        "gauge",
    );
    let _ = writeln!(
        m,
        "tickcore_uptime_seconds {:.3}",
        st.started.elapsed().as_secs_f64()
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_bodies_parse_as_text_or_json_and_bad_ones_say_why() {
        assert_eq!(
            parse_budget_body(b"apply.p99=2us, e2e.p999=50us")
                .unwrap()
                .len(),
            2
        );
        let j = parse_budget_body(br#"{"persist.p99": "20ms"}"#).unwrap();
        assert_eq!(j[0].limit_ns, 20_000_000);
        for (body, says) in [
            (&b""[..], "no budgets"),
            (b"{\"apply.p99\": 2}", "must be a string"),
            (b"{nope", "not JSON"),
            (b"warp.p99=1us", "is not a stage"),
        ] {
            let e = parse_budget_body(body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn addresses_parse_and_off_is_off() {
        assert_eq!("off".parse::<AdminAddr>(), Ok(AdminAddr::Off));
        assert!(matches!(
            "127.0.0.1:0".parse::<AdminAddr>(),
            Ok(AdminAddr::Given(_))
        ));
        assert!("localhost"
            .parse::<AdminAddr>()
            .unwrap_err()
            .contains("HOST:PORT"));
    }

    #[test]
    fn a_public_bind_without_a_token_is_refused() {
        let e = Admin::bind(&"0.0.0.0:0".parse().unwrap(), None)
            .err()
            .unwrap();
        assert!(e.contains("TICKCORE_ADMIN_TOKEN"), "{e}");
        assert!(Admin::bind(&"0.0.0.0:0".parse().unwrap(), Some("t".into()))
            .unwrap()
            .is_some());
    }
}
