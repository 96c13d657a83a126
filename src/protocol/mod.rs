//! RESP framing: the byte-level knowledge of the Redis protocol.
//!
//! * [`request`] parses what clients send (RESP arrays of bulk strings and
//!   inline commands) with Redis's own limits and error messages, without
//!   copying argument bytes.
//! * [`reply`] finds the boundaries of replies coming back from Redis (RESP2
//!   or RESP3, never mixed) without decoding them.
//! * [`framed`] is the reader both kinds of backend link use: a buffer and
//!   the resumable reply scanner, handing out complete frames.
//! * [`encode`] builds the few frames respseal writes itself (its own errors,
//!   `+OK`, commands it sends to Redis).
//!
//! Nothing here does I/O or knows about sessions or links.

pub mod encode;
pub mod frame;
pub mod framed;
pub mod reply;
pub mod request;

/// Which RESP version a stream speaks. A RESP2 stream is never scanned with
/// RESP3 rules and vice versa (`$-1`/`*-1` vs `_`, and the RESP3-only types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// RESP2, what every connection starts with.
    Resp2,
    /// RESP3, after a successful `HELLO 3`.
    Resp3,
}

impl Proto {
    /// The protocol number as used by `HELLO`.
    pub fn number(self) -> u8 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// Parse a decimal integer the way Redis's `string2ll` does: optional `-`,
/// no `+`, no leading zeros, no spaces, no overflow.
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !neg => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        v = if neg { v.checked_mul(10)?.checked_sub(digit)? } else { v.checked_mul(10)?.checked_add(digit)? };
    }
    Some(v)
}

/// Deterministic pseudo-random byte strings over an alphabet, for the
/// parsers' random-input sweeps (xorshift64: reproducible, no dependency).
#[cfg(test)]
pub(crate) struct Garbage {
    state: u64,
}

#[cfg(test)]
impl Garbage {
    pub(crate) fn new(seed: u64) -> Self {
        Garbage { state: seed.max(1) }
    }

    /// A number below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n.max(1)
    }

    /// A string of fewer than `max_len` bytes drawn from `alphabet`.
    pub(crate) fn next(&mut self, alphabet: &[u8], max_len: u64) -> Vec<u8> {
        let len = self.state % max_len;
        (0..len)
            .map(|_| {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                alphabet[(self.state % alphabet.len() as u64) as usize]
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_int;

    #[test]
    fn parse_int_is_strict_like_redis() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"123"), Some(123));
        assert_eq!(parse_int(b"-5"), Some(-5));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"01", b"-0", b"+1", b" 1", b"1a", b"9223372036854775808"] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
    }
}
