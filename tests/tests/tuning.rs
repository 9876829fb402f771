//! Hyperparameter searches on the local cluster (`spec.tuning`): trials as pods of an Indexed
//! Job, a failed trial recorded without sinking the search, the best point trained and promoted,
//! the search shown by `kubectl`, and a retrain that starts from the previous search.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use recommender_contract::tuning::{Metric, SearchRecord, TuningSpec};
use recommender_e2e::*;
use recommender_operator::crd::{RecommenderModelSpec, RecommenderModelStatus, SearchState};
use std::time::Duration;

/// A search of 12 trials and the run after it, on the suite's shared two cores: about a minute
/// alone (each trial a few seconds of a pod's start and a 4-fold CV of ml-100k at 20 factors).
const SEARCH: Duration = Duration::from_secs(480);

/// The margin by which the searched model's CV RMSE beats the defaults' on ml-100k: issue 24
/// measured 0.025 (0.9375 at the defaults, 0.9125 at lr 0.01, reg 0.1, 30 epochs with 100
/// factors); with the suite's 20 factors the same points differ by about as much, and the grid
/// below holds both.
const MARGIN: f64 = 0.015;

/// A grid over the defaults' neighbourhood, the defaults included (lr 0.005, reg 0.02, 20
/// epochs), and a learning rate at which SGD diverges: those trials fail.
fn grid(spec: &mut RecommenderModelSpec) {
    spec.tuning = Some(
        serde_json::from_value::<TuningSpec>(serde_json::json!({
            "space": {
                "lrAll": {"values": [0.005, 0.01, 5.0]},
                "regAll": {"values": [0.02, 0.1]},
                "epochs": {"values": [20, 30]},
            },
            "strategy": "grid",
            "trials": 12,
            "parallelism": 4,
            "timeLimit": "20m",
            "seed": 7,
        }))
        .expect("a tuning spec"),
    );
    // Trials are small; several at once share the node's cores with the suite.
    spec.trainer.trial_resources = spec.trainer.resources.clone();
}

/// The search that run `version` trained, as the trainer kept it in the model store, read with
/// `recommender-trainer history --json` as a user would.
fn stored_search(env: &Env, ns: &TestNamespace, version: &str) -> SearchRecord {
    let store = ns.store.join("movies");
    assert!(
        store.join(format!("searches/{version}.json")).is_file(),
        "no search record for {version} in {}",
        store.display()
    );
    let out = std::process::Command::new(env.repo.join("target/debug/recommender-trainer"))
        .arg("history")
        .arg("--store")
        .arg(&store)
        .arg("--json")
        .output()
        .expect("recommender-trainer history");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON record"))
        .find(|r| r["version"] == version)
        .unwrap_or_else(|| panic!("{version} not in the history: {stdout}"));
    serde_json::from_value(record["search"].clone())
        .unwrap_or_else(|e| panic!("{version}'s search: {e}: {record}"))
}

fn tuning(status: &RecommenderModelStatus) -> &recommender_operator::crd::TuningStatus {
    status.tuning.as_ref().expect("status.tuning")
}

async fn trial_jobs(client: &Client, ns: &str) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut list = jobs
        .list(&ListParams::default().labels("app.kubernetes.io/component=trial"))
        .await
        .expect("list trial Jobs")
        .items;
    list.sort_by_key(|j| j.name_any());
    list
}

#[tokio::test]
async fn a_search_runs_its_trials_as_pods_and_promotes_a_better_model() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-tuning").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    apply_model(&client, &postgres_model(&env, &ns, "movies", grid)).await;
    let api = models(&client, &ns.name);

    let status = wait_status(&api, "movies", SEARCH, "v1 from the search served", |s| {
        serves(s, "v1")
    })
    .await;

    // The trials ran as the pods of one Indexed Job.
    let jobs = trial_jobs(&client, &ns.name).await;
    assert_eq!(
        jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>(),
        ["movies-search-1-0"]
    );
    let spec = jobs[0].spec.as_ref().unwrap();
    assert_eq!(
        (
            spec.completion_mode.as_deref(),
            spec.completions,
            spec.parallelism
        ),
        (Some("Indexed"), Some(12), Some(4))
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let trial_pods = pods
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=movies-search-1-0"))
        .await
        .unwrap()
        .items;
    assert_eq!(trial_pods.len(), 12, "one pod per trial");

    // The diverging points failed, were recorded with the trainer's reason, and the search went
    // on; the run trained the best point.
    let t = tuning(&status);
    assert_eq!(t.state, SearchState::BestFound);
    assert_eq!((t.trials_done, t.trials_failed), (12, 4), "{t:?}");
    let best = t.best.as_ref().unwrap();
    assert_ne!(best.params.lr_all, Some(5.0));
    let run = status.history.iter().find(|r| r.version == "v1").unwrap();
    assert_eq!(run.search, Some(1));

    // The whole search is in the run history on the model store, beside v1's record: every
    // trial, the failed ones with their reason, the same best.
    let search = stored_search(&env, &ns, "v1");
    assert_eq!((search.trials.len(), search.failed()), (12, 4));
    assert_eq!(search.best.as_ref().map(|b| b.index), Some(best.index));
    assert!(
        search
            .trials
            .iter()
            .filter_map(|r| r.error.as_ref())
            .all(|e| e.reason == "Diverged"),
        "{search:?}"
    );

    // Better than the defaults, measured on the same folds in the same search.
    let defaults_point = search.trials.iter().find(|r| {
        r.params.lr_all == Some(0.005) && r.params.reg_all == Some(0.02) && r.params.epochs == 20
    });
    let serving = status.serving.as_ref().unwrap();
    let best_rmse = best.value(Metric::CvRmse).unwrap();
    assert!(
        (serving.metrics.rmse - best_rmse).abs() < 1e-3,
        "the run measured what the trial did: {} vs {best_rmse}",
        serving.metrics.rmse
    );
    let defaults_rmse = defaults_point
        .and_then(|r| r.value(Metric::CvRmse))
        .unwrap_or_else(|| panic!("the defaults' point scored in the search: {search:?}"));
    assert!(
        serving.metrics.rmse <= defaults_rmse - MARGIN,
        "tuned {} vs defaults {defaults_rmse}: want a margin of {MARGIN}",
        serving.metrics.rmse
    );

    // kubectl shows the search: the best score as a wide column, the trials in describe.
    let (ok, table) = kubectl(&["get", "rm", "movies", "-n", &ns.name, "-o", "wide"]);
    assert!(ok, "{table}");
    assert!(table.lines().next().unwrap().contains("TUNED"), "{table}");
    let (ok, described) = kubectl(&["describe", "rm", "movies", "-n", &ns.name]);
    assert!(ok, "{described}");
    for needle in ["Tuned", "BestFound", "Trials Failed", "Diverged"] {
        assert!(
            described.contains(needle),
            "describe lacks {needle}: {described}"
        );
    }

    // A retrain with the same space starts from this search: a quarter of the budget, the best
    // point first.
    request_retrain(&client, &ns.name, "movies", "tuning-2").await;
    let status = wait_status(&api, "movies", SEARCH, "v2 from a warm search", |s| {
        serves(s, "v2")
    })
    .await;
    let warm = tuning(&status);
    assert_eq!(
        (warm.search, warm.warm, warm.trials_done),
        (2, true, 3),
        "{warm:?}"
    );
    let first = warm.trials.iter().find(|r| r.index == 0).unwrap();
    assert_eq!(first.params, best.params, "the previous best first");
    let search = stored_search(&env, &ns, "v2");
    assert!(search.warm);
    assert_eq!(search.trials.len(), 3);
    assert_eq!(search.trials[0].params, best.params);
    assert_eq!(
        trial_jobs(&client, &ns.name)
            .await
            .iter()
            .map(|j| j.name_any())
            .collect::<Vec<_>>(),
        ["movies-search-1-0", "movies-search-2-0"]
    );
}

#[tokio::test]
async fn an_oom_killed_trial_is_recorded_and_the_search_completes() {
    let env = Env::load();
    let client = client().await;
    let ns = TestNamespace::create(&client, &env, "e2e-tuning-oom").await;
    Operator::install(&client, &env.repo, &ns.name, &ns.name, &[]).await;
    // 20 factors fit in 256 MiB; 5,000 factors of 943 users and 1,682 items are 2 × 105 MB of
    // factors per fold model, over the limit whatever else the trial holds.
    let model = postgres_model(&env, &ns, "movies", |spec| {
        spec.tuning = Some(
            serde_yaml::from_str(
                "space: {factors: {values: [20, 5000]}}\nstrategy: grid\ntrials: 2\nparallelism: 2\nseed: 7",
            )
            .unwrap(),
        );
        spec.trainer.trial_resources = Some(
            serde_json::from_value(serde_json::json!({
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"memory": "256Mi"}
            }))
            .unwrap(),
        );
    });
    apply_model(&client, &model).await;
    let status = wait_status(
        &models(&client, &ns.name),
        "movies",
        SEARCH,
        "v1 from the search with an OOM-killed trial",
        |s| serves(s, "v1"),
    )
    .await;
    let t = tuning(&status);
    assert_eq!((t.trials_done, t.trials_failed), (2, 1), "{t:?}");
    let killed = t.trials.iter().find(|r| r.error.is_some()).unwrap();
    assert_eq!(killed.params.factors, Some(5000));
    assert_eq!(
        killed.error.as_ref().unwrap().reason,
        "OOMKilled",
        "{killed:?}"
    );
    assert_eq!(t.best.as_ref().unwrap().params.factors, Some(20));
    let search = stored_search(&env, &ns, "v1");
    let killed = search.trials.iter().find(|r| r.error.is_some()).unwrap();
    assert_eq!(
        (
            search.trials.len(),
            killed.error.as_ref().unwrap().reason.as_str()
        ),
        (2, "OOMKilled")
    );
}
