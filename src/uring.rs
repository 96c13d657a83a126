//! The io_uring I/O path for plaintext client connections (Linux; opt-in
//! with `io = "io_uring"`, see "Measured" below for why it is not the
//! default).
//!
//! With epoll, every client read and every reply write is a system call of
//! its own. Here each worker thread owns one io_uring: a session's reads and
//! writes are queued as submission entries and the whole loop turn's worth
//! reaches the kernel in one `io_uring_enter`, made just before the worker
//! waits (tokio's park hook, [`before_park`]). Completions are read from the
//! shared ring without a system call, in the same hook and from a task that
//! tokio wakes when the ring's descriptor becomes readable.
//!
//! Reads use a ring of provided buffers (one pool per worker, 256 × 16 KiB),
//! so an idle connection owns no read buffer while its receive waits: the
//! kernel picks a buffer when data arrives, the session copies it out and the
//! buffer goes straight back to the pool. When the pool is empty the receive
//! fails with `ENOBUFS` and that one read uses a buffer of its own.
//!
//! Writes are write-behind: `poll_write` copies what it is given into the
//! connection's send buffer, queues a send and returns at once; the next
//! write waits until that send is complete, so replies that arrive meanwhile
//! gather in the session's output queue and leave together (coalescing), and
//! at most one send per connection is in flight. Errors of a send surface at
//! the next write or flush, as they would from a socket buffer.
//!
//! The two halves implement tokio's `AsyncRead`/`AsyncWrite`, so the session
//! code is the same on both paths. Operations belong to the worker thread
//! that queued them (a session never leaves its worker); a half dropped with
//! an operation in flight leaves that operation's buffer with the driver and
//! cancels it, so the socket closes at once and no memory is freed under the
//! kernel.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Submission queue entries (the completion queue is twice as large; the
/// kernel keeps overflowing completions rather than dropping them).
const ENTRIES: u32 = 1024;
/// Queued entries that are submitted at once instead of at the next park.
const SUBMIT_AT: u32 = 256;
/// Size of one provided read buffer.
const BUF_SIZE: usize = 16 * 1024;
/// Provided read buffers per worker (a power of two).
const BUF_COUNT: u16 = 256;
/// The buffer group id of the pool.
const BGID: u16 = 0;
/// Most bytes one write takes.
const MAX_SEND: usize = 1 << 20;
/// A send buffer larger than this is not kept between writes.
const KEEP_SEND: usize = 64 * 1024;
/// `user_data` of cancel requests, whose completions are ignored.
const CANCEL_TAG: u64 = u64::MAX;

/// Which I/O path serves plaintext client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// epoll (tokio's reactor): the default.
    Epoll,
    /// io_uring where the kernel allows it, epoll where it is refused.
    Uring,
}

impl IoMode {
    /// Parse `epoll` or `io_uring`.
    pub fn parse(s: &str) -> Option<IoMode> {
        match s {
            "epoll" => Some(IoMode::Epoll),
            "io_uring" => Some(IoMode::Uring),
            _ => None,
        }
    }

    /// Whether to use io_uring, given whether this kernel allows it
    /// (`probe`'s result); a refusal is logged and epoll is used.
    pub fn resolve(self, probe: &io::Result<()>) -> bool {
        match (self, probe) {
            (IoMode::Epoll, _) => false,
            (IoMode::Uring, Ok(())) => true,
            (IoMode::Uring, Err(e)) => {
                tracing::warn!(error = %e, "io = \"io_uring\" but the kernel refuses it; using epoll");
                false
            }
        }
    }
}

/// Whether this process may use io_uring as the workers do: a ring with a
/// provided-buffer pool (refused under `kernel.io_uring_disabled`, by
/// seccomp filters such as container defaults, and before Linux 5.19).
pub fn probe() -> io::Result<()> {
    Driver::new().map(drop)
}

enum State {
    /// In flight; the task to wake when it completes.
    Waiting(Option<Waker>),
    /// Completed with this result and these flags, not collected yet.
    Done(i32, u32),
    /// In flight, its owner gone: collected by the driver itself.
    Orphan,
}

struct Slot {
    state: State,
    /// Memory the kernel reads or writes until completion.
    keep: Option<Vec<u8>>,
}

/// The pool of provided read buffers and the ring that lends them to the
/// kernel.
struct BufPool {
    ring: *mut types::BufRingEntry,
    mem: *mut u8,
    tail: u16,
}

impl BufPool {
    fn ring_layout() -> std::alloc::Layout {
        let size = usize::from(BUF_COUNT) * std::mem::size_of::<types::BufRingEntry>();
        std::alloc::Layout::from_size_align(size, 4096).expect("a valid layout")
    }

    fn mem_layout() -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(usize::from(BUF_COUNT) * BUF_SIZE, 4096).expect("a valid layout")
    }

    fn new() -> BufPool {
        // SAFETY: both layouts have a non-zero size.
        let (ring, mem): (*mut types::BufRingEntry, *mut u8) =
            unsafe { (std::alloc::alloc_zeroed(Self::ring_layout()).cast(), std::alloc::alloc(Self::mem_layout())) };
        if ring.is_null() || mem.is_null() {
            std::alloc::handle_alloc_error(Self::mem_layout());
        }
        let mut pool = BufPool { ring, mem, tail: 0 };
        for bid in 0..BUF_COUNT {
            pool.put(bid);
        }
        pool.publish();
        pool
    }

    /// Hand buffer `bid` back to the kernel (visible after `publish`).
    fn put(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (BUF_COUNT - 1));
        // SAFETY: idx < BUF_COUNT, the ring's length; bid < BUF_COUNT.
        unsafe {
            let e = &mut *self.ring.add(idx);
            e.set_addr(self.mem.add(usize::from(bid) * BUF_SIZE) as u64);
            e.set_len(BUF_SIZE as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail lives in the first entry's reserved field, which
        // the kernel reads; it is a u16 aligned as one.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn give_back(&mut self, bid: u16) {
        self.put(bid);
        self.publish();
    }

    /// The first `len` bytes of buffer `bid`.
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < BUF_COUNT && len <= BUF_SIZE);
        // SAFETY: in bounds (checked); the kernel wrote these bytes and does
        // not touch the buffer until it is given back.
        unsafe { std::slice::from_raw_parts(self.mem.add(usize::from(bid) * BUF_SIZE), len) }
    }
}

/// `IORING_ENTER_GETEVENTS`: also run the ring's deferred work.
const ENTER_GETEVENTS: u32 = 1;

/// One worker thread's ring.
pub struct Driver {
    ring: IoUring,
    /// Signalled by the kernel when completions wait to be run.
    efd: OwnedFd,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    queued: u32,
    pool: BufPool,
    /// Receives that found the pool empty (and read into their own buffer).
    pool_empty: u64,
}

impl Driver {
    fn new() -> io::Result<Driver> {
        // Deferred task running: the kernel finishes receives (copies data,
        // posts completions) only when this thread asks, in one batch per
        // `io_uring_enter`, instead of interrupting it for each.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_clamp()
            .build(ENTRIES)?;
        // SAFETY: eventfd(2) has no memory arguments.
        let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just created and owned by nothing else.
        let efd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(efd) };
        ring.submitter().register_eventfd(efd.as_raw_fd())?;
        let pool = BufPool::new();
        // SAFETY: the ring memory stays allocated while the ring is
        // registered: the pool is only freed after the ring is closed.
        let registered = unsafe { ring.submitter().register_buf_ring_with_flags(pool.ring as u64, BUF_COUNT, BGID, 0) };
        if let Err(e) = registered {
            drop(ring);
            pool.free();
            return Err(e);
        }
        Ok(Driver { ring, efd, slots: Vec::new(), free: Vec::new(), queued: 0, pool, pool_empty: 0 })
    }

    /// Queue `sqe`, with `keep` held until it completes; returns its id.
    fn push(&mut self, sqe: squeue::Entry, keep: Option<Vec<u8>>, waker: &Waker) -> u32 {
        let slot = Slot { state: State::Waiting(Some(waker.clone())), keep };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue(sqe.user_data(u64::from(id)));
        id
    }

    fn queue(&mut self, sqe: squeue::Entry) {
        // SAFETY: every buffer an entry points at is held in its slot (or is
        // a provided buffer) until its completion is collected.
        while unsafe { self.ring.submission().push(&sqe) }.is_err() {
            self.submit();
        }
        self.queued += 1;
        if self.queued >= SUBMIT_AT {
            self.submit();
        }
    }

    /// Submit what is queued and run the ring's deferred work.
    fn submit(&mut self) {
        // SAFETY: no argument is passed.
        match unsafe { self.ring.submitter().enter::<libc::sigset_t>(self.queued, 0, ENTER_GETEVENTS, None) } {
            Ok(_) => self.queued = 0,
            // EBUSY / EAGAIN: completions must be collected first.
            Err(e) => {
                tracing::debug!(error = %e, "io_uring submit deferred");
                self.reap();
            }
        }
    }

    /// Collect completions, waking their tasks. True when one was woken.
    fn reap(&mut self) -> bool {
        let mut woke = false;
        let Driver { ring, slots, free, pool, .. } = self;
        for cqe in ring.completion() {
            let data = cqe.user_data();
            if data == CANCEL_TAG {
                continue;
            }
            let Some(Some(slot)) = slots.get_mut(data as usize) else {
                continue;
            };
            match std::mem::replace(&mut slot.state, State::Done(cqe.result(), cqe.flags())) {
                State::Waiting(w) => {
                    if let Some(w) = w {
                        w.wake();
                        woke = true;
                    }
                }
                State::Orphan => {
                    if let Some(bid) = cqueue::buffer_select(cqe.flags()) {
                        pool.give_back(bid);
                    }
                    slots[data as usize] = None;
                    free.push(data as u32);
                }
                State::Done(..) => {}
            }
        }
        woke
    }

    /// Submit what is queued, run deferred work if there is any, and collect
    /// completions. True when a task was woken.
    fn turn(&mut self) -> bool {
        if self.queued > 0 || self.ring.submission().taskrun() {
            self.submit();
        }
        self.reap()
    }

    /// The result of operation `id` if it completed (and the slot is freed),
    /// or `None` after registering `waker`.
    fn poll(&mut self, id: u32, waker: &Waker) -> Option<(i32, u32, Option<Vec<u8>>)> {
        let slot = self.slots[id as usize].as_mut().expect("a live operation");
        match &mut slot.state {
            State::Done(res, flags) => {
                let (res, flags) = (*res, *flags);
                let keep = slot.keep.take();
                self.slots[id as usize] = None;
                self.free.push(id);
                Some((res, flags, keep))
            }
            State::Waiting(w) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                None
            }
            State::Orphan => unreachable!("an orphan has no owner to poll it"),
        }
    }

    /// The owner of operation `id` is gone: cancel it, and let the driver
    /// collect it.
    fn orphan(&mut self, id: u32) {
        let slot = self.slots[id as usize].as_mut().expect("a live operation");
        if let State::Done(_, flags) = slot.state {
            if let Some(bid) = cqueue::buffer_select(flags) {
                self.pool.give_back(bid);
            }
            self.slots[id as usize] = None;
            self.free.push(id);
            return;
        }
        slot.state = State::Orphan;
        self.queue(opcode::AsyncCancel::new(u64::from(id)).build().user_data(CANCEL_TAG));
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The kernel may still write into the pool while the ring winds
        // down, after this thread is gone: the pool is left allocated (one
        // per worker, freed with the process).
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
    }
}

impl BufPool {
    fn free(self) {
        // SAFETY: allocated in `new` with these layouts; called only when no
        // ring can use them any more.
        unsafe {
            std::alloc::dealloc(self.ring.cast(), Self::ring_layout());
            std::alloc::dealloc(self.mem, Self::mem_layout());
        }
    }
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

fn with<T>(f: impl FnOnce(&mut Driver) -> T) -> T {
    DRIVER.with(|d| f(d.borrow_mut().as_mut().expect("io_uring driver installed on this worker")))
}

/// Whether this thread has a driver (operations can be cleaned up).
fn installed() -> bool {
    DRIVER.with(|d| d.try_borrow().is_ok_and(|d| d.is_some()))
}

/// Give this worker thread its ring, and return the task that collects
/// completions when the ring's descriptor becomes readable (spawn it on the
/// worker's runtime).
///
/// # Errors
/// When the kernel refuses the ring or its buffer pool.
pub fn install() -> io::Result<impl Future<Output = ()>> {
    let driver = Driver::new()?;
    let fd = driver.efd.as_raw_fd();
    DRIVER.with(|d| *d.borrow_mut() = Some(driver));
    Ok(async move {
        // SAFETY: the eventfd stays open while this thread's driver lives,
        // which is longer than its runtime and this task.
        let Ok(afd) = (unsafe { AsyncFd::register_with_interest(RingFd(fd), tokio::io::Interest::READABLE) }) else {
            tracing::error!("cannot watch the io_uring descriptor");
            return;
        };
        loop {
            let Ok(mut ready) = afd.readable().await else {
                return;
            };
            ready.clear_ready();
            with(Driver::turn);
        }
    })
}

/// The worker is about to wait for I/O: submit what was queued and collect
/// what completed. True when a task was woken (the worker does not wait).
pub fn before_park() -> bool {
    DRIVER.with(|d| {
        let Ok(mut d) = d.try_borrow_mut() else {
            return false;
        };
        let Some(d) = d.as_mut() else {
            return false;
        };
        d.turn()
    })
}

struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Split a connected socket into io_uring read and write halves.
pub fn split(stream: std::net::TcpStream) -> (UringRead, UringWrite) {
    let fd = Arc::new(OwnedFd::from(stream));
    (
        UringRead { fd: Arc::clone(&fd), op: None, held: None, own_next: false },
        UringWrite { fd, op: None, buf: Vec::new(), off: 0 },
    )
}

/// Received bytes not handed to the reader yet.
enum Held {
    Pool { bid: u16, off: usize, len: usize },
    Own { buf: Vec<u8>, off: usize },
}

/// The read half.
pub struct UringRead {
    fd: Arc<OwnedFd>,
    op: Option<u32>,
    held: Option<Held>,
    /// The pool was empty: the next receive brings its own buffer.
    own_next: bool,
}

fn retryable(errno: i32) -> bool {
    errno == libc::EINTR || errno == libc::EAGAIN
}

impl UringRead {
    /// Copy held bytes into `rb`; true when anything was copied.
    fn drain_held(&mut self, rb: &mut ReadBuf<'_>) -> bool {
        let Some(held) = &mut self.held else {
            return false;
        };
        let done = match held {
            Held::Pool { bid, off, len } => {
                let n = (*len - *off).min(rb.remaining());
                with(|d| rb.put_slice(&d.pool.bytes(*bid, *len)[*off..*off + n]));
                *off += n;
                if *off == *len {
                    let bid = *bid;
                    with(|d| d.pool.give_back(bid));
                    true
                } else {
                    false
                }
            }
            Held::Own { buf, off } => {
                let n = (buf.len() - *off).min(rb.remaining());
                rb.put_slice(&buf[*off..*off + n]);
                *off += n;
                *off == buf.len()
            }
        };
        if done {
            self.held = None;
        }
        true
    }
}

impl AsyncRead for UringRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, rb: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if rb.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.drain_held(rb) {
                return Poll::Ready(Ok(()));
            }
            match this.op {
                Some(id) => {
                    let Some((res, flags, keep)) = with(|d| d.poll(id, cx.waker())) else {
                        return Poll::Pending;
                    };
                    this.op = None;
                    if res <= 0
                        && let Some(bid) = cqueue::buffer_select(flags)
                    {
                        with(|d| d.pool.give_back(bid));
                    }
                    if res == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    if res > 0 {
                        let len = res as usize;
                        this.held = Some(match (cqueue::buffer_select(flags), keep) {
                            (Some(bid), _) => Held::Pool { bid, off: 0, len },
                            (None, Some(mut buf)) => {
                                // SAFETY: the kernel wrote `len` bytes into
                                // the buffer's spare capacity.
                                unsafe { buf.set_len(len) };
                                Held::Own { buf, off: 0 }
                            }
                            (None, None) => return Poll::Ready(Err(io::ErrorKind::InvalidData.into())),
                        });
                        continue;
                    }
                    let errno = -res;
                    if errno == libc::ENOBUFS {
                        this.own_next = true;
                        with(|d| d.pool_empty += 1);
                    } else if !retryable(errno) {
                        return Poll::Ready(Err(io::Error::from_raw_os_error(errno)));
                    }
                }
                None => {
                    let fd = types::Fd(this.fd.as_raw_fd());
                    let (sqe, keep) = if std::mem::take(&mut this.own_next) {
                        let mut buf = Vec::with_capacity(BUF_SIZE);
                        let sqe = opcode::Recv::new(fd, buf.as_mut_ptr(), BUF_SIZE as u32).build();
                        (sqe, Some(buf))
                    } else {
                        let sqe = opcode::Recv::new(fd, std::ptr::null_mut(), BUF_SIZE as u32)
                            .buf_group(BGID)
                            .build()
                            .flags(squeue::Flags::BUFFER_SELECT);
                        (sqe, None)
                    };
                    this.op = Some(with(|d| d.push(sqe, keep, cx.waker())));
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for UringRead {
    fn drop(&mut self) {
        if !installed() {
            // Not on its worker (sessions never leave theirs): whatever the
            // driver holds for this half stays with it.
            return;
        }
        if let Some(Held::Pool { bid, .. }) = self.held.take() {
            with(|d| d.pool.give_back(bid));
        }
        if let Some(id) = self.op.take() {
            with(|d| d.orphan(id));
        }
    }
}

/// The write half.
pub struct UringWrite {
    fd: Arc<OwnedFd>,
    op: Option<u32>,
    /// What is being sent (held by the driver while a send is in flight).
    buf: Vec<u8>,
    /// Bytes of `buf` already sent.
    off: usize,
}

impl UringWrite {
    fn send_rest(&mut self, waker: &Waker) {
        let buf = std::mem::take(&mut self.buf);
        // SAFETY: `off < buf.len()`; the heap buffer does not move when the
        // Vec is moved into the driver's slot.
        let ptr = unsafe { buf.as_ptr().add(self.off) };
        let len = (buf.len() - self.off) as u32;
        // MSG_WAITALL: the kernel itself goes on after a short send, so the
        // rest leaves even when nobody writes (or flushes) again.
        let sqe = opcode::Send::new(types::Fd(self.fd.as_raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build();
        self.op = Some(with(|d| d.push(sqe, Some(buf), waker)));
    }

    /// Wait until nothing is in flight.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(id) = self.op {
            let Some((res, _, keep)) = with(|d| d.poll(id, cx.waker())) else {
                return Poll::Pending;
            };
            self.op = None;
            self.buf = keep.unwrap_or_default();
            if res < 0 && retryable(-res) {
                self.send_rest(cx.waker());
                continue;
            }
            if res <= 0 {
                self.buf.clear();
                self.off = 0;
                let e = if res == 0 { io::ErrorKind::WriteZero.into() } else { io::Error::from_raw_os_error(-res) };
                return Poll::Ready(Err(e));
            }
            self.off += res as usize;
            if self.off < self.buf.len() {
                self.send_rest(cx.waker());
                continue;
            }
            self.buf.clear();
            self.off = 0;
            if self.buf.capacity() > KEEP_SEND {
                self.buf = Vec::new();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for UringWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = std::task::ready!(this.poll_idle(cx)) {
            return Poll::Ready(Err(e));
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(MAX_SEND - n);
            this.buf.extend_from_slice(&b[..take]);
            n += take;
            if n == MAX_SEND {
                break;
            }
        }
        if n > 0 {
            this.send_rest(cx.waker());
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_idle(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = std::task::ready!(this.poll_idle(cx));
        // SAFETY: a valid socket descriptor.
        unsafe { libc::shutdown(this.fd.as_raw_fd(), libc::SHUT_WR) };
        Poll::Ready(flushed)
    }
}

impl Drop for UringWrite {
    fn drop(&mut self) {
        if let Some(id) = self.op.take()
            && installed()
        {
            with(|d| d.orphan(id));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{BUF_COUNT, BUF_SIZE, IoMode, before_park, install, split};

    /// Run `f` on a runtime set up as a worker's: current-thread, with the
    /// ring driven from the park hook and the reaper task.
    fn on_worker<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(|| {
                before_park();
            })
            .build()
            .expect("a runtime");
        let reaper = install().expect("io_uring is available on the test machine");
        rt.block_on(async move {
            tokio::spawn(reaper);
            f.await
        })
    }

    fn pairs(n: usize) -> Vec<(std::net::TcpStream, std::net::TcpStream)> {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        (0..n)
            .map(|_| {
                let client = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
                let (server, _) = l.accept().expect("accept");
                server.set_nonblocking(true).expect("nonblocking");
                (client, server)
            })
            .collect()
    }

    #[test]
    fn echo_through_more_connections_than_the_pool_has_buffers() {
        // Every connection has 40 KiB waiting before its first receive, so
        // the first receives take every pooled buffer and the rest get
        // ENOBUFS and read into buffers of their own.
        let n = usize::from(BUF_COUNT) + 44;
        let len = 2 * BUF_SIZE + 8 * 1024;
        let mut conns = pairs(n);
        for (i, (client, _)) in conns.iter_mut().enumerate() {
            let data: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            client.write_all(&data).expect("client write");
        }
        let (clients, servers): (Vec<_>, Vec<_>) = conns.into_iter().unzip();
        on_worker(async move {
            let tasks: Vec<_> = servers
                .into_iter()
                .map(|s| {
                    tokio::spawn(async move {
                        let (mut rd, mut wr) = split(s);
                        let mut buf = vec![0; len];
                        rd.read_exact(&mut buf).await.expect("read");
                        wr.write_all(&buf).await.expect("write");
                        wr.shutdown().await.expect("shutdown");
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            assert!(super::with(|d| d.pool_empty) > 0, "some receive found the pool empty");
        });
        for (i, mut client) in clients.into_iter().enumerate() {
            let mut back = Vec::new();
            client.read_to_end(&mut back).expect("client read");
            let data: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            assert!(back == data, "connection {i} got its bytes back");
        }
    }

    #[test]
    fn a_dropped_reader_closes_the_socket_at_once() {
        let (mut client, server) = pairs(1).pop().expect("a pair");
        client.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        on_worker(async move {
            let (mut rd, wr) = split(server);
            let mut buf = [0u8; 16];
            // The receive is in flight (nothing was sent) when the halves go.
            assert!(tokio::time::timeout(Duration::from_millis(50), rd.read(&mut buf)).await.is_err());
            drop(rd);
            drop(wr);
            let start = Instant::now();
            let n = tokio::task::spawn_blocking(move || client.read(&mut buf)).await.expect("join");
            assert_eq!(n.expect("EOF, not a timeout"), 0);
            assert!(start.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn a_large_write_leaves_in_full_without_another_poll() {
        // Small socket buffers make the last send short; the writer is
        // neither polled nor flushed again while the peer reads the rest.
        let (mut client, server) = pairs(1).pop().expect("a pair");
        let small: libc::c_int = 32 * 1024;
        for (fd, opt) in [(server.as_raw_fd(), libc::SO_SNDBUF), (client.as_raw_fd(), libc::SO_RCVBUF)] {
            // SAFETY: a valid socket and an int option of the right size.
            let rc = unsafe {
                libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const small).cast(), size_of::<libc::c_int>() as u32)
            };
            assert_eq!(rc, 0);
        }
        client.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let reader = std::thread::spawn(move || {
            let mut back = vec![0; expected.len()];
            client.read_exact(&mut back).map(|()| back == expected)
        });
        on_worker(async move {
            let (_rd, mut wr) = split(server);
            wr.write_all(&data).await.expect("write");
            let back = tokio::task::spawn_blocking(move || reader.join().expect("reader")).await.expect("join");
            assert!(back.expect("every byte arrives in time"), "the bytes arrive unchanged");
            drop(wr);
        });
    }

    #[test]
    fn a_send_error_surfaces_at_a_later_write() {
        let (client, server) = pairs(1).pop().expect("a pair");
        drop(client);
        on_worker(async move {
            let (_rd, mut wr) = split(server);
            let chunk = vec![b'x'; 64 * 1024];
            let deadline = Instant::now() + Duration::from_secs(10);
            let err = loop {
                assert!(Instant::now() < deadline, "writes to a closed peer keep succeeding");
                if let Err(e) = wr.write_all(&chunk).await {
                    break e;
                }
                if let Err(e) = wr.flush().await {
                    break e;
                }
            };
            assert!(
                matches!(err.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset),
                "{err:?}"
            );
        });
    }

    #[test]
    fn end_of_stream_reads_zero_and_held_bytes_come_first() {
        let (mut client, server) = pairs(1).pop().expect("a pair");
        client.write_all(b"hello world").expect("write");
        drop(client);
        on_worker(async move {
            let (mut rd, _wr) = split(server);
            let mut small = [0u8; 5];
            rd.read_exact(&mut small).await.expect("read");
            assert_eq!(&small, b"hello");
            let mut rest = Vec::new();
            rd.read_to_end(&mut rest).await.expect("read to end");
            assert_eq!(rest, b" world");
        });
    }

    #[test]
    fn modes_parse_and_a_refused_ring_falls_back_to_epoll() {
        assert_eq!(IoMode::parse("io_uring"), Some(IoMode::Uring));
        assert_eq!(IoMode::parse("epoll"), Some(IoMode::Epoll));
        assert_eq!(IoMode::parse("kqueue"), None);
        let refused = Err(std::io::Error::from_raw_os_error(libc::EPERM));
        assert!(!IoMode::Uring.resolve(&refused));
        assert!(IoMode::Uring.resolve(&Ok(())));
        assert!(!IoMode::Epoll.resolve(&Ok(())));
    }
}
