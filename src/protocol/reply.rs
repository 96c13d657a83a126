//! Finding reply frame boundaries in what Redis sends back, without decoding.
//!
//! Replies that need no opening are forwarded as Redis's own bytes, so all
//! the proxy needs on the hot path is where each frame ends. The scanner is
//! iterative (an explicit stack, no recursion), has no depth limit of its own
//! (Redis has none either: a Lua script can return 8,000 nested arrays), and
//! never panics on any input. A [`ReplyScanner`] resumes where it stopped, so
//! a large reply arriving in many reads is scanned once, not once per read.
//! RESP2 streams accept only RESP2 types; RESP3 streams accept all RESP3
//! types, with attributes (`|`) counted as part of the frame they annotate.
//!
//! The stack costs 8 bytes per open aggregate and every open aggregate took
//! at least 4 bytes of input, so its size is bounded by the buffered reply,
//! which the link's own limits bound.

use super::{Proto, parse_int};

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

/// Largest element count an aggregate may announce (the top bit of a stack
/// entry marks attributes).
const MAX_COUNT: u64 = 1 << 62;
const ATTR: u64 = 1 << 63;
/// Open aggregates kept inline before the stack spills to the heap: replies
/// nest a level or two, so scanning them never allocates.
const INLINE: usize = 16;

/// Parse the element starting at `pos`.
fn element(buf: &[u8], pos: usize, proto: Proto) -> Result<Element, ReplyError> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(Element::Incomplete);
    };
    let Some(cr) = find_crlf(buf, pos + 1)? else {
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
            if n >= MAX_COUNT / 2 {
                return Err(ReplyError("aggregate length overflow"));
            }
            let n = if kind == b'%' || kind == b'|' { n * 2 } else { n };
            if n == 0 && kind != b'|' {
                return Ok(Element::Scalar(pos));
            }
            Ok(Element::Aggregate(pos, n, kind == b'|'))
        }
        _ => Err(ReplyError("unexpected type byte")),
    }
}

/// The stack of open aggregates: remaining element counts, attributes marked
/// by the top bit.
#[derive(Debug, Default, Clone)]
struct Stack {
    inline: [u64; INLINE],
    len: usize,
    spill: Vec<u64>,
}

impl Stack {
    fn depth(&self) -> usize {
        self.len + self.spill.len()
    }

    fn push(&mut self, v: u64) {
        if self.len < INLINE {
            self.inline[self.len] = v;
            self.len += 1;
        } else {
            self.spill.push(v);
        }
    }

    fn top(&mut self) -> Option<&mut u64> {
        if let Some(v) = self.spill.last_mut() {
            return Some(v);
        }
        if self.len == 0 { None } else { Some(&mut self.inline[self.len - 1]) }
    }

    fn pop(&mut self) {
        if self.spill.pop().is_none() {
            self.len = self.len.saturating_sub(1);
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }
}

/// A resumable frame scanner: [`ReplyScanner::scan`] is called with the
/// buffer that starts with the frame (growing between calls, never moved),
/// and carries on from where the previous call stopped.
#[derive(Debug, Default, Clone)]
pub struct ReplyScanner {
    /// Where the next element header starts, relative to the frame.
    pos: usize,
    stack: Stack,
}

impl ReplyScanner {
    /// A scanner at the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget any frame in progress (the buffer was replaced).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
    }

    /// The length of the frame at the start of `buf` once it is complete
    /// (the scanner is then ready for the next frame), `Ok(None)` while it
    /// is not. `buf` must hold the same frame start as on the previous call;
    /// `proto` must not change in the middle of a frame.
    pub fn scan(&mut self, buf: &[u8], proto: Proto) -> Result<Option<usize>, ReplyError> {
        if self.pos == 0 {
            // Most replies are one scalar: no stack needed.
            match element(buf, 0, proto)? {
                Element::Incomplete => return Ok(None),
                Element::Scalar(end) => return Ok(Some(end)),
                Element::Aggregate(..) => {}
            }
        }
        let result = self.scan_inner(buf, proto);
        if !matches!(result, Ok(None)) {
            self.reset();
        }
        result
    }

    fn scan_inner(&mut self, buf: &[u8], proto: Proto) -> Result<Option<usize>, ReplyError> {
        loop {
            match element(buf, self.pos, proto)? {
                Element::Incomplete => return Ok(None),
                Element::Aggregate(end, n, attr) => {
                    self.pos = end;
                    self.stack.push(n | if attr { ATTR } else { 0 });
                    if n > 0 {
                        continue;
                    }
                    // An empty attribute is finished as soon as it opens.
                }
                Element::Scalar(end) => self.pos = end,
            }
            // One element finished: close every aggregate it completes.
            loop {
                let Some(top) = self.stack.top() else {
                    return Ok(Some(self.pos));
                };
                let attr = *top & ATTR != 0;
                let remaining = *top & !ATTR;
                if attr && remaining == 0 {
                    // A finished attribute annotates the next element: it
                    // does not count in its parent.
                    self.stack.pop();
                    break;
                }
                *top -= 1;
                if remaining > 1 {
                    break;
                }
                self.stack.pop();
                if attr {
                    break;
                }
            }
        }
    }

    /// Open aggregates of the frame in progress.
    pub fn depth(&self) -> usize {
        self.stack.depth()
    }
}

/// Return the length of the complete frame at the start of `buf`, or
/// `Ok(None)` if it is not complete yet (one pass; for a buffer that grows,
/// keep a [`ReplyScanner`] instead).
pub fn frame_len(buf: &[u8], proto: Proto) -> Result<Option<usize>, ReplyError> {
    // Most replies are one scalar: no scanner needed.
    match element(buf, 0, proto)? {
        Element::Incomplete => Ok(None),
        Element::Scalar(end) => Ok(Some(end)),
        Element::Aggregate(..) => ReplyScanner::new().scan(buf, proto),
    }
}

/// The CR of the CRLF ending the line that starts at `from`; a CR followed
/// by anything but LF is malformed (Redis never sends one in a line).
fn find_crlf(buf: &[u8], from: usize) -> Result<Option<usize>, ReplyError> {
    let Some(i) = buf.get(from..).and_then(|b| b.iter().position(|&b| b == b'\r')) else {
        return Ok(None);
    };
    let cr = from + i;
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(cr)),
        Some(_) => Err(ReplyError("line not terminated by CRLF")),
    }
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
        assert!(len2(b"*4611686018427387904\r\n").is_err());
        // A pseudo-random sweep of byte strings.
        let mut garbage = crate::protocol::Garbage::new(0x9e3779b97f4a7c15);
        for _ in 0..20000 {
            let v = garbage.next(b"*$%>|_+-:\r\n0123-9ab", 24);
            let _ = len2(&v);
            let _ = len3(&v);
        }
    }

    #[test]
    fn deep_nesting_has_no_limit_and_no_recursion() {
        // What Redis sends for a Lua table that contains itself, and deeper.
        for depth in [8_000usize, 100_000] {
            let mut f = b"*1\r\n".repeat(depth);
            f.extend_from_slice(b"-ERR reached lua stack limit\r\n");
            assert_eq!(len2(&f), Ok(Some(f.len())));
            assert_eq!(len3(&f), Ok(Some(f.len())));
            assert_eq!(len2(&f[..f.len() - 1]), Ok(None));
        }
    }

    #[test]
    fn scanner_resumes_where_it_stopped() {
        let mut f = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n%1\r\n+a\r\n|1\r\n+k\r\n+v\r\n+b\r\n_\r\n".to_vec();
        let total = f.len();
        f.extend_from_slice(b"+NEXT\r\n");
        for step in 1..8 {
            let mut s = ReplyScanner::new();
            let mut got = None;
            let mut fed = 0;
            while got.is_none() {
                fed = (fed + step).min(f.len());
                got = s.scan(&f[..fed], Proto::Resp3).expect("valid");
                assert!(fed <= total || got.is_some());
            }
            assert_eq!(got, Some(total), "step {step}");
            // Ready for the next frame.
            assert_eq!(s.scan(&f[total..], Proto::Resp3), Ok(Some(7)));
        }
    }

    #[test]
    fn a_large_reply_fed_in_chunks_is_scanned_once() {
        // 200,000 elements in 4 KiB reads: resuming keeps the work linear.
        let mut f = b"*200000\r\n".to_vec();
        for i in 0..200_000u32 {
            let v = i.to_string();
            f.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
        }
        let mut s = ReplyScanner::new();
        let mut fed = 0;
        let mut calls = 0;
        loop {
            fed = (fed + 4096).min(f.len());
            calls += 1;
            if let Some(n) = s.scan(&f[..fed], Proto::Resp2).expect("valid") {
                assert_eq!(n, f.len());
                break;
            }
            // Never more than a partial element behind the end.
            assert!(fed - s.pos < 64, "resumed at {} of {fed}", s.pos);
        }
        assert!(calls > 100);
    }

    /// A random valid frame of at most `depth` levels.
    fn random_frame(g: &mut crate::protocol::Garbage, out: &mut Vec<u8>, depth: u32, resp3: bool) {
        let pick = g.below(if resp3 { 16 } else { 7 });
        let agg = depth > 0;
        match pick {
            0 => out.extend_from_slice(b"+OK\r\n"),
            1 => out.extend_from_slice(b"-ERR boom\r\n"),
            2 => out.extend_from_slice(format!(":{}\r\n", g.below(1000) as i64 - 500).as_bytes()),
            3 => {
                let n = g.below(20) as usize;
                out.extend_from_slice(format!("${n}\r\n").as_bytes());
                out.extend(std::iter::repeat_n(b'x', n));
                out.extend_from_slice(b"\r\n");
            }
            4 if resp3 => out.extend_from_slice(b"_\r\n"),
            4 => out.extend_from_slice(b"$-1\r\n"),
            5 if agg => {
                let n = g.below(4);
                out.extend_from_slice(format!("*{n}\r\n").as_bytes());
                for _ in 0..n {
                    random_frame(g, out, depth - 1, resp3);
                }
            }
            6 if !resp3 => out.extend_from_slice(b"*-1\r\n"),
            7 => out.extend_from_slice(b"#t\r\n"),
            8 => out.extend_from_slice(b",1.5\r\n"),
            9 => out.extend_from_slice(b"(12345678901234567890\r\n"),
            10 => out.extend_from_slice(b"!3\r\nerr\r\n"),
            11 => out.extend_from_slice(b"=7\r\ntxt:abc\r\n"),
            12 | 13 if agg => {
                let n = g.below(3);
                out.extend_from_slice(format!("{}{n}\r\n", if pick == 12 { '%' } else { '~' }).as_bytes());
                for _ in 0..n * if pick == 12 { 2 } else { 1 } {
                    random_frame(g, out, depth - 1, resp3);
                }
            }
            14 if agg => {
                out.extend_from_slice(b"|1\r\n+key\r\n");
                random_frame(g, out, depth - 1, resp3);
                random_frame(g, out, depth - 1, resp3);
            }
            15 if agg => {
                // Deep one-element nesting, as Lua returns it.
                let n = g.below(200) as usize;
                out.extend_from_slice(&b"*1\r\n".repeat(n));
                out.extend_from_slice(b":0\r\n");
            }
            _ => out.extend_from_slice(b":7\r\n"),
        }
    }

    /// Where the redis-protocol crate's decoder says the first frame ends.
    fn reference_len(b: &[u8], proto: Proto) -> Result<Option<usize>, ()> {
        match proto {
            Proto::Resp2 => redis_protocol::resp2::decode::decode(b).map(|o| o.map(|(_, n)| n)).map_err(|_| ()),
            Proto::Resp3 => {
                redis_protocol::resp3::decode::complete::decode(b).map(|o| o.map(|(_, n)| n)).map_err(|_| ())
            }
        }
    }

    #[test]
    fn agrees_with_the_redis_protocol_decoder_on_frame_boundaries() {
        // The reference decoder recurses once per nesting level (which is
        // why respseal does not use it on replies): give it a large stack.
        std::thread::Builder::new()
            .stack_size(512 << 20)
            .spawn(differential)
            .expect("spawn")
            .join()
            .expect("differential run");
    }

    fn differential() {
        let mut g = crate::protocol::Garbage::new(0x5eed_1234_abcd_0001);
        let mut checked = 0;
        for round in 0..4000 {
            for proto in [Proto::Resp2, Proto::Resp3] {
                let mut f = Vec::new();
                random_frame(&mut g, &mut f, 4, proto == Proto::Resp3);
                let len = f.len();
                f.extend_from_slice(b"+NEXT\r\n");
                assert_eq!(frame_len(&f, proto), Ok(Some(len)), "round {round}: {:?}", String::from_utf8_lossy(&f));
                if let Ok(theirs) = reference_len(&f, proto) {
                    assert_eq!(theirs, Some(len), "decoder disagrees: {:?}", String::from_utf8_lossy(&f));
                    checked += 1;
                }
                // Every cut is incomplete for both.
                let cut = g.below(len as u64) as usize;
                assert_eq!(frame_len(&f[..cut], proto), Ok(None));
                assert!(matches!(reference_len(&f[..cut], proto), Ok(None) | Err(())));
                // One flipped byte: wherever both find a complete frame, they
                // agree on where it ends.
                let mut bad = f.clone();
                let at = g.below(len as u64) as usize;
                bad[at] = b"*$%:+-\r\n0x|>_"[g.below(13) as usize];
                if let (Ok(Some(a)), Ok(Some(b))) = (frame_len(&bad, proto), reference_len(&bad, proto)) {
                    assert_eq!(a, b, "malformed {:?}", String::from_utf8_lossy(&bad));
                }
            }
        }
        assert!(checked > 4000, "the reference decoder checked only {checked} frames");
    }

    /// Realistic replies: a 1 MiB GET, an MGET of 5,000 values, an HGETALL
    /// as a RESP3 map, a 100,000-element LRANGE, fed in random cuts to one
    /// resuming scanner: each frame's end is found exactly once, where it is.
    #[test]
    fn realistic_replies_in_random_cuts() {
        let mut frames: Vec<(Vec<u8>, Proto)> = Vec::new();
        let mut f = format!("${}\r\n", 1 << 20).into_bytes();
        f.extend(std::iter::repeat_n(b'x', 1 << 20));
        f.extend_from_slice(b"\r\n");
        frames.push((f, Proto::Resp2));
        let mut f = b"*5000\r\n".to_vec();
        for i in 0..5000 {
            if i % 7 == 0 {
                f.extend_from_slice(b"$-1\r\n");
            } else {
                let v = format!("value-{i}");
                f.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
            }
        }
        frames.push((f, Proto::Resp2));
        let mut f = b"%3\r\n".to_vec();
        for (k, v) in [("sessionAttr:user", "ada"), ("creationTime", "1700000000000"), ("data", "x")] {
            f.extend_from_slice(format!("${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len()).as_bytes());
        }
        frames.push((f, Proto::Resp3));
        let mut f = b"*100000\r\n".to_vec();
        for i in 0..100_000 {
            let v = format!("element-{i:07}");
            f.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
        }
        frames.push((f, Proto::Resp2));
        let mut g = crate::protocol::Garbage::new(0xfeed_beef_0102_0304);
        for (frame, proto) in &frames {
            let mut s = ReplyScanner::new();
            let mut fed = 0;
            loop {
                fed = (fed + 1 + g.below(70_000) as usize).min(frame.len());
                match s.scan(&frame[..fed], *proto).expect("valid") {
                    Some(n) => {
                        assert_eq!((n, fed), (frame.len(), frame.len()), "ended early");
                        break;
                    }
                    None => assert!(fed < frame.len(), "complete but not found"),
                }
            }
        }
    }
}
