//! Book and anomaly reports: the `book --json` line format and the human tables.
//!
//! The JSON line format is an interface: `tickcore run --dump-books` writes the very same bytes,
//! and other tools parse it. One object per instrument, sorted by locate, prices as decimal
//! strings with four decimals, levels best first:
//! `{"symbol":"AAPL","locate":1,"bids":[{"px":"187.2300","qty":300,"orders":2}],"asks":[...],
//! "trades":n,"volume":n,"vwap":"187.2511"}`; `vwap` is `null` before the first trade.

use crate::fmt::count;
use shards::book::{Anomalies, Book, Books, LevelInfo, SideKind};
use shards::price::Px4;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Levels per side shown when no depth is asked for.
pub const DEFAULT_DEPTH: usize = 5;

/// Books sorted by locate, optionally only `symbol`.
pub fn selected<'a>(books: &'a Books, symbol: Option<&str>) -> Vec<&'a Book> {
    let mut v: Vec<&Book> = books
        .books()
        .iter()
        .filter(|b| symbol.is_none_or(|s| b.symbol_str() == s))
        .collect();
    v.sort_by_key(|b| b.locate);
    v
}

/// `depth == 0` means every level.
fn levels(books: &Books, book: &Book, side: SideKind, depth: usize) -> Vec<LevelInfo> {
    let n = if depth == 0 { usize::MAX } else { depth };
    books.depth(book, side).take(n).collect()
}

/// Appends one book as a JSON line (newline included) to `out`.
pub fn json_line(books: &Books, book: &Book, depth: usize, out: &mut String) {
    let sym = serde_json::to_string(book.symbol_str()).expect("strings serialise");
    let _ = write!(out, "{{\"symbol\":{sym},\"locate\":{}", book.locate);
    for (key, side) in [("bids", SideKind::Bid), ("asks", SideKind::Ask)] {
        let _ = write!(out, ",\"{key}\":[");
        for (i, l) in levels(books, book, side, depth).iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(
                out,
                "{sep}{{\"px\":\"{}\",\"qty\":{},\"orders\":{}}}",
                Px4(l.price as u64),
                l.shares,
                l.orders
            );
        }
        out.push(']');
    }
    let s = &book.stats;
    let _ = write!(
        out,
        ",\"trades\":{},\"volume\":{},\"vwap\":",
        s.trades, s.volume
    );
    match s.vwap() {
        Some(v) => {
            let _ = write!(out, "\"{}\"}}", Px4(v));
        }
        None => out.push_str("null}"),
    }
    out.push('\n');
}

/// Writes every selected book as JSON lines.
pub fn write_json(
    books: &Books,
    sel: &[&Book],
    depth: usize,
    w: &mut impl Write,
) -> io::Result<()> {
    let mut line = String::with_capacity(1024);
    for b in sel {
        line.clear();
        json_line(books, b, depth, &mut line);
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Writes every selected book as a human-readable ladder.
pub fn write_human(
    books: &Books,
    sel: &[&Book],
    depth: usize,
    w: &mut impl Write,
) -> io::Result<()> {
    for b in sel {
        let s = &b.stats;
        let px = |p: Option<u64>| p.map_or("-".to_string(), |p| Px4(p).to_string());
        writeln!(
            w,
            "{} (locate {})  trades {}  volume {}  vwap {}  last {}  high {}  low {}",
            b.symbol_str(),
            b.locate,
            count(s.trades),
            count(s.volume),
            px(s.vwap()),
            px((s.trades > 0).then_some(s.last_price as u64)),
            px((s.trades > 0).then_some(s.high as u64)),
            px((s.trades > 0).then_some(s.low as u64)),
        )?;
        let bids = levels(books, b, SideKind::Bid, depth);
        let asks = levels(books, b, SideKind::Ask, depth);
        writeln!(
            w,
            "  {:>12} {:>7} {:>12}  | {:<12} {:>12} {:>7}",
            "bid qty", "orders", "bid", "ask", "ask qty", "orders"
        )?;
        for i in 0..bids.len().max(asks.len()) {
            let l = bids.get(i).map_or(format!("{:33}", ""), |l| {
                format!(
                    "{:>12} {:>7} {:>12}",
                    count(l.shares),
                    l.orders,
                    Px4(l.price as u64)
                )
            });
            let r = asks.get(i).map_or(String::new(), |l| {
                format!(
                    "{:<12} {:>12} {:>7}",
                    Px4(l.price as u64).to_string(),
                    count(l.shares),
                    l.orders
                )
            });
            writeln!(w, "  {l}  | {r}")?;
        }
        if b.anomalies.total() > 0 {
            writeln!(w, "  anomalies: {}", anomaly_list(&b.anomalies))?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// Non-zero anomaly counters as `name n, name n`; `none` when all are zero.
pub fn anomaly_list(a: &Anomalies) -> String {
    let parts: Vec<String> = a
        .fields()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {}", count(*n)))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// What `--skip-corrupt` skipped, in words; `None` when the input was clean.
pub fn corrupt_summary(w: &shards::itch::WalkStats) -> Option<String> {
    (w.corrupt_regions > 0).then(|| {
        format!(
            "skipped {} corrupt region(s), {}{}; first: {}",
            w.corrupt_regions,
            crate::fmt::bytes(w.skipped_bytes),
            if w.truncated_tail {
                ", truncated tail"
            } else {
                ""
            },
            w.first_error.map(|e| e.to_string()).unwrap_or_default()
        )
    })
}

/// Anomaly counters as a JSON object, every counter present.
pub fn anomalies_json(a: &Anomalies) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, n) in a.fields() {
        m.insert(k.to_string(), n.into());
    }
    m.insert("total".to_string(), a.total().into());
    serde_json::Value::Object(m)
}
