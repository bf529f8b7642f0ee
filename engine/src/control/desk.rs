//! The admin endpoint's line to the control core: requests one way, replies the other, over
//! SPSC rings. The endpoint runs on a thread of its own and never touches control's state;
//! control answers on its next turn (a snapshot request a few turns later, when the shard's
//! answer is in).
//!
//! Owns the message shapes and the two ring ends. Never blocks either side: the endpoint keeps
//! at most [`MAX_ASKS`] requests in flight, so a reply always finds room.

use crate::runtime::ring::{self, Consumer, Producer};
use crate::telemetry::budget::Budget;

/// Requests in flight from the endpoint at most.
pub const MAX_ASKS: usize = 64;

/// What the endpoint asks.
#[derive(Debug)]
pub enum AskKind {
    /// `GET /metrics`.
    Metrics,
    /// `GET /status`.
    Status,
    /// `GET /budgets`.
    Budgets,
    /// `PUT /budgets`, already parsed.
    PutBudgets(Vec<Budget>),
    /// `GET /snapshot/SYMBOL`.
    Snapshot(String),
}

/// One request, with the endpoint's id for its reply.
#[derive(Debug)]
pub struct Ask {
    /// Matches the reply to its request.
    pub id: u64,
    /// What is asked.
    pub kind: AskKind,
}

/// One reply: an HTTP status, a content type and a body.
#[derive(Debug)]
pub struct Reply {
    /// The request's id.
    pub id: u64,
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub kind: &'static str,
    /// Body.
    pub body: String,
}

impl Reply {
    /// Plain text, with a newline.
    pub fn text(id: u64, status: u16, msg: &str) -> Reply {
        Reply {
            id,
            status,
            kind: "text/plain; charset=utf-8",
            body: format!("{msg}\n"),
        }
    }

    /// JSON.
    pub fn json(id: u64, status: u16, v: serde_json::Value) -> Reply {
        Reply {
            id,
            status,
            kind: "application/json",
            body: v.to_string(),
        }
    }

    /// Prometheus text exposition.
    pub fn metrics(id: u64, body: String) -> Reply {
        Reply {
            id,
            status: 200,
            kind: "text/plain; version=0.0.4",
            body,
        }
    }
}

/// The endpoint's end.
pub struct AdminDesk {
    /// Requests to control.
    pub asks: Producer<Ask>,
    /// Replies from control.
    pub replies: Consumer<Reply>,
}

/// Control's end.
pub struct ControlDesk {
    /// Requests from the endpoint.
    pub asks: Consumer<Ask>,
    replies: Producer<Reply>,
    /// Where the endpoint listens (for `/status`).
    pub addr: std::net::SocketAddr,
    /// The endpoint's counters (atomics it alone writes; control only reads them).
    pub stats: std::sync::Arc<super::admin::AdminStats>,
}

impl ControlDesk {
    /// Sends a reply; the endpoint keeps at most [`MAX_ASKS`] in flight, so there is room.
    pub fn reply(&mut self, r: Reply) {
        let full = self.replies.try_push(r).is_err();
        debug_assert!(!full, "more replies than requests in flight");
    }
}

/// A connected pair.
pub fn desk(
    addr: std::net::SocketAddr,
    stats: std::sync::Arc<super::admin::AdminStats>,
) -> (AdminDesk, ControlDesk) {
    let (ask_p, ask_c) = ring::ring(MAX_ASKS * 2);
    let (rep_p, rep_c) = ring::ring(MAX_ASKS * 2);
    (
        AdminDesk {
            asks: ask_p,
            replies: rep_c,
        },
        ControlDesk {
            asks: ask_c,
            replies: rep_p,
            addr,
            stats,
        },
    )
}
