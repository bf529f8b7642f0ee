//! The event consumer: drains every shard's event link, counts events by type and, when asked,
//! writes them to a file, one line each. Storage adapters attach the same way (a later change).
//!
//! Runs on the first adapter CPU. Reads each batch in place and gives the buffer straight back,
//! so a slow file only slows this thread; shards wait only when all their event buffers are in
//! flight (counted on the link).

use super::batch::{self, Buf};
use super::clock;
use super::ring::{Backoff, Receiver};
use std::io::Write;
use std::time::Duration;

/// Counts of what the consumer saw.
#[derive(Debug, Default, Clone)]
pub struct ConsumerReport {
    /// Event batches read.
    pub batches: u64,
    /// Trades.
    pub trades: u64,
    /// BBO changes.
    pub bbos: u64,
    /// Bars.
    pub bars: u64,
    /// Breaks.
    pub breaks: u64,
    /// Batches that failed validation (a bug if ever non-zero).
    pub bad_batches: u64,
    /// Largest ingress -> consumer delay of a batch's first message, ns.
    pub max_e2e_ns: u64,
    /// Error writing the event file, if one happened (events were still counted).
    pub write_error: Option<String>,
}

/// Drains `links` until every shard has sent its last batch.
pub fn run(
    mut links: Vec<Receiver<Buf>>,
    mut file: Option<Box<dyn Write + Send>>,
) -> ConsumerReport {
    let mut r = ConsumerReport::default();
    let mut done = vec![false; links.len()];
    let mut idle = Backoff::new();
    while done.iter().any(|d| !d) {
        let mut busy = false;
        for (i, link) in links.iter_mut().enumerate() {
            while let Some(buf) = link.try_recv() {
                busy = true;
                done[i] |= take(&buf, &mut r, &mut file);
                link.give_back(buf);
            }
        }
        if busy {
            idle = Backoff::new();
        } else if idle.should_park() {
            // Any link's arrival would do; wait on the first unfinished one, briefly.
            if let Some(i) = done.iter().position(|d| !d) {
                links[i].park(Duration::from_micros(500));
            }
        } else {
            idle.snooze();
        }
    }
    if let Some(f) = file.as_mut() {
        if let Err(e) = f.flush() {
            r.write_error.get_or_insert(e.to_string());
        }
    }
    r
}

fn take(buf: &[u8], r: &mut ConsumerReport, file: &mut Option<Box<dyn Write + Send>>) -> bool {
    let Ok(b) = batch::read_events(buf) else {
        r.bad_batches += 1;
        return false;
    };
    r.batches += 1;
    r.trades += b.trades.len() as u64;
    r.bbos += b.bbos.len() as u64;
    r.bars += b.bars.len() as u64;
    r.breaks += b.breaks.len() as u64;
    let e2e = clock::now_ns().saturating_sub(b.first_ingress_ns.to_native());
    r.max_e2e_ns = r.max_e2e_ns.max(e2e);
    if let Some(f) = file.as_mut() {
        if let Err(e) = write_lines(f, b) {
            r.write_error.get_or_insert(e.to_string());
            *file = None;
        }
    }
    b.last
}

fn write_lines(f: &mut impl Write, b: &batch::ArchivedEventBatch<'_>) -> std::io::Result<()> {
    let shard = b.shard.to_native();
    for t in b.trades.iter() {
        writeln!(
            f,
            "T {shard} {} {} {} {} {} {} {} {}",
            t.locate.to_native(),
            t.timestamp.to_native(),
            t.match_number.to_native(),
            t.price.to_native(),
            t.shares.to_native(),
            t.side as char,
            u8::from(t.printable),
            kind_char(&t.kind)
        )?;
    }
    for q in b.bbos.iter() {
        writeln!(
            f,
            "Q {shard} {} {} {} {} {} {}",
            q.locate.to_native(),
            q.timestamp.to_native(),
            q.bid.price.to_native(),
            q.bid.shares.to_native(),
            q.ask.price.to_native(),
            q.ask.shares.to_native()
        )?;
    }
    for x in b.bars.iter() {
        writeln!(
            f,
            "B {shard} {} {} {} {} {} {} {} {} {}",
            x.locate.to_native(),
            x.interval_s.to_native(),
            x.start.to_native(),
            x.open.to_native(),
            x.high.to_native(),
            x.low.to_native(),
            x.close.to_native(),
            x.volume.to_native(),
            x.trades.to_native()
        )?;
    }
    for k in b.breaks.iter() {
        let (l, m) = (k.locate.to_native(), k.match_number.to_native());
        writeln!(
            f,
            "X {shard} {l} {} {m} {}",
            k.timestamp.to_native(),
            u8::from(k.reversed)
        )?;
    }
    Ok(())
}

fn kind_char(k: &shards::events::ArchivedTradeKind) -> char {
    use shards::events::ArchivedTradeKind as K;
    match k {
        K::Executed => 'E',
        K::ExecutedWithPrice => 'C',
        K::NonDisplayed => 'P',
        K::Cross => 'Q',
    }
}
