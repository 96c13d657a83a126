//! Pub/sub: deliveries on sealed channels are opened before they reach a
//! subscriber; a payload that does not open is dropped, never delivered.

use bytes::{Bytes, BytesMut};

use super::Sealer;
use crate::clock::now_unix;
use crate::crypto::{self, Binding};
use crate::error::{CryptoError, Error};
use crate::protocol::frame::Frame;
use crate::protocol::{Proto, encode};
use crate::stats;

impl Sealer {
    /// A pub/sub delivery (`message`, `pmessage`, `smessage`; a RESP2 array
    /// or a RESP3 push): `None` when it is not on a sealed channel (pass it
    /// on), `Some(Some(frame))` with its payload opened, `Some(None)` when
    /// the payload does not open: the message is dropped (counted and
    /// logged as an open failure), never delivered as ciphertext or as a
    /// forgery.
    pub fn open_message(&self, frame: &Bytes, proto: Proto) -> Option<Option<Bytes>> {
        if !self.rules.has_channels() {
            return None;
        }
        let header = &frame[..frame.iter().position(|&b| b == b'\n')? + 1];
        let f = Frame::new(frame, proto);
        let els = f.elements().or_else(|| f.push_elements())?;
        let kind = Frame::new(els.first()?, proto).payload()?;
        let channel_at = match &kind[..] {
            b"message" | b"smessage" if els.len() == 3 => 1,
            b"pmessage" if els.len() == 4 => 2,
            _ => return None,
        };
        let channel = Frame::new(&els[channel_at], proto).payload()?;
        let rule = self.rules.channel(self.rules.find_channel(&channel)?);
        let payload_el = els.last()?;
        let now = now_unix();
        let failed = |reason: &'static str, key_id: Option<u32>| {
            Error::Crypto(CryptoError::Open { reason, key_id }).report();
            Some(None)
        };
        let Some(payload) = Frame::new(payload_el, proto).payload() else { return failed("bad_shape", None) };
        if !crypto::is_sealed(&payload) {
            return failed("not_sealed", None);
        }
        let mut out = BytesMut::with_capacity(frame.len());
        out.extend_from_slice(header);
        for el in &els[..els.len() - 1] {
            out.extend_from_slice(el);
        }
        let body = payload.len().saturating_sub(crypto::OVERHEAD);
        encode::bulk_header(&mut out, body);
        let binding = Binding::channel(&self.namespace, &channel);
        match crypto::open_into(&self.keyring, &binding, &payload, now, rule.freshness(), &mut out) {
            Ok(()) => {
                out.extend_from_slice(b"\r\n");
                stats::add(stats::Counter::Opened, 1);
                Some(Some(out.freeze()))
            }
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut out[..]);
                failed(e.reason(), crypto::inspect(&payload).ok().map(|i| i.key_id))
            }
        }
    }
}
