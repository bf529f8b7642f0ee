//! One WebSocket connection's TCP socket, split in two halves with no lock between them.
//! The read half goes to tungstenite, which parses what the client sends. The control frames
//! tungstenite answers with (a pong, a close's echo) are diverted to the write half.
//! The write half copies encoded frames ([`wire`](super::wire)) into one buffer and writes it
//! whole, keeping its place, so a write cut short by an eviction can still finish what it
//! began.
//!
//! Why a copy and not `writev` of the shared frames: gathered from 81 places a write (the
//! average with 50 clients), the kernel's copy cost what the user-space copy saved; CPU per
//! frame did not move (278-304 ns against 299-320 ns, 3 pairs, 2026-12-06). A shared run
//! ([`runs`](super::runs)), already one piece, is written straight from where it was
//! rendered, and only what the socket does not take is copied: copied whole, it was 11% of
//! the gateway's samples with 100 clients (perf, 2026-12-07).
//!
//! Owns the split and the write position. Never decides what to send.

use super::wire::Frame;
use bytes::{Buf, Bytes};
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bytes of frames a writer takes from its queue before it writes them.
pub const GATHER: usize = 64 << 10;
/// Control bytes tungstenite may leave for the writer; a client that sends pings faster than
/// it reads the pongs is cut off past this.
const MAX_CONTROL: usize = 64 << 10;

/// Control frames tungstenite wrote, waiting for the writer, and the writer's wake-up.
pub struct Control {
    bytes: RefCell<Vec<u8>>,
    wake: Rc<tokio::sync::Notify>,
}

impl Control {
    /// Nothing waiting; `wake` is the writer's.
    pub fn new(wake: Rc<tokio::sync::Notify>) -> Rc<Control> {
        Rc::new(Control {
            bytes: RefCell::new(Vec::new()),
            wake,
        })
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.bytes.borrow_mut())
    }
}

/// The read half as tungstenite sees it: bytes hyper read past the upgrade first, then the
/// socket. Its writes land in [`Control`] and wake the writer.
pub struct Inbound {
    early: Bytes,
    tcp: OwnedReadHalf,
    control: Rc<Control>,
}

impl Inbound {
    /// Reads `early` (what hyper had buffered), then `tcp`.
    pub fn new(early: Bytes, tcp: OwnedReadHalf, control: Rc<Control>) -> Self {
        Inbound {
            early,
            tcp,
            control,
        }
    }
}

impl AsyncRead for Inbound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.early.is_empty() {
            return Pin::new(&mut self.tcp).poll_read(cx, buf);
        }
        let n = buf.remaining().min(self.early.len());
        buf.put_slice(&self.early[..n]);
        self.early.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Inbound {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let mut bytes = self.control.bytes.borrow_mut();
        if bytes.len() + b.len() > MAX_CONTROL {
            return Poll::Ready(Err(io::Error::other(
                "the client sends pings faster than it reads the pongs",
            )));
        }
        bytes.extend_from_slice(b);
        self.control.wake.notify_one();
        Poll::Ready(Ok(b.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Where a writer's take puts frames: one at a time into a buffer, or a shared run at once.
pub trait Sink {
    /// The buffer frames are copied into.
    fn buffer(&mut self) -> &mut Vec<u8>;
    /// Hands over `bytes`, frames rendered elsewhere, as they are.
    fn put_whole(&mut self, bytes: &[u8]);
    /// Whether anything handed over is not written yet.
    fn pending(&self) -> bool;
}

/// A plain buffer (the unit tests' writer).
#[cfg(test)]
impl Sink for Vec<u8> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self
    }

    fn put_whole(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn pending(&self) -> bool {
        !self.is_empty()
    }
}

impl Sink for Outbound {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Writes what the socket takes now, without waiting, and keeps the rest for [`Outbound::flush`].
    fn put_whole(&mut self, bytes: &[u8]) {
        assert!(
            self.idle(),
            "a run handed over before the last frames were written"
        );
        // An error here is met again, and reported, by the flush of what is kept.
        let wrote = self.tcp.try_write(bytes).unwrap_or(0);
        super::turns::checkpoint();
        self.buf.clear();
        self.buf.extend_from_slice(&bytes[wrote..]);
        self.sent = 0;
    }

    fn pending(&self) -> bool {
        !self.idle()
    }
}

/// The write half and the bytes it is writing: `buf[..sent]` is written.
pub struct Outbound {
    tcp: OwnedWriteHalf,
    control: Rc<Control>,
    buf: Vec<u8>,
    sent: usize,
}

impl Outbound {
    /// Writes to `tcp`, and the control frames in `control` between whole frames.
    pub fn new(tcp: OwnedWriteHalf, control: Rc<Control>) -> Self {
        Outbound {
            tcp,
            control,
            buf: Vec::with_capacity(GATHER + (1 << 10)),
            sent: 0,
        }
    }

    /// Whether everything handed over is written.
    pub fn idle(&self) -> bool {
        self.sent == self.buf.len()
    }

    /// Empties the buffer for the next take; only when idle.
    pub fn fresh(&mut self) -> &mut Self {
        assert!(
            self.idle(),
            "frames handed over before the last ones were written"
        );
        self.buf.clear();
        self.sent = 0;
        self
    }

    /// Writes what was handed over, then any control frames. Cancel-safe: a cancelled call
    /// leaves the position where the socket took it.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.idle() {
            let wrote = self.tcp.write(&self.buf[self.sent..]).await?;
            super::turns::checkpoint();
            if wrote == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.sent += wrote;
        }
        let control = self.control.take();
        if !control.is_empty() {
            self.tcp.write_all(&control).await?;
        }
        Ok(())
    }

    /// Ends the connection's output: what was handed over (a frame cut in two would corrupt
    /// the stream), then `last` (an error, a close).
    pub async fn finish(&mut self, last: &[Frame]) -> io::Result<()> {
        for f in last {
            self.buf.extend_from_slice(f.wire());
        }
        self.flush().await
    }
}
