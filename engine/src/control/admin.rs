//! The admin endpoint on the control core: a small HTTP/1.1 server (one request per
//! connection) over a non-blocking listener the control loop polls between intervals.
//!
//! - `GET /metrics`: Prometheus text exposition (format 0.0.4);
//! - `GET /status`: the same as JSON, plus configuration and uptime;
//! - `GET /snapshot/{SYMBOL}`: the owning shard's per-core cache, through the rings;
//! - `GET /budgets`, `PUT /budgets` (`apply.p99=2us,e2e.p999=50us`, or a JSON object of the
//!   same): change budgets while running; bad input is a 400 with the reason.
//!
//! Binds loopback unless told otherwise; any other address needs `TICKCORE_ADMIN_TOKEN`, and
//! then every request must carry `Authorization: Bearer <token>`. Limits: 16 KiB of request
//! head, 64 KiB of body, 200 ms to send it; a client slower than that is cut off, so it can
//! hold the control loop for at most that long (and never a shard).

use super::{stage_json, stages_json, ControlCore, QUANTILES};
use crate::telemetry::budget::{self, LEVELS};
use crate::telemetry::STAGES;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 64 << 10;
const CLIENT_PATIENCE: Duration = Duration::from_millis(200);

/// A bound admin endpoint.
pub struct Admin {
    listener: TcpListener,
    token: Option<String>,
    /// The address it listens on (with the real port when `:0` was asked).
    pub addr: SocketAddr,
    /// Requests answered.
    pub requests: u64,
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
            requests: 0,
        }))
    }

    /// Answers every connection waiting now.
    pub fn poll(&mut self, core: &mut ControlCore) {
        while let Ok((stream, _)) = self.listener.accept() {
            self.requests += 1;
            let _ = self.serve(stream, core);
        }
    }

    fn serve(&self, mut stream: TcpStream, core: &mut ControlCore) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(CLIENT_PATIENCE))?;
        let response = match read_request(&mut stream) {
            Ok(req) => self.route(&req, core),
            Err(e) => Response::text(400, &e),
        };
        stream.write_all(&response.bytes())?;
        stream.flush()
    }

    fn route(&self, req: &Request, core: &mut ControlCore) -> Response {
        if let Some(t) = &self.token {
            let want = format!("Bearer {t}");
            if req.header("authorization") != Some(want.as_str()) {
                return Response::text(
                    401,
                    "missing or wrong token: send Authorization: Bearer <TICKCORE_ADMIN_TOKEN>",
                );
            }
        }
        let path = req.path.split('?').next().unwrap_or("");
        match (req.method.as_str(), path) {
            ("GET", "/metrics") => Response {
                status: 200,
                kind: "text/plain; version=0.0.4",
                body: metrics(core),
            },
            ("GET", "/status") => Response::json(200, &status(core, self)),
            ("GET", "/budgets") => Response::json(200, &budgets_json(core)),
            ("PUT", "/budgets") => match parse_budget_body(&req.body) {
                Ok(list) => {
                    for b in list {
                        budget::upsert(&mut core.state.budgets, b);
                    }
                    Response::json(200, &budgets_json(core))
                }
                Err(e) => Response::text(400, &e),
            },
            ("GET", p) if p.starts_with("/snapshot/") => {
                let sym = &p["/snapshot/".len()..];
                match core.snapshot(sym, Duration::from_millis(500)) {
                    Ok(Some(s)) => Response::json(200, &crate::cmd::run::snapshot_json(&s)),
                    Ok(None) => {
                        Response::text(404, &format!("no instrument `{sym}` in the feed so far"))
                    }
                    Err(e) => Response::text(503, &e),
                }
            }
            (_, "/metrics" | "/status" | "/budgets") => Response::text(405, "method not allowed"),
            _ => Response::text(
                404,
                "no such path: try /metrics /status /snapshot/SYMBOL /budgets",
            ),
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(s: &mut TcpStream) -> Result<Request, String> {
    let start = Instant::now();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD || start.elapsed() > CLIENT_PATIENCE {
            return Err("request head too large or too slow".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before the request ended".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the request: {e}")),
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "request head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, path) = match (first.next(), first.next()) {
        (Some(m), Some(p)) if !m.is_empty() => (m.to_string(), p.to_string()),
        _ => return Err("bad request line".into()),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().map_err(|_| "bad Content-Length"))
        .transpose()?
        .unwrap_or(0);
    if len > MAX_BODY {
        return Err(format!(
            "body of {len} bytes is over the {MAX_BODY}-byte limit"
        ));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        if start.elapsed() > CLIENT_PATIENCE {
            return Err("request body too slow".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before the body ended".into()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the body: {e}")),
        }
    }
    body.truncate(len);
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

struct Response {
    status: u16,
    kind: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, msg: &str) -> Response {
        Response {
            status,
            kind: "text/plain; charset=utf-8",
            body: format!("{msg}\n"),
        }
    }
    fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            kind: "application/json",
            body: v.to_string(),
        }
    }
    fn bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.kind,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
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

fn budgets_json(core: &ControlCore) -> serde_json::Value {
    let m: serde_json::Map<String, serde_json::Value> = core
        .state
        .budgets
        .iter()
        .map(|b| (b.key(), budget::duration_text(b.limit_ns).into()))
        .collect();
    serde_json::Value::Object(m)
}

/// `/status`: cores with their stages, links, sinks, the ladder, budgets, configuration.
pub fn status(core: &ControlCore, admin: &Admin) -> serde_json::Value {
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
            let (sent, back) = (load(&l.sent), load(&l.returned));
            serde_json::json!({"name": n, "sent": sent, "in_flight": sent.saturating_sub(back),
                "full_waits": load(&l.full_waits)})
        })
        .collect();
    serde_json::json!({
        "uptime_s": st.started.elapsed().as_secs_f64(),
        "admin": admin.addr.to_string(),
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
            load(&l.sent)
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
            load(&l.full_waits)
        );
    }
    counter(
        &mut m,
        "tickcore_ring_in_flight",
        "Buffers of each ring in flight now (occupancy).",
        "gauge",
    );
    for (n, l) in &st.links {
        let v = load(&l.sent).saturating_sub(load(&l.returned));
        let _ = writeln!(m, "tickcore_ring_in_flight{{ring=\"{}\"}} {v}", esc(n));
    }
    counter(
        &mut m,
        "tickcore_sink_rows_total",
        "Rows each sink committed.",
        "counter",
    );
    for c in st.cores.iter().filter(|c| c.name.starts_with("sink:")) {
        let _ = writeln!(
            m,
            "tickcore_sink_rows_total{{sink=\"{}\"}} {}",
            esc(&c.name[5..]),
            c.items
        );
    }
    counter(
        &mut m,
        "tickcore_sink_spool_bytes",
        "Bytes waiting in each sink's spool.",
        "gauge",
    );
    for c in st.cores.iter().filter(|c| c.name.starts_with("sink:")) {
        let _ = writeln!(
            m,
            "tickcore_sink_spool_bytes{{sink=\"{}\"}} {}",
            esc(&c.name[5..]),
            c.gauge
        );
    }
    counter(
        &mut m,
        "tickcore_sink_lag_ns",
        "Feed read to commit, p99 per sink, nanoseconds.",
        "gauge",
    );
    for c in st.cores.iter().filter(|c| c.name.starts_with("sink:")) {
        let h = c.stages.get(crate::telemetry::Stage::Persist);
        let v = if h.is_empty() {
            0
        } else {
            h.value_at_quantile(0.99)
        };
        let _ = writeln!(
            m,
            "tickcore_sink_lag_ns{{sink=\"{}\"}} {v}",
            esc(&c.name[5..])
        );
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
