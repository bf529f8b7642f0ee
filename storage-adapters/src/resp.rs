//! A bare RESP2 pipeline on its own TCP connection: the Redis sink's bulk path (one `XADD` per
//! trade), encoded straight into one reused buffer and answered by counting replies.
//!
//! Why not fred for this: fred builds a command object, argument values and a response channel
//! per command, about 7 µs of client time per `XADD` here, more than the server spends on it.
//! Encoding the same commands into a byte buffer costs well under a microsecond, so the sink is
//! bound by the server, as `redis-benchmark` is. fred still does everything else (hashes,
//! pub/sub, `INFO`); this module only knows how to write commands and read simple replies.
//!
//! What this module must never do: hide a failed command (every reply is read and classified),
//! or wait without a deadline (each round trip has a timeout, so a silent server is an error the
//! sink can spool on, not a hang).

use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one pipeline round trip may take before the connection counts as failed.
const ROUND_TRIP: Duration = Duration::from_secs(5);

/// One connection and its reused buffers.
pub struct Pipe {
    stream: TcpStream,
    out: Vec<u8>,
    queued: usize,
    /// Arguments the command being written still owes (its count went out first).
    owed: usize,
    inbuf: Vec<u8>,
}

/// What the replies to one pipeline said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replies {
    /// Replies that were not errors.
    pub ok: u64,
    /// Errors the caller said were expected (e.g. a stream id already written).
    pub expected_errors: u64,
    /// The first other error, if any.
    pub error: Option<String>,
}

impl Pipe {
    /// Connects, authenticates and selects the database.
    pub async fn connect(
        host: &str,
        port: u16,
        user: Option<&str>,
        password: Option<&str>,
        db: Option<u8>,
    ) -> Result<Pipe, String> {
        let addr = format!("{host}:{port}");
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr))
            .await
            .map_err(|_| format!("Redis connect to {addr}: timed out"))?
            .map_err(|e| format!("Redis connect to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut pipe = Pipe {
            stream,
            out: Vec::with_capacity(1 << 20),
            queued: 0,
            owed: 0,
            inbuf: Vec::with_capacity(1 << 16),
        };
        if let Some(pw) = password {
            match user {
                Some(u) => pipe.command(&[b"AUTH", u.as_bytes(), pw.as_bytes()]),
                None => pipe.command(&[b"AUTH", pw.as_bytes()]),
            }
        }
        if let Some(db) = db {
            let n = db.to_string();
            pipe.command(&[b"SELECT", n.as_bytes()]);
        }
        let r = pipe.flush(|_| false).await?;
        if let Some(e) = r.error {
            return Err(format!("Redis at {addr} refused the connection setup: {e}"));
        }
        Ok(pipe)
    }

    /// Starts a command of `args` arguments; follow with exactly that many `arg` calls.
    pub fn begin(&mut self, args: usize) {
        assert_eq!(self.owed, 0, "the last command is missing arguments");
        self.owed = args;
        self.queued += 1;
        let _ = write!(self.out, "*{args}\r\n");
    }

    /// Appends one bulk-string argument.
    pub fn arg(&mut self, a: &[u8]) {
        self.owed = self
            .owed
            .checked_sub(1)
            .expect("more arguments than the command declared");
        let _ = write!(self.out, "${}\r\n", a.len());
        self.out.extend_from_slice(a);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Appends one argument formatted from `a` (a number, a price) without a heap string: the
    /// text goes to a stack buffer first because RESP puts its length in front.
    pub fn arg_fmt(&mut self, a: std::fmt::Arguments<'_>) {
        let mut c = std::io::Cursor::new([0u8; 48]);
        c.write_fmt(a)
            .expect("a formatted RESP argument fits 48 bytes (numbers and prices only)");
        let n = c.position() as usize;
        self.arg(&c.get_ref()[..n]);
    }

    /// Queues a whole command.
    pub fn command(&mut self, args: &[&[u8]]) {
        self.begin(args.len());
        for a in args {
            self.arg(a);
        }
    }

    /// Commands queued since the last flush.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Sends every queued command and reads one reply for each. `expected(error text)` says
    /// which errors are part of normal work and only counted.
    pub async fn flush(&mut self, expected: impl Fn(&str) -> bool) -> Result<Replies, String> {
        assert_eq!(self.owed, 0, "the last command is missing arguments");
        let n = self.queued;
        self.queued = 0;
        let r = tokio::time::timeout(ROUND_TRIP, self.round_trip(n, &expected)).await;
        self.out.clear();
        match r {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Redis: no reply to a pipeline of {n} commands within {ROUND_TRIP:?}"
            )),
        }
    }

    async fn round_trip(
        &mut self,
        n: usize,
        expected: &dyn Fn(&str) -> bool,
    ) -> Result<Replies, String> {
        let io = |e: std::io::Error| format!("Redis connection: {e}");
        self.stream.write_all(&self.out).await.map_err(io)?;
        let mut replies = Replies::default();
        let mut seen = 0;
        let mut at = 0;
        self.inbuf.clear();
        while seen < n {
            match parse_reply(&self.inbuf[at..]) {
                Ok(Some((used, reply))) => {
                    at += used;
                    seen += 1;
                    match reply {
                        Ok(()) => replies.ok += 1,
                        Err(text) if expected(&text) => replies.expected_errors += 1,
                        Err(text) => {
                            replies.error.get_or_insert(text);
                        }
                    }
                }
                Ok(None) => {
                    // Keep only the unparsed tail so the buffer stays small.
                    self.inbuf.drain(..at);
                    at = 0;
                    self.inbuf.reserve(1 << 16);
                    let got = self.stream.read_buf(&mut self.inbuf).await.map_err(io)?;
                    if got == 0 {
                        return Err(format!(
                            "Redis closed the connection after {seen} of {n} replies"
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(replies)
    }
}

/// One reply at the front of `buf`: `Ok(None)` when it is not all there yet, else the bytes it
/// used and whether it was an error (with its text). Arrays are not replies this sink asks for.
type Parsed = Option<(usize, Result<(), String>)>;

fn parse_reply(buf: &[u8]) -> Result<Parsed, String> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = buf.get(1..eol).unwrap_or_default();
    match buf[0] {
        b'+' | b':' => Ok(Some((eol + 2, Ok(())))),
        b'-' => Ok(Some((
            eol + 2,
            Err(String::from_utf8_lossy(line).into_owned()),
        ))),
        b'$' => {
            let len: i64 = std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("Redis sent a bad bulk length {line:?}"))?;
            if len < 0 {
                return Ok(Some((eol + 2, Ok(()))));
            }
            let end = eol + 2 + len as usize + 2;
            Ok((buf.len() >= end).then_some((end, Ok(()))))
        }
        other => Err(format!(
            "Redis sent a reply of type {:?} the sink never asks for",
            other as char
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_wait_for_more() {
        assert_eq!(parse_reply(b"+OK\r\n").unwrap(), Some((5, Ok(()))));
        assert_eq!(parse_reply(b"+OK\r").unwrap(), None);
        assert_eq!(parse_reply(b"$5\r\n1-1").unwrap(), None);
        assert_eq!(parse_reply(b"$3\r\n1-1\r\n+").unwrap(), Some((9, Ok(()))));
        assert_eq!(parse_reply(b"$-1\r\n").unwrap(), Some((5, Ok(()))));
        let e = parse_reply(b"-ERR bad\r\n").unwrap().unwrap();
        assert_eq!(e, (10, Err("ERR bad".into())));
        assert!(parse_reply(b"*2\r\n").is_err());
        assert!(parse_reply(b"$x\r\n").is_err());
    }
}
