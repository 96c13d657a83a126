//! A raw RESP client that sends bytes and reads whole reply frames (boundaries
//! found with `respseal::protocol::reply::frame_len`), so tests assert exact
//! bytes.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use respseal::protocol::reply::frame_len;

use super::*;

/// Why reading a frame did not produce one.
#[derive(Debug)]
pub enum ReadError {
    /// Nothing complete arrived before the deadline (bytes so far attached).
    Timeout(Vec<u8>),
    /// The peer closed the connection (bytes of an incomplete frame attached).
    Closed(Vec<u8>),
    /// The bytes are not a valid reply for the client's protocol.
    Invalid(String, Vec<u8>),
    /// Another socket error.
    Io(std::io::Error),
}

/// A raw RESP client.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    /// Protocol used to find frame boundaries: set it to RESP3 after a
    /// successful `HELLO 3`, so RESP3 types on a RESP2 connection fail.
    pub proto: Proto,
    /// Port connected to.
    pub port: u16,
}

impl Client {
    /// Connect to 127.0.0.1:`port` or panic.
    #[track_caller]
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"))
    }

    /// Connect to 127.0.0.1:`port`.
    pub fn try_connect(port: u16) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Client { stream, buf: Vec::with_capacity(64 * 1024), start: 0, proto: Proto::Resp2, port })
    }

    /// A second handle on the socket, for a writer thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("cloning a TcpStream handle")
    }

    /// Send raw bytes.
    #[track_caller]
    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap_or_else(|e| panic!("write to port {}: {e}", self.port));
    }

    /// Send raw bytes that the server may refuse and close on before it
    /// has read them all (as Redis does on a protocol error): a broken
    /// pipe or a reset while writing is expected, the reply is read next.
    #[track_caller]
    pub fn send_until_refused(&mut self, data: &[u8]) {
        match self.stream.write_all(data) {
            Err(e) if !matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                panic!("write to port {}: {e}", self.port)
            }
            _ => {}
        }
    }

    /// Send one command without reading its reply.
    #[track_caller]
    pub fn send_cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        self.send(&resp(args));
    }

    /// Send one command and read its reply.
    #[track_caller]
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send_cmd(args);
        self.read_frame()
    }

    /// Send one command and assert its reply.
    #[track_caller]
    pub fn assert_cmd<A: AsRef<[u8]>>(&mut self, args: &[A], expected: &[u8]) {
        let r = self.cmd(args);
        assert_bytes(&r, expected);
    }

    /// `HELLO 3`: reads the reply as RESP3, asserts it is Redis's 7-entry map
    /// with `proto` 3, and switches this client to RESP3 framing.
    #[track_caller]
    pub fn hello3(&mut self) -> Vec<u8> {
        self.send_cmd(&["HELLO", "3"]);
        self.proto = Proto::Resp3;
        let r = self.read_frame();
        let ok = r.starts_with(b"%7\r\n$6\r\nserver\r\n") && contains(&r, b"$5\r\nproto\r\n:3\r\n");
        assert!(ok, "HELLO 3 reply: {}", show(&r));
        r
    }

    /// Read one complete frame or panic (timeout, close, invalid bytes).
    #[track_caller]
    pub fn read_frame(&mut self) -> Vec<u8> {
        match self.try_read_frame(IO_TIMEOUT) {
            Ok(f) => f,
            Err(e) => panic!("reading a reply on port {}: {}", self.port, describe(&e)),
        }
    }

    /// Read `n` complete frames.
    #[track_caller]
    pub fn read_frames(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.read_frame()).collect()
    }

    /// Read one frame, waiting at most `timeout`.
    pub fn try_read_frame(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            match frame_len(&self.buf[self.start..], self.proto) {
                Ok(Some(len)) => {
                    let frame = self.buf[self.start..self.start + len].to_vec();
                    self.start += len;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => return Err(ReadError::Invalid(e.to_string(), self.buf[self.start..].to_vec())),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadError::Timeout(self.buf[self.start..].to_vec()));
            }
            match self.fill(deadline - now) {
                Ok(0) => return Err(ReadError::Closed(self.buf[self.start..].to_vec())),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    fn fill(&mut self, timeout: Duration) -> std::io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        self.stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let r = self.stream.read(&mut self.buf[old..]);
        self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
        r
    }

    /// Assert that no byte arrives within `wait`.
    #[track_caller]
    pub fn assert_silent(&mut self, wait: Duration) {
        match self.try_read_frame(wait) {
            Err(ReadError::Timeout(partial)) if partial.is_empty() => {}
            other => panic!("expected no reply within {wait:?}, got {}", describe_result(&other)),
        }
    }

    /// Assert the peer closes the connection (within [`IO_TIMEOUT`]) without
    /// sending anything more.
    #[track_caller]
    pub fn assert_closed(&mut self) {
        match self.try_read_frame(IO_TIMEOUT) {
            Err(ReadError::Closed(rest)) if rest.is_empty() => {}
            Err(ReadError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection to be closed, got {}", describe_result(&other)),
        }
    }

    /// Whether the peer closed the connection (after any frames it sent,
    /// which are returned).
    pub fn read_until_closed(&mut self, timeout: Duration) -> Result<Vec<Vec<u8>>, ReadError> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_read_frame(left) {
                Ok(f) => frames.push(f),
                Err(ReadError::Closed(rest)) if rest.is_empty() => return Ok(frames),
                Err(ReadError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => return Ok(frames),
                Err(e) => return Err(e),
            }
        }
    }

    /// Close our sending side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

pub(crate) fn describe(e: &ReadError) -> String {
    match e {
        ReadError::Timeout(b) => format!("timed out (partial bytes: {})", show(b)),
        ReadError::Closed(b) => format!("connection closed (partial bytes: {})", show(b)),
        ReadError::Invalid(why, b) => format!("invalid reply ({why}): {}", show(&b[..b.len().min(300)])),
        ReadError::Io(e) => format!("socket error: {e}"),
    }
}

pub(crate) fn describe_result(r: &Result<Vec<u8>, ReadError>) -> String {
    match r {
        Ok(f) => format!("frame {}", show(f)),
        Err(e) => describe(e),
    }
}

/// A client talking to Redis itself (not through the proxy).
pub fn direct(port: u16) -> Client {
    Client::connect(port)
}
