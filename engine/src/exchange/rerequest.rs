//! The exchange simulator's re-request server: answers `session, seq, count` with downstream
//! packets from the history, unicast to whoever asked, whole messages only, one datagram per
//! request. A request for what it does not hold (or what the operator silenced) gets silence,
//! as the protocol allows.
//!
//! Owns its socket and its counters; runs on a thread of its own and never drops an answer on
//! purpose (faults are the lines' business).

use super::history::History;
use shards::mold::{self, PacketWriter, Session};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the server did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ServerReport {
    /// Requests received.
    pub requests: u64,
    /// Requests answered.
    pub answered: u64,
    /// Messages sent in answers.
    pub messages: u64,
    /// Requests for messages not held or silenced (no answer).
    pub silent: u64,
    /// Datagrams that were not a request.
    pub malformed: u64,
    /// Requests naming another session.
    pub wrong_session: u64,
}

/// Serves until `stop` is set; `sock` must have a read timeout (it is how `stop` is seen).
pub fn serve(
    sock: UdpSocket,
    history: Arc<History>,
    session: Session,
    max_payload: usize,
    stop: Arc<AtomicBool>,
) -> ServerReport {
    let mut r = ServerReport::default();
    let mut w = PacketWriter::new(session, max_payload);
    let mut buf = [0u8; mold::MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let req = match mold::parse_request(&buf[..n]) {
            Ok(q) => q,
            Err(_) => {
                r.malformed += 1;
                continue;
            }
        };
        r.requests += 1;
        if req.session != session {
            r.wrong_session += 1;
            continue;
        }
        if req.seq > history.len() || history.silenced(req.seq) {
            r.silent += 1;
            continue;
        }
        let k = history.pack(&mut w, req.seq, req.count as u64);
        if sock.send_to(w.finish(), from).is_ok() {
            r.answered += 1;
            r.messages += k;
        }
    }
    r
}
