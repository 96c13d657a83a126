//! A dedicated link: one backend connection owned by one session (pinned
//! sessions, `mode = "dedicated"`). Its writes are queued and sent by the
//! session's loop; its reads go through the shared [`FrameReader`].

use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::conn::{BackendError, Dedicated};
use super::stream::{ReadHalf, WriteHalf};
use crate::outbuf::OutBuf;
use crate::protocol::Proto;
use crate::protocol::framed::FrameReader;
use crate::protocol::reply::ReplyError;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// A session's own backend connection.
pub struct DedicatedLink {
    rd: ReadHalf,
    wr: WriteHalf,
    reader: FrameReader,
    out: OutBuf,
    /// Behind Sentinel: ends when the server stops being the master; the
    /// link then fails (its client is closed, to reconnect).
    epoch: Option<tokio_util::sync::CancellationToken>,
}

impl DedicatedLink {
    /// Take over a connection that finished its handshake.
    pub fn new(conn: Dedicated) -> Self {
        DedicatedLink {
            rd: conn.rd,
            wr: conn.wr,
            reader: FrameReader::new(conn.buf, READ_CHUNK),
            out: OutBuf::default(),
            epoch: conn.epoch,
        }
    }

    /// Read what Redis sent; `Ok(0)` when it closed the connection.
    pub async fn read(&mut self) -> std::io::Result<usize> {
        match &self.epoch {
            None => self.rd.read_buf(self.reader.buf_mut()).await,
            Some(epoch) => tokio::select! {
                r = self.rd.read_buf(self.reader.buf_mut()) => r,
                _ = epoch.cancelled() => Err(std::io::Error::other("the master changed")),
            },
        }
    }

    /// The next complete reply frame.
    pub fn next_frame(&mut self, proto: Proto) -> Result<Option<Bytes>, ReplyError> {
        self.reader.next_frame(proto)
    }

    /// Everything read so far, as it came (a replication stream).
    pub fn take_raw(&mut self) -> Bytes {
        self.reader.take_all()
    }

    /// Whether nothing is queued, buffered or left over on the link, and
    /// (behind Sentinel) its server is still the master: it can serve
    /// another session.
    pub fn idle(&self) -> bool {
        self.out.is_empty()
            && self.reader.buffered().is_empty()
            && !self.epoch.as_ref().is_some_and(|e| e.is_cancelled())
    }

    /// Whether an idle link is still open: a read polled once finds
    /// nothing (Redis closing it, or sending anything unasked, ends it).
    pub async fn still_open(&mut self) -> bool {
        if !self.idle() {
            return false;
        }
        let buf = self.reader.buf_mut();
        let rd = &mut self.rd;
        std::future::poll_fn(|cx| {
            let mut read = std::pin::pin!(rd.read_buf(&mut *buf));
            std::task::Poll::Ready(read.as_mut().poll(cx).is_pending())
        })
        .await
    }

    /// Queue request bytes for the next [`DedicatedLink::flush`].
    pub fn queue(&mut self, data: Bytes) {
        self.out.push(data);
    }

    /// Write everything queued.
    pub async fn flush(&mut self) -> Result<(), BackendError> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.out.write_to(&mut self.wr).await.map_err(|_| BackendError::Lost)
    }
}
