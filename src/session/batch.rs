//! The shared-link batch: requests for a shared link gather in the session
//! (plain ones as the client's bytes, sealed ones encoded straight into one
//! buffer) and reach the link's writer as one request per loop turn.

use bytes::{Buf, Bytes};

use super::{Link, Session, TAIL_RESERVE_MAX, reencode_sealed};
use crate::backend::{BackendError, LinkEvent, SharedRequest};
use crate::commands::{Args, Command};
use crate::plan::Plan;
use crate::sealing::{OpenPlan, Sealer};

impl<R, W> Session<R, W>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    /// Queue the request at the front of `rbuf` (`len` bytes; or `inline`)
    /// on the shared link through `shared_tail`: re-encoded if `seal`
    /// (values sealed, names pseudonymised), copied as it is otherwise; its
    /// reply is opened with `open`.
    pub(super) fn queue_sealed(
        &mut self,
        len: usize,
        inline: Option<&Bytes>,
        cmd: Option<&'static Command>,
        seal: bool,
        open: Option<OpenPlan>,
    ) {
        let src: &[u8] = inline.map_or(&self.rbuf[..len], |f| &f[..]);
        let args = Args::new(src, &self.args);
        let need = match cmd {
            Some(cmd) if seal => Sealer::sealed_len_bound(cmd, &args),
            _ => src.len(),
        };
        let tail = &mut self.shared_tail;
        if tail.capacity() - tail.len() < need {
            // Never grow the buffer in place (that would copy what it holds):
            // hand what it holds on and start a new one, sized for the rest
            // of what the client sent too (bounded).
            if !tail.is_empty() {
                self.shared_batch.push(tail.split().freeze());
            }
            let rest = self.rbuf.len().saturating_sub(len);
            tail.reserve(need + (rest + rest / 8).min(TAIL_RESERVE_MAX));
        }
        let result = if seal {
            reencode_sealed(self.cur.sealer.as_deref(), cmd, &args, tail)
        } else {
            tail.extend_from_slice(src);
            Ok(())
        };
        self.rbuf.advance(len);
        if let Err(e) = result {
            return self.refuse(e);
        }
        self.shared_frames += 1;
        self.replies.push(open.map_or(Plan::Forward(1), Plan::Open), 1);
    }

    /// Hand the batched requests to the shared link.
    pub(super) async fn flush_shared(&mut self) {
        if !self.shared_tail.is_empty() {
            // The whole buffer goes: a waiting session holds no spare room.
            self.shared_batch.push(std::mem::take(&mut self.shared_tail).freeze());
        }
        if self.shared_batch.is_empty() {
            return;
        }
        let data = std::mem::take(&mut self.shared_batch);
        let frames = std::mem::take(&mut self.shared_frames);
        match &mut self.link {
            Link::Shared { link, .. } => {
                link.send(SharedRequest { data, frames, reply: self.reply_tx.clone() }).await;
            }
            // The link changes only once nothing is in flight (and pinning
            // flushes first), so this is never expected; fail rather than hang.
            _ if frames > 0 => self.replies.on_link_event(LinkEvent::Failed { frames, error: BackendError::Lost }),
            _ => {}
        }
    }

    /// Queue request bytes expecting `frames` replies; they are written by
    /// the next flush (at the latest, when the session waits for anything).
    pub(super) async fn send(&mut self, data: Bytes, frames: u32) {
        match &mut self.link {
            Link::Shared { .. } => {
                if !self.shared_tail.is_empty() {
                    self.shared_batch.push(self.shared_tail.split().freeze());
                }
                self.shared_batch.push(data);
                self.shared_frames += frames;
            }
            Link::Dedicated(d) => {
                d.queue(data);
                if frames > 0 && self.wait_start.is_none() {
                    self.wait_start = Some(tokio::time::Instant::now());
                }
            }
            Link::None => {
                // Only reachable if pinning failed; the error reply is queued.
                if frames > 0 {
                    self.replies.on_link_event(LinkEvent::Failed { frames, error: BackendError::Lost });
                }
            }
        }
    }
}
