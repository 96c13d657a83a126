//! Reading reply frames that are already whole: one borrowed view,
//! [`Frame`], for every reader of replies outside the scanner that finds
//! their boundaries ([`super::reply`]). A frame is always read in the
//! protocol of the stream it came from, said explicitly; what it hands out
//! (payloads, elements) shares the frame's memory.

use bytes::Bytes;

use super::reply::frame_len;
use super::{Proto, parse_int};

/// Where Redis Cluster sent a command instead of answering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot addr`: the slot lives there now.
    Moved(String),
    /// `ASK slot addr`: ask there, once (the slot is migrating).
    Ask(String),
    /// `TRYAGAIN`: the keys are being moved; send it again later.
    TryAgain,
}

/// A whole reply frame and the protocol of its stream.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a Bytes,
    proto: Proto,
}

impl<'a> Frame<'a> {
    /// `bytes` (exactly one whole frame), read as `proto`.
    pub fn new(bytes: &'a Bytes, proto: Proto) -> Self {
        Frame { bytes, proto }
    }

    /// Whether it is an error reply (`-…`, or a RESP3 blob error `!…`).
    pub fn is_error(&self) -> bool {
        match self.bytes.first() {
            Some(b'-') => true,
            Some(b'!') => self.proto == Proto::Resp3,
            _ => false,
        }
    }

    /// Whether it is a RESP3 push (`>`: a pub/sub delivery or an
    /// invalidation), which is not a reply to any command.
    pub fn is_push(&self) -> bool {
        super::reply::is_push(self.bytes)
    }

    /// Whether it is a null of any kind (`$-1`, `*-1`, RESP3 `_`).
    pub fn is_null(&self) -> bool {
        let b = &self.bytes[..];
        b == b"$-1\r\n" || b == b"*-1\r\n" || (b == b"_\r\n" && self.proto == Proto::Resp3)
    }

    /// The text of a one-line reply of type `kind` (`+`, `-`, `:`), without
    /// its type byte and CRLF.
    fn line(&self, kind: u8) -> Option<&'a [u8]> {
        let b: &'a [u8] = self.bytes;
        (b.first() == Some(&kind) && b.ends_with(b"\r\n") && b.len() >= 3).then(|| &b[1..b.len() - 2])
    }

    /// A simple string's text (`+OK` → `OK`).
    pub fn simple(&self) -> Option<&'a [u8]> {
        self.line(b'+')
    }

    /// An error line's text (`-MOVED 1 a:1` → `MOVED 1 a:1`).
    pub fn error_line(&self) -> Option<&'a [u8]> {
        self.line(b'-')
    }

    /// The redirect this error reply from `node` names, with an empty or
    /// unknown host (`:6381`, `?:6381`: Redis's
    /// `cluster-preferred-endpoint-type unknown-endpoint`) taken as the host
    /// asked.
    pub fn redirect(&self, node: &str) -> Option<Redirect> {
        let line = self.error_line()?;
        if line.starts_with(b"TRYAGAIN") {
            return Some(Redirect::TryAgain);
        }
        let text = std::str::from_utf8(line).ok()?;
        let mut words = text.split(' ');
        let kind = words.next()?;
        let _slot = words.next()?;
        let addr = words.next()?;
        let addr = match addr.rsplit_once(':') {
            Some(("" | "?", port)) => format!("{}:{port}", node.rsplit_once(':').map_or(node, |(h, _)| h)),
            _ => addr.to_string(),
        };
        match kind {
            "MOVED" => Some(Redirect::Moved(addr)),
            "ASK" => Some(Redirect::Ask(addr)),
            _ => None,
        }
    }

    /// An integer reply's value.
    pub fn integer(&self) -> Option<i64> {
        self.line(b':').and_then(parse_int)
    }

    /// A bulk string's payload (a RESP3 blob string's), sharing the
    /// frame's memory; `None` for a null or any other type.
    pub fn payload(&self) -> Option<Bytes> {
        let b = self.bytes;
        if b.first() != Some(&b'$') {
            return None;
        }
        let cr = b.iter().position(|&c| c == b'\r')?;
        let len = usize::try_from(parse_int(&b[1..cr])?).ok()?;
        let start = cr + 2;
        (b.len() == start.checked_add(len)?.checked_add(2)? && b.ends_with(b"\r\n"))
            .then(|| b.slice(start..start + len))
    }

    /// The elements of an array (`None` for a null array or another type).
    pub fn elements(&self) -> Option<Vec<Bytes>> {
        self.aggregate(b'*', 1)
    }

    /// The elements of a RESP3 map, keys and values alternating.
    pub fn map_elements(&self) -> Option<Vec<Bytes>> {
        self.aggregate(b'%', 2)
    }

    /// The elements of a RESP3 push (`>`: pub/sub deliveries).
    pub fn push_elements(&self) -> Option<Vec<Bytes>> {
        self.aggregate(b'>', 1)
    }

    /// For an array or push whose first element is a string (bulk or
    /// simple): that string and the second element, if a string — without
    /// reading the rest (how pub/sub deliveries and confirmations are told
    /// apart, per frame, without splitting a large message).
    pub fn head(&self) -> Option<(&'a [u8], Option<Bytes>)> {
        let b: &'a Bytes = self.bytes;
        if !matches!(b.first(), Some(b'*' | b'>')) {
            return None;
        }
        let (name, pos) = string_at(b, header_end(b, 0)?)?;
        let second = string_at(b, pos).map(|(c, _)| b.slice_ref(c));
        Some((name, second))
    }

    /// The elements of an aggregate whose header is `kind` and a count of
    /// `per_count` elements each, each found with the stream's protocol.
    fn aggregate(&self, kind: u8, per_count: usize) -> Option<Vec<Bytes>> {
        let b = self.bytes;
        if b.first() != Some(&kind) {
            return None;
        }
        let cr = b.iter().position(|&c| c == b'\r')?;
        let n = usize::try_from(parse_int(&b[1..cr])?).ok()?.checked_mul(per_count)?;
        let mut pos = cr + 2;
        let mut out = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let len = frame_len(b.get(pos..)?, self.proto).ok()??;
            out.push(b.slice(pos..pos + len));
            pos += len;
        }
        Some(out)
    }
}

/// The position after the line starting at `pos`.
fn header_end(frame: &[u8], pos: usize) -> Option<usize> {
    let cr = frame.get(pos..)?.iter().position(|&b| b == b'\r')?;
    Some(pos + cr + 2)
}

/// A bulk or simple string at `pos`, and the position after it.
fn string_at(frame: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let end = header_end(frame, pos)?;
    match frame.get(pos)? {
        b'+' => Some((frame.get(pos + 1..end - 2)?, end)),
        b'$' => {
            let len = usize::try_from(parse_int(frame.get(pos + 1..end - 2)?)?).ok()?;
            let data = frame.get(end..end.checked_add(len)?)?;
            Some((data, end + len + 2))
        }
        _ => None,
    }
}

/// Whole frames handed over together (a shared link's run of replies, a
/// pipeline's replies), one by one. They were checked by their link in its
/// own protocol; RESP3's rules find the same boundaries in RESP2 (a
/// superset), so the split does not depend on a protocol switch (HELLO)
/// among them. Stops at the first bytes that are not a whole frame.
pub fn split_frames(mut data: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || match frame_len(&data, Proto::Resp3) {
        Ok(Some(len)) if len > 0 => Some(data.split_to(len)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(b: &'static [u8]) -> Bytes {
        Bytes::from_static(b)
    }

    #[test]
    fn reads_each_type_in_its_protocol() {
        let (r2, r3) = (Proto::Resp2, Proto::Resp3);
        assert_eq!(Frame::new(&f(b"$3\r\nabc\r\n"), r2).payload().as_deref(), Some(&b"abc"[..]));
        assert_eq!(Frame::new(&f(b"$0\r\n\r\n"), r3).payload().as_deref(), Some(&b""[..]));
        assert!(Frame::new(&f(b"$-1\r\n"), r2).payload().is_none());
        assert!(Frame::new(&f(b"$4\r\nabc\r\n"), r2).payload().is_none(), "length disagrees");
        assert!(Frame::new(&f(b"+OK\r\n"), r2).payload().is_none());
        assert_eq!(Frame::new(&f(b":-42\r\n"), r2).integer(), Some(-42));
        assert_eq!(Frame::new(&f(b"+OK\r\n"), r2).simple(), Some(&b"OK"[..]));
        assert_eq!(Frame::new(&f(b"-MOVED 1 a:1\r\n"), r2).error_line(), Some(&b"MOVED 1 a:1"[..]));
        assert!(Frame::new(&f(b"!3\r\nerr\r\n"), r3).is_error());
        assert!(!Frame::new(&f(b"!3\r\nerr\r\n"), r2).is_error(), "no blob errors in RESP2");
        assert!(Frame::new(&f(b"_\r\n"), r3).is_null());
        assert!(Frame::new(&f(b"*-1\r\n"), r2).is_null());
        let arr = f(b"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+x\r\n");
        let els = Frame::new(&arr, r2).elements().expect("array");
        assert_eq!(els, vec![f(b"$1\r\na\r\n"), f(b":1\r\n"), f(b"*1\r\n+x\r\n")]);
        // A RESP3 type inside an array is not a RESP2 element.
        assert!(Frame::new(&f(b"*1\r\n#t\r\n"), r2).elements().is_none());
        assert_eq!(Frame::new(&f(b"*1\r\n#t\r\n"), r3).elements().map(|e| e.len()), Some(1));
        let map = f(b"%1\r\n+k\r\n:2\r\n");
        assert_eq!(Frame::new(&map, r3).map_elements().map(|e| e.len()), Some(2));
        assert!(Frame::new(&f(b"*2\r\n:1\r\n"), r2).elements().is_none(), "short");
    }

    #[test]
    fn recognises_pubsub_frames() {
        let f = f(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        let (name, ch) = Frame::new(&f, Proto::Resp2).head().expect("pubsub frame");
        assert_eq!(name, b"message");
        assert_eq!(ch.as_deref(), Some(&b"ch"[..]));
        let f = Bytes::from_static(b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n");
        let (name, ch) = Frame::new(&f, Proto::Resp3).head().expect("push frame");
        assert_eq!(name, b"unsubscribe");
        assert_eq!(ch, None);
        assert!(Frame::new(&Bytes::from_static(b"+OK\r\n"), Proto::Resp2).head().is_none());
        assert!(Frame::new(&Bytes::from_static(b"*1\r\n:1\r\n"), Proto::Resp2).head().is_none());
    }

    #[test]
    fn redirects() {
        let r = |b: &'static [u8], node| Frame::new(&f(b), Proto::Resp2).redirect(node);
        assert_eq!(r(b"-MOVED 3999 127.0.0.1:6381\r\n", "x:1"), Some(Redirect::Moved("127.0.0.1:6381".into())));
        assert_eq!(r(b"-ASK 3999 :6381\r\n", "10.0.0.1:7000"), Some(Redirect::Ask("10.0.0.1:6381".into())));
        assert_eq!(r(b"-MOVED 1 ?:6381\r\n", "10.0.0.1:7000"), Some(Redirect::Moved("10.0.0.1:6381".into())));
        assert_eq!(r(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "x:1"), Some(Redirect::TryAgain));
        assert_eq!(r(b"-ERR no\r\n", "x:1"), None);
        assert_eq!(r(b"+OK\r\n", "x:1"), None);
    }

    #[test]
    fn splits_a_run_of_frames() {
        let all: Vec<Bytes> = split_frames(f(b"+OK\r\n$1\r\nx\r\n:3\r\n$5\r\npart")).collect();
        assert_eq!(all, vec![f(b"+OK\r\n"), f(b"$1\r\nx\r\n"), f(b":3\r\n")]);
    }

    /// The payload agrees with redis-protocol's decoders on every frame the
    /// scanner finds whole that they read as one bulk (blob) string.
    #[test]
    fn payload_agrees_with_the_redis_protocol_decoder() {
        use redis_protocol::{resp2, resp3};
        let mut g = super::super::Garbage::new(5);
        let mut agreed = 0;
        for i in 0..20_000u32 {
            let body = g.next(b"ab\r\n$0123", 12);
            let len = if i % 3 == 0 { body.len() + (i as usize % 3) } else { body.len() };
            let mut raw = format!("${len}\r\n").into_bytes();
            raw.extend_from_slice(&body);
            raw.extend_from_slice(if i % 7 == 0 { b"\n\r" } else { b"\r\n" });
            let b = Bytes::from(raw);
            // A frame reaches a reader only whole, as the scanner found it.
            if frame_len(&b, Proto::Resp3) != Ok(Some(b.len())) {
                assert!(Frame::new(&b, Proto::Resp3).payload().is_none() || b.ends_with(b"\r\n"), "{b:?}");
                continue;
            }
            let r2 = match resp2::decode::decode_bytes(&b) {
                Ok(Some((resp2::types::BytesFrame::BulkString(p), n))) if n == b.len() => Some(p),
                _ => None,
            };
            let r3 = match resp3::decode::complete::decode_bytes(&b) {
                Ok(Some((resp3::types::BytesFrame::BlobString { data, .. }, n))) if n == b.len() => Some(data),
                _ => None,
            };
            assert_eq!(Frame::new(&b, Proto::Resp2).payload(), r2, "{b:?}");
            assert_eq!(Frame::new(&b, Proto::Resp3).payload(), r3, "{b:?}");
            agreed += usize::from(r2.is_some());
        }
        assert!(agreed > 5_000, "{agreed}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut g = super::super::Garbage::new(11);
        for _ in 0..2000 {
            let b = Bytes::from(g.next(b"*$%>+-:_!#\r\n0123456789-abc", 64));
            for p in [Proto::Resp2, Proto::Resp3] {
                let fr = Frame::new(&b, p);
                let _ = (fr.payload(), fr.elements(), fr.map_elements(), fr.push_elements(), fr.integer());
                let _ = (fr.is_error(), fr.is_null(), fr.simple(), fr.error_line(), fr.head());
            }
        }
    }
}
