//! respseal's own credentials stay its own: a client can read neither the
//! password respseal uses for Redis nor its ACL user's hashes.
//!
//! `CONFIG GET` replies are forwarded with the values of Redis's password
//! settings replaced ([`mask_config`]); `ACL LIST`, `ACL GETUSER` and
//! `ACL WHOAMI` are refused by the command table (they would show the user
//! respseal connects as, and its password hashes).

use bytes::{Bytes, BytesMut};

use crate::protocol::frame::Frame;
use crate::protocol::{Proto, encode};

/// Redis settings whose values are credentials.
pub const SECRET_SETTINGS: [&str; 4] = ["requirepass", "masterauth", "tls-key-file-pass", "tls-client-key-file-pass"];

/// What a masked setting reads as.
pub const HIDDEN: &[u8] = b"<hidden by respseal>";

/// A `CONFIG GET` reply (RESP2 flat array or RESP3 map of name/value
/// pairs) with every non-empty credential replaced by [`HIDDEN`]; any
/// other frame (an error) is returned as it is.
pub fn mask_config(frame: Bytes, proto: Proto) -> Bytes {
    let f = Frame::new(&frame, proto);
    let (elements, map) = match (f.elements(), f.map_elements()) {
        (Some(e), _) => (e, false),
        (None, Some(e)) => (e, true),
        _ => return frame,
    };
    let secret = |name: &Bytes, value: &Bytes| {
        Frame::new(name, proto)
            .payload()
            .is_some_and(|n| SECRET_SETTINGS.iter().any(|s| n.eq_ignore_ascii_case(s.as_bytes())))
            && Frame::new(value, proto).payload().is_some_and(|v| !v.is_empty())
    };
    if !elements.chunks(2).any(|p| p.len() == 2 && secret(&p[0], &p[1])) {
        return frame;
    }
    let mut out = BytesMut::with_capacity(frame.len() + 32);
    let count = if map { elements.len() / 2 } else { elements.len() };
    out.extend_from_slice(format!("{}{count}\r\n", if map { '%' } else { '*' }).as_bytes());
    for pair in elements.chunks(2) {
        out.extend_from_slice(&pair[0]);
        match pair.get(1) {
            Some(v) if secret(&pair[0], v) => encode::bulk(&mut out, HIDDEN),
            Some(v) => out.extend_from_slice(v),
            None => {}
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_in_both_protocols() {
        let resp2 = Bytes::from_static(
            b"*6\r\n$11\r\nrequirepass\r\n$6\r\nsecret\r\n$6\r\nmaxmem\r\n$1\r\n0\r\n$10\r\nmasterauth\r\n$0\r\n\r\n",
        );
        assert_eq!(
            &mask_config(resp2, Proto::Resp2)[..],
            &b"*6\r\n$11\r\nrequirepass\r\n$20\r\n<hidden by respseal>\r\n$6\r\nmaxmem\r\n$1\r\n0\r\n$10\r\nmasterauth\r\n$0\r\n\r\n"[..]
        );
        let resp3 = Bytes::from_static(b"%1\r\n$11\r\nREQUIREPASS\r\n$2\r\npw\r\n");
        assert_eq!(
            &mask_config(resp3, Proto::Resp3)[..],
            &b"%1\r\n$11\r\nREQUIREPASS\r\n$20\r\n<hidden by respseal>\r\n"[..]
        );
        let plain = Bytes::from_static(b"*2\r\n$9\r\ndatabases\r\n$2\r\n16\r\n");
        assert_eq!(mask_config(plain.clone(), Proto::Resp2), plain);
        let err = Bytes::from_static(b"-ERR nope\r\n");
        assert_eq!(mask_config(err.clone(), Proto::Resp2), err);
    }
}
