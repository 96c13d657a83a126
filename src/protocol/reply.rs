//! Finding reply frame boundaries in what Redis sends back, without decoding.
//!
//! Replies that need no opening are forwarded as Redis's own bytes, so all
//! the proxy needs on the hot path is where each frame ends. The scanner is
//! iterative (an explicit stack, bounded depth), allocation-free, and never
//! panics on any input. RESP2 streams accept only RESP2 types; RESP3 streams
//! accept all RESP3 types, with attributes (`|`) counted as part of the frame
//! they annotate.

use super::{Proto, parse_int};

/// Deepest aggregate nesting accepted from Redis.
pub const MAX_DEPTH: usize = 64;

/// A stream from Redis that is not valid RESP for its protocol version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reply from Redis: {0}")]
pub struct ReplyError(pub &'static str);

/// What one element header (plus its payload, for bulk types) turned out
/// to be.
enum Element {
    /// The input ends before the element does.
    Incomplete,
    /// A complete scalar ending at this position.
    Scalar(usize),
    /// An aggregate header ending at this position, opening this many child
    /// elements; the flag marks an attribute.
    Aggregate(usize, u64, bool),
}

/// Parse the element starting at `pos`.
fn element(buf: &[u8], pos: usize, proto: Proto) -> Result<Element, ReplyError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(Element::Incomplete);
    };
    let Some(cr) = find_crlf(buf, pos + 1) else {
        return Ok(Element::Incomplete);
    };
    let header = &buf[pos + 1..cr];
    let pos = cr + 2;
    let resp3 = proto == Proto::Resp3;
    match kind {
        b'+' | b'-' | b':' => Ok(Element::Scalar(pos)),
        b'_' | b',' | b'#' | b'(' if resp3 => Ok(Element::Scalar(pos)),
        b'$' | b'!' | b'=' if kind == b'$' || resp3 => {
            let len = parse_int(header).ok_or(ReplyError("bad bulk length"))?;
            if len == -1 && kind == b'$' {
                // RESP2 null bulk (also tolerated on RESP3 streams).
                return Ok(Element::Scalar(pos));
            }
            if len < 0 {
                return Err(ReplyError("negative bulk length"));
            }
            let end = pos.checked_add(len as usize).ok_or(ReplyError("bulk length overflow"))?;
            if end + 2 > buf.len() {
                return Ok(Element::Incomplete);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ReplyError("bulk not terminated by CRLF"));
            }
            Ok(Element::Scalar(end + 2))
        }
        b'*' | b'%' | b'~' | b'>' | b'|' if kind == b'*' || resp3 => {
            let n = parse_int(header).ok_or(ReplyError("bad aggregate length"))?;
            if n == -1 && kind == b'*' {
                // RESP2 null array.
                return Ok(Element::Scalar(pos));
            }
            if n < 0 {
                return Err(ReplyError("negative aggregate length"));
            }
            let n = n as u64;
            let n = if kind == b'%' || kind == b'|' { n * 2 } else { n };
            if n == 0 && kind != b'|' {
                return Ok(Element::Scalar(pos));
            }
            Ok(Element::Aggregate(pos, n, kind == b'|'))
        }
        _ => Err(ReplyError("unexpected type byte")),
    }
}

/// Return the length of the complete frame at the start of `buf`, or
/// `Ok(None)` if it is not complete yet.
pub fn frame_len(buf: &[u8], proto: Proto) -> Result<Option<usize>, ReplyError> {
    // Most replies are one scalar: no stack needed.
    let (mut pos, first) = match element(buf, 0, proto)? {
        Element::Incomplete => return Ok(None),
        Element::Scalar(end) => return Ok(Some(end)),
        Element::Aggregate(end, n, attr) => (end, (n, attr)),
    };
    // Remaining element counts of the open aggregates, and whether each is
    // an attribute (which does not count as an element of its parent).
    let mut stack = [(0u64, false); MAX_DEPTH];
    stack[0] = first;
    let mut depth = 1usize;
    // An empty attribute is finished as soon as it opens.
    let mut finished = first.0 == 0;
    loop {
        if finished {
            // One element finished: close every aggregate it completes.
            loop {
                if depth == 0 {
                    return Ok(Some(pos));
                }
                let (remaining, attr) = &mut stack[depth - 1];
                if *attr && *remaining == 0 {
                    // A finished attribute annotates the next element: it
                    // does not count in its parent.
                    depth -= 1;
                    break;
                }
                *remaining -= 1;
                if *remaining > 0 {
                    break;
                }
                depth -= 1;
                if *attr {
                    break;
                }
            }
        }
        match element(buf, pos, proto)? {
            Element::Incomplete => return Ok(None),
            Element::Scalar(end) => {
                pos = end;
                finished = true;
            }
            Element::Aggregate(end, n, attr) => {
                if depth == MAX_DEPTH {
                    return Err(ReplyError("nesting too deep"));
                }
                pos = end;
                stack[depth] = (n, attr);
                depth += 1;
                finished = n == 0;
            }
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let i = buf.get(from..)?.iter().position(|&b| b == b'\r')?;
    let cr = from + i;
    (cr + 1 < buf.len()).then_some(cr)
}

/// The frame's type byte after any leading attribute: used to recognise
/// RESP3 push frames (`>`), which are not replies.
pub fn is_push(frame: &[u8]) -> bool {
    frame.first() == Some(&b'>')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len2(b: &[u8]) -> Result<Option<usize>, ReplyError> {
        frame_len(b, Proto::Resp2)
    }
    fn len3(b: &[u8]) -> Result<Option<usize>, ReplyError> {
        frame_len(b, Proto::Resp3)
    }

    #[test]
    fn resp2_frames() {
        for f in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":12\r\n",
            b"$3\r\nabc\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        ] {
            let mut extended = f.to_vec();
            extended.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(len2(&extended), Ok(Some(f.len())), "{:?}", String::from_utf8_lossy(f));
            for cut in 0..f.len() {
                assert_eq!(len2(&f[..cut]), Ok(None), "cut {cut} of {:?}", String::from_utf8_lossy(f));
            }
        }
    }

    #[test]
    fn resp3_frames() {
        for f in [
            &b"_\r\n"[..],
            b"#t\r\n",
            b",1.5\r\n",
            b"(123\r\n",
            b"!3\r\nerr\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"%1\r\n+a\r\n:1\r\n",
            b"~2\r\n+a\r\n+b\r\n",
            b">3\r\n+message\r\n+ch\r\n+hi\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$2\r\nok\r\n",
            b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n",
            b"%0\r\n",
        ] {
            let mut extended = f.to_vec();
            extended.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(len3(&extended), Ok(Some(f.len())), "{:?}", String::from_utf8_lossy(f));
            for cut in 0..f.len() {
                assert_eq!(len3(&f[..cut]), Ok(None), "cut {cut}");
            }
        }
    }

    #[test]
    fn resp2_stream_rejects_resp3_types() {
        for f in [&b"_\r\n"[..], b"%1\r\n+a\r\n+b\r\n", b">1\r\n+a\r\n", b"#t\r\n"] {
            assert!(len2(f).is_err());
        }
    }

    #[test]
    fn garbage_never_panics() {
        assert!(len2(b"$-5\r\n").is_err());
        assert!(len2(b"$99999999999999999999\r\n").is_err());
        assert!(len2(b"$3\r\nabcXY").is_err());
        assert!(len2(b"?\r\n").is_err());
        let deep: Vec<u8> = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(len2(&deep).is_err());
        // A pseudo-random sweep of byte strings.
        let mut garbage = crate::protocol::Garbage::new(0x9e3779b97f4a7c15);
        for _ in 0..20000 {
            let v = garbage.next(b"*$%>|_+-:\r\n0123-9ab", 24);
            let _ = len2(&v);
            let _ = len3(&v);
        }
    }
}
