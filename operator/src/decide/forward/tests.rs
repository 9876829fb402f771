//! The forward side of `decide`: counts of new ratings, forward evaluations started and recorded,
//! `Stale` by new data and `AccuracyDegraded`, each through the whole decision.

use crate::crd::{
    Fingerprint, PostgresSource, RecommenderModelSpec, RecommenderModelStatus, RunTrigger,
    SecretKeyRef, Source,
};
use crate::decide::fixtures::*;
use crate::decide::{Plan, decide};
use crate::observe::{EvaluationState, NewRatings, ObservedEvaluation};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::events::EventType;
use recommender_contract::report::Forward;
use std::time::Duration;

const SNAPSHOT: i64 = 893_286_638;

fn pg_spec(customize: impl FnOnce(&mut RecommenderModelSpec)) -> RecommenderModelSpec {
    let mut spec = file_spec();
    spec.source = Source {
        postgres: Some(PostgresSource {
            ssl_mode: Default::default(),
            ca_secret_ref: None,
            host: "db".into(),
            port: 5432,
            database: "shop".into(),
            user: "reader".into(),
            password_secret_ref: SecretKeyRef {
                name: "db".into(),
                key: "password".into(),
            },
            query: "SELECT user_id, movie_id, value, created_at FROM ratings_rating".into(),
            probe_interval_seconds: 15,
        }),
        file: None,
    };
    customize(&mut spec);
    spec
}

/// v1 serves, trained at 11:00 on 100 000 ratings up to `SNAPSHOT`.
fn v1_serving(spec: &RecommenderModelSpec) -> RecommenderModelStatus {
    let mut status = serving_status(spec, "2026-11-27T11:00:00Z");
    status.models[0].fingerprint = Some(Fingerprint {
        rows: 100_000,
        users: 943,
        items: 1682,
        content_hash: "ab".repeat(32),
        max_timestamp: Some(SNAPSHOT),
    });
    status.models[0].artifact = Some(crate::crd::ArtifactFile {
        path: "/models/movies/v1.model".into(),
        bytes: 456_789,
        sha256: V1_SHA256.into(),
    });
    status.serving = status.models.last().cloned();
    status
}

/// The digest recorded for v1's artifact, which every reader of it is told.
const V1_SHA256: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

fn count(ratings: u64) -> NewRatings {
    NewRatings {
        since: SNAPSHOT,
        ratings,
        users: 12,
        items: 3,
        newest: Some(SNAPSHOT + 86_400),
    }
}

fn decide_with(
    spec: &RecommenderModelSpec,
    status: RecommenderModelStatus,
    counted: Option<Result<NewRatings, String>>,
    evaluations: Vec<ObservedEvaluation>,
) -> Plan {
    let m = model(spec.clone(), Some(status));
    let mut obs = observe(&m, vec![], Some(available("v1", 1, 1)));
    obs.database = crate::observe::DatabaseProbe::Reachable;
    obs.new_ratings = counted;
    obs.evaluations = evaluations;
    decide(&obs, &config(&m), &defaults())
}

fn args(job: &k8s_openapi::api::batch::v1::Job) -> String {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    pod.containers[0].args.as_ref().unwrap().join(" ")
}

#[test]
fn new_ratings_past_the_limit_make_the_model_stale_and_retrain_once() {
    let spec = pg_spec(|s| s.freshness.max_new_ratings = Some(IntOrString::String("5%".into())));
    // 4 999 of the 5 000 that 5% of 100 000 allows: counted, not stale.
    let plan = decide_with(&spec, v1_serving(&spec), Some(Ok(count(4999))), vec![]);
    let data = plan.status.data.clone().unwrap();
    assert_eq!(
        (
            data.version.as_str(),
            data.since,
            data.new_ratings,
            data.new_users
        ),
        ("v1", SNAPSHOT, 4999, 12)
    );
    assert_eq!((data.counted_at, data.exceeded_at), (now(), None));
    assert_eq!(condition(&plan, "Stale").status, "False");
    assert!(plan.start_job.is_none());

    let plan = decide_with(&spec, v1_serving(&spec), Some(Ok(count(5000))), vec![]);
    let stale = condition(&plan, "Stale");
    assert_eq!(
        (stale.status.as_str(), stale.reason.as_str()),
        ("True", "NewData")
    );
    assert!(
        stale
            .message
            .starts_with("5000 ratings arrived after v1's snapshot, at least maxNewRatings (5000)"),
        "{}",
        stale.message
    );
    assert!(plan.status.stale);
    assert_eq!(plan.status.data.as_ref().unwrap().exceeded_at, Some(now()));
    assert_eq!(
        plan.status.runs.active.as_ref().unwrap().trigger,
        RunTrigger::NewData
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.type_ == EventType::Warning && e.reason == "NewData")
    );

    // The next count keeps when the limit was first reached; the candidate already tried
    // since then is not tried again.
    let mut after = plan.status.clone();
    after.runs.active = None;
    after.runs.last_completed = after.runs.last;
    after.runs.last_attempt_started_at = Some(now());
    let m = model(spec.clone(), Some(after));
    let mut obs = observe(&m, vec![], Some(available("v1", 1, 1)));
    obs.new_ratings = Some(Ok(count(7000)));
    obs.now = at("2026-11-27T12:10:00Z");
    let again = decide(&obs, &config(&m), &defaults());
    assert_eq!(again.status.data.as_ref().unwrap().exceeded_at, Some(now()));
    assert_eq!(again.status.data.as_ref().unwrap().new_ratings, 7000);
    assert!(again.start_job.is_none(), "once per staleness");
}

#[test]
fn a_count_of_another_model_or_a_failed_count_changes_no_verdict() {
    let spec = pg_spec(|s| s.freshness.max_new_ratings = Some(IntOrString::Int(10)));
    let mut status = v1_serving(&spec);
    let plan = decide_with(&spec, status.clone(), Some(Ok(count(50))), vec![]);
    status.data = plan.status.data.clone();
    // v2 was promoted meanwhile: the count was made against v1 and says nothing about v2.
    let mut v2 = status.models[0].clone();
    (v2.version, v2.run) = ("v2".into(), 2);
    v2.fingerprint.as_mut().unwrap().max_timestamp = Some(SNAPSHOT + 100);
    status.models.push(v2);
    status.runs.last = 2;
    status.runs.last_completed = 2;
    let m = model(spec.clone(), Some(status.clone()));
    let mut obs = observe(&m, vec![], Some(available("v2", 1, 1)));
    obs.database = crate::observe::DatabaseProbe::Reachable;
    let plan = decide(&obs, &config(&m), &defaults());
    assert_eq!(condition(&plan, "Stale").status, "False");
    assert!(plan.start_job.is_none());

    let failed = decide_with(
        &spec,
        v1_serving(&spec),
        Some(Err("db:5432/shop: counting took longer than 30s".into())),
        vec![],
    );
    let data = failed.status.data.unwrap();
    assert_eq!(data.new_ratings, 0);
    assert_eq!(
        data.error.as_deref(),
        Some("db:5432/shop: counting took longer than 30s")
    );
}

fn forward_spec(interval: &str) -> RecommenderModelSpec {
    pg_spec(|s| {
        s.freshness.forward_evaluation = Some(crate::crd::ForwardEvaluation {
            min_ratings: 100,
            interval: interval.into(),
            ..Default::default()
        })
    })
}

#[test]
fn a_forward_evaluation_starts_with_enough_new_ratings_at_most_every_interval() {
    let spec = forward_spec("1h");
    let plan = decide_with(&spec, v1_serving(&spec), Some(Ok(count(99))), vec![]);
    assert!(plan.start_evaluation.is_none(), "fewer than minRatings");
    let accuracy = condition(&plan, "AccuracyDegraded");
    assert_eq!(
        (accuracy.status.as_str(), accuracy.reason.as_str()),
        ("Unknown", "NotEvaluated")
    );

    let plan = decide_with(&spec, v1_serving(&spec), Some(Ok(count(100))), vec![]);
    let job = plan.start_evaluation.as_ref().expect("an evaluation Job");
    assert_eq!(job.metadata.name.as_deref(), Some("movies-eval-1"));
    assert!(
        args(job).starts_with(&format!(
            "score --store /models/movies --model v1 --model-sha256 {V1_SHA256} \
             --since {SNAPSHOT} --source postgres"
        )),
        "{}",
        args(job)
    );
    let active = plan.status.evaluations.active.as_ref().unwrap();
    assert_eq!((active.number, active.version.as_str()), (1, "v1"));
    assert!(
        plan.start_job.is_none(),
        "an evaluation is not a training run"
    );

    // Evaluated 30 minutes ago: the next one waits for the interval, with a timer.
    let mut status = v1_serving(&spec);
    status.evaluations.last = 1;
    status.evaluations.last_started_at = Some(at("2026-11-27T11:30:00Z"));
    let plan = decide_with(&spec, status, Some(Ok(count(100))), vec![]);
    assert!(plan.start_evaluation.is_none());
    assert_eq!(
        plan.requeue_after,
        Some(Duration::from_secs(15)),
        "the probe is sooner"
    );
}

fn evaluated(rmse: f64, ratings: u64) -> ObservedEvaluation {
    let mut report = report("v1", 0.0, 0.0, NOW);
    report.metrics = None;
    report.forward = Some(Forward {
        since: SNAPSHOT,
        until: Some(SNAPSHOT + 86_400),
        ratings,
        rmse,
        mae: rmse * 0.8,
        accuracy: 0.6,
        unknown_users: 12,
        unknown_items: 3,
    });
    ObservedEvaluation {
        number: 1,
        job_name: "movies-eval-1".into(),
        version: "v1".into(),
        since: SNAPSHOT,
        started_at: Some(at("2026-11-27T11:58:00Z")),
        state: EvaluationState::Succeeded {
            report: Ok(Box::new(report)),
            finished_at: Some(at("2026-11-27T11:59:00Z")),
        },
    }
}

#[test]
fn forward_accuracy_is_recorded_and_judged() {
    let spec = forward_spec("1h");
    let mut status = v1_serving(&spec);
    status.evaluations.last = 1;
    status.evaluations.last_started_at = Some(at("2026-11-27T11:58:00Z"));
    // (forward rmse, maxRmse, degraded?, reason); v1's CV rmse is 0.94, maxRmseIncrease 0.1.
    let cases = [
        (0.98, 1.0, "False", "WithinLimits"),
        (1.0412, 2.0, "True", "AboveCvRmse"),
        (1.3, 1.0, "True", "AboveMaxRmse"),
    ];
    for (rmse, max_rmse, degraded, reason) in cases {
        let mut spec = spec.clone();
        spec.promotion.max_rmse = max_rmse;
        let plan = decide_with(
            &spec,
            status.clone(),
            Some(Ok(count(500))),
            vec![evaluated(rmse, 500)],
        );
        let serving = plan.status.serving.as_ref().unwrap();
        let forward = serving.forward.as_ref().expect("status.serving.forward");
        assert_eq!(
            (forward.rmse, forward.ratings, forward.unknown_users),
            (rmse, 500, 12)
        );
        assert_eq!(forward.evaluated_at, at("2026-11-27T11:59:00Z"));
        assert_eq!(plan.status.models[0].forward.as_ref(), Some(forward));
        assert!(plan.status.evaluations.active.is_none());
        let c = condition(&plan, "AccuracyDegraded");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            (degraded, reason),
            "{rmse}"
        );
        assert!(plan.start_evaluation.is_none(), "nothing new since it");
        let retrains = plan.status.runs.active.as_ref().map(|r| r.trigger);
        if degraded == "True" {
            assert_eq!(retrains, Some(RunTrigger::AccuracyDegraded), "{rmse}");
            assert!(
                c.message.contains("1.") && c.message.contains("500 ratings"),
                "{}",
                c.message
            );
            assert!(
                plan.events
                    .iter()
                    .any(|e| e.type_ == EventType::Warning && e.reason == reason)
            );
        } else {
            assert_eq!(retrains, None);
        }
        // AccuracyDegraded is not the phase Degraded: v1 still serves and Ready holds.
        assert_ne!(plan.status.phase, crate::crd::Phase::Degraded);
        assert_eq!(condition(&plan, "Ready").status, "True");
    }
}

#[test]
fn a_failed_evaluation_is_said_and_retried_after_the_interval() {
    let spec = forward_spec("1h");
    let mut status = v1_serving(&spec);
    status.evaluations.last = 1;
    status.evaluations.last_started_at = Some(at("2026-11-27T11:58:00Z"));
    let mut failed = evaluated(1.0, 500);
    failed.state = EvaluationState::Failed {
        message: "SourceUnavailable: cannot connect".into(),
        finished_at: Some(now()),
    };
    let plan = decide_with(&spec, status, Some(Ok(count(500))), vec![failed]);
    let c = condition(&plan, "AccuracyDegraded");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("Unknown", "EvaluationFailed")
    );
    assert!(c.message.contains("cannot connect"), "{}", c.message);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "ForwardEvaluationFailed")
    );
    assert!(plan.start_evaluation.is_none());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(15)));
}

#[test]
fn must_beat_serving_asks_the_trainer_to_challenge_the_serving_model() {
    let spec = pg_spec(|s| {
        s.promotion.must_beat_serving = true;
        s.promotion.challenge.min_ratings = 500;
    });
    let mut status = v1_serving(&spec);
    status.runs.trained_spec_hash = Some("old".into());
    let plan = decide_with(&spec, status, None, vec![]);
    let job = plan.start_job.as_ref().expect("a training run");
    assert!(
        args(job).ends_with(&format!(
            "--challenge v1 --challenge-sha256 {V1_SHA256} --challenge-since {SNAPSHOT} --holdout 0.5 \
             --min-compared 500 --confidence 0.95"
        )),
        "{}",
        args(job)
    );

    let plain = pg_spec(|_| {});
    let mut status = v1_serving(&plain);
    status.runs.trained_spec_hash = Some("old".into());
    let plan = decide_with(&plain, status, None, vec![]);
    assert!(!args(plan.start_job.as_ref().unwrap()).contains("--challenge"));
}
