//! What the operator does with the `/v1/stats` answers of predictor pods (`stats`): deserialise
//! them, merge the user sketches, add and subtract the counters and latency histograms, take
//! quantiles, and during a rollout add the replicas' per-arm and paired sums and run the rollout's
//! tests on them (`recommender_rollout`). A pod's answer is untrusted input (anything that matches the labels can answer), so
//! a forged one must be refused or merged, never panic.
//!
//! Input: one mode byte, then
//! - even mode: the JSON of a list of `PredictorStats`, as read from pods;
//! - odd mode: `[size of sketch a][size of sketch b]` (one of `SIZES` each) and edits of 5 bytes
//!   `[field][value: u32 LE]`: sketch `a` is built from real users, its wire form edited field by
//!   field (precision, counts, temporary set, sparse list, registers), then read and merged with
//!   `b` both ways. Real sketches with forged internals reach further than mutated JSON text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use recommender_contract::rollout::Stage;
use recommender_contract::stats::{
    ArmStats, Bucket, FeedbackSums, LatencyHistogram, PairedSums, PredictorStats, RolloutStats,
    SuggestionCounts, UserSketch, UserSketches,
};
use recommender_fuzz::write_seeds_if_asked;
use recommender_rollout::{
    PairedTest,
    canary::{Guardrail, Guardrails},
};
use serde_json::{Value, json};

fuzz_target!(init: write_seeds_if_asked(seeds), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(samples) = serde_json::from_slice::<Vec<PredictorStats>>(rest) {
            aggregate(&samples);
        }
        return;
    }
    let [a, b, edits @ ..] = rest else {
        return;
    };
    let (a, b) = (&sketches()[*a as usize % SIZES.len()], &sketches()[*b as usize % SIZES.len()]);
    let mut wire = a.1.clone();
    for edit in edits.chunks_exact(5) {
        let value = u32::from_le_bytes(edit[1..].try_into().expect("4 bytes"));
        apply(&mut wire, edit[0], value);
    }
    let Ok(mut a) = serde_json::from_value::<UserSketch>(wire) else {
        return;
    };
    let b = &b.0;
    let (mut ab, mut ba) = (a.clone(), b.clone());
    if ab.merge(b).is_ok() {
        ba.merge(&a).expect("merging is symmetric in what it accepts");
        let (ab, ba) = (ab.count(), ba.count());
        assert_eq!(ab, ba, "merge is commutative");
    }
    a.insert("one more");
    let _ = a.count();
});

/// Users in the sketches edits start from: empty, exact, either side of the temporary set's
/// merge into the sparse list (131), a long sparse list, and dense.
const SIZES: [usize; 8] = [0, 1, 3, 30, 131, 132, 2000, 7000];

/// A sketch of each size and its wire form, built once: inserting thousands of users per input
/// would make this target a hundred times slower.
fn sketches() -> &'static [(UserSketch, Value)] {
    static SKETCHES: OnceLock<Vec<(UserSketch, Value)>> = OnceLock::new();
    SKETCHES.get_or_init(|| {
        SIZES
            .iter()
            .map(|&n| {
                let s = sketch("u", n);
                let wire = serde_json::to_value(&s).expect("serialises");
                (s, wire)
            })
            .collect()
    })
}

/// A sketch of `n` distinct users named after `prefix`.
fn sketch(prefix: &str, n: usize) -> UserSketch {
    let mut s = UserSketch::default();
    for i in 0..n {
        s.insert(&format!("{prefix}{i}"));
    }
    s
}

/// Sets one field of a sketch's wire form to `value` (`field` picks which, modulo the count).
fn apply(wire: &mut Value, field: u8, value: u32) {
    let v = json!(value);
    let push = |array: &mut Value, v: Value| {
        if let Some(a) = array.as_array_mut() {
            a.push(v);
        }
    };
    let set_at = |array: &mut Value, v: Value| {
        if let Some(a) = array.as_array_mut()
            && !a.is_empty()
        {
            let at = value as usize % a.len();
            a[at] = v;
        }
    };
    match field % 14 {
        0 => wire["precision"] = json!(value as u8),
        1..=3 => wire["counts"][(field % 14 - 1) as usize] = v,
        4 => push(&mut wire["tmpset"], v),
        5 => wire["sparse"]["count"] = v,
        6 => wire["sparse"]["last"] = v,
        7 => push(&mut wire["sparse"]["buf"], json!(value as u8)),
        8 => set_at(&mut wire["sparse"]["buf"], json!(value >> 24)),
        9 => {
            wire["registers"] = if wire["registers"].is_null() {
                json!({"buf": vec![0u32; 3277], "count": 16384, "zeros": 16384})
            } else {
                Value::Null
            }
        }
        10 => set_at(&mut wire["registers"]["buf"], json!(value.rotate_left(8))),
        11 => wire["registers"]["count"] = v,
        12 => wire["registers"]["zeros"] = v,
        _ => {
            if let Some(a) = wire["registers"]["buf"].as_array_mut() {
                a.truncate(value as usize % (a.len() + 1));
            }
        }
    }
}

/// What the operator's collector does with one round of answers (`online::aggregate`), and one
/// reading of the same pods after another.
fn aggregate(samples: &[PredictorStats]) {
    let mut feedback = FeedbackSums::default();
    let mut suggestions = SuggestionCounts::default();
    let mut requests = LatencyHistogram::default();
    let (mut active, mut engaged) = (UserSketch::default(), UserSketch::default());
    for s in samples {
        feedback.add(&s.feedback);
        suggestions.add(&s.suggestions);
        requests.add(&s.requests);
        let _ = active.merge(&s.users.active);
        let _ = engaged.merge(&s.users.engaged);
    }
    for pair in samples.windows(2) {
        if let Some(delta) = pair[1].requests.since(&pair[0].requests) {
            let _ = delta.quantile(0.5);
        }
    }
    for q in [0.0, 0.5, 0.99, 1.0] {
        let _ = requests.quantile(q);
    }
    let _ = (active.count(), engaged.count());
    rollout(samples);
}

/// The replicas' rollout figures added up, as the operator's rollout will, and judged.
fn rollout(samples: &[PredictorStats]) {
    let mut total: Option<RolloutStats> = None;
    for r in samples.iter().filter_map(|s| s.rollout.as_ref()) {
        match &mut total {
            Some(t) if t.same_rollout(r) => t.add(r),
            Some(_) => {}
            None => total = Some(r.clone()),
        }
    }
    let Some(total) = total else {
        return;
    };
    let shadow = PairedTest::new(0.1, 0.05, 0.05, 2).expect("valid settings");
    let _ = shadow.decide(&total.paired);
    let guard = Guardrail {
        margin: 0.05,
        alpha: 0.01,
    };
    let canary = Guardrails {
        accuracy: guard,
        acceptance: guard,
        latency: guard,
        min_feedback: 1,
        min_rated_suggestions: 1,
        min_requests: 1,
    };
    let _ = canary.decide(&total.paired, &total.stable, &total.candidate);
}

fn stats(users: usize, offset: u64) -> PredictorStats {
    let histogram = |n: u64| LatencyHistogram {
        count: 3 * n + 1,
        sum_seconds: 0.004 * n as f64,
        buckets: [0.001, 0.005, 0.01]
            .iter()
            .zip(1..)
            .map(|(&le, k)| Bucket { le, count: k * n })
            .collect(),
    };
    PredictorStats {
        model_version: Some("v1".into()),
        requests: histogram(10 + offset),
        feedback: FeedbackSums {
            model_version: Some("v1".into()),
            n: 12 + offset,
            sum_squared_error: 9.5,
            sum_absolute_error: 7.25,
            within_one: 10,
            sum_predicted: 40.0,
            sum_actual: 41.5,
        },
        suggestions: SuggestionCounts {
            shown: 100,
            rated: 10,
            accepted: 4,
        },
        users: UserSketches {
            window_seconds: 86400,
            active: sketch("u", users),
            engaged: sketch("u", users / 2),
        },
        rollout: (offset > 0).then(|| {
            let mut paired = PairedSums::default();
            for k in 0..offset {
                paired.record(0.5, 0.25 * k as f64);
            }
            let arm = ArmStats {
                requests: histogram(20 + offset),
                feedback: FeedbackSums {
                    n: 30,
                    ..Default::default()
                },
                suggestions: SuggestionCounts {
                    shown: 50,
                    rated: 20,
                    accepted: 8,
                },
            };
            RolloutStats {
                rollout_id: "r1".into(),
                stage: Stage::Canary,
                candidate_share: 0.25,
                stable_version: Some("v1".into()),
                candidate_version: Some("v2".into()),
                stable: arm.clone(),
                candidate: arm,
                paired,
            }
        }),
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let list =
        |s: &[PredictorStats]| [&[0u8][..], &serde_json::to_vec(s).expect("serialises")].concat();
    let edits = |a: u8, b: u8, edits: &[(u8, u32)]| {
        let mut out = vec![1u8, a, b];
        for (field, value) in edits {
            out.push(*field);
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    };
    vec![
        list(&[stats(3, 0), stats(5, 7)]),
        list(&[stats(3, 7), stats(5, 9)]),
        list(&[stats(40, 0)]),
        list(&[]),
        edits(2, 3, &[]),
        edits(4, 7, &[(4, 0xdead_beef)]),
        edits(7, 2, &[(10, 0x3f3f_3f3f)]),
        edits(5, 6, &[(9, 0), (12, 5)]),
        edits(3, 3, &[(7, 0xff), (5, 99)]),
        edits(6, 0, &[(8, 0x1234_5678)]),
    ]
}
