use proptest::prelude::{ProptestConfig, any, prop_assert, prop_assert_eq, prop_assume, proptest};

use super::*;
use crate::report::RunError;

fn space() -> SearchSpace {
    SearchSpace {
        lr_all: Some(Values::range(0.002, 0.02, Scale::Log)),
        reg_all: Some(Values::list(&[0.02, 0.05, 0.1])),
        factors: Some(Values::range(20.0, 200.0, Scale::Log)),
        epochs: Some(Values::list(&[20.0, 40.0])),
        ..SearchSpace::default()
    }
}

fn spec(strategy: Strategy) -> TuningSpec {
    TuningSpec {
        strategy,
        seed: 7,
        ..TuningSpec::new(space())
    }
}

fn halving() -> TuningSpec {
    TuningSpec {
        strategy: Strategy::Halving,
        trials: 30,
        space: SearchSpace {
            epochs: None,
            ..space()
        },
        ..spec(Strategy::Random)
    }
}

fn result_of(t: &TrialParams, rmse: f64) -> TrialResult {
    TrialResult::scored(
        t,
        Score {
            rmse,
            mae: rmse * 0.8,
        },
        1.5,
    )
}

fn err_path(e: TuningError) -> String {
    match e {
        TuningError::Invalid { path, .. } => path,
        other => panic!("not a field error: {other}"),
    }
}

#[test]
fn random_plans_are_deterministic_distinct_and_in_the_space() {
    let s = spec(Strategy::Random);
    s.validate("spec.tuning").unwrap();
    let a = plan(&s, &[]);
    assert_eq!(a, plan(&s, &[]));
    assert_eq!(a.len(), s.trials as usize);
    for (i, t) in a.iter().enumerate() {
        assert_eq!(
            (t.index, t.config, t.rung, t.warm),
            (i as u32, i as u32, 0, false)
        );
        s.contains(&t.params).unwrap();
        assert!(!a[..i].iter().any(|u| u.params == t.params));
        let f = t.params.factors.unwrap();
        assert!((20..=200).contains(&f));
    }
    let other = plan(&TuningSpec { seed: 8, ..s }, &[]);
    assert_ne!(a, other, "another seed draws other points");
}

#[test]
fn grid_covers_the_grid_once() {
    let mut s = spec(Strategy::Grid);
    s.space.lr_all = Some(Values::list(&[0.005, 0.01]));
    s.space.factors = Some(Values::list(&[50.0, 100.0]));
    s.trials = 24;
    s.validate("spec.tuning").unwrap();
    let p = plan(&s, &[]);
    assert_eq!(p.len(), 2 * 3 * 2 * 2);
    for lr in [0.005, 0.01] {
        for reg in [0.02, 0.05, 0.1] {
            for f in [50, 100] {
                for e in [20, 40] {
                    let n = p
                        .iter()
                        .filter(|t| {
                            let q = &t.params;
                            (q.lr_all, q.reg_all, q.factors, q.epochs)
                                == (Some(lr), Some(reg), Some(f), e)
                        })
                        .count();
                    assert_eq!(n, 1, "lr {lr} reg {reg} factors {f} epochs {e}");
                }
            }
        }
    }
    s.trials = 23;
    let e = s.validate("spec.tuning").unwrap_err();
    assert!(e.to_string().contains("the grid has 24 points"), "{e}");
    assert_eq!(err_path(e), "spec.tuning.trials");
}

#[test]
fn a_small_list_space_is_taken_whole_by_random() {
    let s = TuningSpec {
        trials: 30,
        space: SearchSpace {
            algorithm: vec![Algorithm::Svd, Algorithm::Baseline],
            reg_all: Some(Values::list(&[0.02, 0.1])),
            reg_u: Some(Values::list(&[5.0, 15.0])),
            ..SearchSpace::default()
        },
        ..TuningSpec::new(SearchSpace::default())
    };
    s.validate("t").unwrap();
    let p = plan(&s, &[]);
    assert_eq!(p.len(), 4, "2 svd points and 2 baseline points");
    let baseline = p
        .iter()
        .filter(|t| t.params.algorithm == Algorithm::Baseline)
        .collect::<Vec<_>>();
    assert_eq!(baseline.len(), 2);
    for t in baseline {
        assert_eq!(t.params.epochs, BASELINE.epochs);
        assert_eq!(t.params.reg_i, Some(BASELINE.reg_i));
        assert_eq!((t.params.factors, t.params.lr_all), (None, None));
    }
}

#[test]
fn warm_points_come_first_and_the_budget_shrinks() {
    let s = spec(Strategy::Random);
    let cold = plan(&s, &[]);
    let results: Vec<TrialResult> = cold
        .iter()
        .map(|t| result_of(t, 1.0 - t.index as f64 / 100.0))
        .collect();
    let warm = plan(&s, &results);
    assert_eq!(warm.len() as u32, warm_budget(&s));
    assert_eq!(warm_budget(&s), 5, "a quarter of 20");
    // The previous best five (the highest indices scored lowest), best first.
    let best: Vec<&Params> = cold.iter().rev().take(5).map(|t| &t.params).collect();
    let firsts: Vec<&Params> = warm.iter().take(5).map(|t| &t.params).collect();
    assert_eq!(firsts, best);
    assert!(warm[..5].iter().all(|t| t.warm));
    // A bigger budget adds points the previous search had not drawn.
    let more = TuningSpec {
        trials: 40,
        ..s.clone()
    };
    let warm = plan(&more, &results);
    assert_eq!(warm.len(), 10);
    for t in &warm[5..] {
        assert!(!t.warm && !cold.iter().any(|c| c.params == t.params));
    }
    // Failed trials are never warm points.
    let failed: Vec<TrialResult> = cold
        .iter()
        .map(|t| TrialResult::failed(t, diverged(), 0.1))
        .collect();
    assert_eq!(plan(&s, &failed), cold);
}

fn diverged() -> RunError {
    RunError {
        reason: "Diverged".into(),
        message: "the fit diverged at epoch 3".into(),
    }
}

#[test]
fn the_fingerprint_is_the_space_not_the_budget() {
    let s = spec(Strategy::Random);
    let f = space_fingerprint(&s);
    assert_eq!(f.len(), 16);
    let budget = TuningSpec {
        trials: 50,
        seed: 1,
        parallelism: 8,
        time_limit: Some("1h".into()),
        ..s.clone()
    };
    assert_eq!(space_fingerprint(&budget), f);
    let mut scale = s.clone();
    scale.space.lr_all.as_mut().unwrap().scale = Some(Scale::Linear);
    assert_ne!(space_fingerprint(&scale), f);
    let mut said = s.clone();
    said.space.factors = Some(Values {
        scale: None,
        ..Values::range(20.0, 200.0, Scale::Linear)
    });
    let mut default = s.clone();
    default.space.factors = Some(Values::range(20.0, 200.0, Scale::Linear));
    assert_eq!(space_fingerprint(&said), space_fingerprint(&default));
    assert_ne!(
        space_fingerprint(&TuningSpec {
            metric: Metric::CvMae,
            ..s
        }),
        f
    );
}

#[test]
fn halving_keeps_the_best_third_with_three_times_the_epochs() {
    let s = halving();
    s.validate("spec.tuning").unwrap();
    let h = s.halving().unwrap();
    assert_eq!(halving_rungs(h), [5, 15, 45]);
    let rung0 = plan(&s, &[]);
    // 21 + 7 + 2 = 30 trial runs.
    assert_eq!(rung0.len(), 21);
    assert!(rung0.iter().all(|t| t.params.epochs == 5 && t.rung == 0));
    let mut results: Vec<TrialResult> = rung0
        .iter()
        .map(|t| match t.index {
            3 => TrialResult::failed(t, diverged(), 0.2),
            i => result_of(t, 0.9 + ((i * 8) % 21) as f64 / 1000.0),
        })
        .collect();
    let rung1 = next_rung(&s, &results);
    assert_eq!(rung1.len(), 7);
    let mut kept: Vec<(f64, u32)> = results
        .iter()
        .filter_map(|r| Some((r.value(Metric::CvRmse)?, r.config)))
        .collect();
    kept.sort_by(|a, b| a.0.total_cmp(&b.0));
    let best7: Vec<u32> = kept.iter().take(7).map(|k| k.1).collect();
    assert_eq!(rung1.iter().map(|t| t.config).collect::<Vec<_>>(), best7);
    for (i, t) in rung1.iter().enumerate() {
        assert_eq!((t.rung, t.params.epochs, t.index), (1, 15, 21 + i as u32));
        let first = &rung0[t.config as usize].params;
        assert_eq!(
            Params {
                epochs: 15,
                ..first.clone()
            },
            t.params
        );
        s.contains(&t.params).unwrap();
    }
    results.extend(
        rung1
            .iter()
            .map(|t| result_of(t, 0.8 + t.config as f64 / 1000.0)),
    );
    let rung2 = next_rung(&s, &results);
    assert_eq!(rung2.len(), 2);
    assert!(rung2.iter().all(|t| t.params.epochs == 45));
    results.extend(rung2.iter().map(|t| result_of(t, 0.95)));
    assert!(next_rung(&s, &results).is_empty(), "the last rung is done");
    let total = results.len();
    assert!(total <= s.trials as usize, "{total} runs");
    // The last rung overfitted: the best is a trial of the middle one, at its epochs.
    let best = best_of(s.metric, &results).unwrap();
    assert_eq!((best.rung, best.params.epochs), (1, 15));
    assert_eq!(best.config, *rung1.iter().map(|t| &t.config).min().unwrap());
}

#[test]
fn a_rung_where_nothing_scored_ends_the_search() {
    let s = halving();
    let results: Vec<TrialResult> = plan(&s, &[])
        .iter()
        .map(|t| TrialResult::failed(t, diverged(), 0.1))
        .collect();
    assert!(next_rung(&s, &results).is_empty());
    assert!(best_of(s.metric, &results).is_none());
    assert!(next_rung(&spec(Strategy::Random), &results).is_empty());
}

#[test]
fn validation_names_the_field() {
    let check = |edit: &dyn Fn(&mut TuningSpec), path: &str, words: &str| {
        let mut s = spec(Strategy::Random);
        edit(&mut s);
        let e = s.validate("spec.tuning").unwrap_err();
        let text = e.to_string();
        assert!(text.contains(words), "{text}");
        assert_eq!(err_path(e), path, "{text}");
    };
    check(
        &|s| s.space.lr_all = Some(Values::range(0.0, 0.1, Scale::Log)),
        "spec.tuning.space.lrAll.min",
        "must be a number above 0",
    );
    check(
        &|s| s.space.reg_all = Some(Values::range(0.2, 0.1, Scale::Linear)),
        "spec.tuning.space.regAll.min",
        "above max",
    );
    check(
        &|s| s.space.factors = Some(Values::list(&[10.0, 12.5])),
        "spec.tuning.space.factors.values[1]",
        "whole number",
    );
    check(
        &|s| s.space.init_std = Some(Values::default()),
        "spec.tuning.space.initStd",
        "needs values",
    );
    check(
        &|s| {
            s.space.reg_all = Some(Values {
                values: vec![0.1],
                min: Some(0.0),
                max: Some(1.0),
                scale: None,
            })
        },
        "spec.tuning.space.regAll",
        "both values and a range",
    );
    check(
        &|s| s.space.reg_u = Some(Values::list(&[5.0])),
        "spec.tuning.space.regU",
        "does not list baseline",
    );
    check(
        &|s| s.space.algorithm.clear(),
        "spec.tuning.space.algorithm",
        "no algorithm",
    );
    check(&|s| s.trials = 0, "spec.tuning.trials", "from 1 to 500");
    check(
        &|s| s.parallelism = 65,
        "spec.tuning.parallelism",
        "from 1 to 64",
    );
    check(
        &|s| s.time_limit = Some("soon".into()),
        "spec.tuning.timeLimit",
        "not a duration",
    );
    check(
        &|s| s.eta = Some(2),
        "spec.tuning.eta",
        "only used with strategy halving",
    );
    check(
        &|s| s.strategy = Strategy::Grid,
        "spec.tuning.space.factors",
        "grid needs a list",
    );
    check(
        &|s| s.strategy = Strategy::Halving,
        "spec.tuning.space.epochs",
        "halving sets the epochs",
    );
    let mut s = halving();
    s.trials = 4;
    let e = s.validate("spec.tuning").unwrap_err();
    assert!(e.to_string().contains("needs at least 5"), "{e}");
    s.trials = 5;
    s.validate("spec.tuning").unwrap();
    s.eta = Some(1);
    assert_eq!(err_path(s.validate("x").unwrap_err()), "x.eta");
    // A spec file's own fields have no root.
    assert_eq!(err_path(s.validate("").unwrap_err()), "eta");
    let ok = TuningSpec {
        time_limit: Some("1h30m".into()),
        ..spec(Strategy::Random)
    };
    ok.validate("t").unwrap();
    assert_eq!(ok.time_limit(), Some(Duration::from_secs(5400)));
}

#[test]
fn a_spec_reads_from_yaml_like_json_and_refuses_unknown_fields() {
    let json = r#"{"space": {"algorithm": ["svd"], "lrAll": {"min": 0.002, "max": 0.02,
        "scale": "log"}, "regAll": {"values": [0.05, 0.1]}}, "strategy": "halving",
        "trials": 30, "minEpochs": 5, "eta": 3, "metric": "cvMae", "seed": 4}"#;
    let s: TuningSpec = serde_json::from_str(json).unwrap();
    s.validate("spec.tuning").unwrap();
    assert_eq!(
        (s.strategy, s.metric, s.parallelism),
        (Strategy::Halving, Metric::CvMae, 2)
    );
    let typo = json.replace("lrAll", "lrAlll");
    let e = serde_json::from_str::<TuningSpec>(&typo).unwrap_err();
    assert!(e.to_string().contains("lrAlll"), "{e}");
}

#[test]
fn a_result_round_trips_and_fits_a_termination_message() {
    let p = plan(&spec(Strategy::Random), &[]);
    let ok = result_of(&p[3], 0.91234);
    let json = ok.to_json();
    assert!(!json.contains('\n') && json.len() < 1024, "{json}");
    let back = TrialResult::parse(&json).unwrap();
    assert_eq!(back, ok);
    back.check(&p[3]).unwrap();

    let mut long = TrialResult::failed(&p[3], diverged(), 0.5);
    long.error.as_mut().unwrap().message = "é".repeat(5000);
    let json = long.to_json();
    assert!(json.len() <= MAX_RESULT_BYTES, "{}", json.len());
    let back = TrialResult::parse(&json).unwrap();
    let message = &back.error.as_ref().unwrap().message;
    assert!(message.ends_with('…') && message.len() > 3000);
    assert_eq!(back.error.unwrap().reason, "Diverged");
}

#[test]
fn a_forged_or_oversized_result_is_refused() {
    let p = plan(&spec(Strategy::Random), &[]);
    let ok = result_of(&p[3], 0.9);
    let json = ok.to_json();
    // Another trial's result, or this index with another point.
    assert!(
        ok.check(&p[4])
            .unwrap_err()
            .to_string()
            .contains("not of point 4")
    );
    let mut moved = ok.clone();
    moved.params.lr_all = Some(0.5);
    let e = moved.check(&p[3]).unwrap_err();
    assert_eq!(err_path(e), "trial 3.params");
    let big = json.replacen('{', &format!("{{{}", " ".repeat(MAX_RESULT_BYTES)), 1);
    assert!(matches!(
        TrialResult::parse(&big),
        Err(TuningError::TooLarge { .. })
    ));
    let both = json.replace(
        "\"seconds\"",
        r#""error":{"reason":"X","message":"y"},"seconds""#,
    );
    assert!(
        TrialResult::parse(&both)
            .unwrap_err()
            .to_string()
            .contains("both a score and an error")
    );
    let extra = json.replace("\"seconds\"", r#""winner":true,"seconds""#);
    assert!(
        TrialResult::parse(&extra)
            .unwrap_err()
            .to_string()
            .contains("winner")
    );
    let negative = json.replace("\"rmse\":0.9", "\"rmse\":-0.9");
    assert!(
        TrialResult::parse(&negative)
            .unwrap_err()
            .to_string()
            .contains("score.rmse")
    );
    let newer = json.replace("\"format\":1", "\"format\":2");
    assert!(matches!(
        TrialResult::parse(&newer),
        Err(TuningError::UnsupportedFormat { found: 2, .. })
    ));
    assert!(matches!(
        TrialResult::parse("OOMKilled"),
        Err(TuningError::Json { .. })
    ));
}

#[test]
fn a_plan_file_refuses_what_a_trial_must_not_run() {
    let s = spec(Strategy::Random);
    let trials = plan(&s, &[]);
    let good = TrialPlan::new(s.clone(), trials.clone());
    let parsed = TrialPlan::parse(&good.to_json()).unwrap();
    assert_eq!(parsed, good);
    assert_eq!(parsed.trial(3).unwrap().index, 3);
    let e = parsed.trial(20).unwrap_err().to_string();
    assert!(
        e.contains("20 is past the plan's 20 trials (0 to 19)"),
        "{e}"
    );

    let mut outside = good.clone();
    outside.trials[2].params.lr_all = Some(0.5);
    let e = TrialPlan::parse(&outside.to_json()).unwrap_err();
    assert!(
        e.to_string().contains("lrAll=0.5 is outside the space"),
        "{e}"
    );
    assert_eq!(err_path(e), "plan.trials[2].params");

    let mut twice = good.clone();
    twice.trials[1].index = 0;
    assert_eq!(
        err_path(TrialPlan::parse(&twice.to_json()).unwrap_err()),
        "plan.trials[1].index"
    );
    let mut bad_spec = good.clone();
    bad_spec.spec.trials = 0;
    assert_eq!(
        err_path(TrialPlan::parse(&bad_spec.to_json()).unwrap_err()),
        "plan.spec.trials"
    );
    let empty = TrialPlan::new(s, Vec::new());
    assert_eq!(
        err_path(TrialPlan::parse(&empty.to_json()).unwrap_err()),
        "plan.trials"
    );
    let e = TrialPlan::parse("{\"spec\": 3}").unwrap_err();
    assert!(matches!(e, TuningError::Json { .. }), "{e}");
}

#[test]
fn a_record_keeps_every_trial_and_the_best_and_warms_the_same_space() {
    let s = spec(Strategy::Random);
    let p = plan(&s, &[]);
    let results: Vec<TrialResult> = p
        .iter()
        .rev()
        .map(|t| match t.index {
            0 => TrialResult::failed(t, diverged(), 0.1),
            i => result_of(t, 0.9 + i as f64 / 1000.0),
        })
        .collect();
    let record = SearchRecord::new(s.clone(), false, SearchEnd::Completed, 12.0, results);
    assert_eq!(record.trials.len(), 20);
    assert!(record.trials.windows(2).all(|w| w[0].index < w[1].index));
    assert_eq!(record.best.as_ref().unwrap().index, 1);
    assert_eq!(record.failed(), 1);
    let json = serde_json::to_string(&record).unwrap();
    let back = SearchRecord::parse(&json).unwrap();
    assert_eq!(back, record);
    assert_eq!(back.warm_for(&s).len(), 20);
    let mut other = s.clone();
    other.space.reg_all = Some(Values::list(&[0.2]));
    assert!(back.warm_for(&other).is_empty());
    let forged = json.replace(&record.fingerprint, "0000000000000000");
    let e = SearchRecord::parse(&forged).unwrap_err();
    assert_eq!(err_path(e), "record.fingerprint");
}

/// The record the operator passes to the final run is bounded: the largest search, half its
/// trials failed with the longest messages, fits with its messages cut; a bound too small for
/// every trial leaves the worst out and keeps the best.
#[test]
fn a_passed_record_is_bounded() {
    let s = TuningSpec {
        trials: MAX_TRIALS,
        ..spec(Strategy::Random)
    };
    let p = plan(&s, &[]);
    assert_eq!(p.len(), MAX_TRIALS as usize);
    let long = RunError {
        reason: "Diverged".into(),
        message: "é".repeat(MAX_RESULT_BYTES),
    };
    let results: Vec<TrialResult> = p
        .iter()
        .map(|t| match t.index % 2 {
            0 => TrialResult::failed(t, long.clone(), 0.1),
            _ => result_of(t, 0.9 + t.index as f64 / 10_000.0),
        })
        .collect();
    let record = SearchRecord::new(s.clone(), false, SearchEnd::Completed, 60.0, results);
    assert!(serde_json::to_string(&record).unwrap().len() > MAX_PASSED_RECORD_BYTES);

    let json = record.to_bounded_json(MAX_PASSED_RECORD_BYTES);
    assert!(json.len() <= MAX_PASSED_RECORD_BYTES, "{}", json.len());
    let back = SearchRecord::parse(&json).unwrap();
    assert_eq!((back.trials.len(), back.omitted), (MAX_TRIALS as usize, 0));
    assert_eq!(back.best, record.best);
    let cut = &back.trials[0].error.as_ref().unwrap().message;
    assert!(cut.len() <= 256 && cut.ends_with('…'), "{cut}");

    let small = 20_000;
    let json = record.to_bounded_json(small);
    assert!(json.len() <= small, "{}", json.len());
    let back = SearchRecord::parse(&json).unwrap();
    assert!(back.omitted > 0);
    assert_eq!(
        back.trials.len() + back.omitted as usize,
        MAX_TRIALS as usize
    );
    assert_eq!(back.best, record.best);
    assert!(
        back.trials.iter().all(|t| t.error.is_none()),
        "failed ones go first"
    );
    assert!(back.trials.windows(2).all(|w| w[0].index < w[1].index));
    assert!(back.trials.contains(record.best.as_ref().unwrap()));
    // A record within its bound is passed as it is.
    let whole = SearchRecord::new(
        s,
        false,
        SearchEnd::Completed,
        1.0,
        record.trials[..4].to_vec(),
    );
    assert_eq!(
        whole.to_bounded_json(MAX_PASSED_RECORD_BYTES),
        serde_json::to_string(&whole).unwrap()
    );
}

#[test]
fn train_args_say_the_point() {
    let mut p = Params::defaults(Algorithm::Svd);
    p.lr_all = Some(0.01);
    p.reg_bu = Some(0.5);
    let args = p.train_args().join(" ");
    assert_eq!(
        args,
        "--algorithm svd --epochs 20 --factors 100 --lr-all 0.01 --reg-all 0.02 --init-std 0.1 \
         --reg-bu 0.5"
    );
    let b = Params::defaults(Algorithm::Baseline).train_args().join(" ");
    assert_eq!(b, "--algorithm baseline --epochs 10 --reg-u 15 --reg-i 10");
    assert_eq!(
        p.to_string(),
        "svd epochs=20 factors=100 lrAll=0.01 regAll=0.02 initStd=0.1 regBu=0.5"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any valid random or halving spec plans within its budget and its space, the same way
    /// twice.
    #[test]
    fn plans_stay_in_the_space_and_the_budget(
        seed in any::<u64>(),
        trials in 5u32..60,
        lo in 0.0001f64..0.01,
        span in 1.0f64..100.0,
        log in any::<bool>(),
        halve in any::<bool>(),
    ) {
        let scale = if log { Scale::Log } else { Scale::Linear };
        let s = TuningSpec {
            seed,
            trials,
            strategy: if halve { Strategy::Halving } else { Strategy::Random },
            space: SearchSpace {
                lr_all: Some(Values::range(lo, lo * span, scale)),
                factors: Some(Values::range(1.0, 300.0, scale)),
                reg_all: Some(Values::list(&[0.0, 0.1])),
                ..SearchSpace::default()
            },
            ..TuningSpec::new(SearchSpace::default())
        };
        prop_assume!(s.validate("t").is_ok());
        let p = plan(&s, &[]);
        prop_assert_eq!(&p, &plan(&s, &[]));
        prop_assert!(!p.is_empty() && p.len() <= trials as usize);
        for t in &p {
            prop_assert!(s.contains(&t.params).is_ok(), "{}", t.params);
        }
        if let Some(h) = s.halving() {
            prop_assert!(plan::halving_cost(p.len(), h).1 <= trials as usize);
        }
    }
}
