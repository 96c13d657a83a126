//! RESP bytes for assertions: encoding commands, printing and comparing
//! replies.

/// Printable form of RESP bytes for assertion messages.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Assert two byte strings are equal, showing both escaped on failure.
#[track_caller]
pub fn assert_bytes(actual: &[u8], expected: &[u8]) {
    if actual != expected {
        panic!("reply mismatch\n  actual:   {}\n  expected: {}", show(actual), show(expected));
    }
}

/// Assert `actual` starts with `prefix` and is one `\r\n`-terminated line.
#[track_caller]
pub fn assert_line_prefix(actual: &[u8], prefix: &[u8]) {
    let ok = actual.starts_with(prefix) && actual.ends_with(b"\r\n") && !actual[..actual.len() - 2].contains(&b'\r');
    if !ok {
        panic!("reply mismatch\n  actual: {}\n  expected one line starting with: {}", show(actual), show(prefix));
    }
}

/// RESP encoding of a command (array of bulk strings).
pub fn resp<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    respseal::protocol::encode::command(args).to_vec()
}

/// A bulk string reply.
pub fn bulk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

/// The HELLO reply with the connection id replaced by `:ID`, so a reply
/// through the proxy can be compared with one from Redis directly.
pub fn mask_hello_id(reply: &[u8]) -> Vec<u8> {
    let marker = b"$2\r\nid\r\n:";
    let Some(at) = reply.windows(marker.len()).position(|w| w == marker) else {
        return reply.to_vec();
    };
    let start = at + marker.len();
    let end = start + reply[start..].iter().position(|&b| b == b'\r').unwrap_or(0);
    let mut v = reply[..start].to_vec();
    v.extend_from_slice(b"ID");
    v.extend_from_slice(&reply[end..]);
    v
}

/// The text of a bulk string reply.
pub fn bulk_text(reply: &[u8]) -> String {
    assert!(reply.first() == Some(&b'$'), "expected a bulk string, got {}", show(reply));
    let nl = reply.iter().position(|&b| b == b'\n').expect("bulk header line");
    String::from_utf8_lossy(&reply[nl + 1..reply.len() - 2]).into_owned()
}

/// The number after `"name": ` in a flat JSON object (the load script's
/// result); panics if it is missing.
pub fn json_number(text: &str, name: &str) -> f64 {
    let at = text.find(&format!("\"{name}\": ")).unwrap_or_else(|| panic!("{name} in {text}"));
    text[at + name.len() + 4..].split([',', '}']).next().and_then(|v| v.trim().parse().ok()).expect("a number")
}
