//! Reply plans: what to do with each reply that will come back.
//!
//! A session keeps a FIFO of plans, one per command it has sent (runs of
//! plain commands are merged into one entry with a count), so replies are
//! matched to commands by position. Plans made by the proxy itself (its own
//! replies, a close after QUIT) wait in the same FIFO so that they reach the
//! client in order with the replies from Redis.

use bytes::Bytes;

use crate::commands::table::SubKind;
use crate::protocol::Proto;
use crate::sealing::OpenPlan;

/// What to do with the next reply (or replies).
#[derive(Debug)]
pub enum Plan {
    /// The next `n` replies are forwarded as Redis's bytes.
    Forward(u32),
    /// A reply made by the proxy; written when it reaches the front.
    Local(Bytes),
    /// Close the connection once everything before has been written.
    Close,
    /// `SELECT db`: the first reply is forwarded, and on `+OK` the session
    /// moves to `db`. On a shared link a second reply follows (the `SELECT`
    /// that restores the link's own database) and is dropped.
    Select {
        /// The database asked for.
        db: u32,
        /// Whether a restoring reply follows.
        restore: bool,
        /// Whether the first reply was seen.
        first_done: bool,
    },
    /// `HELLO`: forwarded; if Redis accepted, the session now speaks `proto`.
    Hello {
        /// The protocol asked for, if any.
        proto: Option<Proto>,
    },
    /// `RESET` on a dedicated link: on `+RESET` the session's state resets.
    Reset,
    /// `MONITOR`: on `+OK` the link streams monitor lines.
    Monitor,
    /// A (un)subscribe command: `remaining` confirmations are expected (for
    /// an UNSUBSCRIBE without arguments, unknown until the first arrives).
    Subscribe {
        /// Which subscription family.
        kind: SubKind,
        /// Whether it subscribes or unsubscribes.
        subscribe: bool,
        /// Confirmations still expected.
        remaining: Option<u32>,
    },
    /// Replies the proxy asked for itself; dropped.
    Drop(u32),
    /// SYNC/PSYNC: from its reply on, everything Redis sends is forwarded as
    /// raw bytes (an RDB payload is not a RESP frame).
    Raw,
    /// A reply carrying sealed values: opened, then forwarded.
    Open(OpenPlan),
    /// A command inside MULTI: on `+QUEUED`, its open plan (if any) joins
    /// the transaction's queue, to be applied to its element of EXEC's reply.
    Queued(Option<OpenPlan>),
    /// `SELECT db` inside MULTI: Redis switches the connection's database
    /// when EXEC runs it, and so does respseal if its element of EXEC's
    /// reply is `+OK`.
    QueuedSelect(u32),
    /// `CONFIG GET`: forwarded with respseal's own credentials masked.
    MaskSecrets,
    /// EXEC after a command was refused inside MULTI: respseal sent DISCARD
    /// instead; its reply is replaced by EXECABORT, and the queue cleared.
    ExecAbort,
    /// DISCARD: its reply is forwarded and the transaction's queue cleared.
    Discard,
    /// EXEC: its array is opened element by element with the queued plans
    /// (an array of another shape is an open failure); the queue is cleared.
    Exec,
}

impl Plan {
    /// How many replies from Redis this plan still waits for (None when it
    /// is not known yet).
    pub fn frames(&self) -> Option<u32> {
        match self {
            Plan::Forward(n) | Plan::Drop(n) => Some(*n),
            Plan::Open(_)
            | Plan::Queued(_)
            | Plan::QueuedSelect(_)
            | Plan::MaskSecrets
            | Plan::Exec
            | Plan::ExecAbort
            | Plan::Discard => Some(1),
            Plan::Local(_) | Plan::Close => Some(0),
            Plan::Select { restore, first_done, .. } => Some(1 + u32::from(*restore) - u32::from(*first_done)),
            Plan::Hello { .. } | Plan::Reset | Plan::Monitor | Plan::Raw => Some(1),
            Plan::Subscribe { remaining, .. } => *remaining,
        }
    }
}
