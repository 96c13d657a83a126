//! An output queue that turns many frames into few syscalls.
//!
//! Small frames are copied into one contiguous buffer (a memcpy of a few
//! hundred bytes is far cheaper than an extra iovec or syscall); large ones
//! are queued as the shared `Bytes` they arrived in, never copied. The whole
//! queue is written with vectored writes.

use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Frames at least this large are queued by reference instead of copied.
const COPY_BELOW: usize = 4096;
/// Most iovecs passed to one `writev`.
const MAX_IOV: usize = 64;

/// A position in an [`OutBuf`] to roll back to.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    parts: usize,
    small: usize,
}

/// Queued output for one socket.
#[derive(Default)]
pub struct OutBuf {
    parts: Vec<Bytes>,
    small: BytesMut,
}

impl OutBuf {
    /// Queue a frame.
    pub fn push(&mut self, frame: Bytes) {
        if frame.len() < COPY_BELOW {
            self.small.extend_from_slice(&frame);
        } else {
            self.seal_small();
            self.parts.push(frame);
        }
    }

    /// Queue bytes by copying them.
    pub fn push_slice(&mut self, data: &[u8]) {
        self.small.extend_from_slice(data);
    }

    /// Queue `$N\r\n`, the header of a bulk string of `len` bytes.
    pub fn bulk_header(&mut self, len: usize) {
        crate::protocol::encode::bulk_header(&mut self.small, len);
    }

    /// Queue `*N\r\n`, the header of an array of `n` elements.
    pub fn array_header(&mut self, n: usize) {
        crate::protocol::encode::array_header(&mut self.small, n);
    }

    /// The copy buffer, to encode into directly; what is appended is queued
    /// after everything pushed before.
    pub fn tail(&mut self) -> &mut BytesMut {
        &mut self.small
    }

    /// The current end of the queue, for [`OutBuf::rollback`].
    pub fn mark(&self) -> Mark {
        Mark { parts: self.parts.len(), small: self.small.len() }
    }

    /// Drop everything queued since `mark` (nothing may have been written
    /// in between).
    pub fn rollback(&mut self, mark: Mark) {
        if self.parts.len() > mark.parts {
            // What was in the copy buffer at the mark was moved into the
            // first part queued after it.
            let first = self.parts[mark.parts].slice(..mark.small.min(self.parts[mark.parts].len()));
            self.parts.truncate(mark.parts);
            self.small.clear();
            if mark.small > 0 {
                self.small.extend_from_slice(&first);
            }
        } else {
            self.small.truncate(mark.small);
        }
    }

    /// Everything queued, in order, leaving the queue empty (tests of code
    /// that queues output without a socket).
    #[cfg(test)]
    pub fn take_all(&mut self) -> Vec<Bytes> {
        self.seal_small();
        std::mem::take(&mut self.parts)
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.small.is_empty()
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum::<usize>() + self.small.len()
    }

    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            self.parts.push(self.small.split().freeze());
        }
    }

    /// One vectored write of what is queued; returns the bytes written.
    /// Cancellation-safe: progress is recorded only when a write completes.
    pub async fn write_once<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write_once(w, cx)).await
    }

    /// [`OutBuf::write_once`] as a poll: one vectored write attempt, with
    /// `cx`'s waker registered if the writer is not ready.
    pub fn poll_write_once<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<usize>> {
        self.seal_small();
        let polled = if let [one] = &self.parts[..] {
            // The common case at depth 1: no iovec array to fill.
            std::pin::Pin::new(&mut *w).poll_write(cx, one)
        } else {
            // The iovec array lives on the stack of this call, not in every
            // waiting session's future (1 KiB each).
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, part) in slices.iter_mut().zip(&self.parts) {
                *slot = IoSlice::new(part);
                count += 1;
            }
            std::pin::Pin::new(&mut *w).poll_write_vectored(cx, &slices[..count])
        };
        let n = match polled {
            std::task::Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        if n == 0 && !self.parts.is_empty() {
            return std::task::Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let mut left = n;
        let mut done = 0;
        for part in &mut self.parts {
            if left >= part.len() {
                left -= part.len();
                done += 1;
            } else {
                part.advance(left);
                break;
            }
        }
        self.parts.drain(..done);
        std::task::Poll::Ready(Ok(n))
    }

    /// Write everything queued; on return the queue is empty.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, w: &mut W) -> io::Result<()> {
        if self.parts.is_empty() {
            let result = w.write_all(&self.small).await;
            self.small.clear();
            return result;
        }
        while !self.is_empty() {
            if let Err(e) = self.write_once(w).await {
                self.parts.clear();
                self.small.clear();
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{COPY_BELOW, OutBuf};

    fn contents(out: &OutBuf) -> Vec<u8> {
        let mut all: Vec<u8> = out.parts.iter().flat_map(|p| p.iter().copied()).collect();
        all.extend_from_slice(&out.small);
        all
    }

    #[test]
    fn rollback_restores_the_queue_at_the_mark() {
        let large = Bytes::from(vec![b'L'; COPY_BELOW]);
        for before in [&b""[..], b"ab"] {
            for with_large_before in [false, true] {
                let mut out = OutBuf::default();
                if with_large_before {
                    out.push(large.clone());
                }
                out.push_slice(before);
                let expected = contents(&out);
                let mark = out.mark();
                out.push_slice(b"xyz");
                out.push(large.clone());
                out.tail().extend_from_slice(b"tail");
                out.push(large.clone());
                out.rollback(mark);
                assert_eq!(contents(&out), expected);
                out.push_slice(b"!");
                let mut expected = expected;
                expected.push(b'!');
                assert_eq!(contents(&out), expected);
            }
        }
    }
}
