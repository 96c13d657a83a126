//! The framed reader for replies from Redis: a read buffer and the
//! resumable [`ReplyScanner`] working on it, shared by shared links and
//! dedicated links (client requests have their own grammar and are parsed
//! by [`super::request`], which resumes through its `need` hint).
//!
//! Complete frames are split off the front as `Bytes` that share the
//! buffer's memory (no copy); the frame in progress always starts at the
//! front, where the scanner expects it.

use bytes::{Bytes, BytesMut};

use super::Proto;
use super::reply::{ReplyError, ReplyScanner};

/// A read buffer of replies and the scanner's progress on its first frame.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    scan: ReplyScanner,
    chunk: usize,
}

impl FrameReader {
    /// A reader starting with `buf` (bytes already read), growing by `chunk`.
    pub fn new(buf: BytesMut, chunk: usize) -> Self {
        FrameReader { buf, scan: ReplyScanner::new(), chunk }
    }

    /// The buffer to read into, with room for at least a quarter chunk.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            self.buf.reserve(self.chunk);
        }
        &mut self.buf
    }

    /// Bytes buffered.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The length of the complete frame starting at `from` (0, or the end
    /// of frames already found but not split off yet), resuming the scan
    /// of the frame in progress. Only one frame may be in progress: call
    /// with a larger `from` only after the frames before it were complete.
    pub fn frame_at(&mut self, from: usize, proto: Proto) -> Result<Option<usize>, ReplyError> {
        self.scan.scan(&self.buf[from..], proto)
    }

    /// Split off the first `len` bytes (complete frames).
    pub fn split_to(&mut self, len: usize) -> Bytes {
        self.buf.split_to(len).freeze()
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self, proto: Proto) -> Result<Option<Bytes>, ReplyError> {
        Ok(self.frame_at(0, proto)?.map(|len| self.split_to(len)))
    }

    /// Everything buffered, frame boundaries or not (a replication stream).
    pub fn take_all(&mut self) -> Bytes {
        self.scan.reset();
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_whole_however_the_bytes_arrive() {
        let stream = b"+OK\r\n*2\r\n$3\r\nabc\r\n:1\r\n$-1\r\n";
        for step in 1..stream.len() {
            let mut r = FrameReader::new(BytesMut::new(), 64);
            let mut frames = Vec::new();
            for piece in stream.chunks(step) {
                r.buf_mut().extend_from_slice(piece);
                while let Some(f) = r.next_frame(Proto::Resp2).expect("valid") {
                    frames.push(f);
                }
            }
            assert_eq!(frames, [&b"+OK\r\n"[..], b"*2\r\n$3\r\nabc\r\n:1\r\n", b"$-1\r\n"], "step {step}");
            assert!(r.buffered().is_empty());
        }
    }
}
