//! What each operation in the kernel is for: the 64 bits of `user_data` it carries.
//!
//! The kernel gives every completion back with the `user_data` of the submission it
//! completes, and nothing else that says which request it was. So each submission carries
//! a small self-describing label, packed into those 64 bits: the kind of operation in the
//! top byte, then (for a connection's operations) a generation in 24 bits and the
//! connection's slot in the low 32 bits.
//!
//! ```text
//!   63      56 55                  32 31                            0
//!   ┌─────────┬──────────────────────┬──────────────────────────────┐
//!   │  kind   │ generation (24 bits) │ slot: connection or sleeper  │
//!   └─────────┴──────────────────────┴──────────────────────────────┘
//! ```
//!
//! The generation tells a connection from a later one that reuses its slot, so that a
//! timeout meant for a closed connection is recognised as stale. (A receive or a send never
//! outlives its connection: a slot is freed only once the kernel has given both back.)

/// One operation's label. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The multishot accept on the ring's listening socket.
    Accept,
    /// A pause before accepting again, after accepting failed (out of descriptors).
    AcceptRetry,
    /// The read of the eventfd that the helper threads (and shutdown) write to.
    Wake,
    /// The end of the shutdown grace period.
    Grace,
    /// A connection's receive (into a provided buffer).
    Recv { key: u32, generation: u32 },
    /// A connection's send.
    Send { key: u32, generation: u32 },
    /// A connection's deadline timeout (read, keep-alive, linger, a stalled reader).
    Deadline { key: u32, generation: u32 },
    /// A sleeping request's timeout (`/sleep`, `/echo/{ms}`).
    Sleep { sleeper: u32 },
    /// A cancellation or a timeout update: its own completion says nothing the ring needs.
    Cancel,
}

// The kinds, in the label's top byte. None is 0, so that a label of 0, which this server
// never sends, decodes to nothing.
const ACCEPT: u64 = 1;
const ACCEPT_RETRY: u64 = 2;
const WAKE: u64 = 3;
const GRACE: u64 = 4;
const RECV: u64 = 5;
const SEND: u64 = 6;
const DEADLINE: u64 = 7;
const SLEEP: u64 = 8;
const CANCEL: u64 = 9;

/// The generation bits kept.
const GENERATION: u64 = (1 << 24) - 1;

impl Op {
    /// Connection `key`'s receive, send or deadline, for its generation `generation`.
    pub fn recv(key: usize, generation: u32) -> Op {
        Op::Recv {
            key: key as u32,
            generation,
        }
    }

    /// Connection `key`'s send.
    pub fn send(key: usize, generation: u32) -> Op {
        Op::Send {
            key: key as u32,
            generation,
        }
    }

    /// Connection `key`'s deadline timeout.
    pub fn deadline(key: usize, generation: u32) -> Op {
        Op::Deadline {
            key: key as u32,
            generation,
        }
    }

    /// The 64 bits the submission carries.
    pub fn encode(self) -> u64 {
        // The kind in the top byte, the generation's 24 bits below it, the slot in the low
        // 32 (see the module documentation's picture).
        let slot = |kind: u64, generation: u32, key: u32| {
            kind << 56 | (u64::from(generation) & GENERATION) << 32 | u64::from(key)
        };
        match self {
            Op::Accept => ACCEPT << 56,
            Op::AcceptRetry => ACCEPT_RETRY << 56,
            Op::Wake => WAKE << 56,
            Op::Grace => GRACE << 56,
            Op::Recv { key, generation } => slot(RECV, generation, key),
            Op::Send { key, generation } => slot(SEND, generation, key),
            Op::Deadline { key, generation } => slot(DEADLINE, generation, key),
            Op::Sleep { sleeper } => slot(SLEEP, 0, sleeper),
            Op::Cancel => CANCEL << 56,
        }
    }

    /// The label of a completion's `user_data`; `None` for anything this server never sent.
    pub fn decode(user_data: u64) -> Option<Op> {
        // The slot and the generation are read whatever the kind; only the kinds that
        // carry them use them.
        let key = (user_data & u64::from(u32::MAX)) as u32;
        let generation = ((user_data >> 32) & GENERATION) as u32;
        Some(match user_data >> 56 {
            ACCEPT => Op::Accept,
            ACCEPT_RETRY => Op::AcceptRetry,
            WAKE => Op::Wake,
            GRACE => Op::Grace,
            RECV => Op::Recv { key, generation },
            SEND => Op::Send { key, generation },
            DEADLINE => Op::Deadline { key, generation },
            SLEEP => Op::Sleep { sleeper: key },
            CANCEL => Op::Cancel,
            _ => return None,
        })
    }
}

/// A connection's generation as its labels carry it (24 bits, wrapping).
pub fn generation(generation: u64) -> u32 {
    (generation & GENERATION) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_survives_the_round_trip() {
        let labels = [
            Op::Accept,
            Op::AcceptRetry,
            Op::Wake,
            Op::Grace,
            Op::Recv {
                key: u32::MAX,
                generation: generation(u64::MAX),
            },
            Op::Send {
                key: 7,
                generation: 1,
            },
            Op::Deadline {
                key: 0,
                generation: 12_345,
            },
            Op::Sleep { sleeper: 42 },
            Op::Cancel,
        ];
        for op in labels {
            assert_eq!(Op::decode(op.encode()), Some(op));
        }
        // Two generations of one slot are told apart.
        let first = Op::Recv {
            key: 3,
            generation: 1,
        };
        let second = Op::Recv {
            key: 3,
            generation: 2,
        };
        assert_ne!(first.encode(), second.encode());
        assert_eq!(Op::decode(0), None);
    }
}
