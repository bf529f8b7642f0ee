//! BinaryFILE framing: a sequence of `u16` big-endian length + message.
//!
//! Owns the walk over a byte buffer, the checks that keep it honest (a frame's length must be its
//! type's fixed length) and the resynchronisation that `--skip-corrupt` asks for. Never allocates
//! and never copies message bytes: frames are borrowed slices of the input.

use super::messages::{show_tag, LEN_BY_TYPE};

/// What was wrong with the bytes at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// The buffer ends inside a length prefix or a message.
    Truncated {
        /// Bytes the frame needs from its offset.
        needed: usize,
        /// Bytes left from its offset.
        available: usize,
    },
    /// The type byte names no ITCH 5.0 message.
    UnknownType(u8),
    /// The length prefix is not the fixed length of the type.
    BadLength {
        /// Type byte of the frame.
        tag: u8,
        /// Length the type requires.
        expected: usize,
        /// Length the prefix says.
        actual: usize,
    },
}

/// A framing failure and the byte offset (from the start of the input) of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameError {
    /// Offset of the frame's length prefix.
    pub offset: u64,
    /// What was wrong there.
    pub kind: FrameErrorKind,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let off = self.offset;
        match self.kind {
            FrameErrorKind::Truncated { needed, available } => write!(
                f,
                "truncated message at byte offset {off}: frame needs {needed} bytes, {available} left"
            ),
            FrameErrorKind::UnknownType(t) => {
                write!(f, "unknown message type {} at byte offset {off}", show_tag(t))
            }
            FrameErrorKind::BadLength { tag, expected, actual } => write!(
                f,
                "bad length at byte offset {off}: type {} is {expected} bytes, prefix says {actual}",
                show_tag(tag)
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Checks the frame that starts at `pos` and returns its message bytes and the next offset.
#[inline(always)]
pub fn frame_at(buf: &[u8], pos: usize) -> Result<(&[u8], usize), FrameErrorKind> {
    let rest = &buf[pos..];
    if rest.len() < 3 {
        return Err(FrameErrorKind::Truncated {
            needed: 3,
            available: rest.len(),
        });
    }
    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let tag = rest[2];
    let expected = LEN_BY_TYPE[tag as usize] as usize;
    if expected != len {
        return Err(if expected == 0 {
            FrameErrorKind::UnknownType(tag)
        } else {
            FrameErrorKind::BadLength {
                tag,
                expected,
                actual: len,
            }
        });
    }
    let end = 2 + len;
    if rest.len() < end {
        return Err(FrameErrorKind::Truncated {
            needed: end,
            available: rest.len(),
        });
    }
    Ok((&rest[2..end], pos + end))
}

/// The longest frame: length prefix plus the longest message (`I`, 50 bytes).
const MAX_FRAME: usize = 2 + 50;

/// Frames that must follow a candidate offset, checked, before resynchronisation trusts it.
const RESYNC_CONFIRM: usize = 3;

/// Finds the first offset after `from` where framing makes sense again: a valid frame followed by
/// [`RESYNC_CONFIRM`] more valid frames, or by the exact end of the buffer.
pub fn resync(buf: &[u8], from: usize) -> Option<usize> {
    (from + 1..buf.len()).find(|&p| {
        let mut at = p;
        for _ in 0..=RESYNC_CONFIRM {
            match frame_at(buf, at) {
                Ok((_, next)) if next == buf.len() => return true,
                Ok((_, next)) => at = next,
                Err(_) => return false,
            }
        }
        true
    })
}

/// Counts the corrupt region that starts at `err` and returns where framing resumes.
#[cold]
fn skip(stats: &mut WalkStats, buf: &[u8], err: FrameError) -> usize {
    let pos = err.offset as usize;
    stats.first_error.get_or_insert(err);
    stats.corrupt_regions += 1;
    let resume = resync(buf, pos).unwrap_or(buf.len());
    stats.truncated_tail |= matches!(err.kind, FrameErrorKind::Truncated { .. });
    stats.skipped_bytes += (resume - pos) as u64;
    resume
}

/// What a walk over a buffer saw besides good frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Good frames handed to the visitor.
    pub frames: u64,
    /// Bytes walked (the whole buffer when the walk completes).
    pub bytes: u64,
    /// Corrupt regions skipped (only with `skip_corrupt`).
    pub corrupt_regions: u64,
    /// Bytes skipped inside those regions (a truncated tail included).
    pub skipped_bytes: u64,
    /// The buffer ended inside a frame (only reported with `skip_corrupt`; without it, an error).
    pub truncated_tail: bool,
    /// The first framing error, kept for the report when corruption was skipped.
    pub first_error: Option<FrameError>,
}

/// Walks every frame of `buf`, calling `visit(offset, message_bytes)` for each good one.
///
/// Without `skip_corrupt` the first framing error ends the walk and is returned. With it, the
/// walk resynchronises after each corrupt region and counts what it skipped.
#[inline]
pub fn walk<'a>(
    buf: &'a [u8],
    skip_corrupt: bool,
    mut visit: impl FnMut(usize, &'a [u8]),
) -> Result<WalkStats, FrameError> {
    let mut stats = WalkStats::default();
    let mut pos = 0usize;
    // Frames that start this far from the end cannot be truncated.
    let safe_end = buf.len().saturating_sub(MAX_FRAME);
    while pos < buf.len() {
        // Fast path: one length check per frame, no truncation checks. The visitor is called
        // from this one place only, so it inlines into the loop.
        let len = if pos < safe_end {
            u16::from_be_bytes([buf[pos], buf[pos + 1]]) as usize
        } else {
            0
        };
        let (msg, next) = if len != 0 && LEN_BY_TYPE[buf[pos + 2] as usize] as usize == len {
            (&buf[pos + 2..pos + 2 + len], pos + 2 + len)
        } else {
            match frame_at(buf, pos) {
                Ok(frame) => frame,
                Err(kind) => {
                    let err = FrameError {
                        offset: pos as u64,
                        kind,
                    };
                    if !skip_corrupt {
                        return Err(err);
                    }
                    pos = skip(&mut stats, buf, err);
                    continue;
                }
            }
        };
        visit(pos, msg);
        stats.frames += 1;
        pos = next;
    }
    stats.bytes = buf.len() as u64;
    Ok(stats)
}
