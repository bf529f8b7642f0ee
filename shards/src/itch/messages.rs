//! The 23 ITCH 5.0 message types: owned values (for encoding and tests) and zero-copy views.
//!
//! Owns the wire layout of every message, declared once in the table at the bottom of this file;
//! everything else (owned structs, views, encoders, the decode dispatch, the length table) is
//! generated from that table so the layouts cannot drift apart. A view is a `&[u8; LEN]`: reading
//! a field is one unaligned big-endian load, with no allocation, copy or bounds check at run time.

use super::field::{get_u48, put_u48, Field};

/// Price(4): unsigned, four implied decimals (`1_872_300` is 187.2300).
pub type Price4 = u32;
/// Price(8): unsigned, eight implied decimals (MWCB levels only).
pub type Price8 = u64;
/// A stock symbol: eight ASCII bytes, right-padded with spaces.
pub type Stock = [u8; 8];

/// The 11 bytes every message starts with, after its type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Header {
    /// Locate code of the instrument; 0 for market-wide messages.
    pub locate: u16,
    /// NASDAQ internal tracking number.
    pub tracking: u16,
    /// Nanoseconds since midnight (48 bits on the wire).
    pub timestamp: u64,
}

impl Header {
    /// Bytes the header takes, type byte included.
    pub const LEN: usize = 11;

    #[inline(always)]
    fn get(b: &[u8]) -> Self {
        Header {
            locate: u16::get(b, 1),
            tracking: u16::get(b, 3),
            timestamp: get_u48(b, 5),
        }
    }

    #[inline(always)]
    fn put(&self, b: &mut [u8]) {
        self.locate.put(b, 1);
        self.tracking.put(b, 3);
        put_u48(self.timestamp, b, 5);
    }
}

/// Where one field sits in a message; lets tests prove the layouts tile each message exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field name as in the generated accessor.
    pub name: &'static str,
    /// Byte offset from the type byte.
    pub offset: usize,
    /// Width in bytes.
    pub size: usize,
}

/// Why a frame could not be decoded as a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame holds no bytes at all.
    Empty,
    /// The type byte names no ITCH 5.0 message.
    UnknownType(u8),
    /// The frame's length is not the fixed length of its type.
    BadLength {
        /// Type byte of the frame.
        tag: u8,
        /// Length the type requires.
        expected: usize,
        /// Length the frame has.
        actual: usize,
    },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DecodeError::Empty => write!(f, "empty message"),
            DecodeError::UnknownType(t) => write!(f, "unknown message type {}", show_tag(t)),
            DecodeError::BadLength {
                tag,
                expected,
                actual,
            } => write!(
                f,
                "message type {} must be {expected} bytes, frame says {actual}",
                show_tag(tag)
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Renders a type byte for messages: `'A'` when printable, `0x07` otherwise.
pub fn show_tag(t: u8) -> String {
    if t.is_ascii_graphic() {
        format!("'{}'", t as char)
    } else {
        format!("0x{t:02x}")
    }
}

macro_rules! itch_messages {
    ($(
        $(#[doc = $doc:literal])*
        $tag:literal $Owned:ident $View:ident $len:literal {
            $( $(#[doc = $fdoc:literal])* $field:ident : $fty:ty = $off:literal ),* $(,)?
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
            pub struct $Owned {
                /// Locate, tracking number and timestamp.
                pub header: Header,
                $( $(#[doc = $fdoc])* pub $field: $fty, )*
            }

            impl $Owned {
                /// Type byte on the wire.
                pub const TYPE: u8 = $tag;
                /// Fixed length on the wire, type byte included.
                pub const LEN: usize = $len;
                /// Layout of the fields after the header.
                pub const FIELDS: &'static [FieldSpec] = &[
                    $( FieldSpec { name: stringify!($field), offset: $off, size: <$fty as Field>::SIZE }, )*
                ];

                /// Writes the message (without framing) into `out`.
                #[inline]
                pub fn encode_into(&self, out: &mut [u8; $len]) {
                    out[0] = $tag;
                    self.header.put(out);
                    $( Field::put(self.$field, out, $off); )*
                }

                /// Appends the message with its BinaryFILE length prefix to `out`.
                #[inline]
                pub fn encode_framed(&self, out: &mut Vec<u8>) {
                    let start = out.len();
                    out.resize(start + 2 + $len, 0);
                    out[start..start + 2].copy_from_slice(&($len as u16).to_be_bytes());
                    let body: &mut [u8; $len] = (&mut out[start + 2..start + 2 + $len])
                        .try_into()
                        .expect("resized to fit");
                    self.encode_into(body);
                }
            }

            $(#[doc = $doc])*
            ///
            /// Zero-copy view: every accessor reads straight from the borrowed bytes.
            #[derive(Clone, Copy, PartialEq, Eq)]
            pub struct $View<'a>(&'a [u8; $len]);

            impl<'a> $View<'a> {
                /// Fixed length on the wire, type byte included.
                pub const LEN: usize = $len;

                /// Wraps exactly `LEN` bytes whose first byte is the type.
                #[inline(always)]
                pub fn new(bytes: &'a [u8; $len]) -> Self {
                    debug_assert_eq!(bytes[0], $tag);
                    $View(bytes)
                }

                /// The message's bytes, type byte first.
                #[inline(always)]
                pub fn bytes(&self) -> &'a [u8; $len] {
                    self.0
                }

                /// Locate, tracking number and timestamp.
                #[inline(always)]
                pub fn header(&self) -> Header {
                    Header::get(self.0)
                }

                /// Locate code of the instrument (0 for market-wide messages).
                #[inline(always)]
                pub fn locate(&self) -> u16 {
                    u16::get(self.0, 1)
                }

                /// Nanoseconds since midnight.
                #[inline(always)]
                pub fn timestamp(&self) -> u64 {
                    get_u48(self.0, 5)
                }

                $(
                    $(#[doc = $fdoc])*
                    #[inline(always)]
                    pub fn $field(&self) -> $fty {
                        <$fty as Field>::get(self.0, $off)
                    }
                )*

                /// Copies the fields out into an owned value.
                pub fn to_owned(&self) -> $Owned {
                    $Owned { header: self.header(), $( $field: self.$field(), )* }
                }
            }

            impl core::fmt::Debug for $View<'_> {
                fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    self.to_owned().fmt(f)
                }
            }
        )*

        /// A decoded message: a typed view borrowing the input bytes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Message<'a> {
            $( $(#[doc = $doc])* $Owned($View<'a>), )*
        }

        /// An owned message, for encoding and for tests.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum OwnedMessage {
            $( $(#[doc = $doc])* $Owned($Owned), )*
        }

        /// Every type byte ITCH 5.0 defines, in spec order.
        pub const ALL_TYPES: &[u8] = &[$($tag),*];

        /// Fixed length of a message type (type byte included), or `None` for an unknown type.
        #[inline(always)]
        pub const fn message_len(tag: u8) -> Option<usize> {
            match tag {
                $( $tag => Some($len), )*
                _ => None,
            }
        }

        /// Decodes one message (the bytes after the framing length).
        ///
        /// Zero-copy: the result borrows `frame`. Fails on an unknown type byte or a length that is
        /// not the type's fixed length. One table load checks both; the typed view then needs no
        /// per-type check, which lets the compiler build the result without a branch per type.
        #[inline(always)]
        pub fn decode(frame: &[u8]) -> Result<Message<'_>, DecodeError> {
            let Some(&tag) = frame.first() else { return Err(DecodeError::Empty) };
            let expected = LEN_BY_TYPE[tag as usize] as usize;
            if expected != frame.len() {
                return Err(if expected == 0 {
                    DecodeError::UnknownType(tag)
                } else {
                    DecodeError::BadLength { tag, expected, actual: frame.len() }
                });
            }
            match tag {
                $(
                    // SAFETY: `frame.len()` equals `$len`: it was checked against `LEN_BY_TYPE`,
                    // which is built from the same table as this arm.
                    $tag => Ok(Message::$Owned($View(unsafe { &*(frame.as_ptr() as *const [u8; $len]) }))),
                )*
                _ => Err(DecodeError::UnknownType(tag)),
            }
        }

        impl Message<'_> {
            /// The type byte.
            pub fn tag(&self) -> u8 {
                match self { $( Message::$Owned(_) => $tag, )* }
            }

            /// Locate, tracking number and timestamp.
            ///
            /// Every arm takes the same first 11 bytes, so the compiler folds the match into one
            /// load: no second type dispatch after [`decode`].
            #[inline(always)]
            pub fn header(&self) -> Header {
                Header::get(self.head())
            }

            /// The 11 header bytes shared by every type.
            #[inline(always)]
            fn head(&self) -> &[u8; Header::LEN] {
                let b: &[u8] = match self { $( Message::$Owned(v) => &v.0[..Header::LEN], )* };
                b.try_into().expect("every message is longer than its header")
            }

            /// The message's bytes, type byte first.
            pub fn bytes(&self) -> &[u8] {
                match self { $( Message::$Owned(v) => &v.bytes()[..], )* }
            }

            /// Copies the message out into an owned value.
            pub fn to_owned(&self) -> OwnedMessage {
                match self { $( Message::$Owned(v) => OwnedMessage::$Owned(v.to_owned()), )* }
            }
        }

        impl OwnedMessage {
            /// The type byte.
            pub fn tag(&self) -> u8 {
                match self { $( OwnedMessage::$Owned(_) => $tag, )* }
            }

            /// Locate, tracking number and timestamp.
            pub fn header(&self) -> Header {
                match self { $( OwnedMessage::$Owned(m) => m.header, )* }
            }

            /// Length on the wire, type byte included, framing excluded.
            pub fn len(&self) -> usize {
                match self { $( OwnedMessage::$Owned(_) => $len, )* }
            }

            /// Never true: every message has at least its type byte.
            pub fn is_empty(&self) -> bool {
                false
            }

            /// Appends the message, without framing, to `out`.
            pub fn encode(&self, out: &mut Vec<u8>) {
                match self {
                    $( OwnedMessage::$Owned(m) => {
                        let mut b = [0u8; $len];
                        m.encode_into(&mut b);
                        out.extend_from_slice(&b);
                    } )*
                }
            }

            /// Appends the message with its BinaryFILE length prefix to `out`.
            pub fn encode_framed(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&(self.len() as u16).to_be_bytes());
                self.encode(out);
            }

            /// Layout of the fields after the header.
            pub fn fields(tag: u8) -> Option<&'static [FieldSpec]> {
                match tag { $( $tag => Some($Owned::FIELDS), )* _ => None }
            }
        }

        $(
            impl From<$Owned> for OwnedMessage {
                fn from(m: $Owned) -> Self {
                    OwnedMessage::$Owned(m)
                }
            }
        )*
    };
}

itch_messages! {
    /// `S` System Event: start/end of messages, system hours and market hours.
    b'S' SystemEvent SystemEventView 12 {
        /// `O` `S` `Q` `M` `E` `C`.
        event_code: u8 = 11,
    }
    /// `R` Stock Directory: one per instrument at the start of the day.
    b'R' StockDirectory StockDirectoryView 39 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// Listing market or tier.
        market_category: u8 = 19,
        /// Financial status indicator.
        financial_status: u8 = 20,
        /// Shares in a round lot.
        round_lot_size: u32 = 21,
        /// `Y` when only round lots are accepted.
        round_lots_only: u8 = 25,
        /// Security class.
        issue_classification: u8 = 26,
        /// Security sub-type.
        issue_subtype: [u8; 2] = 27,
        /// `P` production, `T` test.
        authenticity: u8 = 29,
        /// Reg SHO threshold indicator.
        short_sale_threshold: u8 = 30,
        /// IPO flag.
        ipo_flag: u8 = 31,
        /// LULD reference price tier.
        luld_tier: u8 = 32,
        /// ETP flag.
        etp_flag: u8 = 33,
        /// ETP leverage factor.
        etp_leverage_factor: u32 = 34,
        /// Inverse ETP indicator.
        inverse_indicator: u8 = 38,
    }
    /// `H` Stock Trading Action: halted, paused, quotation only or trading.
    b'H' StockTradingAction StockTradingActionView 25 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// `H` `P` `Q` `T`.
        trading_state: u8 = 19,
        /// Reserved.
        reserved: u8 = 20,
        /// Trading action reason.
        reason: [u8; 4] = 21,
    }
    /// `Y` Reg SHO Short Sale Price Test Restriction.
    b'Y' RegSho RegShoView 20 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// `0` `1` `2`.
        reg_sho_action: u8 = 19,
    }
    /// `L` Market Participant Position.
    b'L' MarketParticipantPosition MarketParticipantPositionView 26 {
        /// Market participant identifier.
        mpid: [u8; 4] = 11,
        /// Symbol, space padded.
        stock: Stock = 15,
        /// `Y` primary market maker.
        primary_market_maker: u8 = 23,
        /// Market maker mode.
        market_maker_mode: u8 = 24,
        /// Participant state.
        participant_state: u8 = 25,
    }
    /// `V` MWCB Decline Level (Price(8) levels).
    b'V' MwcbDeclineLevel MwcbDeclineLevelView 35 {
        /// Level 1, Price(8).
        level1: Price8 = 11,
        /// Level 2, Price(8).
        level2: Price8 = 19,
        /// Level 3, Price(8).
        level3: Price8 = 27,
    }
    /// `W` MWCB Status: a decline level was breached.
    b'W' MwcbStatus MwcbStatusView 12 {
        /// `1` `2` `3`.
        breached_level: u8 = 11,
    }
    /// `K` IPO Quoting Period Update.
    b'K' IpoQuotingPeriod IpoQuotingPeriodView 28 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// Release time, seconds since midnight.
        release_time: u32 = 19,
        /// `A` anticipated, `C` cancelled or postponed.
        release_qualifier: u8 = 23,
        /// IPO price.
        ipo_price: Price4 = 24,
    }
    /// `J` LULD Auction Collar.
    b'J' LuldAuctionCollar LuldAuctionCollarView 35 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// Auction collar reference price.
        reference_price: Price4 = 19,
        /// Upper auction collar price.
        upper_price: Price4 = 23,
        /// Lower auction collar price.
        lower_price: Price4 = 27,
        /// Auction collar extension count.
        extension: u32 = 31,
    }
    /// `h` Operational Halt.
    b'h' OperationalHalt OperationalHaltView 21 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// `Q` Nasdaq, `B` BX, `X` PSX.
        market_code: u8 = 19,
        /// `H` halted, `T` resumed.
        halt_action: u8 = 20,
    }
    /// `A` Add Order, no MPID attribution.
    b'A' AddOrder AddOrderView 36 {
        /// Day-unique order reference.
        order_ref: u64 = 11,
        /// `B` buy, `S` sell.
        side: u8 = 19,
        /// Displayed shares.
        shares: u32 = 20,
        /// Symbol, space padded.
        stock: Stock = 24,
        /// Limit price.
        price: Price4 = 32,
    }
    /// `F` Add Order with MPID attribution.
    b'F' AddOrderMpid AddOrderMpidView 40 {
        /// Day-unique order reference.
        order_ref: u64 = 11,
        /// `B` buy, `S` sell.
        side: u8 = 19,
        /// Displayed shares.
        shares: u32 = 20,
        /// Symbol, space padded.
        stock: Stock = 24,
        /// Limit price.
        price: Price4 = 32,
        /// Market participant identifier.
        attribution: [u8; 4] = 36,
    }
    /// `E` Order Executed, at the order's price.
    b'E' OrderExecuted OrderExecutedView 31 {
        /// Reference of the resting order.
        order_ref: u64 = 11,
        /// Shares executed.
        executed_shares: u32 = 19,
        /// Day-unique match number.
        match_number: u64 = 23,
    }
    /// `C` Order Executed With Price, at a price other than the order's.
    b'C' OrderExecutedWithPrice OrderExecutedWithPriceView 36 {
        /// Reference of the resting order.
        order_ref: u64 = 11,
        /// Shares executed.
        executed_shares: u32 = 19,
        /// Day-unique match number.
        match_number: u64 = 23,
        /// `Y` counts towards volume, `N` does not.
        printable: u8 = 31,
        /// Execution price.
        execution_price: Price4 = 32,
    }
    /// `X` Order Cancel: part of an order's shares leave.
    b'X' OrderCancel OrderCancelView 23 {
        /// Reference of the resting order.
        order_ref: u64 = 11,
        /// Shares removed.
        cancelled_shares: u32 = 19,
    }
    /// `D` Order Delete: the whole order leaves.
    b'D' OrderDelete OrderDeleteView 19 {
        /// Reference of the resting order.
        order_ref: u64 = 11,
    }
    /// `U` Order Replace: the original leaves, a new reference joins the back of its level.
    b'U' OrderReplace OrderReplaceView 35 {
        /// Reference of the order being replaced.
        original_ref: u64 = 11,
        /// Reference of the new order.
        new_ref: u64 = 19,
        /// New displayed shares.
        shares: u32 = 27,
        /// New limit price.
        price: Price4 = 31,
    }
    /// `P` Trade (non-cross): an execution against a non-displayed order.
    b'P' Trade TradeView 44 {
        /// Reference of the non-displayed order (often 0).
        order_ref: u64 = 11,
        /// `B` or `S` (always `B` since 2014).
        side: u8 = 19,
        /// Shares matched.
        shares: u32 = 20,
        /// Symbol, space padded.
        stock: Stock = 24,
        /// Match price.
        price: Price4 = 32,
        /// Day-unique match number.
        match_number: u64 = 36,
    }
    /// `Q` Cross Trade: opening, closing, IPO or halt cross.
    b'Q' CrossTrade CrossTradeView 40 {
        /// Shares matched in the cross.
        shares: u64 = 11,
        /// Symbol, space padded.
        stock: Stock = 19,
        /// Cross price.
        cross_price: Price4 = 27,
        /// Day-unique match number.
        match_number: u64 = 31,
        /// `O` `C` `H` `I`.
        cross_type: u8 = 39,
    }
    /// `B` Broken Trade: an earlier execution is void.
    b'B' BrokenTrade BrokenTradeView 19 {
        /// Match number of the broken execution.
        match_number: u64 = 11,
    }
    /// `I` Net Order Imbalance Indicator.
    b'I' Noii NoiiView 50 {
        /// Shares paired at the reference price.
        paired_shares: u64 = 11,
        /// Shares not paired.
        imbalance_shares: u64 = 19,
        /// `B` `S` `N` `O`.
        imbalance_direction: u8 = 27,
        /// Symbol, space padded.
        stock: Stock = 28,
        /// Far indicative price.
        far_price: Price4 = 36,
        /// Near indicative price.
        near_price: Price4 = 40,
        /// Current reference price.
        current_reference_price: Price4 = 44,
        /// `O` `C` `H` `A`.
        cross_type: u8 = 48,
        /// Price variation indicator.
        price_variation_indicator: u8 = 49,
    }
    /// `N` Retail Price Improvement Indicator.
    b'N' RetailInterest RetailInterestView 20 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// `B` `S` `A` `N`.
        interest_flag: u8 = 19,
    }
    /// `O` Direct Listing with Capital Raise Price Discovery.
    b'O' DirectListing DirectListingView 48 {
        /// Symbol, space padded.
        stock: Stock = 11,
        /// `N` or `Y`.
        open_eligibility: u8 = 19,
        /// Minimum allowable price.
        min_price: Price4 = 20,
        /// Maximum allowable price.
        max_price: Price4 = 24,
        /// Near execution price.
        near_execution_price: Price4 = 28,
        /// Near execution time, nanoseconds.
        near_execution_time: u64 = 32,
        /// Lower price range collar.
        lower_collar: Price4 = 40,
        /// Upper price range collar.
        upper_collar: Price4 = 44,
    }
}

/// Fixed length of every type, indexed by type byte; 0 for unknown types.
///
/// The framing hot path checks a frame against this table with one load.
pub static LEN_BY_TYPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match message_len(i as u8) {
            Some(n) => n as u8,
            None => 0,
        };
        i += 1;
    }
    t
};

/// Index of a type byte in [`ALL_TYPES`] (0..23), for per-type counters; 23 for unknown.
pub static TYPE_INDEX: [u8; 256] = {
    let mut t = [ALL_TYPES.len() as u8; 256];
    let mut i = 0;
    while i < ALL_TYPES.len() {
        t[ALL_TYPES[i] as usize] = i as u8;
        i += 1;
    }
    t
};
