//! Encoding the frames respseal writes itself: its own replies and errors,
//! and the commands it sends to Redis on its own behalf (handshakes).

use bytes::{BufMut, Bytes, BytesMut};

/// Append `*N\r\n`.
pub fn array_header(buf: &mut BytesMut, n: usize) {
    buf.put_u8(b'*');
    put_decimal(buf, n as i64);
    buf.put_slice(b"\r\n");
}

/// Length of the `$N\r\n` header for a bulk string of `len` bytes.
pub fn bulk_header_len(len: usize) -> usize {
    let mut digits = 1;
    let mut v = len / 10;
    while v > 0 {
        digits += 1;
        v /= 10;
    }
    digits + 3
}

/// Append `$N\r\n`, the header of a bulk string of `len` bytes.
pub fn bulk_header(buf: &mut BytesMut, len: usize) {
    buf.put_u8(b'$');
    put_decimal(buf, len as i64);
    buf.put_slice(b"\r\n");
}

/// Append a bulk string.
pub fn bulk(buf: &mut BytesMut, data: &[u8]) {
    buf.reserve(data.len() + 16);
    bulk_header(buf, data.len());
    buf.put_slice(data);
    buf.put_slice(b"\r\n");
}

/// Encode a command (array of bulk strings).
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> Bytes {
    let mut buf = BytesMut::new();
    array_header(&mut buf, args.len());
    for a in args {
        bulk(&mut buf, a.as_ref());
    }
    buf.freeze()
}

/// Append an error reply. `msg` must not contain CR or LF; any that do are
/// replaced by spaces, as Redis does.
pub fn error(buf: &mut BytesMut, msg: &str) {
    buf.reserve(msg.len() + 3);
    buf.put_u8(b'-');
    for &b in msg.as_bytes() {
        buf.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    buf.put_slice(b"\r\n");
}

/// An error reply as its own frame.
pub fn error_frame(msg: &str) -> Bytes {
    let mut buf = BytesMut::new();
    error(&mut buf, msg);
    buf.freeze()
}

/// Append `v` in decimal without allocating.
pub fn put_decimal(buf: &mut BytesMut, v: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        buf.put_u8(b'-');
    }
    buf.put_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_and_errors() {
        assert_eq!(&command(&["SELECT", "9"])[..], b"*2\r\n$6\r\nSELECT\r\n$1\r\n9\r\n");
        assert_eq!(&error_frame("ERR a\r\nb")[..], b"-ERR a  b\r\n");
        assert_eq!(bulk_header_len(0), 4);
        assert_eq!(bulk_header_len(10), 5);
    }
}
