//! A client's transaction and WATCH, as respseal tracks them: one type, a
//! method per transition, so that the states that cannot be (a held MULTI
//! outside a transaction, an abort flag with no transaction) cannot be
//! written either.

/// Where the client's MULTI is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Multi {
    /// No transaction.
    #[default]
    None,
    /// Behind Redis Cluster: MULTI was answered by respseal and is held
    /// until the transaction's first command names its node (it is sent
    /// there, before that command).
    Held,
    /// MULTI was sent on the session's dedicated link.
    Open,
}

/// The transaction and WATCH state of one client.
#[derive(Debug, Default)]
pub(super) struct Transaction {
    multi: Multi,
    /// A command was refused while queueing: EXEC is answered EXECABORT
    /// (and the transaction discarded in Redis), as Redis does.
    aborted: bool,
    /// WATCH is in force on the dedicated link.
    watching: bool,
}

impl Transaction {
    /// Inside MULTI (sent or held).
    pub(super) fn in_multi(&self) -> bool {
        self.multi != Multi::None
    }

    /// MULTI answered but not sent yet.
    pub(super) fn held(&self) -> bool {
        self.multi == Multi::Held
    }

    /// WATCH is in force.
    pub(super) fn watching(&self) -> bool {
        self.watching
    }

    /// Whether the transaction was refused a command.
    pub(super) fn aborted(&self) -> bool {
        self.aborted
    }

    /// The dedicated link holds state that lasts until EXEC, DISCARD or
    /// UNWATCH: a MULTI sent, or WATCH (so it cannot change node).
    pub(super) fn ties_connection(&self) -> bool {
        self.multi == Multi::Open || self.watching
    }

    /// MULTI was sent on the dedicated link.
    pub(super) fn begin(&mut self) {
        self.multi = Multi::Open;
    }

    /// MULTI was answered here and is held for the first command's node.
    pub(super) fn hold(&mut self) {
        self.multi = Multi::Held;
    }

    /// The held MULTI is being sent now.
    pub(super) fn release(&mut self) {
        debug_assert_eq!(self.multi, Multi::Held, "only a held MULTI is released");
        self.multi = Multi::Open;
    }

    /// WATCH was sent.
    pub(super) fn watch(&mut self) {
        self.watching = true;
    }

    /// A request was refused: inside MULTI, a queue-time error.
    pub(super) fn refused(&mut self) {
        if self.in_multi() {
            self.aborted = true;
        }
    }

    /// EXEC or DISCARD (an aborted EXEC is sent as DISCARD), or RESET: the
    /// transaction and the watches end. Whether a command had been refused
    /// in it.
    pub(super) fn end(&mut self) -> bool {
        std::mem::take(self).aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        let mut t = Transaction::default();
        t.refused();
        assert!(!t.aborted(), "outside MULTI a refusal aborts nothing");
        t.watch();
        assert!(t.ties_connection() && !t.in_multi());
        t.hold();
        assert!(t.in_multi() && t.held());
        t.refused();
        t.release();
        assert!(t.in_multi() && !t.held() && t.aborted());
        assert!(t.end());
        assert!(!t.in_multi() && !t.watching() && !t.aborted() && !t.ties_connection());
        t.begin();
        assert!(t.ties_connection());
        assert!(!t.end());
    }
}
