//! The operations proptest generates.

use proptest::prelude::*;

#[derive(Clone, Debug)]
pub(crate) enum RevPick {
    /// The key's current revision (0 when absent).
    Current,
    /// Some revision handed out earlier.
    Stale(usize),
    /// Any number.
    Raw(u64),
}

#[derive(Clone, Debug)]
pub(crate) enum ExpectPick {
    Any,
    Absent,
    Rev(RevPick),
}

#[derive(Clone, Debug)]
pub(crate) enum Step {
    Get(usize, u8),
    Insert(usize, u8, u32),
    InsertIfAbsent(usize, u8, u32),
    Put(usize, u8, u32, ExpectPick),
    ReplaceIf(usize, u8, RevPick, u32),
    Remove(usize, u8, bool),
    RemoveIf(usize, u8, RevPick),
    Refresh(usize, Vec<(u8, u32)>),
    Retain(usize, u32),
    Plan(usize, u32),
    /// map, plan pick, count offset (0 = right), reason given
    Execute(usize, usize, i8, bool),
    Restore(usize, usize, bool),
    RestorePlan(usize, usize),
}

pub(crate) fn rev_pick() -> impl Strategy<Value = RevPick> {
    prop_oneof![
        3 => Just(RevPick::Current),
        2 => any::<usize>().prop_map(RevPick::Stale),
        1 => (0u64..40).prop_map(RevPick::Raw),
    ]
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    let m = 0usize..2;
    let k = 0u8..6;
    let v = 0u32..40;
    prop_oneof![
        3 => (m.clone(), k.clone()).prop_map(|(m, k)| Step::Get(m, k)),
        4 => (m.clone(), k.clone(), v.clone()).prop_map(|(m, k, v)| Step::Insert(m, k, v)),
        2 => (m.clone(), k.clone(), v.clone()).prop_map(|(m, k, v)| Step::InsertIfAbsent(m, k, v)),
        2 => (m.clone(), k.clone(), v.clone(), prop_oneof![
                Just(ExpectPick::Any),
                Just(ExpectPick::Absent),
                rev_pick().prop_map(ExpectPick::Rev),
            ]).prop_map(|(m, k, v, e)| Step::Put(m, k, v, e)),
        3 => (m.clone(), k.clone(), rev_pick(), v.clone()).prop_map(|(m, k, r, v)| Step::ReplaceIf(m, k, r, v)),
        3 => (m.clone(), k.clone(), prop::bool::weighted(0.9)).prop_map(|(m, k, r)| Step::Remove(m, k, r)),
        3 => (m.clone(), k.clone(), rev_pick()).prop_map(|(m, k, r)| Step::RemoveIf(m, k, r)),
        2 => (m.clone(), prop::collection::vec((k.clone(), v.clone()), 0..5)).prop_map(|(m, e)| Step::Refresh(m, e)),
        1 => (m.clone(), v.clone()).prop_map(|(m, t)| Step::Retain(m, t)),
        2 => (m.clone(), v.clone()).prop_map(|(m, t)| Step::Plan(m, t)),
        3 => (m.clone(), any::<usize>(), prop_oneof![4 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8), 1 => Just(5i8)], prop::bool::weighted(0.9))
                .prop_map(|(m, p, d, r)| Step::Execute(m, p, d, r)),
        3 => (m.clone(), any::<usize>(), prop::bool::weighted(0.9)).prop_map(|(m, i, r)| Step::Restore(m, i, r)),
        2 => (m, any::<usize>()).prop_map(|(m, p)| Step::RestorePlan(m, p)),
    ]
}
