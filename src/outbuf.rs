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
        self.small.extend_from_slice(b"$");
        crate::protocol::encode::put_decimal(&mut self.small, len as i64);
        self.small.extend_from_slice(b"\r\n");
    }

    /// Queue `*N\r\n`, the header of an array of `n` elements.
    pub fn array_header(&mut self, n: usize) {
        crate::protocol::encode::array_header(&mut self.small, n);
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
        self.seal_small();
        let n = {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, part) in slices.iter_mut().zip(&self.parts) {
                *slot = IoSlice::new(part);
                count += 1;
            }
            w.write_vectored(&slices[..count]).await?
        };
        if n == 0 && !self.parts.is_empty() {
            return Err(io::ErrorKind::WriteZero.into());
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
        Ok(n)
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
