//! What respseal knows about Redis commands.
//!
//! [`table`] is the command table of docs/design.md §2: data, one row per command,
//! saying where keys and values are, how replies are shaped, and what the
//! command does to connection state. [`classify`] turns a parsed request into
//! the one decision the session needs: forward it on the shared link, pin the
//! session first, or handle it in the proxy.

pub mod own;
pub mod table;

use std::ops::Range;

pub use table::{Class, Command, Data, DataType, Keys, ReplyShape, Values, lookup};

/// A request's arguments: ranges into the buffer that holds the request, so
/// looking at arguments never copies or allocates.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// Arguments given as ranges of `buf`.
    pub fn new(buf: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Args { buf, ranges }
    }

    /// Number of arguments, the command name included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True for a request without arguments (never produced by the parser).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i`.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.ranges.get(i).map(|r| &self.buf[r.clone()])
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges.iter().map(move |r| &buf[r.clone()])
    }

    /// Whether any argument after the command name equals `word`, ignoring
    /// ASCII case (XREAD … BLOCK, SCRIPT KILL).
    pub fn has_word(&self, word: &str) -> bool {
        self.iter().skip(1).any(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }

    /// Whether argument `i` equals `word`, ignoring ASCII case.
    pub fn is(&self, i: usize, word: &str) -> bool {
        self.get(i).is_some_and(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    }
}

/// What a session must do with one request, as far as links are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Forward on whatever link the session has.
    Forward,
    /// The command creates or observes per-connection server state: the
    /// session must be on a dedicated link before it is sent.
    Pin,
    /// Handled (at least partly) by the proxy itself.
    Local(LocalCmd),
    /// Runs code in Redis: sent where no other client's command waits
    /// behind it (a shared-link session borrows a connection, after its
    /// in-flight replies, and gives it back once everything sent on it is
    /// answered).
    Code,
    /// Sent on a one-off connection to Redis (no SELECT, no HELLO), after
    /// the session's in-flight replies; the reply is relayed in order.
    Control,
    /// RENAME/RENAMENX/COPY of a sealed name: carried out by respseal on a
    /// connection of its own, after the session's in-flight replies.
    Move,
    /// The client has not authenticated: refused without reaching Redis.
    NoAuth,
    /// Refused by the proxy with an error (e.g. replication commands, which
    /// would take over a backend connection).
    Refuse(&'static str),
    /// Forwarded; the reply's credentials are masked (`CONFIG GET`).
    Mask,
}

/// Commands the proxy answers or rewrites itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCmd {
    /// `AUTH`: checked against the proxy's own users.
    Auth,
    /// `HELLO`: AUTH part handled here, protocol part forwarded.
    Hello,
    /// `SELECT`: validated by Redis, moves the session to another group.
    Select,
    /// `QUIT`: answered `+OK`, then the connection is closed.
    Quit,
    /// `RESET`: the session goes back to its initial state.
    Reset,
    /// `CLIENT SETINFO`: recorded and answered `+OK`.
    ClientSetinfo,
}

impl LocalCmd {
    /// The command's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            LocalCmd::Auth => "AUTH",
            LocalCmd::Hello => "HELLO",
            LocalCmd::Select => "SELECT",
            LocalCmd::Quit => "QUIT",
            LocalCmd::Reset => "RESET",
            LocalCmd::ClientSetinfo => "CLIENT SETINFO",
        }
    }
}

/// The CLIENT subcommands respseal treats apart from the others (which pin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSub {
    /// `CLIENT SETINFO`: answered by respseal.
    SetInfo,
    /// `CLIENT REPLY`: Redis answers `OFF` and `SKIP` (and the command
    /// after `SKIP`) with nothing.
    Reply,
    /// Anything else.
    Other,
}

/// Which CLIENT subcommand a CLIENT request is.
pub fn client_sub(args: &Args<'_>) -> ClientSub {
    if args.is(1, "SETINFO") {
        ClientSub::SetInfo
    } else if args.is(1, "REPLY") {
        ClientSub::Reply
    } else {
        ClientSub::Other
    }
}

/// HELLO's option words respseal reads itself: it answers `AUTH` (its own
/// users) and pins for `SETNAME`.
pub mod hello {
    /// `HELLO protover AUTH user password`.
    pub const AUTH: &str = "AUTH";
    /// `HELLO protover SETNAME name`.
    pub const SETNAME: &str = "SETNAME";
}

/// Whether a client that has not authenticated may send this command
/// (AUTH, HELLO, QUIT; everything else gets `NOAUTH`).
pub fn allowed_before_auth(cmd: Option<&Command>) -> bool {
    matches!(cmd.map(|c| c.class), Some(Class::Connection(LocalCmd::Auth | LocalCmd::Hello | LocalCmd::Quit)))
}

/// Decide the route of a request from its arguments (argument 0 is the
/// command name).
pub fn classify(args: &Args<'_>) -> Route {
    classify_command(args.get(0).and_then(lookup), args)
}

/// [`classify`] with the command's row already looked up. Fails closed: a
/// command the table does not know pins the session (it may change the
/// connection in ways respseal cannot see, so it never goes on a shared
/// link).
pub fn classify_command(cmd: Option<&'static Command>, args: &Args<'_>) -> Route {
    let Some(cmd) = cmd else {
        return Route::Pin;
    };
    match table::resolve(cmd.class, args.get(1)) {
        // HELLO … SETNAME pins too, but the proxy must take AUTH out first:
        // the session does both.
        Class::Connection(local) => Route::Local(local),
        Class::Client => match client_sub(args) {
            ClientSub::SetInfo => Route::Local(LocalCmd::ClientSetinfo),
            ClientSub::Reply | ClientSub::Other => Route::Pin,
        },
        Class::Stateful(_) => Route::Pin,
        Class::PinIf(word) => {
            if args.has_word(word) {
                Route::Pin
            } else {
                Route::Forward
            }
        }
        Class::Control => Route::Control,
        Class::Code => Route::Code,
        Class::Secrets => Route::Mask,
        Class::Refused(why) => Route::Refuse(why),
        Class::Plain | Class::Ends(_) => Route::Forward,
        Class::Sub(_) => unreachable!("resolve never returns Sub"),
    }
}

/// Build an [`Args`] over owned strings (tests and the proxy's own commands).
pub fn owned_args(words: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for w in words {
        ranges.push(buf.len()..buf.len() + w.len());
        buf.extend_from_slice(w.as_bytes());
    }
    (buf, ranges)
}

/// Indexes of the key arguments of a command (no allocation: this runs for
/// every request when rules are configured).
pub fn key_indexes(spec: Keys, args: &Args<'_>) -> std::iter::StepBy<std::ops::Range<usize>> {
    let n = args.len();
    let (start, end, step) = match spec {
        Keys::None => (0, 0, 1),
        Keys::Range { first, last, step } => {
            let first = first as usize;
            let last = if last < 0 { n as i64 + i64::from(last) } else { i64::from(last) };
            if last < first as i64 {
                (0, 0, 1)
            } else {
                let last = (last as usize).min(n.saturating_sub(1));
                (first, last + 1, step.max(1) as usize)
            }
        }
        Keys::Any => (1, n, 1),
        Keys::NumKeys { at } => {
            let at = at as usize;
            let count = args.get(at).and_then(crate::protocol::parse_int).unwrap_or(0).max(0) as usize;
            (at + 1, (at + 1).saturating_add(count).min(n).max(at + 1), 1)
        }
    };
    (start..end).step_by(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(words: &[&str]) -> Route {
        let (buf, ranges) = owned_args(words);
        super::classify(&Args::new(&buf, &ranges))
    }

    #[test]
    fn routes() {
        assert_eq!(classify(&["get", "k"]), Route::Forward);
        assert_eq!(classify(&["NOSUCHCOMMAND", "k"]), Route::Pin);
        assert_eq!(classify(&["script", "debug", "yes"]), Route::Pin);
        assert_eq!(classify(&["SCRIPT", "EXISTS", "debug"]), Route::Forward);
        assert_eq!(classify(&["debug", "sleep", "0"]), Route::Pin);
        assert_eq!(classify(&["multi"]), Route::Pin);
        assert_eq!(classify(&["WATCH", "k"]), Route::Pin);
        assert_eq!(classify(&["blpop", "k", "0"]), Route::Pin);
        assert_eq!(classify(&["subscribe", "c"]), Route::Pin);
        assert_eq!(classify(&["monitor"]), Route::Pin);
        assert_eq!(classify(&["client", "setinfo", "lib-name", "x"]), Route::Local(LocalCmd::ClientSetinfo));
        assert_eq!(classify(&["CLIENT", "ID"]), Route::Pin);
        assert_eq!(classify(&["client", "setname", "x"]), Route::Pin);
        assert_eq!(classify(&["hello", "3"]), Route::Local(LocalCmd::Hello));
        assert_eq!(classify(&["hello", "3", "setname", "x"]), Route::Local(LocalCmd::Hello));
        assert_eq!(classify(&["xread", "count", "1", "streams", "s", "0"]), Route::Forward);
        assert_eq!(classify(&["xread", "block", "0", "streams", "s", "$"]), Route::Pin);
        assert_eq!(classify(&["select", "1"]), Route::Local(LocalCmd::Select));
        assert_eq!(classify(&["quit"]), Route::Local(LocalCmd::Quit));
        assert_eq!(classify(&["psync", "?", "-1"]), Route::Pin);
        assert_eq!(classify(&["SYNC"]), Route::Pin);
        assert_eq!(classify(&["script", "kill"]), Route::Control);
        assert_eq!(classify(&["FUNCTION", "KILL"]), Route::Control);
        assert_eq!(classify(&["config", "get", "*"]), Route::Mask);
        assert_eq!(classify(&["CONFIG", "SET", "maxmemory", "0"]), Route::Forward);
        assert!(matches!(classify(&["acl", "list"]), Route::Refuse(_)));
        assert_eq!(classify(&["ACL", "CAT"]), Route::Forward);
        assert_eq!(classify(&["FUNCTION", "LIST", "LIBRARYNAME", "kill"]), Route::Forward);
        assert_eq!(classify(&["script", "load", "return 1"]), Route::Forward);
        for code in
            [&["eval", "return 1", "0"][..], &["EVALSHA_RO", "x", "0"], &["fcall", "f", "0"], &["FCALL_RO", "f", "0"]]
        {
            assert_eq!(classify(code), Route::Code, "{code:?}");
        }
        assert_eq!(classify(&["function", "load", "#!lua name=x"]), Route::Code);
        assert_eq!(classify(&["FUNCTION", "RESTORE", "payload"]), Route::Code);
        assert_eq!(classify(&["FUNCTION", "LIST"]), Route::Forward);
    }

    fn keys(words: &[&str]) -> Vec<usize> {
        let (buf, ranges) = owned_args(words);
        let cmd = lookup(words[0].as_bytes()).expect("known command");
        key_indexes(cmd.keys, &Args::new(&buf, &ranges)).collect()
    }

    #[test]
    fn key_positions_follow_the_table() {
        assert_eq!(keys(&["GET", "k"]), vec![1]);
        assert_eq!(keys(&["MGET", "a", "b", "c"]), vec![1, 2, 3]);
        assert_eq!(keys(&["MSET", "a", "1", "b", "2"]), vec![1, 3]);
        assert_eq!(keys(&["LCS", "a", "b"]), vec![1, 2]);
        assert_eq!(keys(&["EVAL", "return 1", "2", "k1", "k2", "arg"]), vec![3, 4]);
        assert_eq!(keys(&["EVAL", "return 1", "9", "k1"]), vec![3]);
        assert_eq!(keys(&["EVAL", "return 1", "x"]), Vec::<usize>::new());
        assert_eq!(keys(&["MGET"]), Vec::<usize>::new());
        assert_eq!(keys(&["PING"]), Vec::<usize>::new());
    }
}
