//! Properties of the user sketches the operator merges from predictor pods (proptest): merging
//! counts the union within the sketch's error, in either order and idempotently; a sketch's wire
//! form stays within a fixed size however many users it has seen, so one pod's answer has a
//! bound. Forged wire forms are the fuzz target `fuzz/fuzz_targets/sketch.rs`'s part, which
//! edits real sketches field by field with coverage guidance (docs/fuzzing.md), and the unit
//! tests' in `src/stats.rs`.

use std::collections::HashSet;

use proptest::prelude::*;
use recommender_contract::stats::{USER_COUNT_RELATIVE_ERROR, UserSketch};

/// The largest wire form of a sketch: the sparse list is converted to registers once it passes
/// the registers' 12 KiB, whose JSON (a u8 list or 3277 u32s) stays below this.
const MAX_WIRE_BYTES: usize = 64 * 1024;

fn sketch<'a>(users: impl IntoIterator<Item = &'a String>) -> UserSketch {
    let mut s = UserSketch::default();
    for u in users {
        s.insert(u);
    }
    s
}

/// Users `prefix0..prefixN` for a random prefix and count: overlapping sets come from sharing
/// a prefix, and counts reach past the switch from the sparse list to registers.
fn users() -> impl Strategy<Value = Vec<String>> {
    ("[a-c]{1,2}", 0usize..6000)
        .prop_map(|(prefix, n)| (0..n).map(|i| format!("{prefix}-{i}")).collect())
}

/// Within five standard errors of the true count (dense registers), or two users (the sparse
/// list, near exact): a failure here is the sketch miscounting, not chance.
fn close(estimate: u64, truth: usize) -> bool {
    let allowed = (5.0 * USER_COUNT_RELATIVE_ERROR * truth as f64).max(2.0);
    (estimate as f64 - truth as f64).abs() <= allowed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn merging_counts_the_union(a in users(), b in users()) {
        let union: HashSet<&String> = a.iter().chain(&b).collect();
        let (sa, sb) = (sketch(&a), sketch(&b));
        let (mut ab, mut ba) = (sa.clone(), sb.clone());
        ab.merge(&sb).unwrap();
        ba.merge(&sa).unwrap();
        let n = ab.count();
        prop_assert_eq!(n, ba.count(), "merge order changed the count");
        prop_assert!(close(n, union.len()), "{} users counted as {}", union.len(), n);
        let mut again = ab.clone();
        again.merge(&sa).unwrap();
        prop_assert_eq!(again.count(), n, "merging a part again changed the count");
    }

    #[test]
    fn the_wire_form_has_a_bound(a in users()) {
        let s = sketch(&a);
        let wire = serde_json::to_vec(&s).unwrap();
        prop_assert!(wire.len() <= MAX_WIRE_BYTES, "{} users: {} bytes", a.len(), wire.len());
        let mut back: UserSketch = serde_json::from_slice(&wire).unwrap();
        prop_assert_eq!(back.count(), s.clone().count());
    }
}

/// The bound holds at the sketch's largest: a sparse list just before it turns into registers
/// (the property above draws sizes at random; this walks through the switch).
#[test]
fn the_wire_form_peaks_below_the_bound() {
    let mut s = UserSketch::default();
    let mut largest = (0, 0);
    for i in 0..20_000 {
        s.insert(&format!("user-{i}"));
        if i % 25 == 0 {
            let bytes = serde_json::to_vec(&s).unwrap().len();
            largest = largest.max((bytes, i));
        }
    }
    let wire = serde_json::to_value(&s).unwrap();
    assert!(wire["registers"].is_object(), "20000 users are dense");
    assert!(
        largest.0 <= MAX_WIRE_BYTES,
        "{} bytes at {} users",
        largest.0,
        largest.1
    );
    assert!(
        largest.0 > MAX_WIRE_BYTES / 2,
        "the peak was not reached: {largest:?}"
    );
}
