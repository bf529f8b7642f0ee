//! MoldUDP64 1.00: the transport NASDAQ sends TotalView-ITCH over, as UDP datagrams.
//!
//! Owns the datagram layout and nothing else: the downstream packet (session, sequence number,
//! message count, then message blocks), heartbeats, end of session and the re-request. Parsing
//! checks a whole datagram before handing out any of it, so a receiver never applies half of a
//! malformed packet. Shared by the exchange simulator and the receiver, which share nothing else.
//! Never allocates, never does I/O.
//!
//! Layout (all integers big-endian):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 10 | session, alphanumeric, right-padded with spaces |
//! | 10 | 8 | sequence number of the first message (from 1); for a heartbeat or end of session, the next one expected |
//! | 18 | 2 | message count; 0 heartbeat, 0xFFFF end of session |
//! | 20 | ... | `count` blocks, each a u16 length then that many bytes |
//!
//! A re-request has the same 20 bytes: session, first sequence wanted, how many.

/// Bytes before the first message block.
pub const HEADER_LEN: usize = 20;
/// Bytes of the session field.
pub const SESSION_LEN: usize = 10;
/// The message count that marks end of session.
pub const END_OF_SESSION: u16 = 0xFFFF;
/// Default largest payload (bytes after the header) a sender packs into one datagram.
pub const DEFAULT_MAX_PAYLOAD: usize = 1400;
/// The largest datagram this codec writes or a receiver needs room for: a full Ethernet MTU.
pub const MAX_DATAGRAM: usize = 1500;

/// A session name: ten alphanumeric bytes, right-padded with spaces.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Session(pub [u8; SESSION_LEN]);

impl Session {
    /// Parses an operator's session name: 1 to 10 letters or digits.
    pub fn parse(s: &str) -> Result<Session, String> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > SESSION_LEN || !b.iter().all(u8::is_ascii_alphanumeric) {
            return Err(format!(
                "`{s}` is not a MoldUDP64 session: 1 to 10 letters or digits"
            ));
        }
        let mut out = [b' '; SESSION_LEN];
        out[..b.len()].copy_from_slice(b);
        Ok(Session(out))
    }

    /// Whether the field holds what MoldUDP64 allows: alphanumerics, then only spaces.
    pub fn is_valid(&self) -> bool {
        let used = self.0.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
        used > 0 && self.0[..used].iter().all(u8::is_ascii_alphanumeric)
    }

    /// The name without its padding (lossy for bytes that are not ASCII).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.0).trim_end().to_string()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session({:?})", self.name())
    }
}

impl std::fmt::Display for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a downstream packet says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `n` messages, the first with the header's sequence number.
    Messages(u16),
    /// Nothing new; the header's sequence number is the next one expected.
    Heartbeat,
    /// The session is over; the header's sequence number is one past its last message.
    EndOfSession,
}

/// Why a datagram is not a MoldUDP64 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than the 20-byte header.
    ShortHeader {
        /// Bytes received.
        len: usize,
    },
    /// The session field is not alphanumeric and space-padded.
    BadSession,
    /// Sequence number 0 (they start at 1).
    ZeroSequence,
    /// A block's length runs past the end of the datagram.
    BlockPastEnd {
        /// Index of the block (from 0).
        block: u16,
        /// Its offset in the datagram.
        offset: usize,
    },
    /// The datagram holds a different number of blocks than the header says, or bytes after
    /// the last one, or a heartbeat or end of session carries bytes.
    CountMismatch {
        /// The header's count.
        declared: u16,
        /// Whole blocks found.
        found: u16,
        /// Bytes left after them.
        trailing: usize,
    },
    /// A block of length 0 (no message can be empty).
    EmptyBlock {
        /// Index of the block.
        block: u16,
    },
}

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            PacketError::ShortHeader { len } => {
                write!(f, "short header: {len} bytes, a MoldUDP64 header is 20")
            }
            PacketError::BadSession => f.write_str("session field is not alphanumeric"),
            PacketError::ZeroSequence => f.write_str("sequence number 0"),
            PacketError::BlockPastEnd { block, offset } => {
                write!(f, "block {block} at byte {offset} runs past the datagram")
            }
            PacketError::CountMismatch {
                declared,
                found,
                trailing,
            } => write!(
                f,
                "header says {declared} messages, datagram holds {found} and {trailing} more bytes"
            ),
            PacketError::EmptyBlock { block } => write!(f, "block {block} is empty"),
        }
    }
}

/// A checked downstream packet, borrowing the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Its session.
    pub session: Session,
    /// Sequence number of its first message (or the next expected, for heartbeat and end).
    pub seq: u64,
    /// What it carries.
    pub kind: Kind,
    /// The message blocks (length prefixes included), checked to hold exactly `count` blocks.
    pub blocks: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Messages it carries (0 for heartbeat and end of session).
    pub fn count(&self) -> u64 {
        match self.kind {
            Kind::Messages(n) => n as u64,
            _ => 0,
        }
    }

    /// Its messages, in order, without their length prefixes.
    pub fn messages(&self) -> Messages<'a> {
        Messages {
            rest: self.blocks,
            left: self.count() as u16,
        }
    }
}

/// Iterator over a checked packet's messages.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
    left: u16,
}

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 || self.rest.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([self.rest[0], self.rest[1]]) as usize;
        // `parse` checked every block fits; `get` keeps this safe if a caller built one by hand.
        let m = self.rest.get(2..2 + len)?;
        self.rest = &self.rest[2 + len..];
        self.left -= 1;
        Some(m)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// A datagram's header, checked: its session, sequence number and message count (0 for a
/// heartbeat, [`END_OF_SESSION`]), blocks not walked.
pub fn header(buf: &[u8]) -> Result<(Session, u64, u16), PacketError> {
    if buf.len() < HEADER_LEN {
        return Err(PacketError::ShortHeader { len: buf.len() });
    }
    let mut s = [0u8; SESSION_LEN];
    s.copy_from_slice(&buf[..SESSION_LEN]);
    let session = Session(s);
    if !session.is_valid() {
        return Err(PacketError::BadSession);
    }
    let mut q = [0u8; 8];
    q.copy_from_slice(&buf[10..18]);
    let seq = u64::from_be_bytes(q);
    if seq == 0 {
        return Err(PacketError::ZeroSequence);
    }
    Ok((session, seq, u16::from_be_bytes([buf[18], buf[19]])))
}

/// The sequence numbers a data datagram's header claims, `[seq, seq + count)`, without
/// walking its blocks: for passing over what a receiver already holds. `None` for a heartbeat,
/// end of session, or a header that does not parse.
pub fn claimed(buf: &[u8]) -> Option<(u64, u64)> {
    match header(buf).ok()? {
        (_, _, 0 | END_OF_SESSION) => None,
        (_, seq, n) => Some((seq, seq.saturating_add(n as u64))),
    }
}

/// Checks a whole downstream datagram and returns its view.
pub fn parse(buf: &[u8]) -> Result<Packet<'_>, PacketError> {
    let (session, seq, count) = header(buf)?;
    let blocks = &buf[HEADER_LEN..];
    let kind = match count {
        0 => Kind::Heartbeat,
        END_OF_SESSION => Kind::EndOfSession,
        n => Kind::Messages(n),
    };
    let declared = if matches!(kind, Kind::Messages(_)) {
        count
    } else {
        0
    };
    let mut pos = 0usize;
    let mut found = 0u16;
    while found < declared && pos + 2 <= blocks.len() {
        let len = u16::from_be_bytes([blocks[pos], blocks[pos + 1]]) as usize;
        if len == 0 {
            return Err(PacketError::EmptyBlock { block: found });
        }
        if pos + 2 + len > blocks.len() {
            return Err(PacketError::BlockPastEnd {
                block: found,
                offset: HEADER_LEN + pos,
            });
        }
        pos += 2 + len;
        found += 1;
    }
    if found != declared || pos != blocks.len() {
        return Err(PacketError::CountMismatch {
            declared: count,
            found,
            trailing: blocks.len() - pos,
        });
    }
    Ok(Packet {
        session,
        seq,
        kind,
        blocks,
    })
}

/// The messages of a datagram that [`parse`] accepted before (a receiver's held copy), without
/// walking its blocks again. On bytes `parse` would refuse it stops early; it never reads out
/// of bounds.
pub fn messages_of_checked(buf: &[u8]) -> Messages<'_> {
    if buf.len() < HEADER_LEN {
        return Messages { rest: &[], left: 0 };
    }
    let count = u16::from_be_bytes([buf[18], buf[19]]);
    Messages {
        rest: &buf[HEADER_LEN..],
        left: if count == END_OF_SESSION { 0 } else { count },
    }
}

/// A re-request: `count` messages from `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The session asked about.
    pub session: Session,
    /// First sequence number wanted.
    pub seq: u64,
    /// How many.
    pub count: u16,
}

/// Parses a re-request datagram (exactly 20 bytes, a count of 1 or more).
pub fn parse_request(buf: &[u8]) -> Result<Request, PacketError> {
    let (session, seq, count) = header(buf)?;
    if buf.len() != HEADER_LEN || count == 0 || count == END_OF_SESSION {
        return Err(PacketError::CountMismatch {
            declared: count,
            found: 0,
            trailing: buf.len().saturating_sub(HEADER_LEN),
        });
    }
    Ok(Request {
        session,
        seq,
        count,
    })
}

fn put_header(out: &mut [u8], session: Session, seq: u64, count: u16) {
    out[..SESSION_LEN].copy_from_slice(&session.0);
    out[10..18].copy_from_slice(&seq.to_be_bytes());
    out[18..20].copy_from_slice(&count.to_be_bytes());
}

/// Writes a re-request into `out` and returns its 20 bytes.
pub fn request(out: &mut [u8; HEADER_LEN], r: Request) -> &[u8] {
    put_header(out, r.session, r.seq, r.count);
    &out[..]
}

/// Writes a heartbeat (next expected `seq`) into `out`.
pub fn heartbeat(out: &mut [u8; HEADER_LEN], session: Session, seq: u64) -> &[u8] {
    put_header(out, session, seq, 0);
    &out[..]
}

/// Writes an end of session (one past the last message, `seq`) into `out`.
pub fn end_of_session(out: &mut [u8; HEADER_LEN], session: Session, seq: u64) -> &[u8] {
    put_header(out, session, seq, END_OF_SESSION);
    &out[..]
}

/// Packs messages into one downstream datagram, in a buffer it reuses.
#[derive(Debug)]
pub struct PacketWriter {
    buf: Box<[u8; MAX_DATAGRAM]>,
    len: usize,
    max_payload: usize,
    session: Session,
    seq: u64,
    count: u16,
}

impl PacketWriter {
    /// A writer for `session` whose packets hold at most `max_payload` bytes of blocks
    /// (clamped to what a datagram of [`MAX_DATAGRAM`] bytes leaves).
    pub fn new(session: Session, max_payload: usize) -> PacketWriter {
        PacketWriter {
            buf: Box::new([0; MAX_DATAGRAM]),
            len: HEADER_LEN,
            max_payload: max_payload.clamp(64, MAX_DATAGRAM - HEADER_LEN),
            session,
            seq: 1,
            count: 0,
        }
    }

    /// Starts a packet whose first message has sequence number `seq`, dropping any unfinished one.
    pub fn start(&mut self, seq: u64) {
        self.seq = seq;
        self.count = 0;
        self.len = HEADER_LEN;
    }

    /// Appends `m` if it fits; false (and nothing written) when it does not.
    pub fn push(&mut self, m: &[u8]) -> bool {
        let need = 2 + m.len();
        if m.is_empty()
            || self.len - HEADER_LEN + need > self.max_payload
            || self.count == END_OF_SESSION - 1
        {
            return false;
        }
        self.buf[self.len..self.len + 2].copy_from_slice(&(m.len() as u16).to_be_bytes());
        self.buf[self.len + 2..self.len + need].copy_from_slice(m);
        self.len += need;
        self.count += 1;
        true
    }

    /// Messages in the packet so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Sequence number of the packet's first message.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The finished datagram.
    pub fn finish(&mut self) -> &[u8] {
        put_header(&mut self.buf[..], self.session, self.seq, self.count);
        &self.buf[..self.len]
    }
}

/// A whole BinaryFILE session packed into downstream datagrams from sequence number 1, as
/// many messages each as fit in `max_payload`, then one end of session: what tests, benchmarks
/// and tools send when they play the exchange. Allocates (one vector a datagram); never for a
/// receive path. Returns the datagrams and the number of messages.
pub fn pack_session(
    bytes: &[u8],
    session: Session,
    max_payload: usize,
) -> Result<(Vec<Vec<u8>>, u64), crate::itch::FrameError> {
    let mut w = PacketWriter::new(session, max_payload);
    let mut out = Vec::new();
    let mut seq = 1u64;
    w.start(seq);
    crate::itch::walk(bytes, false, |_, m| {
        if !w.push(m) {
            out.push(w.finish().to_vec());
            seq += w.count() as u64;
            w.start(seq);
            w.push(m);
        }
    })?;
    if w.count() > 0 {
        out.push(w.finish().to_vec());
        seq += w.count() as u64;
    }
    out.push(end_of_session(&mut [0; HEADER_LEN], session, seq).to_vec());
    Ok((out, seq - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> Session {
        Session::parse(name).unwrap()
    }

    #[test]
    fn a_packet_round_trips() {
        let mut w = PacketWriter::new(s("20261205A"), DEFAULT_MAX_PAYLOAD);
        w.start(42);
        assert!(w.push(b"Sabcdefghijk"));
        assert!(w.push(b"Hxyz"));
        let d = w.finish().to_vec();
        let p = parse(&d).unwrap();
        assert_eq!(p.session, s("20261205A"));
        assert_eq!((p.seq, p.kind), (42, Kind::Messages(2)));
        let ms: Vec<&[u8]> = p.messages().collect();
        assert_eq!(ms, vec![&b"Sabcdefghijk"[..], &b"Hxyz"[..]]);
    }

    #[test]
    fn a_packed_session_holds_every_message_once_in_order_then_ends() {
        let bytes = crate::synth::generate(&crate::synth::GenConfig {
            scope: crate::synth::Scope::F2,
            messages: 500,
            seed: 2,
            profile: crate::synth::Profile::Realistic,
        })
        .unwrap();
        let (pkts, n) = pack_session(&bytes, s("S"), 200).unwrap();
        assert_eq!(n, 500);
        let mut next = 1;
        for d in &pkts[..pkts.len() - 1] {
            let p = parse(d).unwrap();
            assert_eq!(p.seq, next);
            next += p.count();
        }
        let end = parse(pkts.last().unwrap()).unwrap();
        assert_eq!((end.kind, end.seq), (Kind::EndOfSession, 501));
    }

    #[test]
    fn the_writer_stops_at_the_payload_limit() {
        let mut w = PacketWriter::new(s("S"), 100);
        let m = [b'A'; 36];
        let mut n = 0;
        while w.push(&m) {
            n += 1;
        }
        assert_eq!(n, 2, "two 38-byte blocks fit in 100, a third does not");
        assert!(w.finish().len() <= HEADER_LEN + 100);
    }

    #[test]
    fn heartbeat_end_and_request_round_trip() {
        let mut b = [0u8; HEADER_LEN];
        let p = parse(heartbeat(&mut b, s("X1"), 7)).unwrap();
        assert_eq!((p.seq, p.kind, p.count()), (7, Kind::Heartbeat, 0));
        let p = parse(end_of_session(&mut b, s("X1"), 9)).unwrap();
        assert_eq!((p.seq, p.kind), (9, Kind::EndOfSession));
        let r = Request {
            session: s("X1"),
            seq: 5,
            count: 30,
        };
        assert_eq!(parse_request(request(&mut b, r)), Ok(r));
    }

    #[test]
    fn sessions_are_checked() {
        assert!(Session::parse("").is_err());
        assert!(Session::parse("ELEVENCHARS").is_err());
        assert!(Session::parse("a b").is_err());
        assert_eq!(s("AB").0, *b"AB        ");
        assert!(!Session(*b" AB       ").is_valid());
        assert!(!Session(*b"          ").is_valid());
    }

    fn good() -> Vec<u8> {
        let mut w = PacketWriter::new(s("S1"), DEFAULT_MAX_PAYLOAD);
        w.start(1);
        w.push(b"Aaaaa");
        w.push(b"Dbb");
        w.finish().to_vec()
    }

    #[rstest::rstest]
    #[case::short_header(|d: &mut Vec<u8>| d.truncate(19), PacketError::ShortHeader { len: 19 })]
    #[case::bad_session(|d: &mut Vec<u8>| d[0] = 0, PacketError::BadSession)]
    #[case::zero_sequence(|d: &mut Vec<u8>| d[17] = 0, PacketError::ZeroSequence)]
    #[case::block_past_end(|d: &mut Vec<u8>| d[28] = 9, PacketError::BlockPastEnd { block: 1, offset: 27 })]
    #[case::count_too_high(|d: &mut Vec<u8>| d[19] = 3, PacketError::CountMismatch { declared: 3, found: 2, trailing: 0 })]
    #[case::count_too_low(|d: &mut Vec<u8>| d[19] = 1, PacketError::CountMismatch { declared: 1, found: 1, trailing: 5 })]
    #[case::trailing_bytes(|d: &mut Vec<u8>| d.push(0), PacketError::CountMismatch { declared: 2, found: 2, trailing: 1 })]
    #[case::empty_block(|d: &mut Vec<u8>| { d[20] = 0; d[21] = 0; }, PacketError::EmptyBlock { block: 0 })]
    #[case::heartbeat_with_bytes(|d: &mut Vec<u8>| d[19] = 0, PacketError::CountMismatch { declared: 0, found: 0, trailing: 12 })]
    fn malformed_packets_are_named(#[case] spoil: fn(&mut Vec<u8>), #[case] want: PacketError) {
        let mut d = good();
        assert!(parse(&d).is_ok());
        spoil(&mut d);
        assert_eq!(parse(&d).unwrap_err(), want);
    }

    #[test]
    fn requests_must_be_exactly_a_header_with_a_count() {
        let mut b = [0u8; HEADER_LEN];
        let r = Request {
            session: s("S"),
            seq: 1,
            count: 0,
        };
        assert!(parse_request(request(&mut b, r)).is_err());
        let mut long = good();
        long[19] = 1;
        assert!(parse_request(&long).is_err());
    }
}
