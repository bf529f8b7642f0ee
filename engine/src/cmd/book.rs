//! `tickcore book`: replays a file (or a generated session) into books and prints them.

use crate::cli::BookArgs;
use crate::error::{Failure, Result};
use crate::feed::{open, replay, Feed, FeedBytes, Replay};
use crate::fmt::{bytes, count, rate};
use crate::report::{anomaly_list, corrupt_summary, selected, write_human, write_json};
use crate::telemetry::memory;
use shards::book::Books;
use shards::synth::{generate, GenConfig, Profile, Scope};
use std::io::Write;
use std::path::PathBuf;

/// The session built when no `--input` is given.
pub const DEMO: GenConfig = GenConfig {
    scope: Scope::M7,
    messages: 2_000_000,
    seed: 1,
    profile: Profile::Realistic,
};

/// Runs the command.
pub fn run(a: &BookArgs) -> Result<()> {
    let feed = match &a.input {
        Some(p) => open(p)?,
        None => {
            let bytes = generate(&DEMO).map_err(|e| Failure::new(e.to_string()))?;
            let name = format!(
                "generated m7 session ({} messages, seed 1)",
                count(DEMO.messages)
            );
            Feed {
                name: PathBuf::from(name),
                bytes: FeedBytes::Owned(bytes),
            }
        }
    };
    let mut books = Books::default();
    let r = replay(&feed, &mut books, a.skip_corrupt)?;
    let sel = selected(&books, a.symbol.as_deref());
    if let (Some(sym), true) = (&a.symbol, sel.is_empty()) {
        return Err(Failure::at(
            &feed.name,
            format!("no instrument with symbol {sym:?}"),
        ));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if a.json {
        write_json(&books, &sel, a.depth, &mut out)
    } else {
        write_human(&books, &sel, a.depth, &mut out)
    };
    written
        .and_then(|_| out.flush())
        .map_err(|e| Failure::new(format!("stdout: {e}")))?;
    let summary = summary(&feed, &books, &r);
    if a.json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(())
}

fn summary(feed: &Feed, books: &Books, r: &Replay) -> String {
    let w = &r.walk;
    let mut s = format!(
        "built {} books from {} messages ({}) of {} in {:.3} s: {}, {:.1} ns/message \
         (after {:.3} s making the books' memory resident); \
         {} live orders, {} of book memory; anomalies: {}",
        count(books.books().len() as u64),
        count(w.frames),
        bytes(w.bytes),
        feed.name.display(),
        r.elapsed.as_secs_f64(),
        rate(r.rate()),
        r.elapsed.as_nanos() as f64 / w.frames.max(1) as f64,
        r.prepared.as_secs_f64(),
        count(books.live_orders() as u64),
        bytes(books.heap_bytes() as u64),
        anomaly_list(&books.total_anomalies())
    );
    if let Some(c) = corrupt_summary(w) {
        s += &format!("; {c}");
    }
    // The input is mapped, and its pages count in the resident set: say how much of the peak
    // is the process's own.
    let (peak, files) = (memory::peak_rss_bytes(), memory::resident_file_bytes());
    s += &format!(
        "; peak RSS {} ({} of it mapped files, the input among them)",
        bytes(peak),
        bytes(files.min(peak))
    );
    s
}
