//! A linearizability checker for short histories, after Wing & Gong with
//! Lowe's memoisation: a depth-first search for a sequential order of the
//! operations that
//!
//! 1. respects real time (an operation that returned before another was
//!    invoked comes first), and
//! 2. is accepted by a sequential specification, response by response.
//!
//! Visited (set of linearized operations, model state) pairs are memoised, so
//! the search is exponential only in the number of operations that overlap,
//! not in the history's length. Histories hold at most 128 operations.
//!
//! Times are tickets of one logical clock (an `AtomicU64` incremented with
//! SeqCst just before the call and just after the return). A ticket order
//! `a.ret < b.call` means `a` returned before `b` began: the two SeqCst RMWs
//! on one atomic are ordered, and the second reads from the first's release
//! sequence, so `a` happens-before `b`.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification: which responses an operation may give in a
/// state, and the state after it.
pub trait Spec {
    /// The state of the sequential object.
    type State: Clone + Eq + Hash + Debug;
    /// One operation with its recorded arguments *and* response.
    type Op: Debug;

    /// The state after `op`, if `op`'s recorded response is what the
    /// sequential object would answer in `state`; `None` if it is not.
    fn step(state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

/// One completed operation of a history: its invocation and response tickets.
#[derive(Clone, Debug)]
pub struct Timed<O> {
    /// Ticket taken just before the call.
    pub call: u64,
    /// Ticket taken just after the return.
    pub ret: u64,
    /// Which thread ran it (for messages only).
    pub thread: usize,
    /// The operation, with its response.
    pub op: O,
}

/// Searches a linearization of `history` from `init`.
///
/// Returns the order found (indices into `history`) or, if none exists, a
/// message that lists the history in call order.
pub fn check<S: Spec>(init: S::State, history: &[Timed<S::Op>]) -> Result<Vec<usize>, String> {
    assert!(
        history.len() <= 128,
        "histories are limited to 128 operations"
    );
    let all = if history.len() == 128 {
        u128::MAX
    } else {
        (1u128 << history.len()) - 1
    };
    let mut search = Search::<S> {
        history,
        all,
        seen: HashSet::new(),
        order: Vec::with_capacity(history.len()),
    };
    if search.run(0, &init) {
        search.order.reverse();
        Ok(search.order)
    } else {
        Err(describe(history))
    }
}

struct Search<'h, S: Spec> {
    history: &'h [Timed<S::Op>],
    all: u128,
    seen: HashSet<(u128, S::State)>,
    order: Vec<usize>,
}

impl<S: Spec> Search<'_, S> {
    fn run(&mut self, done: u128, state: &S::State) -> bool {
        if done == self.all {
            return true;
        }
        if !self.seen.insert((done, state.clone())) {
            return false;
        }
        let pending = || (0..self.history.len()).filter(move |i| done & (1u128 << i) == 0);
        // An operation may go next only if no pending operation returned
        // before it was invoked.
        let first_return = pending()
            .map(|i| self.history[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        let candidates: Vec<usize> = pending()
            .filter(|&i| self.history[i].call < first_return)
            .collect();
        for i in candidates {
            if let Some(next) = S::step(state, &self.history[i].op)
                && self.run(done | (1u128 << i), &next)
            {
                self.order.push(i);
                return true;
            }
        }
        false
    }
}

/// The history in call order, one operation a line.
pub fn describe<O: Debug>(history: &[Timed<O>]) -> String {
    let mut ops: Vec<&Timed<O>> = history.iter().collect();
    ops.sort_by_key(|t| t.call);
    let mut text = String::from("history is not linearizable (call..ret thread op):\n");
    for t in ops {
        text.push_str(&format!(
            "  {:>5}..{:<5} t{} {:?}\n",
            t.call, t.ret, t.thread, t.op
        ));
    }
    text
}

/// A register with compare-and-set, to test the checker itself.
pub mod selftest {
    use super::Spec;

    /// Register operations with responses.
    #[derive(Debug)]
    pub enum RegOp {
        /// A read that returned this value.
        Read(u32),
        /// A write.
        Write(u32),
        /// A compare-and-set from `.0` to `.1` that returned `.2`.
        Cas(u32, u32, bool),
    }

    /// A register starting at 0.
    pub struct Register;

    impl Spec for Register {
        type State = u32;
        type Op = RegOp;

        fn step(state: &u32, op: &RegOp) -> Option<u32> {
            match *op {
                RegOp::Read(v) => (v == *state).then_some(*state),
                RegOp::Write(v) => Some(v),
                RegOp::Cas(from, to, ok) => match (from == *state, ok) {
                    (true, true) => Some(to),
                    (false, false) => Some(*state),
                    _ => None,
                },
            }
        }
    }
}
