//! What the gateway's unit tests build events from. Only in tests.

use shards::events::{Trade, TradeKind};

/// Trade `n` of `locate`: match number and timestamp `n`, 1 share at 100.
pub fn trade(locate: u16, n: u64) -> Trade {
    Trade {
        locate,
        timestamp: n,
        match_number: n,
        price: 100,
        shares: 1,
        side: b'B',
        printable: true,
        kind: TradeKind::Executed,
    }
}
