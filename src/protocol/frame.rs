//! Reading reply frames that are already whole (their boundaries found by
//! [`super::reply`]): kind, payload, elements — sharing the frame's memory.

use bytes::Bytes;
use redis_protocol::{resp2, resp3};

use super::{Proto, parse_int};

/// Whether a frame is an error reply (`-…`, or a RESP3 blob error).
pub fn is_error(frame: &[u8], proto: Proto) -> bool {
    match frame.first() {
        Some(b'-') => true,
        Some(b'!') => proto == Proto::Resp3,
        _ => false,
    }
}

/// Whether a frame is a null of any kind (`$-1`, `*-1`, `_`).
pub fn is_null(frame: &[u8]) -> bool {
    frame == b"$-1\r\n" || frame == b"*-1\r\n" || frame == b"_\r\n"
}

/// The payload of a bulk string frame, decoded with the decoder of the
/// stream's own protocol (a RESP2 stream is never decoded as RESP3). The
/// payload shares the frame's memory.
pub fn bulk_payload(frame: &Bytes, proto: Proto) -> Option<Bytes> {
    match proto {
        Proto::Resp2 => match resp2::decode::decode_bytes(frame) {
            Ok(Some((resp2::types::BytesFrame::BulkString(b), _))) => Some(b),
            _ => None,
        },
        Proto::Resp3 => match resp3::decode::complete::decode_bytes(frame) {
            Ok(Some((resp3::types::BytesFrame::BlobString { data, .. }, _))) => Some(data),
            _ => None,
        },
    }
}

/// The elements of an array frame as separate frames (`None` if the frame
/// is not a non-null array).
pub fn split_array(frame: &Bytes) -> Option<Vec<Bytes>> {
    split_aggregate(frame, b'*', 1)
}

/// The elements of a RESP3 map frame, keys and values alternating.
pub fn split_map(frame: &Bytes) -> Option<Vec<Bytes>> {
    split_aggregate(frame, b'%', 2)
}

/// The elements of a RESP3 push frame (`>`: pub/sub deliveries).
pub fn split_push(frame: &Bytes) -> Option<Vec<Bytes>> {
    split_aggregate(frame, b'>', 1)
}

/// The elements of an aggregate whose header is `kind` followed by a count
/// of `per_count` elements each, sharing the frame's memory.
fn split_aggregate(frame: &Bytes, kind: u8, per_count: usize) -> Option<Vec<Bytes>> {
    if frame.first() != Some(&kind) {
        return None;
    }
    let cr = frame.iter().position(|&b| b == b'\r')?;
    let n = usize::try_from(parse_int(&frame[1..cr])?).ok()?.checked_mul(per_count)?;
    let mut pos = cr + 2;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let len = crate::protocol::reply::frame_len(&frame[pos..], Proto::Resp3).ok()??;
        out.push(frame.slice(pos..pos + len));
        pos += len;
    }
    Some(out)
}
