//! Batched, nonblocking UDP receive: one `recvmmsg` call takes up to a batch of datagrams
//! from a socket into buffers allocated once.
//!
//! Owns the buffers and the kernel's message headers pointing into them. Never blocks
//! (`MSG_DONTWAIT`), never allocates after construction.

use std::os::fd::RawFd;

/// Room per datagram: an Ethernet MTU and more; a longer datagram arrives truncated and
/// fails its packet check.
const SLOT: usize = 2048;

/// Buffers for one `recvmmsg` call.
pub struct RecvBatch {
    bufs: Box<[[u8; SLOT]]>,
    _iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    got: usize,
}

impl RecvBatch {
    /// Room for `depth` datagrams a call.
    pub fn new(depth: usize) -> RecvBatch {
        let mut bufs = vec![[0u8; SLOT]; depth.max(1)].into_boxed_slice();
        let mut iovs: Box<[libc::iovec]> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: SLOT,
            })
            .collect();
        let hdrs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero msghdr is valid (no name, no control data).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch {
            bufs,
            _iovs: iovs,
            hdrs,
            got: 0,
        }
    }

    /// Takes what is waiting on `fd`, up to the batch; 0 when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        // SAFETY: every header points at its own iovec and buffer, which live (boxed, never
        // moved or reallocated) as long as `self`; the kernel writes at most SLOT bytes each.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            self.got = 0;
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.got = n as usize;
        Ok(self.got)
    }

    /// Datagram `i` of the last call.
    pub fn datagram(&self, i: usize) -> &[u8] {
        assert!(i < self.got, "datagram {i} of {}", self.got);
        let len = (self.hdrs[i].msg_len as usize).min(SLOT);
        &self.bufs[i][..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_takes_every_waiting_datagram_and_then_nothing() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            tx.send_to(&[i; 3], rx.local_addr().unwrap()).unwrap();
        }
        let mut b = RecvBatch::new(4);
        let mut seen = Vec::new();
        // Loopback delivery is synchronous with send_to: all five are queued already.
        for _ in 0..2 {
            let n = b.recv(rx.as_raw_fd()).unwrap();
            seen.extend((0..n).map(|i| b.datagram(i).to_vec()));
        }
        assert_eq!(seen, (0..5u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 0);
    }
}
