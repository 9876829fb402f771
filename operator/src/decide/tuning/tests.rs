//! Searches through the whole decision: started when a run is due, rung by rung, ended with a
//! best point that the run trains, or with nothing to train; warm when the space is unchanged.

use super::*;
use crate::children::testing::args;
use crate::crd::{Phase, RecommenderModelSpec, RecommenderModelStatus};
use crate::decide::fixtures::*;
use crate::decide::{Plan, decide};
use crate::observe::{ObservedRung, TrialEnd};
use recommender_contract::tuning::{Score, TrialPlan};
use std::collections::BTreeMap;

/// A random search of 4 trials over the learning rate and regularisation.
fn tuned(extra: &str) -> RecommenderModelSpec {
    let mut spec = file_spec();
    spec.tuning = Some(
        serde_yaml::from_str(&format!(
            "space: {{lrAll: {{values: [0.005, 0.01]}}, regAll: {{values: [0.02, 0.1]}}}}\n\
             trials: 4\nparallelism: 2\nseed: 7\n{extra}"
        ))
        .unwrap(),
    );
    spec
}

fn decide_at(m: &crate::crd::RecommenderModel, rungs: Vec<ObservedRung>, now: Timestamp) -> Plan {
    let mut observed = observe(m, vec![], None);
    observed.rungs = rungs;
    observed.now = now;
    decide(&observed, &config(m), &defaults())
}

/// The rung in flight of `status` ended: each trial scored `scores[i]`, or failed (`None`)
/// running out of memory.
fn ended(status: &TuningStatus, scores: &[Option<f64>]) -> ObservedRung {
    let trials = status
        .running
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(i, (trial, score))| {
            let end = match score {
                Some(rmse) => TrialEnd::Scored(Box::new(TrialResult::scored(
                    trial,
                    Score {
                        rmse: *rmse,
                        mae: rmse * 0.8,
                    },
                    1.0,
                ))),
                None => TrialEnd::Failed {
                    reason: "OOMKilled".into(),
                    message: format!("trial {i} ran out of memory"),
                },
            };
            (i as u32, end)
        })
        .collect::<BTreeMap<_, _>>();
    ObservedRung {
        search: status.search,
        rung: status.rung,
        job_name: format!("movies-search-{}-{}", status.search, status.rung),
        finished: true,
        failed: scores
            .iter()
            .any(Option::is_none)
            .then(|| "FailedIndexes".into()),
        trials,
    }
}

fn with_status(
    spec: &RecommenderModelSpec,
    status: RecommenderModelStatus,
) -> crate::crd::RecommenderModel {
    model(spec.clone(), Some(status))
}

fn tuning(plan: &Plan) -> &TuningStatus {
    plan.status.tuning.as_ref().expect("status.tuning")
}

#[test]
fn a_due_run_searches_first_and_starts_no_trainer() {
    let spec = tuned("timeLimit: 20m");
    let m = model(spec.clone(), None);
    let plan = decide_at(&m, vec![], now());
    assert!(plan.start_job.is_none(), "no trainer before the search");
    let rung = plan.start_rung.as_ref().expect("rung 0");
    assert_eq!(rung.job.metadata.name.as_deref(), Some("movies-search-1-0"));
    let job_spec = rung.job.spec.as_ref().unwrap();
    assert_eq!(
        (
            job_spec.completions,
            job_spec.parallelism,
            job_spec.active_deadline_seconds
        ),
        (Some(4), Some(2), Some(1200)),
        "the time limit bounds the Job"
    );
    let text = &rung.plan.data.as_ref().unwrap()["plan.json"];
    let written = TrialPlan::parse(text).unwrap();
    assert_eq!(written.trials.len(), 4);
    let t = tuning(&plan);
    assert_eq!(
        (t.state, t.search, t.run, t.trigger, t.warm),
        (SearchState::Searching, 1, 1, RunTrigger::NoModel, false)
    );
    assert_eq!(
        t.running, written.trials,
        "the status holds the plan it wrote"
    );
    assert_eq!(t.deadline, Some(at("2026-11-27T12:20:00Z")));
    assert_eq!(plan.status.runs.last, 0, "the run starts after the search");
    assert_eq!(condition(&plan, "Tuned").reason, "Searching");
    assert!(plan.events.iter().any(|e| e.reason == "SearchStarted"));

    // While it runs nothing else starts.
    let m = with_status(&spec, plan.status.clone());
    let mut running = ended(t, &[]);
    running.finished = false;
    let again = decide_at(&m, vec![running], now());
    assert!(again.start_job.is_none() && again.start_rung.is_none());
    assert_eq!(tuning(&again), t);
}

#[test]
fn without_tuning_nothing_changes() {
    let m = model(file_spec(), None);
    let plan = decide_at(&m, vec![], now());
    assert!(plan.start_rung.is_none() && plan.status.tuning.is_none());
    assert!(!plan.status.conditions.iter().any(|c| c.type_ == "Tuned"));
    assert_eq!(job_name(&plan).as_deref(), Some("movies-train-1"));
}

#[test]
fn the_best_trial_is_trained_and_failed_trials_are_recorded() {
    let spec = tuned("");
    let m = model(spec.clone(), None);
    let started = decide_at(&m, vec![], now());
    let t = tuning(&started).clone();
    let m = with_status(&spec, started.status.clone());
    let plan = decide_at(
        &m,
        vec![ended(&t, &[Some(0.93), None, Some(0.91), Some(0.95)])],
        now(),
    );

    let done = tuning(&plan);
    assert_eq!(done.state, SearchState::BestFound);
    assert_eq!((done.trials_done, done.trials_failed), (4, 1));
    let best = done.best.as_ref().unwrap();
    assert_eq!(
        (best.index, best.score.unwrap().rmse),
        (t.running[2].index, 0.91)
    );
    assert_eq!(done.trials[0], *best, "the best first");
    let oom = done.trials.iter().find(|r| r.error.is_some()).unwrap();
    assert_eq!(oom.error.as_ref().unwrap().reason, "OOMKilled");
    assert!(done.running.is_empty());
    assert_eq!(condition(&plan, "Tuned").reason, "BestFound");

    // The run starts in the same decision, with the best point and the search's seed.
    assert_eq!(job_name(&plan).as_deref(), Some("movies-train-1"));
    let job = plan.start_job.as_ref().unwrap();
    let line = args(job);
    let point = best.params.train_args().join(" ");
    assert!(line.contains(&point), "{line} lacks {point}");
    assert!(line.contains("--seed 7"), "{line}");
    assert_eq!(
        job.metadata.annotations.as_ref().unwrap()[crate::labels::ANNOTATION_SEARCH],
        "1"
    );
    assert_eq!(
        plan.status.runs.active.as_ref().unwrap().trigger,
        RunTrigger::NoModel
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "TrainingStarted" && e.note.contains("best point of search 1"))
    );

    // The whole search goes with the run, to be kept in the model store's run history.
    assert!(line.ends_with("--search-record /etc/recommender/search/record.json"));
    let record = plan.search_record.as_ref().unwrap();
    assert_eq!(
        record.metadata.name.as_deref(),
        Some("movies-search-1-record")
    );
    let record = SearchRecord::parse(&record.data.as_ref().unwrap()["record.json"]).unwrap();
    assert_eq!((record.trials.len(), record.failed()), (4, 1));
    assert_eq!(record.best.as_ref(), Some(best));
    assert_eq!(record.end, SearchEnd::Completed);
}

#[test]
fn every_trial_failed_records_the_run_and_backs_off() {
    let spec = tuned("");
    let m = model(spec.clone(), None);
    let started = decide_at(&m, vec![], now());
    let t = tuning(&started).clone();
    let m = with_status(&spec, started.status);
    let plan = decide_at(&m, vec![ended(&t, &[None, None, None, None])], now());
    assert!(plan.start_job.is_none() && plan.start_rung.is_none());
    let done = tuning(&plan);
    assert_eq!(done.state, SearchState::AllTrialsFailed);
    assert_eq!(condition(&plan, "Tuned").status, "False");
    assert_eq!(condition(&plan, "Tuned").reason, "AllTrialsFailed");
    let record = plan.status.history.last().unwrap();
    assert_eq!(
        (
            record.run,
            record.outcome,
            record.reason.as_str(),
            record.search
        ),
        (1, RunOutcome::Failed, "AllTrialsFailed", Some(1))
    );
    assert_eq!(plan.status.runs.last, 1);
    assert_eq!(plan.status.runs.consecutive_failures, 1);
    assert!(
        plan.status.runs.retry_after.is_some(),
        "retried with backoff"
    );
    assert_eq!(plan.finished.len(), 1);
    assert_eq!(condition(&plan, "Promoted").reason, "TrainingFailed");
}

#[test]
fn a_best_worse_than_serving_trains_nothing_and_is_not_retried() {
    let spec = tuned("");
    let serving = record("v1", 1, 0.90, "2026-11-27T11:00:00Z");
    let status = RecommenderModelStatus {
        serving: Some(serving.clone()),
        models: vec![serving],
        runs: crate::crd::RunLedger {
            last: 1,
            last_completed: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    // The spec changed since v1 (tuning was added): a run is due, and searches first.
    let m = with_status(&spec, status);
    let started = decide_at(&m, vec![], now());
    let t = tuning(&started).clone();
    assert_eq!((t.run, t.trigger), (2, RunTrigger::SpecChanged));
    let m = with_status(&spec, started.status);
    let plan = decide_at(
        &m,
        vec![ended(&t, &[Some(0.93), Some(0.91), Some(0.95), Some(0.92)])],
        now(),
    );
    assert!(plan.start_job.is_none());
    assert_eq!(tuning(&plan).state, SearchState::WorseThanServing);
    let tuned = condition(&plan, "Tuned");
    assert_eq!(
        (tuned.status.as_str(), tuned.reason.as_str()),
        ("False", "WorseThanServing")
    );
    assert!(
        tuned.message.contains("worse than the serving v1 (0.9)"),
        "{}",
        tuned.message
    );
    let record = plan.status.history.last().unwrap();
    assert_eq!(
        (record.outcome, record.reason.as_str()),
        (RunOutcome::Rejected, "WorseThanServing")
    );
    assert_eq!(
        plan.status.serving.as_ref().unwrap().version,
        "v1",
        "v1 keeps serving"
    );

    // The same spec is not searched again on its own.
    let m = with_status(&spec, plan.status.clone());
    let after = decide_at(&m, vec![], now());
    assert!(after.start_rung.is_none() && after.start_job.is_none());
    assert_eq!(after.status.phase, plan.status.phase);
    assert_ne!(after.status.phase, Phase::Training);
}

#[test]
fn re_measuring_the_serving_point_is_not_worse_than_itself() {
    let serving = record("v1", 1, 0.9125, "2026-11-27T11:00:00Z");
    let mut best = TrialResult::scored(
        &recommender_contract::tuning::TrialParams {
            index: 0,
            config: 0,
            rung: 0,
            warm: true,
            params: recommender_contract::tuning::Params::defaults(
                recommender_contract::tuning::Algorithm::Svd,
            ),
        },
        Score {
            rmse: 0.912_54,
            mae: 0.7,
        },
        1.0,
    );
    assert!(
        !worse(&best, Metric::CvRmse, &serving),
        "0.91254 rounds to 0.9125"
    );
    best.score = Some(Score {
        rmse: 0.912_56,
        mae: 0.7,
    });
    assert!(worse(&best, Metric::CvRmse, &serving));
}

#[test]
fn halving_runs_the_next_rung_with_the_best_third() {
    let mut spec = file_spec();
    spec.tuning = Some(
        serde_yaml::from_str(
            "space: {lrAll: {min: 0.002, max: 0.02, scale: log}}\n\
             strategy: halving\nminEpochs: 5\nmaxEpochs: 15\neta: 3\ntrials: 8\nseed: 1",
        )
        .unwrap(),
    );
    let m = model(spec.clone(), None);
    let started = decide_at(&m, vec![], now());
    let t = tuning(&started).clone();
    assert_eq!(t.running.len(), 6, "6 at 5 epochs, then 2 at 15: 8 trials");
    assert!(t.running.iter().all(|r| r.params.epochs == 5));
    let m = with_status(&spec, started.status);
    let scores = [
        Some(0.99),
        Some(0.95),
        None,
        Some(0.97),
        Some(0.94),
        Some(0.98),
    ];
    let plan = decide_at(&m, vec![ended(&t, &scores)], now());
    assert!(plan.start_job.is_none(), "not before the last rung");
    let next = tuning(&plan);
    assert_eq!((next.state, next.rung), (SearchState::Searching, 1));
    let rung = plan.start_rung.as_ref().unwrap();
    assert_eq!(rung.job.metadata.name.as_deref(), Some("movies-search-1-1"));
    let promoted: Vec<u32> = next.running.iter().map(|r| r.config).collect();
    assert_eq!(
        promoted,
        [t.running[4].config, t.running[1].config],
        "the best 6/3, best first"
    );
    assert!(next.running.iter().all(|r| r.params.epochs == 15));
    assert_eq!(next.trials_done, 6);
    assert!(plan.events.iter().any(|e| e.reason == "RungStarted"));

    // The last rung's best is what is trained, though a first-rung trial scored lower.
    let m = with_status(&spec, plan.status.clone());
    let last = decide_at(&m, vec![ended(next, &[Some(0.96), Some(0.92)])], now());
    let done = tuning(&last);
    assert_eq!(done.state, SearchState::BestFound);
    assert_eq!(done.best.as_ref().unwrap().rung, 1);
    assert_eq!(done.trials_done, 8);
    assert!(args(last.start_job.as_ref().unwrap()).contains("--epochs 15"));
}

#[test]
fn the_time_limit_ends_the_search_with_what_scored() {
    let mut spec = file_spec();
    spec.tuning = Some(
        serde_yaml::from_str(
            "space: {lrAll: {min: 0.002, max: 0.02, scale: log}}\n\
             strategy: halving\nminEpochs: 5\nmaxEpochs: 15\neta: 3\ntrials: 8\ntimeLimit: 10m",
        )
        .unwrap(),
    );
    let m = model(spec.clone(), None);
    let started = decide_at(&m, vec![], now());
    let t = tuning(&started).clone();
    let m = with_status(&spec, started.status);
    // Rung 0 stopped at the deadline: two trials scored, the rest never ended.
    let mut stopped = ended(&t, &[Some(0.95), Some(0.94)]);
    stopped.failed = Some("DeadlineExceeded".into());
    let plan = decide_at(&m, vec![stopped], at("2026-11-27T12:10:00Z"));
    let done = tuning(&plan);
    assert_eq!(
        done.state,
        SearchState::BestFound,
        "no rung after the limit"
    );
    assert!(plan.start_rung.is_none());
    assert_eq!((done.trials_done, done.trials_failed), (6, 4));
    let stopped = done.trials.iter().find(|r| r.error.is_some()).unwrap();
    assert_eq!(stopped.error.as_ref().unwrap().reason, "DeadlineExceeded");
    assert!(
        done.message.contains("stopped at the time limit"),
        "{}",
        done.message
    );
    assert!(plan.start_job.is_some());
    let record = &plan.search_record.as_ref().unwrap().data.as_ref().unwrap()["record.json"];
    let record = SearchRecord::parse(record).unwrap();
    assert_eq!((record.end, record.trials.len()), (SearchEnd::TimeLimit, 6));
}

#[test]
fn a_retrain_with_the_same_space_starts_from_the_best_points() {
    let spec = tuned("");
    let m = model(spec.clone(), None);
    let started = decide_at(&m, vec![], now());
    let t = tuning(&started).clone();
    let m = with_status(&spec, started.status);
    let found = decide_at(
        &m,
        vec![ended(&t, &[Some(0.93), Some(0.92), Some(0.91), Some(0.95)])],
        now(),
    );
    let best = tuning(&found).best.clone().unwrap();
    let mut status = found.status.clone();
    // Run 1 trained and serves; then a retrain is requested.
    status.runs.active = None;
    status.runs.last_completed = 1;
    status.runs.trained_spec_hash = Some(children::training_spec_hash(&spec));
    status.serving = Some(record("v1", 1, 0.91, "2026-11-27T11:00:00Z"));
    status.models = vec![status.serving.clone().unwrap()];
    let mut m = with_status(&spec, status.clone());
    m.metadata.annotations = Some([(crate::labels::RETRAIN_ANNOTATION.into(), "1".into())].into());
    let warm = decide_at(&m, vec![], now());
    let w = tuning(&warm);
    assert_eq!((w.search, w.run, w.warm), (2, 2, true));
    assert_eq!(w.running.len(), 1, "a quarter of 4 trials");
    assert_eq!(w.running[0].params, best.params, "the best point first");
    assert!(w.running[0].warm);
    assert_eq!(
        warm.status.runs.handled_retrain_request.as_deref(),
        Some("1")
    );

    // A changed space starts afresh, with the whole budget.
    let mut changed = tuned("");
    changed.tuning.as_mut().unwrap().space.reg_all =
        Some(recommender_contract::tuning::Values::list(&[0.05, 0.2]));
    let m = with_status(&changed, status);
    let fresh = decide_at(&m, vec![], now());
    let f = tuning(&fresh);
    assert_eq!((f.search, f.warm, f.running.len()), (2, false, 4));
    assert_eq!(f.trigger, RunTrigger::SpecChanged);
}

#[test]
fn a_vanished_rung_fails_its_trials_and_a_spec_change_abandons_the_search() {
    let spec = tuned("");
    let m = model(spec.clone(), None);
    let started = decide_at(&m, vec![], now());
    let m = with_status(&spec, started.status.clone());
    let plan = decide_at(&m, vec![], now());
    let done = tuning(&plan);
    assert_eq!(done.state, SearchState::AllTrialsFailed);
    assert!(
        done.trials
            .iter()
            .all(|r| r.error.as_ref().unwrap().reason == "JobMissing")
    );

    let mut changed = spec.clone();
    changed.folds = 5;
    let m = with_status(&changed, started.status);
    let plan = decide_at(&m, vec![], now());
    let t = tuning(&plan);
    assert_eq!(
        (t.search, t.state),
        (2, SearchState::Searching),
        "a new search for the new spec"
    );
    assert_eq!(
        plan.start_rung
            .as_ref()
            .unwrap()
            .job
            .metadata
            .name
            .as_deref(),
        Some("movies-search-2-0")
    );
}

#[test]
fn gates() {
    let spec = tuned("");
    let t = tuning(&decide_at(&model(spec.clone(), None), vec![], now())).clone();
    let tuning_spec = spec.tuning.as_ref();
    assert_eq!(gate(None, Some(&t), 1, &t.spec_hash), Gate::Untuned);
    assert_eq!(gate(tuning_spec, None, 1, &t.spec_hash), Gate::Search);
    assert_eq!(gate(tuning_spec, Some(&t), 1, &t.spec_hash), Gate::Wait);
    assert_eq!(gate(tuning_spec, Some(&t), 1, "other"), Gate::Search);
    assert_eq!(gate(tuning_spec, Some(&t), 2, &t.spec_hash), Gate::Search);
    let mut found = t.clone();
    found.state = SearchState::BestFound;
    assert_eq!(
        gate(tuning_spec, Some(&found), 1, &t.spec_hash),
        Gate::Search,
        "no best"
    );
    found.best = Some(TrialResult::failed(
        &t.running[0],
        RunError {
            reason: "x".into(),
            message: String::new(),
        },
        0.0,
    ));
    assert_eq!(
        gate(tuning_spec, Some(&found), 1, &t.spec_hash),
        Gate::Train(&found)
    );
}
