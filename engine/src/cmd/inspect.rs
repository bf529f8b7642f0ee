//! `tickcore inspect`: what a file holds, by type, instrument and time, and what went wrong in it.

use crate::cli::InspectArgs;
use crate::error::{Failure, Result};
use crate::feed::{open, replay, Replay};
use crate::fmt::{bytes, count, rate, time_of_day};
use crate::report::{anomalies_json, anomaly_list, corrupt_summary};
use shards::book::Books;
use shards::itch::ALL_TYPES;
use std::io::Write;

/// Runs the command.
pub fn run(a: &InspectArgs) -> Result<()> {
    let feed = open(&a.input)?;
    let mut books = Books::default();
    let r = replay(&feed, &mut books, a.skip_corrupt)?;
    let out = if a.json {
        json(a, &books, &r)
    } else {
        human(a, &books, &r)
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| Failure::new(format!("stdout: {e}")))
}

fn by_type(books: &Books) -> impl Iterator<Item = (char, u64)> + '_ {
    ALL_TYPES
        .iter()
        .zip(books.by_type())
        .filter(|(_, n)| **n > 0)
        .map(|(t, n)| (*t as char, *n))
}

fn json(a: &InspectArgs, books: &Books, r: &Replay) -> String {
    let mut types = serde_json::Map::new();
    for (t, n) in by_type(books) {
        types.insert(t.to_string(), n.into());
    }
    let w = &r.walk;
    let v = serde_json::json!({
        "file": a.input.display().to_string(),
        "bytes": w.bytes,
        "messages": w.frames,
        "by_type": types,
        "instruments": books.books().len(),
        "first_timestamp_ns": r.first_ts,
        "last_timestamp_ns": r.last_ts,
        "first_timestamp": r.first_ts.map(time_of_day),
        "last_timestamp": r.last_ts.map(time_of_day),
        "live_orders": books.live_orders(),
        "anomalies": anomalies_json(&books.total_anomalies()),
        "corrupt": {
            "regions": w.corrupt_regions,
            "skipped_bytes": w.skipped_bytes,
            "truncated_tail": w.truncated_tail,
            "first_error": w.first_error.map(|e| e.to_string()),
        },
        "elapsed_s": r.elapsed.as_secs_f64(),
    });
    format!("{v}\n")
}

fn human(a: &InspectArgs, books: &Books, r: &Replay) -> String {
    let w = &r.walk;
    let mut s = format!(
        "file          {} ({})\nmessages      {} in {:.3} s ({})\ninstruments   {}\n",
        a.input.display(),
        bytes(w.bytes),
        count(w.frames),
        r.elapsed.as_secs_f64(),
        rate(r.rate()),
        count(books.books().len() as u64)
    );
    if let (Some(f), Some(l)) = (r.first_ts, r.last_ts) {
        s += &format!("time span     {} .. {}\n", time_of_day(f), time_of_day(l));
    }
    s += "by type      ";
    for (t, n) in by_type(books) {
        let pct = n as f64 * 100.0 / w.frames.max(1) as f64;
        s += &format!(" {t} {} ({pct:.1}%)", count(n));
    }
    s += &format!(
        "\nlive orders   {}\nanomalies     {}\n",
        count(books.live_orders() as u64),
        anomaly_list(&books.total_anomalies())
    );
    if let Some(c) = corrupt_summary(w) {
        s += &format!("corrupt       {c}\n");
    }
    s
}
