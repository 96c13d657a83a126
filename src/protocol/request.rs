//! Parsing client requests: RESP arrays of bulk strings, and inline commands
//! (`PING\r\n` typed into `nc`), with Redis's own limits and error messages.
//!
//! The parser works on a borrowed buffer and records argument *ranges*, so a
//! forwarded request is the client's own bytes, never copied. An incomplete
//! request is not an error: [`Parsed::Incomplete`] says how many bytes are
//! needed at least, so a large frame arriving in many reads is not rescanned
//! on every read. Limits are checked on headers, before the bytes they
//! announce are buffered.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::encode;
use super::parse_int;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline request, and the
/// longest a header line may grow while looking for its end.
pub const INLINE_MAX: usize = 64 * 1024;

/// Size limits applied to every client request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single bulk argument, like Redis's `proto-max-bulk-len`.
    pub max_bulk: usize,
    /// Largest whole request frame (all headers and arguments).
    pub max_frame: usize,
    /// Most arguments in one request.
    pub max_args: usize,
    /// The client has not authenticated while users are required: Redis's
    /// own pre-auth limits apply (at most [`UNAUTH_MAX_ARGS`] arguments,
    /// bulks of at most [`UNAUTH_MAX_BULK`] bytes).
    pub unauthenticated: bool,
}

impl Limits {
    /// No limit at all (requests the proxy encoded itself).
    pub const NONE: Limits =
        Limits { max_bulk: usize::MAX, max_frame: usize::MAX, max_args: usize::MAX, unauthenticated: false };
}

/// Most arguments Redis accepts in one request before AUTH.
pub const UNAUTH_MAX_ARGS: i64 = 10;
/// Largest bulk Redis accepts before AUTH.
pub const UNAUTH_MAX_BULK: i64 = 16 * 1024;

/// One step of parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete request of `len` bytes. The argument ranges were written to
    /// the caller's vector: relative to the buffer for RESP requests, relative
    /// to `inline` (a RESP re-encoding of the inline command) otherwise.
    Command {
        /// Bytes of the buffer this request occupies.
        len: usize,
        /// For an inline command: the same command as a RESP array.
        inline: Option<Bytes>,
    },
    /// `len` bytes that hold no command (`*0`, `*-1`, an empty line): Redis
    /// consumes them silently, so does respseal.
    Empty {
        /// Bytes to consume.
        len: usize,
    },
    /// More bytes are needed; `need` is the total buffer length at which
    /// trying again can make progress.
    Incomplete {
        /// Minimum buffer length for the next attempt.
        need: usize,
    },
}

/// A client protocol error. The connection is answered with
/// `-ERR <Display>` and then closed, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An inline request longer than [`INLINE_MAX`].
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// Inline request with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// `*N` that is not a number, or over the argument limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `*` header line longer than [`INLINE_MAX`].
    #[error("Protocol error: too big mbulk count string")]
    TooBigMbulkCount,
    /// `$` header line longer than [`INLINE_MAX`].
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An array element that is not a bulk string (the byte found).
    #[error("Protocol error: expected '$', got '{}'", shown_byte(*.0))]
    ExpectedBulk(u8),
    /// `$N` that is not a number, negative, or over the bulk limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// The whole request is larger than the frame limit.
    #[error("Protocol error: request larger than the proxy's max_frame_bytes")]
    FrameTooLarge,
    /// More than [`UNAUTH_MAX_ARGS`] arguments before AUTH.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    /// A bulk over [`UNAUTH_MAX_BULK`] bytes before AUTH.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
}

/// A byte as it shows in text (logs, `Display`): printable ASCII as itself.
fn shown_byte(b: u8) -> char {
    if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }
}

/// Where parsing a multibulk request stopped for lack of bytes: the next
/// attempt on the same request (its buffer grown by later reads) goes on
/// from there with the arguments already found, instead of parsing them
/// all again. Without it, a request of a million short arguments arriving
/// in 16 KiB reads would be parsed hundreds of times over, holding its
/// worker thread (and every client on it) for seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Start of the first argument not parsed yet.
    pos: usize,
    /// Arguments still to parse.
    left: usize,
}

/// Parse the request at the start of `buf`.
pub fn parse(buf: &[u8], limits: &Limits, args: &mut Vec<Range<usize>>) -> Result<Parsed, ProtocolError> {
    parse_resumable(buf, limits, args, &mut None)
}

/// [`parse`], going on from `resume` when it is set (then `buf` must be
/// the same request, with more bytes, and `args` as the last attempt left
/// it); sets it again when the request is still incomplete.
pub fn parse_resumable(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
    resume: &mut Option<Resume>,
) -> Result<Parsed, ProtocolError> {
    if let Some(r) = resume.take() {
        return parse_bulks(buf, limits, args, r.pos, r.left, resume);
    }
    args.clear();
    match buf.first() {
        None => Ok(Parsed::Incomplete { need: 1 }),
        Some(b'*') => parse_multibulk(buf, limits, args, resume),
        Some(_) => parse_inline(buf, args),
    }
}

/// The first `stop` byte at or after `start`, looked for as Redis does with
/// `strchr` on its query buffer: a NUL byte ends the search, so a line with
/// a NUL before its end is never found (Redis waits for more bytes until
/// its 64 KiB limit, then closes the connection; so does respseal).
fn find_before_nul(buf: &[u8], start: usize, stop: u8) -> Option<usize> {
    buf[start..].iter().position(|&b| b == stop || b == 0).filter(|&i| buf[start + i] == stop)
}

/// Find the `\r\n`-terminated line starting at `start`; `Ok(None)` if the
/// line is not complete yet, `Err` if it is already longer than Redis allows.
/// Like Redis, the byte after the `\r` must be there but is not checked.
fn line_end(buf: &[u8], start: usize, too_long: ProtocolError) -> Result<Option<usize>, ProtocolError> {
    match find_before_nul(buf, start, b'\r') {
        Some(i) if start + i + 1 < buf.len() => Ok(Some(start + i)),
        Some(_) => Ok(None),
        None if buf.len() - start > INLINE_MAX => Err(too_long),
        None => Ok(None),
    }
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
    resume: &mut Option<Resume>,
) -> Result<Parsed, ProtocolError> {
    let Some(cr) = line_end(buf, 0, ProtocolError::TooBigMbulkCount)? else {
        return Ok(Parsed::Incomplete { need: buf.len() + 1 });
    };
    let count = parse_int(&buf[1..cr]).ok_or(ProtocolError::InvalidMultibulkLength)?;
    if count > i64::from(i32::MAX) {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    if limits.unauthenticated && count > UNAUTH_MAX_ARGS {
        return Err(ProtocolError::UnauthenticatedMultibulk);
    }
    let pos = cr + 2;
    if count <= 0 {
        return Ok(Parsed::Empty { len: pos });
    }
    let count = count as usize;
    if count > limits.max_args {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    parse_bulks(buf, limits, args, pos, count, resume)
}

/// The `left` bulk arguments of a multibulk request, from `pos`.
fn parse_bulks(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
    mut pos: usize,
    left: usize,
    resume: &mut Option<Resume>,
) -> Result<Parsed, ProtocolError> {
    for done in 0..left {
        let mut incomplete = |need: usize| {
            *resume = Some(Resume { pos, left: left - done });
            Ok(Parsed::Incomplete { need })
        };
        if pos >= buf.len() {
            return incomplete(pos + 1);
        }
        let Some(cr) = line_end(buf, pos, ProtocolError::TooBigBulkCount)? else {
            return incomplete(buf.len() + 1);
        };
        if buf[pos] != b'$' {
            return Err(ProtocolError::ExpectedBulk(buf[pos]));
        }
        let len = parse_int(&buf[pos + 1..cr]).ok_or(ProtocolError::InvalidBulkLength)?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        if limits.unauthenticated && len > UNAUTH_MAX_BULK {
            return Err(ProtocolError::UnauthenticatedBulk);
        }
        let start = cr + 2;
        let end = start + len as usize;
        if end + 2 > limits.max_frame {
            return Err(ProtocolError::FrameTooLarge);
        }
        if end + 2 > buf.len() {
            return incomplete(end + 2);
        }
        args.push(start..end);
        // Like Redis, the two bytes after the payload are skipped unchecked.
        pos = end + 2;
    }
    Ok(Parsed::Command { len: pos, inline: None })
}

fn parse_inline(buf: &[u8], args: &mut Vec<Range<usize>>) -> Result<Parsed, ProtocolError> {
    // As in Redis, the limit applies while the end of the line has not been
    // found: a line that arrives whole is taken whatever its length.
    let Some(nl) = find_before_nul(buf, 0, b'\n') else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(Parsed::Incomplete { need: buf.len() + 1 });
    };
    let mut line = &buf[..nl];
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    let words = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
    if words.is_empty() {
        return Ok(Parsed::Empty { len: nl + 1 });
    }
    let mut frame = BytesMut::with_capacity(line.len() + 16 * words.len());
    encode::array_header(&mut frame, words.len());
    for w in &words {
        let start = frame.len() + encode::bulk_header_len(w.len());
        encode::bulk(&mut frame, w);
        args.push(start..start + w.len());
    }
    Ok(Parsed::Command { len: nl + 1, inline: Some(frame.freeze()) })
}

/// Split an inline command line into words with the quoting rules of Redis's
/// `sdssplitargs`: double quotes with `\n \r \t \b \a \\ \" \xHH` escapes,
/// single quotes with `\'`; a closing quote must be followed by a space.
/// `None` means unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // Redis splits a C string: a NUL byte ends the line.
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let mut words = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Some(words);
        }
        let mut word = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 3 < n && line[i + 1] == b'x' && is_hex(line[i + 2]) && is_hex(line[i + 3]) {
                    word.push(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    word.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    word.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    // Only these end a word; `\v` and `\f` are skipped
                    // between words (isspace) but kept inside one.
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => word.push(c),
                }
            }
            i += 1;
        }
        words.push(word);
    }
}

/// C's `isspace`: ASCII whitespace plus vertical tab.
fn is_space(c: u8) -> bool {
    c.is_ascii_whitespace() || c == 0x0b
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_bulk: 1024, max_frame: 4096, max_args: 8, unauthenticated: false };

    fn words(buf: &[u8]) -> (Parsed, Vec<Vec<u8>>) {
        let mut args = Vec::new();
        let parsed = parse(buf, &LIMITS, &mut args).expect("valid request");
        let src: Vec<u8> = match &parsed {
            Parsed::Command { inline: Some(frame), .. } => frame.to_vec(),
            _ => buf.to_vec(),
        };
        (parsed, args.iter().map(|r| src[r.clone()].to_vec()).collect())
    }

    #[test]
    fn multibulk_complete_and_incomplete() {
        let req = b"*2\r\n$4\r\nECHO\r\n$3\r\nhey\r\n";
        let (p, w) = words(req);
        assert_eq!(p, Parsed::Command { len: req.len(), inline: None });
        assert_eq!(w, vec![b"ECHO".to_vec(), b"hey".to_vec()]);
        for cut in 0..req.len() {
            let mut args = Vec::new();
            match parse(&req[..cut], &LIMITS, &mut args).expect("prefix is not an error") {
                Parsed::Incomplete { need } => {
                    assert!(need > cut && need <= req.len(), "cut {cut} need {need}")
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn empty_multibulk_is_consumed_silently() {
        let mut args = Vec::new();
        assert_eq!(parse(b"*-10\r\n", &LIMITS, &mut args), Ok(Parsed::Empty { len: 6 }));
        assert_eq!(parse(b"*0\r\n", &LIMITS, &mut args), Ok(Parsed::Empty { len: 4 }));
        assert_eq!(parse(b"\r\n", &LIMITS, &mut args), Ok(Parsed::Empty { len: 2 }));
    }

    #[test]
    fn redis_error_messages() {
        let mut a = Vec::new();
        let err = |b: &[u8], a: &mut Vec<_>| parse(b, &LIMITS, a).unwrap_err().to_string();
        assert_eq!(err(b"*3000000000\r\n", &mut a), "Protocol error: invalid multibulk length");
        assert_eq!(err(b"*9\r\n", &mut a), "Protocol error: invalid multibulk length");
        assert_eq!(err(b"*x\r\n", &mut a), "Protocol error: invalid multibulk length");
        assert_eq!(err(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", &mut a), "Protocol error: expected '$', got 'f'");
        assert_eq!(err(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", &mut a), "Protocol error: invalid bulk length");
        assert_eq!(
            err(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", &mut a),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(err(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", &mut a), "Protocol error: invalid bulk length");
        assert_eq!(err(b"\"unbalanced\r\n", &mut a), "Protocol error: unbalanced quotes in request");
        let big = vec![b'A'; INLINE_MAX + 2];
        assert_eq!(err(&big, &mut a), "Protocol error: too big inline request");
        let mut mb = b"*".to_vec();
        mb.extend(vec![0u8; INLINE_MAX + 2]);
        assert_eq!(err(&mb, &mut a), "Protocol error: too big mbulk count string");
    }

    #[test]
    fn limits_are_checked_on_headers_before_the_payload_arrives() {
        let mut a = Vec::new();
        // A 1025-byte bulk is refused from its header alone.
        assert_eq!(parse(b"*1\r\n$1025\r\n", &LIMITS, &mut a), Err(ProtocolError::InvalidBulkLength));
        // Several bulks within max_bulk but over max_frame.
        let req = b"*5\r\n$1000\r\n".to_vec();
        let mut full = req.clone();
        for _ in 0..4 {
            full.extend(vec![b'x'; 1000]);
            full.extend(b"\r\n$1000\r\n");
        }
        assert_eq!(parse(&full, &LIMITS, &mut a), Err(ProtocolError::FrameTooLarge));
    }

    #[test]
    fn inline_commands_follow_sdssplitargs() {
        let (p, w) = words(b"SET a b\r\n");
        assert!(matches!(p, Parsed::Command { len: 9, inline: Some(_) }));
        assert_eq!(w, vec![b"SET".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        let (_, w) = words(b"set \"a b\\x41\\n\" 'it\\'s'\n");
        assert_eq!(w, vec![b"set".to_vec(), b"a bA\n".to_vec(), b"it's".to_vec()]);
        let (p, _) = words(b"   \r\n");
        assert_eq!(p, Parsed::Empty { len: 5 });
        assert_eq!(split_args(b"\"a\"b"), None);
        assert_eq!(split_args(b"'abc"), None);
        // A NUL ends the line, as in Redis's C string handling.
        assert_eq!(split_args(b"get a\x00 b c"), Some(vec![b"get".to_vec(), b"a".to_vec()]));
        assert_eq!(split_args(b"\x00get"), Some(vec![]));
        assert_eq!(split_args(b"\"a\x00b\""), None);
        // Vertical tab and form feed separate words only where words start.
        assert_eq!(split_args(b"\x0ba\x0bb\x0c c"), Some(vec![b"a\x0bb\x0c".to_vec(), b"c".to_vec()]));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_overrun() {
        let alphabet = b"*$\r\n0123456789-+\"' \\xaZ\x00\x0b";
        let mut garbage = crate::protocol::Garbage::new(0x2545f4914f6cdd1d);
        let mut args = Vec::new();
        for _ in 0..50_000 {
            let v = garbage.next(alphabet, 40);
            match parse(&v, &LIMITS, &mut args) {
                Ok(Parsed::Command { len, inline }) => {
                    assert!(len <= v.len());
                    let src = inline.map(|f| f.to_vec()).unwrap_or_else(|| v.clone());
                    assert!(args.iter().all(|r| r.end <= src.len()));
                }
                Ok(Parsed::Empty { len }) => assert!(len > 0 && len <= v.len()),
                Ok(Parsed::Incomplete { need }) => assert!(need > v.len()),
                Err(_) => {}
            }
        }
    }

    /// A request of many short arguments fed in small cuts: each attempt
    /// goes on from where the last stopped (the arguments found so far are
    /// kept, never parsed again), and the result is the one-shot parse's.
    #[test]
    fn resumed_parsing_never_parses_an_argument_twice() {
        let big = Limits { max_bulk: 1 << 20, max_frame: 64 << 20, max_args: 1 << 20, unauthenticated: false };
        let mut req = b"*200001\r\n$3\r\nDEL\r\n".to_vec();
        for i in 0..200_000 {
            let k = format!("k{}", i % 1000);
            req.extend_from_slice(format!("${}\r\n{k}\r\n", k.len()).as_bytes());
        }
        let mut whole = Vec::new();
        assert!(matches!(parse(&req, &big, &mut whole), Ok(Parsed::Command { .. })));
        let (mut args, mut resume, mut fed, mut attempts) = (Vec::new(), None, 0, 0);
        loop {
            fed = (fed + 1000).min(req.len());
            let before = args.len();
            attempts += 1;
            match parse_resumable(&req[..fed], &big, &mut args, &mut resume).expect("valid") {
                Parsed::Command { len, .. } => {
                    assert_eq!(len, req.len());
                    break;
                }
                Parsed::Incomplete { .. } => {
                    assert!(resume.is_some());
                    // Kept and extended, never started over.
                    assert!(args.len() >= before || before == 0 && args.is_empty());
                    assert!(args.len() <= 1 + fed / 6);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(args, whole);
        assert!(resume.is_none());
        assert!(attempts > 1000);
    }

    #[test]
    fn inline_is_reencoded_as_resp() {
        let mut args = Vec::new();
        let Ok(Parsed::Command { inline: Some(frame), .. }) = parse(b"PING\n", &LIMITS, &mut args) else {
            panic!("inline PING")
        };
        assert_eq!(&frame[..], b"*1\r\n$4\r\nPING\r\n");
    }

    /// Realistic sizes: session blobs of 4 KiB to 1 MiB, MSETs of thousands
    /// of keys, pipelines of hundreds of commands. Each stream is fed in
    /// random cuts, as reads deliver it: every request comes out whole, with
    /// the arguments that went in, and `need` never asks for less than the
    /// next attempt can use.
    #[test]
    fn realistic_requests_in_random_cuts() {
        let big = Limits { max_bulk: 512 << 20, max_frame: 512 << 20, max_args: 1 << 20, unauthenticated: false };
        let mut g = crate::protocol::Garbage::new(0x1234_5678_9abc_def1);
        let mut commands: Vec<Vec<Vec<u8>>> = Vec::new();
        for size in [4 << 10, 64 << 10, 1 << 20] {
            let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            commands.push(vec![b"SET".to_vec(), b"sess:big".to_vec(), value, b"EX".to_vec(), b"86400".to_vec()]);
        }
        let mut mset = vec![b"MSET".to_vec()];
        for i in 0..5000 {
            mset.push(format!("key:{i}").into_bytes());
            mset.push(format!("value-{i}").into_bytes());
        }
        commands.push(mset);
        for i in 0..300 {
            commands.push(vec![b"GET".to_vec(), format!("sess:{i}").into_bytes()]);
        }
        let mut stream = Vec::new();
        for c in &commands {
            let words: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            stream.extend_from_slice(&encode::command(&words));
        }
        for _ in 0..5 {
            let mut buf: Vec<u8> = Vec::new();
            let mut fed = 0;
            let mut got = 0;
            let mut args = Vec::new();
            let mut need = 0;
            while got < commands.len() {
                if buf.len() < need.max(1) || fed < stream.len() && g.below(3) == 0 {
                    let cut = (fed + 1 + g.below(200_000) as usize).min(stream.len());
                    buf.extend_from_slice(&stream[fed..cut]);
                    fed = cut;
                }
                match parse(&buf, &big, &mut args).expect("valid stream") {
                    Parsed::Command { len, inline: None } => {
                        let words: Vec<&[u8]> = args.iter().map(|r| &buf[r.clone()]).collect();
                        assert_eq!(words, commands[got].iter().map(Vec::as_slice).collect::<Vec<_>>(), "command {got}");
                        buf.drain(..len);
                        got += 1;
                        need = 0;
                    }
                    Parsed::Incomplete { need: n } => {
                        assert!(n > buf.len(), "need {n} with {} buffered", buf.len());
                        assert!(fed < stream.len(), "incomplete at the end of the stream");
                        need = n;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(buf.is_empty());
        }
    }
}
