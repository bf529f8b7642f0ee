//! WebSocket server frames as they go on the wire (RFC 6455 §5.2): a frame is encoded once,
//! header and payload in one buffer, shared by every connection that sends it (a count that
//! is not atomic: the gateway is one thread), and copied as it is into each connection's write
//! buffer.
//!
//! Why not tungstenite's writer: through its sink, every frame of every client was wrapped in a
//! message, taken under the split sink's lock, its header encoded and its payload copied, and
//! its `Bytes` count moved atomically twice. Server frames are never masked, so the bytes are
//! the same for every client and can be encoded once. tungstenite still reads and parses what
//! clients send. The gateway's CPU per frame written fell from 423-466 ns to 317-373 ns with 50
//! clients, and from 374-710 ns to 294-346 ns with 100 (`tickcore bench --scope m7 --messages
//! 4M --rate 1M --ws-clients N`, 3 alternating pairs each, 2026-12-06 23:20).
//!
//! Owns the frame encoding. Never masks, never fragments, never touches a socket.

use std::rc::Rc;

/// FIN and the text opcode.
const TEXT: u8 = 0x81;
/// FIN and the close opcode.
const CLOSE: u8 = 0x88;
/// Longest header: 2 bytes and a 64-bit length.
const MAX_HEADER: usize = 10;
/// A close frame's reason fits a control frame's 125-byte payload with its 2-byte code.
const MAX_REASON: usize = 123;

/// One encoded frame (header and payload), shared by reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Rc<[u8]>);

impl Frame {
    /// A text frame carrying `s`.
    pub fn text(s: &str) -> Frame {
        Frame::text_with(&mut Vec::new(), s)
    }

    /// A text frame carrying `s`, encoded in `scratch` first (one allocation, the frame's).
    pub fn text_with(scratch: &mut Vec<u8>, s: &str) -> Frame {
        scratch.clear();
        put_header(scratch, TEXT, s.len());
        scratch.extend_from_slice(s.as_bytes());
        Frame(Rc::from(&scratch[..]))
    }

    /// A close frame with `code` and `reason` (cut at a character boundary to fit a control
    /// frame).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut b = Vec::with_capacity(4 + end);
        put_header(&mut b, CLOSE, 2 + end);
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(&reason.as_bytes()[..end]);
        Frame(Rc::from(b))
    }

    /// The bytes that go on the wire.
    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// The payload: a text frame's text, a close frame's code and reason.
    pub fn payload(&self) -> &[u8] {
        let head = header(&self.0).map_or(self.0.len(), |(_, head, _)| head);
        self.0.get(head..).unwrap_or_default()
    }

    /// A text frame's text (empty for any other frame).
    pub fn as_str(&self) -> &str {
        match self.0.first() {
            Some(&TEXT) => std::str::from_utf8(self.payload()).unwrap_or_default(),
            _ => "",
        }
    }
}

/// The header a frame starts `b` with: its first byte (FIN and opcode), the header's length
/// (without a masking key) and the payload's length; `None` until the header is whole.
pub fn header(b: &[u8]) -> Option<(u8, usize, u64)> {
    let [first, second, ..] = *b else { return None };
    match second & 0x7f {
        126 => Some((
            first,
            4,
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?).into(),
        )),
        127 => Some((
            first,
            MAX_HEADER,
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?),
        )),
        n => Some((first, 2, n.into())),
    }
}

/// The header of an unmasked, unfragmented frame: `first` (FIN and opcode), then the payload
/// length in the shortest of its three forms.
pub fn put_header(b: &mut Vec<u8>, first: u8, len: usize) {
    b.reserve(MAX_HEADER + len);
    b.push(first);
    match len {
        0..=125 => b.push(len as u8),
        126..=0xffff => {
            b.push(126);
            b.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            b.push(127);
            b.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use tokio_tungstenite::tungstenite::Message;

    /// What a standard client (tungstenite) reads from `wire`.
    fn read(wire: &[u8]) -> Message {
        let io = std::io::Cursor::new(wire.to_vec());
        let mut ws = WebSocket::from_raw_socket(io, Role::Client, None);
        ws.read().expect("a frame a client can read")
    }

    #[rstest]
    #[case::empty(0)]
    #[case::short(125)]
    #[case::two_byte_length(126)]
    #[case::two_byte_max(0xffff)]
    #[case::eight_byte_length(0x10000)]
    fn a_text_frame_of_any_length_reads_back_whole(#[case] len: usize) {
        let s = "x".repeat(len);
        let f = Frame::text(&s);
        assert_eq!(f.as_str(), s);
        assert_eq!(read(f.wire()), Message::text(s));
    }

    #[rstest]
    #[case::plain(1013, "slow consumer", "slow consumer")]
    #[case::long_reason_cut_at_a_char(1001, &"é".repeat(100), &"é".repeat(61))]
    fn a_close_frame_carries_its_code_and_reason(
        #[case] code: u16,
        #[case] reason: &str,
        #[case] sent: &str,
    ) {
        let Message::Close(Some(c)) = read(Frame::close(code, reason).wire()) else {
            panic!("not a close frame");
        };
        assert_eq!((u16::from(c.code), c.reason.as_str()), (code, sent));
    }
}
