//! A WebSocket client that only reads: the bench's stand-in for a desk on another machine. It
//! upgrades, sends one request, then parses the server's frame headers in its read buffer and
//! hands out each frame's payload in place.
//!
//! Why not tokio-tungstenite, which the gateway's tests use: the bench's clients run on this
//! machine, sharing a CPU with the shard or the gateway, so what they spend is taken from what
//! is measured. Through tungstenite a client spent 160-410 ns of CPU per frame (perf,
//! `tickcore bench --ws-clients 100`, 2026-12-07): as much as the gateway itself, in UTF-8
//! checks, a message and a `Bytes` per frame, and a poll per frame. This reader does one read
//! call per buffer and nothing per frame but its header.
//!
//! Owns one connection's bytes. Never checks UTF-8, answers a ping or reassembles fragments
//! (the gateway sends whole text frames; the gateway's tests check its frames with tungstenite).

use crate::gateway::wire;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read per call at most (and the buffer's size, grown for a larger frame).
const READ: usize = 256 << 10;

/// Opcodes.
pub const TEXT: u8 = 1;
/// A close frame.
pub const CLOSE: u8 = 8;

/// One connection, upgraded.
pub struct Reader {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// `buf[at..len]` is read and not yet handed out.
    at: usize,
    len: usize,
}

impl Reader {
    /// Connects to `addr`, upgrades to WebSocket and sends `request` as a text frame.
    pub async fn connect(addr: std::net::SocketAddr, request: &str) -> io::Result<Reader> {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let head = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await?;
        let mut r = Reader {
            tcp,
            buf: vec![0; READ],
            at: 0,
            len: 0,
        };
        let end = loop {
            if let Some(i) = r.buf[..r.len].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !r.fill().await? {
                return Err(io::Error::other("the server closed during the upgrade"));
            }
        };
        if !r.buf.starts_with(b"HTTP/1.1 101") {
            let line = String::from_utf8_lossy(&r.buf[..end]);
            let line = line.lines().next().unwrap_or_default().to_string();
            return Err(io::Error::other(format!("upgrade refused: {line}")));
        }
        r.at = end;
        r.tcp.write_all(&masked_text(request.as_bytes())).await?;
        Ok(r)
    }

    /// Reads frames until the server closes, the connection ends or a frame is refused. Each
    /// whole frame goes to `each` with its opcode, its payload and the engine-clock ns its read
    /// returned (every frame of one read arrived at once: one clock read a read). A close frame
    /// is handed over last.
    pub async fn read_frames(&mut self, mut each: impl FnMut(u8, &[u8], u64)) {
        while let Ok(true) = self.fill().await {
            let now = crate::runtime::clock::now_ns();
            loop {
                match self.frame() {
                    Ok(Some((op, payload))) => {
                        each(op, payload, now);
                        if op == CLOSE {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }

    /// Reads what the socket has (at most [`READ`] bytes); false at its end.
    async fn fill(&mut self) -> io::Result<bool> {
        if self.at > 0 {
            self.buf.copy_within(self.at..self.len, 0);
            self.len -= self.at;
            self.at = 0;
        }
        if self.buf.len() - self.len < READ / 2 {
            self.buf.resize(self.len + READ, 0);
        }
        let n = self.tcp.read(&mut self.buf[self.len..]).await?;
        self.len += n;
        Ok(n > 0)
    }

    /// The next whole frame read: its opcode and payload.
    fn frame(&mut self) -> io::Result<Option<(u8, &[u8])>> {
        let Some((op, start, end)) = frame(&self.buf[self.at..self.len])? else {
            return Ok(None);
        };
        let at = self.at;
        self.at += end;
        Ok(Some((op, &self.buf[at + start..at + end])))
    }
}

/// The opcode and payload span of the whole frame `b` starts with, if it holds one.
fn frame(b: &[u8]) -> io::Result<Option<(u8, usize, usize)>> {
    let Some((first, head, len)) = wire::header(b) else {
        return Ok(None);
    };
    if b[1] & 0x80 != 0 {
        return Err(io::Error::other(
            "a server's frame is masked (RFC 6455 5.1)",
        ));
    }
    if first & 0x80 == 0 {
        return Err(io::Error::other(
            "a fragmented frame (this reader takes whole ones)",
        ));
    }
    let end = head + usize::try_from(len).map_err(io::Error::other)?;
    Ok((b.len() >= end).then_some((first & 0x0f, head, end)))
}

/// `payload` as a client's text frame: the server's header with the mask bit set, and a zero
/// masking key, which leaves the bytes as they are.
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    wire::put_header(&mut f, 0x80 | TEXT, payload.len());
    f[1] |= 0x80;
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

/// A close frame's code, if it carries one.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(payload.get(..2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::wire::Frame;

    #[rstest::rstest]
    #[case::short(5)]
    #[case::two_byte_length(300)]
    #[case::eight_byte_length(70_000)]
    fn a_frame_is_found_whole_and_not_before(#[case] n: usize) {
        let text = "x".repeat(n);
        let f = Frame::text(&text);
        let wire = f.wire();
        for cut in [0, 1, wire.len() - 1] {
            assert_eq!(frame(&wire[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (op, start, end) = frame(wire).unwrap().expect("whole");
        assert_eq!((op, &wire[start..end]), (TEXT, text.as_bytes()));
    }

    #[test]
    fn a_close_gives_its_code_and_a_masked_frame_is_refused() {
        let f = Frame::close(1001, "bye");
        let (op, start, end) = frame(f.wire()).unwrap().unwrap();
        assert_eq!((op, close_code(&f.wire()[start..end])), (CLOSE, Some(1001)));
        assert!(frame(&masked_text(b"hi")).is_err(), "a client's frame");
    }
}
