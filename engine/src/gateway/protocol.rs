//! The gateway's wire protocol: JSON text frames, in the shape users of Coinbase, Binance,
//! Kraken and Alpaca feeds know. Parses what a client sends and renders what it receives;
//! README "WebSocket" documents every frame with an example.
//!
//! Owns every frame's field names and the depth checksum. Never touches a socket or a queue.

use shards::bars::Bar;
use shards::events::{Bbo, Quote, Trade, TradeKind};
use shards::price::Px4;
use std::fmt::Write as _;

/// Most levels a side a depth subscription can ask for (`depth:10`).
pub const MAX_DEPTH: usize = shards::events::DEPTH_LEVELS;

/// A channel a client subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Every trade, printable or not.
    Trades,
    /// Best bid and offer.
    Bbo,
    /// Closed 1-second and 1-minute bars.
    Bars,
    /// Top N levels a side: a snapshot, then updates.
    Depth(u8),
}

impl Channel {
    /// The name in frames.
    pub fn name(self) -> String {
        match self {
            Channel::Trades => "trades".into(),
            Channel::Bbo => "bbo".into(),
            Channel::Bars => "bars".into(),
            Channel::Depth(n) => format!("depth:{n}"),
        }
    }

    fn parse(s: &str) -> Result<Channel, Refusal> {
        match s {
            "trades" => Ok(Channel::Trades),
            "bbo" => Ok(Channel::Bbo),
            "bars" => Ok(Channel::Bars),
            "depth" => Ok(Channel::Depth(MAX_DEPTH as u8)),
            _ => match s.strip_prefix("depth:").map(str::parse::<usize>) {
                Some(Ok(n)) if (1..=MAX_DEPTH).contains(&n) => Ok(Channel::Depth(n as u8)),
                _ => Err(Refusal::new(
                    Code::UnknownChannel,
                    format!(
                        "`{s}` is not a channel: trades, bbo, bars, depth:N (N 1..={MAX_DEPTH})"
                    ),
                )),
            },
        }
    }
}

/// What a subscription names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Symbols {
    /// `*`: every instrument, also those listed later.
    All,
    /// These symbols, as the client spelled them (upper case, trimmed).
    Some(Vec<String>),
}

/// A request a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Adds channels x symbols.
    Subscribe {
        /// Echoed in the ack.
        id: Option<serde_json::Value>,
        /// Channels.
        channels: Vec<Channel>,
        /// Symbols.
        symbols: Symbols,
    },
    /// Removes channels x symbols.
    Unsubscribe {
        /// Echoed in the ack.
        id: Option<serde_json::Value>,
        /// Channels.
        channels: Vec<Channel>,
        /// Symbols.
        symbols: Symbols,
    },
    /// Answered with a pong frame (a client-side liveness check above WebSocket pings).
    Ping {
        /// Echoed.
        id: Option<serde_json::Value>,
    },
    /// Answered with every symbol in the feed.
    List {
        /// Echoed.
        id: Option<serde_json::Value>,
    },
}

/// Why a request was refused: the error frame's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Not JSON, or not an object.
    BadJson,
    /// An `op` the gateway does not know.
    UnknownOp,
    /// A field missing or of the wrong type.
    BadRequest,
    /// A channel the gateway does not serve.
    UnknownChannel,
    /// A symbol not in the feed (the frame lists those that are).
    UnknownSymbol,
    /// More symbols than a connection may hold.
    TooManySymbols,
    /// More requests a second than a connection may send.
    RateLimited,
    /// A binary frame: the protocol is JSON text.
    BinaryFrame,
    /// A frame over the size limit: the connection closes (1009).
    TooLarge,
    /// The client read too slowly and its queue overflowed: the connection closes.
    SlowConsumer,
    /// Events were lost before the gateway (it was starved of CPU): sequence numbers skip.
    EventsLost,
}

impl Code {
    /// The code in frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadJson => "bad_json",
            Code::UnknownOp => "unknown_op",
            Code::BadRequest => "bad_request",
            Code::UnknownChannel => "unknown_channel",
            Code::UnknownSymbol => "unknown_symbol",
            Code::TooManySymbols => "too_many_symbols",
            Code::RateLimited => "rate_limited",
            Code::BinaryFrame => "binary_frame",
            Code::TooLarge => "too_large",
            Code::SlowConsumer => "slow_consumer",
            Code::EventsLost => "events_lost",
        }
    }
}

/// A refused request: code, a sentence saying what to do, the request's id when it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Code.
    pub code: Code,
    /// What went wrong and what to send instead.
    pub msg: String,
    /// The request's id.
    pub id: Option<serde_json::Value>,
}

impl Refusal {
    /// A refusal without an id.
    pub fn new(code: Code, msg: String) -> Refusal {
        Refusal {
            code,
            msg,
            id: None,
        }
    }
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Request, Refusal> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Refusal::new(
            Code::BadJson,
            format!("not JSON ({e}); send e.g. {EXAMPLE}"),
        )
    })?;
    let Some(o) = v.as_object() else {
        let msg = format!("a request is a JSON object, e.g. {EXAMPLE}");
        return Err(Refusal::new(Code::BadJson, msg));
    };
    let id = o.get("id").cloned();
    let with_id = |mut r: Refusal| {
        r.id = id.clone();
        r
    };
    let op = o.get("op").and_then(|x| x.as_str()).ok_or_else(|| {
        with_id(Refusal::new(
            Code::BadRequest,
            format!("`op` is missing: subscribe, unsubscribe, list or ping, e.g. {EXAMPLE}"),
        ))
    })?;
    match op {
        "ping" => Ok(Request::Ping { id }),
        "list" => Ok(Request::List { id }),
        "subscribe" | "unsubscribe" => {
            let channels = strings(o.get("channels"), "channels")
                .and_then(|cs| cs.iter().map(|c| Channel::parse(c)).collect())
                .map_err(with_id)?;
            let symbols = strings(o.get("symbols"), "symbols").map_err(with_id)?;
            let symbols = if symbols.iter().any(|s| s == "*") {
                Symbols::All
            } else {
                Symbols::Some(symbols.iter().map(|s| s.trim().to_uppercase()).collect())
            };
            Ok(if op == "subscribe" {
                Request::Subscribe {
                    id,
                    channels,
                    symbols,
                }
            } else {
                Request::Unsubscribe {
                    id,
                    channels,
                    symbols,
                }
            })
        }
        _ => Err(with_id(Refusal::new(
            Code::UnknownOp,
            format!("`{op}` is not an op: subscribe, unsubscribe, list or ping"),
        ))),
    }
}

const EXAMPLE: &str =
    r#"{"op":"subscribe","id":1,"channels":["trades","bbo","depth:10"],"symbols":["AAPL"]}"#;

fn strings(v: Option<&serde_json::Value>, field: &str) -> Result<Vec<String>, Refusal> {
    let bad = || {
        Refusal::new(
            Code::BadRequest,
            format!("`{field}` must be a non-empty array of strings, e.g. {EXAMPLE}"),
        )
    };
    let a = v.and_then(|v| v.as_array()).ok_or_else(bad)?;
    if a.is_empty() {
        return Err(bad());
    }
    a.iter()
        .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

/// Writes a JSON string literal (symbols and codes are plain ASCII, messages may not be).
fn string(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

fn head(out: &mut String, kind: &str, channel: &str, symbol: &str, seq: u64, ts: u64) {
    let _ = write!(out, r#"{{"type":"{kind}","channel":"{channel}","symbol":"#);
    string(out, symbol);
    let _ = write!(out, r#","seq":{seq},"ts":{ts}"#);
}

/// Marks a frame that stands for updates the client did not get one by one: its `seq` minus the
/// one the client had says how many it folds.
fn conflated(out: &mut String, conflated: bool) {
    if conflated {
        out.push_str(r#","conflated":true"#);
    }
}

/// A trade frame.
pub fn trade(out: &mut String, symbol: &str, seq: u64, t: &Trade) {
    head(out, "trade", "trades", symbol, seq, t.timestamp);
    let side = match t.side {
        b'B' => "B",
        b'S' => "S",
        _ => "",
    };
    let kind = match t.kind {
        TradeKind::Executed => "E",
        TradeKind::ExecutedWithPrice => "C",
        TradeKind::NonDisplayed => "P",
        TradeKind::Cross => "Q",
    };
    let _ = write!(
        out,
        r#","px":"{}","qty":{},"side":"{side}","match":{},"printable":{},"kind":"{kind}"}}"#,
        Px4(t.price as u64),
        t.shares,
        t.match_number,
        t.printable
    );
}

fn quote(out: &mut String, q: &Quote) {
    let _ = write!(
        out,
        r#"{{"px":"{}","qty":{},"orders":{}}}"#,
        Px4(q.price as u64),
        q.shares,
        q.orders
    );
}

/// A BBO frame (`conflated`: it folds updates the client did not get).
pub fn bbo(out: &mut String, symbol: &str, seq: u64, b: &Bbo, conflated: bool) {
    head(out, "bbo", "bbo", symbol, seq, b.timestamp);
    out.push_str(r#","bid":"#);
    quote(out, &b.bid);
    out.push_str(r#","ask":"#);
    quote(out, &b.ask);
    self::conflated(out, conflated);
    out.push('}');
}

/// A closed bar frame.
pub fn bar(out: &mut String, symbol: &str, seq: u64, b: &Bar) {
    head(out, "bar", "bars", symbol, seq, b.start);
    let _ = write!(
        out,
        r#","interval_s":{},"start":{},"open":"{}","high":"{}","low":"{}","close":"{}","volume":{},"trades":{},"vwap":"{}"}}"#,
        b.interval_s,
        b.start,
        Px4(b.open as u64),
        Px4(b.high as u64),
        Px4(b.low as u64),
        Px4(b.close as u64),
        b.volume,
        b.trades,
        Px4(b.vwap() as u64)
    );
}

/// One side's levels as `[["px",qty,orders],...]`.
fn levels(out: &mut String, ls: &[Quote]) {
    out.push('[');
    for (i, l) in ls.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"["{}",{},{}]"#,
            Px4(l.price as u64),
            l.shares,
            l.orders
        );
    }
    out.push(']');
}

/// A depth frame: a snapshot (`bids`/`asks` are the whole top N) or an update (only the levels
/// that changed, a size of 0 removing one), with the checksum of the top N after it.
pub struct DepthFrame<'a> {
    /// Symbol.
    pub symbol: &'a str,
    /// Levels a side subscribed.
    pub n: u8,
    /// Sequence number.
    pub seq: u64,
    /// Feed time.
    pub ts: u64,
    /// A snapshot (else an update).
    pub snapshot: bool,
    /// Bid levels in the frame.
    pub bids: &'a [Quote],
    /// Ask levels in the frame.
    pub asks: &'a [Quote],
    /// [`checksum`] of the top N after the frame.
    pub crc32: u32,
    /// It folds updates the client did not get (a snapshot sent to a client that fell behind).
    pub conflated: bool,
}

/// Renders a depth frame.
pub fn depth(out: &mut String, f: &DepthFrame<'_>) {
    let kind = if f.snapshot { "snapshot" } else { "update" };
    head(out, kind, &format!("depth:{}", f.n), f.symbol, f.seq, f.ts);
    out.push_str(r#","bids":"#);
    levels(out, f.bids);
    out.push_str(r#","asks":"#);
    levels(out, f.asks);
    let _ = write!(out, r#","crc32":{}"#, f.crc32);
    conflated(out, f.conflated);
    out.push('}');
}

/// The checksum a client checks its copy of the top N against: CRC-32 (IEEE) of the text
/// `px:qty` for each bid level best first, joined by `,`, then `|`, then the ask levels the
/// same way; prices as in frames (`187.2300`). Empty levels are left out.
pub fn checksum(bids: &[Quote], asks: &[Quote]) -> u32 {
    let mut text = String::with_capacity(256);
    let side = |ls: &[Quote], text: &mut String| {
        for (i, l) in ls.iter().filter(|l| l.shares > 0).enumerate() {
            if i > 0 {
                text.push(',');
            }
            let _ = write!(text, "{}:{}", Px4(l.price as u64), l.shares);
        }
    };
    side(bids, &mut text);
    text.push('|');
    side(asks, &mut text);
    crc32fast::hash(text.as_bytes())
}

/// A heartbeat frame (`ts`: wall clock, ms since the epoch).
pub fn heartbeat(out: &mut String, wall_ms: u64) {
    let _ = write!(out, r#"{{"type":"heartbeat","ts":{wall_ms}}}"#);
}

/// A pong frame.
pub fn pong(out: &mut String, id: Option<&serde_json::Value>) {
    out.push_str(r#"{"type":"pong""#);
    if let Some(id) = id {
        let _ = write!(out, r#","id":{id}"#);
    }
    out.push('}');
}

/// The symbols in the feed, sorted.
pub fn symbols(out: &mut String, id: Option<&serde_json::Value>, known: &[String]) {
    out.push_str(r#"{"type":"symbols""#);
    if let Some(id) = id {
        let _ = write!(out, r#","id":{id}"#);
    }
    let _ = write!(
        out,
        r#","symbols":{}}}"#,
        serde_json::Value::from(known.to_vec())
    );
}

/// An ack: the op and id it answers, and the whole subscription after it, as channel ->
/// symbols (`*` for all).
pub fn ack(
    out: &mut String,
    op: &str,
    id: Option<&serde_json::Value>,
    subscription: &[(Channel, Vec<String>)],
) {
    let _ = write!(out, r#"{{"type":"ack","op":"{op}""#);
    if let Some(id) = id {
        let _ = write!(out, r#","id":{id}"#);
    }
    let map: serde_json::Map<String, serde_json::Value> = subscription
        .iter()
        .map(|(c, s)| (c.name(), serde_json::Value::from(s.clone())))
        .collect();
    let _ = write!(
        out,
        r#","subscription":{}}}"#,
        serde_json::Value::Object(map)
    );
}

/// An error frame; `known` lists the symbols in the feed (for `unknown_symbol`).
pub fn error(out: &mut String, r: &Refusal, known: Option<&[String]>) {
    let _ = write!(
        out,
        r#"{{"type":"error","code":"{}","msg":"#,
        r.code.as_str()
    );
    string(out, &r.msg);
    if let Some(id) = &r.id {
        let _ = write!(out, r#","id":{id}"#);
    }
    if let Some(k) = known {
        let _ = write!(out, r#","known":{}"#, serde_json::Value::from(k.to_vec()));
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn a_subscribe_parses_with_its_id_channels_and_symbols() {
        let r = parse(
            r#"{"op":"subscribe","id":7,"channels":["trades","bbo","bars","depth:10"],"symbols":["aapl"," MSFT"]}"#,
        );
        assert_eq!(
            r,
            Ok(Request::Subscribe {
                id: Some(7.into()),
                channels: vec![
                    Channel::Trades,
                    Channel::Bbo,
                    Channel::Bars,
                    Channel::Depth(10)
                ],
                symbols: Symbols::Some(vec!["AAPL".into(), "MSFT".into()]),
            })
        );
        let star = parse(r#"{"op":"unsubscribe","channels":["bbo"],"symbols":["*"]}"#);
        assert!(matches!(
            star,
            Ok(Request::Unsubscribe {
                symbols: Symbols::All,
                ..
            })
        ));
    }

    #[rstest]
    #[case::not_json("{op:", Code::BadJson)]
    #[case::not_an_object("[1,2]", Code::BadJson)]
    #[case::no_op(r#"{"channels":["bbo"],"symbols":["A"]}"#, Code::BadRequest)]
    #[case::unknown_op(r#"{"op":"buy","id":3}"#, Code::UnknownOp)]
    #[case::channels_not_an_array(
        r#"{"op":"subscribe","channels":"bbo","symbols":["A"]}"#,
        Code::BadRequest
    )]
    #[case::no_symbols(r#"{"op":"subscribe","channels":["bbo"]}"#, Code::BadRequest)]
    #[case::empty_symbols(
        r#"{"op":"subscribe","channels":["bbo"],"symbols":[]}"#,
        Code::BadRequest
    )]
    #[case::a_symbol_not_a_string(
        r#"{"op":"subscribe","channels":["bbo"],"symbols":[1]}"#,
        Code::BadRequest
    )]
    #[case::unknown_channel(
        r#"{"op":"subscribe","channels":["quotes"],"symbols":["A"]}"#,
        Code::UnknownChannel
    )]
    #[case::depth_too_deep(
        r#"{"op":"subscribe","channels":["depth:11"],"symbols":["A"]}"#,
        Code::UnknownChannel
    )]
    #[case::depth_zero(
        r#"{"op":"subscribe","channels":["depth:0"],"symbols":["A"]}"#,
        Code::UnknownChannel
    )]
    fn a_bad_request_gets_its_code(#[case] text: &str, #[case] code: Code) {
        let r = parse(text).expect_err("refused");
        assert_eq!(r.code, code, "{}", r.msg);
        let mut out = String::new();
        error(&mut out, &r, None);
        let v: serde_json::Value = serde_json::from_str(&out).expect("an error frame is JSON");
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], code.as_str());
    }

    #[test]
    fn an_error_echoes_the_requests_id() {
        let r = parse(r#"{"op":"buy","id":"x-1"}"#).expect_err("refused");
        let mut out = String::new();
        error(&mut out, &r, Some(&["AAPL".to_string()]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["id"].as_str(), v["known"][0].as_str()),
            (Some("x-1"), Some("AAPL"))
        );
    }

    fn q(price: u32, shares: u64) -> Quote {
        Quote {
            shares,
            price,
            orders: 1,
        }
    }

    #[test]
    fn every_frame_is_json_with_its_fields() {
        let mut out = String::new();
        let t = Trade {
            locate: 1,
            timestamp: 5,
            match_number: 9,
            price: 1_872_300,
            shares: 100,
            side: b'B',
            printable: true,
            kind: TradeKind::Executed,
        };
        trade(&mut out, "AAPL", 1, &t);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&v["channel"], &v["px"], &v["qty"], &v["seq"]),
            (&"trades".into(), &"187.2300".into(), &100.into(), &1.into())
        );
        out.clear();
        bbo(
            &mut out,
            "AAPL",
            2,
            &Bbo::new(1, 6, q(100, 5), q(200, 7)),
            true,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&v["bid"]["px"], &v["conflated"]),
            (&"0.0100".into(), &true.into())
        );
        out.clear();
        let f = DepthFrame {
            symbol: "AAPL",
            n: 2,
            seq: 1,
            ts: 7,
            snapshot: true,
            bids: &[q(100, 5), q(99, 6)],
            asks: &[q(101, 1)],
            crc32: checksum(&[q(100, 5), q(99, 6)], &[q(101, 1)]),
            conflated: false,
        };
        depth(&mut out, &f);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["type"], "snapshot");
        assert_eq!(v["bids"][1], serde_json::json!(["0.0099", 6, 1]));
        assert!(v.get("conflated").is_none());
        out.clear();
        let sub = [(Channel::Depth(5), vec!["*".to_string()])];
        ack(&mut out, "subscribe", Some(&7.into()), &sub);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&v["id"], &v["subscription"]["depth:5"][0]),
            (&7.into(), &"*".into())
        );
    }

    #[test]
    fn the_checksum_is_crc32_of_the_documented_text() {
        let text = "0.0100:5,0.0099:6|0.0101:1";
        assert_eq!(
            checksum(&[q(100, 5), q(99, 6), q(0, 0)], &[q(101, 1)]),
            crc32fast::hash(text.as_bytes())
        );
    }
}
