//! What crosses between cores: rkyv-archived batches in reused aligned buffers.
//!
//! - [`FeedBatch`] (ingress -> shard): raw BinaryFILE frames for the shard's instruments, as they
//!   came off the feed, plus the batch's sequence number and the time its first message left the
//!   ingress.
//! - [`EventBatch`] (shard -> consumers): the events one feed batch produced, as fixed-size
//!   records (trades, BBO changes, bars, breaks).
//!
//! The producer serialises a batch into an [`AlignedVec`] it got back from the link (no
//! allocation once the buffer has reached its working size); the receiver reads the archived
//! value in place. Validation: every received batch goes through rkyv's `access` (bytecheck)
//! once, at the receiving core's boundary. Every field is a fixed-size integer, bool or
//! `repr(u8)` enum and the slices are of such records, so checking a batch is a bounds check plus
//! one pass of byte-range checks over records already in cache; an in-process producer should
//! never write a bad batch, and this is where a bug would show instead of corrupting a book.
//! ITCH frames inside a feed batch are checked again by the framing walker, as on a file.

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;
use rkyv::with::InlineAsBox;
use rkyv::{Archive, Serialize};
use shards::bars::Bar;
use shards::events::{Bbo, Break, Depth, InstrumentState, Listing, Trade};

/// A buffer that travels a link.
pub type Buf = AlignedVec<16>;

/// Frames for one shard.
#[derive(Archive, Serialize)]
pub struct FeedBatch<'a> {
    /// Per-link sequence number, from 0.
    pub seq: u64,
    /// Monotonic ns (see [`crate::runtime::clock`]) when its first message was read, or was due
    /// when the replay follows a rate schedule (so queueing behind the schedule is counted).
    pub first_ingress_ns: u64,
    /// The same for its last message (at `--speed max`, where the ingress reads the clock
    /// once a batch, when the batch left): with `first_ingress_ns` it lets the shard time
    /// every message, not only the batch's first.
    pub last_ingress_ns: u64,
    /// When the ingress handed the batch to the ring.
    pub sent_ns: u64,
    /// Messages in `frames`.
    pub messages: u32,
    /// The last batch of the feed: the shard finishes its bars after it.
    pub last: bool,
    /// With a checkpoint mark: the MoldUDP64 session the feed is (spaces for a file). Before
    /// `checkpoint`, so the archive still ends with `frames` (no padding after it).
    pub session: [u8; 10],
    /// Non-zero: after this batch the shard checkpoints its state as of the feed's first
    /// `checkpoint` messages (every shard gets the same number at the same point of the feed).
    pub checkpoint: u64,
    /// BinaryFILE frames (u16 big-endian length + message), in feed order.
    #[rkyv(with = InlineAsBox)]
    pub frames: &'a [u8],
}

/// Events one feed batch produced on one shard.
#[derive(Archive, Serialize)]
pub struct EventBatch<'a> {
    /// The shard that produced them.
    pub shard: u16,
    /// Sequence number of the feed batch they came from.
    pub seq: u64,
    /// When that batch's first message left the ingress.
    pub first_ingress_ns: u64,
    /// The shard's last batch: no more events follow.
    pub last: bool,
    /// Non-zero: the shard checkpointed after this batch, as of the feed's first
    /// `checkpoint` messages (consumers pass it on to the sinks, whose durable rows bound
    /// where a recovery may start).
    pub checkpoint: u64,
    /// Trades, in feed order.
    #[rkyv(with = InlineAsBox)]
    pub trades: &'a [Trade],
    /// BBO changes, in feed order.
    #[rkyv(with = InlineAsBox)]
    pub bbos: &'a [Bbo],
    /// Bars closed by this batch's feed time.
    #[rkyv(with = InlineAsBox)]
    pub bars: &'a [Bar],
    /// Broken trades.
    #[rkyv(with = InlineAsBox)]
    pub breaks: &'a [Break],
    /// Stock directory entries the batch carried (how consumers name locates).
    #[rkyv(with = InlineAsBox)]
    pub listings: &'a [Listing],
    /// The state, after this batch, of every instrument whose trades it changed (a trade
    /// printed or was broken). Instruments whose top alone changed are in `bbos` only.
    #[rkyv(with = InlineAsBox)]
    pub states: &'a [InstrumentState],
    /// The top levels of every instrument whose top levels this batch changed, when a depth
    /// consumer is on (the WebSocket gateway); empty otherwise.
    #[rkyv(with = InlineAsBox)]
    pub depths: &'a [Depth],
}

/// Serialises `value` into `buf` (cleared first) and returns the buffer.
pub fn write<T>(value: &T, mut buf: Buf) -> Buf
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<Buf, rkyv::ser::allocator::ArenaHandle<'a>, RkyvError>,
    >,
{
    buf.clear();
    // The high-level API's thread-local arena: trades and listings (not plain bytes to rkyv)
    // need scratch in proportion to their count, which a fixed stack buffer cannot give
    // (tried 2026-12-05; the long-batch test below fails with 256 bytes).
    match rkyv::api::high::to_bytes_in::<_, RkyvError>(value, buf) {
        Ok(b) => b,
        // Writing into a growable in-memory buffer cannot fail short of running out of memory.
        Err(e) => panic!("serialising a batch failed: {e}"),
    }
}

pub use shards::book::prefetch::touch;

/// Asks for the lines of a batch that was just written on another core, all at once, before
/// it is read: rkyv puts the root at the end and the data at the start, and validation reads
/// the root, then the data, so the misses came one after the other. The shard's apply p50 per
/// message fell from 0.27-0.28 to 0.21-0.22 us with it (m7 at 1M/s, one message a batch, 3
/// pairs, 2026-12-07 08:40). A hint: it never faults or waits.
#[inline]
pub fn prefetch(buf: &[u8]) {
    const LINE: usize = 64;
    /// Lines asked for from the start: a short batch whole, the start of a long one.
    const HEAD_LINES: usize = 4;
    let p = buf.as_ptr();
    for i in (0..buf.len().min(HEAD_LINES * LINE)).step_by(LINE) {
        touch(p.wrapping_add(i));
    }
    touch(p.wrapping_add(buf.len().saturating_sub(1)));
}

/// The feed batch in `buf`, validated.
pub fn read_feed(buf: &[u8]) -> Result<&ArchivedFeedBatch<'static>, RkyvError> {
    rkyv::access::<ArchivedFeedBatch<'static>, RkyvError>(buf)
}

/// The event batch in `buf`, validated.
pub fn read_events(buf: &[u8]) -> Result<&ArchivedEventBatch<'static>, RkyvError> {
    rkyv::access::<ArchivedEventBatch<'static>, RkyvError>(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::events::{Quote, TradeKind};

    #[test]
    fn batches_read_back_in_place() {
        let frames = [0u8, 3, b'X', 1, 2];
        let buf = write(
            &FeedBatch {
                sent_ns: 0,
                last_ingress_ns: 0,
                seq: 7,
                first_ingress_ns: 11,
                messages: 1,
                last: true,
                checkpoint: 0,
                session: [b' '; 10],
                frames: &frames,
            },
            Buf::new(),
        );
        let b = read_feed(&buf).unwrap();
        assert_eq!(
            (b.seq.to_native(), b.messages.to_native(), b.last),
            (7, 1, true)
        );
        assert_eq!(&*b.frames, &frames);

        let t = Trade {
            locate: 3,
            timestamp: 5,
            match_number: 9,
            price: 1_000_000,
            shares: 100,
            side: b'B',
            printable: true,
            kind: TradeKind::Executed,
        };
        let bid = Quote {
            price: 99,
            shares: 1,
            orders: 1,
        };
        let q = Bbo::new(3, 5, bid, Quote::default());
        let buf = write(
            &EventBatch {
                shard: 1,
                seq: 7,
                first_ingress_ns: 11,
                last: false,
                checkpoint: 0,
                trades: &[t, t],
                bbos: &[q],
                bars: &[],
                breaks: &[],
                listings: &[],
                states: &[],
                depths: &[],
            },
            buf,
        );
        let e = read_events(&buf).unwrap();
        assert_eq!(e.trades.len(), 2);
        assert_eq!(e.trades[1].match_number.to_native(), 9);
        assert_eq!(
            e.trades[1].kind,
            shards::events::ArchivedTradeKind::Executed
        );
        assert_eq!(e.bbos[0].bid.price.to_native(), 99);
    }

    #[test]
    fn a_long_batch_of_every_record_type_round_trips() {
        let t = Trade {
            locate: 3,
            timestamp: 5,
            match_number: 9,
            price: 1,
            shares: 1,
            side: b'S',
            printable: true,
            kind: TradeKind::Executed,
        };
        let trades = vec![t; 10_000];
        let states = vec![InstrumentState::default(); 5_000];
        let buf = write(
            &EventBatch {
                shard: 0,
                seq: 1,
                first_ingress_ns: 0,
                last: true,
                checkpoint: 0,
                trades: &trades,
                bbos: &[],
                bars: &[],
                breaks: &[],
                listings: &[Listing {
                    locate: 1,
                    stock: *b"AAPL    ",
                }; 300],
                states: &states,
                depths: &[],
            },
            Buf::new(),
        );
        let e = read_events(&buf).unwrap();
        assert_eq!(
            (e.trades.len(), e.states.len(), e.listings.len()),
            (10_000, 5_000, 300)
        );
        let frames = vec![7u8; 200_000];
        let b = write(
            &FeedBatch {
                seq: 0,
                first_ingress_ns: 0,
                last_ingress_ns: 0,
                sent_ns: 0,
                messages: 1,
                last: false,
                checkpoint: 0,
                session: [b' '; 10],
                frames: &frames,
            },
            Buf::new(),
        );
        assert_eq!(read_feed(&b).unwrap().frames.len(), 200_000);
    }

    #[test]
    fn a_damaged_batch_is_refused_not_read() {
        let frames = [0u8; 64];
        let buf = write(
            &FeedBatch {
                sent_ns: 0,
                last_ingress_ns: 0,
                seq: 1,
                first_ingress_ns: 0,
                messages: 0,
                last: false,
                checkpoint: 0,
                session: [b' '; 10],
                frames: &frames,
            },
            Buf::new(),
        );
        let mut bad = buf.clone();
        let n = bad.len();
        // The root sits at the end; point its slice far past the buffer.
        bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_feed(&bad).is_err());
        // A bool that is neither 0 nor 1.
        let t = [Trade {
            locate: 1,
            timestamp: 0,
            match_number: 0,
            price: 0,
            shares: 0,
            side: b'B',
            printable: true,
            kind: TradeKind::Cross,
        }];
        let mut buf = write(
            &EventBatch {
                shard: 0,
                seq: 0,
                first_ingress_ns: 0,
                last: false,
                checkpoint: 0,
                trades: &t,
                bbos: &[],
                bars: &[],
                breaks: &[],
                listings: &[],
                states: &[],
                depths: &[],
            },
            Buf::new(),
        );
        let kind_at = buf.iter().position(|&b| b == b'Q').unwrap();
        buf[kind_at] = b'Z';
        assert!(read_events(&buf).is_err());
    }
}
