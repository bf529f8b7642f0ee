//! One TCP connection to the gateway: HTTP/1.1 through hyper (`GET /` is the live page, a
//! WebSocket upgrade becomes a session), then the session's reader (requests in) and writer
//! (its queue out, heartbeats when idle, the close when it was too slow).
//!
//! Owns the per-connection limits and timeouts. Never holds the hub across an await.

use super::client::Client;
use super::protocol::{self, Code, Refusal, Request};
use super::runs::Stamps;
use super::socket::{Control, Inbound, Outbound};
use super::wire::Frame;
use super::{Shared, Taken, MAX_CONNECTIONS, WRITE_PATIENCE};
use crate::telemetry::Stage;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Bytes;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The live page: one self-contained file, no CDN, no build step.
const PAGE: &str = include_str!("page.html");
/// How long a client cut off as slow gets to take the reason and the close (the run's end
/// may cut it shorter).
const CUT_OFF_PATIENCE: Duration = Duration::from_secs(10);
/// Time to send the HTTP request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest frame a client may send (requests are small).
const MAX_REQUEST_BYTES: usize = 64 << 10;

type Body = Full<Bytes>;

/// Serves one TCP connection.
pub async fn http(stream: tokio::net::TcpStream, hub: Shared, token: Rc<Option<String>>) {
    let svc = hyper::service::service_fn(move |req| {
        let (hub, token) = (Rc::clone(&hub), Rc::clone(&token));
        async move { Ok::<_, std::convert::Infallible>(route(req, hub, &token)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .with_upgrades();
    let _ = conn.await;
}

fn reply(status: u16, kind: &'static str, body: impl Into<Bytes>) -> hyper::Response<Body> {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(kind),
    );
    r
}

fn route(
    mut req: hyper::Request<hyper::body::Incoming>,
    hub: Shared,
    token: &Option<String>,
) -> hyper::Response<Body> {
    let upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return match (req.method().as_str(), req.uri().path()) {
            ("GET", "/") => reply(200, "text/html; charset=utf-8", PAGE),
            _ => reply(
                404,
                "text/plain",
                "GET / is the live page; connect a WebSocket to this address for data\n",
            ),
        };
    }
    let stats = Rc::clone(&hub).borrow().stats.clone();
    if let Some(t) = token {
        if !authorised(&req, t) {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return reply(
                401,
                "text/plain",
                "send ?token=<TICKCORE_WS_TOKEN> or Authorization: Bearer <token>\n",
            );
        }
    }
    if stats.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS as u64 {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return reply(
            503,
            "text/plain",
            format!("more than {MAX_CONNECTIONS} WebSocket connections are open; try again\n"),
        );
    }
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return reply(
            400,
            "text/plain",
            "a WebSocket upgrade needs Sec-WebSocket-Key\n",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    stats.open.fetch_add(1, Ordering::Relaxed);
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    tokio::task::spawn_local(async move {
        if let Ok(up) = on_upgrade.await {
            if hub.borrow().limits.echo {
                run_echo(up).await;
            } else {
                run(up, &hub).await;
            }
        }
        stats.open.fetch_sub(1, Ordering::Relaxed);
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = reply(101, "text/plain", Bytes::new());
    let h = r.headers_mut();
    h.remove(hyper::header::CONTENT_TYPE);
    h.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

fn authorised(req: &hyper::Request<hyper::body::Incoming>, token: &str) -> bool {
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("token="));
    bearer == Some(token) || query == Some(token)
}

/// A connection's read buffer, bytes.
const READ_BUFFER: usize = 4 << 10;
/// Largest frame in echo mode (Autobahn's case 9 sends up to 16 MiB).
const ECHO_MAX_BYTES: usize = 16 << 20;

/// How tungstenite reads a client: a 4 KiB read buffer, not the default 128 KiB (requests are
/// small, and the buffer was zeroed on every read poll: 6% of the process's samples in the
/// gateway with 10 clients, perf, 2026-12-05), and frames of at most `max` bytes.
fn config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Echoes text and binary frames until the client closes (conformance testing only: it runs
/// wholly on tungstenite, reading and writing).
async fn run_echo(up: hyper::upgrade::Upgraded) {
    let io = hyper_util::rt::TokioIo::new(up);
    let config = config(ECHO_MAX_BYTES);
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    while let Some(Ok(m)) = ws.next().await {
        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
            return;
        }
    }
}

/// One WebSocket session, until either side ends it: tungstenite reads the client's half of
/// the socket, the writer copies encoded frames onto the other.
async fn run(up: hyper::upgrade::Upgraded, hub: &Shared) {
    let Ok(parts) = up.downcast::<hyper_util::rt::TokioIo<tokio::net::TcpStream>>() else {
        return; // The gateway serves TCP streams only; nothing else reaches here.
    };
    let (rd, wr) = parts.io.into_inner().into_split();
    let (id, wake, evict) = hub.borrow_mut().join();
    let control = Control::new(Rc::clone(&wake));
    let inbound = Inbound::new(parts.read_buf, rd, Rc::clone(&control));
    let config = config(MAX_REQUEST_BYTES);
    let ws = WebSocketStream::from_raw_socket(inbound, Role::Server, Some(config)).await;
    let mut out = Outbound::new(wr, control);
    tokio::select! {
        _ = writer(&mut out, hub, id, &wake, &evict) => {}
        _ = reader(ws, hub, id, &wake) => {}
    }
    hub.borrow_mut().leave(id);
    // The echo of a close the client began, if the reader left one.
    if out.idle() {
        let _ = tokio::time::timeout(Duration::from_secs(1), out.flush()).await;
    }
}

/// Writes the client's queue as it fills, up to [`GATHER`](super::socket::GATHER) bytes per write; after its last
/// write, its close (its own, or 1001 when the run ends); an error frame and a close (1013)
/// once it is evicted (its queue overflowed, or a write stalled: the hub's patrol decides, so
/// no write arms a timer).
async fn writer(
    out: &mut Outbound,
    hub: &Shared,
    id: usize,
    wake: &tokio::sync::Notify,
    evict: &tokio::sync::Notify,
) {
    let mut stamps = Stamps::default();
    loop {
        loop {
            let taken = hub.borrow_mut().take_frames(id, out.fresh(), &mut stamps);
            match taken {
                Taken::Gone => return,
                Taken::Slow => return cut_off(out, hub, id).await,
                Taken::Frames => {}
            }
            tokio::select! {
                sent = out.flush() => if sent.is_err() { return },
                _ = evict.notified() => return cut_off(out, hub, id).await,
            }
            if stamps.is_empty() {
                break;
            }
            written(hub, id, &mut stamps);
        }
        if let Some(s) = hub.borrow_mut().slot(id) {
            s.busy_since_ns = 0;
        }
        if let Some(bye) = goodbye(hub, id) {
            let _ = tokio::time::timeout(Duration::from_secs(1), out.finish(&[bye])).await;
            return;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = evict.notified() => return cut_off(out, hub, id).await,
        }
    }
}

/// Counts written frames and times each one's delivery.
fn written(hub: &Shared, id: usize, stamps: &mut Stamps) {
    let now = crate::runtime::clock::now_ns();
    let mut h = hub.borrow_mut();
    h.stats.frames.fetch_add(stamps.frames(), Ordering::Relaxed);
    // Frames of one batch carry one ingress time, and a chunk is written at one time: one
    // histogram entry per run of them at most. One per frame was 7% of the gateway's samples
    // with 50 clients (perf, 2026-12-06); frames/s did not move beyond the noise (2 pairs).
    for (ns, n) in stamps.delays(now) {
        h.reporter.current.stages.record_n(Stage::Deliver, ns, n);
        h.reporter.current.items += n;
    }
    stamps.clear();
    if let Some(s) = h.slot(id) {
        s.last_write_ns = now;
    }
}

/// The close to send now that the queue is written, if the connection is to end.
fn goodbye(hub: &Shared, id: usize) -> Option<Frame> {
    let mut h = hub.borrow_mut();
    if let Some((code, reason)) = h.slot(id).and_then(|s| s.client.closing.take()) {
        return Some(Frame::close(code, &reason));
    }
    h.going_away.then(|| {
        Frame::close(
            CloseCode::Away.into(),
            "the feed has ended and the engine is stopping",
        )
    })
}

/// Wall clock, ms since the epoch (heartbeats).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Tells a client that was evicted why, then closes (1013, try again later), both within
/// [`CUT_OFF_PATIENCE`]: a client that reads nothing by then gets the TCP close alone.
async fn cut_off(out: &mut Outbound, hub: &Shared, id: usize) {
    let text = {
        let mut h = hub.borrow_mut();
        let limit = h.limits.queue;
        let overflowed = h.slot(id).is_some_and(|s| s.client.overflowed);
        let msg = if overflowed {
            format!(
                "more than {limit} frames waited for this connection: it reads too slowly for \
                 its subscription; subscribe to fewer symbols or channels, or read faster"
            )
        } else {
            format!(
                "a write to this connection waited {} s for the socket: the client stopped \
                 reading; closing",
                WRITE_PATIENCE.as_secs()
            )
        };
        let mut text = String::new();
        protocol::error(&mut text, &Refusal::new(Code::SlowConsumer, msg), None);
        text
    };
    let close = Frame::close(CloseCode::Again.into(), "slow consumer");
    let _ = tokio::time::timeout(CUT_OFF_PATIENCE, out.finish(&[Frame::text(&text), close])).await;
}

/// Reads requests until the client closes or sends something that ends the session.
async fn reader(
    mut stream: WebSocketStream<Inbound>,
    hub: &Shared,
    id: usize,
    wake: &tokio::sync::Notify,
) {
    while let Some(msg) = stream.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                let r = Refusal::new(
                    Code::BinaryFrame,
                    "binary frames are not read: send JSON text frames".into(),
                );
                refuse(hub, id, &r);
                wake.notify_one();
                continue;
            }
            Err(tokio_tungstenite::tungstenite::Error::Capacity(e)) => {
                let r = Refusal::new(
                    Code::TooLarge,
                    format!("{e}: requests are at most {MAX_REQUEST_BYTES} bytes; closing"),
                );
                refuse(hub, id, &r);
                if let Some(s) = hub.borrow_mut().slot(id) {
                    s.client.closing = Some((1009, "frame too large".into()));
                }
                wake.notify_one();
                // The writer sends the error and the close; this side reads no more.
                return std::future::pending().await;
            }
            Ok(Message::Close(_)) => {
                // One more poll hands tungstenite's echo of the close to the writer's side.
                let _ = stream.next().await;
                return;
            }
            Err(_) => return,
            Ok(_) => continue,
        };
        answer(hub, id, text.as_str());
        wake.notify_one();
    }
}

/// Applies one request and queues its answer.
fn answer(hub: &Shared, id: usize, text: &str) {
    let now = crate::runtime::clock::now_ns();
    let admitted = {
        let mut h = hub.borrow_mut();
        match h.slot(id) {
            Some(s) => s.client.admit(now),
            None => return,
        }
    };
    if !admitted {
        let r = Refusal::new(
            Code::RateLimited,
            "too many requests a second on this connection; this one was dropped".into(),
        );
        return refuse(hub, id, &r);
    }
    let req = match protocol::parse(text) {
        Ok(r) => r,
        Err(r) => return refuse(hub, id, &r),
    };
    let done = {
        let mut h = hub.borrow_mut();
        let h = &mut *h;
        let Some(slot) = h.clients.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let c: &mut Client = &mut slot.client;
        c.unsync(&h.log, &h.streams);
        let done = match &req {
            Request::Subscribe {
                id,
                channels,
                symbols,
            } => c.subscribe(id.as_ref(), channels, symbols, &h.market),
            Request::Unsubscribe {
                id,
                channels,
                symbols,
            } => c.unsubscribe(id.as_ref(), channels, symbols, &h.market),
            Request::Ping { id } => {
                let mut out = String::new();
                protocol::pong(&mut out, id.as_ref());
                c.text(out);
                Ok(())
            }
            Request::List { id } => {
                let mut out = String::new();
                protocol::symbols(&mut out, id.as_ref(), &h.market.known());
                c.text(out);
                Ok(())
            }
        };
        let changed = matches!(req, Request::Subscribe { .. } | Request::Unsubscribe { .. });
        if done.is_ok() && changed {
            h.reindex();
        }
        done
    };
    if let Err(r) = done {
        refuse(hub, id, &r);
    }
}

/// Queues an error frame for `r` (an unknown symbol's lists the symbols that exist), counted.
fn refuse(hub: &Shared, id: usize, r: &Refusal) {
    let mut h = hub.borrow_mut();
    let known = (r.code == Code::UnknownSymbol).then(|| h.market.known());
    let mut out = String::new();
    protocol::error(&mut out, r, known.as_deref());
    if let Some(s) = h.slot(id) {
        s.client.text(out);
    }
    h.stats.errors.fetch_add(1, Ordering::Relaxed);
}
