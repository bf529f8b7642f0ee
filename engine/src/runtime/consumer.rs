//! The event consumer: drains every shard's event link, counts events by type, writes them to a
//! file when asked, and turns trades, closed bars and instrument states into row batches for the
//! storage adapters. It keeps the latest state of every instrument: shards send a state only
//! when trades changed it, and each batch's BBO changes are folded in here, off the shard.
//!
//! Runs on the first adapter CPU: when that is the ingress CPU (the default on a small machine),
//! inside the ingress thread, polled where the ingress would wait and after each batch it sends
//! ([`Consumer::poll`]); otherwise on a thread of its own ([`run`]). A poll waits only while an
//! adapter's intake ring is full (counted in `adapter_waits`).
//! Reads each batch in place and gives the buffer straight back.
//! An adapter takes row batches without ever waiting on its database (it spools instead), so
//! this thread never waits on one either; shards wait only when all their event buffers are in
//! flight (counted on the link).

use super::batch::{self, Buf};
use super::clock;
use super::ring::{Backoff, Producer, Receiver};
use crate::gateway::intake::{native_bar, native_quote, native_trade, GatewayFeed};
use shards::events::InstrumentState;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use storage_adapters::pg::{BarRow, TradeRow};
use storage_adapters::rows::{RowBatch, StateRow};

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
    /// Times an adapter's intake ring was full and the consumer waited.
    pub adapter_waits: u64,
    /// Batches the gateway could not take at once (every buffer in flight): they gathered,
    /// BBOs and depths conflating, and went on later; the consumer never waits on it.
    pub gateway_gathered: u64,
    /// Times the consumer yielded its CPU to a gateway sharing it that had fallen a turn behind
    /// (`gateway::intake::Turns`).
    pub gateway_turns: u64,
}

/// Where the consumer sends rows for one storage adapter.
pub struct AdapterFeed {
    /// Row batches, in feed order per shard.
    pub tx: Producer<RowBatch>,
    /// Set once the last batch is in the ring.
    pub done: Arc<AtomicBool>,
    /// Which rows the adapter takes.
    pub wants: storage_adapters::adapter::Wants,
    /// Checkpoint marks every shard has passed, after the rows before them.
    pub marks: Producer<u64>,
}

/// What the consumer knows of every instrument, by locate.
struct Instruments {
    /// Symbols, from the listings the shards pass on.
    by_locate: Box<[[u8; 8]]>,
    /// The latest state of every instrument, by locate: shards send a state only when an
    /// instrument's trade statistics changed, and the consumer folds each batch's BBO changes
    /// into it, so that the adapters still get every changed instrument's full state.
    states: Box<[InstrumentState]>,
    /// Locates whose state the batch being read changed, each once.
    changed: Vec<u16>,
    marked: Box<[bool]>,
}

impl Instruments {
    /// Nothing known yet: blank symbols and, when `with_states` (some adapter takes rows, so
    /// [`Instruments::fold`] will run), empty states: 6 MiB that a run without adapters skips.
    fn new(with_states: bool) -> Self {
        let states = if with_states { 1 << 16 } else { 0 };
        Instruments {
            by_locate: vec![*b"        "; 1 << 16].into_boxed_slice(),
            states: vec![InstrumentState::default(); states].into_boxed_slice(),
            changed: Vec::new(),
            marked: vec![false; 1 << 16].into_boxed_slice(),
        }
    }

    fn mark(&mut self, locate: u16) {
        let m = &mut self.marked[locate as usize];
        if !*m {
            *m = true;
            self.changed.push(locate);
        }
    }

    /// Folds one batch's states and BBO changes into the table; returns the changed states.
    fn fold(&mut self, b: &batch::ArchivedEventBatch<'_>) -> Vec<StateRow> {
        for s in b.states.iter() {
            let locate = s.locate.to_native();
            self.states[locate as usize] = native_state(s);
            self.mark(locate);
        }
        for q in b.bbos.iter() {
            let locate = q.locate.to_native();
            let st = &mut self.states[locate as usize];
            st.locate = locate;
            st.timestamp = st.timestamp.max(q.timestamp.to_native());
            st.bid = native_quote(&q.bid);
            st.ask = native_quote(&q.ask);
            self.mark(locate);
        }
        let mut rows = Vec::with_capacity(self.changed.len());
        for &l in &self.changed {
            self.marked[l as usize] = false;
            rows.push(StateRow {
                symbol: self.by_locate[l as usize],
                state: self.states[l as usize],
            });
        }
        self.changed.clear();
        rows
    }
}

fn native_state(s: &shards::events::ArchivedInstrumentState) -> InstrumentState {
    InstrumentState {
        locate: s.locate.to_native(),
        timestamp: s.timestamp.to_native(),
        bid: native_quote(&s.bid),
        ask: native_quote(&s.ask),
        last_price: s.last_price.to_native(),
        last_shares: s.last_shares.to_native(),
        trades: s.trades.to_native(),
        volume: s.volume.to_native(),
        notional: s.notional.to_native(),
        pad: [0; 10],
    }
}

/// How long the consumer stays awake (yielding) after its last batch before it parks.
const STAY_AWAKE: Duration = Duration::from_millis(2);

/// The consumer's state, polled either by its own thread ([`run`]) or, when it shares the
/// ingress CPU, from the ingress thread's waits ([`Consumer::poll`]), so that two roles on one
/// CPU take turns at points they choose instead of preempting each other.
pub struct Consumer {
    links: Vec<Receiver<Buf>>,
    file: Option<Box<dyn Write + Send>>,
    adapters: Vec<AdapterFeed>,
    gateway: Option<GatewayFeed>,
    known: Instruments,
    done: Vec<bool>,
    /// Each shard's last checkpoint mark, and the last one every shard had passed.
    marks: (Vec<u64>, u64),
    report: ConsumerReport,
    /// Never parks (its thread spins, by the plan): it yields instead.
    spins: bool,
}

impl Consumer {
    /// A consumer of `links`, writing events to `file`, rows to `adapters` and what clients
    /// take to the WebSocket `gateway`.
    pub fn new(
        links: Vec<Receiver<Buf>>,
        file: Option<Box<dyn Write + Send>>,
        adapters: Vec<AdapterFeed>,
        gateway: Option<GatewayFeed>,
    ) -> Self {
        Consumer {
            gateway,
            done: vec![false; links.len()],
            marks: (vec![0; links.len()], 0),
            known: Instruments::new(!adapters.is_empty()),
            links,
            file,
            adapters,
            report: ConsumerReport::default(),
            spins: false,
        }
    }

    /// When `spins` (the plan has its thread spin), never parks, and promises so on every
    /// link: the shards then send their events without a fence.
    pub fn spinning(mut self, spins: bool) -> Self {
        self.spins = spins;
        if spins {
            self.links.iter_mut().for_each(Receiver::never_park);
        }
        self
    }

    /// Takes every event batch waiting on the links; returns whether there was any.
    pub fn poll(&mut self) -> bool {
        let mut busy = false;
        if let Some(g) = self.gateway.as_mut() {
            // What gathered while the gateway's buffers were all in flight.
            g.flush();
        }
        for (i, link) in self.links.iter_mut().enumerate() {
            while let Some(buf) = link.try_recv() {
                busy = true;
                let r = &mut self.report;
                let outs = Outs {
                    file: &mut self.file,
                    adapters: &mut self.adapters,
                    gateway: self.gateway.as_mut(),
                };
                let (last, mark) = take(&buf, r, &mut self.known, outs);
                self.done[i] |= last;
                link.give_back(buf);
                if mark > 0 {
                    self.marks.0[i] = mark;
                    pass_marks(&mut self.marks, &mut self.adapters);
                }
            }
        }
        busy
    }

    /// Yields the CPU to a gateway that shares it and has fallen behind, if it is owed a turn
    /// (`gateway::intake::Turns`); for the ingress thread to call while its CPU is spare.
    /// Returns whether it did.
    pub fn give_turn(&mut self) -> bool {
        self.gateway.as_mut().is_some_and(|g| g.give_turn())
    }

    /// True once every shard has sent its last batch.
    pub fn finished(&self) -> bool {
        self.done.iter().all(|d| *d)
    }

    /// Waits a little for the first unfinished link.
    fn park(&self, timeout: Duration) {
        if let Some(i) = self.done.iter().position(|d| !d) {
            self.links[i].park(timeout);
        }
    }

    /// Polls until every shard has sent its last batch, flushes the event file and tells the
    /// adapters no more rows come.
    pub fn drain(self) -> ConsumerReport {
        self.drain_with(&mut || {})
    }

    /// As [`drain`](Self::drain), giving `other` (another role on this thread) a turn each
    /// time round.
    pub fn drain_with(mut self, other: &mut dyn FnMut()) -> ConsumerReport {
        let mut idle = Backoff::new();
        let mut idle_since: Option<std::time::Instant> = None;
        while !self.finished() {
            other();
            if self.poll() {
                idle = Backoff::new();
                idle_since = None;
            } else if idle_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                < STAY_AWAKE
            {
                // Parked, every event batch would cost its shard a futex wake (microseconds on
                // the shard's clock); yielding keeps the CPU free for whoever shares it.
                std::thread::yield_now();
            } else if idle.should_park() {
                match self.spins {
                    true => std::thread::yield_now(),
                    false => self.park(Duration::from_micros(500)),
                }
            } else {
                idle.snooze();
            }
        }
        if let Some(f) = self.file.as_mut() {
            if let Err(e) = f.flush() {
                self.report.write_error.get_or_insert(e.to_string());
            }
        }
        for a in &self.adapters {
            a.done.store(true, Ordering::Release);
        }
        if let Some(g) = self.gateway.as_mut() {
            g.finish();
            self.report.gateway_gathered = g.gathered;
            self.report.gateway_turns = g.turns.given;
        }
        self.report
    }
}

/// Drains `links` until every shard has sent its last batch.
pub fn run(
    links: Vec<Receiver<Buf>>,
    file: Option<Box<dyn Write + Send>>,
    adapters: Vec<AdapterFeed>,
) -> ConsumerReport {
    Consumer::new(links, file, adapters, None).drain()
}

/// Where one event batch goes besides the counts.
struct Outs<'a> {
    file: &'a mut Option<Box<dyn Write + Send>>,
    adapters: &'a mut [AdapterFeed],
    gateway: Option<&'a mut GatewayFeed>,
}

/// Once every shard has passed a checkpoint mark, tells each adapter (after the rows before
/// it): the adapter records it once those rows are durable. A full mark ring skips the mark (a
/// later one covers it).
fn pass_marks(marks: &mut (Vec<u64>, u64), adapters: &mut [AdapterFeed]) {
    let low = marks.0.iter().copied().min().unwrap_or(0);
    if low > marks.1 {
        marks.1 = low;
        for a in adapters {
            let _ = a.marks.try_push(low);
        }
    }
}

/// Takes one event batch; returns whether it was its shard's last, and its checkpoint mark.
fn take(
    buf: &[u8],
    r: &mut ConsumerReport,
    known: &mut Instruments,
    outs: Outs<'_>,
) -> (bool, u64) {
    let Outs {
        file,
        adapters,
        gateway,
    } = outs;
    let Ok(b) = batch::read_events(buf) else {
        r.bad_batches += 1;
        return (false, 0);
    };
    if let Some(g) = gateway {
        g.send(b);
    }
    for l in b.listings.iter() {
        known.by_locate[l.locate.to_native() as usize] = l.stock;
    }
    let changes =
        !b.trades.is_empty() || !b.bars.is_empty() || !b.states.is_empty() || !b.bbos.is_empty();
    if !adapters.is_empty() && changes {
        let rows = rows_of(b, known);
        for a in adapters.iter_mut() {
            let w = a.wants;
            let mut item = RowBatch {
                trades: if w.trades {
                    rows.trades.clone()
                } else {
                    Vec::new()
                },
                bars: if w.bars {
                    rows.bars.clone()
                } else {
                    Vec::new()
                },
                states: if w.states {
                    rows.states.clone()
                } else {
                    Vec::new()
                },
                first_ns: rows.first_ns,
            };
            if item.is_empty() {
                continue;
            }
            let mut backoff = Backoff::new();
            while let Err(back) = a.tx.try_push(item) {
                item = back;
                r.adapter_waits += 1;
                backoff.snooze();
            }
        }
    }
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
    (b.last, b.checkpoint.to_native())
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

fn rows_of(b: &batch::ArchivedEventBatch<'_>, known: &mut Instruments) -> RowBatch {
    let trades = b
        .trades
        .iter()
        .map(|t| TradeRow {
            symbol: known.by_locate[t.locate.to_native() as usize],
            trade: native_trade(t),
        })
        .collect();
    let bars = b
        .bars
        .iter()
        .map(|x| BarRow {
            symbol: known.by_locate[x.locate.to_native() as usize],
            bar: native_bar(x),
        })
        .collect();
    let states = known.fold(b);
    RowBatch {
        trades,
        bars,
        states,
        first_ns: b.first_ingress_ns.to_native(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use batch::EventBatch;
    use shards::events::{Bbo, Quote};

    fn quote(price: u32) -> Quote {
        Quote {
            price,
            shares: 100,
            orders: 1,
        }
    }

    fn fold(known: &mut Instruments, bbos: &[Bbo], states: &[InstrumentState]) -> Vec<StateRow> {
        let ev = EventBatch {
            shard: 0,
            seq: 0,
            first_ingress_ns: 0,
            last: false,
            checkpoint: 0,
            trades: &[],
            bbos,
            bars: &[],
            breaks: &[],
            listings: &[],
            states,
            depths: &[],
        };
        let buf = batch::write(&ev, Buf::new());
        known.fold(batch::read_events(&buf).expect("a batch we just wrote"))
    }

    /// A state comes from the shard only when trades changed it; BBOs fold into the latest
    /// state, so every changed instrument still gets its full state, once per batch.
    #[test]
    fn bbos_fold_into_the_latest_state_of_each_instrument() {
        let mut known = Instruments::new(true);
        let traded = InstrumentState {
            locate: 1,
            timestamp: 50,
            bid: quote(90),
            ask: quote(110),
            last_price: 100,
            last_shares: 10,
            trades: 3,
            volume: 30,
            notional: 3_000,
            ..Default::default()
        };
        let bbos = [
            Bbo::new(1, 40, quote(91), quote(110)),
            Bbo::new(2, 45, quote(50), quote(60)),
            Bbo::new(1, 60, quote(92), quote(109)),
        ];
        let rows = fold(&mut known, &bbos, &[traded]);
        assert_eq!(rows.len(), 2, "each changed instrument once");
        let one = rows.iter().find(|r| r.state.locate == 1).unwrap().state;
        assert_eq!((one.bid, one.ask), (quote(92), quote(109)), "the last BBO");
        assert_eq!(
            one.timestamp, 60,
            "the later of the state's and the BBOs' times"
        );
        assert_eq!((one.trades, one.volume, one.notional), (3, 30, 3_000));
        let two = rows.iter().find(|r| r.state.locate == 2).unwrap().state;
        assert_eq!((two.bid, two.trades, two.timestamp), (quote(50), 0, 45));

        // A later batch that only moves the top keeps the trade statistics.
        let rows = fold(&mut known, &[Bbo::new(1, 70, quote(93), quote(109))], &[]);
        assert_eq!(rows.len(), 1);
        let one = rows[0].state;
        assert_eq!((one.bid, one.timestamp, one.trades), (quote(93), 70, 3));
        assert!(fold(&mut known, &[], &[]).is_empty(), "marks are cleared");
    }
}
