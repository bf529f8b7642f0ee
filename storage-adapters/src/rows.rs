//! Row batches as sinks take them, and their byte form in the spool.
//!
//! A [`RowBatch`] is what the engine hands an adapter: the trades and closed bars of one or more
//! event batches, with their symbols. Its spool encoding is fixed-width little-endian records
//! behind a one-byte version, so a spool written by this build drains in the next.

use crate::pg::{BarRow, TradeRow};
use shards::bars::Bar;
use shards::events::{InstrumentState, Quote, Trade, TradeKind};

/// An instrument's latest state, with its symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateRow {
    /// Symbol, space padded.
    pub symbol: [u8; 8],
    /// The state.
    pub state: InstrumentState,
}

/// Trades and bars on their way to a sink.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowBatch {
    /// Trades.
    pub trades: Vec<TradeRow>,
    /// Closed bars.
    pub bars: Vec<BarRow>,
    /// Latest state of each instrument a batch changed (later entries supersede earlier ones).
    pub states: Vec<StateRow>,
    /// When the oldest row's feed message was read, in the engine's monotonic ns; 0 when not
    /// known (rows decoded from the spool: it does not keep the stamp).
    pub first_ns: u64,
}

const VERSION: u8 = 1;
const TRADE: usize = 8 + 2 + 8 + 8 + 4 + 8 + 1 + 1 + 1;
const BAR: usize = 8 + 2 + 4 + 8 + 4 * 4 + 8 + 16 + 4;
const QUOTE: usize = 4 + 8 + 4;
const STATE: usize = 8 + 2 + 8 + 2 * QUOTE + 4 + 8 + 8 + 8 + 16;

impl RowBatch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.trades.len() + self.bars.len() + self.states.len()
    }

    /// True when it holds no row.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves every row of `other` into `self`.
    pub fn append(&mut self, other: &mut RowBatch) {
        self.trades.append(&mut other.trades);
        self.bars.append(&mut other.bars);
        self.states.append(&mut other.states);
        self.first_ns = match (self.first_ns, other.first_ns) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
    }

    /// The spool form, into `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION);
        out.extend_from_slice(&(self.trades.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.bars.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.states.len() as u32).to_le_bytes());
        for r in &self.trades {
            let t = &r.trade;
            out.extend_from_slice(&r.symbol);
            out.extend_from_slice(&t.locate.to_le_bytes());
            out.extend_from_slice(&t.timestamp.to_le_bytes());
            out.extend_from_slice(&t.match_number.to_le_bytes());
            out.extend_from_slice(&t.price.to_le_bytes());
            out.extend_from_slice(&t.shares.to_le_bytes());
            out.push(t.side);
            out.push(u8::from(t.printable));
            out.push(t.kind as u8);
        }
        for r in &self.bars {
            let b = &r.bar;
            out.extend_from_slice(&r.symbol);
            out.extend_from_slice(&b.locate.to_le_bytes());
            out.extend_from_slice(&b.interval_s.to_le_bytes());
            out.extend_from_slice(&b.start.to_le_bytes());
            for p in [b.open, b.high, b.low, b.close] {
                out.extend_from_slice(&p.to_le_bytes());
            }
            out.extend_from_slice(&b.volume.to_le_bytes());
            out.extend_from_slice(&b.notional.to_le_bytes());
            out.extend_from_slice(&b.trades.to_le_bytes());
        }
        for r in &self.states {
            let t = &r.state;
            out.extend_from_slice(&r.symbol);
            out.extend_from_slice(&t.locate.to_le_bytes());
            out.extend_from_slice(&t.timestamp.to_le_bytes());
            for q in [&t.bid, &t.ask] {
                out.extend_from_slice(&q.price.to_le_bytes());
                out.extend_from_slice(&q.shares.to_le_bytes());
                out.extend_from_slice(&q.orders.to_le_bytes());
            }
            out.extend_from_slice(&t.last_price.to_le_bytes());
            out.extend_from_slice(&t.last_shares.to_le_bytes());
            out.extend_from_slice(&t.trades.to_le_bytes());
            out.extend_from_slice(&t.volume.to_le_bytes());
            out.extend_from_slice(&t.notional.to_le_bytes());
        }
    }

    /// Reads the spool form back; `None` if the bytes are not one (the spool's checksum already
    /// passed, so this means a bug or a spool from an incompatible build).
    pub fn decode(b: &[u8]) -> Option<RowBatch> {
        let mut r = Reader { b, at: 0 };
        if r.u8()? != VERSION {
            return None;
        }
        let (nt, nb, ns) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        if b.len() != 13 + nt * TRADE + nb * BAR + ns * STATE {
            return None;
        }
        let mut out = RowBatch {
            trades: Vec::with_capacity(nt),
            bars: Vec::with_capacity(nb),
            states: Vec::with_capacity(ns),
            first_ns: 0,
        };
        for _ in 0..nt {
            let symbol = r.sym()?;
            let trade = Trade {
                locate: r.u16()?,
                timestamp: r.u64()?,
                match_number: r.u64()?,
                price: r.u32()?,
                shares: r.u64()?,
                side: r.u8()?,
                printable: r.u8()? != 0,
                kind: match r.u8()? {
                    b'E' => TradeKind::Executed,
                    b'C' => TradeKind::ExecutedWithPrice,
                    b'P' => TradeKind::NonDisplayed,
                    b'Q' => TradeKind::Cross,
                    _ => return None,
                },
            };
            out.trades.push(TradeRow { symbol, trade });
        }
        for _ in 0..nb {
            let symbol = r.sym()?;
            let bar = Bar {
                locate: r.u16()?,
                interval_s: r.u32()?,
                start: r.u64()?,
                open: r.u32()?,
                high: r.u32()?,
                low: r.u32()?,
                close: r.u32()?,
                volume: r.u64()?,
                notional: r.u128()?,
                trades: r.u32()?,
            };
            out.bars.push(BarRow { symbol, bar });
        }
        for _ in 0..ns {
            let symbol = r.sym()?;
            let (locate, timestamp) = (r.u16()?, r.u64()?);
            let bid = r.quote()?;
            let ask = r.quote()?;
            let state = InstrumentState {
                locate,
                timestamp,
                bid,
                ask,
                last_price: r.u32()?,
                last_shares: r.u64()?,
                trades: r.u64()?,
                volume: r.u64()?,
                notional: r.u128()?,
                pad: [0; 10],
            };
            out.states.push(StateRow { symbol, state });
        }
        Some(out)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at + N)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn u128(&mut self) -> Option<u128> {
        self.take().map(u128::from_le_bytes)
    }
    fn sym(&mut self) -> Option<[u8; 8]> {
        self.take()
    }
    fn quote(&mut self) -> Option<Quote> {
        Some(Quote {
            price: self.u32()?,
            shares: self.u64()?,
            orders: self.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_the_spool_encoding() {
        let t = Trade {
            locate: 7,
            timestamp: 1,
            match_number: 2,
            price: 3,
            shares: 4,
            side: b'S',
            printable: false,
            kind: TradeKind::Cross,
        };
        let b = Bar {
            locate: 7,
            interval_s: 60,
            start: 5,
            open: 6,
            high: 9,
            low: 1,
            close: 8,
            volume: 10,
            notional: u128::MAX / 3,
            trades: 11,
        };
        let batch = RowBatch {
            trades: vec![
                TradeRow {
                    symbol: *b"AAPL    ",
                    trade: t
                };
                3
            ],
            bars: vec![
                BarRow {
                    symbol: *b"MSFT    ",
                    bar: b
                };
                2
            ],
            states: vec![
                StateRow {
                    symbol: *b"AAPL    ",
                    state: InstrumentState {
                        locate: 7,
                        timestamp: 3,
                        bid: Quote {
                            price: 1,
                            shares: 2,
                            orders: 3,
                        },
                        notional: 99,
                        ..Default::default()
                    },
                };
                2
            ],
            first_ns: 0,
        };
        let mut bytes = Vec::new();
        batch.encode(&mut bytes);
        assert_eq!(RowBatch::decode(&bytes), Some(batch));
        assert_eq!(RowBatch::decode(&bytes[..bytes.len() - 1]), None);
        bytes[0] = 9;
        assert_eq!(RowBatch::decode(&bytes), None);
    }
}
